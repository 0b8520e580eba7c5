//! Keel's wire contract: everything the scheduler and the workers must agree on.
//!
//! # Layout
//! - `pb`: the gRPC services and messages generated from `proto/keel.proto`.
//! - [`auth`]: the cluster's shared token, sent and checked on every call.
//! - [`net`]: how processes connect (token, TLS) and serve.
//! - [`paths`]: `--allow-path`, the roots a process may read and write under.
//! - [`ids`]: typed identifiers for jobs, stages, tasks and workers.
//! - [`expr`]: physical expressions (column indices, literals, functions) and their typing rules.
//! - [`func`]: the scalar functions, their names and return types.
//! - [`plan`]: the operator tree a task runs and the sink it writes to.
//! - [`task`]: the task descriptor sent to workers, its shuffle inputs and its bincode codec.
//! - [`size`]: parsing byte sizes such as `4GiB`.
//! - [`error`]: the crate's error type.

pub mod auth;
pub mod error;
pub mod expr;
pub mod func;
pub mod ids;
pub mod net;
pub mod paths;
pub mod plan;
pub mod size;
pub mod task;

/// Generated gRPC code (tonic + prost).
pub mod pb {
    tonic::include_proto!("keel");
}

pub use error::ProtoError;
