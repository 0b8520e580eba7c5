//! LATERAL: a FROM item that reads the items before it, decorrelated like
//! a subquery in an expression.

use arrow::datatypes::{DataType, Field};
use keel_proto::expr::{Expr, ScalarValue};
use keel_proto::plan::JoinType;
use sqlparser::ast;

use super::build::{case, field, is_null, is_null_literal, lit, over_no_rows, project};
use super::{correlation, pull_up};
use crate::error::{Result, SchedulerError};
use crate::logical::LogicalPlan;
use crate::sql::decorrelate::and_all;
use crate::sql::expr::ExprBinder;
use crate::sql::scope::Scope;
use crate::sql::types::sql_name;
use crate::sql::Binder;

impl Binder<'_> {
    /// `left, LATERAL (subquery)` and `left [LEFT] JOIN LATERAL (subquery)
    /// ON cond`: the subquery bound with `left`'s scope as its outer scope,
    /// decorrelated, and joined on what related it (`on`, over left's then
    /// the subquery's columns, joins that condition). A LEFT lateral join
    /// keeps the left rows the subquery has no row for; one over a global
    /// aggregate has a row for every left row (its value over no rows).
    pub(in crate::sql) fn lateral_join(
        &mut self,
        left: (LogicalPlan, Scope),
        subquery: &ast::Query,
        alias: Option<&ast::TableAlias>,
        keep_left: bool,
        on: Option<&ast::Expr>,
    ) -> Result<(LogicalPlan, Scope)> {
        let (plan, scope) = left;
        let width = plan.schema().fields().len();
        let (bound, sub_scope) = self.bind_subquery(subquery, &scope)?;
        let sub_scope = match alias {
            Some(a) => crate::sql::from::apply_column_aliases(
                sub_scope.with_qualifier(&a.name.value),
                Some(a),
            )?,
            None => sub_scope,
        };
        let n = sub_scope.columns.len();
        let empty: Vec<Option<Expr>> = (0..n).map(|c| over_no_rows(&bound, c)).collect();
        let d = pull_up(bound, Some(&plan))?;
        let c = correlation(&d, width);
        let combined = scope.clone().join(sub_scope.clone());
        let mut filters: Vec<Expr> = c.residual.into_iter().collect();
        let on = match on {
            Some(on) => {
                let (f, t) = ExprBinder::new(&combined).bind(on)?;
                if !matches!(t, DataType::Boolean | DataType::Null) {
                    return Err(SchedulerError::bind(format!(
                        "JOIN condition must be BOOLEAN, got {} in {on}",
                        sql_name(&t)
                    )));
                }
                Some(f)
            }
            None => None,
        };
        // Over no rows a global aggregate still gives its row: every left
        // row gets one, so the join keeps them all and fills in those
        // values; the ON condition then applies to the filled row.
        let fill = d.grouped_global;
        if !fill {
            filters.extend(on.clone());
        }
        let sub_width = d.plan.schema().fields().len();
        let right = if fill {
            let schema = d.plan.schema();
            let mut exprs: Vec<(Expr, Field)> = (0..sub_width)
                .map(|i| (Expr::Column(i), schema.field(i).clone()))
                .collect();
            exprs.push((
                lit(ScalarValue::Boolean(true)),
                field("matched", &DataType::Boolean),
            ));
            project(d.plan, exprs)
        } else {
            d.plan
        };
        let joined = LogicalPlan::Join {
            left: Box::new(plan),
            right: Box::new(right),
            join_type: if keep_left || fill {
                JoinType::Left
            } else {
                JoinType::Inner
            },
            left_keys: c.outer_keys,
            right_keys: c.inner_keys,
            filter: and_all(filters),
        };
        let schema = joined.schema();
        let mut exprs: Vec<(Expr, Field)> = (0..width)
            .map(|i| (Expr::Column(i), schema.field(i).clone()))
            .collect();
        for (i, e) in empty.into_iter().enumerate() {
            let value = Expr::Column(width + i);
            let value = match e {
                Some(e) if fill && !is_null_literal(&e) => case(
                    vec![(is_null(Expr::Column(width + sub_width)), e)],
                    Some(value),
                ),
                _ => value,
            };
            exprs.push((value, schema.field(width + i).clone()));
        }
        let mut out = project(joined, exprs);
        if let (true, Some(on)) = (fill, on) {
            out = if keep_left {
                // The left row stays; the subquery's row only where ON holds.
                let schema = out.schema();
                let mut exprs: Vec<(Expr, Field)> = (0..width)
                    .map(|i| (Expr::Column(i), schema.field(i).clone()))
                    .collect();
                for i in width..schema.fields().len() {
                    let f = schema.field(i).clone();
                    exprs.push((case(vec![(on.clone(), Expr::Column(i))], None), f));
                }
                project(out, exprs)
            } else {
                LogicalPlan::Filter {
                    input: Box::new(out),
                    predicate: on,
                }
            };
        }
        Ok((out, combined))
    }
}
