//! Bounded worker memory on real processes: story 1 on workers whose limit
//! forces the aggregation to spill, the answer checked
//! against DuckDB's, every worker's resident memory under its limit, and the
//! job profile and `explain --analyze` showing what spilled.

use keel_tests::{
    keel, stderr, stdout, story1_data, story1_tables, TestCluster, STORY1, STORY1_GROUPS,
    STORY1_TOTAL,
};

const LIMIT: &str = "96MiB";
const LIMIT_BYTES: u64 = 96 << 20;

/// Shuffle joins only (no broadcast), few big reduce tasks: the final
/// aggregation outgrows its fair share of a 48 MiB pool.
fn small_cluster() -> TestCluster {
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
        &["--memory-limit", LIMIT],
    )
}

#[test]
fn story1_spills_on_small_workers_and_matches_duckdb() {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00005");
    let cluster = small_cluster();
    let profile = data.path().join("profile.json");
    let mut args = vec![
        "sql".to_string(),
        "--scheduler".into(),
        cluster.url.clone(),
        "--format".into(),
        "csv".into(),
        "--profile".into(),
        profile.display().to_string(),
    ];
    args.extend(story1_tables(data.path()));
    args.push(STORY1.into());
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = keel(&args);
    assert!(out.status.success(), "{}", stderr(&out));

    let line = stdout(&out).lines().nth(1).expect("a data row").to_string();
    let (groups, total) = line.split_once(',').expect("two columns");
    assert_eq!(groups.parse::<i64>().unwrap(), STORY1_GROUPS);
    let total: f64 = total.parse().unwrap();
    assert!(
        (total - STORY1_TOTAL).abs() < 1e-6 * STORY1_TOTAL,
        "{total}"
    );
    assert!(
        stderr(&out).contains("spilled "),
        "no spill line: {}",
        stderr(&out)
    );

    for i in 0..2 {
        let rss = cluster.worker_peak_rss(i);
        assert!(
            rss <= LIMIT_BYTES,
            "worker {i} peaked at {rss} bytes, over its {LIMIT} limit"
        );
    }

    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    assert!(profile["job"].is_string() && profile["wall_ms"].as_u64().unwrap() > 0);
    let stages = profile["stages"].as_array().unwrap();
    let spilled_in = |operator: &str| {
        stages.iter().any(|s| {
            s["operators"].as_str().unwrap().contains(operator)
                && s["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["spilled_bytes"].as_u64().unwrap() > 0)
        })
    };
    // df2, the join's build side, fits a share of this pool, so only the
    // aggregation is forced to disk here; the join's spill paths (grace
    // partitions, hot-key chunks) are covered by the operator unit tests.
    assert!(
        spilled_in("HashAggregate(Final)"),
        "no final aggregation spilled: {profile:#}"
    );
    for s in stages {
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
                "spilled_bytes",
            ] {
                assert!(!t[field].is_null(), "task lacks {field}: {t}");
            }
        }
    }
    // Every spill file went with its task.
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
