//! Scalar functions over theta sketch BLOBs: set operations between two
//! sketches of a row, and a sketch's estimate and bounds. A NULL sketch
//! gives NULL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Float64Array};
use arrow::datatypes::Int64Type;
use datasketches::common::NumStdDev;
use datasketches::theta::{ThetaANotB, ThetaIntersection, ThetaUnionBuilder};
use keel_proto::expr::Func;

use crate::error::{Result, WorkerError};
use crate::operators::sketches::{read_theta, theta_error, THETA_SEED};

pub fn call(func: Func, args: &[ArrayRef]) -> Result<ArrayRef> {
    let sketches = args[0].as_binary::<i32>();
    let n = sketches.len();
    match func {
        Func::ThetaEstimate | Func::ThetaLowerBound | Func::ThetaUpperBound => {
            let k = match args.get(1) {
                Some(k) => match k.as_primitive::<Int64Type>().value(0) {
                    1 => NumStdDev::One,
                    2 => NumStdDev::Two,
                    _ => NumStdDev::Three,
                },
                None => NumStdDev::One,
            };
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                out.push(match sketches.is_valid(i) {
                    false => None,
                    true => {
                        let s = read_theta(sketches.value(i))?;
                        Some(match func {
                            Func::ThetaEstimate => s.estimate(),
                            Func::ThetaLowerBound => s.lower_bound(k),
                            _ => s.upper_bound(k),
                        })
                    }
                });
            }
            Ok(Arc::new(Float64Array::from(out)))
        }
        Func::ThetaUnion | Func::ThetaIntersect | Func::ThetaANotB => {
            let others = args[1].as_binary::<i32>();
            let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(n);
            for i in 0..n {
                if sketches.is_null(i) || others.is_null(i) {
                    out.push(None);
                    continue;
                }
                let (a, b) = (read_theta(sketches.value(i))?, read_theta(others.value(i))?);
                let result = match func {
                    Func::ThetaUnion => {
                        let mut u = ThetaUnionBuilder::default()
                            .seed(THETA_SEED)
                            .build()
                            .map_err(theta_error)?;
                        u.update(&a).map_err(theta_error)?;
                        u.update(&b).map_err(theta_error)?;
                        u.to_sketch(true)
                    }
                    Func::ThetaIntersect => {
                        let mut x =
                            ThetaIntersection::with_seed(THETA_SEED).map_err(theta_error)?;
                        x.update(&a).map_err(theta_error)?;
                        x.update(&b).map_err(theta_error)?;
                        x.to_sketch(true).expect("an intersection of two sketches")
                    }
                    _ => ThetaANotB::with_seed(THETA_SEED)
                        .map_err(theta_error)?
                        .compute(&a, &b, true)
                        .map_err(theta_error)?,
                };
                out.push(Some(result.serialize()));
            }
            Ok(Arc::new(out.into_iter().collect::<BinaryArray>()))
        }
        other => Err(WorkerError::eval(format!(
            "{} is not a theta function",
            other.name()
        ))),
    }
}
