#!/usr/bin/env bash
# Builds the origin and serves the waiting room on the embedded store: with no arguments, a demo
# room protects every path in front of a built-in demo page, on http://127.0.0.1:8080.
# Arguments go to `queuegate-origin serve` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p queuegate-origin
exec ./target/release/queuegate-origin serve "$@"
