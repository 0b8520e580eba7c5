//! Date and time functions. A `DATE` is read as its midnight, so every
//! function computes on microseconds since the epoch (UTC, no zone) and
//! goes through the calendar (chrono) only for calendar parts.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, PrimitiveArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use keel_proto::expr::Func;
use keel_proto::func::TimePart;

use super::{build_text, Args};
use crate::error::{Result, WorkerError};

const MICROS_PER_DAY: i64 = 86_400_000_000;
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

pub fn call(func: Func, a: &Args, rows: usize) -> Result<ArrayRef> {
    match func {
        Func::DateTrunc => {
            let part = part(a)?;
            let us = micros(a.get(1))?;
            let out = us
                .try_unary::<_, TimestampMicrosecondType, _>(|t| truncate(part, t))
                .map_err(|e| e.in_fn("date_trunc"))?;
            Ok(Arc::new(out))
        }
        Func::DatePart => {
            let part = part(a)?;
            let us = micros(a.get(1))?;
            let out = us
                .try_unary::<_, Int64Type, _>(|t| extract(part, t))
                .map_err(|e| e.in_fn("date_part"))?;
            Ok(Arc::new(out))
        }
        Func::Epoch => {
            let out: Float64Array = micros(a.get(0))?.unary(|t| t as f64 / 1e6);
            Ok(Arc::new(out))
        }
        Func::DateDiff => {
            let part = part(a)?;
            let (from, to) = (micros(a.get(1))?, micros(a.get(2))?);
            // Weeks are whole spans of seven days (truncated toward zero),
            // as in DuckDB; every other part counts boundaries crossed.
            let (counted, per) = match part {
                TimePart::Week => (TimePart::Day, 7),
                other => (other, 1),
            };
            let out: Int64Array = arrow::compute::try_binary(&from, &to, |f, t| {
                let (t, f) = (units(counted, t), units(counted, f));
                Ok::<_, arrow::error::ArrowError>(
                    (t.map_err(TimeError::arrow)? - f.map_err(TimeError::arrow)?) / per,
                )
            })
            .map_err(|e| WorkerError::eval(format!("date_diff(): {e}")))?;
            Ok(Arc::new(out))
        }
        Func::Strftime => {
            let us = micros(a.get(0))?;
            let format = a.text(1)?;
            build_text(rows, |i, out| {
                if us.is_null(i) || format.is_null(i) {
                    return Ok(false);
                }
                let f = duckdb_format(format.value(i))?;
                let t = civil(us.value(i)).map_err(|e| e.in_fn("strftime"))?;
                use std::fmt::Write;
                write!(out, "{}", t.format_with_items(StrftimeItems::new(&f)))
                    .expect("writing to a String");
                Ok(true)
            })
        }
        Func::Strptime => {
            let (s, format) = (a.text(0)?, a.text(1)?);
            let out: TimestampMicrosecondArray = (0..rows)
                .map(|i| {
                    if s.is_null(i) || format.is_null(i) {
                        return Ok(None);
                    }
                    parse(s.value(i), format.value(i)).map(Some)
                })
                .collect::<Result<_>>()?;
            Ok(Arc::new(out))
        }
        Func::MakeDate => {
            let (y, m, d) = (a.int(0)?, a.int(1)?, a.int(2)?);
            let out: Date32Array = (0..rows)
                .map(|i| {
                    if y.is_null(i) || m.is_null(i) || d.is_null(i) {
                        return Ok(None);
                    }
                    let (y, m, d) = (y.value(i), m.value(i), d.value(i));
                    let date = i32::try_from(y)
                        .ok()
                        .zip(u32::try_from(m).ok().zip(u32::try_from(d).ok()))
                        .and_then(|(y, (m, d))| NaiveDate::from_ymd_opt(y, m, d))
                        .ok_or_else(|| {
                            WorkerError::eval(format!("make_date(): {y}-{m}-{d} is not a date"))
                        })?;
                    Ok(Some(date.num_days_from_ce() - EPOCH_DAYS_FROM_CE))
                })
                .collect::<Result<_>>()?;
            Ok(Arc::new(out))
        }
        Func::EpochMs | Func::EpochUs => {
            let scale = if func == Func::EpochMs { 1000 } else { 1 };
            let x = a.get(0);
            if matches!(x.data_type(), DataType::Timestamp(..)) {
                let out: Int64Array = micros(x)?.unary(|t| t.div_euclid(scale));
                Ok(Arc::new(out))
            } else {
                let out = x
                    .as_primitive::<Int64Type>()
                    .try_unary::<_, TimestampMicrosecondType, _>(|v| {
                        v.checked_mul(scale).ok_or_else(|| {
                            WorkerError::eval(format!(
                                "{}(): {v} is out of the timestamp range",
                                func.name()
                            ))
                        })
                    })?;
                Ok(Arc::new(out))
            }
        }
        Func::ToTimestamp => {
            let out = a
                .get(0)
                .as_primitive::<Float64Type>()
                .try_unary::<_, TimestampMicrosecondType, _>(|s| {
                    let us = (s * 1e6).round();
                    if us.is_finite() && us.abs() < i64::MAX as f64 {
                        Ok(us as i64)
                    } else {
                        Err(WorkerError::eval(format!(
                            "to_timestamp(): {s} is out of the timestamp range"
                        )))
                    }
                })?;
            Ok(Arc::new(out))
        }
        other => unreachable!("{other:?} is not a time function"),
    }
}

/// A date or timestamp column as microseconds since the epoch.
fn micros(x: &ArrayRef) -> Result<PrimitiveArray<Int64Type>> {
    match x.data_type() {
        DataType::Date32 => Ok(x
            .as_primitive::<Date32Type>()
            .unary(|d| d as i64 * MICROS_PER_DAY)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(x
            .as_primitive::<TimestampMicrosecondType>()
            .reinterpret_cast::<Int64Type>()),
        DataType::Null => Ok(PrimitiveArray::new_null(x.len())),
        other => Err(WorkerError::eval(format!(
            "expected a DATE or TIMESTAMP, got {other}"
        ))),
    }
}

/// The part named by the first argument (the binder checked it).
fn part(a: &Args) -> Result<TimePart> {
    let name = a.constant_text(0, "the date part")?;
    TimePart::parse(&name).ok_or_else(|| WorkerError::eval(format!("unknown date part '{name}'")))
}

/// Why a value has no calendar reading.
#[derive(Debug)]
struct TimeError(String);

impl TimeError {
    fn in_fn(self, name: &str) -> WorkerError {
        WorkerError::eval(format!("{name}(): {}", self.0))
    }

    fn arrow(self) -> arrow::error::ArrowError {
        arrow::error::ArrowError::ComputeError(self.0)
    }
}

fn civil(us: i64) -> Result<NaiveDateTime, TimeError> {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.naive_utc())
        .ok_or_else(|| TimeError(format!("{us} microseconds is out of the calendar's range")))
}

fn at_midnight(date: NaiveDate) -> i64 {
    (date.num_days_from_ce() - EPOCH_DAYS_FROM_CE) as i64 * MICROS_PER_DAY
}

/// The start of the `part` holding `us`.
fn truncate(part: TimePart, us: i64) -> Result<i64, TimeError> {
    let fixed = |unit: i64| Ok(us.div_euclid(unit) * unit);
    let t = civil(us)?;
    let day = t.date();
    let first = |m: u32| NaiveDate::from_ymd_opt(day.year(), m, 1).expect("first of a month");
    match part {
        TimePart::Year => Ok(at_midnight(first(1))),
        TimePart::Quarter => Ok(at_midnight(first((day.month0() / 3) * 3 + 1))),
        TimePart::Month => Ok(at_midnight(first(day.month()))),
        TimePart::Week => {
            Ok(at_midnight(day) - day.weekday().num_days_from_monday() as i64 * MICROS_PER_DAY)
        }
        TimePart::Day => fixed(MICROS_PER_DAY),
        TimePart::Hour => fixed(3_600_000_000),
        TimePart::Minute => fixed(60_000_000),
        TimePart::Second => fixed(1_000_000),
        TimePart::Millisecond => fixed(1_000),
        TimePart::Microsecond => Ok(us),
        other => Err(TimeError(format!("cannot truncate to {}", other.name()))),
    }
}

/// `date_part(part, us)`.
fn extract(part: TimePart, us: i64) -> Result<i64, TimeError> {
    let t = civil(us)?;
    let micros_of_minute = t.second() as i64 * 1_000_000 + us.rem_euclid(1_000_000);
    Ok(match part {
        TimePart::Year => t.year() as i64,
        TimePart::Quarter => (t.month0() / 3 + 1) as i64,
        TimePart::Month => t.month() as i64,
        TimePart::Week => t.iso_week().week() as i64,
        TimePart::Day => t.day() as i64,
        TimePart::DayOfWeek => t.weekday().num_days_from_sunday() as i64,
        TimePart::IsoDayOfWeek => t.weekday().number_from_monday() as i64,
        TimePart::DayOfYear => t.ordinal() as i64,
        TimePart::Hour => t.hour() as i64,
        TimePart::Minute => t.minute() as i64,
        TimePart::Second => t.second() as i64,
        TimePart::Millisecond => micros_of_minute / 1_000,
        TimePart::Microsecond => micros_of_minute,
        TimePart::Epoch => us.div_euclid(1_000_000),
    })
}

/// A count of `part` units since a fixed origin: the difference of two
/// counts is the number of unit boundaries between two instants.
fn units(part: TimePart, us: i64) -> Result<i64, TimeError> {
    let t = civil(us)?;
    let months = t.year() as i64 * 12 + t.month0() as i64;
    Ok(match part {
        TimePart::Year => t.year() as i64,
        TimePart::Quarter => months.div_euclid(3),
        TimePart::Month => months,
        TimePart::Day => us.div_euclid(MICROS_PER_DAY),
        TimePart::Hour => us.div_euclid(3_600_000_000),
        TimePart::Minute => us.div_euclid(60_000_000),
        TimePart::Second => us.div_euclid(1_000_000),
        TimePart::Millisecond => us.div_euclid(1_000),
        TimePart::Microsecond => us,
        other => return Err(TimeError(format!("cannot count {} units", other.name()))),
    })
}

/// A DuckDB format string in chrono's dialect: `%f` is microseconds (six
/// digits), `%g` milliseconds, `%n` nanoseconds; the rest is shared.
fn duckdb_format(format: &str) -> Result<String> {
    let f = format
        .replace("%f", "%6f")
        .replace("%g", "%3f")
        .replace("%n", "%9f");
    if StrftimeItems::new(&f).any(|i| matches!(i, Item::Error)) {
        return Err(WorkerError::eval(format!(
            "invalid format string {format:?}"
        )));
    }
    Ok(f)
}

/// `strptime(s, format)`: a timestamp, or a date at midnight when the
/// format has no time of day.
fn parse(s: &str, format: &str) -> Result<i64> {
    let f = duckdb_format(format)?;
    let t = NaiveDateTime::parse_from_str(s, &f)
        .or_else(|_| NaiveDate::parse_from_str(s, &f).map(|d| d.and_time(Default::default())))
        .map_err(|e| {
            WorkerError::eval(format!(
                "strptime(): cannot parse {s:?} with format {format:?}: {e}"
            ))
        })?;
    Ok(t.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    #[test]
    fn truncation_and_parts_follow_the_calendar() {
        let t = us("2024-02-29 13:45:01.5");
        assert_eq!(
            truncate(TimePart::Month, t).unwrap(),
            us("2024-02-01 00:00:00.0")
        );
        assert_eq!(
            truncate(TimePart::Quarter, t).unwrap(),
            us("2024-01-01 00:00:00.0")
        );
        assert_eq!(
            truncate(TimePart::Week, t).unwrap(),
            us("2024-02-26 00:00:00.0")
        );
        assert_eq!(
            truncate(TimePart::Hour, t).unwrap(),
            us("2024-02-29 13:00:00.0")
        );
        assert_eq!(extract(TimePart::DayOfYear, t).unwrap(), 60);
        assert_eq!(extract(TimePart::Millisecond, t).unwrap(), 1500);
        let before = us("1969-12-31 23:59:59.5");
        assert_eq!(
            truncate(TimePart::Second, before).unwrap(),
            us("1969-12-31 23:59:59.0")
        );
    }

    #[test]
    fn differences_count_boundaries() {
        let (a, b) = (us("2024-01-31 00:00:00.0"), us("2024-02-01 00:00:00.0"));
        assert_eq!(
            units(TimePart::Month, b).unwrap() - units(TimePart::Month, a).unwrap(),
            1
        );
        assert_eq!(
            units(TimePart::Day, b).unwrap() - units(TimePart::Day, a).unwrap(),
            1
        );
    }
}
