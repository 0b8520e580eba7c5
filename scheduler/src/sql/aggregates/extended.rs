//! DuckDB's statistical and holistic aggregates, with its names, argument
//! rules and result types: variances and standard deviations, covariance,
//! correlation and regression, exact quantiles and the mode, `string_agg`,
//! `arg_min`/`arg_max`, `bool_and`/`bool_or`, `count_if` and `product`.

use arrow::datatypes::DataType;
use keel_proto::expr::Expr;
use keel_proto::plan::{AggExpr, AggFunc, SortKey};
use sqlparser::ast::{self, FunctionArgumentClause, FunctionArguments};

use super::contains_aggregate;
use crate::error::{Result, SchedulerError};
use crate::sql::expr::ExprBinder;
use crate::sql::literals::numeric_constant;
use crate::sql::types::{self, cast_if_needed, sql_name};
use crate::sql::walk::function_args;

/// The names bound here (DuckDB's, aliases included).
pub(super) const NAMES: [&str; 31] = [
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "variance",
    "var_samp",
    "var_pop",
    "covar_samp",
    "covar_pop",
    "corr",
    "regr_slope",
    "regr_intercept",
    "regr_r2",
    "median",
    "quantile_cont",
    "quantile_disc",
    "quantile",
    "mode",
    "string_agg",
    "listagg",
    "group_concat",
    "arg_min",
    "arg_max",
    "min_by",
    "max_by",
    "argmin",
    "argmax",
    "bool_and",
    "bool_or",
    "count_if",
    "countif",
    "product",
];

/// `ORDER BY` inside a call (`string_agg(s, ',' ORDER BY s)`); any other
/// clause there is refused.
pub(super) fn order_clause(f: &ast::Function) -> Result<&[ast::OrderByExpr]> {
    if !f.within_group.is_empty() {
        return Err(SchedulerError::unsupported(format!(
            "WITHIN GROUP in {f}; use quantile_cont(x, q) or quantile_disc(x, q)"
        )));
    }
    let FunctionArguments::List(list) = &f.args else {
        return Ok(&[]);
    };
    let mut order: &[ast::OrderByExpr] = &[];
    for clause in &list.clauses {
        match clause {
            FunctionArgumentClause::OrderBy(keys) => order = keys,
            other => {
                return Err(SchedulerError::unsupported(format!(
                    "{other} inside an aggregate call, in {f}"
                )))
            }
        }
    }
    Ok(order)
}

/// One call, as the caller has read it so far.
pub(super) struct Call<'a> {
    pub f: &'a ast::Function,
    pub name: &'a str,
    pub distinct: bool,
    /// `FILTER (WHERE c)`, bound.
    pub filter: Option<Expr>,
}

impl Call<'_> {
    fn error(&self, usage: &str) -> SchedulerError {
        SchedulerError::bind(format!("{usage}, in {}", self.f))
    }

    /// `x` where the FILTER holds, else NULL (which every aggregate here skips).
    fn filtered(&self, x: Expr) -> Expr {
        match &self.filter {
            Some(c) => Expr::Case {
                whens: vec![(c.clone(), x)],
                otherwise: None,
            },
            None => x,
        }
    }

    /// A number as a DOUBLE (DECIMALs too: DuckDB answers DOUBLE).
    fn double(&self, (x, t): (Expr, DataType)) -> Result<Expr> {
        if !(types::is_numeric(&t) || t == DataType::Null) {
            return Err(self.error(&format!(
                "{}() takes numbers, got {}",
                self.name,
                sql_name(&t)
            )));
        }
        Ok(cast_if_needed(x, &t, &DataType::Float64))
    }

    fn boolean(&self, (x, t): (Expr, DataType)) -> Result<Expr> {
        if !matches!(t, DataType::Boolean | DataType::Null) {
            return Err(self.error(&format!(
                "{}() takes BOOLEAN values, got {}",
                self.name,
                sql_name(&t)
            )));
        }
        Ok(cast_if_needed(x, &t, &DataType::Boolean))
    }
}

/// Binds one call of a name in [`NAMES`]: the aggregate and its result type.
pub(super) fn bind(b: &mut ExprBinder, call: &Call) -> Result<(AggExpr, DataType)> {
    let f = call.f;
    let args = function_args(f)?;
    if args.iter().any(|a| contains_aggregate(a)) {
        return Err(SchedulerError::bind(format!(
            "aggregate function calls cannot be nested: {f}"
        )));
    }
    let order = order_clause(f)?;
    let name = call.name;
    let arity = |n: usize, usage: &str| {
        if args.len() == n {
            Ok(())
        } else {
            Err(call.error(&format!(
                "{name}({usage}) takes {n} argument(s), got {}",
                args.len()
            )))
        }
    };
    let one = |func, arg| AggExpr::new(func, Some(arg), call.distinct);
    let two = |func, first, second| AggExpr {
        more_args: vec![second],
        ..one(func, first)
    };
    Ok(match name {
        "stddev" | "stddev_samp" | "stddev_pop" | "variance" | "var_samp" | "var_pop" => {
            arity(1, "x")?;
            let func = match name {
                "stddev" | "stddev_samp" => AggFunc::StddevSamp,
                "stddev_pop" => AggFunc::StddevPop,
                "variance" | "var_samp" => AggFunc::VarSamp,
                _ => AggFunc::VarPop,
            };
            let x = call.double(b.bind(args[0])?)?;
            (one(func, call.filtered(x)), DataType::Float64)
        }
        "covar_samp" | "covar_pop" | "corr" | "regr_slope" | "regr_intercept" | "regr_r2" => {
            arity(2, "y, x")?;
            let func = match name {
                "covar_samp" => AggFunc::CovarSamp,
                "covar_pop" => AggFunc::CovarPop,
                "corr" => AggFunc::Corr,
                "regr_slope" => AggFunc::RegrSlope,
                "regr_intercept" => AggFunc::RegrIntercept,
                _ => AggFunc::RegrR2,
            };
            let y = call.double(b.bind(args[0])?)?;
            let x = call.double(b.bind(args[1])?)?;
            (two(func, call.filtered(y), x), DataType::Float64)
        }
        "median" => {
            arity(1, "x")?;
            let (x, t) = b.bind(args[0])?;
            match t {
                DataType::Int32 | DataType::Int64 | DataType::Float64 | DataType::Null => {
                    let x = cast_if_needed(x, &t, &DataType::Float64);
                    let func = AggFunc::QuantileCont {
                        q_bits: 0.5f64.to_bits(),
                    };
                    (one(func, call.filtered(x)), DataType::Float64)
                }
                // DuckDB's median of values it cannot interpolate: the lower middle one.
                DataType::Utf8 | DataType::Boolean => {
                    let func = AggFunc::QuantileDisc { num: 1, den: 2 };
                    (one(func, call.filtered(x)), t)
                }
                other => return Err(not_interpolated(call, &other)),
            }
        }
        "quantile_cont" | "quantile_disc" | "quantile" => {
            arity(2, "x, q")?;
            let (num, den) = fraction(args[1]).ok_or_else(|| match args[1] {
                ast::Expr::Array(_) => SchedulerError::unsupported(format!(
                    "{name}(x, [q, …]) with a list of quantiles (Keel has no LIST type yet); call {name}(x, q) once per quantile, in {f}"
                )),
                _ => call.error(&format!(
                    "{name}(x, q): q is a constant from -1 to 1 (negative for descending order)"
                )),
            })?;
            let (x, t) = b.bind(args[0])?;
            if name == "quantile_cont" {
                if !matches!(
                    t,
                    DataType::Int32 | DataType::Int64 | DataType::Float64 | DataType::Null
                ) {
                    return Err(not_interpolated(call, &t));
                }
                let q = num as f64 / den as f64;
                let x = cast_if_needed(x, &t, &DataType::Float64);
                let func = AggFunc::QuantileCont {
                    q_bits: q.to_bits(),
                };
                (one(func, call.filtered(x)), DataType::Float64)
            } else {
                let func = AggFunc::QuantileDisc { num, den };
                (one(func, call.filtered(x)), t)
            }
        }
        "mode" => {
            arity(1, "x")?;
            let (x, t) = b.bind(args[0])?;
            (one(AggFunc::Mode, call.filtered(x)), t)
        }
        "string_agg" | "listagg" | "group_concat" => {
            if args.is_empty() || args.len() > 2 {
                return Err(call.error(&format!("{name}(s [, separator]) takes 1 or 2 arguments")));
            }
            let separator = match args.get(1) {
                None => ",".to_string(),
                Some(ast::Expr::Value(v)) => match &v.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    _ => {
                        return Err(
                            call.error(&format!("{name}(): the separator is a constant string"))
                        )
                    }
                },
                Some(_) => {
                    return Err(call.error(&format!("{name}(): the separator is a constant string")))
                }
            };
            let (s, t) = b.bind(args[0])?;
            if t == DataType::Binary {
                return Err(call.error(&format!("{name}() of BLOB values is not supported")));
            }
            let s = cast_if_needed(s, &t, &DataType::Utf8);
            let mut keys = vec![];
            for o in order {
                let (expr, _) = b.bind(&o.expr)?;
                keys.push(SortKey {
                    expr,
                    descending: matches!(o.options.sort, Some(ast::OrderBySort::Desc)),
                    nulls_first: o.options.nulls_first.unwrap_or(false),
                });
            }
            let core = uncast(&s);
            if call.distinct && keys.iter().any(|k| uncast(&k.expr) != core) {
                return Err(call.error(
                    "in a DISTINCT aggregate, ORDER BY expressions must appear in the argument list",
                ));
            }
            let agg = AggExpr {
                order_by: keys,
                separator: Some(separator),
                ..one(AggFunc::StringAgg, call.filtered(s))
            };
            (agg, DataType::Utf8)
        }
        "arg_min" | "min_by" | "argmin" | "arg_max" | "max_by" | "argmax" => {
            arity(2, "arg, val")?;
            let func = if matches!(name, "arg_min" | "min_by" | "argmin") {
                AggFunc::ArgMin
            } else {
                AggFunc::ArgMax
            };
            let (a, t) = b.bind(args[0])?;
            let (key, _) = b.bind(args[1])?;
            (two(func, call.filtered(a), key), t)
        }
        "bool_and" | "bool_or" => {
            arity(1, "x")?;
            let func = if name == "bool_and" {
                AggFunc::BoolAnd
            } else {
                AggFunc::BoolOr
            };
            let x = call.boolean(b.bind(args[0])?)?;
            (one(func, call.filtered(x)), DataType::Boolean)
        }
        "count_if" | "countif" => {
            // DuckDB sums the conditions: NULLs are skipped, and a group
            // (or an input) with none but NULLs gives NULL, not 0.
            arity(1, "condition")?;
            let c = call.boolean(b.bind(args[0])?)?;
            let one_or_zero = call.filtered(c).cast(DataType::Int64);
            (one(AggFunc::Sum, one_or_zero), DataType::Int64)
        }
        "product" => {
            arity(1, "x")?;
            let x = call.double(b.bind(args[0])?)?;
            (one(AggFunc::Product, call.filtered(x)), DataType::Float64)
        }
        other => unreachable!("{other} is not in NAMES"),
    })
}

fn not_interpolated(call: &Call, t: &DataType) -> SchedulerError {
    SchedulerError::unsupported(format!(
        "{}() of {} (DuckDB interpolates in that type); cast the argument to DOUBLE or use quantile_disc, in {}",
        call.name,
        sql_name(t),
        call.f
    ))
}

fn uncast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast { expr, .. } => uncast(expr),
        other => other,
    }
}

/// A constant fraction from -1 to 1 as `num / den`, exactly when written
/// as a decimal (DuckDB reads `0.3` as the DECIMAL 0.3, not a double).
fn fraction(e: &ast::Expr) -> Option<(i64, u64)> {
    let (num, den) = match e {
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => fraction(expr).map(|(n, d)| (-n, d))?,
        ast::Expr::Nested(inner) => fraction(inner)?,
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(text, _) => decimal_text(text).or_else(|| {
                numeric_constant(e).map(|q| ((q * 1e15).round() as i64, 1_000_000_000_000_000))
            })?,
            _ => return None,
        },
        // A constant expression such as 1/3 or 0.5::DOUBLE.
        _ => return None,
    };
    (num.unsigned_abs() <= den).then_some((num, den))
}

/// `0.25` as (25, 100); None for exponents or more than 18 digits.
fn decimal_text(text: &str) -> Option<(i64, u64)> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 17 || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let den = 10u64.pow(frac.len() as u32);
    let int: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    Some((int.checked_mul(den as i64)?.checked_add(frac)?, den))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_exact() {
        assert_eq!(decimal_text("0.3"), Some((3, 10)));
        assert_eq!(decimal_text(".25"), Some((25, 100)));
        assert_eq!(decimal_text("1"), Some((1, 1)));
        assert_eq!(decimal_text("1e-1"), None);
    }
}
