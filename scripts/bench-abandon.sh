#!/usr/bin/env bash
# Visitors who leave right after joining: do they cost the ones who stay? k6/circulation.js in
# two runs against a fresh target each, with the same visitors who stay:
#
#   present     N visitors arrive over 20 s and wait their turn, polling at least once a second
#   abandoners  the same N, and as many again who join and never ask again (every other arrival)
#
# in a room whose rate, not its slots, limits admission, with abandon_after_s at its least (4 s),
# and writes its section of BENCHMARKS.md ("Visitors who left", per target): the present
# visitors' admission rate against admit_per_minute, their median wait in each run, how many
# admissions went to visitors who had left, and the most slots ever taken against max_active.
#
#   [QUICK=1] scripts/bench-abandon.sh origin|redis|edge
#
# QUICK=1: a few visitors, debug builds, nothing written. Raw results in
# bench-out/abandon-<target>/ (-quick/ for QUICK=1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

target=${1:?usage: scripts/bench-abandon.sh origin|redis|edge}
quick=${QUICK:-0}
if [ "$quick" = 1 ]; then
  export PROFILE=${PROFILE:-debug}
fi
source scripts/targets.sh
out=bench-out/abandon-$target
[ "$quick" != 1 ] || out=$out-quick
rm -rf "$out"
mkdir -p "$out" target
ensure_k6
build_target "$target"
trap stop_target EXIT

# Present visitors arrive at `rate` a second for 20 s; the room admits `admit` a minute.
if [ "$target" = edge ]; then
  rate=10 admit=120
else
  rate=60 admit=600
fi
[ "$quick" != 1 ] || rate=2 admit=120
duration=20
[ "$quick" != 1 ] || duration=5
common=(-e POLL_CAP_S=1 -e STAY_S=5 -e STAY_SPREAD=0.5 -e MAX_ACTIVE=100 -e ADMIT_PER_MINUTE="$admit"
  -e ABANDON_AFTER_S=4 -e DURATION_S="$duration" -e MAX_VUS=3000 -e P95_MS=2000 -e P99_MS=5000)
present=(-e ARRIVAL_RATE="$rate" -e ABANDON_SHARE=0)
abandoners=(-e ARRIVAL_RATE="$((2 * rate))" -e ABANDON_SHARE=0.5)

failed=()
for run in present abandoners; do
  declare -n args=$run
  start_target "$target" "$out/$run"
  log "k6: the $run run against $target"
  printf '%s\n' "${common[@]}" "${args[@]}" | grep = > "$out/$run.params"
  set +e
  GOGC=400 k6 run --quiet -e BASE_URL="$TARGET_URL" -e ADMIN_KEY="$TARGET_ADMIN_KEY" \
    -e ROOM="$run" "${common[@]}" "${args[@]}" --summary-export "$out/$run.json" \
    k6/circulation.js > "$out/$run.txt" 2>&1
  status=$?
  set -e
  [ "$status" -eq 0 ] || failed+=("$run")
  stop_target
done

if [ "$quick" = 1 ]; then
  python3 scripts/abandon-report.py --check "$target" "$out"
else
  python3 scripts/abandon-report.py "$target" "$out" BENCHMARKS.md
  log "BENCHMARKS.md updated"
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "thresholds crossed in: ${failed[*]} (details in $out/)" >&2
  exit 1
fi
