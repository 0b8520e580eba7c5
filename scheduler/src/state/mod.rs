//! The scheduler's core: its state and the handlers that change it.
//!
//! gRPC and HTTP handlers turn requests into past-tense [`Event`]s; the one
//! event loop ([`links::run_event_loop`]) applies them one at a time with
//! [`SchedulerState::handle`], which returns the [`Command`]s to send
//! (launches and cancels to workers, progress to watchers) and never sends
//! anything itself. Nothing else touches workers, jobs or tasks, so no locks
//! guard them, and tests drive the core with events and read its commands.
//!
//! - [`workers`]: registration, heartbeats, reconciling what workers hold, losing them.
//! - [`dispatch`]: placing pending tasks on workers (admission and fairness).
//! - [`reports`]: task reports, publishing job state, cleanup.
//! - [`views`]: the JSON and Prometheus views the HTTP API serves.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use keel_proto::ids::{JobId, WorkerId};
use keel_proto::pb::{ClusterStatusResponse, WorkerSummary};

use crate::adaptive::AdaptiveConfig;
use crate::admission::Measured;
use crate::error::SchedulerError;
use crate::job::{Job, JobState};

mod config;
mod dispatch;
mod event;
pub mod links;
mod metrics;
mod reports;
mod views;
mod workers;

pub use config::SchedulerConfig;
pub use event::{Command, Event, JobEvents, View};
pub use links::run_event_loop;
pub use metrics::{EndReason, Metrics};
use workers::WorkerEntry;

struct JobEntry {
    job: Job,
    /// Whether workers were told to delete the job's files.
    cleaned: bool,
    /// Whether its end was counted in the metrics.
    ended: bool,
    /// Its summary for the HTTP API, once it is over (it no longer changes).
    rendered: std::cell::OnceCell<String>,
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
    metrics: Metrics,
    /// When the scheduler started: the task stream's times count from it.
    started: Instant,
    /// What the handler of the current event asks to be done.
    out: Vec<Command>,
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
            metrics: Metrics::default(),
            started: Instant::now(),
            out: vec![],
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

    /// Milliseconds since the scheduler started.
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Applies one event, starts whatever can run, and returns what to send.
    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::WorkerRegistered {
                flight_url,
                cores,
                memory_limit,
                reply,
            } => {
                let id = self.register(flight_url, cores, memory_limit);
                let _ = reply.send(id);
            }
            Event::WorkerConnected {
                worker,
                commands,
                reply,
            } => {
                let known = self.connect(&worker);
                if known {
                    self.out.push(Command::Attach {
                        worker,
                        stream: commands,
                    });
                }
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
                let known = self.heartbeat(&worker, memory_used, memory_pinned);
                let _ = reply.send(known);
                if known {
                    self.reconcile(&worker, &running);
                }
            }
            Event::TaskReported(status) => self.task_reported(status),
            Event::JobSubmitted { job } => {
                let mut job = *job;
                tracing::info!(job = %job.id, stages = job.stages.len(), "job submitted");
                self.metrics.jobs_submitted += 1;
                job.advance(&self.adaptive());
                let id = job.id.clone();
                self.order.push_back(id.clone());
                self.jobs.insert(
                    id.clone(),
                    JobEntry {
                        job,
                        cleaned: false,
                        ended: false,
                        rendered: Default::default(),
                    },
                );
                self.publish(&id);
            }
            Event::WatchRequested { job, events, reply } => {
                if self.jobs.contains_key(&job) {
                    self.out.push(Command::Watch {
                        job: job.clone(),
                        watcher: events,
                    });
                    let _ = reply.send(Ok(()));
                    self.publish(&job);
                } else {
                    let _ = reply.send(Err(SchedulerError::UnknownJob { job: job.0 }));
                }
            }
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
            Event::ViewRequested { view, reply } => {
                let _ = reply.send(self.render(&view));
            }
            Event::TimerTicked => self.tick(),
        }
        self.dispatch();
        std::mem::take(&mut self.out)
    }

    fn update_cores(&self) {
        let cores: u32 = self.workers.values().map(|w| w.cores).sum();
        self.total_cores
            .store(cores.max(1) as usize, Ordering::Relaxed);
    }

    fn tick(&mut self) {
        self.lose_silent_workers();
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
}

#[cfg(test)]
mod tests;
