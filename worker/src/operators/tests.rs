//! Operator tests on small hand-made batches.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use keel_proto::expr::{BinaryOp, Expr};
use keel_proto::plan::{AggExpr, AggFunc, AggMode, JoinType, SortKey};

use super::aggregate::aggregate;
use super::join::{hash_join, JoinSpec};
use super::limit::limit;
use super::sort::sort;
use super::{collect, BatchIter};
use crate::memory::{MemoryPool, Reservation, TaskMemory};

fn reservation() -> Reservation {
    let dir = std::env::temp_dir().join(format!("keel-op-test-{}", std::process::id()));
    TaskMemory::new(MemoryPool::new(1 << 30), dir).spillable("test")
}

fn iter(batches: Vec<RecordBatch>) -> BatchIter {
    Box::new(batches.into_iter().map(Ok))
}

fn kv(keys: Vec<Option<i64>>, values: Vec<Option<f64>>) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Float64, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(keys)),
            Arc::new(Float64Array::from(values)),
        ],
    )
    .unwrap()
}

fn ints(batches: &[RecordBatch], col: usize) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(col)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn floats(batches: &[RecordBatch], col: usize) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(col)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn aggs() -> Vec<AggExpr> {
    vec![
        AggExpr {
            func: AggFunc::CountStar,
            arg: None,
            distinct: false,
            params: vec![],
            more_args: vec![],
            order_by: vec![],
            separator: None,
        },
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
            func: AggFunc::Avg,
            arg: Some(Expr::Column(1)),
            distinct: false,
            params: vec![],
            more_args: vec![],
            order_by: vec![],
            separator: None,
        },
    ]
}

fn final_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("n", DataType::Int64, true),
        Field::new("s", DataType::Float64, true),
        Field::new("a", DataType::Float64, true),
    ]))
}

fn partial_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("n", DataType::Int64, true),
        Field::new("s", DataType::Float64, true),
        Field::new("as", DataType::Float64, true),
        Field::new("ac", DataType::Int64, true),
    ]))
}

/// Runs partial then final aggregation; returns (key, count, sum, avg) sorted by key.
fn two_phase(
    input: Vec<RecordBatch>,
) -> (
    Vec<RecordBatch>,
    Vec<(Option<i64>, i64, Option<f64>, Option<f64>)>,
) {
    let partial = collect(
        aggregate(
            iter(input),
            AggMode::Partial,
            vec![Expr::Column(0)],
            aggs(),
            partial_schema(),
            reservation(),
        )
        .unwrap(),
    )
    .unwrap();
    let out = collect(
        aggregate(
            iter(partial.clone()),
            AggMode::Final,
            vec![Expr::Column(0)],
            aggs(),
            final_schema(),
            reservation(),
        )
        .unwrap(),
    )
    .unwrap();
    let mut rows: Vec<_> = ints(&out, 0)
        .into_iter()
        .zip(ints(&out, 1))
        .zip(floats(&out, 2).into_iter().zip(floats(&out, 3)))
        .map(|((k, n), (s, a))| (k, n.unwrap(), s, a))
        .collect();
    rows.sort_by_key(|r| r.0);
    (partial, rows)
}

#[test]
fn two_phase_aggregation_handles_nulls() {
    let b1 = kv(
        vec![Some(1), Some(2), None, Some(1)],
        vec![Some(1.0), None, Some(5.0), Some(3.0)],
    );
    let b2 = kv(vec![Some(2), Some(1)], vec![None, Some(2.0)]);
    let (_, rows) = two_phase(vec![b1, b2]);
    assert_eq!(
        rows,
        vec![
            (None, 1, Some(5.0), Some(5.0)),
            (Some(1), 3, Some(6.0), Some(2.0)),
            (Some(2), 2, None, None)
        ]
    );
}

#[test]
fn partial_aggregation_passes_through_when_groups_do_not_shrink() {
    let n = 150_000i64;
    let batches: Vec<RecordBatch> = (0..n)
        .step_by(10_000)
        .map(|start| {
            kv(
                (start..start + 10_000).map(Some).collect(),
                (start..start + 10_000).map(|i| Some(i as f64)).collect(),
            )
        })
        .collect();
    let (partial, rows) = two_phase(batches);
    // Every key is unique: the partial phase emits about one state per input row.
    assert_eq!(
        partial.iter().map(|b| b.num_rows()).sum::<usize>(),
        n as usize
    );
    assert_eq!(rows.len(), n as usize);
    assert_eq!(rows[7], (Some(7), 1, Some(7.0), Some(7.0)));
}

#[test]
fn global_aggregate_over_nothing_is_one_row() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, true),
        Field::new("s", DataType::Float64, true),
        Field::new("a", DataType::Float64, true),
    ]));
    let out = collect(
        aggregate(
            iter(vec![]),
            AggMode::Single,
            vec![],
            aggs(),
            schema,
            reservation(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(ints(&out, 0), vec![Some(0)]);
    assert_eq!(floats(&out, 1), vec![None]);
}

#[test]
fn count_distinct_counts_each_value_once_per_group() {
    let b = kv(
        vec![Some(1), Some(1), Some(1), Some(2), Some(2)],
        vec![Some(1.0), Some(1.0), Some(2.0), None, Some(3.0)],
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("d", DataType::Int64, true),
    ]));
    let agg = vec![AggExpr {
        func: AggFunc::Count,
        arg: Some(Expr::Column(1)),
        distinct: true,
        params: vec![],
        more_args: vec![],
        order_by: vec![],
        separator: None,
    }];
    let out = collect(
        aggregate(
            iter(vec![b]),
            AggMode::Single,
            vec![Expr::Column(0)],
            agg,
            schema,
            reservation(),
        )
        .unwrap(),
    )
    .unwrap();
    let mut rows: Vec<_> = ints(&out, 0).into_iter().zip(ints(&out, 1)).collect();
    rows.sort();
    assert_eq!(rows, vec![(Some(1), Some(2)), (Some(2), Some(1))]);
}

fn names(keys: Vec<Option<i64>>, names: Vec<&str>) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("k2", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(keys)),
            Arc::new(StringArray::from(names)) as ArrayRef,
        ],
    )
    .unwrap()
}

fn join(
    join_type: JoinType,
    build_left: bool,
    filter: Option<Expr>,
    left: RecordBatch,
    right: RecordBatch,
) -> Vec<RecordBatch> {
    let (ls, rs) = (left.schema(), right.schema());
    let fields: Vec<_> = match join_type {
        JoinType::Semi | JoinType::Anti => ls.fields().iter().cloned().collect(),
        _ => ls
            .fields()
            .iter()
            .chain(rs.fields().iter())
            .cloned()
            .collect(),
    };
    let (build, probe, bs, ps) = if build_left {
        (left, right, ls, rs)
    } else {
        (right, left, rs, ls)
    };
    collect(
        hash_join(JoinSpec {
            build: iter(vec![build]),
            build_schema: bs,
            probe: iter(vec![probe]),
            probe_schema: ps,
            build_keys: vec![Expr::Column(0)],
            probe_keys: vec![Expr::Column(0)],
            join_type,
            build_left,
            filter,
            schema: Arc::new(Schema::new(fields)),
            reservation: reservation(),
            level: 0,
            flags: None,
        })
        .unwrap(),
    )
    .unwrap()
}

#[test]
fn inner_join_is_many_to_many_and_skips_null_keys() {
    let left = kv(
        vec![Some(1), Some(1), Some(2), None],
        vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0)],
    );
    let right = names(
        vec![Some(1), Some(1), Some(1), None, Some(3)],
        vec!["a", "b", "c", "null", "d"],
    );
    for build_left in [false, true] {
        let out = join(
            JoinType::Inner,
            build_left,
            None,
            left.clone(),
            right.clone(),
        );
        assert_eq!(
            out.iter().map(|b| b.num_rows()).sum::<usize>(),
            6,
            "build_left={build_left}"
        );
        // Output is always left columns then right columns.
        assert_eq!(out[0].schema().field(0).name(), "k");
        assert_eq!(out[0].schema().field(2).name(), "k2");
    }
}

/// (left key, right name) of every joined row, sorted.
fn keys_and_names(out: &[RecordBatch]) -> Vec<(Option<i64>, Option<String>)> {
    let mut rows: Vec<(Option<i64>, Option<String>)> = out
        .iter()
        .flat_map(|b| {
            use arrow::array::AsArray;
            let k = b
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone();
            let n = b.column(3).as_string::<i32>().clone();
            (0..b.num_rows())
                .map(move |i| {
                    (
                        k.is_valid(i).then(|| k.value(i)),
                        n.is_valid(i).then(|| n.value(i).to_string()),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn left_join_keeps_unmatched_rows_and_applies_the_on_filter() {
    let left = kv(
        vec![Some(1), Some(2), None],
        vec![Some(1.0), Some(3.0), Some(4.0)],
    );
    let right = names(vec![Some(1), Some(1), Some(2)], vec!["a", "b", "c"]);
    // ON l.k = r.k2 AND r.name <> 'b'
    let filter = Expr::binary(
        BinaryOp::NotEq,
        Expr::Column(3),
        Expr::Literal(keel_proto::expr::ScalarValue::Utf8("b".into())),
    );
    let out = join(JoinType::Left, false, Some(filter), left, right);
    let rows = keys_and_names(&out);
    assert_eq!(
        rows,
        vec![
            (None, None),
            (Some(1), Some("a".into())),
            (Some(2), Some("c".into()))
        ]
    );
}

#[test]
fn full_join_keeps_unmatched_rows_of_both_sides() {
    let left = kv(
        vec![Some(1), Some(2), None],
        vec![Some(1.0), Some(3.0), Some(4.0)],
    );
    let right = names(
        vec![Some(1), Some(1), Some(2), Some(5), None],
        vec!["a", "b", "c", "d", "e"],
    );
    // ON l.k = r.k2 AND r.name <> 'b'
    let filter = Expr::binary(
        BinaryOp::NotEq,
        Expr::Column(3),
        Expr::Literal(keel_proto::expr::ScalarValue::Utf8("b".into())),
    );
    let out = join(JoinType::Full, false, Some(filter), left, right);
    let rows = keys_and_names(&out);
    assert_eq!(
        rows,
        // 'b' fails the ON filter, 'd' has no partner, 'e' a NULL key; the NULL-key left row stays.
        vec![
            (None, None),
            (None, Some("b".into())),
            (None, Some("d".into())),
            (None, Some("e".into())),
            (Some(1), Some("a".into())),
            (Some(2), Some("c".into()))
        ]
    );
}

#[test]
fn anti_join_is_null_aware() {
    let left = kv(
        vec![Some(1), Some(2), None],
        vec![Some(1.0), Some(2.0), Some(3.0)],
    );
    let set = names(vec![Some(1)], vec!["a"]);
    let out = join(JoinType::Anti, false, None, left.clone(), set);
    assert_eq!(ints(&out, 0), vec![Some(2)]);
    // A NULL in the set makes every NOT IN unknown.
    let with_null = names(vec![Some(1), None], vec!["a", "n"]);
    assert!(join(JoinType::Anti, false, None, left.clone(), with_null)
        .iter()
        .all(|b| b.num_rows() == 0));
    // NOT IN the empty set holds for every row, NULL keys included.
    let empty = names(vec![], vec![]);
    assert_eq!(
        join(JoinType::Anti, false, None, left.clone(), empty)
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        3
    );
    let semi = join(
        JoinType::Semi,
        false,
        None,
        left,
        names(vec![Some(2), Some(2)], vec!["x", "y"]),
    );
    assert_eq!(ints(&semi, 0), vec![Some(2)]);
}

#[test]
fn sort_orders_nulls_and_top_k_matches_full_sort() {
    let b1 = kv(vec![Some(3), None, Some(1)], vec![Some(0.0); 3]);
    let b2 = kv(vec![Some(2), Some(5), None, Some(4)], vec![Some(0.0); 4]);
    let key = |descending, nulls_first| {
        vec![SortKey {
            expr: Expr::Column(0),
            descending,
            nulls_first,
        }]
    };
    let s = |k, fetch| {
        collect(
            sort(
                iter(vec![b1.clone(), b2.clone()]),
                b1.schema(),
                k,
                fetch,
                reservation(),
            )
            .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        ints(&s(key(false, false), None), 0),
        vec![Some(1), Some(2), Some(3), Some(4), Some(5), None, None]
    );
    assert_eq!(
        ints(&s(key(true, true), None), 0),
        vec![None, None, Some(5), Some(4), Some(3), Some(2), Some(1)]
    );
    assert_eq!(
        ints(&s(key(true, false), Some(2)), 0),
        vec![Some(5), Some(4)]
    );
}

#[test]
fn limit_skips_and_fetches_across_batches() {
    let b1 = kv((0..5).map(Some).collect(), vec![Some(0.0); 5]);
    let b2 = kv((5..10).map(Some).collect(), vec![Some(0.0); 5]);
    let out = collect(limit(iter(vec![b1, b2]), 3, Some(4))).unwrap();
    assert_eq!(ints(&out, 0), vec![Some(3), Some(4), Some(5), Some(6)]);
}
