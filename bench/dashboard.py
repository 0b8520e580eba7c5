#!/usr/bin/env python3
"""The dashboard's own cost: the scheduler's CPU time during story 1 with the
dashboard open, against the same runs with nothing watching.

Starts a keel-scheduler (HTTP on a free port) and --workers keel-worker
processes (release build), generates story 1 (WORKLOADS.md), and runs the
story-1 query as COPY … TO Parquet --runs times with the dashboard open and
--runs times without, alternating. "Open" is the real page in a headless
Chromium when one is installed (it polls the API every second, as in a
browser), else a poller making the page's request (/api/overview) every
two seconds, as the page does (`--poller` forces it: a browser on this
2-core machine also slows the job, and the scheduler's idle work grows
with the job's wall time). The scheduler's CPU time for each run
is read from /proc (user + system, all its threads). DuckDB runs the same
query in the same run for reference.

    python3 bench/dashboard.py [--scale 0.0005] [--workers 2] [--runs 5] [--no-build]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from cluster import STORY1, Cluster, dataset, duckdb_story1, fresh_dir, run, setup, story1_totals

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """CPU time of a process's live threads so far, in nanoseconds' precision
    (each thread's /proc schedstat), or from /proc stat in clock ticks (which
    counts exited threads too) where schedstat is missing. The scheduler's
    threads (tokio's workers, and its blocking pool, kept alive between
    back-to-back runs) live through a run."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (FileNotFoundError, ProcessLookupError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK


class Poller:
    """Makes the dashboard page's request (/api/overview) every two seconds until stopped."""

    def __init__(self, url):
        self.url, self.stop_flag, self.requests = url, threading.Event(), 0
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        since = 0
        while not self.stop_flag.is_set():
            with urllib.request.urlopen(f"{self.url}/api/overview?since={since}", timeout=10) as r:
                body = r.read()
            self.requests += 1
            since = max(0, int(json.loads(body)["now_ms"]) - 4000)
            self.stop_flag.wait(2.0)

    def stop(self):
        self.stop_flag.set()
        self.thread.join()


class Browser:
    """The dashboard page open in a headless Chromium."""

    def __init__(self, binary, url):
        self.profile = tempfile.mkdtemp(prefix="keel-chromium-")
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}", url + "/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)  # the page loads and starts polling
        if self.proc.poll() is not None:
            raise RuntimeError("chromium exited at once")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="0.0005")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", default="42")
    ap.add_argument("--data", default=str(ROOT / "bench" / "data"))
    ap.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    ap.add_argument("--poller", action="store_true", help="poll the API even when Chromium is installed")
    args = ap.parse_args()

    duckdb, bin_dir = setup(ROOT, build=not args.no_build)
    data = dataset(bin_dir, args.data, "imbalanced-join", args.scale, args.seed)
    out = Path(args.data) / "dashboard-out"
    fresh_dir(out)
    chromium = None if args.poller else next(
        (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    viewer = "the page in headless Chromium" if chromium else "a poller making the page's requests"

    with Cluster(bin_dir, args.workers, out / "work") as cluster:
        assert cluster.http_url, "the scheduler printed no HTTP address"
        pid = cluster.scheduler.pid
        times = {"closed": [], "open": []}
        walls = {"closed": [], "open": []}
        for i in range(2 * args.runs):
            mode = "open" if i % 2 else "closed"
            target = out / f"keel-{i}"
            watcher = (Browser(chromium, cluster.http_url) if chromium else Poller(cluster.http_url)) \
                if mode == "open" else None
            before, t0 = cpu_seconds(pid), time.perf_counter()
            run([bin_dir / "keel", "sql", "--scheduler", cluster.url,
                 "--table", f"df1={data}/df1", "--table", f"df2={data}/df2",
                 f"COPY ({STORY1}) TO '{target}' (FORMAT parquet)"])
            walls[mode].append(time.perf_counter() - t0)
            times[mode].append(cpu_seconds(pid) - before)
            if watcher:
                watcher.stop()
            print(f"run {i + 1}: dashboard {mode:<6} wall {walls[mode][-1]:6.2f} s, scheduler CPU {times[mode][-1]:.4f} s",
                  flush=True)

    duck_out = out / "duckdb"
    duck_s, _ = duckdb_story1(data, duck_out, [f"SET threads={args.workers}"])
    con = duckdb.connect()
    (k_rows, k_sum), (d_rows, d_sum) = story1_totals(con, out / "keel-0"), story1_totals(con, duck_out)
    same = k_rows == d_rows and abs(k_sum - d_sum) <= 1e-6 * abs(d_sum)

    closed, opened = statistics.median(times["closed"]), statistics.median(times["open"])
    print(f"\nstory 1, scale {args.scale}, {args.workers} workers; dashboard open = {viewer}")
    print(f"{'':<22} {'scheduler CPU s':>16} {'wall s':>8}   (medians of {args.runs})")
    print(f"{'dashboard closed':<22} {closed:>16.4f} {statistics.median(walls['closed']):>8.2f}")
    print(f"{'dashboard open':<22} {opened:>16.4f} {statistics.median(walls['open']):>8.2f}")
    print(f"{'duckdb (' + str(args.workers) + ' threads)':<22} {'':>16} {duck_s:>8.2f}")
    print(f"scheduler CPU open/closed: {opened / closed:.3f} ({100 * (opened - closed) / closed:+.1f}%), "
          f"the dashboard's own: {1000 * (opened - closed) / statistics.median(walls['open']):.2f} ms per second open")
    print(f"answers match DuckDB's: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
