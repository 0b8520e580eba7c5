"""ntile, percent_rank, cume_dist and nth_value; RANGE frames with offsets over
numbers, dates and timestamps; window functions over an aggregated SELECT.
Against DuckDB, on the default cluster and on one forced into many tasks.

Where an answer depends on the order of tied rows (ntile, nth_value of
another column) the ORDER BY is unique; elsewhere ties and NULL order keys
are kept on purpose (percent_rank, cume_dist and RANGE frames treat peers,
NULLs among them, as one)."""

import subprocess

import pytest

from conftest import binary
from test_differential import compare, duckdb_rows, keel_rows

RANKING = [
    "SELECT id, ntile(4) OVER (PARTITION BY k ORDER BY id) AS q, ntile(1000) OVER (PARTITION BY k ORDER BY n, id) AS big FROM t",
    "SELECT id, ntile(7) OVER (ORDER BY id DESC) AS q FROM t WHERE id < 1000",
    # A bucket count per row; a NULL count gives NULL.
    "SELECT id, ntile(CASE WHEN id % 7 = 0 THEN NULL ELSE id % 5 + 1 END) OVER (PARTITION BY k ORDER BY id) AS q FROM t WHERE id < 3000",
    # Ties and NULL order keys: peers share their rank and their cumulative share.
    "SELECT id, percent_rank() OVER (PARTITION BY k ORDER BY n) AS pr, "
    "cume_dist() OVER (PARTITION BY k ORDER BY n DESC NULLS FIRST) AS cd FROM t",
    "SELECT id, percent_rank() OVER (PARTITION BY s ORDER BY flag, d) AS pr, cume_dist() OVER (ORDER BY x) AS cd FROM t",
    # Without ORDER BY every row is a peer of every other.
    "SELECT id, percent_rank() OVER (PARTITION BY k) AS pr, cume_dist() OVER (PARTITION BY k) AS cd FROM t WHERE id < 2000",
    # Partitions of one row.
    "SELECT id, ntile(3) OVER (PARTITION BY id) AS q, percent_rank() OVER (PARTITION BY id ORDER BY n) AS pr, "
    "cume_dist() OVER (PARTITION BY id) AS cd, nth_value(x, 2) OVER (PARTITION BY id) AS nv, "
    "nth_value(x, 1) OVER (PARTITION BY id ORDER BY n) AS first FROM t WHERE id < 3000",
    # nth_value over the default frame (up to the last peer), sliding ROWS
    # frames, and positions past the frame's end.
    "SELECT id, nth_value(id, 3) OVER (PARTITION BY k ORDER BY id) AS a, "
    "nth_value(s, 2) OVER (PARTITION BY k ORDER BY id ROWS BETWEEN 1 PRECEDING AND 3 FOLLOWING) AS b, "
    "nth_value(x, 500) OVER (PARTITION BY k ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS c FROM t",
    "SELECT id, nth_value(n, 2) OVER (PARTITION BY k ORDER BY n) AS a, "
    "nth_value(d, 4) OVER (PARTITION BY k ORDER BY id ROWS BETWEEN 2 FOLLOWING AND 4 FOLLOWING) AS e FROM t",
]

RANGE = [
    "SELECT id, sum(x) OVER (PARTITION BY k ORDER BY n RANGE BETWEEN 2 PRECEDING AND 2 FOLLOWING) AS s, "
    "count(x) OVER (PARTITION BY k ORDER BY n RANGE BETWEEN 3 PRECEDING AND CURRENT ROW) AS c FROM t",
    # DESC: preceding keys are the larger ones. Frames before the first key are empty.
    "SELECT id, min(id) OVER (PARTITION BY k ORDER BY n DESC RANGE BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS mn, "
    "max(s) OVER (PARTITION BY k ORDER BY n NULLS FIRST RANGE BETWEEN UNBOUNDED PRECEDING AND 5 PRECEDING) AS mx, "
    "count(*) OVER (PARTITION BY k ORDER BY n DESC NULLS LAST RANGE BETWEEN 3 FOLLOWING AND UNBOUNDED FOLLOWING) AS c FROM t",
    # A DOUBLE key with NULLs, and fractional offsets.
    "SELECT id, avg(n) OVER (PARTITION BY k ORDER BY x RANGE BETWEEN 10.5 PRECEDING AND 0.5 FOLLOWING) AS a, "
    "first_value(x) OVER (PARTITION BY k ORDER BY x RANGE BETWEEN 1.5 PRECEDING AND CURRENT ROW) AS f FROM t",
    # Frames wholly ahead of or behind the row, often empty.
    "SELECT id, sum(n) OVER (PARTITION BY k ORDER BY id RANGE BETWEEN 5 FOLLOWING AND 20 FOLLOWING) AS ahead, "
    "count(*) OVER (ORDER BY id RANGE BETWEEN 10 PRECEDING AND 1 PRECEDING) AS back, "
    "last_value(id) OVER (PARTITION BY k ORDER BY id RANGE BETWEEN 30 PRECEDING AND 30 FOLLOWING) AS l, "
    "nth_value(id, 2) OVER (PARTITION BY k ORDER BY id RANGE BETWEEN 50 PRECEDING AND CURRENT ROW) AS second FROM t WHERE id < 3000",
    # Dates: INTERVALs (months by the calendar) or a number of days.
    "SELECT id, count(*) OVER (PARTITION BY k ORDER BY d RANGE BETWEEN INTERVAL 3 DAY PRECEDING AND CURRENT ROW) AS c, "
    "sum(n) OVER (PARTITION BY k ORDER BY d RANGE BETWEEN INTERVAL 1 MONTH PRECEDING AND INTERVAL 1 WEEK FOLLOWING) AS s, "
    "max(id) OVER (PARTITION BY k ORDER BY d DESC RANGE BETWEEN 2 PRECEDING AND 2 FOLLOWING) AS m FROM t",
    # Timestamps.
    "SELECT id, min(x) OVER (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL 90 MINUTES PRECEDING AND INTERVAL '30 minutes' FOLLOWING) AS m, "
    "first_value(ts) OVER (PARTITION BY k ORDER BY ts DESC RANGE BETWEEN INTERVAL 2 HOUR PRECEDING AND CURRENT ROW) AS f, "
    "last_value(ts) OVER (PARTITION BY k ORDER BY ts RANGE BETWEEN CURRENT ROW AND INTERVAL 1 HOUR FOLLOWING) AS l FROM t",
    # Partitions of one row, and a NULL key's frame: its peers.
    "SELECT id, sum(x) OVER (PARTITION BY id ORDER BY n RANGE BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS one, "
    "count(*) OVER (PARTITION BY id % 7 ORDER BY n RANGE BETWEEN 1 FOLLOWING AND 2 FOLLOWING) AS ahead FROM t WHERE id < 2000",
]

AGGREGATED = [
    "SELECT k, sum(n) AS s, rank() OVER (ORDER BY sum(n) DESC) AS r FROM t GROUP BY k",
    # Keys and arguments that are group keys, expressions of them, or aggregates.
    "SELECT k % 5 AS g, k, count(*) AS c, row_number() OVER (PARTITION BY k % 5 ORDER BY count(*) DESC, k) AS rn, "
    "sum(count(*)) OVER (PARTITION BY k % 5) AS total FROM t GROUP BY k",
    "SELECT k, flag, count(*) AS c, first_value(flag) OVER (PARTITION BY k ORDER BY count(*) DESC, flag) AS f, "
    "lag(k) OVER (PARTITION BY flag ORDER BY k) AS prev_k FROM t GROUP BY k, flag",
    # QUALIFY by the call and by a SELECT alias.
    "SELECT s, count(*) AS c FROM t GROUP BY s QUALIFY rank() OVER (ORDER BY count(*) DESC) <= 3 ORDER BY c DESC, s",
    "SELECT k, max(x) AS m, dense_rank() OVER (ORDER BY max(x)) AS dr FROM t GROUP BY k QUALIFY dr <= 5 ORDER BY dr, k",
    # ORDER BY a window over aggregates.
    "SELECT k, avg(x) AS a FROM t GROUP BY k ORDER BY row_number() OVER (ORDER BY avg(x) DESC, k) LIMIT 10",
    # A RANGE frame over the groups: a moving weekly count.
    "SELECT d, count(*) AS c, sum(count(*)) OVER (ORDER BY d RANGE BETWEEN INTERVAL 6 DAY PRECEDING AND CURRENT ROW) AS week FROM t GROUP BY d",
    # No GROUP BY: one group.
    "SELECT sum(x) AS s, rank() OVER (ORDER BY sum(x)) AS r, count(*) OVER () AS c FROM t",
    # HAVING filters the groups before the window sees them.
    "SELECT n, count(*) AS c, lag(count(*)) OVER (ORDER BY n) AS prev FROM t GROUP BY n HAVING count(*) > 300",
    "SELECT k, sum(n) AS s, ntile(4) OVER (ORDER BY sum(n), k) AS q, percent_rank() OVER (ORDER BY sum(n)) AS pr, "
    "cume_dist() OVER (ORDER BY k) AS cd FROM t GROUP BY k",
    # Grouping sets: the window sees every set's rows.
    "SELECT k, flag, count(*) AS c, rank() OVER (PARTITION BY k ORDER BY count(*), flag) AS r FROM t WHERE k < 5 GROUP BY ROLLUP (k, flag)",
    "SELECT DISTINCT k % 3 AS g, max(sum(n)) OVER (PARTITION BY k % 3) AS top FROM t GROUP BY k",
]

ERRORS = [
    ("SELECT ntile(0) OVER (ORDER BY id) FROM t", "ntile() needs a positive number of buckets"),
    ("SELECT sum(x) OVER (ORDER BY id RANGE BETWEEN -1 PRECEDING AND CURRENT ROW) FROM t", "must not be negative"),
    ("SELECT sum(x) OVER (ORDER BY d RANGE BETWEEN INTERVAL '-2 days' PRECEDING AND CURRENT ROW) FROM t", "must not be negative"),
    ("SELECT sum(x) OVER (ORDER BY k, id RANGE BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t", "needs exactly one ORDER BY key, got 2"),
    ("SELECT count(*) OVER (ORDER BY id RANGE BETWEEN INTERVAL 1 DAY PRECEDING AND CURRENT ROW) FROM t", "needs a number as its offset"),
    ("SELECT count(*) OVER (ORDER BY ts RANGE BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t", "needs an INTERVAL as its offset"),
    ("SELECT count(*) OVER (ORDER BY s RANGE BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t", "needs an integer, DOUBLE, DATE or TIMESTAMP ORDER BY key"),
    ("SELECT count(*) OVER (ORDER BY id RANGE BETWEEN n PRECEDING AND CURRENT ROW) FROM t", "must be a constant number or INTERVAL"),
    ("SELECT nth_value(x, 1.5) OVER (ORDER BY id) FROM t", "the position of nth_value() must be an integer"),
    ("SELECT k, count(*) FROM t GROUP BY k HAVING rank() OVER (ORDER BY k) = 1", "not allowed in HAVING"),
    ("SELECT k, rank() OVER (ORDER BY id) FROM t GROUP BY k", "must appear in the GROUP BY clause"),
]


@pytest.mark.parametrize("sql", RANKING + RANGE + AGGREGATED)
def test_window_query_matches_duckdb(two_shapes, data, reference, sql):
    compare(sql, duckdb_rows(reference, sql), keel_rows(two_shapes, data, sql))


@pytest.mark.parametrize("sql,message", ERRORS)
def test_bad_windows_are_named(two_shapes, data, sql, message):
    r = subprocess.run([binary("keel"), "sql", "--scheduler", two_shapes.url, "--table", f"t={data}/t", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and message in r.stderr, r.stderr
