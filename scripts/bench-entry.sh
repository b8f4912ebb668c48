#!/usr/bin/env bash
# Runs the seed's scenario (k6/entry-scale.js, 310,000 joins in 70 s) against a release build of
# the origin on the embedded store, on this machine, and keeps k6's summary in bench-out/.
#
#   scripts/bench-entry.sh [extra k6 -e options...]
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
admin_key=bench-$RANDOM$RANDOM
QUEUEGATE_ADMIN_KEY=$admin_key QUEUEGATE_LOG=warn \
  nice -n -10 ./target/release/queuegate-origin serve --workers 1 --listen 127.0.0.1:$port \
  > bench-out/entry-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
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
exit $status
