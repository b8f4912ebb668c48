#!/usr/bin/env bash
# Fairness under attack: legitimate visitors and bots join one room, with and without defences,
# and the share of the first admissions that went to bot places is measured. Writes its section
# of BENCHMARKS.md ("Fairness under attack", per target) and docs/bench/fairness.svg (from
# docs/bench/fairness.json, which keeps each target's last figures). It starts and stops
# everything it needs itself, a fresh target per variant.
#
#   [QUICK=1] scripts/bench-fairness.sh origin|redis|edge
#
# The variants (scripts/fairness.py has the details):
#   baseline  no bots, no defence
#   bots      20 bots, no defence
#   limit     20 bots, a join limit (per_client_per_min 6, burst 3) without a penalty
#   penalty   20 bots, the README's recommended join limit: that one with penalize_after 10
#   penalty_prequeue  the same, the sale opening 10 s after the first arrivals (a pre-queue)
#   pow12     20 bots, proof of work at 12 bits
#   pow16     20 bots, proof of work at 16 bits
#   limit_pow16  20 bots, the recommended join limit and proof of work at 16 bits together
# A variant the target does not support (the room's configuration refused) is recorded as not
# run. Client addresses: on the origin each client sends its own X-Forwarded-For, the origin
# trusting 127.0.0.1 (QUEUEGATE_TRUSTED_PROXIES); at the edge each client connects from its own
# address in 127.0.0.0/8 (wrangler dev sets CF-Connecting-IP to it) unless it passes a
# client's own CF-Connecting-IP through, which the preflight tries first. The preflight checks
# that two clients are told apart and that a join limit refuses with 429 before any figure.
#
# QUICK=1: 50 visitors over 5 s, 3 bots, admit_per_minute 450, 10 s at most, debug builds; writes nothing to BENCHMARKS.md but
# checks the results (scripts/fairness.py check). VARIANTS="pow12 pow16" runs only those and
# reports them with the other variants' last results (from bench-out/, or else the rows of the
# report in BENCHMARKS.md, marked with the date of their run).
# Raw results in bench-out/fairness-<target>/ (bench-out/fairness-<target>-quick/ for QUICK=1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

target=${1:?usage: scripts/bench-fairness.sh origin|redis|edge}
quick=${QUICK:-0}
if [ "$quick" = 1 ]; then
  export PROFILE=${PROFILE:-debug}
fi
source scripts/targets.sh
out=bench-out/fairness-$target
[ "$quick" != 1 ] || out=$out-quick
variants=${VARIANTS:-baseline bots limit penalty penalty_prequeue pow12 pow16 limit_pow16}
# VARIANTS reruns some of them and keeps the others' last results for the report.
if [ -z "${VARIANTS:-}" ]; then
  rm -rf "$out"
fi
mkdir -p "$out" docs/bench target
for variant in $variants; do rm -f "$out/$variant".*; done
rm -f "$out/addr-mode"
build_target "$target"
trap stop_target EXIT

if [ "$target" = edge ]; then
  # Local wrangler dev takes about a thousand trivial requests a second and a few hundred joins
  # (BENCHMARKS.md): the same visitors (17 joins/s, polls answered without a Durable Object
  # call), but each bot held to one connection and 5 joins/s, 100 bot joins/s in all.
  export LEGIT=${LEGIT:-1000} DURATION_S=${DURATION_S:-60} BOTS=${BOTS:-20} BOT_CONNS=${BOT_CONNS:-1}
  export BOT_RATE=${BOT_RATE:-5} ADMIT_PER_MINUTE=${ADMIT_PER_MINUTE:-600} FIRST=${FIRST:-500}
else
  export LEGIT=${LEGIT:-1000} DURATION_S=${DURATION_S:-60} BOTS=${BOTS:-20} BOT_CONNS=${BOT_CONNS:-3}
  export BOT_RATE=${BOT_RATE:-0} ADMIT_PER_MINUTE=${ADMIT_PER_MINUTE:-600} FIRST=${FIRST:-500}
fi
if [ "$quick" = 1 ]; then
  export LEGIT=50 DURATION_S=5 BOTS=3 FIRST=25 CAP_S=10 ADMIT_PER_MINUTE=450
fi
export CAP_S=${CAP_S:-$((3 * DURATION_S))}
# The origin believes X-Forwarded-For from the driver on 127.0.0.1 only.
export QUEUEGATE_TRUSTED_PROXIES=127.0.0.1

mode=xff
for variant in $variants; do
  start_target "$target" "$out/$variant"
  if [ "$target" = edge ] && [ ! -f "$out/addr-mode" ]; then
    mode=""
    for try in cf bind; do
      if python3 scripts/fairness.py preflight "$TARGET_URL" "$TARGET_ADMIN_KEY" "$try" 2>"$out/preflight-$try.txt"; then
        mode=$try
        break
      fi
      log "preflight with $try: $(cat "$out/preflight-$try.txt")"
    done
    [ -n "$mode" ] || { echo "no way to give clients their own addresses at the edge" >&2; exit 1; }
    echo "$mode" > "$out/addr-mode"
  elif [ ! -f "$out/addr-mode" ]; then
    python3 scripts/fairness.py preflight "$TARGET_URL" "$TARGET_ADMIN_KEY" "$mode"
    echo "$mode" > "$out/addr-mode"
  fi
  mode=$(cat "$out/addr-mode")
  log "fairness: $variant against $target ($LEGIT visitors over $DURATION_S s, addresses by $mode)"
  started=$(date +%s)
  python3 scripts/fairness.py run "$TARGET_URL" "$TARGET_ADMIN_KEY" "$mode" "$variant" "$out/$variant.json" \
    | tee "$out/$variant.txt"
  echo "$variant took $(( $(date +%s) - started )) s" | tee -a "$out/timings.txt"
  stop_target
done

if [ "$quick" = 1 ]; then
  python3 scripts/fairness.py check "$target" "$out"
else
  python3 scripts/fairness.py check "$target" "$out" || log "checks failed: see above (written anyway)"
  python3 scripts/fairness.py report "$target" "$out" BENCHMARKS.md docs/bench/fairness.svg \
    docs/bench/fairness.json "scripts/bench-fairness.sh $target"
  log "BENCHMARKS.md, docs/bench/fairness.svg and docs/bench/fairness.json updated"
fi
