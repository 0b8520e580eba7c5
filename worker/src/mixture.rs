//! One-dimensional Gaussian mixtures: the E step of EM as an aggregate
//! (`mixture_stats`), and the mode-specific normalisation of a value
//! (`mixture_mode`, `mixture_norm`) as scalar functions.
//!
//! A model arrives as constants `w_1, μ_1, σ_1, …, w_K, μ_K, σ_K`. Per value
//! the log densities l_k = ln w_k − ln σ_k − ½ ln 2π − (x − μ_k)² / 2σ_k²
//! give the log-likelihood L = logsumexp(l) and the responsibilities
//! γ_k = exp(l_k − L). The statistics are, per mode, Σγ, Σγ(x − μ_k) and
//! Σγ(x − μ_k)² (centred on the current mean, so variances do not cancel
//! catastrophically), with the row count and ΣL: see [`Stats`].

use crate::error::{Result, WorkerError};

/// A model with its per-mode constants precomputed.
#[derive(Debug, Clone)]
pub struct Mixture {
    means: Vec<f64>,
    stds: Vec<f64>,
    /// ln w_k − ln σ_k − ½ ln 2π.
    offsets: Vec<f64>,
    /// 1 / 2σ_k².
    curvatures: Vec<f64>,
}

impl Mixture {
    /// From `[w_1, μ_1, σ_1, …]`.
    pub fn new(params: &[f64]) -> Result<Self> {
        if params.is_empty() || !params.len().is_multiple_of(3) {
            return Err(WorkerError::eval(format!(
                "a mixture takes weight, mean and std per mode, got {} numbers",
                params.len()
            )));
        }
        let half_ln_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        let mut m = Mixture {
            means: vec![],
            stds: vec![],
            offsets: vec![],
            curvatures: vec![],
        };
        for mode in params.chunks_exact(3) {
            let (w, mean, std) = (mode[0], mode[1], mode[2]);
            if !(w > 0.0 && std > 0.0 && mean.is_finite() && std.is_finite()) {
                return Err(WorkerError::eval(format!(
                    "a mixture mode needs a positive weight and std, got weight {w}, mean {mean}, std {std}"
                )));
            }
            m.means.push(mean);
            m.stds.push(std);
            m.offsets.push(w.ln() - std.ln() - half_ln_2pi);
            m.curvatures.push(1.0 / (2.0 * std * std));
        }
        Ok(m)
    }

    pub fn modes(&self) -> usize {
        self.means.len()
    }

    /// Each mode's log density at `x` into `out`; returns the largest.
    #[inline]
    fn log_densities(&self, x: f64, out: &mut [f64]) -> f64 {
        let mut best = f64::NEG_INFINITY;
        for k in 0..self.means.len() {
            let d = x - self.means[k];
            let l = self.offsets[k] - d * d * self.curvatures[k];
            out[k] = l;
            best = best.max(l);
        }
        best
    }

    /// The most probable mode of `x`.
    pub fn mode_of(&self, x: f64, scratch: &mut [f64]) -> usize {
        self.log_densities(x, scratch);
        let mut best = 0;
        for k in 1..self.means.len() {
            if scratch[k] > scratch[best] {
                best = k;
            }
        }
        best
    }

    /// `(x − μ) / 4σ` of `mode`.
    pub fn normalise(&self, x: f64, mode: usize) -> f64 {
        (x - self.means[mode]) / (4.0 * self.stds[mode])
    }
}

/// The E step's sums over some rows: `[n, ΣL, (Σγ, Σγd, Σγd²) per mode]`
/// with d = x − μ_k. Merged by adding; serialized as little-endian f64s.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats(pub Vec<f64>);

impl Stats {
    pub fn empty(modes: usize) -> Self {
        Stats(vec![0.0; 2 + 3 * modes])
    }

    /// Adds the rows `xs` under `model`.
    pub fn add_values(&mut self, model: &Mixture, xs: impl Iterator<Item = f64>) {
        self.add_weighted(model, xs.map(|x| (x, 1.0)));
    }

    /// Adds values each standing for `weight` rows (a histogram's bins).
    pub fn add_weighted(&mut self, model: &Mixture, points: impl Iterator<Item = (f64, f64)>) {
        let k = model.modes();
        let mut l = vec![0.0; k];
        let s = &mut self.0;
        for (x, weight) in points {
            let best = model.log_densities(x, &mut l);
            let mut total = 0.0;
            for v in l.iter_mut() {
                *v = (*v - best).exp();
                total += *v;
            }
            s[0] += weight;
            s[1] += weight * (best + total.ln());
            let share = weight / total;
            for (j, g) in l.iter().enumerate() {
                let g = g * share;
                let d = x - model.means[j];
                let at = 2 + 3 * j;
                s[at] += g;
                s[at + 1] += g * d;
                s[at + 2] += g * d * d;
            }
        }
    }

    pub fn merge(&mut self, other: &Stats) -> Result<()> {
        if other.0.len() != self.0.len() {
            return Err(WorkerError::eval(format!(
                "mixture statistics of {} and {} numbers do not merge",
                self.0.len(),
                other.0.len()
            )));
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if !bytes.len().is_multiple_of(8) {
            return Err(WorkerError::eval("mixture statistics are not whole f64s"));
        }
        Ok(Stats(
            bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responsibilities_sum_to_one_and_split_by_distance() {
        let m = Mixture::new(&[0.5, 0.0, 1.0, 0.5, 10.0, 1.0]).unwrap();
        let mut s = Stats::empty(2);
        s.add_values(&m, [0.0, 10.0, 5.0].into_iter());
        assert_eq!(s.0[0], 3.0);
        // Σγ over modes is the row count; 5.0 is split evenly.
        assert!((s.0[2] + s.0[5] - 3.0).abs() < 1e-12);
        assert!((s.0[2] - 1.5).abs() < 1e-9, "{:?}", s.0);
        let mut scratch = [0.0; 2];
        assert_eq!(m.mode_of(9.0, &mut scratch), 1);
        assert_eq!(m.normalise(12.0, 1), 0.5);
        let back = Stats::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back, s);
    }
}
