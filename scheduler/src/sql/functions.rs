//! Binds scalar function calls: checks each argument against the
//! function's signature, casts it to the type the worker computes in, and
//! types the result ([`Func::return_type`]).
//!
//! Text parameters take `VARCHAR` (any type for `concat`, `concat_ws` and
//! `||`, which cast to text as DuckDB does); integer parameters take any
//! integer; real parameters any number; time parameters a `DATE` or a
//! `TIMESTAMP`; a part (`'month'`) must be a string literal and is checked
//! here, so a misspelt part is a bind error, not a task failure.

use arrow::datatypes::DataType;
use keel_proto::expr::{timestamp_type, Expr, Func, ScalarValue};
use keel_proto::func::TimePart;

use super::expr::Typed;
use super::types::{cast_if_needed, common_type, fold_literal, is_numeric, sql_name};
use crate::error::{Result, SchedulerError};

/// What a parameter accepts.
#[derive(Clone, Copy, PartialEq)]
enum Param {
    /// VARCHAR.
    Text,
    /// Any type, as text.
    AnyText,
    /// An integer, as BIGINT.
    Int,
    /// A number, as DOUBLE.
    Real,
    /// A number, in its own type.
    Number,
    /// A DATE or TIMESTAMP, in its own type.
    Time,
    /// A BIGINT or a TIMESTAMP (`epoch_ms`).
    IntOrTime,
    /// A date part name: a string literal.
    Part,
    /// A string literal (regular expression options).
    Options,
    /// A BLOB (or VARCHAR, as bytes).
    Blob,
    /// A theta sketch: a BLOB.
    Sketch,
    /// Any single value (`hash`).
    Any,
}

/// A function's parameters: `fixed` ones, the last `optional` of which may
/// be left out, then any number of `rest` (at least `min_rest`).
struct Signature {
    fixed: &'static [Param],
    optional: usize,
    rest: Option<(Param, usize)>,
}

const fn sig(fixed: &'static [Param], optional: usize) -> Signature {
    Signature {
        fixed,
        optional,
        rest: None,
    }
}

const fn variadic(fixed: &'static [Param], rest: Param, min_rest: usize) -> Signature {
    Signature {
        fixed,
        optional: 0,
        rest: Some((rest, min_rest)),
    }
}

fn signature(func: Func) -> Signature {
    use Param::*;
    match func {
        Func::Abs | Func::Floor | Func::Ceil => sig(&[Number], 0),
        Func::Round => sig(&[Number, Int], 1),
        Func::Sqrt | Func::Cbrt | Func::Ln | Func::Log10 | Func::Log2 | Func::Exp => {
            sig(&[Real], 0)
        }
        Func::Sign | Func::ToTimestamp => sig(&[Real], 0),
        Func::Power => sig(&[Real, Real], 0),
        Func::Pi => sig(&[], 0),
        Func::Lower | Func::Upper | Func::Length | Func::Reverse | Func::Md5 => sig(&[Text], 0),
        Func::OctetLength => sig(&[Blob], 0),
        Func::Concat => variadic(&[], AnyText, 1),
        Func::ConcatOp => sig(&[AnyText, AnyText], 0),
        Func::ConcatWs => variadic(&[AnyText], AnyText, 1),
        Func::Substr => sig(&[Text, Int, Int], 1),
        Func::Left | Func::Right | Func::Repeat => sig(&[Text, Int], 0),
        Func::Replace => sig(&[Text, Text, Text], 0),
        Func::Trim | Func::Ltrim | Func::Rtrim => sig(&[Text, Text], 1),
        Func::Lpad | Func::Rpad => sig(&[Text, Int, Text], 0),
        Func::SplitPart => sig(&[Text, Text, Int], 0),
        Func::StartsWith | Func::EndsWith | Func::Contains | Func::Strpos => sig(&[Text, Text], 0),
        Func::RegexpMatches => sig(&[Text, Text, Options], 1),
        Func::RegexpReplace => sig(&[Text, Text, Text, Options], 1),
        Func::RegexpExtract => sig(&[Text, Text, Int], 1),
        Func::Hash => sig(&[Any], 0),
        Func::DateTrunc | Func::DatePart => sig(&[Part, Time], 0),
        Func::DateDiff => sig(&[Part, Time, Time], 0),
        Func::Epoch => sig(&[Time], 0),
        Func::Strftime => sig(&[Time, Text], 0),
        Func::Strptime => sig(&[Text, Text], 0),
        Func::MakeDate => sig(&[Int, Int, Int], 0),
        Func::EpochMs | Func::EpochUs => sig(&[IntOrTime], 0),
        Func::MixtureMode | Func::MixtureNorm => variadic(&[Real], Real, 3),
        Func::ThetaUnion | Func::ThetaIntersect | Func::ThetaANotB => sig(&[Sketch, Sketch], 0),
        Func::ThetaEstimate => sig(&[Sketch], 0),
        Func::ThetaLowerBound | Func::ThetaUpperBound => sig(&[Sketch, Int], 0),
        Func::SingleValue => sig(&[Int, Any, Text], 0),
        Func::Coalesce | Func::Greatest | Func::Least | Func::NullIf => {
            unreachable!("bound by common type")
        }
    }
}

/// `func(args)` bound; `shown` is the call as written, for messages.
pub fn bind(func: Func, args: Vec<Typed>, shown: &str) -> Result<Typed> {
    let name = func.name();
    match func {
        Func::Coalesce | Func::Greatest | Func::Least | Func::NullIf => {
            let arity_ok = if func == Func::NullIf {
                args.len() == 2
            } else {
                !args.is_empty()
            };
            if !arity_ok {
                let wanted = if func == Func::NullIf {
                    "2"
                } else {
                    "at least 1"
                };
                return Err(arity(name, wanted, args.len(), shown));
            }
            return same_type(func, args, shown);
        }
        _ => {}
    }
    let sig = signature(func);
    let min = sig.fixed.len() - sig.optional + sig.rest.map_or(0, |(_, m)| m);
    let max = if sig.rest.is_some() {
        usize::MAX
    } else {
        sig.fixed.len()
    };
    if args.len() < min || args.len() > max {
        let wanted = match (min, max) {
            (a, b) if a == b => a.to_string(),
            (a, usize::MAX) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        return Err(arity(name, &wanted, args.len(), shown));
    }
    let mut func = func;
    let mut bound = Vec::with_capacity(args.len());
    let mut types = Vec::with_capacity(args.len());
    for (i, (x, t)) in args.into_iter().enumerate() {
        let param = sig
            .fixed
            .get(i)
            .copied()
            .or(sig.rest.map(|(p, _)| p))
            .expect("arity checked");
        let x = match param {
            Param::Part => {
                let part = part_of(&x, name, shown)?;
                if part == TimePart::Epoch && func == Func::DatePart {
                    // date_part('epoch', x) is fractional: its own function.
                    func = Func::Epoch;
                    continue;
                }
                if func != Func::DatePart && !part.is_unit() {
                    return Err(SchedulerError::bind(format!(
                        "{name}() cannot use the part '{}' (a position, not a unit of time) in {shown}",
                        part.name()
                    )));
                }
                let x = Expr::Literal(ScalarValue::Utf8(part.name().to_string()));
                (x, DataType::Utf8)
            }
            other => coerce(other, x, &t, i, name, shown)?,
        };
        bound.push(x.0);
        types.push(x.1);
    }
    if matches!(func, Func::MixtureMode | Func::MixtureNorm) {
        // The model's numbers, cast to DOUBLE, as the literals workers read.
        for a in bound.iter_mut().skip(1) {
            if let Some(ScalarValue::Float64(v)) = fold_literal(a) {
                *a = Expr::Literal(ScalarValue::Float64(v));
            }
        }
    }
    check_constants(func, &bound, shown)?;
    if let (Func::Round, Some(DataType::Decimal128(p, s))) = (func, types.first()) {
        return Ok(round_decimal(bound, *p, *s));
    }
    let out = func.return_type(&types);
    Ok((Expr::Func { func, args: bound }, out))
}

/// `round(x, d)` of a DECIMAL(p, s): DECIMAL(p, d), by a rounding cast
/// (half away from zero), as DuckDB types it; past the scale it is `x`.
/// Negative digits round in DOUBLE.
fn round_decimal(mut args: Vec<Expr>, p: u8, s: i8) -> Typed {
    let digits = match args.get(1) {
        Some(Expr::Literal(ScalarValue::Int64(d))) => *d,
        _ => 0,
    };
    let x = args.swap_remove(0);
    if digits >= s as i64 {
        (x, DataType::Decimal128(p, s))
    } else if digits >= 0 {
        let t = DataType::Decimal128(p, digits as i8);
        (x.cast(t.clone()), t)
    } else {
        let x = x.cast(DataType::Float64);
        let round = Expr::Func {
            func: Func::Round,
            args: vec![x, Expr::Literal(ScalarValue::Int64(digits))],
        };
        (round, DataType::Float64)
    }
}

fn arity(name: &str, wanted: &str, got: usize, shown: &str) -> SchedulerError {
    SchedulerError::bind(format!(
        "{name}() takes {wanted} argument(s), got {got} in {shown}"
    ))
}

/// An argument in the type its parameter takes, or the error naming it.
fn coerce(param: Param, x: Expr, t: &DataType, i: usize, name: &str, shown: &str) -> Result<Typed> {
    let wrong = |wanted: &str| {
        SchedulerError::bind(format!(
            "{name}() needs {wanted} as argument {}, got {} in {shown}",
            i + 1,
            sql_name(t)
        ))
    };
    let null = *t == DataType::Null;
    let to = match param {
        Param::Text if null || *t == DataType::Utf8 => DataType::Utf8,
        Param::Text => return Err(wrong("VARCHAR")),
        Param::AnyText => DataType::Utf8,
        Param::Int if null || matches!(t, DataType::Int32 | DataType::Int64) => DataType::Int64,
        Param::Int => return Err(wrong("an integer")),
        Param::Real if null || is_numeric(t) => DataType::Float64,
        Param::Real => return Err(wrong("a number")),
        Param::Number if is_numeric(t) => t.clone(),
        Param::Number if null => DataType::Float64,
        Param::Number => return Err(wrong("a number")),
        Param::Time if matches!(t, DataType::Date32 | DataType::Timestamp(..)) => t.clone(),
        Param::Time if null => timestamp_type(),
        Param::Time => return Err(wrong("a DATE or TIMESTAMP")),
        Param::IntOrTime if matches!(t, DataType::Timestamp(..)) => t.clone(),
        Param::IntOrTime if null || matches!(t, DataType::Int32 | DataType::Int64) => {
            DataType::Int64
        }
        Param::IntOrTime => return Err(wrong("a BIGINT or a TIMESTAMP")),
        Param::Options if matches!(x, Expr::Literal(ScalarValue::Utf8(_))) => DataType::Utf8,
        Param::Options => return Err(wrong("a string literal of options")),
        Param::Blob if null || matches!(t, DataType::Binary | DataType::Utf8) => DataType::Binary,
        Param::Blob => return Err(wrong("a BLOB")),
        Param::Sketch if null || *t == DataType::Binary => DataType::Binary,
        Param::Sketch => return Err(wrong("a theta sketch (BLOB)")),
        Param::Any if matches!(t, DataType::Binary) => {
            return Err(wrong("a value other than a BLOB"))
        }
        Param::Any => t.clone(),
        Param::Part => unreachable!("parts are bound by the caller"),
    };
    Ok((cast_if_needed(x, t, &to), to))
}

/// The date part a literal names.
fn part_of(x: &Expr, name: &str, shown: &str) -> Result<TimePart> {
    let Expr::Literal(ScalarValue::Utf8(text)) = x else {
        return Err(SchedulerError::bind(format!(
            "{name}() takes the date part as a string literal such as 'month', in {shown}"
        )));
    };
    TimePart::parse(text).ok_or_else(|| {
        SchedulerError::bind(format!(
            "unknown date part '{text}' in {shown}; Keel knows year, quarter, month, week, day, dow, isodow, doy, hour, minute, second, millisecond, microsecond and epoch"
        ))
    })
}

/// Arguments that must be constants: round()'s digits, a sketch bound's k.
fn check_constants(func: Func, args: &[Expr], shown: &str) -> Result<()> {
    match func {
        Func::Round if args.len() == 2 => match &args[1] {
            Expr::Literal(ScalarValue::Int64(_)) => Ok(()),
            _ => Err(SchedulerError::bind(format!(
                "round() takes its digits as an integer literal, in {shown}"
            ))),
        },
        Func::MixtureMode | Func::MixtureNorm => {
            let model: Vec<f64> = args[1..]
                .iter()
                .filter_map(|a| match a {
                    Expr::Literal(ScalarValue::Float64(v)) => Some(*v),
                    _ => None,
                })
                .collect();
            let valid = model.len() == args.len() - 1
                && model.len() % 3 == 0
                && model.chunks(3).all(|m| m[0] > 0.0 && m[2] > 0.0);
            if valid {
                Ok(())
            } else {
                Err(SchedulerError::bind(format!(
                    "{}(x, w_1, mean_1, std_1, …) takes a value and, per mode, a positive weight, a mean and a positive std as constants, in {shown}",
                    func.name()
                )))
            }
        }
        Func::ThetaLowerBound | Func::ThetaUpperBound => match &args[1] {
            Expr::Literal(ScalarValue::Int64(1..=3)) => Ok(()),
            _ => Err(SchedulerError::bind(format!(
                "{}(sketch, k): k is the number of standard deviations, 1, 2 or 3, in {shown}",
                func.name()
            ))),
        },
        _ => Ok(()),
    }
}

/// `coalesce`, `nullif`, `greatest`, `least`: every argument in one type.
fn same_type(func: Func, args: Vec<Typed>, shown: &str) -> Result<Typed> {
    let mut t = DataType::Null;
    for (x, at) in &args {
        let literal = matches!(x, Expr::Literal(_));
        t = common_type(&t, at, false, literal).ok_or_else(|| {
            SchedulerError::bind(format!(
                "{}() arguments have incompatible types {} and {} in {shown}",
                func.name(),
                sql_name(&t),
                sql_name(at)
            ))
        })?;
    }
    let args = args
        .into_iter()
        .map(|(x, xt)| cast_if_needed(x, &xt, &t))
        .collect();
    Ok((Expr::Func { func, args }, t))
}
