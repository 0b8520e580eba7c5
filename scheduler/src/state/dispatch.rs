//! Placing pending tasks on workers (see [`crate::admission`]).

use keel_proto::ids::{JobId, TaskId, WorkerId};
use keel_proto::pb::worker_command;
use keel_proto::task::encode;

use super::workers::Placed;
use super::{Command, SchedulerState};

impl SchedulerState {
    /// Starts whatever pending tasks the workers admit.
    ///
    /// Jobs take turns: the next task comes from the running job with the
    /// fewest tasks running (the oldest on a tie), so no job starves and a
    /// small job's tasks backfill around a large one. Within a job, tasks go
    /// in stage order. A task no worker admits now is passed over, and the
    /// first such task holds the worker where it fits best: nothing else
    /// starts there until it does, so a big task is not starved by small ones.
    pub(super) fn dispatch(&mut self) {
        struct Queue {
            job: JobId,
            rank: usize,
            running: usize,
            pending: Vec<TaskId>,
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
            if !self
                .workers
                .iter()
                .any(|(id, w)| w.connected && w.room().has_core() && held.as_ref() != Some(id))
            {
                break;
            }
            let Some(q) = queues
                .iter_mut()
                .filter(|q| q.next < q.pending.len())
                .min_by_key(|q| (q.running, q.rank))
            else {
                break;
            };
            let task = q.pending[q.next];
            q.next += 1;
            let Some(job) = self.jobs.get(&q.job).map(|e| &e.job) else {
                continue;
            };
            let prior = job
                .measured(task.stage)
                .and_then(|(signature, _)| self.learned.get(signature));
            let estimate = job.estimate(task, prior);
            let Some(worker) = self.place(estimate, held.as_ref()) else {
                if memory_aware && held.is_none() {
                    held = self.best_fit();
                }
                continue;
            };
            let entry = self.jobs.get_mut(&q.job).expect("queued job");
            let descriptor = entry.job.start(task, &worker, estimate);
            started.push(q.job.clone());
            let bytes = match encode(&descriptor) {
                Ok(b) => b,
                Err(e) => {
                    entry.job.fail(format!("could not encode a task: {e}"));
                    q.next = q.pending.len();
                    continue;
                }
            };
            q.running += 1;
            let start_ms = self.now_ms();
            let w = self.workers.get_mut(&worker).expect("placed");
            let slot = w.free_slot();
            w.running.insert(
                (q.job.clone(), descriptor.attempt),
                Placed {
                    estimate,
                    slot,
                    start_ms,
                },
            );
            self.metrics.tasks_started += 1;
            let id = descriptor.attempt;
            tracing::debug!(job = %q.job, stage = id.stage().0, task = id.index(), attempt = id.attempt, %worker, estimate, "task dispatched");
            self.out.push(Command::ToWorker {
                worker,
                command: worker_command::Command::LaunchTask(bytes),
            });
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
            .filter(|(id, w)| w.connected && held != Some(*id))
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
            .filter(|(_, w)| w.connected)
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
}
