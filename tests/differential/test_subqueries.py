"""Subqueries in expressions, correlated or not, against DuckDB: scalar
subqueries, EXISTS, IN, ANY/ALL, in WHERE, the SELECT list and HAVING;
on empty subqueries, NULLs on either side, duplicate outer values, a
correlated count over no rows, and the hot key of `t.k` (60% of rows)."""

import subprocess

import pytest

from conftest import binary
from test_differential import compare, duckdb_rows, keel_rows

QUERIES = [
    # Uncorrelated scalar subqueries.
    "SELECT id, x FROM t WHERE x > (SELECT avg(x) FROM t) AND id < 500",
    "SELECT id, (SELECT max(w) FROM u) AS m, x - (SELECT min(x) FROM t) FROM t WHERE id < 50",
    "SELECT count(*) FROM t WHERE n = (SELECT max(n) FROM t WHERE id < 0)",
    "SELECT id FROM t WHERE id < 20 AND n < (SELECT count(*) FROM u WHERE k > 1000) + 5",
    "SELECT k, count(*) FROM t GROUP BY k HAVING count(*) > (SELECT count(*) / 100 FROM t)",
    "SELECT s, sum(x), (SELECT count(*) FROM u) AS us FROM t GROUP BY s",
    "SELECT id, (SELECT name FROM u WHERE k = 7 AND name LIKE 'u_%') FROM t WHERE id < 5",
    # Correlated scalar subqueries (equality correlation, aggregates: the count bug).
    "SELECT k, name, (SELECT count(*) FROM t WHERE t.k = u.k) AS c FROM u",
    "SELECT k, name, (SELECT sum(n) FROM t WHERE t.k = u.k AND t.flag) AS c FROM u",
    "SELECT k, (SELECT count(*) + 1 FROM t WHERE t.k = u.k) AS c1, (SELECT coalesce(max(n), -1) FROM t WHERE t.k = u.k) AS m FROM u",
    "SELECT id, n FROM t WHERE n > (SELECT avg(n) FROM t t2 WHERE t2.k = t.k) AND id < 2000",
    "SELECT count(*) FROM t WHERE x < (SELECT 0.2 * avg(x) FROM t t2 WHERE t2.k = t.k)",
    "SELECT u.k, (SELECT max(w) FROM u u2 WHERE u2.k = u.k) AS mw FROM u",
    "SELECT id FROM t WHERE id < 3000 AND (SELECT count(*) FROM u WHERE u.k = t.n) = 0",
    # A correlated scalar subquery with one row per key, not an aggregate.
    "SELECT id, n, (SELECT name FROM u WHERE u.k = t.n AND name LIKE 'u_%') AS nm FROM t WHERE id < 400",
    # Non-equality correlation below an aggregate or a LIMIT: against each distinct outer value.
    "SELECT k, (SELECT count(*) FROM t WHERE t.k < u.k) AS below FROM u",
    "SELECT id, x, (SELECT count(*) FROM u WHERE u.w > t.x AND u.k = t.k) AS c FROM t WHERE id < 300",
    "SELECT id, (SELECT max(w) FROM u WHERE u.w < t.x) AS m FROM t WHERE id < 300",
    "SELECT count(*) FROM t WHERE id < 2000 AND x > (SELECT avg(w) FROM u WHERE u.k <> t.k)",
    "SELECT k, (SELECT name FROM u u2 WHERE u2.w > u.w ORDER BY u2.w, u2.name LIMIT 1) AS next FROM u",
    "SELECT k, name, (SELECT count(*) FROM u u2 WHERE u2.name IS NOT DISTINCT FROM coalesce(u.name, 'nokey')) AS c FROM u",
    # The top row per outer row: ORDER BY and LIMIT in a correlated subquery.
    "SELECT k, (SELECT n FROM t WHERE t.k = u.k ORDER BY id DESC LIMIT 1) AS last_n FROM u",
    "SELECT k, (SELECT id FROM t WHERE t.k = u.k AND t.n IS NOT NULL ORDER BY n, id LIMIT 1 OFFSET 2) AS third FROM u",
    "SELECT count(*) FROM u WHERE k IN (SELECT n FROM t WHERE t.k = u.k ORDER BY id LIMIT 3)",
    # EXISTS / NOT EXISTS as conditions (semi and anti joins), correlated.
    "SELECT count(*) FROM t WHERE EXISTS (SELECT * FROM u WHERE u.k = t.n)",
    "SELECT count(*) FROM t WHERE NOT EXISTS (SELECT * FROM u WHERE u.k = t.n)",
    "SELECT k, name FROM u WHERE EXISTS (SELECT 1 FROM t WHERE t.k = u.k AND t.flag)",
    "SELECT k, name FROM u WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.k = u.k)",
    # A non-equality correlation (TPC-H q21's shape).
    "SELECT count(*) FROM t WHERE id < 3000 AND EXISTS (SELECT * FROM t t2 WHERE t2.k = t.k AND t2.id <> t.id AND t2.n = t.n)",
    "SELECT count(*) FROM t WHERE id < 3000 AND NOT EXISTS (SELECT * FROM t t2 WHERE t2.k = t.k AND t2.id < t.id)",
    "SELECT id FROM u, t WHERE u.k = t.id AND EXISTS (SELECT * FROM u u2 WHERE u2.w > u.w AND u2.k = u.k)",
    # Uncorrelated EXISTS holds for every row or none.
    "SELECT count(*) FROM t WHERE EXISTS (SELECT * FROM u WHERE k > 100)",
    "SELECT count(*) FROM t WHERE NOT EXISTS (SELECT * FROM u WHERE k > 1000)",
    # EXISTS and IN as values: under OR, NOT, in the SELECT list.
    "SELECT id, EXISTS (SELECT * FROM u WHERE u.k = t.n) AS e FROM t WHERE id < 300",
    "SELECT count(*) FROM t WHERE n < 3 OR EXISTS (SELECT * FROM u WHERE u.k = t.n AND u.w > 100)",
    "SELECT id, n IN (SELECT k FROM u) AS i, n NOT IN (SELECT k FROM u) AS ni FROM t WHERE id < 300",
    "SELECT id, n IN (SELECT k FROM u WHERE k IS NOT NULL) AS i FROM t WHERE id < 300",
    "SELECT id, n IN (SELECT k FROM u WHERE k > 1000) AS i FROM t WHERE id < 100",
    "SELECT count(*) FROM t WHERE flag OR n IN (SELECT k FROM u WHERE w > 50)",
    # IN / NOT IN conditions, correlated: NULL-aware per key.
    "SELECT count(*) FROM t WHERE n IN (SELECT k FROM u WHERE u.w > t.x)",
    "SELECT count(*) FROM t WHERE id < 2000 AND n IN (SELECT n FROM t t2 WHERE t2.k = t.k AND t2.id > t.id)",
    "SELECT count(*) FROM u WHERE k NOT IN (SELECT n FROM t WHERE t.k = u.k)",
    "SELECT count(*) FROM u WHERE k NOT IN (SELECT n FROM t WHERE t.k = u.k AND n IS NOT NULL)",
    # LATERAL: a FROM item that reads the items before it.
    "SELECT u.k, l.c, l.m FROM u, LATERAL (SELECT count(*) AS c, max(n) AS m FROM t WHERE t.k = u.k) l",
    "SELECT u.k, l.id FROM u, LATERAL (SELECT id FROM t WHERE t.k = u.k ORDER BY id DESC LIMIT 2) l ORDER BY u.k, l.id",
    "SELECT u.k, l.c FROM u LEFT JOIN LATERAL (SELECT count(*) AS c FROM t WHERE t.n = u.k) l ON l.c > 100",
    "SELECT u.k, l.id FROM u CROSS JOIN LATERAL (SELECT id FROM t WHERE t.n = u.k AND t.id < 100) l",
    "SELECT u.k, l.id FROM u LEFT JOIN LATERAL (SELECT id FROM t WHERE t.n = u.k AND t.id < 100) l ON TRUE",
    "SELECT u.k, l.c FROM u JOIN LATERAL (SELECT count(*) AS c FROM t WHERE t.x < u.w) l ON l.c > 10",
    # A subquery in an inner join's ON clause.
    "SELECT count(*) FROM t JOIN u ON t.k = u.k AND t.n IN (SELECT k FROM u u2 WHERE u2.w > 10)",
    "SELECT count(*) FROM t JOIN u ON t.n = u.k AND EXISTS (SELECT * FROM u u2 WHERE u2.k = t.k AND u2.name LIKE 'dup%')",
    # Row values.
    "SELECT count(*) FROM t WHERE (k, n) IN (SELECT k, CAST(w AS INTEGER) FROM u)",
    "SELECT count(*) FROM t WHERE id < 5000 AND (k, s) IN (SELECT k, s FROM t t2 WHERE id % 7 = 0)",
    # ANY / ALL with NULLs and empty sets.
    "SELECT id, n < ANY (SELECT k FROM u) AS a, n > ALL (SELECT k FROM u) AS b FROM t WHERE id < 200",
    "SELECT id, n >= ALL (SELECT k FROM u WHERE k IS NOT NULL AND k < 30) AS b, n = ANY (SELECT k FROM u WHERE k < 10) AS c FROM t WHERE id < 200",
    "SELECT id, n <> ALL (SELECT k FROM u WHERE k < 10) AS d, n = ALL (SELECT 5) AS e, n <> ANY (SELECT k FROM u WHERE k < 3) AS f FROM t WHERE id < 200",
    "SELECT count(*) FROM t WHERE n > ALL (SELECT k FROM u WHERE k > 1000)",
    "SELECT count(*) FROM t WHERE n > ANY (SELECT n FROM t t2 WHERE t2.k = t.k AND t2.flag)",
    # Nested subqueries, a subquery in a CTE, a subquery over a subquery.
    "SELECT count(*) FROM t WHERE n IN (SELECT k FROM u WHERE w > (SELECT avg(w) FROM u))",
    "WITH big AS (SELECT k, count(*) AS c FROM t GROUP BY k) SELECT k FROM big WHERE c > (SELECT avg(c) FROM big)",
    "SELECT k FROM (SELECT k, sum(n) AS s FROM t GROUP BY k) g WHERE s > (SELECT sum(n) / 100 FROM t)",
    "SELECT count(*) FROM u WHERE EXISTS (SELECT * FROM t WHERE t.k = u.k AND t.n IN (SELECT k FROM u u2 WHERE u2.w < 10))",
]


@pytest.mark.parametrize("query", QUERIES)
def test_subquery_matches_duckdb(two_shapes, data, reference, query):
    compare(query, duckdb_rows(reference, query), keel_rows(two_shapes, data, query))


def keel_error(cluster, data, sql):
    r = subprocess.run(
        [binary("keel"), "sql", "--scheduler", cluster.url, "--table", f"t={data}/t",
         "--table", f"u={data}/u.parquet", sql],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode != 0, f"{sql!r} should fail"
    return r.stderr


def test_scalar_subquery_with_several_rows_fails_naming_it(two_shapes, data):
    err = keel_error(two_shapes, data, "SELECT id, (SELECT k FROM u WHERE k < 5) FROM t WHERE id < 3")
    assert "More than one row returned by a subquery" in err and "k < 5" in err, err
    err = keel_error(two_shapes, data, "SELECT k, (SELECT name FROM u u2 WHERE u2.k = u.k) FROM u")
    assert "More than one row returned by a subquery" in err, err
    assert "attempt" not in err.lower() or "retr" not in err.lower(), err


def test_wrong_subqueries_are_bind_errors(two_shapes, data):
    err = keel_error(two_shapes, data, "SELECT (SELECT k, name FROM u LIMIT 1) FROM t")
    assert "must return one column" in err, err
    err = keel_error(two_shapes, data, "SELECT id FROM t WHERE n IN (SELECT k FROM u WHERE u.nope = t.n)")
    assert 'u.nope' in err and "not found" in err, err


def test_unsupported_correlation_is_refused_by_name(two_shapes, data):
    """Shapes decorrelation does not reach are refused before anything runs, naming the construct."""
    # A reference two levels out, under a semi join of the middle query.
    err = keel_error(two_shapes, data, "SELECT k FROM u WHERE EXISTS (SELECT * FROM t WHERE t.k = u.k AND EXISTS (SELECT * FROM u u3 WHERE u3.k = t.n AND u3.name = u.name))")
    assert "not supported" in err and "correlated subquery" in err, err
    # A window over correlated rows.
    err = keel_error(two_shapes, data, "SELECT k, (SELECT max(r) FROM (SELECT row_number() OVER (ORDER BY id) AS r FROM t WHERE t.k = u.k) s) FROM u")
    assert "not supported" in err and "window" in err, err


def test_subqueries_become_joins(data):
    """No subquery runs per row: each is a join in the plan."""
    sql = "SELECT id FROM t WHERE n > (SELECT avg(n) FROM t t2 WHERE t2.k = t.k) AND EXISTS (SELECT * FROM u WHERE u.k = t.n)"
    r = subprocess.run(
        [binary("keel"), "explain", "--workers", "1", "--table", f"t={data}/t",
         "--table", f"u={data}/u.parquet", sql],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    plan = r.stdout
    assert "Semi" in plan or "semi" in plan, plan
    assert plan.lower().count("join") >= 2, plan
