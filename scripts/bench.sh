#!/usr/bin/env bash
# The one bench command: starts a target, runs every k6 script against it, and writes the results
# into BENCHMARKS.md (a section per target, with the machine and the date) and a chart of latency
# and visitors over time into docs/bench/. It starts and stops everything it needs itself.
#
#   [QUICK=1] scripts/bench.sh origin|redis|edge
#
#   origin   queuegate-origin serve on its embedded store
#   redis    queuegate-origin serve on Redis (append-only file, fsynced every second)
#   edge     the worker under wrangler dev, with queuegate-origin schedule --edge driving it
#
# The runs, each against a fresh target:
#   1. k6/circulation.js with a long queue: visitors arrive faster than the room's rate, so the
#      rate limits admissions (the admission-accuracy run: admissions per minute against the
#      configured rate, and the wait estimate against the wait);
#   2. k6/circulation.js where capacity limits: few slots, visitors stay, the scheduler admits as
#      slots free (the most active visitors seen, against max_active);
#   3. k6/poll-storm.js: a waiting crowd of CROWD visitors polling at once;
#   4. k6/entry-scale.js: the seed's scenario (scaled down for the edge).
# Environment overrides: CROWD, and QUICK=1 for a short smoke run on debug builds that writes
# nothing to BENCHMARKS.md but checks the results (what CI runs). Raw results stay in
# bench-out/cycle-<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

target=${1:?usage: scripts/bench.sh origin|redis|edge}
quick=${QUICK:-0}
if [ "$quick" = 1 ]; then
  export PROFILE=${PROFILE:-debug}
fi
source scripts/targets.sh
out=bench-out/cycle-$target
rm -rf "$out"
mkdir -p "$out" docs/bench target
ensure_k6
build_target "$target"
trap stop_target EXIT

# Per-target load: the edge under local wrangler dev takes a few hundred requests a second in
# all (see BENCHMARKS.md), the origin thousands; its seed's scenario runs at 200 joins/s, a
# peak scripts/bench-edge.sh found it to hold in every run (250/s held on a second try).
if [ "$target" = edge ]; then
  queue_args=(-e ARRIVAL_RATE=4 -e DURATION_S=120 -e ADMIT_PER_MINUTE=120 -e MAX_ACTIVE=1000 -e STAY_S=10)
  capacity_args=(-e ARRIVAL_RATE=4 -e DURATION_S=60 -e ADMIT_PER_MINUTE=600 -e MAX_ACTIVE=10 -e STAY_S=5)
  latency_args=(-e P95_MS=1000 -e P99_MS=2000)
  crowd=${CROWD:-100000}
  storm_args=(-e VUS=32 -e DURATION_S=30 -e P95_MS=1000 -e P99_MS=2000)
  entry_args=(-e WARM_RATE=40 -e WARM_S=10 -e PEAK_RATE=200 -e PEAK_S=30 -e P95_MS=1000 -e P99_MS=2000 -e MAX_VUS=300)
else
  queue_args=(-e ARRIVAL_RATE=20 -e DURATION_S=120 -e ADMIT_PER_MINUTE=600 -e MAX_ACTIVE=1000 -e STAY_S=10)
  capacity_args=(-e ARRIVAL_RATE=15 -e DURATION_S=60 -e ADMIT_PER_MINUTE=1200 -e MAX_ACTIVE=30 -e STAY_S=5)
  latency_args=(-e P95_MS=100 -e P99_MS=250)
  crowd=${CROWD:-100000}
  storm_args=(-e VUS=64 -e DURATION_S=30)
  entry_args=()
fi
if [ "$quick" = 1 ]; then
  # Debug builds on a busy CI machine: success must be total, latency only sane.
  latency_args=(-e P95_MS=1000 -e P99_MS=3000)
  storm_args+=(-e P95_MS=1000 -e P99_MS=3000)
  entry_args+=(-e P95_MS=1000 -e P99_MS=3000)
  queue_args+=(-e DURATION_S=6 -e STAY_S=1 -e ARRIVAL_RATE=5 -e ADMIT_PER_MINUTE=120)
  capacity_args+=(-e DURATION_S=6 -e STAY_S=1 -e ARRIVAL_RATE=5 -e MAX_ACTIVE=2)
  crowd=${CROWD:-1000}
  storm_args+=(-e DURATION_S=3)
  entry_args+=(-e WARM_RATE=20 -e WARM_S=2 -e PEAK_RATE=50 -e PEAK_S=3)
fi

failed=()
runs=()
run_k6() {  # run_k6 <name> <script> [k6 args...]
  local name=$1 script=$2
  shift 2
  log "k6: $name against $target"
  # The parameters, for the report (circulation.js's defaults, then what this run set).
  printf '%s\n' MAX_ACTIVE=100 ADMIT_PER_MINUTE=600 ARRIVAL_RATE=15 DURATION_S=120 STAY_S=5 \
    > "$out/$name.params"
  local arg
  for arg in "$@"; do
    case "$arg" in *=*) echo "$arg" >> "$out/$name.params" ;; esac
  done
  set +e
  GOGC=400 K6_CSV_TIME_FORMAT=unix_milli k6 run --quiet -e BASE_URL="$TARGET_URL" \
    -e ADMIN_KEY="$TARGET_ADMIN_KEY" "$@" --summary-export "$out/$name.json" \
    --out "csv=$out/$name.csv.gz" "$script" > "$out/$name.txt" 2>&1
  local status=$?
  set -e
  [ "$status" -eq 0 ] || failed+=("$name")
  runs+=("$name:$status")
}

start_target "$target" "$out/queue"
run_k6 circulation-queue k6/circulation.js -e ROOM=queue "${queue_args[@]}" "${latency_args[@]}"
stop_target

start_target "$target" "$out/capacity"
run_k6 circulation-capacity k6/circulation.js -e ROOM=capacity "${capacity_args[@]}" "${latency_args[@]}"
stop_target

start_target "$target" "$out/storm"
curl -fsS -X PUT -H "authorization: Bearer $TARGET_ADMIN_KEY" "$TARGET_URL/_qg/v1/admin/rooms/storm" \
  -d '{"max_active":1000,"shards":4}' > /dev/null
curl -fsS -X POST -H "authorization: Bearer $TARGET_ADMIN_KEY" "$TARGET_URL/_qg/v1/admin/rooms/storm/pause" > /dev/null
log "filling the storm room with $crowd waiting visitors"
python3 scripts/fill-crowd.py "$TARGET_URL" storm "$crowd" "$out/crowd.json" | tee "$out/fill.txt"
# Let the edge's scheduler publish the crowd, so that polls find it in the summaries.
sleep 3
run_k6 poll-storm k6/poll-storm.js -e ROOM=storm -e TICKETS="$PWD/$out/crowd.json" "${storm_args[@]}"
stop_target

start_target "$target" "$out/entry"
run_k6 entry-scale k6/entry-scale.js -e ROOM=entry-scale "${entry_args[@]}"
stop_target

if [ "$quick" = 1 ]; then
  python3 scripts/bench-report.py --check "$target" "$out"
else
  python3 scripts/bench-report.py "$target" "$out" "$crowd" BENCHMARKS.md "docs/bench/cycle-$target.svg"
  log "BENCHMARKS.md and docs/bench/cycle-$target.svg updated"
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "thresholds crossed in: ${failed[*]} (details in $out/)" >&2
  exit 1
fi
