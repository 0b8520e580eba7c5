//! The scheduler's state and the one event loop that owns it.
//!
//! gRPC handlers turn requests into past-tense [`Event`]s; the loop applies
//! them one at a time, then dispatches whatever tasks can run. Nothing else
//! touches workers, jobs or tasks, so no locks guard them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proto::ids::{JobId, WorkerId};
use keel_proto::pb::{
    job_event, task_status, worker_command, ClusterStatusResponse, JobCompleted, JobEvent,
    JobFailed, JobProgress, JobSummary, RunningTask, TaskStatus, WorkerCommand, WorkerSummary,
};
use keel_proto::size::memory_pool_size;
use keel_proto::task::encode;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::adaptive::AdaptiveConfig;
use crate::admission::{Measured, Room};
use crate::error::SchedulerError;
use crate::job::{Job, JobState, Outcome};
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
        }
    }
}

pub type JobEvents = mpsc::Sender<Result<JobEvent, Status>>;

pub enum Event {
    WorkerRegistered {
        flight_url: String,
        cores: u32,
        memory_limit: u64,
        reply: oneshot::Sender<WorkerId>,
    },
    WorkerConnected {
        worker: WorkerId,
        commands: mpsc::Sender<WorkerCommand>,
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
    TimerTicked,
}

/// One task attempt: (job, stage, task, attempt).
type AttemptKey = (JobId, u32, u32, u32);

struct WorkerEntry {
    flight_url: String,
    cores: u32,
    memory_limit: u64,
    /// Reserved in the worker's pool, and of that what cannot spill, as of
    /// its last heartbeat or task report.
    memory_used: u64,
    memory_pinned: u64,
    /// Tasks dispatched to the worker and not heard back about, with their estimates.
    running: HashMap<AttemptKey, u64>,
    /// Of those, the ones its last heartbeat did not hold: lost if the
    /// next one does not hold them either (see `reconcile`).
    unheld: HashSet<AttemptKey>,
    last_seen: Instant,
    commands: Option<mpsc::Sender<WorkerCommand>>,
}

impl WorkerEntry {
    fn room(&self) -> Room {
        let estimated: u64 = self.running.values().sum();
        Room {
            cores: self.cores,
            running: self.running.len() as u32,
            budget: memory_pool_size(self.memory_limit),
            // Spillable consumers grow into whatever the pool has, so only
            // what cannot spill corrects the estimates.
            load: estimated.max(self.memory_pinned),
        }
    }
}

struct JobEntry {
    job: Job,
    watchers: Vec<JobEvents>,
    /// Whether workers were told to delete the job's files.
    cleaned: bool,
}

pub struct SchedulerState {
    config: SchedulerConfig,
    workers: HashMap<WorkerId, WorkerEntry>,
    jobs: HashMap<JobId, JobEntry>,
    order: VecDeque<JobId>,
    next_worker: u64,
    /// When the last worker went away, while there are none.
    no_workers_since: Option<Instant>,
    /// Shared with the planner, which sizes scan splits by cluster cores.
    pub total_cores: Arc<AtomicUsize>,
    /// The latest measurements of each stage signature, across jobs: a
    /// stage like one that ran before starts from what that one used.
    learned: HashMap<String, Measured>,
}

impl SchedulerState {
    pub fn new(config: SchedulerConfig, total_cores: Arc<AtomicUsize>) -> Self {
        SchedulerState {
            config,
            workers: HashMap::new(),
            jobs: HashMap::new(),
            order: VecDeque::new(),
            next_worker: 1,
            no_workers_since: None,
            total_cores,
            learned: HashMap::new(),
        }
    }

    fn adaptive(&self) -> AdaptiveConfig {
        AdaptiveConfig {
            cores: self.total_cores.load(Ordering::Relaxed).max(1) as u64,
            min_task_bytes: self.config.min_task_bytes,
            max_task_bytes: self.config.max_task_bytes,
            broadcast_bytes: self.config.broadcast_bytes,
            skew: self.config.skew.clone(),
        }
    }

    pub fn handle(&mut self, event: Event) {
        match event {
            Event::WorkerRegistered {
                flight_url,
                cores,
                memory_limit,
                reply,
            } => {
                let id = WorkerId(format!("worker-{}", self.next_worker));
                self.next_worker += 1;
                tracing::info!(worker = %id, %flight_url, cores, memory_limit, "worker registered");
                self.workers.insert(
                    id.clone(),
                    WorkerEntry {
                        flight_url,
                        cores: cores.max(1),
                        memory_limit,
                        memory_used: 0,
                        memory_pinned: 0,
                        running: HashMap::new(),
                        unheld: HashSet::new(),
                        last_seen: Instant::now(),
                        commands: None,
                    },
                );
                self.update_cores();
                let _ = reply.send(id);
            }
            Event::WorkerConnected {
                worker,
                commands,
                reply,
            } => {
                let known = match self.workers.get_mut(&worker) {
                    Some(w) => {
                        w.commands = Some(commands);
                        w.last_seen = Instant::now();
                        true
                    }
                    None => false,
                };
                let _ = reply.send(known);
            }
            Event::WorkerDisconnected { worker } => {
                self.lose_worker(&worker, "its connection closed")
            }
            Event::HeartbeatReceived {
                worker,
                memory_used,
                memory_pinned,
                running,
                reply,
            } => {
                let known = match self.workers.get_mut(&worker) {
                    Some(w) => {
                        w.last_seen = Instant::now();
                        w.memory_used = memory_used;
                        w.memory_pinned = memory_pinned;
                        true
                    }
                    None => false,
                };
                let _ = reply.send(known);
                if known {
                    self.reconcile(&worker, &running);
                }
            }
            Event::TaskReported(status) => self.task_reported(status),
            Event::JobSubmitted { job } => {
                let mut job = *job;
                tracing::info!(job = %job.id, stages = job.stages.len(), "job submitted");
                job.advance(&self.adaptive());
                let id = job.id.clone();
                self.order.push_back(id.clone());
                self.jobs.insert(
                    id.clone(),
                    JobEntry {
                        job,
                        watchers: vec![],
                        cleaned: false,
                    },
                );
                self.publish(&id);
            }
            Event::WatchRequested { job, events, reply } => match self.jobs.get_mut(&job) {
                Some(entry) => {
                    entry.watchers.push(events);
                    let _ = reply.send(Ok(()));
                    self.publish(&job);
                }
                None => {
                    let _ = reply.send(Err(SchedulerError::UnknownJob { job: job.0 }));
                }
            },
            Event::CancelRequested { job, reply } => {
                let result = match self.jobs.get_mut(&job) {
                    Some(entry) => {
                        let was_running = entry.job.state == JobState::Running;
                        entry.job.cancel();
                        Ok(was_running)
                    }
                    None => Err(SchedulerError::UnknownJob { job: job.0.clone() }),
                };
                if matches!(result, Ok(true)) {
                    tracing::info!(%job, "job cancelled");
                    self.publish(&job);
                }
                let _ = reply.send(result);
            }
            Event::ReleaseRequested { job, reply } => {
                let result = match self.jobs.get(&job) {
                    Some(_) => {
                        self.cleanup(&job);
                        Ok(true)
                    }
                    None => Err(SchedulerError::UnknownJob { job: job.0.clone() }),
                };
                let _ = reply.send(result);
            }
            Event::JobsListed { reply } => {
                let jobs = self
                    .order
                    .iter()
                    .filter_map(|id| self.jobs.get(id))
                    .map(|e| e.job.summary())
                    .collect();
                let _ = reply.send(jobs);
            }
            Event::ClusterStatusRequested { reply } => {
                let mut workers: Vec<WorkerSummary> = self
                    .workers
                    .iter()
                    .map(|(id, w)| WorkerSummary {
                        worker_id: id.0.clone(),
                        flight_url: w.flight_url.clone(),
                        cores: w.cores,
                        memory_limit: w.memory_limit,
                        memory_used: w.memory_used,
                        running_tasks: w.running.len() as u32,
                    })
                    .collect();
                workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
                let _ = reply.send(ClusterStatusResponse { workers });
            }
            Event::TimerTicked => self.tick(),
        }
        self.dispatch();
    }

    fn update_cores(&self) {
        let cores: u32 = self.workers.values().map(|w| w.cores).sum();
        self.total_cores
            .store(cores.max(1) as usize, Ordering::Relaxed);
    }

    fn tick(&mut self) {
        let timeout = self.config.heartbeat_timeout;
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.last_seen.elapsed() > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for w in silent {
            self.lose_worker(&w, "it stopped sending heartbeats");
        }
        self.fail_jobs_without_workers();
        let ttl = self.config.result_ttl;
        let expired: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, e)| !e.cleaned && e.job.finished.is_some_and(|f| f.elapsed() > ttl))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.cleanup(&id);
        }
        self.forget_old_jobs();
    }

    /// Jobs wait a bounded time for a worker to appear, then fail saying why.
    fn fail_jobs_without_workers(&mut self) {
        if !self.workers.is_empty() {
            self.no_workers_since = None;
            return;
        }
        let since = *self.no_workers_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.config.worker_wait {
            return;
        }
        let wait = self.config.worker_wait;
        let waiting: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.job.state == JobState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        for id in waiting {
            if let Some(e) = self.jobs.get_mut(&id) {
                e.job.fail(format!(
                    "no live workers for {}s; the job gave up waiting for one",
                    wait.as_secs()
                ));
            }
            self.publish(&id);
        }
    }

    /// Compares what a worker holds with what the scheduler believes it
    /// runs. An attempt the worker holds for a job that is gone (or over)
    /// is cancelled there. An attempt dispatched to it that two heartbeats
    /// in a row do not hold was lost on the way (its launch or its report):
    /// it runs again, not counted against its attempts. (One heartbeat is
    /// not enough: a report may be in flight while it is sent.)
    fn reconcile(&mut self, worker: &WorkerId, held: &[RunningTask]) {
        let held: HashSet<AttemptKey> = held
            .iter()
            .map(|t| (JobId(t.job_id.clone()), t.stage_id, t.task, t.attempt))
            .collect();
        let gone: HashSet<&JobId> = held
            .iter()
            .map(|k| &k.0)
            .filter(|job| {
                self.jobs
                    .get(*job)
                    .is_none_or(|e| e.job.state != JobState::Running)
            })
            .collect();
        let Some(w) = self.workers.get_mut(worker) else {
            return;
        };
        for job in gone {
            tracing::warn!(%worker, %job, "worker holds tasks of a job that is over; cancelling them");
            if let Some(tx) = &w.commands {
                let _ = tx.try_send(WorkerCommand {
                    command: Some(worker_command::Command::CancelJob(job.0.clone())),
                });
            }
        }
        let unheld: HashSet<AttemptKey> = w
            .running
            .keys()
            .filter(|k| !held.contains(*k))
            .cloned()
            .collect();
        let lost: Vec<AttemptKey> = unheld.intersection(&w.unheld).cloned().collect();
        w.unheld = unheld;
        for key in &lost {
            w.running.remove(key);
            w.unheld.remove(key);
        }
        for (job, stage, task, attempt) in lost {
            tracing::warn!(%worker, %job, stage, task, attempt, "a task its worker does not hold was lost; running it again");
            let outcome = match self.jobs.get_mut(&job) {
                Some(e) => e.job.task_stopped(
                    stage,
                    task,
                    attempt,
                    &format!("worker {worker} no longer held it (its launch or report was lost)"),
                ),
                None => Outcome::Ignored,
            };
            if outcome != Outcome::Ignored {
                self.publish(&job);
            }
        }
    }

    fn lose_worker(&mut self, worker: &WorkerId, why: &str) {
        if self.workers.remove(worker).is_none() {
            return;
        }
        tracing::warn!(%worker, "worker lost: {why}");
        self.update_cores();
        let ids: Vec<JobId> = self.order.iter().cloned().collect();
        for id in ids {
            let n = self
                .jobs
                .get_mut(&id)
                .map(|e| e.job.worker_lost(worker))
                .unwrap_or(0);
            if n > 0 {
                self.publish(&id);
            }
        }
    }

    fn task_reported(&mut self, status: TaskStatus) {
        let job_id = JobId(status.job_id.clone());
        let worker = WorkerId(status.worker_id.clone());
        let key = (job_id.clone(), status.stage_id, status.task, status.attempt);
        let flight_url = match self.workers.get_mut(&worker) {
            Some(w) => {
                w.running.remove(&key);
                w.memory_used = status.worker_memory_used;
                w.memory_pinned = status.worker_memory_pinned;
                w.flight_url.clone()
            }
            None => return, // a lost worker's late report: its task was already rescheduled
        };
        let adaptive = self.adaptive();
        let max_attempts = self.config.max_attempts;
        let Some(entry) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let outcome = match status.result {
            Some(task_status::Result::Succeeded(stats)) => {
                let outcome = entry.job.task_succeeded(
                    status.stage_id,
                    status.task,
                    status.attempt,
                    flight_url,
                    stats,
                    &adaptive,
                );
                if let Some((signature, measured)) = entry.job.measured(status.stage_id) {
                    const MOST_SIGNATURES: usize = 10_000;
                    if self.learned.len() >= MOST_SIGNATURES {
                        self.learned.clear();
                    }
                    self.learned.insert(signature.to_string(), measured.clone());
                }
                outcome
            }
            Some(task_status::Result::Failed(f)) => match &f.fetch_failure {
                Some(ff) => entry.job.fetch_failed(
                    status.stage_id,
                    status.task,
                    status.attempt,
                    ff,
                    &f.message,
                ),
                None if f.cancelled => entry.job.task_stopped(
                    status.stage_id,
                    status.task,
                    status.attempt,
                    "its worker stopped it",
                ),
                None => entry.job.task_failed(
                    status.stage_id,
                    status.task,
                    status.attempt,
                    &f,
                    max_attempts,
                ),
            },
            None => Outcome::Ignored,
        };
        if outcome != Outcome::Ignored {
            self.publish(&job_id);
        }
    }

    /// Starts whatever pending tasks the workers admit (see [`crate::admission`]).
    ///
    /// Jobs take turns: the next task comes from the running job with the
    /// fewest tasks running (the oldest on a tie), so no job starves and a
    /// small job's tasks backfill around a large one. Within a job, tasks go
    /// in stage order. A task no worker admits now is passed over, and the
    /// first such task holds the worker where it fits best: nothing else
    /// starts there until it does, so a big task is not starved by small ones.
    fn dispatch(&mut self) {
        struct Queue {
            job: JobId,
            rank: usize,
            running: usize,
            pending: Vec<(usize, usize)>,
            next: usize,
        }
        let mut queues: Vec<Queue> = self
            .order
            .iter()
            .enumerate()
            .filter_map(|(rank, id)| {
                let job = &self.jobs.get(id)?.job;
                let pending = job.pending();
                (!pending.is_empty()).then(|| Queue {
                    job: id.clone(),
                    rank,
                    running: job.running_tasks(),
                    pending,
                    next: 0,
                })
            })
            .collect();
        let memory_aware = self.config.admission;
        let mut held: Option<WorkerId> = None;
        let mut started: Vec<JobId> = vec![];
        loop {
            if !self.workers.iter().any(|(id, w)| {
                w.commands.is_some() && w.room().has_core() && held.as_ref() != Some(id)
            }) {
                break;
            }
            let Some(q) = queues
                .iter_mut()
                .filter(|q| q.next < q.pending.len())
                .min_by_key(|q| (q.running, q.rank))
            else {
                break;
            };
            let (s, t) = q.pending[q.next];
            q.next += 1;
            let Some(job) = self.jobs.get(&q.job).map(|e| &e.job) else {
                continue;
            };
            let prior = self.learned.get(&job.stages[s].signature);
            let estimate = job.estimate(s, t, prior);
            let Some(worker) = self.place(estimate, held.as_ref()) else {
                if memory_aware && held.is_none() {
                    held = self.best_fit();
                }
                continue;
            };
            let entry = self.jobs.get_mut(&q.job).expect("queued job");
            let descriptor = entry.job.start(s, t, &worker, estimate);
            let bytes = match encode(&descriptor) {
                Ok(b) => b,
                Err(e) => {
                    entry.job.fail(format!("could not encode a task: {e}"));
                    q.next = q.pending.len();
                    started.push(q.job.clone());
                    continue;
                }
            };
            q.running += 1;
            started.push(q.job.clone());
            let key = (
                q.job.clone(),
                descriptor.task.stage.0,
                descriptor.task.index,
                descriptor.task.attempt,
            );
            let w = self.workers.get_mut(&worker).expect("placed");
            w.running.insert(key, estimate);
            let launch = WorkerCommand {
                command: Some(worker_command::Command::LaunchTask(bytes)),
            };
            if !w
                .commands
                .as_ref()
                .is_some_and(|c| c.try_send(launch).is_ok())
            {
                self.lose_worker(&worker, "its command stream is closed");
                break;
            }
        }
        started.sort();
        started.dedup();
        for id in started {
            self.publish(&id);
        }
    }

    /// The worker that admits a task of this estimate now, with the most
    /// free cores and then the most free memory; never the held one.
    fn place(&self, estimate: u64, held: Option<&WorkerId>) -> Option<WorkerId> {
        let memory_aware = self.config.admission;
        self.workers
            .iter()
            .filter(|(id, w)| w.commands.is_some() && held != Some(*id))
            .map(|(id, w)| (id, w.room()))
            .filter(|(_, r)| r.admits(estimate, memory_aware))
            .max_by_key(|(id, r)| {
                (
                    r.cores - r.running,
                    r.free(),
                    std::cmp::Reverse((*id).clone()),
                )
            })
            .map(|(id, _)| id.clone())
    }

    /// Where a task that fits nowhere now will fit soonest: the worker with
    /// the most free memory, then the fewest running tasks.
    fn best_fit(&self) -> Option<WorkerId> {
        self.workers
            .iter()
            .filter(|(_, w)| w.commands.is_some())
            .map(|(id, w)| (id, w.room()))
            .max_by_key(|(id, r)| {
                (
                    r.free(),
                    std::cmp::Reverse(r.running),
                    std::cmp::Reverse((*id).clone()),
                )
            })
            .map(|(id, _)| id.clone())
    }

    /// Keeps the most recent finished jobs for `ListJobs`; forgets older ones.
    fn forget_old_jobs(&mut self) {
        const KEEP_FINISHED: usize = 1000;
        let finished = self
            .order
            .iter()
            .filter(|id| self.jobs.get(*id).is_some_and(|e| e.cleaned))
            .count();
        let mut excess = finished.saturating_sub(KEEP_FINISHED);
        let jobs = &mut self.jobs;
        self.order.retain(|id| {
            if excess > 0 && jobs.get(id).is_some_and(|e| e.cleaned) {
                jobs.remove(id);
                excess -= 1;
                false
            } else {
                true
            }
        });
    }

    /// Sends watchers the job's progress, or its end; ends of jobs clean up.
    fn publish(&mut self, id: &JobId) {
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        let stages = entry.job.progress();
        let final_rows = stages.last().map(|s| s.rows_out).unwrap_or(0);
        let event = match &entry.job.state {
            JobState::Running => job_event::Event::Progress(JobProgress { stages }),
            JobState::Succeeded => job_event::Event::Completed(JobCompleted {
                schema: schema_bytes(&entry.job.output_schema),
                results: entry.job.result_locations(),
                stages,
                elapsed_ms: entry
                    .job
                    .finished
                    .map(|f| (f - entry.job.submitted).as_millis() as u64)
                    .unwrap_or(0),
                tasks_retried: entry.job.retries.len() as u32,
                retry_reasons: entry.job.retries.clone(),
                notes: entry.job.notes.clone(),
                copied_to: entry.job.copy_to.clone().unwrap_or_default(),
                rows_written: match &entry.job.copy_to {
                    Some(_) => final_rows,
                    None => 0,
                },
                profile_json: entry.job.profile().to_string(),
                analyzed_plan: entry.job.analyzed_plan(),
                spilled_bytes: entry.job.spill_totals().0,
                spill_files: entry.job.spill_totals().1,
                memory_failures: entry.job.memory_failures,
            }),
            JobState::Failed(m) => job_event::Event::Failed(JobFailed {
                message: m.clone(),
                stages,
            }),
            JobState::Cancelled => job_event::Event::Failed(JobFailed {
                message: format!("job {id} was cancelled"),
                stages,
            }),
        };
        let done = entry.job.state != JobState::Running;
        entry.watchers.retain(|w| {
            w.try_send(Ok(JobEvent {
                event: Some(event.clone()),
            }))
            .is_ok()
                || !done
        });
        if done {
            entry.watchers.clear();
            // Results stay until the client releases them; everything else goes now.
            let keep = entry.job.state == JobState::Succeeded && entry.job.copy_to.is_none();
            if !keep {
                self.cleanup(id);
            }
        }
    }

    /// Tells every worker to stop the job's tasks and delete its files.
    fn cleanup(&mut self, id: &JobId) {
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        if entry.cleaned {
            return;
        }
        entry.cleaned = true;
        for w in self.workers.values() {
            if let Some(c) = &w.commands {
                let _ = c.try_send(WorkerCommand {
                    command: Some(worker_command::Command::RemoveJob(id.0.clone())),
                });
            }
        }
    }
}

/// The schema as an Arrow IPC stream with no batches.
fn schema_bytes(schema: &arrow::datatypes::Schema) -> Vec<u8> {
    let mut buf = vec![];
    if let Ok(mut w) = arrow::ipc::writer::StreamWriter::try_new(&mut buf, schema) {
        let _ = w.finish();
    }
    buf
}

pub async fn run_event_loop(mut state: SchedulerState, mut events: mpsc::Receiver<Event>) {
    while let Some(e) = events.recv().await {
        state.handle(e);
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
