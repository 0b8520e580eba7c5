"""Set operations against DuckDB: UNION, INTERSECT and EXCEPT, with and
without ALL, NULLs equal to NULLs, duplicates, empty sides, SQL's
precedence (INTERSECT binds tighter) and UNION BY NAME; on the default
shape and on one forced into many tasks and shuffles."""

import subprocess

import pytest

from conftest import binary
from test_differential import compare, duckdb_rows, keel_rows

QUERIES = [
    # Sets: NULL keys (u has a NULL k; t's s and n have NULLs) are equal.
    "SELECT k FROM t INTERSECT SELECT k FROM u",
    "SELECT k FROM u EXCEPT SELECT k FROM t",
    "SELECT s, n FROM t WHERE id < 3000 INTERSECT SELECT s, n FROM t WHERE id >= 1500",
    "SELECT s, n FROM t WHERE id < 3000 EXCEPT SELECT s, n FROM t WHERE id >= 1500 AND id < 6000",
    "SELECT n FROM t EXCEPT DISTINCT SELECT k FROM u WHERE k < 30",
    "SELECT NULL::INTEGER AS a INTERSECT SELECT NULL",
    "SELECT s IS NULL, flag FROM t INTERSECT SELECT flag, flag FROM t",
    # Bags: min(l, r) and max(l - r, 0) copies, NULL rows among them.
    "SELECT k FROM u INTERSECT ALL SELECT k FROM t WHERE id < 500",
    "SELECT k FROM t WHERE id < 500 INTERSECT ALL SELECT k FROM u",
    "SELECT k FROM t WHERE id < 500 EXCEPT ALL SELECT k FROM u",
    "SELECT k FROM u EXCEPT ALL SELECT k FROM t WHERE id < 100",
    "SELECT s FROM t WHERE id < 400 INTERSECT ALL SELECT s FROM t WHERE id < 400 AND id % 2 = 0",
    "SELECT s FROM t WHERE id < 400 EXCEPT ALL SELECT s FROM t WHERE id < 400 AND id % 3 = 0",
    "SELECT n, s IS NULL FROM t WHERE id < 2000 EXCEPT ALL SELECT n, s IS NULL FROM t WHERE id % 3 = 0",
    "SELECT count(*), sum(k), count(k) FROM (SELECT k FROM t EXCEPT ALL SELECT k FROM u) q",
    # Empty sides.
    "SELECT k FROM u INTERSECT SELECT k FROM t WHERE id < 0",
    "SELECT k FROM u EXCEPT SELECT k FROM t WHERE id < 0",
    "SELECT k FROM t WHERE id < 0 EXCEPT ALL SELECT k FROM u",
    "SELECT k FROM u INTERSECT ALL SELECT k FROM t WHERE id < 0",
    # Precedence: INTERSECT before UNION and EXCEPT, which go left to right.
    "SELECT k FROM u UNION SELECT n FROM t INTERSECT SELECT k FROM u WHERE k > 100",
    "SELECT k FROM u EXCEPT SELECT k FROM u WHERE k < 10 INTERSECT SELECT k FROM u WHERE k > 5",
    "SELECT k FROM u UNION ALL SELECT k FROM u EXCEPT ALL SELECT k FROM u WHERE k < 50",
    "(SELECT k FROM u EXCEPT SELECT k FROM u WHERE k < 10) INTERSECT SELECT k FROM u WHERE k > 5",
    "SELECT k FROM u EXCEPT (SELECT k FROM u WHERE k < 10 UNION SELECT k FROM u WHERE k > 100)",
    # Types conform as for UNION; ORDER BY and LIMIT over the result.
    "SELECT x FROM t WHERE id < 3000 INTERSECT SELECT w FROM u",
    "SELECT d FROM t WHERE id < 100 INTERSECT SELECT ts FROM t",
    "SELECT n FROM t INTERSECT SELECT k FROM u ORDER BY n NULLS FIRST LIMIT 5",
    "SELECT k, name FROM u EXCEPT SELECT k, 'u_' || k FROM u ORDER BY 2 DESC LIMIT 7",
    "WITH a AS (SELECT k, s FROM t WHERE id < 300) SELECT * FROM a INTERSECT ALL SELECT * FROM a WHERE k = 1",
    "SELECT k, count(*) FROM (SELECT k FROM u INTERSECT ALL SELECT k FROM t) q GROUP BY k",
    # UNION BY NAME: columns matched by name (case aside), missing ones NULL.
    "SELECT k, name FROM u UNION ALL BY NAME SELECT s AS name, id AS K FROM t WHERE id < 10",
    "SELECT k FROM u UNION BY NAME SELECT n AS x FROM t",
    "SELECT k, w FROM u UNION BY NAME SELECT n AS w, k FROM t",
    "SELECT s, n FROM t UNION ALL BY NAME SELECT name AS s FROM u",
    "SELECT 1 AS a UNION BY NAME SELECT 2 AS b UNION BY NAME SELECT 3 AS a, 4 AS c",
]


@pytest.mark.parametrize("query", QUERIES)
def test_set_operation_matches_duckdb(two_shapes, data, reference, query):
    sql = query.replace("{data}", str(data))
    compare(sql, duckdb_rows(reference, sql), keel_rows(two_shapes, data, sql))


@pytest.mark.parametrize("sql, message", [
    ("SELECT k FROM u INTERSECT SELECT k, name FROM u", "INTERSECT inputs have 1 and 2 columns"),
    ("SELECT k FROM u EXCEPT ALL SELECT k, name FROM u", "EXCEPT inputs have 1 and 2 columns"),
    ("SELECT name FROM u INTERSECT SELECT k FROM u", "INTERSECT column name is VARCHAR on one side and BIGINT on the other"),
    ("SELECT k FROM u EXCEPT BY NAME SELECT k FROM u", "BY NAME is for UNION"),
])
def test_bad_set_operations_are_refused(two_shapes, data, sql, message):
    r = subprocess.run(
        [binary("keel"), "sql", "--scheduler", two_shapes.url, "--table", f"u={data}/u.parquet", sql],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode != 0, r.stdout
    assert message in r.stderr, r.stderr
