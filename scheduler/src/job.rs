//! One job's stages and tasks, and their state machines.
//!
//! ```text
//! Stage:  Waiting ──inputs done──▶ Running ──all tasks done──▶ Done
//! Task:   Pending ──dispatched──▶ Running ──succeeded──▶ Done
//!            ▲                       │
//!            └──failed (attempts left) / worker lost
//! Job:    Running ──final stage done──▶ Succeeded
//!            └──task out of attempts, or a user error──▶ Failed
//!            └──cancel──▶ Cancelled
//! ```

use std::time::Instant;

use arrow::datatypes::Schema;
use keel_proto::ids::{JobId, StageId, TaskId, WorkerId};
use keel_proto::pb::{
    FetchFailure, JobSummary, ResultLocation, StageProgress, TaskFailed, TaskSucceeded,
};
use keel_proto::plan::{FileSplit, PlanNode};
use keel_proto::task::{encode, FetchSpec, PartitionTicket, ShuffleInput, TaskDescriptor};

use crate::adaptive::{plan_tasks, AdaptiveConfig, MapOutput, TaskSpec};
use crate::admission::{self, Measured};
use crate::planner::stages::{
    explain, human_bytes, operators_text, InputMode, StageGraph, StagePlan,
};
use crate::skew::SkewSplit;

#[derive(Debug, Clone)]
pub enum TaskState {
    Pending,
    Running {
        worker: WorkerId,
        attempt: u32,
        /// The peak memory admission expected of this attempt.
        estimate: u64,
    },
    Done {
        worker: WorkerId,
        attempt: u32,
        flight_url: String,
        stats: TaskSucceeded,
        estimate: u64,
    },
}

#[derive(Debug, Clone)]
pub struct TaskRun {
    pub spec: TaskSpec,
    pub state: TaskState,
    /// Attempts started so far; the next attempt's number.
    pub attempts: u32,
    /// Attempts that failed with the task's own error (counted against the limit).
    pub failures: u32,
    /// Attempts that could not read an input (the input is recomputed instead).
    pub fetch_failures: u32,
    /// Attempts that failed for memory (each doubles the estimate).
    pub memory_failures: u32,
}

/// Fetch failures one task may see before its job fails: more means the
/// outputs it needs keep vanishing, and recomputing them again will not help.
const MAX_FETCH_FAILURES: u32 = 10;

impl StageRun {
    /// A finished stage whose outputs were lost runs the lost tasks again.
    fn reopen(&mut self) {
        if let StageState::Done { started, .. } = self.state {
            self.state = StageState::Running { started };
        }
    }
}

#[derive(Debug, Clone)]
pub enum StageState {
    Waiting,
    Running { started: Instant },
    Done { started: Instant, finished: Instant },
}

#[derive(Debug)]
pub struct StageRun {
    pub plan: StagePlan,
    pub state: StageState,
    pub tasks: Vec<TaskRun>,
    /// What its finished tasks held, for estimating the rest.
    pub measured: Measured,
    /// Its operators as text: stages of other jobs with the same text are
    /// estimated from this one's measurements until they have their own.
    pub signature: String,
    /// Skewed partitions split over several tasks when the stage was planned.
    pub splits: Vec<SkewSplit>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed(String),
    Cancelled,
}

#[derive(Debug)]
pub struct Job {
    pub id: JobId,
    pub sql: String,
    pub stages: Vec<StageRun>,
    pub output_schema: Schema,
    pub copy_to: Option<String>,
    pub state: JobState,
    pub submitted: Instant,
    pub finished: Option<Instant>,
    /// One line per retried task attempt: which task and why.
    pub retries: Vec<String>,
    /// Adaptive planning decisions, for the job report.
    pub notes: Vec<String>,
    /// Task attempts that failed for memory.
    pub memory_failures: u32,
}

/// What a task report changed.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Ignored,
    Progressed,
    Retrying,
    JobFailed,
}

impl Job {
    pub fn new(id: JobId, sql: String, graph: StageGraph) -> Job {
        let stages = graph
            .stages
            .into_iter()
            .map(|plan| StageRun {
                signature: operators_text(&plan.plan),
                plan,
                state: StageState::Waiting,
                tasks: vec![],
                measured: Measured::default(),
                splits: vec![],
            })
            .collect();
        Job {
            id,
            sql,
            stages,
            output_schema: graph.output_schema,
            copy_to: graph.copy_to,
            state: JobState::Running,
            submitted: Instant::now(),
            finished: None,
            retries: vec![],
            notes: vec![],
            memory_failures: 0,
        }
    }

    fn index(&self, stage: StageId) -> Option<usize> {
        let i = stage.0.checked_sub(1)? as usize;
        (i < self.stages.len()).then_some(i)
    }

    fn outputs_of(&self, stage: StageId) -> Vec<MapOutput> {
        let Some(i) = self.index(stage) else {
            return vec![];
        };
        self.stages[i]
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(t, task)| match &task.state {
                TaskState::Done { stats, .. } => Some(MapOutput {
                    stage,
                    map_task: t as u32,
                    partitions: partition_sizes(stats),
                    key_sketch: stats.key_sketch.clone(),
                    key_labels: stats
                        .key_labels
                        .iter()
                        .map(|l| (l.hash, l.value.clone()))
                        .collect(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Plans every waiting stage whose inputs are done; finishes the job when the last stage is.
    pub fn advance(&mut self, config: &AdaptiveConfig) {
        if self.state != JobState::Running {
            return;
        }
        for i in 0..self.stages.len() {
            if !matches!(self.stages[i].state, StageState::Waiting) {
                continue;
            }
            let ready = self.stages[i].plan.inputs.iter().all(|input| {
                self.index(input.stage)
                    .is_some_and(|j| matches!(self.stages[j].state, StageState::Done { .. }))
            });
            if !ready {
                continue;
            }
            let outputs: Vec<Vec<MapOutput>> = self.stages[i]
                .plan
                .inputs
                .iter()
                .map(|inp| self.outputs_of(inp.stage))
                .collect();
            let planned = plan_tasks(&mut self.stages[i].plan, &outputs, config);
            for n in planned.notes {
                tracing::info!(job = %self.id, "{n}");
                self.notes.push(n);
            }
            let stage = &mut self.stages[i];
            stage.splits = planned.splits;
            stage.tasks = planned
                .tasks
                .into_iter()
                .map(|spec| TaskRun {
                    spec,
                    state: TaskState::Pending,
                    attempts: 0,
                    failures: 0,
                    fetch_failures: 0,
                    memory_failures: 0,
                })
                .collect();
            stage.state = StageState::Running {
                started: Instant::now(),
            };
        }
        if matches!(
            self.stages.last().map(|s| &s.state),
            Some(StageState::Done { .. })
        ) {
            self.state = JobState::Succeeded;
            self.finished = Some(Instant::now());
        }
    }

    /// Pending tasks, in stage order.
    pub fn pending(&self) -> Vec<(usize, usize)> {
        if self.state != JobState::Running {
            return vec![];
        }
        let mut out = vec![];
        for (s, stage) in self.stages.iter().enumerate() {
            if !matches!(stage.state, StageState::Running { .. }) {
                continue;
            }
            for (t, task) in stage.tasks.iter().enumerate() {
                if matches!(task.state, TaskState::Pending) && self.inputs_ready(s, t) {
                    out.push((s, t));
                }
            }
        }
        out
    }

    /// Whether every map output the task reads is available (it may be
    /// being recomputed after a worker was lost).
    fn inputs_ready(&self, s: usize, t: usize) -> bool {
        let stage = &self.stages[s];
        stage.tasks[t]
            .spec
            .inputs
            .iter()
            .zip(&stage.plan.inputs)
            .all(|(slices, input)| {
                let Some(p) = self.index(input.stage) else {
                    return false;
                };
                slices.iter().all(|sl| {
                    matches!(
                        self.stages[p]
                            .tasks
                            .get(sl.map_task as usize)
                            .map(|m| &m.state),
                        Some(TaskState::Done { .. })
                    )
                })
            })
    }

    /// Where each input slice of a task lives now.
    fn resolve_inputs(&self, s: usize, t: usize) -> Vec<ShuffleInput> {
        let stage = &self.stages[s];
        stage.tasks[t]
            .spec
            .inputs
            .iter()
            .zip(&stage.plan.inputs)
            .enumerate()
            .map(|(i, (slices, input))| {
                let bytes = stage.tasks[t].spec.input_bytes.get(i).copied().unwrap_or(0);
                let p = self.index(input.stage).expect("input stage");
                let fetches = slices
                    .iter()
                    .filter_map(
                        |sl| match &self.stages[p].tasks[sl.map_task as usize].state {
                            TaskState::Done {
                                attempt,
                                flight_url,
                                ..
                            } => Some(FetchSpec {
                                flight_url: flight_url.clone(),
                                stage: input.stage,
                                map_task: sl.map_task,
                                attempt: *attempt,
                                partitions: sl.partitions.clone(),
                                rows: sl.rows,
                            }),
                            _ => None,
                        },
                    )
                    .collect();
                ShuffleInput {
                    fetches,
                    broadcast: input.mode == InputMode::Broadcast,
                    bytes,
                }
            })
            .collect()
    }

    /// Tasks of this job running now.
    pub fn running_tasks(&self) -> usize {
        self.stages
            .iter()
            .flat_map(|s| &s.tasks)
            .filter(|t| matches!(t.state, TaskState::Running { .. }))
            .count()
    }

    /// The peak memory task `t` of stage `s` is expected to hold: measured
    /// on its stage's finished tasks if any, else on `prior` (a like stage
    /// of an earlier job), else the operator model; raised after failures
    /// for memory.
    pub fn estimate(&self, s: usize, t: usize, prior: Option<&Measured>) -> u64 {
        let stage = &self.stages[s];
        let task = &stage.tasks[t];
        let bytes = task.spec.bytes();
        let base = stage
            .measured
            .estimate(bytes)
            .or_else(|| prior.and_then(|m| m.estimate(bytes)))
            .unwrap_or_else(|| admission::model(&stage.plan.plan, &task.spec));
        admission::raised(base, task.memory_failures)
    }

    /// A stage's signature and what its finished tasks measured.
    pub fn measured(&self, stage: u32) -> Option<(&str, &Measured)> {
        let s = &self.stages[self.index(StageId(stage))?];
        Some((&s.signature, &s.measured))
    }

    /// Marks a task running on `worker` and returns what to send it.
    pub fn start(
        &mut self,
        s: usize,
        t: usize,
        worker: &WorkerId,
        estimate: u64,
    ) -> TaskDescriptor {
        let inputs = self.resolve_inputs(s, t);
        let stage = &mut self.stages[s];
        let task = &mut stage.tasks[t];
        let attempt = task.attempts;
        task.attempts += 1;
        task.state = TaskState::Running {
            worker: worker.clone(),
            attempt,
            estimate,
        };
        let plan = match &task.spec.splits {
            Some(splits) => with_splits(&stage.plan.plan, splits),
            None => stage.plan.plan.clone(),
        };
        TaskDescriptor {
            job: self.id.clone(),
            task: TaskId {
                stage: stage.plan.id,
                index: t as u32,
                attempt,
            },
            plan,
            sink: stage.plan.sink.clone(),
            inputs,
        }
    }

    fn running_task(
        &mut self,
        stage: u32,
        task: u32,
        attempt: u32,
    ) -> Option<(usize, &mut TaskRun)> {
        let s = self.index(StageId(stage))?;
        let run = self.stages[s].tasks.get_mut(task as usize)?;
        match &run.state {
            TaskState::Running { attempt: a, .. } if *a == attempt => Some((s, run)),
            _ => None,
        }
    }

    pub fn task_succeeded(
        &mut self,
        stage: u32,
        task: u32,
        attempt: u32,
        flight_url: String,
        stats: TaskSucceeded,
        config: &AdaptiveConfig,
    ) -> Outcome {
        if self.state != JobState::Running {
            return Outcome::Ignored;
        }
        let Some((s, run)) = self.running_task(stage, task, attempt) else {
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
            attempt,
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
        stage: u32,
        task: u32,
        attempt: u32,
        failed: &TaskFailed,
        max_attempts: u32,
    ) -> Outcome {
        if self.state != JobState::Running {
            return Outcome::Ignored;
        }
        let Some((_, run)) = self.running_task(stage, task, attempt) else {
            return Outcome::Ignored;
        };
        let (message, out_of_memory) = (failed.message.as_str(), failed.out_of_memory);
        if failed.user_error {
            // The query or its data is at fault: another attempt would fail alike.
            self.fail(format!("stage {stage} task {task} failed: {message}"));
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
            let msg = format!(
                "stage {stage} task {task} failed after {} attempts: {message}",
                run.failures
            );
            self.fail(msg);
            return Outcome::JobFailed;
        }
        run.state = TaskState::Pending;
        self.memory_failures += out_of_memory as u32;
        self.retries.push(format!(
            "stage {stage} task {task} attempt {attempt}: {why}"
        ));
        Outcome::Retrying
    }

    /// The task stopped through no fault of its own (its worker is shutting
    /// down, or lost track of it; `why` says which): run it again, uncounted.
    pub fn task_stopped(&mut self, stage: u32, task: u32, attempt: u32, why: &str) -> Outcome {
        if self.state != JobState::Running {
            return Outcome::Ignored;
        }
        let Some((_, run)) = self.running_task(stage, task, attempt) else {
            return Outcome::Ignored;
        };
        run.state = TaskState::Pending;
        self.retries.push(format!(
            "stage {stage} task {task} attempt {attempt}: {why}"
        ));
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
                        recomputed.push((stage.plan.id, t as u32));
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
        for (stage, map_task) in recomputed {
            n += self.rerun_row_range_readers(stage, map_task);
        }
        n
    }

    /// A recomputed map output may hold its rows in another order (a map
    /// task reading shuffled input receives it in arrival order), so tasks
    /// of unfinished stages that read row ranges of it (splits of a skewed
    /// partition) run again against the new output, lest a row be read
    /// twice or never. Returns how many were reset.
    fn rerun_row_range_readers(&mut self, producer: StageId, map_task: u32) -> usize {
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
                    .any(|sl| sl.map_task == map_task && sl.rows.is_some());
                if reads_range && !matches!(task.state, TaskState::Pending) {
                    task.state = TaskState::Pending;
                    self.retries.push(format!(
                        "stage {} task {t}: it read a row range of stage {} task {map_task}, which is recomputed; rerunning it",
                        stage.plan.id.0, producer.0
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
        stage: u32,
        task: u32,
        attempt: u32,
        failure: &FetchFailure,
        message: &str,
    ) -> Outcome {
        if self.state != JobState::Running {
            return Outcome::Ignored;
        }
        let Some((_, run)) = self.running_task(stage, task, attempt) else {
            return Outcome::Ignored;
        };
        run.fetch_failures += 1;
        if run.fetch_failures > MAX_FETCH_FAILURES {
            let msg = format!("stage {stage} task {task} could not read its input {MAX_FETCH_FAILURES} times: {message}");
            self.fail(msg);
            return Outcome::JobFailed;
        }
        run.state = TaskState::Pending;
        self.retries.push(format!(
            "stage {stage} task {task} attempt {attempt}: {message}; recomputing that map output"
        ));
        if let Some(p) = self.index(StageId(failure.stage_id)) {
            let producer = &mut self.stages[p];
            if let Some(m) = producer.tasks.get_mut(failure.task as usize) {
                if matches!(&m.state, TaskState::Done { flight_url, .. } if *flight_url == failure.flight_url)
                {
                    m.state = TaskState::Pending;
                    producer.reopen();
                    self.rerun_row_range_readers(StageId(failure.stage_id), failure.task);
                }
            }
        }
        Outcome::Retrying
    }

    pub fn fail(&mut self, message: String) {
        if self.state == JobState::Running {
            self.state = JobState::Failed(message);
            self.finished = Some(Instant::now());
        }
    }

    pub fn cancel(&mut self) {
        if self.state == JobState::Running {
            self.state = JobState::Cancelled;
            self.finished = Some(Instant::now());
        }
    }

    pub fn progress(&self) -> Vec<StageProgress> {
        self.stages
            .iter()
            .map(|s| {
                let mut p = StageProgress {
                    stage_id: s.plan.id.0,
                    name: stage_name(&s.plan.plan),
                    tasks_total: s.tasks.len() as u32,
                    ..Default::default()
                };
                for t in &s.tasks {
                    match &t.state {
                        TaskState::Done { stats, .. } => {
                            p.tasks_done += 1;
                            p.rows_out += stats.rows_out;
                            p.bytes_out += stats.bytes_out;
                            p.peak_memory = p.peak_memory.max(stats.peak_memory);
                            p.spilled_bytes += stats.spilled_bytes;
                        }
                        TaskState::Running { .. } => p.tasks_running += 1,
                        TaskState::Pending => {}
                    }
                }
                p.elapsed_ms = match s.state {
                    StageState::Waiting => 0,
                    StageState::Running { started } => started.elapsed().as_millis() as u64,
                    StageState::Done { started, finished } => {
                        (finished - started).as_millis() as u64
                    }
                };
                p
            })
            .collect()
    }

    /// Where the client fetches the final stage's output, in task order.
    pub fn result_locations(&self) -> Vec<ResultLocation> {
        if self.copy_to.is_some() {
            return vec![];
        }
        let Some(last) = self.stages.last() else {
            return vec![];
        };
        last.tasks
            .iter()
            .enumerate()
            .filter_map(|(t, task)| match &task.state {
                TaskState::Done {
                    attempt,
                    flight_url,
                    stats,
                    ..
                } if stats.rows_out > 0 => {
                    let ticket = PartitionTicket {
                        job: self.id.clone(),
                        stage: last.plan.id,
                        map_task: t as u32,
                        attempt: *attempt,
                        partition: 0,
                        rows: None,
                    };
                    Some(ResultLocation {
                        flight_url: flight_url.clone(),
                        ticket: encode(&ticket).ok()?,
                    })
                }
                _ => None,
            })
            .collect()
    }

    pub fn summary(&self) -> JobSummary {
        let state = match &self.state {
            JobState::Running => "running".to_string(),
            JobState::Succeeded => "succeeded".to_string(),
            JobState::Failed(m) => format!("failed: {m}"),
            JobState::Cancelled => "cancelled".to_string(),
        };
        let end = self.finished.unwrap_or_else(Instant::now);
        JobSummary {
            job_id: self.id.0.clone(),
            sql: self.sql.clone(),
            state,
            elapsed_ms: (end - self.submitted).as_millis() as u64,
        }
    }
}

impl Job {
    /// The job profile: per stage, its operators and every finished task's figures.
    pub fn profile(&self) -> serde_json::Value {
        let wall_ms = self
            .finished
            .unwrap_or_else(Instant::now)
            .duration_since(self.submitted)
            .as_millis() as u64;
        let stages: Vec<serde_json::Value> = self
            .stages
            .iter()
            .map(|s| {
                let tasks: Vec<serde_json::Value> = s
                    .tasks
                    .iter()
                    .enumerate()
                    .filter_map(|(t, run)| match &run.state {
                        TaskState::Done {
                            worker,
                            attempt,
                            stats,
                            estimate,
                            ..
                        } => Some(serde_json::json!({
                            "task": t,
                            "attempt": attempt,
                            "worker": worker.0,
                            "duration_ms": stats.duration_ms,
                            "input_rows": stats.input_rows,
                            "input_bytes": stats.input_bytes,
                            "output_rows": stats.rows_out,
                            "output_bytes": stats.bytes_out,
                            "peak_memory_bytes": stats.peak_memory,
                            "estimated_memory_bytes": estimate,
                            "spilled_bytes": stats.spilled_bytes,
                            "spill_files": stats.spill_count,
                            "skew_partition": run.spec.skew_partition,
                        })),
                        _ => None,
                    })
                    .collect();
                serde_json::json!({
                    "stage": s.plan.id.0,
                    "operators": operators_text(&s.plan.plan),
                    "skew_splits": s.splits.iter().map(SkewSplit::to_json).collect::<Vec<_>>(),
                    "tasks": tasks,
                })
            })
            .collect();
        serde_json::json!({
            "job": self.id.0,
            "wall_ms": wall_ms,
            "memory_failures": self.memory_failures,
            "stages": stages,
        })
    }

    /// The plan as it ran (after adaptive rewrites), with measured figures per stage.
    pub fn analyzed_plan(&self) -> String {
        let plans: Vec<&StagePlan> = self.stages.iter().map(|s| &s.plan).collect();
        let progress = self.progress();
        let mut text = explain(&plans, |plan| {
            let s = self.index(plan.id)?;
            let p = &progress[s];
            let done: Vec<&TaskSucceeded> = self.stages[s]
                .tasks
                .iter()
                .filter_map(|t| match &t.state {
                    TaskState::Done { stats, .. } => Some(stats),
                    _ => None,
                })
                .collect();
            let estimated = self.stages[s]
                .tasks
                .iter()
                .filter_map(|t| match &t.state {
                    TaskState::Done { estimate, .. } => Some(*estimate),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            let input_rows: u64 = done.iter().map(|t| t.input_rows).sum();
            let slowest = done.iter().map(|t| t.duration_ms).max().unwrap_or(0);
            let most_rows = done.iter().map(|t| t.input_rows).max().unwrap_or(0);
            let splits: String = self.stages[s]
                .splits
                .iter()
                .map(|sp| format!("\nsplit: {}", sp.describe(plan.id.0)))
                .collect();
            Some(format!(
                "actual: {} tasks, {:.2}s, slowest task {:.2}s; {input_rows} rows in (most in one task {most_rows}), {} rows out ({}); peak task memory {} (estimated {}); spilled {}{splits}",
                p.tasks_done,
                p.elapsed_ms as f64 / 1000.0,
                slowest as f64 / 1000.0,
                p.rows_out,
                human_bytes(p.bytes_out),
                human_bytes(p.peak_memory),
                human_bytes(estimated),
                human_bytes(p.spilled_bytes),
            ))
        });
        if !self.notes.is_empty() {
            text.push_str("Adaptive planning:\n");
            for n in &self.notes {
                text.push_str(&format!("  {n}\n"));
            }
        }
        text
    }

    /// Bytes spilled and spill files written by the job's finished tasks.
    pub fn spill_totals(&self) -> (u64, u64) {
        let mut totals = (0, 0);
        for s in &self.stages {
            for t in &s.tasks {
                if let TaskState::Done { stats, .. } = &t.state {
                    totals.0 += stats.spilled_bytes;
                    totals.1 += stats.spill_count;
                }
            }
        }
        totals
    }
}

fn partition_sizes(stats: &TaskSucceeded) -> Vec<(u64, u64)> {
    let n = stats
        .partitions
        .iter()
        .map(|p| p.partition as usize + 1)
        .max()
        .unwrap_or(0);
    let mut out = vec![(0, 0); n];
    for p in &stats.partitions {
        out[p.partition as usize] = (p.rows, p.bytes);
    }
    out
}

/// A short name for a stage: its operators from the leaves up.
pub fn stage_name(plan: &PlanNode) -> String {
    fn walk(n: &PlanNode, out: &mut Vec<&'static str>) {
        for c in n.children() {
            walk(c, out);
        }
        out.push(match n {
            PlanNode::Scan { .. } => "scan",
            PlanNode::ShuffleRead { .. } => "read",
            PlanNode::OneRow => "values",
            PlanNode::Filter { .. } => "filter",
            PlanNode::Project { .. } => "project",
            PlanNode::Aggregate { .. } => "aggregate",
            PlanNode::HashJoin { .. } => "join",
            PlanNode::RangeJoin { .. } => "range-join",
            PlanNode::AsofJoin { .. } => "asof-join",
            PlanNode::Expand { .. } => "expand",
            PlanNode::Sort { fetch: Some(_), .. } => "top-k",
            PlanNode::Sort { .. } => "sort",
            PlanNode::Limit { .. } => "limit",
            PlanNode::Union { .. } => "union",
            PlanNode::Window { .. } => "window",
        });
    }
    let mut names = vec![];
    walk(plan, &mut names);
    names.retain(|n| *n != "project");
    names.dedup();
    names.join("+")
}

/// The stage's plan with this task's splits in its scan.
fn with_splits(node: &PlanNode, splits: &[FileSplit]) -> PlanNode {
    fn set(n: &mut PlanNode, splits: &[FileSplit]) {
        match n {
            PlanNode::Scan { splits: s, .. } => *s = splits.to_vec(),
            other => other
                .children_mut()
                .into_iter()
                .for_each(|c| set(c, splits)),
        }
    }
    let mut node = node.clone();
    set(&mut node, splits);
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::datatypes::{DataType, Field};
    use keel_proto::expr::Expr;
    use keel_proto::pb::PartitionStats;
    use keel_proto::plan::Sink;

    use crate::adaptive::tests::join_stage;
    use crate::planner::stages::{ScanTask, TaskSource};
    use crate::skew::SkewConfig;

    fn scan_stage(id: u32, maps: usize) -> StagePlan {
        let schema = Schema::new(vec![Field::new("k", DataType::Int64, true)]);
        StagePlan {
            id: StageId(id),
            plan: PlanNode::Scan {
                splits: vec![],
                schema,
                predicate: None,
            },
            sink: Sink::Hash {
                keys: vec![Expr::Column(0)],
                partitions: 4,
            },
            inputs: vec![],
            tasks: TaskSource::Scan(
                (0..maps)
                    .map(|i| ScanTask {
                        splits: vec![FileSplit {
                            path: format!("/{id}/{i}.parquet"),
                            row_groups: vec![0],
                        }],
                        bytes: 1,
                    })
                    .collect(),
            ),
            estimated_rows: 0,
            estimated_bytes: 0,
        }
    }

    fn join_job() -> Job {
        let graph = StageGraph {
            stages: vec![scan_stage(1, 2), scan_stage(2, 1), join_stage()],
            output_schema: Schema::empty(),
            copy_to: None,
        };
        Job::new(JobId("j".into()), String::new(), graph)
    }

    fn config() -> AdaptiveConfig {
        AdaptiveConfig {
            cores: 2,
            min_task_bytes: 1 << 20,
            max_task_bytes: 1 << 20,
            broadcast_bytes: 0,
            skew: Some(SkewConfig {
                factor: 4.0,
                min_bytes: 1 << 20,
            }),
        }
    }

    /// Runs task `t` of stage `s` on `worker` to success with these partitions.
    fn finish(job: &mut Job, s: usize, t: usize, worker: &str, parts: &[(u64, u64)]) {
        let descriptor = job.start(s, t, &WorkerId(worker.into()), 0);
        let stats = TaskSucceeded {
            partitions: parts
                .iter()
                .enumerate()
                .map(|(p, &(rows, bytes))| PartitionStats {
                    partition: p as u32,
                    rows,
                    bytes,
                })
                .collect(),
            ..Default::default()
        };
        let stage = descriptor.task.stage.0;
        let url = format!("http://{worker}");
        let outcome = job.task_succeeded(
            stage,
            t as u32,
            descriptor.task.attempt,
            url,
            stats,
            &config(),
        );
        assert_eq!(outcome, Outcome::Progressed);
    }

    #[test]
    fn a_recomputed_map_output_reruns_the_splits_that_read_row_ranges_of_it() {
        let mut job = join_job();
        job.advance(&config());
        // Left map 0 (on worker a) holds a skewed partition 1 of 8 MiB; map 1 (on b) is small.
        finish(
            &mut job,
            0,
            0,
            "a",
            &[(10, 1000), (8000, 8 << 20), (10, 1000), (10, 1000)],
        );
        finish(&mut job, 0, 1, "b", &[(10, 1000); 4]);
        finish(&mut job, 1, 0, "b", &[(10, 1000); 4]);
        let splits: Vec<usize> = (0..job.stages[2].tasks.len())
            .filter(|&t| job.stages[2].tasks[t].spec.skew_partition == Some(1))
            .collect();
        assert!(splits.len() >= 4, "{} splits", splits.len());
        assert!(job
            .notes
            .iter()
            .any(|n| n.contains("partition 1 is skewed")));
        // Two splits finish on worker b; then worker a, holding left map 0, is lost.
        for &t in &splits[..2] {
            finish(&mut job, 2, t, "b", &[(1, 1)]);
        }
        job.worker_lost(&WorkerId("a".into()));
        assert!(matches!(job.stages[0].tasks[0].state, TaskState::Pending));
        // Every split reads a row range of map 0, so the finished ones run again.
        for &t in &splits {
            assert!(matches!(job.stages[2].tasks[t].state, TaskState::Pending));
        }
        assert!(job.retries.iter().any(|r| r.contains("read a row range")));
    }
}
