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
use keel_proto::expr::Expr;

use super::slots::{tag_of, SlotTable};
use super::{hash_bytes, KeyEncoder};
use crate::error::{Result, WorkerError};

/// Rows a probe looks ahead to prefetch the slot it will need.
const PREFETCH_ROWS: usize = 16;

pub struct GroupTable {
    keys: Keys,
    table: SlotTable,
    n_groups: usize,
    scratch: Scratch,
}

/// The buffers a batch is interned through, reused from batch to batch
/// (and lent between tables that take the same batches in turn).
#[derive(Default)]
pub struct Scratch {
    /// Row-major words of the current batch.
    words: Vec<u64>,
    /// The current batch's hash tags.
    tags: Vec<u32>,
}

impl Scratch {
    /// Heap bytes held.
    pub fn size(&self) -> usize {
        self.words.capacity() * 8 + self.tags.capacity() * 4
    }
}

enum Keys {
    /// No GROUP BY: every row is group 0.
    Global,
    /// `width` words per group: one per key column, then the null flags.
    Words {
        types: Vec<DataType>,
        words: WordStore,
    },
    Rows {
        encoder: KeyEncoder,
        rows: Option<Rows>,
    },
}

/// Group keys as words, `width` per group, in one vector. (Fixed blocks of
/// a thousand groups, tried to spare the copies of doubling, left story-1
/// workers at 1.8 GiB of RSS against a 1.5 GiB limit before malloc's
/// arenas were capped (see `allocator`); a vector this large is mapped on
/// its own and returned whole when freed, and glibc grows it in place.)
struct WordStore {
    width: usize,
    words: Vec<u64>,
}

impl WordStore {
    fn new(width: usize) -> Self {
        WordStore {
            width,
            words: vec![],
        }
    }

    #[inline]
    fn get(&self, group: usize) -> &[u64] {
        &self.words[group * self.width..(group + 1) * self.width]
    }

    #[inline]
    fn push(&mut self, key: &[u64]) {
        self.words.extend_from_slice(key);
    }

    fn size(&self) -> usize {
        self.words.capacity() * 8
    }

    /// Heap bytes held after growing to `groups` groups, counting the
    /// moment the vector doubles, when old and new are both alive.
    fn size_for(&self, groups: usize) -> usize {
        let have = self.words.capacity() / self.width;
        if groups <= have {
            return self.size();
        }
        self.size() + (2 * have).max(groups) * self.width * 8
    }

    fn rows(&self) -> impl Iterator<Item = &[u64]> {
        self.words.chunks_exact(self.width)
    }
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
                words: WordStore::new(width),
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
            table: SlotTable::default(),
            n_groups,
            scratch: Scratch::default(),
        })
    }

    /// Exchanges this table's batch buffers with `other`.
    pub fn swap_scratch(&mut self, other: &mut Scratch) {
        std::mem::swap(&mut self.scratch, other);
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
            Keys::Words { words, .. } => {
                let w = words.width;
                let Scratch {
                    words: scratch,
                    tags,
                } = &mut self.scratch;
                fill_words(key_columns, rows, w, scratch)?;
                tags.clear();
                tags.extend(scratch.chunks_exact(w).map(|k| tag_of(hash_words(k))));
                for (i, key) in scratch.chunks_exact(w).enumerate() {
                    if let Some(&ahead) = tags.get(i + PREFETCH_ROWS) {
                        self.table.prefetch(ahead);
                    }
                    let (group, new) = self
                        .table
                        .find_or_insert(tags[i], |g| words.get(g as usize) == key);
                    if new {
                        words.push(key);
                    }
                    ids.push(group);
                }
            }
            Keys::Rows {
                encoder,
                rows: stored,
            } => {
                let encoded = encoder.encode_columns(key_columns)?;
                let stored =
                    stored.get_or_insert_with(|| encoder.converter().empty_rows(1024, 16 * 1024));
                let tags = &mut self.scratch.tags;
                tags.clear();
                tags.extend(encoded.iter().map(|r| tag_of(hash_bytes(r.data()))));
                for (i, row) in encoded.iter().enumerate() {
                    if let Some(&ahead) = tags.get(i + PREFETCH_ROWS) {
                        self.table.prefetch(ahead);
                    }
                    let bytes = row.data();
                    let (group, new) = self
                        .table
                        .find_or_insert(tags[i], |g| stored.row(g as usize).data() == bytes);
                    if new {
                        stored.push(row);
                    }
                    ids.push(group);
                }
            }
        }
        self.n_groups = match self.keys {
            Keys::Global => 1,
            _ => self.table.len(),
        };
        Ok(())
    }

    /// Approximate heap bytes held.
    pub fn size(&self) -> usize {
        let keys = match &self.keys {
            Keys::Global => 0,
            Keys::Words { words, .. } => words.size(),
            Keys::Rows { rows, .. } => rows.as_ref().map_or(0, |r| r.size()),
        };
        self.table.size() + self.scratch.size() + keys
    }

    /// Bytes held after `extra` more groups, counting the moment the table
    /// grows, when its old and new slots are both alive.
    pub fn size_with(&self, extra: usize) -> usize {
        let n = self.n_groups + extra;
        let keys = match &self.keys {
            Keys::Global => 0,
            Keys::Words { words, .. } => words.size_for(n),
            Keys::Rows { rows, .. } => {
                let held = rows.as_ref().map_or(0, |r| r.size());
                let per_row = rows
                    .as_ref()
                    .filter(|r| r.num_rows() > 0)
                    .map_or(32, |r| r.size() / r.num_rows());
                held + 2 * extra * per_row
            }
        };
        // (slots, words per row of the batch, tags per row of the batch):
        // the batch's words and tags are held while it is interned.
        let (table, width, tagged) = match &self.keys {
            Keys::Global => (0, 0, 0),
            Keys::Words { words, .. } => (self.table.size_for(n), words.width, extra),
            Keys::Rows { .. } => (self.table.size_for(n), 0, extra),
        };
        let scratch = self.scratch.words.capacity().max(extra * width) * 8;
        let tags = self.scratch.tags.capacity().max(tagged) * 4;
        table + scratch + tags + keys
    }

    /// The key columns of every group, in group-id order; resets the table.
    pub fn take_keys(&mut self) -> Result<Vec<ArrayRef>> {
        let n = self.n_groups;
        // Free the table before the key columns are built, so the two never coexist.
        self.table = SlotTable::default();
        let columns = match &mut self.keys {
            Keys::Global => vec![],
            Keys::Words { types, words } => {
                let w = words.width;
                let words = std::mem::replace(words, WordStore::new(w));
                // One row-major pass writes every column at once: a pass per
                // column would stride through all the groups' words again
                // for each key.
                let mut columns = vec![vec![0u64; n]; w];
                for (g, row) in words.rows().enumerate() {
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
        DataType::Timestamp(..) => {
            Arc::new(TimestampMicrosecondArray::new(wide(values).into(), nulls))
        }
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
