//! SQL types: names as users see them, implicit coercion, literals.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, StringArray, TimestampMicrosecondArray};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::DataType;
use keel_proto::expr::{
    decimal_result, decimal_text, timestamp_type, BinaryOp, Expr, ScalarValue,
    DECIMAL_MAX_PRECISION,
};

use crate::error::{Result, SchedulerError};

/// The SQL name of a type, as DuckDB prints it.
pub fn sql_name(t: &DataType) -> String {
    match t {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 => "VARCHAR".into(),
        DataType::Binary => "BLOB".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(..) => "TIMESTAMP".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Interval(_) => "INTERVAL".into(),
        other => other.to_string(),
    }
}

/// Maps a SQL type name from CAST to the type Keel computes in.
pub fn from_sql(t: &sqlparser::ast::DataType) -> Result<DataType> {
    let name = t.to_string().to_uppercase();
    let base = name.split(['(', ' ']).next().unwrap_or("");
    Ok(match base {
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TINYINT" | "SMALLINT" | "INT" | "INTEGER" | "INT4" | "INT2" | "INT1" => DataType::Int32,
        "BIGINT" | "INT8" | "LONG" | "HUGEINT" => DataType::Int64,
        "DOUBLE" | "FLOAT" | "FLOAT8" | "FLOAT4" | "REAL" => DataType::Float64,
        "DECIMAL" | "NUMERIC" => decimal_type(&name)?,
        "VARCHAR" | "TEXT" | "STRING" | "CHAR" | "BPCHAR" => DataType::Utf8,
        "BLOB" | "BYTEA" | "BINARY" | "VARBINARY" => DataType::Binary,
        "DATE" => DataType::Date32,
        "TIMESTAMP" | "DATETIME" => timestamp_type(),
        _ => return Err(SchedulerError::unsupported(format!("type {name}"))),
    })
}

/// `DECIMAL(p, s)` from its SQL spelling; a bare `DECIMAL` is DuckDB's
/// `DECIMAL(18, 3)`.
fn decimal_type(name: &str) -> Result<DataType> {
    let args: Vec<&str> = name
        .split_once('(')
        .map(|(_, rest)| {
            rest.trim_end_matches(')')
                .split(',')
                .map(str::trim)
                .collect()
        })
        .unwrap_or_default();
    let bad = || {
        SchedulerError::bind(format!(
            "invalid type {name}: DECIMAL(p, s) needs 1 <= p <= 38 and 0 <= s <= p"
        ))
    };
    let (p, s) = match args.as_slice() {
        [] => (18, 3),
        [p] => (p.parse().map_err(|_| bad())?, 0),
        [p, s] => (p.parse().map_err(|_| bad())?, s.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    if !(1..=DECIMAL_MAX_PRECISION).contains(&p) || s > p {
        return Err(bad());
    }
    Ok(DataType::Decimal128(p, s as i8))
}

pub fn is_numeric(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int32 | DataType::Int64 | DataType::Float64 | DataType::Decimal128(..)
    )
}

/// An integer or DECIMAL as a DECIMAL: INTEGER holds 10 digits, BIGINT 19.
pub fn as_decimal(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Int32 => Some(DataType::Decimal128(10, 0)),
        DataType::Int64 => Some(DataType::Decimal128(19, 0)),
        DataType::Decimal128(..) => Some(t.clone()),
        _ => None,
    }
}

/// One side of DECIMAL arithmetic as a DECIMAL: a NULL takes the type the
/// two sides have in common.
fn decimal_side(t: &DataType, common: &DataType) -> DataType {
    as_decimal(t).unwrap_or_else(|| common.clone())
}

/// Two exact numbers' common DECIMAL: enough integer digits and scale for both.
fn common_decimal(a: &DataType, b: &DataType) -> Option<DataType> {
    let (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) =
        (as_decimal(a)?, as_decimal(b)?)
    else {
        return None;
    };
    let scale = s1.max(s2);
    let digits = (p1 as i16 - s1 as i16).max(p2 as i16 - s2 as i16);
    let p = (digits + scale as i16).min(DECIMAL_MAX_PRECISION as i16) as u8;
    Some(DataType::Decimal128(p, scale))
}

fn numeric_rank(t: &DataType) -> u8 {
    match t {
        DataType::Int32 => 1,
        DataType::Int64 => 2,
        DataType::Decimal128(..) => 3,
        _ => 4,
    }
}

fn is_temporal(t: &DataType) -> bool {
    matches!(t, DataType::Date32 | DataType::Timestamp(..))
}

/// The type two values are compared or combined in, if there is one.
/// `left_literal`/`right_literal` allow a string literal to take the other side's type.
pub fn common_type(
    a: &DataType,
    b: &DataType,
    a_literal: bool,
    b_literal: bool,
) -> Option<DataType> {
    if a == b {
        return Some(a.clone());
    }
    match (a, b) {
        (DataType::Null, t) | (t, DataType::Null) => Some(t.clone()),
        (DataType::Decimal128(..), y) | (y, DataType::Decimal128(..))
            if *y != DataType::Float64 =>
        {
            common_decimal(a, b)
        }
        (x, y) if is_numeric(x) && is_numeric(y) => Some(if numeric_rank(x) >= numeric_rank(y) {
            x.clone()
        } else {
            y.clone()
        }),
        (x, y) if is_temporal(x) && is_temporal(y) => Some(timestamp_type()),
        (DataType::Utf8, t) if a_literal => Some(t.clone()),
        (t, DataType::Utf8) if b_literal => Some(t.clone()),
        _ => None,
    }
}

pub fn cast_if_needed(e: Expr, from: &DataType, to: &DataType) -> Expr {
    if from == to {
        e
    } else {
        e.cast(to.clone())
    }
}

fn is_literal(e: &Expr) -> bool {
    matches!(e, Expr::Literal(_))
        || matches!(e, Expr::Cast { expr, .. } if matches!(**expr, Expr::Literal(_)))
}

/// An integer literal beside a DECIMAL, typed as DuckDB types it: an
/// INTEGER when it fits (so `price * 2` is DECIMAL(p + 10, s), not p + 19).
pub fn narrow_literal(e: Expr, t: DataType, other: &DataType) -> (Expr, DataType) {
    match (&e, other) {
        (Expr::Literal(ScalarValue::Int64(v)), DataType::Decimal128(..)) => {
            match i32::try_from(*v) {
                Ok(v) => (Expr::Literal(ScalarValue::Int32(v)), DataType::Int32),
                Err(_) => (e, t),
            }
        }
        _ => (e, t),
    }
}

/// Builds `l op r` with both sides cast to the type the operator needs.
pub fn binary(
    op: BinaryOp,
    l: Expr,
    lt: &DataType,
    r: Expr,
    rt: &DataType,
    shown: &str,
) -> Result<Expr> {
    let mismatch = || {
        SchedulerError::bind(format!(
            "Cannot apply {} to {} and {} in {shown}: add an explicit CAST",
            op.symbol(),
            sql_name(lt),
            sql_name(rt)
        ))
    };
    if is_interval(lt) || is_interval(rt) {
        return shift_in_time(op, l, lt, r, rt, shown);
    }
    if let Some(days) = count_days(op, lt, rt, shown) {
        return days.map(|(cast_l, cast_r, out)| {
            let e = Expr::binary(op, cast_l(l), cast_r(r));
            match out {
                DataType::Date32 => e.cast(DataType::Date32),
                _ => e,
            }
        });
    }
    if op == BinaryOp::Sub && is_temporal(lt) && is_temporal(rt) {
        return Err(SchedulerError::bind(format!(
            "Cannot apply - to {} and {} in {shown}: the difference of two timestamps is an INTERVAL, which Keel cannot return; \
             use date_diff('second', b, a) or epoch_us(a) - epoch_us(b)",
            sql_name(lt),
            sql_name(rt)
        )));
    }
    if op.is_arithmetic() && (is_temporal(lt) || is_temporal(rt)) {
        return Err(SchedulerError::bind(format!(
            "Cannot apply {} to {} and {} in {shown}: dates and times take DATE ± INTEGER days, \
             DATE - DATE, or DATE or TIMESTAMP ± INTERVAL",
            op.symbol(),
            sql_name(lt),
            sql_name(rt)
        )));
    }
    if matches!(op, BinaryOp::And | BinaryOp::Or) {
        for t in [lt, rt] {
            if !matches!(t, DataType::Boolean | DataType::Null) {
                return Err(SchedulerError::bind(format!(
                    "{} needs BOOLEAN operands, got {} in {shown}",
                    op.symbol(),
                    sql_name(t)
                )));
            }
        }
        let b = DataType::Boolean;
        return Ok(Expr::binary(
            op,
            cast_if_needed(l, lt, &b),
            cast_if_needed(r, rt, &b),
        ));
    }
    let common = common_type(lt, rt, is_literal(&l), is_literal(&r)).ok_or_else(mismatch)?;
    check_literal_cast(&l, &common)?;
    check_literal_cast(&r, &common)?;
    if op.is_arithmetic() {
        if !(is_numeric(&common) || common == DataType::Null) {
            return Err(mismatch());
        }
        // `/` is always floating-point division, as in DuckDB.
        let target = if op == BinaryOp::Div || common == DataType::Null {
            DataType::Float64
        } else {
            common
        };
        if let DataType::Decimal128(..) = target {
            // Each side keeps its own precision and scale (integers become
            // DECIMALs): the result's type follows from both, see
            // `arithmetic_type`.
            let (lt2, rt2) = (decimal_side(lt, &target), decimal_side(rt, &target));
            return Ok(Expr::binary(
                op,
                cast_if_needed(l, lt, &lt2),
                cast_if_needed(r, rt, &rt2),
            ));
        }
        return Ok(Expr::binary(
            op,
            cast_if_needed(l, lt, &target),
            cast_if_needed(r, rt, &target),
        ));
    }
    Ok(Expr::binary(
        op,
        cast_if_needed(l, lt, &common),
        cast_if_needed(r, rt, &common),
    ))
}

/// How an expression is cast: a step of [`count_days`]' plan.
type Recast = fn(Expr) -> Expr;

/// Date arithmetic in days, as DuckDB's: `date ± integer` and `integer +
/// date` are DATEs (computed in INTEGER days since the epoch, so a result
/// out of range is an overflow error), `date - date` is a BIGINT count of
/// days. Some((cast of each side, result type)) when `lt op rt` is one of
/// them (an integer minus a date is refused).
fn count_days(
    op: BinaryOp,
    lt: &DataType,
    rt: &DataType,
    shown: &str,
) -> Option<Result<(Recast, Recast, DataType)>> {
    // A NULL takes the type that makes the operation defined, as in DuckDB.
    let is_int = |t: &DataType| matches!(t, DataType::Int32 | DataType::Int64 | DataType::Null);
    let as_int: Recast = |e| e.cast(DataType::Int32);
    let as_bigint: Recast = |e| e.cast(DataType::Int32).cast(DataType::Int64);
    let date = DataType::Date32;
    Some(Ok(match (op, lt, rt) {
        (BinaryOp::Add | BinaryOp::Sub, DataType::Date32, t) if is_int(t) => (as_int, as_int, date),
        (BinaryOp::Add, t, DataType::Date32) if is_int(t) => (as_int, as_int, date),
        (BinaryOp::Sub, DataType::Date32 | DataType::Null, DataType::Date32) => {
            (as_bigint, as_bigint, DataType::Int64)
        }
        (BinaryOp::Sub, t, DataType::Date32) if is_int(t) => {
            return Some(Err(SchedulerError::bind(format!(
                "Cannot apply - to {} and DATE in {shown}: a date minus a number of days is; \
                 write the date first",
                sql_name(t)
            ))))
        }
        _ => return None,
    }))
}

/// The type of arithmetic `lt op rt` (operands as [`binary`] casts them).
pub fn arithmetic_type(op: BinaryOp, lt: &DataType, rt: &DataType) -> DataType {
    if let Some(Ok((.., out))) = count_days(op, lt, rt, "") {
        return out;
    }
    if op == BinaryOp::Div {
        return DataType::Float64;
    }
    if is_interval(lt) || is_interval(rt) {
        return timestamp_type();
    }
    match common_type(lt, rt, true, true) {
        Some(common @ DataType::Decimal128(..)) => {
            let (l, r) = (decimal_side(lt, &common), decimal_side(rt, &common));
            decimal_result(op, &l, &r).expect("two decimals")
        }
        Some(DataType::Null) | None => DataType::Float64,
        Some(t) => t,
    }
}

pub fn is_interval(t: &DataType) -> bool {
    matches!(t, DataType::Interval(_))
}

/// `date or timestamp ± interval` (and `interval + date or timestamp`): a
/// TIMESTAMP, as in DuckDB, with the time on the left.
fn shift_in_time(
    op: BinaryOp,
    l: Expr,
    lt: &DataType,
    r: Expr,
    rt: &DataType,
    shown: &str,
) -> Result<Expr> {
    let (time, time_type, interval) = match (op, is_temporal(lt), is_temporal(rt)) {
        (BinaryOp::Add | BinaryOp::Sub, true, false) if is_interval(rt) => (l, lt, r),
        (BinaryOp::Add, false, true) if is_interval(lt) => (r, rt, l),
        _ => {
            return Err(SchedulerError::bind(format!(
                "Cannot apply {} to {} and {} in {shown}: an INTERVAL is added to or subtracted from a DATE or TIMESTAMP",
                op.symbol(),
                sql_name(lt),
                sql_name(rt)
            )))
        }
    };
    let time = cast_if_needed(time, time_type, &timestamp_type());
    Ok(Expr::binary(op, time, interval))
}

/// An `INTERVAL` literal: `INTERVAL 1 YEAR`, `INTERVAL '90 minutes'`,
/// `INTERVAL '1 year 2 months'`, `INTERVAL '3' DAY`.
pub fn interval_literal(interval: &sqlparser::ast::Interval) -> Result<ScalarValue> {
    use sqlparser::ast::{Expr as E, UnaryOperator, Value};
    let bad = || {
        SchedulerError::bind(format!(
            "invalid interval {interval}: write INTERVAL 3 DAY or INTERVAL '90 minutes'"
        ))
    };
    let (negative, value) = match interval.value.as_ref() {
        E::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => (true, expr.as_ref()),
        v => (false, v),
    };
    let text = match value {
        E::Value(v) => match &v.value {
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) => s.clone(),
            _ => return Err(bad()),
        },
        _ => {
            return Err(SchedulerError::unsupported(format!(
                "interval {interval}: the quantity must be a literal"
            )))
        }
    };
    let text = match &interval.leading_field {
        Some(field) => format!("{text} {field}"),
        None => text,
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || words.len() % 2 != 0 {
        return Err(bad());
    }
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    for pair in words.chunks(2) {
        let n: i64 = pair[0].parse().map_err(|_| bad())?;
        let unit = pair[1].to_ascii_lowercase();
        // Plurals: "minutes", "hrs"; but "ms" and "us" are units of their own.
        let unit = unit
            .strip_suffix('s')
            .filter(|u| u.len() > 1)
            .unwrap_or(&unit);
        // (which field, how many of its units one of these is)
        let (field, scale): (&mut i64, i64) = match unit {
            "year" | "y" | "yr" => (&mut months, 12),
            "quarter" => (&mut months, 3),
            "month" | "mon" => (&mut months, 1),
            "week" | "w" => (&mut days, 7),
            "day" | "d" => (&mut days, 1),
            "hour" | "h" | "hr" => (&mut micros, 3_600_000_000),
            "minute" | "m" | "min" => (&mut micros, 60_000_000),
            "second" | "sec" | "s" => (&mut micros, 1_000_000),
            "millisecond" | "ms" | "msec" => (&mut micros, 1_000),
            "microsecond" | "us" | "usec" => (&mut micros, 1),
            _ => {
                return Err(SchedulerError::bind(format!(
                    "unknown interval unit '{}' in {interval}",
                    pair[1]
                )))
            }
        };
        *field = n
            .checked_mul(scale)
            .and_then(|v| field.checked_add(v))
            .ok_or_else(|| SchedulerError::bind(format!("interval {interval} is out of range")))?;
    }
    let sign = if negative { -1 } else { 1 };
    let narrow = |v: i64| i32::try_from(sign * v).map_err(|_| bad());
    Ok(ScalarValue::Interval {
        months: narrow(months)?,
        days: narrow(days)?,
        micros: sign * micros,
    })
}

/// A string literal that will be cast to `to` must convert, or the query is wrong.
fn check_literal_cast(e: &Expr, to: &DataType) -> Result<()> {
    if let Expr::Literal(ScalarValue::Utf8(text)) = e {
        if to != &DataType::Utf8 {
            let strings: ArrayRef = Arc::new(StringArray::from(vec![text.as_str()]));
            cast_with_options(
                &strings,
                to,
                &CastOptions {
                    safe: false,
                    ..Default::default()
                },
            )
            .map_err(|_| {
                SchedulerError::bind(format!(
                    "Could not convert string '{text}' to {}",
                    sql_name(to)
                ))
            })?;
        }
    }
    Ok(())
}

/// Parses a date or timestamp literal by Arrow's own cast, so it agrees with run-time casts.
pub fn temporal_literal(text: &str, to: &DataType) -> Result<ScalarValue> {
    let strings: ArrayRef = Arc::new(StringArray::from(vec![text]));
    let cast = cast_with_options(
        &strings,
        to,
        &CastOptions {
            safe: false,
            ..Default::default()
        },
    )
    .map_err(|_| SchedulerError::bind(format!("invalid {} literal '{text}'", sql_name(to))))?;
    Ok(match to {
        DataType::Date32 => ScalarValue::Date32(
            cast.as_any()
                .downcast_ref::<Date32Array>()
                .expect("date")
                .value(0),
        ),
        _ => ScalarValue::Timestamp(
            cast.as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("timestamp")
                .value(0),
        ),
    })
}

/// Folds `CAST(literal AS t)` to a literal where it can (for row-group pruning).
pub fn fold_literal(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v) => Some(v.clone()),
        Expr::Cast { expr, to } => match (fold_literal(expr)?, to) {
            (ScalarValue::Utf8(s), DataType::Date32 | DataType::Timestamp(..)) => {
                temporal_literal(&s, to).ok()
            }
            (ScalarValue::Int64(v), DataType::Float64) => Some(ScalarValue::Float64(v as f64)),
            (ScalarValue::Int32(v), DataType::Float64) => Some(ScalarValue::Float64(v as f64)),
            (ScalarValue::Int32(v), DataType::Int64) => Some(ScalarValue::Int64(v as i64)),
            (ScalarValue::Decimal128 { value, scale, .. }, DataType::Float64) => Some(
                ScalarValue::Float64(decimal_text(value, scale).parse().ok()?),
            ),
            (ScalarValue::Int64(v), DataType::Int32) => {
                i32::try_from(v).ok().map(ScalarValue::Int32)
            }
            (ScalarValue::Date32(d), DataType::Timestamp(..)) => {
                Some(ScalarValue::Timestamp(d as i64 * 86_400_000_000))
            }
            (v, t) if &v.data_type() == t => Some(v),
            _ => None,
        },
        _ => None,
    }
}

/// Orders two scalars of the same type (for pruning); None if incomparable.
pub fn compare_scalars(a: &ScalarValue, b: &ScalarValue) -> Option<std::cmp::Ordering> {
    use ScalarValue as S;
    match (a, b) {
        (S::Int32(x), S::Int32(y)) => x.partial_cmp(y),
        (S::Int64(x), S::Int64(y)) => x.partial_cmp(y),
        (S::Float64(x), S::Float64(y)) => x.partial_cmp(y),
        (S::Utf8(x), S::Utf8(y)) => x.partial_cmp(y),
        (S::Date32(x), S::Date32(y)) => x.partial_cmp(y),
        (S::Timestamp(x), S::Timestamp(y)) => x.partial_cmp(y),
        (S::Boolean(x), S::Boolean(y)) => x.partial_cmp(y),
        _ => None,
    }
}

/// `a AND b AND …`, or None for no conjuncts.
pub fn conjunction_of(exprs: &[Expr]) -> Option<Expr> {
    let mut it = exprs.iter().cloned();
    let first = it.next()?;
    Some(it.fold(first, |acc, e| Expr::binary(BinaryOp::And, acc, e)))
}
