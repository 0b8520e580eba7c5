#!/usr/bin/env python3
"""Story 1 with a worker killed halfway: the cost of losing a worker.

Starts keel-scheduler and 3 keel-worker processes (release build), runs the
story-1 query as COPY … TO Parquet once cleanly, then again while SIGKILLing
one worker at half the clean run's time, checks both outputs agree, and
prints both wall times and their ratio.

    python3 bench/story1_faults.py [--scale 0.0005]
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from cluster import setup  # noqa: E402
from story1 import QUERY, run  # noqa: E402

REL = ROOT / "target" / "release"


def start(args, prefix):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if not line.startswith(prefix):
        sys.exit(f"unexpected first line from {args[0]}: {line!r}")
    return p, line[len(prefix):].strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="0.0005")
    ap.add_argument("--seed", default="42")
    ap.add_argument("--data", default=str(ROOT / "bench" / "data"))
    args = ap.parse_args()
    duckdb, _ = setup(ROOT)
    data = Path(args.data) / f"story1-{args.scale}-{args.seed}"
    if not (data / "df2").exists():
        run([REL / "keel", "datagen", "imbalanced-join", "--scale", args.scale, "--seed", args.seed, "--out", data])
    out = Path(args.data) / "out-faults"
    shutil.rmtree(out, ignore_errors=True)

    procs = []
    work = tempfile.mkdtemp(prefix="keel-bench-")
    try:
        sched, addr = start([REL / "keel-scheduler", "--bind", "127.0.0.1:0", "--http-bind", "off", "--heartbeat-timeout", "2"], "keel-scheduler listening on ")
        procs.append(sched)
        url = f"http://{addr}"
        workers = []
        for i in range(3):
            w, _ = start([REL / "keel-worker", "--scheduler", url, "--bind", "127.0.0.1:0", "--cores", "1",
                          "--work-dir", f"{work}/w{i}"], "keel-worker listening on ")
            procs.append(w)
            workers.append(w)
        deadline = time.time() + 20
        while b"ok: 3 workers" not in subprocess.run([REL / "keel", "health", "--scheduler", url], capture_output=True).stdout:
            if time.time() > deadline:
                sys.exit("workers did not register")
            time.sleep(0.05)

        def job(dest):
            t0 = time.perf_counter()
            r = run([REL / "keel", "sql", "--scheduler", url, "--table", f"df1={data}/df1", "--table", f"df2={data}/df2",
                     f"COPY ({QUERY}) TO '{dest}' (FORMAT parquet)"])
            return time.perf_counter() - t0, r.stderr

        clean_s, _ = job(out / "clean")
        killer = threading.Timer(clean_s / 2, lambda: workers[2].kill())
        killer.start()
        faulty_s, report = job(out / "killed")
        killer.join()
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(work, ignore_errors=True)

    con = duckdb.connect()
    check = lambda d: con.execute(f"SELECT count(*), sum(value) FROM read_parquet('{d}/*.parquet')").fetchone()
    (a_rows, a_sum), (b_rows, b_sum) = check(out / "clean"), check(out / "killed")
    same = a_rows == b_rows and abs(a_sum - b_sum) <= 1e-6 * abs(a_sum)
    retried = next((l for l in report.splitlines() if "retried" in l), "no tasks retried")
    print(f"\nstory 1, scale {args.scale}, 3 worker processes: {a_rows:,} output groups")
    print(f"clean run:                     {clean_s:7.2f} s")
    print(f"one worker SIGKILLed halfway:  {faulty_s:7.2f} s   ({retried.strip()})")
    print(f"ratio killed/clean: {faulty_s / clean_s:.2f}x")
    print(f"answers match (rows {a_rows:,} vs {b_rows:,}, sum {a_sum:.6f} vs {b_sum:.6f}): {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
