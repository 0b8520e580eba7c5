"""The 22 TPC-H queries (bench/tpch/queries, the TPC's texts with the
validation parameters, as DuckDB's tpch extension ships them) on Keel and on
DuckDB over the same scale-0.01 tables from `keel datagen tpch`, on the
default cluster and on one forced into many tasks and shuffle joins; the
answers must match.

On debug binaries each query takes under a second or two on either shape
(q19's join key sits inside each branch of an OR: the optimizer pulls it
out, or it would be a nested loop over part × lineitem).
"""

import json
import subprocess
from pathlib import Path

import duckdb
import pytest

from conftest import ROOT, binary
from test_differential import compare

QUERIES = ROOT / "bench" / "tpch" / "queries"
TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]

# The queries Keel does not answer yet. Take a number out as its query
# passes: the xfail is strict, so a query that starts passing while listed
# fails the run.
NOT_YET = set()


@pytest.fixture(scope="module")
def tpch(tmp_path_factory):
    dir = tmp_path_factory.mktemp("tpch")
    r = subprocess.run([binary("keel"), "datagen", "tpch", "--scale", "0.01", "--out", str(dir)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return dir


@pytest.fixture(scope="module")
def tpch_duckdb(tpch):
    con = duckdb.connect()
    for t in TABLES:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{tpch / t}/*.parquet')")
    yield con
    con.close()


def duckdb_answer(con, sql):
    """The rows of the query's SELECT; q15 creates and drops a view around it."""
    rows = None
    for stmt in (s.strip() for s in sql.split(";")):
        if not stmt:
            continue
        cur = con.execute(stmt)
        if not stmt.upper().startswith(("CREATE", "DROP")):
            rows = [tuple(r) for r in cur.fetchall()]
    return rows


def keel_answer(cluster, tpch, path: Path):
    tables = [a for t in TABLES for a in ("--table", f"{t}={tpch / t}")]
    r = subprocess.run(
        [binary("keel"), "sql", "--scheduler", cluster.url, *tables, "--format", "json", "--file", str(path)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, f"keel failed on {path.name}: {r.stderr}"
    return [tuple(row.values()) for row in json.loads(r.stdout)]


def query(n):
    marks = [pytest.mark.xfail(strict=True, reason="not answered yet")] if n in NOT_YET else []
    return pytest.param(n, marks=marks, id=f"q{n:02d}")


@pytest.mark.parametrize("n", [query(n) for n in range(1, 23)])
def test_tpch_query_matches_duckdb(two_shapes, tpch, tpch_duckdb, n):
    path = QUERIES / f"q{n:02d}.sql"
    sql = path.read_text()
    expected = duckdb_answer(tpch_duckdb, sql)
    assert expected, f"{path.name} has no rows on DuckDB: the data or the text is wrong"
    compare(sql, expected, keel_answer(two_shapes, tpch, path))
