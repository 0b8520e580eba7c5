//! What a job reports: progress for watchers, where its results are, its
//! summary, profile and analyzed plan.

use std::time::{Duration, Instant};

use keel_proto::pb::{JobSummary, ResultLocation, StageProgress, TaskSucceeded};
use keel_proto::plan::PlanNode;
use keel_proto::task::{encode, PartitionTicket};

use super::{Job, JobState, StageState, TaskState};
use crate::planner::stages::{explain, human_bytes, operators_text, StagePlan};
use crate::skew::SkewSplit;

impl JobState {
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed(_) => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl Job {
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
            JobState::Failed(m) => format!("failed: {m}"),
            other => other.name().to_string(),
        };
        JobSummary {
            job_id: self.id.0.clone(),
            sql: self.sql.clone(),
            state,
            elapsed_ms: self.elapsed().as_millis() as u64,
        }
    }

    /// From submission to its end, or to now while it runs.
    pub fn elapsed(&self) -> Duration {
        self.finished.unwrap_or_else(Instant::now) - self.submitted
    }

    /// The job profile: per stage, its operators and every finished task's figures.
    pub fn profile(&self) -> serde_json::Value {
        let wall_ms = self.elapsed().as_millis() as u64;
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
