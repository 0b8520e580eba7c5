"""S3 as Keel's storage, against a local S3 server (moto): story 1 read from
and written to S3 equal to DuckDB's answer over the same data on disk; globs
and prefixes; an output that fails leaves no object; clear errors."""

import os
import socket
import subprocess

import duckdb
import pytest

from conftest import Cluster, binary

STORY1 = ("SELECT df2_group, bucket, group1, group2, group3, group4, sum(value) AS value "
          "FROM df1 JOIN df2 USING (key) GROUP BY df2_group, bucket, group1, group2, group3, group4")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1, a bucket holding story 1, and the
    variables that point Keel and boto3 at it."""
    try:
        from moto.server import ThreadedMotoServer
        import boto3
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("moto[server] and boto3 are missing: scripts/test.sh installs them")
        pytest.skip("moto[server] / boto3 are not installed (scripts/test.sh installs them)")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "keel-test",
        "AWS_SECRET_ACCESS_KEY": "keel-test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ALLOW_HTTP": "true",
    }
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    client.create_bucket(Bucket="lake")
    local = tmp_path_factory.mktemp("story1")
    r = subprocess.run([binary("keel"), "datagen", "imbalanced-join", "--scale", "0.0001", "--out", str(local)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for table in ("df1", "df2"):
        for f in sorted((local / table).glob("*.parquet")):
            client.upload_file(str(f), "lake", f"story1/{table}/{f.name}")
    yield {"env": env, "client": client, "local": local}
    server.stop()


@pytest.fixture(scope="module")
def cluster(s3):
    c = Cluster(workers=2, env=s3["env"], scheduler_args=["--broadcast-bytes", "0"])
    yield c
    c.close()


def keel(cluster, s3, *args):
    return subprocess.run([binary("keel"), "sql", "--scheduler", cluster.url, *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **s3["env"]})


def objects(s3, prefix):
    listed = s3["client"].list_objects_v2(Bucket="lake", Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def totals(con, where):
    return con.execute(f"SELECT count(*), sum(value) FROM read_parquet('{where}')").fetchone()


def test_story1_from_and_to_s3_equals_duckdb(cluster, s3, tmp_path):
    r = keel(cluster, s3, "--table", "df1=s3://lake/story1/df1/", "--table", "df2=s3://lake/story1/df2/*.parquet",
             f"COPY ({STORY1}) TO 's3://lake/out/story1' (FORMAT parquet)")
    assert r.returncode == 0, r.stderr
    written = objects(s3, "out/story1/")
    assert written and all(k.endswith(".parquet") and "/part-" in k for k in written), written
    for key in written:
        s3["client"].download_file("lake", key, str(tmp_path / key.rsplit("/", 1)[1]))
    con = duckdb.connect()
    con.execute(f"CREATE VIEW df1 AS SELECT * FROM read_parquet('{s3['local']}/df1/*.parquet')")
    con.execute(f"CREATE VIEW df2 AS SELECT * FROM read_parquet('{s3['local']}/df2/*.parquet')")
    want = con.execute(f"SELECT count(*), sum(value) FROM ({STORY1})").fetchone()
    got = totals(con, f"{tmp_path}/*.parquet")
    assert got[0] == want[0] and abs(got[1] - want[1]) <= 1e-6 * abs(want[1]), (got, want)


def test_reading_s3_with_a_glob_and_results_to_the_client(cluster, s3):
    r = keel(cluster, s3, "--format", "csv",
             "SELECT count(*) AS n, sum(value) AS v FROM read_parquet('s3://lake/story1/df1/*.parquet')")
    assert r.returncode == 0, r.stderr
    n, v = r.stdout.strip().splitlines()[1].split(",")
    want = duckdb.connect().execute(
        f"SELECT count(*), sum(value) FROM read_parquet('{s3['local']}/df1/*.parquet')").fetchone()
    assert int(n) == want[0] and abs(float(v) - want[1]) <= 1e-6 * abs(want[1])


def test_a_failed_output_leaves_no_object(cluster, s3):
    r = keel(cluster, s3, "--table", "df1=s3://lake/story1/df1/",
             "COPY (SELECT key, key % (key - key) AS boom FROM df1) TO 's3://lake/out/failed' (FORMAT parquet)")
    # A modulo by zero fails the task; its upload is abandoned.
    assert r.returncode == 1 and "Division by zero" in r.stderr, r.stderr
    assert objects(s3, "out/failed/") == [], objects(s3, "out/failed/")


def test_s3_errors_name_the_problem(cluster, s3):
    r = keel(cluster, s3, "SELECT * FROM read_parquet('s3://lake/nothing/here/*.parquet')")
    assert r.returncode == 1 and "s3://lake/nothing/here/*.parquet" in r.stderr, r.stderr
    r = keel(cluster, s3, "SELECT * FROM read_parquet('s3://no-such-bucket/x.parquet')")
    assert r.returncode == 1 and "no-such-bucket" in r.stderr, r.stderr
