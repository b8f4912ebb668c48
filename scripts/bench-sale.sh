#!/usr/bin/env bash
# A sale opening: a crowd pre-queues for a scheduled event over a minute, the sale opens, and the
# line is let in at the room's rate (k6/sale-opening.js). Writes its section of BENCHMARKS.md
# ("A sale opening", per target) and docs/bench/sale-opening.svg (from docs/bench/sale.json,
# which keeps each target's last run): the time from the opening to the first admission, the
# admissions per minute against the configured rate, and the wait after the opening.
#
#   [QUICK=1] [SHUFFLE=1 | MODE=random] scripts/bench-sale.sh origin|redis|edge
#
# SHUFFLE=1: the event shuffles its pre-queue at the opening (its own section, "A shuffled sale
# opening"; the chart stays the unshuffled runs'). MODE=random: the event admits in random mode,
# each admission a draw among everyone waiting (its own section, "A sale opening in random
# mode").
#   origin, redis  20,000 visitors, max_active 1000, admit_per_minute 6000
#   edge           2,000 visitors (local wrangler dev takes a few hundred requests a second),
#                  admit_per_minute 600
# Visitors leave as soon as they are in, so the rate, not capacity, sets the pace.
# QUICK=1: 200 visitors, a 10 s pre-queue, debug builds; checks the run, writes nothing.
# Raw results in bench-out/sale-<target>/ (-quick/ for QUICK=1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

target=${1:?usage: scripts/bench-sale.sh origin|redis|edge}
quick=${QUICK:-0}
if [ "$quick" = 1 ]; then
  export PROFILE=${PROFILE:-debug}
fi
source scripts/targets.sh
shuffle=${SHUFFLE:-0}
mode=${MODE:-fifo}
out=bench-out/sale-$target
[ "$shuffle" != 1 ] || out=$out-shuffled
[ "$mode" = fifo ] || out=$out-$mode
[ "$quick" != 1 ] || out=$out-quick
rm -rf "$out"
mkdir -p "$out" docs/bench target
ensure_k6
build_target "$target"
trap stop_target EXIT

if [ "$target" = edge ]; then
  args=(-e VISITORS=2000 -e PER_VU=50 -e ADMIT_PER_MINUTE=600 -e MAX_ACTIVE=1000)
else
  args=(-e VISITORS=20000 -e PER_VU=100 -e ADMIT_PER_MINUTE=6000 -e MAX_ACTIVE=1000)
fi
if [ "$quick" = 1 ]; then
  args=(-e VISITORS=200 -e PER_VU=20 -e PREQUEUE_S=10 -e ADMIT_PER_MINUTE=1200 -e MAX_ACTIVE=100)
fi
args+=(-e PREQUEUE_S=60)
[ "$shuffle" != 1 ] || args+=(-e SHUFFLE=1)
args+=(-e "MODE=$mode")
[ "$quick" != 1 ] || args+=(-e PREQUEUE_S=10)

start_target "$target" "$out/run"
log "k6: a sale opening against $target"
printf '%s\n' "${args[@]}" | grep = > "$out/params"
set +e
GOGC=400 k6 run --quiet -e BASE_URL="$TARGET_URL" -e ADMIN_KEY="$TARGET_ADMIN_KEY" "${args[@]}" \
  --summary-export "$out/summary.json" k6/sale-opening.js > "$out/k6.txt" 2>&1
status=$?
set -e
stop_target

if [ "$quick" = 1 ]; then
  python3 scripts/sale-report.py --check "$target" "$out"
else
  SHUFFLED=$shuffle MODE=$mode python3 scripts/sale-report.py "$target" "$out" BENCHMARKS.md \
    docs/bench/sale-opening.svg docs/bench/sale.json
  log "BENCHMARKS.md updated (and docs/bench/sale-opening.svg for an unshuffled run)"
fi
if [ "$status" -ne 0 ]; then
  echo "k6 failed or crossed a threshold (details in $out/k6.txt)" >&2
  exit 1
fi
