//! Range join: equal keys, and a point of one side between a low and a
//! high of the other (`a.t BETWEEN s.start AND s.stop`).
//!
//! The intervals are held (reserved first) as [`KeyRuns`] ordered by
//! (keys, low), with a max-segment tree over their highs in that order.
//! The points stream past in their own order, unsorted: a point finds its
//! key's run (a hash lookup), the intervals whose low it has reached (a
//! binary search), and among those the ones whose high it has not passed
//! by descending only into subtrees whose highest high reaches it. So a
//! point costs O((1 + matches) log n), however much the intervals overlap,
//! and neither side is sorted by the plan.
//!
//! Keys, lows, highs and points are compared as arrow-row bytes, so any
//! orderable type works; a NULL key or bound never matches.

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow_row::{Row, RowConverter, Rows};
use keel_proto::expr::Expr;
use keel_proto::plan::Band;

use super::key_runs::{as_type, converter, hold, or_constant, KeyRuns};
use super::{BatchIter, BATCH_ROWS};
use crate::error::{ArrowContext, Result};
use crate::eval::{evaluate, evaluate_predicate};
use crate::memory::Reservation;

pub struct RangeJoinSpec {
    pub left: BatchIter,
    pub right: BatchIter,
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    pub left_keys: Vec<Expr>,
    pub right_keys: Vec<Expr>,
    pub band: Band,
    pub filter: Option<Expr>,
    pub schema: SchemaRef,
    pub reservation: Reservation,
}

pub fn range_join(spec: RangeJoinSpec) -> Result<BatchIter> {
    let RangeJoinSpec {
        left,
        right,
        left_schema,
        right_schema,
        left_keys,
        right_keys,
        band,
        filter,
        schema,
        mut reservation,
    } = spec;
    let (left_keys, right_keys) = (or_constant(left_keys), or_constant(right_keys));
    let (intervals, interval_schema, interval_keys, points, point_keys) = if band.points_left {
        (right, right_schema, right_keys, left, left_keys)
    } else {
        (left, left_schema, left_keys, right, right_keys)
    };
    let iv = hold(
        intervals,
        &interval_schema,
        &mut reservation,
        "range join intervals",
    )?;
    let index = Intervals::new(iv, &interval_keys, &band, &mut reservation)?;
    let mut points = Some(points);
    let mut pending: Vec<RecordBatch> = vec![];
    let _reservation = reservation;
    Ok(Box::new(std::iter::from_fn(move || loop {
        if let Some(b) = pending.pop() {
            return Some(Ok(b));
        }
        let batch = match points.as_mut()?.next() {
            None => {
                points = None;
                return None;
            }
            Some(Err(e)) => return Some(Err(e)),
            Some(Ok(b)) => b,
        };
        let run = || -> Result<Vec<RecordBatch>> {
            let mut out = vec![];
            for (ivs, pts) in index.pairs(&batch, &point_keys, &band.point)? {
                let joined = index.join(&batch, ivs, pts, band.points_left, &schema)?;
                let joined = match &filter {
                    Some(f) => {
                        let mask = evaluate_predicate(f, &joined)?;
                        filter_record_batch(&joined, &mask).context("range join filter")?
                    }
                    None => joined,
                };
                if joined.num_rows() > 0 {
                    out.push(joined);
                }
            }
            out.reverse();
            Ok(out)
        };
        match run() {
            Ok(out) => pending = out,
            Err(e) => return Some(Err(e)),
        }
    })))
}

/// The held intervals, ordered by (keys, low), and a max-segment tree of
/// their highs in that order.
struct Intervals {
    intervals: RecordBatch,
    runs: KeyRuns,
    range: RowConverter,
    range_type: DataType,
    low: Rows,
    high: Rows,
    /// `tree[node]` is the position (in `runs.order`) of the highest high
    /// below `node`; leaves start at `leaves`, positions past the end are
    /// `EMPTY`.
    tree: Vec<u32>,
    leaves: usize,
    /// Per position, the position of the highest high of its run up to it.
    running_max: Vec<u32>,
    inclusive: (bool, bool),
}

const EMPTY: u32 = u32::MAX;

impl Intervals {
    fn new(
        intervals: RecordBatch,
        keys: &[Expr],
        band: &Band,
        reservation: &mut Reservation,
    ) -> Result<Intervals> {
        let low_col = evaluate(&band.low, &intervals)?;
        let range_type = low_col.data_type().clone();
        let range = converter(std::slice::from_ref(&range_type))?;
        let high_col = as_type(evaluate(&band.high, &intervals)?, &range_type)?;
        let low = range
            .convert_columns(std::slice::from_ref(&low_col))
            .context("range join bounds")?;
        let high = range
            .convert_columns(std::slice::from_ref(&high_col))
            .context("range join bounds")?;
        // An interval with a NULL bound never matches: leave it out.
        let bounded: ArrayRef = match (low_col.logical_nulls(), high_col.logical_nulls()) {
            (None, None) => low_col.clone(),
            _ => {
                let valid: arrow::array::BooleanArray = (0..intervals.num_rows())
                    .map(|i| Some(low_col.is_valid(i) && high_col.is_valid(i)))
                    .collect();
                arrow::compute::nullif(
                    &low_col,
                    &arrow::compute::not(&valid).context("range join bounds")?,
                )
                .context("range join bounds")?
            }
        };
        let runs = KeyRuns::new(&intervals, keys, &bounded, &low)?;
        let n = runs.order.len();
        let leaves = n.next_power_of_two().max(1);
        let mut tree = vec![EMPTY; 2 * leaves];
        for (pos, slot) in tree[leaves..leaves + n].iter_mut().enumerate() {
            *slot = pos as u32;
        }
        let high_at = |pos: u32| high.row(runs.order[pos as usize] as usize);
        for node in (1..leaves).rev() {
            tree[node] = match (tree[2 * node], tree[2 * node + 1]) {
                (EMPTY, x) | (x, EMPTY) => x,
                (a, b) if high_at(b) > high_at(a) => b,
                (a, _) => a,
            };
        }
        // Per position, where the highest high of its run up to it is.
        let mut running_max = vec![0u32; n];
        for pos in 0..n {
            let first = pos == 0 || runs.run_start(pos);
            running_max[pos] = match first {
                true => pos as u32,
                false if high_at(pos as u32) > high_at(running_max[pos - 1]) => pos as u32,
                false => running_max[pos - 1],
            };
        }
        reservation.grow(
            runs.size() + low.size() + high.size() + tree.len() * 4 + running_max.len() * 4,
        )?;
        Ok(Intervals {
            intervals,
            runs,
            range,
            range_type,
            low,
            high,
            tree,
            leaves,
            running_max,
            inclusive: (band.low_inclusive, band.high_inclusive),
        })
    }

    /// The (interval, point) row pairs of one point batch, in chunks of at most a batch.
    fn pairs(
        &self,
        points: &RecordBatch,
        keys: &[Expr],
        point: &Expr,
    ) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        let (key_columns, key_rows) = self.runs.probe_keys(points, keys)?;
        let point_col = as_type(evaluate(point, points)?, &self.range_type)?;
        let p_rows = self
            .range
            .convert_columns(std::slice::from_ref(&point_col))
            .context("range join points")?;
        let (low_inclusive, _) = self.inclusive;
        let order = &self.runs.order;
        let mut chunks = vec![];
        let (mut ivs, mut pts) = (vec![], vec![]);
        for i in 0..points.num_rows() {
            if !point_col.is_valid(i) || key_columns.iter().any(|c| c.is_null(i)) {
                continue;
            }
            let Some(run) = self.runs.run(key_rows.row(i).data()) else {
                continue;
            };
            let p = p_rows.row(i);
            // The intervals of the run whose low the point has reached.
            let reached = order[run.clone()].partition_point(|&j| {
                let low = self.low.row(j as usize);
                low < p || (low_inclusive && low == p)
            });
            let before = ivs.len();
            self.holding(run.start, run.start + reached, &p, &mut ivs);
            pts.resize(pts.len() + ivs.len() - before, i as u32);
            if ivs.len() >= BATCH_ROWS {
                chunks.push((std::mem::take(&mut ivs), std::mem::take(&mut pts)));
            }
        }
        if !ivs.is_empty() {
            chunks.push((ivs, pts));
        }
        Ok(chunks)
    }

    /// Appends to `out` the intervals at positions `from..to` (one key's
    /// run, lows the point has reached) whose high it has not passed. Walks
    /// back from the last while some interval at or before reaches the
    /// point (the run's running max high says so); where that walk keeps
    /// meeting intervals that end too early (a long one earlier shadows
    /// them), the segment tree answers for the rest.
    fn holding(&self, from: usize, to: usize, p: &Row<'_>, out: &mut Vec<u32>) {
        const MISSES: usize = 8;
        let mut misses = 0;
        for pos in (from..to).rev() {
            if !self.reaches(self.running_max[pos], p) {
                return;
            }
            if self.reaches(pos as u32, p) {
                out.push(self.runs.order[pos]);
            } else {
                misses += 1;
                if misses == MISSES {
                    self.stab(1, 0, self.leaves, from, pos, p, out);
                    return;
                }
            }
        }
    }

    /// Appends to `out` the intervals at positions `from..to` (under `node`,
    /// which spans `lo..hi`) whose high the point has not passed.
    #[allow(clippy::too_many_arguments)]
    fn stab(
        &self,
        node: usize,
        lo: usize,
        hi: usize,
        from: usize,
        to: usize,
        p: &Row<'_>,
        out: &mut Vec<u32>,
    ) {
        if to <= lo || hi <= from || !self.reaches(self.tree[node], p) {
            return;
        }
        if hi - lo == 1 {
            out.push(self.runs.order[lo]);
            return;
        }
        let mid = (lo + hi) / 2;
        self.stab(2 * node, lo, mid, from, to, p, out);
        self.stab(2 * node + 1, mid, hi, from, to, p, out);
    }

    /// Whether the interval at `pos` has a high the point has not passed.
    fn reaches(&self, pos: u32, p: &Row<'_>) -> bool {
        if pos == EMPTY {
            return false;
        }
        let high = self.high.row(self.runs.order[pos as usize] as usize);
        *p < high || (self.inclusive.1 && *p == high)
    }

    /// The joined rows, left columns then right.
    fn join(
        &self,
        points: &RecordBatch,
        ivs: Vec<u32>,
        pts: Vec<u32>,
        points_left: bool,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let iv = take_record_batch(&self.intervals, &UInt32Array::from(ivs))
            .context("range join output")?;
        let pt = take_record_batch(points, &UInt32Array::from(pts)).context("range join output")?;
        let (l, r) = if points_left { (pt, iv) } else { (iv, pt) };
        let columns: Vec<ArrayRef> = l.columns().iter().chain(r.columns()).cloned().collect();
        RecordBatch::try_new(schema.clone(), columns).context("range join output")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{Field, Int64Type, Schema};
    use std::sync::Arc;

    fn batch(cols: &[(&str, Vec<Option<i64>>)]) -> RecordBatch {
        RecordBatch::try_from_iter(
            cols.iter()
                .map(|(n, v)| (*n, Arc::new(Int64Array::from(v.clone())) as ArrayRef)),
        )
        .unwrap()
    }

    /// Joins intervals (k, lo, hi) with points (k, p), in any order, points
    /// on the left; returns (p, lo) pairs sorted.
    fn run(
        intervals: RecordBatch,
        points: Vec<RecordBatch>,
        inclusive: (bool, bool),
    ) -> Vec<(i64, i64)> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("p", DataType::Int64, true),
            Field::new("ik", DataType::Int64, true),
            Field::new("lo", DataType::Int64, true),
            Field::new("hi", DataType::Int64, true),
        ]));
        let pool = crate::memory::MemoryPool::new(1 << 30);
        let dir = tempfile::tempdir().unwrap();
        let memory = crate::memory::TaskMemory::new(pool, dir.path().join("spill"));
        let spec = RangeJoinSpec {
            left_schema: points[0].schema(),
            right_schema: intervals.schema(),
            left: Box::new(points.into_iter().map(Ok)),
            right: Box::new(std::iter::once(Ok(intervals))),
            left_keys: vec![Expr::Column(0)],
            right_keys: vec![Expr::Column(0)],
            band: Band {
                points_left: true,
                point: Expr::Column(1),
                low: Expr::Column(1),
                high: Expr::Column(2),
                low_inclusive: inclusive.0,
                high_inclusive: inclusive.1,
            },
            filter: None,
            schema,
            reservation: memory.reservation("range join"),
        };
        let mut out: Vec<(i64, i64)> = range_join(spec)
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let p = b.column(1).as_primitive::<Int64Type>().clone();
                let lo = b.column(3).as_primitive::<Int64Type>().clone();
                (0..b.num_rows())
                    .map(move |i| (p.value(i), lo.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    }

    /// Every (point, interval) pair with equal keys and the point inside, by brute force.
    fn expected(iv: &RecordBatch, pts: &[RecordBatch], inclusive: (bool, bool)) -> Vec<(i64, i64)> {
        let col = |b: &RecordBatch, i: usize| b.column(i).as_primitive::<Int64Type>().clone();
        let mut out = vec![];
        for pb in pts {
            let (pk, pp) = (col(pb, 0), col(pb, 1));
            for i in 0..pb.num_rows() {
                let (ik, lo, hi) = (col(iv, 0), col(iv, 1), col(iv, 2));
                for j in 0..iv.num_rows() {
                    if pk.is_null(i)
                        || pp.is_null(i)
                        || ik.is_null(j)
                        || lo.is_null(j)
                        || hi.is_null(j)
                    {
                        continue;
                    }
                    let (p, l, h) = (pp.value(i), lo.value(j), hi.value(j));
                    let above = if inclusive.0 { l <= p } else { l < p };
                    let below = if inclusive.1 { p <= h } else { p < h };
                    if pk.value(i) == ik.value(j) && above && below {
                        out.push((p, l));
                    }
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn points_meet_the_intervals_that_hold_them() {
        // Key 1: overlapping intervals [0,10], [2,4], [5,5], [8,20]; key 2: [1,3]; a NULL bound.
        let iv = batch(&[
            (
                "k",
                vec![
                    Some(1),
                    Some(1),
                    Some(1),
                    Some(1),
                    Some(1),
                    Some(2),
                    Some(3),
                ],
            ),
            (
                "lo",
                vec![Some(0), Some(2), Some(5), Some(8), None, Some(1), Some(0)],
            ),
            (
                "hi",
                vec![
                    Some(10),
                    Some(4),
                    Some(5),
                    Some(20),
                    Some(9),
                    Some(3),
                    Some(9),
                ],
            ),
        ]);
        // Points in two batches, key order, ties and NULLs; key 3's point has no match, key 0 has no intervals.
        let pts = vec![
            batch(&[
                ("k", vec![Some(0), Some(1), Some(1), Some(1)]),
                ("p", vec![Some(1), Some(2), Some(4), Some(5)]),
            ]),
            batch(&[
                ("k", vec![Some(1), Some(1), Some(2), Some(3), None]),
                ("p", vec![Some(5), Some(20), Some(3), Some(10), Some(1)]),
            ]),
        ];
        for inclusive in [(true, true), (false, false), (true, false)] {
            assert_eq!(
                run(iv.clone(), pts.clone(), inclusive),
                expected(&iv, &pts, inclusive),
                "{inclusive:?}"
            );
        }
        assert_eq!(run(iv.clone(), pts.clone(), (true, true)).len(), 10);
    }

    #[test]
    fn a_key_without_intervals_does_not_carry_the_last_group_over() {
        // Key 1's interval is used up by its point; key 2 has no intervals;
        // key 3's point lies inside key 1's interval but must not meet it.
        let iv = batch(&[
            ("k", vec![Some(1), Some(3)]),
            ("lo", vec![Some(0), Some(50)]),
            ("hi", vec![Some(100), Some(300)]),
        ]);
        let pts = vec![batch(&[
            ("k", vec![Some(1), Some(2), Some(3)]),
            ("p", vec![Some(5), Some(10), Some(60)]),
        ])];
        let want = vec![(5, 0), (60, 50)];
        assert_eq!(expected(&iv, &pts, (true, true)), want);
        assert_eq!(run(iv, pts, (true, true)), want);
    }

    #[test]
    fn unsorted_overlapping_intervals_match_brute_force() {
        // A cheap deterministic generator: no ordering anywhere, intervals of
        // very different lengths (a long one shadows many short ones), NULLs.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m) as i64
        };
        let n = 600;
        let (mut k, mut lo, mut hi) = (vec![], vec![], vec![]);
        for i in 0..n {
            let l = next(1000);
            let len = if i % 50 == 0 { 900 } else { next(30) };
            k.push((i % 97 != 3).then(|| next(4)));
            lo.push(Some(l));
            hi.push((i % 89 != 5).then_some(l + len));
        }
        let iv = batch(&[("k", k), ("lo", lo), ("hi", hi)]);
        let pts: Vec<RecordBatch> = (0..3)
            .map(|_| {
                let k: Vec<Option<i64>> =
                    (0..400).map(|i| (i % 71 != 1).then(|| next(5))).collect();
                let p: Vec<Option<i64>> = (0..400)
                    .map(|i| (i % 53 != 2).then(|| next(1100)))
                    .collect();
                batch(&[("k", k), ("p", p)])
            })
            .collect();
        for inclusive in [(true, true), (true, false), (false, true), (false, false)] {
            let want = expected(&iv, &pts, inclusive);
            assert!(want.len() > 1000, "{inclusive:?}: {} pairs", want.len());
            assert_eq!(
                run(iv.clone(), pts.clone(), inclusive),
                want,
                "{inclusive:?}"
            );
        }
    }

    #[test]
    fn a_hot_key_with_many_rows_matches_brute_force() {
        let n = 3000i64;
        // Intervals of key 7 of varying length, sorted by low; points every 3.
        let lo: Vec<Option<i64>> = (0..n).map(|i| Some(i * 2)).collect();
        let hi: Vec<Option<i64>> = (0..n).map(|i| Some(i * 2 + (i % 5) * 3)).collect();
        let iv = batch(&[("k", vec![Some(7); n as usize]), ("lo", lo), ("hi", hi)]);
        let pts: Vec<RecordBatch> = (0..4)
            .map(|b| {
                let p: Vec<Option<i64>> = (0..500).map(|i| Some((b * 500 + i) * 3)).collect();
                batch(&[("k", vec![Some(7); 500]), ("p", p)])
            })
            .collect();
        assert_eq!(
            run(iv.clone(), pts.clone(), (true, true)),
            expected(&iv, &pts, (true, true))
        );
    }
}
