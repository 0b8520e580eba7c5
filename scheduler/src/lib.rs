//! keel-scheduler: turns SQL into stages and tasks and drives them to completion.
//!
//! # Layout
//! - [`sql`]: parsing and binding SQL to a logical plan.
//! - [`catalog`]: Parquet tables and their metadata (schema, row groups, statistics).
//! - [`logical`]: the logical plan.
//! - [`optimizer`]: filter pushdown and column pruning.
//! - [`planner`]: the distributed plan: stages cut at exchanges, scan splits, `explain`.
//! - [`adaptive`]: forming a stage's tasks from its inputs' reported sizes.
//! - [`skew`]: splitting a shuffle join's skewed partitions, from the map tasks' hot-key sketches.
//! - [`job`]: a job's stage and task state machines.
//! - [`state`]: the scheduler's core (events in, commands out) and the event loop that owns it.
//! - [`grpc`]: the JobService and WorkerService handlers.
//! - [`http`]: the dashboard, JSON API and Prometheus metrics.
//! - [`flight_sql`]: Flight SQL for ADBC/JDBC drivers and BI tools.
//! - [`server`]: the scheduler process (`run(config, listener, shutdown)`).
//! - [`error`]: the crate's error type.

pub mod adaptive;
pub mod admission;
pub mod catalog;
pub mod error;
pub mod flight_sql;
pub mod grpc;
pub mod http;
pub mod job;
pub mod logical;
pub mod optimizer;
pub mod planner;
pub mod server;
pub mod skew;
pub mod sql;
pub mod state;

pub use error::{Result, SchedulerError};
