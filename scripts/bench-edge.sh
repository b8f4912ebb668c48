#!/usr/bin/env bash
# The edge worker under `wrangler dev`, measured against itself in one run (local workerd is far
# slower than Cloudflare's network, so what counts is the ratio to a trivial route of the same
# build):
#   - the bundle: build/index_bg.wasm and index.js, raw and gzipped;
#   - wrk (one thread, $CONNS connections, $SECONDS_EACH s each): the trivial route
#     (GET /_qg/v1/healthz), joins into a paused room, status polls of a waiting visitor, and the
#     Durable Object calls each made (from the worker's own counters);
#   - the scheduler's Durable Object calls per tick, for rooms of 4 and 8 shards;
#   - k6/entry-scale.js (the seed's scenario, scaled) at rising peak rates, each against a fresh
#     `wrangler dev`, until one fails: the last that held with 100 % success and no dropped
#     iterations is the edge's rate here. (A fresh one each time: once overloaded, wrangler dev's
#     own proxy fails requests for a while after.)
# The origin's scheduler drives the edge throughout, as it would in production. Results go to
# bench-out/edge-*.
#
#   scripts/bench-edge.sh [PEAK_RATES...]   (default: 100 200 300 400 500 600 800)
#   scripts/bench-edge.sh none              (the bundle, wrk and ticks only; no k6)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/targets.sh

conns=${CONNS:-32}
seconds_each=${SECONDS_EACH:-15}
peak_rates=("${@:-100 200 300 400 500 600 800}")
read -r -a peak_rates <<< "${peak_rates[*]}"

ensure_k6
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
mkdir -p bench-out target
build_target edge
out=bench-out/edge-summary.txt
: > "$out"
say() { echo "$*" | tee -a "$out"; }

say "# queuegate edge under wrangler dev, $(date -u +%Y-%m-%d)"
say "bundle: index_bg.wasm $(stat -c %s build/index_bg.wasm) bytes ($(gzip -9 -c build/index_bg.wasm | wc -c) gzipped), index.js $(stat -c %s build/index.js) bytes ($(gzip -9 -c build/index.js | wc -c) gzipped)"

trap stop_target EXIT
# wrangler dev with fresh storage and the origin's scheduler driving it (scripts/targets.sh).
start_target edge bench-out/edge-wrk
base="$TARGET_URL/_qg/v1"
admin() { curl -fsS -H "authorization: Bearer $TARGET_ADMIN_KEY" "$@"; }

# The worker's Durable Object calls by kind, as "kind count" lines.
object_calls() {
  curl -fsS "$base/metrics" | sed -n 's/^queuegate_store_calls_total{kind="\([a-z_]*\)"} \([0-9]*\)$/\1 \2/p'
}
calls_of() {  # calls_of <before file> <after file> <kind>
  local before after
  before=$(awk -v k="$3" '$1 == k {print $2}' "$1")
  after=$(awk -v k="$3" '$1 == k {print $2}' "$2")
  echo $(( ${after:-0} - ${before:-0} ))
}

lua=$(mktemp -d)
printf '%s\n' 'wrk.method = "POST"' 'wrk.headers["Content-Type"] = "application/json"' \
  'wrk.body = ""' > "$lua/join.lua"

# phase <name> <wrk args...>: runs wrk, prints requests/s and keeps the Durable Object calls.
phase() {
  local name=$1
  shift
  object_calls > "$lua/before"
  wrk -t1 -c"$conns" -d"${seconds_each}s" --latency "$@" > "bench-out/edge-wrk-$name.txt"
  object_calls > "$lua/after"
  local rps requests errors
  rps=$(awk '/^Requests\/sec/ {print $2}' "bench-out/edge-wrk-$name.txt")
  requests=$(awk '/requests in/ {print $1}' "bench-out/edge-wrk-$name.txt")
  errors=$(awk '/Non-2xx/ {print $NF}' "bench-out/edge-wrk-$name.txt")
  eval "rps_$name=$rps"
  say "$name: $rps requests/s ($requests requests, ${errors:-0} non-2xx), p50 $(awk '$1 == "50%" {print $2}' "bench-out/edge-wrk-$name.txt"), p99 $(awk '$1 == "99%" {print $2}' "bench-out/edge-wrk-$name.txt")"
  local kinds
  kinds=$(cat "$lua/before" "$lua/after" | awk '{print $1}' | sort -u)
  for kind in $kinds; do
    local n
    n=$(calls_of "$lua/before" "$lua/after" "$kind")
    [ "$n" -gt 0 ] && say "  Durable Object calls, $kind: $n ($(python3 -c "print(f'{$n / max($requests, 1):.3f}')") per request)"
  done
  return 0
}

say ""
say "## wrk: $conns connections, ${seconds_each} s each"
admin -X PUT "$base/admin/rooms/bench" -d '{"max_active":1000,"admit_per_minute":6000,"shards":4}' > /dev/null
admin -X POST "$base/admin/rooms/bench/pause" > /dev/null
phase trivial "$base/healthz"
phase join -s "$lua/join.lua" "$base/rooms/bench/join"
# A visitor at the back of the queue, once the scheduler has published it.
ticket=$(curl -fsS -X POST "$base/rooms/bench/join" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')
sleep 2.5
position=$(curl -fsS -H "authorization: Bearer $ticket" "$base/rooms/bench/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["position"])')
say "polling visitor at position $position"
phase poll -H "authorization: Bearer $ticket" "$base/rooms/bench/status"
phase trivial_again "$base/healthz"
# The trivial route runs before and after: the ratios are against the mean of the two.
say "ratios to the trivial route (mean of before and after): joins $(python3 -c "print(f'{2 * $rps_join / ($rps_trivial + $rps_trivial_again):.2f}')"), polls $(python3 -c "print(f'{2 * $rps_poll / ($rps_trivial + $rps_trivial_again):.2f}')")"

say ""
say "## The scheduler's Durable Object calls per tick (1 s ticks), rooms of 4 and 8 shards"
# Each tick the scheduler takes the lease once; its requests for it count the ticks.
ticks() {
  curl -fsS "$base/metrics" | sed -n 's|^queuegate_http_requests_total{route="/_qg/v1/admin/lease",status="200"} \([0-9]*\)$|\1|p'
}
per_tick() {  # per_tick <label>: 20 s of ticks with the rooms as they are
  object_calls > "$lua/before"
  local t0 t1
  t0=$(ticks)
  sleep 20
  object_calls > "$lua/after"
  t1=$(ticks)
  local n=$(( t1 - t0 ))
  say "$1: $n ticks; per tick: $(for kind in scheduler lease registry_read; do
    printf '%s %s, ' "$kind" "$(python3 -c "print(f'{$(calls_of "$lua/before" "$lua/after" "$kind") / max($n, 1):.2f}')")"
  done)"
}
per_tick "one room of 4 shards"
admin -X PUT "$base/admin/rooms/bench8" -d '{"max_active":1000,"admit_per_minute":6000,"shards":8}' > /dev/null
per_tick "rooms of 4 and 8 shards"

stop_target
[ "${peak_rates[0]}" = none ] && exit 0

say ""
say "## k6/entry-scale.js: 10 s at a fifth of the peak, then 30 s at the peak, user ids"
# wrangler dev's own proxy now and then fails a request with its 503 "Your worker restarted
# mid-request" (the worker logs nothing for it), so a rate gets a second try before it counts as
# not held.
held_rate=none
for rate in "${peak_rates[@]}"; do
  for attempt in 1 2; do
    start_target edge "bench-out/edge-entry-$rate"
    warm=$(( rate / 5 > 0 ? rate / 5 : 1 ))
    set +e
    GOGC=400 k6 run --quiet -e BASE_URL="$TARGET_URL" -e ROOM=entry-scale \
      -e ADMIN_KEY="$TARGET_ADMIN_KEY" -e WARM_RATE="$warm" -e WARM_S=10 -e PEAK_RATE="$rate" -e PEAK_S=30 \
      -e P95_MS=60000 -e P99_MS=60000 -e MAX_VUS=300 \
      --summary-export "bench-out/edge-entry-$rate.json" k6/entry-scale.js > "bench-out/edge-entry-$rate.txt" 2>&1
    held=$?
    set -e
    stop_target
    python3 - "$rate" "bench-out/edge-entry-$rate.json" "$attempt" <<'EOF' | tee -a "$out"
import json, sys
rate, path, attempt = sys.argv[1], sys.argv[2], sys.argv[3]
m = json.load(open(path))["metrics"]
d = m["http_req_duration"]
checks = m["checks"]
dropped = m.get("dropped_iterations", {}).get("count", 0)
sent = checks["passes"] + checks["fails"]
print(f"peak {rate}/s (try {attempt}): {checks['passes']} of {sent} joins succeeded ({100 * checks['passes'] / max(sent, 1):.2f} %), "
      f"{dropped} dropped, p50 {d['med']:.1f} ms, p95 {d['p(95)']:.1f} ms, p99 {d['p(99)']:.1f} ms, max {d['max']:.0f} ms")
EOF
    [ "$held" -eq 0 ] && break
  done
  [ "$held" -eq 0 ] || break
  held_rate=$rate
done
say "highest peak rate held with 100 % success and nothing dropped: $held_rate joins/s"
