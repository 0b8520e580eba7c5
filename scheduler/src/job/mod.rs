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
use keel_proto::ids::{AttemptId, JobId, StageId, TaskId, WorkerId};
use keel_proto::pb::TaskSucceeded;
use keel_proto::plan::{FileSplit, PlanNode};
use keel_proto::task::{FetchSpec, ShuffleInput, TaskDescriptor};

use crate::adaptive::{plan_tasks, AdaptiveConfig, MapOutput, TaskSpec};
use crate::admission::{self, Measured};
use crate::planner::stages::{operators_text, InputMode, StageGraph, StagePlan};
use crate::skew::SkewSplit;

pub use report::stage_name;

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
    /// Attempts stopped through no fault of their own (a worker shutting
    /// down, a launch or report lost on the way).
    pub stops: u32,
    /// Attempts that failed for memory (each doubles the estimate).
    pub memory_failures: u32,
}

/// Fetch failures one task may see before its job fails: more means the
/// outputs it needs keep vanishing, and recomputing them again will not help.
const MAX_FETCH_FAILURES: u32 = 10;

/// Stops one task may see before its job fails: more means its reports
/// never arrive (a worker that cannot reach the scheduler's report call).
const MAX_STOPS: u32 = 10;

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
                    stops: 0,
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
    pub fn pending(&self) -> Vec<TaskId> {
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
                    out.push(TaskId {
                        stage: stage.plan.id,
                        index: t as u32,
                    });
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
    pub fn estimate(&self, task: TaskId, prior: Option<&Measured>) -> u64 {
        let (s, t) = self.position(task).expect("a task of this job");
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
    pub fn measured(&self, stage: StageId) -> Option<(&str, &Measured)> {
        let s = &self.stages[self.index(stage)?];
        Some((&s.signature, &s.measured))
    }

    /// Marks a task running on `worker` and returns what to send it.
    pub fn start(&mut self, id: TaskId, worker: &WorkerId, estimate: u64) -> TaskDescriptor {
        let (s, t) = self.position(id).expect("a task of this job");
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
            attempt: id.attempt(attempt),
            plan,
            sink: stage.plan.sink.clone(),
            inputs,
        }
    }

    /// The task's stage and index in `stages`, if it is one of this job's.
    fn position(&self, task: TaskId) -> Option<(usize, usize)> {
        let s = self.index(task.stage)?;
        let t = task.index as usize;
        (t < self.stages[s].tasks.len()).then_some((s, t))
    }

    /// The task of this attempt, if this attempt is the one running.
    fn running_task(&mut self, id: AttemptId) -> Option<(usize, &mut TaskRun)> {
        let (s, t) = self.position(id.task)?;
        let run = &mut self.stages[s].tasks[t];
        match &run.state {
            TaskState::Running { attempt, .. } if *attempt == id.attempt => Some((s, run)),
            _ => None,
        }
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

mod report;
mod transitions;

#[cfg(test)]
mod tests;
