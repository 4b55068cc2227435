#!/usr/bin/env bash
# The local demo: build, start a backend and ringmesh-proxy on loopback with
# examples/proxy.yaml, send requests through it (HTTP and TCP), show the
# proxy's metrics, then stop everything it started.
#
# Usage: bash scripts/demo.sh [--keep]   (--keep: leave it running until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
[ "${1:-}" = "--keep" ] && keep=1

command -v curl >/dev/null || { echo "demo: curl is required (apt-get install -y curl)" >&2; exit 1; }

echo "==> building (release)"
cargo build --release -q -p ringmesh-proxy -p ringmesh-e2e --bins

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "==> starting the backend on 127.0.0.1:18080"
./target/release/ringmesh-testbed --listen 127.0.0.1:18080 --name backend >"$work/backend.log" 2>&1 &
pids+=($!)

echo "==> starting ringmesh-proxy with examples/proxy.yaml"
RUST_LOG=${RUST_LOG:-info} ./target/release/ringmesh-proxy --config examples/proxy.yaml >"$work/proxy.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
    curl -fsS -o /dev/null http://127.0.0.1:15000/ready 2>/dev/null && break
    sleep 0.1
done
curl -fsS http://127.0.0.1:15000/ready >/dev/null || { echo "proxy did not become ready:"; cat "$work/proxy.log"; exit 1; }
grep -m1 "starting ringmesh-proxy" "$work/proxy.log" | sed 's/^/    proxy: /' || true

echo
echo "==> HTTP through the proxy: curl -i http://127.0.0.1:15080/echo"
curl -sS -i http://127.0.0.1:15080/echo
echo
echo "==> 200 keep-alive requests on one connection"
args=()
for _ in $(seq 1 200); do args+=(-o /dev/null "http://127.0.0.1:15080/"); done
curl -sS -w '%{http_code}\n' "${args[@]}" | sort | uniq -c | awk '{print "    " $1 " x HTTP " $2}'
echo
echo "==> a malformed request is refused, never forwarded (Content-Length and Transfer-Encoding together)"
printf 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' \
    | timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/15080; cat >&3; head -1 <&3' | sed 's/^/    /'
echo
echo "==> TCP (L4) through the proxy on 127.0.0.1:15090"
printf 'GET / HTTP/1.1\r\nHost: tcp\r\nConnection: close\r\n\r\n' \
    | timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/15090; cat >&3; head -1 <&3' | sed 's/^/    /'
echo
echo "==> proxy metrics (http://127.0.0.1:15000/stats/prometheus), selected"
curl -sS http://127.0.0.1:15000/stats/prometheus \
    | grep -E '^ringmesh_(io_driver|shards|http_requests_total|downstream_cx_total|upstream_cx_total|upstream_cx_pool_reuse_total|http_local_replies_total\{code="400"\})' \
    | grep -v ' 0$' | sed 's/^/    /'

if [ "$keep" = 1 ]; then
    echo
    echo "Running. Try: curl -i http://127.0.0.1:15080/echo ; curl http://127.0.0.1:15000/config_dump"
    echo "Edit examples/proxy.yaml to reload live. Ctrl-C stops everything."
    wait
fi
echo
echo "==> done; stopping (SIGTERM drains the proxy)"
