//! The scheduler's settings (`keel-scheduler` flags).

use std::time::Duration;

use keel_proto::net::{Connect, Serve};
use keel_proto::paths::AllowedPaths;

use crate::skew::SkewConfig;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// A worker silent for this long is lost.
    pub heartbeat_timeout: Duration,
    /// Attempts a task may fail before its job fails.
    pub max_attempts: u32,
    /// Finished jobs' results are deleted this long after the job ends if no client released them.
    pub result_ttl: Duration,
    /// Most bytes one reduce task reads (partitions are coalesced up to it).
    pub max_task_bytes: u64,
    /// Fewest bytes worth a reduce task of its own.
    pub min_task_bytes: u64,
    /// A join side below this is broadcast rather than shuffled.
    pub broadcast_bytes: u64,
    pub shuffle_partitions: u32,
    /// Bytes of row groups per scan task; None sizes splits to the cluster.
    pub split_bytes: Option<u64>,
    /// A job with work to do and no live worker for this long fails.
    pub worker_wait: Duration,
    /// Memory-aware admission (`--admission on`); off places tasks by free cores alone.
    pub admission: bool,
    /// Skewed shuffle-join partitions are split by these thresholds; None leaves them whole.
    pub skew: Option<SkewConfig>,
    /// Partial aggregate states merge in a tree of this fan-in (0: all to one).
    pub tree_fan_in: usize,
    /// What callers must present (token) and the servers' TLS identity.
    pub serve: Serve,
    /// How the scheduler calls workers (Flight SQL fetches their results).
    pub connect: Connect,
    /// Where queries may read and write (`--allow-path`; empty: anywhere).
    pub allowed: AllowedPaths,
    /// Tables every query can name (`--table NAME=PATH`), and that Flight
    /// SQL's catalog calls list; a request's own tables take precedence.
    pub tables: Vec<(String, String)>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            heartbeat_timeout: Duration::from_secs(5),
            max_attempts: 3,
            result_ttl: Duration::from_secs(600),
            max_task_bytes: 64 << 20,
            min_task_bytes: 4 << 20,
            broadcast_bytes: 32 << 20,
            shuffle_partitions: 64,
            split_bytes: None,
            worker_wait: Duration::from_secs(60),
            admission: true,
            skew: Some(SkewConfig::default()),
            tree_fan_in: 16,
            serve: Serve::default(),
            connect: Connect::default(),
            allowed: AllowedPaths::default(),
            tables: vec![],
        }
    }
}
