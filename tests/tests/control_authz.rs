//! AuthorizationPolicy configured by `ringmesh-control`, enforced by real
//! Envoys: the RBAC filters the control plane generates are valid Envoy
//! configuration (every update ACKed) with Istio's semantics.
//!
//! Three sidecars, each an Envoy on its own 127.0.0.x without
//! interception, in STRICT mTLS with certificates from the control
//! plane's CA (the test plays each agent, as in `control_mtls.rs`):
//!
//! ```text
//!   test client ──▶ frontend Envoy 127.0.0.82:15001 ══mTLS══▶ charge Envoy 127.0.0.81:9080 ──▶ app
//!   test client ──▶ intruder Envoy 127.0.0.83:15001 ══mTLS══▶ (same)
//! ```
//!
//! 1. ALLOW only `cluster.local/ns/default/sa/frontend` to
//!    `POST /api/v1/charge`: 200 from the frontend, 403
//!    `RBAC: access denied` from the intruder and for any other method or
//!    path from the frontend.
//! 2. The policy file edited to add a DENY for the frontend: enforced
//!    within seconds, without a restart (DENY beats ALLOW).
//! 3. DENY only: the intruder gets through, and no spelling of the denied
//!    path gets the frontend through (path normalization on the inbound
//!    connection manager).
//!
//! Pod addresses: 127.0.0.8x.

mod agent;

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use agent::{
    admin_get, assert_all_acked, envoy_sidecar, mtls_get, obtain_identity, stat_sum, Identity,
    TRUST_DOMAIN,
};
use ringmesh_e2e::{
    envoy::Envoy,
    mesh::{write_atomic, ControlPlane},
    wait_for, Backend, Client, TempDir,
};
use ringmesh_tls::SpiffeId;

const CHARGE_IP: &str = "127.0.0.81";
const FRONTEND_IP: &str = "127.0.0.82";
const INTRUDER_IP: &str = "127.0.0.83";
const DENIED: &str = "RBAC: access denied";

fn write_mesh(dir: &Path, app: SocketAddr) {
    write_atomic(
        dir,
        "mesh.yaml",
        &format!(
            "\
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {{name: charge, namespace: default}}
spec:
  ports: [{{name: http, port: 9080}}, {{name: tcp-ledger, port: 9090}}]
  selector: {{app: charge}}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {{name: charge-0, namespace: default, labels: {{app: charge}}}}
spec: {{address: {CHARGE_IP}, serviceAccount: charge}}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {{name: frontend-0, namespace: default, labels: {{app: frontend}}}}
spec: {{address: {FRONTEND_IP}, serviceAccount: frontend}}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {{name: intruder-0, namespace: default, labels: {{app: intruder}}}}
spec: {{address: {INTRUDER_IP}, serviceAccount: intruder}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: charge, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: charge}}}}
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: {app}
  - port: {{number: 9090, protocol: TCP, name: tcp-ledger}}
    defaultEndpoint: {app}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: istio-system}}
spec:
  mtls: {{mode: STRICT}}
"
        ),
    );
}

const ALLOW_FRONTEND: &str = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: charge-allow, namespace: default}
spec:
  selector: {matchLabels: {app: charge}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/frontend]}}]
    to: [{operation: {methods: [POST], paths: [/api/v1/charge]}}]
";

const DENY_FRONTEND: &str = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: charge-deny, namespace: default}
spec:
  selector: {matchLabels: {app: charge}}
  action: DENY
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/frontend]}}]
    to: [{operation: {paths: [/api/v1/charge]}}]
";

const ALLOW_FRONTEND_TCP: &str = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger-allow, namespace: default}
spec:
  selector: {matchLabels: {app: charge}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/frontend]}}]
    to: [{operation: {ports: ['9090']}}]
";

/// Every type an Envoy sidecar here must have accepted.
const ACCEPTED: [&str; 2] = [
    "listener_manager.lds.update_success",
    "sds.default.update_success",
];

/// A request through the sidecar at `via` to the charge service:
/// (status, body), or (0, error).
fn call(via: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let Ok(mut c) = Client::try_connect(via, Duration::from_secs(2)) else {
        return (0, "connect failed".into());
    };
    c.set_read_timeout(Duration::from_secs(5));
    match c.request(method, "charge:9080", path, &[], b"") {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, format!("error: {e}")),
    }
}

/// Plays a workload without a sidecar of its own: an mTLS connection
/// with `identity`'s certificate straight to charge's opaque TCP port
/// (verified as charge), an HTTP request over it. `Ok(status line)` if
/// the application answered, `Err` if the connection was refused or
/// closed (the network RBAC filter closes it).
fn tcp_call(identity: &Identity) -> Result<String, String> {
    let charge = SpiffeId::new(TRUST_DOMAIN, "default", "charge").expect("identity");
    mtls_get(
        format!("{CHARGE_IP}:9090").parse().unwrap(),
        identity,
        &charge,
        "charge.default.svc.cluster.local",
        "charge:9090",
    )
}

fn tcp_allowed(identity: &Identity) -> bool {
    tcp_call(identity).as_deref() == Ok("HTTP/1.1 200 OK")
}

/// Wait until `check` holds 10 times in a row: a listener update applies
/// to new connections, and the client sidecars' pooled connections to
/// the old listener drain gradually (Envoy's drain), so for a moment some
/// requests still meet the previous policy.
fn settled(what: &str, mut check: impl FnMut() -> bool) {
    wait_for(Duration::from_secs(15), what, || {
        (0..10).all(|_| check()).then_some(())
    });
}

fn allowed(via: SocketAddr, method: &str, path: &str) -> bool {
    call(via, method, path) == (200, "charge".into())
}

fn denied(via: SocketAddr, method: &str, path: &str) -> bool {
    call(via, method, path) == (403, DENIED.into())
}

#[test]
fn envoy_sidecars_enforce_authorization_policies_from_ringmesh_control() {
    let app = Backend::start("charge");
    let mesh = TempDir::new("authz-mesh");
    write_mesh(mesh.path(), app.addr());
    write_atomic(mesh.path(), "authz.yaml", ALLOW_FRONTEND);
    let data = TempDir::new("authz-data");
    let control = ControlPlane::start_with_data(
        mesh.path(),
        "127.0.0.1:0".parse().unwrap(),
        Some(data.path()),
    );
    let certs = TempDir::new("authz-certs");
    let charge_id = obtain_identity(control.addr(), data.path(), certs.path(), "charge");
    let frontend_id = obtain_identity(control.addr(), data.path(), certs.path(), "frontend");
    let intruder_id = obtain_identity(control.addr(), data.path(), certs.path(), "intruder");

    let mut charge = envoy_sidecar(control.addr(), CHARGE_IP, "charge-0", "charge", &charge_id);
    let mut frontend = envoy_sidecar(
        control.addr(),
        FRONTEND_IP,
        "frontend-0",
        "frontend",
        &frontend_id,
    );
    let mut intruder = envoy_sidecar(
        control.addr(),
        INTRUDER_IP,
        "intruder-0",
        "intruder",
        &intruder_id,
    );
    let a: SocketAddr = format!("{FRONTEND_IP}:15001").parse().unwrap();
    let b: SocketAddr = format!("{INTRUDER_IP}:15001").parse().unwrap();
    let envoys = |charge: &Envoy, frontend: &Envoy, intruder: &Envoy| {
        for (e, what) in [
            (charge, "charge's Envoy"),
            (frontend, "frontend's Envoy"),
            (intruder, "intruder's Envoy"),
        ] {
            assert_all_acked(e, what, &ACCEPTED);
        }
    };

    // 1. ALLOW only the frontend to POST /api/v1/charge.
    wait_for(
        Duration::from_secs(40),
        "frontend → charge allowed",
        || {
            charge.assert_alive();
            frontend.assert_alive();
            intruder.assert_alive();
            allowed(a, "POST", "/api/v1/charge").then_some(())
        },
    );
    wait_for(
        Duration::from_secs(20),
        "intruder → charge denied",
        || (call(b, "POST", "/api/v1/charge").0 == 403).then_some(()),
    );
    for i in 0..5 {
        assert!(allowed(a, "POST", "/api/v1/charge"), "request {i}");
        assert_eq!(
            call(b, "POST", "/api/v1/charge"),
            (403, DENIED.into()),
            "intruder request {i}"
        );
    }
    // The query is not part of the path; other methods and paths are not
    // allowed; a dot segment or doubled slash normalizes to the allowed
    // path.
    assert!(allowed(a, "POST", "/api/v1/charge?amount=5"));
    assert!(allowed(a, "POST", "/api/v1/./charge"));
    assert!(allowed(a, "POST", "/api//v1/charge"));
    assert_eq!(call(a, "GET", "/api/v1/charge"), (403, DENIED.into()));
    assert!(denied(a, "POST", "/api/v1/refund"));
    assert!(denied(a, "POST", "/api/v1/charge/extra"));
    assert!(denied(b, "GET", "/"));
    // The opaque TCP port: the only ALLOW rule is HTTP-only, which a TCP
    // filter cannot evaluate, so it is dropped and nobody gets in (Istio).
    assert!(
        tcp_call(&frontend_id).is_err(),
        "{:?}",
        tcp_call(&frontend_id)
    );
    assert!(tcp_call(&intruder_id).is_err());
    // Envoy holds the filter the control plane sent, before the router.
    let dump = admin_get(charge.admin(), "/config_dump?resource=dynamic_listeners");
    assert!(
        dump.contains("envoy.filters.http.rbac")
            && dump.contains("ns[default]-policy[charge-allow]-rule[0]"),
        "{dump}"
    );
    let stats = admin_get(charge.admin(), "/stats");
    assert!(
        stat_sum(&stats, |k| k.ends_with("rbac.denied")) >= 7,
        "{stats}"
    );
    envoys(&charge, &frontend, &intruder);

    // 2. Add a DENY for the frontend to the same file: DENY beats ALLOW,
    // and the change is applied without a restart.
    write_atomic(
        mesh.path(),
        "authz.yaml",
        &format!("{ALLOW_FRONTEND}---\n{DENY_FRONTEND}"),
    );
    let edited = Instant::now();
    wait_for(Duration::from_secs(10), "the DENY enforced", || {
        denied(a, "POST", "/api/v1/charge").then_some(())
    });
    let first = edited.elapsed();
    settled("the DENY enforced on every connection", || {
        denied(a, "POST", "/api/v1/charge")
    });
    eprintln!(
        "DENY enforced {first:?} after the file was written, on every pooled connection after {:?}",
        edited.elapsed()
    );
    for i in 0..5 {
        assert!(denied(a, "POST", "/api/v1/charge"), "request {i}");
        assert!(denied(b, "POST", "/api/v1/charge"), "intruder request {i}");
    }
    envoys(&charge, &frontend, &intruder);

    // 3. DENY only: everyone else, and the frontend elsewhere, get
    // through; no spelling of the denied path does.
    write_atomic(mesh.path(), "authz.yaml", DENY_FRONTEND);
    settled("the ALLOW policy removed", || {
        allowed(b, "POST", "/api/v1/charge") && allowed(a, "POST", "/api/v1/other")
    });
    assert!(allowed(a, "POST", "/api/v1/other"));
    assert!(allowed(a, "GET", "/"));
    let bypasses = [
        "/api/v1/charge",
        "//api/v1/charge",
        "/api//v1/charge",
        "/api/v1//charge",
        "/api/./v1/charge",
        "/api/v1/./charge",
        "/api/x/../v1/charge",
        "/api/v1/charge/../charge",
        "/api/v1/%2e/charge",
        "/api/v1/%2E%2E/v1/charge",
        "/api%2Fv1%2Fcharge",
        "/api%2fv1%2fcharge",
        "/api/v1%2Fcharge",
        "/api%5Cv1%5Ccharge",
        "/api\\v1\\charge",
        "/api/v1/charge?amount=5",
        "/api/v1/charge#fragment",
    ];
    let mut leaked = Vec::new();
    for path in bypasses {
        let (status, body) = call(a, "POST", path);
        eprintln!("bypass attempt {path:<28} → {status}");
        // 403 from RBAC, or refused as malformed before it (400); never
        // the application.
        if !(status == 403 || status == 400) || body == "charge" {
            leaked.push(format!("{path}: {status} {body:?}"));
        }
    }
    assert!(
        leaked.is_empty(),
        "bypassed the DENY:\n{}",
        leaked.join("\n")
    );
    // On the TCP port the DENY rule cannot test the path: it denies the
    // frontend altogether (it denies more, as in Istio); nothing is
    // ALLOW-listed, so the intruder gets in.
    assert!(tcp_call(&frontend_id).is_err());
    assert!(tcp_allowed(&intruder_id), "{:?}", tcp_call(&intruder_id));
    envoys(&charge, &frontend, &intruder);

    // 4. A TCP policy: ALLOW the frontend on port 9090 only.
    write_atomic(mesh.path(), "authz.yaml", ALLOW_FRONTEND_TCP);
    wait_for(Duration::from_secs(10), "the TCP policy enforced", || {
        (tcp_allowed(&frontend_id) && tcp_call(&intruder_id).is_err()).then_some(())
    });
    for i in 0..5 {
        assert!(tcp_allowed(&frontend_id), "request {i}");
        assert!(tcp_call(&intruder_id).is_err(), "intruder request {i}");
    }
    // ... and on the HTTP port (9080) the same policy allows nobody.
    settled("HTTP denied by the TCP policy", || {
        denied(a, "POST", "/api/v1/charge") && denied(a, "GET", "/") && denied(b, "GET", "/")
    });
    assert!(denied(a, "GET", "/"));
    assert!(denied(b, "POST", "/api/v1/charge"));
    let stats = admin_get(charge.admin(), "/stats");
    assert!(
        stat_sum(&stats, |k| k.ends_with("tcp.rbac.denied")) >= 5,
        "{stats}"
    );
    envoys(&charge, &frontend, &intruder);
    drop(control);
}
