#!/usr/bin/env bash
# The origin on Redis against Redis itself, on this machine, in one run:
#   - memory: Redis's used_memory per waiting visitor at 1,000,000 waiting, with and without
#     user ids (INFO memory before and after);
#   - peak joins per second into a room 1,000,000 deep (wrk), next to redis-benchmark's rate
#     for the same join script;
#   - status polls per second deep in the queue (wrk), with the Redis calls they caused, next to
#     redis-benchmark's rate for the script a poll would need without the mirror.
# Redis runs with an append-only file fsynced every second. Results go to bench-out/redis-*.
# REPLICA=1 gives Redis a replica (on the same machine): joins and leaves are then answered only
# once it has them (WAIT), which is what the joins measure.
#
#   [REPLICA=1] scripts/bench-redis.sh [WAITING]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

waiting=${1:-1000000}
ensure_redis
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q --locked -p queuegate-origin
mkdir -p bench-out
out=bench-out/redis-summary.txt
: > "$out"
say() { echo "$*" | tee -a "$out"; }

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
redis_port=$(free_port)
redis_dir=$(mktemp -d)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$redis_dir" --save "" \
  --appendonly yes --appendfsync everysec > bench-out/redis-server.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
rcli() { redis-cli -p "$redis_port" "$@"; }
if [ "${REPLICA:-0}" = 1 ]; then
  replica_port=$(free_port)
  replica_dir=$(mktemp -d)
  redis-server --port "$replica_port" --bind 127.0.0.1 --dir "$replica_dir" --save "" \
    --appendonly no --replicaof 127.0.0.1 "$redis_port" > bench-out/redis-replica.log 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    redis-cli -p "$replica_port" info replication 2>/dev/null | grep -q 'master_link_status:up' && break
    sleep 0.1
  done
  rcli info replication | grep -q 'connected_slaves:1' || { echo "the replica did not connect" >&2; exit 1; }
fi
wait_calls() { rcli info commandstats | sed -n 's/^cmdstat_wait:calls=\([0-9]*\),.*/\1/p'; }
used_memory() { rcli info memory | awk -F: '/^used_memory:/ {print $2+0}'; }
evalsha_calls() { rcli info commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p'; }
hgetall_calls() { rcli info commandstats | sed -n 's/^cmdstat_hgetall:calls=\([0-9]*\),.*/\1/p'; }

port=$(free_port)
key=bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
QUEUEGATE_ADMIN_KEY=$key QUEUEGATE_LOG=warn ./target/release/queuegate-origin serve \
  --listen "127.0.0.1:$port" --redis "redis://127.0.0.1:$redis_port" > bench-out/redis-origin.log 2>&1 &
pids+=($!)
base="http://127.0.0.1:$port/_qg/v1"
wait_for_http "$base/healthz"
admin() { curl -fsS -H "authorization: Bearer $key" "$@"; }

lua=$(mktemp -d)
cat > "$lua/join.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = ""
EOF
# A wrk script joining with user ids never used before (wrk's Lua random numbers repeat from
# run to run, so the shell makes the prefix unique).
user_script() {
  local unique="$RANDOM$RANDOM-$(date +%s%N)"
  local file="$lua/join-user-$unique.lua"
  printf '%s\n' \
    'wrk.method = "POST"' \
    'wrk.headers["Content-Type"] = "application/json"' \
    'local n = 0' \
    'request = function()' \
    '  n = n + 1' \
    "  return wrk.format(nil, nil, nil, '{\"user_id\":\"u-$unique-' .. n .. '\"}')" \
    'end' > "$file"
  echo "$file"
}

# Fills a paused room with $waiting visitors, as fast as wrk can, and reports the memory.
fill() {  # fill <room> <users: yes|no>
  local room=$1 users=$2
  admin -X PUT "$base/admin/rooms/$room" -d '{"max_active":1000,"shards":4}' > /dev/null
  admin -X POST "$base/admin/rooms/$room/pause" > /dev/null
  local before
  before=$(used_memory)
  local have=0
  while [ "$have" -lt "$waiting" ]; do
    local left=$((waiting - have))
    local seconds=$(( left / 20000 + 1 ))
    [ "$seconds" -gt 20 ] && seconds=20
    local script="$lua/join.lua"
    [ "$users" = yes ] && script=$(user_script)
    wrk -t1 -c64 -d"${seconds}s" -s "$script" "$base/rooms/$room/join" > /dev/null
    have=$(admin "$base/admin/rooms/$room" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["waiting"])')
  done
  local after
  after=$(used_memory)
  say "$room: $have waiting, used_memory $before -> $after bytes: $(( (after - before) / have )) bytes per waiting visitor"
}

log "filling a room with $waiting waiting visitors (no user id)"
fill deep no
log "filling a room with $waiting waiting visitors (each with a user id)"
fill deep-users yes

log "peak joins per second into a room $waiting deep"
for variant in plain user; do
  script="$lua/join.lua"
  [ "$variant" = user ] && script=$(user_script)
  calls_before=$(evalsha_calls)
  waits_before=$(wait_calls)
  wrk_out=$(wrk -t1 -c64 -d15s -s "$script" "$base/rooms/deep/join")
  rate=$(echo "$wrk_out" | awk '/Requests\/sec/ {print $2}')
  # A join answered 503 (its replica short) is quick and no join: say how many there were.
  failed=$(echo "$wrk_out" | awk '/Non-2xx or 3xx responses/ {print $5}')
  calls=$(( $(evalsha_calls) - calls_before ))
  waits=$(( $(wait_calls) - ${waits_before:-0} ))
  say "origin joins ($variant): $rate requests/s over wrk (64 connections, 15 s), ${failed:-0} of them not answered 200; $calls script calls; $waits WAITs for the replica"
done

# The same join script, one visitor per call, straight to Redis. The keys are shard 0 of the
# room "deep"; the stamp is an old one (the script keeps stamps increasing on its own).
epoch=$(rcli hget qg:room:deep epoch)
tag="{qg:deep:$epoch:0}"
# The shard's keys in the order keys::shard gives them, then the user bucket.
keys=()
for name in st lf m g gu se rs ll mv sn hd ml u:0; do keys+=("$tag:$name"); done
sha=$(rcli script load "$(cargo run -q --release -p queuegate-origin --example script -- join)")
now=$(date +%s%3N)
for user in "" "u-__rand_int__"; do
  rate=$(redis-benchmark -p "$redis_port" -c 64 -n 500000 -q \
    EVALSHA "$sha" 13 "${keys[@]}" "$now" 600000 120000 $(( now + 86400000 )) 1 "$user" 13 0 2>&1 \
    | tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
  say "redis-benchmark join script (user '${user}'): $rate calls/s (64 connections)"
done

log "status polls per second, deep in the queue"
deep_ticket=$(curl -fsS -X POST "$base/rooms/deep/join" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')
position=$(curl -fsS -H "authorization: Bearer $deep_ticket" "$base/rooms/deep/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["position"])')
calls_before=$(evalsha_calls)
reads_before=$(hgetall_calls)
rate=$(wrk -t1 -c64 -d15s -H "Authorization: Bearer $deep_ticket" "$base/rooms/deep/status" | awk '/Requests\/sec/ {print $2}')
calls=$(( $(evalsha_calls) - calls_before ))
reads=$(( $(hgetall_calls) - reads_before ))
say "origin polls at position $position: $rate polls/s over wrk (64 connections, 15 s); $calls script calls in Redis meanwhile (the scheduler's and the mirror's, not the polls'); $reads reads of qg:versions (HGETALL), shared by the polls waiting at each moment"
visit_sha=$(rcli script load "$(cargo run -q --release -p queuegate-origin --example script -- visit)")
rate=$(redis-benchmark -p "$redis_port" -c 64 -n 500000 -q \
  EVALSHA "$visit_sha" 13 "${keys[@]}" 500000 "$now" 600000 120000 2>&1 \
  | tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
say "redis-benchmark visit script (what a poll would cost with a round trip): $rate calls/s"
say "redis: $(rcli info server | grep -E '^redis_version' | tr -d '\r'), appendonly yes, appendfsync everysec, replicas: ${REPLICA:-0}"
