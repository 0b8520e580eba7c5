//! Exact quantiles and the mode: aggregates that need every value of the
//! group. The partial state is the group's values, a LIST column, and
//! merging two states concatenates them, so the work of a group lands in
//! the task that finishes it, as in any engine that answers exactly.
//!
//! `quantile_cont` (and `median` of numbers) holds DOUBLEs; `quantile_disc`
//! and `mode` take any type, held as arrow-row bytes (which sort as the
//! values do), in one arena per accumulator rather than a vector per group.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Float64Type};
use arrow_row::{RowConverter, SortField};

use super::accumulators::Accumulator;
use crate::error::{ArrowContext, Result};

/// The item type of a LIST state, or the type itself (raw input).
pub fn item_type(t: &DataType) -> DataType {
    match t {
        DataType::List(f) => f.data_type().clone(),
        other => other.clone(),
    }
}

/// Calls `f(group, row)` for each non-NULL value of a LIST state column:
/// `row` indexes the list's values array.
pub(super) fn for_each_listed(groups: &[u32], lists: &ListArray, mut f: impl FnMut(u32, usize)) {
    let offsets = lists.value_offsets();
    for (i, g) in groups.iter().enumerate() {
        if lists.is_valid(i) {
            for row in offsets[i] as usize..offsets[i + 1] as usize {
                f(*g, row);
            }
        }
    }
}

/// A LIST column from per-group counts and the values in group order.
pub(super) fn list_state(item: &DataType, counts: &[usize], values: ArrayRef) -> ArrayRef {
    let field = Arc::new(Field::new("item", item.clone(), true));
    Arc::new(ListArray::new(
        field,
        OffsetBuffer::from_lengths(counts.iter().copied()),
        values,
        None,
    ))
}

/// `quantile_cont(x, q)` / `median(x)` over DOUBLE, as DuckDB interpolates:
/// RN = (n − 1)·|q| over the ascending values (descending for q < 0), then
/// lo + (hi − lo)·(RN − ⌊RN⌋) between the values at ⌊RN⌋ and ⌈RN⌉.
pub struct QuantileCont {
    q: f64,
    merge: bool,
    values: Vec<Vec<f64>>,
}

impl QuantileCont {
    pub fn new(q: f64, merge: bool) -> Self {
        QuantileCont {
            q,
            merge,
            values: vec![],
        }
    }
}

/// The interpolated quantile of `v` (not empty; reordered).
pub fn interpolate(v: &mut [f64], q: f64) -> f64 {
    let n = v.len();
    let rn = (n - 1) as f64 * q.abs();
    let (frn, crn) = (rn.floor() as usize, rn.ceil() as usize);
    // Descending order: index i counts from the other end.
    let at = |i: usize| if q < 0.0 { n - 1 - i } else { i };
    let (a, b) = (at(frn), at(crn));
    let (lo_i, hi_i) = (a.min(b), a.max(b));
    let (_, lo, rest) = v.select_nth_unstable_by(lo_i, |a, b| a.total_cmp(b));
    let lo = *lo;
    let hi = if hi_i == lo_i {
        lo
    } else {
        // The next value up: the least of those above lo's position.
        rest.iter()
            .copied()
            .min_by(|a, b| a.total_cmp(b))
            .unwrap_or(lo)
    };
    let (lo, hi) = if a <= b { (lo, hi) } else { (hi, lo) };
    if frn == crn {
        lo
    } else {
        lo + (hi - lo) * (rn - frn as f64)
    }
}

impl Accumulator for QuantileCont {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.values.resize_with(n_groups, Vec::new);
        if self.merge {
            let lists = inputs[0].as_list::<i32>();
            let items = lists.values().as_primitive::<Float64Type>();
            for_each_listed(groups, lists, |g, row| {
                if items.is_valid(row) {
                    self.values[g as usize].push(items.value(row));
                }
            });
        } else {
            let x = inputs[0].as_primitive::<Float64Type>();
            for (i, g) in groups.iter().enumerate() {
                if x.is_valid(i) {
                    self.values[*g as usize].push(x.value(i));
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let groups = std::mem::take(&mut self.values);
        let counts: Vec<usize> = groups.iter().map(|v| v.len()).collect();
        let values = Float64Array::from_iter_values(groups.into_iter().flatten());
        Ok(vec![list_state(
            &DataType::Float64,
            &counts,
            Arc::new(values),
        )])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let mut groups = std::mem::take(&mut self.values);
        Ok(Arc::new(Float64Array::from_iter(
            groups
                .iter_mut()
                .map(|v| (!v.is_empty()).then(|| interpolate(v, self.q))),
        )))
    }

    fn size(&self) -> usize {
        self.values.capacity() * 24 + self.values.iter().map(|v| v.capacity() * 8).sum::<usize>()
    }
}

/// What a [`Collected`] accumulator answers from a group's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pick {
    /// quantile_disc with q = num / den (num < 0: descending).
    Disc {
        num: i64,
        den: u64,
    },
    Mode,
}

/// DuckDB's discrete quantile index into n ascending values, in exact
/// integer arithmetic as DuckDB computes it for a DECIMAL q:
/// max(1, n − ⌊n·(1 − q)⌋) − 1, taken from the other end when descending.
pub fn disc_index(n: usize, num: i64, den: u64) -> usize {
    let (n128, num128, den128) = (n as u128, num.unsigned_abs() as u128, den as u128);
    let floored = ((n128 * den128 - n128 * num128) / den128) as usize;
    let i = n.saturating_sub(floored).max(1) - 1;
    if num < 0 {
        n - 1 - i
    } else {
        i
    }
}

/// One value in the arena: its group and where its row bytes are.
#[derive(Debug, Clone, Copy)]
struct Entry {
    group: u32,
    len: u32,
    start: usize,
}

/// `quantile_disc(x, q)` and `mode(x)` over any orderable type.
pub struct Collected {
    pick: Pick,
    merge: bool,
    item: DataType,
    converter: RowConverter,
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    n_groups: usize,
}

impl Collected {
    /// `input_type` is the raw argument's, or (merging) the LIST state's.
    pub fn new(pick: Pick, merge: bool, input_type: &DataType) -> Result<Self> {
        let item = item_type(input_type);
        let converter =
            RowConverter::new(vec![SortField::new(item.clone())]).context("quantile_disc")?;
        Ok(Collected {
            pick,
            merge,
            item,
            converter,
            bytes: vec![],
            entries: vec![],
            n_groups: 0,
        })
    }

    fn row_bytes(&self, e: &Entry) -> &[u8] {
        &self.bytes[e.start..e.start + e.len as usize]
    }

    /// Values of `rows_of` (a raw column or a LIST's values) joined to
    /// groups by `owners`: (group, row) pairs.
    fn push(&mut self, values: &ArrayRef, owners: &[(u32, usize)]) -> Result<()> {
        let rows = self
            .converter
            .convert_columns(std::slice::from_ref(values))
            .context("quantile_disc")?;
        for &(group, row) in owners {
            if values.is_valid(row) {
                let data = rows.row(row);
                let data = data.data();
                self.entries.push(Entry {
                    group,
                    len: data.len() as u32,
                    start: self.bytes.len(),
                });
                self.bytes.extend_from_slice(data);
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.bytes = vec![];
        self.entries = vec![];
        self.n_groups = 0;
    }

    /// Per group, the chosen entry of its sorted run `entries[lo..hi]`.
    fn choose(&self, run: &[Entry]) -> Entry {
        match self.pick {
            Pick::Disc { num, den } => run[disc_index(run.len(), num, den)],
            Pick::Mode => {
                let (mut best, mut best_len, mut i) = (run[0], 0, 0);
                while i < run.len() {
                    let value = self.row_bytes(&run[i]);
                    let mut j = i + 1;
                    while j < run.len() && self.row_bytes(&run[j]) == value {
                        j += 1;
                    }
                    // Strictly longer: of tied values the smallest wins.
                    if j - i > best_len {
                        (best, best_len) = (run[i], j - i);
                    }
                    i = j;
                }
                best
            }
        }
    }
}

impl Accumulator for Collected {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.n_groups = self.n_groups.max(n_groups);
        if self.merge {
            let lists = inputs[0].as_list::<i32>();
            let mut owners = vec![];
            for_each_listed(groups, lists, |g, row| owners.push((g, row)));
            self.push(&lists.values().clone(), &owners)
        } else {
            let owners: Vec<(u32, usize)> =
                groups.iter().enumerate().map(|(i, g)| (*g, i)).collect();
            self.push(&inputs[0], &owners)
        }
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_by_key(|e| e.group);
        let mut counts = vec![0usize; self.n_groups];
        entries.iter().for_each(|e| counts[e.group as usize] += 1);
        let parser = self.converter.parser();
        let rows = entries.iter().map(|e| parser.parse(self.row_bytes(e)));
        let values = self
            .converter
            .convert_rows(rows)
            .context("quantile_disc")?
            .remove(0);
        let state = list_state(&self.item, &counts, values);
        self.reset();
        Ok(vec![state])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_unstable_by(|a, b| {
            a.group
                .cmp(&b.group)
                .then_with(|| self.row_bytes(a).cmp(self.row_bytes(b)))
        });
        // Groups without values take a NULL, encoded once.
        let null = self
            .converter
            .convert_columns(&[arrow::array::new_null_array(&self.item, 1)])
            .context("quantile_disc")?;
        let parser = self.converter.parser();
        let mut picks = Vec::with_capacity(self.n_groups);
        let mut i = 0;
        for g in 0..self.n_groups as u32 {
            let start = i;
            while i < entries.len() && entries[i].group == g {
                i += 1;
            }
            picks.push(if i > start {
                parser.parse(self.row_bytes(&self.choose(&entries[start..i])))
            } else {
                null.row(0)
            });
        }
        let out = self
            .converter
            .convert_rows(picks)
            .context("quantile_disc")?
            .remove(0);
        self.reset();
        Ok(out)
    }

    fn size(&self) -> usize {
        self.bytes.capacity() + self.entries.capacity() * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Int64Type;

    #[test]
    fn continuous_quantiles_interpolate_as_duckdb() {
        let v = || vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(interpolate(&mut v(), 0.5), 2.5);
        assert!((interpolate(&mut v(), 0.3) - 1.9).abs() < 1e-12);
        assert_eq!(interpolate(&mut v(), 0.0), 1.0);
        assert_eq!(interpolate(&mut v(), 1.0), 4.0);
        // Descending: -0.5 of 1, 2, 3 is 2; -0.25 of 1..4 is 4 − 0.75.
        assert_eq!(interpolate(&mut [1.0, 2.0, 3.0], -0.5), 2.0);
        assert!((interpolate(&mut v(), -0.25) - 3.25).abs() < 1e-12);
        assert_eq!(interpolate(&mut [7.0], 0.9), 7.0);
    }

    #[test]
    fn discrete_index_is_exact() {
        // 1, 2, 3, 4: q 0.5 → 2, 0.3 → 2, 0.25 → 1 (DuckDB's answers).
        assert_eq!(disc_index(4, 5, 10), 1);
        assert_eq!(disc_index(4, 3, 10), 1);
        assert_eq!(disc_index(4, 25, 100), 0);
        assert_eq!(disc_index(3, 0, 1), 0);
        assert_eq!(disc_index(3, 1, 1), 2);
        // 0.3 of ten values: index 2, where 10 × 0.3 in doubles is 3.0000000000000004.
        assert_eq!(disc_index(10, 3, 10), 2);
        assert_eq!(disc_index(4, -25, 100), 3);
    }

    /// Partial states of two tasks, merged by concatenation, answer as one pass does.
    #[test]
    fn merged_states_answer_as_one_pass() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(5), None, Some(1), Some(5)]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![Some(3), Some(1), Some(5)]));
        let mut states = vec![];
        for (part, groups) in [(&a, vec![0, 0, 1, 0]), (&b, vec![1, 0, 0])] {
            let mut acc = Collected::new(Pick::Mode, false, &DataType::Int64).unwrap();
            acc.update(&groups, 2, std::slice::from_ref(part)).unwrap();
            states.push(acc.state().unwrap().remove(0));
        }
        let list_type = states[0].data_type().clone();
        for (pick, want) in [
            (Pick::Mode, [5, 1]),
            (Pick::Disc { num: 1, den: 2 }, [5, 1]),
            (Pick::Disc { num: 0, den: 1 }, [1, 1]),
        ] {
            let mut merged = Collected::new(pick, true, &list_type).unwrap();
            for s in &states {
                merged.update(&[0, 1], 2, std::slice::from_ref(s)).unwrap();
            }
            let out = merged.finish().unwrap();
            let out = out.as_primitive::<Int64Type>();
            assert_eq!(out.values().to_vec(), want, "{pick:?}");
        }
        // A group with no values is NULL.
        let mut empty = Collected::new(Pick::Mode, false, &DataType::Utf8).unwrap();
        let s: ArrayRef = Arc::new(StringArray::from(vec![None::<&str>, Some("b")]));
        empty.update(&[0, 1], 2, &[s]).unwrap();
        let out = empty.finish().unwrap();
        assert!(out.is_null(0));
        assert_eq!(out.as_string::<i32>().value(1), "b");
    }

    #[test]
    fn continuous_states_concatenate() {
        let x: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), Some(2.0), None]));
        let mut p = QuantileCont::new(0.5, false);
        p.update(&[0, 1, 1], 3, &[x]).unwrap();
        let state = p.state().unwrap().remove(0);
        let mut f = QuantileCont::new(0.5, true);
        f.update(&[0, 0, 1], 2, &[state]).unwrap();
        let out = f.finish().unwrap();
        let out = out.as_primitive::<Float64Type>();
        assert_eq!(out.value(0), 1.5);
        assert!(out.is_null(1));
    }
}
