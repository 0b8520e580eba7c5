//! Interns group keys: every distinct key gets a dense group id.
//!
//! Integer, date and timestamp keys are packed into `u64` words (one per
//! column, plus a word of null flags) and hashed and compared as words, and
//! the output columns are rebuilt straight from the words. Other key types
//! go through arrow-row's byte encoding. Word keys avoid encoding, byte
//! comparison and decoding on every row, which dominates aggregations whose
//! groups are nearly as many as their rows.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Int32Array, Int64Array, TimestampMicrosecondArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Date32Type, Int32Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
};
use arrow_row::Rows;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use keel_proto::expr::Expr;

use super::{hash_bytes, KeyEncoder};
use crate::error::{Result, WorkerError};

pub struct GroupTable {
    keys: Keys,
    table: HashTable<Slot>,
    n_groups: usize,
    /// Row-major words of the current batch (reused between batches).
    scratch: Vec<u64>,
}

enum Keys {
    /// No GROUP BY: every row is group 0.
    Global,
    /// `width` words per group: one per key column, then the null flags.
    Words {
        types: Vec<DataType>,
        width: usize,
        words: Vec<u64>,
    },
    Rows {
        encoder: KeyEncoder,
        rows: Option<Rows>,
    },
}

/// A table entry: a group id and 32 bits of its key's hash. The table
/// rehashes from its own entries as it grows, instead of looking every
/// group's hash up in a side vector (a cache miss per group), and a probe
/// compares the tag before it touches the group's key.
#[derive(Clone, Copy)]
struct Slot {
    group: u32,
    tag: u32,
}

#[inline]
fn tag_of(hash: u64) -> u32 {
    (hash ^ (hash >> 32)) as u32
}

/// The table's hash of a tag: multiplied out so both the bucket (low bits)
/// and hashbrown's control byte (top bits) depend on every bit of the tag.
#[inline]
fn spread(tag: u32) -> u64 {
    (tag as u64 | ((tag as u64) << 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[inline]
fn slot_hash(s: &Slot) -> u64 {
    spread(s.tag)
}

fn is_word(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int32
            | DataType::Int64
            | DataType::Date32
            | DataType::Timestamp(TimeUnit::Microsecond, None)
    )
}

#[inline]
fn hash_words(words: &[u64]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = 0;
    for w in words {
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    h ^= h >> 31;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 29)
}

/// A slot and its control byte.
const SLOT_BYTES: usize = std::mem::size_of::<Slot>() + 1;

impl GroupTable {
    pub fn new(group_by: Vec<Expr>, schema: &Schema) -> Result<Self> {
        let types = group_by
            .iter()
            .map(|e| e.data_type(schema))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = if group_by.is_empty() {
            Keys::Global
        } else if types.iter().all(is_word) && types.len() < 64 {
            let width = types.len() + 1;
            Keys::Words {
                types,
                width,
                words: vec![],
            }
        } else {
            Keys::Rows {
                encoder: KeyEncoder::new(group_by, schema)?,
                rows: None,
            }
        };
        let n_groups = if matches!(keys, Keys::Global) { 1 } else { 0 };
        Ok(GroupTable {
            keys,
            table: HashTable::new(),
            n_groups,
            scratch: vec![],
        })
    }

    pub fn n_groups(&self) -> usize {
        self.n_groups
    }

    /// Group ids for every row of `key_columns`, adding new groups.
    pub fn intern(
        &mut self,
        key_columns: &[ArrayRef],
        rows: usize,
        ids: &mut Vec<u32>,
    ) -> Result<()> {
        ids.clear();
        match &mut self.keys {
            Keys::Global => ids.resize(rows, 0),
            Keys::Words { width, words, .. } => {
                let w = *width;
                fill_words(key_columns, rows, w, &mut self.scratch)?;
                for i in 0..rows {
                    let key = &self.scratch[i * w..(i + 1) * w];
                    let tag = tag_of(hash_words(key));
                    let found = self.table.entry(
                        spread(tag),
                        |s| s.tag == tag && &words[s.group as usize * w..(s.group as usize + 1) * w] == key,
                        slot_hash,
                    );
                    let id = match found {
                        Entry::Occupied(e) => e.get().group,
                        Entry::Vacant(e) => {
                            let group = self.n_groups as u32;
                            e.insert(Slot { group, tag });
                            words.extend_from_slice(key);
                            self.n_groups += 1;
                            group
                        }
                    };
                    ids.push(id);
                }
            }
            Keys::Rows {
                encoder,
                rows: stored,
            } => {
                let encoded = encoder.encode_columns(key_columns)?;
                let stored =
                    stored.get_or_insert_with(|| encoder.converter().empty_rows(1024, 16 * 1024));
                for i in 0..rows {
                    let row = encoded.row(i);
                    let bytes = row.data();
                    let tag = tag_of(hash_bytes(bytes));
                    let found = self.table.entry(
                        spread(tag),
                        |s| s.tag == tag && stored.row(s.group as usize).data() == bytes,
                        slot_hash,
                    );
                    let id = match found {
                        Entry::Occupied(e) => e.get().group,
                        Entry::Vacant(e) => {
                            let group = self.n_groups as u32;
                            e.insert(Slot { group, tag });
                            stored.push(row);
                            self.n_groups += 1;
                            group
                        }
                    };
                    ids.push(id);
                }
            }
        }
        Ok(())
    }

    /// Approximate heap bytes held.
    pub fn size(&self) -> usize {
        let keys = match &self.keys {
            Keys::Global => 0,
            Keys::Words { words, .. } => words.capacity() * 8,
            Keys::Rows { rows, .. } => rows.as_ref().map_or(0, |r| r.size()),
        };
        self.table.capacity() * SLOT_BYTES + self.scratch.capacity() * 8 + keys
    }

    /// Bytes held after `extra` more groups, counting the moment a table or
    /// vector grows, when old and new allocations are both alive.
    pub fn size_with(&self, extra: usize) -> usize {
        let n = self.n_groups + extra;
        let grow = |cap: usize, bytes_per: usize| {
            if n > cap {
                (2 * cap).max(n) * bytes_per
            } else {
                0
            }
        };
        let table = if n > self.table.capacity() {
            ((n * 8 / 7).next_power_of_two()) * SLOT_BYTES
        } else {
            0
        };
        let keys = match &self.keys {
            Keys::Global => 0,
            Keys::Words { width, words, .. } => grow(words.capacity() / width, width * 8),
            Keys::Rows { rows, .. } => {
                let per_row = rows
                    .as_ref()
                    .filter(|r| r.num_rows() > 0)
                    .map_or(32, |r| r.size() / r.num_rows());
                2 * extra * per_row
            }
        };
        self.size() + table + keys
    }

    /// The key columns of every group, in group-id order; resets the table.
    pub fn take_keys(&mut self) -> Result<Vec<ArrayRef>> {
        let n = self.n_groups;
        // Free the table before the key columns are built, so the two never coexist.
        self.table = HashTable::new();
        let columns = match &mut self.keys {
            Keys::Global => vec![],
            Keys::Words {
                types,
                width,
                words,
            } => {
                let words = std::mem::take(words);
                // One row-major pass writes every column at once: a pass per
                // column would stride through all the groups' words again
                // for each key.
                let w = *width;
                let mut columns = vec![vec![0u64; n]; w];
                for (g, row) in words.chunks_exact(w).enumerate() {
                    for (column, word) in columns.iter_mut().zip(row) {
                        column[g] = *word;
                    }
                }
                drop(words);
                let flags = columns.pop().expect("a null-flags word");
                let any_null = flags.iter().any(|f| *f != 0);
                types
                    .iter()
                    .zip(columns)
                    .enumerate()
                    .map(|(j, (t, values))| {
                        let nulls = any_null.then(|| {
                            NullBuffer::from_iter(flags.iter().map(|f| f & (1 << j) == 0))
                        });
                        column_from_words(t, values, nulls)
                    })
                    .collect()
            }
            Keys::Rows { encoder, rows } => match rows.take() {
                Some(r) => encoder.decode(&r)?,
                None => encoder.decode(&encoder.converter().empty_rows(0, 0))?,
            },
        };
        self.table.clear();
        self.n_groups = if matches!(self.keys, Keys::Global) {
            1
        } else {
            0
        };
        Ok(columns)
    }
}

/// Writes each row's key words (values, then null flags) row-major into `out`.
fn fill_words(columns: &[ArrayRef], rows: usize, width: usize, out: &mut Vec<u64>) -> Result<()> {
    out.clear();
    out.resize(rows * width, 0);
    for (j, c) in columns.iter().enumerate() {
        match c.data_type() {
            DataType::Int64 => put(
                out,
                width,
                j,
                c.as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .map(|v| *v as u64),
            ),
            DataType::Timestamp(..) => put(
                out,
                width,
                j,
                c.as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .iter()
                    .map(|v| *v as u64),
            ),
            DataType::Int32 => put(
                out,
                width,
                j,
                c.as_primitive::<Int32Type>()
                    .values()
                    .iter()
                    .map(|v| *v as i64 as u64),
            ),
            DataType::Date32 => put(
                out,
                width,
                j,
                c.as_primitive::<Date32Type>()
                    .values()
                    .iter()
                    .map(|v| *v as i64 as u64),
            ),
            other => {
                return Err(WorkerError::eval(format!(
                    "group key of type {other} in a word key"
                )))
            }
        }
        if let Some(nulls) = c.logical_nulls().filter(|n| n.null_count() > 0) {
            for i in 0..rows {
                if nulls.is_null(i) {
                    // A NULL's value word is zeroed so equal keys compare equal.
                    out[i * width + j] = 0;
                    out[i * width + width - 1] |= 1 << j;
                }
            }
        }
    }
    Ok(())
}

#[inline]
fn put(out: &mut [u64], width: usize, j: usize, values: impl Iterator<Item = u64>) {
    for (slot, v) in out.iter_mut().skip(j).step_by(width).zip(values) {
        *slot = v;
    }
}

fn column_from_words(t: &DataType, values: Vec<u64>, nulls: Option<NullBuffer>) -> ArrayRef {
    // Same-size maps collect in place: 64-bit columns reuse the words' vector.
    let wide = |values: Vec<u64>| values.into_iter().map(|v| v as i64).collect::<Vec<i64>>();
    match t {
        DataType::Int32 => Arc::new(Int32Array::new(
            values.iter().map(|v| *v as i64 as i32).collect(),
            nulls,
        )),
        DataType::Date32 => Arc::new(Date32Array::new(
            values.iter().map(|v| *v as i64 as i32).collect(),
            nulls,
        )),
        DataType::Timestamp(..) => Arc::new(TimestampMicrosecondArray::new(wide(values).into(), nulls)),
        _ => Arc::new(Int64Array::new(wide(values).into(), nulls)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    fn ids(table: &mut GroupTable, cols: Vec<ArrayRef>) -> Vec<u32> {
        let n = cols[0].len();
        let mut out = vec![];
        table.intern(&cols, n, &mut out).unwrap();
        out
    }

    #[test]
    fn word_keys_group_nulls_together_and_round_trip() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("d", DataType::Date32, true),
        ]);
        let mut t = GroupTable::new(vec![Expr::Column(0), Expr::Column(1)], &schema).unwrap();
        assert!(matches!(t.keys, Keys::Words { .. }));
        let a: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1),
            None,
            Some(1),
            None,
            Some(0),
        ]));
        let d: ArrayRef = Arc::new(Date32Array::from(vec![
            Some(5),
            Some(5),
            Some(5),
            Some(5),
            None,
        ]));
        assert_eq!(ids(&mut t, vec![a, d]), vec![0, 1, 0, 1, 2]);
        let keys = t.take_keys().unwrap();
        let a = keys[0].as_primitive::<Int64Type>();
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![Some(1), None, Some(0)]);
        let d = keys[1].as_primitive::<Date32Type>();
        assert_eq!(d.iter().collect::<Vec<_>>(), vec![Some(5), Some(5), None]);
        assert_eq!(t.n_groups(), 0);
    }

    #[test]
    fn other_key_types_use_byte_rows() {
        let schema = Schema::new(vec![Field::new("s", DataType::Utf8, true)]);
        let mut t = GroupTable::new(vec![Expr::Column(0)], &schema).unwrap();
        assert!(matches!(t.keys, Keys::Rows { .. }));
        let s: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![
            Some("x"),
            None,
            Some("x"),
        ]));
        assert_eq!(ids(&mut t, vec![s]), vec![0, 1, 0]);
    }
}
