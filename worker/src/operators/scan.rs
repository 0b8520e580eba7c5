//! Parquet scan over a task's splits: only the planned row groups and columns.

use std::fs::File;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use keel_proto::plan::FileSplit;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use super::{BatchIter, ExecContext, BATCH_ROWS};
use crate::error::{ArrowContext, Result, WorkerError};

pub fn scan(splits: Vec<FileSplit>, schema: SchemaRef, ctx: &ExecContext) -> Result<BatchIter> {
    let cancelled = ctx.cancelled.clone();
    let stats = ctx.input_stats.clone();
    let mut splits = splits.into_iter();
    let mut current: Option<(String, ParquetRecordBatchReader, Vec<usize>)> = None;
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
            Some(Err(e)) => {
                return Some(Err(WorkerError::Parquet {
                    path: path.clone(),
                    source: e.into(),
                }));
            }
            Some(Ok(batch)) => {
                stats.count(&batch);
                return Some(conform(batch, order, &schema));
            }
        }
    })))
}

/// Opens one split; returns the reader and, for each output column, its
/// position in the reader's (file-ordered) output.
fn open(
    split: &FileSplit,
    schema: &SchemaRef,
) -> Result<(String, ParquetRecordBatchReader, Vec<usize>)> {
    let path = split.path.clone();
    let file = File::open(&path).map_err(|source| WorkerError::Input {
        path: path.clone(),
        source,
    })?;
    let perr = |source| WorkerError::Parquet {
        path: path.clone(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?;
    let file_schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let idx = file_schema
            .index_of(f.name())
            .map_err(|_| WorkerError::Parquet {
                path: path.clone(),
                source: parquet::errors::ParquetError::General(format!(
                    "file has no column {}",
                    f.name()
                )),
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
    let reader = builder
        .with_projection(mask)
        .with_row_groups(split.row_groups.clone())
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(perr)?;
    Ok((path, reader, order))
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
