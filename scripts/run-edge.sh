#!/usr/bin/env bash
# The edge, locally: builds the worker (offline from GitHub) and the origin, serves the worker
# under `wrangler dev` (workerd, Durable Objects persisted in .wrangler/state) on
# http://127.0.0.1:8787, creates the demo room (it protects every path, in front of the built-in
# demo page) unless the room exists, and runs the origin's scheduler driving the edge. Ctrl-C
# stops everything.
#
# Environment: PORT (8787), QUEUEGATE_ADMIN_KEY and QUEUEGATE_SIGNING_KEYS (generated and kept in
# .wrangler/dev-secrets when unset, so tickets survive a restart), QUEUEGATE_UPSTREAM (the
# application behind the gate; unset: the built-in demo page).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

port=${PORT:-8787}
mkdir -p target .wrangler
build_edge
log "building the origin (its scheduler drives the edge)"
cargo build --release --locked -p queuegate-origin

secrets=.wrangler/dev-secrets
if [ ! -f "$secrets" ]; then
  random() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
  printf 'admin=%s\nkeys=k1:%s\n' "$(random)" "$(random)" > "$secrets"
fi
admin_key=${QUEUEGATE_ADMIN_KEY:-$(sed -n 's/^admin=//p' "$secrets")}
signing_keys=${QUEUEGATE_SIGNING_KEYS:-$(sed -n 's/^keys=//p' "$secrets")}

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM
log "starting wrangler dev on 127.0.0.1:$port"
WRANGLER_SEND_METRICS=false node_modules/.bin/wrangler dev --ip 127.0.0.1 --port "$port" \
  --inspector-port "$(free_port)" --persist-to .wrangler/state \
  --var "QUEUEGATE_ADMIN_KEY:$admin_key" --var "QUEUEGATE_SIGNING_KEYS:$signing_keys" \
  --var "QUEUEGATE_UPSTREAM:${QUEUEGATE_UPSTREAM:-}" > target/wrangler-dev.log 2>&1 &
pids+=($!)
base="http://127.0.0.1:$port/_qg/v1"
wait_for_http "$base/healthz" || { cat target/wrangler-dev.log >&2; exit 1; }

admin() { curl -sS -H "authorization: Bearer $admin_key" "$@"; }
if [ "$(admin -o /dev/null -w '%{http_code}' "$base/admin/rooms/demo")" = 404 ]; then
  admin -X PUT "$base/admin/rooms/demo" \
    -d '{"paths":["/"],"max_active":2,"admit_per_minute":60,"session_ttl_s":60,"claim_window_s":30,"shards":2}' > /dev/null
fi

log "starting the origin's scheduler against the edge"
QUEUEGATE_ADMIN_KEY=$admin_key ./target/release/queuegate-origin schedule \
  --edge "http://127.0.0.1:$port" &
pids+=($!)

cat <<EOF

  queuegate's edge is serving on http://127.0.0.1:$port/ (wrangler dev, log in target/wrangler-dev.log)
  demo room: 2 visitors at a time, 60 admissions a minute; open the page in a few browser tabs
  admin key: $admin_key   (curl -H "authorization: Bearer $admin_key" $base/admin/rooms/demo)

EOF
wait -n "${pids[@]}"
