//! Plan-shape tests: `explain` output for representative queries, compared
//! with checked-in files. Regenerate with `KEEL_REGENERATE_PLANS=1 cargo test
//! -p keel-scheduler --test plans` and review the diff.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use keel_scheduler::catalog::Catalog;
use keel_scheduler::planner::{plan, PlannerConfig};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

/// `facts`: 4 row groups of 1000 rows, ids ascending; `dims`: 100 rows.
fn write_tables(dir: &Path) {
    let facts = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("key", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(1000))
        .build();
    let mut w = ArrowWriter::try_new(
        File::create(dir.join("facts.parquet")).unwrap(),
        facts.clone(),
        Some(props),
    )
    .unwrap();
    let ids: Vec<i64> = (0..4000).collect();
    let batch = RecordBatch::try_new(
        facts,
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Int64Array::from(
                ids.iter().map(|i| i % 100).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                ids.iter().map(|i| *i as f64).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let dims = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("label", DataType::Utf8, false),
    ]));
    let mut w = ArrowWriter::try_new(
        File::create(dir.join("dims.parquet")).unwrap(),
        dims.clone(),
        None,
    )
    .unwrap();
    let keys: Vec<i64> = (0..100).collect();
    let labels: Vec<String> = keys.iter().map(|k| format!("label-{k}")).collect();
    let batch = RecordBatch::try_new(
        dims,
        vec![
            Arc::new(Int64Array::from(keys)),
            Arc::new(StringArray::from(labels)),
        ],
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn explain(dir: &Path, sql: &str, config: PlannerConfig) -> String {
    let tables: HashMap<String, String> = [
        (
            "facts".to_string(),
            dir.join("facts.parquet").display().to_string(),
        ),
        (
            "dims".to_string(),
            dir.join("dims.parquet").display().to_string(),
        ),
    ]
    .into();
    let mut catalog = Catalog::new(tables);
    let bound = keel_scheduler::sql::bind(sql, &mut catalog).unwrap();
    let logical = keel_scheduler::optimizer::optimize(bound.plan);
    format!(
        "-- {sql}\n{}",
        plan(&logical, bound.copy_to, config).explain(true)
    )
}

fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/plans")
        .join(format!("{name}.txt"));
    if std::env::var("KEEL_REGENERATE_PLANS").is_ok() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run with KEEL_REGENERATE_PLANS=1",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "plan for {name} changed; regenerate with KEEL_REGENERATE_PLANS=1 and review the diff"
    );
}

fn config() -> PlannerConfig {
    PlannerConfig {
        total_cores: 4,
        shuffle_partitions: 8,
        broadcast_bytes: 32 << 20,
        split_bytes: Some(10_000),
        tree_fan_in: 16,
    }
}

#[test]
fn plan_shapes_are_stable() {
    let dir = tempfile::tempdir().unwrap();
    write_tables(dir.path());
    let cases: &[(&str, &str, PlannerConfig)] = &[
        (
            "broadcast_join_then_aggregate",
            "SELECT label, sum(amount) FROM facts JOIN dims USING (key) GROUP BY label",
            config(),
        ),
        (
            "window",
            "SELECT id, row_number() OVER (PARTITION BY key ORDER BY amount DESC) AS rn, \
             sum(amount) OVER (PARTITION BY key ORDER BY id ROWS 2 PRECEDING) AS s, \
             lag(amount) OVER (PARTITION BY key ORDER BY amount DESC) AS prev FROM facts \
             QUALIFY rn <= 3",
            config(),
        ),
        (
            "window_over_aggregate",
            "SELECT key, sum(amount) AS s, count(*) OVER (PARTITION BY key) AS c, \
             rank() OVER (ORDER BY sum(amount) DESC) AS r FROM facts GROUP BY key \
             QUALIFY r <= 5 ORDER BY r",
            config(),
        ),
        (
            "shuffle_join",
            "SELECT f.id, d.label FROM facts f JOIN dims d ON f.key = d.key AND f.amount > 10",
            PlannerConfig {
                broadcast_bytes: 0,
                ..config()
            },
        ),
        (
            "asof_join",
            "SELECT f.id, d.label FROM facts f ASOF LEFT JOIN facts d0 ON f.key = d0.key AND f.id > d0.id \
             JOIN dims d ON d.key = d0.key WHERE f.amount > 10 AND d0.amount < 3000",
            PlannerConfig {
                broadcast_bytes: 0,
                ..config()
            },
        ),
        (
            "grouping_sets",
            "SELECT key % 2 AS p, key % 3 AS q, count(*), grouping(p, q) FROM facts GROUP BY CUBE (p, q)",
            config(),
        ),
        (
            "top_k",
            "SELECT id, amount FROM facts ORDER BY amount DESC LIMIT 5",
            config(),
        ),
        (
            "count_distinct",
            "SELECT key, count(DISTINCT id) FROM facts GROUP BY key",
            config(),
        ),
        (
            "global_aggregate",
            "SELECT count(*), avg(amount) FROM facts",
            config(),
        ),
        (
            "union_all",
            "SELECT key FROM facts UNION ALL SELECT key FROM dims",
            config(),
        ),
        (
            "in_subquery",
            "SELECT id FROM facts WHERE key IN (SELECT key FROM dims WHERE label LIKE 'label-1%')",
            config(),
        ),
        // Each subquery form is a join, never run per row.
        (
            "correlated_scalar_subquery",
            "SELECT id FROM facts f WHERE amount > (SELECT avg(amount) FROM facts g WHERE g.key = f.key)",
            config(),
        ),
        (
            "exists_and_not_exists",
            "SELECT label FROM dims d WHERE EXISTS (SELECT * FROM facts f WHERE f.key = d.key AND f.amount > 100) \
             AND NOT EXISTS (SELECT * FROM facts f WHERE f.key = d.key AND f.id <> d.key)",
            config(),
        ),
        (
            "in_and_any_as_values",
            "SELECT id, key IN (SELECT key FROM dims) AS i, amount > ALL (SELECT key FROM dims WHERE dims.key = facts.key) AS a FROM facts",
            config(),
        ),
        (
            "correlated_count_below_inequality",
            "SELECT key, (SELECT count(*) FROM facts f WHERE f.amount < d.key) FROM dims d",
            config(),
        ),
    ];
    for (name, sql, cfg) in cases {
        check(name, &explain(dir.path(), sql, cfg.clone()));
    }
}

#[test]
fn row_groups_outside_the_filter_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    write_tables(dir.path());
    let all = explain(dir.path(), "SELECT count(*) FROM facts", config());
    assert!(all.contains("over 1 files, 4 row groups"), "{all}");
    let pruned = explain(
        dir.path(),
        "SELECT count(*) FROM facts WHERE id >= 3500",
        config(),
    );
    assert!(
        pruned.contains("1 scan tasks over 1 files, 1 row groups"),
        "only the last row group holds ids >= 3500:\n{pruned}"
    );
    let none = explain(
        dir.path(),
        "SELECT count(*) FROM facts WHERE id > 100000",
        config(),
    );
    assert!(none.contains("over 0 files, 0 row groups"), "{none}");
    // Only the columns the query reads are scanned.
    assert!(pruned.contains("ParquetScan [id]"), "{pruned}");
}
