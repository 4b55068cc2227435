//! Tests over a bookinfo-like corpus: the Istio resources in
//! `testdata/bookinfo/`, the registry built here (the registry's own
//! loader is tested elsewhere).

mod clusters;
mod determinism;
mod listeners;
mod mtls;
mod node;
mod rbac;
mod routes;
mod scoping;

use std::{collections::BTreeMap, net::IpAddr};

use ringmesh_istio::Severity;
use ringmesh_registry::{MeshState, Protocol, Service, ServicePort, Workload};
use ringmesh_xds::{Resources, TypeUrl};

use crate::{translate, wire, IdentitySource, Interception, Options, ProxyNode, Translator};

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn port(name: &str, port: u16, target_port: u16, protocol: Protocol) -> ServicePort {
    ServicePort {
        name: name.into(),
        port,
        target_port,
        protocol,
    }
}

pub(crate) fn service(
    ns: &str,
    name: &str,
    ports: Vec<ServicePort>,
    selector: &[(&str, &str)],
) -> Service {
    Service {
        name: name.into(),
        namespace: ns.into(),
        hostname: format!("{name}.{ns}.svc.cluster.local"),
        labels: labels(&[("app", name)]),
        ports,
        selector: labels(selector),
        export_to: Vec::new(),
    }
}

pub(crate) fn workload(
    ns: &str,
    name: &str,
    ip: &str,
    l: &[(&str, &str)],
    locality: Option<&str>,
) -> Workload {
    Workload {
        name: name.into(),
        namespace: ns.into(),
        address: ip.parse().unwrap(),
        labels: labels(l),
        service_account: format!(
            "{ns}-{}",
            l.iter()
                .find(|(k, _)| *k == "app")
                .map_or("default", |(_, v)| v)
        ),
        locality: locality.map(str::to_owned),
        weight: 1,
        ports: BTreeMap::new(),
        has_sidecar: true,
        ready: true,
    }
}

fn http(p: u16) -> ServicePort {
    port("http", p, p, Protocol::Http)
}

/// The registry part of the corpus.
pub(crate) fn registry() -> (Vec<Service>, Vec<Workload>) {
    let bi = "bookinfo";
    let mut services = vec![
        service(
            bi,
            "productpage",
            vec![http(9080)],
            &[("app", "productpage")],
        ),
        service(bi, "details", vec![http(9080)], &[("app", "details")]),
        service(bi, "reviews", vec![http(9080)], &[("app", "reviews")]),
        service(bi, "ratings", vec![http(9080)], &[("app", "ratings")]),
        service(
            bi,
            "mysqldb",
            vec![port("tcp-mysql", 3306, 3306, Protocol::Tcp)],
            &[("app", "mysqldb")],
        ),
        service(
            "shop",
            "cart",
            vec![port("http", 8080, 8081, Protocol::Http)],
            &[("app", "cart")],
        ),
        service("shop", "frontend", vec![http(80)], &[("app", "frontend")]),
        service(
            "istio-system",
            "istiod",
            vec![port("grpc-xds", 15010, 15010, Protocol::Grpc)],
            &[("app", "istiod")],
        ),
    ];
    let mut private = service("shop", "ledger", vec![http(8080)], &[("app", "ledger")]);
    private.export_to = vec![".".into()];
    services.push(private);

    let mut reviews_v2 = workload(
        bi,
        "reviews-v2",
        "10.0.0.31",
        &[("app", "reviews"), ("version", "v2")],
        Some("us-east/b"),
    );
    reviews_v2.weight = 2;
    let mut draining = workload(
        bi,
        "reviews-v3-old",
        "10.0.0.33",
        &[("app", "reviews"), ("version", "v3")],
        Some("us-west/c"),
    );
    draining.ready = false;
    let mut cart_a = workload(
        "shop",
        "cart-a",
        "10.1.1.1",
        &[("app", "cart")],
        Some("us-east/a/1"),
    );
    cart_a.ports.insert("http".into(), 8082);
    let workloads = vec![
        workload(
            bi,
            "productpage-v1",
            "10.0.0.10",
            &[("app", "productpage"), ("version", "v1")],
            Some("us-east/a/1"),
        ),
        workload(
            bi,
            "productpage-shadow",
            "10.0.0.11",
            &[("app", "productpage"), ("track", "shadow")],
            Some("us-east/a/1"),
        ),
        workload(
            bi,
            "details-v1",
            "10.0.0.20",
            &[("app", "details"), ("version", "v1")],
            None,
        ),
        workload(
            bi,
            "details-v2",
            "10.0.0.21",
            &[("app", "details"), ("version", "v2")],
            None,
        ),
        workload(
            bi,
            "reviews-v1",
            "10.0.0.30",
            &[("app", "reviews"), ("version", "v1")],
            Some("us-east/a/1"),
        ),
        reviews_v2,
        workload(
            bi,
            "reviews-v3",
            "10.0.0.32",
            &[("app", "reviews"), ("version", "v3")],
            Some("us-west/c"),
        ),
        draining,
        workload(
            bi,
            "ratings-v1",
            "10.0.0.40",
            &[("app", "ratings"), ("version", "v1")],
            None,
        ),
        workload(
            bi,
            "mysqldb-v1",
            "10.0.0.50",
            &[("app", "mysqldb"), ("version", "v1")],
            None,
        ),
        workload(
            bi,
            "mysqldb-v2",
            "10.0.0.51",
            &[("app", "mysqldb"), ("version", "v2")],
            None,
        ),
        cart_a,
        workload(
            "shop",
            "cart-b",
            "10.1.1.2",
            &[("app", "cart")],
            Some("us-east/b/1"),
        ),
        workload(
            "shop",
            "cart-c",
            "10.1.1.3",
            &[("app", "cart")],
            Some("eu-west/x/1"),
        ),
        workload(
            "shop",
            "frontend",
            "10.1.1.10",
            &[("app", "frontend")],
            Some("us-east/a/2"),
        ),
        workload(
            "istio-system",
            "istiod",
            "10.9.0.1",
            &[("app", "istiod")],
            None,
        ),
    ];
    (services, workloads)
}

/// The whole corpus; fails the test on any error diagnostic.
pub(crate) fn corpus() -> MeshState {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/bookinfo");
    let loaded = ringmesh_istio::load_dir(dir);
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "corpus errors:\n{}", errors.join("\n"));
    with_istio(loaded.model)
}

pub(crate) fn with_istio(istio: ringmesh_istio::Model) -> MeshState {
    let (services, workloads) = registry();
    MeshState {
        services,
        workloads,
        istio,
        diagnostics: Vec::new(),
        version: "test".into(),
    }
}

/// The corpus plus more Istio YAML.
pub(crate) fn corpus_plus(yaml: &str) -> MeshState {
    let mut state = corpus();
    let extra = ringmesh_istio::load_str(yaml, "extra.yaml");
    assert!(
        extra
            .diagnostics
            .iter()
            .all(|d| d.severity != Severity::Error),
        "{:?}",
        extra.diagnostics
    );
    let m = &mut state.istio;
    m.virtual_services.extend(extra.model.virtual_services);
    m.destination_rules.extend(extra.model.destination_rules);
    m.service_entries.extend(extra.model.service_entries);
    m.sidecars.extend(extra.model.sidecars);
    m.peer_authentications
        .extend(extra.model.peer_authentications);
    state
}

/// A proxy of a registry workload, labels and service account left for
/// the translation to look up.
pub(crate) fn proxy(ns: &str, ip: &str, mode: Interception) -> ProxyNode {
    ProxyNode {
        namespace: ns.into(),
        ip: Some(ip.parse::<IpAddr>().unwrap()),
        interception: mode,
        ..Default::default()
    }
}

pub(crate) fn productpage() -> ProxyNode {
    proxy("bookinfo", "10.0.0.10", Interception::Redirect)
}

pub(crate) fn run(state: &MeshState, node: &ProxyNode) -> Resources {
    translate(state, node, &Options::default())
}

/// Decode the resource `name` of type `M`; panics with the names held
/// when it is missing.
pub(crate) fn get<M: prost::Name + Default>(r: &Resources, name: &str) -> M {
    let t = TypeUrl::of::<M>();
    let res = r.get(&t, name).unwrap_or_else(|| {
        panic!(
            "no {} named {name:?}; have {:?}",
            t.short_name(),
            names::<M>(r)
        )
    });
    ringmesh_xds::unpack::<M>(&res.body).expect("decodes")
}

pub(crate) fn names<M: prost::Name>(r: &Resources) -> Vec<String> {
    r.of_type(&TypeUrl::of::<M>())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Decode an `Any` from inside a message.
pub(crate) fn inner<M: prost::Name + Default>(any: &wire::Any) -> M {
    assert_eq!(any.type_url, M::type_url());
    M::decode(any.value.as_slice()).expect("decodes")
}

pub(crate) type Cluster = wire::cluster::Cluster;
pub(crate) type Cla = wire::endpoint::ClusterLoadAssignment;
pub(crate) type RouteConfig = wire::route::RouteConfiguration;
pub(crate) type Listener = wire::listener::Listener;

/// `(address, port, weight)` of every endpoint of a load assignment, with
/// its locality (`region/zone/subzone`) and priority.
pub(crate) fn endpoints(cla: &Cla) -> Vec<(String, String, u32, u32)> {
    use wire::{
        core::address::Address, core::socket_address::PortSpecifier,
        endpoint::lb_endpoint::HostIdentifier,
    };
    let mut out = Vec::new();
    for l in &cla.endpoints {
        let loc = l
            .locality
            .as_ref()
            .map(|l| format!("{}/{}/{}", l.region, l.zone, l.sub_zone))
            .unwrap_or_default();
        for e in &l.lb_endpoints {
            let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                panic!()
            };
            let Some(Address::SocketAddress(sa)) = ep.address.as_ref().unwrap().address.as_ref()
            else {
                panic!()
            };
            let Some(PortSpecifier::PortValue(p)) = sa.port_specifier else {
                panic!()
            };
            out.push((
                format!("{}:{p}", sa.address),
                loc.clone(),
                e.load_balancing_weight.as_ref().unwrap().value,
                l.priority,
            ));
        }
    }
    out
}

/// The listener's socket address as `ip:port`.
pub(crate) fn listen_address(l: &Listener) -> String {
    use wire::core::{address::Address, socket_address::PortSpecifier};
    let Some(Address::SocketAddress(sa)) = l.address.as_ref().unwrap().address.as_ref() else {
        panic!()
    };
    let Some(PortSpecifier::PortValue(p)) = sa.port_specifier else {
        panic!()
    };
    format!("{}:{p}", sa.address)
}

/// The single network filter of a filter chain, decoded.
pub(crate) fn hcm_of(chain: &wire::listener::FilterChain) -> wire::hcm::HttpConnectionManager {
    let [f] = chain.filters.as_slice() else {
        panic!("one filter")
    };
    let Some(wire::listener::filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!()
    };
    inner(any)
}

pub(crate) fn tcp_of(chain: &wire::listener::FilterChain) -> wire::tcp_proxy::TcpProxy {
    let [f] = chain.filters.as_slice() else {
        panic!("one filter")
    };
    let Some(wire::listener::filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!()
    };
    inner(any)
}
