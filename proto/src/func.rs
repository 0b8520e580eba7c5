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
    /// `single_value(count, value, subquery)`: the value of a scalar
    /// subquery that was found to give `count` rows; more than one is an
    /// error naming the subquery. The binder's, not the user's.
    SingleValue,
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

/// How functions group, as the README lists them and the worker's
/// modules hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Math,
    Text,
    /// Regular expressions.
    Pattern,
    /// Dates and times.
    Time,
    Conditional,
    /// 1-D Gaussian mixtures.
    Mixture,
    /// Theta sketch BLOBs.
    Theta,
}

/// Every function under its name, with its family.
const NAMES: &[(Func, &str, Family)] = &[
    (Func::Abs, "abs", Family::Math),
    (Func::Round, "round", Family::Math),
    (Func::Floor, "floor", Family::Math),
    (Func::Ceil, "ceil", Family::Math),
    (Func::Sqrt, "sqrt", Family::Math),
    (Func::Cbrt, "cbrt", Family::Math),
    (Func::Ln, "ln", Family::Math),
    (Func::Log10, "log10", Family::Math),
    (Func::Log2, "log2", Family::Math),
    (Func::Exp, "exp", Family::Math),
    (Func::Power, "power", Family::Math),
    (Func::Sign, "sign", Family::Math),
    (Func::Pi, "pi", Family::Math),
    (Func::Greatest, "greatest", Family::Math),
    (Func::Least, "least", Family::Math),
    (Func::Lower, "lower", Family::Text),
    (Func::Upper, "upper", Family::Text),
    (Func::Length, "length", Family::Text),
    (Func::OctetLength, "octet_length", Family::Text),
    (Func::Concat, "concat", Family::Text),
    (Func::ConcatOp, "||", Family::Text),
    (Func::ConcatWs, "concat_ws", Family::Text),
    (Func::Substr, "substr", Family::Text),
    (Func::Left, "left", Family::Text),
    (Func::Right, "right", Family::Text),
    (Func::Replace, "replace", Family::Text),
    (Func::Trim, "trim", Family::Text),
    (Func::Ltrim, "ltrim", Family::Text),
    (Func::Rtrim, "rtrim", Family::Text),
    (Func::Lpad, "lpad", Family::Text),
    (Func::Rpad, "rpad", Family::Text),
    (Func::SplitPart, "split_part", Family::Text),
    (Func::StartsWith, "starts_with", Family::Text),
    (Func::EndsWith, "ends_with", Family::Text),
    (Func::Contains, "contains", Family::Text),
    (Func::Strpos, "strpos", Family::Text),
    (Func::Reverse, "reverse", Family::Text),
    (Func::Repeat, "repeat", Family::Text),
    (Func::RegexpMatches, "regexp_matches", Family::Pattern),
    (Func::RegexpReplace, "regexp_replace", Family::Pattern),
    (Func::RegexpExtract, "regexp_extract", Family::Pattern),
    (Func::Md5, "md5", Family::Text),
    (Func::Hash, "hash", Family::Text),
    (Func::DateTrunc, "date_trunc", Family::Time),
    (Func::DatePart, "date_part", Family::Time),
    (Func::Epoch, "epoch", Family::Time),
    (Func::DateDiff, "date_diff", Family::Time),
    (Func::Strftime, "strftime", Family::Time),
    (Func::Strptime, "strptime", Family::Time),
    (Func::MakeDate, "make_date", Family::Time),
    (Func::EpochMs, "epoch_ms", Family::Time),
    (Func::EpochUs, "epoch_us", Family::Time),
    (Func::ToTimestamp, "to_timestamp", Family::Time),
    (Func::Coalesce, "coalesce", Family::Conditional),
    (Func::NullIf, "nullif", Family::Conditional),
    (Func::SingleValue, "single_value", Family::Conditional),
    (Func::MixtureMode, "mixture_mode", Family::Mixture),
    (Func::MixtureNorm, "mixture_norm", Family::Mixture),
    (Func::ThetaUnion, "theta_union", Family::Theta),
    (Func::ThetaIntersect, "theta_intersect", Family::Theta),
    (Func::ThetaANotB, "theta_a_not_b", Family::Theta),
    (Func::ThetaEstimate, "theta_estimate", Family::Theta),
    (Func::ThetaLowerBound, "theta_lower_bound", Family::Theta),
    (Func::ThetaUpperBound, "theta_upper_bound", Family::Theta),
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
            .find(|(_, n, _)| *n == name)
            .map(|(f, _, _)| *f)
            .or_else(|| ALIASES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f))
    }

    fn entry(self) -> &'static (Func, &'static str, Family) {
        NAMES
            .iter()
            .find(|(f, _, _)| *f == self)
            .expect("every function has a name")
    }

    pub fn name(self) -> &'static str {
        self.entry().1
    }

    pub fn family(self) -> Family {
        self.entry().2
    }

    /// Every function name Keel knows, for error messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().map(|(_, n, _)| *n)
    }

    /// The type of `self(args)`, arguments in the binder's types.
    pub fn return_type(self, args: &[DataType]) -> DataType {
        let first = || args.first().cloned().unwrap_or(DataType::Null);
        match self {
            Func::Abs | Func::Round | Func::Coalesce | Func::NullIf => first(),
            Func::Greatest | Func::Least => first(),
            Func::SingleValue => args.get(1).cloned().unwrap_or(DataType::Null),
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
