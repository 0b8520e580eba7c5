//! A window call's frame clause: ROWS offsets count rows, RANGE offsets
//! measure the one ORDER BY key (a number, or an INTERVAL for a DATE or
//! TIMESTAMP key), as in DuckDB.

use arrow::datatypes::DataType;
use keel_proto::expr::{Expr, ScalarValue};
use keel_proto::plan::{FrameBound, RangeOffset, WindowFrame};
use sqlparser::ast;

use super::super::literals::literal;
use super::super::types::{interval_literal, sql_name};
use crate::error::{Result, SchedulerError};

/// The call's frame; the default when it names none. `order_types` are the
/// types of the window's ORDER BY keys.
pub(super) fn frame(
    frame: Option<&ast::WindowFrame>,
    f: &ast::Function,
    order_types: &[DataType],
) -> Result<WindowFrame> {
    let Some(frame) = frame else {
        return Ok(WindowFrame::DEFAULT);
    };
    let rows = match frame.units {
        ast::WindowFrameUnits::Rows => true,
        ast::WindowFrameUnits::Range => false,
        ast::WindowFrameUnits::Groups => {
            return Err(SchedulerError::unsupported(format!("GROUPS frames in {f}")))
        }
    };
    let bound = |b: &ast::WindowFrameBound, start: bool| -> Result<FrameBound> {
        let bound = match b {
            ast::WindowFrameBound::CurrentRow => FrameBound::CurrentRow,
            ast::WindowFrameBound::Preceding(None) => FrameBound::UnboundedPreceding,
            ast::WindowFrameBound::Following(None) => FrameBound::UnboundedFollowing,
            ast::WindowFrameBound::Preceding(Some(e)) if rows => {
                FrameBound::Preceding(rows_offset(e, f)?)
            }
            ast::WindowFrameBound::Following(Some(e)) if rows => {
                FrameBound::Following(rows_offset(e, f)?)
            }
            ast::WindowFrameBound::Preceding(Some(e)) => {
                FrameBound::RangePreceding(range_offset(e, f, order_types)?)
            }
            ast::WindowFrameBound::Following(Some(e)) => {
                FrameBound::RangeFollowing(range_offset(e, f, order_types)?)
            }
        };
        match (start, bound) {
            (true, FrameBound::UnboundedFollowing) | (false, FrameBound::UnboundedPreceding) => {
                Err(SchedulerError::bind(format!(
                    "a frame cannot {} UNBOUNDED {} in {f}",
                    if start { "start at" } else { "end at" },
                    if start { "FOLLOWING" } else { "PRECEDING" }
                )))
            }
            _ => Ok(bound),
        }
    };
    Ok(WindowFrame {
        rows,
        start: bound(&frame.start_bound, true)?,
        end: match &frame.end_bound {
            Some(b) => bound(b, false)?,
            None => FrameBound::CurrentRow,
        },
    })
}

/// `n PRECEDING` in a ROWS frame: a count of rows.
fn rows_offset(e: &ast::Expr, f: &ast::Function) -> Result<u64> {
    match e {
        ast::Expr::Value(v) => match literal(&v.value)?.0 {
            Expr::Literal(ScalarValue::Int64(n)) if n >= 0 => Ok(n as u64),
            _ => Err(SchedulerError::bind(format!(
                "a frame offset must be a non-negative integer, got {e} in {f}"
            ))),
        },
        other => Err(SchedulerError::bind(format!(
            "a frame offset must be a constant, got {other} in {f}"
        ))),
    }
}

/// `n PRECEDING` in a RANGE frame: a distance on the one ORDER BY key.
fn range_offset(e: &ast::Expr, f: &ast::Function, order_types: &[DataType]) -> Result<RangeOffset> {
    let [key] = order_types else {
        return Err(SchedulerError::bind(format!(
            "a RANGE frame with an offset ({e}) needs exactly one ORDER BY key, got {} in {f}; use ROWS, or order by one expression",
            order_types.len()
        )));
    };
    let negative = || {
        SchedulerError::bind(format!(
            "a RANGE frame's offset must not be negative, got {e} in {f}"
        ))
    };
    let offset = match e {
        // Measured in the key's own type: `1.5` is a distance, whatever
        // type the literal would have as a value.
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => match (n.parse::<i64>(), n.parse::<f64>()) {
                (Ok(i), _) => RangeOffset::Int(i),
                (_, Ok(x)) if x.is_finite() => RangeOffset::Float(x),
                _ => return Err(not_constant(e, f)),
            },
            _ => return Err(not_constant(e, f)),
        },
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } if matches!(expr.as_ref(), ast::Expr::Value(_)) => return Err(negative()),
        ast::Expr::Interval(i) => match interval_literal(i)? {
            ScalarValue::Interval {
                months,
                days,
                micros,
            } => {
                if months < 0 || days < 0 || micros < 0 {
                    return Err(negative());
                }
                RangeOffset::Interval {
                    months,
                    days,
                    micros,
                }
            }
            _ => return Err(not_constant(e, f)),
        },
        _ => return Err(not_constant(e, f)),
    };
    let mismatch = |wanted: &str| {
        SchedulerError::bind(format!(
            "a RANGE frame over a {} ORDER BY key needs {wanted} as its offset, got {e} in {f}",
            sql_name(key)
        ))
    };
    match (key, offset) {
        (
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64,
            RangeOffset::Int(_) | RangeOffset::Float(_),
        ) => Ok(offset),
        (DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64, RangeOffset::Interval { .. }) => Err(mismatch("a number")),
        // `date - n` is n days, as in DuckDB.
        (DataType::Date32, RangeOffset::Int(n)) => Ok(RangeOffset::Interval {
            months: 0,
            days: i32::try_from(n).map_err(|_| mismatch("an INTERVAL or a number of days"))?,
            micros: 0,
        }),
        (DataType::Date32 | DataType::Timestamp(..), RangeOffset::Interval { .. }) => Ok(offset),
        (DataType::Date32, _) => Err(mismatch("an INTERVAL or a number of days")),
        (DataType::Timestamp(..), _) => Err(mismatch("an INTERVAL")),
        (other, _) => Err(SchedulerError::bind(format!(
            "a RANGE frame with an offset needs an integer, DOUBLE, DATE or TIMESTAMP ORDER BY key, got {} in {f}; cast the key (a DECIMAL to DOUBLE) or use ROWS",
            sql_name(other)
        ))),
    }
}

fn not_constant(e: &ast::Expr, f: &ast::Function) -> SchedulerError {
    SchedulerError::bind(format!(
        "a RANGE frame's offset must be a constant number or INTERVAL, got {e} in {f}"
    ))
}
