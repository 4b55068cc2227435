//! Istio-standard metrics, peer metadata exchange and access logs, on real
//! proxies:
//!
//! - an outbound sidecar (`productpage`) → mTLS → an inbound sidecar
//!   (`reviews`) → the testbed; a known sequence of requests (3×200,
//!   2×404 from the backend, 1×503 no healthy upstream answered by the
//!   outbound sidecar) gives exact `istio_requests_total` lines on both
//!   reporters, with the peer's identity in the labels, exact byte sums,
//!   durations in plausible buckets, and the TCP family for a TCP listener;
//! - the peer metadata header never reaches the application or the
//!   client, and a plaintext client forging it gets no trusted labels;
//! - access logs: JSON lines with the documented fields, a status filter,
//!   and a writer blocked on a FIFO nobody reads — requests still succeed
//!   and the dropped lines are counted.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    sync::Arc,
    thread,
    time::{Duration, Instant, SystemTime},
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use ringmesh_ca::{CaOptions, CaStore};
use ringmesh_e2e::{
    echo_headers, simple_http_config, Backend, Client, Driver, Metrics, Proxy, TempDir,
};
use ringmesh_tls::{generate_key_and_csr, SpiffeId};
use serde_json::{json, Value};

const TD: &str = "cluster.local";
const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const REVIEWS_SVC: &str = "reviews.default.svc.cluster.local";
const HOUR: Duration = Duration::from_secs(3600);
const DRIVER: Driver = Driver::Epoll;

/// A mesh CA over a root made here; SVIDs written as files.
struct Pki {
    dir: TempDir,
    ca: Arc<CaStore>,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("metrics-pki");
        let ca_dir = dir.path().join("ca");
        std::fs::create_dir_all(&ca_dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "Root");
        params.distinguished_name.push(DnType::OrganizationName, TD);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - HOUR).into();
        params.not_after = (now + 24 * HOUR).into();
        let pem = params.self_signed(&key).unwrap().pem();
        std::fs::write(ca_dir.join("root-cert.pem"), pem).unwrap();
        std::fs::write(ca_dir.join("root-key.pem"), key.serialize_pem()).unwrap();
        let ca = Arc::new(CaStore::open(&ca_dir, CaOptions::new(TD)).unwrap());
        Pki { dir, ca }
    }

    /// The `identity` section of a proxy holding an SVID for `default/<sa>`.
    fn identity(&self, sa: &str) -> Value {
        let id = SpiffeId::new(TD, "default", sa).unwrap();
        let req = generate_key_and_csr(&id).unwrap();
        let issued = self.ca.sign(&req.csr_pem, &id, HOUR).unwrap();
        let c = self.dir.path().join(format!("{sa}-cert.pem"));
        let k = self.dir.path().join(format!("{sa}-key.pem"));
        std::fs::write(&c, issued.cert_chain_pem).unwrap();
        std::fs::write(&k, req.key_pem).unwrap();
        json!({
            "namespace": "default",
            "service_account": sa,
            "cert_chain": c.display().to_string(),
            "private_key": k.display().to_string(),
            "trust_bundle": self.dir.path().join("ca").join("root-cert.pem").display().to_string(),
        })
    }
}

fn workload(name: &str, app: &str) -> Value {
    json!({ "name": name, "namespace": "default", "app": app, "version": "v1",
            "cluster": "test-cluster" })
}

fn route(name: &str, routes: Vec<(&str, &str)>) -> Value {
    let routes: Vec<Value> = routes
        .into_iter()
        .map(|(prefix, cluster)| json!({ "match": { "prefix": prefix }, "cluster": cluster }))
        .collect();
    json!({ "name": name, "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }] })
}

fn mutual(name: &str, endpoint: SocketAddr) -> Value {
    json!({ "name": name, "endpoints": [{ "address": endpoint.to_string() }],
            "tls": { "mode": "ISTIO_MUTUAL", "subject_alt_names": [REVIEWS] } })
}

struct Mesh {
    _pki: Pki,
    backend: Backend,
    inbound: Proxy,
    outbound: Proxy,
    _dir: TempDir,
    inbound_log: PathBuf,
    outbound_log: PathBuf,
}

fn mesh() -> Mesh {
    let pki = Pki::new();
    let dir = TempDir::new("metrics-logs");
    let inbound_log = dir.path().join("inbound.log");
    let outbound_log = dir.path().join("outbound.log");
    let backend = Backend::start("reviews-app");
    let app = |name: &str| json!({ "name": name, "endpoints": [{ "address": backend.addr().to_string() }] });
    let inbound = Proxy::start(
        DRIVER,
        json!({
            "identity": pki.identity("reviews"),
            "workload": workload("reviews-v1", "reviews"),
            "access_log": { "path": inbound_log.display().to_string(),
                            "filter": { "status_min": 400 } },
            "listeners": [
                { "name": "inbound", "address": "auto", "protocol": "http",
                  "route_config": "local", "tls": { "mode": "STRICT" } },
                { "name": "inbound-permissive", "address": "auto", "protocol": "http",
                  "route_config": "local", "tls": { "mode": "PERMISSIVE" } },
                { "name": "inbound-tcp", "address": "auto", "protocol": "tcp",
                  "cluster": "inbound|9081||", "tls": { "mode": "STRICT" } },
            ],
            "route_configs": [route("local", vec![("/", "inbound|9080||")])],
            "clusters": [app("inbound|9080||"), app("inbound|9081||")],
        }),
    );
    let outbound = Proxy::start(
        DRIVER,
        json!({
            "identity": pki.identity("productpage"),
            "workload": workload("productpage-v1", "productpage"),
            "access_log": { "path": outbound_log.display().to_string() },
            "listeners": [
                { "name": "outbound", "address": "auto", "protocol": "http", "route_config": "out" },
                { "name": "outbound-tcp", "address": "auto", "protocol": "tcp",
                  "cluster": "outbound|9081||reviews-tcp.default.svc.cluster.local" },
            ],
            "route_configs": [route("out", vec![
                ("/nohealthy", "outbound|9080||empty.default.svc.cluster.local"),
                ("/", "outbound|9080||reviews.default.svc.cluster.local"),
            ])],
            "clusters": [
                mutual("outbound|9080||reviews.default.svc.cluster.local", inbound.addr("inbound")),
                mutual("outbound|9081||reviews-tcp.default.svc.cluster.local", inbound.addr("inbound-tcp")),
                { "name": "outbound|9080||empty.default.svc.cluster.local", "endpoints": [] },
            ],
        }),
    );
    Mesh {
        _pki: pki,
        backend,
        inbound,
        outbound,
        _dir: dir,
        inbound_log,
        outbound_log,
    }
}

/// Wait (5 s) until `ok` holds for the proxy's metrics: a request is
/// recorded just after its response is written.
fn wait_metrics(p: &Proxy, what: &str, ok: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = p.metrics();
        if ok(&m) {
            return m;
        }
        if Instant::now() > deadline {
            let lines: Vec<&str> = m
                .text
                .lines()
                .filter(|l| l.starts_with("istio_") || l.starts_with("ringmesh_access"))
                .collect();
            panic!("{what}: not reached; istio series:\n{}", lines.join("\n"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The label part of a series for the two workloads, reporter and outcome.
fn series(reporter: &str, dest_known: bool, code: &str, flags: &str, security: &str) -> String {
    let (dw, dp, da, dv, dcs, dcr, dc) = if dest_known {
        (
            "reviews-v1",
            REVIEWS,
            "reviews",
            "v1",
            "reviews",
            "v1",
            "test-cluster",
        )
    } else {
        (
            "unknown", "unknown", "unknown", "unknown", "unknown", "unknown", "unknown",
        )
    };
    let (svc, svc_name) = if dest_known || flags == "-" {
        (REVIEWS_SVC, "reviews")
    } else {
        ("empty.default.svc.cluster.local", "empty")
    };
    let dns = if dest_known { "default" } else { "unknown" };
    format!(
        "reporter=\"{reporter}\",source_workload=\"productpage-v1\",source_canonical_service=\"productpage\",\
         source_canonical_revision=\"v1\",source_workload_namespace=\"default\",source_principal=\"{PRODUCTPAGE}\",\
         source_app=\"productpage\",source_version=\"v1\",source_cluster=\"test-cluster\",\
         destination_workload=\"{dw}\",destination_workload_namespace=\"{dns}\",destination_principal=\"{dp}\",\
         destination_app=\"{da}\",destination_version=\"{dv}\",destination_service=\"{svc}\",\
         destination_canonical_service=\"{dcs}\",destination_canonical_revision=\"{dcr}\",\
         destination_service_name=\"{svc_name}\",destination_service_namespace=\"default\",\
         destination_cluster=\"{dc}\",request_protocol=\"http\",response_code=\"{code}\",\
         grpc_response_status=\"\",response_flags=\"{flags}\",connection_security_policy=\"{security}\""
    )
}

fn assert_line(m: &Metrics, line: &str) {
    assert!(
        m.text.lines().any(|l| l == line),
        "missing line:\n{line}\nistio lines:\n{}",
        m.text
            .lines()
            .filter(|l| l.starts_with("istio_requests_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// One request on `c`, raw; returns (request bytes, response bytes).
fn exchange(c: &mut Client, path: &str, expect: u16) -> (u64, u64) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: reviews\r\nUser-Agent: metrics-test\r\n\r\n");
    c.send(req.as_bytes()).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, expect, "{path}: {}", r.text());
    assert!(
        r.header("x-ringmesh-peer").is_none(),
        "peer header reached the client"
    );
    (req.len() as u64, r.raw_head.len() as u64 + r.body_len)
}

#[test]
fn istio_metrics_between_sidecars() {
    let mesh = mesh();
    let mut c = Client::connect(mesh.outbound.addr("outbound"));
    let mut sent = BTreeMap::<&str, (u64, u64)>::new();
    for (path, code, key) in [
        ("/status/200", 200, "200"),
        ("/status/200", 200, "200"),
        ("/status/200", 200, "200"),
        ("/status/404", 404, "404"),
        ("/status/404", 404, "404"),
        ("/nohealthy", 503, "503"),
    ] {
        let (rq, rs) = exchange(&mut c, path, code);
        let e = sent.entry(key).or_default();
        e.0 += rq;
        e.1 += rs;
    }
    let out = wait_metrics(&mesh.outbound, "outbound: 6 requests", |m| {
        m.get_or_zero("istio_requests_total", &[("reporter", "source")]) == 6.0
    });
    let inb = wait_metrics(&mesh.inbound, "inbound: 5 requests", |m| {
        m.get_or_zero("istio_requests_total", &[("reporter", "destination")]) == 5.0
    });

    // Exact lines, both reporters: the source sidecar learned the
    // destination's workload from the response; the destination learned
    // the source's from the request, vouched for by its mTLS identity.
    for (code, n) in [("200", 3), ("404", 2)] {
        assert_line(
            &out,
            &format!(
                "istio_requests_total{{{}}} {n}",
                series("source", true, code, "-", "unknown")
            ),
        );
        assert_line(
            &inb,
            &format!(
                "istio_requests_total{{{}}} {n}",
                series("destination", true, code, "-", "mutual_tls")
            ),
        );
    }
    // The local reply: no destination to learn from.
    assert_line(
        &out,
        &format!(
            "istio_requests_total{{{}}} 1",
            series("source", false, "503", "UH", "unknown")
        ),
    );
    assert_eq!(
        out.get_or_zero("istio_requests_total", &[("reporter", "destination")]),
        0.0
    );

    // Bytes: exact sums on the source side (what the client sent and
    // received), and in the right buckets.
    for (code, n) in [("200", 3.0), ("404", 2.0), ("503", 1.0)] {
        let labels = [("reporter", "source"), ("response_code", code)];
        let (rq, rs) = sent[code];
        assert_eq!(
            out.get("istio_request_bytes_sum", &labels),
            Some(rq as f64),
            "{code}"
        );
        assert_eq!(
            out.get("istio_response_bytes_sum", &labels),
            Some(rs as f64),
            "{code}"
        );
        assert_eq!(out.get("istio_request_bytes_count", &labels), Some(n));
        // Each request of a code has the same size: all in the bucket of
        // the first bound at or above it, none below.
        let le = |name: &str, le: &str| {
            let mut l = labels.to_vec();
            l.push(("le", le));
            out.get(name, &l)
        };
        for (name, total) in [
            ("istio_request_bytes_bucket", rq),
            ("istio_response_bytes_bucket", rs),
        ] {
            let each = total / n as u64;
            let bounds = [1u64, 10, 100, 1000, 10000];
            let i = bounds.iter().position(|&b| each <= b).unwrap();
            assert_eq!(
                le(name, &bounds[i].to_string()),
                Some(n),
                "{name} {code}: {each} B"
            );
            if i > 0 {
                assert_eq!(
                    le(name, &bounds[i - 1].to_string()),
                    Some(0.0),
                    "{name} {code}"
                );
            }
            assert_eq!(le(name, "+Inf"), Some(n));
        }
        // Durations: all counted, all within 10 s; never a speed claim.
        assert_eq!(
            le("istio_request_duration_milliseconds_bucket", "10000"),
            Some(n)
        );
        assert_eq!(
            le("istio_request_duration_milliseconds_bucket", "+Inf"),
            Some(n)
        );
        assert_eq!(
            out.get("istio_request_duration_milliseconds_count", &labels),
            Some(n)
        );
    }
    let inb_200 = [("reporter", "destination"), ("response_code", "200")];
    assert_eq!(inb.get("istio_request_bytes_count", &inb_200), Some(3.0));
    assert!(inb.get_or_zero("istio_request_bytes_sum", &inb_200) > sent["200"].0 as f64);
    // Bucket lines are cumulative and in Istio's order.
    let buckets: Vec<&str> = out
        .text
        .lines()
        .filter(|l| {
            l.starts_with("istio_request_duration_milliseconds_bucket{")
                && l.contains("response_code=\"200\"")
        })
        .map(|l| l.split("le=\"").nth(1).unwrap().split('"').next().unwrap())
        .collect();
    assert_eq!(
        buckets,
        [
            "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
            "10000", "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf"
        ]
    );

    // Istio's dashboard queries have their labels:
    // sum(rate(istio_requests_total{reporter="destination"}[1m])) by (destination_workload)
    let mut by_workload = BTreeMap::<String, f64>::new();
    for s in inb
        .samples
        .iter()
        .filter(|s| s.name == "istio_requests_total")
    {
        let label = |k: &str| {
            s.labels
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{k} missing from {:?}", s.labels))
        };
        for k in [
            "source_workload",
            "source_workload_namespace",
            "destination_service",
            "destination_workload_namespace",
            "response_code",
            "connection_security_policy",
        ] {
            label(k);
        }
        if label("reporter") == "destination" {
            *by_workload
                .entry(label("destination_workload"))
                .or_default() += s.value;
        }
    }
    assert_eq!(
        by_workload,
        BTreeMap::from([("reviews-v1".to_string(), 5.0)])
    );

    // TCP through both sidecars.
    let mut t = TcpStream::connect(mesh.outbound.addr("outbound-tcp")).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = b"GET /status/200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    t.write_all(req).unwrap();
    let mut got = Vec::new();
    t.read_to_end(&mut got).unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    drop(t);
    let src = [
        ("reporter", "source"),
        (
            "destination_service",
            "reviews-tcp.default.svc.cluster.local",
        ),
    ];
    let out = wait_metrics(&mesh.outbound, "outbound tcp closed", |m| {
        m.get_or_zero("istio_tcp_connections_closed_total", &src) == 1.0
    });
    assert_eq!(
        out.get("istio_tcp_connections_opened_total", &src),
        Some(1.0)
    );
    assert_eq!(
        out.get("istio_tcp_received_bytes_total", &src),
        Some(req.len() as f64)
    );
    assert_eq!(
        out.get("istio_tcp_sent_bytes_total", &src),
        Some(got.len() as f64)
    );
    assert_eq!(
        out.get(
            "istio_tcp_connections_opened_total",
            &[
                ("request_protocol", "tcp"),
                ("source_workload", "productpage-v1")
            ]
        ),
        Some(1.0)
    );
    let dst = [
        ("reporter", "destination"),
        ("source_principal", PRODUCTPAGE),
        ("destination_workload", "reviews-v1"),
        ("connection_security_policy", "mutual_tls"),
    ];
    let inb = wait_metrics(&mesh.inbound, "inbound tcp closed", |m| {
        m.get_or_zero("istio_tcp_connections_closed_total", &dst) == 1.0
    });
    assert_eq!(
        inb.get("istio_tcp_received_bytes_total", &dst),
        Some(req.len() as f64)
    );
    assert_eq!(
        inb.get("istio_tcp_sent_bytes_total", &dst),
        Some(got.len() as f64)
    );
    assert!(
        !inb.text.contains("response_code=\"\""),
        "TCP series carry no response_code"
    );

    // The peer header never reaches the app, even when the client sends
    // one: the outbound sidecar replaces it with its own.
    let r = c
        .request(
            "GET",
            "reviews",
            "/echo",
            &[(
                "x-ringmesh-peer",
                "id=spiffe://cluster.local/ns/default/sa/evil;w=evil;ns=default",
            )],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("x-ringmesh-peer").is_none());
    let seen = echo_headers(&r.json());
    assert!(
        !seen
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("x-ringmesh-peer")),
        "{seen:?}"
    );
    wait_metrics(&mesh.inbound, "echo recorded as productpage", |m| {
        m.get_or_zero(
            "istio_requests_total",
            &[
                ("reporter", "destination"),
                ("source_workload", "productpage-v1"),
                ("response_code", "200"),
            ],
        ) == 4.0
    });

    // A plaintext client forging the header: stripped, not believed.
    let mut p = Client::connect(mesh.inbound.addr("inbound-permissive"));
    let r = p
        .request(
            "GET",
            "reviews",
            "/echo",
            &[(
                "x-ringmesh-peer",
                "id=spiffe://cluster.local/ns/default/sa/productpage;w=productpage-v1;ns=default",
            )],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("x-ringmesh-peer").is_none(),
        "no metadata for plaintext clients"
    );
    let seen = echo_headers(&r.json());
    assert!(
        !seen
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("x-ringmesh-peer")),
        "{seen:?}"
    );
    let inb = wait_metrics(&mesh.inbound, "plaintext request recorded", |m| {
        m.get_or_zero(
            "istio_requests_total",
            &[("connection_security_policy", "none")],
        ) == 1.0
    });
    assert_eq!(
        inb.get(
            "istio_requests_total",
            &[
                ("connection_security_policy", "none"),
                ("source_workload", "unknown"),
                ("source_principal", "unknown")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        inb.get_or_zero("ringmesh_metrics_label_overflow_total", &[]),
        0.0
    );

    // Access logs: every request on the outbound side, only >= 400 on
    // the inbound side (its filter).
    let lines = |path: &PathBuf, n: usize| -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let v: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            if v.len() >= n || Instant::now() > deadline {
                return v;
            }
            thread::sleep(Duration::from_millis(50));
        }
    };
    let outl = lines(&mesh.outbound_log, 7);
    assert_eq!(outl.len(), 7, "{outl:?}");
    let first = &outl[0];
    for k in [
        "start_time",
        "method",
        "path",
        "protocol",
        "authority",
        "response_code",
        "response_flags",
        "duration_ms",
        "upstream_cluster",
        "upstream_host",
        "bytes_received",
        "bytes_sent",
        "downstream_peer_principal",
        "x_request_id",
        "trace_id",
        "user_agent",
    ] {
        assert!(first.get(k).is_some(), "{k} missing: {first}");
    }
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/status/200");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["authority"], "reviews");
    assert_eq!(first["response_code"], 200);
    assert_eq!(first["user_agent"], "metrics-test");
    assert_eq!(
        first["upstream_cluster"],
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    assert_eq!(
        first["upstream_host"],
        mesh.inbound.addr("inbound").to_string()
    );
    assert_eq!(first["bytes_received"], sent["200"].0 / 3);
    assert!(
        first["x_request_id"]
            .as_str()
            .is_some_and(|s| s.len() == 36),
        "{first}"
    );
    assert!(first["start_time"].as_str().unwrap().ends_with('Z'));
    let uh = &outl[5];
    assert_eq!(
        (uh["response_code"].as_u64(), uh["response_flags"].as_str()),
        (Some(503), Some("UH"))
    );
    let inl = lines(&mesh.inbound_log, 2);
    assert_eq!(inl.len(), 2, "only the 404s pass status_min 400: {inl:?}");
    for l in &inl {
        assert_eq!(l["response_code"], 404);
        assert_eq!(l["downstream_peer_principal"], PRODUCTPAGE);
    }
    drop(mesh.backend);
}

#[test]
fn access_log_drops_rather_than_blocks() {
    let dir = TempDir::new("metrics-fifo");
    let fifo = dir.path().join("log.fifo");
    let c_path = std::ffi::CString::new(fifo.display().to_string()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    let backend = Backend::start("app");
    let mut config = simple_http_config(&[backend.addr()]);
    config["access_log"] = json!({ "path": fifo.display().to_string(), "queue_lines": 2 });
    let proxy = Proxy::start(DRIVER, config);
    // Nobody reads the FIFO: the writer blocks opening it.
    let mut c = Client::connect(proxy.addr("http"));
    for i in 0..20 {
        let r = c.get("example.com", &format!("/status/200?i={i}"));
        assert_eq!(r.status, 200);
    }
    let m = wait_metrics(&proxy, "drops counted", |m| {
        m.get_or_zero("ringmesh_access_log_dropped_total", &[]) >= 17.0
    });
    assert_eq!(m.get("ringmesh_access_log_written_total", &[]), Some(0.0));
    // Every line is either dropped or queued (2) or held by the blocked
    // writer (1): once all 20 are accounted for, the rest is in flight.
    thread::sleep(Duration::from_millis(200));
    let dropped = proxy
        .metrics()
        .get_or_zero("ringmesh_access_log_dropped_total", &[]) as usize;
    assert!((17..=18).contains(&dropped), "{dropped} dropped");
    let expected = 20 - dropped;
    // A reader arrives: the queued lines flow.
    let reader = thread::spawn(move || {
        let f = std::fs::File::open(&fifo).unwrap();
        let mut lines = Vec::new();
        for l in BufReader::new(f).lines() {
            let l = l.unwrap();
            lines.push(serde_json::from_str::<Value>(&l).unwrap());
            if lines.len() == expected {
                break;
            }
        }
        lines
    });
    let lines = reader.join().unwrap();
    assert_eq!(lines.len(), expected);
    assert!(lines.iter().all(|l| l["response_code"] == 200));
    wait_metrics(&proxy, "written", |m| {
        m.get_or_zero("ringmesh_access_log_written_total", &[]) == expected as f64
    });
}
