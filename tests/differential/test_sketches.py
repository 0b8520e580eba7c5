"""Sketches on real processes: approx_count_distinct (HLL) and theta sketch
estimates against DuckDB's exact counts at a million distinct values; the
theta functions' set operations; theta sketch BLOBs written by Keel read by
the Python DataSketches library (same estimate, unions with its own
sketches) and sketches written by Python read by Keel; and the persisted
workflow: sketches per (column, value) written with COPY, intersected by a
later query."""

import subprocess

import duckdb
import pytest

from conftest import binary

ds = pytest.importorskip("datasketches")


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """A million distinct users over two categorical columns, some values repeated."""
    dir = tmp_path_factory.mktemp("sketches")
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (SELECT i % 1000000 AS user_id, 'u' || (i % 1000000) AS user_name,
                     (i % 12) + 1 AS month, CASE WHEN (i // 12) % 3 = 0 THEN 'f' ELSE 'm' END AS gender,
                     CASE WHEN i % 7 = 0 THEN NULL ELSE (i % 5000) * 0.5 END AS amount
              FROM range(1200000) r(i))
        TO '{dir}/events.parquet' (FORMAT parquet, ROW_GROUP_SIZE 100000)
        """
    )
    con.close()
    return dir


def keel(cluster, dir, sql, fmt="json"):
    r = subprocess.run([binary("keel"), "sql", "--scheduler", cluster.url, "--table",
                        f"events={dir}/events.parquet", "--format", fmt, sql],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{sql}: {r.stderr}"
    return r.stdout


def rows(cluster, dir, sql):
    import json
    return [tuple(r.values()) for r in json.loads(keel(cluster, dir, sql))]


def exact(dir, sql):
    con = duckdb.connect()
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{dir}/events.parquet')")
    return con.execute(sql).fetchall()


def test_approximate_distinct_counts_are_within_two_percent(two_shapes, events):
    got = rows(two_shapes, events,
               "SELECT month, gender, approx_count_distinct(user_id) AS a, approx_count_distinct(user_name) AS b, "
               "theta_estimate(theta_sketch(user_id, 14)) AS t FROM events GROUP BY month, gender ORDER BY 1, 2")
    want = exact(events, "SELECT month, gender, count(DISTINCT user_id) FROM events GROUP BY 1, 2 ORDER BY 1, 2")
    assert len(got) == len(want) == 24
    for (m, g, a, b, t), (m2, g2, c) in zip(got, want):
        assert (m, g) == (m2, g2)
        for est in (a, b, t):
            assert abs(est - c) <= 0.02 * c, f"{m} {g}: estimate {est}, exact {c}"
    [(total,)] = rows(two_shapes, events, "SELECT approx_count_distinct(user_id) FROM events")
    assert abs(total - 1_000_000) <= 20_000, total
    [(small, nulls)] = rows(two_shapes, events,
                            "SELECT approx_count_distinct(gender), approx_count_distinct(CASE WHEN false THEN 1 END) FROM events")
    assert (small, nulls) == (2, 0)


def test_theta_set_operations(two_shapes, events):
    sql = """
        WITH s AS (SELECT month, theta_sketch(user_id, 14) AS sk FROM events GROUP BY month)
        SELECT theta_estimate(theta_union(a.sk, b.sk)) AS u, theta_estimate(theta_intersect(a.sk, b.sk)) AS i,
               theta_estimate(theta_a_not_b(a.sk, b.sk)) AS d,
               theta_lower_bound(a.sk, 2) <= theta_estimate(a.sk) AND theta_estimate(a.sk) <= theta_upper_bound(a.sk, 2) AS ok
        FROM s a, s b WHERE a.month = 1 AND b.month = 5"""
    [(u, i, d, ok)] = rows(two_shapes, events, sql)
    [(eu, ei, ed)] = exact(events, """
        SELECT count(DISTINCT user_id) FILTER (WHERE month IN (1, 5)),
               (SELECT count(*) FROM (SELECT user_id FROM events WHERE month = 1 INTERSECT SELECT user_id FROM events WHERE month = 5)),
               (SELECT count(*) FROM (SELECT user_id FROM events WHERE month = 1 EXCEPT SELECT user_id FROM events WHERE month = 5))
        FROM events""")
    assert ok
    assert abs(u - eu) <= 0.05 * eu and abs(d - ed) <= 0.05 * ed, (u, eu, d, ed)
    assert abs(i - ei) <= 0.05 * ei + 50, (i, ei)
    [(ua, ia, none)] = rows(two_shapes, events, """
        WITH s AS (SELECT gender, theta_sketch(user_id, 14) AS sk FROM events GROUP BY gender)
        SELECT theta_estimate(theta_union_agg(sk)), theta_estimate(theta_intersect_agg(sk)),
               theta_intersect_agg(CASE WHEN false THEN sk END) FROM s""")
    assert abs(ua - 1_000_000) <= 30_000 and none is None
    [(ei,)] = exact(events, "SELECT count(*) FROM (SELECT user_id FROM events WHERE gender = 'f' "
                            "INTERSECT SELECT user_id FROM events WHERE gender = 'm')")
    assert abs(ia - ei) <= 0.05 * ei, (ia, ei)


def test_sketches_written_by_keel_are_read_by_python_and_back(two_shapes, events, tmp_path):
    out = tmp_path / "sketches"
    keel(two_shapes, events, f"COPY (SELECT gender, theta_sketch(user_id) AS sk, theta_estimate(theta_sketch(user_id)) AS e "
                             f"FROM events WHERE user_id < 50000 GROUP BY gender) TO '{out}' (FORMAT parquet)", "csv")
    con = duckdb.connect()
    written = con.execute(f"SELECT gender, sk, e FROM read_parquet('{out}/*.parquet') ORDER BY gender").fetchall()
    assert [g for g, _, _ in written] == ["f", "m"]
    for gender, blob, estimate in written:
        sketch = ds.compact_theta_sketch.deserialize(bytes(blob))
        assert sketch.get_estimate() == pytest.approx(estimate)
        # The same values hashed by the Python library: the union adds
        # nothing (these sketches are past their capacity, so its estimate
        # moves within the error; below capacity it is exact, see below).
        mine = ds.update_theta_sketch()
        for (u,) in con.execute(f"SELECT DISTINCT user_id FROM read_parquet('{events}/events.parquet') "
                                f"WHERE user_id < 50000 AND gender = '{gender}'").fetchall():
            mine.update(u)
        union = ds.theta_union()
        union.update(sketch)
        union.update(mine)
        assert union.get_result().get_estimate() == pytest.approx(mine.get_estimate(), rel=0.02)
        assert sketch.get_estimate() == pytest.approx(mine.get_estimate(), rel=0.05)

    # Python's sketches of strings, in Parquet, estimated and unioned by Keel.
    py = tmp_path / "py.parquet"
    names = [ds.update_theta_sketch() for _ in range(2)]
    for i in range(30000):
        names[i % 2].update(f"u{i}")
        names[0].update(f"u{i}") if i % 5 == 0 else None
    con.execute("CREATE TABLE py (part INTEGER, sk BLOB)")
    for part, s in enumerate(names):
        con.execute("INSERT INTO py VALUES (?, ?)", [part, s.compact().serialize()])
    con.execute(f"COPY py TO '{py}' (FORMAT parquet)")
    got = rows(two_shapes, events, f"SELECT part, theta_estimate(sk) AS e, octet_length(sk) AS n FROM read_parquet('{py}') ORDER BY part")
    assert [(p, e) for p, e, _ in got] == [(p, pytest.approx(s.compact().get_estimate())) for p, s in enumerate(names)]
    assert [n for _, _, n in got] == [len(s.compact().serialize()) for s in names]
    # Keel's sketch of the same strings unions with Python's: nothing new
    # (exactly, below the sketch's capacity; within its error above it).
    for limit, tolerance in [(3000, 0), (30000, 0.02)]:
        small = [ds.update_theta_sketch() for _ in range(2)]
        for i in range(limit):
            small[i % 2].update(f"u{i}")
        con.execute("DELETE FROM py")
        for part, sk in enumerate(small):
            con.execute("INSERT INTO py VALUES (?, ?)", [part, sk.compact().serialize()])
        con.execute(f"COPY py TO '{py}' (FORMAT parquet)")
        [(both,)] = rows(two_shapes, events, f"""
            SELECT theta_estimate(theta_union_agg(sk)) FROM (
              SELECT sk FROM read_parquet('{py}')
              UNION ALL SELECT theta_sketch(user_name) FROM events WHERE user_id < {limit} AND user_id % 2 = 1)""")
        assert abs(both - limit) <= tolerance * limit, (limit, both)


def test_approx_quantile_is_within_its_rank_error(two_shapes, events):
    got = rows(two_shapes, events,
               "SELECT month, approx_quantile(amount, 0.5) AS m, approx_quantile(amount, 0.9) AS p9, "
               "approx_quantile(user_id, 0.25) AS q1 FROM events GROUP BY month ORDER BY month")
    assert len(got) == 12
    for month, m, p9, q1 in got:
        assert isinstance(q1, int)
        for column, value, q in [("amount", m, 0.5), ("amount", p9, 0.9), ("user_id", q1, 0.25)]:
            [(rank,)] = exact(events, f"SELECT avg(CASE WHEN {column} <= {value} THEN 1.0 ELSE 0.0 END) "
                                      f"FROM events WHERE month = {month} AND {column} IS NOT NULL")
            assert abs(rank - q) <= 0.02, (month, column, q, value, rank)


def test_sketch_errors(two_shapes, events):
    for sql, message in [
        ("SELECT theta_estimate(user_id) FROM events", "needs a theta sketch (BLOB) as argument 1, got BIGINT"),
        ("SELECT theta_sketch(user_id, 40) FROM events", "lg_k is a constant from 4 to 26"),
        ("SELECT theta_upper_bound(theta_sketch(user_id), 5) FROM events", "1, 2 or 3"),
        ("SELECT theta_estimate(CAST('abc' AS BLOB)) FROM events LIMIT 1", "theta sketch"),
        ("SELECT approx_quantile(amount, 1.5) FROM events", "q is a constant from 0 to 1"),
        ("SELECT approx_quantile(gender, 0.5) FROM events", "approx_quantile() of VARCHAR"),
    ]:
        r = subprocess.run([binary("keel"), "sql", "--scheduler", two_shapes.url, "--table",
                            f"events={events}/events.parquet", sql], capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and message in r.stderr, (sql, r.stderr)
