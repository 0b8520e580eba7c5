//! Workers as the core sees them: registration, heartbeats, what they hold,
//! and losing them.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use keel_proto::ids::{AttemptId, JobId, WorkerId};
use keel_proto::pb::{worker_command, RunningTask};
use keel_proto::size::memory_pool_size;

use super::metrics::{EndReason, TaskRecord};
use super::{Command, SchedulerState};
use crate::admission::Room;
use crate::job::{JobState, Outcome};

/// One task attempt of one job.
pub(super) type AttemptKey = (JobId, AttemptId);

/// A task attempt dispatched to a worker and not heard back about.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placed {
    /// The peak memory admission expected of it.
    pub estimate: u64,
    /// The worker core it was given (a row of the task stream).
    pub slot: u32,
    /// When it was dispatched, in ms since the scheduler started.
    pub start_ms: u64,
}

pub(super) struct WorkerEntry {
    pub flight_url: String,
    pub cores: u32,
    pub memory_limit: u64,
    /// Reserved in the worker's pool, and of that what cannot spill, as of
    /// its last heartbeat or task report.
    pub memory_used: u64,
    pub memory_pinned: u64,
    pub running: HashMap<AttemptKey, Placed>,
    /// Of those, the ones its last heartbeat did not hold: lost if the
    /// next one does not hold them either (see `reconcile`).
    pub unheld: HashSet<AttemptKey>,
    pub last_seen: Instant,
    /// Whether its command stream is open (the core can send it tasks).
    pub connected: bool,
    /// What its finished tasks spilled, and how many finished.
    pub spilled_bytes: u64,
    pub tasks_done: u64,
}

impl WorkerEntry {
    pub fn room(&self) -> Room {
        let estimated: u64 = self.running.values().map(|p| p.estimate).sum();
        Room {
            cores: self.cores,
            running: self.running.len() as u32,
            budget: memory_pool_size(self.memory_limit),
            // Spillable consumers grow into whatever the pool has, so only
            // what cannot spill corrects the estimates.
            load: estimated.max(self.memory_pinned),
        }
    }

    /// The lowest core no running attempt has.
    pub fn free_slot(&self) -> u32 {
        let used: HashSet<u32> = self.running.values().map(|p| p.slot).collect();
        (0..).find(|s| !used.contains(s)).unwrap_or(0)
    }
}

impl SchedulerState {
    pub(super) fn register(
        &mut self,
        flight_url: String,
        cores: u32,
        memory_limit: u64,
    ) -> WorkerId {
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
                connected: false,
                spilled_bytes: 0,
                tasks_done: 0,
            },
        );
        self.update_cores();
        id
    }

    /// Marks a registered worker's command stream open; false if the worker is not known.
    pub(super) fn connect(&mut self, worker: &WorkerId) -> bool {
        match self.workers.get_mut(worker) {
            Some(w) => {
                w.connected = true;
                w.last_seen = Instant::now();
                true
            }
            None => false,
        }
    }

    pub(super) fn heartbeat(&mut self, worker: &WorkerId, used: u64, pinned: u64) -> bool {
        match self.workers.get_mut(worker) {
            Some(w) => {
                w.last_seen = Instant::now();
                w.memory_used = used;
                w.memory_pinned = pinned;
                true
            }
            None => false,
        }
    }

    /// Takes an attempt off its worker's books and records how it ended.
    pub(super) fn end_attempt(&mut self, worker: &WorkerId, key: &AttemptKey, reason: EndReason) {
        let Some(placed) = self
            .workers
            .get_mut(worker)
            .and_then(|w| w.running.remove(key))
        else {
            return;
        };
        let end_ms = self.now_ms();
        self.metrics.task_ended(TaskRecord {
            job: key.0.clone(),
            attempt: key.1,
            worker: worker.clone(),
            slot: placed.slot,
            start_ms: placed.start_ms,
            end_ms,
            reason,
        });
    }

    pub(super) fn lose_silent_workers(&mut self) {
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
    }

    /// Jobs wait a bounded time for a worker to appear, then fail saying why.
    pub(super) fn fail_jobs_without_workers(&mut self) {
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
    pub(super) fn reconcile(&mut self, worker: &WorkerId, held: &[RunningTask]) {
        let held: HashSet<AttemptKey> = held
            .iter()
            .map(|t| (JobId(t.job_id.clone()), t.attempt_id()))
            .collect();
        let mut gone: Vec<&JobId> = held
            .iter()
            .map(|k| &k.0)
            .filter(|job| {
                self.jobs
                    .get(*job)
                    .is_none_or(|e| e.job.state != JobState::Running)
            })
            .collect();
        gone.sort();
        gone.dedup();
        let connected = self.workers.get(worker).is_some_and(|w| w.connected);
        for job in gone.into_iter().filter(|_| connected) {
            tracing::warn!(%worker, %job, "worker holds tasks of a job that is over; cancelling them");
            self.out.push(Command::ToWorker {
                worker: worker.clone(),
                command: worker_command::Command::CancelJob(job.0.clone()),
            });
        }
        let Some(w) = self.workers.get_mut(worker) else {
            return;
        };
        let unheld: HashSet<AttemptKey> = w
            .running
            .keys()
            .filter(|k| !held.contains(*k))
            .cloned()
            .collect();
        let lost: Vec<AttemptKey> = unheld.intersection(&w.unheld).cloned().collect();
        w.unheld = unheld;
        for key in &lost {
            w.unheld.remove(key);
        }
        for key in lost {
            self.end_attempt(worker, &key, EndReason::Stopped);
            let (job, id) = key;
            let span = tracing::warn_span!("task", %job, stage = id.stage().0, task = id.index(), attempt = id.attempt);
            let _span = span.enter();
            tracing::warn!(%worker, "a task its worker does not hold was lost; running it again");
            let outcome = match self.jobs.get_mut(&job) {
                Some(e) => e.job.task_stopped(
                    id,
                    &format!("worker {worker} no longer held it (its launch or report was lost)"),
                ),
                None => Outcome::Ignored,
            };
            if outcome == Outcome::Retrying {
                self.metrics.retried(EndReason::Stopped);
            }
            if outcome != Outcome::Ignored {
                self.publish(&job);
            }
        }
    }

    pub(super) fn lose_worker(&mut self, worker: &WorkerId, why: &str) {
        let Some(w) = self.workers.get(worker) else {
            return;
        };
        tracing::warn!(%worker, "worker lost: {why}");
        let running: Vec<AttemptKey> = w.running.keys().cloned().collect();
        for key in &running {
            self.end_attempt(worker, key, EndReason::WorkerLost);
        }
        self.workers.remove(worker);
        self.out.push(Command::Detach {
            worker: worker.clone(),
        });
        self.update_cores();
        let ids: Vec<JobId> = self.order.iter().cloned().collect();
        for id in ids {
            let n = self
                .jobs
                .get_mut(&id)
                .map(|e| e.job.worker_lost(worker))
                .unwrap_or(0);
            if n > 0 {
                *self
                    .metrics
                    .retries
                    .entry(EndReason::WorkerLost)
                    .or_default() += n as u64;
                self.publish(&id);
            }
        }
    }
}
