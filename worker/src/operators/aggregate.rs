//! Hash aggregation.
//!
//! Groups are interned in a hash table (see `group_table`); accumulators
//! update per batch from the resulting group ids. A `Partial` aggregate
//! that finds nearly every row is its own group stops hashing and passes
//! rows through as one-row states: the shuffle would carry as many rows
//! either way, so the table only cost memory and time.
//!
//! Memory: the table's growth for a batch is reserved before the batch is
//! interned. When the pool refuses, a `Partial` aggregate emits its states
//! early and starts again; a `Final` or `Single` one dumps its groups, as
//! states, into hash-partitioned spill files, goes on with an empty table,
//! and at the end dumps the rest and merges each partition on its own (a
//! partition still too big spills again on other hash bits).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use keel_proto::expr::Expr;
use keel_proto::plan::{AggExpr, AggMode};

use super::accumulators::{self, Accumulator};
use super::group_table::{GroupTable, Scratch};
use super::{BatchIter, KeyEncoder, BATCH_ROWS};
use crate::error::{ArrowContext, Result, WorkerError};
use crate::eval::evaluate;
use crate::memory::{is_refusal, Reservation};
use crate::spill::{SpillFile, SpillPartitioner, MAX_SPILL_LEVEL};

/// Rows a partial aggregate sees before it judges whether grouping pays.
const PARTIAL_PROBE_ROWS: usize = 100_000;
/// Above this many groups per input row, partial aggregation is skipped.
const PARTIAL_SKIP_RATIO: f64 = 0.5;

pub fn aggregate(
    input: BatchIter,
    mode: AggMode,
    group_by: Vec<Expr>,
    aggs: Vec<AggExpr>,
    schema: SchemaRef,
    reservation: Reservation,
) -> Result<BatchIter> {
    aggregate_at(input, mode, group_by, aggs, schema, reservation, 0)
}

/// An aggregation at a spill recursion `level` (0 for the plan's own).
fn aggregate_at(
    input: BatchIter,
    mode: AggMode,
    group_by: Vec<Expr>,
    aggs: Vec<AggExpr>,
    schema: SchemaRef,
    reservation: Reservation,
    level: u32,
) -> Result<BatchIter> {
    let mut state = AggState::new(mode, group_by, aggs, schema, reservation, level);
    let mut input = input;
    let mut pending: std::vec::IntoIter<RecordBatch> = Vec::new().into_iter();
    let mut merging: Option<Merge> = None;
    let mut finished = false;
    Ok(Box::new(std::iter::from_fn(move || loop {
        if let Some(b) = pending.next() {
            return Some(Ok(b));
        }
        if let Some(m) = merging.as_mut() {
            return m.next();
        }
        if finished {
            // The emitted table is consumed: release what it held.
            state.release();
            return None;
        }
        let step = match input.next() {
            Some(Ok(batch)) => state.push(batch),
            Some(Err(e)) => Err(e),
            None => {
                finished = true;
                if state.spilling {
                    state.finish_spill().map(|files| {
                        merging = Some(Merge::new(&state, files));
                        vec![]
                    })
                } else {
                    state.emit()
                }
            }
        };
        match step {
            Ok(out) => pending = out.into_iter(),
            Err(e) => {
                finished = true;
                return Some(Err(e));
            }
        }
    })))
}

/// The second half of a spilled aggregation: each spill partition (states
/// of its groups) is merged by an aggregation of its own, one at a time.
struct Merge {
    partitions: std::vec::IntoIter<SpillFile>,
    current: Option<BatchIter>,
    group_by: Vec<Expr>,
    aggs: Vec<AggExpr>,
    schema: SchemaRef,
    reservation: Reservation,
    level: u32,
}

impl Merge {
    fn new(state: &AggState, files: Vec<SpillFile>) -> Self {
        Merge {
            partitions: files.into_iter(),
            current: None,
            // The dump holds the key columns first, then the states.
            group_by: (0..state.group_by.len()).map(Expr::Column).collect(),
            aggs: state.aggs.clone(),
            schema: state.schema.clone(),
            reservation: state
                .reservation
                .sibling("hash aggregate (spilled partition)"),
            level: state.level + 1,
        }
    }

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(it) = self.current.as_mut() {
                match it.next() {
                    Some(b) => return Some(b),
                    None => self.current = None,
                }
            }
            let file = self.partitions.next()?;
            let opened = file.read_and_remove().and_then(|input| {
                aggregate_at(
                    input,
                    AggMode::Final,
                    self.group_by.clone(),
                    self.aggs.clone(),
                    self.schema.clone(),
                    self.reservation
                        .sibling("hash aggregate (spilled partition)"),
                    self.level,
                )
            });
            match opened {
                Ok(it) => self.current = Some(it),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

pub(super) struct AggState {
    mode: AggMode,
    group_by: Vec<Expr>,
    aggs: Vec<AggExpr>,
    schema: SchemaRef,
    reservation: Reservation,
    level: u32,
    /// Set once the table has been dumped to disk (Final and Single modes).
    spilling: bool,
    /// The spill partitions, opened with the first rows written.
    spill: Option<SpillPartitioner>,
    groups: Option<GroupTable>,
    accs: Vec<Box<dyn Accumulator>>,
    ids: Vec<u32>,
    rows_seen: usize,
    passthrough: bool,
}

impl AggState {
    pub(super) fn new(
        mode: AggMode,
        group_by: Vec<Expr>,
        aggs: Vec<AggExpr>,
        schema: SchemaRef,
        reservation: Reservation,
        level: u32,
    ) -> Self {
        AggState {
            mode,
            group_by,
            aggs,
            schema,
            reservation,
            level,
            spilling: false,
            spill: None,
            groups: None,
            accs: vec![],
            ids: vec![],
            rows_seen: 0,
            passthrough: false,
        }
    }

    /// The argument columns each accumulator reads from `batch`.
    fn acc_inputs(&self, batch: &RecordBatch) -> Result<Vec<Vec<ArrayRef>>> {
        let mut out = Vec::with_capacity(self.aggs.len());
        if matches!(self.mode, AggMode::Final | AggMode::Merge) {
            let mut col = self.group_by.len();
            for a in &self.aggs {
                let w = a.state_width();
                out.push(batch.columns()[col..col + w].to_vec());
                col += w;
            }
        } else {
            for a in &self.aggs {
                let cols = a.inputs().map(|e| evaluate(e, batch));
                out.push(if a.distinct {
                    // DISTINCT sees -0.0 and 0.0 (and every NaN) as one value.
                    cols.map(|c| c.map(super::normalize_key))
                        .collect::<Result<Vec<_>>>()?
                } else {
                    cols.collect::<Result<Vec<_>>>()?
                });
            }
        }
        Ok(out)
    }

    fn new_accumulators(&self, inputs: &[Vec<ArrayRef>]) -> Result<Vec<Box<dyn Accumulator>>> {
        self.aggs
            .iter()
            .zip(inputs)
            .map(|(a, cols)| {
                let types: Vec<DataType> = cols.iter().map(|c| c.data_type().clone()).collect();
                accumulators::create(a, self.mode, &types)
            })
            .collect()
    }

    fn init(&mut self, batch: &RecordBatch, inputs: &[Vec<ArrayRef>]) -> Result<()> {
        if self.groups.is_some() {
            return Ok(());
        }
        self.groups = Some(GroupTable::new(
            self.group_by.clone(),
            batch.schema().as_ref(),
        )?);
        self.accs = self.new_accumulators(inputs)?;
        Ok(())
    }

    pub(super) fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let rows = batch.num_rows();
        let inputs = self.acc_inputs(&batch)?;
        self.init(&batch, &inputs)?;
        let key_columns = self
            .group_by
            .iter()
            .map(|e| evaluate(e, &batch).map(super::normalize_key))
            .collect::<Result<Vec<_>>>()?;
        if self.passthrough {
            return self.pass_through(key_columns, &inputs, rows);
        }
        // Reserve for the worst case (every row a new group) before the table grows.
        let mut out = vec![];
        // A global aggregate holds one group, with nothing to partition by:
        // it goes on over its share (its state is one row, or one DISTINCT set).
        let global = self.group_by.is_empty();
        let reserved = self
            .reservation
            .resize(self.projected_size(rows))
            .or_else(|e| {
                if global && is_refusal(&e) {
                    Ok(())
                } else {
                    Err(e)
                }
            });
        if let Err(e) = reserved {
            if !is_refusal(&e) {
                return Err(e);
            }
            // A final aggregate whose table is small next to the batch's
            // worst case (every row a new group) takes the batch in halves
            // first: spilling a small table frees little, and each spill
            // of a merge nests another level.
            let halves_first = matches!(self.mode, AggMode::Final | AggMode::Single)
                && rows > 1
                && 2 * self.size() < self.projected_size(rows);
            if halves_first {
                let half = rows / 2;
                out.extend(self.push(batch.slice(0, half))?);
                out.extend(self.push(batch.slice(half, rows - half))?);
                return Ok(out);
            }
            // An empty table has nothing to relieve: the batch is what
            // does not fit.
            if self.groups.as_ref().is_some_and(|g| g.n_groups() > 0) {
                out = self.relieve()?;
            }
            if let Err(e) = self.reservation.resize(self.projected_size(rows)) {
                if !is_refusal(&e) {
                    return Err(e);
                }
                // Not even one batch fits beside an empty table (its worst
                // case is every row a new group). A partial aggregate sends
                // it on as states; a final one takes it in halves, down to
                // a single row, which is the true limit. (Spilling the batch
                // as states would only hand the same batch to the merge.)
                if self.mode == AggMode::Partial {
                    out.extend(self.pass_through(key_columns, &inputs, rows)?);
                } else if self.mode == AggMode::Merge {
                    // States in, states out: the batch goes on as it is.
                    out.push(batch.clone());
                } else if rows > 1 {
                    let half = rows / 2;
                    out.extend(self.push(batch.slice(0, half))?);
                    out.extend(self.push(batch.slice(half, rows - half))?);
                } else {
                    return Err(self.reservation.cannot_proceed(self.projected_size(rows)));
                }
                return Ok(out);
            }
        }
        let groups = self.groups.as_mut().expect("initialised");
        groups.intern(&key_columns, rows, &mut self.ids)?;
        let n = groups.n_groups();
        for (acc, cols) in self.accs.iter_mut().zip(&inputs) {
            acc.update(&self.ids, n, cols)?;
        }
        self.rows_seen += rows;
        if let Err(e) = self.reservation.resize(self.size()) {
            if !is_refusal(&e) {
                return Err(e);
            }
            // Accumulators outgrew the projection (strings longer than
            // the ones seen so far): relieve the pressure now.
            if !global {
                out.extend(self.relieve()?);
                self.reservation.resize(self.size()).or_else(|e| {
                    if is_refusal(&e) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }

        if self.mode == AggMode::Partial
            && !self.group_by.is_empty()
            && self.rows_seen >= PARTIAL_PROBE_ROWS
            && n as f64 > self.rows_seen as f64 * PARTIAL_SKIP_RATIO
        {
            tracing::debug!(
                groups = n,
                rows = self.rows_seen,
                "partial aggregation does not reduce rows; passing through"
            );
            self.passthrough = true;
            return self.emit();
        }
        Ok(vec![])
    }

    fn size(&self) -> usize {
        self.groups.as_ref().map_or(0, |g| g.size())
            + self.accs.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Bytes held if `rows` more groups were added (the table may double).
    fn projected_size(&self, rows: usize) -> usize {
        let Some(groups) = self.groups.as_ref() else {
            return 0;
        };
        let n = groups.n_groups().max(1);
        let accs: usize = self.accs.iter().map(|a| a.size()).sum();
        groups.size_with(rows) + accs + accs.div_ceil(n).max(16) * rows
    }

    /// The pool refused to let the table grow. A partial aggregate sends
    /// its states on and starts afresh; a final one dumps its states to
    /// hash-partitioned spill files and merges them partition by partition
    /// at the end.
    fn relieve(&mut self) -> Result<Vec<RecordBatch>> {
        if matches!(self.mode, AggMode::Partial | AggMode::Merge) {
            let groups = self.groups.as_ref().map_or(0, |g| g.n_groups());
            tracing::debug!(
                groups,
                "partial aggregation emits early under memory pressure"
            );
            let out = self.emit()?;
            self.reservation.resize(0)?;
            // Emitted states are the consumer's to hold from here.
            return Ok(out);
        }
        if self.level >= MAX_SPILL_LEVEL {
            return Err(self.reservation.cannot_proceed(self.size()));
        }
        self.spilling = true;
        self.dump()?;
        Ok(vec![])
    }

    /// Writes the table's groups as states to the spill partitions and empties it.
    fn dump(&mut self) -> Result<()> {
        let Some(groups) = self.groups.as_mut() else {
            return Ok(());
        };
        let n = groups.n_groups();
        if n > 0 {
            let mut columns = groups.take_keys()?;
            for acc in &mut self.accs {
                columns.extend(acc.state()?);
            }
            tracing::debug!(
                groups = n,
                level = self.level,
                "hash aggregation spills its table"
            );
            self.spill_columns(columns, n)?;
        }
        self.reservation.resize(self.size())
    }

    /// Key and state columns to the spill partitions (opened on first use,
    /// with a schema taken from the columns).
    fn spill_columns(&mut self, columns: Vec<ArrayRef>, rows: usize) -> Result<()> {
        if self.spill.is_none() {
            let k = self.group_by.len();
            let fields: Vec<Field> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let name = if i < k {
                        format!("k{i}")
                    } else {
                        format!("s{}", i - k)
                    };
                    Field::new(name, c.data_type().clone(), true)
                })
                .collect();
            let schema = Arc::new(Schema::new(fields));
            let encoder = KeyEncoder::new((0..k).map(Expr::Column).collect(), schema.as_ref())?;
            self.spill = Some(SpillPartitioner::new(
                self.reservation.task(),
                "aggregate",
                encoder,
                schema,
                self.level,
            ));
        }
        let spill = self.spill.as_mut().expect("opened");
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(spill.schema().clone(), columns, &options)
            .context("aggregate spill")?;
        split(batch).iter().try_for_each(|part| spill.write(part))
    }

    /// The last dump: everything is on disk, partitioned.
    fn finish_spill(&mut self) -> Result<Vec<SpillFile>> {
        self.dump()?;
        self.reservation.resize(0)?;
        let files = match self.spill.take() {
            Some(spill) => spill.finish()?.into_iter().flatten().collect(),
            None => vec![],
        };
        Ok(files)
    }

    /// Each row as its own state: key columns, then state columns.
    fn state_columns(
        &mut self,
        keys: Vec<ArrayRef>,
        inputs: &[Vec<ArrayRef>],
        rows: usize,
    ) -> Result<Vec<ArrayRef>> {
        let ids: Vec<u32> = (0..rows as u32).collect();
        let mut accs = self.new_accumulators(inputs)?;
        let mut columns = keys;
        for (acc, cols) in accs.iter_mut().zip(inputs) {
            acc.update(&ids, rows, cols)?;
            columns.extend(acc.state()?);
        }
        Ok(columns)
    }

    /// Each row becomes its own partial state.
    fn pass_through(
        &mut self,
        keys: Vec<ArrayRef>,
        inputs: &[Vec<ArrayRef>],
        rows: usize,
    ) -> Result<Vec<RecordBatch>> {
        let columns = self.state_columns(keys, inputs, rows)?;
        Ok(vec![self.batch(columns, rows)?])
    }

    /// Exchanges the batch buffers of this aggregation's table with
    /// `other`: aggregations that take the same batches in turn share one
    /// set, lent to each for its push. Lending them out gives back their
    /// share of the reservation; taking them in is reserved by `push`.
    pub(super) fn swap_scratch(&mut self, other: &mut Scratch) -> Result<()> {
        if let Some(groups) = self.groups.as_mut() {
            groups.swap_scratch(other);
            if self.reservation.size() > self.size() {
                self.reservation.resize(self.size())?;
            }
        }
        Ok(())
    }

    /// Gives back the reservation once the emitted batches are consumed.
    pub(super) fn release(&mut self) {
        self.reservation.shrink(self.reservation.size());
    }

    pub(super) fn emit(&mut self) -> Result<Vec<RecordBatch>> {
        let Some(groups) = self.groups.as_mut() else {
            // No input at all: a global aggregate still returns one row.
            if !self.group_by.is_empty() {
                return Ok(vec![]);
            }
            return self.emit_empty_global();
        };
        let n = groups.n_groups();
        let mut columns = groups.take_keys()?;
        for acc in &mut self.accs {
            if matches!(self.mode, AggMode::Partial | AggMode::Merge) {
                columns.extend(acc.state()?);
            } else {
                columns.push(acc.finish()?);
            }
        }
        let batch = self.batch(columns, n)?;
        // The reservation stays until the output slices are consumed.
        Ok(split(batch))
    }

    /// A global aggregate over no rows: count 0, everything else NULL.
    fn emit_empty_global(&mut self) -> Result<Vec<RecordBatch>> {
        let mut columns: Vec<ArrayRef> = vec![];
        for field in self.schema.fields() {
            columns.push(arrow::array::new_null_array(field.data_type(), 1));
        }
        // Counts (and count states) are 0, not NULL.
        let mut col = 0;
        for a in &self.aggs {
            let width = if matches!(self.mode, AggMode::Partial | AggMode::Merge) {
                a.state_width()
            } else {
                1
            };
            let is_count = matches!(
                a.func,
                keel_proto::plan::AggFunc::Count | keel_proto::plan::AggFunc::CountStar
            );
            let is_avg_count = matches!(self.mode, AggMode::Partial | AggMode::Merge)
                && a.func == keel_proto::plan::AggFunc::Avg;
            if is_count {
                columns[col] = Arc::new(arrow::array::Int64Array::from(vec![0i64]));
            }
            if is_avg_count {
                columns[col] = Arc::new(arrow::array::Float64Array::from(vec![0.0]));
                columns[col + 1] = Arc::new(arrow::array::Int64Array::from(vec![0i64]));
            }
            col += width;
        }
        Ok(vec![self.batch(columns, 1)?])
    }

    fn batch(&self, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
        let columns = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    cast(&c, f.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .context("aggregate output")?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options).map_err(|e| {
            WorkerError::eval(format!("aggregate output does not match its schema: {e}"))
        })
    }
}

/// Zero-copy slices of at most `BATCH_ROWS` rows.
pub fn split(batch: RecordBatch) -> Vec<RecordBatch> {
    let rows = batch.num_rows();
    if rows <= BATCH_ROWS {
        return vec![batch];
    }
    (0..rows)
        .step_by(BATCH_ROWS)
        .map(|start| batch.slice(start, BATCH_ROWS.min(rows - start)))
        .collect()
}
