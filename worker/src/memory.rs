//! The worker-wide memory pool.
//!
//! Every large allocation (hash tables, buffered batches, sort runs,
//! shuffle and Parquet writer buffers, streamed inputs, broadcast sides) is
//! taken through a [`Reservation`] *before* it is made. A consumer says
//! whether it can spill:
//!
//! - unspillable consumers (input buffers, broadcast sides) get whatever
//!   the pool has left;
//! - spillable consumers (aggregation, join, sort, writers) share what the
//!   unspillable ones leave, fairly: each may hold at most
//!   `(limit - unspillable) / spillable consumers`, so one task cannot
//!   starve its neighbours (DataFusion's `FairSpillPool` is the model);
//!   a consumer holding nothing may take its first bytes from any room left,
//!   so every operator can make progress.
//!
//! A refused reservation is a [`WorkerError::MemoryExhausted`] naming the
//! consumer; spilling operators catch it and go to disk. Each task's
//! [`TaskMemory`] records its peak, what it spilled, and owns its spill
//! directory, removed when the task ends however it ends.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Result, WorkerError};

#[derive(Debug, Default)]
struct PoolState {
    unspillable: usize,
    spillable: usize,
    spillable_consumers: usize,
}

#[derive(Debug)]
pub struct MemoryPool {
    limit: usize,
    state: Mutex<PoolState>,
}

impl MemoryPool {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(MemoryPool {
            limit,
            state: Mutex::new(PoolState::default()),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        let s = self.state.lock().expect("pool");
        s.unspillable + s.spillable
    }

    /// Reserved by consumers that cannot spill.
    pub fn pinned(&self) -> usize {
        self.state.lock().expect("pool").unspillable
    }

    fn register(&self, spillable: bool) {
        if spillable {
            self.state.lock().expect("pool").spillable_consumers += 1;
        }
    }

    fn unregister(&self, spillable: bool) {
        if spillable {
            self.state.lock().expect("pool").spillable_consumers -= 1;
        }
    }

    fn try_grow(
        &self,
        consumer: &'static str,
        spillable: bool,
        held: usize,
        bytes: usize,
    ) -> Result<()> {
        let mut s = self.state.lock().expect("pool");
        let refused = if spillable {
            // A consumer holding nothing may take its first bytes while the
            // pool has room, so every operator can make progress; past that
            // it keeps to its fair share.
            let share = self.limit.saturating_sub(s.unspillable) / s.spillable_consumers.max(1);
            (held > 0 && held + bytes > share) || s.unspillable + s.spillable + bytes > self.limit
        } else {
            s.unspillable + s.spillable + bytes > self.limit
        };
        if refused {
            return Err(WorkerError::MemoryExhausted {
                consumer,
                requested: bytes,
                held,
                used: s.unspillable + s.spillable,
                limit: self.limit,
            });
        }
        if spillable {
            s.spillable += bytes;
        } else {
            s.unspillable += bytes;
        }
        Ok(())
    }

    fn shrink(&self, spillable: bool, bytes: usize) {
        let mut s = self.state.lock().expect("pool");
        if spillable {
            s.spillable -= bytes;
        } else {
            s.unspillable -= bytes;
        }
    }
}

/// One task's share of the pool: current use, the peak it reached, what it
/// spilled, and where its spill files live.
#[derive(Debug)]
pub struct TaskMemory {
    pool: Arc<MemoryPool>,
    current: AtomicUsize,
    peak: AtomicUsize,
    spilled_bytes: AtomicU64,
    spill_count: AtomicU64,
    spill_dir: PathBuf,
    next_file: AtomicUsize,
}

impl TaskMemory {
    pub fn new(pool: Arc<MemoryPool>, spill_dir: PathBuf) -> Arc<Self> {
        Arc::new(TaskMemory {
            pool,
            current: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            spilled_bytes: AtomicU64::new(0),
            spill_count: AtomicU64::new(0),
            spill_dir,
            next_file: AtomicUsize::new(0),
        })
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn spilled_bytes(&self) -> u64 {
        self.spilled_bytes.load(Ordering::Relaxed)
    }

    pub fn spill_count(&self) -> u64 {
        self.spill_count.load(Ordering::Relaxed)
    }

    /// A reservation for a consumer that cannot spill: refused only when the pool is full.
    pub fn reservation(self: &Arc<Self>, consumer: &'static str) -> Reservation {
        Reservation::new(self.clone(), consumer, false)
    }

    /// A reservation for a consumer that spills when refused: held to a fair share.
    pub fn spillable(self: &Arc<Self>, consumer: &'static str) -> Reservation {
        Reservation::new(self.clone(), consumer, true)
    }

    /// A fresh path for one spill file (the directory is created on first use).
    pub fn spill_path(&self, what: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.spill_dir)
            .map_err(|e| WorkerError::io(self.spill_dir.display(), e))?;
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        Ok(self.spill_dir.join(format!("{what}-{n}.arrow")))
    }

    pub(crate) fn record_spill(&self, bytes: u64) {
        self.spilled_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.spill_count.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for TaskMemory {
    /// The task is over (finished, failed or cancelled): its spill files go with it.
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.spill_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, dir = %self.spill_dir.display(), "could not remove spill files");
            }
        }
    }
}

/// Bytes held by one consumer; released on drop.
#[derive(Debug)]
pub struct Reservation {
    task: Arc<TaskMemory>,
    consumer: &'static str,
    spillable: bool,
    size: usize,
}

impl Reservation {
    fn new(task: Arc<TaskMemory>, consumer: &'static str, spillable: bool) -> Self {
        task.pool.register(spillable);
        Reservation {
            task,
            consumer,
            spillable,
            size: 0,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn task(&self) -> &Arc<TaskMemory> {
        &self.task
    }

    /// Another reservation of the same task and kind, for a nested operator.
    pub fn sibling(&self, consumer: &'static str) -> Reservation {
        Reservation::new(self.task.clone(), consumer, self.spillable)
    }

    /// Sets the reservation to `bytes`, growing or shrinking it.
    pub fn resize(&mut self, bytes: usize) -> Result<()> {
        if bytes > self.size {
            self.grow(bytes - self.size)
        } else {
            self.shrink(self.size - bytes);
            Ok(())
        }
    }

    pub fn grow(&mut self, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.task
            .pool
            .try_grow(self.consumer, self.spillable, self.size, bytes)?;
        self.size += bytes;
        let now = self.task.current.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.task.peak.fetch_max(now, Ordering::AcqRel);
        Ok(())
    }

    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.size);
        if bytes == 0 {
            return;
        }
        self.task.pool.shrink(self.spillable, bytes);
        self.task.current.fetch_sub(bytes, Ordering::AcqRel);
        self.size -= bytes;
    }

    /// The error for a need this consumer cannot meet even after spilling.
    pub fn cannot_proceed(&self, needed: usize) -> WorkerError {
        WorkerError::CannotProceed {
            consumer: self.consumer,
            needed,
            limit: self.task.pool.limit(),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink(self.size);
        self.task.pool.unregister(self.spillable);
    }
}

/// Whether an error is a refused reservation (the cue to spill).
/// Bytes a batch holds, each allocation counted once. Batches decoded from
/// Arrow IPC (shuffle files, Flight streams, spill files) slice every
/// column from one message body, which `get_array_memory_size` counts once
/// per buffer: several times what the batch really holds.
pub fn batch_memory(batch: &arrow::array::RecordBatch) -> usize {
    fn visit(data: &arrow::array::ArrayData, seen: &mut Vec<usize>, total: &mut usize) {
        let nulls = data.nulls().map(|n| n.buffer());
        for b in data.buffers().iter().chain(nulls) {
            let at = b.data_ptr().as_ptr() as usize;
            if !seen.contains(&at) {
                seen.push(at);
                *total += b.capacity();
            }
        }
        for child in data.child_data() {
            visit(child, seen, total);
        }
    }
    let (mut seen, mut total) = (Vec::with_capacity(2 * batch.num_columns()), 0);
    for column in batch.columns() {
        visit(&column.to_data(), &mut seen, &mut total);
    }
    total
}

pub fn is_refusal(e: &WorkerError) -> bool {
    matches!(e, WorkerError::MemoryExhausted { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_decoded_from_ipc_counts_its_message_body_once() {
        use arrow::array::{Int64Array, RecordBatch, StringArray};
        use std::sync::Arc;
        let n = 10_000;
        let batch = RecordBatch::try_from_iter([
            ("a", Arc::new(Int64Array::from_iter_values(0..n)) as _),
            ("b", Arc::new(Int64Array::from_iter_values(0..n)) as _),
            (
                "s",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("v{i}")),
                )) as _,
            ),
        ])
        .unwrap();
        let mut bytes = vec![];
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        let read =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.clone()), None)
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
        let data = 2 * 8 * n as usize;
        assert!(batch_memory(&read) >= data && batch_memory(&read) <= bytes.len() + 4096);
        assert!(
            read.get_array_memory_size() > 3 * batch_memory(&read),
            "one body, many buffers"
        );
        // Batches built column by column are counted as before.
        assert_eq!(
            batch_memory(&batch),
            batch.get_array_memory_size() - size_overhead(&batch)
        );
    }

    /// What `get_array_memory_size` adds beyond buffers: the array structs.
    fn size_overhead(batch: &arrow::array::RecordBatch) -> usize {
        batch
            .columns()
            .iter()
            .map(|c| c.get_array_memory_size() - c.get_buffer_memory_size())
            .sum()
    }

    fn task(limit: usize) -> (Arc<MemoryPool>, Arc<TaskMemory>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let pool = MemoryPool::new(limit);
        let task = TaskMemory::new(pool.clone(), dir.path().join("spill"));
        (pool, task, dir)
    }

    #[test]
    fn reservations_count_against_the_limit_and_record_peaks() {
        let (pool, task, _dir) = task(1000);
        let mut a = task.reservation("a");
        a.grow(600).unwrap();
        let mut b = task.reservation("b");
        let err = b.grow(500).unwrap_err();
        assert!(err.to_string().contains("memory limit is 1000"), "{err}");
        assert!(err.to_string().contains("b "), "{err}");
        a.resize(100).unwrap();
        b.grow(500).unwrap();
        assert_eq!(pool.used(), 600);
        drop(a);
        drop(b);
        assert_eq!(pool.used(), 0);
        assert_eq!(task.peak(), 600);
    }

    #[test]
    fn spillable_consumers_share_what_unspillable_ones_leave() {
        let (pool, task, _dir) = task(1000);
        let mut fixed = task.reservation("input");
        fixed.grow(200).unwrap();
        let mut x = task.spillable("x");
        let mut y = task.spillable("y");
        // Two spillable consumers share 800: 400 each.
        x.grow(400).unwrap();
        assert!(is_refusal(&x.grow(1).unwrap_err()));
        y.grow(300).unwrap();
        drop(y);
        // Alone now, x may take all 800.
        x.grow(400).unwrap();
        assert_eq!(pool.used(), 1000);
        assert!(is_refusal(&fixed.grow(1).unwrap_err()));
    }

    #[test]
    fn spill_directory_is_removed_with_the_task() {
        let (_pool, task, dir) = task(1000);
        let path = task.spill_path("agg").unwrap();
        std::fs::write(&path, b"x").unwrap();
        assert!(dir.path().join("spill").exists());
        drop(task);
        assert!(!dir.path().join("spill").exists());
    }
}
