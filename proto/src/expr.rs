//! Physical expressions: what a worker evaluates over a batch.
//!
//! The scheduler's binder resolves names to column indices and inserts casts,
//! so by the time an expression crosses the wire both operands of a binary
//! operator have the same type and typing here is a simple walk.

use arrow_schema::{DataType, IntervalUnit, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use std::fmt;

pub use crate::func::Func;
use crate::ProtoError;

/// A constant. Integers are 64-bit; a number written with a point is a
/// DECIMAL of its digits and one with an exponent a double, as in DuckDB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ScalarValue {
    Null,
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float64(f64),
    /// `value / 10^scale`, of `precision` digits.
    Decimal128 {
        value: i128,
        precision: u8,
        scale: i8,
    },
    Utf8(String),
    /// Days since the epoch.
    Date32(i32),
    /// Microseconds since the epoch, no time zone.
    Timestamp(i64),
    /// `INTERVAL …`: months, days and microseconds, kept apart as in DuckDB
    /// (a month is not a fixed number of days).
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
}

impl ScalarValue {
    pub fn data_type(&self) -> DataType {
        match self {
            ScalarValue::Null => DataType::Null,
            ScalarValue::Boolean(_) => DataType::Boolean,
            ScalarValue::Int32(_) => DataType::Int32,
            ScalarValue::Int64(_) => DataType::Int64,
            ScalarValue::Float64(_) => DataType::Float64,
            ScalarValue::Decimal128 {
                precision, scale, ..
            } => DataType::Decimal128(*precision, *scale),
            ScalarValue::Utf8(_) => DataType::Utf8,
            ScalarValue::Date32(_) => DataType::Date32,
            ScalarValue::Timestamp(_) => timestamp_type(),
            ScalarValue::Interval { .. } => DataType::Interval(IntervalUnit::MonthDayNano),
        }
    }
}

/// A DECIMAL's digits with the point in place (`-0.06` for -6 at scale 2).
pub fn decimal_text(value: i128, scale: i8) -> String {
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    let scale = scale.max(0) as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// The most digits a DECIMAL holds (Arrow's Decimal128).
pub const DECIMAL_MAX_PRECISION: u8 = 38;

/// The type of `l op r` for two DECIMALs, by DuckDB's rules: `+` and `-`
/// keep the larger scale with one more integer digit, `*` adds precisions
/// and scales, `%` keeps the larger of each (`/` is DOUBLE and never
/// reaches here). None unless both sides are DECIMAL.
pub fn decimal_result(op: BinaryOp, l: &DataType, r: &DataType) -> Option<DataType> {
    let (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) = (l, r) else {
        return None;
    };
    let (p1, s1, p2, s2) = (*p1 as i16, *s1 as i16, *p2 as i16, *s2 as i16);
    let scale = s1.max(s2);
    let digits = (p1 - s1).max(p2 - s2);
    let (p, s) = match op {
        BinaryOp::Add | BinaryOp::Sub => (digits + scale + 1, scale),
        BinaryOp::Mul => (p1 + p2, s1 + s2),
        BinaryOp::Mod => (digits + scale, scale),
        _ => return None,
    };
    Some(DataType::Decimal128(
        (p as u8).min(DECIMAL_MAX_PRECISION),
        s as i8,
    ))
}

/// The timestamp type Keel computes in: microseconds, no time zone.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    /// `IS DISTINCT FROM`: `<>` where NULL equals NULL; never NULL itself.
    IsDistinctFrom,
    /// `IS NOT DISTINCT FROM`: `=` where NULL equals NULL; never NULL itself.
    IsNotDistinctFrom,
    And,
    Or,
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::Lt
                | BinaryOp::LtEq
                | BinaryOp::Gt
                | BinaryOp::GtEq
                | BinaryOp::IsDistinctFrom
                | BinaryOp::IsNotDistinctFrom
        )
    }

    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod
        )
    }

    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::IsDistinctFrom => "IS DISTINCT FROM",
            BinaryOp::IsNotDistinctFrom => "IS NOT DISTINCT FROM",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    Column(usize),
    Literal(ScalarValue),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Not(Box<Expr>),
    Negative(Box<Expr>),
    IsNull(Box<Expr>),
    IsNotNull(Box<Expr>),
    Like {
        expr: Box<Expr>,
        pattern: String,
        negated: bool,
        case_insensitive: bool,
    },
    /// `expr [NOT] IN (list)`; the binder casts the items to `expr`'s type.
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    /// Searched CASE; the simple form is rewritten to equalities by the binder.
    Case {
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Cast {
        expr: Box<Expr>,
        to: DataType,
    },
    /// `TRY_CAST`: NULL where the value does not convert.
    TryCast {
        expr: Box<Expr>,
        to: DataType,
    },
    Func {
        func: Func,
        args: Vec<Expr>,
    },
}

impl Expr {
    pub fn binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        }
    }

    pub fn cast(self, to: DataType) -> Expr {
        Expr::Cast {
            expr: Box::new(self),
            to,
        }
    }

    /// The type this expression produces over rows of `schema`.
    pub fn data_type(&self, schema: &Schema) -> Result<DataType, ProtoError> {
        Ok(match self {
            Expr::Column(i) => schema
                .fields()
                .get(*i)
                .ok_or_else(|| ProtoError::Type {
                    message: format!("column #{i} out of range"),
                })?
                .data_type()
                .clone(),
            Expr::Literal(v) => v.data_type(),
            Expr::Binary { op, left, right } => {
                if op.is_comparison() || matches!(op, BinaryOp::And | BinaryOp::Or) {
                    DataType::Boolean
                } else {
                    let (l, r) = (left.data_type(schema)?, right.data_type(schema)?);
                    if let Some(t) = decimal_result(*op, &l, &r) {
                        t
                    } else if l == DataType::Null {
                        r
                    } else {
                        l
                    }
                }
            }
            Expr::Not(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::Like { .. }
            | Expr::InList { .. } => DataType::Boolean,
            Expr::Negative(e) => e.data_type(schema)?,
            Expr::Case { whens, otherwise } => {
                for (_, then) in whens {
                    let t = then.data_type(schema)?;
                    if t != DataType::Null {
                        return Ok(t);
                    }
                }
                match otherwise {
                    Some(e) => e.data_type(schema)?,
                    None => DataType::Null,
                }
            }
            Expr::Cast { to, .. } | Expr::TryCast { to, .. } => to.clone(),
            Expr::Func { func, args } => {
                let types = args
                    .iter()
                    .map(|a| a.data_type(schema))
                    .collect::<Result<Vec<_>, _>>()?;
                func.return_type(&types)
            }
        })
    }

    /// Every column index this expression reads.
    pub fn columns(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Column(i) => out.push(*i),
            Expr::Literal(_) => {}
            Expr::Binary { left, right, .. } => {
                left.columns(out);
                right.columns(out);
            }
            Expr::Not(e) | Expr::Negative(e) | Expr::IsNull(e) | Expr::IsNotNull(e) => {
                e.columns(out)
            }
            Expr::Like { expr, .. } | Expr::Cast { expr, .. } | Expr::TryCast { expr, .. } => {
                expr.columns(out)
            }
            Expr::InList { expr, list, .. } => {
                expr.columns(out);
                list.iter().for_each(|e| e.columns(out));
            }
            Expr::Case { whens, otherwise } => {
                for (w, t) in whens {
                    w.columns(out);
                    t.columns(out);
                }
                if let Some(o) = otherwise {
                    o.columns(out);
                }
            }
            Expr::Func { args, .. } => args.iter().for_each(|a| a.columns(out)),
        }
    }

    /// Rewrites column indices through `map` (old index -> new index).
    pub fn remap_columns(&self, map: &dyn Fn(usize) -> usize) -> Expr {
        self.replace_columns(&|i| Expr::Column(map(i)))
    }

    /// This expression with each column reference replaced by `with(index)`.
    pub fn replace_columns(&self, map: &dyn Fn(usize) -> Expr) -> Expr {
        let r = |e: &Expr| Box::new(e.replace_columns(map));
        match self {
            Expr::Column(i) => map(*i),
            Expr::Literal(v) => Expr::Literal(v.clone()),
            Expr::Binary { op, left, right } => Expr::Binary {
                op: *op,
                left: r(left),
                right: r(right),
            },
            Expr::Not(e) => Expr::Not(r(e)),
            Expr::Negative(e) => Expr::Negative(r(e)),
            Expr::IsNull(e) => Expr::IsNull(r(e)),
            Expr::IsNotNull(e) => Expr::IsNotNull(r(e)),
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => Expr::Like {
                expr: r(expr),
                pattern: pattern.clone(),
                negated: *negated,
                case_insensitive: *case_insensitive,
            },
            Expr::InList {
                expr,
                list,
                negated,
            } => Expr::InList {
                expr: r(expr),
                list: list.iter().map(|e| e.replace_columns(map)).collect(),
                negated: *negated,
            },
            Expr::Case { whens, otherwise } => Expr::Case {
                whens: whens
                    .iter()
                    .map(|(w, t)| (w.replace_columns(map), t.replace_columns(map)))
                    .collect(),
                otherwise: otherwise.as_ref().map(|o| r(o)),
            },
            Expr::Cast { expr, to } => Expr::Cast {
                expr: r(expr),
                to: to.clone(),
            },
            Expr::TryCast { expr, to } => Expr::TryCast {
                expr: r(expr),
                to: to.clone(),
            },
            Expr::Func { func, args } => Expr::Func {
                func: *func,
                args: args.iter().map(|a| a.replace_columns(map)).collect(),
            },
        }
    }
}

impl fmt::Display for ScalarValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScalarValue::Null => write!(f, "NULL"),
            ScalarValue::Boolean(b) => write!(f, "{b}"),
            ScalarValue::Int32(v) => write!(f, "{v}"),
            ScalarValue::Int64(v) => write!(f, "{v}"),
            ScalarValue::Float64(v) => write!(f, "{v}"),
            ScalarValue::Decimal128 { value, scale, .. } => {
                write!(f, "{}", decimal_text(*value, *scale))
            }
            ScalarValue::Utf8(s) => write!(f, "'{}'", s.replace('\'', "''")),
            ScalarValue::Date32(d) => write!(f, "DATE#{d}"),
            ScalarValue::Timestamp(t) => write!(f, "TIMESTAMP#{t}"),
            ScalarValue::Interval {
                months,
                days,
                micros,
            } => write!(
                f,
                "INTERVAL '{months} months {days} days {micros} microseconds'"
            ),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_expr(self, None, f)
    }
}

/// An expression shown with the names of the columns it reads.
pub struct Named<'a> {
    pub expr: &'a Expr,
    pub schema: &'a Schema,
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_expr(self.expr, Some(self.schema), f)
    }
}

impl Expr {
    /// This expression with column names from `schema` (the input it reads).
    pub fn named<'a>(&'a self, schema: &'a Schema) -> Named<'a> {
        Named { expr: self, schema }
    }
}

fn fmt_expr(e: &Expr, names: Option<&Schema>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let n = |x: &'_ Expr| -> String {
        match names {
            Some(schema) => x.named(schema).to_string(),
            None => x.to_string(),
        }
    };
    {
        match e {
            Expr::Column(i) => match names.and_then(|s| s.fields().get(*i)) {
                Some(field) => write!(f, "{}", field.name()),
                None => write!(f, "#{i}"),
            },
            Expr::Literal(v) => write!(f, "{v}"),
            Expr::Binary { op, left, right } => {
                write!(f, "({} {} {})", n(left), op.symbol(), n(right))
            }
            Expr::Not(e) => write!(f, "NOT {}", n(e)),
            Expr::Negative(e) => write!(f, "-{}", n(e)),
            Expr::IsNull(e) => write!(f, "{} IS NULL", n(e)),
            Expr::IsNotNull(e) => write!(f, "{} IS NOT NULL", n(e)),
            Expr::Like {
                expr,
                pattern,
                negated,
                ..
            } => {
                write!(
                    f,
                    "{} {}LIKE '{pattern}'",
                    n(expr),
                    if *negated { "NOT " } else { "" }
                )
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let items: Vec<String> = list.iter().map(|v| v.to_string()).collect();
                write!(
                    f,
                    "{} {}IN ({})",
                    n(expr),
                    if *negated { "NOT " } else { "" },
                    items.join(", ")
                )
            }
            Expr::Case { whens, otherwise } => {
                write!(f, "CASE")?;
                for (w, t) in whens {
                    write!(f, " WHEN {} THEN {}", n(w), n(t))?;
                }
                if let Some(o) = otherwise {
                    write!(f, " ELSE {}", n(o))?;
                }
                write!(f, " END")
            }
            Expr::Cast { expr, to } => write!(f, "CAST({} AS {to})", n(expr)),
            Expr::TryCast { expr, to } => write!(f, "TRY_CAST({} AS {to})", n(expr)),
            Expr::Func { func, args } => {
                let items: Vec<String> = args.iter().map(|a| n(a)).collect();
                write!(f, "{}({})", func.name(), items.join(", "))
            }
        }
    }
}

/// The type Keel computes in for a type a Parquet file may hold, or None when
/// Keel does not support it. Narrow integers widen, string variants become
/// Utf8, timestamps become microseconds without a zone.
pub fn normalize_type(t: &DataType) -> Option<DataType> {
    Some(match t {
        DataType::Boolean => DataType::Boolean,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            DataType::Int32
        }
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => DataType::Float64,
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
            DataType::Decimal128(*p, *s)
        }
        DataType::Decimal256(p, s) if *p <= DECIMAL_MAX_PRECISION => DataType::Decimal128(*p, *s),
        // Wider than 38 digits: read as doubles.
        DataType::Decimal256(..) => DataType::Float64,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => DataType::Binary,
        DataType::Date32 | DataType::Date64 => DataType::Date32,
        DataType::Timestamp(..) => timestamp_type(),
        DataType::Null => DataType::Null,
        DataType::Dictionary(_, v) => return normalize_type(v),
        _ => return None,
    })
}
