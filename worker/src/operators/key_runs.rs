//! A held side of a range or ASOF join, ordered by (keys, one value)
//! through a permutation rather than a copy, with a table from each key to
//! its run of rows: the other side's rows stream past in their own order,
//! each one a hash lookup and a binary search in its key's run.
//!
//! Keys and values are compared as arrow-row bytes (ascending, NULLs
//! last), so any orderable type works. Rows whose key or value is NULL are
//! left out: they never match.

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::{cast, concat_batches, SortOptions};
use arrow::datatypes::{DataType, SchemaRef};
use arrow_row::{RowConverter, Rows, SortField};
use hashbrown::HashTable;
use keel_proto::expr::{Expr, ScalarValue};

use super::{hash_bytes, BatchIter};
use crate::error::{ArrowContext, Result};
use crate::eval::evaluate;
use crate::memory::{batch_memory, Reservation};

const ORDER: SortOptions = SortOptions {
    descending: false,
    nulls_first: false,
};

pub struct KeyRuns {
    keys: RowConverter,
    key_types: Vec<DataType>,
    key_rows: Rows,
    /// The rows with a key and a value, ordered by (keys, value).
    pub order: Vec<u32>,
    /// Each key's run in `order`, as (start, end), hashed by the key's bytes.
    runs: HashTable<(u32, u32)>,
}

/// Reads a side a join holds whole into one batch, reserving it as it
/// arrives and its concatenated copy while both exist.
pub fn hold(
    input: BatchIter,
    schema: &SchemaRef,
    reservation: &mut Reservation,
    what: &'static str,
) -> Result<RecordBatch> {
    let mut held = vec![];
    let mut bytes = 0;
    for b in input {
        let b = b?;
        bytes += batch_memory(&b);
        reservation.grow(batch_memory(&b))?;
        held.push(b);
    }
    reservation.grow(bytes)?;
    let batch = concat_batches(schema, &held).context(what)?;
    drop(held);
    reservation.resize(batch_memory(&batch))?;
    Ok(batch)
}

/// The keys of a join without any: one constant, so every row has the same.
pub fn or_constant(keys: Vec<Expr>) -> Vec<Expr> {
    if keys.is_empty() {
        vec![Expr::Literal(ScalarValue::Boolean(true))]
    } else {
        keys
    }
}

impl KeyRuns {
    /// Orders `batch`'s rows by (`keys`, `value`; `values` its encoded
    /// rows), leaving out the rows with a NULL key or a NULL value.
    pub fn new(
        batch: &RecordBatch,
        keys: &[Expr],
        value: &ArrayRef,
        values: &Rows,
    ) -> Result<Self> {
        let key_columns = keys
            .iter()
            .map(|e| evaluate(e, batch).map(super::normalize_key))
            .collect::<Result<Vec<_>>>()?;
        let key_types: Vec<DataType> = key_columns.iter().map(|c| c.data_type().clone()).collect();
        let keys = converter(&key_types)?;
        let key_rows = keys.convert_columns(&key_columns).context("join keys")?;
        let mut order: Vec<u32> = (0..batch.num_rows() as u32)
            .filter(|&i| {
                let i = i as usize;
                value.is_valid(i) && key_columns.iter().all(|c| c.is_valid(i))
            })
            .collect();
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            key_rows
                .row(a)
                .cmp(&key_rows.row(b))
                .then_with(|| values.row(a).cmp(&values.row(b)))
        });
        let mut runs: HashTable<(u32, u32)> = HashTable::new();
        let mut start = 0;
        while start < order.len() {
            let key = key_rows.row(order[start] as usize);
            let mut end = start + 1;
            while end < order.len() && key_rows.row(order[end] as usize) == key {
                end += 1;
            }
            runs.insert_unique(
                hash_bytes(key.data()),
                (start as u32, end as u32),
                |&(s, _)| hash_bytes(key_rows.row(order[s as usize] as usize).data()),
            );
            start = end;
        }
        Ok(KeyRuns {
            keys,
            key_types,
            key_rows,
            order,
            runs,
        })
    }

    /// The other side's keys of `batch`, as columns (to test for NULLs) and
    /// as rows comparable with this side's.
    pub fn probe_keys(&self, batch: &RecordBatch, keys: &[Expr]) -> Result<(Vec<ArrayRef>, Rows)> {
        let columns = keys
            .iter()
            .zip(&self.key_types)
            .map(|(e, t)| as_type(evaluate(e, batch)?, t).map(super::normalize_key))
            .collect::<Result<Vec<_>>>()?;
        let rows = self.keys.convert_columns(&columns).context("join keys")?;
        Ok((columns, rows))
    }

    /// The positions in `order` of the rows with these key bytes.
    pub fn run(&self, key: &[u8]) -> Option<std::ops::Range<usize>> {
        self.runs
            .find(hash_bytes(key), |&(s, _)| {
                self.key_rows.row(self.order[s as usize] as usize).data() == key
            })
            .map(|&(s, e)| s as usize..e as usize)
    }

    /// Whether position `pos` of `order` starts a key's run.
    pub fn run_start(&self, pos: usize) -> bool {
        pos == 0
            || self.key_rows.row(self.order[pos] as usize)
                != self.key_rows.row(self.order[pos - 1] as usize)
    }

    /// Heap bytes held besides the batch.
    pub fn size(&self) -> usize {
        self.key_rows.size() + self.order.capacity() * 4 + self.runs.capacity() * 8
    }
}

/// A row converter for ascending, NULLs-last comparison of these types.
pub fn converter(types: &[DataType]) -> Result<RowConverter> {
    RowConverter::new(
        types
            .iter()
            .map(|t| SortField::new_with_options(t.clone(), ORDER))
            .collect(),
    )
    .context("join rows")
}

pub fn as_type(array: ArrayRef, t: &DataType) -> Result<ArrayRef> {
    if array.data_type() == t {
        Ok(array)
    } else {
        cast(&array, t).context("join types")
    }
}
