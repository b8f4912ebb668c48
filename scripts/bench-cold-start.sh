#!/usr/bin/env bash
# A shard object's cold start against the history behind it, under `wrangler dev`: for each N, a
# fresh `wrangler dev` gets a paused one-shard room, N joins (the first and the last alone, the
# rest by scripts/fill-crowd.py) and one admission (the first visitor, who claims it: a
# session); then, RUNS times, `wrangler dev` is started again on the same persistence directory
# and, once the worker and the registry are awake (the health route, a waiting visitor's poll,
# which the published summary answers without the shard), the admitted visitor's status poll is
# timed: the first request that wakes the shard object, which loads its storage before it
# answers. A second poll right after shows the warm cost. Each restart's Durable Object calls are
# checked from /metrics: the timed poll must be the first call to the shard.
#
# The shard object's storage is counted after each fill, with `wrangler dev` stopped: rows and
# bytes (the values' lengths) of each table of its SQLite file under the persistence directory,
# and the file's size.
#
# The fills run first, one `wrangler dev` each, then the restarts: the timed part does not run
# while another fill loads the machine. Raw results go to $OUT (bench-out/cold-start by default):
# per-N fill logs, wrangler logs, storage.txt, times.txt, storage-after-runs.txt, summary.txt.
#
#   scripts/bench-cold-start.sh [N...]   (default: 1000 20000 200000)
#
# Environment: RUNS (5 restarts per N), OUT, CONNS (fill-crowd connections, 32), SKIP_BUILD=1 (use
# build/ as it is), LABEL (what the summary calls the code; default: the git commit), FILL=0 (time
# the fills already in $OUT again, for instance another build's, without filling anew: its
# summary, times and storage after the restarts go to files named *-again-TIMESTAMP).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/targets.sh

sizes=("${@:-1000 20000 200000}")
read -r -a sizes <<< "${sizes[*]}"
runs=${RUNS:-5}
out=${OUT:-bench-out/cold-start}
conns=${CONNS:-32}
mkdir -p "$out" target
# The keys go with the fills: their tickets are signed with them.
if [ "${FILL:-1}" = 1 ]; then
  printf 'admin_key=%s\nsigning_keys=%s\n' "bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')" "$TARGET_SIGNING_KEYS" > "$out/keys.env"
fi
source "$out/keys.env"
[ "${SKIP_BUILD:-}" = 1 ] || build_edge
# A second timing of the same fills keeps the first one's files.
suffix=
[ "${FILL:-1}" = 1 ] || suffix=-again-$(date -u +%Y%m%dT%H%M%S)
summary=$out/summary$suffix.txt
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }

WRANGLER_PID=
start_wrangler() {  # start_wrangler <persist dir> <log>: sets BASE
  local port
  port=$(free_port)
  WRANGLER_SEND_METRICS=false node_modules/.bin/wrangler dev --ip 127.0.0.1 --port "$port" \
    --inspector-port "$(free_port)" --persist-to "$1" \
    --var "QUEUEGATE_ADMIN_KEY:$admin_key" --var "QUEUEGATE_SIGNING_KEYS:$signing_keys" \
    --var "QUEUEGATE_UPSTREAM:" > "$2" 2>&1 &
  WRANGLER_PID=$!
  ORIGIN="http://127.0.0.1:$port"
  BASE="$ORIGIN/_qg/v1"
  local tries
  for tries in 1 2 3 4; do
    wait_for_http "$BASE/healthz" 2>/dev/null && return 0
  done
  tail -20 "$2" >&2
  return 1
}
stop_wrangler() {
  [ -n "$WRANGLER_PID" ] || return 0
  kill "$WRANGLER_PID" 2>/dev/null || true
  wait "$WRANGLER_PID" 2>/dev/null || true
  WRANGLER_PID=
}
trap stop_wrangler EXIT

admin() { curl -fsS -H "authorization: Bearer $admin_key" "$@"; }
join() { curl -fsS -X POST "$BASE/rooms/cold/join" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])'; }
# The worker's calls to a shard for a claim (an admitted visitor's poll) so far.
claim_calls() {
  curl -fsS "$BASE/metrics" | sed -n 's/^queuegate_store_calls_total{kind="claim"} \([0-9]*\)$/\1/p' | grep . || echo 0
}
# Rows and bytes of the shard object's tables (the one named `room:…`), wrangler dev stopped.
storage() {  # storage <persist dir> <room>
  python3 - "$1" "$2" <<'EOF'
import glob, os, sqlite3, sys
persist, room = sys.argv[1], sys.argv[2]
for path in sorted(glob.glob(f"{persist}/v3/do/*-ShardObject/*.sqlite")):
    db = sqlite3.connect(path)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM __miniflare_do_name")]
    except sqlite3.OperationalError:
        continue  # not an object's own database
    if not any(n.startswith(room + ":") for n in names):
        continue
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    tables = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_\\_%' ESCAPE '\\' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")]
    rows_total = bytes_total = 0
    for t in tables:
        rows = nbytes = 0
        for row in db.execute(f'SELECT * FROM "{t}"'):
            rows += 1
            nbytes += sum(8 if isinstance(v, (int, float)) else len(v) if v is not None else 0
                          for v in row)
        rows_total += rows
        bytes_total += nbytes
        print(f"  table {t}: {rows} rows, {nbytes} bytes")
    print(f"  {names[0]}: {rows_total} rows, {bytes_total} bytes in all; "
          f"file {os.path.getsize(path)} bytes")
EOF
}

say "# shard object cold start under wrangler dev, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, code ${LABEL:-$(git rev-parse --short HEAD)}"
say "worker: build/index_bg.wasm $(stat -c %s build/index_bg.wasm) bytes"

for n in "${sizes[@]}"; do
  dir=$out/n$n
  if [ "${FILL:-1}" = 0 ]; then
    say "N=$n: the fill in $dir again"
    tee -a "$summary" < "$dir/storage.txt"
    continue
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  log "N=$n: fill"
  start_wrangler "$dir/persist" "$dir/wrangler-fill.log"
  admin -X PUT "$BASE/admin/rooms/cold" \
    -d '{"max_active":100000000,"shards":1,"session_ttl_s":604800,"claim_window_s":86400,"ticket_ttl_s":604800}' > /dev/null
  admin -X POST "$BASE/admin/rooms/cold/pause" > /dev/null
  # The first visitor joins alone (seq 1, whom the admission below takes), then the crowd, then
  # the last visitor (who waits).
  join > "$dir/first.ticket"
  python3 scripts/fill-crowd.py "$ORIGIN" cold "$((n - 2))" "$dir/tickets.json" "$conns" | tee "$dir/fill.txt"
  join > "$dir/last.ticket"
  admitted=$(admin -X POST "$BASE/admin/rooms/cold/admit" -d '{"count":1}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["admitted"])')
  [ "$admitted" = 1 ] || { echo "admitted $admitted, not 1" >&2; exit 1; }
  first=$(cat "$dir/first.ticket")
  reply=$(curl -fsS -H "authorization: Bearer $first" "$BASE/rooms/cold/status")
  [[ $reply == *'"admitted"'* ]] || { echo "the first visitor: $reply" >&2; exit 1; }
  stop_wrangler
  say "N=$n: $(cat "$dir/fill.txt")"
  storage "$dir/persist" cold | tee "$dir/storage.txt" | tee -a "$summary"
done

for n in "${sizes[@]}"; do
  dir=$out/n$n
  first=$(cat "$dir/first.ticket")
  last=$(cat "$dir/last.ticket")
  times=$dir/times$suffix.txt
  : > "$times"
  for run in $(seq "$runs"); do
    start_wrangler "$dir/persist" "$dir/wrangler-run$run$suffix.log"
    curl -fsS -o /dev/null "$BASE/healthz"
    # A waiting visitor: the isolate reads the registry; the shard is not called.
    reply=$(curl -fsS -H "authorization: Bearer $last" "$BASE/rooms/cold/status")
    [[ $reply == *'"waiting"'* ]] || { echo "the last visitor: $reply" >&2; exit 1; }
    before=$(claim_calls)
    cold=$(curl -fsS -o "$dir/cold.json" -w '%{time_total}' -H "authorization: Bearer $first" "$BASE/rooms/cold/status")
    grep -q '"admitted"' "$dir/cold.json" || { cat "$dir/cold.json" >&2; exit 1; }
    warm=$(curl -fsS -o /dev/null -w '%{time_total}' -H "authorization: Bearer $first" "$BASE/rooms/cold/status")
    after=$(claim_calls)
    [ "$before" = 0 ] && [ "$after" = 2 ] \
      || { echo "claim calls: $before before the timed poll, $after after (want 0 and 2)" >&2; exit 1; }
    stop_wrangler
    echo "$cold $warm" >> "$times"
  done
  storage "$dir/persist" cold > "$dir/storage-after-runs$suffix.txt"
  python3 - "$n" "$times" <<'EOF' | tee -a "$summary"
import statistics, sys
n, path = sys.argv[1], sys.argv[2]
cold, warm = zip(*[(float(a) * 1000, float(b) * 1000) for a, b in (l.split() for l in open(path))])
print(f"N={n}: first request waking the shard: median {statistics.median(cold):.0f} ms "
      f"(min {min(cold):.0f}, max {max(cold):.0f}, {len(cold)} restarts: "
      f"{', '.join(f'{c:.0f}' for c in cold)}); the next one: median {statistics.median(warm):.1f} ms")
EOF
done
