//! `ProxyNode` from Envoy's node, and scope keys.

use serde_json::json;

use super::*;

fn node(id: &str, metadata: serde_json::Value) -> ringmesh_xds::NodeInfo {
    ringmesh_xds::NodeInfo {
        id: id.into(),
        metadata: metadata.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    }
}

#[test]
fn reads_istio_node_id_and_metadata() {
    let n = ProxyNode::from_node(&node(
        "sidecar~10.0.0.30~reviews-v1-7d9f.bookinfo~bookinfo.svc.cluster.local",
        json!({
            "NAMESPACE": "bookinfo",
            "LABELS": {"app": "reviews", "version": "v1", "canary": true, "tier": 2},
            "INSTANCE_IPS": "10.0.0.30,fd00::30",
            "INTERCEPTION_MODE": "REDIRECT",
            "WORKLOAD_NAME": "reviews-v1",
            "SERVICE_ACCOUNT": "bookinfo-reviews",
            "ISTIO_VERSION": "1.26.0",
        }),
    ));
    assert_eq!(
        n,
        ProxyNode {
            namespace: "bookinfo".into(),
            ip: Some("10.0.0.30".parse().unwrap()),
            labels: labels(&[
                ("app", "reviews"),
                ("version", "v1"),
                ("canary", "true"),
                ("tier", "2")
            ]),
            workload_name: "reviews-v1".into(),
            service_account: "bookinfo-reviews".into(),
            interception: Interception::Redirect,
            identity: IdentitySource::None,
        }
    );
}

#[test]
fn is_lenient() {
    // Nothing at all: the default namespace, no IP.
    let n = ProxyNode::from_node(&Default::default());
    assert_eq!(n.namespace, "default");
    assert_eq!(n.ip, None);
    assert_eq!(n.interception, Interception::Redirect);
    // The id alone gives IP and namespace.
    let n = ProxyNode::from_node(&node(
        "sidecar~127.0.0.7~web-1.shop~shop.svc.cluster.local",
        json!({}),
    ));
    assert_eq!(
        (n.namespace.as_str(), n.ip),
        ("shop", Some("127.0.0.7".parse().unwrap()))
    );
    // Bad INSTANCE_IPS fall back to the id; metadata of the wrong type is ignored.
    let n = ProxyNode::from_node(&node(
        "sidecar~10.0.0.1~p.ns~ns.svc.cluster.local",
        json!({"INSTANCE_IPS": "not-an-ip", "LABELS": "app=x", "NAMESPACE": 7, "INTERCEPTION_MODE": "none"}),
    ));
    assert_eq!(n.ip, Some("10.0.0.1".parse().unwrap()));
    assert!(n.labels.is_empty());
    assert_eq!(n.namespace, "ns");
    assert_eq!(n.interception, Interception::None);
    // Metadata wins over the id; the first parseable INSTANCE_IP wins.
    let n = ProxyNode::from_node(&node(
        "garbage",
        json!({"NAMESPACE": "meta", "INSTANCE_IPS": " x, 10.9.9.9 ,10.8.8.8"}),
    ));
    assert_eq!(
        (n.namespace.as_str(), n.ip),
        ("meta", Some("10.9.9.9".parse().unwrap()))
    );
}

#[test]
fn reads_the_identity_source() {
    let id = "sidecar~127.0.0.9~e.default~default.svc.cluster.local";
    let n = ProxyNode::from_node(&node(
        id,
        json!({"TLS_SERVER_CERT_CHAIN": "/certs/cert.pem", "TLS_SERVER_KEY": " /certs/key.pem "}),
    ));
    assert_eq!(
        n.identity,
        IdentitySource::Files {
            cert_chain: "/certs/cert.pem".into(),
            key: "/certs/key.pem".into()
        }
    );
    let n = ProxyNode::from_node(&node(id, json!({"RINGMESH_IDENTITY": "CSR"})));
    assert_eq!(n.identity, IdentitySource::Csr);
    // Half a file pair, an unknown source, the wrong type: none.
    for meta in [
        json!({"TLS_SERVER_CERT_CHAIN": "/certs/cert.pem"}),
        json!({"TLS_SERVER_CERT_CHAIN": "/c.pem", "TLS_SERVER_KEY": ""}),
        json!({"RINGMESH_IDENTITY": "spire"}),
        json!({"RINGMESH_IDENTITY": true}),
    ] {
        assert_eq!(
            ProxyNode::from_node(&node(id, meta.clone())).identity,
            IdentitySource::None,
            "{meta}"
        );
    }
}

#[test]
fn scope_key_round_trips_and_is_canonical() {
    let tricky = ProxyNode {
        namespace: "ns;with=odd,chars".into(),
        ip: Some("fd00::1".parse().unwrap()),
        labels: labels(&[("app.kubernetes.io/name", "a:b,c"), ("x", ""), ("%", "é;=")]),
        workload_name: "w~1 2".into(),
        service_account: String::new(),
        interception: Interception::None,
        identity: IdentitySource::Files {
            cert_chain: "/etc/certs/cert chain,1.pem".into(),
            key: "/etc/certs/key;%.pem".into(),
        },
    };
    let mut csr = productpage();
    csr.identity = IdentitySource::Csr;
    for n in [tricky, ProxyNode::default(), productpage(), csr.clone()] {
        let key = n.scope_key();
        assert_eq!(ProxyNode::from_scope_key(&key), Some(n.clone()), "{key}");
    }
    assert_eq!(
        productpage().scope_key().as_str(),
        "ns=bookinfo;ip=10.0.0.10;mode=REDIRECT;wl=;sa=;labels="
    );
    let mut labelled = productpage();
    labelled.labels = labels(&[("version", "v1"), ("app", "productpage")]);
    assert_eq!(
        labelled.scope_key().as_str(),
        "ns=bookinfo;ip=10.0.0.10;mode=REDIRECT;wl=;sa=;labels=app:productpage,version:v1"
    );
    assert_eq!(
        csr.scope_key().as_str(),
        "ns=bookinfo;ip=10.0.0.10;mode=REDIRECT;wl=;sa=;labels=;id=csr"
    );
    // Equal nodes share a key; different ones do not.
    assert_eq!(productpage().scope_key(), productpage().scope_key());
    assert_ne!(productpage().scope_key(), labelled.scope_key());
    for bad in [
        "",
        "default",
        "ns=a;ip=;mode=REDIRECT;wl=;sa=",
        "ns=a;ip=nope;mode=REDIRECT;wl=;sa=;labels=",
        "ns=a;ip=;mode=TPROXY;wl=;sa=;labels=",
        "ns=a;ip=;mode=REDIRECT;wl=;sa=;labels=k",
        "ns=%zz;ip=;mode=REDIRECT;wl=;sa=;labels=",
        "ns=a;ip=;mode=REDIRECT;wl=;sa=;labels=;extra=1",
        "ns=a;ip=;mode=REDIRECT;wl=;sa=;labels=;id=none",
        "ns=a;ip=;mode=REDIRECT;wl=;sa=;labels=;id=files,a",
        "ns=a;ip=;mode=REDIRECT;wl=;sa=;labels=;id=csr;x=1",
        // Not canonical: an escape where none is needed, labels unsorted.
        "ns=%61;ip=;mode=REDIRECT;wl=;sa=;labels=",
        "ns=a;ip=;mode=REDIRECT;wl=;sa=;labels=b:1,a:2",
    ] {
        assert_eq!(ProxyNode::from_scope_key(&bad.into()), None, "{bad}");
    }
}
