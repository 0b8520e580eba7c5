//! Each row's peers and frame within a sorted partition.
//!
//! A frame is a `lo..hi` range of rows per row. Whatever the bounds, both
//! ends are non-decreasing in the row (the sliding min/max relies on it):
//! ROWS offsets move with the row, CURRENT ROW in RANGE mode with its peer
//! group, and a RANGE offset with the row's key, since `key ∓ offset` is
//! monotonic in the key and the partition is sorted by it.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, IntervalMonthDayNanoArray, RecordBatch,
};
use arrow::compute::kernels::numeric;
use arrow::compute::{cast, SortOptions};
use arrow::datatypes::{DataType, IntervalMonthDayNano};
use arrow_row::{RowConverter, Rows, SortField};
use keel_proto::expr::timestamp_type;
use keel_proto::plan::{FrameBound, RangeOffset, SortKey, WindowFrame};

use crate::error::{ArrowContext, Result, WorkerError};
use crate::eval::evaluate;

/// Each row's peer group in a partition: where it starts and ends, and its ordinal.
pub(super) struct Peers {
    pub start: Vec<u32>,
    pub end: Vec<u32>,
    pub group: Vec<u32>,
}

impl Peers {
    pub fn of(part: &RecordBatch, order_by: &[SortKey]) -> Result<Peers> {
        let n = part.num_rows();
        if order_by.is_empty() {
            // Without ORDER BY every row is a peer of every other.
            return Ok(Peers {
                start: vec![0; n],
                end: vec![n as u32; n],
                group: vec![0; n],
            });
        }
        let columns = order_by
            .iter()
            .map(|k| evaluate(&k.expr, part))
            .collect::<Result<Vec<_>>>()?;
        let rows = encode(&columns, order_by.iter().map(|k| k.options()))?;
        let mut start = vec![0u32; n];
        let mut group = vec![0u32; n];
        for i in 1..n {
            if rows.row(i) == rows.row(i - 1) {
                start[i] = start[i - 1];
                group[i] = group[i - 1];
            } else {
                start[i] = i as u32;
                group[i] = group[i - 1] + 1;
            }
        }
        let mut end = vec![n as u32; n];
        for i in (0..n.saturating_sub(1)).rev() {
            end[i] = if group[i] == group[i + 1] {
                end[i + 1]
            } else {
                i as u32 + 1
            };
        }
        Ok(Peers { start, end, group })
    }

    pub fn len(&self) -> usize {
        self.start.len()
    }
}

/// Row-encodes `columns` so that byte order is the sort order.
pub(super) fn encode(
    columns: &[ArrayRef],
    options: impl Iterator<Item = SortOptions>,
) -> Result<Rows> {
    let fields = columns
        .iter()
        .zip(options)
        .map(|(c, o)| SortField::new_with_options(c.data_type().clone(), o))
        .collect();
    RowConverter::new(fields)
        .and_then(|c| c.convert_columns(columns))
        .context("window keys")
}

/// Each row's frame as `lo..hi` (empty when `hi <= lo`) in a partition
/// sorted by `order_by`.
pub(super) fn frame_ranges(
    frame: &WindowFrame,
    peers: &Peers,
    part: &RecordBatch,
    order_by: &[SortKey],
) -> Result<(Vec<u32>, Vec<u32>)> {
    let lo = edge(&frame.start, false, frame.rows, peers, part, order_by)?;
    let mut hi = edge(&frame.end, true, frame.rows, peers, part, order_by)?;
    for (h, &l) in hi.iter_mut().zip(&lo) {
        *h = (*h).max(l);
    }
    Ok((lo, hi))
}

/// Where each row's frame starts, or (`end`) the row after where it ends.
fn edge(
    bound: &FrameBound,
    end: bool,
    rows: bool,
    peers: &Peers,
    part: &RecordBatch,
    order_by: &[SortKey],
) -> Result<Vec<u32>> {
    let n = peers.len() as u64;
    // `end` bounds are exclusive: a frame ending at row i holds i.
    let past = end as u64;
    let at = |i: u64| -> u64 {
        match bound {
            FrameBound::UnboundedPreceding => 0,
            FrameBound::UnboundedFollowing => n,
            FrameBound::Preceding(k) => (i + past).saturating_sub(*k),
            FrameBound::Following(k) => (i + k + past).min(n),
            FrameBound::CurrentRow if rows => i + past,
            FrameBound::CurrentRow if end => peers.end[i as usize] as u64,
            FrameBound::CurrentRow => peers.start[i as usize] as u64,
            FrameBound::RangePreceding(_) | FrameBound::RangeFollowing(_) => {
                unreachable!("measured on the key below")
            }
        }
    };
    match bound {
        FrameBound::RangePreceding(offset) | FrameBound::RangeFollowing(offset) => {
            let [key] = order_by else {
                return Err(WorkerError::eval(format!(
                    "a RANGE frame with an offset needs exactly one ORDER BY key, got {}",
                    order_by.len()
                )));
            };
            let preceding = matches!(bound, FrameBound::RangePreceding(_));
            range_edge(part, key, offset, preceding, end)
        }
        _ => Ok((0..n).map(|i| at(i) as u32).collect()),
    }
}

/// A RANGE offset bound: the first row whose key sorts at or after the
/// row's key moved by `offset` (toward the partition's start when
/// `preceding`), or (`end`) the first that sorts after it. Comparing
/// row-encoded keys under the ORDER BY's own options makes DESC and NULLS
/// FIRST/LAST come out right, and a NULL key (whose moved key is NULL)
/// finds exactly its peers, as in DuckDB.
fn range_edge(
    part: &RecordBatch,
    key: &SortKey,
    offset: &RangeOffset,
    preceding: bool,
    end: bool,
) -> Result<Vec<u32>> {
    let keys = evaluate(&key.expr, part)?;
    // In sort order "preceding" is smaller for ASC and larger for DESC.
    let subtract = preceding != key.descending;
    let (keys, moved) = shifted(&keys, offset, subtract)?;
    let fields = vec![SortField::new_with_options(
        keys.data_type().clone(),
        key.options(),
    )];
    let converter = RowConverter::new(fields).context("window RANGE keys")?;
    let sorted = converter
        .convert_columns(&[keys])
        .context("window RANGE keys")?;
    let targets = converter
        .convert_columns(&[moved])
        .context("window RANGE keys")?;
    let n = sorted.num_rows();
    // Binary search: O(rows log rows), and right whatever the targets are.
    Ok((0..n)
        .map(|i| {
            let t = targets.row(i);
            let (mut a, mut b) = (0, n);
            while a < b {
                let m = (a + b) / 2;
                let before = if end {
                    sorted.row(m) <= t
                } else {
                    sorted.row(m) < t
                };
                if before {
                    a = m + 1;
                } else {
                    b = m;
                }
            }
            a as u32
        })
        .collect())
}

/// The keys in the type their moved values have, and the moved values
/// (`keys - offset` when `subtract`, else `keys + offset`). Integers
/// saturate: a bound past the type's range holds every key on that side.
fn shifted(keys: &ArrayRef, offset: &RangeOffset, subtract: bool) -> Result<(ArrayRef, ArrayRef)> {
    let bad = || {
        WorkerError::eval(format!(
            "a RANGE offset of {offset:?} does not apply to an ORDER BY key of type {}",
            keys.data_type()
        ))
    };
    match offset {
        RangeOffset::Int(k) if keys.data_type().is_integer() => {
            let keys = cast(keys, &DataType::Int64).context("window RANGE keys")?;
            let moved: Int64Array = keys
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("cast")
                .unary(|v| {
                    if subtract {
                        v.saturating_sub(*k)
                    } else {
                        v.saturating_add(*k)
                    }
                });
            Ok((keys, Arc::new(moved)))
        }
        RangeOffset::Int(_) | RangeOffset::Float(_)
            if keys.data_type().is_integer() || keys.data_type().is_floating() =>
        {
            let k = match offset {
                RangeOffset::Int(k) => *k as f64,
                RangeOffset::Float(k) => *k,
                _ => unreachable!("matched above"),
            };
            let keys = cast(keys, &DataType::Float64).context("window RANGE keys")?;
            let moved: Float64Array = keys
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("cast")
                .unary(|v| if subtract { v - k } else { v + k });
            Ok((keys, Arc::new(moved)))
        }
        RangeOffset::Interval {
            months,
            days,
            micros,
        } if matches!(keys.data_type(), DataType::Date32 | DataType::Timestamp(..)) => {
            // As `date ± interval` in DuckDB: a TIMESTAMP, months by the calendar.
            let keys = cast(keys, &timestamp_type()).context("window RANGE keys")?;
            let step = IntervalMonthDayNanoArray::new_scalar(IntervalMonthDayNano::new(
                *months,
                *days,
                micros.checked_mul(1000).ok_or_else(bad)?,
            ));
            let moved = if subtract {
                numeric::sub(&keys, &step)
            } else {
                numeric::add(&keys, &step)
            }
            .map_err(|e| WorkerError::eval(format!("a RANGE frame's bound: {e}")))?;
            Ok((keys, moved))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Date32Array, TimestampMicrosecondArray};
    use arrow::datatypes::Int64Type;
    use keel_proto::expr::Expr;

    fn ints(a: &ArrayRef) -> Vec<Option<i64>> {
        a.as_primitive::<Int64Type>().iter().collect()
    }

    fn frame(rows: bool, start: FrameBound, end: FrameBound) -> WindowFrame {
        WindowFrame { rows, start, end }
    }

    fn key(descending: bool, nulls_first: bool) -> SortKey {
        SortKey {
            expr: Expr::Column(0),
            descending,
            nulls_first,
        }
    }

    /// The frames of a one-column partition, as `(lo, hi)` per row.
    fn frames(column: ArrayRef, k: SortKey, f: WindowFrame) -> Vec<(u32, u32)> {
        let part = RecordBatch::try_from_iter([("k", column)]).unwrap();
        let order = vec![k];
        let peers = Peers::of(&part, &order).unwrap();
        let (lo, hi) = frame_ranges(&f, &peers, &part, &order).unwrap();
        lo.into_iter().zip(hi).collect()
    }

    #[test]
    fn range_offsets_measure_the_key_and_nulls_are_peers() {
        // Sorted ASC NULLS LAST: 1, 2, 2, 5, NULL, NULL.
        let k: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1),
            Some(2),
            Some(2),
            Some(5),
            None,
            None,
        ]));
        let around = frame(
            false,
            FrameBound::RangePreceding(RangeOffset::Int(1)),
            FrameBound::RangeFollowing(RangeOffset::Int(1)),
        );
        assert_eq!(
            frames(k.clone(), key(false, false), around),
            [(0, 3), (0, 3), (0, 3), (3, 4), (4, 6), (4, 6)]
        );
        // Wholly ahead of the row: empty at the end, the peers for NULLs.
        let ahead = frame(
            false,
            FrameBound::RangeFollowing(RangeOffset::Int(2)),
            FrameBound::RangeFollowing(RangeOffset::Int(5)),
        );
        assert_eq!(
            frames(k, key(false, false), ahead),
            [(3, 4), (3, 4), (3, 4), (4, 4), (4, 6), (4, 6)]
        );
    }

    #[test]
    fn range_offsets_follow_desc_and_nulls_first() {
        // Sorted DESC NULLS FIRST: NULL, 5, 2, 2, 1. Preceding is larger.
        let k: ArrayRef = Arc::new(Int64Array::from(vec![
            None,
            Some(5),
            Some(2),
            Some(2),
            Some(1),
        ]));
        let back = frame(
            false,
            FrameBound::RangePreceding(RangeOffset::Int(3)),
            FrameBound::CurrentRow,
        );
        assert_eq!(
            frames(k.clone(), key(true, true), back),
            [(0, 1), (1, 2), (1, 4), (1, 4), (2, 5)]
        );
        let mixed = frame(
            false,
            FrameBound::UnboundedPreceding,
            FrameBound::RangeFollowing(RangeOffset::Float(0.5)),
        );
        assert_eq!(
            frames(k, key(true, true), mixed),
            [(0, 1), (0, 2), (0, 4), (0, 4), (0, 5)]
        );
    }

    #[test]
    fn range_offsets_over_dates_and_timestamps_are_intervals() {
        let day = |d: i32| RangeOffset::Interval {
            months: 0,
            days: d,
            micros: 0,
        };
        // Days 0, 1, 3, 31 (Feb 1st 1970).
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![0, 1, 3, 31]));
        let f = frame(
            false,
            FrameBound::RangePreceding(day(2)),
            FrameBound::CurrentRow,
        );
        assert_eq!(
            frames(dates.clone(), key(false, false), f),
            [(0, 1), (0, 2), (1, 3), (3, 4)]
        );
        // One month back from Feb 1st is Jan 1st: every row.
        let month = RangeOffset::Interval {
            months: 1,
            days: 0,
            micros: 0,
        };
        let f = frame(
            false,
            FrameBound::RangePreceding(month),
            FrameBound::CurrentRow,
        );
        assert_eq!(frames(dates, key(false, false), f)[3], (0, 4));
        let hour = 3_600_000_000i64;
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![0, hour, 3 * hour]));
        let f = frame(
            false,
            FrameBound::CurrentRow,
            FrameBound::RangeFollowing(RangeOffset::Interval {
                months: 0,
                days: 0,
                micros: 2 * hour,
            }),
        );
        assert_eq!(frames(ts, key(false, false), f), [(0, 2), (1, 3), (2, 3)]);
    }

    #[test]
    fn integer_bounds_saturate() {
        let k: ArrayRef = Arc::new(Int64Array::from(vec![i64::MIN, 0, i64::MAX]));
        let f = frame(
            false,
            FrameBound::RangePreceding(RangeOffset::Int(i64::MAX)),
            FrameBound::RangeFollowing(RangeOffset::Int(1)),
        );
        assert_eq!(
            frames(k.clone(), key(false, false), f),
            [(0, 1), (1, 2), (1, 3)]
        );
        let (moved_keys, moved) = shifted(&k, &RangeOffset::Int(1), false).unwrap();
        assert_eq!(ints(&moved_keys), ints(&k));
        assert_eq!(ints(&moved), [Some(i64::MIN + 1), Some(1), Some(i64::MAX)]);
    }

    #[test]
    fn rows_and_peer_frames() {
        // 1, 1, 2: ROWS 1 PRECEDING..CURRENT ROW, and RANGE CURRENT ROW (peers).
        let k: ArrayRef = Arc::new(Int64Array::from(vec![1, 1, 2]));
        let rows = frame(true, FrameBound::Preceding(1), FrameBound::CurrentRow);
        assert_eq!(
            frames(k.clone(), key(false, false), rows),
            [(0, 1), (0, 2), (1, 3)]
        );
        let peers = frame(false, FrameBound::CurrentRow, FrameBound::CurrentRow);
        assert_eq!(
            frames(k.clone(), key(false, false), peers),
            [(0, 2), (0, 2), (2, 3)]
        );
        // A frame whose end comes before its start is empty.
        let backwards = frame(true, FrameBound::Following(1), FrameBound::Preceding(1));
        assert!(frames(k, key(false, false), backwards)
            .iter()
            .all(|(l, h)| l == h));
    }
}
