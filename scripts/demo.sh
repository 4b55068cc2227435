#!/usr/bin/env bash
# The README's first command: build the release binaries, then run
# `ringmesh demo` — ringmesh-control, one ringmesh-proxy sidecar per pod
# on its own 127.0.0.x address, a bookinfo-like sample application and
# traffic, with a live view. Ctrl-C stops everything it started.
#
# Usage: bash scripts/demo.sh [ringmesh demo flags]
#   bash scripts/demo.sh                          # run until Ctrl-C
#   bash scripts/demo.sh --duration 20s --json    # 20 s, then a JSON summary
#   bash scripts/demo.sh --help                   # every flag
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || {
    echo "demo: cargo is required: install Rust from https://rustup.rs" >&2
    exit 1
}

echo "==> building the release binaries (the first build takes a few minutes)" >&2
cargo build --release -p ringmesh-cli -p ringmesh-control -p ringmesh-proxy -p ringmesh-demo

exec "${CARGO_TARGET_DIR:-target}/release/ringmesh" demo "$@"
