#!/usr/bin/env bash
# Pushed updates under load: STREAMS visitors (origin and Redis: 10,000; edge: 500) join a paused
# room and each holds its update stream open (GET .../stream, one connection each,
# scripts/stream-client.mjs); the room is read idle for 20 s, then an operator admits 100 every
# 1.5 to 2.5 s (off the streams' one-second beat), ten times. Measured from outside the server: its resident memory per open stream, its CPU
# idle and while admitting (every admission moves everyone up: an event per stream per batch),
# and the time from each admission call to each event it caused. Writes its section of
# BENCHMARKS.md ("Pushed updates", per target).
#
#   [QUICK=1] [STREAMS=N] scripts/bench-streams.sh origin|redis|edge
#
# QUICK=1: 300 streams, debug builds, nothing written. Raw results in bench-out/streams-<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

target=${1:?usage: scripts/bench-streams.sh origin|redis|edge}
quick=${QUICK:-0}
if [ "$quick" = 1 ]; then
  export PROFILE=${PROFILE:-debug}
fi
source scripts/targets.sh
out=bench-out/streams-$target
[ "$quick" != 1 ] || out=$out-quick
rm -rf "$out"
mkdir -p "$out" target
default_streams=10000
[ "$target" != edge ] || default_streams=500
[ "$quick" != 1 ] || default_streams=300
streams=${STREAMS:-$default_streams}
# One connection per stream, on the server and in the client: as many files as the system allows.
ulimit -n "$(ulimit -Hn)"
build_target "$target"
trap stop_target EXIT
log "starting $target"
start_target "$target" "$out/$target"
# The server's processes: the origin (and redis-server: what the streams cost Redis counts too),
# or workerd under wrangler dev.
case "$target" in
  origin | redis) pids=${TARGET_PIDS[*]} ;;
  edge) pids=$(pgrep -d ' ' -f 'workerd serve') ;;
esac
log "$streams streams against $target (server pids: $pids)"
BASE_URL=$TARGET_URL ADMIN_KEY=$TARGET_ADMIN_KEY STREAMS=$streams PIDS=$pids OUT=$out/summary.json \
  node scripts/stream-client.mjs | tee "$out/client.log"
[ "$quick" != 1 ] || exit 0

python3 - "$target" "$out/summary.json" <<'PY'
import json, sys, datetime
sys.path.insert(0, "scripts")
from report_common import machine, write_section
target, path = sys.argv[1], sys.argv[2]
s = json.load(open(path))
names = {"origin": "the origin on its embedded store", "redis": "the origin on Redis (AOF, fsync every second)",
         "edge": "the edge (wrangler dev)"}
ms = lambda d: " / ".join("-" if d[k] is None else f"{d[k]:,}" for k in ("p50", "p90", "p99", "max"))
section = f"""<!-- streams-{target} -->
### Pushed updates: {names[target]}

{datetime.date.today().isoformat()}, {machine()}; `scripts/bench-streams.sh {target}`.

| | |
|---|---|
| streams open | {s['open']:,} of {s['streams']:,} ({s['failed_opens']} refused or failed), opened in {s['open_seconds']:.1f} s |
| memory of the target's processes (RSS) | {s['rss_before_kib'] / 1024:,.0f} MiB before, {s['rss_open_kib'] / 1024:,.0f} MiB with the streams open: **{s['bytes_per_stream'] / 1024:,.1f} KiB per stream** |
| CPU of the target's processes, idle (each stream reads its answer once a second) | {s['idle_cpu_cores'] * 100:.0f} % of a core |
| CPU of the target's processes, admitting {s['admitted']:,} in batches of 100 every 1.5-2.5 s | {s['admitting_cpu_cores'] * 100:.0f} % of a core |
| admission call to the visitor's `admitted` event, p50 / p90 / p99 / max ({s['admission_events']:,} events) | {ms(s['admission_ms'])} ms |
| admission call to everyone else's new position, p50 / p90 / p99 / max ({s['position_events']:,} events) | {ms(s['position_ms'])} ms |
<!-- /streams-{target} -->"""
write_section("BENCHMARKS.md", f"streams-{target}", section, "## Pushed updates (scripts/bench-streams.sh)",
    "Visitors holding their update streams open (`GET .../stream`), one connection each, against a "
    "paused room an operator admits from: what the server holds per stream, what it spends, and how "
    "soon a visitor hears of a change. A stream reads the visitor's answer once a second, so the "
    "latency is at most about a second plus the work; the edge's numbers are `wrangler dev`'s "
    "(workerd on this machine, about 1,000 trivial requests/s), not Cloudflare's.")
print(section)
PY
