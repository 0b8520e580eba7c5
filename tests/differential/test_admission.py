"""Story 4 on real processes: the 40 per-signal diff jobs of `keel datagen
backups` (sizes 100x apart) submitted at once to two small workers. Every
job must succeed with DuckDB's answer, no task may fail for memory, and no
worker's resident memory may pass its limit."""

import json
import subprocess

import duckdb
import pytest

from conftest import Cluster, binary

SIGNALS = 40
LIMIT = 160 << 20
DIFF = (
    "SELECT n.* FROM new n LEFT JOIN old o "
    "ON n.signal = o.signal AND n.time_value = o.time_value AND n.geo_value = o.geo_value "
    "WHERE o.signal IS NULL OR n.value IS DISTINCT FROM o.value OR n.stderr IS DISTINCT FROM o.stderr"
)


@pytest.fixture(scope="module")
def backups(tmp_path_factory):
    out = tmp_path_factory.mktemp("backups")
    r = subprocess.run([binary("keel"), "datagen", "backups", "--scale", "0.1", "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_concurrent_jobs_of_mixed_sizes_all_succeed_within_memory(backups, tmp_path):
    cluster = Cluster(workers=2, cores=4, worker_args=["--memory-limit", str(LIMIT)])
    try:
        jobs = []
        for i in range(SIGNALS):
            f = f"signal-{i:02}.parquet"
            sql = f"COPY ({DIFF}) TO '{tmp_path}/signal-{i:02}' (FORMAT parquet)"
            profile = ["--profile", str(tmp_path / f"profile-{i:02}.json")]
            jobs.append(subprocess.Popen(
                [binary("keel"), "sql", "--scheduler", cluster.url, "--table", f"new={backups}/day2/{f}",
                 "--table", f"old={backups}/day1/{f}", *profile, sql],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        errors = [(i, p.communicate(timeout=600)[1], p.returncode) for i, p in enumerate(jobs)]
        peaks = cluster.peak_rss()
    finally:
        cluster.close()
    failed = [(i, err) for i, err, code in errors if code != 0]
    assert not failed, failed[:3]
    memory = [(i, err) for i, err, _ in errors if "for memory" in err or "out of memory" in err]
    assert not memory, memory[:3]
    assert all(p <= LIMIT for p in peaks), f"peak RSS {peaks} over the {LIMIT}-byte limit"

    # Every task ran with an estimate; none failed for memory.
    for i in range(SIGNALS):
        profile = json.loads((tmp_path / f"profile-{i:02}.json").read_text())
        assert profile["memory_failures"] == 0
        tasks = [t for s in profile["stages"] for t in s["tasks"]]
        assert tasks and all(t["estimated_memory_bytes"] > 0 for t in tasks), tasks

    con = duckdb.connect()
    con.execute(f"CREATE VIEW new AS SELECT * FROM read_parquet('{backups}/day2/*.parquet')")
    con.execute(f"CREATE VIEW old AS SELECT * FROM read_parquet('{backups}/day1/*.parquet')")
    expected = {r[0]: r[1:] for r in con.execute(
        f"SELECT signal, count(*), sum(value), sum(stderr), count(value) FROM ({DIFF}) GROUP BY signal").fetchall()}
    assert len(expected) == SIGNALS
    for i in range(SIGNALS):
        got = con.execute(
            "SELECT count(*), sum(value), sum(stderr), count(value) "
            f"FROM read_parquet('{tmp_path}/signal-{i:02}/*.parquet')").fetchone()
        want = expected[f"signal_{i:02}"]
        assert got[0] == want[0] and got[3] == want[3], f"signal {i:02}: {got} rows, DuckDB {want}"
        assert got[1] == pytest.approx(want[1], rel=1e-9) and got[2] == pytest.approx(want[2], rel=1e-9)
