//! Set operations: `UNION [ALL]`, `INTERSECT [ALL]`, `EXCEPT [ALL]` and
//! `UNION [ALL] BY NAME`, with DuckDB's semantics (rows are equal when every
//! column is, NULL equal to NULL).
//!
//! INTERSECT and EXCEPT are not operators of their own: both sides are
//! tagged (0 left, 1 right) and put together with UNION ALL, then
//! - the set forms group by every column, keeping a group whose tags are
//!   both 0 and 1 (INTERSECT) or only 0 (EXCEPT): `min(tag)`, `max(tag)`;
//!   the partial aggregation shrinks each side before the one shuffle;
//! - the ALL forms number a row's copies instead: a window partitioned by
//!   every column, ordered by tag (left copies first, numbered 1..l), counts
//!   the right copies r. INTERSECT ALL keeps the left copies numbered up to
//!   r (min(l, r) of them), EXCEPT ALL those beyond r (max(l - r, 0)).
//!
//! Both rest on GROUP BY and PARTITION BY grouping NULL keys together,
//! which is what set operations need (unlike join keys).

use arrow::datatypes::{DataType, Field, Schema};
use keel_proto::expr::{BinaryOp, Expr, ScalarValue};
use keel_proto::plan::{
    AggExpr, AggFunc, FrameBound, SortKey, WindowFrame, WindowFunc, WindowKind,
};
use sqlparser::ast::{SetExpr, SetOperator, SetQuantifier};

use super::query::{distinct, output_scope, project_schema};
use super::scope::Scope;
use super::types::{cast_if_needed, common_type, sql_name};
use super::Binder;
use crate::error::{Result, SchedulerError};
use crate::logical::LogicalPlan;

/// One side of a set operation: its plan and its output columns.
struct Side {
    plan: LogicalPlan,
    names: Vec<String>,
    types: Vec<DataType>,
}

impl Side {
    fn new(plan: LogicalPlan, scope: &Scope) -> Side {
        Side {
            plan,
            names: scope.columns.iter().map(|c| c.name.clone()).collect(),
            types: scope.columns.iter().map(|c| c.data_type.clone()).collect(),
        }
    }
}

impl Binder<'_> {
    pub(super) fn bind_set_operation(
        &mut self,
        op: &SetOperator,
        quantifier: &SetQuantifier,
        left: &SetExpr,
        right: &SetExpr,
    ) -> Result<(LogicalPlan, Scope)> {
        let name = match op {
            SetOperator::Union => "UNION",
            SetOperator::Intersect => "INTERSECT",
            SetOperator::Except | SetOperator::Minus => "EXCEPT",
        };
        let (all, by_name) = match quantifier {
            SetQuantifier::None | SetQuantifier::Distinct => (false, false),
            SetQuantifier::All => (true, false),
            SetQuantifier::ByName | SetQuantifier::DistinctByName => (false, true),
            SetQuantifier::AllByName => (true, true),
        };
        if by_name && name != "UNION" {
            return Err(SchedulerError::unsupported(format!(
                "{name} {quantifier}: BY NAME is for UNION [ALL]"
            )));
        }
        let (lp, ls) = self.bind_set_expr(left)?;
        let (rp, rs) = self.bind_set_expr(right)?;
        let (l, r) = (Side::new(lp, &ls), Side::new(rp, &rs));
        let (l, r) = if by_name {
            by_names(l, r)
        } else {
            if l.names.len() != r.names.len() {
                return Err(SchedulerError::bind(format!(
                    "{name} inputs have {} and {} columns; they must have the same number",
                    l.names.len(),
                    r.names.len()
                )));
            }
            (l, r)
        };
        let mut types = vec![];
        for ((n, lt), rt) in l.names.iter().zip(&l.types).zip(&r.types) {
            types.push(common_type(lt, rt, false, false).ok_or_else(|| {
                SchedulerError::bind(format!(
                    "{name} column {n} is {} on one side and {} on the other; add a CAST",
                    sql_name(lt),
                    sql_name(rt)
                ))
            })?);
        }
        let names = l.names.clone();
        let (lp, rp) = (conform(l, &types), conform(r, &types));
        let plan = match (name, all) {
            ("UNION", true) => LogicalPlan::Union {
                inputs: vec![lp, rp],
            },
            ("UNION", false) => distinct(
                LogicalPlan::Union {
                    inputs: vec![lp, rp],
                },
                &names,
                &types,
            ),
            (_, false) => set_by_groups(name == "INTERSECT", lp, rp, &names, &types),
            (_, true) => bag_by_copies(name == "INTERSECT", lp, rp, &names, &types),
        };
        Ok((plan, output_scope(&names, &types)))
    }
}

/// `UNION BY NAME`'s sides over the same columns: the left's, then the
/// right's that the left lacks (names compared case-insensitively, as
/// DuckDB does), each side NULL where it has no such column.
fn by_names(l: Side, r: Side) -> (Side, Side) {
    let key = |n: &String| n.to_lowercase();
    let mut names = l.names.clone();
    let mut types = l.types.clone();
    for (n, t) in r.names.iter().zip(&r.types) {
        if !names.iter().any(|m| key(m) == key(n)) {
            names.push(n.clone());
            types.push(t.clone());
        }
    }
    let align = |side: Side| -> Side {
        let mut exprs = vec![];
        let mut side_types = vec![];
        for (n, t) in names.iter().zip(&types) {
            match side.names.iter().position(|m| key(m) == key(n)) {
                Some(i) => {
                    exprs.push(Expr::Column(i));
                    side_types.push(side.types[i].clone());
                }
                None => {
                    exprs.push(Expr::Literal(ScalarValue::Null).cast(t.clone()));
                    side_types.push(t.clone());
                }
            }
        }
        let identity = exprs.len() == side.names.len()
            && exprs
                .iter()
                .enumerate()
                .all(|(i, e)| matches!(e, Expr::Column(j) if *j == i));
        let plan = if identity {
            side.plan
        } else {
            LogicalPlan::Project {
                input: Box::new(side.plan),
                exprs,
                schema: project_schema(&names, &side_types),
            }
        };
        Side {
            plan,
            names: names.clone(),
            types: side_types,
        }
    };
    (align(l), align(r))
}

/// A side cast to the operation's column types (named as the left side).
fn conform(side: Side, types: &[DataType]) -> LogicalPlan {
    if side.types.iter().eq(types) {
        return side.plan;
    }
    let exprs = side
        .types
        .iter()
        .enumerate()
        .zip(types)
        .map(|((i, from), to)| cast_if_needed(Expr::Column(i), from, to))
        .collect();
    LogicalPlan::Project {
        input: Box::new(side.plan),
        exprs,
        schema: project_schema(&side.names, types),
    }
}

/// Both sides with a tag column after theirs (0 left, 1 right), as one input.
fn tagged(l: LogicalPlan, r: LogicalPlan, names: &[String], types: &[DataType]) -> LogicalPlan {
    let mut tag_names = names.to_vec();
    tag_names.push("__side".into());
    let mut tag_types = types.to_vec();
    tag_types.push(DataType::Int64);
    let tag = |plan: LogicalPlan, side: i64| LogicalPlan::Project {
        input: Box::new(plan),
        exprs: (0..names.len())
            .map(Expr::Column)
            .chain([Expr::Literal(ScalarValue::Int64(side))])
            .collect(),
        schema: project_schema(&tag_names, &tag_types),
    };
    LogicalPlan::Union {
        inputs: vec![tag(l, 0), tag(r, 1)],
    }
}

fn int(v: i64) -> Expr {
    Expr::Literal(ScalarValue::Int64(v))
}

/// INTERSECT / EXCEPT: the distinct rows found on both sides / only on the left.
fn set_by_groups(
    intersect: bool,
    l: LogicalPlan,
    r: LogicalPlan,
    names: &[String],
    types: &[DataType],
) -> LogicalPlan {
    let n = names.len();
    let tag = Expr::Column(n);
    let mut fields: Vec<Field> = project_schema(names, types)
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("__min_side", DataType::Int64, true));
    fields.push(Field::new("__max_side", DataType::Int64, true));
    let groups = LogicalPlan::Aggregate {
        input: Box::new(tagged(l, r, names, types)),
        group_by: (0..n).map(Expr::Column).collect(),
        aggs: vec![
            AggExpr::new(AggFunc::Min, Some(tag.clone()), false),
            AggExpr::new(AggFunc::Max, Some(tag), false),
        ],
        schema: Schema::new(fields),
    };
    let (lo, hi) = (Expr::Column(n), Expr::Column(n + 1));
    let predicate = if intersect {
        Expr::binary(
            BinaryOp::And,
            Expr::binary(BinaryOp::Eq, lo, int(0)),
            Expr::binary(BinaryOp::Eq, hi, int(1)),
        )
    } else {
        Expr::binary(BinaryOp::Eq, hi, int(0))
    };
    only_columns(
        LogicalPlan::Filter {
            input: Box::new(groups),
            predicate,
        },
        names,
        types,
    )
}

/// INTERSECT ALL / EXCEPT ALL: min(l, r) / max(l - r, 0) copies of a row
/// found l times on the left and r times on the right.
fn bag_by_copies(
    intersect: bool,
    l: LogicalPlan,
    r: LogicalPlan,
    names: &[String],
    types: &[DataType],
) -> LogicalPlan {
    let n = names.len();
    let input = tagged(l, r, names, types);
    let mut fields: Vec<Field> = input
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("__copy", DataType::Int64, true));
    fields.push(Field::new("__right_copies", DataType::Int64, true));
    let whole_partition = WindowFrame {
        rows: true,
        start: FrameBound::UnboundedPreceding,
        end: FrameBound::UnboundedFollowing,
    };
    let numbered = LogicalPlan::Window {
        input: Box::new(input),
        partition_by: (0..n).map(Expr::Column).collect(),
        order_by: vec![SortKey {
            expr: Expr::Column(n),
            descending: false,
            nulls_first: false,
        }],
        funcs: vec![
            WindowFunc {
                kind: WindowKind::RowNumber,
                args: vec![],
                frame: WindowFrame::DEFAULT,
            },
            WindowFunc {
                kind: WindowKind::Aggregate(AggFunc::Sum),
                args: vec![Expr::Column(n)],
                frame: whole_partition,
            },
        ],
        schema: Schema::new(fields),
    };
    let (tag, copy, right_copies) = (Expr::Column(n), Expr::Column(n + 1), Expr::Column(n + 2));
    let kept = if intersect {
        Expr::binary(BinaryOp::LtEq, copy, right_copies)
    } else {
        Expr::binary(BinaryOp::Gt, copy, right_copies)
    };
    only_columns(
        LogicalPlan::Filter {
            input: Box::new(numbered),
            predicate: Expr::binary(BinaryOp::And, Expr::binary(BinaryOp::Eq, tag, int(0)), kept),
        },
        names,
        types,
    )
}

/// The set operation's own columns, dropping the bookkeeping after them.
fn only_columns(plan: LogicalPlan, names: &[String], types: &[DataType]) -> LogicalPlan {
    LogicalPlan::Project {
        input: Box::new(plan),
        exprs: (0..names.len()).map(Expr::Column).collect(),
        schema: project_schema(names, types),
    }
}
