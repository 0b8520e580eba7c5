//! ASOF joins, DuckDB's syntax: `a ASOF [LEFT] JOIN b ON a.k = b.k AND a.t >= b.t`.
//!
//! sqlparser knows only Snowflake's `MATCH_CONDITION` form, so the text is
//! rewritten before parsing: `ASOF [LEFT [OUTER]] JOIN b ON cond` becomes
//! `[LEFT [OUTER]] JOIN b ON keel_asof_join() AND cond`, and the binder turns
//! a join whose ON clause holds that marker into an ASOF join. Only the
//! `ASOF` word is removed and the marker inserted; the rest of the text is
//! untouched, so positions in later errors still point near the user's text.
//!
//! The ON clause holds equalities (the by-keys) and one time condition:
//! `a.t >= b.t` / `>` (backward), `a.t <= b.t` / `<` (forward), either way
//! round, or Keel's extension `nearest(a.t, b.t)` (the closest right time in
//! either direction, the later one when both are equally far, as Polars'
//! `join_asof(strategy='nearest')` picks).

use std::borrow::Cow;

use arrow::datatypes::DataType;
use keel_proto::plan::{Asof, AsofDirection};
use sqlparser::ast::{self, BinaryOperator, FunctionArg, FunctionArgExpr, FunctionArguments};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use super::expr::ExprBinder;
use super::scope::Scope;
use super::types::{cast_if_needed, common_type, sql_name};
use crate::error::{Result, SchedulerError};

/// The function call the rewrite puts first in an ASOF join's ON clause.
pub const MARKER: &str = "keel_asof_join";

/// What an ASOF join's ON clause may hold besides equalities.
pub const USAGE: &str = "an ASOF JOIN's ON clause holds equalities joined by AND and one time condition (a.t >= b.t, a.t > b.t, a.t <= b.t, a.t < b.t or nearest(a.t, b.t))";

/// The SQL with each `ASOF [LEFT] JOIN … ON` turned into a marked join.
pub fn rewrite(sql: &str) -> Result<Cow<'_, str>> {
    if !sql.to_ascii_lowercase().contains("asof") {
        return Ok(Cow::Borrowed(sql));
    }
    let tokens = Tokenizer::new(&DuckDbDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| SchedulerError::Syntax {
            message: e.to_string(),
        })?;
    let significant: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let word = |i: usize, w: &str| {
        matches!(significant.get(i), Some(TokenWithSpan { token: Token::Word(word), .. })
            if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(w))
    };
    // (byte offset, bytes removed, text inserted)
    let mut edits: Vec<(usize, usize, &str)> = vec![];
    for i in 0..significant.len() {
        if !word(i, "asof") {
            continue;
        }
        let mut j = i + 1;
        if ["right", "full", "inner", "cross"]
            .iter()
            .any(|w| word(j, w))
        {
            return Err(SchedulerError::unsupported(
                "this kind of ASOF join; Keel runs ASOF JOIN and ASOF LEFT JOIN",
            ));
        }
        if word(j, "left") {
            j += 1;
            if word(j, "outer") {
                j += 1;
            }
        }
        if !word(j, "join") {
            continue;
        }
        let asof = &significant[i].span;
        let start = offset(sql, asof.start);
        edits.push((start, offset(sql, asof.end) - start, ""));
        let mut depth = 0i32;
        let on = loop {
            j += 1;
            let missing = || SchedulerError::bind(format!("ASOF JOIN needs an ON clause: {USAGE}"));
            let Some(t) = significant.get(j) else {
                return Err(missing());
            };
            match &t.token {
                Token::LParen => depth += 1,
                Token::RParen if depth == 0 => return Err(missing()),
                Token::RParen => depth -= 1,
                Token::SemiColon => return Err(missing()),
                _ if depth > 0 => {}
                _ if word(j, "on") => break t,
                _ if word(j, "using") => {
                    return Err(SchedulerError::unsupported(
                        "ASOF JOIN … USING; write ON a.k = b.k AND a.t >= b.t",
                    ))
                }
                _ if ["join", "where", "group", "order", "limit"]
                    .iter()
                    .any(|w| word(j, w)) =>
                {
                    return Err(missing())
                }
                _ => {}
            }
        };
        edits.push((offset(sql, on.span.end), 0, " keel_asof_join() AND"));
    }
    if edits.is_empty() {
        return Ok(Cow::Borrowed(sql));
    }
    let mut out = sql.to_string();
    edits.sort_by_key(|e| e.0);
    for (at, removed, inserted) in edits.into_iter().rev() {
        out.replace_range(at..at + removed, inserted);
    }
    Ok(Cow::Owned(out))
}

/// The byte offset of a tokenizer location (1-based line and character column).
fn offset(sql: &str, at: Location) -> usize {
    let line_start: usize = sql
        .split_inclusive('\n')
        .take(at.line.saturating_sub(1) as usize)
        .map(str::len)
        .sum();
    sql[line_start..]
        .char_indices()
        .nth(at.column.saturating_sub(1) as usize)
        .map(|(i, _)| line_start + i)
        .unwrap_or(sql.len())
}

/// Whether a conjunct of an ON clause is the marker the rewrite inserted.
pub fn is_marker(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case(MARKER))
}

/// Binds the time condition of an ASOF join: the ON conjuncts that are not
/// key equalities, over `combined` (left columns, then right from `nl`).
pub fn bind_time(rest: &[&ast::Expr], combined: &Scope, nl: usize) -> Result<Asof> {
    let [condition] = rest else {
        return Err(SchedulerError::bind(format!(
            "{USAGE}; got {}",
            if rest.is_empty() {
                "no time condition".to_string()
            } else {
                rest.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(" AND ")
            }
        )));
    };
    let (a, b, op) = match condition {
        ast::Expr::BinaryOp { left, op, right } => (left.as_ref(), right.as_ref(), op.clone()),
        ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("nearest") => {
            match nearest_args(f) {
                Some((a, b)) => (a, b, BinaryOperator::Custom("nearest".into())),
                None => {
                    return Err(SchedulerError::bind(
                        "nearest() takes two times, one of each side: nearest(a.t, b.t)",
                    ))
                }
            }
        }
        other => return Err(SchedulerError::bind(format!("{USAGE}; got {other}"))),
    };
    let mut binder = ExprBinder::new(combined);
    let (x, xt) = binder.bind(a)?;
    let (y, yt) = binder.bind(b)?;
    let side = |e: &keel_proto::expr::Expr| {
        let mut cols = vec![];
        e.columns(&mut cols);
        if !cols.is_empty() && cols.iter().all(|&c| c < nl) {
            Some(false)
        } else if !cols.is_empty() && cols.iter().all(|&c| c >= nl) {
            Some(true)
        } else {
            None
        }
    };
    // The condition as `left op right`.
    let (flipped, (l, lt), (r, rt)) = match (side(&x), side(&y)) {
        (Some(false), Some(true)) => (false, (x, xt), (y, yt)),
        (Some(true), Some(false)) => (true, (y, yt), (x, xt)),
        _ => {
            return Err(SchedulerError::bind(format!(
                "the time condition of an ASOF JOIN compares a column of each side; got {condition}"
            )))
        }
    };
    let (direction, strict) = match (op, flipped) {
        (BinaryOperator::GtEq, false) | (BinaryOperator::LtEq, true) => {
            (AsofDirection::Backward, false)
        }
        (BinaryOperator::Gt, false) | (BinaryOperator::Lt, true) => (AsofDirection::Backward, true),
        (BinaryOperator::LtEq, false) | (BinaryOperator::GtEq, true) => {
            (AsofDirection::Forward, false)
        }
        (BinaryOperator::Lt, false) | (BinaryOperator::Gt, true) => (AsofDirection::Forward, true),
        (BinaryOperator::Custom(_), _) => (AsofDirection::Nearest, false),
        _ => return Err(SchedulerError::bind(format!("{USAGE}; got {condition}"))),
    };
    let t = common_type(&lt, &rt, false, false).ok_or_else(|| {
        SchedulerError::bind(format!(
            "Cannot compare {} with {} in {condition}: add an explicit CAST",
            sql_name(&lt),
            sql_name(&rt)
        ))
    })?;
    if direction == AsofDirection::Nearest && !(t.is_numeric() || t.is_temporal()) {
        return Err(SchedulerError::bind(format!(
            "nearest() measures distances between numbers or times, not {}",
            sql_name(&t)
        )));
    }
    if matches!(t, DataType::Null) {
        return Err(SchedulerError::bind(format!(
            "the time condition of an ASOF JOIN compares NULL in {condition}"
        )));
    }
    Ok(Asof {
        left_time: cast_if_needed(l, &lt, &t),
        right_time: cast_if_needed(r, &rt, &t).remap_columns(&|c| c - nl),
        direction,
        strict,
    })
}

fn nearest_args(f: &ast::Function) -> Option<(&ast::Expr, &ast::Expr)> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(a)), FunctionArg::Unnamed(FunctionArgExpr::Expr(b))] => {
            Some((a, b))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn rewrites_only_asof_joins() {
        let sql = "SELECT 'asof' AS \"asof\" FROM a ASOF JOIN b ON a.k = b.k AND a.t >= b.t";
        assert_eq!(
            rewrite(sql).unwrap(),
            "SELECT 'asof' AS \"asof\" FROM a  JOIN b ON keel_asof_join() AND a.k = b.k AND a.t >= b.t"
        );
        let sql = "SELECT * FROM a\n  ASOF LEFT JOIN (SELECT * FROM b JOIN c ON b.x = c.x) s\n  ON a.t >= s.t";
        assert_eq!(
            rewrite(sql).unwrap(),
            "SELECT * FROM a\n   LEFT JOIN (SELECT * FROM b JOIN c ON b.x = c.x) s\n  ON keel_asof_join() AND a.t >= s.t"
        );
        assert_eq!(rewrite("SELECT asof FROM t").unwrap(), "SELECT asof FROM t");
        assert!(rewrite("SELECT * FROM a ASOF JOIN b USING (k, t)")
            .unwrap_err()
            .to_string()
            .contains("USING"));
        assert!(rewrite("SELECT * FROM a ASOF JOIN b WHERE a.t > 1")
            .unwrap_err()
            .to_string()
            .contains("needs an ON clause"));
    }
}
