//! Multi-column keys as byte strings (arrow-row), and the hash Keel uses for
//! them everywhere: group tables, join tables and shuffle partitioning.
//!
//! The hash is our own and fixed, so every worker, on every machine, sends a
//! key to the same partition.

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::Schema;
use arrow_row::{RowConverter, Rows, SortField};
use keel_proto::expr::Expr;

use crate::error::{ArrowContext, Result, WorkerError};
use crate::eval::evaluate;

/// FxHash-style hash over 8-byte words with a final avalanche; fast on the
/// short fixed-width keys that dominate joins and group-bys.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
    }
    // splitmix64 finaliser: spreads low-entropy keys over all bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
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
        self.exprs.iter().map(|e| evaluate(e, batch)).collect()
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
