//! SQL constants as typed literals.

use arrow::datatypes::DataType;
use keel_proto::expr::{Expr, ScalarValue};
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
        _ => return None,
    })
}

pub fn literal(v: &ast::Value) -> Result<Typed> {
    Ok(match v {
        ast::Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                (Expr::Literal(ScalarValue::Int64(i)), DataType::Int64)
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
