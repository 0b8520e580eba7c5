//! Queries: WITH, set operations, ORDER BY and LIMIT over them (SELECT
//! itself is in [`super::select`]).

use std::collections::HashMap;

use arrow::datatypes::{DataType, Field, Schema};
use keel_proto::expr::{Expr, ScalarValue};
use keel_proto::plan::SortKey;
use sqlparser::ast::{self, LimitClause, OrderByKind, SetExpr};

use super::expr::ExprBinder;
use super::scope::{Scope, ScopeColumn};
use super::Binder;
use crate::error::{Result, SchedulerError};
use crate::logical::LogicalPlan;

pub(super) fn project_schema(names: &[String], types: &[DataType]) -> Schema {
    Schema::new(
        names
            .iter()
            .zip(types)
            .map(|(n, t)| Field::new(n, t.clone(), true))
            .collect::<Vec<_>>(),
    )
}

pub(super) fn output_scope(names: &[String], types: &[DataType]) -> Scope {
    Scope {
        columns: names
            .iter()
            .zip(types)
            .map(|(n, t)| ScopeColumn {
                qualifier: None,
                name: n.clone(),
                data_type: t.clone(),
                hidden: false,
            })
            .collect(),
        outer: vec![],
    }
}

impl Binder<'_> {
    pub fn bind_query(&mut self, q: &ast::Query) -> Result<(LogicalPlan, Scope)> {
        let pushed = q.with.is_some();
        if let Some(with) = &q.with {
            if with.recursive {
                return Err(SchedulerError::unsupported("WITH RECURSIVE"));
            }
            self.ctes.push(HashMap::new());
            for cte in &with.cte_tables {
                let (plan, mut scope) = self.bind_query(&cte.query)?;
                for (c, alias) in scope.columns.iter_mut().zip(&cte.alias.columns) {
                    c.name = alias.name.value.clone();
                }
                self.ctes
                    .last_mut()
                    .expect("pushed")
                    .insert(cte.alias.name.value.to_lowercase(), (plan, scope));
            }
        }
        let result = self.bind_query_body(q);
        if pushed {
            self.ctes.pop();
        }
        result
    }

    fn bind_query_body(&mut self, q: &ast::Query) -> Result<(LogicalPlan, Scope)> {
        if q.fetch.is_some() {
            return Err(SchedulerError::unsupported("FETCH; use LIMIT"));
        }
        if let Some(lock) = q.locks.first() {
            return Err(SchedulerError::unsupported(format!(
                "{lock}: Keel's tables are read-only files"
            )));
        }
        if q.for_clause.is_some() || q.settings.is_some() || q.format_clause.is_some() {
            return Err(SchedulerError::unsupported(format!("query clause in {q}")));
        }
        let order = match &q.order_by {
            Some(o) => match &o.kind {
                OrderByKind::Expressions(e) => e.as_slice(),
                OrderByKind::All(_) => return Err(SchedulerError::unsupported("ORDER BY ALL")),
            },
            None => &[],
        };
        let (skip, fetch) = limits(q.limit_clause.as_ref())?;
        match q.body.as_ref() {
            SetExpr::Select(s) => self.bind_select(s, order, skip, fetch),
            other => {
                let (plan, scope) = self.bind_set_expr(other)?;
                let mut plan = plan;
                if !order.is_empty() {
                    let mut keys = vec![];
                    for o in order {
                        let (expr, _) = match ordinal(&o.expr, scope.columns.len())? {
                            Some(i) => (Expr::Column(i), scope.columns[i].data_type.clone()),
                            None => ExprBinder::new(&scope).bind(&o.expr)?,
                        };
                        keys.push(sort_key(expr, o));
                    }
                    plan = LogicalPlan::Sort {
                        input: Box::new(plan),
                        keys,
                    };
                }
                if skip > 0 || fetch.is_some() {
                    plan = LogicalPlan::Limit {
                        input: Box::new(plan),
                        skip,
                        fetch,
                    };
                }
                Ok((plan, scope))
            }
        }
    }

    pub(super) fn bind_set_expr(&mut self, body: &SetExpr) -> Result<(LogicalPlan, Scope)> {
        match body {
            SetExpr::Select(s) => self.bind_select(s, &[], 0, None),
            SetExpr::Query(q) => self.bind_query(q),
            SetExpr::SetOperation {
                op,
                set_quantifier,
                left,
                right,
            } => self.bind_set_operation(op, set_quantifier, left, right),
            SetExpr::Values(_) => Err(SchedulerError::unsupported("VALUES lists")),
            other => Err(SchedulerError::unsupported(format!("{other}"))),
        }
    }
}

pub(super) fn distinct(plan: LogicalPlan, names: &[String], types: &[DataType]) -> LogicalPlan {
    LogicalPlan::Aggregate {
        input: Box::new(plan),
        group_by: (0..names.len()).map(Expr::Column).collect(),
        aggs: vec![],
        schema: project_schema(names, types),
    }
}

pub(super) fn sort_key(expr: Expr, o: &ast::OrderByExpr) -> SortKey {
    let descending = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
    // DuckDB's default puts NULLs last in either direction.
    let nulls_first = o.options.nulls_first.unwrap_or(false);
    SortKey {
        expr,
        descending,
        nulls_first,
    }
}

/// `ORDER BY 2` / `GROUP BY 1`: a 0-based output position.
pub(super) fn ordinal(e: &ast::Expr, n: usize) -> Result<Option<usize>> {
    if let ast::Expr::Value(v) = e {
        if let ast::Value::Number(s, _) = &v.value {
            let i: usize = s
                .parse()
                .map_err(|_| SchedulerError::bind(format!("invalid position {s}")))?;
            if i == 0 || i > n {
                return Err(SchedulerError::bind(format!(
                    "position {i} is not in the select list (1..{n})"
                )));
            }
            return Ok(Some(i - 1));
        }
    }
    Ok(None)
}

fn limits(l: Option<&LimitClause>) -> Result<(usize, Option<usize>)> {
    let count = |e: &ast::Expr, what: &str| -> Result<usize> {
        match super::literals::literal(match e {
            ast::Expr::Value(v) => &v.value,
            other => {
                return Err(SchedulerError::bind(format!(
                    "{what} must be a constant, got {other}"
                )))
            }
        })?
        .0
        {
            Expr::Literal(ScalarValue::Int64(n)) if n >= 0 => Ok(n as usize),
            other => Err(SchedulerError::bind(format!(
                "{what} must be a non-negative integer, got {other}"
            ))),
        }
    };
    Ok(match l {
        None => (0, None),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err(SchedulerError::unsupported("LIMIT BY"));
            }
            let fetch = limit.as_ref().map(|e| count(e, "LIMIT")).transpose()?;
            let skip = offset
                .as_ref()
                .map(|o| count(&o.value, "OFFSET"))
                .transpose()?
                .unwrap_or(0);
            (skip, fetch)
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            (count(offset, "OFFSET")?, Some(count(limit, "LIMIT")?))
        }
    })
}
