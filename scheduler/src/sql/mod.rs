//! SQL front end: parse with sqlparser (DuckDB dialect) and bind to a logical plan.
//!
//! - [`scope`]: name resolution.
//! - [`types`]: SQL type names, coercion and literals.
//! - [`expr`]: expression binding.
//! - [`aggregates`]: aggregate calls and GROUPING() above a GROUP BY.
//! - [`walk`]: walking SQL syntax (calls, arguments, output names).
//! - [`literals`]: SQL constants as typed literals.
//! - [`functions`]: scalar function signatures: argument checks, casts, result types.
//! - [`query`]: WITH, set operations, ORDER BY and LIMIT over a query.
//! - [`select`]: SELECT items, WHERE, GROUP BY and grouping sets, HAVING, DISTINCT.
//! - [`from`]: FROM items and joins.
//! - [`asof`]: ASOF joins (rewritten before parsing) and their time condition.

pub mod aggregates;
mod asof;
pub mod expr;
mod from;
mod functions;
mod literals;
mod query;
pub mod scope;
mod select;
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
}

pub fn parse(sql: &str) -> Result<ast::Statement> {
    let sql = asof::rewrite(sql)?;
    let mut statements =
        Parser::parse_sql(&DuckDbDialect {}, &sql).map_err(|e| SchedulerError::Syntax {
            message: e.to_string().replace("sql parser error: ", ""),
        })?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(SchedulerError::Syntax {
            message: "empty query".into(),
        }),
        n => Err(SchedulerError::bind(format!(
            "expected one statement, got {n}"
        ))),
    }
}

pub fn bind(sql: &str, catalog: &mut Catalog) -> Result<BoundStatement> {
    let statement = parse(sql)?;
    let mut binder = Binder {
        catalog,
        ctes: vec![],
    };
    match &statement {
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
                "{verb} statements; Keel runs SELECT queries and COPY … TO"
            )))
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
