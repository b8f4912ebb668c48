#!/usr/bin/env bash
# Runs the seed's scenario (k6/entry-scale.js, 310,000 joins in 70 s) against a release build of
# the origin, on this machine, and keeps k6's summary in bench-out/.
#
#   [STORE=memory|redis] scripts/bench-entry.sh [extra k6 -e options...]
#
# STORE=redis starts a redis-server on a free port with an append-only file fsynced every
# second (Redis's usual durable setting) and serves the origin on it.
#
# STORE=balanced is the seed's own topology, scaled to this machine: a Redis Cluster of three
# masters (append-only, fsync every second), INSTANCES origin instances (default 3) on it, and
# nginx in front with the README's configuration (scripts/nginx-conf.py); k6 talks to nginx.
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
servers=()
if [ "${STORE:-memory}" = balanced ]; then
  ensure_redis
  ensure_nginx
  nodes=()
  for _ in 1 2 3; do
    # A cluster node also listens 10,000 ports higher: at most 55535.
    node_port=$(free_port)
    while [ "$node_port" -gt 55535 ]; do node_port=$(free_port); done
    node_dir=$(mktemp -d)
    redis-server --port "$node_port" --bind 127.0.0.1 --dir "$node_dir" --save "" \
      --appendonly yes --appendfsync everysec --cluster-enabled yes \
      --cluster-config-file nodes.conf > "bench-out/entry-redis-$node_port.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do redis-cli -p "$node_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    nodes+=("127.0.0.1:$node_port")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes > /dev/null
  for _ in $(seq 100); do
    redis-cli -p "${nodes[0]##*:}" cluster info | grep -q cluster_state:ok && break
    sleep 0.1
  done
  urls=$(printf 'redis://%s,' "${nodes[@]}")
  instance_ports=()
  for _ in $(seq "${INSTANCES:-3}"); do
    instance_port=$(free_port)
    QUEUEGATE_ADMIN_KEY=$admin_key QUEUEGATE_LOG=warn \
      nice -n -10 ./target/release/queuegate-origin serve --workers 1 \
      --listen "127.0.0.1:$instance_port" --redis-cluster "${urls%,}" \
      --trusted-proxies 127.0.0.1/32 > "bench-out/entry-server-$instance_port.log" 2>&1 &
    pids+=($!)
    servers+=($!)
    instance_ports+=("$instance_port")
    wait_for_http "http://127.0.0.1:$instance_port/_qg/v1/healthz"
  done
  nginx_dir=$(mktemp -d)
  chmod 777 "$nginx_dir"
  scripts/nginx-conf.py "$port" "$nginx_dir" "${instance_ports[@]}" > "$nginx_dir/nginx.conf"
  /usr/sbin/nginx -p "$nginx_dir" -c "$nginx_dir/nginx.conf" > bench-out/entry-nginx.log 2>&1 &
  pids+=($!)
  servers+=($!)
else
  QUEUEGATE_ADMIN_KEY=$admin_key QUEUEGATE_LOG=warn \
    nice -n -10 ./target/release/queuegate-origin serve --workers 1 --listen 127.0.0.1:$port \
    "${store_flags[@]}" > bench-out/entry-server.log 2>&1 &
  pids+=($!)
  servers+=($!)
fi
wait_for_http "http://127.0.0.1:$port/_qg/v1/healthz"

# CPU ticks of the servers and their children (nginx's worker).
cpu() { local total=0 pid; for pid in "${servers[@]}" $(for p in "${servers[@]}"; do pgrep -P "$p"; done); do
  total=$(( total + $(awk '{print $14+$15}' "/proc/$pid/stat") )); done; echo "$total"; }
cpu_before=$(cpu)
set +e
GOGC=${GOGC:-400} k6 run --quiet \
  -e BASE_URL="http://127.0.0.1:$port" -e ROOM=entry-scale -e ADMIN_KEY="$admin_key" "$@" \
  --summary-export bench-out/entry-scale.json k6/entry-scale.js | tee bench-out/entry-scale.txt
status=${PIPESTATUS[0]}
set -e
cpu_after=$(cpu)
echo "server CPU (every instance, and nginx): $(( (cpu_after - cpu_before) / $(getconf CLK_TCK) )) s"
curl -s "http://127.0.0.1:$port/_qg/v1/metrics" > bench-out/entry-server-metrics.txt
if [ -n "${redis_port:-}" ]; then
  redis-cli -p "$redis_port" info commandstats | grep -E "evalsha|eval" || true
  redis-cli -p "$redis_port" info memory | grep -E "^used_memory:" || true
fi
exit $status
