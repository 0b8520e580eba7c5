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
    visit_exprs(e, &mut |x| match x {
        ast::Expr::Function(f) => visit(f),
        _ => true,
    });
}

/// Calls `visit` on `e` and, when it returns true, on the expressions
/// inside it, outermost first. A subquery's body is its own query and is
/// not entered (its left operand, of `x IN (…)` or `x < ANY (…)`, is).
pub(super) fn visit_exprs<'e>(e: &'e ast::Expr, visit: &mut dyn FnMut(&'e ast::Expr) -> bool) {
    use ast::Expr as E;
    if !visit(e) {
        return;
    }
    let mut each = |xs: &[&'e ast::Expr]| {
        for x in xs {
            visit_exprs(x, visit);
        }
    };
    match e {
        E::Function(f) => each(&function_args(f).unwrap_or_default()),
        E::BinaryOp { left, right, .. }
        | E::IsDistinctFrom(left, right)
        | E::IsNotDistinctFrom(left, right) => each(&[left, right]),
        E::AnyOp { left, right, .. } | E::AllOp { left, right, .. } => {
            if matches!(right.as_ref(), E::Subquery(_)) {
                each(&[left])
            } else {
                each(&[left, right])
            }
        }
        E::UnaryOp { expr, .. }
        | E::Nested(expr)
        | E::IsNull(expr)
        | E::IsNotNull(expr)
        | E::IsTrue(expr)
        | E::IsFalse(expr)
        | E::IsNotTrue(expr)
        | E::IsNotFalse(expr)
        | E::Cast { expr, .. }
        | E::Like { expr, .. }
        | E::ILike { expr, .. }
        | E::Extract { expr, .. }
        | E::Ceil { expr, .. }
        | E::Floor { expr, .. }
        | E::InSubquery { expr, .. } => each(&[expr]),
        E::Position { expr, r#in } => each(&[expr, r#in]),
        E::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let mut xs: Vec<&ast::Expr> = vec![expr];
            xs.extend(
                substring_from
                    .iter()
                    .chain(substring_for)
                    .map(|b| b.as_ref()),
            );
            each(&xs)
        }
        E::Trim {
            expr,
            trim_what,
            trim_characters,
            ..
        } => {
            let mut xs: Vec<&ast::Expr> = vec![expr];
            xs.extend(trim_what.iter().map(|b| b.as_ref()));
            xs.extend(trim_characters.iter().flatten());
            each(&xs)
        }
        E::Between {
            expr, low, high, ..
        } => each(&[expr, low, high]),
        E::InList { expr, list, .. } => {
            let mut xs: Vec<&ast::Expr> = vec![expr];
            xs.extend(list.iter());
            each(&xs)
        }
        E::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let mut xs: Vec<&ast::Expr> = vec![];
            xs.extend(operand.iter().map(|b| b.as_ref()));
            for c in conditions {
                xs.push(&c.condition);
                xs.push(&c.result);
            }
            xs.extend(else_result.iter().map(|b| b.as_ref()));
            each(&xs)
        }
        E::Tuple(items) => each(&items.iter().collect::<Vec<_>>()),
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
