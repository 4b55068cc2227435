//! Interop: a real Envoy sidecar and a ringmesh-proxy sidecar exchange
//! mTLS traffic in both directions, both configured by `ringmesh-control`
//! and both holding certificates from its CA.
//!
//! - The ringmesh sidecar (pod `reviews-0`, 127.0.0.72) makes its own key,
//!   proves itself with a bootstrap token and gets its SVID over the
//!   CertificateService; the trust bundle comes over SDS.
//! - The Envoy sidecar (pod `ratings-0`, 127.0.0.71) gets its SVID the way
//!   istio-agent gets one for Envoy (the test plays the agent: token, key
//!   and CSR, signed over gRPC, files named in the node metadata); the
//!   control plane serves it as the SDS secret `default` with `ROOTCA`.
//!
//! ```text
//!  test ─▶ ringmesh 127.0.0.72:15001 ══mTLS══▶ Envoy 127.0.0.71:9080 ─▶ ratings app
//!  test ─▶ Envoy    127.0.0.71:15001 ══mTLS══▶ ringmesh 127.0.0.72:9080 ─▶ reviews app
//! ```
//!
//! Under a STRICT mesh: both directions answer 200 from the right app; the
//! handshakes are counted on both sides (Envoy's listener and cluster
//! `ssl.handshake`, ringmesh's `ringmesh_downstream_cx_security_total`
//! and upstream handshakes) with no plaintext connection accepted and no
//! TLS error; Envoy ACKs everything; plaintext to either inbound is
//! refused; and each side proved the identity the other expected (a
//! sidecar verifies the peer's SPIFFE ID against the service's accounts,
//! so a request that got through proves it).

mod agent;

use std::{net::SocketAddr, path::Path, time::Duration};

use agent::{admin_get, call, envoy_sidecar, obtain_identity, plaintext_status, stat, stat_sum};
use ringmesh_e2e::{
    mesh::{mint_token, pod_xds, write_atomic, ControlPlane},
    wait_for, Backend, Driver, Proxy, TempDir,
};
use serde_json::json;

const ENVOY_IP: &str = "127.0.0.71";
const RINGMESH_IP: &str = "127.0.0.72";

fn write_mesh(dir: &Path, ratings_app: SocketAddr, reviews_app: SocketAddr) {
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
kind: Service
metadata: {{name: reviews, namespace: default}}
spec:
  ports: [{{name: http, port: 9080}}]
  selector: {{app: reviews}}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {{name: ratings-0, namespace: default, labels: {{app: ratings}}}}
spec: {{address: {ENVOY_IP}, serviceAccount: ratings}}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {{name: reviews-0, namespace: default, labels: {{app: reviews}}}}
spec: {{address: {RINGMESH_IP}, serviceAccount: reviews}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: ratings, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: ratings}}}}
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: {ratings_app}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: reviews, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: reviews}}}}
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: {reviews_app}
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

#[test]
fn envoy_and_ringmesh_sidecars_speak_mtls_both_ways() {
    let ratings_app = Backend::start("ratings");
    let reviews_app = Backend::start("reviews");
    let mesh = TempDir::new("interop-mesh");
    write_mesh(mesh.path(), ratings_app.addr(), reviews_app.addr());
    let data = TempDir::new("interop-data");
    let control = ControlPlane::start_with_data(
        mesh.path(),
        "127.0.0.1:0".parse().unwrap(),
        Some(data.path()),
    );
    let certs = TempDir::new("interop-certs");

    // The Envoy sidecar of ratings-0.
    let ratings_id = obtain_identity(control.addr(), data.path(), certs.path(), "ratings");
    let mut envoy = envoy_sidecar(
        control.addr(),
        ENVOY_IP,
        "ratings-0",
        "ratings",
        &ratings_id,
    );

    // The ringmesh sidecar of reviews-0: its own key, SVID from the CA.
    let token_file = certs.path().join("reviews.token");
    std::fs::write(&token_file, mint_token(data.path(), "default", "reviews"))
        .expect("writing the token");
    let mut xds = pod_xds(
        control.addr(),
        RINGMESH_IP,
        "reviews-0",
        "default",
        json!({ "app": "reviews" }),
    );
    xds["metadata"]["RINGMESH_IDENTITY"] = json!("csr");
    xds["metadata"]["SERVICE_ACCOUNT"] = json!("reviews");
    let mut ringmesh = Proxy::start(
        Driver::Uring,
        json!({
            "xds": xds,
            "identity": {
                "trust_domain": "cluster.local",
                "namespace": "default",
                "service_account": "reviews",
                "ca_address": control.addr().to_string(),
                "token_file": token_file.display().to_string(),
            },
        }),
    );

    let ringmesh_out: SocketAddr = format!("{RINGMESH_IP}:15001").parse().unwrap();
    let envoy_out: SocketAddr = format!("{ENVOY_IP}:15001").parse().unwrap();
    let ringmesh_in: SocketAddr = format!("{RINGMESH_IP}:9080").parse().unwrap();
    let envoy_in: SocketAddr = format!("{ENVOY_IP}:9080").parse().unwrap();

    // ringmesh → Envoy.
    wait_for(
        Duration::from_secs(40),
        "ringmesh → Envoy over mTLS",
        || {
            envoy.assert_alive();
            ringmesh.assert_alive();
            (call(ringmesh_out, "ratings:9080") == (200, "ratings".into())).then_some(())
        },
    );
    // Envoy → ringmesh.
    wait_for(
        Duration::from_secs(40),
        "Envoy → ringmesh over mTLS",
        || {
            envoy.assert_alive();
            ringmesh.assert_alive();
            (call(envoy_out, "reviews:9080") == (200, "reviews".into())).then_some(())
        },
    );
    for i in 0..20 {
        assert_eq!(
            call(ringmesh_out, "ratings:9080"),
            (200, "ratings".into()),
            "ringmesh → Envoy, request {i}"
        );
        assert_eq!(
            call(envoy_out, "reviews:9080"),
            (200, "reviews".into()),
            "Envoy → ringmesh, request {i}"
        );
    }

    // On the wire: TLS handshakes at both ends of both directions, no
    // plaintext connection accepted, no TLS error.
    let stats = admin_get(envoy.admin(), "/stats");
    let envoy_cluster = "cluster.outbound|9080||reviews.default.svc.cluster.local";
    assert!(
        stat(&stats, &format!("{envoy_cluster}.ssl.handshake")) >= 1,
        "Envoy's upstream to ringmesh did not handshake:\n{stats}"
    );
    assert_eq!(
        stat(&stats, &format!("{envoy_cluster}.ssl.connection_error")),
        0
    );
    assert!(
        stat(&stats, &format!("listener.{ENVOY_IP}_9080.ssl.handshake")) >= 1,
        "Envoy's inbound did not handshake with ringmesh:\n{stats}"
    );
    assert_eq!(
        stat(
            &stats,
            &format!("listener.{ENVOY_IP}_9080.ssl.connection_error")
        ),
        0,
        "{stats}"
    );
    let rejected = stat_sum(&stats, |k| k.ends_with(".update_rejected"));
    assert_eq!(rejected, 0, "Envoy rejected an update:\n{stats}");

    let m = ringmesh.metrics();
    let inbound = format!("inbound_{RINGMESH_IP}_9080");
    assert!(
        m.get_or_zero(
            "ringmesh_downstream_cx_security_total",
            &[("listener", &inbound), ("security", "mtls")]
        ) >= 1.0,
        "ringmesh's inbound accepted no mTLS connection from Envoy"
    );
    assert_eq!(
        m.get_or_zero(
            "ringmesh_downstream_cx_security_total",
            &[("listener", &inbound), ("security", "plaintext")]
        ),
        0.0,
        "ringmesh's inbound accepted plaintext under STRICT"
    );
    let ringmesh_cluster = "outbound|9080||ratings.default.svc.cluster.local";
    assert!(
        m.get_or_zero(
            "ringmesh_upstream_tls_handshakes_total",
            &[("cluster", ringmesh_cluster), ("result", "success")]
        ) >= 1.0,
        "ringmesh's upstream to Envoy did not handshake"
    );
    assert_eq!(
        m.get_or_zero(
            "ringmesh_upstream_tls_handshakes_total",
            &[("cluster", ringmesh_cluster), ("result", "failure")]
        ),
        0.0
    );

    // STRICT on both inbounds: plaintext gets no answer.
    assert_eq!(plaintext_status(envoy_in, "ratings:9080"), None);
    assert_eq!(plaintext_status(ringmesh_in, "reviews:9080"), None);
    drop(control);
}
