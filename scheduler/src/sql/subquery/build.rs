//! Plan pieces the subquery joins are built from: projections, groupings,
//! LEFT joins on keys, the one-row check of a scalar subquery, and what a
//! global aggregate gives over no rows.

use arrow::datatypes::{DataType, Field, Schema};
use keel_proto::expr::{BinaryOp, Expr, Func, ScalarValue};
use keel_proto::plan::{AggExpr, AggFunc, JoinType};

use crate::error::{Result, SchedulerError};
use crate::logical::LogicalPlan;

pub(super) fn lit(v: ScalarValue) -> Expr {
    Expr::Literal(v)
}

pub(super) fn null_of(t: &DataType) -> Expr {
    lit(ScalarValue::Null).cast(t.clone())
}

pub(super) fn agg(func: AggFunc, arg: Option<Expr>) -> AggExpr {
    AggExpr::new(func, arg, false)
}

pub(super) fn field(name: &str, t: &DataType) -> Field {
    Field::new(name, t.clone(), true)
}

pub(super) fn project(input: LogicalPlan, exprs: Vec<(Expr, Field)>) -> LogicalPlan {
    let (exprs, fields): (Vec<Expr>, Vec<Field>) = exprs.into_iter().unzip();
    LogicalPlan::Project {
        input: Box::new(input),
        exprs,
        schema: Schema::new(fields),
    }
}

/// `input` grouped by `keys` (shown as `key0…`), with `aggs` after them.
pub(super) fn group(
    input: LogicalPlan,
    keys: &[Expr],
    aggs: Vec<(AggExpr, Field)>,
) -> Result<LogicalPlan> {
    let schema = input.schema();
    let mut fields = vec![];
    for (i, k) in keys.iter().enumerate() {
        let t = k
            .data_type(&schema)
            .map_err(|e| SchedulerError::bind(format!("subquery key {k}: {e}")))?;
        fields.push(field(&format!("key{i}"), &t));
    }
    let (aggs, agg_fields): (Vec<AggExpr>, Vec<Field>) = aggs.into_iter().unzip();
    fields.extend(agg_fields);
    Ok(LogicalPlan::Aggregate {
        input: Box::new(input),
        group_by: keys.to_vec(),
        aggs,
        schema: Schema::new(fields),
    })
}

/// `outer` LEFT JOIN `right` on `outer_keys = right's first columns`
/// (with no keys, every outer row meets `right`'s one row).
pub(super) fn left_join(
    outer: LogicalPlan,
    right: LogicalPlan,
    outer_keys: &[Expr],
) -> LogicalPlan {
    LogicalPlan::Join {
        left: Box::new(outer),
        right: Box::new(right),
        join_type: JoinType::Left,
        left_keys: outer_keys.to_vec(),
        right_keys: (0..outer_keys.len()).map(Expr::Column).collect(),
        filter: None,
    }
}

/// `plan`'s first `width` columns and then `value`.
pub(super) fn keep_with(plan: LogicalPlan, width: usize, value: Expr, t: &DataType) -> LogicalPlan {
    let schema = plan.schema();
    let mut exprs: Vec<(Expr, Field)> = (0..width)
        .map(|i| (Expr::Column(i), schema.field(i).clone()))
        .collect();
    exprs.push((value, field("__subquery", t)));
    project(plan, exprs)
}

pub(super) fn case(whens: Vec<(Expr, Expr)>, otherwise: Option<Expr>) -> Expr {
    Expr::Case {
        whens,
        otherwise: otherwise.map(Box::new),
    }
}

pub(super) fn is_null(e: Expr) -> Expr {
    Expr::IsNull(Box::new(e))
}

pub(super) fn or(a: Expr, b: Expr) -> Expr {
    Expr::binary(BinaryOp::Or, a, b)
}

/// Whether `plan` gives at most one row whatever its input.
pub(super) fn at_most_one_row(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate { group_by, .. } => group_by.is_empty(),
        LogicalPlan::OneRow => true,
        LogicalPlan::Limit { fetch, input, .. } => {
            fetch.is_some_and(|f| f <= 1) || at_most_one_row(input)
        }
        LogicalPlan::Project { input, .. }
        | LogicalPlan::Filter { input, .. }
        | LogicalPlan::Sort { input, .. } => at_most_one_row(input),
        _ => false,
    }
}

/// What column `col` of `plan` is over no input rows, when `plan` is a
/// global aggregate under projections and filters: counts are 0, other
/// aggregates NULL. None when that cannot be told.
pub(super) fn over_no_rows(plan: &LogicalPlan, col: usize) -> Option<Expr> {
    match plan {
        LogicalPlan::Project { input, exprs, .. } => {
            let e = exprs.get(col)?;
            let mut cols = vec![];
            e.columns(&mut cols);
            let mut values = std::collections::HashMap::new();
            for c in cols {
                values.insert(c, over_no_rows(input, c)?);
            }
            Some(substitute(e, &values))
        }
        LogicalPlan::Aggregate {
            group_by,
            aggs,
            schema,
            ..
        } if group_by.is_empty() => {
            let a = aggs.get(col)?;
            Some(match a.func {
                AggFunc::Count | AggFunc::CountStar => lit(ScalarValue::Int64(0)),
                _ => null_of(schema.field(col).data_type()),
            })
        }
        LogicalPlan::Sort { input, .. } => over_no_rows(input, col),
        LogicalPlan::Filter { input, predicate } => {
            let value = over_no_rows(input, col)?;
            let mut cols = vec![];
            predicate.columns(&mut cols);
            let mut values = std::collections::HashMap::new();
            for c in cols {
                values.insert(c, over_no_rows(input, c)?);
            }
            Some(case(vec![(substitute(predicate, &values), value)], None))
        }
        _ => None,
    }
}

pub(super) fn substitute(e: &Expr, values: &std::collections::HashMap<usize, Expr>) -> Expr {
    e.replace_columns(&|c| values.get(&c).cloned().unwrap_or(Expr::Column(c)))
}

/// The subquery's single value per key (columns: keys, then the value);
/// a key with several rows fails the job naming the subquery.
pub(super) fn checked_single(
    plan: LogicalPlan,
    keys: &[Expr],
    t: &DataType,
    text: &str,
) -> Result<LogicalPlan> {
    let k = keys.len();
    let grouped = group(
        plan,
        keys,
        vec![
            (
                agg(AggFunc::First, Some(Expr::Column(0))),
                field("value", t),
            ),
            (
                agg(AggFunc::CountStar, None),
                field("rows", &DataType::Int64),
            ),
        ],
    )?;
    let schema = grouped.schema();
    let mut exprs: Vec<(Expr, Field)> = (0..k)
        .map(|i| (Expr::Column(i), schema.field(i).clone()))
        .collect();
    exprs.push((
        Expr::Func {
            func: Func::SingleValue,
            args: vec![
                Expr::Column(k + 1),
                Expr::Column(k),
                lit(ScalarValue::Utf8(text.to_string())),
            ],
        },
        field("value", t),
    ));
    Ok(project(grouped, exprs))
}

pub(super) fn key_type(plan: &LogicalPlan, e: &Expr) -> DataType {
    e.data_type(&plan.schema()).unwrap_or(DataType::Null)
}

pub(super) fn e_type(e: &Expr, fallback: &DataType) -> DataType {
    e.data_type(&Schema::empty())
        .unwrap_or_else(|_| fallback.clone())
}

pub(super) fn is_null_literal(e: &Expr) -> bool {
    match e {
        Expr::Literal(ScalarValue::Null) => true,
        Expr::Cast { expr, .. } => is_null_literal(expr),
        _ => false,
    }
}
