//! `mixture_stats(x, w_1, μ_1, σ_1, …)`: the E step of EM for one column
//! under a given mixture, per group, as a BLOB of sums (see
//! [`crate::mixture::Stats`]). The sums add up across tasks, so the
//! partial states merge in a tree like any other.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray};
use arrow::datatypes::Float64Type;

use super::accumulators::Accumulator;
use crate::error::Result;
use crate::mixture::{Mixture, Stats};

pub struct MixtureStats {
    model: Mixture,
    merge: bool,
    groups: Vec<Stats>,
}

impl MixtureStats {
    pub fn new(params: &[f64], merge: bool) -> Result<Self> {
        Ok(MixtureStats {
            model: Mixture::new(params)?,
            merge,
            groups: vec![],
        })
    }
}

impl Accumulator for MixtureStats {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        let empty = Stats::empty(self.model.modes());
        self.groups.resize(n_groups, empty);
        if self.merge {
            let states = inputs[0].as_binary::<i32>();
            for (i, g) in groups.iter().enumerate() {
                if states.is_valid(i) {
                    self.groups[*g as usize].merge(&Stats::from_bytes(states.value(i))?)?;
                }
            }
            return Ok(());
        }
        let values = inputs[0].as_primitive::<Float64Type>();
        let valid = |i: &usize| values.is_valid(*i) && values.value(*i).is_finite();
        if groups.iter().all(|g| *g == 0) && n_groups == 1 {
            // A global aggregate: one pass over the batch.
            let xs = (0..values.len()).filter(valid).map(|i| values.value(i));
            self.groups[0].add_values(&self.model, xs);
        } else {
            for (i, g) in groups.iter().enumerate() {
                if valid(&i) {
                    let x = std::iter::once(values.value(i));
                    self.groups[*g as usize].add_values(&self.model, x);
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finish()?])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let out: BinaryArray = std::mem::take(&mut self.groups)
            .iter()
            .map(|s| Some(s.to_bytes()))
            .collect();
        Ok(Arc::new(out))
    }

    fn size(&self) -> usize {
        self.groups.capacity() * (24 + 8 * (2 + 3 * self.model.modes()))
    }
}
