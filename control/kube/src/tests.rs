use serde_json::{json, Value};

use crate::{
    convert::{self, Objects},
    token_review::parse_service_account,
};
use ringmesh_registry::{load_sources_after, FileOptions, Protocol};

fn svc() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "shop", "resourceVersion": "7",
                     "uid": "u1", "labels": {"app": "reviews"},
                     "annotations": {"networking.istio.io/exportTo": "., istio-system"}},
        "spec": {"selector": {"app": "reviews"}, "clusterIP": "10.0.0.9",
                 "ports": [
                     {"name": "http", "port": 9080, "targetPort": "web", "protocol": "TCP"},
                     {"name": "api", "port": 9090, "targetPort": 19090, "appProtocol": "grpc"},
                     {"name": "dns", "port": 53, "protocol": "UDP"}]}
    })
}

fn pod(name: &str, ip: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "3",
                     "labels": {"app": "reviews", "version": "v1", "istio-locality": "eu.eu-1a"},
                     "annotations": {"sidecar.ringmesh.io/status": "{}"}},
        "spec": {"serviceAccountName": "reviews",
                 "containers": [{"name": "app", "ports": [{"name": "web", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip,
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

fn state(objects: &Objects) -> ringmesh_registry::MeshState {
    let sources = convert::sources(objects);
    load_sources_after(
        sources.iter().map(|(l, t)| (l.as_str(), t.as_str())),
        &FileOptions::default(),
        None,
    )
}

#[test]
fn service_and_pods_become_registry_objects() {
    let mut o = Objects::default();
    o.services.insert(("shop".into(), "reviews".into()), svc());
    o.pods
        .insert(("shop".into(), "r1".into()), pod("r1", "10.1.0.1", true));
    o.pods
        .insert(("shop".into(), "r2".into()), pod("r2", "10.1.0.2", false));
    // A pod without an IP yet is not a workload.
    let mut pending = pod("r3", "", true);
    pending["status"]["podIP"] = Value::Null;
    o.pods.insert(("shop".into(), "r3".into()), pending);
    let s = state(&o);
    assert!(s.diagnostics.is_empty(), "{:#?}", s.diagnostics);
    assert_eq!(s.services.len(), 1);
    let svc = &s.services[0];
    assert_eq!(svc.hostname, "reviews.shop.svc.cluster.local");
    assert_eq!(svc.export_to, vec![".", "istio-system"]);
    // UDP is not meshed; appProtocol wins over the name.
    assert_eq!(svc.ports.len(), 2);
    assert_eq!(svc.ports[0].protocol, Protocol::Http);
    assert_eq!(svc.ports[1].protocol, Protocol::Grpc);
    assert_eq!(svc.ports[1].target_port, 19090);
    assert_eq!(s.workloads.len(), 2);
    let r1 = &s.workloads[0];
    assert_eq!(r1.address.to_string(), "10.1.0.1");
    assert_eq!(r1.service_account, "reviews");
    assert_eq!(r1.locality.as_deref(), Some("eu/eu-1a"));
    assert!(r1.has_sidecar && r1.ready);
    // The named target port resolved from the container port.
    assert_eq!(r1.target_port(&svc.ports[0]), 8080);
    assert!(!s.workloads[1].ready);
    assert_eq!(s.endpoints_of(svc).count(), 1);
}

#[test]
fn endpoint_slices_take_terminating_endpoints_out() {
    let mut o = Objects::default();
    o.services.insert(("shop".into(), "reviews".into()), svc());
    o.pods
        .insert(("shop".into(), "r1".into()), pod("r1", "10.1.0.1", true));
    o.endpoint_slices.insert(
        ("shop".into(), "reviews-abc".into()),
        json!({"metadata": {"name": "reviews-abc", "namespace": "shop"},
               "endpoints": [{"addresses": ["10.1.0.1"],
                              "conditions": {"ready": false, "terminating": true},
                              "targetRef": {"kind": "Pod", "name": "r1", "namespace": "shop"}}]}),
    );
    let s = state(&o);
    assert!(!s.workloads[0].ready);
}

#[test]
fn a_bad_object_is_a_diagnostic_naming_it() {
    let mut o = Objects::default();
    let mut bad = svc();
    bad["spec"]["ports"][0]["port"] = json!(70000);
    o.services.insert(("shop".into(), "reviews".into()), bad);
    o.istio.insert(
        (
            "networking.istio.io/v1/VirtualService".into(),
            "shop".into(),
            "vs".into(),
        ),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "vs", "namespace": "shop", "resourceVersion": "9",
                            "managedFields": [], "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": 3}}]}]},
               "status": {}}),
    );
    let s = state(&o);
    let files: Vec<&str> = s.diagnostics.iter().map(|d| d.file.as_str()).collect();
    assert!(
        files.contains(&"kubernetes://v1/Service/shop/reviews"),
        "{:#?}",
        s.diagnostics
    );
    assert!(
        files.contains(&"kubernetes://networking.istio.io/v1/VirtualService/shop/vs"),
        "{:#?}",
        s.diagnostics
    );
    assert!(s.services.is_empty());
}

#[test]
fn external_name_and_udp_only_services_are_skipped() {
    let ext = json!({"metadata": {"name": "x", "namespace": "a"},
                     "spec": {"type": "ExternalName", "externalName": "example.com"}});
    assert!(convert::service(&ext).is_none());
    let udp = json!({"metadata": {"name": "x", "namespace": "a"},
                     "spec": {"ports": [{"port": 53, "protocol": "UDP"}]}});
    assert!(convert::service(&udp).is_none());
}

#[test]
fn service_account_usernames() {
    let id = parse_service_account("system:serviceaccount:shop:reviews").unwrap();
    assert_eq!(
        (id.namespace.as_str(), id.service_account.as_str()),
        ("shop", "reviews")
    );
    assert!(parse_service_account("system:node:n1").is_none());
    assert!(parse_service_account("system:serviceaccount:shop").is_none());
    assert!(parse_service_account("system:serviceaccount::x").is_none());
    assert!(parse_service_account("system:serviceaccount:a:b:c").is_none());
}
