//! Bad input and broken infrastructure get one clear message that names the problem.

use std::io::{Seek, SeekFrom, Write};

use keel_client::KeelClient;
use keel_tests::{keel, stderr, story1_data, TestCluster};

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = keel(args);
    assert!(!out.status.success(), "expected failure for {args:?}");
    let err = stderr(&out);
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn query_errors_name_the_problem() {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00001");
    let cluster = TestCluster::start(1);
    let df1 = format!("df1={}", data.path().join("df1").display());
    let run = |sql: &str, needles: &[&str]| {
        fails_with(
            &["sql", "--scheduler", &cluster.url, "--table", &df1, sql],
            needles,
        )
    };

    run(
        "SELEC key FROM df1",
        &["syntax error", "Line: 1, Column: 1"],
    );
    run("SELECT key FROM df1 WHERE", &["syntax error", "found: EOF"]);
    run(
        "SELECT key FROM nope",
        &["Table with name nope does not exist", "--table nope=PATH"],
    );
    run(
        "SELECT nope FROM df1",
        &[
            "Referenced column \"nope\" not found",
            "candidates",
            "df1.key",
        ],
    );
    run("SELECT frob(key) FROM df1", &["Unknown function frob()"]);
    run(
        "SELECT a.key FROM df1 a FULL JOIN df1 b USING (key)",
        &["FULL JOIN … USING", "ON (a.k = b.k)"],
    );
    run(
        "SELECT a.key FROM df1 a FULL JOIN df1 b ON a.key < b.key",
        &["FULL joins without an equality"],
    );
    run(
        "SELECT a.key FROM df1 a RIGHT JOIN df1 b USING (key)",
        &["RIGHT JOIN … USING", "ON (a.k = b.k)"],
    );
    run(
        // A window over an aggregated SELECT reads group keys and aggregates only.
        "SELECT key, count(*) OVER (PARTITION BY bucket) FROM df1 GROUP BY key",
        &["column \"bucket\" must appear in the GROUP BY clause"],
    );
    run(
        "SELECT CAST(key AS VARCHAR) + 1 FROM df1",
        &["Cannot apply + to VARCHAR and BIGINT"],
    );
    run(
        "SELECT key FROM df1 WHERE group1 + 'x' > 1",
        &["Could not convert string 'x' to BIGINT"],
    );
    run(
        "SELECT key FROM df1 WHERE key = DATE '2024-13-45'",
        &["invalid DATE literal '2024-13-45'"],
    );
    run(
        "SELECT key FROM df1 WHERE value LIKE 'a%'",
        &["LIKE needs VARCHAR, got DOUBLE"],
    );
    run(
        "SELECT key, sum(value) FROM df1",
        &["column \"key\" must appear in the GROUP BY clause"],
    );
    run(
        "SELECT sum(key) FROM df1 WHERE count(*) > 1",
        &["aggregates are not allowed in WHERE"],
    );
    run(
        "SELECT a.key FROM df1 a NATURAL JOIN df1 AS b",
        &["not supported", "NATURAL joins"],
    );
    run(
        "SELECT first(value) FILTER (WHERE key > 1) FROM df1",
        &["not supported", "first() with FILTER"],
    );
    run("SELECT key % 0 FROM df1", &["Division by zero"]);
    run(
        "SELECT grouping(key) FROM df1",
        &["grouping() belongs in a query with GROUP BY"],
    );
    run(
        "SELECT key, grouping(value) FROM df1 GROUP BY ROLLUP (key)",
        &["value is not a GROUP BY key"],
    );
    run("DELETE FROM df1", &["not supported", "DELETE"]);
}

#[test]
fn missing_and_corrupt_files_fail_with_the_file_name() {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00001");
    let cluster = TestCluster::start(1);
    fails_with(
        &[
            "sql",
            "--scheduler",
            &cluster.url,
            "SELECT * FROM read_parquet('/nonexistent/x.parquet')",
        ],
        &["no Parquet files match /nonexistent/x.parquet"],
    );

    // Not Parquet at all: caught while planning, from the footer.
    let garbage = data.path().join("garbage.parquet");
    std::fs::write(&garbage, b"this is not parquet").unwrap();
    let sql = format!("SELECT count(*) FROM read_parquet('{}')", garbage.display());
    fails_with(
        &["sql", "--scheduler", &cluster.url, &sql],
        &["cannot read Parquet file", "garbage.parquet"],
    );

    // A valid footer over corrupt pages: fails in the workers, at once (a
    // data error: another attempt would read the same pages).
    let file = data.path().join("df1").join("part-00000.parquet");
    let corrupt = data.path().join("corrupt.parquet");
    std::fs::copy(&file, &corrupt).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&corrupt)
        .unwrap();
    f.seek(SeekFrom::Start(4)).unwrap();
    f.write_all(&[0xff; 64]).unwrap();
    drop(f);
    let sql = format!("SELECT sum(key) FROM read_parquet('{}')", corrupt.display());
    fails_with(
        &["sql", "--scheduler", &cluster.url, &sql],
        &[
            "job failed: stage 1 task 0 failed: cannot read Parquet file",
            "corrupt.parquet",
        ],
    );
    keel_tests::wait_for(
        "the failed job's files to be removed",
        std::time::Duration::from_secs(20),
        || cluster.job_files().is_empty(),
    );
}

#[test]
fn unreachable_scheduler_is_reported() {
    fails_with(
        &["sql", "--scheduler", "http://127.0.0.1:1", "SELECT 1"],
        &["cannot reach the scheduler at http://127.0.0.1:1"],
    );
    fails_with(
        &["health", "--scheduler", "http://127.0.0.1:1"],
        &["cannot reach the scheduler"],
    );
}

#[test]
fn unreachable_worker_is_reported() {
    let mut cluster = TestCluster::start(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = KeelClient::connect(&cluster.url, &Default::default())
            .await
            .unwrap();
        let job = client.submit("SELECT 42 AS answer", &[]).await.unwrap();
        let report = client.wait(&job, |_| {}).await.unwrap();
        cluster.kill_workers();
        let err = client
            .fetch(&report)
            .await
            .err()
            .expect("fetch from a dead worker fails");
        let msg = err.to_string();
        assert!(
            msg.contains("cannot reach the worker at http://127.0.0.1:"),
            "{msg}"
        );
    });
}

#[test]
fn bad_command_lines_are_rejected() {
    fails_with(
        &["sql", "--table", "nonsense", "SELECT 1"],
        &["expected NAME=PATH"],
    );
    fails_with(
        &["sql", "--workers", "0", "SELECT 1"],
        &["--workers must be at least 1"],
    );
    fails_with(&["sql"], &["give a query, or --file FILE"]);
    fails_with(
        &[
            "datagen",
            "imbalanced-join",
            "--scale",
            "0",
            "--out",
            "/tmp/x",
        ],
        &["--scale must be a positive number"],
    );
}
