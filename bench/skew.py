#!/usr/bin/env python3
"""Skew-aware shuffle: story 1 with one very hot key, joined by hash shuffle.

Generates story 1 (WORKLOADS.md) at --scale with `keel datagen imbalanced-join
--hot-key-share 0.3` (key 1 holds 30% of df1), then in the same run:

- Keel: a keel-scheduler with `--broadcast-bytes 0` (so df2 is shuffled too,
  not broadcast) and --workers keel-worker processes with `--cores 2`, the
  story-1 query as COPY … TO Parquet, with `--skew-join on` and `off`,
  alternating, --repeat times each (a fresh cluster per run; medians are
  compared, since single runs on a small machine vary by 10% or more);
- DuckDB with 2 threads.

Checks that the three answers agree and prints wall times and, from Keel's
job profiles, the join stage's task count, largest and median task input
rows and durations, and the splits made.

Then story 2's `count(DISTINCT trip_id) … GROUP BY month, gender` over
`keel datagen trips` (9.5 M rows at --trips-scale 1; 24 groups, 77% of rows
male) on the same Keel cluster shape and on DuckDB, with the answers compared.

    python3 bench/skew.py [--scale 0.0005] [--workers 2] [--trips-scale 1]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from cluster import STORY1, Cluster, dataset, duckdb_child, duckdb_story1, fresh_dir, run, setup, story1_totals

ROOT = Path(__file__).resolve().parents[1]
QUERY = STORY1
DISTINCT = "SELECT month, gender, count(DISTINCT trip_id) AS trips FROM trips GROUP BY month, gender"


def join_stage(profile):
    """The profile's shuffle-join stage: the one whose operators hold the join."""
    return next(s for s in profile["stages"] if "HashJoin" in s["operators"])


def keel_run(bin_dir, workers, work_root, scheduler_args, tables, sql):
    """Runs one statement on a fresh cluster; returns (seconds, profile, stdout)."""
    with Cluster(bin_dir, workers, work_root, scheduler_args=scheduler_args,
                 worker_args=["--cores", "2"]) as cluster:
        profile = work_root / "profile.json"
        t0 = time.perf_counter()
        r = run([bin_dir / "keel", "sql", "--scheduler", cluster.url, "--profile", profile, "--format", "csv",
                 *[a for t in tables for a in ("--table", t)], sql])
        seconds = time.perf_counter() - t0
        return seconds, json.loads(profile.read_text()), r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="0.0005")
    ap.add_argument("--hot-key-share", default="0.3")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--trips-scale", default="1")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each skew mode")
    ap.add_argument("--seed", default="42")
    ap.add_argument("--data", default=str(ROOT / "bench" / "data"))
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    args = ap.parse_args()

    duckdb, bin_dir = setup(ROOT, build=not args.no_build)

    data = dataset(bin_dir, args.data, "imbalanced-join", args.scale, args.seed,
                   ["--hot-key-share", args.hot_key_share])
    out = fresh_dir(Path(args.data) / "out-skew")
    tables = [f"df1={data}/df1", f"df2={data}/df2"]

    results = {}
    times = {"on": [], "off": []}
    for i in range(args.repeat):
        for mode in ["on", "off"] if i % 2 == 0 else ["off", "on"]:
            print(f"keel, skew handling {mode}, run {i + 1} …", flush=True)
            work = fresh_dir(out / f"work-{mode}")
            sql = f"COPY ({QUERY}) TO '{fresh_dir(out / f'keel-{mode}')}' (FORMAT parquet)"
            secs, profile = keel_run(bin_dir, args.workers, work,
                                     ["--broadcast-bytes", "0", "--skew-join", mode], tables, sql)[:2]
            times[mode].append(secs)
            results[mode] = (statistics.median(times[mode]), profile)

    print("duckdb …", flush=True)
    duck_out = out / "duckdb"
    duck_s, _ = duckdb_story1(data, duck_out, ["SET threads=2"])

    con = duckdb.connect()
    check = lambda d: story1_totals(con, d)  # noqa: E731
    d_rows, d_sum = check(duck_out)
    df1_rows = con.execute(f"SELECT count(*) FROM read_parquet('{data}/df1/*.parquet')").fetchone()[0]
    hot = con.execute(f"SELECT count(*) FROM read_parquet('{data}/df1/*.parquet') WHERE key = 1").fetchone()[0]

    ok = True
    print(f"\nstory 1, scale {args.scale}, key 1 holds {hot / df1_rows:.0%} of {df1_rows:,} df1 rows "
          f"-> {d_rows:,} output groups; --broadcast-bytes 0, {args.workers} workers x 2 cores")
    print(f"{'engine':<24} {'wall s':>8} {'ratio':>6}  join stage (last run): tasks, input rows max/median, seconds max/median")
    for mode, (secs, profile) in results.items():
        k_rows, k_sum = check(out / f"keel-{mode}")
        same = k_rows == d_rows and abs(k_sum - d_sum) <= 1e-6 * abs(d_sum)
        ok &= same
        stage = join_stage(profile)
        rows = [t["input_rows"] for t in stage["tasks"]]
        dur = [t["duration_ms"] / 1000 for t in stage["tasks"]]
        med_rows, med_dur = statistics.median(rows), statistics.median(dur)
        print(f"{'keel, skew ' + mode:<24} {secs:>8.2f} {secs / duck_s:>5.2f}x  {len(rows)} tasks, "
              f"{max(rows):,}/{med_rows:,.0f} rows ({max(rows) / med_rows:.2f}x), "
              f"{max(dur):.2f}/{med_dur:.2f} s; answer {'matches' if same else 'DIFFERS'}")
        print(f"{'':<24} median of {len(times[mode])} runs: " + ", ".join(f"{t:.2f}" for t in times[mode]))
        for split in stage["skew_splits"]:
            keys = ", ".join(f"{k['key']} (~{k['left_rows']:,} rows)" for k in split["hot_keys"])
            print(f"{'':<24} split partition {split['partition']} ({split['left_bytes'] / 2**20:.1f} MiB left, "
                  f"{split['right_bytes'] / 2**20:.2f} MiB right; hot key {keys or 'none'}) over {split['tasks']} tasks")
    print(f"{'duckdb, 2 threads':<24} {duck_s:>8.2f} {1:>5.2f}x")
    on, off = results["on"][0], results["off"][0]
    print(f"skew on vs off (medians): {off / on:.2f}x")

    # Story 2's DISTINCT count: two-phase DISTINCT spreads the hot group (77% male).
    trips = dataset(bin_dir, args.data, "trips", args.trips_scale, args.seed)
    print("story 2: keel …", flush=True)
    k_s, _, k_csv = keel_run(bin_dir, args.workers, fresh_dir(out / "work-trips"), [],
                             [f"trips={trips}/trips"], DISTINCT + " ORDER BY month, gender")
    print("story 2: duckdb …", flush=True)
    view = f"CREATE VIEW trips AS SELECT * FROM read_parquet('{trips}/trips/*.parquet')"
    d_s, _ = duckdb_child(["SET threads=2", view], DISTINCT)
    con.execute(view)
    expected = [tuple(str(v) for v in r) for r in con.execute(DISTINCT + " ORDER BY month, gender").fetchall()]
    got = [tuple(line.split(",")) for line in k_csv.strip().splitlines()[1:]]
    same = got == expected
    ok &= same
    n = con.execute("SELECT count(*) FROM trips").fetchone()[0]
    print(f"\nstory 2: count(DISTINCT trip_id) GROUP BY month, gender over {n:,} trips ({len(expected)} groups)")
    print(f"{'keel':<24} {k_s:>8.2f} {k_s / d_s:>5.2f}x  answer {'matches' if same else 'DIFFERS'}")
    print(f"{'duckdb, 2 threads':<24} {d_s:>8.2f} {1:>5.2f}x")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
