#!/usr/bin/env bash
# The origin on its embedded store with wrk, on this machine, in one run: the release build with
# one worker thread (`--workers 1`: the other core runs wrk), wrk with one thread and 32
# connections, 15 s each:
#   - the trivial route (GET /_qg/v1/healthz), before and after;
#   - joins without a user id into a paused room;
#   - status polls by the visitor at position 1, and by the last of WAITING;
#   - memory per waiting visitor: the server's resident memory before and after filling the room.
# Results go to bench-out/origin-*.
#
#   scripts/bench-origin.sh [WAITING]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

waiting=${1:-1000000}
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q --locked -p queuegate-origin
mkdir -p bench-out
out=bench-out/origin-summary.txt
: > "$out"
say() { echo "$*" | tee -a "$out"; }

port=$(free_port)
key=bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
QUEUEGATE_ADMIN_KEY=$key QUEUEGATE_LOG=warn ./target/release/queuegate-origin serve \
  --workers 1 --listen "127.0.0.1:$port" > bench-out/origin-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
base="http://127.0.0.1:$port/_qg/v1"
wait_for_http "$base/healthz"
admin() { curl -fsS -H "authorization: Bearer $key" "$@"; }
threads=$(grep -c tokio-rt-worker /proc/$server/task/*/comm | awk -F: '{s+=$2} END {print s}')
say "queuegate-origin serve --workers 1: $threads runtime worker thread(s)"
rss() { awk '/^VmRSS:/ {print $2 * 1024}' /proc/$server/status; }
rate() { awk '/Requests\/sec/ {print $2}'; }

lua=$(mktemp -d)
printf '%s\n' 'wrk.method = "POST"' 'wrk.headers["Content-Type"] = "application/json"' \
  'wrk.body = ""' > "$lua/join.lua"

say "trivial route (healthz): $(wrk -t1 -c32 -d15s "$base/healthz" | rate) requests/s"

admin -X PUT "$base/admin/rooms/bench" -d '{"max_active":1000,"shards":4}' > /dev/null
admin -X POST "$base/admin/rooms/bench/pause" > /dev/null
first=$(curl -fsS -X POST "$base/rooms/bench/join" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')
before=$(rss)
say "joins (no user id, paused room): $(wrk -t1 -c32 -d15s -s "$lua/join.lua" "$base/rooms/bench/join" | rate) joins/s"
have() { admin "$base/admin/rooms/bench" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["waiting"])'; }
while [ "$(have)" -lt "$waiting" ]; do
  wrk -t1 -c32 -d5s -s "$lua/join.lua" "$base/rooms/bench/join" > /dev/null
done
last=$(curl -fsS -X POST "$base/rooms/bench/join" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')
after=$(rss)
total=$(have)
say "memory: resident $before -> $after bytes over $((total - 1)) joins: $(( (after - before) / (total - 1) )) bytes per waiting visitor"
for who in first last; do
  ticket=${!who}
  position=$(curl -fsS -H "authorization: Bearer $ticket" "$base/rooms/bench/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["position"])')
  say "status polls at position $position of $total: $(wrk -t1 -c32 -d15s -H "Authorization: Bearer $ticket" "$base/rooms/bench/status" | rate) polls/s"
done
say "trivial route (healthz), after: $(wrk -t1 -c32 -d15s "$base/healthz" | rate) requests/s"
