//! ASOF join: each left row meets at most one right row with equal keys,
//! the nearest in time in the join's direction (the latest at or before
//! the left time for `a.t >= b.t`, the earliest at or after it for
//! `a.t <= b.t`, the closer of the two for `nearest(a.t, b.t)`, the later
//! one when both are equally far).
//!
//! The right side is held (reserved first) as [`KeyRuns`] ordered by
//! (keys, time). Left rows stream past in their own order, each one a hash
//! lookup and a binary search, so the left side is never sorted or held. A
//! NULL key or time never matches.

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, SchemaRef};
use arrow_row::{RowConverter, Rows};
use keel_proto::expr::Expr;
use keel_proto::plan::{Asof, AsofDirection};

use super::key_runs::{as_type, converter, hold, or_constant, KeyRuns};
use super::BatchIter;
use crate::error::{ArrowContext, Result, WorkerError};
use crate::eval::evaluate;
use crate::memory::Reservation;

pub struct AsofJoinSpec {
    pub left: BatchIter,
    pub right: BatchIter,
    pub right_schema: SchemaRef,
    pub left_keys: Vec<Expr>,
    pub right_keys: Vec<Expr>,
    pub asof: Asof,
    /// Keep left rows without a match, with NULL right columns.
    pub outer: bool,
    pub schema: SchemaRef,
    pub reservation: Reservation,
}

pub fn asof_join(spec: AsofJoinSpec) -> Result<BatchIter> {
    let AsofJoinSpec {
        left,
        right,
        right_schema,
        left_keys,
        right_keys,
        asof,
        outer,
        schema,
        mut reservation,
    } = spec;
    let (left_keys, right_keys) = (or_constant(left_keys), or_constant(right_keys));
    let batch = hold(
        right,
        &right_schema,
        &mut reservation,
        "asof join right side",
    )?;
    let side = RightSide::new(batch, &right_keys, &asof, &mut reservation)?;
    let mut left = left;
    Ok(Box::new(std::iter::from_fn(move || {
        let _held = &reservation;
        let batch = match left.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        Some(side.join(&batch, &left_keys, &asof.left_time, outer, &schema))
    })))
}

/// The right rows, ordered by (keys, time).
struct RightSide {
    batch: RecordBatch,
    runs: KeyRuns,
    times: RowConverter,
    time_type: DataType,
    time_rows: Rows,
    /// Numeric times, for `nearest` distances.
    numeric: Option<Vec<f64>>,
    direction: AsofDirection,
    strict: bool,
}

impl RightSide {
    fn new(
        batch: RecordBatch,
        keys: &[Expr],
        asof: &Asof,
        reservation: &mut Reservation,
    ) -> Result<RightSide> {
        let time = evaluate(&asof.right_time, &batch)?;
        let time_type = time.data_type().clone();
        let times = converter(std::slice::from_ref(&time_type))?;
        let time_rows = times
            .convert_columns(std::slice::from_ref(&time))
            .context("asof join times")?;
        let numeric = match asof.direction {
            AsofDirection::Nearest => Some(as_f64(&time)?),
            _ => None,
        };
        let runs = KeyRuns::new(&batch, keys, &time, &time_rows)?;
        reservation
            .grow(runs.size() + time_rows.size() + numeric.as_ref().map_or(0, |v| v.len() * 8))?;
        Ok(RightSide {
            batch,
            runs,
            times,
            time_type,
            time_rows,
            numeric,
            direction: asof.direction,
            strict: asof.strict,
        })
    }

    /// One left batch joined: its rows in order, each with its match.
    fn join(
        &self,
        left: &RecordBatch,
        keys: &[Expr],
        time: &Expr,
        outer: bool,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let (key_columns, key_rows) = self.runs.probe_keys(left, keys)?;
        let time = as_type(evaluate(time, left)?, &self.time_type)?;
        let time_rows = self
            .times
            .convert_columns(std::slice::from_ref(&time))
            .context("asof join times")?;
        let numeric = match self.numeric {
            Some(_) => Some(as_f64(&time)?),
            None => None,
        };
        let mut left_idx: Vec<u32> = Vec::with_capacity(left.num_rows());
        let mut right_idx: Vec<Option<u32>> = Vec::with_capacity(left.num_rows());
        for i in 0..left.num_rows() {
            let found = if time.is_valid(i) && key_columns.iter().all(|c| c.is_valid(i)) {
                let t = numeric.as_ref().map(|v| v[i]).unwrap_or(0.0);
                self.find(key_rows.row(i).data(), &time_rows.row(i), t)
            } else {
                None
            };
            if found.is_some() || outer {
                left_idx.push(i as u32);
                right_idx.push(found);
            }
        }
        let right_idx = UInt32Array::from(right_idx);
        let left_columns: Vec<ArrayRef> = if outer {
            left.columns().to_vec()
        } else {
            let idx = UInt32Array::from(left_idx);
            left.columns()
                .iter()
                .map(|c| take(c.as_ref(), &idx, None))
                .collect::<std::result::Result<_, _>>()
                .context("asof join output")?
        };
        let mut columns = left_columns;
        for c in self.batch.columns() {
            columns.push(take(c.as_ref(), &right_idx, None).context("asof join output")?);
        }
        RecordBatch::try_new(schema.clone(), columns).context("asof join output")
    }

    /// The right row matching a left row's key bytes and time, if any.
    fn find(&self, key: &[u8], time: &arrow_row::Row<'_>, numeric: f64) -> Option<u32> {
        let run = &self.runs.order[self.runs.run(key)?];
        // Right rows before the left time, and before or at it.
        let before = run.partition_point(|&r| self.time_rows.row(r as usize) < *time);
        let through =
            before + run[before..].partition_point(|&r| self.time_rows.row(r as usize) == *time);
        let backward = |strict: bool| {
            let n = if strict { before } else { through };
            (n > 0).then(|| run[n - 1])
        };
        let forward = |strict: bool| {
            let n = if strict { through } else { before };
            (n < run.len()).then(|| run[n])
        };
        match self.direction {
            AsofDirection::Backward => backward(self.strict),
            AsofDirection::Forward => forward(self.strict),
            AsofDirection::Nearest => {
                let values = self.numeric.as_ref().expect("numeric times");
                match (backward(false), forward(false)) {
                    (Some(b), Some(f)) => {
                        let (db, df) = (numeric - values[b as usize], values[f as usize] - numeric);
                        // Equally far: the later one, as Polars' `nearest` does.
                        Some(if db < df { b } else { f })
                    }
                    (b, f) => b.or(f),
                }
            }
        }
    }
}

/// Times as numbers, for distances: temporal values by their integer count.
fn as_f64(array: &ArrayRef) -> Result<Vec<f64>> {
    let ints = match array.data_type() {
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Time64(_) => {
            cast(array, &DataType::Int64).context("asof join times")?
        }
        t if t.is_numeric() => array.clone(),
        t => {
            return Err(WorkerError::eval(format!(
                "nearest() needs numeric or temporal times, got {t}"
            )))
        }
    };
    let floats = cast(&ints, &DataType::Float64).context("asof join times")?;
    let floats = floats
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .expect("f64");
    Ok(floats.values().to_vec())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{Field, Int64Type, Schema};

    use super::*;

    fn batch(cols: &[(&str, Vec<Option<i64>>)]) -> RecordBatch {
        RecordBatch::try_from_iter_with_nullable(
            cols.iter()
                .map(|(n, v)| (*n, Arc::new(Int64Array::from(v.clone())) as ArrayRef, true)),
        )
        .unwrap()
    }

    /// Joins left (k, t) with right (k, t, id), right side given unsorted;
    /// returns each output row's (left t, right id).
    fn run(
        left: Vec<RecordBatch>,
        right: RecordBatch,
        direction: AsofDirection,
        strict: bool,
        outer: bool,
        keyed: bool,
    ) -> Vec<(Option<i64>, Option<i64>)> {
        let fields = ["k", "t", "rk", "rt", "id"]
            .map(|n| Field::new(n, DataType::Int64, true))
            .to_vec();
        let pool = crate::memory::MemoryPool::new(1 << 30);
        let dir = tempfile::tempdir().unwrap();
        let memory = crate::memory::TaskMemory::new(pool, dir.path().join("spill"));
        let keys = if keyed { vec![Expr::Column(0)] } else { vec![] };
        let spec = AsofJoinSpec {
            right_schema: right.schema(),
            left: Box::new(left.into_iter().map(Ok)),
            right: Box::new(std::iter::once(Ok(right))),
            left_keys: keys.clone(),
            right_keys: keys,
            asof: Asof {
                left_time: Expr::Column(1),
                right_time: Expr::Column(1),
                direction,
                strict,
            },
            outer,
            schema: Arc::new(Schema::new(fields)),
            reservation: memory.reservation("asof join"),
        };
        asof_join(spec)
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let t = b.column(1).as_primitive::<Int64Type>().clone();
                let id = b.column(4).as_primitive::<Int64Type>().clone();
                (0..b.num_rows())
                    .map(move |i| {
                        let get = |a: &arrow::array::Int64Array| a.is_valid(i).then(|| a.value(i));
                        (get(&t), get(&id))
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Key 1 has right times 10 (id 1), 20 (id 2), 30 (id 3), given out of
    /// order; key 2 has 15 (id 4); a NULL key and a NULL time never match.
    fn right() -> RecordBatch {
        batch(&[
            ("k", vec![Some(1), Some(2), Some(1), None, Some(1), Some(1)]),
            (
                "t",
                vec![Some(30), Some(15), Some(10), Some(12), Some(20), None],
            ),
            (
                "id",
                vec![Some(3), Some(4), Some(1), Some(9), Some(2), Some(8)],
            ),
        ])
    }

    /// Left rows of key 1 at 5, 10, 25, 30, 35, key 2 at 15, key 3 at 15,
    /// a NULL key and a NULL time, in two batches and not in time order.
    fn left() -> Vec<RecordBatch> {
        vec![
            batch(&[
                ("k", vec![Some(1), Some(1), Some(2), Some(1)]),
                ("t", vec![Some(25), Some(5), Some(15), Some(10)]),
            ]),
            batch(&[
                ("k", vec![Some(1), Some(3), None, Some(1), Some(1)]),
                ("t", vec![Some(35), Some(15), Some(15), None, Some(30)]),
            ]),
        ]
    }

    fn ids(rows: &[(Option<i64>, Option<i64>)]) -> Vec<Option<i64>> {
        rows.iter().map(|r| r.1).collect()
    }

    #[test]
    fn backward_takes_the_latest_at_or_before() {
        let all = |strict| {
            ids(&run(
                left(),
                right(),
                AsofDirection::Backward,
                strict,
                true,
                true,
            ))
        };
        // Left in order: (1,25) (1,5) (2,15) (1,10) | (1,35) (3,15) (NULL,15) (1,NULL) (1,30)
        assert_eq!(
            all(false),
            [
                Some(2),
                None,
                Some(4),
                Some(1),
                Some(3),
                None,
                None,
                None,
                Some(3)
            ]
        );
        assert_eq!(
            all(true),
            [
                Some(2),
                None,
                None,
                None,
                Some(3),
                None,
                None,
                None,
                Some(2)
            ]
        );
    }

    #[test]
    fn forward_takes_the_earliest_at_or_after() {
        let all = |strict| {
            ids(&run(
                left(),
                right(),
                AsofDirection::Forward,
                strict,
                true,
                true,
            ))
        };
        assert_eq!(
            all(false),
            [
                Some(3),
                Some(1),
                Some(4),
                Some(1),
                None,
                None,
                None,
                None,
                Some(3)
            ]
        );
        assert_eq!(
            all(true),
            [
                Some(3),
                Some(1),
                None,
                Some(2),
                None,
                None,
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn nearest_takes_the_closer_and_the_later_on_a_tie() {
        let got = ids(&run(
            left(),
            right(),
            AsofDirection::Nearest,
            false,
            true,
            true,
        ));
        // 25 is as far from 20 as from 30: the later, id 3.
        assert_eq!(
            got,
            [
                Some(3),
                Some(1),
                Some(4),
                Some(1),
                Some(3),
                None,
                None,
                None,
                Some(3)
            ]
        );
    }

    #[test]
    fn inner_drops_rows_without_a_match_and_keeps_left_order() {
        let got = run(left(), right(), AsofDirection::Backward, false, false, true);
        assert_eq!(
            got,
            [
                (Some(25), Some(2)),
                (Some(15), Some(4)),
                (Some(10), Some(1)),
                (Some(35), Some(3)),
                (Some(30), Some(3))
            ]
        );
    }

    #[test]
    fn without_keys_every_right_row_is_a_candidate() {
        let got = ids(&run(
            left(),
            right(),
            AsofDirection::Backward,
            true,
            true,
            false,
        ));
        // Right times of any key: 10 (1), 12 (9), 15 (4), 20 (2), 30 (3).
        assert_eq!(
            got,
            [
                Some(2),
                None,
                Some(9),
                None,
                Some(3),
                Some(9),
                Some(9),
                None,
                Some(2)
            ]
        );
    }
}
