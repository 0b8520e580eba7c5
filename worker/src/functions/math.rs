//! Numeric functions. Integers keep their type where DuckDB keeps it (abs,
//! round, floor, ceil); the rest compute in doubles. Logarithms of zero or
//! of negative numbers and square roots of negative numbers are errors, as
//! in DuckDB.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int32Array, PrimitiveArray};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Float64Type, Int32Type, Int64Type,
};
use keel_proto::expr::{Expr, Func, ScalarValue};

use super::Args;
use crate::error::{Result, WorkerError};

pub fn call(func: Func, a: &Args) -> Result<ArrayRef> {
    let x = a.get(0);
    match func {
        Func::Abs => match x.data_type() {
            DataType::Int32 => Ok(int_map::<Int32Type>(x, |v| v.wrapping_abs())),
            DataType::Int64 => Ok(int_map::<Int64Type>(x, |v| v.wrapping_abs())),
            DataType::Decimal128(..) => Ok(int_map::<Decimal128Type>(x, |v| v.wrapping_abs())),
            _ => real(x, f64::abs),
        },
        Func::Round => {
            let digits = match a.exprs.get(1) {
                Some(Expr::Literal(ScalarValue::Int64(d))) => *d as i32,
                Some(Expr::Literal(ScalarValue::Int32(d))) => *d,
                Some(other) => {
                    return Err(WorkerError::eval(format!(
                        "round() digits must be a constant, got {other}"
                    )))
                }
                None => 0,
            };
            match x.data_type() {
                DataType::Int32 | DataType::Int64 => Ok(x.clone()),
                _ => real(x, |v| round_double(v, digits)),
            }
        }
        Func::Floor | Func::Ceil => match x.data_type() {
            DataType::Float64 => real(
                x,
                if func == Func::Floor {
                    f64::floor
                } else {
                    f64::ceil
                },
            ),
            // Whole units of the scale, down or up; the type stays.
            DataType::Decimal128(_, s) => {
                let unit = 10i128.pow(*s as u32);
                let floor = func == Func::Floor;
                Ok(int_map::<Decimal128Type>(x, |v| {
                    let down = v - v.rem_euclid(unit);
                    if floor || down == v {
                        down
                    } else {
                        down + unit
                    }
                }))
            }
            _ => Ok(x.clone()),
        },
        Func::Sqrt => checked(x, "sqrt", |v| {
            (v >= 0.0)
                .then(|| v.sqrt())
                .ok_or("cannot take the square root of a negative number")
        }),
        Func::Cbrt => real(x, f64::cbrt),
        Func::Ln => checked(x, "ln", |v| log(v, f64::ln)),
        Func::Log10 => checked(x, "log10", |v| log(v, f64::log10)),
        Func::Log2 => checked(x, "log2", |v| log(v, f64::log2)),
        Func::Exp => real(x, f64::exp),
        Func::Power => {
            let (b, e) = (
                x.as_primitive::<Float64Type>(),
                a.get(1).as_primitive::<Float64Type>(),
            );
            let out: Float64Array = arrow::compute::binary(b, e, |b: f64, e: f64| b.powf(e))
                .map_err(|e| WorkerError::eval(format!("power(): {e}")))?;
            Ok(Arc::new(out))
        }
        Func::Sign => {
            let out: Int32Array = x.as_primitive::<Float64Type>().unary(|v| {
                if v > 0.0 {
                    1
                } else if v < 0.0 {
                    -1
                } else {
                    0
                }
            });
            Ok(Arc::new(out))
        }
        other => unreachable!("{other:?} is not a numeric function"),
    }
}

/// An exact column mapped value by value, its type (a DECIMAL's precision
/// and scale) kept.
fn int_map<T: ArrowPrimitiveType>(x: &ArrayRef, f: impl Fn(T::Native) -> T::Native) -> ArrayRef {
    Arc::new(
        x.as_primitive::<T>()
            .unary::<_, T>(f)
            .with_data_type(x.data_type().clone()),
    )
}

/// `v` rounded to `digits` decimal places (negative: to tens, hundreds, …),
/// half away from zero, as DuckDB rounds a DOUBLE: by the exact value the
/// double holds, so 9.85 (stored as 9.8499999999999996…) rounds to 9.8.
/// Scaling by a power of ten rounds the product, which only matters when
/// the scaled value lies within an ulp of a half; then the exact decimal
/// expansion decides.
pub fn round_double(v: f64, digits: i32) -> f64 {
    if !v.is_finite() {
        return v;
    }
    let digits = digits.clamp(-308, 308);
    let scale = 10f64.powi(digits.abs());
    let y = if digits >= 0 { v * scale } else { v / scale };
    if !y.is_finite() {
        return v;
    }
    let frac = y.abs().fract();
    let rounded = if (frac - 0.5).abs() > y.abs() * 4e-16 {
        y.round()
    } else {
        exact_round_scaled(v, digits)
    };
    let out = if digits >= 0 {
        rounded / scale
    } else {
        rounded * scale
    };
    if out.is_finite() {
        out
    } else {
        v
    }
}

/// `v` × 10^digits rounded half away from zero, decided on the exact
/// decimal expansion of `v` (Rust's fixed-precision formatting is exact).
fn exact_round_scaled(v: f64, digits: i32) -> f64 {
    let text = format!("{:.*}", (digits.max(0) + 30) as usize, v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let all: String = int.chars().chain(frac.chars()).collect();
    // Digits of the result sit before this position of `all`.
    let cut = int.len() as i64 + digits as i64;
    let (kept, next) = if cut <= 0 {
        ("", if cut == 0 { all.as_bytes()[0] } else { b'0' })
    } else {
        (&all[..cut as usize], all.as_bytes()[cut as usize])
    };
    let k: f64 = if kept.is_empty() {
        0.0
    } else {
        kept.parse().unwrap_or(0.0)
    };
    let k = if next >= b'5' { k + 1.0 } else { k };
    k.copysign(v)
}

fn real(x: &ArrayRef, f: impl Fn(f64) -> f64) -> Result<ArrayRef> {
    let x: &PrimitiveArray<Float64Type> = x.as_primitive();
    Ok(Arc::new(x.unary::<_, Float64Type>(f)))
}

/// A double function that refuses some inputs, with DuckDB's message.
fn checked(
    x: &ArrayRef,
    name: &str,
    f: impl Fn(f64) -> Result<f64, &'static str>,
) -> Result<ArrayRef> {
    let x: &PrimitiveArray<Float64Type> = x.as_primitive();
    let out = x
        .try_unary::<_, Float64Type, _>(|v| f(v).map_err(|m| m.to_string()))
        .map_err(|m| WorkerError::eval(format!("{name}(): {m}")))?;
    Ok(Arc::new(out))
}

fn log(v: f64, f: fn(f64) -> f64) -> Result<f64, &'static str> {
    if v == 0.0 {
        Err("cannot take the logarithm of zero")
    } else if v < 0.0 {
        Err("cannot take the logarithm of a negative number")
    } else {
        Ok(f(v))
    }
}

#[cfg(test)]
mod tests {
    use super::round_double;

    #[test]
    fn rounds_the_exact_double_half_away_from_zero() {
        assert_eq!(round_double(9.85, 1), 9.8, "9.85 is stored below the half");
        assert_eq!(
            round_double(9.75, 1),
            9.8,
            "an exact half goes away from zero"
        );
        assert_eq!(round_double(0.25, 1), 0.3);
        assert_eq!(round_double(-0.25, 1), -0.3);
        assert_eq!(round_double(13.85, 1), 13.8);
        assert_eq!(round_double(14.545, 2), 14.54);
        assert_eq!(round_double(2.5, 0), 3.0);
        assert_eq!(round_double(-2.5, 0), -3.0);
        assert_eq!(round_double(1234.5, -1), 1230.0);
        assert_eq!(round_double(1235.0, -1), 1240.0);
        assert_eq!(round_double(-1250.0, -2), -1300.0);
        assert_eq!(round_double(49.0, -2), 0.0);
        assert_eq!(round_double(50.0, -2), 100.0);
        assert!(round_double(f64::NAN, 1).is_nan());
    }
}
