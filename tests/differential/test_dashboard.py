"""The scheduler's HTTP side on a real cluster: the JSON API after a query
(the job with its profile, every worker), Prometheus metrics that parse and
move, cancelling through the API, and the dashboard rendered by a headless
Chromium while a job runs."""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pytest

from conftest import ROOT, Cluster, binary

# A join whose hot key (k = 1 on 60% of rows) makes ~144 M pairs: it runs
# long enough on a debug build to be watched and cancelled.
LONG_SQL = "SELECT count(*) FROM t a JOIN t b ON a.k = b.k"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(workers=2)
    yield c
    c.close()


def http(cluster, path, method="GET"):
    """(status, body) of a request to the scheduler's HTTP server."""
    req = urllib.request.Request(cluster.http_url + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def api(cluster, path, method="GET"):
    status, body = http(cluster, path, method)
    assert status == 200, f"{method} {path}: {status} {body}"
    return json.loads(body)


def sql(cluster, data, query):
    args = [binary("keel"), "sql", "--scheduler", cluster.url, "--table", f"t={data}/t",
            "--format", "json", query]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def start_sql(cluster, data, query):
    args = [binary("keel"), "sql", "--scheduler", cluster.url, "--table", f"t={data}/t", query]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def job_of(cluster, query, state=None):
    """The newest job the API lists for this SQL (optionally in this state)."""
    for job in api(cluster, "/api/jobs"):
        if job["sql"] == query and (state is None or job["state"] == state):
            return job
    return None


def wait_for(what, condition, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def parse_metrics(text):
    """Prometheus text exposition, strictly: every sample of a declared family
    and a number. Returns {name{labels}: value}."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if types.get(re.sub(r"_(bucket|sum|count)$", "", name)) == "histogram" else name
        assert family in types, f"sample of an undeclared family: {line!r}"
        assert name.startswith("keel_"), line
        samples[name + (m.group(2) or "")] = float(m.group(3))
    return samples


def test_api_lists_the_job_with_its_profile_and_every_worker(cluster, data):
    before = parse_metrics(http(cluster, "/metrics")[1])
    query = "SELECT k, count(*) AS n, sum(x) AS sx FROM t GROUP BY k ORDER BY k"
    r = sql(cluster, data, query)
    assert r.returncode == 0, r.stderr
    con = duckdb.connect()
    expected = con.execute(query.replace("FROM t", f"FROM read_parquet('{data}/t/*.parquet')")).fetchall()
    assert len(json.loads(r.stdout)) == len(expected)

    job = job_of(cluster, query)
    assert job is not None, api(cluster, "/api/jobs")
    assert job["state"] == "succeeded"
    assert job["tasks_done"] == job["tasks_total"] > 0
    assert job["duration_ms"] >= 0 and job["submitted_at"] > 1.6e12
    detail = api(cluster, f"/api/jobs/{job['id']}")
    profiled = [t for s in detail["profile"]["stages"] for t in s["tasks"]]
    assert len(profiled) == job["tasks_total"]
    assert sum(t["output_rows"] for t in detail["profile"]["stages"][-1]["tasks"]) == len(expected)
    assert "HashAggregate" in detail["plan"] and "actual:" in detail["plan"]
    assert [s["stage"] for s in detail["graph"]] == [s["stage"] for s in detail["stages"]]
    assert any(s["inputs"] for s in detail["graph"]), detail["graph"]

    workers = api(cluster, "/api/workers")
    assert len(workers) == 2
    for w in workers:
        for field in ("id", "address", "flight_address", "cores", "memory_limit_bytes",
                      "memory_used_bytes", "running_tasks", "last_heartbeat_ms"):
            assert field in w, (field, w)
        assert w["cores"] == 2 and w["memory_limit_bytes"] > 0
        assert w["last_heartbeat_ms"] < 5000
        assert w["flight_address"].endswith(w["address"])

    after = parse_metrics(http(cluster, "/metrics")[1])
    assert after["keel_workers"] == 2
    assert after["keel_tasks_succeeded_total"] - before["keel_tasks_succeeded_total"] >= job["tasks_total"]
    assert after['keel_jobs_ended_total{state="succeeded"}'] == before['keel_jobs_ended_total{state="succeeded"}'] + 1
    assert after["keel_job_duration_seconds_count"] == before["keel_job_duration_seconds_count"] + 1
    assert after['keel_job_duration_seconds_bucket{le="+Inf"}'] == after["keel_job_duration_seconds_count"]
    assert after["keel_shuffle_bytes_total"] > before["keel_shuffle_bytes_total"]
    assert sum(v for k, v in after.items() if k.startswith("keel_worker_memory_limit_bytes")) > 0

    tasks = api(cluster, "/api/tasks?since=0")
    ended = [t for t in tasks["tasks"] if t["job"] == job["id"]]
    assert len(ended) == job["tasks_total"] and all(t["state"] == "succeeded" for t in ended)
    assert all(0 <= t["slot"] < 2 and t["start_ms"] <= t["end_ms"] <= tasks["now_ms"] for t in ended)


def test_bad_requests_are_answered_with_errors(cluster):
    status, body = http(cluster, "/api/jobs/no-such-job")
    assert status == 404 and "no-such-job" in json.loads(body)["error"]
    status, body = http(cluster, "/api/jobs/no-such-job/cancel", method="POST")
    assert status == 404 and "no-such-job" in json.loads(body)["error"]
    status, body = http(cluster, "/api/tasks?since=yesterday")
    assert status == 400 and "since" in json.loads(body)["error"]
    assert http(cluster, "/nothing-here")[0] == 404


def test_a_job_cancelled_through_the_api_stops(cluster, data):
    proc = start_sql(cluster, data, LONG_SQL)
    try:
        job = wait_for("the job to run", lambda: job_of(cluster, LONG_SQL, "running"))
        assert api(cluster, f"/api/jobs/{job['id']}/cancel", method="POST") == {"cancelled": True}
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0 and "cancelled" in err, err
        assert api(cluster, f"/api/jobs/{job['id']}")["state"] == "cancelled"
        # Cancelling again changes nothing.
        assert api(cluster, f"/api/jobs/{job['id']}/cancel", method="POST") == {"cancelled": False}
        # Its tasks end, and the workers are free again.
        wait_for("the workers to be idle", lambda: all(w["running_tasks"] == 0 for w in api(cluster, "/api/workers")))
        metrics = parse_metrics(http(cluster, "/metrics")[1])
        assert metrics['keel_jobs_ended_total{state="cancelled"}'] >= 1
    finally:
        if proc.poll() is None:
            proc.kill()


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI"):
        pytest.fail("chromium is missing: scripts/test.sh installs it from the Debian packages under CI")
    pytest.skip("chromium is not installed (scripts/test.sh installs it under CI)")


def test_the_dashboard_shows_workers_and_the_running_job(cluster, data):
    browser = chromium()
    artifacts = ROOT / "target" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    proc = start_sql(cluster, data, LONG_SQL)
    try:
        job = wait_for("the job to run tasks",
                       lambda: (j := job_of(cluster, LONG_SQL, "running")) and j["tasks_running"] > 0 and j)
        flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--virtual-time-budget=4000", "--window-size=1400,1000"]
        dom = subprocess.run(flags + ["--dump-dom", cluster.http_url + "/"], capture_output=True,
                             text=True, timeout=120).stdout
        subprocess.run(flags + [f"--screenshot={artifacts / 'dashboard.png'}", cluster.http_url + "/"],
                       capture_output=True, timeout=120)
        job_page = subprocess.run(flags + ["--dump-dom", f"{cluster.http_url}/#/jobs/{job['id']}"],
                                  capture_output=True, text=True, timeout=120).stdout
    finally:
        proc.kill()
        proc.wait()
    # The rendered page (the script's own text holds templates, so look for rendered rows).
    for w in api(cluster, "/api/workers"):
        assert f'<tr class="worker" data-id="{w["id"]}">' in dom, dom[-3000:]
    row = re.search(rf'<tr class="job" data-id="{re.escape(job["id"])}">(.*?)</tr>', dom, re.S)
    assert row, dom[-3000:]
    assert 'class="state running">running</td>' in row.group(1)
    done, total = map(int, re.search(r'class="progress">(\d+)/(\d+)<', row.group(1)).groups())
    assert total == job["tasks_total"] and 0 <= done < total
    assert re.search(r'<rect class="task running"', dom), "the task stream shows the running tasks"
    assert (artifacts / "dashboard.png").stat().st_size > 10_000
    # The job page: its stage graph and plan.
    assert len(re.findall(r'<g class="stage"><rect x="\d', job_page)) == len(job["stages"])
    assert "HashJoin" in job_page


def test_logs_carry_the_task_ids_into_the_task_body(data, tmp_path):
    """A spilling sort logs from inside the task's blocking body: the line
    carries the task's span (job, stage, task, attempt); the scheduler's
    reports are logged in the same span."""
    c = Cluster(workers=1, worker_args=["--memory-limit", "1MiB"], log_dir=tmp_path)
    try:
        r = sql(c, data, "SELECT id, s, x FROM t ORDER BY s, x, id")
        assert r.returncode == 0, r.stderr
    finally:
        c.close()
    worker = (tmp_path / "keel-worker-0.log").read_text()
    spilled = [l for l in worker.splitlines() if "sort spilled" in l]
    assert spilled, worker[-2000:]
    assert re.search(r"task\{job=job-\S+ stage=\d+ task=\d+ attempt=\d+\}", spilled[0]), spilled[0]
    scheduler = (tmp_path / "keel-scheduler.log").read_text()
    assert re.search(r"task\{job=job-\S+ stage=\d+ task=\d+ attempt=\d+\}.*task succeeded", scheduler), scheduler[-2000:]
