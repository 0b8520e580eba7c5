//! Range join: equal keys, and a point of one side between a low and a
//! high of the other (`a.t BETWEEN s.start AND s.stop`).
//!
//! Both inputs arrive sorted: the intervals by (keys, low), the points by
//! (keys, point). The intervals are held (reserved first) and cut into
//! groups of equal keys; the points stream past them. For each key the
//! sweep keeps the intervals whose low the points have passed: a point
//! adds those with `low <= point`, drops for good those whose high it has
//! passed (points only grow), and meets the rest. So each interval and
//! each point is touched a bounded number of times plus once per output
//! row, instead of once per pair of rows with the same key.
//!
//! Keys, lows, highs and points are compared as arrow-row bytes, so any
//! orderable type works; a NULL key or bound never matches.

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::SortOptions;
use arrow::compute::{cast, concat_batches, filter_record_batch, take, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow_row::{RowConverter, Rows, SortField};
use keel_proto::expr::Expr;
use keel_proto::plan::Band;

use super::{BatchIter, BATCH_ROWS};
use crate::error::{ArrowContext, Result};
use crate::eval::{evaluate, evaluate_predicate};
use crate::memory::{batch_memory, Reservation};

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

/// The order both inputs were sorted in (ascending, NULLs last).
const ORDER: SortOptions = SortOptions {
    descending: false,
    nulls_first: false,
};

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
    let (intervals, interval_schema, interval_keys, points, point_keys) = if band.points_left {
        (right, right_schema, right_keys, left, left_keys)
    } else {
        (left, left_schema, left_keys, right, right_keys)
    };
    let mut held = vec![];
    for b in intervals {
        let b = b?;
        reservation.grow(batch_memory(&b))?;
        held.push(b);
    }
    let iv = concat_batches(&interval_schema, &held).context("range join intervals")?;
    drop(held);
    let sweep = Sweep::new(iv, &interval_keys, &band)?;
    let mut state = SweepState::default();
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
        let mut run = || -> Result<Vec<RecordBatch>> {
            let mut out = vec![];
            for (ivs, pts) in sweep.pairs(&batch, &point_keys, &band.point, &mut state)? {
                let joined = sweep.join(&batch, ivs, pts, band.points_left, &schema)?;
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

/// The intervals, encoded for comparison, and their key groups.
struct Sweep {
    intervals: RecordBatch,
    keys: RowConverter,
    key_types: Vec<DataType>,
    range: RowConverter,
    range_type: DataType,
    low: Rows,
    high: Rows,
    /// (first, end) rows of each group of equal keys, in key order (a
    /// NULL key's group is never looked up: such points are skipped).
    groups: Vec<(usize, usize)>,
    group_keys: Rows,
    /// Whether an interval has both bounds.
    valid: Vec<bool>,
    inclusive: (bool, bool),
}

/// Where the sweep is, carried from one point batch to the next.
#[derive(Default)]
struct SweepState {
    /// The group the last point's key reached.
    group: usize,
    /// The group `next` and `active` belong to.
    swept: Option<usize>,
    /// The next interval of that group not yet reached.
    next: usize,
    /// Intervals reached whose high the points have not passed.
    active: Vec<u32>,
}

impl Sweep {
    fn new(intervals: RecordBatch, keys: &[Expr], band: &Band) -> Result<Sweep> {
        let key_columns = keys
            .iter()
            .map(|e| evaluate(e, &intervals))
            .collect::<Result<Vec<_>>>()?;
        let key_types: Vec<DataType> = key_columns.iter().map(|c| c.data_type().clone()).collect();
        let keys = converter(&key_types)?;
        let key_rows = keys
            .convert_columns(&key_columns)
            .context("range join keys")?;
        let low_col = evaluate(&band.low, &intervals)?;
        let range_type = low_col.data_type().clone();
        let range = converter(std::slice::from_ref(&range_type))?;
        let high_col = as_type(evaluate(&band.high, &intervals)?, &range_type)?;
        let low = range
            .convert_columns(&[low_col.clone()])
            .context("range join bounds")?;
        let high = range
            .convert_columns(&[high_col.clone()])
            .context("range join bounds")?;
        // A NULL low sorts last and is never reached; a NULL high is skipped when reached.
        let valid: Vec<bool> = (0..intervals.num_rows())
            .map(|i| low_col.is_valid(i) && high_col.is_valid(i))
            .collect();
        let mut groups = vec![];
        let mut starts = vec![];
        let n = intervals.num_rows();
        let mut i = 0;
        while i < n {
            let mut end = i + 1;
            while end < n && key_rows.row(end) == key_rows.row(i) {
                end += 1;
            }
            groups.push((i, end));
            starts.push(i);
            i = end;
        }
        let group_keys = {
            let idx = UInt32Array::from_iter_values(starts.iter().map(|&s| s as u32));
            let cols = key_columns
                .iter()
                .map(|c| take(c, &idx, None))
                .collect::<std::result::Result<Vec<_>, _>>()
                .context("range join keys")?;
            keys.convert_columns(&cols).context("range join keys")?
        };
        Ok(Sweep {
            intervals,
            keys,
            key_types,
            range,
            range_type,
            low,
            high,
            groups,
            group_keys,
            valid,
            inclusive: (band.low_inclusive, band.high_inclusive),
        })
    }

    /// The (interval, point) row pairs of one point batch, in chunks of at most a batch.
    fn pairs(
        &self,
        points: &RecordBatch,
        keys: &[Expr],
        point: &Expr,
        state: &mut SweepState,
    ) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        let key_columns = keys
            .iter()
            .zip(&self.key_types)
            .map(|(e, t)| as_type(evaluate(e, points)?, t))
            .collect::<Result<Vec<_>>>()?;
        let key_rows = self
            .keys
            .convert_columns(&key_columns)
            .context("range join keys")?;
        let point_col = as_type(evaluate(point, points)?, &self.range_type)?;
        let p_rows = self
            .range
            .convert_columns(&[point_col.clone()])
            .context("range join points")?;
        let mut chunks = vec![];
        let (mut ivs, mut pts) = (vec![], vec![]);
        for i in 0..points.num_rows() {
            if !point_col.is_valid(i) || key_columns.iter().any(|c| c.is_null(i)) {
                continue;
            }
            let key = key_rows.row(i);
            // Groups only move forward: points come in key order.
            while state.group < self.groups.len() && self.group_keys.row(state.group) < key {
                state.group += 1;
            }
            if state.group >= self.groups.len() || self.group_keys.row(state.group) != key {
                continue;
            }
            let (first, end) = self.groups[state.group];
            if state.swept != Some(state.group) {
                state.swept = Some(state.group);
                state.active.clear();
                state.next = first;
            }
            let p = p_rows.row(i);
            let (low_inclusive, high_inclusive) = self.inclusive;
            while state.next < end {
                let low = self.low.row(state.next);
                if low < p || (low_inclusive && low == p) {
                    if self.valid[state.next] {
                        state.active.push(state.next as u32);
                    }
                    state.next += 1;
                } else {
                    break;
                }
            }
            state.active.retain(|&j| {
                let high = self.high.row(j as usize);
                p < high || (high_inclusive && p == high)
            });
            for &j in &state.active {
                ivs.push(j);
                pts.push(i as u32);
            }
            if ivs.len() >= BATCH_ROWS {
                chunks.push((std::mem::take(&mut ivs), std::mem::take(&mut pts)));
            }
        }
        if !ivs.is_empty() {
            chunks.push((ivs, pts));
        }
        Ok(chunks)
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

fn converter(types: &[DataType]) -> Result<RowConverter> {
    RowConverter::new(
        types
            .iter()
            .map(|t| SortField::new_with_options(t.clone(), ORDER))
            .collect(),
    )
    .context("range join keys")
}

fn as_type(a: ArrayRef, t: &DataType) -> Result<ArrayRef> {
    if a.data_type() == t {
        Ok(a)
    } else {
        cast(&a, t).context("range join key types")
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

    /// Joins intervals (k, lo, hi) sorted by (k, lo) with points (k, p)
    /// sorted by (k, p), points on the left; returns (p, lo) pairs sorted.
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
