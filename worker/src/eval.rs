//! Evaluates physical expressions over a batch with Arrow compute kernels.
//!
//! Literals stay scalars (`Datum`) where a kernel accepts them, so
//! `col > 5` never materialises a column of fives.

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array,
    Int64Array, RecordBatch, Scalar, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::kernels::{boolean, cmp, comparison, numeric, zip::zip};
use arrow::compute::{cast_with_options, prep_null_mask_filter, CastOptions};
use arrow::datatypes::{DataType, Float64Type};
use keel_proto::expr::{decimal_result, BinaryOp, Expr, ScalarValue};

use crate::error::{ArrowContext, Result, WorkerError};

/// An evaluated expression: a column, or one value standing for every row.
#[derive(Debug, Clone)]
pub enum Value {
    Array(ArrayRef),
    /// A length-1 array.
    Scalar(ArrayRef),
}

impl Value {
    pub fn into_array(self, rows: usize) -> Result<ArrayRef> {
        match self {
            Value::Array(a) => Ok(a),
            Value::Scalar(s) => repeat(&s, rows),
        }
    }

    fn datum(&self) -> Box<dyn arrow::array::Datum + '_> {
        match self {
            Value::Array(a) => Box::new(a.as_ref()),
            Value::Scalar(s) => Box::new(Scalar::new(s.clone())),
        }
    }

    fn data_type(&self) -> &DataType {
        match self {
            Value::Array(a) | Value::Scalar(a) => a.data_type(),
        }
    }
}

fn repeat(one: &ArrayRef, rows: usize) -> Result<ArrayRef> {
    let indices = arrow::array::UInt32Array::from(vec![0u32; rows]);
    arrow::compute::take(one.as_ref(), &indices, None).context("repeating a literal")
}

pub fn scalar_array(v: &ScalarValue) -> ArrayRef {
    match v {
        ScalarValue::Null => new_null_array(&DataType::Null, 1),
        ScalarValue::Boolean(b) => Arc::new(BooleanArray::from(vec![*b])),
        ScalarValue::Int32(x) => Arc::new(Int32Array::from(vec![*x])),
        ScalarValue::Int64(x) => Arc::new(Int64Array::from(vec![*x])),
        ScalarValue::Float64(x) => Arc::new(Float64Array::from(vec![*x])),
        ScalarValue::Decimal128 {
            value,
            precision,
            scale,
        } => Arc::new(
            arrow::array::Decimal128Array::from(vec![*value])
                .with_precision_and_scale(*precision, *scale)
                .expect("the binder checks a DECIMAL literal's precision and scale"),
        ),
        ScalarValue::Utf8(s) => Arc::new(StringArray::from(vec![s.as_str()])),
        ScalarValue::Date32(d) => Arc::new(Date32Array::from(vec![*d])),
        ScalarValue::Timestamp(t) => Arc::new(TimestampMicrosecondArray::from(vec![*t])),
        ScalarValue::Interval {
            months,
            days,
            micros,
        } => Arc::new(arrow::array::IntervalMonthDayNanoArray::from(vec![
            arrow::datatypes::IntervalMonthDayNano::new(*months, *days, micros * 1000),
        ])),
    }
}

/// Evaluates `expr` to a full column of `batch.num_rows()` values.
pub fn evaluate(expr: &Expr, batch: &RecordBatch) -> Result<ArrayRef> {
    eval(expr, batch)?.into_array(batch.num_rows())
}

/// Evaluates a predicate to a mask where NULL counts as false.
pub fn evaluate_predicate(expr: &Expr, batch: &RecordBatch) -> Result<BooleanArray> {
    let array = typed_bool(evaluate(expr, batch)?);
    let mask = as_bool(&array)?;
    Ok(if mask.null_count() > 0 {
        prep_null_mask_filter(mask)
    } else {
        mask.clone()
    })
}

/// An untyped NULL (`CASE WHEN NULL`, `NULL AND x`) as the BOOLEAN it stands for.
fn typed_bool(array: ArrayRef) -> ArrayRef {
    if array.data_type() == &DataType::Null {
        Arc::new(BooleanArray::new_null(array.len()))
    } else {
        array
    }
}

fn as_bool(array: &ArrayRef) -> Result<&BooleanArray> {
    array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| WorkerError::eval(format!("expected a boolean, got {}", array.data_type())))
}

pub fn eval(expr: &Expr, batch: &RecordBatch) -> Result<Value> {
    let rows = batch.num_rows();
    Ok(match expr {
        Expr::Column(i) => Value::Array(batch.column(*i).clone()),
        Expr::Literal(v) => Value::Scalar(scalar_array(v)),
        Expr::Binary { op, left, right } => {
            binary(*op, eval(left, batch)?, eval(right, batch)?, rows)?
        }
        Expr::Not(e) => {
            let a = typed_bool(evaluate(e, batch)?);
            Value::Array(Arc::new(boolean::not(as_bool(&a)?).context("NOT")?))
        }
        Expr::Negative(e) => {
            let a = evaluate(e, batch)?;
            Value::Array(numeric::neg(a.as_ref()).context("negation")?)
        }
        Expr::IsNull(e) => Value::Array(Arc::new(
            boolean::is_null(evaluate(e, batch)?.as_ref()).context("IS NULL")?,
        )),
        Expr::IsNotNull(e) => Value::Array(Arc::new(
            boolean::is_not_null(evaluate(e, batch)?.as_ref()).context("IS NOT NULL")?,
        )),
        Expr::Like {
            expr,
            pattern,
            negated,
            case_insensitive,
        } => {
            let a = evaluate(expr, batch)?;
            let p = StringArray::from(vec![pattern.as_str()]);
            let p = Scalar::new(&p);
            let out = match (negated, case_insensitive) {
                (false, false) => comparison::like(&a, &p),
                (true, false) => comparison::nlike(&a, &p),
                (false, true) => comparison::ilike(&a, &p),
                (true, true) => comparison::nilike(&a, &p),
            }
            .context("LIKE")?;
            Value::Array(Arc::new(out))
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let value = eval(expr, batch)?;
            let mut acc: Option<BooleanArray> = None;
            for item in list {
                let item = eval(item, batch)?;
                let eq = compare(BinaryOp::Eq, &value, &item, rows)?;
                // Two constants compare to one value: it stands for every row.
                let eq = if eq.len() == rows {
                    eq
                } else {
                    as_bool(&repeat(&(Arc::new(eq) as ArrayRef), rows)?)?.clone()
                };
                acc = Some(match acc {
                    None => eq,
                    Some(prev) => boolean::or_kleene(&prev, &eq).context("IN")?,
                });
            }
            let acc = acc.unwrap_or_else(|| BooleanArray::from(vec![false; rows]));
            let acc = if *negated {
                boolean::not(&acc).context("NOT IN")?
            } else {
                acc
            };
            Value::Array(Arc::new(acc))
        }
        Expr::Case { whens, otherwise } => {
            let result_type = expr
                .data_type(batch.schema().as_ref())
                .map_err(|e| WorkerError::eval(e.to_string()))?;
            let mut result: ArrayRef = match otherwise {
                Some(e) => cast_to(evaluate(e, batch)?, &result_type)?,
                None => new_null_array(&result_type, rows),
            };
            for (when, then) in whens.iter().rev() {
                let mask = evaluate_predicate(when, batch)?;
                let then = cast_to(evaluate(then, batch)?, &result_type)?;
                result = zip(&mask, &then, &result).context("CASE")?;
            }
            Value::Array(result)
        }
        Expr::Cast { expr, to } => cast_value(eval(expr, batch)?, to, false)?,
        Expr::TryCast { expr, to } => cast_value(eval(expr, batch)?, to, true)?,
        Expr::Func { func, args } => Value::Array(crate::functions::call(*func, args, batch)?),
    })
}

/// `CAST`, or with `safe` `TRY_CAST` (NULL where a value does not convert).
fn cast_value(v: Value, to: &DataType, safe: bool) -> Result<Value> {
    let from = v.data_type().clone();
    let cast_one = |a: &ArrayRef| -> Result<ArrayRef> {
        // A double casts to the nearest integer, ties to even as in
        // DuckDB (2.5 -> 2, 3.5 -> 4); Arrow would truncate.
        let a = if from == DataType::Float64 && matches!(to, DataType::Int32 | DataType::Int64) {
            let f = a.as_any().downcast_ref::<Float64Array>().expect("float64");
            Arc::new(f.unary::<_, Float64Type>(f64::round_ties_even)) as ArrayRef
        } else {
            a.clone()
        };
        if from == DataType::Utf8 && matches!(to, DataType::Int32 | DataType::Int64) {
            return text_to_integer(&a, to, safe);
        }
        let options = CastOptions {
            safe,
            ..Default::default()
        };
        let out = cast_with_options(&a, to, &options)
            .map_err(|e| WorkerError::eval(format!("cannot cast {from} to {to}: {e}")))?;
        if matches!(from, DataType::Timestamp(..)) && to == &DataType::Utf8 {
            return Ok(duckdb_timestamp_text(&out));
        }
        Ok(out)
    };
    Ok(match &v {
        Value::Array(a) => Value::Array(cast_one(a)?),
        Value::Scalar(s) => Value::Scalar(cast_one(s)?),
    })
}

/// Text to an integer as DuckDB reads it: surrounding spaces ignored,
/// `0x` hexadecimal, and decimals or exponents rounded half away from zero
/// (`'2.5'` is 3, `'-0.0'` is 0, `'1e3'` is 1000). What does not read, or
/// does not fit, is NULL with `safe` (TRY_CAST), else an error naming it.
fn text_to_integer(a: &ArrayRef, to: &DataType, safe: bool) -> Result<ArrayRef> {
    let (lo, hi) = if to == &DataType::Int32 {
        (i32::MIN as i64, i32::MAX as i64)
    } else {
        (i64::MIN, i64::MAX)
    };
    let read = |s: &str| -> Option<i64> {
        let t = s.trim();
        if let Ok(v) = t.parse::<i64>() {
            return Some(v);
        }
        let (neg, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        if let Some(hex) = digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            let v = i64::from_str_radix(hex, 16).ok()?;
            return Some(if neg { -v } else { v });
        }
        // Only number syntax: Rust also reads "inf" and "NaN".
        if !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            return None;
        }
        let f: f64 = t.parse().ok()?;
        let r = f.round();
        (r >= i64::MIN as f64 && r < i64::MAX as f64).then_some(r as i64)
    };
    let strings = a.as_any().downcast_ref::<StringArray>().expect("utf8");
    let mut out: Vec<Option<i64>> = Vec::with_capacity(strings.len());
    for v in strings.iter() {
        out.push(match v {
            None => None,
            Some(s) => match read(s).filter(|v| (lo..=hi).contains(v)) {
                Some(v) => Some(v),
                None if safe => None,
                None => {
                    return Err(WorkerError::eval(format!(
                        "cannot cast '{s}' to {}: not a number that fits",
                        if to == &DataType::Int32 {
                            "INTEGER"
                        } else {
                            "BIGINT"
                        }
                    )))
                }
            },
        });
    }
    Ok(if to == &DataType::Int32 {
        Arc::new(Int32Array::from_iter(
            out.into_iter().map(|v| v.map(|v| v as i32)),
        ))
    } else {
        Arc::new(Int64Array::from(out))
    })
}

/// Timestamps as DuckDB writes them: a space before the time, fractional
/// seconds without trailing zeros (`2019-06-02 08:17:43.1`), none when whole.
fn duckdb_timestamp_text(iso: &ArrayRef) -> ArrayRef {
    let iso = iso.as_any().downcast_ref::<StringArray>().expect("utf8");
    Arc::new(
        iso.iter()
            .map(|v| {
                v.map(|s| {
                    let s = s.replacen('T', " ", 1);
                    match s.split_once('.') {
                        Some((whole, frac)) => {
                            let frac = frac.trim_end_matches('0');
                            if frac.is_empty() {
                                whole.to_string()
                            } else {
                                format!("{whole}.{frac}")
                            }
                        }
                        None => s,
                    }
                })
            })
            .collect::<StringArray>(),
    )
}

fn cast_to(a: ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if a.data_type() == to {
        return Ok(a);
    }
    arrow::compute::cast(&a, to).context("coercing a CASE branch")
}

fn compare(op: BinaryOp, l: &Value, r: &Value, rows: usize) -> Result<BooleanArray> {
    let distinct = matches!(op, BinaryOp::IsDistinctFrom | BinaryOp::IsNotDistinctFrom);
    if *l.data_type() == DataType::Null || *r.data_type() == DataType::Null {
        if !distinct {
            return Ok(BooleanArray::new_null(rows));
        }
        // NULL IS [NOT] DISTINCT FROM x: whether x is (not) NULL.
        let other = if *l.data_type() == DataType::Null {
            r
        } else {
            l
        };
        let other = other.clone().into_array(rows)?;
        return Ok(if op == BinaryOp::IsDistinctFrom {
            boolean::is_not_null(&other)
        } else {
            boolean::is_null(&other)
        }
        .context("comparison")?);
    }
    // Arrow orders doubles totally (-0.0 < 0.0); SQL and DuckDB hold them equal.
    let (l, r) = (normalize_zero(l), normalize_zero(r));
    let (l, r) = (l.datum(), r.datum());
    let (l, r) = (l.as_ref(), r.as_ref());
    match op {
        BinaryOp::Eq => cmp::eq(l, r),
        BinaryOp::NotEq => cmp::neq(l, r),
        BinaryOp::Lt => cmp::lt(l, r),
        BinaryOp::LtEq => cmp::lt_eq(l, r),
        BinaryOp::Gt => cmp::gt(l, r),
        BinaryOp::GtEq => cmp::gt_eq(l, r),
        BinaryOp::IsDistinctFrom => cmp::distinct(l, r),
        BinaryOp::IsNotDistinctFrom => cmp::not_distinct(l, r),
        _ => unreachable!("not a comparison"),
    }
    .context("comparison")
}

fn normalize_zero(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(crate::operators::normalize_key(a.clone())),
        Value::Scalar(a) => Value::Scalar(crate::operators::normalize_key(a.clone())),
    }
}

fn binary(op: BinaryOp, l: Value, r: Value, rows: usize) -> Result<Value> {
    if op.is_comparison() {
        let out = Arc::new(compare(op, &l, &r, rows)?);
        // Two constants compare to one value that stands for every row.
        return Ok(match (&l, &r, out.len()) {
            (Value::Scalar(_), Value::Scalar(_), 1) => Value::Scalar(out),
            _ => Value::Array(out),
        });
    }
    if matches!(op, BinaryOp::And | BinaryOp::Or) {
        let (l, r) = (
            typed_bool(l.into_array(rows)?),
            typed_bool(r.into_array(rows)?),
        );
        let (l, r) = (as_bool(&l)?, as_bool(&r)?);
        let out = if op == BinaryOp::And {
            boolean::and_kleene(l, r)
        } else {
            boolean::or_kleene(l, r)
        }
        .context(op.symbol())?;
        return Ok(Value::Array(Arc::new(out)));
    }
    // As in DuckDB: `/` is IEEE float division (x / 0 is ±inf), `%` by zero is an error.
    if op == BinaryOp::Mod {
        let zero = zero_of(r.data_type())?;
        let is_zero = cmp::eq(r.datum().as_ref(), &Scalar::new(zero)).context("modulo")?;
        if is_zero.true_count() > 0 {
            return Err(WorkerError::eval("Division by zero in a % expression"));
        }
    }
    let scalar = matches!((&l, &r), (Value::Scalar(_), Value::Scalar(_)));
    let (ld, rd) = (l.datum(), r.datum());
    let (ld, rd) = (ld.as_ref(), rd.as_ref());
    let out = match op {
        BinaryOp::Add => numeric::add(ld, rd),
        BinaryOp::Sub => numeric::sub(ld, rd),
        BinaryOp::Mul => numeric::mul(ld, rd),
        BinaryOp::Div => numeric::div(ld, rd),
        BinaryOp::Mod => numeric::rem(ld, rd),
        _ => unreachable!("not arithmetic"),
    }
    .map_err(|e| WorkerError::eval(format!("arithmetic {}: {e}", op.symbol())))?;
    // DECIMAL results take DuckDB's precision (Arrow's rules differ for `*`);
    // a value that does not fit is an overflow error.
    let out = match decimal_result(op, l.data_type(), r.data_type()) {
        Some(t) if out.data_type() != &t => {
            let strict = CastOptions {
                safe: false,
                ..Default::default()
            };
            cast_with_options(&out, &t, &strict).map_err(|e| {
                WorkerError::eval(format!("DECIMAL overflow in {}: {e}", op.symbol()))
            })?
        }
        _ => out,
    };
    Ok(if scalar {
        Value::Scalar(out)
    } else {
        Value::Array(out)
    })
}

fn zero_of(t: &DataType) -> Result<ArrayRef> {
    Ok(match t {
        DataType::Int32 => Arc::new(Int32Array::from(vec![0])),
        DataType::Int64 => Arc::new(Int64Array::from(vec![0])),
        DataType::Float64 => Arc::new(Float64Array::from(vec![0.0])),
        DataType::Decimal128(p, s) => Arc::new(
            arrow::array::Decimal128Array::from(vec![0i128])
                .with_precision_and_scale(*p, *s)
                .context("a DECIMAL zero")?,
        ),
        other => {
            return Err(WorkerError::eval(format!(
                "cannot divide values of type {other}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use keel_proto::expr::Func;

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(0)])),
                Arc::new(StringArray::from(vec![
                    Some("Apple"),
                    Some("bob"),
                    None,
                    Some("ÄX"),
                ])),
            ],
        )
        .unwrap()
    }

    fn lit(v: i64) -> Expr {
        Expr::Literal(ScalarValue::Int64(v))
    }

    #[test]
    fn comparison_with_null_is_null_and_filters_false() {
        let e = Expr::binary(BinaryOp::Gt, Expr::Column(0), lit(1));
        let mask = evaluate_predicate(&e, &batch()).unwrap();
        assert_eq!(mask, BooleanArray::from(vec![false, false, true, false]));
    }

    #[test]
    fn modulo_by_zero_is_an_error() {
        let e = Expr::binary(BinaryOp::Mod, lit(7), Expr::Column(0));
        let err = evaluate(&e, &batch()).unwrap_err();
        assert!(err.to_string().contains("Division by zero"), "{err}");
        let ok = Expr::binary(BinaryOp::Mod, lit(7), lit(2));
        assert!(evaluate(&ok, &batch()).is_ok());
    }

    #[test]
    fn case_coalesce_and_string_functions() {
        let case = Expr::Case {
            whens: vec![(Expr::IsNull(Box::new(Expr::Column(0))), lit(-1))],
            otherwise: Some(Box::new(Expr::Column(0))),
        };
        let out = evaluate(&case, &batch()).unwrap();
        let out = out.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(out.values().to_vec(), vec![1, -1, 3, 0]);

        let len = Expr::Func {
            func: Func::Length,
            args: vec![Expr::Column(1)],
        };
        let out = evaluate(&len, &batch()).unwrap();
        let out = out.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![Some(5), Some(3), None, Some(2)]
        );

        let upper = Expr::Func {
            func: Func::Upper,
            args: vec![Expr::Column(1)],
        };
        let out = evaluate(&upper, &batch()).unwrap();
        assert_eq!(
            out.as_any().downcast_ref::<StringArray>().unwrap().value(1),
            "BOB"
        );
    }

    #[test]
    fn in_list_has_sql_null_semantics() {
        let e = Expr::InList {
            expr: Box::new(Expr::Column(0)),
            list: vec![
                lit(3),
                Expr::Literal(ScalarValue::Null).cast(DataType::Int64),
            ],
            negated: true,
        };
        let out = evaluate(&e, &batch()).unwrap();
        let out = out.as_any().downcast_ref::<BooleanArray>().unwrap();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![None, None, Some(false), None]
        );
    }
}
