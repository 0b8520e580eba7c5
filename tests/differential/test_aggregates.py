"""DuckDB's statistical and holistic aggregates against DuckDB itself:
variances, covariance, correlation and regression, exact quantiles and the
mode, string_agg, arg_min/arg_max, bool_and/bool_or, count_if and product,
global and grouped, with NULLs, empty inputs and groups, FILTER and
DISTINCT, on the three cluster shapes (so partial states merge across
tasks, through tree reductions and spills). Doubles agree to a relative
1e-9: the order of a floating-point sum differs between the two."""

import json
import math
import subprocess

import duckdb
import pytest

from conftest import binary
from test_differential import normalize, sort_key

REL = 1e-9

QUERIES = [
    # variances and standard deviations (a DECIMAL is a DOUBLE to them)
    "SELECT stddev(v), stddev_samp(w), stddev_pop(v), variance(w), var_samp(v), var_pop(w), stddev(dec), var_pop(dec) FROM a",
    # group 0 has no w that is not NULL
    "SELECT g, stddev(v), stddev_pop(w), variance(v), var_pop(v), var_samp(w) FROM a GROUP BY g",
    # covariance, correlation, regression of y on x
    "SELECT covar_samp(y, x), covar_pop(y, x), corr(y, x), regr_slope(y, x), regr_intercept(y, x), regr_r2(y, x), "
    "covar_pop(v, w), corr(w, v) FROM a",
    "SELECT g, covar_samp(y, x), covar_pop(x, y), corr(y, x), regr_slope(y, x), regr_intercept(y, x), regr_r2(y, x) "
    "FROM a GROUP BY g",
    # one row per group: samples are NULL, correlation and slope NaN (cast to text: JSON has no NaN)
    "SELECT id, CAST(var_samp(v) AS VARCHAR) AS vs, CAST(stddev_samp(v) AS VARCHAR) AS ss, "
    "CAST(covar_samp(y, x) AS VARCHAR) AS cs, lower(CAST(corr(y, x) AS VARCHAR)) AS c, "
    "lower(CAST(regr_slope(y, x) AS VARCHAR)) AS sl, CAST(regr_intercept(y, x) AS VARCHAR) AS ri, "
    "CAST(regr_r2(y, x) AS VARCHAR) AS r2 FROM a WHERE id < 30 GROUP BY id",
    "SELECT id, var_pop(v), stddev_pop(v), covar_pop(y, x) FROM a WHERE id < 30 GROUP BY id",
    # a constant x or y
    "SELECT g, regr_r2(y, 5.0) AS a, regr_r2(5.0, x) AS b, lower(CAST(regr_slope(y, 5.0) AS VARCHAR)) AS c, "
    "lower(CAST(corr(y, 5.0) AS VARCHAR)) AS d, regr_slope(5.0, x) AS e, regr_intercept(5.0, x) AS f FROM a GROUP BY g",
    # exact quantiles: interpolated, discrete (any type), descending, at the ends
    "SELECT median(v), median(w), quantile_cont(v, 0.25), quantile_cont(w, 0.9), quantile_cont(v, -0.3), "
    "quantile_disc(v, 0.3), quantile_disc(w, 0.5), quantile_disc(s, 0.75), quantile_disc(d, 0.1), "
    "quantile_disc(dec, 0.5), quantile(w, 0.0), quantile_disc(w, 1.0), quantile_disc(r, -0.2), median(s) FROM a",
    "SELECT g, median(v), quantile_cont(v, 0.75), quantile_disc(w, 0.3), quantile_disc(s, 0.5), median(w), "
    "quantile_cont(x, 0.1) FROM a GROUP BY g",
    # the mode (every group's and the input's mode is unique)
    "SELECT mode(mm), mode(s2), mode(dec) FROM a",
    "SELECT g, mode(m), mode(s3) FROM a GROUP BY g",
    # string_agg in the call's order, with separators, FILTER and DISTINCT
    "SELECT g, string_agg(s, ',' ORDER BY id) AS a, listagg(s3, '|' ORDER BY s3 DESC, id) AS b FROM a WHERE id < 200 GROUP BY g",
    "SELECT string_agg(s, ', ' ORDER BY id DESC) FILTER (WHERE id % 50 = 1) AS a, "
    "group_concat(DISTINCT s, ';' ORDER BY s) AS b, "
    "string_agg(w, '-' ORDER BY w NULLS FIRST, id) FILTER (WHERE id < 30) AS c FROM a",
    "SELECT g, string_agg(DISTINCT s, ',' ORDER BY s DESC) FROM a GROUP BY g",
    "SELECT id, string_agg(s, ','), string_agg(s3) FROM a WHERE id < 20 GROUP BY id",
    # arg_min / arg_max (alias min_by / max_by), keys without ties
    "SELECT arg_min(v, r), arg_max(v, r), min_by(s, r), max_by(d, id), arg_min(w, id), argmax(s3, r), "
    "arg_min(id, CAST(r AS VARCHAR)) FROM a",
    "SELECT g, arg_min(v, r), arg_max(w, r), min_by(s, id) FILTER (WHERE id > 100), arg_max(d, r), "
    "max_by(dec, id) FROM a GROUP BY g",
    # bool_and / bool_or, count_if, product
    "SELECT bool_and(b), bool_or(b), count_if(b), count_if(v > 100), countif(w IS NULL), "
    "product(w) FILTER (WHERE id BETWEEN 1 AND 12), product(v / 100) FILTER (WHERE id < 40) FROM a",
    "SELECT g, bool_and(b), bool_or(b), bool_and(w > 0), count_if(b), count_if(v > 100) FILTER (WHERE w > 10), "
    "product(w) FILTER (WHERE id < 60) FROM a GROUP BY g",
    # empty input: one row of NULLs (count_if too, as DuckDB sums)
    "SELECT stddev(v), var_pop(v), covar_pop(y, x), corr(y, x), regr_r2(y, x), median(v), quantile_disc(s, 0.5), "
    "mode(w), string_agg(s, ','), arg_min(s, id), bool_and(b), count_if(b), product(v) FROM a WHERE id < 0",
    "SELECT g, stddev(v), median(v), mode(w), string_agg(s, ','), arg_min(s, id), bool_or(b), count_if(b) "
    "FROM a WHERE id < 0 GROUP BY g",
    # groups whose FILTER keeps nothing
    "SELECT g, stddev(v) FILTER (WHERE g < 3 AND v > 0), median(v) FILTER (WHERE g = 1), "
    "string_agg(s, ',' ORDER BY id) FILTER (WHERE id < 3), count_if(b) FILTER (WHERE g > 100), "
    "arg_max(s, id) FILTER (WHERE g = 2), corr(y, x) FILTER (WHERE g < 5) FROM a GROUP BY g",
    # DISTINCT over one argument: deduplicated first, then aggregated
    "SELECT g, var_samp(DISTINCT w), quantile_cont(DISTINCT w, 0.5), product(DISTINCT w), count(DISTINCT w) "
    "FROM a GROUP BY g",
    # DISTINCT beside other aggregates: a set per group
    "SELECT g, stddev(DISTINCT w), median(DISTINCT w), product(DISTINCT w) FILTER (WHERE id < 100), "
    "count(DISTINCT w), count(*) FROM a GROUP BY g",
    "SELECT stddev_pop(DISTINCT v), median(DISTINCT v), covar_pop(DISTINCT y, x), arg_min(DISTINCT s, r), "
    "string_agg(DISTINCT s3, ',' ORDER BY s3) FILTER (WHERE id < 50), sum(w) FROM a",
    # grouping sets, expressions of aggregates, HAVING
    "SELECT g % 2 AS p, b, stddev(v) AS sv, median(w) AS mw, string_agg(s3, ',' ORDER BY id) FILTER (WHERE id < 40) AS sa "
    "FROM a GROUP BY ROLLUP (p, b)",
    "SELECT g, stddev(v) / avg(v) AS cv, quantile_cont(v, 0.9) - median(v) AS spread FROM a GROUP BY g "
    "HAVING median(w) > 10 AND bool_or(b)",
]

# Refused, by name: (query, what the error says).
REFUSED = [
    ("SELECT g, stddev_x(v) FROM a GROUP BY g", "unknown function stddev_x"),
    ("SELECT stddev_x(v) FROM a", "unknown function stddev_x"),
    ("SELECT g FROM a GROUP BY g HAVING no_such_agg(v) > 1", "unknown function no_such_agg"),
    ("SELECT quantile_cont(v, [0.1, 0.5]) FROM a", "list of quantiles"),
    ("SELECT quantile_disc(v, 1.5) FROM a", "q is a constant from -1 to 1"),
    ("SELECT string_agg(s, s) FROM a", "separator is a constant string"),
    ("SELECT median(dec) FROM a", "cast the argument to DOUBLE"),
    ("SELECT bool_and(w) FROM a", "takes BOOLEAN"),
    ("SELECT string_agg(DISTINCT s, ',' ORDER BY id) FROM a", "must appear in the argument list"),
    ("SELECT corr(v) FROM a", "takes 2 argument(s)"),
    ("SELECT first(v ORDER BY id) FROM a", "ORDER BY inside first()"),
]


def write_table(path):
    """10 groups; NULLs in every column; unique keys r and id for arg_min;
    columns whose modes are unique; y about 2x + 1.5."""
    con = duckdb.connect()
    con.execute(f"""
        CREATE TABLE a AS SELECT
          i::BIGINT AS id,
          (i % 10)::BIGINT AS g,
          CASE WHEN i % 7 = 0 THEN NULL ELSE ((i * 37) % 1000) / 8.0 END AS v,
          CASE WHEN i % 5 = 0 THEN NULL ELSE (i % 23)::INTEGER END AS w,
          CASE WHEN i % 17 = 0 THEN NULL ELSE (i % 100)::DOUBLE END AS x,
          CASE WHEN i % 13 = 0 THEN NULL ELSE 2 * (i % 100) + ((i * 7) % 10) / 3.0 END AS y,
          CASE WHEN i % 19 = 0 THEN NULL ELSE (i * 7919) % 5003 END AS r,
          CASE WHEN i % 3 = 0 THEN (i % 10) * 100 WHEN i % 11 = 0 THEN NULL ELSE i END AS m,
          CASE WHEN i % 4 = 0 THEN 7 ELSE i % 50 END AS mm,
          CASE WHEN i % 9 = 0 THEN NULL ELSE 'name_' || (i % 37) END AS s,
          CASE WHEN i % 6 = 0 THEN 'hot' ELSE 'x' || i END AS s2,
          CASE WHEN i % 3 = 0 THEN 'hot_' || (i % 10) ELSE 'x' || i END AS s3,
          CASE WHEN i % 9 = 0 THEN NULL ELSE i % 4 = 0 END AS b,
          DATE '2024-01-01' + (i % 400)::INTEGER AS d,
          CASE WHEN i % 8 = 0 THEN 12.5 ELSE ((i % 1000) / 100)::DECIMAL(10, 2) END AS dec
        FROM range(5000) r(i)""")
    path.mkdir()
    for j in range(3):
        con.execute(f"COPY (SELECT * FROM a WHERE id % 3 = {j} ORDER BY id) TO '{path}/part-{j}.parquet' "
                    "(FORMAT parquet, ROW_GROUP_SIZE 300)")
    con.close()


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("aggregates") / "a"
    write_table(path)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW a AS SELECT * FROM read_parquet('{path}/*.parquet')")
    yield path, con
    con.close()


def keel(cluster, tables, sql):
    args = [binary("keel"), "sql", "--scheduler", cluster.url, "--format", "json"]
    for name, path in tables.items():
        args += ["--table", f"{name}={path}"]
    return subprocess.run(args + [sql], capture_output=True, text=True, timeout=300)


def keel_rows(cluster, tables, sql):
    r = keel(cluster, tables, sql)
    assert r.returncode == 0, f"keel failed on {sql!r}: {r.stderr}"
    return [tuple(row.values()) for row in json.loads(r.stdout)]


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)
    return a == b


def compare(sql, expected, actual):
    expected = sorted((tuple(normalize(v) for v in r) for r in expected), key=sort_key)
    actual = sorted((tuple(normalize(v) for v in r) for r in actual), key=sort_key)
    assert len(actual) == len(expected), f"{sql}: {len(actual)} rows, DuckDB gives {len(expected)}"
    for e, a in zip(expected, actual):
        assert len(e) == len(a) and all(same(x, y) for x, y in zip(e, a)), f"{sql}: {a}, DuckDB gives {e}"


@pytest.mark.parametrize("query", QUERIES)
def test_aggregate_matches_duckdb(cluster, table, query):
    path, con = table
    expected = con.execute(query).fetchall()
    compare(query, expected, keel_rows(cluster, {"a": path}, query))


@pytest.mark.parametrize("query,message", REFUSED)
def test_refused_by_name(cluster, table, query, message):
    if cluster.name != "default":
        pytest.skip("binding does not depend on the cluster's shape")
    r = keel(cluster, {"a": table[0]}, query)
    assert r.returncode != 0, f"{query} ran: {r.stdout}"
    assert message.lower() in r.stderr.lower(), r.stderr


@pytest.fixture(scope="module")
def offset_values(tmp_path_factory):
    """1e9 plus noise in [0, 1): the variance (about 1/12) is 18 orders of
    magnitude below the squares, beyond a double's 16 digits."""
    path = tmp_path_factory.mktemp("cancellation") / "big.parquet"
    con = duckdb.connect()
    con.execute(f"""
        COPY (SELECT i % 4 AS g, 1e9 + ((i * 7919) % 10007) / 10007.0 AS x FROM range(60000) r(i))
        TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 2000)""")
    xs = [row[0] for row in con.execute(f"SELECT x FROM '{path}'").fetchall()]
    con.close()
    return path, xs


def test_var_pop_does_not_cancel(cluster, offset_values):
    path, xs = offset_values
    # The exact answer: deviations from an accurate mean, summed without loss.
    mean = math.fsum(xs) / len(xs)
    exact = math.fsum((x - mean) ** 2 for x in xs) / len(xs)
    sql = "SELECT var_pop(x), var_samp(x), stddev_pop(x), covar_pop(x, x) FROM big"
    (got,) = keel_rows(cluster, {"big": path}, sql)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW big AS SELECT * FROM '{path}'")
    (want,) = con.execute(sql).fetchall()
    # The textbook formula in doubles: nothing of the answer survives.
    (naive,) = con.execute("SELECT sum(x * x) / count(*) - (sum(x) / count(*)) ** 2 FROM big").fetchone()
    con.close()
    assert abs(naive - exact) > 0.01 * exact, "the test's values do not cancel"
    assert math.isclose(got[0], exact, rel_tol=1e-9), (got[0], exact)
    assert math.isclose(got[3], exact, rel_tol=1e-9), (got[3], exact)
    # DuckDB's one-pass Welford over all 60,000 values is itself off by
    # about 5e-9 here (Keel's merged partials by about 4e-10).
    for g, w in zip(got, want):
        assert math.isclose(g, w, rel_tol=1e-7), (got, want)
    grouped = "SELECT g, var_pop(x) FROM big GROUP BY g"
    by_group = {g: v for g, v in keel_rows(cluster, {"big": path}, grouped)}
    for g, v in duckdb.sql(grouped.replace("big", f"'{path}'")).fetchall():
        assert math.isclose(by_group[g], v, rel_tol=1e-7), (g, by_group[g], v)


def test_states_survive_spilling(cluster, tmp_path):
    """On workers with a 512 KiB pool the final aggregations dump their
    states (LISTs of values, string_agg's BLOBs, DISTINCT sets, arg_min's
    pairs) to disk and merge them partition by partition."""
    if cluster.name != "small-memory":
        pytest.skip("only the small-memory cluster spills")
    path = tmp_path / "many_groups.parquet"
    con = duckdb.connect()
    con.execute(f"""
        COPY (SELECT i::BIGINT AS id, (i % 20000)::BIGINT AS g, ((i * 37) % 1000) / 8.0 + i % 3 AS v,
                     'name_' || (i % 37) AS s, (i % 23)::INTEGER AS w
              FROM range(200000) r(i))
        TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 10000)""")
    sql = ("SELECT g, median(v), string_agg(s, ',' ORDER BY id) AS sa, stddev(DISTINCT w) AS sd, arg_min(s, id) AS am, "
           "quantile_disc(w, 0.3) AS q, var_pop(v) AS vp, count(*) AS c FROM many GROUP BY g")
    r = keel(cluster, {"many": path}, sql)
    assert r.returncode == 0, r.stderr
    assert "spilled " in r.stderr, r.stderr
    con.execute(f"CREATE VIEW many AS SELECT * FROM '{path}'")
    compare(sql, con.execute(sql).fetchall(), [tuple(row.values()) for row in json.loads(r.stdout)])
    con.close()
