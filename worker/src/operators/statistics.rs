//! Variance, standard deviation, covariance, correlation and regression
//! aggregates, with DuckDB's formulas and NULLs.
//!
//! A group's state is its count, means and sums of squared deviations
//! (and co-moment), never raw sums of squares: Welford's update adds a
//! row, Chan's formulas merge two states, so `var_pop` of values near 1e9
//! keeps its digits where `Σx² − (Σx)²/n` would lose them all. States are
//! plain columns (count BIGINT, the rest DOUBLE); a NULL count (an empty
//! partial of a global aggregate) is an empty state.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array};
use arrow::datatypes::{Float64Type, Int64Type};
use keel_proto::plan::AggFunc;

use super::accumulators::Accumulator;
use crate::error::Result;

/// Count, mean and sum of squared deviations of one variable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub n: i64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    /// Welford's update, as DuckDB's `STDDevBaseOperation` writes it.
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        let new_mean = self.mean + (x - self.mean) / self.n as f64;
        self.m2 += (x - new_mean) * (x - self.mean);
        self.mean = new_mean;
    }

    /// Chan's parallel formula: the moments of both sets of values.
    pub fn merge(&mut self, o: &Moments) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let (na, nb) = (self.n as f64, o.n as f64);
        let n = na + nb;
        let delta = o.mean - self.mean;
        self.mean = (na * self.mean + nb * o.mean) / n;
        self.m2 += o.m2 + delta * delta * na * nb / n;
        self.n += o.n;
    }

    /// var_pop; 0 for fewer than two values (DuckDB's corr and regr
    /// functions use it so).
    fn var_pop_or_zero(&self) -> f64 {
        if self.n > 1 {
            self.m2 / self.n as f64
        } else {
            0.0
        }
    }
}

/// Moments of y and x together, with their co-moment Σ(x − x̄)(y − ȳ).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Comoments {
    pub y: Moments,
    pub x: Moments,
    pub c: f64,
}

impl Comoments {
    pub fn add(&mut self, y: f64, x: f64) {
        let n = (self.x.n + 1) as f64;
        let dx = x - self.x.mean;
        let mean_y = self.y.mean + (y - self.y.mean) / n;
        self.c += dx * (y - mean_y);
        self.y.add(y);
        self.x.add(x);
    }

    pub fn merge(&mut self, o: &Comoments) {
        if o.x.n > 0 && self.x.n > 0 {
            let (na, nb) = (self.x.n as f64, o.x.n as f64);
            let n = na + nb;
            self.c += o.c + (o.x.mean - self.x.mean) * (o.y.mean - self.y.mean) * na * nb / n;
        } else if self.x.n == 0 {
            self.c = o.c;
        }
        self.y.merge(&o.y);
        self.x.merge(&o.x);
    }

    fn covar_pop(&self) -> f64 {
        self.c / self.x.n as f64
    }

    /// DuckDB's `corr`: NaN where either standard deviation is 0.
    fn corr(&self) -> f64 {
        let sx = self.x.var_pop_or_zero().sqrt();
        let sy = self.y.var_pop_or_zero().sqrt();
        if sx * sy == 0.0 {
            return f64::NAN;
        }
        self.covar_pop() / (sx * sy)
    }

    /// DuckDB's `regr_slope`: covar_pop / var_pop(x), NaN when x is constant.
    fn slope(&self) -> f64 {
        self.covar_pop() / self.x.var_pop_or_zero()
    }
}

/// The final value of a one-variable statistic.
fn finish_moments(func: AggFunc, m: &Moments) -> Option<f64> {
    let n = m.n as f64;
    match func {
        AggFunc::VarPop => (m.n > 0).then(|| m.m2 / n),
        AggFunc::StddevPop => (m.n > 0).then(|| (m.m2 / n).sqrt()),
        AggFunc::VarSamp => (m.n > 1).then(|| m.m2 / (n - 1.0)),
        AggFunc::StddevSamp => (m.n > 1).then(|| (m.m2 / (n - 1.0)).sqrt()),
        _ => unreachable!("not a one-variable statistic"),
    }
}

/// The final value of a two-variable statistic, NULL and NaN where DuckDB
/// gives them.
fn finish_comoments(func: AggFunc, s: &Comoments) -> Option<f64> {
    let n = s.x.n;
    if n == 0 {
        return None;
    }
    match func {
        AggFunc::CovarPop => Some(s.covar_pop()),
        AggFunc::CovarSamp => (n > 1).then(|| s.c / (n - 1) as f64),
        AggFunc::Corr => Some(s.corr()),
        AggFunc::RegrSlope => Some(s.slope()),
        AggFunc::RegrIntercept => {
            let slope = s.slope();
            (!slope.is_nan()).then_some(s.y.mean - slope * s.x.mean)
        }
        AggFunc::RegrR2 => {
            if s.x.var_pop_or_zero() == 0.0 {
                None
            } else if s.y.var_pop_or_zero() == 0.0 {
                Some(1.0)
            } else {
                Some(s.corr().powi(2))
            }
        }
        _ => unreachable!("not a two-variable statistic"),
    }
}

/// `var_*` and `stddev_*`: raw DOUBLEs in, or (merging) count, mean, M2.
pub struct Variance {
    func: AggFunc,
    merge: bool,
    states: Vec<Moments>,
}

impl Variance {
    pub fn new(func: AggFunc, merge: bool) -> Self {
        Variance {
            func,
            merge,
            states: vec![],
        }
    }
}

/// Reads a state's count (NULL: an empty state) and DOUBLE columns.
fn state_parts(inputs: &[ArrayRef]) -> (&Int64Array, Vec<&Float64Array>) {
    let n = inputs[0].as_primitive::<Int64Type>();
    let rest = inputs[1..]
        .iter()
        .map(|c| c.as_primitive::<Float64Type>())
        .collect();
    (n, rest)
}

impl Accumulator for Variance {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.states.resize(n_groups, Moments::default());
        if self.merge {
            let (n, f) = state_parts(inputs);
            for (i, g) in groups.iter().enumerate() {
                if n.is_valid(i) {
                    let other = Moments {
                        n: n.value(i),
                        mean: f[0].value(i),
                        m2: f[1].value(i),
                    };
                    self.states[*g as usize].merge(&other);
                }
            }
        } else {
            let x = inputs[0].as_primitive::<Float64Type>();
            for (i, g) in groups.iter().enumerate() {
                if x.is_valid(i) {
                    self.states[*g as usize].add(x.value(i));
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let states = std::mem::take(&mut self.states);
        Ok(vec![
            Arc::new(Int64Array::from_iter_values(states.iter().map(|s| s.n))),
            Arc::new(Float64Array::from_iter_values(
                states.iter().map(|s| s.mean),
            )),
            Arc::new(Float64Array::from_iter_values(states.iter().map(|s| s.m2))),
        ])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let states = std::mem::take(&mut self.states);
        Ok(Arc::new(Float64Array::from_iter(
            states.iter().map(|s| finish_moments(self.func, s)),
        )))
    }

    fn size(&self) -> usize {
        self.states.capacity() * std::mem::size_of::<Moments>()
    }
}

/// `covar_*`, `corr` and `regr_*`: raw (y, x) DOUBLEs in, or (merging)
/// count, ȳ, x̄, M2(y), M2(x) and the co-moment.
pub struct Covariance {
    func: AggFunc,
    merge: bool,
    states: Vec<Comoments>,
}

impl Covariance {
    pub fn new(func: AggFunc, merge: bool) -> Self {
        Covariance {
            func,
            merge,
            states: vec![],
        }
    }
}

impl Accumulator for Covariance {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.states.resize(n_groups, Comoments::default());
        if self.merge {
            let (n, f) = state_parts(inputs);
            for (i, g) in groups.iter().enumerate() {
                if n.is_valid(i) {
                    let n = n.value(i);
                    let other = Comoments {
                        y: Moments {
                            n,
                            mean: f[0].value(i),
                            m2: f[2].value(i),
                        },
                        x: Moments {
                            n,
                            mean: f[1].value(i),
                            m2: f[3].value(i),
                        },
                        c: f[4].value(i),
                    };
                    self.states[*g as usize].merge(&other);
                }
            }
        } else {
            let y = inputs[0].as_primitive::<Float64Type>();
            let x = inputs[1].as_primitive::<Float64Type>();
            for (i, g) in groups.iter().enumerate() {
                if y.is_valid(i) && x.is_valid(i) {
                    self.states[*g as usize].add(y.value(i), x.value(i));
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let s = std::mem::take(&mut self.states);
        let f = |get: fn(&Comoments) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(s.iter().map(get)))
        };
        Ok(vec![
            Arc::new(Int64Array::from_iter_values(s.iter().map(|s| s.x.n))),
            f(|s| s.y.mean),
            f(|s| s.x.mean),
            f(|s| s.y.m2),
            f(|s| s.x.m2),
            f(|s| s.c),
        ])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let states = std::mem::take(&mut self.states);
        Ok(Arc::new(Float64Array::from_iter(
            states.iter().map(|s| finish_comoments(self.func, s)),
        )))
    }

    fn size(&self) -> usize {
        self.states.capacity() * std::mem::size_of::<Comoments>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(xs: &[f64]) -> Moments {
        let mut m = Moments::default();
        xs.iter().for_each(|x| m.add(*x));
        m
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * a.abs().max(b.abs())
    }

    #[test]
    fn merged_moments_equal_one_pass() {
        let xs: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 / 7.0)
            .collect();
        let whole = moments(&xs);
        // Uneven pieces, an empty one among them, merged in a tree.
        let mut left = moments(&xs[..3]);
        left.merge(&Moments::default());
        left.merge(&moments(&xs[3..400]));
        let mut right = moments(&xs[400..]);
        right.merge(&Moments::default());
        let mut empty = Moments::default();
        empty.merge(&left);
        empty.merge(&right);
        assert_eq!(empty.n, whole.n);
        assert!(close(empty.mean, whole.mean, 1e-12));
        assert!(close(empty.m2, whole.m2, 1e-12));
    }

    #[test]
    fn merges_keep_digits_near_a_large_offset() {
        // Values 1e9 + {0, 1, 2, 3}: var_pop 1.25; sums of squares (about
        // 4e21, where a double's spacing is 2^19) would lose it all. A mean
        // near 1e9 is itself rounded to 1.2e-7, hence the tolerance.
        let mut total = Moments::default();
        for chunk in 0..1000 {
            let mut part = Moments::default();
            for i in 0..4 {
                part.add(1e9 + ((i + chunk) % 4) as f64);
            }
            total.merge(&part);
        }
        assert!(close(total.m2 / total.n as f64, 1.25, 1e-7), "{total:?}");
    }

    #[test]
    fn merged_comoments_equal_one_pass() {
        let pairs: Vec<(f64, f64)> = (0..500)
            .map(|i| {
                let x = (i % 37) as f64;
                (2.0 * x + ((i * 13) % 5) as f64, x)
            })
            .collect();
        let mut whole = Comoments::default();
        pairs.iter().for_each(|(y, x)| whole.add(*y, *x));
        let mut a = Comoments::default();
        let mut b = Comoments::default();
        pairs[..123].iter().for_each(|(y, x)| a.add(*y, *x));
        pairs[123..].iter().for_each(|(y, x)| b.add(*y, *x));
        let mut merged = Comoments::default();
        merged.merge(&a);
        merged.merge(&Comoments::default());
        merged.merge(&b);
        for f in [
            AggFunc::CovarPop,
            AggFunc::CovarSamp,
            AggFunc::Corr,
            AggFunc::RegrSlope,
            AggFunc::RegrIntercept,
            AggFunc::RegrR2,
        ] {
            let (w, m) = (
                finish_comoments(f, &whole).unwrap(),
                finish_comoments(f, &merged).unwrap(),
            );
            assert!(close(w, m, 1e-12), "{f:?}: {w} vs {m}");
        }
        assert!(close(
            finish_comoments(AggFunc::RegrSlope, &whole).unwrap(),
            2.0,
            0.05
        ));
    }

    #[test]
    fn nulls_and_nans_where_duckdb_gives_them() {
        let one = moments(&[3.0]);
        assert_eq!(finish_moments(AggFunc::VarSamp, &one), None);
        assert_eq!(finish_moments(AggFunc::StddevSamp, &one), None);
        assert_eq!(finish_moments(AggFunc::VarPop, &one), Some(0.0));
        assert_eq!(finish_moments(AggFunc::VarPop, &Moments::default()), None);
        let mut flat_x = Comoments::default();
        flat_x.add(2.0, 1.0);
        flat_x.add(3.0, 1.0);
        assert!(finish_comoments(AggFunc::Corr, &flat_x).unwrap().is_nan());
        assert!(finish_comoments(AggFunc::RegrSlope, &flat_x)
            .unwrap()
            .is_nan());
        assert_eq!(finish_comoments(AggFunc::RegrIntercept, &flat_x), None);
        assert_eq!(finish_comoments(AggFunc::RegrR2, &flat_x), None);
        let mut flat_y = Comoments::default();
        flat_y.add(2.0, 1.0);
        flat_y.add(2.0, 2.0);
        assert_eq!(finish_comoments(AggFunc::RegrR2, &flat_y), Some(1.0));
        assert_eq!(finish_comoments(AggFunc::RegrSlope, &flat_y), Some(0.0));
        assert_eq!(
            finish_comoments(AggFunc::CovarSamp, &Comoments::default()),
            None
        );
    }

    #[test]
    fn the_accumulator_merges_its_own_states() {
        let values = Arc::new(Float64Array::from(vec![
            Some(1.0),
            None,
            Some(4.0),
            Some(9.0),
            Some(16.0),
        ])) as ArrayRef;
        let mut a = Variance::new(AggFunc::VarSamp, false);
        a.update(&[0, 0, 1, 0, 1], 2, &[values.slice(0, 5)])
            .unwrap();
        let state = a.state().unwrap();
        // Merge the two groups' states into one group.
        let mut m = Variance::new(AggFunc::VarSamp, true);
        m.update(&[0, 0], 1, &state).unwrap();
        let out = m.finish().unwrap();
        let want = {
            let xs = [1.0, 4.0, 9.0, 16.0];
            let mean = xs.iter().sum::<f64>() / 4.0;
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0
        };
        assert!(close(
            out.as_primitive::<Float64Type>().value(0),
            want,
            1e-12
        ));
    }
}
