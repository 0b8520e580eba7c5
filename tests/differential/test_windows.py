"""Window functions and QUALIFY against DuckDB, on the default cluster and on
one forced into many tasks (every PARTITION BY a real multi-task shuffle).

Orderings are unique (by id) wherever a function's answer depends on the
order of tied rows; ties are kept where the semantics define the answer
(ranks, the default RANGE frame's peers)."""

import subprocess

import pytest

from conftest import binary
from test_differential import compare, duckdb_rows, keel_rows

QUERIES = [
    "SELECT id, row_number() OVER (PARTITION BY k ORDER BY id) AS rn FROM t",
    "SELECT id, rank() OVER (PARTITION BY k ORDER BY n) AS r, dense_rank() OVER (PARTITION BY k ORDER BY n) AS dr FROM t",
    "SELECT id, rank() OVER (PARTITION BY s ORDER BY d DESC, flag) AS r FROM t",
    "SELECT id, lag(x) OVER (PARTITION BY k ORDER BY id) AS p, lead(x, 2, -1.0) OVER (PARTITION BY k ORDER BY id) AS q FROM t",
    "SELECT id, lag(s, 3, 'none') OVER (PARTITION BY n ORDER BY ts, id) AS p FROM t",
    "SELECT id, sum(n) OVER (PARTITION BY k ORDER BY id) AS running, count(*) OVER (PARTITION BY k) AS c FROM t",
    # The default frame with ORDER BY ends at the row's last peer.
    "SELECT id, sum(x) OVER (PARTITION BY k ORDER BY n) AS s, count(x) OVER (PARTITION BY k ORDER BY n) AS c FROM t",
    "SELECT id, avg(x) OVER (PARTITION BY s ORDER BY id ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) AS a FROM t",
    "SELECT id, min(n) OVER (PARTITION BY s ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS mn, "
    "max(s) OVER (PARTITION BY k ORDER BY id ROWS BETWEEN 3 PRECEDING AND 3 FOLLOWING) AS mx FROM t",
    "SELECT id, sum(n) OVER (PARTITION BY k ORDER BY id ROWS BETWEEN 1 FOLLOWING AND 5 FOLLOWING) AS ahead, "
    "count(*) OVER (PARTITION BY k ORDER BY id ROWS 2 PRECEDING) AS back FROM t",
    "SELECT id, min(ts) OVER (PARTITION BY k ORDER BY d RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS m FROM t",
    "SELECT id, first_value(s) OVER (PARTITION BY k ORDER BY id) AS f, "
    "last_value(id) OVER (PARTITION BY k ORDER BY id ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS l FROM t",
    # Peers again: the running max reaches the last peer; last_value is the last peer's n.
    "SELECT id, max(id) OVER (PARTITION BY k ORDER BY n) AS m, last_value(n) OVER (PARTITION BY k ORDER BY n) AS l FROM t",
    # No PARTITION BY: one ordered partition.
    "SELECT id, row_number() OVER (ORDER BY id DESC) AS rn, sum(x) OVER () AS total FROM t WHERE id < 500",
    "SELECT id, k * 10 + row_number() OVER (PARTITION BY k ORDER BY id) AS e FROM t WHERE id < 2000",
    # QUALIFY by the call and by a SELECT alias.
    # (ordered: the comparison does not sort rows when ORDER BY follows the last FROM)
    "SELECT k, id FROM t QUALIFY row_number() OVER (PARTITION BY k ORDER BY id DESC) <= 2 ORDER BY k, id",
    "SELECT k, id, row_number() OVER (PARTITION BY k ORDER BY id) AS rn FROM t QUALIFY rn = 1 ORDER BY k",
    # Story 3's interval step: a run starts where the state differs from the previous row's.
    "SELECT k, grp, min(id) AS start, max(id) AS stop, count(*) AS c FROM ("
    " SELECT k, id, sum(chg) OVER (PARTITION BY k ORDER BY id) AS grp FROM ("
    "  SELECT k, id, CASE WHEN flag IS DISTINCT FROM lag(flag) OVER (PARTITION BY k ORDER BY id) THEN 1 ELSE 0 END AS chg"
    "  FROM t) a) b GROUP BY k, grp",
    "SELECT id, k FROM t WHERE id < 300 ORDER BY row_number() OVER (PARTITION BY k ORDER BY id DESC), id",
    "SELECT u.name, row_number() OVER (PARTITION BY u.k ORDER BY u.name) AS rn FROM u JOIN t ON u.k = t.k WHERE t.id < 50",
    # A window over a window step's output, partitioned by a superset of its keys: no new exchange.
    "SELECT k, n, id, r, rank() OVER (PARTITION BY k, n ORDER BY id DESC) AS q FROM ("
    " SELECT k, n, id, row_number() OVER (PARTITION BY k ORDER BY id) AS r FROM t) c WHERE id % 3 = 0",
    # ... through a projection that renames and reorders the keys, and one that computes them.
    "SELECT kk, i, r, lag(r) OVER (PARTITION BY kk ORDER BY i) AS pr FROM ("
    " SELECT id AS i, k AS kk, row_number() OVER (PARTITION BY k ORDER BY id) AS r FROM t) c",
    "SELECT k1, id, sum(r) OVER (PARTITION BY k1 ORDER BY id) AS sr FROM ("
    " SELECT id, n % 5 AS k1, row_number() OVER (PARTITION BY n ORDER BY id) AS r FROM t) c",
]

ERRORS = [
    ("SELECT id FROM t WHERE row_number() OVER (ORDER BY id) < 5", "is not allowed here"),
    ("SELECT fancy_rank() OVER (ORDER BY id) FROM t", "window function fancy_rank()"),
    ("SELECT sum(x) OVER (ORDER BY id GROUPS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t", "GROUPS frames"),
    ("SELECT lag(x, k) OVER (ORDER BY id) FROM t", "must be an integer constant"),
]


@pytest.mark.parametrize("sql", QUERIES)
def test_window_query_matches_duckdb(two_shapes, data, reference, sql):
    compare(sql, duckdb_rows(reference, sql), keel_rows(two_shapes, data, sql))


@pytest.mark.parametrize("sql,message", ERRORS)
def test_unsupported_windows_are_named(two_shapes, data, sql, message):
    r = subprocess.run([binary("keel"), "sql", "--scheduler", two_shapes.url, "--table", f"t={data}/t", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and message in r.stderr, r.stderr
