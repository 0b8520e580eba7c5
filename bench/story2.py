#!/usr/bin/env python3
"""Story 2 benchmark: distinct trips by month × gender, exactly and by
sketches, and the all-pairs profile of the categorical columns.

Generates `keel datagen trips` (9.5 M rows at --scale 1), then in the same
run, on a Keel cluster of real processes (--workers keel-worker processes
with `--cores 2`) and on DuckDB with 2 threads:

1. `count(DISTINCT trip_id)` by month × gender on both engines;
2. `approx_count_distinct(trip_id)` by month × gender on both (HLL), with
   the largest relative error against the exact counts;
3. theta sketches of trip_id per month and per gender written to Parquet
   by Keel (`COPY`), then a second Keel query intersects every month's
   sketch with every gender's: the estimated month × gender counts and
   their largest error (the bar: 5%);
4. `keel profile` over the ten categorical columns against DuckDB
   computing the same counts with grouping sets (each column and each
   pair), Theil's U computed from DuckDB's counts in Python: the matrices
   must be equal.

    python3 bench/story2.py [--scale 1] [--workers 2] [--no-build]
"""

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

from cluster import Cluster, dataset, duckdb_child, fresh_dir, run, setup

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["year", "month", "week", "day", "hour", "usertype", "gender", "from_station_id", "to_station_id",
           "events"]
EXACT = "SELECT month, gender, count(DISTINCT trip_id) AS n FROM trips GROUP BY month, gender"
APPROX = "SELECT month, gender, approx_count_distinct(trip_id) AS n FROM trips GROUP BY month, gender"
SKETCHES = """
SELECT 'month' AS col, CAST(month AS VARCHAR) AS value, theta_sketch(trip_id, 18) AS sk FROM trips GROUP BY month
UNION ALL
SELECT 'gender', gender, theta_sketch(trip_id, 18) FROM trips GROUP BY gender
"""
INTERSECT = """
SELECT CAST(m.value AS INTEGER) AS month, g.value AS gender, theta_estimate(theta_intersect(m.sk, g.sk)) AS n
FROM sketches m, sketches g WHERE m.col = 'month' AND g.col = 'gender'
"""


def grouping_sets_sql():
    sets = [f"({c})" for c in COLUMNS]
    sets += [f"({a}, {b})" for i, a in enumerate(COLUMNS) for b in COLUMNS[i + 1:]]
    keys = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in COLUMNS)
    return (f"SELECT {', '.join(COLUMNS)}, grouping({', '.join(COLUMNS)}) AS g, count(*) AS n "
            f"FROM (SELECT {keys} FROM trips) s GROUP BY GROUPING SETS ({', '.join(sets)})")


def theils_u(rows):
    """U(x|y) for every ordered pair from (values…, grouping bits, count) rows."""
    m = len(COLUMNS)
    single = [defaultdict(int) for _ in range(m)]
    pairs = defaultdict(lambda: defaultdict(int))
    for r in rows:
        g, n = r[m], r[m + 1]
        grouped = [i for i in range(m) if not g & (1 << (m - 1 - i))]
        if len(grouped) == 1:
            single[grouped[0]][r[grouped[0]]] += n
        else:
            i, j = grouped
            pairs[(i, j)][(r[i], r[j])] += n
    total = sum(single[0].values())
    h = [-sum(c / total * math.log(c / total) for c in s.values()) for s in single]
    u = {}
    for (i, j), joint in pairs.items():
        hij = sum(c / total * math.log(single[j][y] / c) for (x, y), c in joint.items())
        hji = sum(c / total * math.log(single[i][x] / c) for (x, y), c in joint.items())
        u[(COLUMNS[i], COLUMNS[j])] = 1.0 if h[i] == 0 else (h[i] - hij) / h[i]
        u[(COLUMNS[j], COLUMNS[i])] = 1.0 if h[j] == 0 else (h[j] - hji) / h[j]
    return u


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="1")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", default="42")
    ap.add_argument("--data", default=str(ROOT / "bench" / "data"))
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    args = ap.parse_args()
    duckdb, bin_dir = setup(ROOT, build=not args.no_build)
    data = dataset(bin_dir, args.data, "trips", args.scale, args.seed)
    trips = f"{data}/trips"
    out = fresh_dir(Path(args.data) / "out-story2")
    view = f"CREATE VIEW trips AS SELECT * FROM read_parquet('{trips}/*.parquet')"

    duck = {}
    for name, sql in [("exact", EXACT), ("approx", APPROX), ("grouping sets", grouping_sets_sql())]:
        print(f"duckdb: {name} …", flush=True)
        target = out / f"duck-{name.split()[0]}.parquet"
        duck[name], _ = duckdb_child(["SET threads=2", view], f"COPY ({sql}) TO '{target}' (FORMAT parquet)")
        duck[name + " out"] = target

    keel = {}
    sketches = out / "sketches"
    with Cluster(bin_dir, args.workers, fresh_dir(out / "work"), worker_args=["--cores", "2"]) as cluster:
        def sql(name, query, tables=(f"trips={trips}",)):
            print(f"keel: {name} …", flush=True)
            t0 = time.perf_counter()
            r = run([bin_dir / "keel", "sql", "--scheduler", cluster.url, "--format", "json",
                     *[a for t in tables for a in ("--table", t)], query])
            keel[name] = time.perf_counter() - t0
            return [tuple(row.values()) for row in json.loads(r.stdout)] if r.stdout.startswith("[") else r.stdout

        exact = {(m, g): n for m, g, n in sql("exact", EXACT)}
        approx = {(m, g): n for m, g, n in sql("approx", APPROX)}
        sql("sketches", f"COPY ({SKETCHES}) TO '{sketches}' (FORMAT parquet)")
        inter = {(m, g): n for m, g, n in sql("intersect", INTERSECT, (f"sketches={sketches}",))}
        print("keel: profile …", flush=True)
        t0 = time.perf_counter()
        r = run([bin_dir / "keel", "profile", trips, "--scheduler", cluster.url, "--format", "json",
                 "--columns", ",".join(COLUMNS)])
        keel["profile"] = time.perf_counter() - t0
        profile = {(p["x"], p["y"]): p["u"] for p in json.loads(r.stdout)}

    import duckdb as ddb
    con = ddb.connect()
    d_exact = {(m, g): n for m, g, n in con.execute(f"SELECT * FROM read_parquet('{duck['exact out']}')").fetchall()}
    d_approx = {(m, g): n for m, g, n in con.execute(f"SELECT * FROM read_parquet('{duck['approx out']}')").fetchall()}
    d_u = theils_u(con.execute(f"SELECT * FROM read_parquet('{duck['grouping sets out']}')").fetchall())
    n_trips = con.execute(f"SELECT count(*) FROM read_parquet('{trips}/*.parquet')").fetchone()[0]

    err = lambda est: max(abs(est[k] - d_exact[k]) / d_exact[k] for k in d_exact)  # noqa: E731
    u_diff = max(abs(profile[k] - d_u[k]) for k in d_u)
    ok = (exact == d_exact and approx.keys() == d_exact.keys() and inter.keys() == d_exact.keys()
          and profile.keys() == d_u.keys() and u_diff < 1e-9)
    print(f"\nstory 2: {n_trips:,} trips, {len(d_exact)} month × gender groups, "
          f"{len(COLUMNS)} categorical columns ({len(d_u)} ordered pairs)")
    print(f"{'step':<58} {'keel s':>8} {'duckdb s':>9}  notes")
    print(f"{'distinct trips by month × gender, exact':<58} {keel['exact']:>8.2f} {duck['exact']:>9.2f}"
          f"  {'equal' if exact == d_exact else 'DIFFERENT'}")
    print(f"{'approx_count_distinct by month × gender (HLL)':<58} {keel['approx']:>8.2f} {duck['approx']:>9.2f}"
          f"  max error: keel {err(approx):.2%}, duckdb {err(d_approx):.2%}")
    print(f"{'theta sketches per month and per gender, COPY to Parquet':<58} {keel['sketches']:>8.2f} {'—':>9}")
    print(f"{'month × gender from the persisted sketches (intersections)':<58} {keel['intersect']:>8.2f} {'—':>9}"
          f"  max error {err(inter):.2%}")
    print(f"{'profile: Theil U, every pair of 10 columns':<58} {keel['profile']:>8.2f} {duck['grouping sets']:>9.2f}"
          f"  max |U difference| {u_diff:.1e} (DuckDB: grouping sets, U in Python)")
    if not ok:
        raise SystemExit("answers differ")


if __name__ == "__main__":
    main()
