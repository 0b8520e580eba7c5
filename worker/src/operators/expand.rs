//! GROUPING SETS: every input batch goes out once per grouping set, as its
//! columns, then each key (a NULL column where the set leaves the key out),
//! then the set's number. The keys are evaluated once per batch; the
//! input's columns are shared, not copied, by every output batch.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, Int64Array, RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use keel_proto::expr::Expr;

use super::BatchIter;
use crate::error::{ArrowContext, Result};
use crate::eval::evaluate;

pub fn expand(
    input: BatchIter,
    keys: Vec<Expr>,
    sets: Vec<Vec<bool>>,
    schema: SchemaRef,
) -> BatchIter {
    let mut input = input;
    let mut pending: VecDeque<RecordBatch> = VecDeque::new();
    Box::new(std::iter::from_fn(move || loop {
        if let Some(b) = pending.pop_front() {
            return Some(Ok(b));
        }
        let batch = match input.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        match expand_batch(&batch, &keys, &sets, &schema) {
            Ok(out) => pending = out.into(),
            Err(e) => return Some(Err(e)),
        }
    }))
}

fn expand_batch(
    batch: &RecordBatch,
    keys: &[Expr],
    sets: &[Vec<bool>],
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let n = batch.num_rows();
    let values = keys
        .iter()
        .map(|k| evaluate(k, batch))
        .collect::<Result<Vec<_>>>()?;
    let first_key = batch.num_columns();
    let options = RecordBatchOptions::new().with_row_count(Some(n));
    sets.iter()
        .enumerate()
        .map(|(id, set)| {
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            for (j, (value, used)) in values.iter().zip(set).enumerate() {
                columns.push(if *used {
                    value.clone()
                } else {
                    new_null_array(schema.field(first_key + j).data_type(), n)
                });
            }
            columns.push(Arc::new(Int64Array::from_value(id as i64, n)));
            RecordBatch::try_new_with_options(schema.clone(), columns, &options)
                .context("grouping sets")
        })
        .collect()
}
