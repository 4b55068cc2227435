//! mTLS configured by `ringmesh-control`, end to end with real Envoys.
//!
//! Each Envoy plays a sidecar on its own 127.0.0.x without interception
//! (`INTERCEPTION_MODE: NONE`); the test plays each sidecar's agent, as
//! istio-agent does for Envoy: it mints a bootstrap token with
//! `ringmesh-control token`, makes a key and CSR
//! (`ringmesh_tls::generate_key_and_csr`), has the CSR signed by the
//! control plane's CA over gRPC, and writes the certificate chain and key
//! where the node metadata (`TLS_SERVER_CERT_CHAIN`, `TLS_SERVER_KEY`)
//! says — the control plane serves them to Envoy as the SDS secret
//! `default`, and the CA's trust bundle as `ROOTCA`.
//!
//! ```text
//!   test client ──▶ frontend Envoy 127.0.0.61:15001 ══mTLS══▶ ratings Envoy 127.0.0.62:9080 ──▶ ratings app
//!   test mTLS client ═══════════════════════════════════════▶ ratings Envoy 127.0.0.62:9080
//!   test plaintext client ──────────────────────────────────▶ ratings Envoy (refused under STRICT)
//! ```
//!
//! Proves: both Envoys ACK every LDS/CDS/RDS/EDS/SDS update the control
//! plane sends (no `update_rejected`) and hold the `default` and `ROOTCA`
//! secrets; auto mTLS between them under a STRICT mesh (TLS handshakes
//! counted on both sides); STRICT refuses plaintext and accepts a client
//! certificate from the mesh CA; switching the PeerAuthentication to
//! PERMISSIVE accepts both, and to DISABLE makes the frontend fall back to
//! plaintext — every layout a real Envoy accepts. And `ringmesh tls-check`
//! on a mesh directory, with its exact table and exit status.
//!
//! Pod addresses: 127.0.0.6x.

mod agent;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use agent::{
    admin_get, assert_all_acked, call, envoy_sidecar, mtls_get, obtain_identity, plaintext_status,
    stat, Identity,
};
use ringmesh_e2e::{
    mesh::{write_atomic, ControlPlane},
    wait_for, workspace_bin, workspace_root, Backend, TempDir,
};
use ringmesh_tls::SpiffeId;
use serde_json::Value;

const FRONTEND_IP: &str = "127.0.0.61";
const RATINGS_IP: &str = "127.0.0.62";

/// The mesh: ratings (an Envoy sidecar in front of its app) and the
/// frontend's workload, both with sidecars; mTLS mode `mode` mesh-wide.
fn write_mesh(dir: &Path, app: SocketAddr) {
    write_atomic(
        dir,
        "mesh.yaml",
        &format!(
            "\
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {{name: ratings, namespace: default}}
spec:
  ports: [{{name: http, port: 9080}}]
  selector: {{app: ratings}}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {{name: ratings-0, namespace: default, labels: {{app: ratings}}}}
spec: {{address: {RATINGS_IP}, serviceAccount: ratings}}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {{name: frontend-0, namespace: default, labels: {{app: frontend}}}}
spec: {{address: {FRONTEND_IP}, serviceAccount: frontend}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: ratings, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: ratings}}}}
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: {app}
"
        ),
    );
}

fn write_peer_authentication(dir: &Path, mode: &str) {
    write_atomic(
        dir,
        "peer-authentication.yaml",
        &format!(
            "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: istio-system}}
spec:
  mtls: {{mode: {mode}}}
"
        ),
    );
}

/// Every type an Envoy sidecar here must have accepted.
const ACCEPTED: [&str; 4] = [
    "listener_manager.lds.update_success",
    "cluster_manager.cds.update_success",
    "sds.default.update_success",
    "sds.ROOTCA.update_success",
];

/// `GET /` to ratings' inbound `addr` over mTLS with `identity`'s
/// certificate, the server verified as `server_id`: the status line, or
/// the error.
fn mtls_call(
    addr: SocketAddr,
    identity: &Identity,
    server_id: &SpiffeId,
) -> Result<String, String> {
    mtls_get(
        addr,
        identity,
        server_id,
        "ratings.default.svc.cluster.local",
        "ratings:9080",
    )
}

#[test]
fn envoy_sidecars_take_mtls_from_ringmesh_control_in_every_mode() {
    let app = Backend::start("ratings");
    let mesh = TempDir::new("mtls-mesh");
    write_mesh(mesh.path(), app.addr());
    write_peer_authentication(mesh.path(), "STRICT");
    let data = TempDir::new("mtls-data");
    let control = ControlPlane::start_with_data(
        mesh.path(),
        "127.0.0.1:0".parse().unwrap(),
        Some(data.path()),
    );
    let certs = TempDir::new("mtls-certs");
    let ratings_id = obtain_identity(control.addr(), data.path(), certs.path(), "ratings");
    let frontend_id = obtain_identity(control.addr(), data.path(), certs.path(), "frontend");
    let tester_id = obtain_identity(control.addr(), data.path(), certs.path(), "tester");
    // The CA's bundle is the root the control plane generated in its data
    // directory.
    let root = std::fs::read_to_string(data.path().join("root-cert.pem")).expect("root-cert.pem");
    assert_eq!(ratings_id.bundle_pem.trim(), root.trim());

    let mut ratings = envoy_sidecar(
        control.addr(),
        RATINGS_IP,
        "ratings-0",
        "ratings",
        &ratings_id,
    );
    let mut frontend = envoy_sidecar(
        control.addr(),
        FRONTEND_IP,
        "frontend-0",
        "frontend",
        &frontend_id,
    );
    let outbound: SocketAddr = format!("{FRONTEND_IP}:15001").parse().unwrap();
    let inbound: SocketAddr = format!("{RATINGS_IP}:9080").parse().unwrap();

    // STRICT: frontend → ratings over auto mTLS.
    wait_for(
        Duration::from_secs(40),
        "frontend → ratings over mTLS",
        || {
            ratings.assert_alive();
            frontend.assert_alive();
            (call(outbound, "ratings:9080") == (200, "ratings".into())).then_some(())
        },
    );
    for i in 0..20 {
        assert_eq!(
            call(outbound, "ratings:9080"),
            (200, "ratings".into()),
            "request {i}"
        );
    }
    for (e, what) in [
        (&ratings, "ratings' Envoy"),
        (&frontend, "frontend's Envoy"),
    ] {
        assert_all_acked(e, what, &ACCEPTED);
        // Both secrets are active: the certificate files and the bundle.
        let secrets = admin_get(e.admin(), "/config_dump?resource=dynamic_active_secrets");
        let dump: Value = serde_json::from_str(&secrets).expect("config dump JSON");
        let mut names: Vec<&str> = dump["configs"]
            .as_array()
            .expect("secrets")
            .iter()
            .filter_map(|s| s["name"].as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["ROOTCA", "default"], "{what}: {secrets}");
        assert!(
            secrets.contains(&root.lines().nth(1).unwrap().to_string()),
            "{what}: ROOTCA holds the CA's root:\n{secrets}"
        );
    }
    // Envoy presents the SVID it was given.
    let certs_out = admin_get(ratings.admin(), "/certs");
    assert!(
        certs_out.contains("spiffe://cluster.local/ns/default/sa/ratings"),
        "{certs_out}"
    );
    // Mutual TLS on the wire: handshakes on the frontend's cluster and on
    // ratings' inbound listener, none failed.
    let fstats = admin_get(frontend.admin(), "/stats");
    assert!(
        stat(
            &fstats,
            "cluster.outbound|9080||ratings.default.svc.cluster.local.ssl.handshake"
        ) >= 1,
        "{fstats}"
    );
    let rstats = admin_get(ratings.admin(), "/stats");
    assert!(
        stat(
            &rstats,
            &format!("listener.{RATINGS_IP}_9080.ssl.handshake")
        ) >= 1,
        "{rstats}"
    );
    assert_eq!(
        stat(
            &rstats,
            &format!("listener.{RATINGS_IP}_9080.ssl.connection_error")
        ),
        0
    );
    // STRICT refuses plaintext; a mesh certificate gets in, and the
    // server proves ratings' identity.
    assert_eq!(
        plaintext_status(inbound, "ratings:9080"),
        None,
        "STRICT answered plaintext"
    );
    assert_eq!(
        mtls_call(inbound, &tester_id, &ratings_id.id).as_deref(),
        Ok("HTTP/1.1 200 OK")
    );
    // ... but not one expecting another identity there.
    assert!(mtls_call(inbound, &tester_id, &frontend_id.id).is_err());

    // PERMISSIVE: both on the same port.
    write_peer_authentication(mesh.path(), "PERMISSIVE");
    wait_for(Duration::from_secs(20), "plaintext accepted", || {
        (plaintext_status(inbound, "ratings:9080") == Some(200)).then_some(())
    });
    assert_eq!(
        mtls_call(inbound, &tester_id, &ratings_id.id).as_deref(),
        Ok("HTTP/1.1 200 OK")
    );
    assert_eq!(call(outbound, "ratings:9080"), (200, "ratings".into()));

    // DISABLE: the frontend falls back to plaintext (auto mTLS), TLS is
    // no longer accepted.
    write_peer_authentication(mesh.path(), "DISABLE");
    wait_for(Duration::from_secs(20), "TLS refused", || {
        mtls_call(inbound, &tester_id, &ratings_id.id)
            .is_err()
            .then_some(())
    });
    let before = stat(
        &admin_get(frontend.admin(), "/stats"),
        "cluster.outbound|9080||ratings.default.svc.cluster.local.ssl.handshake",
    );
    for i in 0..10 {
        assert_eq!(
            call(outbound, "ratings:9080"),
            (200, "ratings".into()),
            "plaintext request {i}"
        );
    }
    assert_eq!(plaintext_status(inbound, "ratings:9080"), Some(200));
    let after = stat(
        &admin_get(frontend.admin(), "/stats"),
        "cluster.outbound|9080||ratings.default.svc.cluster.local.ssl.handshake",
    );
    assert_eq!(before, after, "no TLS handshake under DISABLE");

    for (e, what) in [
        (&ratings, "ratings' Envoy"),
        (&frontend, "frontend's Envoy"),
    ] {
        assert_all_acked(e, what, &ACCEPTED);
    }
    drop(control);
}

// ---------------------------------------------------------------------------
// ringmesh tls-check, the binary
// ---------------------------------------------------------------------------

fn ringmesh_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("RINGMESH_CLI_BIN", "ringmesh-cli", "ringmesh"))
        .clone()
}

/// `ringmesh ARGS`: (exit code, stdout, stderr); stdout is a pipe, so
/// never coloured.
fn ringmesh(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(ringmesh_bin())
        .current_dir(workspace_root())
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("running ringmesh");
    (
        out.status.code().expect("exited by a signal"),
        String::from_utf8(out.stdout).expect("UTF-8"),
        String::from_utf8(out.stderr).expect("UTF-8"),
    )
}

#[test]
fn tls_check_shows_the_effective_modes_and_fails_on_a_conflict() {
    let mesh = TempDir::new("tls-check");
    write_mesh(mesh.path(), "127.0.0.1:19080".parse().unwrap());
    write_peer_authentication(mesh.path(), "STRICT");
    let dir = mesh.path().display().to_string();

    let (code, out, err) = ringmesh(&["tls-check", "--dir", &dir]);
    assert_eq!(
        out,
        "\
HOST                                PORT   SERVER   CLIENT                STATUS   AUTHN POLICY                  DESTINATION RULE
ratings.default.svc.cluster.local   9080   STRICT   ISTIO_MUTUAL (auto)   OK       istio-system/default (mesh)   -
",
        "{err}"
    );
    assert_eq!(code, 0, "{err}");

    // A DestinationRule sending plaintext to a STRICT workload.
    write_atomic(
        mesh.path(),
        "ratings-dr.yaml",
        "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy: {tls: {mode: DISABLE}}
",
    );
    let (code, out, _) = ringmesh(&["tls-check", "--dir", &dir, "ratings:9080"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "HOST                                PORT   SERVER   CLIENT    STATUS     AUTHN POLICY                  DESTINATION RULE",
            "ratings.default.svc.cluster.local   9080   STRICT   DISABLE   CONFLICT   istio-system/default (mesh)   default/ratings",
            "",
            "CONFLICT ratings.default.svc.cluster.local:9080: clients send plaintext (DestinationRule \
             default/ratings) but workload ratings-0 requires mTLS (STRICT, istio-system/default (mesh))",
        ]
    );
    assert_eq!(code, 1);

    let (code, out, _) = ringmesh(&["tls-check", "--dir", &dir, "-o", "json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v[0]["status"], "CONFLICT");
    assert_eq!(v[0]["server"]["workloads"][0]["workload"], "ratings-0");

    // Errors say what to do.
    let (code, out, err) = ringmesh(&["tls-check", "--dir", &dir, "nothing"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        format!(
            "error: no service port matches nothing; `ringmesh tls-check --dir {dir}` lists them all\n"
        )
    );
    let (code, _, err) = ringmesh(&["tls-check", "--dir", "/nonexistent/mesh"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: cannot read /nonexistent/mesh: "),
        "{err}"
    );
    let (code, _, err) = ringmesh(&["tls-check", "--dir", &dir, "ratings:http"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"http\" is not a port number"), "{err}");
}
