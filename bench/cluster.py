"""Helpers the benchmarks share: sizes, processes, peak memory, a cluster of
real keel-scheduler and keel-worker processes."""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

GIB = 1 << 30
STORY1 = (
    "SELECT df2_group, bucket, group1, group2, group3, group4, sum(value) AS value "
    "FROM df1 JOIN df2 USING (key) "
    "GROUP BY df2_group, bucket, group1, group2, group3, group4"
)


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{r.stderr}")
    return r


def setup(root, build=True):
    """Installs DuckDB from PyPI and (unless `build` is false) builds Keel's
    release binaries; returns (the duckdb module, the binaries' directory)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "duckdb>=1.1"],
                   check=True, stderr=subprocess.DEVNULL)
    import duckdb

    if build:
        print("building release binaries …", flush=True)
        run(["cargo", "build", "--release", "--bins"], cwd=root)
    return duckdb, Path(root) / "target" / "release"


def parse_size(s):
    m = re.fullmatch(r"(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?", s)
    mult = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 10**3, "MB": 10**6, "GB": 10**9}
    return int(m.group(1)) * mult[m.group(2)]


def dataset(bin_dir, root, kind, scale, seed, extra=()):
    """`keel datagen KIND [EXTRA]` under ROOT/KIND[EXTRA]-SCALE-SEED, generated once; returns the directory."""
    tag = "".join(str(e).lstrip("-") for e in extra)
    data = Path(root) / f"{kind}{'-' + tag if tag else ''}-{scale}-{seed}"
    if not (data / ".complete").exists():
        shutil.rmtree(data, ignore_errors=True)
        r = run([bin_dir / "keel", "datagen", kind, "--scale", scale, "--seed", seed, "--out", data, *extra])
        print(r.stderr.strip())
        (data / ".complete").touch()
    return data


def fresh_dir(path):
    """An empty directory at `path`, whatever was there."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def duckdb_child(setup, timed):
    """Runs the `setup` statements, then times `timed`, in a child DuckDB
    process (so its peak RSS is its own); returns (seconds, peak RSS bytes)."""
    lines = ["import duckdb,time,resource", "con=duckdb.connect()", "con.execute('SET enable_progress_bar=false')"]
    lines += [f"con.execute({stmt!r})" for stmt in setup]
    lines += ["t=time.perf_counter()", f"con.execute({timed!r})",
              "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss*1024)"]
    r = run([sys.executable, "-c", "\n".join(lines)])
    seconds, rss = (float(x) for x in r.stdout.split()[-2:])
    return seconds, rss


def duckdb_story1(data, out, settings=("SET threads=2",)):
    """Story 1's query as COPY to `out` on DuckDB (after `settings`), in a
    child process; returns (seconds, peak RSS bytes)."""
    return duckdb_child(
        [*settings,
         f"CREATE VIEW df1 AS SELECT * FROM read_parquet('{data}/df1/*.parquet')",
         f"CREATE VIEW df2 AS SELECT * FROM read_parquet('{data}/df2/*.parquet')"],
        f"COPY ({STORY1}) TO '{out}' (FORMAT parquet, PER_THREAD_OUTPUT true)")


def story1_totals(con, out):
    """(rows, sum of value) of a story-1 output directory: what two engines' answers must share."""
    return con.execute(f"SELECT count(*), sum(value) FROM read_parquet('{out}/*.parquet')").fetchone()


def vm_hwm(pid):
    """The process's peak resident memory (the kernel's VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def start(cmd, env=None):
    """Starts a process that prints `… listening on ADDR` first; returns (proc, addr)."""
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = p.stdout.readline()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        p.kill()
        sys.exit(f"{cmd[0]} did not start: {line!r}")
    return p, m.group(1)


class Cluster:
    """A keel-scheduler and workers as real processes; a context manager."""

    def __init__(self, bin_dir, workers, work_root, scheduler_args=(), worker_args=()):
        self.bin_dir = bin_dir
        self.scheduler, addr = start([bin_dir / "keel-scheduler", "--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0", *scheduler_args])
        self.url = f"http://{addr}"
        m = re.search(r"http on (\S+)", self.scheduler.stdout.readline())
        self.http_url = f"http://{m.group(1)}" if m else None
        self.workers = []
        for i in range(workers):
            cmd = [bin_dir / "keel-worker", "--scheduler", self.url, "--bind", "127.0.0.1:0",
                   "--work-dir", work_root / f"w{i}", *worker_args]
            self.workers.append(start(cmd)[0])
        deadline = time.time() + 30
        while True:
            r = subprocess.run([bin_dir / "keel", "health", "--scheduler", self.url], capture_output=True, text=True)
            if r.returncode == 0 and f"{workers} workers" in r.stdout:
                break
            if time.time() > deadline:
                self.close()
                sys.exit(f"workers did not register: {r.stdout}{r.stderr}")
            time.sleep(0.2)

    def peak_rss(self):
        return [vm_hwm(p.pid) for p in self.workers]

    def close(self):
        for p in self.workers + [self.scheduler]:
            p.terminate()
        for p in self.workers + [self.scheduler]:
            p.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
