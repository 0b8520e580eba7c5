"""`keel profile` against Theil's U computed in Python from DuckDB's exact
counts: every ordered pair, NULL as a value, columns chosen by distinct
count or named; the SVG heat map; clear errors."""

import json
import math
import subprocess
from collections import Counter

import duckdb
import pytest

from conftest import binary


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    dir = tmp_path_factory.mktemp("profile")
    con = duckdb.connect()
    con.execute(f"""
        COPY (SELECT i AS id,
                     i % 7 AS a,
                     (i % 7) // 2 AS b,
                     CASE WHEN i % 11 = 0 THEN NULL ELSE 'c' || (i % 5) END AS c,
                     (i * 31 % 13 < 3) AS d,
                     'const' AS e
              FROM range(5000) r(i))
        TO '{dir}/survey.parquet' (FORMAT parquet)""")
    con.close()
    return dir


def theils_u(dir, columns):
    con = duckdb.connect()
    rows = con.execute(f"SELECT {', '.join(f'CAST({c} AS VARCHAR)' for c in columns)} "
                       f"FROM read_parquet('{dir}/survey.parquet')").fetchall()
    n = len(rows)
    out = {}
    for i, x in enumerate(columns):
        nx = Counter(r[i] for r in rows)
        hx = -sum(c / n * math.log(c / n) for c in nx.values())
        for j, y in enumerate(columns):
            if i == j:
                continue
            ny = Counter(r[j] for r in rows)
            nxy = Counter((r[i], r[j]) for r in rows)
            hxy = sum(c / n * math.log(ny[yv] / c) for (_, yv), c in nxy.items())
            out[(x, y)] = 1.0 if hx == 0 else (hx - hxy) / hx
    return out


def profile(cluster, *args):
    return subprocess.run([binary("keel"), "profile", "--scheduler", cluster.url, *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_profile_matches_theils_u(two_shapes, survey, tmp_path):
    heatmap = tmp_path / "u.svg"
    r = profile(two_shapes, f"{survey}/survey.parquet", "--format", "json", "--heatmap", heatmap,
                "--max-distinct", "100")
    assert r.returncode == 0, r.stderr
    got = {(p["x"], p["y"]): p["u"] for p in json.loads(r.stdout)}
    # id has 5000 values: left out; e is constant: U(e|y) = 1, U(x|e) = 0.
    want = theils_u(survey, ["a", "b", "c", "d", "e"])
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k
    assert got[("b", "a")] == pytest.approx(1.0) and got[("a", "b")] < 1.0
    svg = heatmap.read_text()
    assert svg.startswith("<svg") and svg.count("<rect") == 25

    r = profile(two_shapes, "t", "--table", f"t={survey}/survey.parquet", "--columns", "c,a", "--format", "csv")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "x,y,u" and len(lines) == 3
    want = theils_u(survey, ["c", "a"])
    for line in lines[1:]:
        x, y, u = line.split(",")
        assert float(u) == pytest.approx(want[(x, y)], abs=1e-9)

    r = profile(two_shapes, f"{survey}/survey.parquet", "--columns", "a,b,d")
    assert r.returncode == 0 and "Theil's U(x|y) over 5000 rows" in r.stdout, r.stderr


def test_profile_errors(two_shapes, survey):
    r = profile(two_shapes, f"{survey}/survey.parquet", "--max-distinct", "1")
    assert r.returncode != 0 and "fewer than two columns" in r.stderr, r.stderr
    r = profile(two_shapes, f"{survey}/survey.parquet", "--columns", "a,nope")
    assert r.returncode != 0 and "nope" in r.stderr, r.stderr
