//! Scalar functions: their names (DuckDB's) and the types they return.
//!
//! The scheduler's binder checks arguments and inserts casts, so a
//! function's arguments arrive in the types its signature names; the
//! return type then follows from the function and, for a few, from the
//! type of its first argument.

use arrow_schema::DataType;
use serde::{Deserialize, Serialize};

use crate::expr::timestamp_type;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Func {
    // Numbers.
    Abs,
    Round,
    Floor,
    Ceil,
    Sqrt,
    Cbrt,
    Ln,
    Log10,
    Log2,
    Exp,
    Power,
    Sign,
    Pi,
    Greatest,
    Least,
    // Text.
    Lower,
    Upper,
    Length,
    OctetLength,
    /// `concat(a, ...)`: NULL arguments are skipped.
    Concat,
    /// `a || b`: NULL if either is.
    ConcatOp,
    ConcatWs,
    Substr,
    Left,
    Right,
    Replace,
    Trim,
    Ltrim,
    Rtrim,
    Lpad,
    Rpad,
    SplitPart,
    StartsWith,
    EndsWith,
    Contains,
    Strpos,
    Reverse,
    Repeat,
    RegexpMatches,
    RegexpReplace,
    RegexpExtract,
    Md5,
    Hash,
    // Dates and times; a part ('month', ...) is a VARCHAR literal argument.
    DateTrunc,
    DatePart,
    /// Seconds since the epoch, fractional (`date_part('epoch', x)`).
    Epoch,
    DateDiff,
    Strftime,
    Strptime,
    MakeDate,
    /// `epoch_ms(BIGINT)` is a TIMESTAMP; `epoch_ms(TIMESTAMP)` a BIGINT.
    EpochMs,
    EpochUs,
    ToTimestamp,
    // Conditionals.
    Coalesce,
    NullIf,
    // 1-D Gaussian mixtures given as constants `w_1, μ_1, σ_1, …`.
    /// The most probable mode of a value (from 0).
    MixtureMode,
    /// `(x − μ) / 4σ` of the value's most probable mode.
    MixtureNorm,
    // Theta sketches (BLOBs).
    ThetaUnion,
    ThetaIntersect,
    ThetaANotB,
    ThetaEstimate,
    ThetaLowerBound,
    ThetaUpperBound,
}

/// Every function under its name.
const NAMES: &[(Func, &str)] = &[
    (Func::Abs, "abs"),
    (Func::Round, "round"),
    (Func::Floor, "floor"),
    (Func::Ceil, "ceil"),
    (Func::Sqrt, "sqrt"),
    (Func::Cbrt, "cbrt"),
    (Func::Ln, "ln"),
    (Func::Log10, "log10"),
    (Func::Log2, "log2"),
    (Func::Exp, "exp"),
    (Func::Power, "power"),
    (Func::Sign, "sign"),
    (Func::Pi, "pi"),
    (Func::Greatest, "greatest"),
    (Func::Least, "least"),
    (Func::Lower, "lower"),
    (Func::Upper, "upper"),
    (Func::Length, "length"),
    (Func::OctetLength, "octet_length"),
    (Func::Concat, "concat"),
    (Func::ConcatOp, "||"),
    (Func::ConcatWs, "concat_ws"),
    (Func::Substr, "substr"),
    (Func::Left, "left"),
    (Func::Right, "right"),
    (Func::Replace, "replace"),
    (Func::Trim, "trim"),
    (Func::Ltrim, "ltrim"),
    (Func::Rtrim, "rtrim"),
    (Func::Lpad, "lpad"),
    (Func::Rpad, "rpad"),
    (Func::SplitPart, "split_part"),
    (Func::StartsWith, "starts_with"),
    (Func::EndsWith, "ends_with"),
    (Func::Contains, "contains"),
    (Func::Strpos, "strpos"),
    (Func::Reverse, "reverse"),
    (Func::Repeat, "repeat"),
    (Func::RegexpMatches, "regexp_matches"),
    (Func::RegexpReplace, "regexp_replace"),
    (Func::RegexpExtract, "regexp_extract"),
    (Func::Md5, "md5"),
    (Func::Hash, "hash"),
    (Func::DateTrunc, "date_trunc"),
    (Func::DatePart, "date_part"),
    (Func::Epoch, "epoch"),
    (Func::DateDiff, "date_diff"),
    (Func::Strftime, "strftime"),
    (Func::Strptime, "strptime"),
    (Func::MakeDate, "make_date"),
    (Func::EpochMs, "epoch_ms"),
    (Func::EpochUs, "epoch_us"),
    (Func::ToTimestamp, "to_timestamp"),
    (Func::Coalesce, "coalesce"),
    (Func::NullIf, "nullif"),
    (Func::MixtureMode, "mixture_mode"),
    (Func::MixtureNorm, "mixture_norm"),
    (Func::ThetaUnion, "theta_union"),
    (Func::ThetaIntersect, "theta_intersect"),
    (Func::ThetaANotB, "theta_a_not_b"),
    (Func::ThetaEstimate, "theta_estimate"),
    (Func::ThetaLowerBound, "theta_lower_bound"),
    (Func::ThetaUpperBound, "theta_upper_bound"),
];

/// Other names DuckDB accepts for the same functions.
const ALIASES: &[(&str, Func)] = &[
    ("ceiling", Func::Ceil),
    ("pow", Func::Power),
    ("len", Func::Length),
    ("lcase", Func::Lower),
    ("ucase", Func::Upper),
    ("substring", Func::Substr),
    ("instr", Func::Strpos),
    ("prefix", Func::StartsWith),
    ("suffix", Func::EndsWith),
    ("ifnull", Func::Coalesce),
    ("datetrunc", Func::DateTrunc),
    ("datepart", Func::DatePart),
    ("datediff", Func::DateDiff),
];

impl Func {
    pub fn from_name(name: &str) -> Option<Func> {
        NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(f, _)| *f)
            .or_else(|| ALIASES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f))
    }

    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(f, _)| *f == self)
            .map(|(_, n)| *n)
            .expect("every function has a name")
    }

    /// Every function name Keel knows, for error messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().map(|(_, n)| *n)
    }

    /// The type of `self(args)`, arguments in the binder's types.
    pub fn return_type(self, args: &[DataType]) -> DataType {
        let first = || args.first().cloned().unwrap_or(DataType::Null);
        match self {
            Func::Abs | Func::Round | Func::Coalesce | Func::NullIf => first(),
            Func::Greatest | Func::Least => first(),
            Func::Floor | Func::Ceil => match first() {
                DataType::Int32 | DataType::Int64 | DataType::Decimal128(..) => first(),
                _ => DataType::Float64,
            },
            Func::Sqrt
            | Func::Cbrt
            | Func::Ln
            | Func::Log10
            | Func::Log2
            | Func::Exp
            | Func::Power
            | Func::Pi
            | Func::Epoch
            | Func::MixtureNorm => DataType::Float64,
            Func::Sign | Func::MixtureMode => DataType::Int32,
            Func::Length | Func::OctetLength | Func::Strpos | Func::Hash => DataType::Int64,
            Func::StartsWith | Func::EndsWith | Func::Contains | Func::RegexpMatches => {
                DataType::Boolean
            }
            Func::Lower
            | Func::Upper
            | Func::Concat
            | Func::ConcatOp
            | Func::ConcatWs
            | Func::Substr
            | Func::Left
            | Func::Right
            | Func::Replace
            | Func::Trim
            | Func::Ltrim
            | Func::Rtrim
            | Func::Lpad
            | Func::Rpad
            | Func::SplitPart
            | Func::Reverse
            | Func::Repeat
            | Func::RegexpReplace
            | Func::RegexpExtract
            | Func::Md5
            | Func::Strftime => DataType::Utf8,
            Func::DateTrunc | Func::Strptime | Func::ToTimestamp => timestamp_type(),
            Func::DatePart | Func::DateDiff => DataType::Int64,
            Func::MakeDate => DataType::Date32,
            Func::EpochMs | Func::EpochUs => match first() {
                DataType::Timestamp(..) => DataType::Int64,
                _ => timestamp_type(),
            },
            Func::ThetaUnion | Func::ThetaIntersect | Func::ThetaANotB => DataType::Binary,
            Func::ThetaEstimate | Func::ThetaLowerBound | Func::ThetaUpperBound => {
                DataType::Float64
            }
        }
    }
}

/// A part of a date or time, as `date_trunc`, `date_part` and `date_diff`
/// name it (DuckDB's names and abbreviations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePart {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    DayOfWeek,
    IsoDayOfWeek,
    DayOfYear,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    Epoch,
}

const PARTS: &[(TimePart, &[&str])] = &[
    (TimePart::Year, &["year", "years", "y", "yr", "yrs"]),
    (TimePart::Quarter, &["quarter", "quarters"]),
    (TimePart::Month, &["month", "months", "mon", "mons"]),
    (TimePart::Week, &["week", "weeks", "w", "weekofyear"]),
    (TimePart::Day, &["day", "days", "d", "dayofmonth"]),
    (TimePart::DayOfWeek, &["dow", "dayofweek", "weekday"]),
    (TimePart::IsoDayOfWeek, &["isodow"]),
    (TimePart::DayOfYear, &["doy", "dayofyear"]),
    (TimePart::Hour, &["hour", "hours", "h", "hr", "hrs"]),
    (TimePart::Minute, &["minute", "minutes", "m", "min", "mins"]),
    (TimePart::Second, &["second", "seconds", "s", "sec", "secs"]),
    (
        TimePart::Millisecond,
        &["millisecond", "milliseconds", "ms", "msec", "msecs"],
    ),
    (
        TimePart::Microsecond,
        &["microsecond", "microseconds", "us", "usec", "usecs"],
    ),
    (TimePart::Epoch, &["epoch"]),
];

impl TimePart {
    /// The part a (case-insensitive) name or abbreviation stands for.
    pub fn parse(name: &str) -> Option<TimePart> {
        let name = name.trim().to_ascii_lowercase();
        PARTS
            .iter()
            .find(|(_, names)| names.contains(&name.as_str()))
            .map(|(p, _)| *p)
    }

    /// The canonical name (what the binder passes on to workers).
    pub fn name(self) -> &'static str {
        PARTS
            .iter()
            .find(|(p, _)| *p == self)
            .map(|(_, names)| names[0])
            .expect("every part has a name")
    }

    /// Whether `date_trunc` and `date_diff` take this part: the units of a
    /// calendar, not the positions within one.
    pub fn is_unit(self) -> bool {
        !matches!(
            self,
            TimePart::DayOfWeek | TimePart::IsoDayOfWeek | TimePart::DayOfYear | TimePart::Epoch
        )
    }
}
