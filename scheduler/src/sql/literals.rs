//! SQL constants as typed literals.

use arrow::datatypes::DataType;
use keel_proto::expr::{Expr, ScalarValue, DECIMAL_MAX_PRECISION};
use sqlparser::ast::{self, UnaryOperator};

use super::expr::Typed;
use crate::error::{Result, SchedulerError};

/// A number written as a constant (`2.5`, `-1e-3`).
pub(super) fn numeric_constant(e: &ast::Expr) -> Option<f64> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        ast::Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => numeric_constant(expr).map(|v| -v),
        ast::Expr::Nested(inner) => numeric_constant(inner),
        _ => None,
    }
}

pub(super) fn negate(v: &ScalarValue) -> Option<ScalarValue> {
    Some(match v {
        ScalarValue::Int64(x) => ScalarValue::Int64(-x),
        ScalarValue::Int32(x) => ScalarValue::Int32(-x),
        ScalarValue::Float64(x) => ScalarValue::Float64(-x),
        ScalarValue::Decimal128 {
            value,
            precision,
            scale,
        } => ScalarValue::Decimal128 {
            value: -value,
            precision: *precision,
            scale: *scale,
        },
        _ => return None,
    })
}

pub fn literal(v: &ast::Value) -> Result<Typed> {
    Ok(match v {
        ast::Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                (Expr::Literal(ScalarValue::Int64(i)), DataType::Int64)
            } else if let Some(d) = decimal(n) {
                let t = d.data_type();
                (Expr::Literal(d), t)
            } else {
                let f: f64 = n
                    .parse()
                    .map_err(|_| SchedulerError::bind(format!("invalid number {n}")))?;
                (Expr::Literal(ScalarValue::Float64(f)), DataType::Float64)
            }
        }
        ast::Value::SingleQuotedString(s) => {
            (Expr::Literal(ScalarValue::Utf8(s.clone())), DataType::Utf8)
        }
        ast::Value::Boolean(b) => (Expr::Literal(ScalarValue::Boolean(*b)), DataType::Boolean),
        ast::Value::Null => (Expr::Literal(ScalarValue::Null), DataType::Null),
        other => return Err(SchedulerError::unsupported(format!("literal {other}"))),
    })
}

/// A number written with digits and a point (`0.06`, `.5`, `1.`, or
/// digits too many for a BIGINT) as DuckDB types it: a DECIMAL of as many
/// digits as it is written with, the scale those after the point (0.06 is
/// DECIMAL(3, 2)). None for an exponent (`1e3` is a DOUBLE) or more than 38
/// digits (a DOUBLE too, as in DuckDB).
fn decimal(text: &str) -> Option<ScalarValue> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) || whole.len() + fraction.len() == 0 {
        return None;
    }
    let precision = (whole.len() + fraction.len()).max(1);
    if precision > DECIMAL_MAX_PRECISION as usize {
        return None;
    }
    let value: i128 = format!("{whole}{fraction}").parse().ok()?;
    Some(ScalarValue::Decimal128 {
        value,
        precision: precision as u8,
        scale: fraction.len() as i8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> DataType {
        literal(&ast::Value::Number(text.into(), false)).unwrap().1
    }

    #[test]
    fn numbers_are_typed_as_duckdb_types_them() {
        assert_eq!(typed("0.06"), DataType::Decimal128(3, 2));
        assert_eq!(typed("1.5"), DataType::Decimal128(2, 1));
        assert_eq!(typed("100.0"), DataType::Decimal128(4, 1));
        assert_eq!(typed(".5"), DataType::Decimal128(1, 1));
        assert_eq!(typed("1."), DataType::Decimal128(1, 0));
        assert_eq!(typed("0.000001"), DataType::Decimal128(7, 6));
        assert_eq!(typed("12345678901234567890"), DataType::Decimal128(20, 0));
        assert_eq!(typed("42"), DataType::Int64);
        assert_eq!(typed("1e3"), DataType::Float64);
        assert_eq!(typed("2.5E-3"), DataType::Float64);
        assert_eq!(typed(&format!("0.{}", "1".repeat(40))), DataType::Float64);
    }
}
