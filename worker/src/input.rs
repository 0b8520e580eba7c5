//! A task's shuffle inputs as streams of batches.
//!
//! Partitions this worker wrote are read from local disk batch by batch by
//! the operator thread itself. Other workers' partitions are pulled as
//! Flight `do_get` streams, several at once, by async fetchers that hand
//! batches over through a channel; a per-task semaphore bounds the bytes
//! fetched but not yet taken by an operator, and that bound is reserved in
//! the memory pool for the task's lifetime. Nothing is materialised here:
//! an operator that needs to hold batches reserves them itself.
//!
//! A broadcast side is different: every task of the stage reads all of it,
//! so it is fetched once per worker and stage, held in [`BroadcastCache`]
//! with one reservation, and shared by reference until the job ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use futures::StreamExt;
use keel_proto::ids::{JobId, StageId};
use keel_proto::task::{FetchSpec, ShuffleInput};
use tokio::sync::{mpsc, OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::memory::{batch_memory, MemoryPool, Reservation, TaskMemory};
use crate::operators::BatchIter;
use crate::shuffle::{fetch_error, row_range, ShuffleReader};
use crate::spill::read_ipc;

/// Remote partitions streamed at once per task.
const FETCH_CONCURRENCY: usize = 4;

/// Rows and bytes a task's leaves read (shuffle inputs and scans).
#[derive(Debug, Default)]
pub struct InputStats {
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
}

impl InputStats {
    pub fn count(&self, batch: &RecordBatch) {
        self.rows
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.bytes
            .fetch_add(batch_memory(&batch) as u64, Ordering::Relaxed);
    }
}

/// Opens a non-broadcast shuffle input as a stream with its own in-flight
/// budget. Must be called inside the Tokio runtime; the returned iterator
/// blocks and so belongs on the task's blocking thread. Remote fetchers
/// start when the operator first reaches them: a join reads its build side
/// to the end before its probe side, and a probe side fetched ahead would
/// only hold memory (with a shared budget it would even starve the build).
pub fn open(
    reader: Arc<ShuffleReader>,
    job: &JobId,
    input: &ShuffleInput,
    budget: InFlightBudget,
) -> BatchIter {
    let mut local = VecDeque::new();
    let mut remote = VecDeque::new();
    for spec in &input.fetches {
        for &p in &spec.partitions {
            if reader.is_local(spec) {
                local.push_back((spec.clone(), p));
            } else {
                remote.push_back((spec.clone(), p));
            }
        }
    }
    let runtime = tokio::runtime::Handle::current();
    let mut queue = (!remote.is_empty()).then_some(remote);
    let mut remote: Option<Remote> = None;
    let job = job.clone();
    let mut current: Option<BatchIter> = None;
    Box::new(std::iter::from_fn(move || loop {
        if let Some(it) = current.as_mut() {
            match it.next() {
                Some(b) => return Some(b),
                None => current = None,
            }
        }
        if let Some((spec, p)) = local.pop_front() {
            let path = reader.local_path(&job, &spec, p);
            match read_ipc(&path) {
                Ok(it) => {
                    let rows = spec.rows;
                    let it = it.map(move |b| b.map_err(|e| fetch_error(&spec, e.to_string())));
                    current = Some(Box::new(row_range(it, rows)))
                }
                // The scheduler lists only partitions that hold rows: a missing file is lost output.
                Err(e) => return Some(Err(fetch_error(&spec, e.to_string()))),
            }
            continue;
        }
        if let Some(queue) = queue.take() {
            remote = Some(Remote::start(
                &runtime,
                reader.clone(),
                &job,
                queue,
                &budget,
            ));
        }
        return remote.as_mut()?.next();
    }))
}

/// Bytes a task may have fetched but not yet consumed, reserved in the pool.
pub struct InFlightBudget {
    semaphore: Arc<Semaphore>,
    bytes: usize,
    _reservation: Reservation,
}

impl InFlightBudget {
    /// Up to `want` bytes, less when the pool is tight (never under 1 MiB:
    /// a task that cannot buffer one batch cannot run at all).
    pub fn new(memory: &Arc<TaskMemory>, want: usize) -> Self {
        let mut reservation = memory.reservation("shuffle input buffer");
        let mut bytes = want;
        while bytes > 1 << 20 && reservation.grow(bytes).is_err() {
            bytes /= 2;
        }
        InFlightBudget {
            semaphore: Arc::new(Semaphore::new(bytes)),
            bytes,
            _reservation: reservation,
        }
    }
}

/// Fetchers of remote partitions feeding one channel.
struct Remote {
    rx: mpsc::UnboundedReceiver<Result<(RecordBatch, OwnedSemaphorePermit)>>,
    fetchers: Vec<JoinHandle<()>>,
}

impl Remote {
    fn start(
        runtime: &tokio::runtime::Handle,
        reader: Arc<ShuffleReader>,
        job: &JobId,
        queue: VecDeque<(FetchSpec, u32)>,
        budget: &InFlightBudget,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(queue));
        let fetchers = (0..FETCH_CONCURRENCY)
            .map(|_| {
                let (reader, queue, tx, job) =
                    (reader.clone(), queue.clone(), tx.clone(), job.clone());
                let (semaphore, cap) = (budget.semaphore.clone(), budget.bytes);
                runtime.spawn(async move {
                    loop {
                        let Some((spec, p)) = queue.lock().expect("queue").pop_front() else {
                            return;
                        };
                        let mut stream = match reader.remote(&job, &spec, p).await {
                            Ok(s) => Box::pin(s),
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        };
                        while let Some(item) = stream.next().await {
                            let batch = match item {
                                Ok(b) => b,
                                Err(e) => {
                                    let _ = tx.send(Err(e));
                                    return;
                                }
                            };
                            let want = batch_memory(&batch).clamp(1, cap) as u32;
                            let Ok(permit) = semaphore.clone().acquire_many_owned(want).await
                            else {
                                return;
                            };
                            if tx.send(Ok((batch, permit))).is_err() {
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        Remote { rx, fetchers }
    }

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        // The permit drops here: once an operator has the batch, holding it is its business.
        self.rx
            .blocking_recv()
            .map(|r| r.map(|(batch, _permit)| batch))
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.fetchers.iter().for_each(JoinHandle::abort);
    }
}

/// Which broadcast side: the job, the stage it comes from, and the map
/// attempts it is made of (a recomputed map output makes a new entry).
type BroadcastKey = (JobId, StageId, Vec<(u32, u32)>);

struct BroadcastSide {
    batches: Vec<RecordBatch>,
    _reservation: Reservation,
}

/// Broadcast sides fetched on this worker, shared by the tasks of a stage.
pub struct BroadcastCache {
    pool: Arc<MemoryPool>,
    spill_root: std::path::PathBuf,
    entries: Mutex<HashMap<BroadcastKey, Arc<OnceCell<Arc<BroadcastSide>>>>>,
}

impl BroadcastCache {
    pub fn new(pool: Arc<MemoryPool>, spill_root: std::path::PathBuf) -> Self {
        BroadcastCache {
            pool,
            spill_root,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The broadcast side's batches, fetching them if no task here has.
    pub async fn get(
        &self,
        reader: &Arc<ShuffleReader>,
        job: &JobId,
        input: &ShuffleInput,
    ) -> Result<BatchIter> {
        let stage = input.fetches.first().map_or(StageId(0), |f| f.stage);
        let mut maps: Vec<(u32, u32)> = input
            .fetches
            .iter()
            .map(|f| (f.map_task, f.attempt))
            .collect();
        maps.sort_unstable();
        let cell = self
            .entries
            .lock()
            .expect("broadcasts")
            .entry((job.clone(), stage, maps))
            .or_default()
            .clone();
        let side = cell
            .get_or_try_init(|| self.fetch(reader, job, input))
            .await?
            .clone();
        let mut i = 0;
        Ok(Box::new(std::iter::from_fn(move || {
            let b = side.batches.get(i).cloned();
            i += 1;
            b.map(Ok)
        })))
    }

    async fn fetch(
        &self,
        reader: &Arc<ShuffleReader>,
        job: &JobId,
        input: &ShuffleInput,
    ) -> Result<Arc<BroadcastSide>> {
        let owner = TaskMemory::new(
            self.pool.clone(),
            self.spill_root.join(format!("broadcast-{job}")),
        );
        let mut reservation = owner.reservation("broadcast join side");
        let mut batches = vec![];
        for spec in &input.fetches {
            for &p in &spec.partitions {
                if reader.is_local(spec) {
                    let path = reader.local_path(job, spec, p);
                    let read = tokio::task::spawn_blocking(move || -> Result<Vec<RecordBatch>> {
                        read_ipc(&path)?.collect()
                    })
                    .await
                    .map_err(|e| fetch_error(spec, e.to_string()))?
                    .map_err(|e| fetch_error(spec, e.to_string()))?;
                    for b in read {
                        reservation.grow(batch_memory(&b))?;
                        batches.push(b);
                    }
                } else {
                    let mut stream = Box::pin(reader.remote(job, spec, p).await?);
                    while let Some(b) = stream.next().await {
                        let b = b?;
                        reservation.grow(batch_memory(&b))?;
                        batches.push(b);
                    }
                }
            }
        }
        Ok(Arc::new(BroadcastSide {
            batches,
            _reservation: reservation,
        }))
    }

    /// The job is over: its broadcast sides are released.
    pub fn remove_job(&self, job: &JobId) {
        self.entries
            .lock()
            .expect("broadcasts")
            .retain(|(j, _, _), _| j != job);
    }
}
