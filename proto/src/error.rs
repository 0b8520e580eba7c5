use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProtoError {
    #[error("could not encode task descriptor: {source}")]
    Encode {
        #[from]
        source: bincode::error::EncodeError,
    },
    #[error("malformed task descriptor: {source}")]
    Decode {
        #[from]
        source: bincode::error::DecodeError,
    },
    #[error("type error: {message}")]
    Type { message: String },
}
