"""`keel mixture fit` / `inverse` on real processes: known mixtures are
recovered, the log-likelihood is no worse than scikit-learn's
GaussianMixture on the same data (and is what the model really scores),
the inverse of the transform is exact to rounding with NULLs kept, a fit
killed between columns resumes without touching finished models, and bad
input is refused naming the column."""

import json
import math
import signal
import subprocess
import time

import duckdb
import numpy as np
import pytest
from sklearn import mixture

from conftest import Cluster, binary

ROWS = 200_000
# column: [(weight, mean, std)]
TRUTH = {
    "a": [(0.3, -5.0, 1.0), (0.5, 0.0, 0.5), (0.2, 8.0, 2.0)],
    "b": [(0.7, 100.0, 10.0), (0.3, 200.0, 5.0)],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    dir = tmp_path_factory.mktemp("mixture")
    con = duckdb.connect()
    con.execute("SELECT setseed(0.25)")
    con.execute(f"""
        COPY (
          WITH r AS (SELECT i, random() AS u, sqrt(-2 * ln(random())) * cos(2 * pi() * random()) AS z,
                            random() AS v, sqrt(-2 * ln(random())) * cos(2 * pi() * random()) AS z2
                     FROM range({ROWS}) t(i))
          SELECT i AS id,
                 CASE WHEN u < 0.3 THEN -5 + z WHEN u < 0.8 THEN 0.5 * z ELSE 8 + 2 * z END AS a,
                 CASE WHEN i % 97 = 0 THEN NULL WHEN v < 0.7 THEN 100 + 10 * z2 ELSE 200 + 5 * z2 END AS b,
                 'x' || (i % 3) AS s,
                 CAST(NULL AS DOUBLE) AS nothing
          FROM r ORDER BY i) TO '{dir}/data' (FORMAT parquet, PER_THREAD_OUTPUT, ROW_GROUP_SIZE 20000)""")
    con.execute(f"COPY (SELECT 1.0 AS a WHERE false) TO '{dir}/empty.parquet' (FORMAT parquet)")
    con.close()
    return dir


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(workers=2)
    yield c
    c.close()


def keel(cluster, *args, timeout=600):
    return subprocess.run([binary("keel"), "mixture", *args, "--scheduler", cluster.url],
                          capture_output=True, text=True, timeout=timeout)


def load(out, column):
    with open(out / column / "model.json") as f:
        return json.load(f)


def values(data, column):
    con = duckdb.connect()
    xs = con.execute(f"SELECT {column} FROM read_parquet('{data}/data/*.parquet') WHERE {column} IS NOT NULL").fetchall()
    return np.array([x[0] for x in xs])


def mean_log_likelihood(model, xs):
    w, m, s = (np.array(model[k]) for k in ("weights", "means", "stds"))
    dens = w * np.exp(-0.5 * ((xs[:, None] - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
    return float(np.mean(np.log(dens.sum(axis=1))))


def test_known_mixtures_are_recovered(cluster, data, tmp_path):
    for column, truth in TRUTH.items():
        out = tmp_path / column
        r = keel(cluster, "fit", f"{data}/data", "--columns", column, "--out", str(out),
                 "--max-modes", str(len(truth)), "--seed", "3")
        assert r.returncode == 0, r.stderr
        model = load(out, column)
        assert model["column"] == column and model["rows"] == len(values(data, column))
        fitted = sorted(zip(model["means"], model["weights"], model["stds"]))
        for (mean, weight, std), (w, m, s) in zip(fitted, sorted(truth, key=lambda t: t[1])):
            assert abs(mean - m) < 0.05 * s + 0.05, (column, fitted)
            assert abs(weight - w) < 0.01, (column, fitted)
            assert abs(std - s) < 0.05 * s, (column, fitted)


def test_log_likelihood_matches_the_model_and_beats_scikit_learn(cluster, data, tmp_path):
    out = tmp_path / "fit"
    r = keel(cluster, "fit", f"{data}/data", "--columns", "a,b", "--keep", "id", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "a: " in r.stdout and "(fitted)" in r.stdout, r.stdout
    for column in ("a", "b"):
        model = load(out, column)
        xs = values(data, column)
        assert 1 <= len(model["weights"]) <= 10 and min(model["weights"]) >= 0.005
        assert abs(sum(model["weights"]) - 1) < 1e-9
        assert abs(mean_log_likelihood(model, xs) - model["log_likelihood"]) < 1e-6, column
        reference = mixture.GaussianMixture(n_components=len(TRUTH[column]), random_state=0).fit(xs[:, None])
        assert model["log_likelihood"] >= reference.score(xs[:, None]) - 1e-3, (column, model, reference.score(xs[:, None]))
    # Deterministic: the same seed gives the same models.
    again = tmp_path / "again"
    r = keel(cluster, "fit", f"{data}/data", "--columns", "a,b", "--out", str(again))
    assert r.returncode == 0, r.stderr
    assert load(out, "a") == load(again, "a") and load(out, "b") == load(again, "b")


def test_inverse_round_trip_is_exact_and_keeps_nulls(cluster, data, tmp_path):
    out, back = tmp_path / "fit", tmp_path / "back"
    r = keel(cluster, "fit", f"{data}/data", "--columns", "a,b", "--keep", "id", "--out", str(out), "--max-modes", "4")
    assert r.returncode == 0, r.stderr
    con = duckdb.connect()
    types = dict((c[0], c[1]) for c in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{out}/transformed/*.parquet')").fetchall())
    assert types == {"id": "BIGINT", "a_mode": "INTEGER", "a_norm": "DOUBLE", "b_mode": "INTEGER", "b_norm": "DOUBLE"}, types
    r = keel(cluster, "inverse", str(out), "--out", str(back))
    assert r.returncode == 0, r.stderr
    [(rows, da, db, nulls_moved, b_nulls)] = con.execute(f"""
        SELECT count(*), max(abs(o.a - i.a)), max(abs(o.b - i.b) / abs(o.b)),
               sum(CASE WHEN (o.b IS NULL) <> (i.b IS NULL) THEN 1 ELSE 0 END), count(*) - count(i.b)
        FROM read_parquet('{data}/data/*.parquet') o JOIN read_parquet('{back}/*.parquet') i USING (id)""").fetchall()
    assert rows == ROWS and nulls_moved == 0 and b_nulls > 0
    assert da < 1e-12 and db < 1e-14, (da, db)


def test_a_fit_killed_between_columns_resumes(cluster, data, tmp_path):
    out = tmp_path / "fit"
    # Killed after column a was saved and before b was fitted.
    r = keel(cluster, "fit", f"{data}/data", "--columns", "a", "--out", str(out))
    assert r.returncode == 0, r.stderr
    finished = (out / "a" / "model.json").read_bytes()
    # A torn write is never a model: a temporary file left behind is ignored.
    (out / "b").mkdir()
    (out / "b" / ".model.json.tmp").write_text('{"column": "b", "weig')
    r = keel(cluster, "fit", f"{data}/data", "--columns", "a,b", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("a: ") and "(resumed)" in lines[0], r.stdout
    assert lines[1].startswith("b: ") and "(fitted)" in lines[1], r.stdout
    assert (out / "a" / "model.json").read_bytes() == finished
    assert load(out, "b")["column"] == "b"
    assert (out / "transformed").is_dir()


@pytest.mark.parametrize("after", [0.5, 2.0, 4.0])
def test_a_fit_killed_at_any_moment_leaves_whole_models(cluster, data, tmp_path, after):
    out = tmp_path / "fit"
    p = subprocess.Popen([binary("keel"), "mixture", "fit", f"{data}/data", "--columns", "a,b", "--out", str(out),
                          "--scheduler", cluster.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    p.send_signal(signal.SIGKILL)
    p.wait()
    saved = {}
    for column in ("a", "b"):
        path = out / column / "model.json"
        if path.exists():
            saved[column] = path.read_bytes()
            assert json.loads(saved[column])["column"] == column
    r = keel(cluster, "fit", f"{data}/data", "--columns", "a,b", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    for column, before in saved.items():
        assert (out / column / "model.json").read_bytes() == before
    assert r.stdout.count("(resumed)") == len(saved), r.stdout


@pytest.mark.parametrize("columns, source, message", [
    ("a,missing", "data", "column missing is not in the input"),
    ("s", "data", "column s is Utf8, not a number"),
    ("nothing", "data", "column nothing has no non-NULL values"),
    ("a", "empty.parquet", "the input has no rows"),
])
def test_bad_input_is_refused_naming_the_column(cluster, data, tmp_path, columns, source, message):
    r = keel(cluster, "fit", f"{data}/{source}", "--columns", columns, "--out", str(tmp_path / "x"))
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert not (tmp_path / "x" / "a" / "model.json").exists()
