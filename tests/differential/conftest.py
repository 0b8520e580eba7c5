"""Fixtures for the differential suite: test data written by DuckDB, and
real keel-scheduler / keel-worker processes started on port 0."""

import os
import re
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("KEEL_BIN_DIR", ROOT / "target" / "debug"))


def binary(name):
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build with `cargo build --workspace --bins` first")
    return str(path)


def write_data(dir: Path):
    """Tables with NULLs, skewed keys, strings, dates and timestamps, in several files and row groups."""
    con = duckdb.connect()
    con.execute(
        """
        CREATE TABLE t AS SELECT
          i::BIGINT AS id,
          (CASE WHEN i % 10 < 6 THEN 1 ELSE i % 97 END)::BIGINT AS k,
          CASE WHEN i % 13 = 0 THEN NULL ELSE 'name_' || (i % 37) END AS s,
          DATE '2024-01-01' + (i % 400)::INTEGER AS d,
          TIMESTAMP '2024-01-01 00:00:00' + to_minutes((i % 1000)::BIGINT) AS ts,
          CASE WHEN i % 17 = 0 THEN NULL ELSE ((i % 1000) / 7.0)::DOUBLE END AS x,
          CASE WHEN i % 11 = 0 THEN NULL ELSE (i % 50)::INTEGER END AS n,
          (i % 3 = 0) AS flag
        FROM range(20000) r(i)
        """
    )
    con.execute(
        """
        CREATE TABLE u AS
          SELECT k::BIGINT AS k, 'u_' || k AS name, (k * 1.5)::DOUBLE AS w FROM range(0, 120) r(k)
          UNION ALL SELECT k::BIGINT, 'dup_' || k, (k * 2.5)::DOUBLE FROM range(0, 40) r(k)
          UNION ALL SELECT NULL, 'nokey', 0.5
        """
    )
    (dir / "t").mkdir()
    for j in range(4):
        con.execute(
            f"COPY (SELECT * FROM t WHERE id % 4 = {j} ORDER BY id) TO '{dir}/t/part-{j}.parquet' (FORMAT parquet, ROW_GROUP_SIZE 1024)"
        )
    con.execute(f"COPY u TO '{dir}/u.parquet' (FORMAT parquet)")
    con.close()


class Cluster:
    """A keel-scheduler and workers as real processes; stopped by close()."""

    def __init__(self, workers=2, scheduler_args=(), work_dir=None, worker_args=(), cores=2, log_dir=None,
                 env=None, scheme="http", client_args=()):
        self.procs = []
        # Extra environment for every process (KEEL_AUTH_TOKEN, …); `scheme`
        # is https for a cluster started with --tls-cert; `client_args` are
        # what `keel` needs to reach it (--tls-ca, …).
        self.env = {**os.environ, **(env or {})}
        self.client_args = list(client_args)
        # With a log directory, every process logs at debug level to NAME.log there.
        self.log_dir = Path(log_dir) if log_dir else None
        self.scheduler = self._start([binary("keel-scheduler"), "--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0", *scheduler_args])
        self.url = f"{scheme}://" + self._address(self.scheduler, "keel-scheduler listening on ")
        self.http_url = "http://" + self._address(self.scheduler, "keel-scheduler http on ")
        self.workers, self.worker_addresses = [], []
        for i in range(workers):
            args = [binary("keel-worker"), "--scheduler", self.url, "--bind", "127.0.0.1:0", "--cores", str(cores), *worker_args]
            if work_dir:
                args += ["--work-dir", str(Path(work_dir) / f"worker-{i}")]
            w = self._start(args)
            self.worker_addresses.append(self._address(w, "keel-worker listening on "))
            self.workers.append(w)
        self.wait_for_workers(workers)

    def _start(self, args):
        if self.log_dir:
            name = Path(args[0]).name + ("" if "worker" not in args[0] else f"-{len(self.procs) - 1}")
            stderr = open(self.log_dir / f"{name}.log", "w")
            env = {**self.env, "RUST_LOG": "debug,h2=info,tower=info,hyper=info"}
        else:
            stderr, env = subprocess.DEVNULL, self.env
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        self.procs.append(p)
        return p

    def _address(self, proc, prefix):
        line = proc.stdout.readline()
        if not line.startswith(prefix):
            self.close()
            pytest.fail(f"unexpected first line from {proc.args[0]}: {line!r}")
        return line[len(prefix):].strip()

    def wait_for_workers(self, n, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = subprocess.run([binary("keel"), "health", "--scheduler", self.url, *self.client_args],
                               capture_output=True, text=True, env=self.env)
            m = re.match(r"ok: (\d+) workers", r.stdout)
            if m and int(m.group(1)) >= n:
                return
            time.sleep(0.05)
        pytest.fail(f"{n} workers did not register within {timeout}s")

    def peak_rss(self):
        """Each worker's peak resident memory so far (the kernel's VmHWM), in bytes."""
        peaks = []
        for w in self.workers:
            with open(f"/proc/{w.pid}/status") as f:
                peaks.append(next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:")))
        return peaks

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    dir = tmp_path_factory.mktemp("keel-data")
    write_data(dir)
    return dir


CLUSTERS = {
    # Default sizing: small tables are broadcast, stages run as one task each.
    "default": ([], []),
    # Tiny splits and tasks, no broadcasts: every exchange is a real multi-task shuffle.
    "many-tasks": (["--split-bytes", "4KiB", "--task-bytes", "16KiB", "--broadcast-bytes", "0", "--shuffle-partitions", "16"], []),
    # Workers with a 1 MiB limit (a 512 KiB pool): every query must still be
    # right, and the ones that hold the most (aggregations, joins, sorts) spill.
    "small-memory": (["--broadcast-bytes", "0", "--shuffle-partitions", "4"], ["--memory-limit", "1MiB"]),
}


@pytest.fixture(scope="session", params=list(CLUSTERS))
def cluster(request):
    scheduler_args, worker_args = CLUSTERS[request.param]
    c = Cluster(workers=2, scheduler_args=scheduler_args, worker_args=worker_args)
    c.name = request.param
    c.spilled_queries = 0
    yield c
    c.close()


@pytest.fixture(scope="module", params=["default", "many-tasks"])
def two_shapes(request):
    """A cluster per module on the default shape and on one forced into many tasks."""
    scheduler_args, worker_args = CLUSTERS[request.param]
    c = Cluster(workers=2, scheduler_args=scheduler_args, worker_args=worker_args)
    c.spilled_queries = 0
    yield c
    c.close()


@pytest.fixture(scope="module")
def reference(data):
    """DuckDB over the same test tables."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{data}/t/*.parquet')")
    con.execute(f"CREATE VIEW u AS SELECT * FROM read_parquet('{data}/u.parquet')")
    yield con
    con.close()
