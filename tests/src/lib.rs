//! keel-tests: integration tests that start real `keel-scheduler` and
//! `keel-worker` processes, and helpers shared by them.
//!
//! # Layout
//! - [`TestCluster`]: a scheduler and workers as child processes on port 0, killed on drop.
//! - [`keel`]: runs the `keel` CLI and captures its output.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where cargo put the binaries: the directory above this test executable's `deps/`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("KEEL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Runs `keel ARGS…` to completion.
pub fn keel(args: &[&str]) -> Output {
    Command::new(bin("keel"))
        .args(args)
        .output()
        .expect("run keel")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits for `condition` to hold, polling; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Starts a process and reads an address from each of its first lines,
/// one line per prefix (`keel-scheduler listening on ADDR`, …).
fn spawn(cmd: &mut Command, prefixes: &[&str]) -> (Child, Vec<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let addrs = prefixes
        .iter()
        .map(|prefix| {
            let mut line = String::new();
            reader.read_line(&mut line).expect("an address line");
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("unexpected line {line:?}, wanted {prefix:?}"))
                .trim()
                .to_string()
        })
        .collect();
    (child, addrs)
}

/// Starts a scheduler; returns it with its gRPC and HTTP addresses.
fn spawn_scheduler(bind: &str, http_bind: &str, args: &[String]) -> (Child, String, String) {
    let (child, mut addrs) = spawn(
        Command::new(bin("keel-scheduler"))
            .args(["--bind", bind, "--http-bind", http_bind])
            .args(args),
        &["keel-scheduler listening on ", "keel-scheduler http on "],
    );
    let http = addrs.pop().expect("http address");
    (child, addrs.pop().expect("grpc address"), http)
}

pub struct TestCluster {
    pub url: String,
    /// The dashboard, JSON API and metrics: `http://HOST:PORT`.
    pub http_url: String,
    scheduler_args: Vec<String>,
    worker_args: Vec<String>,
    scheduler: Child,
    pub workers: Vec<Child>,
    pub work_dirs: Vec<tempfile::TempDir>,
}

impl TestCluster {
    pub fn start(workers: usize) -> Self {
        Self::start_with(workers, &[])
    }

    pub fn start_with(workers: usize, scheduler_args: &[&str]) -> Self {
        Self::start_with_workers(workers, scheduler_args, &[])
    }

    /// A cluster whose workers all get `worker_args` (e.g. `--memory-limit`).
    pub fn start_with_workers(
        workers: usize,
        scheduler_args: &[&str],
        worker_args: &[&str],
    ) -> Self {
        let scheduler_args: Vec<String> = scheduler_args.iter().map(|s| s.to_string()).collect();
        let (scheduler, addr, http) =
            spawn_scheduler("127.0.0.1:0", "127.0.0.1:0", &scheduler_args);
        let mut cluster = TestCluster {
            url: format!("http://{addr}"),
            http_url: format!("http://{http}"),
            scheduler_args,
            worker_args: worker_args.iter().map(|s| s.to_string()).collect(),
            scheduler,
            workers: vec![],
            work_dirs: vec![],
        };
        for _ in 0..workers {
            cluster.add_worker();
        }
        cluster.wait_for_workers(workers);
        cluster
    }

    pub fn add_worker(&mut self) {
        self.add_worker_with_cores(2);
    }

    pub fn add_worker_with_cores(&mut self, cores: usize) {
        let dir = tempfile::tempdir().expect("work dir");
        let cores = cores.to_string();
        let (child, _addr) = spawn(
            Command::new(bin("keel-worker"))
                .args([
                    "--scheduler",
                    &self.url,
                    "--bind",
                    "127.0.0.1:0",
                    "--cores",
                    &cores,
                    "--work-dir",
                ])
                .arg(dir.path())
                .args(&self.worker_args),
            &["keel-worker listening on "],
        );
        self.workers.push(child);
        self.work_dirs.push(dir);
    }

    pub fn live_workers(&self) -> usize {
        let out = keel(&["health", "--scheduler", &self.url]);
        stdout(&out)
            .strip_prefix("ok: ")
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    pub fn wait_for_workers(&self, n: usize) {
        wait_for(
            &format!("{n} workers to register"),
            Duration::from_secs(20),
            || self.live_workers() >= n,
        );
    }

    /// A live worker's peak resident memory so far (the kernel's VmHWM).
    pub fn worker_peak_rss(&self, i: usize) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.workers[i].id()))
            .expect("worker is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM in /proc status")
            * 1024
    }

    /// SIGKILLs one worker process.
    pub fn kill_worker(&mut self, i: usize) {
        let _ = self.workers[i].kill();
        let _ = self.workers[i].wait();
    }

    /// Sends SIGTERM to one worker and waits for it to exit; returns whether it exited successfully.
    pub fn terminate_worker(&mut self, i: usize, timeout: Duration) -> bool {
        terminate(&mut self.workers[i], timeout)
    }

    /// Sends SIGTERM to the scheduler and waits for it to exit.
    pub fn terminate_scheduler(&mut self, timeout: Duration) -> bool {
        terminate(&mut self.scheduler, timeout)
    }

    /// Kills the scheduler and starts a new one on the same address.
    pub fn restart_scheduler(&mut self) {
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
        let addr = self.url.trim_start_matches("http://");
        let http = self.http_url.trim_start_matches("http://");
        let (scheduler, _, _) = spawn_scheduler(addr, http, &self.scheduler_args);
        self.scheduler = scheduler;
    }

    /// Files under every worker's work dir (shuffle outputs and results).
    pub fn job_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = vec![];
        for d in &self.work_dirs {
            walk(d.path(), &mut out);
        }
        out
    }

    pub fn kill_workers(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.kill_workers();
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
    }
}

fn terminate(child: &mut Child, timeout: Duration) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.success();
        }
        assert!(
            Instant::now() < deadline,
            "process {} did not exit within {timeout:?} of SIGTERM",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Generates story 1 at a small scale with `keel datagen` into `dir`.
pub fn story1_data(dir: &std::path::Path, scale: &str) {
    let out = keel(&[
        "datagen",
        "imbalanced-join",
        "--scale",
        scale,
        "--out",
        dir.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "datagen failed: {}", stderr(&out));
}

/// Story 1 summarised to one row: the number of output groups and their total.
pub const STORY1: &str = "SELECT count(*) AS groups, sum(value) AS total FROM (SELECT df2_group, bucket, group1, group2, group3, group4, sum(value) AS value FROM df1 JOIN df2 USING (key) GROUP BY df2_group, bucket, group1, group2, group3, group4)";
/// DuckDB's answer to [`STORY1`] for `keel datagen imbalanced-join --scale 0.00005 --seed 42`.
pub const STORY1_GROUPS: i64 = 2_773_048;
pub const STORY1_TOTAL: f64 = 1_389_896.986156065;

/// `--table df1=… --table df2=…` for story-1 data generated into `dir`.
pub fn story1_tables(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--table".into(),
        format!("df1={}", dir.join("df1").display()),
        "--table".into(),
        format!("df2={}", dir.join("df2").display()),
    ]
}
