//! Window functions over input sorted by (partition keys, order keys).
//!
//! Rows are gathered one partition at a time, the partition's memory
//! reserved before it is held. When a partition is complete, every
//! function is computed over it with whole-column work and the partition
//! is emitted with one column per function appended:
//!
//! - peers (rows equal on the ORDER BY keys) come from comparing adjacent
//!   arrow-row encoded keys; ranks, `percent_rank` and `cume_dist` follow
//!   from them, `ntile` from the row's position;
//! - a frame is a `lo..hi` range of rows per row ([`frames`]); both ends
//!   only move forward as the row does, so sums and counts come from prefix
//!   sums and min/max from one monotonic deque over encoded values, O(rows)
//!   either way whatever the frame (a RANGE offset adds a binary search);
//! - `lag`/`lead` and `first_value`/`last_value`/`nth_value` are one
//!   `take` each.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch,
    UInt32Array,
};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};
use arrow_row::{OwnedRow, RowConverter, Rows, SortField};
use keel_proto::expr::Expr;
use keel_proto::plan::{AggFunc, SortKey, WindowFunc, WindowKind};

use self::frames::{encode, frame_ranges, Peers};
use super::{BatchIter, BATCH_ROWS};

mod frames;
use crate::error::{ArrowContext, Result, WorkerError};
use crate::eval::evaluate;
use crate::memory::{batch_memory, Reservation};

pub fn window(
    input: BatchIter,
    partition_by: Vec<Expr>,
    order_by: Vec<SortKey>,
    funcs: Vec<WindowFunc>,
    schema: SchemaRef,
    reservation: Reservation,
) -> Result<BatchIter> {
    let in_schema = {
        let n = schema.fields().len() - funcs.len();
        Arc::new(arrow::datatypes::Schema::new(schema.fields()[..n].to_vec()))
    };
    let mut w = Windower {
        input,
        partition_by,
        order_by,
        funcs,
        schema,
        in_schema,
        keys: None,
        last_key: None,
        pending: vec![],
        output: VecDeque::new(),
        done: false,
        reservation,
    };
    Ok(Box::new(std::iter::from_fn(move || w.next())))
}

struct Windower {
    input: BatchIter,
    partition_by: Vec<Expr>,
    order_by: Vec<SortKey>,
    funcs: Vec<WindowFunc>,
    schema: SchemaRef,
    in_schema: SchemaRef,
    /// Encodes partition keys, made from the first batch's key types.
    keys: Option<RowConverter>,
    /// The last row's partition key.
    last_key: Option<OwnedRow>,
    /// The rows of the partition being gathered.
    pending: Vec<RecordBatch>,
    output: VecDeque<RecordBatch>,
    done: bool,
    reservation: Reservation,
}

impl Windower {
    fn next(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(b) = self.output.pop_front() {
                return Some(Ok(b));
            }
            if self.done {
                return None;
            }
            let step = match self.input.next() {
                None => {
                    self.done = true;
                    self.finish_partition()
                }
                Some(Err(e)) => Err(e),
                Some(Ok(batch)) => self.absorb(batch),
            };
            if let Err(e) = step {
                self.done = true;
                return Some(Err(e));
            }
        }
    }

    /// Adds a sorted batch: each partition boundary in it completes a partition.
    fn absorb(&mut self, batch: RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        if self.partition_by.is_empty() {
            return self.hold(batch);
        }
        let columns = self
            .partition_by
            .iter()
            .map(|e| evaluate(e, &batch).map(super::normalize_key))
            .collect::<Result<Vec<_>>>()?;
        if self.keys.is_none() {
            let fields = columns
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect();
            self.keys = Some(RowConverter::new(fields).context("window partition keys")?);
        }
        let rows = self
            .keys
            .as_ref()
            .expect("made above")
            .convert_columns(&columns)
            .context("window partition keys")?;
        let mut start = 0;
        for i in 0..n {
            let boundary = match i {
                0 => self
                    .last_key
                    .as_ref()
                    .is_some_and(|k| k.row() != rows.row(0)),
                _ => rows.row(i) != rows.row(i - 1),
            };
            if boundary {
                if i > start {
                    self.hold(batch.slice(start, i - start))?;
                }
                self.finish_partition()?;
                start = i;
            }
        }
        self.hold(batch.slice(start, n - start))?;
        self.last_key = Some(rows.row(n - 1).owned());
        Ok(())
    }

    fn hold(&mut self, batch: RecordBatch) -> Result<()> {
        self.reservation.grow(batch_memory(&batch))?;
        self.pending.push(batch);
        Ok(())
    }

    fn finish_partition(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let part = if self.pending.len() == 1 {
            self.pending.pop().expect("one")
        } else {
            concat_batches(&self.in_schema, &self.pending).context("window partition")?
        };
        self.pending.clear();
        let mut columns = part.columns().to_vec();
        let peers = Peers::of(&part, &self.order_by)?;
        for (f, field) in self
            .funcs
            .iter()
            .zip(&self.schema.fields()[part.num_columns()..])
        {
            columns.push(compute(
                f,
                &part,
                &self.order_by,
                &peers,
                field.data_type(),
            )?);
        }
        let out = RecordBatch::try_new(self.schema.clone(), columns).context("window output")?;
        self.reservation.resize(0)?;
        let mut at = 0;
        while at < out.num_rows() {
            let len = BATCH_ROWS.min(out.num_rows() - at);
            self.output.push_back(out.slice(at, len));
            at += len;
        }
        Ok(())
    }
}

fn compute(
    f: &WindowFunc,
    part: &RecordBatch,
    order_by: &[SortKey],
    peers: &Peers,
    out: &DataType,
) -> Result<ArrayRef> {
    let n = part.num_rows();
    let arg = |i: usize| -> Result<ArrayRef> {
        let e = f
            .args
            .get(i)
            .ok_or_else(|| WorkerError::eval(format!("{} needs an argument", f.kind.name())))?;
        evaluate(e, part)
    };
    Ok(match f.kind {
        WindowKind::RowNumber => Arc::new(Int64Array::from_iter_values(1..=n as i64)),
        WindowKind::Rank => Arc::new(Int64Array::from_iter_values(
            peers.start.iter().map(|&s| s as i64 + 1),
        )),
        WindowKind::DenseRank => Arc::new(Int64Array::from_iter_values(
            peers.group.iter().map(|&g| g as i64 + 1),
        )),
        WindowKind::Shift { offset } => {
            let values = arg(0)?;
            let indices = UInt32Array::from_iter((0..n as i64).map(|i| {
                let j = i - offset;
                (0..n as i64).contains(&j).then_some(j as u32)
            }));
            let shifted = take(&values, &indices, None).context("lag/lead")?;
            if f.args.len() > 1 {
                let default = arg(1)?;
                let found = BooleanArray::from_iter((0..n).map(|i| Some(indices.is_valid(i))));
                arrow::compute::kernels::zip::zip(&found, &shifted, &default)
                    .context("lag/lead default")?
            } else {
                shifted
            }
        }
        WindowKind::PercentRank => {
            let last = n.saturating_sub(1).max(1) as f64;
            Arc::new(Float64Array::from_iter_values(
                peers.start.iter().map(|&s| s as f64 / last),
            ))
        }
        WindowKind::CumeDist => Arc::new(Float64Array::from_iter_values(
            peers.end.iter().map(|&e| e as f64 / n as f64),
        )),
        WindowKind::Ntile => {
            let buckets = arg(0)?;
            let buckets = buckets.as_primitive::<Int64Type>();
            let tiles = (0..n)
                .map(|i| match buckets.is_valid(i).then(|| buckets.value(i)) {
                    None => Ok(None),
                    Some(b) if b < 1 => Err(WorkerError::eval(format!(
                        "ntile() needs a positive number of buckets, got {b}"
                    ))),
                    Some(b) => Ok(Some(ntile(i as i64, n as i64, b))),
                })
                .collect::<Result<Vec<_>>>()?;
            Arc::new(Int64Array::from(tiles))
        }
        WindowKind::NthValue => {
            let values = arg(0)?;
            let nth = arg(1)?;
            let nth = nth.as_primitive::<Int64Type>();
            let (lo, hi) = frame_ranges(&f.frame, peers, part, order_by)?;
            let indices = UInt32Array::from_iter((0..n).map(|i| {
                let k = nth.is_valid(i).then(|| nth.value(i)).filter(|&k| k >= 1)?;
                let at = lo[i] as u64 + (k as u64 - 1);
                (at < hi[i] as u64).then_some(at as u32)
            }));
            take(&values, &indices, None).context("nth_value")?
        }
        WindowKind::FirstValue | WindowKind::LastValue => {
            let values = arg(0)?;
            let (lo, hi) = frame_ranges(&f.frame, peers, part, order_by)?;
            let first = f.kind == WindowKind::FirstValue;
            let indices = UInt32Array::from_iter(
                lo.iter()
                    .zip(&hi)
                    .map(|(&l, &h)| (h > l).then_some(if first { l } else { h - 1 })),
            );
            take(&values, &indices, None).context("first_value/last_value")?
        }
        WindowKind::Aggregate(func) => {
            let (lo, hi) = frame_ranges(&f.frame, peers, part, order_by)?;
            let values = match func {
                AggFunc::CountStar => None,
                _ => Some(arg(0)?),
            };
            frame_aggregate(func, values.as_ref(), &lo, &hi, out)?
        }
    })
}

/// The bucket of row `i` (0-based) of `n` dealt into `buckets`, as
/// DuckDB (after Postgres) deals them: the first `n % buckets` buckets
/// hold one row more, and with more buckets than rows each row has its own.
fn ntile(i: i64, n: i64, buckets: i64) -> i64 {
    let buckets = buckets.min(n);
    let size = n / buckets;
    let large = n - buckets * size;
    let in_large = large * (size + 1);
    if i < in_large {
        1 + i / (size + 1)
    } else {
        1 + large + (i - in_large) / size
    }
}

/// `func` over each row's frame `lo[i]..hi[i]` of `values`.
fn frame_aggregate(
    func: AggFunc,
    values: Option<&ArrayRef>,
    lo: &[u32],
    hi: &[u32],
    out: &DataType,
) -> Result<ArrayRef> {
    let frames = lo.iter().zip(hi).map(|(&l, &h)| (l as usize, h as usize));
    let Some(values) = values else {
        return Ok(Arc::new(Int64Array::from_iter_values(
            frames.map(|(l, h)| (h - l) as i64),
        )));
    };
    // Non-null values before each row.
    let mut counts = Vec::with_capacity(values.len() + 1);
    counts.push(0i64);
    for i in 0..values.len() {
        counts.push(counts[i] + values.is_valid(i) as i64);
    }
    let count = |l: usize, h: usize| counts[h] - counts[l];
    Ok(match func {
        AggFunc::CountStar | AggFunc::Count => Arc::new(Int64Array::from_iter_values(
            frames.map(|(l, h)| count(l, h)),
        )),
        AggFunc::Sum | AggFunc::Avg => match values.data_type() {
            DataType::Int64 if func == AggFunc::Sum => {
                let v = values.as_primitive::<Int64Type>();
                let mut prefix = Vec::with_capacity(v.len() + 1);
                prefix.push(0i128);
                for i in 0..v.len() {
                    let x = if v.is_valid(i) { v.value(i) as i128 } else { 0 };
                    prefix.push(prefix[i] + x);
                }
                let sums = frames
                    .map(|(l, h)| {
                        if count(l, h) == 0 {
                            return Ok(None);
                        }
                        i64::try_from(prefix[h] - prefix[l])
                            .map(Some)
                            .map_err(|_| WorkerError::eval("sum() over a window overflowed BIGINT"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(Int64Array::from(sums)) as ArrayRef
            }
            DataType::Float64 => {
                let v = values.as_primitive::<Float64Type>();
                let sums = float_sums(v, lo, hi);
                let avg = func == AggFunc::Avg;
                Arc::new(Float64Array::from_iter(frames.zip(sums).map(
                    |((l, h), s)| match count(l, h) {
                        0 => None,
                        c if avg => Some(s / c as f64),
                        _ => Some(s),
                    },
                )))
            }
            other => {
                return Err(WorkerError::eval(format!(
                    "{}() over a window of {other} is not supported",
                    func.name()
                )))
            }
        },
        AggFunc::First
        | AggFunc::ApproxCountDistinct
        | AggFunc::ThetaSketch { .. }
        | AggFunc::ThetaUnionAgg
        | AggFunc::ThetaIntersectAgg
        | AggFunc::ApproxQuantile { .. }
        | AggFunc::MixtureStats
        | AggFunc::VarSamp
        | AggFunc::VarPop
        | AggFunc::StddevSamp
        | AggFunc::StddevPop
        | AggFunc::CovarSamp
        | AggFunc::CovarPop
        | AggFunc::Corr
        | AggFunc::RegrSlope
        | AggFunc::RegrIntercept
        | AggFunc::RegrR2
        | AggFunc::QuantileCont { .. }
        | AggFunc::QuantileDisc { .. }
        | AggFunc::Mode
        | AggFunc::StringAgg
        | AggFunc::ArgMin
        | AggFunc::ArgMax
        | AggFunc::BoolAnd
        | AggFunc::BoolOr
        | AggFunc::Product => {
            return Err(WorkerError::eval(format!(
                "{}() over a window is not supported",
                func.name()
            )))
        }
        AggFunc::Min | AggFunc::Max => {
            let options = arrow::compute::SortOptions {
                descending: func == AggFunc::Max,
                nulls_first: false,
            };
            let keys = encode(std::slice::from_ref(values), std::iter::once(options))?;
            let best = sliding_first(&keys, lo, hi);
            take(values, &UInt32Array::from(best), None).context("window min/max")?
        }
    })
    .and_then(|a: ArrayRef| {
        if a.data_type() == out {
            Ok(a)
        } else if a.null_count() == a.len() {
            Ok(new_null_array(out, a.len()))
        } else {
            arrow::compute::cast(&a, out).context("window result")
        }
    })
}

/// Sums of each frame of a float column. Prefix sums when every value is
/// finite; otherwise frame by frame, so one NaN or infinity only reaches
/// the frames that hold it.
fn float_sums(v: &arrow::array::Float64Array, lo: &[u32], hi: &[u32]) -> Vec<f64> {
    let value = |i: usize| if v.is_valid(i) { v.value(i) } else { 0.0 };
    if (0..v.len()).all(|i| value(i).is_finite()) {
        let mut prefix = Vec::with_capacity(v.len() + 1);
        prefix.push(0.0f64);
        for i in 0..v.len() {
            prefix.push(prefix[i] + value(i));
        }
        lo.iter()
            .zip(hi)
            .map(|(&l, &h)| prefix[h as usize] - prefix[l as usize])
            .collect()
    } else {
        lo.iter()
            .zip(hi)
            .map(|(&l, &h)| (l as usize..h as usize).map(value).sum())
            .collect()
    }
}

/// For each frame, the index of its smallest encoded key (nulls encode
/// last, so a null is chosen only when the frame holds nothing else), or
/// None for an empty frame. Both frame ends only move forward, so one
/// deque of candidates, increasing in key, serves every row.
fn sliding_first(keys: &Rows, lo: &[u32], hi: &[u32]) -> Vec<Option<u32>> {
    let mut deque: VecDeque<u32> = VecDeque::new();
    let mut next = 0u32;
    lo.iter()
        .zip(hi)
        .map(|(&l, &h)| {
            while next < h {
                while deque
                    .back()
                    .is_some_and(|&b| keys.row(b as usize) > keys.row(next as usize))
                {
                    deque.pop_back();
                }
                deque.push_back(next);
                next += 1;
            }
            while deque.front().is_some_and(|&f| f < l) {
                deque.pop_front();
            }
            if h > l {
                deque.front().copied()
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::datatypes::{Field, Schema};
    use keel_proto::plan::{AggFunc, FrameBound, WindowFrame};

    fn frame(rows: bool, start: FrameBound, end: FrameBound) -> WindowFrame {
        WindowFrame { rows, start, end }
    }

    /// One partition ordered by `o` with ties: o = 1, 1, 2, 3, 3, 3.
    fn part() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "o",
                Arc::new(Int64Array::from(vec![1, 1, 2, 3, 3, 3])) as ArrayRef,
            ),
            (
                "x",
                Arc::new(Int64Array::from(vec![
                    Some(5),
                    None,
                    Some(2),
                    Some(7),
                    Some(1),
                    Some(4),
                ])),
            ),
            (
                "s",
                Arc::new(StringArray::from(vec!["b", "a", "d", "c", "f", "e"])),
            ),
        ])
        .unwrap()
    }

    fn run(kind: WindowKind, args: Vec<Expr>, fr: WindowFrame, out: DataType) -> ArrayRef {
        let p = part();
        let order = vec![SortKey {
            expr: Expr::Column(0),
            descending: false,
            nulls_first: false,
        }];
        let peers = Peers::of(&p, &order).unwrap();
        let f = WindowFunc {
            kind,
            args,
            frame: fr,
        };
        compute(&f, &p, &order, &peers, &out).unwrap()
    }

    fn ints(a: &ArrayRef) -> Vec<Option<i64>> {
        a.as_primitive::<Int64Type>().iter().collect()
    }

    #[test]
    fn ranks_follow_peers() {
        let d = WindowFrame::DEFAULT;
        let i64t = DataType::Int64;
        assert_eq!(
            ints(&run(WindowKind::RowNumber, vec![], d, i64t.clone())),
            (1..=6).map(Some).collect::<Vec<_>>()
        );
        let rank = run(WindowKind::Rank, vec![], d, i64t.clone());
        assert_eq!(ints(&rank), [1, 1, 3, 4, 4, 4].map(Some));
        let dense = run(WindowKind::DenseRank, vec![], d, i64t);
        assert_eq!(ints(&dense), [1, 1, 2, 3, 3, 3].map(Some));
    }

    #[test]
    fn distributions_and_tiles() {
        let d = WindowFrame::DEFAULT;
        let floats =
            |a: ArrayRef| -> Vec<f64> { a.as_primitive::<Float64Type>().values().to_vec() };
        // o = 1, 1, 2, 3, 3, 3: ranks 1, 1, 3, 4, 4, 4 of 6 rows.
        let pr = run(WindowKind::PercentRank, vec![], d, DataType::Float64);
        assert_eq!(floats(pr), [0.0, 0.0, 0.4, 0.6, 0.6, 0.6]);
        let cd = run(WindowKind::CumeDist, vec![], d, DataType::Float64);
        assert_eq!(floats(cd), [2.0, 2.0, 3.0, 6.0, 6.0, 6.0].map(|e| e / 6.0));
        let lit = |n: i64| vec![Expr::Literal(keel_proto::expr::ScalarValue::Int64(n))];
        // 6 rows in 4 buckets: the first two hold 2 rows.
        let nt = run(WindowKind::Ntile, lit(4), d, DataType::Int64);
        assert_eq!(ints(&nt), [1, 1, 2, 2, 3, 4].map(Some));
        // More buckets than rows: one row each.
        let nt = run(WindowKind::Ntile, lit(10), d, DataType::Int64);
        assert_eq!(ints(&nt), [1, 2, 3, 4, 5, 6].map(Some));
        assert_eq!(
            (0..7).map(|i| ntile(i, 7, 3)).collect::<Vec<_>>(),
            [1, 1, 1, 2, 2, 3, 3]
        );
        assert_eq!(ntile(0, 1, 5), 1);
    }

    #[test]
    fn nth_value_counts_from_the_frame_start() {
        // x = 5, NULL, 2, 7, 1, 4; default frame: up to the last peer.
        let nth = |n: i64, fr| {
            let args = vec![
                Expr::Column(1),
                Expr::Literal(keel_proto::expr::ScalarValue::Int64(n)),
            ];
            ints(&run(WindowKind::NthValue, args, fr, DataType::Int64))
        };
        assert_eq!(
            nth(3, WindowFrame::DEFAULT),
            [None, None, Some(2), Some(2), Some(2), Some(2)]
        );
        // The NULL is a value like any other: the 2nd of rows 0..2 is NULL.
        assert_eq!(nth(2, WindowFrame::DEFAULT)[0], None);
        let sliding = frame(true, FrameBound::Preceding(1), FrameBound::Following(1));
        assert_eq!(
            nth(2, sliding),
            [None, None, Some(2), Some(7), Some(1), Some(4)]
        );
        assert_eq!(nth(0, sliding), [None; 6]);
    }

    #[test]
    fn lag_and_lead_with_defaults() {
        let d = WindowFrame::DEFAULT;
        let x = Expr::Column(1);
        let lag = run(
            WindowKind::Shift { offset: 1 },
            vec![x.clone()],
            d,
            DataType::Int64,
        );
        assert_eq!(ints(&lag), [None, Some(5), None, Some(2), Some(7), Some(1)]);
        let lead2 = run(
            WindowKind::Shift { offset: -2 },
            vec![x, Expr::Literal(keel_proto::expr::ScalarValue::Int64(-1))],
            d,
            DataType::Int64,
        );
        assert_eq!(ints(&lead2), [2, 7, 1, 4, -1, -1].map(Some));
    }

    #[test]
    fn running_sums_include_peers_and_rows_frames_slide() {
        let x = || vec![Expr::Column(1)];
        let sum = WindowKind::Aggregate(AggFunc::Sum);
        // Default frame: up to the last peer. x = 5, NULL, 2, 7, 1, 4.
        let running = run(sum, x(), WindowFrame::DEFAULT, DataType::Int64);
        assert_eq!(ints(&running), [5, 5, 7, 19, 19, 19].map(Some));
        // ROWS BETWEEN 1 PRECEDING AND CURRENT ROW.
        let f = frame(true, FrameBound::Preceding(1), FrameBound::CurrentRow);
        assert_eq!(
            ints(&run(sum, x(), f, DataType::Int64)),
            [5, 5, 2, 9, 8, 5].map(Some)
        );
        // A frame holding only the NULL is NULL; count ignores it.
        let f = frame(true, FrameBound::CurrentRow, FrameBound::CurrentRow);
        assert_eq!(ints(&run(sum, x(), f, DataType::Int64))[1], None);
        let count = WindowKind::Aggregate(AggFunc::Count);
        assert_eq!(ints(&run(count, x(), f, DataType::Int64))[1], Some(0));
        // Following rows, and an empty frame past the end.
        let f = frame(true, FrameBound::Following(1), FrameBound::Following(2));
        assert_eq!(
            ints(&run(sum, x(), f, DataType::Int64)),
            [Some(2), Some(9), Some(8), Some(5), Some(4), None]
        );
        let avg = WindowKind::Aggregate(AggFunc::Avg);
        let whole = frame(
            false,
            FrameBound::UnboundedPreceding,
            FrameBound::UnboundedFollowing,
        );
        let mean = run(
            avg,
            vec![Expr::Cast {
                expr: Box::new(Expr::Column(1)),
                to: DataType::Float64,
            }],
            whole,
            DataType::Float64,
        );
        assert!(mean
            .as_primitive::<Float64Type>()
            .iter()
            .all(|m| m == Some(19.0 / 5.0)));
    }

    #[test]
    fn min_max_and_first_last_over_frames() {
        let s = || vec![Expr::Column(2)];
        let f = frame(true, FrameBound::Preceding(1), FrameBound::Following(1));
        let strings = |a: ArrayRef| -> Vec<Option<String>> {
            a.as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()
        };
        let min = run(WindowKind::Aggregate(AggFunc::Min), s(), f, DataType::Utf8);
        // s = b, a, d, c, f, e
        assert_eq!(
            strings(min),
            ["a", "a", "a", "c", "c", "e"].map(|v| Some(v.to_string()))
        );
        let max = run(WindowKind::Aggregate(AggFunc::Max), s(), f, DataType::Utf8);
        assert_eq!(
            strings(max),
            ["b", "d", "d", "f", "f", "f"].map(|v| Some(v.to_string()))
        );
        let last = run(
            WindowKind::LastValue,
            s(),
            WindowFrame::DEFAULT,
            DataType::Utf8,
        );
        assert_eq!(
            strings(last),
            ["a", "a", "d", "e", "e", "e"].map(|v| Some(v.to_string()))
        );
        let first = run(WindowKind::FirstValue, s(), f, DataType::Utf8);
        assert_eq!(
            strings(first),
            ["b", "b", "a", "d", "c", "f"].map(|v| Some(v.to_string()))
        );
        // max of x over the running frame skips the NULL: 5, 5, 5, 7, 7, 7.
        let mx = run(
            WindowKind::Aggregate(AggFunc::Max),
            vec![Expr::Column(1)],
            WindowFrame::DEFAULT,
            DataType::Int64,
        );
        assert_eq!(ints(&mx), [5, 5, 5, 7, 7, 7].map(Some));
    }

    #[test]
    fn partitions_split_across_batches() {
        // Sorted by (g, o): g = 1, 1 | 1, 2 | 2, 3 in three batches.
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, true),
            Field::new("o", DataType::Int64, true),
            Field::new("rn", DataType::Int64, true),
        ]));
        let batch = |g: Vec<i64>, o: Vec<i64>| {
            RecordBatch::try_from_iter([
                ("g", Arc::new(Int64Array::from(g)) as ArrayRef),
                ("o", Arc::new(Int64Array::from(o)) as ArrayRef),
            ])
            .unwrap()
        };
        let input: BatchIter = Box::new(
            vec![
                Ok(batch(vec![1, 1], vec![1, 2])),
                Ok(batch(vec![1, 2], vec![3, 1])),
                Ok(batch(vec![2, 3], vec![2, 1])),
            ]
            .into_iter(),
        );
        let pool = crate::memory::MemoryPool::new(1 << 30);
        // The task's spill directory is removed with it: a fresh one, never a shared directory.
        let dir = tempfile::tempdir().unwrap();
        let memory = crate::memory::TaskMemory::new(pool, dir.path().join("spill"));
        let out = window(
            input,
            vec![Expr::Column(0)],
            vec![SortKey {
                expr: Expr::Column(1),
                descending: false,
                nulls_first: false,
            }],
            vec![WindowFunc {
                kind: WindowKind::RowNumber,
                args: vec![],
                frame: WindowFrame::DEFAULT,
            }],
            schema,
            memory.reservation("window"),
        )
        .unwrap();
        let rn: Vec<Option<i64>> = out.flat_map(|b| ints(b.unwrap().column(2))).collect();
        assert_eq!(rn, [1, 2, 3, 1, 2, 1].map(Some));
    }
}
