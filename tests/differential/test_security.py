"""Connecting and protecting, on real processes: the shared token on the
scheduler, on a worker's Flight port, on shuffle fetches and on Flight SQL;
Flight SQL from Python through ADBC against DuckDB's answers; TLS on a
certificate authority made here; --allow-path refusing paths outside its
roots."""

import json
import os
import subprocess
import urllib.error
import urllib.request

import duckdb
import pytest

from conftest import Cluster, binary

TOKEN = "k33l-s3cret-token"
QUERY = "SELECT k, count(*) AS n, sum(x) AS sx FROM t GROUP BY k ORDER BY k"


def keel(cluster, data, query, env=None, args=()):
    cmd = [binary("keel"), "sql", "--scheduler", cluster.url, "--table", f"t={data}/t", "--format", "json",
           *args, query]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def expected(data, query=QUERY):
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{data}/t/*.parquet')")
    return con.execute(query).fetchall()


def rows(stdout):
    return [tuple(r.values()) for r in json.loads(stdout)]


def close(a, b):
    return len(a) == len(b) and all(
        x == y or (isinstance(x, float) and abs(x - y) <= 1e-9 * max(1.0, abs(y))) for ra, rb in zip(a, b)
        for x, y in zip(ra, rb))


def no_token_env():
    return {k: v for k, v in os.environ.items() if k != "KEEL_AUTH_TOKEN"}


@pytest.fixture(scope="module")
def guarded(data):
    """A cluster whose every process holds the token; shuffles go between workers."""
    c = Cluster(workers=2, env={"KEEL_AUTH_TOKEN": TOKEN},
                scheduler_args=["--broadcast-bytes", "0", "--split-bytes", "4KiB", "--task-bytes", "16KiB",
                                "--table", f"t={data}/t"])
    yield c
    c.close()


def test_the_right_token_runs_queries_across_workers(guarded, data, tmp_path):
    r = keel(guarded, data, QUERY, env={**os.environ, "KEEL_AUTH_TOKEN": TOKEN})
    assert r.returncode == 0, r.stderr
    assert close(rows(r.stdout), expected(data))
    # The token from a file does the same.
    r = keel(guarded, data, "SELECT count(*) AS n FROM t a JOIN t b ON a.id = b.id", env=no_token_env(),
             args=["--auth-token-file", str(token_file(tmp_path))])
    assert r.returncode == 0, r.stderr
    assert rows(r.stdout) == [(20000,)]


def token_file(dir):
    path = dir / "token"
    path.write_text(TOKEN + "\n")
    return path


def test_missing_and_wrong_tokens_are_refused_by_the_scheduler(guarded, data):
    r = keel(guarded, data, QUERY, env=no_token_env())
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert "authentication failed: missing token" in r.stderr, r.stderr
    r = keel(guarded, data, QUERY, env={**os.environ, "KEEL_AUTH_TOKEN": "not-the-token"})
    assert r.returncode == 1 and "authentication failed: wrong token" in r.stderr, r.stderr
    # Health stays open for probes.
    health = subprocess.run([binary("keel"), "health", "--worker", "http://" + guarded.worker_addresses[0]],
                            capture_output=True, text=True, env=no_token_env())
    assert health.returncode == 0, health.stderr


def test_a_workers_flight_port_requires_the_token(guarded):
    flight = pytest.importorskip("pyarrow.flight")
    client = flight.connect("grpc://" + guarded.worker_addresses[0])
    ticket = flight.Ticket(b"not a ticket")
    with pytest.raises(flight.FlightUnauthenticatedError, match="missing token"):
        client.do_get(ticket).read_all()
    wrong = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer nope")])
    with pytest.raises(flight.FlightUnauthenticatedError, match="wrong token"):
        client.do_get(ticket, wrong).read_all()
    # With the token the call gets through to the service, which refuses the ticket itself.
    right = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
    with pytest.raises(Exception, match="bad ticket") as refused:
        client.do_get(ticket, right).read_all()
    assert not isinstance(refused.value, flight.FlightUnauthenticatedError), refused.value


def test_cancelling_over_http_requires_the_token(guarded):
    req = urllib.request.Request(guarded.http_url + "/api/jobs/job-1/cancel", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 401 and "missing token" in refused.value.read().decode()
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with pytest.raises(urllib.error.HTTPError) as unknown:
        urllib.request.urlopen(req, timeout=10)
    assert unknown.value.code == 404  # past the token: the job is not known


def adbc():
    try:
        import adbc_driver_flightsql.dbapi as dbapi
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("adbc-driver-flightsql is missing: scripts/test.sh installs it")
        pytest.skip("adbc-driver-flightsql is not installed (scripts/test.sh installs it)")
    return dbapi


def flight_sql(cluster, token):
    dbapi = adbc()
    uri = cluster.url.replace("http://", "grpc://").replace("https://", "grpc+tls://")
    kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {token}"} if token else {}
    return dbapi.connect(uri, db_kwargs=kwargs)


def test_flight_sql_answers_like_duckdb(guarded, data):
    with flight_sql(guarded, TOKEN) as conn:
        cur = conn.cursor()
        cur.execute(QUERY)
        got = [tuple(r) for r in cur.fetchall()]
        assert close(got, expected(data))
        # A join with shuffles between workers, its partitions streamed through the scheduler.
        cur.execute("SELECT a.s, count(*) AS n FROM t a JOIN t b ON a.id = b.id GROUP BY a.s ORDER BY a.s NULLS FIRST")
        assert cur.fetch_arrow_table().num_rows == len(expected(data, "SELECT DISTINCT s FROM t"))
        # A prepared statement (no parameters): its schema before it runs.
        cur.adbc_prepare("SELECT id, s FROM t WHERE id < 5 ORDER BY id")
        cur.execute("SELECT id, s FROM t WHERE id < 5 ORDER BY id")
        assert [r[0] for r in cur.fetchall()] == [0, 1, 2, 3, 4]
        # An empty result still has its schema.
        cur.execute("SELECT id FROM t WHERE id < 0")
        table = cur.fetch_arrow_table()
        assert table.num_rows == 0 and table.schema.names == ["id"]
        # Metadata: SqlInfo and the registered tables.
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Keel", info
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        tables = [t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]]
        assert tables == ["t"], objects
        schema = conn.adbc_get_table_schema("t", catalog_filter="keel", db_schema_filter="main")
        assert schema.names[:3] == ["id", "k", "s"]
        # A bad query is an error naming the problem.
        with pytest.raises(Exception, match="nope"):
            cur.execute("SELECT nope FROM t")
        cur.close()


def test_flight_sql_refuses_a_wrong_or_missing_token(guarded):
    for token in ("wrong", None):
        with pytest.raises(Exception, match="(?i)unauthenticated|token"):
            with flight_sql(guarded, token) as conn:
                cur = conn.cursor()
                cur.execute("SELECT 1")
                cur.fetchall()


def test_paths_outside_the_allowed_roots_are_refused(data, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    duckdb.connect().execute(f"COPY (SELECT 1 AS x) TO '{outside}/o.parquet' (FORMAT parquet)")
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "link").symlink_to(outside)
    (inside / "t").symlink_to(data / "t")
    # The workers confine tasks; the scheduler is left open, so the worker's check is what refuses.
    c = Cluster(workers=1, worker_args=["--allow-path", str(inside)])
    try:
        escaped = subprocess.run([binary("keel"), "sql", "--scheduler", c.url, "--format", "json",
                                  f"SELECT count(*) AS n FROM read_parquet('{inside}/t/*.parquet')"],
                                 capture_output=True, text=True, timeout=120)
        # The symlinked data resolves outside `inside` too: refused like any escape.
        assert escaped.returncode == 1 and "outside the allowed paths" in escaped.stderr, escaped.stderr
        for path in (f"{outside}/o.parquet", f"{inside}/link/o.parquet", f"{inside}/../outside/o.parquet"):
            r = subprocess.run([binary("keel"), "sql", "--scheduler", c.url, f"SELECT * FROM read_parquet('{path}')"],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 1, r.stdout
            assert "outside the allowed paths" in r.stderr and str(inside.resolve()) in r.stderr, r.stderr
            assert "after 1 attempts" not in r.stderr and "attempts" not in r.stderr, "refused at once, not retried"
        r = subprocess.run([binary("keel"), "sql", "--scheduler", c.url,
                            f"COPY (SELECT 1 AS x) TO '{outside}/copy' (FORMAT parquet)"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "COPY" not in r.stdout and "outside the allowed paths" in r.stderr, r.stderr
        assert not (outside / "copy").exists()
        r = subprocess.run([binary("keel"), "sql", "--scheduler", c.url,
                            f"COPY (SELECT 1 AS x) TO '{inside}/copy' (FORMAT parquet)"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    finally:
        c.close()
    # The scheduler takes --allow-path too: it refuses while binding, before any task.
    c = Cluster(workers=1, scheduler_args=["--allow-path", str(data)])
    try:
        r = subprocess.run([binary("keel"), "sql", "--scheduler", c.url, f"SELECT * FROM read_parquet('{outside}/o.parquet')"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "outside the allowed paths" in r.stderr, r.stderr
        r = subprocess.run([binary("keel"), "sql", "--scheduler", c.url, "--format", "json",
                            f"SELECT count(*) AS n FROM read_parquet('{data}/t/*.parquet')"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and rows(r.stdout) == [(20000,)], r.stderr
    finally:
        c.close()


def make_ca(dir):
    """A certificate authority and a server certificate for 127.0.0.1, with openssl."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=dir)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=keel test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (dir / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return dir / "ca.pem", dir / "server.pem", dir / "server.key"


def test_a_tls_cluster_runs_end_to_end(data, tmp_path):
    if not subprocess.run(["which", "openssl"], capture_output=True).returncode == 0:
        pytest.skip("openssl is not installed")
    ca, cert, key = make_ca(tmp_path)
    tls = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca)]
    c = Cluster(workers=2, scheme="https", scheduler_args=["--broadcast-bytes", "0", "--split-bytes", "4KiB",
                                                          "--task-bytes", "16KiB", *tls],
                worker_args=tls, client_args=["--tls-ca", str(ca)], env={"KEEL_AUTH_TOKEN": TOKEN})
    try:
        assert c.url.startswith("https://")
        r = keel(c, data, QUERY, env={**os.environ, "KEEL_AUTH_TOKEN": TOKEN}, args=["--tls-ca", str(ca)])
        assert r.returncode == 0, r.stderr
        assert close(rows(r.stdout), expected(data))
        # Without the CA the client cannot trust the scheduler, and says what to give.
        r = keel(c, data, QUERY, env={**os.environ, "KEEL_AUTH_TOKEN": TOKEN})
        assert r.returncode == 1 and "--tls-ca" in r.stderr, r.stderr
        # Plain HTTP/2 to a TLS port gets nowhere.
        plain = c.url.replace("https://", "http://")
        r = subprocess.run([binary("keel"), "health", "--scheduler", plain], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "KEEL_AUTH_TOKEN": TOKEN})
        assert r.returncode == 1, r.stdout
    finally:
        c.close()
