//! Operators, one per file, each a pull iterator over Arrow batches.
//!
//! [`build`] turns a [`PlanNode`] tree into one iterator. Dynamic dispatch
//! happens once per batch, never per row.

mod accumulators;
mod aggregate;
mod arg_extreme;
mod asof_join;
mod distinct;
mod expand;
mod filter;
mod folds;
mod group_table;
mod grouping_sets;
mod join;
mod join_spill;
mod key_runs;
mod keys;
mod limit;
mod mixture_stats;
mod project;
mod quantiles;
mod range_join;
mod scan;
pub(crate) mod sketches;
mod slots;
mod sort;
mod statistics;
mod string_agg;
mod union;
mod window;

#[cfg(test)]
mod spill_tests;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use keel_proto::plan::PlanNode;

use crate::error::{Result, WorkerError};
use crate::input::InputStats;
use crate::memory::TaskMemory;

pub use keys::{hash_bytes, hash_columns, normalize_key, KeyEncoder};

pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Rows per batch operators aim for.
pub const BATCH_ROWS: usize = 8192;

/// What operators of one task share.
pub struct ExecContext {
    pub memory: Arc<TaskMemory>,
    /// The stream of each `ShuffleRead` input, taken when the leaf is built.
    pub inputs: Vec<Option<BatchIter>>,
    pub cancelled: Arc<AtomicBool>,
    pub input_stats: Arc<InputStats>,
}

impl ExecContext {
    pub fn check_cancelled(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(WorkerError::Cancelled)
        } else {
            Ok(())
        }
    }
}

pub fn build(plan: &PlanNode, ctx: &mut ExecContext) -> Result<BatchIter> {
    if let Some((input, spec)) = grouping_sets::fused(plan) {
        let input = build(input, ctx)?;
        return grouping_sets::aggregate(input, spec, ctx.memory.spillable("hash aggregate"));
    }
    Ok(match plan {
        PlanNode::Scan { splits, schema, .. } => {
            scan::scan(splits.clone(), Arc::new(schema.clone()), ctx)?
        }
        PlanNode::ShuffleRead { input, schema } => {
            let batches = ctx
                .inputs
                .get_mut(*input)
                .and_then(Option::take)
                .ok_or_else(|| WorkerError::eval(format!("task has no shuffle input #{input}")))?;
            let schema: SchemaRef = Arc::new(schema.clone());
            let stats = ctx.input_stats.clone();
            // Shuffle files carry the producer's schema; relabel to the plan's names.
            Box::new(batches.map(move |b| {
                let b = b?;
                stats.count(&b);
                RecordBatch::try_new(schema.clone(), b.columns().to_vec()).map_err(|e| {
                    WorkerError::eval(format!("shuffle input does not match the plan: {e}"))
                })
            }))
        }
        PlanNode::OneRow => {
            let batch = RecordBatch::try_new_with_options(
                Arc::new(Schema::empty()),
                vec![],
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
            )
            .expect("one empty row");
            Box::new(std::iter::once(Ok(batch)))
        }
        PlanNode::Filter { input, predicate } => {
            filter::filter(build(input, ctx)?, predicate.clone())
        }
        PlanNode::Project {
            input,
            exprs,
            schema,
        } => project::project(build(input, ctx)?, exprs.clone(), Arc::new(schema.clone())),
        PlanNode::Aggregate {
            input,
            mode,
            group_by,
            aggs,
            schema,
        } => aggregate::aggregate(
            build(input, ctx)?,
            *mode,
            group_by.clone(),
            aggs.clone(),
            Arc::new(schema.clone()),
            ctx.memory.spillable("hash aggregate"),
        )?,
        PlanNode::HashJoin {
            left,
            right,
            join_type,
            left_keys,
            right_keys,
            filter,
            build_left,
            schema,
        } => {
            let (build_side, probe_side, build_keys, probe_keys) = if *build_left {
                (left, right, left_keys, right_keys)
            } else {
                (right, left, right_keys, left_keys)
            };
            let build_iter = build(build_side, ctx)?;
            let probe_iter = build(probe_side, ctx)?;

            join::hash_join(join::JoinSpec {
                build: build_iter,
                build_schema: Arc::new(build_side.schema()),
                probe: probe_iter,
                probe_schema: Arc::new(probe_side.schema()),
                // Without keys (a nested loop) every row has the same one.
                build_keys: key_runs::or_constant(build_keys.clone()),
                probe_keys: key_runs::or_constant(probe_keys.clone()),
                join_type: *join_type,
                build_left: *build_left,
                filter: filter.clone(),
                schema: Arc::new(schema.clone()),
                reservation: ctx.memory.spillable("hash join"),
                level: 0,
                flags: None,
            })?
        }
        PlanNode::RangeJoin {
            left,
            right,
            left_keys,
            right_keys,
            band,
            filter,
            schema,
        } => {
            // The intervals are held: their input is built (and read) first.
            let (left_iter, right_iter) = if band.points_left {
                let r = build(right, ctx)?;
                (build(left, ctx)?, r)
            } else {
                let l = build(left, ctx)?;
                (l, build(right, ctx)?)
            };
            range_join::range_join(range_join::RangeJoinSpec {
                left: left_iter,
                right: right_iter,
                left_schema: Arc::new(left.schema()),
                right_schema: Arc::new(right.schema()),
                left_keys: left_keys.clone(),
                right_keys: right_keys.clone(),
                band: band.clone(),
                filter: filter.clone(),
                schema: Arc::new(schema.clone()),
                reservation: ctx.memory.reservation("range join intervals"),
            })?
        }
        PlanNode::AsofJoin {
            left,
            right,
            outer,
            left_keys,
            right_keys,
            asof,
            schema,
        } => {
            // The right side is held: it is built (and read) first.
            let right_iter = build(right, ctx)?;
            asof_join::asof_join(asof_join::AsofJoinSpec {
                left: build(left, ctx)?,
                right: right_iter,
                right_schema: Arc::new(right.schema()),
                left_keys: left_keys.clone(),
                right_keys: right_keys.clone(),
                asof: asof.clone(),
                outer: *outer,
                schema: Arc::new(schema.clone()),
                reservation: ctx.memory.reservation("asof join right side"),
            })?
        }
        PlanNode::Expand {
            input,
            keys,
            sets,
            schema,
        } => expand::expand(
            build(input, ctx)?,
            keys.clone(),
            sets.clone(),
            Arc::new(schema.clone()),
        ),
        PlanNode::Sort { input, keys, fetch } => sort::sort(
            build(input, ctx)?,
            Arc::new(input.schema()),
            keys.clone(),
            *fetch,
            ctx.memory.spillable("sort"),
        )?,
        PlanNode::Limit { input, skip, fetch } => limit::limit(build(input, ctx)?, *skip, *fetch),
        PlanNode::Window {
            input,
            partition_by,
            order_by,
            funcs,
            schema,
        } => window::window(
            build(input, ctx)?,
            partition_by.clone(),
            order_by.clone(),
            funcs.clone(),
            Arc::new(schema.clone()),
            ctx.memory.reservation("window partition"),
        )?,
        PlanNode::Union { inputs } => {
            let schema = Arc::new(plan.schema());
            let children = inputs
                .iter()
                .map(|i| build(i, ctx))
                .collect::<Result<Vec<_>>>()?;
            union::union(children, schema)
        }
    })
}

/// Drains an iterator into a vector (for blocking operators and tests).
pub fn collect(iter: BatchIter) -> Result<Vec<RecordBatch>> {
    iter.collect()
}
