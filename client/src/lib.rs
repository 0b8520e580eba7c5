//! keel-client: the `keel` CLI, the Rust client library, the embedded cluster and `datagen`.
//!
//! # Layout
//! - [`client`]: `KeelClient`: submit SQL, follow progress, fetch results over Flight.
//! - [`embedded`]: a scheduler and N workers in this process, over loopback gRPC/Flight.
//! - [`cli`]: the `keel` subcommands (sql, explain, datagen, demo, health).
//! - [`demo`]: `keel demo`, story 1 end to end.
//! - [`health`]: the standard gRPC health check, for probes without a shell.
//! - [`datagen`]: WORKLOADS.md data sets, deterministic for a seed.
//! - [`datagen_tpch`]: the eight TPC-H tables, for bench/tpch.
//! - [`output`]: printing results as a table, CSV or JSON.
//! - [`error`]: the crate's error type.

pub mod cli;
pub mod client;
pub mod datagen;
pub mod datagen_backups;
pub mod datagen_devices;
pub mod datagen_tpch;
pub mod datagen_trips;
pub mod demo;
pub mod embedded;
pub mod error;
pub mod health;
pub mod mixture;
pub mod output;
pub mod profile;
pub mod script;

pub use client::{KeelClient, QueryResult};
pub use error::ClientError;
