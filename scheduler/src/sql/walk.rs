//! Walking SQL syntax: the calls inside an expression, a call's arguments,
//! the name an unaliased expression gets.

use sqlparser::ast::{self, FunctionArg, FunctionArgExpr, FunctionArguments};

use crate::error::{Result, SchedulerError};

pub(super) fn function_name(f: &ast::Function) -> String {
    f.name.to_string().to_lowercase()
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
pub(super) fn visit_calls<'e>(e: &'e ast::Expr, visit: &mut dyn FnMut(&'e ast::Function) -> bool) {
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
