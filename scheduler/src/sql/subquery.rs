//! Subqueries in expressions, unnested into joins at bind time.
//!
//! Each subquery of a clause is bound with the clause's scope as its outer
//! scope, decorrelated ([`super::decorrelate`]), and joined onto the
//! clause's input once, adding a column the clause's expression reads in
//! its place ([`SubqueryColumn`], matched by the subquery's text):
//! - a scalar subquery: a LEFT join on the correlation keys with the
//!   subquery grouped by them; its value, or what it gives over no rows
//!   (`count(*)` is 0, not NULL) where no key matched. One that may give
//!   several rows per key is counted, and more than one is an error naming
//!   it (`single_value`);
//! - `EXISTS`: a LEFT join with the subquery's distinct keys, true where
//!   one matched;
//! - `x IN (…)`, `x op ANY/ALL (…)`: a LEFT join with the distinct (keys,
//!   value) pairs, and one with per-key counts (and min and max for
//!   ANY/ALL), from which SQL's three-valued answer follows: NULL when x is
//!   NULL or the subquery holds a NULL and nothing decided otherwise.
//!
//! In WHERE, a conjunct that is a whole `[NOT] EXISTS` or `[NOT] IN` is a
//! filtering join instead ([`Binder::filter_by_subquery`]): semi, anti
//! (NOT EXISTS) or null-aware anti (NOT IN) on the correlation keys, with
//! any other correlated conjuncts as the join's condition.

use arrow::datatypes::{DataType, Field};
use keel_proto::expr::{BinaryOp, Expr, ScalarValue};
use keel_proto::plan::{AggFunc, JoinType};
use sqlparser::ast::{self, BinaryOperator};

use super::decorrelate::{and_all, correlated_equality, pull_up, Decorrelated};
use super::expr::ExprBinder;
use super::scope::{as_outer, outer_column, Scope};
use super::types::{cast_if_needed, common_type, sql_name};
use super::walk::visit_exprs;
use super::Binder;
use crate::error::{Result, SchedulerError};
use crate::logical::LogicalPlan;

mod build;
mod lateral;

use build::{
    agg, at_most_one_row, case, checked_single, e_type, field, group, is_null, is_null_literal,
    keep_with, key_type, left_join, lit, null_of, or, over_no_rows, project,
};

/// A subquery whose value a join added to the input, by its SQL text.
#[derive(Debug, Clone)]
pub struct SubqueryColumn {
    pub text: String,
    pub column: usize,
    pub data_type: DataType,
}

/// Whether `e` is a subquery expression (bound from a joined column).
pub fn is_subquery(e: &ast::Expr) -> bool {
    use ast::Expr as E;
    match e {
        E::Subquery(_) | E::Exists { .. } | E::InSubquery { .. } => true,
        E::AnyOp { right, .. } | E::AllOp { right, .. } => matches!(right.as_ref(), E::Subquery(_)),
        _ => false,
    }
}

/// The subquery expressions in `exprs`, outermost, once each.
pub fn find_subqueries<'e>(exprs: &[&'e ast::Expr]) -> Vec<&'e ast::Expr> {
    let mut out: Vec<&ast::Expr> = vec![];
    for e in exprs {
        visit_exprs(e, &mut |x| {
            if is_subquery(x) {
                if !out.iter().any(|o| o.to_string() == x.to_string()) {
                    out.push(x);
                }
                return false;
            }
            true
        });
    }
    out
}

/// The correlation of a decorrelated subquery with the plan it joins:
/// equalities as keys, the rest as a condition over (plan, subquery).
struct Correlation {
    /// Over the outer plan's columns.
    outer_keys: Vec<Expr>,
    /// Over the subquery's columns.
    inner_keys: Vec<Expr>,
    /// Over the outer plan's columns, then the subquery's.
    residual: Option<Expr>,
}

/// A correlated reference one level out reads the outer plan's column;
/// from further out it stays correlated, one level nearer.
fn to_outer_plan(e: &Expr, inner_offset: usize) -> Expr {
    e.remap_columns(&|c| match as_outer(c) {
        Some((1, i)) => i,
        Some((d, i)) => outer_column(d - 1, i),
        None => c + inner_offset,
    })
}

fn correlation(d: &Decorrelated, outer_width: usize) -> Correlation {
    let mut c = Correlation {
        outer_keys: vec![],
        inner_keys: vec![],
        residual: None,
    };
    let mut rest = vec![];
    let schema = d.plan.schema();
    for p in &d.predicates {
        match correlated_equality(p) {
            Some((inner, outer)) if !reads_far_outer(&outer) => {
                let outer = to_outer_plan(&outer, 0);
                let null_safe = matches!(
                    p,
                    Expr::Binary {
                        op: BinaryOp::IsNotDistinctFrom,
                        ..
                    }
                );
                match inner.data_type(&schema) {
                    // Hash keys never match NULLs: a NULL-safe pair is (is NULL, value or a filler).
                    Ok(t) if null_safe => {
                        let (on, ov) = super::from::null_safe_key(outer, &t);
                        let (inn, iv) = super::from::null_safe_key(inner, &t);
                        c.outer_keys.extend([on, ov]);
                        c.inner_keys.extend([inn, iv]);
                    }
                    _ => {
                        c.outer_keys.push(outer);
                        c.inner_keys.push(inner);
                    }
                }
            }
            _ => rest.push(to_outer_plan(p, outer_width)),
        }
    }
    c.residual = and_all(rest);
    c
}

fn reads_far_outer(e: &Expr) -> bool {
    let mut cols = vec![];
    e.columns(&mut cols);
    cols.iter()
        .any(|&c| matches!(as_outer(c), Some((d, _)) if d > 1))
}

impl Binder<'_> {
    /// Binds a subquery with `scope` as the scope its names may reach out to.
    fn bind_subquery(&mut self, q: &ast::Query, scope: &Scope) -> Result<(LogicalPlan, Scope)> {
        let mut s = scope.clone();
        s.outer.clear();
        self.outer.push(s);
        let bound = self.bind_query(q);
        self.outer.pop();
        bound
    }

    /// Joins each subquery of `exprs` onto `plan` (whose first columns are
    /// `scope`'s), returning the plan with one column more per subquery.
    pub(super) fn attach_subqueries(
        &mut self,
        mut plan: LogicalPlan,
        scope: &Scope,
        exprs: &[&ast::Expr],
    ) -> Result<(LogicalPlan, Vec<SubqueryColumn>)> {
        let mut columns: Vec<SubqueryColumn> = vec![];
        for sub in find_subqueries(exprs) {
            let width = plan.schema().fields().len();
            let (joined, t) = self.attach_one(plan, scope, sub, &columns)?;
            plan = joined;
            columns.push(SubqueryColumn {
                text: sub.to_string(),
                column: width,
                data_type: t,
            });
        }
        Ok((plan, columns))
    }

    /// `plan` with `sub`'s value as one more column, and its type.
    fn attach_one(
        &mut self,
        plan: LogicalPlan,
        scope: &Scope,
        sub: &ast::Expr,
        earlier: &[SubqueryColumn],
    ) -> Result<(LogicalPlan, DataType)> {
        use ast::Expr as E;
        let text = sub.to_string();
        match sub {
            E::Subquery(q) => self.attach_scalar(plan, scope, q, &text),
            E::Exists { subquery, negated } => {
                self.attach_exists(plan, scope, subquery, *negated, &text)
            }
            E::InSubquery {
                expr,
                subquery,
                negated,
            } => {
                let op = if *negated {
                    Quantified::NotIn
                } else {
                    Quantified::In
                };
                self.attach_quantified(plan, scope, expr, subquery, op, &text, earlier)
            }
            E::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | E::AllOp {
                left,
                compare_op,
                right,
            } => {
                let E::Subquery(q) = right.as_ref() else {
                    unreachable!("is_subquery")
                };
                let all = matches!(sub, E::AllOp { .. });
                // `= ANY` is IN and `<> ALL` NOT IN, NULLs and all.
                let op = match (compare_op, all) {
                    (BinaryOperator::Eq, false) => Quantified::In,
                    (BinaryOperator::NotEq, true) => Quantified::NotIn,
                    (other, false) => Quantified::Any(comparison(other, &text)?),
                    (other, true) => Quantified::All(comparison(other, &text)?),
                };
                self.attach_quantified(plan, scope, left, q, op, &text, earlier)
            }
            _ => unreachable!("is_subquery"),
        }
    }

    fn attach_scalar(
        &mut self,
        plan: LogicalPlan,
        scope: &Scope,
        q: &ast::Query,
        text: &str,
    ) -> Result<(LogicalPlan, DataType)> {
        let (bound, sub_scope) = self.bind_subquery(q, scope)?;
        if sub_scope.columns.len() != 1 {
            return Err(SchedulerError::bind(format!(
                "a scalar subquery must return one column, {text} returns {}",
                sub_scope.columns.len()
            )));
        }
        let t = sub_scope.columns[0].data_type.clone();
        let width = plan.schema().fields().len();
        let empty = over_no_rows(&bound, 0);
        let d = pull_up(bound, Some(&plan))?;
        let c = correlation(&d, width);
        if c.residual.is_some() {
            return Err(SchedulerError::unsupported(format!(
                "a correlated scalar subquery whose correlation is not an equality between its columns and the enclosing query's: {text}"
            )));
        }
        let joined = if c.outer_keys.is_empty() {
            let single = if at_most_one_row(&d.plan) {
                project(d.plan, vec![(Expr::Column(0), field("value", &t))])
            } else {
                checked_single(d.plan, &[], &t, text)?
            };
            let joined = left_join(plan, single, &[]);
            keep_with(joined, width, Expr::Column(width), &t)
        } else if d.grouped_global {
            // Grouped by the keys: one row per key. A key no outer row
            // found gets what the subquery gives over no rows.
            let k = c.inner_keys.len();
            let mut exprs: Vec<(Expr, Field)> = c
                .inner_keys
                .iter()
                .enumerate()
                .map(|(i, e)| (e.clone(), field(&format!("key{i}"), &key_type(&d.plan, e))))
                .collect();
            exprs.push((Expr::Column(0), field("value", &t)));
            exprs.push((
                lit(ScalarValue::Boolean(true)),
                field("matched", &DataType::Boolean),
            ));
            let right = project(d.plan, exprs);
            let joined = left_join(plan, right, &c.outer_keys);
            let value = Expr::Column(width + k);
            let value = match empty {
                None => value,
                Some(e) if is_null_literal(&e) => value,
                Some(e) => case(
                    vec![(
                        is_null(Expr::Column(width + k + 1)),
                        cast_if_needed(e.clone(), &e_type(&e, &t), &t),
                    )],
                    Some(value),
                ),
            };
            keep_with(joined, width, value, &t)
        } else {
            let k = c.inner_keys.len();
            let checked = checked_single(d.plan, &c.inner_keys, &t, text)?;
            let joined = left_join(plan, checked, &c.outer_keys);
            keep_with(joined, width, Expr::Column(width + k), &t)
        };
        Ok((joined, t))
    }

    /// `plan` with a column that is true where `subquery` has rows for
    /// the row (false with `negated`).
    fn attach_exists(
        &mut self,
        plan: LogicalPlan,
        scope: &Scope,
        subquery: &ast::Query,
        negated: bool,
        text: &str,
    ) -> Result<(LogicalPlan, DataType)> {
        let (bound, _) = self.bind_subquery(subquery, scope)?;
        let width = plan.schema().fields().len();
        let d = pull_up(bound, Some(&plan))?;
        let c = correlation(&d, width);
        if c.residual.is_some() {
            return Err(SchedulerError::unsupported(format!(
                "EXISTS whose correlation is not an equality, used as a value (under OR, NOT or in the SELECT list): {text}; as a condition of WHERE it runs"
            )));
        }
        let k = c.outer_keys.len();
        let (joined, found) = if k == 0 {
            // Uncorrelated: one row counting the subquery's.
            let rows = group(
                d.plan,
                &[],
                vec![(
                    agg(AggFunc::CountStar, None),
                    field("rows", &DataType::Int64),
                )],
            )?;
            let found = Expr::binary(
                BinaryOp::Gt,
                Expr::Column(width),
                lit(ScalarValue::Int64(0)),
            );
            (left_join(plan, rows, &[]), found)
        } else {
            let keys = group(d.plan, &c.inner_keys, vec![])?;
            let schema = keys.schema();
            let mut exprs: Vec<(Expr, Field)> = (0..k)
                .map(|i| (Expr::Column(i), schema.field(i).clone()))
                .collect();
            exprs.push((
                lit(ScalarValue::Boolean(true)),
                field("matched", &DataType::Boolean),
            ));
            let found = Expr::IsNotNull(Box::new(Expr::Column(width + k)));
            (left_join(plan, project(keys, exprs), &c.outer_keys), found)
        };
        let value = if negated {
            Expr::Not(Box::new(found))
        } else {
            found
        };
        Ok((
            keep_with(joined, width, value, &DataType::Boolean),
            DataType::Boolean,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn attach_quantified(
        &mut self,
        plan: LogicalPlan,
        scope: &Scope,
        left: &ast::Expr,
        subquery: &ast::Query,
        op: Quantified,
        text: &str,
        earlier: &[SubqueryColumn],
    ) -> Result<(LogicalPlan, DataType)> {
        if matches!(left, ast::Expr::Tuple(_)) {
            return Err(SchedulerError::unsupported(format!(
                "a row value compared with a subquery as a value: {text}; as a WHERE condition, (a, b) IN (SELECT x, y …) runs"
            )));
        }
        let (x, xt) = ExprBinder::new(scope).with_subqueries(earlier).bind(left)?;
        let (bound, sub_scope) = self.bind_subquery(subquery, scope)?;
        if sub_scope.columns.len() != 1 {
            return Err(SchedulerError::bind(format!(
                "the subquery of {text} must return one column, it returns {}",
                sub_scope.columns.len()
            )));
        }
        let st = sub_scope.columns[0].data_type.clone();
        let t = compared_type(&xt, &st, text)?;
        let x = cast_if_needed(x, &xt, &t);
        let q = cast_if_needed(Expr::Column(0), &st, &t);
        let width = plan.schema().fields().len();
        let d = pull_up(bound, Some(&plan))?;
        let c = correlation(&d, width);
        if c.residual.is_some() {
            return Err(SchedulerError::unsupported(format!(
                "{text} whose correlation is not an equality, used as a value (under OR, NOT or in the SELECT list); as a condition of WHERE IN and EXISTS run"
            )));
        }
        let k = c.outer_keys.len();
        let sub = d.plan;
        // Per key: rows, non-NULL values, and for ANY/ALL the extremes.
        let mut stats = vec![
            (
                agg(AggFunc::CountStar, None),
                field("rows", &DataType::Int64),
            ),
            (
                agg(AggFunc::Count, Some(q.clone())),
                field("values", &DataType::Int64),
            ),
        ];
        if matches!(op, Quantified::Any(_) | Quantified::All(_)) {
            stats.push((agg(AggFunc::Min, Some(q.clone())), field("min", &t)));
            stats.push((agg(AggFunc::Max, Some(q.clone())), field("max", &t)));
        }
        let n_stats = stats.len();
        let stats = group(sub.clone(), &c.inner_keys, stats)?;
        let mut plan = left_join(plan, stats, &c.outer_keys);
        let rows = Expr::Column(width + k);
        let values = Expr::Column(width + k + 1);
        let after_stats = width + k + n_stats;
        let none = or(
            is_null(rows.clone()),
            Expr::binary(BinaryOp::Eq, rows.clone(), lit(ScalarValue::Int64(0))),
        );
        let some_null = Expr::binary(BinaryOp::Lt, values, rows);
        let t_bool = DataType::Boolean;
        let (yes, no, null) = (
            lit(ScalarValue::Boolean(true)),
            lit(ScalarValue::Boolean(false)),
            null_of(&t_bool),
        );
        let value = match op {
            Quantified::In | Quantified::NotIn => {
                // Whether x is among the key's values.
                let mut keys = c.inner_keys.clone();
                keys.push(q);
                let distinct = group(sub, &keys, vec![])?;
                let mut exprs: Vec<(Expr, Field)> = (0..=k)
                    .map(|i| (Expr::Column(i), distinct.schema().field(i).clone()))
                    .collect();
                exprs.push((yes.clone(), field("matched", &t_bool)));
                let mut outer_keys = c.outer_keys.clone();
                outer_keys.push(x.clone());
                plan = left_join(plan, project(distinct, exprs), &outer_keys);
                let matched = Expr::IsNotNull(Box::new(Expr::Column(after_stats + k + 1)));
                let value = case(
                    vec![
                        (matched, yes),
                        (none, no.clone()),
                        (or(is_null(x.clone()), some_null), null),
                    ],
                    Some(no),
                );
                if matches!(op, Quantified::NotIn) {
                    Expr::Not(Box::new(value))
                } else {
                    value
                }
            }
            Quantified::Any(cmp) | Quantified::All(cmp) => {
                let (min, max) = (Expr::Column(width + k + 2), Expr::Column(width + k + 3));
                let all = matches!(op, Quantified::All(_));
                let test = match (cmp, all) {
                    (BinaryOp::Lt | BinaryOp::LtEq, false)
                    | (BinaryOp::Gt | BinaryOp::GtEq, true) => Expr::binary(cmp, x.clone(), max),
                    (BinaryOp::Lt | BinaryOp::LtEq, true)
                    | (BinaryOp::Gt | BinaryOp::GtEq, false) => Expr::binary(cmp, x.clone(), min),
                    // x <> ANY: some value differs; x = ALL: none does.
                    (BinaryOp::NotEq, false) => or(
                        Expr::binary(BinaryOp::NotEq, x.clone(), min),
                        Expr::binary(BinaryOp::NotEq, x.clone(), max),
                    ),
                    (BinaryOp::Eq, true) => Expr::binary(
                        BinaryOp::And,
                        Expr::binary(BinaryOp::Eq, x.clone(), min),
                        Expr::binary(BinaryOp::Eq, x.clone(), max),
                    ),
                    _ => unreachable!("= ANY is IN, <> ALL is NOT IN"),
                };
                if all {
                    case(
                        vec![
                            (none, yes.clone()),
                            (is_null(x.clone()), null.clone()),
                            (Expr::Not(Box::new(test)), no),
                            (some_null, null),
                        ],
                        Some(yes),
                    )
                } else {
                    case(
                        vec![
                            (none, no.clone()),
                            (is_null(x.clone()), null.clone()),
                            (test, yes),
                            (some_null, null),
                        ],
                        Some(no),
                    )
                }
            }
        };
        Ok((keep_with(plan, width, value, &t_bool), t_bool))
    }

    /// A WHERE conjunct that is a whole `[NOT] EXISTS (…)` or `x [NOT] IN
    /// (…)`, as a filtering join of `plan`; None for any other conjunct.
    pub(super) fn filter_by_subquery(
        &mut self,
        plan: LogicalPlan,
        scope: &Scope,
        conjunct: &ast::Expr,
    ) -> Result<std::result::Result<LogicalPlan, LogicalPlan>> {
        use ast::Expr as E;
        let (subquery, negated, left) = match conjunct {
            E::Exists { subquery, negated } => (subquery, *negated, None),
            E::InSubquery {
                expr,
                subquery,
                negated,
            } => (subquery, *negated, Some(expr)),
            _ => return Ok(Err(plan)),
        };
        let text = conjunct.to_string();
        let (bound, sub_scope) = self.bind_subquery(subquery, scope)?;
        let width = plan.schema().fields().len();
        let mut left_keys = vec![];
        let mut right_keys = vec![];
        if let Some(x) = left {
            // `(a, b) IN (SELECT x, y …)`: a key per column.
            let values: Vec<&ast::Expr> = match x.as_ref() {
                E::Tuple(items) if negated => {
                    return Err(SchedulerError::unsupported(format!(
                        "a row value with NOT IN: {text}; write NOT EXISTS with the equalities"
                    )))
                }
                E::Tuple(items) => items.iter().collect(),
                other => vec![other],
            };
            if sub_scope.columns.len() != values.len() {
                return Err(SchedulerError::bind(format!(
                    "IN (subquery) compares {} value(s) with a subquery of {} column(s) in {text}",
                    values.len(),
                    sub_scope.columns.len()
                )));
            }
            for (i, v) in values.into_iter().enumerate() {
                let (x, xt) = ExprBinder::new(scope).bind(v)?;
                let st = sub_scope.columns[i].data_type.clone();
                let t = compared_type(&xt, &st, &text)?;
                left_keys.push(cast_if_needed(x, &xt, &t));
                right_keys.push(cast_if_needed(Expr::Column(i), &st, &t));
            }
        }
        let d = pull_up(bound, Some(&plan))?;
        let c = correlation(&d, width);
        let correlated = !c.outer_keys.is_empty() || c.residual.is_some();
        let join_type = match (left.is_some(), negated) {
            (_, false) => JoinType::Semi,
            (false, true) => JoinType::NotExists,
            // Uncorrelated NOT IN: the null-aware anti join.
            (true, true) if !correlated => JoinType::Anti,
            // Correlated NOT IN is null-aware per key: as a value.
            (true, true) => return Ok(Err(plan)),
        };
        if left.is_none() && !correlated {
            // EXISTS of something uncorrelated holds for every row or none.
            return Ok(Err(plan));
        }
        left_keys.extend(c.outer_keys);
        right_keys.extend(c.inner_keys);
        Ok(Ok(LogicalPlan::Join {
            left: Box::new(plan),
            right: Box::new(d.plan),
            join_type,
            left_keys,
            right_keys,
            filter: c.residual,
        }))
    }
}

#[derive(Debug, Clone, Copy)]
enum Quantified {
    In,
    NotIn,
    Any(BinaryOp),
    All(BinaryOp),
}

/// The type a value and a subquery's column are compared in.
fn compared_type(xt: &DataType, st: &DataType, text: &str) -> Result<DataType> {
    common_type(xt, st, false, false).ok_or_else(|| {
        SchedulerError::bind(format!(
            "Cannot compare {} with {} in {text}",
            sql_name(xt),
            sql_name(st)
        ))
    })
}

fn comparison(op: &BinaryOperator, text: &str) -> Result<BinaryOp> {
    Ok(match op {
        BinaryOperator::Eq => BinaryOp::Eq,
        BinaryOperator::NotEq => BinaryOp::NotEq,
        BinaryOperator::Lt => BinaryOp::Lt,
        BinaryOperator::LtEq => BinaryOp::LtEq,
        BinaryOperator::Gt => BinaryOp::Gt,
        BinaryOperator::GtEq => BinaryOp::GtEq,
        other => {
            return Err(SchedulerError::bind(format!(
                "{other} cannot compare with ANY or ALL in {text}"
            )))
        }
    })
}
