use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use keel_proto::expr::Expr;

use super::BatchIter;
use crate::error::{Result, WorkerError};
use crate::eval::evaluate;

pub fn project(input: BatchIter, exprs: Vec<Expr>, schema: SchemaRef) -> BatchIter {
    Box::new(input.map(move |batch| {
        let batch = batch?;
        let columns = exprs
            .iter()
            .map(|e| evaluate(e, &batch))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(schema.clone(), columns, &options)
            .map_err(|e| WorkerError::eval(format!("projection does not match its schema: {e}")))
    }))
}
