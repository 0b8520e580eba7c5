#!/usr/bin/env bash
# Runs every Keel test: Rust unit and integration tests (real scheduler and
# worker processes), then the differential suite against DuckDB.
set -euo pipefail
cd "$(dirname "$0")/.."

# The reference engine and the test runner, from PyPI.
python3 -m pip install --quiet --disable-pip-version-check 'duckdb>=1.1' 'pytest>=7' 'polars>=1.0' 'datasketches>=5' 'scikit-learn>=1.3' 'pyarrow>=14' 'adbc-driver-flightsql>=1.0' 'moto[server]>=5' 'boto3' 2>&1 | grep -v "running pip as the 'root' user" || true

# A headless browser for the dashboard test, from the Debian packages.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing chromium for the dashboard test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || [ "${CI:-}" != "true" ] || { echo "could not install chromium" >&2; exit 1; }
fi

cargo build --workspace --bins
cargo test --workspace
python3 -m pytest -q tests/differential
if [ -x deploy/test.sh ]; then
  deploy/test.sh
fi
