use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach the {what} at {url}: {message}")]
    Unreachable {
        what: String,
        url: String,
        message: String,
    },
    /// The scheduler rejected the query: the message names the problem.
    #[error("{message}")]
    Rejected { message: String },
    #[error("job failed: {message}")]
    JobFailed { message: String },
    #[error("unexpected reply: {message}")]
    Protocol { message: String },
    #[error("{message}")]
    Usage { message: String },
    /// A missing or wrong token (KEEL_AUTH_TOKEN / --auth-token-file).
    #[error("authentication failed: {message}")]
    Unauthenticated { message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    pub fn from_status(s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::InvalidArgument | tonic::Code::NotFound => ClientError::Rejected {
                message: s.message().to_string(),
            },
            tonic::Code::Unauthenticated => ClientError::Unauthenticated {
                message: s.message().to_string(),
            },
            tonic::Code::Unavailable => ClientError::Unreachable {
                what: "scheduler".into(),
                url: String::new(),
                message: s.message().to_string(),
            },
            _ => ClientError::Protocol {
                message: format!("{:?}: {}", s.code(), s.message()),
            },
        }
    }
}
