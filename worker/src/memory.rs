//! The worker-wide memory pool.
//!
//! Operators take their large allocations (hash tables, buffered batches,
//! fetched shuffle data) through a [`Reservation`]. The pool enforces the
//! worker's `--memory-limit`; each task's [`TaskMemory`] records the peak
//! it reached so the scheduler can learn real task sizes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::{Result, WorkerError};

#[derive(Debug)]
pub struct MemoryPool {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryPool {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(MemoryPool {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_grow(&self, bytes: usize) -> Result<()> {
        let mut current = self.used.load(Ordering::Relaxed);
        loop {
            let next = current + bytes;
            if next > self.limit {
                return Err(WorkerError::MemoryExhausted {
                    requested: bytes,
                    used: current,
                    limit: self.limit,
                });
            }
            match self.used.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    fn shrink(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One task's share of the pool: current use and the peak it reached.
#[derive(Debug)]
pub struct TaskMemory {
    pool: Arc<MemoryPool>,
    current: AtomicUsize,
    peak: AtomicUsize,
}

impl TaskMemory {
    pub fn new(pool: Arc<MemoryPool>) -> Arc<Self> {
        Arc::new(TaskMemory {
            pool,
            current: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            task: Arc::clone(self),
            size: 0,
        }
    }
}

/// Bytes held by one operator; released on drop.
#[derive(Debug)]
pub struct Reservation {
    task: Arc<TaskMemory>,
    size: usize,
}

impl Reservation {
    pub fn size(&self) -> usize {
        self.size
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
        self.task.pool.try_grow(bytes)?;
        self.size += bytes;
        let now = self.task.current.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.task.peak.fetch_max(now, Ordering::AcqRel);
        Ok(())
    }

    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.size);
        self.task.pool.shrink(bytes);
        self.task.current.fetch_sub(bytes, Ordering::AcqRel);
        self.size -= bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink(self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_against_the_limit_and_record_peaks() {
        let pool = MemoryPool::new(1000);
        let task = TaskMemory::new(pool.clone());
        let mut a = task.reservation();
        a.grow(600).unwrap();
        let mut b = task.reservation();
        let err = b.grow(500).unwrap_err();
        assert!(err.to_string().contains("memory limit is 1000"), "{err}");
        a.resize(100).unwrap();
        b.grow(500).unwrap();
        assert_eq!(pool.used(), 600);
        drop(a);
        drop(b);
        assert_eq!(pool.used(), 0);
        assert_eq!(task.peak(), 600);
    }
}
