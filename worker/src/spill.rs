//! Spill files: LZ4-compressed Arrow IPC streams under the task's spill
//! directory. A [`SpillFile`] deletes itself when dropped, so a partition is
//! gone from disk as soon as its operator has read it; whatever is left when
//! the task ends goes with the task's spill directory ([`TaskMemory`]).
//!
//! Also the hash partitioning that the spilling operators share: rows are
//! split by a slice of their key hash that depends on the recursion level,
//! so a partition split again spreads over new partitions.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;

use crate::error::{ArrowContext, Result, WorkerError};
use crate::memory::TaskMemory;
use crate::operators::{hash_bytes, BatchIter, KeyEncoder};

/// Partitions one spill splits into.
pub const SPILL_FANOUT: usize = 16;
/// Levels of re-partitioning before an operator falls back to its last
/// resort (joins: chunks of the build side) or gives up (aggregation).
pub const MAX_SPILL_LEVEL: u32 = 6;

/// IPC options for spill files (and shuffle files under
/// `--shuffle-compression lz4`): LZ4 frames are cheap to write and read and
/// shrink spilled data severalfold, which matters when memory is short and
/// the page cache cannot absorb the writes.
pub fn ipc_options() -> IpcWriteOptions {
    IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .expect("LZ4 is compiled in")
}

/// A spill file being written.
pub struct SpillWriter {
    path: PathBuf,
    writer: StreamWriter<BufWriter<File>>,
    rows: usize,
    memory: Arc<TaskMemory>,
}

impl SpillWriter {
    pub fn create(memory: &Arc<TaskMemory>, what: &str, schema: &SchemaRef) -> Result<Self> {
        let path = memory.spill_path(what)?;
        let file = File::create(&path).map_err(|e| WorkerError::io(path.display(), e))?;
        let writer =
            StreamWriter::try_new_with_options(BufWriter::new(file), schema, ipc_options())
                .context("opening a spill file")?;
        Ok(SpillWriter {
            path,
            writer,
            rows: 0,
            memory: memory.clone(),
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        self.writer.write(batch).context("writing a spill file")
    }

    pub fn finish(mut self) -> Result<SpillFile> {
        self.writer.finish().context("closing a spill file")?;
        let bytes = std::fs::metadata(&self.path)
            .map_err(|e| WorkerError::io(self.path.display(), e))?
            .len();
        self.memory.record_spill(bytes);
        Ok(SpillFile {
            path: std::mem::take(&mut self.path),
            rows: self.rows,
        })
    }
}

/// A finished spill file; removed from disk on drop.
#[derive(Debug)]
pub struct SpillFile {
    path: PathBuf,
    pub rows: usize,
}

impl SpillFile {
    /// Streams the file's batches (the file stays until the `SpillFile` is dropped).
    pub fn read(&self) -> Result<BatchIter> {
        Ok(Box::new(read_ipc(&self.path)?))
    }

    /// Streams the file's batches and deletes the file when they are read.
    pub fn read_and_remove(self) -> Result<BatchIter> {
        let batches = read_ipc(&self.path)?;
        let mut keep = Some(self);
        Ok(Box::new(batches.chain(std::iter::from_fn(move || {
            keep.take();
            None
        }))))
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads an Arrow IPC stream file batch by batch.
pub fn read_ipc(path: &Path) -> Result<impl Iterator<Item = Result<RecordBatch>> + Send> {
    let file = File::open(path).map_err(|e| WorkerError::io(path.display(), e))?;
    let shown = path.display().to_string();
    let reader = StreamReader::try_new(BufReader::with_capacity(1 << 20, file), None)
        .context(&format!("reading {shown}"))?;
    Ok(reader.map(move |b| b.context(&format!("reading {shown}"))))
}

/// Hash-partitions batches on key expressions into `SPILL_FANOUT` spill
/// files (rows with NULL keys are partitioned like any other).
pub struct SpillPartitioner {
    keys: KeyEncoder,
    level: u32,
    schema: SchemaRef,
    what: &'static str,
    writers: Vec<Option<SpillWriter>>,
    memory: Arc<TaskMemory>,
}

impl SpillPartitioner {
    pub fn new(
        memory: &Arc<TaskMemory>,
        what: &'static str,
        keys: KeyEncoder,
        schema: SchemaRef,
        level: u32,
    ) -> Self {
        SpillPartitioner {
            keys,
            level,
            schema,
            what,
            writers: (0..SPILL_FANOUT).map(|_| None).collect(),
            memory: memory.clone(),
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Writes the batch's rows to their partitions.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let key_columns = self.keys.key_columns(batch)?;
        self.write_with_keys(batch, &key_columns)
    }

    pub fn write_with_keys(&mut self, batch: &RecordBatch, key_columns: &[ArrayRef]) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if key_columns.is_empty() {
            // No keys (a global aggregate): one partition holds everything.
            return self.write_part(0, batch.clone());
        }
        let rows = self.keys.encode_columns(key_columns)?;
        let mut indices: Vec<Vec<u32>> = vec![vec![]; SPILL_FANOUT];
        for (i, row) in rows.iter().enumerate() {
            indices[partition_of(hash_bytes(row.data()), self.level)].push(i as u32);
        }
        for (p, idx) in indices.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let part = if idx.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(idx)).context("spill partitioning")?
            };
            self.write_part(p, part)?;
        }
        Ok(())
    }

    fn write_part(&mut self, p: usize, part: RecordBatch) -> Result<()> {
        if self.writers[p].is_none() {
            self.writers[p] = Some(SpillWriter::create(&self.memory, self.what, &self.schema)?);
        }
        self.writers[p].as_mut().expect("open").write(&part)
    }

    /// The partitions' files, `None` where a partition got no rows.
    pub fn finish(self) -> Result<Vec<Option<SpillFile>>> {
        self.writers
            .into_iter()
            .map(|w| w.map(SpillWriter::finish).transpose())
            .collect()
    }
}

/// The partition of a key hash at a recursion level: each level uses its
/// own bits of the hash, so re-partitioning a partition splits it further.
pub fn partition_of(hash: u64, level: u32) -> usize {
    ((hash >> (60 - 4 * level.min(15))) & (SPILL_FANOUT as u64 - 1)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPool;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use keel_proto::expr::Expr;

    #[test]
    fn partitions_round_trip_and_files_vanish_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let memory = TaskMemory::new(MemoryPool::new(1 << 30), dir.path().join("s"));
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let keys = KeyEncoder::new(vec![Expr::Column(0)], &schema).unwrap();
        let mut parts = SpillPartitioner::new(&memory, "t", keys, schema.clone(), 0);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..10_000))],
        )
        .unwrap();
        parts.write(&batch).unwrap();
        let files = parts.finish().unwrap();
        assert!(files.iter().filter(|f| f.is_some()).count() > 8);
        let mut total = 0;
        for f in files.into_iter().flatten() {
            let path = f.path.clone();
            for b in f.read_and_remove().unwrap() {
                total += b.unwrap().num_rows();
            }
            assert!(!path.exists());
        }
        assert_eq!(total, 10_000);
        assert!(memory.spilled_bytes() > 0);
        assert!(memory.spill_count() > 8);
    }
}
