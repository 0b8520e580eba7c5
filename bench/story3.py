#!/usr/bin/env python3
"""Story 3 benchmark: device state intervals and alerts per interval.

Generates `keel datagen devices` (--polls, --alerts; the hottest device owns
about a quarter of each), then in the same run, on a Keel cluster of real
processes (--workers keel-worker processes with `--cores 2`) and on DuckDB
with 2 threads:

1. the interval query: `lag` and a running `sum` per device, then a
   group-by, written as Parquet (DuckDB's output is the input of step 2 on
   both engines, and Keel's must hold the same rows);
2. the range form: alerts per interval with `device_id` equal and the alert
   time BETWEEN start and stop (Keel plans it as a range join; DuckDB with
   its default plan, and with `prefer_range_joins`);
3. the ASOF form of the same count (`ASOF JOIN … a.timestamp >= s.start`
   with `a.timestamp <= s.stop` in WHERE), on both engines.

Checks that the answers agree and prints each time and the ratios of Keel's
range and ASOF forms to DuckDB's ASOF form.

    python3 bench/story3.py [--polls 2000000] [--alerts 2000000] [--workers 2] [--skip-duckdb-default]
"""

import argparse
import time
from pathlib import Path

from cluster import Cluster, duckdb_child, fresh_dir, run, setup

ROOT = Path(__file__).resolve().parents[1]
INTERVALS = """
WITH changes AS (
  SELECT device_id, timestamp, state,
    CASE WHEN state IS DISTINCT FROM lag(state) OVER (PARTITION BY device_id ORDER BY timestamp)
         THEN 1 ELSE 0 END AS new_run
  FROM polls),
runs AS (
  SELECT device_id, timestamp, state,
    sum(new_run) OVER (PARTITION BY device_id ORDER BY timestamp) AS grp
  FROM changes)
SELECT device_id, state, grp, min(timestamp) AS start, max(timestamp) AS stop
FROM runs GROUP BY device_id, state, grp
"""
RANGE = """
SELECT s.device_id, s.state, s.grp, s.start, s.stop, count(*) AS n
FROM intervals s JOIN alerts a
  ON s.device_id = a.device_id AND a.timestamp BETWEEN s.start AND s.stop
GROUP BY ALL
"""
ASOF = """
SELECT s.device_id, s.state, s.grp, s.start, s.stop, count(*) AS n
FROM alerts a ASOF JOIN intervals s
  ON a.device_id = s.device_id AND a.timestamp >= s.start
WHERE a.timestamp <= s.stop
GROUP BY ALL
"""
CHECK = "SELECT count(*), sum(n), sum(epoch_us(start)) FROM read_parquet('{}/*.parquet')"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--polls", default="2000000")
    ap.add_argument("--alerts", default="2000000")
    ap.add_argument("--devices", default="1000")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", default="42")
    ap.add_argument("--data", default=str(ROOT / "bench" / "data"))
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    ap.add_argument("--skip-duckdb-default", action="store_true",
                    help="skip DuckDB's default plan for the range form (about 2 minutes at 2 M rows)")
    args = ap.parse_args()
    duckdb, bin_dir = setup(ROOT, build=not args.no_build)

    data = Path(args.data) / f"devices-{args.polls}-{args.alerts}-{args.devices}-{args.seed}"
    if not (data / ".complete").exists():
        r = run([bin_dir / "keel", "datagen", "devices", "--polls", args.polls, "--alerts", args.alerts,
                 "--devices", args.devices, "--seed", args.seed, "--out", data])
        print(r.stderr.strip())
        (data / ".complete").touch()
    out = fresh_dir(Path(args.data) / "out-story3")
    polls, alerts = f"{data}/polls/*.parquet", f"{data}/alerts/*.parquet"
    duck_iv = out / "duck-intervals"
    duck_iv.mkdir()
    views = [f"CREATE VIEW polls AS SELECT * FROM read_parquet('{polls}')",
             f"CREATE VIEW alerts AS SELECT * FROM read_parquet('{alerts}')",
             f"CREATE VIEW intervals AS SELECT * FROM read_parquet('{duck_iv}/*.parquet')"]
    duck = {}
    print("duckdb: intervals …", flush=True)
    duck["intervals"], _ = duckdb_child(["SET threads=2"] + views[:2],
                                        f"COPY ({INTERVALS}) TO '{duck_iv}/part-0.parquet' (FORMAT parquet)")
    for name, setup_sql, sql in [("range (prefer_range_joins)", ["SET prefer_range_joins=true"], RANGE),
                                 ("asof", [], ASOF)] + ([] if args.skip_duckdb_default else
                                                        [("range (default plan)", [], RANGE)]):
        print(f"duckdb: {name} …", flush=True)
        target = out / f"duck-{name.split()[0]}-{len(duck)}"
        target.mkdir()
        duck[name], _ = duckdb_child(["SET threads=2"] + setup_sql + views,
                                     f"COPY ({sql}) TO '{target}/part-0.parquet' (FORMAT parquet)")
        duck[name + " out"] = target

    keel = {}
    with Cluster(bin_dir, args.workers, fresh_dir(out / "work"), worker_args=["--cores", "2"]) as cluster:
        for name, tables, sql in [("intervals", [f"polls={data}/polls"], INTERVALS),
                                  ("range", [f"intervals={duck_iv}", f"alerts={data}/alerts"], RANGE),
                                  ("asof", [f"intervals={duck_iv}", f"alerts={data}/alerts"], ASOF)]:
            print(f"keel: {name} …", flush=True)
            target = out / f"keel-{name}"
            t0 = time.perf_counter()
            run([bin_dir / "keel", "sql", "--scheduler", cluster.url,
                 *[a for t in tables for a in ("--table", t)], f"COPY ({sql}) TO '{target}' (FORMAT parquet)"])
            keel[name] = (time.perf_counter() - t0, target)

    con = duckdb.connect()
    iv_check = "SELECT count(*), sum(grp), sum(epoch_us(stop)) FROM read_parquet('{}/*.parquet')"
    same_iv = con.execute(iv_check.format(keel["intervals"][1])).fetchone() == \
        con.execute(iv_check.format(duck_iv)).fetchone()
    expected = con.execute(CHECK.format(duck["asof out"])).fetchone()
    answers = {name: con.execute(CHECK.format(duck[name + " out"])).fetchone()
               for name in duck if not name.endswith(" out") and name not in ("intervals", "asof")}
    keel_range = con.execute(CHECK.format(keel["range"][1])).fetchone()
    keel_asof = con.execute(CHECK.format(keel["asof"][1])).fetchone()
    n_polls = con.execute(f"SELECT count(*) FROM read_parquet('{polls}')").fetchone()[0]
    n_alerts = con.execute(f"SELECT count(*) FROM read_parquet('{alerts}')").fetchone()[0]
    hot = con.execute(f"SELECT max(c) / sum(c) FROM (SELECT count(*) c FROM read_parquet('{polls}') GROUP BY device_id)").fetchone()[0]

    ok = same_iv and keel_range == expected and keel_asof == expected and all(a == expected for a in answers.values())
    print(f"\nstory 3: {n_polls:,} polls, {n_alerts:,} alerts, hottest device {hot:.0%}; "
          f"{expected[0]:,} intervals with alerts, {expected[1]:,} alerts counted")
    print(f"{'step':<44} {'seconds':>8}")
    print(f"{'keel: intervals (lag + running sum), ' + str(args.workers) + ' workers':<44} {keel['intervals'][0]:>8.2f}"
          f"  {'same intervals as DuckDB' if same_iv else 'INTERVALS DIFFER'}")
    print(f"{'duckdb: intervals, 2 threads':<44} {duck['intervals']:>8.2f}")
    print(f"{'keel: range form (range join)':<44} {keel['range'][0]:>8.2f}"
          f"  {'answer matches' if keel_range == expected else 'ANSWER DIFFERS'}")
    print(f"{'keel: ASOF form (asof join)':<44} {keel['asof'][0]:>8.2f}"
          f"  {'answer matches' if keel_asof == expected else 'ANSWER DIFFERS'}")
    for name in duck:
        if name.endswith(" out") or name == "intervals":
            continue
        print(f"{'duckdb: ' + name:<44} {duck[name]:>8.2f}")
    print(f"keel range form / duckdb ASOF form: {keel['range'][0] / duck['asof']:.2f}x")
    print(f"keel ASOF form / duckdb ASOF form: {keel['asof'][0] / duck['asof']:.2f}x")
    if not ok:
        raise SystemExit("answers differ")


if __name__ == "__main__":
    main()
