//! `mixture_mode(x, w_1, μ_1, σ_1, …)` and `mixture_norm(x, …)`: a value's
//! most probable mode under a 1-D Gaussian mixture, and the value
//! normalised by that mode, `(x − μ) / 4σ` (CTGAN's mode-specific
//! normalisation). NULL stays NULL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int32Array};
use arrow::datatypes::Float64Type;
use keel_proto::expr::{Expr, Func, ScalarValue};

use super::Args;
use crate::error::{Result, WorkerError};
use crate::mixture::Mixture;

pub fn call(func: Func, a: &Args) -> Result<ArrayRef> {
    let params = a.exprs[1..]
        .iter()
        .map(|e| match e {
            Expr::Literal(ScalarValue::Float64(v)) => Ok(*v),
            other => Err(WorkerError::eval(format!(
                "{}() takes its model as constants, got {other}",
                func.name()
            ))),
        })
        .collect::<Result<Vec<f64>>>()?;
    let model = Mixture::new(&params)?;
    let xs = a.get(0).as_primitive::<Float64Type>();
    let mut scratch = vec![0.0; model.modes()];
    let modes: Vec<Option<usize>> = (0..xs.len())
        .map(|i| {
            xs.is_valid(i)
                .then(|| model.mode_of(xs.value(i), &mut scratch))
        })
        .collect();
    Ok(if func == Func::MixtureMode {
        let out: Int32Array = modes.iter().map(|m| m.map(|m| m as i32)).collect();
        Arc::new(out)
    } else {
        let out: Float64Array = modes
            .iter()
            .enumerate()
            .map(|(i, m)| m.map(|m| model.normalise(xs.value(i), m)))
            .collect();
        Arc::new(out)
    })
}
