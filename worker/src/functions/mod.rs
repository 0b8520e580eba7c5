//! Scalar functions, by family: [`math`], [`text`], [`pattern`] (regular
//! expressions), [`time`] (dates and timestamps), [`mixture`] (a value's
//! mode under a Gaussian mixture) and [`theta`] (sketch BLOBs);
//! conditionals here.
//!
//! The binder has checked every call and cast its arguments to the types
//! the function takes (text is `Utf8`, integers `Int64`, reals `Float64`),
//! so a function downcasts without guessing. A constant argument (a part
//! name, a pattern) is one value standing for every row.

mod math;
mod mixture;
mod pattern;
mod text;
mod theta;
mod time;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::kernels::{boolean, cmp, zip::zip};
use arrow::compute::{nullif, prep_null_mask_filter};
use keel_proto::expr::{Expr, Func, ScalarValue};
use keel_proto::func::Family;

use crate::error::{ArrowContext, Result, WorkerError};
use crate::eval::evaluate;

/// `func(args)` over every row of `batch`.
pub fn call(func: Func, args: &[Expr], batch: &RecordBatch) -> Result<ArrayRef> {
    let values = args
        .iter()
        .map(|a| evaluate(a, batch))
        .collect::<Result<Vec<_>>>()?;
    let rows = batch.num_rows();
    let a = Args {
        values: &values,
        exprs: args,
    };
    match func.family() {
        Family::Math => match func {
            Func::Pi => Ok(std::sync::Arc::new(arrow::array::Float64Array::from(
                vec![std::f64::consts::PI; rows],
            ))),
            Func::Greatest | Func::Least => extreme(func == Func::Greatest, &values),
            _ => math::call(func, &a),
        },
        Family::Text => text::call(func, &a, rows),
        Family::Pattern => pattern::call(func, &a, rows),
        Family::Time => time::call(func, &a, rows),
        Family::Mixture => mixture::call(func, &a),
        Family::Theta => theta::call(func, &values),
        Family::Conditional => conditional(func, &values),
    }
}

/// `coalesce` and `nullif`.
fn conditional(func: Func, values: &[ArrayRef]) -> Result<ArrayRef> {
    match func {
        Func::Coalesce => {
            let mut result = values[values.len() - 1].clone();
            for a in values[..values.len() - 1].iter().rev() {
                let present = boolean::is_not_null(a.as_ref()).context("coalesce")?;
                result = zip(&present, a, &result).context("coalesce")?;
            }
            Ok(result)
        }
        Func::NullIf => {
            // -0.0 equals 0.0 here too (Arrow orders doubles totally).
            let (a, b) = (
                crate::operators::normalize_key(values[0].clone()),
                crate::operators::normalize_key(values[1].clone()),
            );
            let equal = cmp::eq(&a, &b).context("nullif")?;
            nullif(&values[0], &null_as_false(&equal)).context("nullif")
        }
        Func::SingleValue => {
            let counts = values[0].as_primitive::<arrow::datatypes::Int64Type>();
            if counts.iter().flatten().any(|c| c > 1) {
                let subquery = values[2].as_string::<i32>();
                let text = if subquery.is_empty() {
                    ""
                } else {
                    subquery.value(0)
                };
                return Err(WorkerError::eval(format!(
                    "More than one row returned by a subquery used as an expression - scalar subqueries can only return a single row: {text}"
                )));
            }
            Ok(values[1].clone())
        }
        other => unreachable!("{other:?} is not a conditional"),
    }
}

/// A call's evaluated arguments, with their expressions for constants.
pub(crate) struct Args<'a> {
    values: &'a [ArrayRef],
    exprs: &'a [Expr],
}

impl Args<'_> {
    fn len(&self) -> usize {
        self.values.len()
    }

    fn get(&self, i: usize) -> &ArrayRef {
        &self.values[i]
    }

    fn text(&self, i: usize) -> Result<&arrow::array::StringArray> {
        downcast(&self.values[i])
    }

    fn int(&self, i: usize) -> Result<&arrow::array::Int64Array> {
        downcast(&self.values[i])
    }

    /// A constant text argument (a part name, regex options).
    fn constant_text(&self, i: usize, what: &str) -> Result<String> {
        match self.exprs.get(i) {
            Some(Expr::Literal(ScalarValue::Utf8(s))) => Ok(s.clone()),
            _ => Err(WorkerError::eval(format!(
                "{what} must be a constant string"
            ))),
        }
    }
}

pub(crate) fn downcast<T: 'static>(a: &ArrayRef) -> Result<&T> {
    a.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| WorkerError::eval(format!("unexpected argument type {}", a.data_type())))
}

/// `greatest` / `least`: NULLs are skipped; NULL only when every argument is.
fn extreme(greatest: bool, values: &[ArrayRef]) -> Result<ArrayRef> {
    let mut result = values[0].clone();
    for v in &values[1..] {
        let better = if greatest {
            cmp::gt(v, &result)
        } else {
            cmp::lt(v, &result)
        }
        .context("greatest/least")?;
        let missing = boolean::is_null(result.as_ref()).context("greatest/least")?;
        let take = boolean::or(&null_as_false(&better), &missing).context("greatest/least")?;
        result = zip(&take, v, &result).context("greatest/least")?;
    }
    Ok(result)
}

/// A mask with NULL read as false.
fn null_as_false(mask: &BooleanArray) -> BooleanArray {
    if mask.null_count() == 0 {
        mask.clone()
    } else {
        prep_null_mask_filter(mask)
    }
}

/// Builds a `Utf8` column row by row: `f` writes row `i`'s value into the
/// buffer and says whether it is valid.
pub(crate) fn build_text(
    rows: usize,
    mut f: impl FnMut(usize, &mut String) -> Result<bool>,
) -> Result<ArrayRef> {
    let mut out = arrow::array::StringBuilder::with_capacity(rows, rows * 8);
    let mut buf = String::new();
    for i in 0..rows {
        buf.clear();
        if f(i, &mut buf)? {
            out.append_value(&buf);
        } else {
            out.append_null();
        }
    }
    Ok(std::sync::Arc::new(out.finish()))
}
