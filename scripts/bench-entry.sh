#!/usr/bin/env bash
# Runs the seed's scenario (k6/entry-scale.js, 310,000 joins in 70 s) against a release build of
# the origin, on this machine, and keeps k6's summary in bench-out/.
#
#   [STORE=memory|redis] scripts/bench-entry.sh [extra k6 -e options...]
#
# STORE=redis starts a redis-server on a free port with an append-only file fsynced every
# second (Redis's usual durable setting) and serves the origin on it.
#
# The server gets one worker thread and a higher priority, k6 runs with GOGC=400: on a 2-core
# machine k6 needs well over a core at 5,000 requests/s and both must share (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_k6
cargo build --release -q -p queuegate-origin
mkdir -p bench-out
port=$(free_port)
admin_key=bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
store_flags=()
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
if [ "${STORE:-memory}" = redis ]; then
  ensure_redis
  redis_port=$(free_port)
  redis_dir=$(mktemp -d)
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$redis_dir" --save "" \
    --appendonly yes --appendfsync everysec > bench-out/entry-redis.log 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  store_flags=(--redis "redis://127.0.0.1:$redis_port")
fi
QUEUEGATE_ADMIN_KEY=$admin_key QUEUEGATE_LOG=warn \
  nice -n -10 ./target/release/queuegate-origin serve --workers 1 --listen 127.0.0.1:$port \
  "${store_flags[@]}" > bench-out/entry-server.log 2>&1 &
server=$!
pids+=($server)
wait_for_http "http://127.0.0.1:$port/_qg/v1/healthz"

cpu_before=$(awk '{print $14+$15}' /proc/$server/stat)
set +e
GOGC=${GOGC:-400} k6 run --quiet \
  -e BASE_URL="http://127.0.0.1:$port" -e ROOM=entry-scale -e ADMIN_KEY="$admin_key" "$@" \
  --summary-export bench-out/entry-scale.json k6/entry-scale.js | tee bench-out/entry-scale.txt
status=${PIPESTATUS[0]}
set -e
cpu_after=$(awk '{print $14+$15}' /proc/$server/stat)
echo "server CPU: $(( (cpu_after - cpu_before) / $(getconf CLK_TCK) )) s"
curl -s "http://127.0.0.1:$port/_qg/v1/metrics" > bench-out/entry-server-metrics.txt
if [ -n "${redis_port:-}" ]; then
  redis-cli -p "$redis_port" info commandstats | grep -E "evalsha|eval" || true
  redis-cli -p "$redis_port" info memory | grep -E "^used_memory:" || true
fi
exit $status
