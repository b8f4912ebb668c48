#!/usr/bin/env bash
# The edge worker's toolchain and build: `scripts/edge.sh build` installs what is missing
# (wasm32 target, wasm-bindgen-cli and worker-build pinned, wrangler from package-lock.json)
# and builds build/index.js + build/index_bg.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
mkdir -p target
case "${1:-build}" in
  tools) ensure_edge_tools ;;
  build) build_edge ;;
  *) echo "usage: scripts/edge.sh [tools|build]" >&2; exit 2 ;;
esac
