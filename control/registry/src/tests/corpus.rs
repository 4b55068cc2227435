//! A Bookinfo-like mesh: registry objects and Istio resources in the same
//! files, as a user keeps them.

use std::net::IpAddr;

use ringmesh_istio::Severity;

use super::*;

pub(crate) const PRODUCTPAGE: &str = "\
# The front end.
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata:
  name: productpage
  labels: {app: productpage}
spec:
  ports:
  - {name: http, port: 9080}
  selector: {app: productpage}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata:
  name: productpage-v1-0
  labels: {app: productpage, version: v1}
spec:
  address: 127.0.0.2
  serviceAccount: bookinfo-productpage
  locality: us-east1/us-east1-b
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: productpage
spec:
  host: productpage
  subsets:
  - name: v1
    labels: {version: v1}
";

pub(crate) const REVIEWS: &str = "\
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {name: reviews, namespace: default, labels: {app: reviews}}
spec:
  ports:
  - {name: http, port: 9080, targetPort: 9080, protocol: HTTP}
  selector: {app: reviews}
  exportTo: [\"*\"]
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {name: reviews-v1-0, namespace: default, labels: {app: reviews, version: v1}}
spec:
  address: 127.0.0.3
  serviceAccount: reviews
  locality: us-east1/us-east1-b/rack1
  weight: 1
  ports: {http: 19080}
  sidecar: true
  ready: true
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {name: reviews-v2-0, labels: {app: reviews, version: v2}}
spec:
  address: 127.0.0.4
  serviceAccount: reviews
  weight: 3
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {name: reviews-v3-0, labels: {app: reviews, version: v3}}
spec:
  address: \"::1\"
  serviceAccount: reviews
  ready: false
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v3
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
  - name: v3
    labels: {version: v3}
";

pub(crate) const RATINGS_AND_DETAILS: &str = "\
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {name: ratings}
spec:
  ports:
  - {name: http-api, port: 9080}
  - {name: grpc, port: 9090, targetPort: 19090}
  selector: {app: ratings}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {name: ratings-v1-0, labels: {app: ratings, version: v1}}
spec:
  address: 127.0.0.6
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts: [ratings]
  http:
  - fault:
      delay:
        percentage: {value: 10}
        fixedDelay: 5s
    route:
    - destination: {host: ratings}
---
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {name: details}
spec:
  ports:
  - {name: http, port: 9080}
  selector: {app: details}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {name: details-v1-0, labels: {app: details, version: v1}}
spec:
  address: 127.0.0.7
  sidecar: false
---
# A Kubernetes object kept alongside: skipped with a note.
apiVersion: apps/v1
kind: Deployment
metadata: {name: details-v1}
spec: {replicas: 1}
";

/// Another namespace, with a workload whose labels match `reviews`'
/// selector: it must not be an endpoint of `default/reviews`.
pub(crate) const STORAGE: &str = "\
apiVersion: v1
kind: List
items:
- apiVersion: registry.ringmesh.io/v1
  kind: Service
  metadata: {name: mongodb, namespace: storage}
  spec:
    ports:
    - {name: tcp-mongo, port: 27017}
    selector: {app: mongodb}
    exportTo: [\".\", default]
- apiVersion: registry.ringmesh.io/v1
  kind: Workload
  metadata: {name: mongodb-0, namespace: storage, labels: {app: mongodb}}
  spec: {address: 127.0.0.8}
- apiVersion: registry.ringmesh.io/v1
  kind: Workload
  metadata: {name: stray-reviews, namespace: storage, labels: {app: reviews, version: v1}}
  spec: {address: 127.0.0.9}
";

pub(crate) fn bookinfo() -> TempDir {
    let dir = TempDir::new("bookinfo");
    dir.write("bookinfo/productpage.yaml", PRODUCTPAGE);
    dir.write("bookinfo/reviews.yml", REVIEWS);
    dir.write("bookinfo/ratings-details.yaml", RATINGS_AND_DETAILS);
    dir.write("storage/mongodb.yaml", STORAGE);
    dir.write("README.md", "not YAML: ignored\n");
    dir.write(".reviews.yaml.swp", "an editor's swap file: ignored\n");
    dir
}

#[test]
fn bookinfo_loads() {
    let dir = bookinfo();
    let state = load(&dir);
    assert_eq!(
        shown(&state, dir.path()),
        [
            "bookinfo/ratings-details.yaml:46:1: info[RM0013] Deployment default/details-v1: \
          apps/v1 Deployment is not an Istio resource; skipped"
        ]
    );
    assert_eq!(
        service_names(&state),
        [
            "default/details",
            "default/productpage",
            "default/ratings",
            "default/reviews",
            "storage/mongodb"
        ]
    );
    assert_eq!(
        workload_names(&state),
        [
            "default/details-v1-0",
            "default/productpage-v1-0",
            "default/ratings-v1-0",
            "default/reviews-v1-0",
            "default/reviews-v2-0",
            "default/reviews-v3-0",
            "storage/mongodb-0",
            "storage/stray-reviews"
        ]
    );
    assert_eq!(state.istio.virtual_services.len(), 2);
    assert_eq!(state.istio.destination_rules.len(), 2);
    assert_eq!(state.istio.len(), 4);

    let reviews = state
        .service_by_host("reviews.default.svc.cluster.local")
        .unwrap();
    assert_eq!(
        *reviews,
        Service {
            name: "reviews".into(),
            namespace: "default".into(),
            hostname: "reviews.default.svc.cluster.local".into(),
            labels: [("app".to_owned(), "reviews".to_owned())].into(),
            ports: vec![ServicePort {
                name: "http".into(),
                port: 9080,
                target_port: 9080,
                protocol: Protocol::Http,
            }],
            selector: [("app".to_owned(), "reviews".to_owned())].into(),
            export_to: vec!["*".into()],
        }
    );
    let v1 = &state.workloads[3];
    assert_eq!(
        *v1,
        Workload {
            name: "reviews-v1-0".into(),
            namespace: "default".into(),
            address: "127.0.0.3".parse().unwrap(),
            labels: [
                ("app".to_owned(), "reviews".to_owned()),
                ("version".to_owned(), "v1".to_owned())
            ]
            .into(),
            service_account: "reviews".into(),
            locality: Some("us-east1/us-east1-b/rack1".into()),
            weight: 1,
            ports: [("http".to_owned(), 19080)].into(),
            has_sidecar: true,
            ready: true,
        }
    );
    assert_eq!(v1.target_port(&reviews.ports[0]), 19080);
    // Defaults.
    let v2 = &state.workloads[4];
    assert_eq!(
        (v2.weight, v2.locality.as_deref(), v2.has_sidecar, v2.ready),
        (3, None, true, true)
    );
    assert_eq!(v2.target_port(&reviews.ports[0]), 9080);
    assert_eq!(state.workloads[2].service_account, "default");
    assert!(!state.workloads[0].has_sidecar);
    assert_eq!(state.workloads[5].address, "::1".parse::<IpAddr>().unwrap());

    let ratings = &state.services[2];
    assert_eq!(
        ratings
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.port, p.target_port, p.protocol))
            .collect::<Vec<_>>(),
        [
            ("http-api", 9080, 9080, Protocol::Http),
            ("grpc", 9090, 19090, Protocol::Grpc)
        ]
    );
    let mongo = &state.services[4];
    assert_eq!(mongo.hostname, "mongodb.storage.svc.cluster.local");
    assert_eq!(mongo.ports[0].protocol, Protocol::Tcp);
    assert_eq!(mongo.export_to, [".", "default"]);
    assert!(mongo.labels.is_empty());
    assert!(state
        .diagnostics
        .iter()
        .all(|d| d.severity == Severity::Info));
}

#[test]
fn endpoints_follow_selector_namespace_and_readiness() {
    let dir = bookinfo();
    let state = load(&dir);
    let endpoints = |host: &str| -> Vec<String> {
        let service = state.service_by_host(host).unwrap();
        state
            .endpoints_of(service)
            .map(|w| format!("{}/{}", w.namespace, w.name))
            .collect()
    };
    // reviews-v3-0 is not ready; storage/stray-reviews carries the labels
    // but lives in another namespace.
    assert_eq!(
        endpoints("reviews.default.svc.cluster.local"),
        ["default/reviews-v1-0", "default/reviews-v2-0"]
    );
    assert_eq!(
        endpoints("mongodb.storage.svc.cluster.local"),
        ["storage/mongodb-0"]
    );
    assert_eq!(
        endpoints("details.default.svc.cluster.local"),
        ["default/details-v1-0"]
    );
    // A selector matches only workloads carrying every label of it.
    let (state, shown) = load_one(
        "\
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {name: reviews-v2}
spec:
  ports: [{name: http, port: 9080}]
  selector: {app: reviews, version: v2}
---
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {name: headless}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {name: a, labels: {app: reviews, version: v2, extra: x}}
spec: {address: 10.0.0.1}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {name: b, labels: {app: reviews}}
spec: {address: 10.0.0.2}
",
    );
    assert_eq!(shown, Vec::<String>::new());
    let names =
        |s: &Service| -> Vec<String> { state.endpoints_of(s).map(|w| w.name.clone()).collect() };
    assert_eq!(names(&state.services[1]), ["a"]);
    // No selector: no endpoints.
    assert!(names(&state.services[0]).is_empty());
}

#[test]
fn options_set_the_domain_and_the_default_namespace() {
    let dir = bookinfo();
    let options = FileOptions {
        domain_suffix: "mesh.example".into(),
        default_namespace: "shop".into(),
        ..FileOptions::default()
    };
    let state = load_state(dir.path(), &options, None);
    assert_eq!(
        service_names(&state),
        [
            "default/reviews",
            "shop/details",
            "shop/productpage",
            "shop/ratings",
            "storage/mongodb"
        ]
    );
    assert_eq!(state.services[1].hostname, "details.shop.svc.mesh.example");
    // The Istio resources got the same default namespace.
    let namespaces: Vec<&str> = state
        .istio
        .virtual_services
        .iter()
        .map(|vs| vs.meta.namespace.as_str())
        .collect();
    assert_eq!(namespaces, ["shop", "shop"]);
    assert_eq!(
        workload_names(&state)[..4],
        [
            "default/reviews-v1-0",
            "shop/details-v1-0",
            "shop/productpage-v1-0",
            "shop/ratings-v1-0"
        ]
    );
}

#[test]
fn version_is_stable_and_follows_content() {
    let dir = bookinfo();
    let first = load(&dir);
    assert_eq!(first.version.len(), 16);
    assert!(first.version.bytes().all(|b| b.is_ascii_hexdigit()));
    // Same content, rewritten (new mtimes): same version.
    dir.write("bookinfo/reviews.yml", REVIEWS);
    let again = load(&dir);
    assert_eq!(again.version, first.version);
    assert_eq!(again, first);
    let changed = REVIEWS.replace("weight: 3", "weight: 4");
    dir.write("bookinfo/reviews.yml", &changed);
    let third = load(&dir);
    assert_ne!(third.version, first.version);
    dir.write("bookinfo/reviews.yml", REVIEWS);
    assert_eq!(load(&dir).version, first.version);
    // An Istio-only change moves it too.
    dir.write(
        "bookinfo/reviews.yml",
        &REVIEWS
            .replace("weight: 90", "weight: 80")
            .replace("weight: 10\n", "weight: 20\n"),
    );
    assert_ne!(load(&dir).version, first.version);
}
