#!/usr/bin/env bash
# Builds statically linked release binaries and the image keel:dev FROM scratch.
#   deploy/docker/build-image.sh [TAG]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tag="${1:-keel:dev}"
target=x86_64-unknown-linux-gnu
cd "$root"
# --target keeps build scripts and proc macros dynamic; only our binaries are static.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target "$target" --bins
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
for b in keel keel-scheduler keel-worker; do
  cp "target/$target/release/$b" "$context/"
  strip "$context/$b" 2>/dev/null || true
done
cp deploy/docker/Dockerfile "$context/"
DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" "$context" >/dev/null
echo "built $tag"
