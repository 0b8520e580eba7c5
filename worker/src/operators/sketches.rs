//! Sketch aggregates from Apache DataSketches.
//!
//! Values are hashed as the Java, C++ and Python libraries hash them:
//! integers (and dates, timestamps, booleans, cast to BIGINT by the
//! planner) as 64-bit longs, doubles in their canonical form (so -0.0 and
//! 0.0, and every NaN, hash alike), strings and blobs as their raw bytes.
//! Partial states are the sketches' standard serialized forms.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datasketches::common::SearchCriteria;
use datasketches::hash::value::{canonical_float, raw_bytes};
use datasketches::hll::{HllSketch, HllType, HllUnion};
use datasketches::kll::{KllFloat, KllSketch};
use datasketches::theta::{
    CompactThetaSketch, ThetaIntersection, ThetaSketch, ThetaSketchBuilder, ThetaUnion,
    ThetaUnionBuilder,
};

use super::accumulators::Accumulator;
use crate::error::{Result, WorkerError};

/// log2 of an HLL sketch's buckets: 16 Ki buckets, a relative standard
/// error of 0.8% (within 2% at two standard deviations).
pub const HLL_LG_K: u8 = 14;

/// Calls `f(row, value)` for every non-NULL value of `array`, each wrapped
/// for DataSketches' hashing.
macro_rules! for_each_hashable {
    ($array:expr, $f:expr) => {{
        let array: &ArrayRef = $array;
        match array.data_type() {
            DataType::Int64 => {
                let a = array.as_primitive::<Int64Type>();
                for i in 0..a.len() {
                    if a.is_valid(i) {
                        $f(i, a.value(i));
                    }
                }
            }
            DataType::Float64 => {
                let a = array.as_primitive::<Float64Type>();
                for i in 0..a.len() {
                    if a.is_valid(i) {
                        $f(i, canonical_float::from_f64(a.value(i)));
                    }
                }
            }
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                for i in 0..a.len() {
                    if a.is_valid(i) {
                        $f(i, raw_bytes::from_str(a.value(i)));
                    }
                }
            }
            DataType::Binary => {
                let a = array.as_binary::<i32>();
                for i in 0..a.len() {
                    if a.is_valid(i) {
                        $f(i, raw_bytes::from_slice(a.value(i)));
                    }
                }
            }
            other => {
                return Err(WorkerError::eval(format!(
                    "sketches take BIGINT, DOUBLE, VARCHAR or BLOB values, got {other}"
                )))
            }
        }
    }};
}

/// `approx_count_distinct(x)`: a HyperLogLog union per group, fed raw
/// values or (merging) serialized sketches.
pub struct ApproxCountDistinct {
    unions: Vec<Option<HllUnion>>,
    merge: bool,
    bytes: usize,
}

impl ApproxCountDistinct {
    pub fn new(merge: bool) -> Self {
        ApproxCountDistinct {
            unions: vec![],
            merge,
            bytes: 0,
        }
    }

    fn union(unions: &mut [Option<HllUnion>], g: u32) -> &mut HllUnion {
        unions[g as usize].get_or_insert_with(|| HllUnion::new(HLL_LG_K).expect("a valid lg_k"))
    }
}

impl Accumulator for ApproxCountDistinct {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.unions.resize_with(n_groups, || None);
        let unions = &mut self.unions;
        if self.merge {
            let states = inputs[0].as_binary::<i32>();
            for (i, g) in groups.iter().enumerate() {
                if states.is_null(i) {
                    continue;
                }
                let sketch = HllSketch::deserialize(states.value(i))
                    .map_err(|e| WorkerError::eval(format!("approx_count_distinct state: {e}")))?;
                Self::union(unions, *g).update(&sketch);
            }
        } else {
            for_each_hashable!(&inputs[0], |i: usize, v| Self::union(unions, groups[i])
                .update_value(v));
        }
        self.bytes = self
            .unions
            .iter()
            .flatten()
            .map(HllUnion::estimated_size)
            .sum();
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let states: BinaryArray = std::mem::take(&mut self.unions)
            .into_iter()
            .map(|u| u.map(|u| u.to_sketch(HllType::Hll8).serialize()))
            .collect();
        self.bytes = 0;
        Ok(vec![Arc::new(states)])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let counts: Int64Array = std::mem::take(&mut self.unions)
            .into_iter()
            .map(|u| Some(u.map_or(0, |u| u.estimate().round() as i64)))
            .collect();
        self.bytes = 0;
        Ok(Arc::new(counts))
    }

    fn size(&self) -> usize {
        self.bytes + self.unions.capacity() * std::mem::size_of::<Option<HllUnion>>()
    }
}

/// The seed every theta sketch is built with: DataSketches' default, so
/// sketches from the Java, C++ and Python libraries combine with Keel's.
pub const THETA_SEED: u64 = 9001;

pub fn theta_error(e: impl std::fmt::Display) -> WorkerError {
    WorkerError::eval(format!("theta sketch: {e}"))
}

/// Reads a compact theta sketch from its serialized bytes.
pub fn read_theta(bytes: &[u8]) -> Result<CompactThetaSketch> {
    CompactThetaSketch::deserialize_with_seed(bytes, THETA_SEED).map_err(theta_error)
}

fn new_union(lg_k: u8) -> Result<ThetaUnion> {
    ThetaUnionBuilder::default()
        .lg_k(lg_k)
        .seed(THETA_SEED)
        .build()
        .map_err(theta_error)
}

/// `theta_sketch(x [, lg_k])` from raw values, `theta_union_agg(s)` from
/// sketches (and the merging of either's partial states): a theta union
/// per group, raw values going to a sketch first. Empty strings are
/// skipped, as the DataSketches libraries skip them.
pub struct ThetaAgg {
    lg_k: u8,
    /// Raw values (theta_sketch before the exchange), else sketches.
    raw: bool,
    sketches: Vec<Option<ThetaSketch>>,
    unions: Vec<Option<ThetaUnion>>,
}

impl ThetaAgg {
    pub fn new(lg_k: u8, raw: bool) -> Self {
        ThetaAgg {
            lg_k,
            raw,
            sketches: vec![],
            unions: vec![],
        }
    }

    fn result(&mut self) -> Result<BinaryArray> {
        let n = self.sketches.len().max(self.unions.len());
        let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(n);
        let mut sketches = std::mem::take(&mut self.sketches).into_iter();
        let mut unions = std::mem::take(&mut self.unions).into_iter();
        for _ in 0..n {
            let sketch = sketches.next().flatten();
            let union = unions.next().flatten();
            out.push(Some(match (sketch, union) {
                (Some(s), None) => s.compact(true).serialize(),
                (s, Some(mut u)) => {
                    if let Some(s) = s {
                        u.update(&s).map_err(theta_error)?;
                    }
                    u.to_sketch(true).serialize()
                }
                // A group that met only NULLs: the empty sketch.
                (None, None) => new_union(self.lg_k)?.to_sketch(true).serialize(),
            }));
        }
        Ok(out.into_iter().collect())
    }
}

impl Accumulator for ThetaAgg {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        if self.raw {
            self.sketches.resize_with(n_groups, || None);
            let lg_k = self.lg_k;
            let sketches = &mut self.sketches;
            let mut add = |i: usize, v: &dyn Fn(&mut ThetaSketch)| -> Result<()> {
                let s = match &mut sketches[groups[i] as usize] {
                    Some(s) => s,
                    slot => slot.insert(
                        ThetaSketchBuilder::default()
                            .lg_k(lg_k)
                            .seed(THETA_SEED)
                            .build()
                            .map_err(theta_error)?,
                    ),
                };
                v(s);
                Ok(())
            };
            let array = &inputs[0];
            match array.data_type() {
                DataType::Utf8 => {
                    let a = array.as_string::<i32>();
                    for i in 0..a.len() {
                        if a.is_valid(i) && !a.value(i).is_empty() {
                            add(i, &|s| s.update(raw_bytes::from_str(a.value(i))))?;
                        }
                    }
                }
                DataType::Binary => {
                    let a = array.as_binary::<i32>();
                    for i in 0..a.len() {
                        if a.is_valid(i) && !a.value(i).is_empty() {
                            add(i, &|s| s.update(raw_bytes::from_slice(a.value(i))))?;
                        }
                    }
                }
                DataType::Int64 => {
                    let a = array.as_primitive::<Int64Type>();
                    for i in 0..a.len() {
                        if a.is_valid(i) {
                            add(i, &|s| s.update(a.value(i)))?;
                        }
                    }
                }
                DataType::Float64 => {
                    let a = array.as_primitive::<Float64Type>();
                    for i in 0..a.len() {
                        if a.is_valid(i) {
                            add(i, &|s| s.update(canonical_float::from_f64(a.value(i))))?;
                        }
                    }
                }
                other => {
                    return Err(WorkerError::eval(format!(
                        "theta_sketch() takes BIGINT, DOUBLE, VARCHAR or BLOB values, got {other}"
                    )))
                }
            }
        } else {
            self.unions.resize_with(n_groups, || None);
            let blobs = inputs[0].as_binary::<i32>();
            for (i, g) in groups.iter().enumerate() {
                if blobs.is_null(i) {
                    continue;
                }
                let sketch = read_theta(blobs.value(i))?;
                let union = match &mut self.unions[*g as usize] {
                    Some(u) => u,
                    slot => slot.insert(new_union(self.lg_k)?),
                };
                union.update(&sketch).map_err(theta_error)?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(vec![Arc::new(self.result()?)])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(Arc::new(self.result()?))
    }

    fn size(&self) -> usize {
        self.sketches
            .iter()
            .flatten()
            .map(ThetaSketch::estimated_size)
            .sum::<usize>()
            + self
                .unions
                .iter()
                .flatten()
                .map(ThetaUnion::estimated_size)
                .sum::<usize>()
    }
}

/// `theta_intersect_agg(s)`: the intersection of a group's sketches (NULL
/// for a group with none), merging partial intersections the same way.
pub struct ThetaIntersectAgg {
    parts: Vec<Option<ThetaIntersection>>,
}

impl ThetaIntersectAgg {
    pub fn new() -> Self {
        ThetaIntersectAgg { parts: vec![] }
    }
}

impl Accumulator for ThetaIntersectAgg {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.parts.resize_with(n_groups, || None);
        let blobs = inputs[0].as_binary::<i32>();
        for (i, g) in groups.iter().enumerate() {
            if blobs.is_null(i) {
                continue;
            }
            let sketch = read_theta(blobs.value(i))?;
            let part = match &mut self.parts[*g as usize] {
                Some(p) => p,
                slot => slot.insert(ThetaIntersection::with_seed(THETA_SEED).map_err(theta_error)?),
            };
            part.update(&sketch).map_err(theta_error)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finish()?])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let out: BinaryArray = std::mem::take(&mut self.parts)
            .into_iter()
            .map(|p| p.and_then(|p| p.to_sketch(true)).map(|s| s.serialize()))
            .collect();
        Ok(Arc::new(out))
    }

    fn size(&self) -> usize {
        self.parts
            .iter()
            .flatten()
            .map(ThetaIntersection::estimated_size)
            .sum()
    }
}

/// `approx_quantile(x, q)`: a KLL sketch of each group's values (k = 200,
/// about 1.3% rank error), merged across tasks from its serialized form.
/// NaN values are left out.
pub struct ApproxQuantile {
    q: f64,
    integer: bool,
    merge: bool,
    sketches: Vec<Option<KllSketch<KllFloat<f64>>>>,
}

impl ApproxQuantile {
    pub fn new(q: f64, integer: bool, merge: bool) -> Self {
        ApproxQuantile {
            q,
            integer,
            merge,
            sketches: vec![],
        }
    }

    fn sketch(&mut self, g: u32) -> &mut KllSketch<KllFloat<f64>> {
        self.sketches[g as usize].get_or_insert_with(|| KllSketch::new(200).expect("a valid k"))
    }
}

impl Accumulator for ApproxQuantile {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.sketches.resize_with(n_groups, || None);
        if self.merge {
            let states = inputs[0].as_binary::<i32>();
            for (i, g) in groups.iter().enumerate() {
                if states.is_null(i) {
                    continue;
                }
                let other = KllSketch::<KllFloat<f64>>::deserialize(states.value(i))
                    .map_err(|e| WorkerError::eval(format!("approx_quantile state: {e}")))?;
                self.sketch(*g)
                    .merge(&other)
                    .map_err(|e| WorkerError::eval(format!("approx_quantile: {e}")))?;
            }
        } else {
            let values = inputs[0].as_primitive::<Float64Type>().clone();
            for (i, g) in groups.iter().enumerate() {
                if values.is_valid(i) {
                    if let Ok(v) = KllFloat::<f64>::new(values.value(i)) {
                        self.sketch(*g).update(v);
                    }
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let states: BinaryArray = std::mem::take(&mut self.sketches)
            .into_iter()
            .map(|s| s.map(|s| s.serialize()))
            .collect();
        Ok(vec![Arc::new(states)])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let q = self.q;
        let values = std::mem::take(&mut self.sketches)
            .into_iter()
            .map(|s| match s {
                Some(s) => s
                    .quantile(q, SearchCriteria::Inclusive)
                    .map(|v| v.map(|v| v.into_inner()))
                    .map_err(|e| WorkerError::eval(format!("approx_quantile: {e}"))),
                None => Ok(None),
            })
            .collect::<Result<Vec<Option<f64>>>>()?;
        Ok(if self.integer {
            Arc::new(Int64Array::from_iter(
                values.into_iter().map(|v| v.map(|v| v.round() as i64)),
            ))
        } else {
            Arc::new(arrow::array::Float64Array::from(values))
        })
    }

    fn size(&self) -> usize {
        self.sketches
            .iter()
            .flatten()
            .map(|s| s.num_retained() * 8 + 64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, StringArray};

    use super::*;

    /// Runs `make(false)` over `inputs` split across two partial
    /// accumulators (group = row % groups), merges their states in
    /// `make(true)`, and returns the final column.
    fn two_phase(
        make: impl Fn(bool) -> Box<dyn Accumulator>,
        input: ArrayRef,
        groups: usize,
    ) -> ArrayRef {
        let n = input.len();
        let ids: Vec<u32> = (0..n as u32).map(|i| i % groups as u32).collect();
        let half = n / 2;
        let mut states = vec![];
        for (from, to) in [(0, half), (half, n)] {
            let mut partial = make(false);
            partial
                .update(&ids[from..to], groups, &[input.slice(from, to - from)])
                .unwrap();
            states.push(partial.state().unwrap().remove(0));
        }
        let mut merge = make(true);
        for s in &states {
            let g: Vec<u32> = (0..s.len() as u32).collect();
            merge.update(&g, groups, &[s.clone()]).unwrap();
        }
        merge.finish().unwrap()
    }

    #[test]
    fn hll_counts_distinct_values_across_partial_states() {
        // 20 000 values, 5 000 distinct, over two groups (each sees all 5 000 as v % 5000).
        let values: Int64Array = (0..20_000i64).map(|i| Some(i % 5000)).collect();
        let out = two_phase(
            |m| Box::new(ApproxCountDistinct::new(m)),
            Arc::new(values),
            2,
        );
        for &c in out.as_primitive::<Int64Type>().values() {
            assert!((c - 2500).abs() <= 50, "{c}");
        }
    }

    #[test]
    fn theta_sketches_union_and_intersect_exactly_below_capacity() {
        let names: StringArray = (0..3000).map(|i| Some(format!("u{}", i % 1000))).collect();
        let out = two_phase(|m| Box::new(ThetaAgg::new(12, !m)), Arc::new(names), 1);
        let sketch = read_theta(out.as_binary::<i32>().value(0)).unwrap();
        assert_eq!(sketch.estimate(), 1000.0);

        // Two sketches overlapping in 500 values: union 1500, intersection 500.
        let a: Int64Array = (0..1000i64).map(Some).collect();
        let b: Int64Array = (500..1500i64).map(Some).collect();
        let sketch_of = |v: Int64Array| {
            let mut acc = ThetaAgg::new(12, true);
            acc.update(&vec![0; v.len()], 1, &[Arc::new(v)]).unwrap();
            acc.finish().unwrap()
        };
        let both = arrow::compute::concat(&[sketch_of(a).as_ref(), sketch_of(b).as_ref()]).unwrap();
        let mut union = ThetaAgg::new(12, false);
        union.update(&[0, 0], 1, &[both.clone()]).unwrap();
        let u = union.finish().unwrap();
        assert_eq!(
            read_theta(u.as_binary::<i32>().value(0))
                .unwrap()
                .estimate(),
            1500.0
        );
        let mut inter = ThetaIntersectAgg::new();
        inter.update(&[0, 0], 2, &[both]).unwrap();
        let i = inter.finish().unwrap();
        let i = i.as_binary::<i32>();
        assert_eq!(read_theta(i.value(0)).unwrap().estimate(), 500.0);
        // A group with no sketch has no intersection.
        assert!(i.is_null(1));
    }

    #[test]
    fn kll_quantiles_are_within_rank_error() {
        let values: Float64Array = (0..100_000).map(|i| Some((i % 1000) as f64)).collect();
        let out = two_phase(
            |m| Box::new(ApproxQuantile::new(0.9, false, m)),
            Arc::new(values),
            1,
        );
        let q = out.as_primitive::<Float64Type>().value(0);
        assert!((q - 900.0).abs() <= 20.0, "{q}");
        let ints: Float64Array = (0..1000).map(|i| Some(i as f64)).collect();
        let out = two_phase(
            |m| Box::new(ApproxQuantile::new(0.5, true, m)),
            Arc::new(ints),
            1,
        );
        let m = out.as_primitive::<Int64Type>().value(0);
        assert!((m - 500).abs() <= 15, "{m}");
    }
}
