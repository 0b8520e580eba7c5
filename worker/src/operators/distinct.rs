//! `f(DISTINCT …)` for the aggregates that have no set of their own
//! (`count`, `sum` and `avg` do, in `accumulators`): each group's distinct
//! input rows (the arguments and ORDER BY keys together, as arrow-row
//! bytes), fed to the plain aggregate once the group is complete.
//!
//! DISTINCT aggregates run in one phase after a shuffle by group, so the
//! state only travels when a final aggregation spills: one LIST column per
//! input, the lists of a group the same length (row i of each list is one
//! distinct row), so the types survive the trip to disk.

use std::collections::HashSet;

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::DataType;
use arrow_row::{RowConverter, SortField};

use super::accumulators::Accumulator;
use super::quantiles::{for_each_listed, item_type, list_state};
use crate::error::{ArrowContext, Result};

pub struct DistinctRows {
    /// The plain aggregate, reading raw rows.
    inner: Box<dyn Accumulator>,
    merge: bool,
    items: Vec<DataType>,
    converter: RowConverter,
    seen: HashSet<(u32, Box<[u8]>)>,
    bytes: usize,
    n_groups: usize,
}

impl DistinctRows {
    /// `input_types` are the raw inputs' or (merging) the LIST states'.
    pub fn new(inner: Box<dyn Accumulator>, merge: bool, input_types: &[DataType]) -> Result<Self> {
        let items: Vec<DataType> = input_types.iter().map(item_type).collect();
        let fields = items.iter().map(|t| SortField::new(t.clone())).collect();
        Ok(DistinctRows {
            inner,
            merge,
            converter: RowConverter::new(fields).context("DISTINCT aggregate")?,
            items,
            seen: HashSet::new(),
            bytes: 0,
            n_groups: 0,
        })
    }

    /// The distinct rows by group, decoded to columns, and their groups.
    fn drain(&mut self) -> Result<(Vec<u32>, Vec<ArrayRef>)> {
        let mut rows: Vec<(u32, Box<[u8]>)> = std::mem::take(&mut self.seen).into_iter().collect();
        self.bytes = 0;
        rows.sort_unstable_by_key(|(g, _)| *g);
        let parser = self.converter.parser();
        let columns = self
            .converter
            .convert_rows(rows.iter().map(|(_, r)| parser.parse(r)))
            .context("DISTINCT aggregate")?;
        Ok((rows.into_iter().map(|(g, _)| g).collect(), columns))
    }
}

impl Accumulator for DistinctRows {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.n_groups = self.n_groups.max(n_groups);
        let mut insert = |seen: &mut HashSet<(u32, Box<[u8]>)>, g: u32, row: &[u8]| {
            if seen.insert((g, row.into())) {
                self.bytes += row.len() + 32;
            }
        };
        if self.merge {
            let lists: Vec<_> = inputs.iter().map(|c| c.as_list::<i32>()).collect();
            let values: Vec<ArrayRef> = lists.iter().map(|l| l.values().clone()).collect();
            let rows = self
                .converter
                .convert_columns(&values)
                .context("DISTINCT aggregate")?;
            for_each_listed(groups, lists[0], |g, i| {
                insert(&mut self.seen, g, rows.row(i).data())
            });
        } else {
            let rows = self
                .converter
                .convert_columns(inputs)
                .context("DISTINCT aggregate")?;
            for (i, g) in groups.iter().enumerate() {
                insert(&mut self.seen, *g, rows.row(i).data());
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let (groups, columns) = self.drain()?;
        let mut counts = vec![0usize; self.n_groups];
        groups.iter().for_each(|g| counts[*g as usize] += 1);
        self.n_groups = 0;
        Ok(columns
            .into_iter()
            .zip(&self.items)
            .map(|(c, t)| list_state(t, &counts, c))
            .collect())
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let (groups, columns) = self.drain()?;
        self.inner.update(&groups, self.n_groups, &columns)?;
        self.n_groups = 0;
        self.inner.finish()
    }

    fn size(&self) -> usize {
        self.bytes + self.inner.size()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::operators::folds::Product;
    use arrow::array::{Array, Float64Array};
    use arrow::datatypes::Float64Type;

    #[test]
    fn distinct_values_survive_a_spill() {
        let x: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(2.0),
            Some(2.0),
            Some(3.0),
            None,
        ]));
        let mut states = vec![];
        for groups in [[0, 0, 0, 1], [0, 0, 1, 1]] {
            let product = Box::new(Product::default());
            let mut part = DistinctRows::new(product, false, &[DataType::Float64]).unwrap();
            part.update(&groups, 2, std::slice::from_ref(&x)).unwrap();
            states.push(part.state().unwrap());
        }
        let list_type = states[0][0].data_type().clone();
        let product = Box::new(Product::default());
        let mut merged = DistinctRows::new(product, true, &[list_type]).unwrap();
        for s in &states {
            merged.update(&[0, 1], 2, s).unwrap();
        }
        let out = merged.finish().unwrap();
        let out = out.as_primitive::<Float64Type>();
        // Group 0: {2, 3}; group 1: {3, NULL}, the NULL skipped by product.
        assert_eq!(out.value(0), 6.0);
        assert_eq!(out.value(1), 3.0);
        let mut empty =
            DistinctRows::new(Box::new(Product::default()), false, &[DataType::Float64]).unwrap();
        empty.update(&[1], 2, &[x.slice(3, 1)]).unwrap();
        assert!(empty.finish().unwrap().is_null(0));
    }
}
