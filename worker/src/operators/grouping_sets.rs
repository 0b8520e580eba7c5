//! GROUPING SETS fused with their partial aggregation.
//!
//! `Expand` followed by a partial aggregate would send every row through
//! one hash table once per set, keyed by every key of every set (the ones
//! a set leaves out as NULL columns) and the set's number. Here each set
//! has a table of its own, keyed by its own columns only: a profile's pair
//! of integers is two words, not ten mostly-NULL columns encoded as bytes.
//! The sets' states come out widened to the aggregate's schema (NULL for
//! the keys a set leaves out, the set's number beside them), exactly as
//! the unfused plan would emit them.

use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, Int64Array, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Field, Schema, SchemaRef};
use keel_proto::expr::{Expr, ScalarValue};
use keel_proto::plan::{AggExpr, AggMode, PlanNode};

use super::aggregate::AggState;
use super::group_table::Scratch;
use super::BatchIter;
use crate::error::{ArrowContext, Result};
use crate::eval::evaluate;
use crate::memory::{is_refusal, Reservation};

/// Where each of the aggregate's group columns comes from, for one set.
#[derive(Clone, Copy)]
enum GroupColumn {
    /// The set's own table emits it (its position among the table's keys).
    Table(usize),
    /// A key the set leaves out.
    Null,
    /// The set's number.
    SetId,
}

struct SetAggregate {
    id: i64,
    state: AggState,
    columns: Vec<GroupColumn>,
}

/// The plan `Aggregate(Partial, group_by) <- Expand(keys, sets) <- input`,
/// when it can be fused (see [`fused`]).
pub struct GroupingSets<'a> {
    pub keys: &'a [Expr],
    pub sets: &'a [Vec<bool>],
    /// The `Expand` node's schema: the input's columns, keys, set number.
    pub expand_schema: &'a Schema,
    pub group_by: &'a [Expr],
    pub aggs: &'a [AggExpr],
    /// The aggregate's output schema: group columns, then states.
    pub schema: SchemaRef,
}

/// The spec of a partial aggregate over an `Expand` that can run fused,
/// and the `Expand`'s input: it groups by the expanded keys and the set
/// number only, and its arguments read the input's columns (not the
/// NULLed keys).
pub fn fused(plan: &PlanNode) -> Option<(&PlanNode, GroupingSets<'_>)> {
    let PlanNode::Aggregate {
        input,
        mode: AggMode::Partial,
        group_by,
        aggs,
        schema,
    } = plan
    else {
        return None;
    };
    let PlanNode::Expand {
        input,
        keys,
        sets,
        schema: expand_schema,
    } = input.as_ref()
    else {
        return None;
    };
    let input_width = expand_schema.fields().len() - keys.len() - 1;
    let groups_expanded = group_by.iter().all(
        |e| matches!(e, Expr::Column(c) if *c >= input_width && *c <= input_width + keys.len()),
    );
    let mut read = vec![];
    for a in aggs {
        for arg in a.inputs() {
            arg.columns(&mut read);
        }
    }
    if !groups_expanded || read.iter().any(|&c| c >= input_width) {
        return None;
    }
    let spec = GroupingSets {
        keys,
        sets,
        expand_schema,
        group_by,
        aggs,
        schema: Arc::new(schema.clone()),
    };
    Some((input.as_ref(), spec))
}

pub fn aggregate(
    input: BatchIter,
    spec: GroupingSets,
    reservation: Reservation,
) -> Result<BatchIter> {
    let input_width = spec.expand_schema.fields().len() - spec.keys.len() - 1;
    let n_groups = spec.group_by.len();
    // What each set's table sees: the input's columns and every key.
    let keyed = Arc::new(Schema::new(
        spec.expand_schema.fields()[..input_width + spec.keys.len()].to_vec(),
    ));
    let mut sets = Vec::with_capacity(spec.sets.len());
    for (id, used) in spec.sets.iter().enumerate() {
        let mut group_by = vec![];
        let mut fields: Vec<Field> = vec![];
        let mut columns = vec![];
        for (e, field) in spec.group_by.iter().zip(spec.schema.fields()) {
            let Expr::Column(c) = e else {
                unreachable!("checked by fused")
            };
            let column = match c.checked_sub(input_width) {
                Some(k) if k < spec.keys.len() && used[k] => {
                    group_by.push(e.clone());
                    fields.push(field.as_ref().clone());
                    GroupColumn::Table(group_by.len() - 1)
                }
                Some(k) if k < spec.keys.len() => GroupColumn::Null,
                _ => GroupColumn::SetId,
            };
            columns.push(column);
        }
        if group_by.is_empty() {
            // The grand total keeps a key (its number), so that like the
            // unfused plan it emits nothing for no input.
            group_by.push(Expr::Literal(ScalarValue::Int64(id as i64)));
            fields.push(Field::new("set", arrow::datatypes::DataType::Int64, false));
        }
        fields.extend(
            spec.schema.fields()[n_groups..]
                .iter()
                .map(|f| f.as_ref().clone()),
        );
        sets.push(SetAggregate {
            id: id as i64,
            state: AggState::new(
                AggMode::Partial,
                group_by,
                spec.aggs.to_vec(),
                Arc::new(Schema::new(fields)),
                reservation.sibling("hash aggregate (grouping set)"),
                0,
            ),
            columns,
        });
    }
    let keys = spec.keys.to_vec();
    let schema = spec.schema;
    // One set of batch buffers, lent to each set's table for its push, and
    // held (reserved) between batches when the pool allows.
    let mut shared = Shared {
        scratch: Scratch::default(),
        reservation: reservation.sibling("hash aggregate (grouping sets' buffers)"),
    };
    let mut input = input;
    let mut pending: std::vec::IntoIter<RecordBatch> = Vec::new().into_iter();
    // Once the input is done, the sets emit one at a time: each releases
    // its table's memory when its states have been consumed.
    let mut emitting: Option<usize> = None;
    let mut failed = false;
    Ok(Box::new(std::iter::from_fn(move || loop {
        if let Some(b) = pending.next() {
            return Some(Ok(b));
        }
        if failed {
            return None;
        }
        let step = match emitting {
            Some(i) => {
                sets[i].state.release();
                let set = sets.get_mut(i + 1)?;
                emitting = Some(i + 1);
                emit(set, &schema)
            }
            None => match input.next() {
                Some(Ok(batch)) => push(&mut sets, &mut shared, &keys, &keyed, &schema, batch),
                Some(Err(e)) => Err(e),
                None if sets.is_empty() => return None,
                None => {
                    emitting = Some(0);
                    emit(&mut sets[0], &schema)
                }
            },
        };
        match step {
            Ok(out) => pending = out.into_iter(),
            Err(e) => {
                failed = true;
                return Some(Err(e));
            }
        }
    })))
}

/// One input batch into every set's table (keys evaluated once).
fn push(
    sets: &mut [SetAggregate],
    shared: &mut Shared,
    keys: &[Expr],
    keyed: &SchemaRef,
    schema: &SchemaRef,
    batch: RecordBatch,
) -> Result<Vec<RecordBatch>> {
    let rows = batch.num_rows();
    let mut columns = batch.columns().to_vec();
    for k in keys {
        columns.push(evaluate(k, &batch)?);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    let keyed = RecordBatch::try_new_with_options(keyed.clone(), columns, &options)
        .context("grouping sets")?;
    let mut out = vec![];
    shared.reservation.resize(0)?;
    for set in sets.iter_mut() {
        set.state.swap_scratch(&mut shared.scratch)?;
        let states = set.state.push(keyed.clone());
        set.state.swap_scratch(&mut shared.scratch)?;
        for b in states? {
            out.push(widen(set, schema, b)?);
        }
    }
    if let Err(e) = shared.reservation.resize(shared.scratch.size()) {
        if !is_refusal(&e) {
            return Err(e);
        }
        shared.scratch = Scratch::default();
    }
    Ok(out)
}

/// The batch buffers the sets' tables share, and their reservation.
struct Shared {
    scratch: Scratch,
    reservation: Reservation,
}

fn emit(set: &mut SetAggregate, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let batches = set.state.emit()?;
    batches.into_iter().map(|b| widen(set, schema, b)).collect()
}

/// A set's states in the aggregate's schema.
fn widen(set: &SetAggregate, schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let table_keys = batch.num_columns() - (schema.fields().len() - set.columns.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (column, field) in set.columns.iter().zip(schema.fields()) {
        columns.push(match column {
            GroupColumn::Table(i) => batch.column(*i).clone(),
            GroupColumn::Null => new_null_array(field.data_type(), rows),
            GroupColumn::SetId => Arc::new(Int64Array::from_value(set.id, rows)),
        });
    }
    columns.extend(batch.columns()[table_keys..].iter().cloned());
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).context("grouping sets")
}
