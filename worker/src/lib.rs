//! keel-worker: runs tasks on Arrow batches and serves their output over Flight.
//!
//! # Layout
//! - [`operators`]: one operator per file (scan, filter, project, aggregate, join, sort, limit, union).
//! - [`eval`]: expression evaluation with Arrow compute kernels.
//! - [`functions`]: scalar functions by family (math, text, patterns, dates and times, theta sketches).
//! - [`mixture`]: 1-D Gaussian mixtures: the E step's sums and the mode-specific normalisation.
//! - [`memory`]: the worker-wide fair memory pool, reservations, per-task peaks and spill directories.
//! - [`spill`]: spill files (compressed Arrow IPC) and the hash partitioning spilling operators share.
//! - [`input`]: shuffle inputs as bounded streams; broadcast sides fetched once per worker and shared.
//! - [`hot_keys`]: the heavy-hitters sketch of a hash exchange's key, reported for skew handling.
//! - [`shuffle`]: the shuffle writer (hash partitioning to Arrow IPC files) and reader (local or Flight).
//! - [`sink`]: where a task's output goes: shuffle partitions or Parquet files.
//! - [`runner`]: runs one task descriptor from fetch to report.
//! - [`flight`]: the Arrow Flight service (`do_get` on a partition ticket).
//! - [`service`]: registration, heartbeats and the command stream from the scheduler.
//! - [`allocator`]: glibc malloc settings that keep the process's RSS near what the pool accounts.
//! - [`error`]: the crate's error type.

pub mod allocator;
pub mod error;
pub mod eval;
pub mod functions;
pub mod memory;
pub mod mixture;
pub mod operators;

pub use error::{Result, WorkerError};
pub mod flight;
pub mod hot_keys;
pub mod input;
pub mod runner;
pub mod service;
pub mod shuffle;
pub mod sink;
pub mod spill;
