# Starts and stops the targets the benchmarks run against: the origin on its embedded store, the
# origin on Redis (with an append-only file, fsynced every second), or the edge worker under
# `wrangler dev` with the origin's scheduler driving it. Source it after lib.sh.
#
#   start_target origin|redis|edge LOG_PREFIX   sets TARGET_URL and TARGET_ADMIN_KEY
#   stop_target                                  stops everything start_target started
#
# Release builds (PROFILE=debug for the debug ones); everything listens on free 127.0.0.1 ports;
# storage is fresh each time.

TARGET_PIDS=()
PROFILE=${PROFILE:-release}
ORIGIN_BIN=./target/$PROFILE/queuegate-origin
TARGET_SIGNING_KEYS="k1:$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"

start_target() {  # start_target <origin|redis|edge> <log prefix>
  local kind=$1 logs=$2 port
  TARGET_ADMIN_KEY=bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  port=$(free_port)
  TARGET_URL="http://127.0.0.1:$port"
  case "$kind" in
    origin)
      QUEUEGATE_ADMIN_KEY=$TARGET_ADMIN_KEY QUEUEGATE_SIGNING_KEYS=$TARGET_SIGNING_KEYS \
        QUEUEGATE_LOG=warn "$ORIGIN_BIN" serve --listen "127.0.0.1:$port" \
        > "$logs-origin.log" 2>&1 &
      TARGET_PIDS+=($!)
      ;;
    redis)
      ensure_redis
      local redis_port redis_dir
      redis_port=$(free_port)
      redis_dir=$(mktemp -d)
      redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$redis_dir" --save "" \
        --appendonly yes --appendfsync everysec > "$logs-redis.log" 2>&1 &
      TARGET_PIDS+=($!)
      for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
      QUEUEGATE_ADMIN_KEY=$TARGET_ADMIN_KEY QUEUEGATE_SIGNING_KEYS=$TARGET_SIGNING_KEYS \
        QUEUEGATE_LOG=warn "$ORIGIN_BIN" serve --listen "127.0.0.1:$port" \
        --redis "redis://127.0.0.1:$redis_port" > "$logs-origin.log" 2>&1 &
      TARGET_PIDS+=($!)
      ;;
    edge)
      WRANGLER_SEND_METRICS=false node_modules/.bin/wrangler dev --ip 127.0.0.1 --port "$port" \
        --inspector-port "$(free_port)" --persist-to "$(mktemp -d)" \
        --var "QUEUEGATE_ADMIN_KEY:$TARGET_ADMIN_KEY" \
        --var "QUEUEGATE_SIGNING_KEYS:$TARGET_SIGNING_KEYS" \
        --var "QUEUEGATE_UPSTREAM:" > "$logs-wrangler.log" 2>&1 &
      TARGET_PIDS+=($!)
      # wrangler dev takes 10-30 s to come up, longer on a busy machine.
      local tries
      for tries in 1 2 3 4; do
        wait_for_http "$TARGET_URL/_qg/v1/healthz" 2>/dev/null && break
        [ "$tries" -lt 4 ] || { tail -20 "$logs-wrangler.log" >&2; return 1; }
      done
      QUEUEGATE_ADMIN_KEY=$TARGET_ADMIN_KEY QUEUEGATE_LOG=warn \
        "$ORIGIN_BIN" schedule --edge "$TARGET_URL" > "$logs-scheduler.log" 2>&1 &
      TARGET_PIDS+=($!)
      ;;
    *)
      echo "unknown target $kind (origin, redis or edge)" >&2
      return 2
      ;;
  esac
  wait_for_http "$TARGET_URL/_qg/v1/healthz"
}

stop_target() {
  [ ${#TARGET_PIDS[@]} -gt 0 ] || return 0
  kill "${TARGET_PIDS[@]}" 2>/dev/null || true
  wait "${TARGET_PIDS[@]}" 2>/dev/null || true
  TARGET_PIDS=()
}

# Builds what a target needs.
build_target() {  # build_target <origin|redis|edge>
  if [ "$PROFILE" = release ]; then
    cargo build --release -q --locked -p queuegate-origin
  else
    cargo build -q --locked -p queuegate-origin
  fi
  if [ "$1" = edge ]; then
    build_edge
  fi
}
