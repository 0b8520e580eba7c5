//! Counters the scheduler keeps for `/metrics` and the dashboard, and the
//! recent task attempts the dashboard's task stream draws.

use std::collections::{BTreeMap, VecDeque};

use keel_proto::ids::{AttemptId, JobId, WorkerId};

/// Why a task attempt ended without its task's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EndReason {
    Succeeded,
    /// Its own error (counted against its attempts) or a user error.
    Error,
    OutOfMemory,
    /// It could not read an input; the input is recomputed.
    Fetch,
    /// Its worker stopped it, or no longer held it.
    Stopped,
    WorkerLost,
    /// Its job ended (failed or cancelled) while it ran.
    JobOver,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Succeeded => "succeeded",
            EndReason::Error => "error",
            EndReason::OutOfMemory => "out_of_memory",
            EndReason::Fetch => "fetch_failed",
            EndReason::Stopped => "stopped",
            EndReason::WorkerLost => "worker_lost",
            EndReason::JobOver => "job_over",
        }
    }
}

/// One task attempt as the task stream shows it.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub job: JobId,
    pub attempt: AttemptId,
    pub worker: WorkerId,
    /// Which of the worker's cores it ran on (a row of the task stream).
    pub slot: u32,
    /// Milliseconds since the scheduler started.
    pub start_ms: u64,
    pub end_ms: u64,
    pub reason: EndReason,
}

/// Job durations are counted in these buckets (seconds; `+Inf` implied).
pub const DURATION_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Attempts kept for the task stream.
const STREAM_LEN: usize = 5000;

#[derive(Debug, Default)]
pub struct Metrics {
    pub tasks_started: u64,
    /// Ended attempts by reason.
    pub tasks_ended: BTreeMap<EndReason, u64>,
    /// Task attempts run again, by reason.
    pub retries: BTreeMap<EndReason, u64>,
    pub jobs_submitted: u64,
    /// Ended jobs by final state.
    pub jobs_ended: BTreeMap<&'static str, u64>,
    /// Per bucket of [`DURATION_BUCKETS`] (then +Inf): jobs at most that long.
    pub job_duration_counts: [u64; DURATION_BUCKETS.len() + 1],
    pub job_duration_sum: f64,
    /// Bytes map tasks wrote for an exchange.
    pub bytes_shuffled: u64,
    pub bytes_spilled: u64,
    pub stream: VecDeque<TaskRecord>,
}

impl Metrics {
    pub fn task_ended(&mut self, record: TaskRecord) {
        *self.tasks_ended.entry(record.reason).or_default() += 1;
        if self.stream.len() == STREAM_LEN {
            self.stream.pop_front();
        }
        self.stream.push_back(record);
    }

    pub fn retried(&mut self, reason: EndReason) {
        *self.retries.entry(reason).or_default() += 1;
    }

    pub fn job_ended(&mut self, state: &'static str, seconds: f64) {
        *self.jobs_ended.entry(state).or_default() += 1;
        self.job_duration_sum += seconds;
        let first = DURATION_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        for c in &mut self.job_duration_counts[first..] {
            *c += 1;
        }
    }
}
