//! `arg_min(a, b)` / `arg_max(a, b)` (aliases `min_by`, `max_by`): the
//! `a` of the row with the least or greatest `b`, for any types. As in
//! DuckDB, rows where either is NULL are skipped; of tied rows the first
//! one met wins.
//!
//! The state is the pair (a, b) as two columns of their own types, NULL
//! for a group that met no row, so merging states is the same operation
//! as reading rows. Keys are compared as arrow-row bytes (ordered as the
//! values are); each group keeps its best key's and value's bytes.

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;
use arrow_row::{RowConverter, SortField};

use super::accumulators::Accumulator;
use crate::error::{ArrowContext, Result};

pub struct ArgExtreme {
    is_min: bool,
    value_type: DataType,
    key_type: DataType,
    values: RowConverter,
    keys: RowConverter,
    /// Per group: the best key's bytes, then the value's; `key_len` splits them.
    best: Vec<Option<(u32, Box<[u8]>)>>,
    bytes: usize,
}

impl ArgExtreme {
    pub fn new(is_min: bool, value_type: &DataType, key_type: &DataType) -> Result<Self> {
        let converter = |t: &DataType| {
            RowConverter::new(vec![SortField::new(t.clone())]).context("arg_min/arg_max")
        };
        Ok(ArgExtreme {
            is_min,
            value_type: value_type.clone(),
            key_type: key_type.clone(),
            values: converter(value_type)?,
            keys: converter(key_type)?,
            best: vec![],
            bytes: 0,
        })
    }

    /// One column of the groups' best (values or keys), NULL where none.
    fn column(&self, keys: bool) -> Result<ArrayRef> {
        let (converter, t) = if keys {
            (&self.keys, &self.key_type)
        } else {
            (&self.values, &self.value_type)
        };
        let null = converter
            .convert_columns(&[arrow::array::new_null_array(t, 1)])
            .context("arg_min/arg_max")?;
        let parser = converter.parser();
        let rows = self.best.iter().map(|b| match b {
            Some((key_len, bytes)) => {
                let (k, v) = bytes.split_at(*key_len as usize);
                parser.parse(if keys { k } else { v })
            }
            None => null.row(0),
        });
        Ok(converter
            .convert_rows(rows)
            .context("arg_min/arg_max")?
            .remove(0))
    }
}

impl Accumulator for ArgExtreme {
    /// Raw rows and states alike: (a, b) columns.
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.best.resize(n_groups, None);
        let (a, b) = (&inputs[0], &inputs[1]);
        let keys = self
            .keys
            .convert_columns(std::slice::from_ref(b))
            .context("arg_min/arg_max")?;
        let mut values = None;
        for (i, g) in groups.iter().enumerate() {
            if a.is_null(i) || b.is_null(i) {
                continue;
            }
            let key = keys.row(i);
            let key = key.data();
            let slot = &mut self.best[*g as usize];
            let better = match slot {
                None => true,
                Some((key_len, bytes)) => {
                    let current = &bytes[..*key_len as usize];
                    if self.is_min {
                        key < current
                    } else {
                        key > current
                    }
                }
            };
            if better {
                // Values are encoded only for a batch that improves a group.
                if values.is_none() {
                    values = Some(
                        self.values
                            .convert_columns(std::slice::from_ref(a))
                            .context("arg_min/arg_max")?,
                    );
                }
                let value = values.as_ref().expect("encoded").row(i);
                let bytes: Box<[u8]> = [key, value.data()].concat().into();
                self.bytes += bytes.len();
                if let Some((_, old)) = slot.replace((key.len() as u32, bytes)) {
                    self.bytes -= old.len();
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let out = vec![self.column(false)?, self.column(true)?];
        // Emptied, not cleared: what a spilled table held is given back.
        self.best = vec![];
        self.bytes = 0;
        Ok(out)
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let out = self.column(false)?;
        self.best = vec![];
        self.bytes = 0;
        Ok(out)
    }

    fn size(&self) -> usize {
        self.best.capacity() * 24 + self.bytes
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::Int64Type;

    #[test]
    fn states_merge_as_rows_do() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            None,
            Some("x"),
            Some("y"),
            Some("z"),
        ]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![Some(0), Some(5), Some(2), None]));
        let mut states = vec![];
        for (range, is_min) in [(0..2, true), (2..4, true), (0..2, false), (2..4, false)] {
            let mut acc = ArgExtreme::new(is_min, &DataType::Utf8, &DataType::Int64).unwrap();
            let (s, n) = (range.start, range.len());
            acc.update(&vec![0; n], 1, &[a.slice(s, n), b.slice(s, n)])
                .unwrap();
            states.push(acc.state().unwrap());
        }
        for (is_min, parts, want) in [(true, &states[..2], "y"), (false, &states[2..], "x")] {
            let mut merged = ArgExtreme::new(is_min, &DataType::Utf8, &DataType::Int64).unwrap();
            for s in parts {
                merged.update(&[0], 2, s).unwrap();
            }
            let out = merged.finish().unwrap();
            assert_eq!(out.as_string::<i32>().value(0), want);
            assert!(out.is_null(1));
        }
        // The key travels with the value in the state.
        assert_eq!(states[0][1].as_primitive::<Int64Type>().value(0), 5);
    }
}
