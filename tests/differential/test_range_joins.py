"""Range joins (equal keys plus a point between two bounds of the other
side) against DuckDB, on the default cluster and on one forced into many
tasks: inclusive and strict bounds, casts, residual predicates, NULL keys
and bounds, overlapping intervals, empty sides and self-joins."""

import pytest

from test_differential import compare, duckdb_rows, keel_rows

QUERIES = [
    "SELECT count(*), sum(t.x) FROM t JOIN u ON t.k = u.k AND t.n BETWEEN u.w - 5 AND u.w + 5",
    "SELECT t.id, u.name FROM t JOIN u ON t.k = u.k AND t.n > u.w AND t.n < u.w + 10 WHERE t.id < 3000",
    "SELECT t.id, u.name FROM t JOIN u ON u.k = t.k AND u.w - 3 <= t.n AND u.w + 3 >= t.n AND t.s <> u.name",
    # Overlapping intervals: every (k, n) group spans most ids of its k.
    "WITH iv AS (SELECT k, n, min(id) AS lo, max(id) AS hi, count(*) AS c FROM t GROUP BY k, n) "
    "SELECT iv.k, count(*) AS pairs, sum(iv.c) AS s FROM iv JOIN t ON iv.k = t.k AND t.id BETWEEN iv.lo AND iv.hi "
    "GROUP BY iv.k",
    # A NULL bound never matches (n is NULL in some groups' bounds via x).
    "WITH iv AS (SELECT k, min(x) AS lo, max(x) AS hi FROM t WHERE id < 5000 GROUP BY k, flag) "
    "SELECT count(*), sum(t.id) FROM t JOIN iv ON t.k = iv.k AND t.x BETWEEN iv.lo AND iv.hi",
    "SELECT count(*) FROM t JOIN (SELECT * FROM u WHERE k < 0) e ON t.k = e.k AND t.n BETWEEN e.w AND e.w + 1",
    "SELECT count(*), sum(b.id - a.id) FROM (SELECT * FROM t WHERE id < 2000) a "
    "JOIN (SELECT * FROM t WHERE id < 2000) b ON a.k = b.k AND b.id > a.id AND b.id <= a.id + 3",
    "SELECT a.id, count(*) AS c FROM t a JOIN t b ON a.s = b.s AND b.ts BETWEEN a.ts AND a.ts "
    "WHERE a.id < 300 AND b.id < 3000 GROUP BY a.id",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_range_join_matches_duckdb(two_shapes, data, reference, sql):
    compare(sql, duckdb_rows(reference, sql), keel_rows(two_shapes, data, sql))
