#!/usr/bin/env python3
"""Story 1 benchmark: Keel vs DuckDB on the skewed many-to-many join + group-by.

Generates story 1 (WORKLOADS.md) with `keel datagen`, runs the story-1 query as
COPY … TO Parquet on Keel's embedded cluster and on DuckDB (same thread count)
in the same run, checks both outputs have the same row count and sum, and
prints wall times, the ratio and peak memory.

    python3 bench/story1.py [--scale 0.0005] [--workers 2]
"""

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

from cluster import STORY1, duckdb_story1, run, setup, story1_totals  # noqa: F401 (run is story1_faults' too)

ROOT = Path(__file__).resolve().parents[1]
QUERY = STORY1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="0.0005")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", default="42")
    ap.add_argument("--data", default=str(ROOT / "bench" / "data"))
    args = ap.parse_args()

    duckdb, bin_dir = setup(ROOT)
    keel = bin_dir / "keel"

    data = Path(args.data) / f"story1-{args.scale}-{args.seed}"
    if not (data / "df2").exists():
        shutil.rmtree(data, ignore_errors=True)
        r = run([keel, "datagen", "imbalanced-join", "--scale", args.scale, "--seed", args.seed, "--out", data])
        print(r.stderr.strip())
    out = Path(args.data) / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    # Keel: the embedded cluster runs in the keel process, so its peak RSS is the cluster's.
    keel_out = out / "keel"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    run([keel, "sql", "--workers", str(args.workers),
         "--table", f"df1={data}/df1", "--table", f"df2={data}/df2",
         f"COPY ({QUERY}) TO '{keel_out}' (FORMAT parquet)"])
    keel_s = time.perf_counter() - t0
    keel_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    if keel_rss <= before * 1024:
        keel_rss = float("nan")

    # DuckDB with the same number of threads, in a child process so its peak RSS is its own.
    duck_out = out / "duckdb"
    duck_s, duck_rss = duckdb_story1(data, duck_out, [f"SET threads={args.workers}"])

    con = duckdb.connect()
    check = lambda d: story1_totals(con, d)  # noqa: E731
    (k_rows, k_sum), (d_rows, d_sum) = check(keel_out), check(duck_out)
    same = k_rows == d_rows and abs(k_sum - d_sum) <= 1e-6 * abs(d_sum)
    df1_rows = con.execute(f"SELECT count(*) FROM read_parquet('{data}/df1/*.parquet')").fetchone()[0]

    gib = 1 << 30
    print(f"\nstory 1, scale {args.scale}: {df1_rows:,} df1 rows -> {d_rows:,} output groups")
    print(f"{'engine':<28} {'wall s':>8} {'peak RSS GiB':>13}")
    print(f"{'keel (' + str(args.workers) + ' embedded workers)':<28} {keel_s:>8.2f} {keel_rss / gib:>13.2f}")
    print(f"{'duckdb (' + str(args.workers) + ' threads)':<28} {duck_s:>8.2f} {duck_rss / gib:>13.2f}")
    print(f"ratio keel/duckdb: {keel_s / duck_s:.2f}x")
    print(f"answers match (rows {k_rows:,} vs {d_rows:,}, sum {k_sum:.6f} vs {d_sum:.6f}): {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
