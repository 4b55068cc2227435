//! The sample mesh is checked with the control plane's own loader and
//! translation, so a typo in a template fails here, not in a demo run.

use std::{fs, path::PathBuf};

use envoy_types::pb::envoy::config::{
    cluster::v3 as cluster, core::v3 as core, endpoint::v3 as endpoint, route::v3 as route,
};
use ringmesh_istio::Severity;
use ringmesh_registry::{load_state, FileOptions, MeshState};
use ringmesh_translate::{translate, Options, ProxyNode};
use ringmesh_xds::{NodeInfo, Resources, TypeUrl};

use super::*;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "ringmesh-demo-test-{tag}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn plan() -> Plan {
    Plan::new(Ipv4Addr::new(127, 0, 0, 100)).unwrap()
}

fn apps() -> Vec<(&'static str, SocketAddr)> {
    vec![
        ("frontend-0", "127.0.0.1:40001".parse().unwrap()),
        ("reviews-v1-0", "127.0.0.1:40002".parse().unwrap()),
        ("reviews-v2-0", "127.0.0.1:40003".parse().unwrap()),
        ("ratings-0", "127.0.0.1:40004".parse().unwrap()),
    ]
}

fn load(tag: &str) -> (MeshState, Dir) {
    let dir = Dir::new(tag);
    for (name, text) in control_files(&plan(), &apps()) {
        fs::write(dir.0.join(name), text).unwrap();
    }
    let state = load_state(&dir.0, &FileOptions::default(), None);
    (state, dir)
}

/// The node a pod's sidecar presents, built from its bootstrap file the
/// way the proxy sends it.
fn node(pod: &Pod) -> ProxyNode {
    let yaml = proxy_bootstrap(
        pod,
        "127.0.0.1:15010".parse().unwrap(),
        std::path::Path::new("/run/ringmesh/token"),
    );
    let doc: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let xds = &doc["xds"];
    ProxyNode::from_node(&NodeInfo {
        id: xds["node_id"].as_str().unwrap().to_owned(),
        cluster: xds["node_cluster"].as_str().unwrap().to_owned(),
        metadata: xds["metadata"].as_object().unwrap().clone(),
        user_agent_name: "ringmesh-proxy".into(),
        user_agent_version: String::new(),
    })
}

fn names(r: &Resources, t: TypeUrl) -> Vec<String> {
    r.of_type(&t)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn decode<M: prost::Message + Default>(r: &Resources, t: TypeUrl, name: &str) -> M {
    let res = r
        .get(&t, name)
        .unwrap_or_else(|| panic!("no {} {name}", t.short_name()));
    M::decode(res.body.value.as_slice()).unwrap()
}

/// The `IP:PORT` endpoints of a load assignment.
fn endpoints(cla: &endpoint::ClusterLoadAssignment) -> Vec<String> {
    cla.endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| match &e.host_identifier {
            Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(ep)) => ep.address.as_ref(),
            _ => None,
        })
        .filter_map(|a| match &a.address {
            Some(core::address::Address::SocketAddress(sa)) => Some(match sa.port_specifier {
                Some(core::socket_address::PortSpecifier::PortValue(p)) => {
                    format!("{}:{p}", sa.address)
                }
                _ => sa.address.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The endpoints of cluster `name`: inline (STATIC) or from EDS.
fn cluster_endpoints(r: &Resources, name: &str) -> Vec<String> {
    let c: cluster::Cluster = decode(r, TypeUrl::cluster(), name);
    match &c.load_assignment {
        Some(cla) => endpoints(cla),
        None => endpoints(&decode(r, TypeUrl::endpoint(), name)),
    }
}

#[test]
fn the_sample_mesh_loads_without_findings() {
    let (state, _dir) = load("findings");
    let findings: Vec<String> = state
        .diagnostics
        .iter()
        .filter(|d| d.severity != Severity::Info)
        .map(ToString::to_string)
        .collect();
    assert!(findings.is_empty(), "findings:\n{}", findings.join("\n"));
    assert_eq!(state.services.len(), 3);
    assert_eq!(state.workloads.len(), 4);
}

#[test]
fn every_sidecar_gets_its_inbound_and_outbound_listeners() {
    let (state, _dir) = load("listeners");
    let plan = plan();
    for pod in &plan.pods {
        let r = translate(&state, &node(pod), &Options::default());
        let listeners = names(&r, TypeUrl::listener());
        let inbound = format!("inbound_{}_{SERVICE_PORT}", pod.ip);
        assert!(
            listeners.contains(&inbound) && listeners.iter().any(|l| l == "virtualOutbound"),
            "{}: listeners {listeners:?}",
            pod.name
        );
        // The inbound cluster forwards to the app named by the Sidecar.
        let app = apps().iter().find(|(n, _)| *n == pod.name).unwrap().1;
        assert_eq!(
            cluster_endpoints(&r, &format!("inbound|{SERVICE_PORT}||")),
            vec![app.to_string()],
            "{}",
            pod.name
        );
    }
}

#[test]
fn the_frontend_routes_reviews_by_header_and_weight() {
    let (state, _dir) = load("routes");
    let plan = plan();
    let r = translate(&state, &node(plan.frontend()), &Options::default());
    let reviews = "reviews.default.svc.cluster.local";
    let clusters = names(&r, TypeUrl::cluster());
    for subset in ["v1", "v2"] {
        let c = format!("outbound|{SERVICE_PORT}|{subset}|{reviews}");
        assert!(clusters.contains(&c), "{c} missing from {clusters:?}");
        let ip = match subset {
            "v1" => plan.reviews_v1().ip,
            _ => plan.pod("reviews-v2-0").ip,
        };
        assert_eq!(
            cluster_endpoints(&r, &c),
            vec![format!("{ip}:{SERVICE_PORT}")],
            "{c}"
        );
    }
    // The outbound HTTP proxy's routes for reviews: jason first, to v2;
    // then the 90/10 split.
    let rc: route::RouteConfiguration = decode(&r, TypeUrl::route(), "http_proxy");
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| d == "reviews:9080"))
        .unwrap_or_else(|| panic!("no virtual host for reviews:9080 in {rc:?}"));
    let action = |i: usize| match &vh.routes[i].action {
        Some(route::route::Action::Route(a)) => a.cluster_specifier.clone(),
        other => panic!("route {i} is not a route action: {other:?}"),
    };
    let first = &vh.routes[0];
    let header = first
        .r#match
        .as_ref()
        .map(|m| m.headers.clone())
        .unwrap_or_default();
    assert_eq!(header.len(), 1, "{first:?}");
    assert_eq!(header[0].name, "end-user");
    assert!(
        format!("{:?}", header[0]).contains("\"jason\""),
        "{:?}",
        header[0]
    );
    assert_eq!(
        action(0),
        Some(route::route_action::ClusterSpecifier::Cluster(format!(
            "outbound|9080|v2|{reviews}"
        )))
    );
    let Some(route::route_action::ClusterSpecifier::WeightedClusters(w)) = action(1) else {
        panic!("the second route is not weighted: {:?}", vh.routes[1]);
    };
    let weights: Vec<(String, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.clone(), c.weight.as_ref().map_or(0, |w| w.value)))
        .collect();
    assert_eq!(
        weights,
        vec![
            (format!("outbound|9080|v1|{reviews}"), CANARY_V1_WEIGHT),
            (format!("outbound|9080|v2|{reviews}"), CANARY_V2_WEIGHT)
        ]
    );
}

#[test]
fn plans_stay_on_loopback_and_within_the_block() {
    assert!(Plan::new(Ipv4Addr::new(10, 0, 0, 1)).is_err());
    assert!(Plan::new(Ipv4Addr::new(127, 0, 0, 0)).is_err());
    assert!(Plan::new(Ipv4Addr::new(127, 0, 0, 252)).is_err());
    let p = Plan::new(Ipv4Addr::new(127, 0, 3, 251)).unwrap();
    assert_eq!(p.last_ip(), Ipv4Addr::new(127, 0, 3, 254));
    assert_eq!(p.frontend().inbound().to_string(), "127.0.3.251:9080");
    assert_eq!(
        p.ratings().principal(),
        "cluster.local/ns/default/sa/ratings"
    );
}
