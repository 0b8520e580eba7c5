#!/usr/bin/env python3
"""Story 4: 40 per-signal diff jobs of very different sizes submitted at once.

Generates `backups` (WORKLOADS.md) at --scale (default 1: 10 k to 1 M rows per
signal and day) with `keel datagen backups`, then in the same run:

- Keel with memory-aware admission (`--admission on`): a keel-scheduler and
  --workers keel-worker processes with `--cores 4 --memory-limit 512MiB`;
  one job per signal (day 2 LEFT JOIN day 1 on the three keys, rows whose
  old row is missing or whose value or stderr IS DISTINCT FROM, written
  with COPY … TO Parquet), all 40 submitted at once by separate `keel sql`
  processes;
- the same with `--admission off` (tasks placed by free cores alone);
- DuckDB (2 threads) running the diffs of all signals as one query.

Checks every job's row count and value sum against DuckDB's, and prints the
makespan, failed jobs, task attempts that failed for memory, and each
worker's peak resident memory (VmHWM) against its limit.

    python3 bench/story4_admission.py [--scale 1] [--workers 2] [--cores 4] [--limit 512MiB]
"""

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cluster import GIB, Cluster, dataset, fresh_dir, parse_size, setup

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = 40
DIFF = (
    "SELECT n.* FROM new n LEFT JOIN old o "
    "ON n.signal = o.signal AND n.time_value = o.time_value AND n.geo_value = o.geo_value "
    "WHERE o.signal IS NULL OR n.value IS DISTINCT FROM o.value OR n.stderr IS DISTINCT FROM o.stderr"
)


def keel_run(bin_dir, data, out, args, admission, work_root):
    """Submits every signal's diff at once; returns (makespan s, failures, memory failures, [VmHWM])."""
    worker_args = ["--cores", str(args.cores), "--memory-limit", args.limit]
    with Cluster(bin_dir, args.workers, work_root, ["--admission", admission], worker_args) as cluster:
        t0 = time.perf_counter()
        jobs = []
        for i in range(SIGNALS):
            f = f"signal-{i:02}.parquet"
            cmd = [bin_dir / "keel", "sql", "--scheduler", cluster.url,
                   "--table", f"new={data}/day2/{f}", "--table", f"old={data}/day1/{f}",
                   f"COPY ({DIFF}) TO '{out}/signal-{i:02}' (FORMAT parquet)"]
            jobs.append(subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True))
        failed, memory = [], 0
        for i, p in enumerate(jobs):
            _, err = p.communicate()
            if p.returncode != 0:
                failed.append((i, err.strip().splitlines()[-1] if err.strip() else "?"))
            m = re.search(r"\((\d+) for memory\)", err)
            memory += int(m.group(1)) if m else int(p.returncode != 0 and "memory" in err)
        makespan = time.perf_counter() - t0
        return makespan, failed, memory, cluster.peak_rss()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="1")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cores", type=int, default=4)
    ap.add_argument("--limit", default="512MiB")
    ap.add_argument("--seed", default="42")
    ap.add_argument("--data", default=str(ROOT / "bench" / "data"))
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    ap.add_argument("--bin-dir", help="binaries to run instead of target/release (implies --no-build)")
    args = ap.parse_args()

    duckdb, bin_dir = setup(ROOT, build=not (args.no_build or args.bin_dir))
    bin_dir = Path(args.bin_dir) if args.bin_dir else bin_dir

    data = dataset(bin_dir, args.data, "backups", args.scale, args.seed)
    out = fresh_dir(Path(args.data) / "out-admission")

    results = {}
    for admission in ["on", "off"]:
        work = out / f"work-{admission}"
        work.mkdir()
        print(f"keel, admission {admission} …", flush=True)
        results[admission] = keel_run(bin_dir, data, out / f"keel-{admission}", args, admission, work)
        shutil.rmtree(work, ignore_errors=True)

    print("duckdb …", flush=True)
    duck_out = out / "duckdb.parquet"
    duck_diff = DIFF.replace("new n", f"read_parquet('{data}/day2/*.parquet') n").replace(
        "old o", f"read_parquet('{data}/day1/*.parquet') o")
    con = duckdb.connect()
    con.execute("SET threads=2")
    con.execute("SET enable_progress_bar=false")
    t = time.perf_counter()
    con.execute(f"COPY ({duck_diff}) TO '{duck_out}' (FORMAT parquet)")
    duck_s = time.perf_counter() - t

    expected = dict(
        (r[0], r[1:]) for r in con.execute(
            f"SELECT signal, count(*), sum(value) FROM read_parquet('{duck_out}') GROUP BY signal").fetchall())
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{data}/day2/*.parquet')").fetchone()[0]
    limit_bytes = parse_size(args.limit)

    print(f"\nstory 4, scale {args.scale}: {SIGNALS} signals, {rows:,} day-2 rows, "
          f"{sum(v[0] for v in expected.values()):,} added or changed")
    print(f"{'engine':<50} {'makespan s':>10}  result")
    ok = True
    for admission, (secs, failed, memory, hwm) in results.items():
        wrong = []
        for i in range(SIGNALS):
            signal = f"signal_{i:02}"
            d = out / f"keel-{admission}" / f"signal-{i:02}"
            got = (0, None)
            if d.exists() and any(d.iterdir()):
                got = con.execute(f"SELECT count(*), sum(value) FROM read_parquet('{d}/*.parquet')").fetchone()
            want = expected.get(signal, (0, None))
            if got[0] != want[0] or (want[1] is not None and abs(got[1] - want[1]) > 1e-6 * abs(want[1])):
                wrong.append(signal)
        under = all(h <= limit_bytes for h in hwm)
        if admission == "on":
            ok &= not failed and not wrong and memory == 0 and under
        label = f"keel, {args.workers} workers x {args.cores} cores, {args.limit}, admission {admission}"
        rss = ", ".join(f"{h / GIB:.2f}" for h in hwm)
        print(f"{label:<50} {secs:>10.2f}  {SIGNALS - len(failed)}/{SIGNALS} jobs succeeded, "
              f"{len(wrong)} answers differ, {memory} memory failures; workers' peak RSS {rss} GiB "
              f"({'under' if under else 'OVER'} the limit)")
        for i, why in failed[:3]:
            print(f"{'':<50} signal {i:02} failed: {why}")
    print(f"{'duckdb, 2 threads, one query':<50} {duck_s:>10.2f}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
