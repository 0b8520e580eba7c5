//! SQL front end: parse with sqlparser (DuckDB dialect) and bind to a logical plan.
//!
//! - [`scope`]: name resolution.
//! - [`types`]: SQL type names, coercion and literals.
//! - [`expr`]: expression binding.
//! - [`aggregates`]: aggregate calls and GROUPING() above a GROUP BY.
//! - [`walk`]: walking SQL syntax (calls, arguments, output names).
//! - [`literals`]: SQL constants as typed literals.
//! - [`functions`]: scalar function signatures: argument checks, casts, result types.
//! - [`query`]: WITH, ORDER BY and LIMIT over a query.
//! - [`set_ops`]: UNION, INTERSECT and EXCEPT (ALL, BY NAME).
//! - [`select`]: SELECT items, WHERE, GROUP BY and grouping sets, HAVING, DISTINCT.
//! - [`from`]: FROM items and joins.
//! - [`asof`]: ASOF joins (rewritten before parsing) and their time condition.
//! - [`subquery`]: subqueries in expressions, joined onto the clause's input.
//! - [`decorrelate`]: a correlated subquery's conditions pulled up into join keys.

pub mod aggregates;
mod asof;
mod decorrelate;
pub mod expr;
mod from;
mod functions;
mod literals;
mod query;
pub mod scope;
mod select;
mod set_ops;
mod subquery;
pub mod types;
mod walk;
mod window;

use std::collections::HashMap;

use sqlparser::ast::{self, CopySource, CopyTarget};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;

use crate::catalog::Catalog;
use crate::error::{Result, SchedulerError};
use crate::logical::LogicalPlan;
use scope::Scope;

/// A bound statement: a query, and where to write it for `COPY … TO`.
#[derive(Debug)]
pub struct BoundStatement {
    pub plan: LogicalPlan,
    pub copy_to: Option<String>,
}

pub struct Binder<'c> {
    pub catalog: &'c mut Catalog,
    /// Common table expressions in scope, innermost last.
    ctes: Vec<HashMap<String, (LogicalPlan, Scope)>>,
    /// The scopes of the queries the one being bound is a subquery of
    /// (innermost last), for correlated references.
    outer: Vec<Scope>,
    /// Conditions of inner joins' ON clauses that hold subqueries: the
    /// SELECT being bound applies them with its WHERE.
    deferred_where: Vec<ast::Expr>,
}

pub fn parse(sql: &str) -> Result<ast::Statement> {
    let mut statements = parse_script(sql)?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        n => Err(SchedulerError::bind(format!(
            "expected one statement, got {n}"
        ))),
    }
}

/// The statements of a script (`;`-separated), at least one.
pub fn parse_script(sql: &str) -> Result<Vec<ast::Statement>> {
    let sql = asof::rewrite(sql)?;
    let statements =
        Parser::parse_sql(&DuckDbDialect {}, &sql).map_err(|e| SchedulerError::Syntax {
            message: e.to_string().replace("sql parser error: ", ""),
        })?;
    if statements.is_empty() {
        return Err(SchedulerError::Syntax {
            message: "empty query".into(),
        });
    }
    Ok(statements)
}

/// Binds a script: `CREATE [OR REPLACE] VIEW` and `DROP VIEW` statements
/// in order around exactly one query (SELECT or COPY), which sees the
/// views defined before it. The views live for the script only.
pub fn bind(sql: &str, catalog: &mut Catalog) -> Result<BoundStatement> {
    let statements = parse_script(sql)?;
    let mut binder = Binder {
        catalog,
        ctes: vec![HashMap::new()],
        outer: vec![],
        deferred_where: vec![],
    };
    let mut bound = None;
    for statement in &statements {
        match statement {
            ast::Statement::CreateView(v) => binder.create_view(v)?,
            ast::Statement::Drop {
                object_type: ast::ObjectType::View,
                if_exists,
                names,
                ..
            } => binder.drop_views(names, *if_exists)?,
            query => {
                if bound.is_some() {
                    return Err(SchedulerError::bind(
                        "a request runs one query (with the views it uses); `keel sql` runs a script's queries one by one",
                    ));
                }
                bound = Some(binder.bind_statement(query)?);
            }
        }
    }
    let bound = bound.ok_or_else(|| {
        SchedulerError::bind("the script has no query to run: only CREATE VIEW and DROP VIEW")
    })?;
    // Every correlated reference became a join key or condition; one left
    // over is a place decorrelation does not reach.
    if decorrelate::plan_has_outer(&bound.plan) {
        return Err(SchedulerError::unsupported(
            "a column of an enclosing query in this place (a correlated reference Keel cannot turn into a join)",
        ));
    }
    Ok(bound)
}

impl Binder<'_> {
    fn create_view(&mut self, v: &ast::CreateView) -> Result<()> {
        if v.materialized || v.or_alter {
            return Err(SchedulerError::unsupported(format!(
                "{}: Keel's views are plain views (CREATE [OR REPLACE] VIEW)",
                v.name
            )));
        }
        let name = v.name.to_string().to_lowercase();
        if self.ctes[0].contains_key(&name) && !v.or_replace {
            if v.if_not_exists {
                return Ok(());
            }
            return Err(SchedulerError::bind(format!(
                "view {name} already exists; use CREATE OR REPLACE VIEW"
            )));
        }
        let (plan, mut scope) = self.bind_query(&v.query)?;
        if v.columns.len() > scope.columns.len() {
            return Err(SchedulerError::bind(format!(
                "view {name} names {} columns but its query has {}",
                v.columns.len(),
                scope.columns.len()
            )));
        }
        for (c, alias) in scope.columns.iter_mut().zip(&v.columns) {
            c.name = alias.name.value.clone();
        }
        self.ctes[0].insert(name, (plan, scope));
        Ok(())
    }

    fn drop_views(&mut self, names: &[ast::ObjectName], if_exists: bool) -> Result<()> {
        for n in names {
            let name = n.to_string().to_lowercase();
            if self.ctes[0].remove(&name).is_none() && !if_exists {
                return Err(SchedulerError::bind(format!(
                    "view {name} does not exist (DROP VIEW IF EXISTS ignores that)"
                )));
            }
        }
        Ok(())
    }

    fn bind_statement(&mut self, statement: &ast::Statement) -> Result<BoundStatement> {
        let binder = self;
        match statement {
            ast::Statement::Query(q) => {
                let (plan, _) = binder.bind_query(q)?;
                Ok(BoundStatement {
                    plan,
                    copy_to: None,
                })
            }
            ast::Statement::Copy {
                source: CopySource::Query(q),
                to: true,
                target,
                options,
                legacy_options,
                ..
            } => {
                let path = match target {
                    CopyTarget::File { filename } => filename.clone(),
                    other => {
                        return Err(SchedulerError::unsupported(format!(
                            "COPY TO {other}; write to a path"
                        )))
                    }
                };
                for o in options {
                    match o {
                        ast::CopyOption::Format(f) if f.value.eq_ignore_ascii_case("parquet") => {}
                        other => {
                            return Err(SchedulerError::unsupported(format!(
                                "COPY option {other}; Keel writes (FORMAT parquet)"
                            )))
                        }
                    }
                }
                if !legacy_options.is_empty() {
                    return Err(SchedulerError::unsupported(
                        "COPY legacy options; use (FORMAT parquet)",
                    ));
                }
                let (plan, _) = binder.bind_query(q)?;
                Ok(BoundStatement {
                    plan,
                    copy_to: Some(path),
                })
            }
            ast::Statement::Copy { .. } => Err(SchedulerError::unsupported(
                "this form of COPY; Keel runs COPY (query) TO 'dir' (FORMAT parquet)",
            )),
            other => {
                let text = other.to_string();
                let verb = text
                    .split_whitespace()
                    .next()
                    .unwrap_or("this statement")
                    .to_uppercase();
                Err(SchedulerError::unsupported(format!(
                "{verb} statements; Keel runs SELECT queries, COPY … TO, CREATE VIEW and DROP VIEW"
            )))
            }
        }
    }
}

impl Binder<'_> {
    fn cte(&self, name: &str) -> Option<(LogicalPlan, Scope)> {
        self.ctes
            .iter()
            .rev()
            .find_map(|m| m.get(&name.to_lowercase()))
            .map(|(p, s)| (p.clone(), s.clone().with_qualifier(name)))
    }
}
