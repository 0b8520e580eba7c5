//! Runs one task: fetch its shuffle inputs, pipe its operators into its
//! sink on a blocking thread, and produce the status the scheduler needs.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use keel_proto::pb::{
    task_status, FetchFailure, PartitionStats, TaskFailed, TaskStatus, TaskSucceeded,
};
use keel_proto::task::TaskDescriptor;
use tracing::Instrument;

use crate::error::{Result, WorkerError};
use crate::memory::{MemoryPool, TaskMemory};
use crate::operators::{self, ExecContext};
use crate::shuffle::{map_dir, PartitionStat, ShuffleReader};
use crate::sink::TaskSink;

/// Fetches in flight at once per task.
const FETCH_CONCURRENCY: usize = 8;

pub struct TaskEnv {
    pub work_dir: PathBuf,
    pub pool: Arc<MemoryPool>,
    pub reader: ShuffleReader,
}

pub struct TaskOutcome {
    pub partitions: Vec<PartitionStat>,
    pub peak_memory: usize,
}

pub async fn run_task(
    env: Arc<TaskEnv>,
    task: TaskDescriptor,
    cancelled: Arc<AtomicBool>,
) -> TaskStatus {
    let span = tracing::info_span!("task", job = %task.job, stage = task.task.stage.0, task = task.task.index, attempt = task.task.attempt);
    let started = Instant::now();
    let mut status = TaskStatus {
        job_id: task.job.0.clone(),
        stage_id: task.task.stage.0,
        task: task.task.index,
        attempt: task.task.attempt,
        ..Default::default()
    };
    let result = execute(env, task, cancelled).instrument(span.clone()).await;
    let _enter = span.enter();
    status.result = Some(match result {
        Ok(outcome) => {
            let partitions: Vec<PartitionStats> = outcome
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
            tracing::debug!(duration_ms, peak = outcome.peak_memory, "task finished");
            task_status::Result::Succeeded(TaskSucceeded {
                rows_out: partitions.iter().map(|p| p.rows).sum(),
                bytes_out: partitions.iter().map(|p| p.bytes).sum(),
                partitions,
                peak_memory: outcome.peak_memory as u64,
                duration_ms,
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
    let memory = TaskMemory::new(env.pool.clone());
    let mut input_reservation = memory.reservation();
    let mut inputs = Vec::with_capacity(task.inputs.len());
    for input in &task.inputs {
        let fetches = input.fetches.clone().into_iter().map(|spec| {
            let (env, job) = (env.clone(), task.job.clone());
            async move { env.reader.fetch(&job, &spec).await }
        });
        let fetched: Vec<Vec<arrow::array::RecordBatch>> = futures::stream::iter(fetches)
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        let batches: Vec<_> = fetched.into_iter().flatten().collect();
        input_reservation.grow(batches.iter().map(|b| b.get_array_memory_size()).sum())?;
        inputs.push(batches);
    }
    let (job, task_id) = (task.job.clone(), task.task);
    let env2 = env.clone();
    let memory2 = memory.clone();
    let handle = tokio::task::spawn_blocking(move || -> Result<Vec<PartitionStat>> {
        let mut ctx = ExecContext {
            memory: memory2,
            inputs,
            cancelled,
        };
        let iter = operators::build(&task.plan, &mut ctx)?;
        let schema = Arc::new(task.plan.schema());
        let mut sink = TaskSink::open(&task.sink, &env2.work_dir, &task.job, task.task, schema)?;
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
        let dir = map_dir(
            &env.work_dir,
            &job,
            task_id.stage,
            task_id.index,
            task_id.attempt,
        );
        let _ = std::fs::remove_dir_all(dir);
    }
    let partitions = result?;
    drop(input_reservation);
    Ok(TaskOutcome {
        partitions,
        peak_memory: memory.peak(),
    })
}
