//! Binds SQL expressions to physical expressions over a scope.
//!
//! In aggregate mode ([`AggContext`]) the result refers to the aggregate's
//! output: group-by expressions become their group column, aggregate calls
//! are collected and become their aggregate column, and a bare column that
//! is neither is an error.

use arrow::datatypes::DataType;
use keel_proto::expr::{BinaryOp, Expr, Func, ScalarValue};
use sqlparser::ast::{self, BinaryOperator, UnaryOperator};

use super::aggregates::{contains_aggregate, is_aggregate_call, AggContext, AGGREGATES};
use super::functions;
use super::literals::{literal, negate};
use super::scope::Scope;
pub use super::subquery::SubqueryColumn;
use super::types::{
    self, binary, cast_if_needed, common_type, from_sql, sql_name, temporal_literal,
};
use super::walk::{function_args, function_name};
use crate::error::{Result, SchedulerError};

pub type Typed = (Expr, DataType);

pub struct ExprBinder<'a> {
    pub scope: &'a Scope,
    pub agg: Option<&'a mut AggContext>,
    /// Window calls computed below this expression, and their columns.
    pub windows: &'a [WindowColumn],
    /// Subqueries whose values were joined onto the input, and their columns.
    pub subqueries: &'a [SubqueryColumn],
}

/// A window function call a Window node computes, by its SQL text.
#[derive(Debug, Clone)]
pub struct WindowColumn {
    pub call: String,
    pub column: usize,
    pub data_type: DataType,
}

impl<'a> ExprBinder<'a> {
    pub fn new(scope: &'a Scope) -> Self {
        ExprBinder {
            scope,
            agg: None,
            windows: &[],
            subqueries: &[],
        }
    }

    pub fn with_windows(scope: &'a Scope, windows: &'a [WindowColumn]) -> Self {
        ExprBinder {
            scope,
            agg: None,
            windows,
            subqueries: &[],
        }
    }

    pub fn with_aggregates(scope: &'a Scope, agg: &'a mut AggContext) -> Self {
        ExprBinder {
            scope,
            agg: Some(agg),
            windows: &[],
            subqueries: &[],
        }
    }

    /// The same binder, reading these subqueries' values from their columns.
    pub fn with_subqueries(mut self, subqueries: &'a [SubqueryColumn]) -> Self {
        self.subqueries = subqueries;
        self
    }

    pub fn bind(&mut self, e: &ast::Expr) -> Result<Typed> {
        if super::subquery::is_subquery(e) {
            let text = e.to_string();
            return match self.subqueries.iter().find(|s| s.text == text) {
                Some(s) => Ok((Expr::Column(s.column), s.data_type.clone())),
                None => Err(SchedulerError::unsupported(format!(
                    "a subquery in this place: {e}; Keel runs subqueries in WHERE, in the SELECT list and in HAVING"
                ))),
            };
        }
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
                        // Constants, and an enclosing query's columns, are
                        // the same for every row of a group.
                        if cols.iter().all(|&c| super::scope::as_outer(c).is_some()) {
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

    fn bind_structure(&mut self, e: &ast::Expr) -> Result<Typed> {
        use ast::Expr as E;
        Ok(match e {
            E::Identifier(id) => {
                let (i, t) = self.scope.resolve_any(None, &id.value)?;
                (Expr::Column(i), t)
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
                let (i, t) = self.scope.resolve_any(Some(&q.value), &n.value)?;
                (Expr::Column(i), t)
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
                let (l, lt) = types::narrow_literal(l, lt, &rt);
                let (r, rt) = types::narrow_literal(r, rt, &lt);
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
                let mut bound = vec![];
                // Compared in the type every item and the value fit, as DuckDB
                // does (`int_col IN (9223372036854775807)` compares as BIGINT).
                let mut t = xt.clone();
                for item in list {
                    let (v, vt) = self.bind(item)?;
                    // Check comparability item by item so the error names the item.
                    binary(BinaryOp::Eq, x.clone(), &xt, v.clone(), &vt, &e.to_string())?;
                    t = common_type(&t, &vt, false, false).unwrap_or(t);
                    bound.push((v, vt));
                }
                let items = bound
                    .into_iter()
                    .map(|(v, vt)| cast_if_needed(v, &vt, &t))
                    .collect();
                let x = cast_if_needed(x, &xt, &t);
                (
                    Expr::InList {
                        expr: Box::new(x),
                        list: items,
                        negated: *negated,
                    },
                    DataType::Boolean,
                )
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
        // DuckDB's LIKE has no escape character unless ESCAPE names one;
        // Arrow's kernels take `\` as one, so a backslash is escaped to stay literal.
        let pattern = pattern.replace('\\', "\\\\");
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
