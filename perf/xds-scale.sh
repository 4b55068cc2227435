#!/usr/bin/env bash
# Control-plane scale: N simulated Delta ADS sidecars (ringmesh-xds-load)
# against ringmesh-control serving a generated registry of M services.
# See perf/README.md ("Control-plane scale"). One command:
#   perf/xds-scale.sh                   full run (10,000 proxies, 1,000 services)
#   perf/xds-scale.sh --smoke           CI: 200 proxies, 50 services, asserts correctness only
set -euo pipefail

usage() {
    cat <<'EOF'
usage: perf/xds-scale.sh [--proxies N] [--services M] [--smoke] [options] [-- TOOL-RUN-ARGS]

  --proxies N        simulated sidecars (default 10000)
  --services M       generated services (default 1000)
  --namespaces K     namespaces (default 10)
  --sidecars MODE    namespaces with a Sidecar limiting egress to ./*: all, half, none (default half)
  --workloads N      pods per service (default: just enough for the proxies)
  --node-ip pod|none pod (default): every node carries its pod IP, as Kubernetes sidecars do;
                     none: no IP, so the pods of a workload share one control-plane scope
                     (what-if: what per-pod scopes cost)
  --smoke            200 proxies, 50 services, 4 single changes, 3 s of churn at 20/s;
                     debug build; asserts correctness only (every change reaches every
                     affected proxy, final states equal the control plane's); records nothing
  --poll-interval D  the control plane's registry poll interval (default 50ms)
  --release / --debug  build profile (default: release, debug with --smoke)
  --no-build         use the binaries already built
  --record           append the run's section to perf/RESULTS.md
  --keep             keep the work directory (registry, control-plane log, JSON)
  -- ARGS            passed to `ringmesh-xds-load run` (e.g. --churn-duration 10s)

Writes the JSON report to perf/results/xds-scale-<time>.json (work dir with --smoke).
Exit status: the load tool's (non-zero when any check failed).
EOF
}

PROXIES=10000
SERVICES=1000
NAMESPACES=10
SIDECARS=half
NODE_IP=pod
WORKLOADS=0
SMOKE=0
POLL=50ms
PROFILE=
BUILD=1
RECORD=0
KEEP=0
CMDLINE="perf/xds-scale.sh $*"
LOADAVG=$(cut -d" " -f1-3 /proc/loadavg)
TOOL_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --proxies) PROXIES=$2; shift ;;
        --services) SERVICES=$2; shift ;;
        --namespaces) NAMESPACES=$2; shift ;;
        --sidecars) SIDECARS=$2; shift ;;
        --node-ip) NODE_IP=$2; shift ;;
        --workloads) WORKLOADS=$2; shift ;;
        --smoke) SMOKE=1 ;;
        --poll-interval) POLL=$2; shift ;;
        --release) PROFILE=release ;;
        --debug) PROFILE=debug ;;
        --no-build) BUILD=0 ;;
        --record) RECORD=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; TOOL_ARGS=("$@"); break ;;
        *) echo "xds-scale: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ "$SMOKE" = 1 ]; then
    PROXIES=200
    SERVICES=50
    RECORD=0
    TOOL_ARGS=(--single-changes 4 --churn-rate 20 --churn-duration 3s --settle 500ms
               --converge-timeout 60s --sync-timeout 3m --max-run 10m "${TOOL_ARGS[@]}")
    PROFILE=${PROFILE:-debug}
fi
PROFILE=${PROFILE:-release}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE
CARGO_PROFILE=()
[ "$PROFILE" = release ] && CARGO_PROFILE=(--release)

if [ "$BUILD" = 1 ]; then
    echo "xds-scale: building ringmesh-control and ringmesh-xds-load ($PROFILE)" >&2
    cargo build -q "${CARGO_PROFILE[@]}" -p ringmesh-control --bin ringmesh-control
    cargo build -q "${CARGO_PROFILE[@]}" -p ringmesh-perf --features xds-load --bin ringmesh-xds-load
fi
for b in ringmesh-control ringmesh-xds-load; do
    [ -x "$BIN/$b" ] || { echo "xds-scale: $BIN/$b is missing (drop --no-build)" >&2; exit 2; }
done

# One TCP connection per simulated proxy on each side.
want=$((PROXIES + 1000))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
    ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
    echo "xds-scale: $PROXIES proxies need about $want file descriptors; ulimit -n is $(ulimit -n)" >&2
    exit 2
fi

WORK=$(mktemp -d /tmp/ringmesh-xds-scale.XXXXXX)
CP_PID=
cleanup() {
    if [ -n "$CP_PID" ] && kill -0 "$CP_PID" 2>/dev/null; then
        kill -TERM "$CP_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$CP_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CP_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then
        echo "xds-scale: work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

echo "xds-scale: generating $SERVICES services for $PROXIES proxies in $WORK/mesh" >&2
"$BIN/ringmesh-xds-load" generate --dir "$WORK/mesh" --proxies "$PROXIES" --services "$SERVICES" \
    --namespaces "$NAMESPACES" --sidecars "$SIDECARS" --node-ip "$NODE_IP" \
    --workloads-per-service "$WORKLOADS"

# The control plane in its own session, stopped by PID at the end.
RUST_LOG=${RUST_LOG:-info} NO_COLOR=1 setsid "$BIN/ringmesh-control" \
    --config-dir "$WORK/mesh" --xds-address 127.0.0.1:0 --poll-interval "$POLL" \
    --data-dir "$WORK/ca" >"$WORK/control.out" 2>"$WORK/control.log" &
CP_PID=$!
ADDR=
for _ in $(seq 1200); do
    ADDR=$(sed -n 's/^LISTENING //p' "$WORK/control.out" | head -1)
    [ -n "$ADDR" ] && break
    kill -0 "$CP_PID" 2>/dev/null || { echo "xds-scale: ringmesh-control exited:" >&2; tail -20 "$WORK/control.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$ADDR" ] || { echo "xds-scale: ringmesh-control did not listen within 120 s" >&2; exit 1; }
# The registry's findings on the generated files (none expected).
if grep -E ' (ERROR|WARN) ' "$WORK/control.log" | grep -q 'RM0\|error\['; then
    echo "xds-scale: the control plane reported findings on the generated registry:" >&2
    grep -E ' (ERROR|WARN) ' "$WORK/control.log" | head -5 >&2
    exit 1
fi
echo "xds-scale: ringmesh-control pid $CP_PID on $ADDR (poll interval $POLL)" >&2

STAMP=$(date -u +%Y%m%dT%H%M%S)
if [ "$SMOKE" = 1 ]; then JSON=$WORK/report.json; else mkdir -p perf/results; JSON=perf/results/xds-scale-$STAMP.json; fi
set +e
"$BIN/ringmesh-xds-load" run --dir "$WORK/mesh" --xds "$ADDR" --control-pid "$CP_PID" \
    --control-log "$WORK/control.log" --json "$JSON" "${TOOL_ARGS[@]}" | tee "$WORK/table.md"
STATUS=${PIPESTATUS[0]}
set -e
echo "xds-scale: JSON report: $JSON" >&2

if [ "$RECORD" = 1 ]; then
    {
        echo
        echo "## Control-plane scale run ($(date -u '+%Y-%m-%d %H:%M UTC'))"
        echo
        echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/^Mem:/ {print $2}') GiB, kernel $(uname -r)"
        echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
        echo "- command: \`$CMDLINE\`"
        echo "- control plane: \`ringmesh-control --poll-interval $POLL\` (debounce defaults), $PROFILE build; load average before: $LOADAVG"
        echo "- raw: \`$JSON\`"
        echo
        cat "$WORK/table.md"
    } >>perf/RESULTS.md
    echo "xds-scale: appended to perf/RESULTS.md" >&2
fi
exit "$STATUS"
