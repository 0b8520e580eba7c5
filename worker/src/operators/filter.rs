use arrow::compute::filter_record_batch;
use keel_proto::expr::Expr;

use super::BatchIter;
use crate::error::ArrowContext;
use crate::eval::evaluate_predicate;

pub fn filter(input: BatchIter, predicate: Expr) -> BatchIter {
    Box::new(input.filter_map(move |batch| {
        let run = || {
            let batch = batch?;
            let mask = evaluate_predicate(&predicate, &batch)?;
            let out = filter_record_batch(&batch, &mask).context("filtering")?;
            Ok(out)
        };
        match run() {
            Ok(b) if b.num_rows() == 0 => None,
            other => Some(other),
        }
    }))
}
