use arrow::error::ArrowError;
use keel_proto::ProtoError;
use parquet::errors::ParquetError;
use thiserror::Error;

pub type Result<T, E = WorkerError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("{context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: ArrowError,
    },
    #[error("cannot read Parquet file {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: ParquetError,
    },
    #[error("cannot write Parquet output {path}: {source}")]
    ParquetWrite {
        path: String,
        #[source]
        source: ParquetError,
    },
    #[error("cannot open input file {path}: {source}")]
    Input {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot fetch stage {stage} task {map_task} output from {url}: {message}")]
    Fetch {
        url: String,
        stage: u32,
        map_task: u32,
        message: String,
    },
    #[error("{consumer} asked for {requested} more bytes (holding {held}) but the worker's memory limit is {limit} bytes ({used} in use)")]
    MemoryExhausted {
        consumer: &'static str,
        requested: usize,
        held: usize,
        used: usize,
        limit: usize,
    },
    #[error("{consumer} cannot proceed: it needs {needed} bytes at once even after spilling, and the worker's memory pool is {limit} bytes; raise --memory-limit")]
    CannotProceed {
        consumer: &'static str,
        needed: usize,
        limit: usize,
    },
    #[error("{message}")]
    Eval { message: String },
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error("cannot reach the scheduler at {url}: {message}")]
    Scheduler { url: String, message: String },
    #[error("task cancelled")]
    Cancelled,
    /// A path outside the worker's `--allow-path` roots.
    #[error("{0}")]
    NotAllowed(String),
    /// The worker's own settings are wrong (TLS files, …).
    #[error("{0}")]
    Config(String),
}

impl WorkerError {
    /// Whether the task's own input or expressions are at fault (a division
    /// by zero, a failed cast, an overflow, a corrupt or missing file, a
    /// type error found at run time): every attempt would fail the same
    /// way, so the job fails at once. Lost peers, I/O and memory are the
    /// infrastructure's, and retried.
    pub fn is_user_error(&self) -> bool {
        match self {
            WorkerError::Arrow { source, .. } => !matches!(
                source,
                ArrowError::IoError(..)
                    | ArrowError::MemoryError(_)
                    | ArrowError::ExternalError(_)
                    | ArrowError::IpcError(_)
            ),
            WorkerError::Parquet { .. }
            | WorkerError::Input { .. }
            | WorkerError::Eval { .. }
            | WorkerError::NotAllowed(_) => true,
            WorkerError::ParquetWrite { .. }
            | WorkerError::Io { .. }
            | WorkerError::Fetch { .. }
            | WorkerError::MemoryExhausted { .. }
            | WorkerError::CannotProceed { .. }
            | WorkerError::Proto(_)
            | WorkerError::Scheduler { .. }
            | WorkerError::Config(_)
            | WorkerError::Cancelled => false,
        }
    }

    pub fn eval(message: impl Into<String>) -> Self {
        WorkerError::Eval {
            message: message.into(),
        }
    }

    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        WorkerError::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// Adds context to Arrow errors: `kernel(...).context("evaluating x")?`.
pub trait ArrowContext<T> {
    fn context(self, what: &str) -> Result<T>;
}

impl<T> ArrowContext<T> for Result<T, ArrowError> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|source| WorkerError::Arrow {
            context: what.to_string(),
            source,
        })
    }
}
