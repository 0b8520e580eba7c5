//! A job's task transitions: what a task's success, failure or loss does to
//! its stage and job. Each takes the attempt it is about, so a late report
//! of an attempt that was superseded is ignored.

use std::time::Instant;

use keel_proto::ids::{AttemptId, TaskId, WorkerId};
use keel_proto::pb::{FetchFailure, TaskFailed, TaskSucceeded};

use super::{Job, JobState, Outcome, StageState, TaskState, MAX_FETCH_FAILURES, MAX_STOPS};
use crate::adaptive::AdaptiveConfig;
use crate::admission;
use crate::planner::stages::human_bytes;

impl Job {
    pub fn task_succeeded(
        &mut self,
        id: AttemptId,
        flight_url: String,
        stats: TaskSucceeded,
        config: &AdaptiveConfig,
    ) -> Outcome {
        if self.state != JobState::Running {
            return Outcome::Ignored;
        }
        let Some((s, run)) = self.running_task(id) else {
            return Outcome::Ignored;
        };
        let (worker, estimate) = match &run.state {
            TaskState::Running {
                worker, estimate, ..
            } => (worker.clone(), *estimate),
            _ => unreachable!("running"),
        };
        let input_bytes = run.spec.bytes();
        let wanted = if stats.spilled_bytes > 0 {
            stats.peak_memory.max(estimate)
        } else {
            stats.peak_memory
        };
        run.state = TaskState::Done {
            worker,
            attempt: id.attempt,
            flight_url,
            stats,
            estimate,
        };
        let stage_run = &mut self.stages[s];
        stage_run.measured.record(input_bytes, wanted);
        if stage_run
            .tasks
            .iter()
            .all(|t| matches!(t.state, TaskState::Done { .. }))
        {
            if let StageState::Running { started } = stage_run.state {
                stage_run.state = StageState::Done {
                    started,
                    finished: Instant::now(),
                };
            }
            self.advance(config);
        }
        Outcome::Progressed
    }

    pub fn task_failed(
        &mut self,
        id: AttemptId,
        failed: &TaskFailed,
        max_attempts: u32,
    ) -> Outcome {
        if self.state != JobState::Running {
            return Outcome::Ignored;
        }
        let Some((_, run)) = self.running_task(id) else {
            return Outcome::Ignored;
        };
        let task = id.task;
        let (message, out_of_memory) = (failed.message.as_str(), failed.out_of_memory);
        if failed.user_error {
            // The query or its data is at fault: another attempt would fail alike.
            self.fail(format!("{task} failed: {message}"));
            return Outcome::JobFailed;
        }
        run.failures += 1;
        let mut why = message.to_string();
        if out_of_memory {
            run.memory_failures += 1;
            if let TaskState::Running { estimate, .. } = run.state {
                why = format!(
                    "{message} (out of memory; estimate raised from {} to {})",
                    human_bytes(estimate),
                    human_bytes(admission::raised(estimate, 1))
                );
            }
        }
        if run.failures >= max_attempts {
            let msg = format!("{task} failed after {} attempts: {message}", run.failures);
            self.fail(msg);
            return Outcome::JobFailed;
        }
        run.state = TaskState::Pending;
        self.memory_failures += out_of_memory as u32;
        self.retries.push(format!("{id}: {why}"));
        Outcome::Retrying
    }

    /// The task stopped through no fault of its own (its worker is shutting
    /// down, or lost track of it; `why` says which): run it again, uncounted.
    pub fn task_stopped(&mut self, id: AttemptId, why: &str) -> Outcome {
        if self.state != JobState::Running {
            return Outcome::Ignored;
        }
        let Some((_, run)) = self.running_task(id) else {
            return Outcome::Ignored;
        };
        run.stops += 1;
        if run.stops > MAX_STOPS {
            let task = id.task;
            self.fail(format!("{task} was stopped {MAX_STOPS} times: {why}"));
            return Outcome::JobFailed;
        }
        run.state = TaskState::Pending;
        self.retries.push(format!("{id}: {why}"));
        Outcome::Retrying
    }

    /// A lost worker's running tasks go back to pending, and so do its
    /// finished map outputs that an unfinished stage still needs: they are
    /// recomputed from lineage (their stage reruns just those tasks).
    pub fn worker_lost(&mut self, worker: &WorkerId) -> usize {
        if self.state != JobState::Running {
            return 0;
        }
        let needed = self.needed_stages();
        let mut n = 0;
        let mut recomputed = vec![];
        for (s, stage) in self.stages.iter_mut().enumerate() {
            let mut reopened = false;
            for (t, task) in stage.tasks.iter_mut().enumerate() {
                let lost = match &task.state {
                    TaskState::Running { worker: w, .. } => w == worker,
                    TaskState::Done { worker: w, .. } => w == worker && needed[s],
                    TaskState::Pending => false,
                };
                if lost {
                    let what = if matches!(task.state, TaskState::Done { .. }) {
                        "recomputing its output"
                    } else {
                        "rerunning it"
                    };
                    if matches!(task.state, TaskState::Done { .. }) {
                        reopened = true;
                        recomputed.push(TaskId {
                            stage: stage.plan.id,
                            index: t as u32,
                        });
                    }
                    task.state = TaskState::Pending;
                    self.retries.push(format!(
                        "stage {} task {t}: worker {worker} was lost; {what}",
                        stage.plan.id.0
                    ));
                    n += 1;
                }
            }
            if reopened {
                stage.reopen();
            }
        }
        for map_task in recomputed {
            n += self.rerun_row_range_readers(map_task);
        }
        n
    }

    /// A recomputed map output may hold its rows in another order (a map
    /// task reading shuffled input receives it in arrival order), so tasks
    /// of unfinished stages that read row ranges of it (splits of a skewed
    /// partition) run again against the new output, lest a row be read
    /// twice or never. Returns how many were reset.
    fn rerun_row_range_readers(&mut self, map_task: TaskId) -> usize {
        let producer = map_task.stage;
        let mut n = 0;
        for stage in &mut self.stages {
            if matches!(stage.state, StageState::Done { .. }) {
                continue;
            }
            let Some(i) = stage
                .plan
                .inputs
                .iter()
                .position(|inp| inp.stage == producer)
            else {
                continue;
            };
            for (t, task) in stage.tasks.iter_mut().enumerate() {
                let reads_range = task.spec.inputs[i]
                    .iter()
                    .any(|sl| sl.map_task == map_task.index && sl.rows.is_some());
                if reads_range && !matches!(task.state, TaskState::Pending) {
                    task.state = TaskState::Pending;
                    self.retries.push(format!(
                        "stage {} task {t}: it read a row range of {map_task}, which is recomputed; rerunning it",
                        stage.plan.id.0
                    ));
                    n += 1;
                }
            }
        }
        n
    }

    /// Stages whose output some unfinished stage still has to read.
    fn needed_stages(&self) -> Vec<bool> {
        let mut needed = vec![false; self.stages.len()];
        for stage in &self.stages {
            if matches!(stage.state, StageState::Done { .. }) {
                continue;
            }
            for input in &stage.plan.inputs {
                if let Some(i) = self.index(input.stage) {
                    needed[i] = true;
                }
            }
        }
        needed
    }

    /// A task could not read a map output: the output is treated as lost
    /// and recomputed, and the task waits for it. This does not count
    /// against the task's attempts unless it keeps happening.
    pub fn fetch_failed(
        &mut self,
        id: AttemptId,
        failure: &FetchFailure,
        message: &str,
    ) -> Outcome {
        if self.state != JobState::Running {
            return Outcome::Ignored;
        }
        let Some((_, run)) = self.running_task(id) else {
            return Outcome::Ignored;
        };
        run.fetch_failures += 1;
        if run.fetch_failures > MAX_FETCH_FAILURES {
            let task = id.task;
            let msg =
                format!("{task} could not read its input {MAX_FETCH_FAILURES} times: {message}");
            self.fail(msg);
            return Outcome::JobFailed;
        }
        run.state = TaskState::Pending;
        self.retries
            .push(format!("{id}: {message}; recomputing that map output"));
        let lost = TaskId::new(failure.stage_id, failure.task);
        if let Some(p) = self.index(lost.stage) {
            let producer = &mut self.stages[p];
            if let Some(m) = producer.tasks.get_mut(failure.task as usize) {
                if matches!(&m.state, TaskState::Done { flight_url, .. } if *flight_url == failure.flight_url)
                {
                    m.state = TaskState::Pending;
                    producer.reopen();
                    self.rerun_row_range_readers(lost);
                }
            }
        }
        Outcome::Retrying
    }
}
