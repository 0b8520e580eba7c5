#!/usr/bin/env bash
# Deployment tests.
# - Kubernetes: every manifest, and the kustomize rendering, validated against
#   the Kubernetes schemas in strict mode.
# - Docker (always under CI; skipped with a reason elsewhere if Docker is
#   missing): build keel:dev, bring the compose cluster up, wait for health,
#   run story 1 and compare with DuckDB, run it again while `docker kill`ing a
#   worker and compare again, then `docker-compose down -v` whatever happened.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate 'duckdb>=1.1' 2>&1 | grep -v "as the 'root' user" || true

echo "== Kubernetes manifests"
manifests=(deploy/k8s/namespace.yaml deploy/k8s/configmap.yaml deploy/k8s/data-volume.yaml deploy/k8s/scheduler.yaml deploy/k8s/worker.yaml)
python3 -m kubernetes_validate --strict --quiet "${manifests[@]}"
if command -v kubectl >/dev/null 2>&1; then
  rendered="$(mktemp --suffix=.yaml)"
  kubectl kustomize deploy/k8s > "$rendered"
  grep -q "replicas: 3" "$rendered"
  python3 -m kubernetes_validate --strict --quiet "$rendered"
  rm -f "$rendered"
  echo "manifests and kustomize rendering are valid"
else
  echo "manifests are valid (kubectl not installed: kustomize rendering not checked)"
fi

if ! docker info >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "Docker is required for the deploy tests under CI, and it is not available" >&2
    exit 1
  fi
  echo "SKIP compose cluster tests: Docker is not available on this machine"
  exit 0
fi
compose_cmd=(docker-compose)
command -v docker-compose >/dev/null 2>&1 || compose_cmd=(docker compose)

echo "== image"
deploy/docker/build-image.sh keel:dev
keel="$root/target/x86_64-unknown-linux-gnu/release/keel"

echo "== compose cluster"
export KEEL_DATA="$(mktemp -d)"
# The cluster runs with a shared token; the CLI below reads the same variable.
export KEEL_AUTH_TOKEN="deploy-test-$RANDOM$RANDOM"
compose=("${compose_cmd[@]}" -p keeltest -f deploy/compose/docker-compose.yml)
cleanup() {
  "${compose[@]}" logs --tail 20 >"$KEEL_DATA.log" 2>&1 || true
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$KEEL_DATA"
}
trap cleanup EXIT
"${compose[@]}" up -d

wait_healthy() {
  local deadline=$((SECONDS + 90))
  for svc in scheduler worker1 worker2 worker3; do
    local id; id="$("${compose[@]}" ps -q "$svc")"
    until [ "$(docker inspect --format '{{.State.Health.Status}}' "$id")" = healthy ]; do
      if [ $SECONDS -gt $deadline ]; then
        echo "$svc did not become healthy" >&2
        "${compose[@]}" logs "$svc" | tail -20 >&2
        exit 1
      fi
      sleep 0.5
    done
  done
}
wait_healthy
"$keel" health --scheduler http://127.0.0.1:50050
if KEEL_AUTH_TOKEN=wrong "$keel" health --scheduler http://127.0.0.1:50050 2>/dev/null; then
  echo "the compose cluster accepted a wrong token" >&2
  exit 1
fi

# Data is made inside a container, into the host directory mounted at /data.
docker run --rm -v "$KEEL_DATA:/data" keel:dev datagen imbalanced-join --scale 0.0001 --out /data/story1

query="SELECT df2_group, bucket, group1, group2, group3, group4, sum(value) AS value FROM df1 JOIN df2 USING (key) GROUP BY df2_group, bucket, group1, group2, group3, group4"
expected="$(python3 - "$KEEL_DATA" "$query" <<'PY'
import sys, duckdb
data, q = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"CREATE VIEW df1 AS SELECT * FROM read_parquet('{data}/story1/df1/*.parquet')")
con.execute(f"CREATE VIEW df2 AS SELECT * FROM read_parquet('{data}/story1/df2/*.parquet')")
n, s = con.execute(f"SELECT count(*), sum(value) FROM ({q})").fetchone()
print(n, s)
PY
)"

run_story() {
  "$keel" sql --scheduler http://127.0.0.1:50050 --table df1=/data/story1/df1 --table df2=/data/story1/df2 \
    "COPY ($query) TO '/data/$1' (FORMAT parquet)"
}
check() {
  python3 - "$KEEL_DATA/$1" "$expected" <<'PY'
import sys, duckdb
out, expected = sys.argv[1], sys.argv[2].split()
n, s = duckdb.connect().execute(f"SELECT count(*), sum(value) FROM read_parquet('{out}/*.parquet')").fetchone()
en, es = int(expected[0]), float(expected[1])
ok = n == en and abs(s - es) <= 1e-6 * abs(es)
print(f"{out}: {n} rows, sum {s:.6f}; DuckDB: {en} rows, sum {es:.6f}: {'match' if ok else 'MISMATCH'}")
sys.exit(0 if ok else 1)
PY
}

echo "== story 1 on the compose cluster"
run_story out1
check out1

echo "== the dashboard, API and metrics on the compose cluster"
python3 - <<'PY'
import json, urllib.request
base = "http://127.0.0.1:50080"
get = lambda p: urllib.request.urlopen(base + p, timeout=10).read().decode()
workers = json.loads(get("/api/workers"))
assert len(workers) == 3, workers
jobs = json.loads(get("/api/jobs"))
assert any(j["state"] == "succeeded" and "out1" in j["sql"] for j in jobs), jobs
metrics = get("/metrics")
assert "keel_workers 3" in metrics.splitlines(), metrics
assert "<title>Keel</title>" in get("/")
print(f"dashboard up; {len(workers)} workers and {len(jobs)} jobs in the API; metrics served")
PY

echo "== story 1 again, with a worker killed mid-job"
run_story out2 &
job=$!
deadline=$((SECONDS + 60))
until "$keel" jobs --scheduler http://127.0.0.1:50050 | grep -q "running.*out2"; do
  if [ $SECONDS -gt $deadline ]; then echo "the second job never started" >&2; exit 1; fi
  sleep 0.1
done
docker kill "$("${compose[@]}" ps -q worker2)" >/dev/null
wait "$job"
check out2
echo "deploy tests passed"
