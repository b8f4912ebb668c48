#!/usr/bin/env bash
# The origin on its embedded store with wrk, on this machine, in one run: the release build with
# one worker thread (`--workers 1`: the other core runs wrk), wrk with one thread and 32
# connections, 15 s each:
#   - the trivial route (GET /_qg/v1/healthz), before and after;
#   - joins without a user id into a paused room;
#   - status polls by the visitor at position 1, and by the last of WAITING;
#   - memory per waiting visitor: the server's resident memory before and after filling the room;
#   - the same for visitors with a user id (a second room, a new `user_id` each join), then whether
#     the memory of their user ids is reused once their places have ended: all of them admitted,
#     their claim window (1 s) left to run out, and a second wave as large joined.
# Results go to bench-out/origin-*.
#
#   scripts/bench-origin.sh [WAITING]   (default 1000000)
#   ONLY=memory scripts/bench-origin.sh [WAITING]   (the memory figures alone, no wrk timings)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

waiting=${1:-1000000}
only=${ONLY:-}
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q --locked -p queuegate-origin
mkdir -p bench-out
out=bench-out/origin-summary.txt
: > "$out"
say() { echo "$*" | tee -a "$out"; }

port=$(free_port)
key=bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
QUEUEGATE_ADMIN_KEY=$key QUEUEGATE_LOG=warn "${CARGO_TARGET_DIR:-target}/release/queuegate-origin" serve \
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
# A new user id each request: the run's prefix (a wrk argument), then a counter.
cat > "$lua/join-user.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local prefix, n = "", 0
function init(args) prefix = args[1] end
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format('{"user_id":"%s-%d"}', prefix, n))
end
LUA

timed() { [ "$only" != memory ]; }
timed && say "trivial route (healthz): $(wrk -t1 -c32 -d15s "$base/healthz" | rate) requests/s"

admin -X PUT "$base/admin/rooms/bench" -d '{"max_active":1000,"shards":4}' > /dev/null
admin -X POST "$base/admin/rooms/bench/pause" > /dev/null
first=$(curl -fsS -X POST "$base/rooms/bench/join" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')
before=$(rss)
timed && say "joins (no user id, paused room): $(wrk -t1 -c32 -d15s -s "$lua/join.lua" "$base/rooms/bench/join" | rate) joins/s"
stat() { admin "$base/admin/rooms/${2:-bench}" | python3 -c "import json,sys; print(json.load(sys.stdin)['stats']['$1'])"; }
have() { stat waiting "$@"; }
while [ "$(have)" -lt "$waiting" ]; do
  wrk -t1 -c32 -d5s -s "$lua/join.lua" "$base/rooms/bench/join" > /dev/null
done
last=$(curl -fsS -X POST "$base/rooms/bench/join" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')
after=$(rss)
total=$(have)
say "memory: resident $before -> $after bytes over $((total - 1)) joins: $(( (after - before) / (total - 1) )) bytes per waiting visitor"

# Visitors with a user id, in a room that can admit them all and whose claim window is 1 s.
admin -X PUT "$base/admin/rooms/users" \
  -d "{\"max_active\":100000000,\"shards\":4,\"claim_window_s\":1}" > /dev/null
admin -X POST "$base/admin/rooms/users/pause" > /dev/null
wave() {  # wave NAME: joins with new user ids until $waiting more wait in room users
  local from run=0
  from=$(have users)
  while [ "$(have users)" -lt $((from + waiting)) ]; do
    run=$((run + 1))
    wrk -t1 -c32 -d5s -s "$lua/join-user.lua" "$base/rooms/users/join" -- "$1$run" > /dev/null
  done
}
per() { echo $(( ($2 - $1) / $3 )); }
before=$(rss)
wave a
after=$(rss)
first_wave=$(have users)
say "memory with user ids: resident $before -> $after bytes over $first_wave joins: $(per "$before" "$after" "$first_wave") bytes per waiting visitor with a user id"
# Their places end: admitted in batches of 10,000 (a larger batch's scratch would stay in the
# heap and hide what follows), then left unclaimed for the claim window and a scheduler tick.
while [ "$(have users)" -gt 0 ]; do
  admin -X POST "$base/admin/rooms/users/admit" -d '{"count":10000}' > /dev/null
done
sleep 1
while [ "$(stat admitted users)" -gt 0 ]; do sleep 0.5; done
sleep 2
ended=$(rss)
wave b
again=$(have users)
second=$(rss)
say "user ids after their places ended: resident $after -> $ended bytes once $first_wave claim windows ran out; a second wave of $again joins with new user ids: $ended -> $second bytes, $(per "$ended" "$second" "$again") bytes per visitor ($(per "$after" "$second" "$again") over the first wave's peak)"

timed || exit 0
for who in first last; do
  ticket=${!who}
  position=$(curl -fsS -H "authorization: Bearer $ticket" "$base/rooms/bench/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["position"])')
  say "status polls at position $position of $total: $(wrk -t1 -c32 -d15s -H "Authorization: Bearer $ticket" "$base/rooms/bench/status" | rate) polls/s"
done
say "trivial route (healthz), after: $(wrk -t1 -c32 -d15s "$base/healthz" | rate) requests/s"
