"""ASOF joins in DuckDB's syntax against DuckDB, on the default cluster and
on one forced into many tasks: backward and forward, strict and not, the
condition written either way round, LEFT, by-keys of two columns, none at
all, NULL keys and times, an empty right side, filters above the join; the
`nearest` extension against Polars' `join_asof(strategy="nearest")`; and
the errors for what an ASOF join's ON clause may not hold."""

import subprocess

import duckdb
import pytest

from conftest import binary
from test_differential import compare, duckdb_rows, keel_rows


@pytest.fixture(scope="module")
def ticks(tmp_path_factory):
    """Quotes (right side: unique times, so every match is one row) and
    trades (left side: times that tie with quotes now and then), with NULL
    keys and times, symbols only one side has, and a hot symbol."""
    dir = tmp_path_factory.mktemp("asof")
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (SELECT i AS qid,
                CASE WHEN i % 101 = 0 THEN NULL WHEN i % 4 = 0 THEN 0 ELSE i % 40 END::BIGINT AS sym,
                (i % 2)::BIGINT AS venue,
                CASE WHEN i % 89 = 0 THEN NULL ELSE TIMESTAMP '2024-01-01' + to_seconds(i * 10) END AS ts,
                i * 10 AS sec,
                (i * 0.25)::DOUBLE AS price
              FROM range(3000) r(i))
        TO '{dir}/quotes.parquet' (FORMAT parquet, ROW_GROUP_SIZE 500)
        """
    )
    con.execute(
        f"""
        COPY (SELECT i AS tid,
                CASE WHEN i % 97 = 0 THEN NULL WHEN i % 3 = 0 THEN 0 ELSE i % 45 END::BIGINT AS sym,
                (i % 2)::BIGINT AS venue,
                CASE WHEN i % 83 = 0 THEN NULL ELSE TIMESTAMP '2024-01-01' + to_seconds(i * 7 + 3) END AS ts,
                i * 7 + 3 AS sec,
                (i % 9)::BIGINT AS qty
              FROM range(4000) r(i))
        TO '{dir}/trades.parquet' (FORMAT parquet, ROW_GROUP_SIZE 500)
        """
    )
    con.close()
    return dir


def queries(d):
    tr, q = f"read_parquet('{d}/trades.parquet')", f"read_parquet('{d}/quotes.parquet')"
    return [
        f"SELECT tr.tid, q.qid, q.price FROM {tr} tr ASOF JOIN {q} q ON tr.sym = q.sym AND tr.ts >= q.ts",
        f"SELECT tr.tid, q.qid FROM {tr} tr ASOF JOIN {q} q ON tr.sym = q.sym AND tr.ts > q.ts",
        f"SELECT tr.tid, q.qid FROM {tr} tr ASOF JOIN {q} q ON tr.sym = q.sym AND tr.ts <= q.ts",
        f"SELECT tr.tid, q.qid FROM {tr} tr ASOF JOIN {q} q ON tr.sym = q.sym AND tr.ts < q.ts",
        # The condition written the other way round, keys too.
        f"SELECT tr.tid, q.qid FROM {tr} tr ASOF JOIN {q} q ON q.sym = tr.sym AND q.ts <= tr.ts",
        f"SELECT tr.tid, q.qid, q.ts FROM {tr} tr ASOF LEFT JOIN {q} q ON tr.sym = q.sym AND tr.ts >= q.ts",
        f"SELECT tr.tid, q.qid FROM {tr} tr ASOF LEFT OUTER JOIN {q} q ON tr.sym = q.sym AND tr.sec < q.sec",
        f"SELECT tr.tid, q.qid FROM {tr} tr ASOF JOIN {q} q ON tr.sym = q.sym AND tr.venue = q.venue AND tr.ts >= q.ts",
        # No by-keys: the nearest earlier quote of any symbol.
        f"SELECT tr.tid, q.qid FROM {tr} tr ASOF JOIN {q} q ON tr.ts >= q.ts",
        # WHERE on the right side filters after matching; on the left, before.
        f"SELECT tr.sym, count(*) AS n, sum(q.price) AS p FROM {tr} tr ASOF JOIN {q} q "
        f"ON tr.sym = q.sym AND tr.ts >= q.ts WHERE q.price > 300 AND tr.qty < 5 GROUP BY tr.sym",
        f"SELECT tr.tid, q.qid FROM {tr} tr ASOF LEFT JOIN (SELECT * FROM {q} WHERE sym < 0) q "
        f"ON tr.sym = q.sym AND tr.ts >= q.ts WHERE tr.tid < 500",
        # A cast on one side, a derived right side and an aggregate above.
        f"WITH last AS (SELECT sym, max(sec) AS sec FROM {q} GROUP BY sym) "
        f"SELECT tr.tid, l.sec FROM {tr} tr ASOF JOIN last l ON tr.sym = l.sym AND CAST(tr.sec AS INTEGER) >= l.sec",
        f"SELECT count(*), sum(tr.sec - q.sec) FROM {tr} tr ASOF JOIN {q} q ON tr.sym = q.sym AND tr.sec >= q.sec",
    ]


def test_asof_matches_duckdb(two_shapes, data, ticks):
    con = duckdb.connect()
    for sql in queries(ticks):
        compare(sql, duckdb_rows(con, sql), keel_rows(two_shapes, data, sql))


def test_nearest_matches_polars(two_shapes, data, ticks):
    """`nearest(a.t, b.t)` picks the closest right time either way, the later
    one when two are equally far, like Polars' strategy="nearest"."""
    pl = pytest.importorskip("polars")
    trades = pl.read_parquet(ticks / "trades.parquet").drop_nulls(["sym", "sec"]).sort("sec")
    quotes = pl.read_parquet(ticks / "quotes.parquet").drop_nulls(["sym", "sec"]).sort("sec")
    # Equally far ties: trades at sec 5 + 10j sit halfway between quotes.
    expected = (
        trades.join_asof(quotes, on="sec", by="sym", strategy="nearest", check_sortedness=False)
        .select("tid", "qid")
        .rows()
    )
    sql = (
        f"SELECT tr.tid, q.qid FROM read_parquet('{ticks}/trades.parquet') tr "
        f"ASOF LEFT JOIN read_parquet('{ticks}/quotes.parquet') q ON tr.sym = q.sym AND nearest(tr.sec, q.sec) "
        f"WHERE tr.sym IS NOT NULL"
    )
    compare(sql, expected, keel_rows(two_shapes, data, sql))
    assert any(r[1] is not None for r in expected)


@pytest.mark.parametrize(
    "on, message",
    [
        ("ASOF JOIN q USING (sym, sec)", "ASOF JOIN … USING"),
        ("ASOF JOIN q ON tr.sym = q.sym OR tr.sec >= q.sec", "ASOF JOIN's ON clause"),
        ("ASOF JOIN q ON tr.sym = q.sym AND tr.sec >= q.sec AND tr.sec < q.sec + 5", "ASOF JOIN's ON clause"),
        ("ASOF JOIN q ON tr.sym = q.sym", "no time condition"),
        ("ASOF JOIN q ON tr.sym = q.sym AND nearest(tr.sym::VARCHAR, q.sym::VARCHAR)", "nearest() measures distances"),
        ("ASOF JOIN q ON tr.sym = q.sym AND tr.sec >= tr.qty", "compares a column of each side"),
        ("ASOF RIGHT JOIN q ON tr.sym = q.sym AND tr.sec >= q.sec", "ASOF JOIN and ASOF LEFT JOIN"),
        ("ASOF JOIN q WHERE tr.sec > 0", "needs an ON clause"),
        ("JOIN q ON tr.sym = q.sym AND nearest(tr.sec, q.sec)", "belongs in its ON clause"),
    ],
)
def test_asof_errors(ticks, on, message):
    sql = (
        f"WITH tr AS (SELECT * FROM read_parquet('{ticks}/trades.parquet')), "
        f"q AS (SELECT * FROM read_parquet('{ticks}/quotes.parquet')) SELECT count(*) FROM tr {on}"
    )
    r = subprocess.run([binary("keel"), "explain", sql], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, f"{sql} was accepted"
    assert message in r.stderr, r.stderr
