//! Hash aggregation.
//!
//! Groups are interned in a hash table keyed by arrow-row encoded keys;
//! accumulators update per batch from the resulting group ids. A `Partial`
//! aggregate that finds nearly every row is its own group stops hashing and
//! passes rows through as one-row states: the shuffle would carry as many
//! rows either way, so the table only cost memory and time.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use keel_proto::expr::Expr;
use keel_proto::plan::{AggExpr, AggMode};

use super::accumulators::{self, state_width, Accumulator};
use super::group_table::GroupTable;
use super::{BatchIter, BATCH_ROWS};
use crate::error::{ArrowContext, Result, WorkerError};
use crate::eval::evaluate;
use crate::memory::Reservation;

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
    let mut state = AggState::new(mode, group_by, aggs, schema, reservation);
    let mut input = input;
    let mut pending: std::vec::IntoIter<RecordBatch> = Vec::new().into_iter();
    let mut finished = false;
    Ok(Box::new(std::iter::from_fn(move || loop {
        if let Some(b) = pending.next() {
            return Some(Ok(b));
        }
        if finished {
            return None;
        }
        let step = match input.next() {
            Some(Ok(batch)) => state.push(batch),
            Some(Err(e)) => Err(e),
            None => {
                finished = true;
                state.emit()
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

struct AggState {
    mode: AggMode,
    group_by: Vec<Expr>,
    aggs: Vec<AggExpr>,
    schema: SchemaRef,
    reservation: Reservation,
    groups: Option<GroupTable>,
    accs: Vec<Box<dyn Accumulator>>,
    ids: Vec<u32>,
    rows_seen: usize,
    passthrough: bool,
}

impl AggState {
    fn new(
        mode: AggMode,
        group_by: Vec<Expr>,
        aggs: Vec<AggExpr>,
        schema: SchemaRef,
        reservation: Reservation,
    ) -> Self {
        AggState {
            mode,
            group_by,
            aggs,
            schema,
            reservation,
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
        if self.mode == AggMode::Final {
            let mut col = self.group_by.len();
            for a in &self.aggs {
                let w = state_width(a.func);
                out.push(batch.columns()[col..col + w].to_vec());
                col += w;
            }
        } else {
            for a in &self.aggs {
                out.push(match &a.arg {
                    Some(e) => vec![evaluate(e, batch)?],
                    None => vec![],
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
                let t = cols
                    .first()
                    .map(|c| c.data_type().clone())
                    .unwrap_or(DataType::Int64);
                accumulators::create(a.func, a.distinct, self.mode, &t)
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

    fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let rows = batch.num_rows();
        let inputs = self.acc_inputs(&batch)?;
        self.init(&batch, &inputs)?;
        let key_columns = self
            .group_by
            .iter()
            .map(|e| evaluate(e, &batch))
            .collect::<Result<Vec<_>>>()?;
        if self.passthrough {
            return self.pass_through(key_columns, &inputs, rows);
        }
        let groups = self.groups.as_mut().expect("initialised");
        groups.intern(&key_columns, rows, &mut self.ids)?;
        let n = groups.n_groups();
        for (acc, cols) in self.accs.iter_mut().zip(&inputs) {
            acc.update(&self.ids, n, cols)?;
        }
        self.rows_seen += rows;
        let size = groups.size() + self.accs.iter().map(|a| a.size()).sum::<usize>();
        self.reservation.resize(size)?;

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

    /// Each row becomes its own partial state.
    fn pass_through(
        &mut self,
        keys: Vec<ArrayRef>,
        inputs: &[Vec<ArrayRef>],
        rows: usize,
    ) -> Result<Vec<RecordBatch>> {
        let ids: Vec<u32> = (0..rows as u32).collect();
        let mut accs = self.new_accumulators(inputs)?;
        let mut columns = keys;
        for (acc, cols) in accs.iter_mut().zip(inputs) {
            acc.update(&ids, rows, cols)?;
            columns.extend(acc.state()?);
        }
        Ok(vec![self.batch(columns, rows)?])
    }

    fn emit(&mut self) -> Result<Vec<RecordBatch>> {
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
            if self.mode == AggMode::Partial {
                columns.extend(acc.state()?);
            } else {
                columns.push(acc.finish()?);
            }
        }
        let batch = self.batch(columns, n)?;
        self.reservation.resize(0)?;
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
            let width = if self.mode == AggMode::Partial {
                state_width(a.func)
            } else {
                1
            };
            let is_count = matches!(
                a.func,
                keel_proto::plan::AggFunc::Count | keel_proto::plan::AggFunc::CountStar
            );
            let is_avg_count =
                self.mode == AggMode::Partial && a.func == keel_proto::plan::AggFunc::Avg;
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
