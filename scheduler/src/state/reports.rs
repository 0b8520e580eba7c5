//! Task reports, publishing a job's state to its watchers, and cleanup.

use keel_proto::ids::{JobId, WorkerId};
use keel_proto::pb::{
    job_event, task_status, worker_command, JobCompleted, JobFailed, JobProgress, TaskStatus,
};

use super::metrics::EndReason;
use super::{Command, SchedulerState};
use crate::job::{JobState, Outcome};

impl SchedulerState {
    pub(super) fn task_reported(&mut self, status: TaskStatus) {
        let job_id = JobId(status.job_id.clone());
        let worker = WorkerId(status.worker_id.clone());
        let id = status.attempt_id();
        let span = tracing::info_span!("task", job = %job_id, stage = id.stage().0, task = id.index(), attempt = id.attempt);
        let _span = span.enter();
        let flight_url = match self.workers.get_mut(&worker) {
            Some(w) => {
                w.memory_used = status.worker_memory_used;
                w.memory_pinned = status.worker_memory_pinned;
                w.flight_url.clone()
            }
            None => return, // a lost worker's late report: its task was already rescheduled
        };
        let job_running = self
            .jobs
            .get(&job_id)
            .is_some_and(|e| e.job.state == JobState::Running);
        let reason = match &status.result {
            _ if !job_running => EndReason::JobOver,
            Some(task_status::Result::Succeeded(_)) => EndReason::Succeeded,
            Some(task_status::Result::Failed(f)) if f.fetch_failure.is_some() => EndReason::Fetch,
            Some(task_status::Result::Failed(f)) if f.cancelled => EndReason::Stopped,
            Some(task_status::Result::Failed(f)) if f.out_of_memory => EndReason::OutOfMemory,
            _ => EndReason::Error,
        };
        self.end_attempt(&worker, &(job_id.clone(), id), reason);
        let adaptive = self.adaptive();
        let max_attempts = self.config.max_attempts;
        let Some(entry) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let outcome = match status.result {
            Some(task_status::Result::Succeeded(stats)) => {
                let last_stage = entry.job.stages.last().map(|s| s.plan.id) == Some(id.stage());
                let (spilled, written) = (stats.spilled_bytes, stats.bytes_out);
                let outcome = entry.job.task_succeeded(id, flight_url, stats, &adaptive);
                if outcome == Outcome::Progressed {
                    self.metrics.bytes_spilled += spilled;
                    if !last_stage {
                        self.metrics.bytes_shuffled += written;
                    }
                    if let Some(w) = self.workers.get_mut(&worker) {
                        w.spilled_bytes += spilled;
                        w.tasks_done += 1;
                    }
                }
                if let Some((signature, measured)) = entry.job.measured(id.stage()) {
                    const MOST_SIGNATURES: usize = 10_000;
                    if self.learned.len() >= MOST_SIGNATURES {
                        self.learned.clear();
                    }
                    self.learned.insert(signature.to_string(), measured.clone());
                }
                outcome
            }
            Some(task_status::Result::Failed(f)) => match &f.fetch_failure {
                Some(ff) => entry.job.fetch_failed(id, ff, &f.message),
                None if f.cancelled => entry.job.task_stopped(id, "its worker stopped it"),
                None => entry.job.task_failed(id, &f, max_attempts),
            },
            None => Outcome::Ignored,
        };
        match &outcome {
            Outcome::Retrying => {
                let why = entry.job.retries.last().map(String::as_str).unwrap_or("");
                tracing::warn!(%worker, reason = reason.name(), "task runs again: {why}");
                self.metrics.retried(reason);
            }
            Outcome::JobFailed => {
                tracing::warn!(%worker, "task failed the job: {:?}", entry.job.state)
            }
            Outcome::Progressed => tracing::debug!(%worker, "task succeeded"),
            Outcome::Ignored => {}
        }
        if outcome != Outcome::Ignored {
            self.publish(&job_id);
        }
    }

    /// Sends watchers the job's progress, or its end; ends of jobs clean up.
    pub(super) fn publish(&mut self, id: &JobId) {
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        let job = &entry.job;
        let stages = job.progress();
        let final_rows = stages.last().map(|s| s.rows_out).unwrap_or(0);
        let event = match &job.state {
            JobState::Running => job_event::Event::Progress(JobProgress { stages }),
            JobState::Succeeded => job_event::Event::Completed(JobCompleted {
                schema: schema_bytes(&job.output_schema),
                results: job.result_locations(),
                stages,
                elapsed_ms: job.elapsed().as_millis() as u64,
                tasks_retried: job.retries.len() as u32,
                retry_reasons: job.retries.clone(),
                notes: job.notes.clone(),
                copied_to: job.copy_to.clone().unwrap_or_default(),
                rows_written: match &job.copy_to {
                    Some(_) => final_rows,
                    None => 0,
                },
                profile_json: job.profile().to_string(),
                analyzed_plan: job.analyzed_plan(),
                spilled_bytes: job.spill_totals().0,
                spill_files: job.spill_totals().1,
                memory_failures: job.memory_failures,
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
        let done = job.state != JobState::Running;
        if done && !entry.ended {
            entry.ended = true;
            let seconds = job.elapsed().as_secs_f64();
            self.metrics.job_ended(job.state.name(), seconds);
        }
        // Results stay until the client releases them; everything else goes now.
        let keep = job.state == JobState::Succeeded && job.copy_to.is_none();
        self.out.push(Command::Publish {
            job: id.clone(),
            event: Box::new(event),
            done,
        });
        if done && !keep {
            self.cleanup(id);
        }
    }

    /// Tells every worker to stop the job's tasks and delete its files.
    pub(super) fn cleanup(&mut self, id: &JobId) {
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        if entry.cleaned {
            return;
        }
        entry.cleaned = true;
        for (worker, w) in &self.workers {
            if w.connected {
                self.out.push(Command::ToWorker {
                    worker: worker.clone(),
                    command: worker_command::Command::RemoveJob(id.0.clone()),
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
