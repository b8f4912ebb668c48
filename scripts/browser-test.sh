#!/usr/bin/env bash
# The waiting page in a real browser: headless Chromium (Debian's package) driven by
# playwright-core (pinned in package.json) through tests/browser/, against the origin and against
# the edge worker under `wrangler dev` with the origin's scheduler. Installs what is missing,
# builds the origin (debug) and the worker, and runs `node --test tests/browser/`.
#
# Environment: SCREENSHOT_DIR (default target/browser-screenshots), BROWSER_TEST_TARGETS
# (default "origin edge").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_chromium
mkdir -p target
build_edge  # installs the edge toolchain (and node_modules from package-lock.json) if missing
pinned_playwright() {
  node -e 'const want = require("./package.json").devDependencies["playwright-core"];
    let have; try { have = require("./node_modules/playwright-core/package.json").version; } catch {}
    process.exit(have === want ? 0 : 1);'
}
if ! pinned_playwright; then
  log "installing playwright-core (package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
log "building the origin"
cargo build --locked -p queuegate-origin

export SCREENSHOT_DIR=${SCREENSHOT_DIR:-target/browser-screenshots}
log "browser test (screenshots go to $SCREENSHOT_DIR)"
node --test tests/browser/
log "browser test passed; screenshots in $SCREENSHOT_DIR"
