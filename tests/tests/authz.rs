//! Authorization (Envoy RBAC filters from the static `rbac:` section)
//! enforced by a ringmesh-proxy sidecar, with real processes on loopback:
//!
//! ```text
//!   test ─▶ frontend sidecar ══mTLS══▶ payments sidecar (STRICT, RBAC) ─▶ recording testbed
//!   test ─▶ intruder sidecar ══mTLS══▶ (same)
//! ```
//!
//! The two client sidecars forward paths exactly as received (their own
//! normalization is off), so every spelling reaches the payments sidecar,
//! whose normalization and rules are under test. Identities are SPIFFE
//! X.509-SVIDs signed by a mesh CA made here (`ringmesh-ca`).
//!
//! - ALLOW only `spiffe://cluster.local/ns/default/sa/frontend` to
//!   `POST /api/v1/charge`: 200 from the frontend; 403
//!   `RBAC: access denied` from the intruder, for every spelling of the
//!   path listed in [`BYPASS_SPELLINGS`] (or 400 where the spelling is
//!   rejected outright), and the recording backend proves that nothing
//!   denied reached it; spellings that normalize to the rule's path are
//!   allowed from the frontend and arrive normalized.
//! - DENY beats ALLOW; AUDIT (action LOG) logs and counts without
//!   blocking; shadow rules count without enforcing.
//! - Network RBAC on a TCP listener: the intruder's connection is closed
//!   before anything reaches the backend.
//! - The same policy delivered over xDS (Envoy `envoy.filters.http.rbac`
//!   in the connection manager), enforced the same way.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use ringmesh_ca::{CaOptions, CaStore};
use ringmesh_e2e::{on_both_drivers, wait_for, Backend, Client, Driver, Proxy, TempDir};
use ringmesh_tls::{generate_key_and_csr, SpiffeId};
use serde_json::{json, Value};

const TD: &str = "cluster.local";
const FRONTEND: &str = "spiffe://cluster.local/ns/default/sa/frontend";
const PAYMENTS: &str = "spiffe://cluster.local/ns/default/sa/payments";
const SNI: &str = "payments.default.svc.cluster.local";
const DENIED: &str = "RBAC: access denied";
const HOUR: Duration = Duration::from_secs(3600);

/// Spellings of `POST /api/v1/charge` a client might use to slip past an
/// exact rule, with the status the intruder must get: 403 (normalized,
/// then denied) or 400 (rejected before any rule: escaped slashes,
/// fragments, invalid escapes). Never 2xx, never forwarded.
const BYPASS_SPELLINGS: &[(&str, u16)] = &[
    ("/api/v1/charge", 403),
    ("//api/v1/charge", 403),
    ("/api//v1/charge", 403),
    ("/api/v1//charge", 403),
    ("///api///v1///charge", 403),
    ("/api/v1/./charge", 403),
    ("/./api/v1/charge", 403),
    ("/api/v2/../v1/charge", 403),
    ("/api/v1/charge/../charge", 403),
    ("/../api/v1/charge", 403),
    ("/api/v1/charge/.", 403),
    ("/api/v1/charge/", 403),
    ("/api/v1/%2e/charge", 403),
    ("/api/v1/%2E%2E/v1/charge", 403),
    ("/api/v2/.%2e/v1/charge", 403),
    ("/%61pi/v1/charge", 403),
    ("/api/v1/char%67e", 403),
    ("/api\\v1\\charge", 403),
    ("/api/v1\\charge", 403),
    ("/api%2Fv1/charge", 400),
    ("/api%2fv1%2fcharge", 400),
    ("/api/v1%2Fcharge", 400),
    ("/api%5Cv1%5Ccharge", 400),
    ("/api%5cv1/charge", 400),
    ("/api/v1/charge%", 400),
    ("/api/v1/charge%zz", 400),
    ("/API/v1/charge", 403),
    ("/api/v1/Charge", 403),
    ("/api/v1/charge#fragment", 400),
    ("/api/v1/charge;jsessionid=1", 403),
    ("/api/v1;x=1/charge", 403),
    ("/api/v1/charge?x=1", 403),
    ("/api/v1/charge?", 403),
    ("/api/v1/charge%3Fx=1", 403),
    ("/api/v1/charge%23x", 403),
    ("/api/v1/charge%00", 403),
    ("/api/v1/charge%20", 403),
    ("http://payments/api/v1/charge", 403),
    ("http://payments//api/v1/./charge", 403),
];

/// Spellings that normalize to exactly `/api/v1/charge` (path), which the
/// frontend is allowed to use; the backend must receive the normal form.
const NORMALIZING_TO_CHARGE: &[&str] = &[
    "//api/v1/charge",
    "/api//v1/charge",
    "/api/v1/./charge",
    "/api/v2/../v1/charge",
    "/../api/v1/charge",
    "/api/v1/%2e/charge",
    "/%61pi/v1/ch%61rge",
    "/api\\v1\\charge",
    "http://payments/api/v1/charge",
];

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A mesh CA over a root made here, and SVID files for the proxies.
struct Pki {
    dir: TempDir,
    ca: Arc<CaStore>,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("authz-pki");
        let ca_dir = dir.path().join("ca");
        std::fs::create_dir_all(&ca_dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Authz Test Root");
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

    fn bundle_path(&self) -> PathBuf {
        self.dir.path().join("ca").join("root-cert.pem")
    }

    /// The `identity` section of a proxy holding an SVID for
    /// `default/<sa>` (key + CSR made here, signed by the CA).
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
            "trust_bundle": self.bundle_path().display().to_string(),
        })
    }
}

// ---------------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------------

fn route_all(name: &str, cluster: &str) -> Value {
    json!({ "name": name, "virtual_hosts": [{ "name": "all", "domains": ["*"],
            "routes": [{ "match": { "prefix": "/" }, "cluster": cluster }] }] })
}

fn principal(uri: &str) -> Value {
    json!({ "authenticated": { "principal_name": { "exact": uri } } })
}

/// The payments sidecar's HTTP chain, as istiod orders it: AUDIT, DENY,
/// ALLOW (with a shadow rule).
fn http_rbac() -> Value {
    json!([
        { "name": "audit",
          "rules": { "action": "LOG", "policies": {
              "audit-api": { "permissions": [{ "url_path": { "prefix": "/api/" } }],
                             "principals": [{ "any": true }] } } } },
        { "name": "deny",
          "rules": { "action": "DENY", "policies": {
              "no-admin": { "permissions": [{ "url_path": { "prefix": "/api/v1/admin" } }],
                            "principals": [{ "any": true }] } } } },
        { "name": "allow",
          "rules": { "action": "ALLOW", "policies": {
              "charge": {
                  "permissions": [{ "and_rules": { "rules": [
                      { "header": { "name": ":method", "exact": "POST" } },
                      { "url_path": { "exact": "/api/v1/charge" } } ] } }],
                  "principals": [principal(FRONTEND)] },
              // Allowed by this ALLOW policy, and still denied: DENY wins.
              "frontend-admin": {
                  "permissions": [{ "url_path": { "prefix": "/api/v1/admin" } }],
                  "principals": [principal(FRONTEND)] },
              "health": {
                  "permissions": [{ "and_rules": { "rules": [
                      { "header": { "name": ":method", "exact": "GET" } },
                      { "url_path": { "exact": "/healthz" } } ] } }],
                  "principals": [{ "authenticated": {} }] } } },
          "shadow_rules": { "action": "DENY", "policies": {
              "would-deny-health": { "permissions": [{ "url_path": { "exact": "/healthz" } }],
                                     "principals": [{ "any": true }] } } } },
    ])
}

/// The payments sidecar's TCP chain: only the frontend, and only to the
/// port it listens on.
fn tcp_rbac() -> Value {
    json!([
        { "name": "tcp-allow",
          "rules": { "action": "ALLOW", "policies": {
              "frontend-only": {
                  "permissions": [{ "not_rule": { "destination_port": 1 } }],
                  "principals": [{ "and_ids": { "ids": [
                      principal(FRONTEND),
                      { "not_id": { "source_ip": "192.0.2.0/24" } } ] } }] } } } },
    ])
}

fn payments_config(identity: Value, backend: SocketAddr) -> Value {
    json!({
        "identity": identity,
        "listeners": [
            { "name": "inbound", "address": "auto", "protocol": "http",
              "route_config": "local", "tls": { "mode": "STRICT" }, "rbac": http_rbac() },
            { "name": "inbound-tcp", "address": "auto", "protocol": "tcp",
              "cluster": "app", "tls": { "mode": "STRICT" }, "rbac": tcp_rbac() },
        ],
        "route_configs": [route_all("local", "app")],
        "clusters": [{ "name": "app", "endpoints": [{ "address": backend.to_string() }] }],
    })
}

fn mutual(name: &str, endpoint: SocketAddr) -> Value {
    json!({ "name": name, "endpoints": [{ "address": endpoint.to_string() }],
            "tls": { "mode": "ISTIO_MUTUAL", "subject_alt_names": [PAYMENTS], "sni": SNI } })
}

/// A client sidecar: HTTP and TCP to payments over mTLS, forwarding
/// paths exactly as received.
fn client_config(identity: Value, http_to: SocketAddr, tcp_to: SocketAddr) -> Value {
    json!({
        "identity": identity,
        "listeners": [
            { "name": "outbound", "address": "auto", "protocol": "http", "route_config": "out",
              "path_normalization": { "normalize": false, "merge_slashes": false,
                                      "escaped_slashes": "keep" } },
            { "name": "outbound-tcp", "address": "auto", "protocol": "tcp", "cluster": "payments-tcp" },
        ],
        "route_configs": [route_all("out", "payments")],
        "clusters": [mutual("payments", http_to), mutual("payments-tcp", tcp_to)],
    })
}

/// One request on its own connection; `who` goes in `x-caller`.
fn send(via: SocketAddr, method: &str, path: &str, who: &str) -> ringmesh_e2e::Response {
    let mut c = Client::connect(via);
    c.request(
        method,
        "payments",
        path,
        &[("x-caller", who), ("connection", "close")],
        b"",
    )
    .unwrap_or_else(|e| panic!("{method} {path} as {who}: {e}"))
}

fn metric(p: &Proxy, name: &str, listener: &str) -> f64 {
    p.metrics().get_or_zero(name, &[("listener", listener)])
}

fn recorded(b: &Backend) -> String {
    String::from_utf8_lossy(&b.recorded()).into_owned()
}

/// Wait until the backend has recorded `marker` (a request proved to have
/// arrived): everything sent before it has been recorded too.
fn barrier(b: &Backend, via: SocketAddr, marker: &str) {
    let r = send(via, "GET", "/healthz", marker);
    assert_eq!(r.status, 200, "barrier request: {}", r.text());
    wait_for(
        Duration::from_secs(5),
        "the barrier request to be recorded",
        || recorded(b).contains(marker).then_some(()),
    );
}

struct Mesh {
    backend: Backend,
    payments: Proxy,
    frontend: Proxy,
    intruder: Proxy,
}

fn start_mesh(driver: Driver) -> Mesh {
    let pki = Pki::new();
    let backend = Backend::start_recording("payments-app");
    let payments = Proxy::start(
        driver,
        payments_config(pki.identity("payments"), backend.addr()),
    );
    let (http_to, tcp_to) = (payments.addr("inbound"), payments.addr("inbound-tcp"));
    let frontend = Proxy::start(
        driver,
        client_config(pki.identity("frontend"), http_to, tcp_to),
    );
    let intruder = Proxy::start(
        driver,
        client_config(pki.identity("intruder"), http_to, tcp_to),
    );
    Mesh {
        backend,
        payments,
        frontend,
        intruder,
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

on_both_drivers!(
    http_policies_between_sidecars,
    tcp_policy_refuses_connections
);

fn http_policies_between_sidecars(driver: Driver) {
    let m = start_mesh(driver);
    let (front, intr) = (m.frontend.addr("outbound"), m.intruder.addr("outbound"));

    // Both identities reach the backend where the policy allows them.
    assert_eq!(send(intr, "GET", "/healthz", "intruder-health").status, 200);
    let ok = send(front, "POST", "/api/v1/charge", "frontend-charge");
    assert_eq!(ok.status, 200, "{}", ok.text());

    // The intruder, every spelling: never allowed, never forwarded.
    let mut denied = 0;
    for (i, (path, want)) in BYPASS_SPELLINGS.iter().enumerate() {
        let who = format!("intruder-bypass-{i}");
        let r = send(intr, "POST", path, &who);
        assert_eq!(
            r.status,
            *want,
            "POST {path} from the intruder: {}",
            r.text()
        );
        if r.status == 403 {
            assert_eq!(r.text(), DENIED, "POST {path}");
            denied += 1;
        }
    }
    // Other methods and paths from the frontend are denied too.
    for (method, path) in [
        ("GET", "/api/v1/charge"),
        ("PUT", "/api/v1/charge"),
        ("POST", "/api/v1/charges"),
        ("POST", "/API/v1/charge"),
        ("POST", "/api/v1/charge;x=1"),
        ("POST", "/api/v1/charge/."),
    ] {
        let r = send(front, method, path, "frontend-denied");
        assert_eq!(
            r.status,
            403,
            "{method} {path} from the frontend: {}",
            r.text()
        );
        assert_eq!(r.text(), DENIED);
        denied += 1;
    }
    // DENY beats ALLOW: the frontend's own ALLOW policy covers admin.
    for path in [
        "/api/v1/admin/users",
        "/api//v1/./admin/users",
        "/api/v1/x/../admin",
    ] {
        let r = send(front, "GET", path, "frontend-admin");
        assert_eq!(
            r.status,
            403,
            "GET {path}: DENY must beat ALLOW: {}",
            r.text()
        );
        denied += 1;
    }

    // Spellings that normalize to the rule's path: allowed from the
    // frontend, forwarded in normal form.
    for (i, path) in NORMALIZING_TO_CHARGE.iter().enumerate() {
        let r = send(front, "POST", path, &format!("frontend-normal-{i}"));
        assert_eq!(r.status, 200, "POST {path} from the frontend: {}", r.text());
    }
    let r = send(front, "POST", "/api/v1/charge?amount=5", "frontend-query");
    assert_eq!(r.status, 200, "the query is not part of url_path");

    // Nothing denied reached the backend; what was allowed arrived with
    // the normalized path.
    barrier(&m.backend, front, "final-barrier");
    let rec = recorded(&m.backend);
    assert!(
        !rec.contains("intruder-bypass"),
        "a denied request reached the backend:\n{rec}"
    );
    assert!(
        !rec.contains("frontend-denied"),
        "a denied request reached the backend:\n{rec}"
    );
    assert!(
        !rec.contains("frontend-admin"),
        "DENY did not stop the request:\n{rec}"
    );
    assert!(rec.contains("intruder-health"));
    let charges = rec.matches("POST /api/v1/charge HTTP/1.1\r\n").count();
    assert_eq!(charges, 1 + NORMALIZING_TO_CHARGE.len(), "recorded:\n{rec}");
    assert!(rec.contains("POST /api/v1/charge?amount=5 HTTP/1.1\r\n"));
    for raw in ["/./", "/../", "//api", "%2e", "%61", "\\"] {
        assert!(
            !rec.lines()
                .any(|l| l.starts_with("POST ") && l.contains(raw)),
            "a non-normal path ({raw}) was forwarded:\n{rec}"
        );
    }

    // Counters: every 403 was an RBAC denial of the payments listener;
    // every 400 for a path was counted there too (the fragment is the
    // client sidecar's own parser refusing it).
    let p = &m.payments;
    assert_eq!(
        metric(p, "ringmesh_rbac_denied_total", "inbound"),
        denied as f64
    );
    let rejected = BYPASS_SPELLINGS
        .iter()
        .filter(|(p, s)| *s == 400 && !p.contains('#'))
        .count();
    assert_eq!(
        metric(p, "ringmesh_http_path_rejected_total", "inbound"),
        rejected as f64
    );
    // Allowed: the first two requests, the normalized spellings, the
    // query, the barrier.
    assert_eq!(
        metric(p, "ringmesh_rbac_allowed_total", "inbound"),
        (2 + NORMALIZING_TO_CHARGE.len() + 2) as f64
    );
    // The shadow DENY on /healthz counted (intruder-health + barrier)
    // without denying anything.
    assert_eq!(
        metric(p, "ringmesh_rbac_shadow_denied_total", "inbound"),
        2.0
    );

    // AUDIT: every /api/ request was logged, allowed or not, and none was
    // blocked by it (the frontend's charges went through above).
    let logged = metric(p, "ringmesh_rbac_logged_total", "inbound");
    assert!(
        logged >= (1 + NORMALIZING_TO_CHARGE.len()) as f64,
        "logged {logged}"
    );
    let log = wait_for(Duration::from_secs(5), "audit log lines", || {
        let log = p.log();
        (log.contains("rbac audit") && log.contains("audit-api")).then_some(log)
    });
    assert!(
        log.contains(FRONTEND),
        "audit lines name the principal:\n{log}"
    );
}

fn tcp_policy_refuses_connections(driver: Driver) {
    let m = start_mesh(driver);
    let request = |who: &str| {
        format!(
            "GET /tcp HTTP/1.1\r\nHost: payments\r\nx-caller: {who}\r\nConnection: close\r\n\r\n"
        )
    };
    // The frontend's connection is relayed.
    let mut c = Client::connect(m.frontend.addr("outbound-tcp"));
    c.send(request("frontend-tcp").as_bytes()).unwrap();
    let r = c
        .read_response()
        .expect("a response over the allowed connection");
    assert_eq!(r.status, 200);

    // The intruder's is closed by the payments sidecar: nothing comes
    // back and nothing reaches the backend.
    let mut c = Client::connect(m.intruder.addr("outbound-tcp"));
    let _ = c.send(request("intruder-tcp").as_bytes());
    let (bytes, closed) = c.read_until_close(Duration::from_secs(5));
    assert!(closed, "the denied connection stayed open");
    assert!(
        bytes.is_empty(),
        "the denied connection got {:?}",
        String::from_utf8_lossy(&bytes)
    );

    barrier(&m.backend, m.frontend.addr("outbound"), "tcp-barrier");
    let rec = recorded(&m.backend);
    assert!(rec.contains("frontend-tcp"));
    assert!(
        !rec.contains("intruder-tcp"),
        "a denied connection reached the backend:\n{rec}"
    );
    let p = &m.payments;
    assert_eq!(metric(p, "ringmesh_rbac_denied_total", "inbound-tcp"), 1.0);
    assert_eq!(metric(p, "ringmesh_rbac_allowed_total", "inbound-tcp"), 1.0);
}

// ---------------------------------------------------------------------------
// The same enforcement, configured over xDS
// ---------------------------------------------------------------------------

mod over_xds {
    use std::net::SocketAddr;

    use envoy_types::pb::{
        envoy::{
            config::{
                core::v3::{
                    address, config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
                    Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress,
                },
                listener::v3::{filter, Filter, FilterChain, Listener},
                rbac::v3::{self as rbac, permission::Rule, principal::Identifier},
                route::v3::{header_matcher::HeaderMatchSpecifier, HeaderMatcher},
            },
            extensions::filters::{
                http::{rbac::v3::Rbac as HttpRbac, router::v3::Router},
                network::http_connection_manager::v3::{
                    http_connection_manager::{PathWithEscapedSlashesAction, RouteSpecifier},
                    http_filter, HttpConnectionManager, HttpFilter, Rds,
                },
            },
            r#type::matcher::v3::{
                path_matcher, string_matcher::MatchPattern, PathMatcher, StringMatcher,
            },
        },
        google::protobuf::{Any, BoolValue},
    };
    use ringmesh_e2e::{free_port, wait_for, Backend, Client, Driver, Proxy};
    use ringmesh_xds::{
        testing::{eds_cluster, load_assignment, route_to_cluster, ServerThread},
        Resource, Resources, ScopeKey, SyncState, TypeUrl, XdsServer,
    };
    use serde_json::json;

    use super::{BYPASS_SPELLINGS, DENIED};

    const NODE: &str = "sidecar~127.0.0.1~charge.default~default.svc.cluster.local";

    /// Spellings of `/api/v1/charge` under Istio's DECODE_AND_MERGE_SLASHES
    /// (escaped slashes decoded and forwarded).
    const SAME_PATH_UNDER_DECODE_AND_MERGE: &[&str] = &[
        "/api/v1/charge",
        "//api/v1/charge",
        "/api//v1/charge",
        "///api///v1///charge",
        "/api/v1/./charge",
        "/./api/v1/charge",
        "/api/v2/../v1/charge",
        "/api/v1/charge/../charge",
        "/../api/v1/charge",
        "/api/v1/%2e/charge",
        "/api/v1/%2E%2E/v1/charge",
        "/api/v2/.%2e/v1/charge",
        "/%61pi/v1/charge",
        "/api/v1/char%67e",
        "/api\\v1\\charge",
        "/api%2Fv1/charge",
        "/api%2fv1%2fcharge",
        "/api/v1%2Fcharge",
        "/api%5Cv1%5Ccharge",
        "/api/x%2F..%2Fv1/charge",
        "/api/v1/charge?x=1",
        "/api/v1/charge?",
        "http://charge/api/v1/charge",
        "http://charge//api/v1/./charge",
    ];

    fn any<M: prost::Name>(m: &M) -> Any {
        Any {
            type_url: M::type_url(),
            value: m.encode_to_vec(),
        }
    }

    fn exact(s: &str) -> StringMatcher {
        StringMatcher {
            match_pattern: Some(MatchPattern::Exact(s.into())),
            ignore_case: false,
        }
    }

    fn rbac_filter(action: rbac::rbac::Action, name: &str, policy: rbac::Policy) -> HttpFilter {
        let cfg = HttpRbac {
            rules: Some(rbac::Rbac {
                action: action as i32,
                policies: [(name.to_owned(), policy)].into_iter().collect(),
                audit_logging_options: None,
            }),
            ..Default::default()
        };
        HttpFilter {
            name: "envoy.filters.http.rbac".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(any(&cfg))),
            ..Default::default()
        }
    }

    /// Istio's DENY-only shape, as `ringmesh-control` generates it: deny
    /// `POST /api/v1/charge` to everyone, with the connection manager
    /// normalizing (DECODE_AND_MERGE_SLASHES). `broken`: a permission the
    /// proxy does not implement (metadata), which must be NACKed.
    fn listener(addr: SocketAddr, broken: bool) -> Resource {
        let method = Rule::Header(HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(exact("POST"))),
            ..Default::default()
        });
        let path = Rule::UrlPath(PathMatcher {
            rule: Some(path_matcher::Rule::Path(exact("/api/v1/charge"))),
        });
        #[allow(deprecated)]
        let extra = if broken {
            Rule::Metadata(Default::default())
        } else {
            Rule::Any(true)
        };
        let policy = rbac::Policy {
            permissions: vec![rbac::Permission {
                rule: Some(Rule::AndRules(rbac::permission::Set {
                    rules: [method, path, extra]
                        .into_iter()
                        .map(|r| rbac::Permission { rule: Some(r) })
                        .collect(),
                })),
            }],
            principals: vec![rbac::Principal {
                identifier: Some(Identifier::Any(true)),
            }],
            ..Default::default()
        };
        let hcm = HttpConnectionManager {
            stat_prefix: "inbound".into(),
            route_specifier: Some(RouteSpecifier::Rds(Rds {
                config_source: Some(ConfigSource {
                    resource_api_version: ApiVersion::V3 as i32,
                    config_source_specifier: Some(ConfigSourceSpecifier::Ads(
                        AggregatedConfigSource {},
                    )),
                    ..Default::default()
                }),
                route_config_name: "local_route".into(),
            })),
            http_filters: vec![
                rbac_filter(
                    rbac::rbac::Action::Deny,
                    "ns[default]-policy[no-charge]-rule[0]",
                    policy,
                ),
                HttpFilter {
                    name: "envoy.filters.http.router".into(),
                    config_type: Some(http_filter::ConfigType::TypedConfig(
                        any(&Router::default()),
                    )),
                    ..Default::default()
                },
            ],
            normalize_path: Some(BoolValue { value: true }),
            merge_slashes: true,
            path_with_escaped_slashes_action: PathWithEscapedSlashesAction::UnescapeAndForward
                as i32,
            ..Default::default()
        };
        let l = Listener {
            name: "inbound".into(),
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: addr.ip().to_string(),
                    port_specifier: Some(PortSpecifier::PortValue(u32::from(addr.port()))),
                    ..Default::default()
                })),
            }),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        Resource::from_message("inbound", if broken { "2" } else { "1" }, &l)
    }

    fn post(addr: SocketAddr, path: &str, who: &str) -> ringmesh_e2e::Response {
        let mut c = Client::connect(addr);
        c.request(
            "POST",
            "charge",
            path,
            &[("x-caller", who), ("connection", "close")],
            b"",
        )
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    fn deny_policy_from_the_control_plane(driver: Driver) {
        let backend = Backend::start_recording("charge-app");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let resources = |broken| {
            Resources::new()
                .with(listener(addr, broken))
                .with(route_to_cluster("local_route", "app"))
                .with(eds_cluster("app"))
                .with(load_assignment("app", &[backend.addr()]))
        };
        let server = XdsServer::default();
        server.publish(ScopeKey::default(), resources(false));
        let xds = ServerThread::start(server.clone());
        let proxy = Proxy::start(
            driver,
            json!({ "xds": { "address": xds.addr().to_string(), "node_id": NODE } }),
        );

        // `/ready` does not wait for a listener whose RDS has not arrived
        // yet (it is left out while warming): wait for it to accept.
        wait_for(
            Duration::from_secs(10),
            "the xDS listener accepting",
            || std::net::TcpStream::connect(addr).ok(),
        );
        // Other requests pass; no spelling of the denied one does (with
        // UNESCAPE_AND_FORWARD, escaped slashes are decoded, then denied).
        assert_eq!(post(addr, "/api/v1/other", "allowed-0").status, 200);
        for (i, path) in SAME_PATH_UNDER_DECODE_AND_MERGE.iter().enumerate() {
            let r = post(addr, path, &format!("bypass-{i}"));
            assert_eq!(r.status, 403, "POST {path}: {}", r.text());
            assert_eq!(r.text(), DENIED);
        }
        for path in ["/api/v1/charge#f", "/api/v1/charge%zz", "/api/v1/charge%"] {
            assert_eq!(post(addr, path, "invalid").status, 400, "POST {path}");
        }
        // Spellings the intruder test covers that are *other* paths (case,
        // matrix parameters, escapes of other characters) are not covered
        // by a DENY on one exact path, in Envoy as here: they are listed
        // in BYPASS_SPELLINGS for the ALLOW side.
        assert!(BYPASS_SPELLINGS.len() > SAME_PATH_UNDER_DECODE_AND_MERGE.len());
        assert_eq!(post(addr, "/api/v1/other", "allowed-1").status, 200);
        wait_for(
            Duration::from_secs(5),
            "the last allowed request recorded",
            || {
                let rec = String::from_utf8_lossy(&backend.recorded()).into_owned();
                rec.contains("allowed-1").then_some(rec)
            },
        );
        let rec = String::from_utf8_lossy(&backend.recorded()).into_owned();
        assert!(
            !rec.contains("POST /api/v1/charge "),
            "a denied request was forwarded:\n{rec}"
        );

        // An RBAC rule the proxy cannot evaluate is NACKed, naming the
        // field; the policy in force keeps being enforced.
        server.publish(ScopeKey::default(), resources(true));
        let detail = wait_for(Duration::from_secs(10), "the LDS NACK", || {
            let s = server.status().into_iter().find(|s| s.node.id == NODE)?;
            let t = &s.types[&TypeUrl::listener()];
            (t.state() == SyncState::Nacked)
                .then(|| t.last_nack.as_ref().map(|n| n.error.message.clone()))?
        });
        assert!(
            detail.contains("rules[2].metadata: metadata rules are not supported"),
            "the NACK names the field: {detail}"
        );
        assert_eq!(post(addr, "/api/v1/charge", "after-nack").status, 403);
        assert_eq!(post(addr, "/api/v1/other", "after-nack-ok").status, 200);
        drop(proxy);
    }

    use std::time::Duration;

    ringmesh_e2e::on_both_drivers!(deny_policy_from_the_control_plane);
}
