//! Runs one task: open its inputs as streams, pipe its operators into its
//! sink on a blocking thread, and produce the status the scheduler needs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use keel_proto::paths::AllowedPaths;
use keel_proto::pb::{
    task_status, FetchFailure, KeyLabel, PartitionStats, TaskFailed, TaskStatus, TaskSucceeded,
};
use keel_proto::plan::{PlanNode, Sink};
use keel_proto::task::TaskDescriptor;
use tracing::Instrument;

use crate::error::{Result, WorkerError};
use crate::input::{self, BroadcastCache, InFlightBudget, InputStats};
use crate::memory::{MemoryPool, TaskMemory};
use crate::operators::{self, ExecContext};
use crate::shuffle::{map_dir, ShuffleCompression, ShuffleReader, WrittenOutput};
use crate::sink::TaskSink;

/// Most bytes of shuffle input one task may have fetched ahead of its operators.
const IN_FLIGHT_BYTES: usize = 32 << 20;

pub struct TaskEnv {
    pub work_dir: PathBuf,
    /// Where tasks may read and write (`--allow-path`).
    pub allowed: AllowedPaths,
    pub pool: Arc<MemoryPool>,
    pub reader: Arc<ShuffleReader>,
    pub broadcasts: BroadcastCache,
    pub shuffle_compression: ShuffleCompression,
}

pub struct TaskOutcome {
    pub output: WrittenOutput,
    pub peak_memory: usize,
    pub spilled_bytes: u64,
    pub spill_count: u64,
    pub input_rows: u64,
    pub input_bytes: u64,
}

pub async fn run_task(
    env: Arc<TaskEnv>,
    task: TaskDescriptor,
    cancelled: Arc<AtomicBool>,
) -> TaskStatus {
    let id = task.attempt;
    let span = tracing::info_span!("task", job = %task.job, stage = id.stage().0, task = id.index(), attempt = id.attempt);
    let started = Instant::now();
    let mut status = TaskStatus {
        job_id: task.job.0.clone(),
        stage_id: id.stage().0,
        task: id.index(),
        attempt: id.attempt,
        ..Default::default()
    };
    let result = execute(env, task, cancelled).instrument(span.clone()).await;
    let _enter = span.enter();
    status.result = Some(match result {
        Ok(outcome) => {
            let partitions: Vec<PartitionStats> = outcome
                .output
                .partitions
                .iter()
                .enumerate()
                .map(|(p, s)| PartitionStats {
                    partition: p as u32,
                    rows: s.rows,
                    bytes: s.bytes,
                })
                .collect();
            let duration_ms = started.elapsed().as_millis() as u64;
            let hot = outcome.output.hot_keys.unwrap_or_default();
            tracing::debug!(duration_ms, peak = outcome.peak_memory, "task finished");
            task_status::Result::Succeeded(TaskSucceeded {
                rows_out: partitions.iter().map(|p| p.rows).sum(),
                bytes_out: partitions.iter().map(|p| p.bytes).sum(),
                partitions,
                peak_memory: outcome.peak_memory as u64,
                duration_ms,
                spilled_bytes: outcome.spilled_bytes,
                spill_count: outcome.spill_count,
                input_rows: outcome.input_rows,
                input_bytes: outcome.input_bytes,
                key_sketch: hot.sketch,
                key_labels: hot
                    .labels
                    .into_iter()
                    .map(|(hash, value)| KeyLabel { hash, value })
                    .collect(),
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "task failed");
            let fetch_failure = match &e {
                WorkerError::Fetch {
                    url,
                    stage,
                    map_task,
                    ..
                } => Some(FetchFailure {
                    flight_url: url.clone(),
                    stage_id: *stage,
                    task: *map_task,
                }),
                _ => None,
            };
            task_status::Result::Failed(TaskFailed {
                message: e.to_string(),
                fetch_failure,
                cancelled: matches!(e, WorkerError::Cancelled),
                out_of_memory: matches!(
                    e,
                    WorkerError::MemoryExhausted { .. } | WorkerError::CannotProceed { .. }
                ),
                user_error: e.is_user_error(),
            })
        }
    });
    status
}

async fn execute(
    env: Arc<TaskEnv>,
    task: TaskDescriptor,
    cancelled: Arc<AtomicBool>,
) -> Result<TaskOutcome> {
    check_paths(&task.plan, &task.sink, &env.allowed)?;
    let spill_dir = spill_root(&env.work_dir).join(format!(
        "{}-s{}-t{}-a{}",
        task.job,
        task.attempt.stage().0,
        task.attempt.index(),
        task.attempt.attempt
    ));
    let memory = TaskMemory::new(env.pool.clone(), spill_dir);
    let streamed = task.inputs.iter().filter(|i| !i.broadcast).count().max(1);
    let per_input = IN_FLIGHT_BYTES.min(env.pool.limit() / 16) / streamed;
    let mut inputs = Vec::with_capacity(task.inputs.len());
    for input in &task.inputs {
        inputs.push(Some(if input.broadcast {
            env.broadcasts.get(&env.reader, &task.job, input).await?
        } else {
            let want = per_input.min((input.bytes as usize).max(1 << 20));
            let budget = InFlightBudget::new(&memory, want);
            input::open(env.reader.clone(), &task.job, input, budget)
        }));
    }
    let (job, task_id) = (task.job.clone(), task.attempt);
    let env2 = env.clone();
    let memory2 = memory.clone();
    let stats = Arc::new(InputStats::default());
    let stats2 = stats.clone();
    // The task's span (job, stage, task, attempt) reaches into its body:
    // operators' logs carry the IDs.
    let span = tracing::Span::current();
    let handle = tokio::task::spawn_blocking(move || -> Result<WrittenOutput> {
        let _span = span.enter();
        let mut ctx = ExecContext {
            memory: memory2,
            inputs,
            cancelled,
            input_stats: stats2,
        };
        let iter = operators::build(&task.plan, &mut ctx)?;
        let schema = Arc::new(task.plan.schema());
        let mut sink = TaskSink::open(
            &task.sink,
            &env2.work_dir,
            &task.job,
            task.attempt,
            schema,
            &ctx.memory,
            env2.shuffle_compression,
        )?;
        for batch in iter {
            let written = batch.and_then(|b| {
                ctx.check_cancelled()?;
                sink.write(b)
            });
            if let Err(e) = written {
                sink.abort();
                return Err(e);
            }
        }
        sink.finish()
    });
    let result = handle
        .await
        .map_err(|e| WorkerError::eval(format!("task panicked: {e}")))?;
    if result.is_err() {
        // Half-written shuffle files of a failed or cancelled attempt are never read: remove them.
        let dir = map_dir(&env.work_dir, &job, task_id);
        let _ = std::fs::remove_dir_all(dir);
    }
    let output = result?;
    Ok(TaskOutcome {
        output,
        peak_memory: memory.peak(),
        spilled_bytes: memory.spilled_bytes(),
        spill_count: memory.spill_count(),
        input_rows: stats.rows.load(Ordering::Relaxed),
        input_bytes: stats.bytes.load(Ordering::Relaxed),
    })
}

/// Where tasks' spill directories live; swept when a worker starts.
pub fn spill_root(work_dir: &Path) -> PathBuf {
    work_dir.join("spill")
}

/// Refuses a task that reads or writes outside the `--allow-path` roots,
/// before it opens anything.
fn check_paths(plan: &PlanNode, sink: &Sink, allowed: &AllowedPaths) -> Result<()> {
    fn scans(n: &PlanNode, allowed: &AllowedPaths) -> Result<()> {
        if let PlanNode::Scan { splits, .. } = n {
            for split in splits {
                allowed
                    .check(Path::new(&split.path), "input")
                    .map_err(WorkerError::NotAllowed)?;
            }
        }
        n.children().into_iter().try_for_each(|c| scans(c, allowed))
    }
    if allowed.is_open() {
        return Ok(());
    }
    scans(plan, allowed)?;
    if let Sink::Parquet { dir } = sink {
        allowed
            .check(Path::new(dir), "output")
            .map_err(WorkerError::NotAllowed)?;
    }
    Ok(())
}
