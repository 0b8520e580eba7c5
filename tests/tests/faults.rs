//! Workers die, files vanish, schedulers restart: jobs still give the answer
//! of a run without failures, or fail clearly and clean up.

use std::time::Duration;

use arrow::array::{Array, Float64Array, Int64Array};
use keel_client::{KeelClient, QueryResult};
use keel_proto::pb::StageProgress;
use keel_tests::{story1_data, wait_for, TestCluster, STORY1};

/// Small splits and tasks, no broadcasts: stages of many tasks, so there is
/// time to act while one runs, and both join sides go through the shuffle.
const MANY_TASKS: &[&str] = &[
    "--split-bytes",
    "512KiB",
    "--task-bytes",
    "2MiB",
    "--broadcast-bytes",
    "0",
    "--shuffle-partitions",
    "32",
    "--heartbeat-timeout",
    "2",
];

struct Fixture {
    _data: tempfile::TempDir,
    tables: Vec<(String, String)>,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> Fixture {
    let data = tempfile::tempdir().unwrap();
    story1_data(data.path(), "0.00005");
    let tables = vec![
        (
            "df1".to_string(),
            data.path().join("df1").display().to_string(),
        ),
        (
            "df2".to_string(),
            data.path().join("df2").display().to_string(),
        ),
    ];
    Fixture {
        _data: data,
        tables,
        rt: tokio::runtime::Runtime::new().unwrap(),
    }
}

fn cluster(workers: usize) -> TestCluster {
    let mut c = TestCluster::start_with(0, MANY_TASKS);
    for _ in 0..workers {
        c.add_worker_with_cores(1);
    }
    c.wait_for_workers(workers);
    c
}

fn answer(r: &QueryResult) -> (i64, f64) {
    let b = &r.batches[0];
    let groups = b
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    let total = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
    assert!(!total.is_null(0));
    (groups, total.value(0))
}

fn assert_same(a: (i64, f64), b: (i64, f64)) {
    assert_eq!(a.0, b.0, "group counts differ");
    assert!(
        (a.1 - b.1).abs() <= 1e-6 * b.1.abs(),
        "sums differ: {} vs {}",
        a.1,
        b.1
    );
}

/// Runs `sql`, calling `act` once, the first time `when` holds for the job's stages.
async fn run_with_fault(
    client: &KeelClient,
    f: &Fixture,
    cluster: &mut TestCluster,
    when: impl Fn(&[StageProgress]) -> bool,
    act: impl FnOnce(&mut TestCluster),
) -> QueryResult {
    let job = client.submit(STORY1, &f.tables).await.unwrap();
    let mut act = Some(act);
    let report = client
        .wait(&job, |stages| {
            if act.is_some() && when(stages) {
                (act.take().unwrap())(cluster);
            }
        })
        .await
        .unwrap_or_else(|e| panic!("job failed: {e}"));
    assert!(act.is_none(), "the fault was never injected");
    let (schema, batches) = client.fetch(&report).await.unwrap();
    client.release(&job).await.unwrap();
    QueryResult {
        schema,
        batches,
        report,
    }
}

/// The stage that scans df1 (the most scan tasks) and the stage after the shuffle join.
fn map_stage(stages: &[StageProgress]) -> Option<&StageProgress> {
    stages
        .iter()
        .filter(|s| s.name.starts_with("scan"))
        .max_by_key(|s| s.tasks_total)
}

fn join_stage(stages: &[StageProgress]) -> Option<&StageProgress> {
    stages.iter().find(|s| s.name.contains("join"))
}

/// The map stage has finished and no reduce task has.
fn between_map_and_reduce(s: &[StageProgress]) -> bool {
    map_stage(s).is_some_and(|m| m.tasks_total > 0 && m.tasks_done == m.tasks_total)
        && join_stage(s).is_some_and(|j| j.tasks_done == 0)
}

fn running(s: Option<&StageProgress>) -> bool {
    s.is_some_and(|s| s.tasks_total > 0 && s.tasks_done >= 1 && s.tasks_done + 2 <= s.tasks_total)
}

fn clean_answer(client: &KeelClient, f: &Fixture) -> (i64, f64) {
    let r =
        f.rt.block_on(client.query(STORY1, &f.tables, |_| {}))
            .unwrap();
    assert_eq!(r.report.tasks_retried, 0);
    answer(&r)
}

fn client(f: &Fixture, c: &TestCluster) -> KeelClient {
    f.rt.block_on(KeelClient::connect(&c.url, &Default::default()))
        .unwrap()
}

#[test]
fn worker_killed_during_the_map_stage() {
    let f = fixture();
    let mut c = cluster(3);
    let client = client(&f, &c);
    let clean = clean_answer(&client, &f);
    let r = f.rt.block_on(run_with_fault(
        &client,
        &f,
        &mut c,
        |s| running(map_stage(s)),
        |c| c.kill_worker(0),
    ));
    assert_same(answer(&r), clean);
    assert!(r.report.tasks_retried > 0 || r.report.retry_reasons.is_empty());
}

#[test]
fn worker_killed_after_its_map_outputs_are_complete() {
    let f = fixture();
    let mut c = cluster(3);
    let client = client(&f, &c);
    let clean = clean_answer(&client, &f);
    let r = f.rt.block_on(run_with_fault(
        &client,
        &f,
        &mut c,
        between_map_and_reduce,
        |c| c.kill_worker(1),
    ));
    assert_same(answer(&r), clean);
    assert!(
        r.report
            .retry_reasons
            .iter()
            .any(|m| m.contains("recomputing")),
        "lost map outputs were not recomputed: {:?}",
        r.report.retry_reasons
    );
}

#[test]
fn worker_killed_during_the_reduce_stage() {
    let f = fixture();
    let mut c = cluster(3);
    let client = client(&f, &c);
    let clean = clean_answer(&client, &f);
    let r = f.rt.block_on(run_with_fault(
        &client,
        &f,
        &mut c,
        |s| running(join_stage(s)),
        |c| c.kill_worker(2),
    ));
    assert_same(answer(&r), clean);
}

#[test]
fn deleted_map_output_is_recomputed_after_a_fetch_failure() {
    let f = fixture();
    let mut c = cluster(2);
    let client = client(&f, &c);
    let clean = clean_answer(&client, &f);
    let r = f.rt.block_on(run_with_fault(
        &client,
        &f,
        &mut c,
        between_map_and_reduce,
        |c| {
            // Remove every map output of worker 0: reducers must fail to fetch them.
            for file in c.job_files() {
                if file.starts_with(c.work_dirs[0].path())
                    && file.extension().is_some_and(|e| e == "arrow")
                {
                    std::fs::remove_file(file).unwrap();
                }
            }
        },
    ));
    assert_same(answer(&r), clean);
    assert!(
        r.report
            .retry_reasons
            .iter()
            .any(|m| m.contains("cannot fetch") && m.contains("recomputing")),
        "no fetch failure was handled: {:?}",
        r.report.retry_reasons
    );
}

#[test]
fn cancelled_job_stops_and_removes_its_files() {
    let f = fixture();
    let mut c = cluster(2);
    let client = client(&f, &c);
    f.rt.block_on(async {
        let job = client.submit(STORY1, &f.tables).await.unwrap();
        let cancel = client.clone();
        let job2 = job.clone();
        let mut asked = false;
        let err = client
            .wait(&job, |s| {
                if !asked && running(map_stage(s)) {
                    asked = true;
                    let (cancel, job2) = (cancel.clone(), job2.clone());
                    tokio::spawn(async move { cancel.cancel(&job2).await.unwrap() });
                }
            })
            .await
            .err()
            .expect("a cancelled job does not complete");
        assert!(err.to_string().contains("cancelled"), "{err}");
    });
    wait_for(
        "cancelled job's files to be removed",
        Duration::from_secs(20),
        || c.job_files().is_empty(),
    );
    // The workers take new jobs.
    let again = clean_answer(&client, &f);
    assert!(again.0 > 0);
    let _ = &mut c;
}

#[test]
fn failed_job_leaves_no_files() {
    let f = fixture();
    let c = cluster(2);
    let client = client(&f, &c);
    let err =
        f.rt.block_on(client.query("SELECT key % (key - key) FROM df1", &f.tables, |_| {}))
            .err()
            .unwrap();
    assert!(err.to_string().contains("Division by zero"), "{err}");
    // A user error: the job fails on the first attempt, naming the task.
    assert!(
        err.to_string().contains("failed: Division by zero"),
        "{err}"
    );
    assert!(!err.to_string().contains("attempts"), "{err}");
    wait_for(
        "failed job's files to be removed",
        Duration::from_secs(20),
        || c.job_files().is_empty(),
    );
}

#[test]
fn restarted_scheduler_gets_its_workers_back() {
    let f = fixture();
    let mut c = cluster(2);
    let before = clean_answer(&client(&f, &c), &f);
    c.restart_scheduler();
    c.wait_for_workers(2);
    let after = clean_answer(&client(&f, &c), &f);
    assert_same(after, before);
}

#[test]
fn job_without_workers_fails_after_the_wait() {
    let f = fixture();
    let mut c = TestCluster::start_with(0, &["--worker-wait", "1"]);
    let client = client(&f, &c);
    let err =
        f.rt.block_on(client.query("SELECT count(*) FROM df1", &f.tables, |_| {}))
            .err()
            .unwrap();
    assert!(err.to_string().contains("no live workers for 1s"), "{err}");
    c.kill_workers();
}

#[test]
fn sigterm_stops_workers_and_the_scheduler_cleanly() {
    let f = fixture();
    let mut c = cluster(2);
    let client = client(&f, &c);
    assert!(clean_answer(&client, &f).0 > 0);
    assert!(
        c.terminate_worker(0, Duration::from_secs(10)),
        "worker exited with an error"
    );
    wait_for(
        "the scheduler to drop the stopped worker",
        Duration::from_secs(10),
        || c.live_workers() == 1,
    );
    // The remaining worker still runs jobs.
    assert!(clean_answer(&client, &f).0 > 0);
    // With a worker still connected, the scheduler ends its streams and exits.
    assert!(
        c.terminate_scheduler(Duration::from_secs(10)),
        "scheduler exited with an error"
    );
}
