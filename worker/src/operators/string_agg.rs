//! `string_agg(s, sep [ORDER BY k, …])` (alias `listagg`): a group's
//! strings joined by a constant separator, in the call's order.
//!
//! Each string is kept with its order keys as arrow-row bytes (which
//! compare as the keys sort, directions and NULL placement included), so
//! the task that finishes a group sorts bytes and never needs the keys'
//! types. The partial state is a BLOB per group: entries of
//! `[u32 key length][key][u32 string length][string]`, little-endian;
//! merging concatenates them. Without ORDER BY the keys are empty and the
//! strings keep the order they arrived in (arbitrary across tasks, as in
//! DuckDB).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, StringArray};
use arrow::compute::SortOptions;
use arrow_row::{RowConverter, SortField};

use super::accumulators::Accumulator;
use crate::error::{ArrowContext, Result, WorkerError};

#[derive(Debug, Clone, Copy)]
struct Entry {
    group: u32,
    start: usize,
    key_len: u32,
    text_len: u32,
}

pub struct StringAgg {
    separator: String,
    merge: bool,
    /// The ORDER BY keys' directions; their converter is made from the
    /// first batch's key columns.
    order: Vec<SortOptions>,
    converter: Option<RowConverter>,
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    n_groups: usize,
}

impl StringAgg {
    pub fn new(separator: &str, order: Vec<SortOptions>, merge: bool) -> Self {
        StringAgg {
            separator: separator.to_string(),
            merge,
            order,
            converter: None,
            bytes: vec![],
            entries: vec![],
            n_groups: 0,
        }
    }

    fn push(&mut self, group: u32, key: &[u8], text: &[u8]) {
        self.entries.push(Entry {
            group,
            start: self.bytes.len(),
            key_len: key.len() as u32,
            text_len: text.len() as u32,
        });
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(text);
    }

    fn key(&self, e: &Entry) -> &[u8] {
        &self.bytes[e.start..e.start + e.key_len as usize]
    }

    fn text(&self, e: &Entry) -> &[u8] {
        let start = e.start + e.key_len as usize;
        &self.bytes[start..start + e.text_len as usize]
    }

    /// Adds the entries of one state BLOB.
    fn merge_state(&mut self, group: u32, mut blob: &[u8]) -> Result<()> {
        let corrupt = || WorkerError::eval("string_agg(): a corrupt partial state");
        let take = |blob: &mut &[u8]| -> Result<Vec<u8>> {
            let (len, rest) = blob.split_at_checked(4).ok_or_else(corrupt)?;
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            let (value, rest) = rest.split_at_checked(len).ok_or_else(corrupt)?;
            *blob = rest;
            Ok(value.to_vec())
        };
        while !blob.is_empty() {
            let key = take(&mut blob)?;
            let text = take(&mut blob)?;
            self.push(group, &key, &text);
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.bytes = vec![];
        self.entries = vec![];
        self.n_groups = 0;
    }
}

impl Accumulator for StringAgg {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.n_groups = self.n_groups.max(n_groups);
        if self.merge {
            let blobs = inputs[0].as_binary::<i32>();
            for (i, g) in groups.iter().enumerate() {
                if blobs.is_valid(i) {
                    self.merge_state(*g, blobs.value(i))?;
                }
            }
            return Ok(());
        }
        let texts = inputs[0].as_string::<i32>();
        let keys = &inputs[1..];
        if self.converter.is_none() && !keys.is_empty() {
            let fields = keys
                .iter()
                .zip(&self.order)
                .map(|(k, o)| SortField::new_with_options(k.data_type().clone(), *o))
                .collect();
            self.converter = Some(RowConverter::new(fields).context("string_agg ORDER BY")?);
        }
        let rows = match &self.converter {
            Some(c) => Some(c.convert_columns(keys).context("string_agg ORDER BY")?),
            None => None,
        };
        for (i, g) in groups.iter().enumerate() {
            if texts.is_valid(i) {
                let key = rows.as_ref().map_or(&[][..], |r| r.row(i).data());
                self.push(*g, key, texts.value(i).as_bytes());
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let mut blobs = vec![vec![]; self.n_groups];
        for e in &self.entries {
            let blob = &mut blobs[e.group as usize];
            for part in [self.key(e), self.text(e)] {
                blob.extend_from_slice(&(part.len() as u32).to_le_bytes());
                blob.extend_from_slice(part);
            }
        }
        self.reset();
        Ok(vec![Arc::new(BinaryArray::from_iter_values(blobs))])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let mut entries = std::mem::take(&mut self.entries);
        // Stable: strings with equal keys (or no ORDER BY) keep their order.
        entries.sort_by(|a, b| {
            a.group
                .cmp(&b.group)
                .then_with(|| self.key(a).cmp(self.key(b)))
        });
        let mut out: Vec<Option<String>> = vec![None; self.n_groups];
        for e in &entries {
            let text = std::str::from_utf8(self.text(e))
                .map_err(|_| WorkerError::eval("string_agg(): a partial state is not UTF-8"))?;
            match &mut out[e.group as usize] {
                Some(s) => {
                    s.push_str(&self.separator);
                    s.push_str(text);
                }
                slot @ None => *slot = Some(text.to_string()),
            }
        }
        self.reset();
        Ok(Arc::new(StringArray::from(out)))
    }

    fn size(&self) -> usize {
        self.bytes.capacity() + self.entries.capacity() * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn ordered_strings_merge_across_states() {
        let desc = SortOptions {
            descending: true,
            nulls_first: false,
        };
        let mut states = vec![];
        for (texts, keys) in [
            (
                vec![Some("a"), None, Some("c")],
                vec![Some(1), Some(9), Some(3)],
            ),
            (vec![Some("b"), Some("d")], vec![Some(2), None]),
        ] {
            let n = texts.len();
            let mut acc = StringAgg::new("-", vec![desc], false);
            let t: ArrayRef = Arc::new(StringArray::from(texts));
            let k: ArrayRef = Arc::new(Int64Array::from(keys));
            acc.update(&vec![0; n], 1, &[t, k]).unwrap();
            states.push(acc.state().unwrap().remove(0));
        }
        let mut merged = StringAgg::new("-", vec![desc], true);
        for s in &states {
            merged.update(&[0], 2, std::slice::from_ref(s)).unwrap();
        }
        let out = merged.finish().unwrap();
        let out = out.as_string::<i32>();
        // Keys 3, 2, 1 descending, then the NULL key last; group 1 met nothing.
        assert_eq!(out.value(0), "c-b-a-d");
        assert!(out.is_null(1));
    }
}
