//! Spilling operators under a pool far smaller than their input: each must
//! give the unbounded result, leave no spill file behind, and clean up when
//! dropped in the middle (a cancelled task).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::array_value_to_string;
use keel_proto::expr::Expr;
use keel_proto::plan::{AggExpr, AggFunc, AggMode, JoinType, SortKey};

use super::aggregate::aggregate;
use super::join::{hash_join, JoinSpec};
use super::sort::sort;
use super::{collect, BatchIter};
use crate::memory::{MemoryPool, TaskMemory};

/// A task's memory with its own spill directory.
fn task(limit: usize) -> (Arc<TaskMemory>, PathBuf) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "keel-spill-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    (TaskMemory::new(MemoryPool::new(limit), dir.clone()), dir)
}

const TINY: usize = 256 << 10;
const HUGE: usize = 1 << 30;

fn iter(batches: Vec<RecordBatch>) -> BatchIter {
    Box::new(batches.into_iter().map(Ok))
}

/// `rows` rows in batches of 1000: key k (NULL every 97th row), value v, a label.
fn table(rows: i64, keys: impl Fn(i64) -> i64) -> (SchemaRef, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let batches = (0..rows)
        .step_by(1000)
        .map(|start| {
            let ids: Vec<i64> = (start..(start + 1000).min(rows)).collect();
            let k: Int64Array = ids
                .iter()
                .map(|&i| (i % 97 != 5).then(|| keys(i)))
                .collect();
            let v = Int64Array::from_iter_values(ids.iter().map(|i| i * 7 % 1000));
            let s = StringArray::from_iter_values(ids.iter().map(|i| format!("row-{}", i % 13)));
            RecordBatch::try_new(schema.clone(), vec![Arc::new(k), Arc::new(v), Arc::new(s)])
                .unwrap()
        })
        .collect();
    (schema, batches)
}

/// Every row as text, sorted: results compare regardless of order.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |r| {
                b.columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).unwrap())
                    .collect::<Vec<_>>()
                    .join("|")
            })
        })
        .collect();
    out.sort();
    out
}

fn agg_run(
    limit: usize,
    mode: AggMode,
    input: Vec<RecordBatch>,
    distinct: bool,
) -> (Vec<String>, Arc<TaskMemory>, PathBuf) {
    let (memory, dir) = task(limit);
    let mut aggs = vec![
        AggExpr {
            func: AggFunc::Sum,
            arg: Some(Expr::Column(1)),
            distinct: false,
            params: vec![],
            more_args: vec![],
            order_by: vec![],
            separator: None,
        },
        AggExpr {
            func: AggFunc::Count,
            arg: Some(Expr::Column(1)),
            distinct: false,
            params: vec![],
            more_args: vec![],
            order_by: vec![],
            separator: None,
        },
    ];
    let mut fields = vec![
        Field::new("k", DataType::Int64, true),
        Field::new("sum", DataType::Int64, true),
        Field::new("n", DataType::Int64, true),
    ];
    if distinct {
        aggs.push(AggExpr {
            func: AggFunc::Count,
            arg: Some(Expr::Column(2)),
            distinct: true,
            params: vec![],
            more_args: vec![],
            order_by: vec![],
            separator: None,
        });
        fields.push(Field::new("d", DataType::Int64, true));
    }
    let out = collect(
        aggregate(
            iter(input),
            mode,
            vec![Expr::Column(0)],
            aggs,
            Arc::new(Schema::new(fields)),
            memory.spillable("hash aggregate"),
        )
        .unwrap(),
    )
    .unwrap();
    (rows(&out), memory, dir)
}

#[test]
fn aggregation_spills_and_matches_the_unbounded_result() {
    // 60k rows, ~20k groups (plus NULL): far more state than 256 KiB.
    let (_, input) = table(60_000, |i| i % 20_011);
    let (expected, _, _) = agg_run(HUGE, AggMode::Single, input.clone(), true);
    let (got, memory, dir) = agg_run(TINY, AggMode::Single, input, true);
    assert!(memory.spilled_bytes() > 0, "the aggregation did not spill");
    assert_eq!(got.len(), 20_012);
    assert_eq!(got, expected);
    drop(memory);
    assert!(
        !dir.exists(),
        "spill files left behind in {}",
        dir.display()
    );
}

#[test]
fn final_aggregation_spills_states_and_merges_them() {
    // Final mode reads states: (k, sum, count) rows, several per group.
    let (schema, input) = table(60_000, |i| i % 15_013);
    let states: Vec<RecordBatch> = input
        .iter()
        .map(|b| {
            let n = Int64Array::from(vec![1i64; b.num_rows()]);
            let s = Schema::new(vec![
                schema.field(0).clone(),
                Field::new("sum", DataType::Int64, true),
                Field::new("n", DataType::Int64, true),
            ]);
            RecordBatch::try_new(
                Arc::new(s),
                vec![b.column(0).clone(), b.column(1).clone(), Arc::new(n)],
            )
            .unwrap()
        })
        .collect();
    let (expected, _, _) = agg_run(HUGE, AggMode::Final, states.clone(), false);
    let (got, memory, _dir) = agg_run(TINY, AggMode::Final, states, false);
    assert!(memory.spilled_bytes() > 0);
    assert_eq!(got, expected);
}

#[test]
fn a_final_aggregation_takes_a_batch_too_big_for_the_pool_in_halves() {
    // One 20k-row batch of distinct keys: its worst case (every row a new
    // group) is far over a 64 KiB pool even beside an empty table.
    let (schema, input) = table(20_000, |i| i);
    let batch = arrow::compute::concat_batches(&schema, &input).unwrap();
    let ones = Int64Array::from(vec![1i64; batch.num_rows()]);
    let states = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            schema.field(0).clone(),
            Field::new("sum", DataType::Int64, true),
            Field::new("n", DataType::Int64, true),
        ])),
        vec![
            batch.column(0).clone(),
            batch.column(1).clone(),
            Arc::new(ones),
        ],
    )
    .unwrap();
    let (expected, _, _) = agg_run(HUGE, AggMode::Final, vec![states.clone()], false);
    let (got, memory, _dir) = agg_run(64 << 10, AggMode::Final, vec![states], false);
    assert!(memory.spilled_bytes() > 0);
    assert_eq!(got, expected);
}

/// A join on column 0 of build (30k rows over 3k keys, with `hot` a third
/// of them on key 7) and probe (20k rows over 4k keys, key 7 every 50th row);
/// both sides have NULL keys, which only outer joins output.
fn join_over(memory: &Arc<TaskMemory>, join_type: JoinType, hot: bool) -> BatchIter {
    let (bs, build) = table(30_000, |i| if hot && i % 3 == 0 { 7 } else { i % 3_001 });
    let (ps, probe) = table(20_000, |i| if i % 50 == 0 { 7 } else { i % 4_001 });
    let fields: Vec<Field> = match join_type {
        JoinType::Semi | JoinType::Anti => ps.fields().iter().map(|f| f.as_ref().clone()).collect(),
        _ => ps
            .fields()
            .iter()
            .chain(bs.fields().iter())
            .map(|f| f.as_ref().clone())
            .collect(),
    };
    hash_join(JoinSpec {
        build: iter(build),
        build_schema: bs,
        probe: iter(probe),
        probe_schema: ps,
        build_keys: vec![Expr::Column(0)],
        probe_keys: vec![Expr::Column(0)],
        join_type,
        build_left: false,
        filter: None,
        schema: Arc::new(Schema::new(fields)),
        reservation: memory.spillable("hash join"),
        level: 0,
        flags: None,
    })
    .unwrap()
}

fn join_run(
    limit: usize,
    join_type: JoinType,
    hot: bool,
) -> (Vec<String>, Arc<TaskMemory>, PathBuf) {
    let (memory, dir) = task(limit);
    let out = collect(join_over(&memory, join_type, hot)).unwrap();
    (rows(&out), memory, dir)
}

#[test]
fn join_spills_by_partition_and_matches_the_unbounded_result() {
    for join_type in [
        JoinType::Inner,
        JoinType::Left,
        JoinType::Full,
        JoinType::Semi,
        JoinType::Anti,
    ] {
        let (expected, _, _) = join_run(HUGE, join_type, false);
        let (got, memory, dir) = join_run(TINY, join_type, false);
        assert!(
            memory.spilled_bytes() > 0,
            "{join_type:?} join did not spill"
        );
        assert_eq!(got.len(), expected.len(), "{join_type:?}");
        assert_eq!(got, expected, "{join_type:?}");
        drop(memory);
        assert!(!dir.exists());
    }
}

#[test]
fn a_hot_key_is_joined_in_chunks_of_the_build_side() {
    for join_type in [
        JoinType::Inner,
        JoinType::Left,
        JoinType::Full,
        JoinType::Anti,
    ] {
        let (expected, _, _) = join_run(HUGE, join_type, true);
        // Key 7's 10k build rows alone are far over the pool.
        let (got, memory, _dir) = join_run(TINY, join_type, true);
        assert!(
            memory.spill_count() > 32,
            "{join_type:?}: expected partitions and chunks"
        );
        assert_eq!(got, expected, "{join_type:?}");
    }
}

fn sort_run(limit: usize) -> (Vec<RecordBatch>, Arc<TaskMemory>, PathBuf) {
    let (memory, dir) = task(limit);
    let (schema, input) = table(50_000, |i| (i * 7919) % 10_007);
    let keys = vec![
        SortKey {
            expr: Expr::Column(0),
            descending: true,
            nulls_first: false,
        },
        SortKey {
            expr: Expr::Column(1),
            descending: false,
            nulls_first: false,
        },
    ];
    let out =
        collect(sort(iter(input), schema, keys, None, memory.spillable("sort")).unwrap()).unwrap();
    (out, memory, dir)
}

#[test]
fn sort_spills_runs_and_merges_them_in_order() {
    let (expected, _, _) = sort_run(HUGE);
    let (got, memory, dir) = sort_run(TINY);
    assert!(memory.spill_count() > 2, "the sort did not spill runs");
    let keys = |bs: &[RecordBatch]| -> Vec<(Option<i64>, i64)> {
        bs.iter()
            .flat_map(|b| {
                let k = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .clone();
                let v = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .clone();
                (0..b.num_rows()).map(move |i| (k.is_valid(i).then(|| k.value(i)), v.value(i)))
            })
            .collect()
    };
    assert_eq!(keys(&got), keys(&expected));
    drop(memory);
    assert!(!dir.exists());
}

#[test]
fn dropping_a_spilling_operator_midway_leaves_nothing_behind() {
    let (memory, dir) = task(TINY);
    let mut it = join_over(&memory, JoinType::Inner, false);
    it.next().unwrap().unwrap();
    assert!(dir.exists(), "the join should be spilling by now");
    // A cancelled task drops its operators, then its memory.
    drop(it);
    drop(memory);
    assert!(!dir.exists());
}

#[test]
fn a_batch_larger_than_the_pool_fails_naming_the_operator() {
    let (memory, _dir) = task(4 << 10);
    let (schema, input) = table(5_000, |i| i);
    let keys = vec![SortKey {
        expr: Expr::Column(0),
        descending: false,
        nulls_first: false,
    }];
    let err = collect(sort(iter(input), schema, keys, None, memory.spillable("sort")).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("sort cannot proceed"), "{err}");
    assert!(err.contains("--memory-limit"), "{err}");
}
