//! Aggregate calls in expressions above a GROUP BY (and GROUPING()):
//! collected into the [`AggContext`] and bound to their output columns.

use arrow::datatypes::DataType;
use keel_proto::expr::{BinaryOp, Expr, ScalarValue};
use keel_proto::func::Func;
use keel_proto::plan::{AggExpr, AggFunc};
use sqlparser::ast::{self, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::expr::{ExprBinder, Typed};
use super::literals::numeric_constant;
use super::types::{self, cast_if_needed, sql_name};
use super::walk::{function_args, function_name, visit_calls};
use crate::error::{Result, SchedulerError};

/// Aggregates found while binding the expressions above a GROUP BY.
#[derive(Debug, Default)]
pub struct AggContext {
    pub group_exprs: Vec<Expr>,
    pub group_types: Vec<DataType>,
    pub group_names: Vec<String>,
    pub aggs: Vec<AggExpr>,
    pub agg_types: Vec<DataType>,
    pub agg_names: Vec<String>,
    /// GROUPING SETS: which keys each set groups by; the set's number is
    /// the group column after the keys.
    pub grouping_sets: Option<Vec<Vec<bool>>>,
}

mod extended;

/// Every aggregate's name: SQL's basics, sketches, then DuckDB's
/// statistical and holistic ones (bound in `extended`).
pub(super) const AGGREGATES: [&str; 13 + extended::NAMES.len()] = {
    const BASIC: [&str; 13] = [
        "count",
        "sum",
        "min",
        "max",
        "avg",
        "first",
        "arbitrary",
        "approx_count_distinct",
        "theta_sketch",
        "theta_union_agg",
        "theta_intersect_agg",
        "approx_quantile",
        "mixture_stats",
    ];
    let mut all = [""; 13 + extended::NAMES.len()];
    let mut i = 0;
    while i < all.len() {
        all[i] = if i < BASIC.len() {
            BASIC[i]
        } else {
            extended::NAMES[i - BASIC.len()]
        };
        i += 1;
    }
    all
};

/// A call the aggregate binder takes: an aggregate, or a name Keel does
/// not know at all, which it refuses by that name (so `stddev_x(x)` over a
/// GROUP BY says the function is unknown, not that `x` is not grouped).
pub(super) fn is_aggregate_call(e: &ast::Expr) -> Option<&ast::Function> {
    match e {
        ast::Expr::Function(f) if f.over.is_none() => {
            let name = function_name(f);
            (AGGREGATES.contains(&name.as_str()) || is_unknown_function(&name)).then_some(f)
        }
        _ => None,
    }
}

/// Neither an aggregate, nor a scalar function, nor a name the expression
/// binder treats itself.
fn is_unknown_function(name: &str) -> bool {
    !AGGREGATES.contains(&name)
        && Func::from_name(name).is_none()
        && !matches!(name, "if" | "grouping" | "grouping_id" | "nearest")
        && name != super::asof::MARKER
}

/// Whether an aggregate call appears anywhere in `e`.
/// A window call's PARTITION BY and ORDER BY count: `rank() OVER (ORDER BY
/// sum(x))` makes its SELECT an aggregating one, as in DuckDB.
pub fn contains_aggregate(e: &ast::Expr) -> bool {
    let mut found = false;
    visit_calls(e, &mut |f| {
        match &f.over {
            None => found |= AGGREGATES.contains(&function_name(f).as_str()),
            Some(ast::WindowType::WindowSpec(spec)) => {
                found |= spec.partition_by.iter().any(contains_aggregate)
                    || spec.order_by.iter().any(|o| contains_aggregate(&o.expr));
            }
            Some(ast::WindowType::NamedWindow(_)) => {}
        }
        !found
    });
    found
}

impl ExprBinder<'_> {
    pub(super) fn bind_aggregate(&mut self, f: &ast::Function) -> Result<Typed> {
        let name = function_name(f);
        if f.over.is_some() {
            return Err(SchedulerError::unsupported(format!("window function {f}")));
        }
        if !AGGREGATES.contains(&name.as_str()) {
            return Err(SchedulerError::bind(format!(
                "unknown function {name}(); Keel's aggregates are {}",
                AGGREGATES.join(", ")
            )));
        }
        let distinct = matches!(&f.args, FunctionArguments::List(l) if matches!(l.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct)));
        let star = matches!(&f.args, FunctionArguments::List(l)
            if l.args.len() == 1 && matches!(l.args[0], FunctionArg::Unnamed(FunctionArgExpr::Wildcard)));
        let mut plain = ExprBinder::new(self.scope);
        let filter = match &f.filter {
            Some(c) => {
                let (c, t) = plain.bind(c)?;
                if !matches!(t, DataType::Boolean | DataType::Null) {
                    return Err(SchedulerError::bind(format!(
                        "FILTER needs a BOOLEAN condition, got {} in {f}",
                        sql_name(&t)
                    )));
                }
                Some(c)
            }
            None => None,
        };
        let order = extended::order_clause(f)?;
        if !order.is_empty() && matches!(name.as_str(), "first" | "arbitrary") {
            return Err(SchedulerError::unsupported(format!(
                "ORDER BY inside {name}(); order the rows in a subquery and use min_by/max_by, in {f}"
            )));
        }
        if extended::NAMES.contains(&name.as_str()) {
            let call = extended::Call {
                f,
                name: &name,
                distinct,
                filter,
            };
            let (agg, out_type) = extended::bind(&mut plain, &call)?;
            return Ok(self.add_aggregate(agg, out_type, f));
        }
        // mixture_stats(x, w_1, μ_1, σ_1, …): the model, constants.
        let mut params = vec![];
        let (func, arg, out_type) = if star {
            if name != "count" {
                return Err(SchedulerError::bind(format!(
                    "{name}(*) is not a function; did you mean count(*)?"
                )));
            }
            let arg = filter
                .clone()
                .map(|c| (Expr::Literal(ScalarValue::Int64(1)), c));
            match arg {
                // count(*) FILTER (WHERE c) counts rows where c holds.
                Some((one, c)) => (
                    AggFunc::Count,
                    Some(Expr::Case {
                        whens: vec![(c, one)],
                        otherwise: None,
                    }),
                    DataType::Int64,
                ),
                None => (AggFunc::CountStar, None, DataType::Int64),
            }
        } else {
            let mut args = function_args(f)?;
            // theta_sketch(x, lg_k): the sketch's size, a constant.
            let mut lg_k = 12u8;
            // approx_quantile(x, q): the quantile, a constant from 0 to 1.
            let mut q = 0.5f64;
            if name == "approx_quantile" {
                if args.len() != 2 {
                    return Err(SchedulerError::bind(format!(
                        "approx_quantile(x, q) takes a value and a quantile, in {f}"
                    )));
                }
                q = match args.pop() {
                    Some(ast::Expr::Value(v)) => v.value.to_string().parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|q| (0.0..=1.0).contains(q))
                .ok_or_else(|| {
                    SchedulerError::bind(format!(
                        "approx_quantile(x, q): q is a constant from 0 to 1, in {f}"
                    ))
                })?;
            }
            if name == "mixture_stats" {
                let constants = args.split_off(1.min(args.len()));
                params = constants
                    .iter()
                    .map(|e| numeric_constant(e))
                    .collect::<Option<Vec<f64>>>()
                    .filter(|p| !p.is_empty() && p.len() % 3 == 0)
                    .filter(|p| p.chunks(3).all(|m| m[0] > 0.0 && m[2] > 0.0))
                    .ok_or_else(|| {
                        SchedulerError::bind(format!(
                            "mixture_stats(x, w_1, mean_1, std_1, …) takes a value and, per mode, a positive weight, a mean and a positive std as constants, in {f}"
                        ))
                    })?;
            }
            if name == "theta_sketch" && args.len() == 2 {
                lg_k = match args.pop() {
                    Some(ast::Expr::Value(v)) => v.value.to_string().parse::<u8>().ok(),
                    _ => None,
                }
                .filter(|k| (4..=26).contains(k))
                .ok_or_else(|| {
                    SchedulerError::bind(format!(
                        "theta_sketch(x, lg_k): lg_k is a constant from 4 to 26, in {f}"
                    ))
                })?;
            }
            if args.len() != 1 {
                return Err(SchedulerError::bind(format!(
                    "{name}() takes exactly one argument, got {} in {f}",
                    args.len()
                )));
            }
            if contains_aggregate(args[0]) {
                return Err(SchedulerError::bind(format!(
                    "aggregate function calls cannot be nested: {f}"
                )));
            }
            let (mut arg, t) = plain.bind(args[0])?;
            if filter.is_some() && matches!(name.as_str(), "first" | "arbitrary") {
                // FILTER becomes a CASE that NULLs the other rows, and first() keeps NULLs.
                return Err(SchedulerError::unsupported(format!(
                    "{name}() with FILTER; filter the rows in a subquery first"
                )));
            }
            if let Some(c) = &filter {
                arg = Expr::Case {
                    whens: vec![(c.clone(), arg)],
                    otherwise: None,
                };
            }
            match name.as_str() {
                "count" => (AggFunc::Count, Some(arg), DataType::Int64),
                "sum" => {
                    let target = match &t {
                        DataType::Int32 | DataType::Int64 => DataType::Int64,
                        // Exact, with DuckDB's 38 digits.
                        DataType::Decimal128(_, s) => {
                            DataType::Decimal128(keel_proto::expr::DECIMAL_MAX_PRECISION, *s)
                        }
                        DataType::Float64 | DataType::Null => DataType::Float64,
                        other => {
                            return Err(SchedulerError::bind(format!(
                                "sum() of {} is not defined in {f}",
                                sql_name(other)
                            )))
                        }
                    };
                    (AggFunc::Sum, Some(cast_if_needed(arg, &t, &target)), target)
                }
                "avg" => {
                    if !(types::is_numeric(&t) || t == DataType::Null) {
                        return Err(SchedulerError::bind(format!(
                            "avg() of {} is not defined in {f}",
                            sql_name(&t)
                        )));
                    }
                    (
                        AggFunc::Avg,
                        Some(cast_if_needed(arg, &t, &DataType::Float64)),
                        DataType::Float64,
                    )
                }
                "min" | "max" => {
                    let func = if name == "min" {
                        AggFunc::Min
                    } else {
                        AggFunc::Max
                    };
                    if matches!(t, DataType::Boolean | DataType::Null) {
                        return Err(SchedulerError::unsupported(format!(
                            "{name}() of {}",
                            sql_name(&t)
                        )));
                    }
                    (func, Some(arg), t)
                }
                "first" | "arbitrary" => (AggFunc::First, Some(arg), t),
                "theta_sketch" => (
                    AggFunc::ThetaSketch { lg_k },
                    Some(sketch_value(arg, &t, f)?),
                    DataType::Binary,
                ),
                "approx_quantile" => {
                    let integer = matches!(t, DataType::Int32 | DataType::Int64);
                    if !types::is_numeric(&t) {
                        return Err(SchedulerError::bind(format!(
                            "approx_quantile() of {} is not supported in {f}",
                            sql_name(&t)
                        )));
                    }
                    let out = if integer {
                        DataType::Int64
                    } else {
                        DataType::Float64
                    };
                    (
                        AggFunc::ApproxQuantile {
                            q_millionths: (q * 1e6).round() as u32,
                            integer,
                        },
                        Some(cast_if_needed(arg, &t, &DataType::Float64)),
                        out,
                    )
                }
                "theta_union_agg" | "theta_intersect_agg" => {
                    if !matches!(t, DataType::Binary | DataType::Null) {
                        return Err(SchedulerError::bind(format!(
                            "{name}() takes theta sketches (BLOB), got {} in {f}",
                            sql_name(&t)
                        )));
                    }
                    let func = if name == "theta_union_agg" {
                        AggFunc::ThetaUnionAgg
                    } else {
                        AggFunc::ThetaIntersectAgg
                    };
                    (
                        func,
                        Some(cast_if_needed(arg, &t, &DataType::Binary)),
                        DataType::Binary,
                    )
                }
                "mixture_stats" => {
                    if !types::is_numeric(&t) {
                        return Err(SchedulerError::bind(format!(
                            "mixture_stats() of {} is not defined in {f}",
                            sql_name(&t)
                        )));
                    }
                    let x = cast_if_needed(arg, &t, &DataType::Float64);
                    (AggFunc::MixtureStats, Some(x), DataType::Binary)
                }
                "approx_count_distinct" => {
                    if distinct {
                        return Err(SchedulerError::bind(format!(
                            "{f}: approx_count_distinct counts distinct values already; drop DISTINCT"
                        )));
                    }
                    (
                        AggFunc::ApproxCountDistinct,
                        Some(sketch_value(arg, &t, f)?),
                        DataType::Int64,
                    )
                }
                _ => unreachable!("aggregate names"),
            }
        };
        let agg = AggExpr {
            params,
            ..AggExpr::new(func, arg, distinct)
        };
        Ok(self.add_aggregate(agg, out_type, f))
    }

    /// The aggregate's output column (one column for equal calls).
    fn add_aggregate(&mut self, agg: AggExpr, out_type: DataType, f: &ast::Function) -> Typed {
        let ctx = self.agg.as_mut().expect("agg mode");
        let k = match ctx.aggs.iter().position(|a| *a == agg) {
            Some(k) => k,
            None => {
                ctx.aggs.push(agg);
                ctx.agg_types.push(out_type.clone());
                ctx.agg_names.push(f.to_string());
                ctx.aggs.len() - 1
            }
        };
        (Expr::Column(ctx.group_exprs.len() + k), out_type)
    }

    /// `grouping(a, b, …)`: per row, a bit for each argument (the first the
    /// highest) set where the row's grouping set leaves that key out.
    pub(super) fn bind_grouping(&mut self, f: &ast::Function) -> Result<Typed> {
        let args = function_args(f)?;
        if args.is_empty() {
            return Err(SchedulerError::bind(format!(
                "{f} takes one or more GROUP BY keys"
            )));
        }
        let agg = self.agg.as_ref().expect("agg mode");
        let mut keys = vec![];
        for a in &args {
            // A key by its expression, or by its SELECT alias.
            let found = match ExprBinder::new(self.scope).bind(a) {
                Ok((x, _)) => agg.group_exprs.iter().position(|g| *g == x),
                Err(e) => match a {
                    ast::Expr::Identifier(id) => agg
                        .group_names
                        .iter()
                        .position(|n| n.eq_ignore_ascii_case(&id.value)),
                    _ => return Err(e),
                },
            };
            match found {
                Some(j) => keys.push(j),
                None => {
                    return Err(SchedulerError::bind(format!(
                        "{f}: {a} is not a GROUP BY key"
                    )))
                }
            }
        }
        let Some(sets) = &agg.grouping_sets else {
            return Ok((Expr::Literal(ScalarValue::Int64(0)), DataType::Int64));
        };
        let set_column = Expr::Column(sets[0].len());
        let whens = sets
            .iter()
            .enumerate()
            .map(|(i, set)| {
                let mask = keys
                    .iter()
                    .fold(0i64, |m, &j| (m << 1) | i64::from(!set[j]));
                (
                    Expr::binary(
                        BinaryOp::Eq,
                        set_column.clone(),
                        Expr::Literal(ScalarValue::Int64(i as i64)),
                    ),
                    Expr::Literal(ScalarValue::Int64(mask)),
                )
            })
            .collect();
        Ok((
            Expr::Case {
                whens,
                otherwise: Some(Box::new(Expr::Literal(ScalarValue::Int64(0)))),
            },
            DataType::Int64,
        ))
    }
}

/// A sketch's argument as DataSketches hashes it: integers, dates,
/// timestamps and booleans as BIGINT; doubles, strings and blobs as they are.
fn sketch_value(arg: Expr, t: &DataType, f: &ast::Function) -> Result<Expr> {
    Ok(match t {
        DataType::Utf8 | DataType::Int64 | DataType::Float64 | DataType::Binary => arg,
        DataType::Int32 | DataType::Boolean | DataType::Date32 | DataType::Timestamp(..) => {
            arg.cast(DataType::Int64)
        }
        other => {
            return Err(SchedulerError::bind(format!(
                "a sketch of {} values is not supported in {f}",
                sql_name(other)
            )))
        }
    })
}
