//! Sort, and top-k when a LIMIT follows (`fetch`): the buffer is cut back to
//! k rows whenever it grows past a bound, so top-k memory stays O(k).

use arrow::array::RecordBatch;
use arrow::compute::{concat_batches, lexsort_to_indices, take_record_batch, SortColumn};
use arrow::datatypes::SchemaRef;
use keel_proto::plan::SortKey;

use super::aggregate::split;
use super::BatchIter;
use crate::error::{ArrowContext, Result};
use crate::eval::evaluate;
use crate::memory::Reservation;

pub fn sort(
    input: BatchIter,
    schema: SchemaRef,
    keys: Vec<SortKey>,
    fetch: Option<usize>,
    mut reservation: Reservation,
) -> Result<BatchIter> {
    let mut input = Some(input);
    let mut pending: std::vec::IntoIter<RecordBatch> = Vec::new().into_iter();
    Ok(Box::new(std::iter::from_fn(move || {
        if let Some(input) = input.take() {
            match sort_all(input, &schema, &keys, fetch, &mut reservation) {
                Ok(batches) => pending = batches.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
        pending.next().map(Ok)
    })))
}

fn sort_all(
    input: BatchIter,
    schema: &SchemaRef,
    keys: &[SortKey],
    fetch: Option<usize>,
    reservation: &mut Reservation,
) -> Result<Vec<RecordBatch>> {
    let bound = fetch.map(|k| (2 * k).max(super::BATCH_ROWS));
    let mut buffer: Vec<RecordBatch> = vec![];
    let (mut rows, mut bytes) = (0usize, 0usize);
    for batch in input {
        let batch = batch?;
        rows += batch.num_rows();
        bytes += batch.get_array_memory_size();
        reservation.resize(bytes)?;
        buffer.push(batch);
        if let (Some(bound), Some(k)) = (bound, fetch) {
            if rows > bound {
                let top = sort_batch(
                    &concat_batches(schema, &buffer).context("top-k")?,
                    keys,
                    Some(k),
                )?;
                rows = top.num_rows();
                bytes = top.get_array_memory_size();
                buffer = vec![top];
            }
        }
    }
    let all = concat_batches(schema, &buffer).context("sort")?;
    drop(buffer);
    let sorted = sort_batch(&all, keys, fetch)?;
    reservation.resize(all.get_array_memory_size() + sorted.get_array_memory_size())?;
    Ok(split(sorted))
}

pub fn sort_batch(
    batch: &RecordBatch,
    keys: &[SortKey],
    fetch: Option<usize>,
) -> Result<RecordBatch> {
    if batch.num_rows() == 0 {
        return Ok(batch.clone());
    }
    let columns = keys
        .iter()
        .map(|k| {
            Ok(SortColumn {
                values: evaluate(&k.expr, batch)?,
                options: Some(k.options()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let indices = lexsort_to_indices(&columns, fetch).context("sort")?;
    take_record_batch(batch, &indices).context("sort")
}
