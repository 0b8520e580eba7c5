//! Binds SQL expressions to physical expressions over a scope.
//!
//! In aggregate mode ([`AggContext`]) the result refers to the aggregate's
//! output: group-by expressions become their group column, aggregate calls
//! are collected and become their aggregate column, and a bare column that
//! is neither is an error.

use arrow::datatypes::DataType;
use keel_proto::expr::{BinaryOp, Expr, Func, ScalarValue};
use keel_proto::plan::{AggExpr, AggFunc};
use sqlparser::ast::{
    self, BinaryOperator, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator,
};

use super::functions;
use super::scope::Scope;
use super::types::{
    self, binary, cast_if_needed, common_type, from_sql, sql_name, temporal_literal,
};
use crate::error::{Result, SchedulerError};

pub type Typed = (Expr, DataType);

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

pub struct ExprBinder<'a> {
    pub scope: &'a Scope,
    pub agg: Option<&'a mut AggContext>,
    /// Window calls computed below this expression, and their columns.
    pub windows: &'a [WindowColumn],
}

/// A window function call a Window node computes, by its SQL text.
#[derive(Debug, Clone)]
pub struct WindowColumn {
    pub call: String,
    pub column: usize,
    pub data_type: DataType,
}

const AGGREGATES: [&str; 13] = [
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

fn function_name(f: &ast::Function) -> String {
    f.name.to_string().to_lowercase()
}

fn is_aggregate_call(e: &ast::Expr) -> Option<&ast::Function> {
    match e {
        ast::Expr::Function(f)
            if f.over.is_none() && AGGREGATES.contains(&function_name(f).as_str()) =>
        {
            Some(f)
        }
        _ => None,
    }
}

/// Whether an aggregate call appears anywhere in `e`.
pub fn contains_aggregate(e: &ast::Expr) -> bool {
    let mut found = false;
    visit_calls(e, &mut |f| {
        if f.over.is_none() && AGGREGATES.contains(&function_name(f).as_str()) {
            found = true;
        }
        !found
    });
    found
}

/// Every window function call in `e` (calls with OVER), outermost first.
pub fn window_calls<'e>(e: &'e ast::Expr, out: &mut Vec<&'e ast::Function>) {
    visit_calls(e, &mut |f| {
        if f.over.is_some() {
            out.push(f);
            return false;
        }
        true
    });
}

/// Calls `visit` on every function call in `e`, outermost first; a call's
/// arguments are visited when `visit` returns true.
fn visit_calls<'e>(e: &'e ast::Expr, visit: &mut dyn FnMut(&'e ast::Function) -> bool) {
    use ast::Expr as E;
    match e {
        E::Function(f) => {
            if visit(f) {
                for a in function_args(f).unwrap_or_default() {
                    visit_calls(a, visit);
                }
            }
        }
        E::BinaryOp { left, right, .. }
        | E::IsDistinctFrom(left, right)
        | E::IsNotDistinctFrom(left, right) => {
            visit_calls(left, visit);
            visit_calls(right, visit);
        }
        E::UnaryOp { expr, .. }
        | E::Nested(expr)
        | E::IsNull(expr)
        | E::IsNotNull(expr)
        | E::Cast { expr, .. }
        | E::Like { expr, .. }
        | E::ILike { expr, .. }
        | E::Extract { expr, .. }
        | E::Ceil { expr, .. }
        | E::Floor { expr, .. } => visit_calls(expr, visit),
        E::Position { expr, r#in } => {
            visit_calls(expr, visit);
            visit_calls(r#in, visit);
        }
        E::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            visit_calls(expr, visit);
            for x in substring_from.iter().chain(substring_for) {
                visit_calls(x, visit);
            }
        }
        E::Trim {
            expr,
            trim_what,
            trim_characters,
            ..
        } => {
            visit_calls(expr, visit);
            for x in trim_what.iter() {
                visit_calls(x, visit);
            }
            for x in trim_characters.iter().flatten() {
                visit_calls(x, visit);
            }
        }
        E::Between {
            expr, low, high, ..
        } => {
            for x in [expr, low, high] {
                visit_calls(x, visit);
            }
        }
        E::InList { expr, list, .. } => {
            visit_calls(expr, visit);
            list.iter().for_each(|x| visit_calls(x, visit));
        }
        E::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(o) = operand {
                visit_calls(o, visit);
            }
            for c in conditions {
                visit_calls(&c.condition, visit);
                visit_calls(&c.result, visit);
            }
            if let Some(x) = else_result {
                visit_calls(x, visit);
            }
        }
        _ => {}
    }
}

/// The plain expression arguments of a function call.
pub(super) fn function_args(f: &ast::Function) -> Result<Vec<&ast::Expr>> {
    match &f.args {
        FunctionArguments::None => Ok(vec![]),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                other => Err(SchedulerError::unsupported(format!(
                    "function argument {other} in {f}"
                ))),
            })
            .collect(),
        FunctionArguments::Subquery(_) => Err(SchedulerError::unsupported(format!(
            "subquery argument in {f}"
        ))),
    }
}

/// The name DuckDB-style output gives an unaliased expression.
pub fn output_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(i) => i.value.clone(),
        ast::Expr::CompoundIdentifier(parts) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

impl<'a> ExprBinder<'a> {
    pub fn new(scope: &'a Scope) -> Self {
        ExprBinder {
            scope,
            agg: None,
            windows: &[],
        }
    }

    pub fn with_windows(scope: &'a Scope, windows: &'a [WindowColumn]) -> Self {
        ExprBinder {
            scope,
            agg: None,
            windows,
        }
    }

    pub fn with_aggregates(scope: &'a Scope, agg: &'a mut AggContext) -> Self {
        ExprBinder {
            scope,
            agg: Some(agg),
            windows: &[],
        }
    }

    pub fn bind(&mut self, e: &ast::Expr) -> Result<Typed> {
        if self.agg.is_some() {
            if let ast::Expr::Function(f) = e {
                if matches!(function_name(f).as_str(), "grouping" | "grouping_id") {
                    return self.bind_grouping(f);
                }
            }
            if let Some(f) = is_aggregate_call(e) {
                return self.bind_aggregate(f);
            }
            if !contains_aggregate(e) {
                let plain = ExprBinder::new(self.scope).bind(e);
                let agg = self.agg.as_ref().expect("agg mode");
                match plain {
                    Ok((x, t)) => {
                        if let Some(i) = agg.group_exprs.iter().position(|g| *g == x) {
                            return Ok((Expr::Column(i), agg.group_types[i].clone()));
                        }
                        let mut cols = vec![];
                        x.columns(&mut cols);
                        if cols.is_empty() {
                            return Ok((x, t));
                        }
                    }
                    Err(err)
                        if matches!(
                            e,
                            ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)
                        ) =>
                    {
                        return Err(err)
                    }
                    Err(_) => {}
                }
                if matches!(
                    e,
                    ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)
                ) {
                    return Err(SchedulerError::bind(format!(
                        "column \"{e}\" must appear in the GROUP BY clause or be used in an aggregate function"
                    )));
                }
            }
        }
        self.bind_structure(e)
    }

    fn bind_aggregate(&mut self, f: &ast::Function) -> Result<Typed> {
        let name = function_name(f);
        if f.over.is_some() {
            return Err(SchedulerError::unsupported(format!("window function {f}")));
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
            func,
            arg,
            distinct,
            params,
        };
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
        Ok((Expr::Column(ctx.group_exprs.len() + k), out_type))
    }

    /// `grouping(a, b, …)`: per row, a bit for each argument (the first the
    /// highest) set where the row's grouping set leaves that key out.
    fn bind_grouping(&mut self, f: &ast::Function) -> Result<Typed> {
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

    fn bind_structure(&mut self, e: &ast::Expr) -> Result<Typed> {
        use ast::Expr as E;
        Ok(match e {
            E::Identifier(id) => {
                let i = self.scope.resolve(None, &id.value)?;
                (Expr::Column(i), self.scope.columns[i].data_type.clone())
            }
            E::CompoundIdentifier(parts) => {
                let (q, n) = match parts.as_slice() {
                    [q, n] => (q, n),
                    _ => {
                        return Err(SchedulerError::bind(format!(
                            "cannot resolve {e}: use table.column"
                        )))
                    }
                };
                let i = self.scope.resolve(Some(&q.value), &n.value)?;
                (Expr::Column(i), self.scope.columns[i].data_type.clone())
            }
            E::Value(v) => literal(&v.value)?,
            E::TypedString(ts) => {
                let text = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => return Err(SchedulerError::bind(format!("invalid literal {other}"))),
                };
                let t = from_sql(&ts.data_type)?;
                match t {
                    DataType::Date32 | DataType::Timestamp(..) => {
                        let v = temporal_literal(&text, &t)?;
                        (Expr::Literal(v), t)
                    }
                    _ => (Expr::Literal(ScalarValue::Utf8(text)).cast(t.clone()), t),
                }
            }
            E::Nested(inner) => self.bind(inner)?,
            E::BinaryOp {
                left,
                op: BinaryOperator::StringConcat,
                right,
            } => {
                let args = vec![self.bind(left)?, self.bind(right)?];
                functions::bind(Func::ConcatOp, args, &e.to_string())?
            }
            E::BinaryOp { left, op, right } => {
                let op = binary_op(op, e)?;
                let (l, lt) = self.bind(left)?;
                let (r, rt) = self.bind(right)?;
                let out = binary(op, l, &lt, r, &rt, &e.to_string())?;
                let t = if op.is_comparison() || matches!(op, BinaryOp::And | BinaryOp::Or) {
                    DataType::Boolean
                } else {
                    types::arithmetic_type(op, &lt, &rt)
                };
                (out, t)
            }
            E::UnaryOp { op, expr } => {
                let (x, t) = self.bind(expr)?;
                match op {
                    UnaryOperator::Not => (
                        Expr::Not(Box::new(cast_if_needed(x, &t, &DataType::Boolean))),
                        DataType::Boolean,
                    ),
                    UnaryOperator::Minus => {
                        if let Expr::Literal(v) = &x {
                            if let Some(n) = negate(v) {
                                return Ok((Expr::Literal(n), t));
                            }
                        }
                        if !types::is_numeric(&t) {
                            return Err(SchedulerError::bind(format!(
                                "cannot negate {} in {e}",
                                sql_name(&t)
                            )));
                        }
                        (Expr::Negative(Box::new(x)), t)
                    }
                    UnaryOperator::Plus => (x, t),
                    other => return Err(SchedulerError::unsupported(format!("operator {other}"))),
                }
            }
            E::IsDistinctFrom(left, right) | E::IsNotDistinctFrom(left, right) => {
                let op = if matches!(e, E::IsDistinctFrom(..)) {
                    BinaryOp::IsDistinctFrom
                } else {
                    BinaryOp::IsNotDistinctFrom
                };
                let (l, lt) = self.bind(left)?;
                let (r, rt) = self.bind(right)?;
                (
                    binary(op, l, &lt, r, &rt, &e.to_string())?,
                    DataType::Boolean,
                )
            }
            E::IsNull(inner) => (
                Expr::IsNull(Box::new(self.bind(inner)?.0)),
                DataType::Boolean,
            ),
            E::IsNotNull(inner) => (
                Expr::IsNotNull(Box::new(self.bind(inner)?.0)),
                DataType::Boolean,
            ),
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (x, xt) = self.bind(expr)?;
                let (lo, lt) = self.bind(low)?;
                let (hi, ht) = self.bind(high)?;
                let shown = e.to_string();
                let ge = binary(BinaryOp::GtEq, x.clone(), &xt, lo, &lt, &shown)?;
                let le = binary(BinaryOp::LtEq, x, &xt, hi, &ht, &shown)?;
                let both = Expr::binary(BinaryOp::And, ge, le);
                (
                    if *negated {
                        Expr::Not(Box::new(both))
                    } else {
                        both
                    },
                    DataType::Boolean,
                )
            }
            E::InList {
                expr,
                list,
                negated,
            } => {
                let (x, xt) = self.bind(expr)?;
                let mut items = vec![];
                for item in list {
                    let (v, vt) = self.bind(item)?;
                    // Check comparability item by item so the error names the item.
                    binary(BinaryOp::Eq, x.clone(), &xt, v.clone(), &vt, &e.to_string())?;
                    items.push(cast_if_needed(v, &vt, &xt));
                }
                (
                    Expr::InList {
                        expr: Box::new(x),
                        list: items,
                        negated: *negated,
                    },
                    DataType::Boolean,
                )
            }
            E::InSubquery { .. } => {
                return Err(SchedulerError::unsupported(format!(
                    "{e} here; IN (subquery) is supported as a condition of WHERE"
                )))
            }
            E::Like {
                negated,
                expr,
                pattern,
                escape_char,
                any,
            }
            | E::ILike {
                negated,
                expr,
                pattern,
                escape_char,
                any,
            } => {
                let case_insensitive = matches!(e, E::ILike { .. });
                self.like(
                    e,
                    *negated,
                    expr,
                    pattern,
                    escape_char.is_some() || *any,
                    case_insensitive,
                )?
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(e, operand.as_deref(), conditions, else_result.as_deref())?,
            E::Cast {
                expr,
                data_type,
                kind,
                ..
            } => {
                let (x, t) = self.bind(expr)?;
                let to = from_sql(data_type)?;
                if matches!(kind, ast::CastKind::TryCast | ast::CastKind::SafeCast) {
                    let x = match (x, &t == &to) {
                        (x, true) => x,
                        (x, false) => Expr::TryCast {
                            expr: Box::new(x),
                            to: to.clone(),
                        },
                    };
                    return Ok((x, to));
                }
                if let (
                    Expr::Literal(ScalarValue::Utf8(s)),
                    DataType::Date32 | DataType::Timestamp(..),
                ) = (&x, &to)
                {
                    return Ok((Expr::Literal(temporal_literal(s, &to)?), to));
                }
                (cast_if_needed(x, &t, &to), to)
            }
            E::Function(f) => self.function(e, f)?,
            E::Extract { field, expr, .. } => {
                let part = (
                    Expr::Literal(ScalarValue::Utf8(field.to_string())),
                    DataType::Utf8,
                );
                let args = vec![part, self.bind(expr)?];
                functions::bind(Func::DatePart, args, &e.to_string())?
            }
            E::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.bind(expr)?];
                args.push(match substring_from {
                    Some(from) => self.bind(from)?,
                    None => (Expr::Literal(ScalarValue::Int64(1)), DataType::Int64),
                });
                if let Some(n) = substring_for {
                    args.push(self.bind(n)?);
                }
                functions::bind(Func::Substr, args, &e.to_string())?
            }
            E::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters,
            } => {
                let func = match trim_where {
                    Some(ast::TrimWhereField::Leading) => Func::Ltrim,
                    Some(ast::TrimWhereField::Trailing) => Func::Rtrim,
                    _ => Func::Trim,
                };
                let mut args = vec![self.bind(expr)?];
                match (trim_what, trim_characters.as_deref()) {
                    (Some(what), None) => args.push(self.bind(what)?),
                    (None, Some([chars])) => args.push(self.bind(chars)?),
                    (None, None) => {}
                    _ => return Err(SchedulerError::unsupported(format!("{e}"))),
                }
                functions::bind(func, args, &e.to_string())?
            }
            E::Position { expr, r#in } => {
                let args = vec![self.bind(r#in)?, self.bind(expr)?];
                functions::bind(Func::Strpos, args, &e.to_string())?
            }
            E::Ceil { expr, field } | E::Floor { expr, field } => {
                if !matches!(
                    field,
                    ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime)
                ) {
                    return Err(SchedulerError::unsupported(format!(
                        "{e}: ceil and floor take one number"
                    )));
                }
                let func = if matches!(e, E::Ceil { .. }) {
                    Func::Ceil
                } else {
                    Func::Floor
                };
                functions::bind(func, vec![self.bind(expr)?], &e.to_string())?
            }
            E::Interval(interval) => {
                let v = types::interval_literal(interval)?;
                let t = v.data_type();
                (Expr::Literal(v), t)
            }
            other => return Err(SchedulerError::unsupported(format!("expression {other}"))),
        })
    }

    fn like(
        &mut self,
        e: &ast::Expr,
        negated: bool,
        expr: &ast::Expr,
        pattern: &ast::Expr,
        extra: bool,
        ci: bool,
    ) -> Result<Typed> {
        if extra {
            return Err(SchedulerError::unsupported(format!(
                "{e}: LIKE with ESCAPE or ANY"
            )));
        }
        let (x, t) = self.bind(expr)?;
        if !matches!(t, DataType::Utf8 | DataType::Null) {
            return Err(SchedulerError::bind(format!(
                "LIKE needs VARCHAR, got {} in {e}",
                sql_name(&t)
            )));
        }
        let pattern = match self.bind(pattern)?.0 {
            Expr::Literal(ScalarValue::Utf8(p)) => p,
            _ => {
                return Err(SchedulerError::unsupported(format!(
                    "{e}: the LIKE pattern must be a string literal"
                )))
            }
        };
        Ok((
            Expr::Like {
                expr: Box::new(x),
                pattern,
                negated,
                case_insensitive: ci,
            },
            DataType::Boolean,
        ))
    }

    fn case(
        &mut self,
        e: &ast::Expr,
        operand: Option<&ast::Expr>,
        conditions: &[ast::CaseWhen],
        else_result: Option<&ast::Expr>,
    ) -> Result<Typed> {
        let operand = operand.map(|o| self.bind(o)).transpose()?;
        let mut branches = vec![];
        for c in conditions {
            let (cond, ct) = self.bind(&c.condition)?;
            let cond = match &operand {
                Some((o, ot)) => (
                    binary(BinaryOp::Eq, o.clone(), ot, cond, &ct, &e.to_string())?,
                    DataType::Boolean,
                ),
                None => (cond, ct),
            };
            branches.push((cond, self.bind(&c.result)?));
        }
        let otherwise = else_result.map(|x| self.bind(x)).transpose()?;
        self.case_of(e, branches, otherwise)
    }

    /// A searched CASE from bound conditions and results, in one result type.
    fn case_of(
        &self,
        e: &ast::Expr,
        branches: Vec<(Typed, Typed)>,
        otherwise: Option<Typed>,
    ) -> Result<Typed> {
        let mut t = DataType::Null;
        for ((_, ct), _) in &branches {
            if !matches!(ct, DataType::Boolean | DataType::Null) {
                return Err(SchedulerError::bind(format!(
                    "CASE WHEN needs a BOOLEAN condition, got {} in {e}",
                    sql_name(ct)
                )));
            }
        }
        for (_, rt) in branches.iter().map(|(_, r)| r).chain(otherwise.iter()) {
            t = common_type(&t, rt, false, false).ok_or_else(|| {
                SchedulerError::bind(format!(
                    "CASE branches have incompatible types {} and {} in {e}",
                    sql_name(&t),
                    sql_name(rt)
                ))
            })?;
        }
        let whens = branches
            .into_iter()
            .map(|((w, _), (r, rt))| (w, cast_if_needed(r, &rt, &t)))
            .collect();
        let otherwise = otherwise.map(|(o, ot)| Box::new(cast_if_needed(o, &ot, &t)));
        Ok((Expr::Case { whens, otherwise }, t))
    }

    fn function(&mut self, e: &ast::Expr, f: &ast::Function) -> Result<Typed> {
        let name = function_name(f);
        if f.over.is_some() {
            let call = f.to_string();
            return match self.windows.iter().find(|w| w.call == call) {
                Some(w) => Ok((Expr::Column(w.column), w.data_type.clone())),
                None => Err(SchedulerError::bind(format!(
                    "window function {f} is not allowed here (window functions belong in SELECT, QUALIFY or ORDER BY)"
                ))),
            };
        }
        if AGGREGATES.contains(&name.as_str()) {
            return Err(SchedulerError::bind(format!(
                "aggregate function {name}() is not allowed here: {e} (aggregates belong in SELECT, HAVING or ORDER BY)"
            )));
        }
        if name == super::asof::MARKER {
            return Err(SchedulerError::bind(super::asof::USAGE));
        }
        if name == "grouping" || name == "grouping_id" {
            return Err(SchedulerError::bind(format!(
                "{name}() belongs in a query with GROUP BY"
            )));
        }
        if name == "nearest" {
            return Err(SchedulerError::bind(
                "nearest(a.t, b.t) is the time condition of an ASOF JOIN and belongs in its ON clause",
            ));
        }
        let args = function_args(f)?;
        let bound = args
            .iter()
            .map(|a| self.bind(a))
            .collect::<Result<Vec<_>>>()?;
        if name == "if" {
            // if(c, a, b) is CASE WHEN c THEN a ELSE b END.
            let [cond, then, otherwise] = <[Typed; 3]>::try_from(bound).map_err(|b| {
                SchedulerError::bind(format!("if() takes 3 argument(s), got {} in {e}", b.len()))
            })?;
            return self.case_of(e, vec![(cond, then)], Some(otherwise));
        }
        let func = Func::from_name(&name).ok_or_else(|| {
            let scalars: Vec<&str> = Func::names().filter(|n| *n != "||").collect();
            SchedulerError::bind(format!(
                "Unknown function {name}(); Keel's scalar functions are {}, if; its aggregates {}",
                scalars.join(", "),
                AGGREGATES.join(", ")
            ))
        })?;
        super::functions::bind(func, bound, &e.to_string())
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

/// A number written as a constant (`2.5`, `-1e-3`).
pub(super) fn numeric_constant(e: &ast::Expr) -> Option<f64> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        ast::Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => numeric_constant(expr).map(|v| -v),
        ast::Expr::Nested(inner) => numeric_constant(inner),
        _ => None,
    }
}

fn negate(v: &ScalarValue) -> Option<ScalarValue> {
    Some(match v {
        ScalarValue::Int64(x) => ScalarValue::Int64(-x),
        ScalarValue::Int32(x) => ScalarValue::Int32(-x),
        ScalarValue::Float64(x) => ScalarValue::Float64(-x),
        _ => return None,
    })
}

fn binary_op(op: &BinaryOperator, e: &ast::Expr) -> Result<BinaryOp> {
    Ok(match op {
        BinaryOperator::Plus => BinaryOp::Add,
        BinaryOperator::Minus => BinaryOp::Sub,
        BinaryOperator::Multiply => BinaryOp::Mul,
        BinaryOperator::Divide => BinaryOp::Div,
        BinaryOperator::Modulo => BinaryOp::Mod,
        BinaryOperator::Eq => BinaryOp::Eq,
        BinaryOperator::NotEq => BinaryOp::NotEq,
        BinaryOperator::Lt => BinaryOp::Lt,
        BinaryOperator::LtEq => BinaryOp::LtEq,
        BinaryOperator::Gt => BinaryOp::Gt,
        BinaryOperator::GtEq => BinaryOp::GtEq,
        BinaryOperator::And => BinaryOp::And,
        BinaryOperator::Or => BinaryOp::Or,
        other => {
            return Err(SchedulerError::unsupported(format!(
                "operator {other} in {e}"
            )))
        }
    })
}

pub fn literal(v: &ast::Value) -> Result<Typed> {
    Ok(match v {
        ast::Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                (Expr::Literal(ScalarValue::Int64(i)), DataType::Int64)
            } else {
                let f: f64 = n
                    .parse()
                    .map_err(|_| SchedulerError::bind(format!("invalid number {n}")))?;
                (Expr::Literal(ScalarValue::Float64(f)), DataType::Float64)
            }
        }
        ast::Value::SingleQuotedString(s) => {
            (Expr::Literal(ScalarValue::Utf8(s.clone())), DataType::Utf8)
        }
        ast::Value::Boolean(b) => (Expr::Literal(ScalarValue::Boolean(*b)), DataType::Boolean),
        ast::Value::Null => (Expr::Literal(ScalarValue::Null), DataType::Null),
        other => return Err(SchedulerError::unsupported(format!("literal {other}"))),
    })
}
