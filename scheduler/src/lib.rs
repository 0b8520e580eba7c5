//! keel-scheduler: turns SQL into stages and tasks and drives them to completion.
//!
//! # Layout
//! - [`sql`]: parsing and binding SQL to a logical plan.
//! - [`catalog`]: Parquet tables and their metadata.
//! - [`logical`]: the logical plan.
//! - [`error`]: the crate's error type.

pub mod catalog;
pub mod error;
pub mod logical;
pub mod sql;

pub use error::{Result, SchedulerError};
