//! Where a task's output goes: shuffle partitions (hash or single) or a
//! Parquet file committed by rename (an `s3://` object by completing its
//! multipart upload), so readers never see half a file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use keel_proto::ids::{AttemptId, JobId};
use keel_proto::plan::Sink;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Result, WorkerError};
use crate::memory::{batch_memory, is_refusal, Reservation, TaskMemory};
use crate::shuffle::{map_dir, PartitionStat, ShuffleCompression, ShuffleWriter, WrittenOutput};

/// Rows per Parquet row group Keel writes (the parquet crate's default is 1 M).
const PARQUET_ROW_GROUP_ROWS: usize = 256 * 1024;

pub enum TaskSink {
    Shuffle(ShuffleWriter),
    Parquet {
        writer: ArrowWriter<Output>,
        /// Where the file being written is (the temporary file, or the object).
        writing: String,
        target: PathBuf,
        rows: u64,
        /// The row group being encoded in memory.
        reservation: Reservation,
    },
}

/// A Parquet output's bytes: a hidden temporary file renamed into place at
/// the end, or an object uploaded in parts and completed at the end.
pub enum Output {
    File(File),
    Object(keel_storage::ObjectWriter),
}

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::File(f) => f.write(buf),
            Output::Object(o) => o.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File(f) => f.flush(),
            Output::Object(o) => o.flush(),
        }
    }
}

impl TaskSink {
    pub fn open(
        sink: &Sink,
        work_dir: &Path,
        job: &JobId,
        task: AttemptId,
        schema: SchemaRef,
        memory: &Arc<TaskMemory>,
        compression: ShuffleCompression,
    ) -> Result<Self> {
        Ok(match sink {
            Sink::Hash { keys, partitions } => {
                let dir = map_dir(work_dir, job, task);
                TaskSink::Shuffle(ShuffleWriter::new(
                    dir,
                    schema,
                    keys.clone(),
                    *partitions,
                    memory.spillable("shuffle writer"),
                    compression,
                )?)
            }
            Sink::Single => {
                let dir = map_dir(work_dir, job, task);
                TaskSink::Shuffle(ShuffleWriter::new(
                    dir,
                    schema,
                    vec![],
                    1,
                    memory.spillable("shuffle writer"),
                    compression,
                )?)
            }
            Sink::Parquet { dir } => {
                let name = format!("part-{:05}.parquet", task.index());
                let (output, writing, target) = if keel_storage::is_remote(dir) {
                    // One object per task, visible only once its upload completes;
                    // a retried task's upload replaces it whole.
                    let url = format!("{}/{name}", dir.trim_end_matches('/'));
                    let object =
                        keel_storage::ObjectWriter::create(&url, tokio::runtime::Handle::current())
                            .map_err(WorkerError::Config)?;
                    (Output::Object(object), url.clone(), PathBuf::from(url))
                } else {
                    let dir = PathBuf::from(dir);
                    std::fs::create_dir_all(&dir).map_err(|e| WorkerError::io(dir.display(), e))?;
                    // Hidden, attempt-specific temporary name: readers skip it and
                    // two attempts of one task never write the same file.
                    let tmp = dir.join(format!(
                        ".part-{:05}-{}-{}.parquet.tmp",
                        task.index(),
                        job.0,
                        task.attempt
                    ));
                    let file = File::create(&tmp).map_err(|e| WorkerError::io(tmp.display(), e))?;
                    (
                        Output::File(file),
                        tmp.display().to_string(),
                        dir.join(name),
                    )
                };
                // Dictionaries pay for low-cardinality columns only; on the
                // high-cardinality outputs of big aggregations the dictionary
                // interner was a large share of the write time, so pages fall
                // back to plain encoding early (at 256 KiB of dictionary).
                let props = WriterProperties::builder()
                    // Snappy, as DuckDB writes by default: a fraction of zstd's CPU
                    // on the wide outputs of COPY, for somewhat larger files.
                    .set_compression(Compression::SNAPPY)
                    .set_dictionary_page_size_limit(256 << 10)
                    .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS))
                    .build();
                let writer =
                    ArrowWriter::try_new(output, schema, Some(props)).map_err(|source| {
                        WorkerError::ParquetWrite {
                            path: writing.clone(),
                            source,
                        }
                    })?;
                TaskSink::Parquet {
                    writer,
                    writing,
                    target,
                    rows: 0,
                    reservation: memory.spillable("Parquet writer"),
                }
            }
        })
    }

    pub fn write(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            TaskSink::Shuffle(w) => w.write(batch),
            TaskSink::Parquet {
                writer,
                writing,
                rows,
                reservation,
                ..
            } => {
                let perr = |source| WorkerError::ParquetWrite {
                    path: writing.clone(),
                    source,
                };
                *rows += batch.num_rows() as u64;
                // Encoded pages are smaller than the batch: reserving the
                // batch's size before writing it bounds the row group's growth.
                let need = writer.memory_size() + batch_memory(&batch);
                if let Err(e) = reservation.resize(need) {
                    if !is_refusal(&e) {
                        return Err(e);
                    }
                    // Out of memory: close the row group early, then go on. If
                    // even an empty row group cannot take this batch, it becomes
                    // a row group of its own, closed at once.
                    writer.flush().map_err(perr)?;
                    let need = writer.memory_size() + batch_memory(&batch);
                    if let Err(e) = reservation.resize(need) {
                        if !is_refusal(&e) {
                            return Err(e);
                        }
                        writer.write(&batch).map_err(perr)?;
                        writer.flush().map_err(perr)?;
                        return reservation.resize(writer.memory_size());
                    }
                }
                writer.write(&batch).map_err(perr)?;
                // Encoded pages can outgrow the batch they came from: if the
                // row group no longer fits, it is closed now.
                if let Err(e) = reservation.resize(writer.memory_size()) {
                    if !is_refusal(&e) {
                        return Err(e);
                    }
                    writer.flush().map_err(perr)?;
                    reservation.resize(writer.memory_size())?;
                }
                Ok(())
            }
        }
    }

    pub fn finish(self) -> Result<WrittenOutput> {
        match self {
            TaskSink::Shuffle(w) => w.finish(),
            TaskSink::Parquet {
                mut writer,
                writing,
                target,
                rows,
                reservation: _reservation,
            } => {
                let perr = |source| WorkerError::ParquetWrite {
                    path: writing.clone(),
                    source,
                };
                writer.finish().map_err(perr)?;
                let bytes = match writer.inner_mut() {
                    Output::File(_) => {
                        let bytes = std::fs::metadata(&writing)
                            .map_err(|e| WorkerError::io(&writing, e))?
                            .len();
                        std::fs::rename(&writing, &target)
                            .map_err(|e| WorkerError::io(target.display(), e))?;
                        bytes
                    }
                    Output::Object(object) => object.finish().map_err(WorkerError::Config)?,
                };
                Ok(WrittenOutput {
                    partitions: vec![PartitionStat { rows, bytes }],
                    hot_keys: None,
                })
            }
        }
    }

    /// Removes a partly written Parquet file after a failure (an object's
    /// upload is abandoned when its writer drops).
    pub fn abort(self) {
        if let TaskSink::Parquet {
            writer, writing, ..
        } = self
        {
            if matches!(writer.inner(), Output::File(_)) {
                let _ = std::fs::remove_file(writing);
            }
        }
    }
}
