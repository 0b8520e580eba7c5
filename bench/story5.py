#!/usr/bin/env python3
"""Story 5 benchmark: per-column Gaussian mixtures, fitted, applied and inverted.

Generates 16 M rows (--rows) of an id and two continuous columns with
known modes (a: three, b: two, with NULLs), then times on the embedded
2-worker cluster:

1. `keel mixture fit` of both columns (EM on the cluster) with the
   transform pass it ends with (`DIR/transformed`);
2. `keel mixture inverse`, and checks the round trip;

and, on a 200 k-row sample of each column in the same run, scikit-learn's
GaussianMixture with as many modes as Keel kept (its time per million
rows) and BayesianGaussianMixture as CTGAN configures it (10 modes,
weight concentration 0.001: the story's 50 s per million rows). Both
models' mean log-likelihoods are printed on that sample (which
scikit-learn fitted to, so its own maximum there) and on a held-out
sample of a million other rows.

    python3 bench/story5.py [--rows 16000000] [--workers 2] [--no-build]
"""

import argparse
import json
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

from cluster import fresh_dir, run, setup

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = 200_000


def generate(duckdb, path, rows):
    if (path / ".complete").exists():
        return
    fresh_dir(path)
    con = duckdb.connect()
    con.execute("SELECT setseed(0.5)")
    con.execute(f"""
        COPY (
          WITH r AS (SELECT i, random() AS u, sqrt(-2 * ln(random())) * cos(2 * pi() * random()) AS z,
                            random() AS v, sqrt(-2 * ln(random())) * cos(2 * pi() * random()) AS z2
                     FROM range({rows}) t(i))
          SELECT i AS id,
                 CASE WHEN u < 0.3 THEN -5 + z WHEN u < 0.8 THEN 0.5 * z ELSE 8 + 2 * z END AS a,
                 CASE WHEN i % 97 = 0 THEN NULL WHEN v < 0.7 THEN 100 + 10 * z2 ELSE 200 + 5 * z2 END AS b
          FROM r) TO '{path}' (FORMAT parquet, PER_THREAD_OUTPUT, ROW_GROUP_SIZE 262144)""")
    con.close()
    (path / ".complete").touch()


def score(np, model, xs):
    w, m, s = (np.array(model[k]) for k in ("weights", "means", "stds"))
    dens = w * np.exp(-0.5 * ((xs[:, None] - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
    return float(np.mean(np.log(dens.sum(axis=1))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=16_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", default=str(ROOT / "bench" / "data"))
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    args = ap.parse_args()
    duckdb, bin_dir = setup(ROOT, build=not args.no_build)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "scikit-learn"], check=True, stderr=subprocess.DEVNULL)
    import numpy as np
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
    warnings.filterwarnings("ignore", module="sklearn")

    data = Path(args.data) / f"mixture-{args.rows}"
    print(f"generating {args.rows:,} rows …", flush=True)
    generate(duckdb, data, args.rows)
    out = fresh_dir(Path(args.data) / "out-story5")
    fit_dir, back = out / "fit", out / "back"

    print("keel: mixture fit …", flush=True)
    t0 = time.perf_counter()
    r = run([bin_dir / "keel", "mixture", "fit", data, "--columns", "a,b", "--keep", "id", "--out", fit_dir,
             "--workers", args.workers])
    fit_s = time.perf_counter() - t0
    print(r.stdout.strip())
    print("keel: mixture inverse …", flush=True)
    t0 = time.perf_counter()
    run([bin_dir / "keel", "mixture", "inverse", fit_dir, "--out", back, "--workers", args.workers])
    inverse_s = time.perf_counter() - t0

    con = duckdb.connect()
    [(worst,)] = con.execute(f"""
        SELECT greatest(max(abs(o.a - i.a) / greatest(abs(o.a), 1)), max(abs(o.b - i.b) / greatest(abs(o.b), 1)))
        FROM read_parquet('{data}/*.parquet') o JOIN read_parquet('{back}/*.parquet') i USING (id)""").fetchall()

    print(f"\nstory 5: {args.rows:,} rows × 2 columns, {args.workers} workers (embedded)")
    print(f"keel fit + transform: {fit_s:.2f} s; inverse: {inverse_s:.2f} s; "
          f"worst relative round-trip error {worst:.1e}")
    print(f"{'column':<7} {'modes':>5} {'iter':>5} {'keel LL':>10} {'GMM LL':>10} "
          f"{'keel LL held out':>17} {'GMM LL held out':>16} {'GMM s/M rows':>13} {'BGM s/M rows':>13}")
    for column in ("a", "b"):
        model = json.loads((fit_dir / column / "model.json").read_text())

        def sample(rows, seed, skip=""):
            return np.array([v for (v,) in con.execute(
                f"SELECT {column} FROM read_parquet('{data}/*.parquet') WHERE {column} IS NOT NULL {skip} "
                f"USING SAMPLE {rows} ROWS (reservoir, {seed})").fetchall()])

        xs = sample(SAMPLE, 7, "AND id % 10 <> 3")
        held = sample(1_000_000, 11, "AND id % 10 = 3")
        t0 = time.perf_counter()
        gmm = GaussianMixture(n_components=len(model["weights"]), random_state=0).fit(xs[:, None])
        gmm_s = (time.perf_counter() - t0) / len(xs) * 1e6
        t0 = time.perf_counter()
        BayesianGaussianMixture(n_components=10, weight_concentration_prior=1e-3, max_iter=100,
                                random_state=0).fit(xs[:, None])
        bgm_s = (time.perf_counter() - t0) / len(xs) * 1e6
        print(f"{column:<7} {len(model['weights']):>5} {model['iterations']:>5} {score(np, model, xs):>10.5f} "
              f"{gmm.score(xs[:, None]):>10.5f} {score(np, model, held):>17.5f} {gmm.score(held[:, None]):>16.5f} "
              f"{gmm_s:>13.1f} {bgm_s:>13.1f}")


if __name__ == "__main__":
    main()
