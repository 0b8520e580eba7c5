//! The hash join's way to disk.
//!
//! Grace hash join: both sides are hash-partitioned on the join keys into
//! spill files, then each pair of partitions is joined on its own by a
//! [`hash_join`] one level down (which may partition again, on other hash
//! bits). Probe rows with a NULL key never match, so they are answered while
//! partitioning (LEFT: with NULLs; anti: kept only when the build side is
//! empty) and never written.
//!
//! A partition that re-partitioning cannot shrink holds a hot key. It is
//! joined in chunks instead: as much of its build side as the pool allows
//! is hashed, the probe partition is re-read from disk against it, and so on
//! chunk by chunk; probe rows remember across chunks whether they matched,
//! so LEFT, semi and anti joins are answered by one last pass; a FULL
//! join's build rows without a partner are answered after their chunk. It never
//! fails for memory unless a single row of the build side cannot be held
//! (a batch too big for the pool is split).

use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};

use super::join::{hash_join, pad_probe_side, BuildFlags, BuildSide, JoinSpec, Prober};
use super::{BatchIter, KeyEncoder};
use crate::error::{ArrowContext, Result};
use crate::memory::{batch_memory, is_refusal};
use crate::spill::{SpillFile, SpillPartitioner, SpillWriter, MAX_SPILL_LEVEL};
use keel_proto::plan::JoinType;

impl JoinSpec {
    /// The same join over other inputs, one spill level down.
    fn derive(&self, build: BatchIter, probe: BatchIter, flags: BuildFlags) -> JoinSpec {
        JoinSpec {
            build,
            build_schema: self.build_schema.clone(),
            probe,
            probe_schema: self.probe_schema.clone(),
            build_keys: self.build_keys.clone(),
            probe_keys: self.probe_keys.clone(),
            join_type: self.join_type,
            build_left: self.build_left,
            filter: self.filter.clone(),
            schema: self.schema.clone(),
            reservation: self.reservation.sibling("hash join (spilled partition)"),
            level: self.level + 1,
            flags: Some(flags),
        }
    }
}

fn empty() -> BatchIter {
    Box::new(std::iter::empty())
}

/// Partitions the build side (`buffered`, then the rest of `spec.build`) to
/// disk and returns the join's output: null-key probe answers while the
/// probe side is partitioned, then each partition's join.
pub(super) fn grace_join(spec: &mut JoinSpec, buffered: Vec<RecordBatch>) -> Result<BatchIter> {
    let memory = spec.reservation.task().clone();
    tracing::debug!(
        level = spec.level,
        "hash join spills: partitioning both sides"
    );
    let track = spec.flags.is_none();
    let mut flags = spec.flags.unwrap_or(BuildFlags {
        empty: true,
        has_null_key: false,
    });
    let build_keys = KeyEncoder::new(spec.build_keys.clone(), &spec.build_schema)?;
    let mut parts = SpillPartitioner::new(
        &memory,
        "join-build",
        KeyEncoder::new(spec.build_keys.clone(), &spec.build_schema)?,
        spec.build_schema.clone(),
        spec.level,
    );
    let rest = std::mem::replace(&mut spec.build, empty());
    let mut build_rows = 0;
    // FULL joins: build rows with a NULL key never match but are output.
    let mut null_build: Option<SpillWriter> = None;
    for batch in buffered.into_iter().map(Ok).chain(rest) {
        let batch = batch?;
        let (non_null, had_nulls) = drop_null_keys(&build_keys, &batch)?;
        if track {
            flags.empty &= batch.num_rows() == 0;
            flags.has_null_key |= had_nulls;
        }
        if had_nulls && spec.join_type == JoinType::Full {
            let writer = match null_build.as_mut() {
                Some(w) => w,
                None => null_build.insert(SpillWriter::create(
                    &memory,
                    "join-build-null-keys",
                    &spec.build_schema,
                )?),
            };
            writer.write(&null_key_rows(&build_keys, &batch)?)?;
        }
        build_rows += non_null.num_rows();
        parts.write(&non_null)?;
    }
    let mut null_build = null_build.map(SpillWriter::finish).transpose()?;
    spec.reservation.resize(0)?;
    let build_files = parts.finish()?;

    // The same join at this level; partitions' joins derive from it one level down.
    let mut template = spec.derive(empty(), empty(), flags);
    template.level = spec.level;
    let prober = Prober::new(&template)?;
    let probe_parts = SpillPartitioner::new(
        &memory,
        "join-probe",
        KeyEncoder::new(spec.probe_keys.clone(), &spec.probe_schema)?,
        spec.probe_schema.clone(),
        spec.level,
    );
    let probe_keys = KeyEncoder::new(spec.probe_keys.clone(), &spec.probe_schema)?;
    let mut probe = Some(std::mem::replace(&mut spec.probe, empty()));
    let mut probe_parts = Some(probe_parts);
    let mut build_files = Some(build_files);
    let mut joins: std::vec::IntoIter<(Option<SpillFile>, Option<SpillFile>)> = vec![].into_iter();
    let mut current: Option<BatchIter> = None;
    let mut pending: std::vec::IntoIter<RecordBatch> = vec![].into_iter();
    let mut failed = false;
    Ok(Box::new(std::iter::from_fn(move || loop {
        if let Some(b) = pending.next() {
            return Some(Ok(b));
        }
        if failed {
            return None;
        }
        if let Some(it) = probe.as_mut() {
            // Partitioning the probe side, one batch per step.
            let step = match it.next() {
                Some(batch) => batch.and_then(|batch| {
                    let (non_null, had_nulls) = drop_null_keys(&probe_keys, &batch)?;
                    let parts = probe_parts.as_mut().expect("partitioning");
                    parts.write(&non_null)?;
                    if !had_nulls || matches!(template.join_type, JoinType::Inner | JoinType::Semi)
                    {
                        return Ok(vec![]);
                    }
                    let nulls = null_key_rows(&probe_keys, &batch)?;
                    let unmatched = vec![false; nulls.num_rows()];
                    prober.unmatched(&template, &nulls, &unmatched, flags)
                }),
                None => {
                    probe = None;
                    let probe_files = probe_parts.take().expect("partitioning").finish();
                    probe_files.map(|probe_files| {
                        let builds = build_files.take().expect("partitioned");
                        // Without probe rows a partition only answers for a FULL join.
                        let full = template.join_type == JoinType::Full;
                        joins = builds
                            .into_iter()
                            .zip(probe_files)
                            .filter(|(b, p)| p.is_some() || (full && b.is_some()))
                            .collect::<Vec<_>>()
                            .into_iter();
                        vec![]
                    })
                }
            };
            match step {
                Ok(out) => pending = out.into_iter(),
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            }
            continue;
        }
        if let Some(it) = current.as_mut() {
            match it.next() {
                Some(b) => return Some(b),
                None => current = None,
            }
        }
        if let Some(file) = null_build.take() {
            let padded = file.read_and_remove().map(|rows| {
                let template = template.derive(empty(), empty(), flags);
                Box::new(rows.map(move |b| b.and_then(|b| pad_probe_side(&template, &b))))
                    as BatchIter
            });
            match padded {
                Ok(it) => current = Some(it),
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            }
            continue;
        }
        let (build, probe_file) = joins.next()?;
        let Some(probe_file) = probe_file else {
            // A FULL join's build partition that no probe row reaches: every row unmatched.
            let build = build.expect("a build partition");
            let template = template.derive(empty(), empty(), flags);
            match build.read_and_remove() {
                Ok(rows) => {
                    current = Some(Box::new(
                        rows.map(move |b| b.and_then(|b| pad_probe_side(&template, &b))),
                    ))
                }
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            }
            continue;
        };
        // A partition holding nearly all of its parent's rows will not split: a hot key.
        let hot = build
            .as_ref()
            .is_some_and(|b| b.rows * 10 >= build_rows * 9 && build_rows > 0);
        let opened = match build {
            Some(b) if hot || template.level + 1 >= MAX_SPILL_LEVEL => {
                tracing::debug!(
                    rows = b.rows,
                    "hash join partition holds a hot key: joining in chunks"
                );
                Ok(chunked_join(
                    template.derive(empty(), empty(), flags),
                    b,
                    probe_file,
                ))
            }
            Some(b) => b.read_and_remove().and_then(|build| {
                let probe = probe_file.read_and_remove()?;
                hash_join(template.derive(build, probe, flags))
            }),
            // No build rows here: only LEFT and anti joins answer, from the probe rows alone.
            None if matches!(template.join_type, JoinType::Inner | JoinType::Semi) => continue,
            None => probe_file
                .read_and_remove()
                .and_then(|probe| hash_join(template.derive(empty(), probe, flags))),
        };
        match opened {
            Ok(it) => current = Some(it),
            Err(e) => {
                failed = true;
                return Some(Err(e));
            }
        }
    })))
}

/// The batch without rows whose key has a NULL, and whether there were any.
fn drop_null_keys(keys: &KeyEncoder, batch: &RecordBatch) -> Result<(RecordBatch, bool)> {
    let columns = keys.key_columns(batch)?;
    match KeyEncoder::null_rows(&columns, batch.num_rows()) {
        None => Ok((batch.clone(), false)),
        Some(nulls) => {
            let keep = BooleanArray::from(nulls.iter().map(|n| !n).collect::<Vec<_>>());
            Ok((
                filter_record_batch(batch, &keep).context("join spill")?,
                true,
            ))
        }
    }
}

fn null_key_rows(keys: &KeyEncoder, batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = keys.key_columns(batch)?;
    let nulls = KeyEncoder::null_rows(&columns, batch.num_rows()).unwrap_or_default();
    filter_record_batch(batch, &BooleanArray::from(nulls)).context("join spill")
}

/// Joins a build partition too big for memory in chunks, re-reading the
/// probe partition for each.
fn chunked_join(spec: JoinSpec, build: SpillFile, probe: SpillFile) -> BatchIter {
    let flags = spec.flags.unwrap_or_default();
    let prober = Prober::new(&spec);
    let mut state = Chunks {
        build_reader: build.read().ok(),
        _build: build,
        probe,
        carry: vec![],
        chunk: None,
        probe_iter: None,
        probe_index: 0,
        matched: vec![],
        build_done: false,
        final_pass: None,
        failed: false,
    };
    let mut pending: std::vec::IntoIter<RecordBatch> = vec![].into_iter();
    let mut spec = spec;
    let prober = match prober {
        Ok(p) => Arc::new(p),
        Err(e) => return Box::new(std::iter::once(Err(e))),
    };
    Box::new(std::iter::from_fn(move || loop {
        if let Some(b) = pending.next() {
            return Some(Ok(b));
        }
        if state.failed {
            return None;
        }
        match state.step(&mut spec, &prober, flags) {
            Ok(Some(out)) => pending = out.into_iter(),
            Ok(None) => return None,
            Err(e) => {
                state.failed = true;
                return Some(Err(e));
            }
        }
    }))
}

struct Chunks {
    build_reader: Option<BatchIter>,
    _build: SpillFile,
    probe: SpillFile,
    /// Build rows read but not yet in a chunk (a batch the pool refused, or
    /// the pieces of one too big for an empty chunk), the next on top.
    carry: Vec<RecordBatch>,
    chunk: Option<BuildSide>,
    probe_iter: Option<BatchIter>,
    probe_index: usize,
    /// Per probe batch (in file order), which rows found a partner so far.
    matched: Vec<Vec<bool>>,
    build_done: bool,
    final_pass: Option<(BatchIter, usize)>,
    failed: bool,
}

impl Chunks {
    /// One step: output batches, or None at the end.
    fn step(
        &mut self,
        spec: &mut JoinSpec,
        prober: &Prober,
        flags: BuildFlags,
    ) -> Result<Option<Vec<RecordBatch>>> {
        if let Some(chunk) = self.chunk.as_mut() {
            let probe = self.probe_iter.as_mut().expect("probing a chunk");
            match probe.next() {
                Some(batch) => {
                    let batch = batch?;
                    let i = self.probe_index;
                    self.probe_index += 1;
                    if self.matched.len() <= i {
                        self.matched.push(vec![false; batch.num_rows()]);
                    }
                    return prober
                        .probe(spec, chunk, &batch, &mut self.matched[i])
                        .map(Some);
                }
                None => {
                    // The whole probe partition has met this chunk (FULL: its rows without a partner).
                    let out = chunk.unmatched(spec)?;
                    self.chunk = None;
                    self.probe_iter = None;
                    spec.reservation.resize(0)?;
                    return Ok(Some(out));
                }
            }
        }
        if !self.build_done {
            let batches = self.load_chunk(spec)?;
            if batches.is_empty() {
                self.build_done = true;
                return Ok(Some(vec![]));
            }
            let batch = concat_batches(&spec.build_schema, &batches).context("join build chunk")?;
            drop(batches);
            self.chunk = Some(BuildSide::new(spec, batch, Some(flags))?);
            self.probe_iter = Some(self.probe.read()?);
            self.probe_index = 0;
            return Ok(Some(vec![]));
        }
        if spec.join_type == JoinType::Inner {
            return Ok(None);
        }
        if self.final_pass.is_none() {
            self.final_pass = Some((self.probe.read()?, 0));
        }
        let (it, i) = self.final_pass.as_mut().expect("final pass");
        let Some(batch) = it.next() else {
            return Ok(None);
        };
        let batch = batch?;
        let none = vec![false; batch.num_rows()];
        let matched = self.matched.get(*i).unwrap_or(&none);
        *i += 1;
        prober.unmatched(spec, &batch, matched, flags).map(Some)
    }

    /// Build batches up to what the pool grants (each reserved for itself,
    /// its concatenated copy and its share of the table).
    fn load_chunk(&mut self, spec: &mut JoinSpec) -> Result<Vec<RecordBatch>> {
        let mut batches = vec![];
        loop {
            let batch = match self.carry.pop() {
                Some(b) => b,
                None => match self.build_reader.as_mut().and_then(|r| r.next()) {
                    Some(b) => b?,
                    None => return Ok(batches),
                },
            };
            let need = 2 * batch_memory(&batch) + batch.num_rows() * 24;
            if let Err(e) = spec.reservation.grow(need) {
                if !is_refusal(&e) {
                    return Err(e);
                }
                if !batches.is_empty() {
                    self.carry.push(batch);
                    return Ok(batches);
                }
                // Not even this batch fits: a chunk may be part of one, down to a row.
                let rows = batch.num_rows();
                if rows <= 1 {
                    return Err(spec.reservation.cannot_proceed(need));
                }
                self.carry.push(batch.slice(rows / 2, rows - rows / 2));
                self.carry.push(batch.slice(0, rows / 2));
                continue;
            }
            batches.push(batch);
        }
    }
}
