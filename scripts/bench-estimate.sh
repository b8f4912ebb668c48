#!/usr/bin/env bash
# The wait estimate against the wait that followed, where capacity, not the rate, limits
# admission: k6/circulation.js with visitors polling at least once a second, so that
# the moment of admission is known to within that, in two runs against a fresh target each:
#
#   burst     a crowd joins at once a room of few slots that free only as visitors leave
#             (origin: 1,000 visitors in 2 s, 50 slots; edge: 300, 15 slots)
#   steady    visitors arrive steadily, faster than the slots free (the capacity run of
#             scripts/bench.sh: 15 arrivals/s for 60 s, 30 slots)
#
# Stays last 2.5 to 7.5 s (5 s, spread 50 % either way), as people's vary: with equal stays, the
# visitors let in together leave together, slots free in waves every stay, and a wait is only
# known to within a wave.
#
# and writes its section of BENCHMARKS.md ("The wait estimate", per target): the error of the
# estimate shown at join and at every poll against the wait that followed, as a share of it.
#
#   [QUICK=1] scripts/bench-estimate.sh origin|redis|edge
#
# QUICK=1: a few visitors, debug builds, nothing written. Raw results in bench-out/estimate-<target>/ (-quick/ for QUICK=1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

target=${1:?usage: scripts/bench-estimate.sh origin|redis|edge}
quick=${QUICK:-0}
if [ "$quick" = 1 ]; then
  export PROFILE=${PROFILE:-debug}
fi
source scripts/targets.sh
out=bench-out/estimate-$target
[ "$quick" != 1 ] || out=$out-quick
rm -rf "$out"
mkdir -p "$out" target
ensure_k6
build_target "$target"
trap stop_target EXIT

common=(-e POLL_CAP_S=1 -e STAY_SPREAD=0.5 -e MAX_VUS=3000 -e P95_MS=2000 -e P99_MS=5000 -e ADMIT_PER_MINUTE=1200)
if [ "$target" = edge ]; then
  burst=(-e ARRIVAL_RATE=150 -e DURATION_S=2 -e MAX_ACTIVE=15 -e STAY_S=5)
  steady=(-e ARRIVAL_RATE=4 -e DURATION_S=60 -e MAX_ACTIVE=10 -e STAY_S=5)
else
  burst=(-e ARRIVAL_RATE=500 -e DURATION_S=2 -e MAX_ACTIVE=50 -e STAY_S=5)
  steady=(-e ARRIVAL_RATE=15 -e DURATION_S=60 -e MAX_ACTIVE=30 -e STAY_S=5)
fi
if [ "$quick" = 1 ]; then
  burst=(-e ARRIVAL_RATE=20 -e DURATION_S=1 -e MAX_ACTIVE=3 -e STAY_S=1)
  steady=(-e ARRIVAL_RATE=3 -e DURATION_S=4 -e MAX_ACTIVE=2 -e STAY_S=1)
fi

failed=()
for run in burst steady; do
  declare -n args=$run
  start_target "$target" "$out/$run"
  log "k6: the $run run against $target"
  printf '%s\n' "${args[@]}" | grep = > "$out/$run.params"
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
  python3 scripts/estimate-report.py --check "$target" "$out"
else
  python3 scripts/estimate-report.py "$target" "$out" BENCHMARKS.md
  log "BENCHMARKS.md updated"
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "thresholds crossed in: ${failed[*]} (details in $out/)" >&2
  exit 1
fi
