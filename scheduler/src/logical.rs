//! The logical plan the binder produces and the optimizer rewrites.
//! Expressions are already physical (column indices into the input).

use std::sync::Arc;

use arrow::datatypes::Schema;
use keel_proto::expr::Expr;
use keel_proto::plan::{AggExpr, Asof, JoinType, SortKey, WindowFunc};

use crate::catalog::TableSource;

#[derive(Debug, Clone)]
pub enum LogicalPlan {
    Scan {
        table: Arc<TableSource>,
        /// Table column indices read, in output order.
        columns: Vec<usize>,
        /// Conjuncts pushed down for row-group pruning (over the output columns).
        filters: Vec<Expr>,
    },
    OneRow,
    Filter {
        input: Box<LogicalPlan>,
        predicate: Expr,
    },
    Project {
        input: Box<LogicalPlan>,
        exprs: Vec<Expr>,
        schema: Schema,
    },
    Aggregate {
        input: Box<LogicalPlan>,
        group_by: Vec<Expr>,
        aggs: Vec<AggExpr>,
        schema: Schema,
    },
    Join {
        left: Box<LogicalPlan>,
        right: Box<LogicalPlan>,
        join_type: JoinType,
        left_keys: Vec<Expr>,
        right_keys: Vec<Expr>,
        /// Extra ON predicates over left ++ right columns.
        filter: Option<Expr>,
    },
    /// Each left row with at most one right row of equal keys, the nearest
    /// in time in `asof`'s direction; output columns are left then right.
    AsofJoin {
        left: Box<LogicalPlan>,
        right: Box<LogicalPlan>,
        /// ASOF LEFT JOIN: left rows without a match are kept.
        outer: bool,
        left_keys: Vec<Expr>,
        right_keys: Vec<Expr>,
        asof: Asof,
    },
    /// GROUPING SETS: each input row once per set, as the input's columns,
    /// every key (NULL where the set leaves it out), and the set's number.
    Expand {
        input: Box<LogicalPlan>,
        keys: Vec<Expr>,
        sets: Vec<Vec<bool>>,
        schema: Schema,
    },
    Sort {
        input: Box<LogicalPlan>,
        keys: Vec<SortKey>,
    },
    Limit {
        input: Box<LogicalPlan>,
        skip: usize,
        fetch: Option<usize>,
    },
    Union {
        inputs: Vec<LogicalPlan>,
    },
    /// The input's columns, then one per window function (computed per
    /// partition of `partition_by`, over rows ordered by `order_by`).
    Window {
        input: Box<LogicalPlan>,
        partition_by: Vec<Expr>,
        order_by: Vec<SortKey>,
        funcs: Vec<WindowFunc>,
        schema: Schema,
    },
}

impl LogicalPlan {
    pub fn schema(&self) -> Schema {
        match self {
            LogicalPlan::Scan { table, columns, .. } => Schema::new(
                columns
                    .iter()
                    .map(|&i| table.schema.field(i).clone())
                    .collect::<Vec<_>>(),
            ),
            LogicalPlan::OneRow => Schema::empty(),
            LogicalPlan::Filter { input, .. }
            | LogicalPlan::Sort { input, .. }
            | LogicalPlan::Limit { input, .. } => input.schema(),
            LogicalPlan::Project { schema, .. }
            | LogicalPlan::Aggregate { schema, .. }
            | LogicalPlan::Window { schema, .. }
            | LogicalPlan::Expand { schema, .. } => schema.clone(),
            LogicalPlan::Join {
                left,
                right,
                join_type,
                ..
            } => {
                let l = left.schema();
                match join_type {
                    JoinType::Semi | JoinType::Anti | JoinType::NotExists => l,
                    _ => {
                        let fields: Vec<_> = l
                            .fields()
                            .iter()
                            .chain(right.schema().fields().iter())
                            .cloned()
                            .collect();
                        Schema::new(fields)
                    }
                }
            }
            LogicalPlan::AsofJoin { left, right, .. } => Schema::new(
                left.schema()
                    .fields()
                    .iter()
                    .chain(right.schema().fields().iter())
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            LogicalPlan::Union { inputs } => inputs[0].schema(),
        }
    }
}
