#!/usr/bin/env bash
# Installs what the tests need (pinned, into .tools/ where possible) and runs every test:
# formatting, clippy, the unit and property tests, the conformance suite, the core's wasm32
# build, and a short k6 run of the seed's scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_rust_components
ensure_wasm_target
ensure_k6

log "cargo fmt"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test (unit, property and conformance tests)"
cargo test --workspace --locked
log "the core builds for wasm32-unknown-unknown"
cargo build --locked -p queuegate --target wasm32-unknown-unknown

log "k6 smoke: the seed's scenario, scaled down, against the origin on the embedded store"
cargo build --locked -p queuegate-origin
port=$(free_port)
QUEUEGATE_ADMIN_KEY=smoke-admin QUEUEGATE_LOG=warn \
  ./target/debug/queuegate-origin serve --listen "127.0.0.1:$port" > target/k6-smoke-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
wait_for_http "http://127.0.0.1:$port/_qg/v1/healthz"
# A debug build on a busy CI machine: the latency thresholds are loose, success must be total.
k6 run --quiet -e BASE_URL="http://127.0.0.1:$port" -e ADMIN_KEY=smoke-admin \
  -e WARM_RATE=50 -e WARM_S=2 -e PEAK_RATE=200 -e PEAK_S=3 -e P95_MS=250 -e P99_MS=1000 \
  k6/entry-scale.js
# The thresholds must be able to fail: a room that does not exist fails every check.
if k6 run --quiet -e BASE_URL="http://127.0.0.1:$port" -e ROOM=no-such-room \
  -e WARM_RATE=10 -e WARM_S=1 -e PEAK_RATE=10 -e PEAK_S=1 k6/entry-scale.js > target/k6-negative.log 2>&1; then
  echo "k6 thresholds passed against a missing room: the script checks nothing" >&2
  exit 1
fi
log "all tests passed"
