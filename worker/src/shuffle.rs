//! Shuffle data on local disk: the writer that hash-partitions a task's
//! output into Arrow IPC files, and the reader that fetches partitions,
//! from this worker's disk directly or from another worker over Flight.
//!
//! Layout: `<work-dir>/<job>/stage-<s>/map-<task>-<attempt>/part-<p>.arrow`.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::StreamWriter;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::Ticket;
use futures::TryStreamExt;
use keel_proto::expr::Expr;
use keel_proto::ids::{AttemptId, JobId, TaskId};
use keel_proto::net::Connect;
use keel_proto::task::{encode, FetchSpec, PartitionTicket};
use tonic::transport::Channel;

use crate::error::{ArrowContext, Result, WorkerError};
use crate::hot_keys::{HotKeyTracker, HotKeys};
use crate::memory::{batch_memory, is_refusal, Reservation};
use crate::operators::{hash_bytes, hash_columns, KeyEncoder, BATCH_ROWS};
use crate::spill::ipc_options;

pub fn job_dir(work_dir: &Path, job: &JobId) -> PathBuf {
    work_dir.join(&job.0)
}

pub fn map_dir(work_dir: &Path, job: &JobId, id: AttemptId) -> PathBuf {
    job_dir(work_dir, job)
        .join(format!("stage-{}", id.stage().0))
        .join(format!("map-{}-{}", id.index(), id.attempt))
}

pub fn partition_path(work_dir: &Path, t: &PartitionTicket) -> PathBuf {
    map_dir(
        work_dir,
        &t.job,
        TaskId {
            stage: t.stage,
            index: t.map_task,
        }
        .attempt(t.attempt),
    )
    .join(format!("part-{}.arrow", t.partition))
}

/// How shuffle files are compressed (`keel-worker --shuffle-compression`).
/// Uncompressed by default: on one machine, or on a fast network, LZ4
/// costs more CPU to write and read than the bytes it saves (story 1 at
/// scale 0.002: 42 s uncompressed against 49 s with LZ4 on 2 cores).
/// LZ4 is for clusters whose network, not CPU, is the bottleneck.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ShuffleCompression {
    #[default]
    None,
    Lz4,
}

impl ShuffleCompression {
    fn ipc_options(self) -> arrow::ipc::writer::IpcWriteOptions {
        match self {
            ShuffleCompression::None => Default::default(),
            ShuffleCompression::Lz4 => ipc_options(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionStat {
    pub rows: u64,
    pub bytes: u64,
}

/// What a task wrote: rows and bytes per output partition and, for a hash
/// exchange, the heavy hitters of its key.
#[derive(Debug, Default)]
pub struct WrittenOutput {
    pub partitions: Vec<PartitionStat>,
    pub hot_keys: Option<HotKeys>,
}

/// Splits batches by key hash into `partitions` IPC files,
/// buffering small slices so files hold batches of a useful size. Buffers
/// are reserved before they are held; when the pool refuses, every buffer
/// is flushed to its file and the writer goes on.
pub struct ShuffleWriter {
    dir: PathBuf,
    schema: SchemaRef,
    keys: Option<KeyEncoder>,
    buffers: Vec<Vec<RecordBatch>>,
    buffered_rows: Vec<usize>,
    buffered_bytes: Vec<usize>,
    writers: Vec<Option<StreamWriter<BufWriter<File>>>>,
    stats: Vec<PartitionStat>,
    reservation: Reservation,
    /// Each row's key hash (reused between batches).
    hashes: Vec<u64>,
    hot_keys: HotKeyTracker,
    compression: ShuffleCompression,
}

impl ShuffleWriter {
    pub fn new(
        dir: PathBuf,
        schema: SchemaRef,
        keys: Vec<Expr>,
        partitions: u32,
        reservation: Reservation,
        compression: ShuffleCompression,
    ) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| WorkerError::io(dir.display(), e))?;
        let n = partitions.max(1) as usize;
        let keys = if n > 1 {
            Some(KeyEncoder::new(keys, &schema)?)
        } else {
            None
        };
        Ok(ShuffleWriter {
            dir,
            schema,
            keys,
            buffers: (0..n).map(|_| vec![]).collect(),
            buffered_rows: vec![0; n],
            buffered_bytes: vec![0; n],
            writers: (0..n).map(|_| None).collect(),
            stats: vec![PartitionStat::default(); n],
            reservation,
            hashes: vec![],
            hot_keys: HotKeyTracker::default(),
            compression,
        })
    }

    pub fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let Some(keys) = &self.keys else {
            return self.buffer(0, batch);
        };
        let n = self.buffers.len();
        let rows = batch.num_rows();
        let columns = keys.key_columns(&batch)?;
        if !hash_columns(&columns, rows, &mut self.hashes) {
            let encoded = keys.encode_columns(&columns)?;
            self.hashes.clear();
            self.hashes
                .extend(encoded.iter().map(|r| hash_bytes(r.data())));
        }
        self.hot_keys.observe(&self.hashes, &columns);
        // Row indices grouped by partition (a counting sort), in one vector.
        let mut starts = vec![0u32; n + 1];
        for h in &self.hashes {
            starts[(h % n as u64) as usize + 1] += 1;
        }
        for p in 0..n {
            starts[p + 1] += starts[p];
        }
        let mut next = starts.clone();
        let mut order = vec![0u32; rows];
        for (i, h) in self.hashes.iter().enumerate() {
            let p = (h % n as u64) as usize;
            order[next[p] as usize] = i as u32;
            next[p] += 1;
        }
        let order = UInt32Array::from(order);
        for p in 0..n {
            let (start, end) = (starts[p] as usize, starts[p + 1] as usize);
            if start == end {
                continue;
            }
            let part = take_record_batch(&batch, &order.slice(start, end - start))
                .context("partitioning")?;
            self.buffer(p, part)?;
        }
        Ok(())
    }

    fn buffer(&mut self, p: usize, batch: RecordBatch) -> Result<()> {
        let bytes = batch_memory(&batch);
        if let Err(e) = self.reservation.grow(bytes) {
            if !is_refusal(&e) {
                return Err(e);
            }
            // Out of memory for buffers: write them all out and go on unbuffered for this slice.
            for q in 0..self.buffers.len() {
                self.flush(q)?;
            }
            if self.reservation.grow(bytes).is_err() {
                return self.write_out(p, &batch);
            }
        }
        self.buffered_rows[p] += batch.num_rows();
        self.buffered_bytes[p] += bytes;
        self.buffers[p].push(batch);
        if self.buffered_rows[p] >= BATCH_ROWS {
            self.flush(p)?;
        }
        Ok(())
    }

    fn flush(&mut self, p: usize) -> Result<()> {
        if self.buffers[p].is_empty() {
            return Ok(());
        }
        let batch = if self.buffers[p].len() == 1 {
            self.buffers[p].pop().expect("one")
        } else {
            let b = concat_batches(&self.schema, &self.buffers[p]).context("shuffle buffer")?;
            self.buffers[p].clear();
            b
        };
        self.buffered_rows[p] = 0;
        let written = self.write_out(p, &batch);
        self.reservation
            .shrink(std::mem::take(&mut self.buffered_bytes[p]));
        written
    }

    fn write_out(&mut self, p: usize, batch: &RecordBatch) -> Result<()> {
        if self.writers[p].is_none() {
            let path = self.dir.join(format!("part-{p}.arrow"));
            let file = File::create(&path).map_err(|e| WorkerError::io(path.display(), e))?;
            self.writers[p] = Some(
                StreamWriter::try_new_with_options(
                    BufWriter::new(file),
                    &self.schema,
                    self.compression.ipc_options(),
                )
                .context("opening shuffle file")?,
            );
        }
        self.stats[p].rows += batch.num_rows() as u64;
        self.writers[p]
            .as_mut()
            .expect("open")
            .write(batch)
            .context("writing shuffle file")
    }

    pub fn finish(mut self) -> Result<WrittenOutput> {
        for p in 0..self.buffers.len() {
            self.flush(p)?;
            if let Some(mut w) = self.writers[p].take() {
                w.finish().context("closing shuffle file")?;
                let path = self.dir.join(format!("part-{p}.arrow"));
                self.stats[p].bytes = std::fs::metadata(&path)
                    .map_err(|e| WorkerError::io(path.display(), e))?
                    .len();
            }
        }
        Ok(WrittenOutput {
            partitions: std::mem::take(&mut self.stats),
            hot_keys: self.keys.is_some().then(|| self.hot_keys.finish()),
        })
    }
}

/// Reads shuffle partitions: from local disk when this worker wrote them,
/// otherwise over Flight, reusing one channel per worker. Both are streams
/// of batches; [`crate::input`] decides how many run at once.
pub struct ShuffleReader {
    work_dir: PathBuf,
    own_url: String,
    /// The token and CA for other workers' Flight services.
    connect: Connect,
    channels: Mutex<HashMap<String, Channel>>,
}

impl ShuffleReader {
    pub fn new(work_dir: PathBuf, own_url: String, connect: Connect) -> Self {
        ShuffleReader {
            work_dir,
            own_url,
            connect,
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_local(&self, spec: &FetchSpec) -> bool {
        spec.flight_url == self.own_url
    }

    pub fn ticket(job: &JobId, spec: &FetchSpec, partition: u32) -> PartitionTicket {
        PartitionTicket {
            job: job.clone(),
            stage: spec.stage,
            map_task: spec.map_task,
            attempt: spec.attempt,
            partition,
            rows: spec.rows,
        }
    }

    /// The local file of one partition this worker wrote.
    pub fn local_path(&self, job: &JobId, spec: &FetchSpec, partition: u32) -> PathBuf {
        partition_path(&self.work_dir, &Self::ticket(job, spec, partition))
    }

    /// One partition of another worker's output, as a Flight stream of batches.
    pub async fn remote(
        &self,
        job: &JobId,
        spec: &FetchSpec,
        partition: u32,
    ) -> Result<impl futures::Stream<Item = Result<RecordBatch>>> {
        let channel = self
            .channel(&spec.flight_url)
            .map_err(|e| fetch_error(spec, e.to_string()))?;
        let mut client = FlightServiceClient::with_interceptor(channel, self.connect.interceptor())
            .max_decoding_message_size(usize::MAX);
        let ticket = Ticket {
            ticket: encode(&Self::ticket(job, spec, partition))?.into(),
        };
        let stream = client
            .do_get(ticket)
            .await
            .map_err(|s| fetch_error(spec, s.message().to_string()))?
            .into_inner();
        let spec = spec.clone();
        Ok(
            FlightRecordBatchStream::new_from_flight_data(stream.map_err(|e| e.into()))
                .map_err(move |e| fetch_error(&spec, e.to_string())),
        )
    }

    fn channel(&self, url: &str) -> std::result::Result<Channel, String> {
        let mut channels = self.channels.lock().expect("channel cache");
        if let Some(c) = channels.get(url) {
            return Ok(c.clone());
        }
        let channel = self.connect.endpoint(url)?.connect_lazy();
        channels.insert(url.to_string(), channel.clone());
        Ok(channel)
    }
}

/// Only rows `start..end` of a stream of batches (all of it for `None`),
/// slicing the batches at the ends and reading no further than `end`.
pub fn row_range<I, E>(batches: I, rows: Option<(u64, u64)>) -> RowRange<I>
where
    I: Iterator<Item = std::result::Result<RecordBatch, E>>,
{
    let (start, end) = rows.unwrap_or((0, u64::MAX));
    RowRange {
        batches,
        seen: 0,
        start,
        end,
    }
}

pub struct RowRange<I> {
    batches: I,
    seen: u64,
    start: u64,
    end: u64,
}

impl<I, E> Iterator for RowRange<I>
where
    I: Iterator<Item = std::result::Result<RecordBatch, E>>,
{
    type Item = std::result::Result<RecordBatch, E>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.seen >= self.end {
                return None;
            }
            let batch = match self.batches.next()? {
                Ok(b) => b,
                Err(e) => return Some(Err(e)),
            };
            let (lo, n) = (self.seen, batch.num_rows() as u64);
            self.seen += n;
            if self.seen <= self.start || n == 0 {
                continue;
            }
            let from = self.start.saturating_sub(lo);
            let to = self.end.min(self.seen) - lo;
            return Some(Ok(if from == 0 && to == n {
                batch
            } else {
                batch.slice(from as usize, (to - from) as usize)
            }));
        }
    }
}

/// A map output that could not be read: the scheduler recomputes it.
pub fn fetch_error(spec: &FetchSpec, message: String) -> WorkerError {
    WorkerError::Fetch {
        url: spec.flight_url.clone(),
        stage: spec.stage.0,
        map_task: spec.map_task,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::Int64Type;
    use std::sync::Arc;

    fn batches(sizes: &[i64]) -> Vec<std::result::Result<RecordBatch, String>> {
        let mut next = 0;
        sizes
            .iter()
            .map(|&n| {
                let col = Int64Array::from_iter_values(next..next + n);
                next += n;
                Ok(RecordBatch::try_from_iter([("v", Arc::new(col) as _)]).unwrap())
            })
            .collect()
    }

    fn values(rows: Option<(u64, u64)>) -> Vec<i64> {
        row_range(batches(&[4, 0, 3, 5]).into_iter(), rows)
            .flat_map(|b| {
                let b = b.unwrap();
                b.column(0).as_primitive::<Int64Type>().values().to_vec()
            })
            .collect()
    }

    #[test]
    fn a_row_range_slices_batches_at_its_ends() {
        assert_eq!(values(None), (0..12).collect::<Vec<_>>());
        assert_eq!(values(Some((2, 9))), (2..9).collect::<Vec<_>>());
        assert_eq!(values(Some((4, 7))), vec![4, 5, 6]);
        assert_eq!(values(Some((11, 20))), vec![11]);
        assert!(values(Some((12, 20))).is_empty());
        // Reading stops at the range's end: later batches are not pulled.
        let mut pulled = 0;
        let it = batches(&[4, 4, 4]).into_iter().inspect(|_| pulled += 1);
        assert_eq!(row_range(it, Some((0, 5))).count(), 2);
        assert_eq!(pulled, 2);
    }
}
