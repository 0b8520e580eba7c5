"""DECIMAL(p, s) read from Parquet stays exact: comparisons, sum, min, max,
arithmetic, grouping, joins, ordering and output, against DuckDB's digits
(sums compared as text, so a double's rounding would show)."""

import json
import subprocess

import duckdb
import pytest

from conftest import binary
from test_differential import compare


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    dir = tmp_path_factory.mktemp("decimal")
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT i::BIGINT AS id,
                         CASE WHEN i % 19 = 0 THEN NULL ELSE ((i % 1000) * 0.01 - 2.5)::DECIMAL(10,2) END AS price,
                         ((i % 37) * 0.1)::DECIMAL(5,1) AS qty,
                         ((i % 7919) * 0.0001)::DECIMAL(6,4) AS rate,
                         0.10::DECIMAL(4,2) AS dime,
                         'g' || (i % 5) AS grp
                  FROM range(200000) r(i))
            TO '{dir}/d' (FORMAT parquet, PER_THREAD_OUTPUT, ROW_GROUP_SIZE 10000)"""
    )
    con.close()
    return dir / "d"


QUERIES = [
    "SELECT grp, sum(price)::VARCHAR, min(price)::VARCHAR, max(price)::VARCHAR, count(price), sum(dime)::VARCHAR FROM d GROUP BY grp",
    "SELECT sum(price * qty)::VARCHAR, sum(price + rate)::VARCHAR, sum(price - 1)::VARCHAR, sum(qty * 3)::VARCHAR FROM d",
    "SELECT avg(price), avg(qty), sum(price) / count(price) FROM d",
    "SELECT id, price, price * qty, price + rate, price % 3, -price, abs(price), floor(rate), ceil(price), round(rate, 2) FROM d WHERE id < 60",
    "SELECT (price * qty)::VARCHAR, (price + rate)::VARCHAR, round(price, 1)::VARCHAR FROM d WHERE id BETWEEN 100 AND 140",
    "SELECT count(*) FROM d WHERE price > 5.5 AND price <= rate * 1000",
    "SELECT count(*) FROM d WHERE price = 1.25 OR qty IN (1.5, 2)",
    "SELECT price, count(*) FROM d WHERE id < 5000 GROUP BY price",
    "SELECT count(*), sum(a.price)::VARCHAR FROM (SELECT * FROM d WHERE id < 3000) a JOIN (SELECT * FROM d WHERE id < 2000) b ON a.price = b.price",
    "SELECT id, price FROM d ORDER BY price DESC NULLS LAST, id LIMIT 10",
    "SELECT CAST('12.345' AS DECIMAL(8,3))::VARCHAR, CAST(2.5 AS DECIMAL(4,1)), CAST(7 AS DECIMAL(5,2))::VARCHAR, CAST(price AS DOUBLE) FROM d WHERE id = 7",
    "SELECT greatest(price, rate), least(price, 0) FROM d WHERE id < 30",
    "SELECT id, price + NULL, NULL * qty, price - NULL FROM d WHERE id < 5",
]


@pytest.fixture(scope="module")
def reference(table):
    con = duckdb.connect()
    con.execute(f"CREATE VIEW d AS SELECT * FROM read_parquet('{table}/*.parquet')")
    yield con
    con.close()


def keel(cluster, table, sql, fmt="json"):
    return subprocess.run(
        [binary("keel"), "sql", "--scheduler", cluster.url, "--table", f"d={table}", "--format", fmt, sql],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("query", QUERIES)
def test_decimal_matches_duckdb(two_shapes, table, reference, query):
    r = keel(two_shapes, table, query)
    assert r.returncode == 0, f"keel failed on {query!r}: {r.stderr}"
    actual = [tuple(row.values()) for row in json.loads(r.stdout)]
    compare(query, reference.execute(query).fetchall(), actual)


def test_sum_types_and_parquet_output(two_shapes, table, reference, tmp_path):
    """sum(DECIMAL(p, s)) is DECIMAL(38, s), written to Parquet as such."""
    out = tmp_path / "sums"
    r = keel(two_shapes, table, f"COPY (SELECT grp, sum(price) AS s, min(qty) AS q FROM d GROUP BY grp) TO '{out}' (FORMAT parquet)")
    assert r.returncode == 0, r.stderr
    types = reference.execute(f"DESCRIBE SELECT s, q FROM read_parquet('{out}/*.parquet')").fetchall()
    assert [t[1] for t in types] == ["DECIMAL(38,2)", "DECIMAL(5,1)"], types
    written = reference.execute(f"SELECT grp, s::VARCHAR FROM read_parquet('{out}/*.parquet') ORDER BY grp").fetchall()
    expected = reference.execute("SELECT grp, sum(price)::VARCHAR FROM d GROUP BY grp ORDER BY grp").fetchall()
    assert written == expected


def test_decimal_overflow_and_bad_types_are_errors(two_shapes, table):
    r = keel(two_shapes, table, "SELECT CAST(price AS DECIMAL(2,2)) FROM d")
    assert r.returncode != 0 and "cannot cast" in r.stderr, r.stderr
    r = keel(two_shapes, table, "SELECT CAST(price AS DECIMAL(40,2)) FROM d")
    assert r.returncode != 0 and "DECIMAL(p, s) needs 1 <= p <= 38" in r.stderr, r.stderr
