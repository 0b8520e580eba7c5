"""Skew-aware shuffle joins on real processes: with broadcasts off, joins on
a key that holds 30% of one side must give DuckDB's answers with skew
handling on and off, and with it on the hot partition must be split (and
the split shown by the profile and `explain --analyze`)."""

import json
import subprocess

import duckdb
import pytest

from conftest import Cluster, binary
from test_differential import compare, duckdb_rows

# Small thresholds so test-sized tables have skewed partitions worth splitting.
SCHEDULER = ["--broadcast-bytes", "0", "--task-bytes", "64KiB", "--skew-min-bytes", "32KiB",
             "--shuffle-partitions", "16"]

# (query, whether skew handling must split a partition of it)
QUERIES = [
    # Inner: the hot key's left rows are split, b's rows of it replicated.
    ("SELECT b.name, count(*) AS c, sum(a.v) AS sv FROM a JOIN b ON a.k = b.k GROUP BY b.name", True),
    ("SELECT count(*), sum(a.v), min(a.pad) FROM a JOIN b USING (k)", True),
    # Left and semi joins split their left side.
    ("SELECT count(*), count(b.name), sum(a.v) FROM a LEFT JOIN b ON a.k = b.k", True),
    ("SELECT a.k, count(b.name) AS c FROM a LEFT JOIN b ON a.k = b.k AND b.name <> 'hot_3' GROUP BY a.k", True),
    ("SELECT count(*), sum(v) FROM a WHERE k IN (SELECT k FROM b)", True),
    # NOT IN always broadcasts its subquery (it is null-aware over the whole of it): nothing to split.
    ("SELECT count(*), sum(v) FROM a WHERE k NOT IN (SELECT k FROM b WHERE k IS NOT NULL)", False),
    # Hot on both sides: a grid of splits.
    ("SELECT count(*), sum(x.v + y.v), max(y.pad) FROM a x JOIN "
     "(SELECT * FROM a WHERE id % 7 = 0 AND id < 14000) y ON x.k = y.k", True),
    # b joined to a as the left side of a left join: a's hot rows are on the right and stay whole.
    ("SELECT count(*), count(a.id) FROM b LEFT JOIN a ON b.k = a.k", False),
    # A range join's hot key: a's points are split, the key's intervals replicated to each task.
    ("SELECT iv.g, count(*) AS c, sum(a.v) AS sv FROM a JOIN "
     "(SELECT k, id % 3 AS g, min(id) AS lo, max(id) AS hi FROM a WHERE id % 5 = 0 GROUP BY k, id % 3) iv "
     "ON a.k = iv.k AND a.id BETWEEN iv.lo AND iv.hi GROUP BY iv.g", True),
    # An ASOF join splits its left side only; each task holds all of the key's right rows.
    ("SELECT count(*), count(s.id), sum(s.id) FROM a ASOF LEFT JOIN (SELECT id, k FROM a WHERE id % 50 = 0) s "
     "ON a.k = s.k AND a.id >= s.id", True),
    ("SELECT count(*), sum(a.id) FROM (SELECT id, k FROM a WHERE id % 50 = 0) s ASOF JOIN a "
     "ON s.k = a.k AND s.id < a.id", False),
]


def write_skewed(dir):
    con = duckdb.connect()
    # Key 1 holds 30% of a; a's other keys run past b's, so some rows find no match.
    con.execute("""
        CREATE TABLE a AS SELECT i::BIGINT AS id,
          (CASE WHEN i % 10 < 3 THEN 1 ELSE i % 4000 END)::BIGINT AS k,
          (i % 100)::DOUBLE AS v,
          repeat('x', 100) || i AS pad
        FROM range(40000) r(i)""")
    con.execute("""
        CREATE TABLE b AS
          SELECT (i % 3000)::BIGINT AS k, 'b_' || i AS name FROM range(6000) r(i)
          UNION ALL SELECT 1, 'hot_' || i FROM range(200) r(i)
          UNION ALL SELECT NULL, 'nokey'""")
    (dir / "a").mkdir()
    for j in range(4):
        con.execute(f"COPY (SELECT * FROM a WHERE id % 4 = {j}) TO '{dir}/a/part-{j}.parquet' "
                    "(FORMAT parquet, ROW_GROUP_SIZE 2048)")
    con.execute(f"COPY b TO '{dir}/b.parquet' (FORMAT parquet)")
    con.close()


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    dir = tmp_path_factory.mktemp("skewed")
    write_skewed(dir)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW a AS SELECT * FROM read_parquet('{dir}/a/*.parquet')")
    con.execute(f"CREATE VIEW b AS SELECT * FROM read_parquet('{dir}/b.parquet')")
    yield dir, con
    con.close()


def tables(dir):
    return ["--table", f"a={dir}/a", "--table", f"b={dir}/b.parquet"]


def run_keel(cluster, dir, sql, profile):
    r = subprocess.run([binary("keel"), "sql", "--scheduler", cluster.url, *tables(dir), "--format", "json",
                        "--profile", str(profile), sql], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"keel failed on {sql!r}: {r.stderr}"
    rows = [tuple(row.values()) for row in json.loads(r.stdout)]
    return rows, json.loads(profile.read_text())


def splits(profile):
    return [s for stage in profile["stages"] for s in stage["skew_splits"]]


@pytest.mark.parametrize("mode", ["on", "off"])
def test_skewed_joins_match_duckdb(skewed, tmp_path, mode):
    dir, con = skewed
    cluster = Cluster(workers=2, scheduler_args=SCHEDULER + ["--skew-join", mode])
    try:
        for i, (sql, must_split) in enumerate(QUERIES):
            rows, profile = run_keel(cluster, dir, sql, tmp_path / f"profile-{i}.json")
            compare(sql, duckdb_rows(con, sql), rows)
            found = splits(profile)
            if mode == "off" or not must_split:
                assert not found, f"{sql}: split with skew handling {mode}: {found}"
                continue
            assert found, f"{sql}: no partition was split"
            assert any(k["key"] == "1" for s in found for k in s["hot_keys"]), found
            # Each split task reads a share of the hot partition, not all of it.
            stage = next(s for s in profile["stages"] if s["skew_splits"])
            split_tasks = [t for t in stage["tasks"] if t["skew_partition"] is not None]
            assert len(split_tasks) == sum(s["tasks"] for s in stage["skew_splits"])
            hot_rows = max(s["left_rows"] for s in stage["skew_splits"])
            assert max(t["input_rows"] for t in split_tasks) < hot_rows
            if " x JOIN " in sql:
                assert any(s["split_sides"] == ["left", "right"] for s in found), found
    finally:
        cluster.close()


def test_explain_shows_the_policy_and_every_split(skewed):
    dir, _ = skewed
    cluster = Cluster(workers=2, scheduler_args=SCHEDULER)
    try:
        explain = lambda *args: subprocess.run(  # noqa: E731
            [binary("keel"), "explain", "--scheduler", cluster.url, *tables(dir), *args],
            capture_output=True, text=True, timeout=300)
        r = explain("SELECT count(*) FROM b LEFT JOIN a ON b.k = a.k")
        assert r.returncode == 0, r.stderr
        assert "a Left join must see all of a left row's matches in one task" in r.stdout, r.stdout
        r = explain("--analyze", QUERIES[0][0])
        assert r.returncode == 0, r.stderr
        assert "split: stage" in r.stdout and "hot key 1 (" in r.stdout, r.stdout
        assert "Adaptive planning:" in r.stdout
    finally:
        cluster.close()
