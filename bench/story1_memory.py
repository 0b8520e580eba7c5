#!/usr/bin/env python3
"""Story 1 under a memory limit: Keel workers with --memory-limit vs DuckDB with memory_limit.

Generates story 1 (WORKLOADS.md) at --scale (default 0.002: 8.2 M df1 rows,
121 M output groups) with `keel datagen`, then in the same run:

- Keel: a keel-scheduler and --workers keel-worker processes with
  `--cores 2 --memory-limit 1536MiB`, the story-1 query as COPY … TO Parquet;
- the same with no --memory-limit (the worker defaults to the machine's memory);
- DuckDB with 2 threads and memory_limit='4GB'.

Checks that row counts and value sums agree, and prints wall times, the
ratio to DuckDB, each worker's peak resident memory (VmHWM, read from /proc
just before it exits) against its limit, and the bytes Keel spilled.

    python3 bench/story1_memory.py [--scale 0.002] [--workers 2] [--limit 1536MiB]
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from cluster import GIB, STORY1, Cluster, dataset, duckdb_story1, fresh_dir, parse_size, run, setup, story1_totals

ROOT = Path(__file__).resolve().parents[1]
QUERY = STORY1


def keel_cluster_run(bin_dir, data, out, workers, limit, work_root):
    """Runs the COPY on a fresh cluster; returns (seconds, [VmHWM per worker], spilled bytes)."""
    worker_args = ["--cores", "2"] + (["--memory-limit", limit] if limit else [])
    with Cluster(bin_dir, workers, work_root, worker_args=worker_args) as cluster:
        profile = work_root / "profile.json"
        t0 = time.perf_counter()
        run([bin_dir / "keel", "sql", "--scheduler", cluster.url, "--profile", profile,
             "--table", f"df1={data}/df1", "--table", f"df2={data}/df2",
             f"COPY ({QUERY}) TO '{out}' (FORMAT parquet)"])
        seconds = time.perf_counter() - t0
        hwm = cluster.peak_rss()
        spilled = sum(t["spilled_bytes"] for s in json.loads(profile.read_text())["stages"] for t in s["tasks"])
        return seconds, hwm, spilled


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="0.002")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", default="1536MiB")
    ap.add_argument("--seed", default="42")
    ap.add_argument("--data", default=str(ROOT / "bench" / "data"))
    ap.add_argument("--skip-unlimited", action="store_true")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    args = ap.parse_args()

    duckdb, bin_dir = setup(ROOT, build=not args.no_build)

    data = dataset(bin_dir, args.data, "imbalanced-join", args.scale, args.seed)
    out = fresh_dir(Path(args.data) / "out-memory")

    results = {}
    runs = [("limited", args.limit)] + ([] if args.skip_unlimited else [("unlimited", None)])
    for name, limit in runs:
        work = out / f"work-{name}"
        work.mkdir()
        print(f"keel, {name} …", flush=True)
        results[name] = keel_cluster_run(bin_dir, data, out / f"keel-{name}", args.workers, limit, work)
        shutil.rmtree(work, ignore_errors=True)

    print("duckdb …", flush=True)
    duck_out = out / "duckdb"
    duck_s, duck_rss = duckdb_story1(
        data, duck_out, ["SET threads=2", "SET memory_limit='4GB'", f"SET temp_directory='{out}/duck-tmp'"])

    con = duckdb.connect()
    check = lambda d: story1_totals(con, d)  # noqa: E731
    d_rows, d_sum = check(duck_out)
    df1_rows = con.execute(f"SELECT count(*) FROM read_parquet('{data}/df1/*.parquet')").fetchone()[0]
    limit_bytes = parse_size(args.limit)

    print(f"\nstory 1, scale {args.scale}: {df1_rows:,} df1 rows -> {d_rows:,} output groups")
    print(f"{'engine':<44} {'wall s':>8} {'ratio':>6}  peak RSS")
    ok = True
    for name, (secs, hwm, spilled) in results.items():
        k_rows, k_sum = check(out / f"keel-{name}")
        same = k_rows == d_rows and abs(k_sum - d_sum) <= 1e-6 * abs(d_sum)
        ok &= same
        label = f"keel, {args.workers} workers x 2 cores, " + (f"limit {args.limit}" if name == "limited" else "no limit")
        rss = ", ".join(f"{h / GIB:.2f}" for h in hwm)
        print(f"{label:<44} {secs:>8.2f} {secs / duck_s:>5.2f}x  workers {rss} GiB; spilled {spilled / GIB:.2f} GiB;"
              f" answer {'matches' if same else 'DIFFERS'}")
        if name == "limited":
            under = all(h <= limit_bytes for h in hwm)
            ok &= under
            print(f"{'':<44} every worker under its {args.limit} limit: {'yes' if under else 'NO'}")
    print(f"{'duckdb, 2 threads, memory_limit 4GB':<44} {duck_s:>8.2f} {1:>5.2f}x  {duck_rss / GIB:.2f} GiB")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
