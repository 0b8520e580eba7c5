//! What the HTTP API serves, rendered from the core's state: JSON for the
//! dashboard and scripts, Prometheus text for `/metrics`.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::metrics::DURATION_BUCKETS;
use super::{JobEntry, SchedulerState, View};
use crate::job::{Job, JobState};
use crate::planner::stages::InputMode;

impl SchedulerState {
    /// The view as text; `None` if it names a job that is not known.
    pub(super) fn render(&self, view: &View) -> Option<String> {
        Some(match view {
            View::Workers => self.workers_json().to_string(),
            View::Jobs => self.jobs_json(usize::MAX),
            View::Job(id) => job_detail_json(self.jobs.get(id)?).to_string(),
            View::Tasks { since_ms } => self.tasks_json(*since_ms).to_string(),
            View::Metrics => self.metrics_text(),
            View::Overview { since_ms, jobs } => {
                let mut tasks = self.tasks_json(*since_ms);
                format!(
                    r#"{{"now_ms":{},"workers":{},"jobs":{},"tasks":{}}}"#,
                    tasks["now_ms"].take(),
                    self.workers_json(),
                    self.jobs_json(*jobs),
                    tasks["tasks"].take(),
                )
            }
        })
    }

    /// The newest `limit` jobs, newest first, as a JSON array. A job that
    /// is over does not change: it is rendered once and kept.
    fn jobs_json(&self, limit: usize) -> String {
        let mut out = String::from("[");
        for (i, entry) in self
            .order
            .iter()
            .rev()
            .filter_map(|id| self.jobs.get(id))
            .take(limit)
            .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            if entry.job.state == JobState::Running {
                out.push_str(&job_json(entry).to_string());
            } else {
                out.push_str(entry.rendered.get_or_init(|| job_json(entry).to_string()));
            }
        }
        out.push(']');
        out
    }

    fn workers_json(&self) -> Value {
        let mut ids: Vec<_> = self.workers.keys().collect();
        ids.sort_by_key(|id| (id.0.len(), id.0.clone()));
        ids.into_iter()
            .map(|id| {
                let w = &self.workers[id];
                json!({
                    "id": id.0,
                    "address": w.flight_url.trim_start_matches("http://").trim_start_matches("https://"),
                    "flight_address": w.flight_url,
                    "cores": w.cores,
                    "memory_limit_bytes": w.memory_limit,
                    "memory_budget_bytes": w.room().budget,
                    "memory_used_bytes": w.memory_used,
                    "memory_pinned_bytes": w.memory_pinned,
                    "running_tasks": w.running.len(),
                    "tasks_done": w.tasks_done,
                    "spilled_bytes": w.spilled_bytes,
                    "last_heartbeat_ms": w.last_seen.elapsed().as_millis() as u64,
                })
            })
            .collect()
    }

    /// Attempts that ended after `since_ms`, and the running ones (`end_ms` null).
    fn tasks_json(&self, since_ms: u64) -> Value {
        let mut tasks: Vec<Value> = self
            .metrics
            .stream
            .iter()
            .filter(|r| r.end_ms > since_ms)
            .map(|r| {
                json!({
                    "job": r.job.0, "stage": r.attempt.stage().0, "task": r.attempt.index(),
                    "attempt": r.attempt.attempt, "worker": r.worker.0, "slot": r.slot,
                    "start_ms": r.start_ms, "end_ms": r.end_ms, "state": r.reason.name(),
                })
            })
            .collect();
        for (worker, w) in &self.workers {
            for ((job, id), placed) in &w.running {
                tasks.push(json!({
                    "job": job.0, "stage": id.stage().0, "task": id.index(),
                    "attempt": id.attempt, "worker": worker.0, "slot": placed.slot,
                    "start_ms": placed.start_ms, "end_ms": null, "state": "running",
                }));
            }
        }
        json!({ "now_ms": self.now_ms(), "tasks": tasks })
    }

    fn metrics_text(&self) -> String {
        let m = &self.metrics;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP keel_{name} {help}\n# TYPE keel_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "keel_{name}{labels} {value}");
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        family(
            "workers",
            "gauge",
            "Live workers.",
            &one(self.workers.len() as f64),
        );
        let running: usize = self.workers.values().map(|w| w.running.len()).sum();
        family(
            "tasks_running",
            "gauge",
            "Task attempts running now.",
            &one(running as f64),
        );
        family(
            "tasks_started_total",
            "counter",
            "Task attempts dispatched.",
            &one(m.tasks_started as f64),
        );
        let ended: Vec<(String, f64)> = m
            .tasks_ended
            .iter()
            .map(|(r, n)| (format!("{{reason=\"{}\"}}", r.name()), *n as f64))
            .collect();
        family(
            "tasks_ended_total",
            "counter",
            "Task attempts ended, by how.",
            &ended,
        );
        let succeeded = m
            .tasks_ended
            .get(&super::EndReason::Succeeded)
            .copied()
            .unwrap_or(0);
        let failed: u64 = m.tasks_ended.values().sum::<u64>() - succeeded;
        family(
            "tasks_succeeded_total",
            "counter",
            "Task attempts that succeeded.",
            &one(succeeded as f64),
        );
        family(
            "tasks_failed_total",
            "counter",
            "Task attempts that ended without their output.",
            &one(failed as f64),
        );
        let retried: Vec<(String, f64)> = m
            .retries
            .iter()
            .map(|(r, n)| (format!("{{reason=\"{}\"}}", r.name()), *n as f64))
            .collect();
        family(
            "tasks_retried_total",
            "counter",
            "Tasks run again, by reason.",
            &retried,
        );
        family(
            "jobs_submitted_total",
            "counter",
            "Jobs submitted.",
            &one(m.jobs_submitted as f64),
        );
        let states = ["running", "succeeded", "failed", "cancelled"];
        let held: Vec<(String, f64)> = states
            .iter()
            .map(|state| {
                let n = self
                    .jobs
                    .values()
                    .filter(|e| e.job.state.name() == *state)
                    .count();
                (format!("{{state=\"{state}\"}}"), n as f64)
            })
            .collect();
        family(
            "jobs",
            "gauge",
            "Jobs the scheduler holds, by state.",
            &held,
        );
        let ended: Vec<(String, f64)> = states[1..]
            .iter()
            .map(|state| {
                let n = m.jobs_ended.get(state).copied().unwrap_or(0);
                (format!("{{state=\"{state}\"}}"), n as f64)
            })
            .collect();
        family(
            "jobs_ended_total",
            "counter",
            "Jobs ended since the scheduler started, by final state.",
            &ended,
        );
        family(
            "shuffle_bytes_total",
            "counter",
            "Bytes map tasks wrote for exchanges.",
            &one(m.bytes_shuffled as f64),
        );
        family(
            "spilled_bytes_total",
            "counter",
            "Bytes tasks spilled to disk.",
            &one(m.bytes_spilled as f64),
        );
        let mut ids: Vec<_> = self.workers.keys().collect();
        ids.sort();
        let per_worker = |f: &dyn Fn(&super::WorkerEntry) -> u64| -> Vec<(String, f64)> {
            ids.iter()
                .map(|id| {
                    (
                        format!("{{worker=\"{}\"}}", id.0),
                        f(&self.workers[*id]) as f64,
                    )
                })
                .collect()
        };
        family(
            "worker_memory_used_bytes",
            "gauge",
            "Memory reserved in each worker's pool.",
            &per_worker(&|w| w.memory_used),
        );
        family(
            "worker_memory_limit_bytes",
            "gauge",
            "Each worker's --memory-limit.",
            &per_worker(&|w| w.memory_limit),
        );
        family(
            "worker_running_tasks",
            "gauge",
            "Task attempts running on each worker.",
            &per_worker(&|w| w.running.len() as u64),
        );
        let mut histogram: Vec<(String, f64)> = DURATION_BUCKETS
            .iter()
            .zip(&m.job_duration_counts)
            .map(|(b, n)| (format!("_bucket{{le=\"{b}\"}}"), *n as f64))
            .collect();
        let count = m.job_duration_counts[DURATION_BUCKETS.len()];
        histogram.push(("_bucket{le=\"+Inf\"}".into(), count as f64));
        histogram.push(("_sum".into(), m.job_duration_sum));
        histogram.push(("_count".into(), count as f64));
        let _ = writeln!(out, "# HELP keel_job_duration_seconds Wall time of ended jobs.\n# TYPE keel_job_duration_seconds histogram");
        for (suffix, v) in histogram {
            let _ = writeln!(out, "keel_job_duration_seconds{suffix} {v}");
        }
        out
    }
}

fn job_json(entry: &JobEntry) -> Value {
    let job = &entry.job;
    let progress = job.progress();
    let submitted_at = SystemTime::now()
        .checked_sub(job.submitted.elapsed())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let stages: Vec<Value> = progress
        .iter()
        .map(|p| {
            json!({
                "stage": p.stage_id, "name": p.name, "tasks_done": p.tasks_done,
                "tasks_running": p.tasks_running, "tasks_total": p.tasks_total,
                "rows_out": p.rows_out, "elapsed_ms": p.elapsed_ms,
            })
        })
        .collect();
    json!({
        "id": job.id.0,
        "state": job.state.name(),
        "error": match &job.state { JobState::Failed(m) => Some(m.as_str()), _ => None },
        "sql": job.sql,
        "submitted_at": submitted_at,
        "duration_ms": job.elapsed().as_millis() as u64,
        "tasks_done": progress.iter().map(|p| p.tasks_done).sum::<u32>(),
        "tasks_total": progress.iter().map(|p| p.tasks_total).sum::<u32>(),
        "tasks_running": progress.iter().map(|p| p.tasks_running).sum::<u32>(),
        "retries": job.retries.len(),
        "spilled_bytes": job.spill_totals().0,
        "stages": stages,
    })
}

/// A job with its stage graph, plan and profile (as `keel sql --profile` prints it).
fn job_detail_json(entry: &JobEntry) -> Value {
    let job: &Job = &entry.job;
    let mut out = job_json(entry);
    let graph: Vec<Value> = job
        .stages
        .iter()
        .map(|s| {
            let inputs: Vec<Value> = s
                .plan
                .inputs
                .iter()
                .map(|i| {
                    let mode = match i.mode {
                        InputMode::Hash => "hash",
                        InputMode::Broadcast => "broadcast",
                        InputMode::Gather => "gather",
                        InputMode::Slice => "slice",
                        InputMode::Merge { .. } => "merge",
                    };
                    json!({ "stage": i.stage.0, "mode": mode })
                })
                .collect();
            json!({ "stage": s.plan.id.0, "inputs": inputs })
        })
        .collect();
    out["graph"] = Value::Array(graph);
    out["plan"] = json!(job.analyzed_plan());
    out["profile"] = job.profile();
    out["retry_reasons"] = json!(job.retries);
    out["notes"] = json!(job.notes);
    out
}
