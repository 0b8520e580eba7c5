//! Bounded worker memory on real processes: story 1 on workers whose limit
//! forces the aggregation to spill, and a join of df1 with itself whose
//! build side outgrows its share, each answer checked against DuckDB's,
//! every worker's resident memory under its limit, and the job profile and
//! `explain --analyze` showing what spilled.

use keel_tests::{
    keel, stderr, stdout, story1_data, story1_tables, TestCluster, STORY1, STORY1_GROUPS,
    STORY1_TOTAL,
};

const LIMIT: &str = "96MiB";
const LIMIT_BYTES: u64 = 96 << 20;

/// Shuffle joins only (no broadcast), few big reduce tasks: the final
/// aggregation outgrows its fair share of a 48 MiB pool.
fn small_cluster() -> TestCluster {
    cluster_with_limit(LIMIT)
}

fn cluster_with_limit(limit: &str) -> TestCluster {
    TestCluster::start_with_workers(
        2,
        &[
            "--broadcast-bytes",
            "0",
            "--shuffle-partitions",
            "4",
            "--task-bytes",
            "1GiB",
        ],
        &["--memory-limit", limit],
    )
}

fn assert_within(cluster: &TestCluster, limit: u64) {
    for i in 0..2 {
        let rss = cluster.worker_peak_rss(i);
        assert!(
            rss <= limit,
            "worker {i} peaked at {rss} bytes, over its {limit}-byte limit"
        );
    }
}

/// Whether a stage whose operators include `operator` spilled.
fn spilled_in(profile: &serde_json::Value, operator: &str) -> bool {
    profile["stages"].as_array().unwrap().iter().any(|s| {
        s["operators"].as_str().unwrap().contains(operator)
            && s["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["spilled_bytes"].as_u64().unwrap() > 0)
    })
}

/// Every spill file went with its task.
fn assert_no_spill_files(cluster: &TestCluster) {
    let leftovers: Vec<_> = cluster
        .work_dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d.path().join("spill")).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .collect();
    assert!(
        leftovers.is_empty(),
        "spill files left behind: {leftovers:?}"
    );
}

/// Runs `sql` over story-1 tables with `--profile`, expecting it to spill;
/// returns its CSV output and the profile.
fn run_profiled(
    cluster: &TestCluster,
    data: &std::path::Path,
    sql: &str,
) -> (String, serde_json::Value) {
    let profile = data.join("profile.json");
    let mut args = vec![
        "sql".to_string(),
        "--scheduler".into(),
        cluster.url.clone(),
        "--format".into(),
        "csv".into(),
        "--profile".into(),
        profile.display().to_string(),
    ];
    args.extend(story1_tables(data));
    args.push(sql.into());
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = keel(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("spilled "),
        "no spill line: {}",
        stderr(&out)
    );
    let profile = serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    (stdout(&out), profile)
}

/// The first data row of CSV output as (count, sum).
fn count_and_sum(csv: &str) -> (i64, f64) {
    let line = csv.lines().nth(1).expect("a data row");
    let (n, total) = line.split_once(',').expect("two columns");
    (n.parse().unwrap(), total.parse().unwrap())
}

#[test]
fn story1_spills_on_small_workers_and_matches_duckdb() {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00005");
    let cluster = small_cluster();
    let (out, profile) = run_profiled(&cluster, data.path(), STORY1);
    let (groups, total) = count_and_sum(&out);
    assert_eq!(groups, STORY1_GROUPS);
    assert!(
        (total - STORY1_TOTAL).abs() < 1e-6 * STORY1_TOTAL,
        "{total}"
    );
    assert_within(&cluster, LIMIT_BYTES);

    assert!(profile["job"].is_string() && profile["wall_ms"].as_u64().unwrap() > 0);
    // df2, the join's build side, fits a share of this pool, so only the
    // aggregation is forced to disk here (the next test makes a join spill).
    assert!(
        spilled_in(&profile, "HashAggregate(Final)"),
        "no final aggregation spilled: {profile:#}"
    );
    for s in profile["stages"].as_array().unwrap() {
        for t in s["tasks"].as_array().unwrap() {
            for field in [
                "task",
                "attempt",
                "worker",
                "duration_ms",
                "input_rows",
                "input_bytes",
                "output_rows",
                "output_bytes",
                "peak_memory_bytes",
                "estimated_memory_bytes",
                "spilled_bytes",
            ] {
                assert!(!t[field].is_null(), "task lacks {field}: {t}");
            }
        }
    }
    assert_no_spill_files(&cluster);
}

/// df1 joined with itself on (key, bucket), unique at this scale: one output
/// row per df1 row. The build side (df1 with five columns) outgrows its share
/// of a 32 MiB pool, so the join runs as a grace hash join on disk.
#[test]
fn a_join_whose_build_side_outgrows_the_pool_spills_and_matches_duckdb() {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00005");
    let cluster = cluster_with_limit("64MiB");
    let sql = "SELECT count(*), sum(a.value) FROM df1 a JOIN df1 b ON a.key = b.key AND a.bucket = b.bucket \
               WHERE b.value IS NOT NULL AND b.group1 + b.group2 + b.group3 + b.group4 > 0";
    let (out, profile) = run_profiled(&cluster, data.path(), sql);
    // DuckDB: SELECT count(*), sum(value) FROM df1 (the join keeps every row once).
    let (rows, total) = count_and_sum(&out);
    assert_eq!(rows, 202_360);
    assert!((total - 101_383.439_132_342).abs() < 1e-6, "{total}");
    assert!(
        spilled_in(&profile, "HashJoin"),
        "the join did not spill: {profile:#}"
    );
    assert_within(&cluster, 64 << 20);
    assert_no_spill_files(&cluster);
}

#[test]
fn explain_analyze_shows_measured_figures_with_named_columns() {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00002");
    let cluster = small_cluster();
    let mut args = vec![
        "explain".to_string(),
        "--analyze".into(),
        "--scheduler".into(),
        cluster.url.clone(),
    ];
    args.extend(story1_tables(data.path()));
    args.push(STORY1.into());
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = keel(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    for needle in [
        "actual: ",
        "rows in",
        "peak task memory",
        "spilled",
        "hash exchange on [key]",
        "HashJoin(Inner) on [key] = [key]",
    ] {
        assert!(
            plan.contains(needle),
            "explain --analyze lacks {needle:?}:\n{plan}"
        );
    }
    assert!(!plan.contains('#'), "columns shown by position:\n{plan}");
}
