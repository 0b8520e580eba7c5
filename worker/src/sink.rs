//! Where a task's output goes: shuffle partitions (hash or single) or a
//! Parquet file committed by rename, so readers never see half a file.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use keel_proto::ids::{JobId, TaskId};
use keel_proto::plan::Sink;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Result, WorkerError};
use crate::shuffle::{map_dir, PartitionStat, ShuffleWriter};

pub enum TaskSink {
    Shuffle(ShuffleWriter),
    Parquet {
        writer: ArrowWriter<File>,
        tmp: PathBuf,
        target: PathBuf,
        rows: u64,
    },
}

impl TaskSink {
    pub fn open(
        sink: &Sink,
        work_dir: &Path,
        job: &JobId,
        task: TaskId,
        schema: SchemaRef,
    ) -> Result<Self> {
        Ok(match sink {
            Sink::Hash { keys, partitions } => {
                let dir = map_dir(work_dir, job, task.stage, task.index, task.attempt);
                TaskSink::Shuffle(ShuffleWriter::new(dir, schema, keys.clone(), *partitions)?)
            }
            Sink::Single => {
                let dir = map_dir(work_dir, job, task.stage, task.index, task.attempt);
                TaskSink::Shuffle(ShuffleWriter::new(dir, schema, vec![], 1)?)
            }
            Sink::Parquet { dir } => {
                let dir = PathBuf::from(dir);
                std::fs::create_dir_all(&dir).map_err(|e| WorkerError::io(dir.display(), e))?;
                let target = dir.join(format!("part-{:05}.parquet", task.index));
                // Hidden, attempt-specific temporary name: readers skip it and
                // two attempts of one task never write the same file.
                let tmp = dir.join(format!(
                    ".part-{:05}-{}-{}.parquet.tmp",
                    task.index, job.0, task.attempt
                ));
                let file = File::create(&tmp).map_err(|e| WorkerError::io(tmp.display(), e))?;
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level 1")))
                    .build();
                let writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|source| {
                    WorkerError::ParquetWrite {
                        path: tmp.display().to_string(),
                        source,
                    }
                })?;
                TaskSink::Parquet {
                    writer,
                    tmp,
                    target,
                    rows: 0,
                }
            }
        })
    }

    pub fn write(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            TaskSink::Shuffle(w) => w.write(batch),
            TaskSink::Parquet {
                writer, tmp, rows, ..
            } => {
                *rows += batch.num_rows() as u64;
                writer
                    .write(&batch)
                    .map_err(|source| WorkerError::ParquetWrite {
                        path: tmp.display().to_string(),
                        source,
                    })
            }
        }
    }

    pub fn finish(self) -> Result<Vec<PartitionStat>> {
        match self {
            TaskSink::Shuffle(w) => w.finish(),
            TaskSink::Parquet {
                writer,
                tmp,
                target,
                rows,
            } => {
                writer.close().map_err(|source| WorkerError::ParquetWrite {
                    path: tmp.display().to_string(),
                    source,
                })?;
                let bytes = std::fs::metadata(&tmp)
                    .map_err(|e| WorkerError::io(tmp.display(), e))?
                    .len();
                std::fs::rename(&tmp, &target).map_err(|e| WorkerError::io(target.display(), e))?;
                Ok(vec![PartitionStat { rows, bytes }])
            }
        }
    }

    /// Removes a partly written Parquet file after a failure.
    pub fn abort(self) {
        if let TaskSink::Parquet { tmp, .. } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
