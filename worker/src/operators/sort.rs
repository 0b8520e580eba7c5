//! Sort, and top-k when a LIMIT follows (`fetch`): the buffer is cut back to
//! k rows whenever it grows past a bound, so top-k memory stays O(k).
//!
//! A full sort reserves its buffer as it grows. When the pool refuses, the
//! buffer is sorted and written to disk as a run; at the end the runs are
//! merged in one streaming k-way merge on arrow-row encoded keys, holding
//! one batch per run.

use arrow::array::RecordBatch;
use arrow::compute::{
    concat_batches, interleave_record_batch, lexsort_to_indices, take_record_batch, SortColumn,
};
use arrow::datatypes::SchemaRef;
use arrow_row::{RowConverter, Rows, SortField};
use keel_proto::plan::SortKey;

use super::aggregate::split;
use super::{BatchIter, BATCH_ROWS};
use crate::error::{ArrowContext, Result};
use crate::eval::evaluate;
use crate::memory::{batch_memory, is_refusal, Reservation};
use crate::spill::{SpillFile, SpillWriter};

pub fn sort(
    input: BatchIter,
    schema: SchemaRef,
    keys: Vec<SortKey>,
    fetch: Option<usize>,
    mut reservation: Reservation,
) -> Result<BatchIter> {
    let mut input = Some(input);
    let mut output: Option<BatchIter> = None;
    Ok(Box::new(std::iter::from_fn(move || {
        if let Some(input) = input.take() {
            let sorted = match fetch {
                Some(k) => top_k(input, &schema, &keys, k, &mut reservation)
                    .map(|b| Box::new(split(b).into_iter().map(Ok)) as BatchIter),
                None => sort_all(input, &schema, &keys, &mut reservation),
            };
            match sorted {
                Ok(it) => output = Some(it),
                Err(e) => return Some(Err(e)),
            }
        }
        output.as_mut()?.next()
    })))
}

fn top_k(
    input: BatchIter,
    schema: &SchemaRef,
    keys: &[SortKey],
    k: usize,
    reservation: &mut Reservation,
) -> Result<RecordBatch> {
    let bound = (2 * k).max(BATCH_ROWS);
    let mut buffer: Vec<RecordBatch> = vec![];
    let (mut rows, mut bytes) = (0usize, 0usize);
    for batch in input {
        let batch = batch?;
        rows += batch.num_rows();
        bytes += batch_memory(&batch);
        buffer.push(batch);
        // Out of memory: cut the buffer back to k rows now rather than at the bound.
        let refused = match reservation.resize(2 * bytes) {
            Ok(()) => false,
            Err(e) if is_refusal(&e) => true,
            Err(e) => return Err(e),
        };
        if rows > bound || (refused && rows > k) {
            let top = sort_batch(
                &concat_batches(schema, &buffer).context("top-k")?,
                keys,
                Some(k),
            )?;
            rows = top.num_rows();
            bytes = batch_memory(&top);
            buffer = vec![top];
        }
    }
    let all = concat_batches(schema, &buffer).context("top-k")?;
    sort_batch(&all, keys, Some(k))
}

fn sort_all(
    input: BatchIter,
    schema: &SchemaRef,
    keys: &[SortKey],
    reservation: &mut Reservation,
) -> Result<BatchIter> {
    let mut buffer: Vec<RecordBatch> = vec![];
    let mut runs: Vec<SpillFile> = vec![];
    for batch in input {
        let batch = batch?;
        // The buffer, and its sorted copy at the end.
        let need = 2 * batch_memory(&batch);
        if let Err(e) = reservation.grow(need) {
            if !is_refusal(&e) {
                return Err(e);
            }
            if buffer.is_empty() {
                return Err(reservation.cannot_proceed(need));
            }
            runs.push(write_run(
                std::mem::take(&mut buffer),
                schema,
                keys,
                reservation,
            )?);
            reservation.resize(0)?;
            reservation
                .grow(need)
                .map_err(|_| reservation.cannot_proceed(need))?;
        }
        buffer.push(batch);
    }
    let all = concat_batches(schema, &buffer).context("sort")?;
    drop(buffer);
    let sorted = sort_batch(&all, keys, None)?;
    drop(all);
    if runs.is_empty() {
        return Ok(Box::new(split(sorted).into_iter().map(Ok)));
    }
    runs.push(write_sorted(&sorted, schema, reservation)?);
    drop(sorted);
    reservation.resize(0)?;
    tracing::debug!(runs = runs.len(), "sort spilled: merging runs from disk");
    Ok(Box::new(RunMerge::new(
        runs,
        schema.clone(),
        keys.to_vec(),
    )?))
}

fn write_run(
    buffer: Vec<RecordBatch>,
    schema: &SchemaRef,
    keys: &[SortKey],
    reservation: &Reservation,
) -> Result<SpillFile> {
    let all = concat_batches(schema, &buffer).context("sort run")?;
    drop(buffer);
    let sorted = sort_batch(&all, keys, None)?;
    drop(all);
    write_sorted(&sorted, schema, reservation)
}

fn write_sorted(
    sorted: &RecordBatch,
    schema: &SchemaRef,
    reservation: &Reservation,
) -> Result<SpillFile> {
    let mut w = SpillWriter::create(reservation.task(), "sort-run", schema)?;
    for part in split(sorted.clone()) {
        w.write(&part)?;
    }
    w.finish()
}

/// One run being merged: its current batch and that batch's encoded keys.
struct Run {
    batches: BatchIter,
    rows: Rows,
    pos: usize,
    /// Index of the current batch in the merge's `batches`.
    slot: usize,
    _file: SpillFile,
}

/// A streaming k-way merge of sorted runs.
struct RunMerge {
    runs: Vec<Run>,
    /// Live runs ordered by their current key (smallest first).
    order: Vec<usize>,
    converter: RowConverter,
    keys: Vec<SortKey>,
    schema: SchemaRef,
    /// Batches the pending output rows point into.
    batches: Vec<RecordBatch>,
    failed: bool,
}

impl RunMerge {
    fn new(files: Vec<SpillFile>, schema: SchemaRef, keys: Vec<SortKey>) -> Result<Self> {
        let fields = keys
            .iter()
            .map(|k| {
                Ok(SortField::new_with_options(
                    k.expr.data_type(&schema)?,
                    k.options(),
                ))
            })
            .collect::<Result<Vec<_>, keel_proto::ProtoError>>()?;
        let converter = RowConverter::new(fields).context("sort merge")?;
        let mut merge = RunMerge {
            runs: vec![],
            order: vec![],
            converter,
            keys,
            schema,
            batches: vec![],
            failed: false,
        };
        for file in files {
            let mut batches = file.read()?;
            if let Some(first) = batches.next() {
                let first = first?;
                let rows = merge.encode(&first)?;
                merge.batches.push(first);
                merge.runs.push(Run {
                    batches,
                    rows,
                    pos: 0,
                    slot: merge.batches.len() - 1,
                    _file: file,
                });
            }
        }
        merge.order = (0..merge.runs.len()).collect();
        let runs = &merge.runs;
        merge
            .order
            .sort_by(|&a, &b| runs[a].rows.row(0).cmp(&runs[b].rows.row(0)));
        Ok(merge)
    }

    fn encode(&self, batch: &RecordBatch) -> Result<Rows> {
        let columns = self
            .keys
            .iter()
            .map(|k| evaluate(&k.expr, batch))
            .collect::<Result<Vec<_>>>()?;
        self.converter
            .convert_columns(&columns)
            .context("sort merge")
    }

    /// Moves run `r` past its current row; false when the run is exhausted.
    fn advance(&mut self, r: usize) -> Result<bool> {
        let run = &mut self.runs[r];
        run.pos += 1;
        if run.pos < run.rows.num_rows() {
            return Ok(true);
        }
        match run.batches.next() {
            None => Ok(false),
            Some(batch) => {
                let batch = batch?;
                let rows = self.encode(&batch)?;
                self.batches.push(batch);
                let run = &mut self.runs[r];
                run.rows = rows;
                run.pos = 0;
                run.slot = self.batches.len() - 1;
                Ok(true)
            }
        }
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(BATCH_ROWS);
        while picks.len() < BATCH_ROWS && !self.order.is_empty() {
            let r = self.order.remove(0);
            picks.push((self.runs[r].slot, self.runs[r].pos));
            if self.advance(r)? {
                let runs = &self.runs;
                let key = runs[r].rows.row(runs[r].pos);
                // Ties go after equal keys already queued: the merge is stable by run.
                let at = self
                    .order
                    .partition_point(|&o| runs[o].rows.row(runs[o].pos) <= key);
                self.order.insert(at, r);
            }
        }
        if picks.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&RecordBatch> = self.batches.iter().collect();
        let out = interleave_record_batch(&refs, &picks).context("sort merge")?;
        // Keep only the batches runs still point into, renumbered.
        let mut kept = Vec::with_capacity(self.runs.len());
        for run in &mut self.runs {
            kept.push(self.batches[run.slot].clone());
            run.slot = kept.len() - 1;
        }
        self.batches = kept;
        Ok(Some(
            RecordBatch::try_new(self.schema.clone(), out.columns().to_vec())
                .context("sort merge")?,
        ))
    }
}

impl Iterator for RunMerge {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_batch() {
            Ok(b) => b.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

pub fn sort_batch(
    batch: &RecordBatch,
    keys: &[SortKey],
    fetch: Option<usize>,
) -> Result<RecordBatch> {
    if batch.num_rows() == 0 {
        return Ok(batch.clone());
    }
    let columns = keys
        .iter()
        .map(|k| {
            Ok(SortColumn {
                values: evaluate(&k.expr, batch)?,
                options: Some(k.options()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let indices = lexsort_to_indices(&columns, fetch).context("sort")?;
    take_record_batch(batch, &indices).context("sort")
}
