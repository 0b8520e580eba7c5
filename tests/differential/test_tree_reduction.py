"""Tree reductions: a global aggregate over hundreds of scan tasks merges
their partial states in levels of at most k (`--tree-fan-in`), no task
reading more than k states, with DuckDB's answers; `explain` shows the tree.
A grouped aggregate of sketches (large states, few groups) merges by group
in a tree before its exchange."""

import json
import subprocess

import duckdb
import pytest

from conftest import Cluster, binary
from test_differential import compare

FAN_IN = 8
QUERY = ("SELECT count(*) AS c, sum(v) AS s, avg(w) AS a, min(name) AS mn, max(v) AS mx, "
         "approx_count_distinct(id) AS ad, theta_estimate(theta_sketch(g)) AS tg FROM many")


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    dir = tmp_path_factory.mktemp("tree")
    con = duckdb.connect()
    con.execute(f"""
        COPY (SELECT i AS id, i % 97 AS g, ((i % 1000) * 0.5)::DOUBLE AS v, CASE WHEN i % 9 = 0 THEN NULL ELSE i % 13 END AS w,
                     'n' || (i % 500) AS name
              FROM range(500000) r(i))
        TO '{dir}/many.parquet' (FORMAT parquet, ROW_GROUP_SIZE 1000)""")
    con.close()
    return dir


def test_partial_states_merge_in_a_tree(many, tmp_path):
    cluster = Cluster(workers=2, scheduler_args=["--split-bytes", "1KiB", "--tree-fan-in", str(FAN_IN)])
    try:
        tables = ["--table", f"many={many}/many.parquet"]
        profile = tmp_path / "profile.json"
        r = subprocess.run([binary("keel"), "sql", "--scheduler", cluster.url, *tables, "--format", "json",
                            "--profile", str(profile), QUERY], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        got = [tuple(row.values()) for row in json.loads(r.stdout)]
        con = duckdb.connect()
        con.execute(f"CREATE VIEW many AS SELECT * FROM read_parquet('{many}/many.parquet')")
        want = con.execute(QUERY.replace("approx_count_distinct(id)", "count(DISTINCT id)")
                           .replace("theta_estimate(theta_sketch(g))", "count(DISTINCT g)::DOUBLE")).fetchall()
        # The HLL estimate is within its error; everything else is exact.
        (approx,) = [row[5] for row in got]
        assert abs(approx - want[0][5]) <= 0.02 * want[0][5]
        compare(QUERY, [want[0][:5] + want[0][6:]], [got[0][:5] + got[0][6:]])

        stages = json.loads(profile.read_text())["stages"]
        scan_tasks = len(stages[0]["tasks"])
        assert scan_tasks >= 150, scan_tasks
        # Every later task reads at most FAN_IN partial states (one row each).
        for stage in stages[1:]:
            assert max(t["input_rows"] for t in stage["tasks"]) <= FAN_IN, stage
        # About 245 partials → 31 → 4 → the final task: two merge levels.
        assert len(stages) >= 4, [len(s["tasks"]) for s in stages]

        r = subprocess.run([binary("keel"), "explain", "--scheduler", cluster.url, *tables, QUERY],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count(f"tree reduction of fan-in {FAN_IN}") >= 2 and "HashAggregate(Merge)" in r.stdout, r.stdout
    finally:
        cluster.close()


GROUPED = ("SELECT w, count(*) AS c, theta_estimate(theta_sketch(g)) AS tg, approx_count_distinct(name) AS an "
           "FROM many GROUP BY w")


def test_grouped_sketches_merge_in_a_tree_before_the_exchange(many, tmp_path):
    cluster = Cluster(workers=2, scheduler_args=["--split-bytes", "1KiB", "--tree-fan-in", str(FAN_IN)])
    try:
        tables = ["--table", f"many={many}/many.parquet"]
        profile = tmp_path / "profile.json"
        r = subprocess.run([binary("keel"), "sql", "--scheduler", cluster.url, *tables, "--format", "json",
                            "--profile", str(profile), GROUPED], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        got = {row["w"]: (row["c"], row["tg"], row["an"]) for row in json.loads(r.stdout)}
        con = duckdb.connect()
        con.execute(f"CREATE VIEW many AS SELECT * FROM read_parquet('{many}/many.parquet')")
        want = {w: (c, tg, an) for w, c, tg, an in con.execute(
            "SELECT w, count(*), count(DISTINCT g), count(DISTINCT name) FROM many GROUP BY w").fetchall()}
        assert got.keys() == want.keys()
        for w, (c, tg, an) in want.items():
            assert got[w][0] == c and got[w][1] == tg and abs(got[w][2] - an) <= 0.02 * an, (w, got[w], want[w])
        stages = json.loads(profile.read_text())["stages"]
        assert len(stages[0]["tasks"]) >= 150
        # Merge levels: each task reads the outputs of at most FAN_IN tasks
        # (at most one row per group of each: 14 groups with NULL).
        merges = [s for s in stages if "HashAggregate(Merge)" in s["operators"]]
        assert merges, [s["operators"] for s in stages]
        for stage in merges:
            assert max(t["input_rows"] for t in stage["tasks"]) <= FAN_IN * len(want), stage
        r = subprocess.run([binary("keel"), "explain", "--scheduler", cluster.url, *tables, GROUPED],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and f"tree reduction of fan-in {FAN_IN}" in r.stdout, r.stdout
    finally:
        cluster.close()
