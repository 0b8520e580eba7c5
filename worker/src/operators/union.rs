use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::BatchIter;
use crate::error::WorkerError;

/// UNION ALL: each input in turn, relabelled to the union's schema.
pub fn union(inputs: Vec<BatchIter>, schema: SchemaRef) -> BatchIter {
    Box::new(inputs.into_iter().flatten().map(move |b| {
        let b = b?;
        RecordBatch::try_new(schema.clone(), b.columns().to_vec())
            .map_err(|e| WorkerError::eval(format!("UNION ALL inputs differ: {e}")))
    }))
}
