//! Parquet scan over a task's splits: only the planned row groups and
//! columns, from local files or, for `s3://` objects, through the async
//! reader's range reads.

use std::fs::File;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use keel_proto::plan::FileSplit;
use parquet::arrow::arrow_reader::{
    ArrowReaderBuilder, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use tokio::runtime::Handle;

use super::{BatchIter, ExecContext, BATCH_ROWS};
use crate::error::{ArrowContext, Result, WorkerError};

pub fn scan(splits: Vec<FileSplit>, schema: SchemaRef, ctx: &ExecContext) -> Result<BatchIter> {
    let cancelled = ctx.cancelled.clone();
    let stats = ctx.input_stats.clone();
    let mut splits = splits.into_iter();
    let mut current: Option<(String, Batches, Vec<usize>)> = None;
    Ok(Box::new(std::iter::from_fn(move || loop {
        if cancelled.load(std::sync::atomic::Ordering::Relaxed) {
            return Some(Err(WorkerError::Cancelled));
        }
        if current.is_none() {
            let split = splits.next()?;
            match open(&split, &schema) {
                Ok(reader) => current = Some(reader),
                Err(e) => return Some(Err(e)),
            }
        }
        let (path, reader, order) = current.as_mut().expect("open reader");
        match reader.next() {
            None => current = None,
            Some(Err(source)) => {
                return Some(Err(WorkerError::Parquet {
                    path: path.clone(),
                    source,
                }));
            }
            Some(Ok(batch)) => {
                stats.count(&batch);
                return Some(conform(batch, order, &schema));
            }
        }
    })))
}

/// A split's batches: a local file's reader, or an object's async stream
/// driven from this (blocking) thread.
enum Batches {
    Local(ParquetRecordBatchReader),
    Object {
        stream: ParquetRecordBatchStream<keel_storage::ObjectFile>,
        runtime: Handle,
    },
}

impl Iterator for Batches {
    type Item = std::result::Result<RecordBatch, ParquetError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Batches::Local(reader) => reader.next().map(|b| b.map_err(ParquetError::from)),
            Batches::Object { stream, runtime } => runtime.block_on(stream.next()),
        }
    }
}

/// Opens one split; returns its batches and, for each output column, its
/// position in the reader's (file-ordered) output.
fn open(split: &FileSplit, schema: &SchemaRef) -> Result<(String, Batches, Vec<usize>)> {
    let path = split.path.clone();
    let perr = |source| WorkerError::Parquet {
        path: path.clone(),
        source,
    };
    if keel_storage::is_remote(&path) {
        let reader =
            keel_storage::reader(&path, None).map_err(|e| perr(ParquetError::General(e)))?;
        let runtime = Handle::current();
        let builder = runtime
            .block_on(ParquetRecordBatchStreamBuilder::new(reader))
            .map_err(perr)?;
        let (builder, order) = project(builder, split, schema, &path)?;
        let stream = builder.build().map_err(perr)?;
        return Ok((path.clone(), Batches::Object { stream, runtime }, order));
    }
    let file = File::open(&path).map_err(|source| WorkerError::Input {
        path: path.clone(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?;
    let (builder, order) = project(builder, split, schema, &path)?;
    let reader = builder.build().map_err(perr)?;
    Ok((path.clone(), Batches::Local(reader), order))
}

/// Reads only the split's row groups and the plan's columns; returns the
/// builder and, for each output column, its position in the file-ordered output.
fn project<T>(
    builder: ArrowReaderBuilder<T>,
    split: &FileSplit,
    schema: &SchemaRef,
    path: &str,
) -> Result<(ArrowReaderBuilder<T>, Vec<usize>)> {
    let file_schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let idx = file_schema
            .index_of(f.name())
            .map_err(|_| WorkerError::Parquet {
                path: path.to_string(),
                source: ParquetError::General(format!("file has no column {}", f.name())),
            })?;
        roots.push(idx);
    }
    let mut sorted = roots.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let order = roots
        .iter()
        .map(|r| sorted.binary_search(r).expect("present"))
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), sorted);
    let builder = builder
        .with_projection(mask)
        .with_row_groups(split.row_groups.clone())
        .with_batch_size(BATCH_ROWS);
    Ok((builder, order))
}

/// Puts columns in plan order and casts them to the types Keel computes in.
fn conform(batch: RecordBatch, order: &[usize], schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(order.len());
    for (&i, field) in order.iter().zip(schema.fields()) {
        let c = batch.column(i);
        columns.push(if c.data_type() == field.data_type() {
            c.clone()
        } else {
            cast(c, field.data_type()).context(&format!("reading column {}", field.name()))?
        });
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).context("scan")
}
