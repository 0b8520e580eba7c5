#!/usr/bin/env python3
"""TPC-H benchmark: the 22 queries of bench/tpch/queries on Keel and on DuckDB.

Generates the eight tables with `keel datagen tpch` (once per scale, under
target/tpch-sf{SCALE}), runs each query with `keel sql` on an embedded
cluster of --workers workers (the whole command is timed, cluster start
included) and on DuckDB with as many threads over the same Parquet files,
checks Keel's answer against DuckDB's, and prints a table: seconds on each,
the ratio, and whether the answer is right. A query Keel refuses or gets
wrong is reported and the run goes on.

Answers are compared cell by cell: rows in order when the query ends with
ORDER BY, else sorted; DECIMAL values exactly (DuckDB's digits against the
digits Keel prints), doubles within a relative 1e-6, dates and strings as text.

    python3 bench/tpch.py [--scale 1] [--queries 1,3,5] [--runs 1] [--workers 2]
"""

import argparse
import csv
import datetime
import decimal
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cluster import run, setup

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ROOT / "bench" / "tpch" / "queries"
TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]


def tpch_data(keel, scale, data):
    """The eight tables at `scale` under `data`, generated unless a complete copy is there."""
    if not (data / ".complete").exists():
        print(f"generating TPC-H at scale {scale} in {data} …", flush=True)
        r = run([keel, "datagen", "tpch", "--scale", scale, "--out", data])
        print(r.stderr.strip())
        (data / ".complete").touch()
    return data


def statements(sql):
    """The statements of a query file (q15 has three; no TPC-H text has a ';' inside a literal)."""
    return [s.strip() for s in sql.split(";") if s.strip()]


def ordered(sql):
    """Whether the final result is ordered: the text after the last FROM has ORDER BY."""
    return "ORDER BY" in sql.upper().split("FROM")[-1]


def first_error_line(stderr):
    lines = [l.strip() for l in stderr.splitlines() if l.strip()]
    for l in lines:
        if "error" in l.lower():
            return l.removeprefix("Error: ")
    return lines[-1] if lines else "(no message)"


def run_keel(keel, data, workers, path, timeout):
    """(seconds, rows as lists of strings) or (seconds, error message)."""
    tables = [a for t in TABLES for a in ("--table", f"{t}={data / t}")]
    cmd = [str(keel), "sql", "--workers", str(workers), *tables, "--format", "csv", "--file", str(path)]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, f"timed out after {timeout}s"
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        return seconds, first_error_line(r.stderr)
    rows = list(csv.reader(r.stdout.splitlines()))
    return seconds, rows[1:]  # the first line is the header


def run_duckdb(con, sql):
    """(seconds, rows): the statements in order, the rows of the last one that returns any columns."""
    t0 = time.perf_counter()
    rows = None
    for stmt in statements(sql):
        cur = con.execute(stmt)
        if cur.description is not None and not stmt.upper().startswith(("CREATE", "DROP")):
            rows = cur.fetchall()
    return time.perf_counter() - t0, rows


# DuckDB as a whole command, as Keel is timed: a fresh Python process that
# opens DuckDB, declares the views and runs the query.
DUCKDB_COMMAND = """
import sys, duckdb
data, threads, path = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
con.execute(f"SET threads={threads}")
for t in %r:
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data}/{t}/*.parquet')")
for stmt in [s for s in open(path).read().split(";") if s.strip()]:
    con.execute(stmt).fetchall() if not stmt.strip().upper().startswith(("CREATE", "DROP")) else con.execute(stmt)
""" % (TABLES,)


def run_duckdb_command(data, workers, path):
    """Seconds for DuckDB's whole command on the query."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", DUCKDB_COMMAND, str(data), str(workers), str(path)],
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def same_cell(expected, text):
    """Whether Keel's CSV `text` is DuckDB's value `expected`."""
    if expected is None:
        return text == ""
    if isinstance(expected, bool):
        return text.lower() == str(expected).lower()
    if isinstance(expected, decimal.Decimal):
        try:
            return decimal.Decimal(text) == expected
        except decimal.InvalidOperation:
            return False
    if isinstance(expected, int):
        try:
            return int(text) == expected
        except ValueError:
            return False
    if isinstance(expected, float):
        try:
            got = float(text)
        except ValueError:
            return False
        return math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9) or (math.isnan(got) and math.isnan(expected))
    if isinstance(expected, (datetime.date, datetime.datetime)):
        return text.replace("T", " ") == str(expected)
    return text == str(expected)


def sort_key(row):
    # A column holds one type, so values compare with values, NULLs go last.
    return tuple((v is None, 0 if v is None else v) for v in row)


def check(sql, expected, actual):
    """None when Keel's rows are DuckDB's, else what differs."""
    if len(expected) != len(actual):
        return f"{len(actual)} rows, DuckDB gives {len(expected)}"
    if not ordered(sql):
        expected = sorted(expected, key=sort_key)
        # Keel's text sorts like DuckDB's values once each cell is read as DuckDB typed it.
        actual = sorted(actual, key=lambda r: sort_key(expected_like(r, expected)))
    for i, (e, a) in enumerate(zip(expected, actual)):
        if len(e) != len(a):
            return f"row {i} has {len(a)} columns, DuckDB gives {len(e)}"
        if not all(same_cell(x, y) for x, y in zip(e, a)):
            return f"row {i} is {a}, DuckDB gives {[str(x) for x in e]}"
    return None


def expected_like(row, expected):
    """Keel's text cells converted to the types of DuckDB's first row, for sorting alike."""
    if not expected:
        return row
    out = []
    for text, like in zip(row, expected[0]):
        try:
            if text == "":
                out.append(None)
            elif isinstance(like, decimal.Decimal):
                out.append(decimal.Decimal(text))
            elif isinstance(like, bool):
                out.append(text.lower() == "true")
            elif isinstance(like, int):
                out.append(int(text))
            elif isinstance(like, float):
                out.append(float(text))
            elif isinstance(like, (datetime.date, datetime.datetime)):
                out.append(type(like).fromisoformat(text.replace("T", " ")))
            else:
                out.append(text)
        except ValueError:
            out.append(text)
    return tuple(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="1")
    ap.add_argument("--queries", default=",".join(str(q) for q in range(1, 23)), help="e.g. 1,3,5")
    ap.add_argument("--runs", type=int, default=1, help="runs of each query; the median time is reported")
    ap.add_argument("--workers", type=int, default=2, help="Keel's embedded workers and DuckDB's threads")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before a Keel run is abandoned")
    ap.add_argument("--data", help="where the tables go (default target/tpch-sf{SCALE})")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    ap.add_argument("--bin-dir", help="take keel from here (e.g. target/debug) instead of a release build")
    args = ap.parse_args()

    try:
        queries = [int(q) for q in args.queries.split(",") if q.strip()]
    except ValueError:
        sys.exit(f"--queries takes numbers from 1 to 22 separated by commas, got {args.queries!r}")
    if not queries or any(not 1 <= q <= 22 for q in queries):
        sys.exit(f"--queries takes numbers from 1 to 22 separated by commas, got {args.queries!r}")
    if args.runs < 1:
        sys.exit("--runs must be at least 1")

    duckdb, bin_dir = setup(ROOT, build=not (args.no_build or args.bin_dir))
    keel = Path(args.bin_dir).resolve() / "keel" if args.bin_dir else bin_dir / "keel"
    if not keel.exists():
        sys.exit(f"{keel} is missing: build with `cargo build --release --bins` first")
    data = tpch_data(keel, args.scale, Path(args.data) if args.data else ROOT / "target" / f"tpch-sf{args.scale}")

    con = duckdb.connect()
    con.execute(f"SET threads={args.workers}")
    con.execute("SET enable_progress_bar=false")
    for t in TABLES:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data / t}/*.parquet')")

    results = []
    for q in queries:
        path = QUERIES / f"q{q:02d}.sql"
        sql = path.read_text()
        keel_times, keel_out = [], None
        for _ in range(args.runs):
            seconds, keel_out = run_keel(keel, data, args.workers, path, args.timeout)
            keel_times.append(seconds)
            if isinstance(keel_out, str):
                break
        duck_times, expected, command_times = [], None, []
        for _ in range(args.runs):
            seconds, expected = run_duckdb(con, sql)
            duck_times.append(seconds)
            command_times.append(run_duckdb_command(data, args.workers, path))
        keel_s, warm_s = statistics.median(keel_times), statistics.median(duck_times)
        duck_s = statistics.median(command_times)
        if isinstance(keel_out, str):
            status, detail = "error", keel_out
        else:
            detail = check(sql, expected, keel_out)
            status = "ok" if detail is None else "differs"
        results.append((q, keel_s, duck_s, warm_s, status, detail))
        print(f"q{q:02d}: keel {keel_s:.2f}s, duckdb {duck_s:.2f}s (warm in-process {warm_s:.3f}s), {status}"
              + (f": {detail}" if detail else ""), flush=True)

    print(f"\nTPC-H at scale {args.scale}: Keel ({args.workers} embedded workers) vs DuckDB "
          f"({args.workers} threads), both as whole commands (DuckDB warm in its own process beside), "
          f"median of {args.runs} run{'s' if args.runs > 1 else ''}")
    print(f"{'query':<6} {'keel s':>9} {'duckdb s':>9} {'ratio':>8} {'warm s':>8} {'ratio':>8}  result")
    for q, keel_s, duck_s, warm_s, status, detail in results:
        good = status == "ok" and duck_s > 0 and warm_s > 0
        ratio = f"{keel_s / duck_s:.2f}" if good else "-"
        warm_ratio = f"{keel_s / warm_s:.2f}" if good else "-"
        keel_col = f"{keel_s:.2f}" if status != "error" else "-"
        line = f"q{q:02d}   {keel_col:>9} {duck_s:>9.3f} {ratio:>8} {warm_s:>8.3f} {warm_ratio:>8}  {status}"
        if status == "error":
            line += f": {detail}"
        print(line)
    for label, pick in (("whole commands", 2), ("DuckDB warm in-process", 3)):
        ok = [(r[1], r[pick]) for r in results if r[4] == "ok" and r[pick] > 0]
        if ok:
            geomean = math.exp(sum(math.log(k / d) for k, d in ok) / len(ok))
            print(f"geometric mean of keel/duckdb ({label}) over the {len(ok)} right answers: {geomean:.2f}x")
    print(f"right answers: {sum(r[4] == 'ok' for r in results)}/{len(results)}")
    for q, _, _, _, status, detail in results:
        if status == "differs":
            print(f"q{q:02d} differs: {detail}")


if __name__ == "__main__":
    main()
