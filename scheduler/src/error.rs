use thiserror::Error;

pub type Result<T, E = SchedulerError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum SchedulerError {
    /// The message from the parser names the line and column.
    #[error("syntax error: {message}")]
    Syntax { message: String },
    /// A name, type or shape the query gets wrong: the message names it.
    #[error("{message}")]
    Bind { message: String },
    #[error("not supported: {what}")]
    Unsupported { what: String },
    #[error("no Parquet files match {pattern}")]
    NoFiles { pattern: String },
    #[error("cannot read Parquet file {path}: {message}")]
    Parquet { path: String, message: String },
    #[error(
        "Parquet files of one table disagree: {path} has columns {found}, expected {expected}"
    )]
    SchemaMismatch {
        path: String,
        found: String,
        expected: String,
    },
    #[error("no job {job}")]
    UnknownJob { job: String },
    #[error("no worker {worker}")]
    UnknownWorker { worker: String },
    #[error("the scheduler is shutting down")]
    ShuttingDown,
}

impl SchedulerError {
    pub fn bind(message: impl Into<String>) -> Self {
        SchedulerError::Bind {
            message: message.into(),
        }
    }

    pub fn unsupported(what: impl Into<String>) -> Self {
        SchedulerError::Unsupported { what: what.into() }
    }

    /// The gRPC status a client should see for this error.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            SchedulerError::Syntax { .. }
            | SchedulerError::Bind { .. }
            | SchedulerError::Unsupported { .. }
            | SchedulerError::NoFiles { .. }
            | SchedulerError::Parquet { .. }
            | SchedulerError::SchemaMismatch { .. } => {
                tonic::Status::invalid_argument(self.to_string())
            }
            SchedulerError::UnknownJob { .. } | SchedulerError::UnknownWorker { .. } => {
                tonic::Status::not_found(self.to_string())
            }
            SchedulerError::ShuttingDown => tonic::Status::unavailable(self.to_string()),
        }
    }
}
