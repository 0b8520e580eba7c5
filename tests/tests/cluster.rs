//! Queries through real scheduler and worker processes, via the CLI and the client library.

use arrow::array::{Array, Float64Array, Int64Array};
use keel_client::KeelClient;
use keel_tests::{
    keel, stderr, stdout, story1_data, story1_tables, TestCluster, STORY1, STORY1_GROUPS,
    STORY1_TOTAL,
};

/// Runs story 1 with `keel ARGS… --table … QUERY` and checks DuckDB's answer.
fn assert_story1_answer(data: &std::path::Path, args: &[&str]) {
    let t = story1_tables(data);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(t.iter().map(|s| s.as_str()));
    all.push(STORY1);
    let out = keel(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    let (groups, total) = parse_csv_row(&stdout(&out));
    assert_eq!(groups, STORY1_GROUPS);
    assert!(
        (total - STORY1_TOTAL).abs() < 1e-6 * STORY1_TOTAL,
        "{total}"
    );
}

fn parse_csv_row(out: &str) -> (i64, f64) {
    let line = out.lines().nth(1).expect("a data row");
    let (a, b) = line.split_once(',').expect("two columns");
    (a.parse().expect("int"), b.parse().expect("float"))
}

#[test]
fn story1_through_processes_matches_duckdb() {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00005");
    let cluster = TestCluster::start(2);
    assert_story1_answer(
        data.path(),
        &["sql", "--scheduler", &cluster.url, "--format", "csv"],
    );
}

#[test]
fn embedded_cluster_gives_the_same_answer() {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00005");
    assert_story1_answer(data.path(), &["sql", "--workers", "2", "--format", "csv"]);
}

#[test]
fn client_library_runs_a_query_and_reports_stages() {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00002");
    let cluster = TestCluster::start(2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = KeelClient::connect(&cluster.url, &Default::default()).await.unwrap();
        let tables = vec![
            ("df1".to_string(), data.path().join("df1").display().to_string()),
            ("df2".to_string(), data.path().join("df2").display().to_string()),
        ];
        let mut updates = 0;
        let result = client
            .query("SELECT key, count(*) AS n, sum(value) AS s FROM df1 GROUP BY key ORDER BY n DESC, key LIMIT 5", &tables, |_| updates += 1)
            .await
            .unwrap();
        assert_eq!(result.rows(), 5);
        assert!(updates > 0, "no progress reported");
        let batch = &result.batches[0];
        let n = batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert!(n.value(0) >= n.value(4), "not sorted by count");
        let s = batch.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        assert!(!s.is_null(0));
        // Every stage finished all its tasks and reported what it did.
        assert!(result.report.stages.iter().all(|s| s.tasks_done == s.tasks_total && s.tasks_total > 0));
        assert!(result.report.stages.iter().any(|s| s.peak_memory > 0));
        let jobs = client.jobs().await.unwrap();
        assert!(jobs.iter().any(|j| j.state == "succeeded"));
    });
}

#[test]
fn explain_shows_stages_and_exchanges() {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00002");
    let cluster = TestCluster::start(1);
    let mut args = vec!["explain", "--scheduler", &cluster.url];
    let t = story1_tables(data.path());
    args.extend(t.iter().map(|s| s.as_str()));
    args.push(STORY1);
    let out = keel(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    for needle in [
        "Stage 1",
        "ParquetScan",
        "HashJoin",
        "HashAggregate(Partial)",
        "hash exchange",
        "HashAggregate(Final)",
        "Broadcast",
        "results to client",
    ] {
        assert!(plan.contains(needle), "explain lacks {needle}:\n{plan}");
    }
}

#[test]
fn copy_writes_complete_parquet_files_only() {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00002");
    let cluster = TestCluster::start(2);
    let out_dir = data.path().join("out");
    let sql = format!(
        "COPY (SELECT key, count(*) AS n FROM df1 GROUP BY key) TO '{}' (FORMAT parquet)",
        out_dir.display()
    );
    let mut args = vec!["sql", "--scheduler", &cluster.url];
    let t = story1_tables(data.path());
    args.extend(t.iter().map(|s| s.as_str()));
    args.push(&sql);
    let out = keel(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("wrote ") && stdout(&out).contains(&out_dir.display().to_string()),
        "{}",
        stdout(&out)
    );
    let names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.is_empty());
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("part-") && n.ends_with(".parquet")),
        "{names:?}"
    );
    // Reading the output back gives every key once.
    let q = format!(
        "SELECT count(*), sum(n) FROM read_parquet('{}/*.parquet')",
        out_dir.display()
    );
    let out = keel(&["sql", "--scheduler", &cluster.url, "--format", "csv", &q]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out).lines().nth(1).unwrap().to_string();
    let q2 = "SELECT count(DISTINCT key), count(*) FROM df1";
    let mut args = vec!["sql", "--scheduler", &cluster.url, "--format", "csv"];
    args.extend(t.iter().map(|s| s.as_str()));
    args.push(q2);
    let expect = keel(&args);
    assert_eq!(line, stdout(&expect).lines().nth(1).unwrap());
}
