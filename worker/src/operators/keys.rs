//! Multi-column keys as byte strings (arrow-row), and the hash Keel uses for
//! them everywhere: group tables, join tables and shuffle partitioning.
//!
//! The hash is our own and fixed, so every worker, on every machine, sends a
//! key to the same partition.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::Schema;
use arrow_row::{RowConverter, Rows, SortField};
use keel_proto::expr::Expr;

use crate::error::{ArrowContext, Result, WorkerError};
use crate::eval::evaluate;

/// A key column as keys compare: a DOUBLE's `-0.0` becomes `0.0` and every
/// NaN one NaN, so equal values (as SQL and DuckDB see them) hash, group,
/// join and deduplicate as one key. Returns the column itself, uncopied,
/// when it holds neither.
pub fn normalize_key(column: ArrayRef) -> ArrayRef {
    use arrow::datatypes::Float64Type;
    if column.data_type() != &arrow::datatypes::DataType::Float64 {
        return column;
    }
    let floats = column.as_primitive::<Float64Type>();
    let canonical = |v: f64| {
        if v.is_nan() {
            f64::NAN
        } else {
            v + 0.0
        }
    };
    let odd = |v: &f64| v.to_bits() != canonical(*v).to_bits();
    if !floats.values().iter().any(odd) {
        return column;
    }
    std::sync::Arc::new(floats.unary::<_, Float64Type>(canonical))
}

/// FxHash-style hash over 8-byte words with a final avalanche; fast on the
/// short fixed-width keys that dominate joins and group-bys.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(buf));
    }
    finish(h)
}

/// Hashes every row's key column by column, with no row encoding: what a
/// shuffle partitions by. Integers, dates, timestamps, floats (by bits),
/// booleans and strings are hashed directly; returns false, leaving `out`
/// unspecified, when a column has another type (the caller encodes rows
/// instead). Every map task of an exchange sees the same key types, so
/// they all send a key to the same partition.
pub fn hash_columns(columns: &[ArrayRef], rows: usize, out: &mut Vec<u64>) -> bool {
    use arrow::datatypes::*;
    out.clear();
    out.resize(rows, 0x243f_6a88_85a3_08d3);
    for c in columns {
        macro_rules! words {
            ($t:ty) => {
                mix_words(out, c.as_primitive::<$t>(), |v| v as u64)
            };
        }
        match c.data_type() {
            DataType::Int8 => words!(Int8Type),
            DataType::Int16 => words!(Int16Type),
            DataType::Int32 => words!(Int32Type),
            DataType::Int64 => words!(Int64Type),
            DataType::UInt8 => words!(UInt8Type),
            DataType::UInt16 => words!(UInt16Type),
            DataType::UInt32 => words!(UInt32Type),
            DataType::UInt64 => words!(UInt64Type),
            DataType::Date32 => words!(Date32Type),
            DataType::Date64 => words!(Date64Type),
            DataType::Timestamp(TimeUnit::Second, _) => words!(TimestampSecondType),
            DataType::Timestamp(TimeUnit::Millisecond, _) => words!(TimestampMillisecondType),
            DataType::Timestamp(TimeUnit::Microsecond, _) => words!(TimestampMicrosecondType),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => words!(TimestampNanosecondType),
            DataType::Float64 => mix_words(out, c.as_primitive::<Float64Type>(), f64::to_bits),
            DataType::Boolean => {
                let b = c.as_boolean();
                for (i, h) in out.iter_mut().enumerate() {
                    let w = if b.is_null(i) {
                        NULL_WORD
                    } else {
                        b.value(i) as u64
                    };
                    *h = mix(*h, w);
                }
            }
            DataType::Utf8 => mix_strings(out, c.as_string::<i32>().iter()),
            DataType::LargeUtf8 => mix_strings(out, c.as_string::<i64>().iter()),
            DataType::Utf8View => mix_strings(out, c.as_string_view().iter()),
            _ => return false,
        }
    }
    for h in out.iter_mut() {
        *h = finish(*h);
    }
    true
}

const MIX_K: u64 = 0x517c_c1b7_2722_0a95;
/// What a NULL key contributes (any fixed word: NULL keys only need to
/// land together).
const NULL_WORD: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(MIX_K)
}

/// splitmix64's finaliser: spreads low-entropy keys over all bits.
#[inline]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn mix_words<T: arrow::datatypes::ArrowPrimitiveType>(
    out: &mut [u64],
    a: &arrow::array::PrimitiveArray<T>,
    word: impl Fn(T::Native) -> u64,
) {
    let values = a.values();
    match a.nulls().filter(|n| n.null_count() > 0) {
        None => {
            for (h, v) in out.iter_mut().zip(values.iter()) {
                *h = mix(*h, word(*v));
            }
        }
        Some(nulls) => {
            for (i, (h, v)) in out.iter_mut().zip(values.iter()).enumerate() {
                let w = if nulls.is_valid(i) {
                    word(*v)
                } else {
                    NULL_WORD
                };
                *h = mix(*h, w);
            }
        }
    }
}

fn mix_strings<'a>(out: &mut [u64], values: impl Iterator<Item = Option<&'a str>>) {
    for (h, v) in out.iter_mut().zip(values) {
        *h = mix(*h, v.map_or(NULL_WORD, |s| hash_bytes(s.as_bytes())));
    }
}

/// Evaluates key expressions and encodes them as comparable byte rows.
pub struct KeyEncoder {
    exprs: Vec<Expr>,
    converter: RowConverter,
}

impl KeyEncoder {
    pub fn new(exprs: Vec<Expr>, schema: &Schema) -> Result<Self> {
        let fields = exprs
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(schema)?)))
            .collect::<Result<Vec<_>, keel_proto::ProtoError>>()?;
        let converter = RowConverter::new(fields).context("building a key encoder")?;
        Ok(KeyEncoder { exprs, converter })
    }

    pub fn converter(&self) -> &RowConverter {
        &self.converter
    }

    pub fn key_columns(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        self.exprs
            .iter()
            .map(|e| evaluate(e, batch).map(normalize_key))
            .collect()
    }

    pub fn encode_columns(&self, columns: &[ArrayRef]) -> Result<Rows> {
        self.converter
            .convert_columns(columns)
            .context("encoding keys")
    }

    /// Rows where any key is NULL (they never match in a join).
    pub fn null_rows(columns: &[ArrayRef], rows: usize) -> Option<Vec<bool>> {
        if columns.iter().all(|c| c.null_count() == 0) {
            return None;
        }
        let mut nulls = vec![false; rows];
        for c in columns {
            if c.null_count() > 0 {
                for (i, n) in nulls.iter_mut().enumerate() {
                    *n |= c.is_null(i);
                }
            }
        }
        Some(nulls)
    }

    pub fn decode(&self, rows: &Rows) -> Result<Vec<ArrayRef>> {
        self.converter
            .convert_rows(rows.iter())
            .map_err(|e| WorkerError::eval(format!("decoding keys: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_hashes_spread_and_treat_nulls_alike() {
        use arrow::array::{Int64Array, StringArray};
        use std::sync::Arc;
        let ints: ArrayRef = Arc::new(Int64Array::from_iter(
            (0..8000).map(|i| (i % 4000 != 0).then_some(i)),
        ));
        let strs: ArrayRef = Arc::new(StringArray::from_iter(
            (0..8000).map(|i| Some(format!("s{}", i % 2))),
        ));
        let mut h = vec![];
        assert!(hash_columns(&[ints.clone(), strs], 8000, &mut h));
        assert_eq!(
            h[0], h[4000],
            "NULL keys with equal other columns hash alike"
        );
        let mut first = vec![];
        assert!(hash_columns(
            &[
                ints.slice(0, 10),
                Arc::new(StringArray::from(vec!["s0"; 10]))
            ],
            10,
            &mut first
        ));
        assert_eq!(first[2], h[2], "a key's hash does not depend on its batch");
        let mut buckets = [0usize; 8];
        for x in &h {
            buckets[(x % 8) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| b > 800), "{buckets:?}");
        let lists: ArrayRef = Arc::new(arrow::array::NullArray::new(3));
        assert!(
            !hash_columns(&[lists], 3, &mut h),
            "unsupported types fall back"
        );
    }

    #[test]
    fn negative_zero_and_nans_are_one_key() {
        use arrow::array::Float64Array;
        use std::sync::Arc;
        let other_nan = f64::from_bits(f64::NAN.to_bits() | 1);
        let keys: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(-0.0),
            Some(0.0),
            Some(f64::NAN),
            Some(other_nan),
            None,
        ]));
        let mut h = vec![];
        assert!(hash_columns(&[normalize_key(keys)], 5, &mut h));
        assert_eq!(h[0], h[1], "-0.0 and 0.0");
        assert_eq!(h[2], h[3], "two NaNs");
        let plain: ArrayRef = Arc::new(Float64Array::from(vec![1.5, 2.0]));
        assert!(
            Arc::ptr_eq(&plain, &normalize_key(plain.clone())),
            "no copy"
        );
    }

    #[test]
    fn hash_is_stable_and_spreads() {
        assert_eq!(hash_bytes(b"keel"), hash_bytes(b"keel"));
        assert_ne!(
            hash_bytes(&1u64.to_le_bytes()),
            hash_bytes(&2u64.to_le_bytes())
        );
        let mut buckets = [0usize; 8];
        for i in 0u64..8000 {
            buckets[(hash_bytes(&i.to_le_bytes()) % 8) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| b > 800), "{buckets:?}");
    }
}
