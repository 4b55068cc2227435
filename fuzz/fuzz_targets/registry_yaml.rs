//! The control plane's file registry on arbitrary UTF-8:
//! `ringmesh_registry::load_sources` reads registry `Service` / `Workload`
//! objects and Istio resources side by side, then the mesh state it builds
//! goes through the whole control-plane → proxy pipeline: translated into
//! Envoy resources for a few proxies (`ringmesh_translate::translate`, with
//! a mesh CA's trust bundle, so proxies with an identity get mTLS),
//! each resource converted by the proxy's xDS client
//! (`ringmesh_xds_client::XdsState::apply`), and what it accepts compiled
//! (`ringmesh_config::compile`).
//!
//! Checks: nothing panics anywhere on that path; diagnostics name the file,
//! have a code and a message, and their line and column (when present) lie
//! inside the input; loading is deterministic (same state, same version).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmesh_fuzz::check_position;
use ringmesh_registry::{FileOptions, MeshState};
use ringmesh_translate::{IdentitySource, Interception, Options, ProxyNode};
use ringmesh_xds_client::{ResourceType, XdsState};

const LABEL: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let options = FileOptions::default();
    let state = ringmesh_registry::load_sources([(LABEL, text)], &options);
    for d in &state.diagnostics {
        assert_eq!(d.file, LABEL, "{d}");
        assert!(!d.code.is_empty() && !d.message.is_empty(), "{d:?}");
        if let Some(line) = d.line {
            let column = d.column.unwrap_or(1);
            if let Err(why) = check_position(text, line, column) {
                panic!("{why}: {d}");
            }
        }
    }
    let again = ringmesh_registry::load_sources([(LABEL, text)], &options);
    assert_eq!(state.version, again.version, "loading is not deterministic");
    assert_eq!(
        state.diagnostics, again.diagnostics,
        "loading is not deterministic"
    );

    for node in proxies(&state) {
        through_the_proxy(&state, &node);
    }
});

/// A proxy outside any workload, and the first workloads' sidecars (one
/// intercepted without an identity, one binding real ports and asking for
/// a certificate).
fn proxies(state: &MeshState) -> Vec<ProxyNode> {
    let mut nodes = vec![ProxyNode {
        namespace: "default".into(),
        ..ProxyNode::default()
    }];
    for (i, w) in state.workloads.iter().take(2).enumerate() {
        nodes.push(ProxyNode {
            namespace: w.namespace.clone(),
            ip: Some(w.address),
            labels: w.labels.clone(),
            workload_name: w.name.clone(),
            service_account: w.service_account.clone(),
            interception: if i == 0 {
                Interception::Redirect
            } else {
                Interception::None
            },
            identity: if i == 0 {
                IdentitySource::None
            } else {
                IdentitySource::Csr
            },
        });
    }
    nodes
}

/// A mesh CA's root (test material): with it, proxies that have an
/// identity get opportunistic mTLS (transport sockets, SDS secrets).
const TRUST_BUNDLE_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBvDCCAWGgAwIBAgIUQ7yepQ/lsdmzfL/sZFj0kSU/0UwwCgYIKoZIzj0EAwIw
MzEZMBcGA1UEAwwQUmluZ21lc2ggUm9vdCBDQTEWMBQGA1UECgwNY2x1c3Rlci5s
b2NhbDAeFw0yNjExMjQwMzE5MjRaFw0zNjExMjEwMzE5MjRaMDMxGTAXBgNVBAMM
EFJpbmdtZXNoIFJvb3QgQ0ExFjAUBgNVBAoMDWNsdXN0ZXIubG9jYWwwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQyXRxLVFOGbbQsYC+5rjrH7MlJzlI4jFypK21y
8AtCOiXfN0i5xjQm+ToJkkMEp0BQ/DfhnK+gVVk61WvQC6POo1MwUTAdBgNVHQ4E
FgQUvuA9E7UsfWUsTttL33z1leWbpcUwHwYDVR0jBBgwFoAUvuA9E7UsfWUsTttL
33z1leWbpcUwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAiovi
RehNpeYK18fnL14wqVdMTsWAd+V3qsmCK0fnq/kCIQC1arvvv+W2KPaFMWX2ojf8
+deGOOpwhBDeipBwUQ7yMQ==
-----END CERTIFICATE-----
";

fn through_the_proxy(state: &MeshState, node: &ProxyNode) {
    let opts = Options {
        trust_bundle_pem: TRUST_BUNDLE_PEM.into(),
        ..Options::default()
    };
    let resources = ringmesh_translate::translate(state, node, &opts);
    let mut xds = XdsState::default();
    for type_url in resources.types() {
        let Some(t) = ResourceType::from_type_url(type_url.as_str()) else {
            continue; // a type the xDS client does not subscribe to
        };
        for (name, r) in resources.of_type(type_url).into_iter().flatten() {
            if let Err(e) = xds.apply(t, name, &r.version, &r.body.type_url, &r.body.value) {
                assert!(!e.reason.is_empty(), "{e}");
            }
        }
    }
    let cfg = xds.to_proxy_config(&Default::default());
    if let Err(errors) = ringmesh_config::compile(&cfg, xds.version()) {
        assert!(!errors.0.is_empty());
    }
}
