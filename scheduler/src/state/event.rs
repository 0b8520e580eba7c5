//! What reaches the scheduler's core ([`Event`]s, past tense) and what it
//! asks to be done in answer ([`Command`]s), which [`super::links`] performs.

use keel_proto::ids::{JobId, WorkerId};
use keel_proto::pb::{
    job_event, worker_command, ClusterStatusResponse, JobEvent, JobSummary, RunningTask,
    TaskStatus, WorkerCommand,
};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::error::SchedulerError;
use crate::job::Job;

pub type JobEvents = mpsc::Sender<Result<JobEvent, Status>>;
pub type WorkerStream = mpsc::Sender<WorkerCommand>;

pub enum Event {
    WorkerRegistered {
        flight_url: String,
        cores: u32,
        memory_limit: u64,
        reply: oneshot::Sender<WorkerId>,
    },
    WorkerConnected {
        worker: WorkerId,
        commands: WorkerStream,
        reply: oneshot::Sender<bool>,
    },
    WorkerDisconnected {
        worker: WorkerId,
    },
    HeartbeatReceived {
        worker: WorkerId,
        memory_used: u64,
        memory_pinned: u64,
        /// The task attempts the worker holds.
        running: Vec<RunningTask>,
        reply: oneshot::Sender<bool>,
    },
    TaskReported(TaskStatus),
    JobSubmitted {
        job: Box<Job>,
    },
    WatchRequested {
        job: JobId,
        events: JobEvents,
        reply: oneshot::Sender<Result<(), SchedulerError>>,
    },
    CancelRequested {
        job: JobId,
        reply: oneshot::Sender<Result<bool, SchedulerError>>,
    },
    ReleaseRequested {
        job: JobId,
        reply: oneshot::Sender<Result<bool, SchedulerError>>,
    },
    JobsListed {
        reply: oneshot::Sender<Vec<JobSummary>>,
    },
    ClusterStatusRequested {
        reply: oneshot::Sender<ClusterStatusResponse>,
    },
    /// The HTTP API asks for a view of the cluster (see [`super::views`]);
    /// `None` answers a view of a job that is not known.
    ViewRequested {
        view: View,
        reply: oneshot::Sender<Option<String>>,
    },
    TimerTicked,
}

/// What the HTTP API can ask the core to render.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    Workers,
    Jobs,
    Job(JobId),
    /// Task attempts that ended after this many ms since the scheduler
    /// started, and those running now.
    Tasks {
        since_ms: u64,
    },
    /// Prometheus text exposition.
    Metrics,
    /// What one refresh of the dashboard's main page shows: workers, the
    /// newest jobs, and the task stream since `since_ms` (one request, not three).
    Overview {
        since_ms: u64,
        jobs: usize,
    },
}

/// What the core asks the outside to do.
#[derive(Debug)]
pub enum Command {
    /// Keep this worker's command stream for the commands that follow.
    Attach {
        worker: WorkerId,
        stream: WorkerStream,
    },
    /// Drop a lost worker's command stream.
    Detach { worker: WorkerId },
    /// Send a worker a command.
    ToWorker {
        worker: WorkerId,
        command: worker_command::Command,
    },
    /// Add a client to a job's watchers.
    Watch { job: JobId, watcher: JobEvents },
    /// Tell a job's watchers how it stands; `done` ends their streams.
    Publish {
        job: JobId,
        event: Box<job_event::Event>,
        done: bool,
    },
}
