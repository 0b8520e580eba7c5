"""Literals and the arithmetic around them, against DuckDB: numbers with a
point are DECIMALs of their digits (0.06 is DECIMAL(3, 2)), so sums and
products keep DuckDB's exact digits (compared as text); `1e3` is a DOUBLE;
dates take and give days (`d + 5`, `d - d`). Bad mixtures are refused when
the query is bound, naming the types."""

import subprocess

import pytest

from conftest import binary
from test_differential import compare, duckdb_rows, keel_rows

QUERIES = [
    # DECIMAL literals: exact digits, DuckDB's result types.
    "SELECT 0.06::VARCHAR, (1.5 * 2)::VARCHAR, (0.1 + 0.2)::VARCHAR, 0.1 + 0.2 = 0.3, (0.1 * 3)::VARCHAR, (10.5 % 3)::VARCHAR",
    "SELECT 1.0 / 3, 1e3, 2.5e-3 * 2, -0.75, .5 * 2, 1.::VARCHAR, 12345678901234567890.5::VARCHAR",
    "SELECT sum(n * 1.1)::VARCHAR, sum(k * 0.06)::VARCHAR, sum(n * 0.5 + 0.25)::VARCHAR, sum(x * 1.1) FROM t",
    "SELECT id, (n * 0.5)::VARCHAR, (n + 0.25)::VARCHAR, (n - 1.125)::VARCHAR, (k % 2.5)::VARCHAR, (-0.75 * n)::VARCHAR FROM t WHERE id < 40",
    "SELECT id, x * 0.5, x + 0.25, 1.5 * x, x / 2.5 FROM t WHERE id < 40",
    "SELECT count(*) FROM t WHERE x > 10.5 AND x < 100.25",
    "SELECT count(*) FROM t WHERE n BETWEEN 0.06 - 0.01 AND 10.5 + 0.01",
    "SELECT id FROM t WHERE n IN (1.0, 2.5, 3) AND id < 500",
    "SELECT (CASE WHEN n > 10 THEN 1.5 ELSE 2 END)::VARCHAR AS c, count(*) FROM t GROUP BY c",
    "SELECT coalesce(n * 0.5, 0.25)::VARCHAR FROM t WHERE id < 30",
    "SELECT n, avg(n * 1.5), sum(x * 0.5), sum(n * 0.01)::VARCHAR FROM t GROUP BY n",
    "SELECT round(n * 1.15, 1)::VARCHAR, round(2.345, 2)::VARCHAR, abs(-1.50)::VARCHAR FROM t WHERE id < 30",
    "SELECT greatest(n, 2.5)::VARCHAR, least(x, 0.5), sqrt(2.0), power(n, 0.5) FROM t WHERE id < 30",
    "SELECT 1.5 AS a UNION SELECT 2 UNION SELECT 0.25",
    "SELECT n * 0.1 AS tenth, count(*) FROM t GROUP BY tenth ORDER BY tenth NULLS LAST LIMIT 5",
    # Dates: days in and out.
    "SELECT id, d + 5, 3 + d, d - 7, d - DATE '2024-01-01', d + n, d - n FROM t WHERE id < 50",
    "SELECT count(*) FROM t WHERE d + 30 > DATE '2024-06-01'",
    "SELECT d - 1 AS prev, count(*) FROM t GROUP BY prev",
    "SELECT max(d) - min(d), sum(d - DATE '2024-01-01'), min(d + 365) FROM t",
    "SELECT d + NULL, NULL - d, DATE '2024-02-28' + 1, DATE '2024-03-01' - DATE '2023-03-01' FROM t WHERE id < 3",
]


@pytest.mark.parametrize("query", QUERIES)
def test_literal_matches_duckdb(two_shapes, data, reference, query):
    compare(query, duckdb_rows(reference, query), keel_rows(two_shapes, data, query))


@pytest.mark.parametrize("sql, message", [
    ("SELECT d + 'x' FROM t", "Cannot apply + to DATE and VARCHAR"),
    ("SELECT d + 1.5 FROM t", "Cannot apply + to DATE and DECIMAL(2,1)"),
    ("SELECT 5 - d FROM t", "write the date first"),
    ("SELECT ts - ts FROM t", "the difference of two timestamps is an INTERVAL"),
    ("SELECT ts + 1 FROM t", "Cannot apply + to TIMESTAMP and BIGINT"),
])
def test_bad_date_arithmetic_is_refused(two_shapes, data, sql, message):
    r = subprocess.run(
        [binary("keel"), "sql", "--scheduler", two_shapes.url, "--table", f"t={data}/t", sql],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode != 0, r.stdout
    assert message in r.stderr, r.stderr
