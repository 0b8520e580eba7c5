//! `bool_and`, `bool_or` and `product`: a value per group folded with an
//! associative operation, skipping NULLs. The state is the folded value
//! itself (NULL for a group that met none), so merging states is the same
//! operation as reading rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
use arrow::buffer::NullBuffer;
use arrow::datatypes::Float64Type;

use super::accumulators::Accumulator;
use crate::error::Result;

pub struct BoolFold {
    /// `bool_and` (else `bool_or`).
    all: bool,
    values: Vec<bool>,
    seen: Vec<bool>,
}

impl BoolFold {
    pub fn new(all: bool) -> Self {
        BoolFold {
            all,
            values: vec![],
            seen: vec![],
        }
    }
}

impl Accumulator for BoolFold {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.values.resize(n_groups, self.all);
        self.seen.resize(n_groups, false);
        let input = inputs[0].as_boolean();
        for (i, g) in groups.iter().enumerate() {
            if input.is_valid(i) {
                let g = *g as usize;
                let v = input.value(i);
                self.values[g] = if self.all {
                    self.values[g] && v
                } else {
                    self.values[g] || v
                };
                self.seen[g] = true;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finish()?])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let values = std::mem::take(&mut self.values);
        let nulls = NullBuffer::from(std::mem::take(&mut self.seen));
        Ok(Arc::new(BooleanArray::new(values.into(), Some(nulls))))
    }

    fn size(&self) -> usize {
        self.values.capacity() + self.seen.capacity()
    }
}

/// `product(x)` over DOUBLE (DuckDB answers DOUBLE for every input type).
#[derive(Default)]
pub struct Product {
    values: Vec<f64>,
    seen: Vec<bool>,
}

impl Accumulator for Product {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.values.resize(n_groups, 1.0);
        self.seen.resize(n_groups, false);
        let input = inputs[0].as_primitive::<Float64Type>();
        for (i, g) in groups.iter().enumerate() {
            if input.is_valid(i) {
                let g = *g as usize;
                self.values[g] *= input.value(i);
                self.seen[g] = true;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finish()?])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let values = std::mem::take(&mut self.values);
        let nulls = NullBuffer::from(std::mem::take(&mut self.seen));
        Ok(Arc::new(Float64Array::new(values.into(), Some(nulls))))
    }

    fn size(&self) -> usize {
        self.values.capacity() * 8 + self.seen.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_merge_as_rows_do() {
        let b: ArrayRef = Arc::new(BooleanArray::from(vec![
            Some(true),
            None,
            Some(false),
            None,
        ]));
        let mut and = BoolFold::new(true);
        let mut or = BoolFold::new(false);
        and.update(&[0, 0, 1, 2], 3, std::slice::from_ref(&b))
            .unwrap();
        or.update(&[0, 0, 1, 2], 3, &[b]).unwrap();
        let (sa, so) = (and.state().unwrap(), or.state().unwrap());
        let mut merged = BoolFold::new(true);
        merged.update(&[0, 0, 1], 2, &sa).unwrap();
        let out = merged.finish().unwrap();
        assert!(!out.as_boolean().value(0));
        assert!(out.is_null(1));
        let mut merged = BoolFold::new(false);
        merged.update(&[0, 0, 0], 1, &so).unwrap();
        assert!(merged.finish().unwrap().as_boolean().value(0));

        let x: ArrayRef = Arc::new(Float64Array::from(vec![Some(2.0), None, Some(3.5)]));
        let mut p = Product::default();
        p.update(&[0, 1, 2], 3, &[x]).unwrap();
        let state = p.state().unwrap();
        let mut m = Product::default();
        m.update(&[0, 0, 0], 1, &state).unwrap();
        assert_eq!(
            m.finish().unwrap().as_primitive::<Float64Type>().value(0),
            7.0
        );
    }
}
