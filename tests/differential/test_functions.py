"""Scalar functions against DuckDB, family by family, on values chosen to
hit the edges: NULLs, empty strings, non-ASCII text, negative numbers,
leap days, month and year ends, instants before 1970. Then the errors: a
misspelt part or a wrongly typed argument is refused when the query is
bound, a division by zero fails the job after one attempt."""

import json
import subprocess

import duckdb
import pytest

from conftest import Cluster, binary
from test_differential import compare

ROWS = """
    (1, 'hello', 'l', -3, 2.5, DATE '2024-02-29', TIMESTAMP '2024-02-29 13:45:01.5'),
    (2, '', '', 0, -2.5, DATE '2024-12-31', TIMESTAMP '2024-12-31 23:59:59'),
    (3, 'héllo wörld', 'ö', 7, 0.0, DATE '2023-01-31', TIMESTAMP '2023-01-31 00:00:00'),
    (4, NULL, NULL, NULL, NULL, NULL, NULL),
    (5, '  padded  ', ' ', -1, 100.25, DATE '2000-03-01', TIMESTAMP '1999-12-31 23:59:59.999'),
    (6, 'a,b,,c', ',', 2, -0.4, DATE '1969-12-31', TIMESTAMP '1969-12-31 12:00:00'),
    (7, 'ÄÖÜ straße 日本語', 'ß', 3, 1e10, DATE '2024-01-01', TIMESTAMP '2024-01-07 10:30:00'),
    (8, 'abc123def45', '[0-9]+', 12, 1.5, DATE '2024-03-31', TIMESTAMP '2024-03-31 02:30:00')
"""

QUERIES = [
    # text
    "SELECT id, s || '!', s || p, concat(s, NULL, n), concat_ws('-', s, p, NULL), concat_ws(NULL, s) FROM f",
    "SELECT id, substr(s, 2, 3), substr(s, -3), substr(s, 0, 2), substring(s, n), substring(s FROM 2 FOR 3), substr(s, 3, -2) FROM f",
    "SELECT id, left(s, 2), right(s, 2), left(s, n), right(s, -1), left(s, -2) FROM f",
    "SELECT id, replace(s, 'l', 'L'), replace(s, '', 'x'), replace(s, p, '#') FROM f",
    "SELECT id, trim(s), ltrim(s), rtrim(s), trim(s, ' a'), TRIM(BOTH 'd ' FROM s), TRIM(LEADING ' ' FROM s) FROM f",
    "SELECT id, lpad(s, 8, '*'), rpad(s, 3, 'xy'), lpad(s, 0, '-'), rpad(s, 14, 'é') FROM f",
    "SELECT id, split_part(s, ',', 1), split_part(s, ',', 3), split_part(s, ',', -1), split_part(s, ',', 9), split_part(s, p, 2) FROM f",
    "SELECT id, starts_with(s, 'he'), ends_with(s, p), contains(s, p), strpos(s, p), strpos(s, 'zz'), position('l' IN s) FROM f",
    "SELECT id, reverse(s), repeat(s, 2), repeat(p, n), upper(s), lower(s), length(s) FROM f",
    "SELECT id, regexp_matches(s, 'L+', 'i'), regexp_matches(s, p), regexp_replace(s, '[aeiou]', '_'), regexp_replace(s, '[aeiou]', '_', 'g') FROM f",
    "SELECT id, regexp_extract(s, '([a-z]+)o', 1), regexp_extract(s, '[0-9]+'), regexp_replace(s, '(\\w)(\\w)', '\\2\\1', 'g') FROM f",
    "SELECT id, md5(s), md5('') FROM f",
    # numbers
    "SELECT id, floor(x), ceil(x), floor(n), ceiling(x), round(x), round(x, 1) FROM f",
    "SELECT id, sqrt(abs(x)), cbrt(x), exp(n), power(x, 2), pow(2, n), sign(x), sign(n) FROM f",
    "SELECT id, ln(abs(x) + 1), log10(abs(x) + 1), log2(abs(x) + 1), pi() FROM f",
    "SELECT id, greatest(n, 1, x), least(n, 1), greatest(s, p), least(d, DATE '2024-01-01'), greatest(NULL, n) FROM f",
    # dates and times
    "SELECT id, date_trunc('month', d), date_trunc('year', ts), date_trunc('quarter', ts), date_trunc('week', d), date_trunc('hour', ts), date_trunc('minute', ts), date_trunc('day', ts) FROM f",
    "SELECT id, extract(year FROM d), extract(month FROM ts), extract(week FROM d), extract(dow FROM d), extract(doy FROM d), extract(quarter FROM ts), extract(day FROM ts) FROM f",
    "SELECT id, date_part('hour', ts), date_part('minute', ts), date_part('second', ts), date_part('epoch', ts), date_part('isodow', d), extract(epoch FROM d), date_part('millisecond', ts) FROM f",
    "SELECT id, strftime(ts, '%Y/%m/%d %H:%M:%S'), strftime(d, '%d.%m.%Y %j %a %b') FROM f",
    "SELECT id, strptime('2024-02-29 13:45', '%Y-%m-%d %H:%M'), strptime(strftime(d, '%Y%m%d'), '%Y%m%d') FROM f",
    "SELECT id, make_date(2024, 2, 29), make_date(2000 + n, 1, 31) FROM f",
    "SELECT id, epoch_ms(ts), epoch_us(ts), epoch_ms(1700000000123), to_timestamp(1700000000.5)::TIMESTAMP FROM f",
    "SELECT id, date_diff('month', d, DATE '2024-06-15'), date_diff('day', d, ts), date_diff('year', ts, d), date_diff('hour', ts, TIMESTAMP '2024-03-01 00:00:00'), datediff('week', d, DATE '2025-01-01') FROM f",
    "SELECT id, d + INTERVAL 1 MONTH, ts - INTERVAL '90 minutes', d + INTERVAL 3 DAY, INTERVAL 1 YEAR + ts, ts + INTERVAL '1 year 2 months' FROM f",
    "SELECT id FROM f WHERE ts >= TIMESTAMP '2024-02-29 00:00:00' - INTERVAL 2 DAY",
    # conditionals and casts
    "SELECT id, nullif(n, 0), ifnull(s, 'none'), if(n > 0, 'pos', 'nonpos'), TRY_CAST(s AS INTEGER), TRY_CAST(p AS DATE) FROM f",
    "SELECT id, n::VARCHAR, '12'::INTEGER, CAST('2024-01-05' AS DATE), CAST('2024-01-05 10:00:00' AS TIMESTAMP), TRY_CAST('3.5' AS DOUBLE) FROM f",
    # functions under aggregates and aggregates under functions
    "SELECT date_trunc('month', d) AS m, count(*), max(length(s)) FROM f GROUP BY m",
    "SELECT extract(year FROM max(d)), upper(min(s)) FROM f",
]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    dir = tmp_path_factory.mktemp("functions")
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT id::BIGINT AS id, s, p, n::INTEGER AS n, x::DOUBLE AS x, d, ts
                  FROM (VALUES {ROWS}) v(id, s, p, n, x, d, ts))
            TO '{dir}/f.parquet' (FORMAT parquet)"""
    )
    con.close()
    return dir / "f.parquet"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(workers=2)
    yield c
    c.close()


@pytest.fixture(scope="module")
def reference(table):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW f AS SELECT * FROM read_parquet('{table}')")
    yield con
    con.close()


def keel(cluster, table, sql):
    return subprocess.run(
        [binary("keel"), "sql", "--scheduler", cluster.url, "--table", f"f={table}", "--format", "json", sql],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("query", QUERIES)
def test_function_matches_duckdb(cluster, table, reference, query):
    r = keel(cluster, table, query)
    assert r.returncode == 0, f"keel failed on {query!r}: {r.stderr}"
    actual = [tuple(row.values()) for row in json.loads(r.stdout)]
    expected = [tuple(row) for row in reference.execute(query).fetchall()]
    compare(query, expected, actual)


def test_hash_is_stable_and_total(cluster, table):
    r = keel(cluster, table, "SELECT id, hash(s) = hash(s || ''), hash(n), hash(NULL::VARCHAR) FROM f ORDER BY id")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert all(list(row.values())[1] in (True, None) for row in rows), rows
    assert len({list(row.values())[2] for row in rows}) >= 7, rows


@pytest.mark.parametrize("sql, message", [
    ("SELECT date_trunc('fortnight', d) FROM f", "unknown date part 'fortnight'"),
    ("SELECT date_trunc('dow', d) FROM f", "cannot use the part 'dow'"),
    ("SELECT substr(s, 'a') FROM f", "substr() needs an integer as argument 2"),
    ("SELECT lpad(s) FROM f", "lpad() takes 3 argument(s), got 1"),
    ("SELECT date_part(p, d) FROM f", "date part as a string literal"),
    ("SELECT soundex(s) FROM f", "Unknown function soundex()"),
    ("SELECT d + INTERVAL '3 fortnights' FROM f", "unknown interval unit 'fortnights'"),
    ("SELECT d + INTERVAL '99999999999999 hours' FROM f", "is out of range"),
    ("SELECT d - ts FROM f", "Cannot apply"),
    # Constructs Keel does not run are named as unsupported.
    ("SELECT s SIMILAR TO 'x' FROM f", "not supported: expression s SIMILAR TO 'x'"),
    ("SELECT overlay(s PLACING 'x' FROM 1) FROM f", "not supported: expression OVERLAY"),
    ("SELECT id FROM f LIMIT 1 FOR UPDATE", "not supported: FOR UPDATE"),
])
def test_bad_calls_are_refused_with_the_reason(cluster, table, sql, message):
    r = keel(cluster, table, sql)
    assert r.returncode != 0, r.stdout
    assert message in r.stderr, r.stderr


@pytest.mark.parametrize("sql, message", [
    ("SELECT id, n % (n - n) FROM f", "Division by zero"),
    ("SELECT strptime(s, '%Y-%m-%d') FROM f WHERE id = 1", "cannot parse \"hello\""),
    ("SELECT CAST(s AS INTEGER) FROM f", "cannot cast"),
    ("SELECT make_date(2023, 2, 29) FROM f", "2023-2-29 is not a date"),
    ("SELECT ln(x) FROM f", "cannot take the logarithm"),
])
def test_a_user_error_fails_the_job_at_once(cluster, table, sql, message):
    r = keel(cluster, table, sql)
    assert r.returncode != 0, r.stdout
    assert message in r.stderr, r.stderr
    # One attempt: the failure names its task, not a count of attempts.
    assert "failed after" not in r.stderr and "task" in r.stderr, r.stderr
