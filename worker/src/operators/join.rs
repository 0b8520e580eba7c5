//! Hash join: the build side is hashed whole, the probe side streams past.
//!
//! Build rows with equal keys form a chain (`next`), so a many-to-many key
//! costs one table entry. Probing collects (probe row, build row) pairs and
//! materialises them with `take` in chunks, so a hot key cannot make one
//! giant batch. Extra ON predicates are evaluated on the candidate pairs.
//!
//! The build side is reserved as it is read. When the pool refuses, the
//! join goes to disk (`join_spill`): a grace hash join, and for a partition
//! that one hot key keeps too big, chunks of the build side against the
//! probe side re-read from disk.

use std::sync::Arc;

use arrow::array::{
    new_null_array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array,
};
use arrow::compute::{concat_batches, filter_record_batch, take, take_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow_row::Rows;
use hashbrown::HashTable;
use keel_proto::expr::Expr;
use keel_proto::plan::JoinType;

use super::join_spill::grace_join;
use super::{hash_bytes, BatchIter, KeyEncoder, BATCH_ROWS};
use crate::error::{ArrowContext, Result, WorkerError};
use crate::eval::evaluate_predicate;
use crate::memory::{batch_memory, is_refusal, Reservation};

const END: u32 = u32::MAX;
/// Pairs materialised per output batch.
const PAIRS_PER_BATCH: usize = 4 * BATCH_ROWS;

pub struct JoinSpec {
    pub build: BatchIter,
    pub build_schema: SchemaRef,
    pub probe: BatchIter,
    pub probe_schema: SchemaRef,
    pub build_keys: Vec<Expr>,
    pub probe_keys: Vec<Expr>,
    pub join_type: JoinType,
    pub build_left: bool,
    pub filter: Option<Expr>,
    pub schema: SchemaRef,
    pub reservation: Reservation,
    /// Spill recursion level: 0 for the plan's own join.
    pub level: u32,
    /// The whole build side's flags when this join runs on one spilled
    /// partition of it (anti joins answer from the whole side).
    pub flags: Option<BuildFlags>,
}

/// What a null-aware anti join needs to know about the entire build side.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildFlags {
    pub empty: bool,
    pub has_null_key: bool,
}

pub(super) struct BuildSide {
    batch: RecordBatch,
    rows: Rows,
    table: HashTable<u32>,
    next: Vec<u32>,
    pub(super) flags: BuildFlags,
    /// FULL joins: which build rows found a partner (empty otherwise).
    matched: Vec<bool>,
}

/// Build rows of a FULL join without a partner: NULLs for the (left) probe
/// side's columns, then the rows.
pub(super) fn pad_probe_side(spec: &JoinSpec, rows: &RecordBatch) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = spec
        .probe_schema
        .fields()
        .iter()
        .map(|f| new_null_array(f.data_type(), rows.num_rows()))
        .collect();
    columns.extend(rows.columns().iter().cloned());
    make_batch(&spec.schema, columns, rows.num_rows())
}

/// Probing state shared by the in-memory and the spilled paths.
pub(super) struct Prober {
    pub(super) encoder: KeyEncoder,
    pub(super) pair_schema: SchemaRef,
}

pub fn hash_join(spec: JoinSpec) -> Result<BatchIter> {
    if spec.build_left && spec.join_type != JoinType::Inner {
        return Err(WorkerError::eval(format!(
            "{:?} join must build its right side",
            spec.join_type
        )));
    }
    let mut spec = spec;
    let prober = Prober::new(&spec)?;
    let mut built: Option<BuildSide> = None;
    let mut spilled: Option<BatchIter> = None;
    let mut pending: std::vec::IntoIter<RecordBatch> = Vec::new().into_iter();
    let mut failed = false;
    let mut finished = false;
    Ok(Box::new(std::iter::from_fn(move || loop {
        if let Some(b) = pending.next() {
            return Some(Ok(b));
        }
        if let Some(it) = spilled.as_mut() {
            return it.next();
        }
        if failed {
            return None;
        }
        if built.is_none() {
            match build_side(&mut spec) {
                Ok(Built::InMemory(b)) => built = Some(b),
                Ok(Built::Spill(buffered)) => match grace_join(&mut spec, buffered) {
                    Ok(it) => {
                        spilled = Some(it);
                        continue;
                    }
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                },
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            }
        }
        let build = built.as_mut().expect("built");
        let batch = match spec.probe.next() {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Some(Err(e)),
            None if finished => return None,
            None => {
                finished = true;
                match build.unmatched(&spec) {
                    Ok(out) => pending = out.into_iter(),
                    Err(e) => return Some(Err(e)),
                }
                continue;
            }
        };
        let flags = spec.flags.unwrap_or(build.flags);
        let mut matched = vec![false; batch.num_rows()];
        let out = prober
            .probe(&spec, build, &batch, &mut matched)
            .and_then(|mut out| {
                out.extend(prober.unmatched(&spec, &batch, &matched, flags)?);
                Ok(out)
            });
        match out {
            Ok(out) => pending = out.into_iter(),
            Err(e) => {
                failed = true;
                return Some(Err(e));
            }
        }
    })))
}

enum Built {
    InMemory(BuildSide),
    /// The pool refused: what was read so far, to be partitioned to disk.
    Spill(Vec<RecordBatch>),
}

/// Reads the build side into memory, or stops at the first refused reservation.
fn build_side(spec: &mut JoinSpec) -> Result<Built> {
    let mut batches = vec![];
    let mut bytes = 0;
    while let Some(b) = spec.build.next() {
        let b = b?;
        let size = batch_memory(&b);
        batches.push(b);
        if let Err(e) = spec.reservation.grow(size) {
            if !is_refusal(&e) {
                return Err(e);
            }
            return Ok(Built::Spill(batches));
        }
        bytes += size;
    }
    // Concatenating copies the side once; the key rows, table and chains come on top.
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if let Err(e) = spec.reservation.grow(bytes + rows * 24) {
        if !is_refusal(&e) {
            return Err(e);
        }
        return Ok(Built::Spill(batches));
    }
    let batch = concat_batches(&spec.build_schema, &batches).context("join build side")?;
    drop(batches);
    let side = BuildSide::new(spec, batch, None)?;
    spec.reservation.resize(side.size())?;
    Ok(Built::InMemory(side))
}

impl BuildSide {
    /// Hashes `batch` on the build keys. `flags` overrides what the batch says
    /// about the build side (when it is one chunk of a bigger one).
    pub(super) fn new(
        spec: &JoinSpec,
        batch: RecordBatch,
        flags: Option<BuildFlags>,
    ) -> Result<Self> {
        let encoder = KeyEncoder::new(spec.build_keys.clone(), &spec.build_schema)?;
        let key_columns = encoder.key_columns(&batch)?;
        let rows = encoder.encode_columns(&key_columns)?;
        let n = batch.num_rows();
        let nulls = KeyEncoder::null_rows(&key_columns, n);
        let mut table: HashTable<u32> = HashTable::with_capacity(n);
        let mut next = vec![END; n];
        // Inserted in reverse so each chain lists build rows in input order.
        for i in (0..n).rev() {
            if nulls.as_ref().is_some_and(|nl| nl[i]) {
                continue;
            }
            let bytes = rows.row(i).data();
            let hash = hash_bytes(bytes);
            match table.find_mut(hash, |&h| rows.row(h as usize).data() == bytes) {
                Some(head) => {
                    next[i] = *head;
                    *head = i as u32;
                }
                None => {
                    table.insert_unique(hash, i as u32, |&h| {
                        hash_bytes(rows.row(h as usize).data())
                    });
                }
            }
        }
        let flags = flags.unwrap_or(BuildFlags {
            empty: n == 0,
            has_null_key: nulls.is_some(),
        });
        let matched = match spec.join_type {
            JoinType::Full => vec![false; n],
            _ => vec![],
        };
        Ok(BuildSide {
            batch,
            rows,
            table,
            next,
            flags,
            matched,
        })
    }

    pub(super) fn size(&self) -> usize {
        batch_memory(&self.batch)
            + self.rows.size()
            + self.table.capacity() * 5
            + self.next.capacity() * 4
            + self.matched.capacity()
    }

    /// FULL joins, once every probe row has been past: the build rows that
    /// found no partner, with NULLs for the probe side's columns.
    pub(super) fn unmatched(&self, spec: &JoinSpec) -> Result<Vec<RecordBatch>> {
        if spec.join_type != JoinType::Full {
            return Ok(vec![]);
        }
        let idx: Vec<u32> = (0..self.matched.len() as u32)
            .filter(|&i| !self.matched[i as usize])
            .collect();
        if idx.is_empty() {
            return Ok(vec![]);
        }
        let rows = take_record_batch(&self.batch, &UInt32Array::from(idx)).context("join take")?;
        Ok(vec![pad_probe_side(spec, &rows)?])
    }
}

impl Prober {
    pub(super) fn new(spec: &JoinSpec) -> Result<Self> {
        let encoder = KeyEncoder::new(spec.probe_keys.clone(), &spec.probe_schema)?;
        let (left, right) = if spec.build_left {
            (&spec.build_schema, &spec.probe_schema)
        } else {
            (&spec.probe_schema, &spec.build_schema)
        };
        let fields: Vec<_> = left
            .fields()
            .iter()
            .chain(right.fields().iter())
            .cloned()
            .collect();
        Ok(Prober {
            encoder,
            pair_schema: Arc::new(Schema::new(fields)),
        })
    }

    /// Joined pairs of `batch` with `build` (inner and left joins), marking
    /// in `matched` every probe row that found a partner.
    pub(super) fn probe(
        &self,
        spec: &JoinSpec,
        build: &mut BuildSide,
        batch: &RecordBatch,
        matched: &mut [bool],
    ) -> Result<Vec<RecordBatch>> {
        let n = batch.num_rows();
        let key_columns = self.encoder.key_columns(batch)?;
        let rows = self.encoder.encode_columns(&key_columns)?;
        let nulls = KeyEncoder::null_rows(&key_columns, n);

        if matches!(
            spec.join_type,
            JoinType::Semi | JoinType::Anti | JoinType::NotExists
        ) && spec.filter.is_none()
        {
            for (i, m) in matched.iter_mut().enumerate() {
                let null = nulls.as_ref().is_some_and(|nl| nl[i]);
                *m |= !null && head(build, &rows, i).is_some();
            }
            return Ok(vec![]);
        }

        let mut out = vec![];
        let mut probe_idx: Vec<u32> = Vec::with_capacity(PAIRS_PER_BATCH);
        let mut build_idx: Vec<u32> = Vec::with_capacity(PAIRS_PER_BATCH);
        for i in 0..n {
            if nulls.as_ref().is_some_and(|nl| nl[i]) {
                continue;
            }
            let mut j = match head(build, &rows, i) {
                Some(h) => h,
                None => continue,
            };
            while j != END {
                probe_idx.push(i as u32);
                build_idx.push(j);
                j = build.next[j as usize];
            }
            if probe_idx.len() >= PAIRS_PER_BATCH {
                self.emit_pairs(
                    spec,
                    build,
                    batch,
                    &mut probe_idx,
                    &mut build_idx,
                    matched,
                    &mut out,
                )?;
            }
        }
        self.emit_pairs(
            spec,
            build,
            batch,
            &mut probe_idx,
            &mut build_idx,
            matched,
            &mut out,
        )?;
        Ok(out)
    }

    /// What a probe batch contributes once its matches are known: unmatched
    /// rows with NULLs (left), matched rows (semi) or null-aware misses (anti).
    pub(super) fn unmatched(
        &self,
        spec: &JoinSpec,
        batch: &RecordBatch,
        matched: &[bool],
        flags: BuildFlags,
    ) -> Result<Vec<RecordBatch>> {
        let n = batch.num_rows();
        match spec.join_type {
            JoinType::Inner => Ok(vec![]),
            JoinType::Left | JoinType::Full => {
                let unmatched: Vec<u32> = (0..n as u32).filter(|i| !matched[*i as usize]).collect();
                if unmatched.is_empty() {
                    return Ok(vec![]);
                }
                let idx = UInt32Array::from(unmatched);
                let mut columns = take_columns(batch, &idx)?;
                for f in spec.build_schema.fields() {
                    columns.push(new_null_array(f.data_type(), idx.len()));
                }
                Ok(vec![make_batch(&spec.schema, columns, idx.len())?])
            }
            JoinType::Semi => semi_output(spec, batch, matched.to_vec()),
            JoinType::NotExists => semi_output(spec, batch, matched.iter().map(|m| !m).collect()),
            JoinType::Anti => {
                let key_columns = self.encoder.key_columns(batch)?;
                let nulls = KeyEncoder::null_rows(&key_columns, n);
                // NOT IN: a NULL on either side makes the answer unknown unless the set is empty.
                let keep = (0..n)
                    .map(|i| {
                        let null = nulls.as_ref().is_some_and(|nl| nl[i]);
                        flags.empty || (!matched[i] && !null && !flags.has_null_key)
                    })
                    .collect();
                semi_output(spec, batch, keep)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_pairs(
        &self,
        spec: &JoinSpec,
        build: &mut BuildSide,
        batch: &RecordBatch,
        probe_idx: &mut Vec<u32>,
        build_idx: &mut Vec<u32>,
        matched: &mut [bool],
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        if probe_idx.is_empty() {
            return Ok(());
        }
        let p = UInt32Array::from(std::mem::take(probe_idx));
        let b = UInt32Array::from(std::mem::take(build_idx));
        let probe_cols = take_columns(batch, &p)?;
        let build_cols = take_columns(&build.batch, &b)?;
        let columns = if spec.build_left {
            build_cols.into_iter().chain(probe_cols).collect()
        } else {
            probe_cols.into_iter().chain(build_cols).collect()
        };
        let mut pairs = make_batch(&self.pair_schema, columns, p.len())?;
        let mut pair_probe = p;
        let mut pair_build = b;
        if let Some(filter) = &spec.filter {
            let mask = evaluate_predicate(filter, &pairs)?;
            pairs = filter_record_batch(&pairs, &mask).context("join filter")?;
            pair_probe = filter_indices(&pair_probe, &mask)?;
            if !build.matched.is_empty() {
                pair_build = filter_indices(&pair_build, &mask)?;
            }
        }
        for i in pair_probe.values() {
            matched[*i as usize] = true;
        }
        if !build.matched.is_empty() {
            for i in pair_build.values() {
                build.matched[*i as usize] = true;
            }
        }
        if matches!(
            spec.join_type,
            JoinType::Inner | JoinType::Left | JoinType::Full
        ) && pairs.num_rows() > 0
        {
            out.push(
                RecordBatch::try_new(spec.schema.clone(), pairs.columns().to_vec())
                    .context("join output")?,
            );
        }
        Ok(())
    }
}

fn head(build: &BuildSide, rows: &Rows, i: usize) -> Option<u32> {
    let bytes = rows.row(i).data();
    build
        .table
        .find(hash_bytes(bytes), |&h| {
            build.rows.row(h as usize).data() == bytes
        })
        .copied()
}

fn filter_indices(idx: &UInt32Array, mask: &BooleanArray) -> Result<UInt32Array> {
    let f = arrow::compute::filter(idx, mask).context("join filter")?;
    Ok(f.as_any()
        .downcast_ref::<UInt32Array>()
        .expect("u32")
        .clone())
}

fn semi_output(spec: &JoinSpec, batch: &RecordBatch, keep: Vec<bool>) -> Result<Vec<RecordBatch>> {
    let mask = BooleanArray::from(keep);
    let kept = filter_record_batch(batch, &mask).context("semi join")?;
    if kept.num_rows() == 0 {
        return Ok(vec![]);
    }
    Ok(vec![RecordBatch::try_new(
        spec.schema.clone(),
        kept.columns().to_vec(),
    )
    .context("semi join")?])
}

fn take_columns(batch: &RecordBatch, idx: &UInt32Array) -> Result<Vec<ArrayRef>> {
    batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), idx, None).context("join take"))
        .collect()
}

fn make_batch(schema: &SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).context("join output")
}
