//! Listeners in both layouts.

use super::*;
use crate::wire::{
    hcm::http_connection_manager::RouteSpecifier,
    tcp_proxy::tcp_proxy::ClusterSpecifier as TcpSpecifier,
};

fn tcp_cluster(chain: &wire::listener::FilterChain) -> String {
    match tcp_of(chain).cluster_specifier {
        Some(TcpSpecifier::Cluster(c)) => c,
        other => panic!("{other:?}"),
    }
}

fn rds_name(chain: &wire::listener::FilterChain) -> String {
    match hcm_of(chain).route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            assert_eq!(rds.config_source, Some(wire::ads()));
            rds.route_config_name
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn redirect_layout() {
    let r = run(
        &corpus(),
        &proxy("bookinfo", "10.0.0.30", Interception::Redirect),
    );
    assert_eq!(
        names::<Listener>(&r),
        [
            "0.0.0.0_15010",
            "0.0.0.0_3306",
            "0.0.0.0_443",
            "0.0.0.0_80",
            "0.0.0.0_8080",
            "0.0.0.0_9080",
            "virtualInbound",
            "virtualOutbound",
        ]
    );
    let vo = get::<Listener>(&r, "virtualOutbound");
    assert_eq!(listen_address(&vo), "0.0.0.0:15001");
    assert_eq!(vo.use_original_dst, Some(wire::boolv(true)));
    assert!(vo.bind_to_port.is_none(), "bound");
    assert_eq!(vo.filter_chains.len(), 1);
    assert_eq!(tcp_cluster(&vo.filter_chains[0]), "PassthroughCluster");

    let http = get::<Listener>(&r, "0.0.0.0_9080");
    assert_eq!(listen_address(&http), "0.0.0.0:9080");
    assert_eq!(http.bind_to_port, Some(wire::boolv(false)));
    let [chain] = http.filter_chains.as_slice() else {
        panic!()
    };
    assert_eq!(rds_name(chain), "9080");
    assert_eq!(hcm_of(chain).stat_prefix, "outbound_0.0.0.0_9080");

    // The one TCP service on 3306, split by its VirtualService.
    let tcp = get::<Listener>(&r, "0.0.0.0_3306");
    let Some(TcpSpecifier::WeightedClusters(w)) = tcp_of(&tcp.filter_chains[0]).cluster_specifier
    else {
        panic!()
    };
    let split: Vec<(&str, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight))
        .collect();
    assert_eq!(
        split,
        [
            ("outbound|3306|v1|mysqldb.bookinfo.svc.cluster.local", 80),
            ("outbound|3306|v2|mysqldb.bookinfo.svc.cluster.local", 20),
        ]
    );

    // TLS on 443: one chain per service by SNI, the rest passes through.
    let tls = get::<Listener>(&r, "0.0.0.0_443");
    assert_eq!(
        tls.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let sni: Vec<(Vec<String>, String)> = tls
        .filter_chains
        .iter()
        .map(|c| {
            (
                c.filter_chain_match.as_ref().unwrap().server_names.clone(),
                tcp_cluster(c),
            )
        })
        .collect();
    assert_eq!(
        sni,
        [
            (
                vec!["*.wikipedia.org".to_string()],
                "outbound|443||*.wikipedia.org".to_string()
            ),
            (
                vec!["api.payments.example.com".to_string()],
                "outbound|443||api.payments.example.com".to_string()
            ),
        ]
    );
    assert_eq!(
        tcp_cluster(tls.default_filter_chain.as_ref().unwrap()),
        "PassthroughCluster"
    );
}

#[test]
fn virtual_inbound_has_a_chain_per_workload_port() {
    let r = run(
        &corpus(),
        &proxy("bookinfo", "10.0.0.30", Interception::Redirect),
    );
    let vi = get::<Listener>(&r, "virtualInbound");
    assert_eq!(listen_address(&vi), "0.0.0.0:15006");
    assert_eq!(
        vi.listener_filters[0].name,
        "envoy.filters.listener.original_dst"
    );
    assert!(
        vi.use_original_dst.is_none(),
        "inbound must not hand off to outbound listeners"
    );
    let [http, catch_all] = vi.filter_chains.as_slice() else {
        panic!("{:?}", vi.filter_chains)
    };
    assert_eq!(
        http.filter_chain_match.as_ref().unwrap().destination_port,
        Some(wire::u32v(9080))
    );
    let hcm = hcm_of(http);
    let Some(RouteSpecifier::RouteConfig(rc)) = hcm.route_specifier else {
        panic!()
    };
    assert_eq!(rc.name, "inbound|9080||");
    let route = &rc.virtual_hosts[0].routes[0];
    let Some(wire::route::route::Action::Route(a)) = &route.action else {
        panic!()
    };
    assert_eq!(
        a.cluster_specifier,
        Some(wire::route::route_action::ClusterSpecifier::Cluster(
            "inbound|9080||".into()
        ))
    );
    assert!(catch_all.filter_chain_match.is_none());
    assert_eq!(tcp_cluster(catch_all), "InboundPassthroughCluster");
}

#[test]
fn registry_only_sends_unknown_destinations_to_the_black_hole() {
    let r = run(&corpus(), &productpage());
    let vo = get::<Listener>(&r, "virtualOutbound");
    assert_eq!(tcp_cluster(&vo.filter_chains[0]), "BlackHoleCluster");
}

#[test]
fn none_layout_binds_real_addresses() {
    // ratings' Sidecar points inbound 9080 at the app on 127.0.0.1:19080.
    let node = proxy("bookinfo", "10.0.0.40", Interception::None);
    let r = run(&corpus(), &node);
    assert_eq!(
        names::<Listener>(&r),
        ["inbound_10.0.0.40_9080", "virtualOutbound"]
    );
    let vo = get::<Listener>(&r, "virtualOutbound");
    assert_eq!(listen_address(&vo), "10.0.0.40:15001");
    assert!(vo.use_original_dst.is_none() && vo.listener_filters.is_empty());
    assert_eq!(rds_name(&vo.filter_chains[0]), "http_proxy");
    let inbound = get::<Listener>(&r, "inbound_10.0.0.40_9080");
    assert_eq!(listen_address(&inbound), "10.0.0.40:9080");
    assert!(inbound.bind_to_port.is_none());
    let Some(RouteSpecifier::RouteConfig(rc)) = hcm_of(&inbound.filter_chains[0]).route_specifier
    else {
        panic!()
    };
    assert_eq!(rc.virtual_hosts[0].domains, ["*"]);
    let c = get::<Cluster>(&r, "inbound|9080||");
    assert_eq!(
        endpoints(c.load_assignment.as_ref().unwrap()),
        vec![("127.0.0.1:19080".into(), String::new(), 1, 0)]
    );
}

#[test]
fn none_layout_accepts_any_loopback_default_endpoint_and_tcp_ports() {
    // A loopback test bed: the "pod" is 127.0.0.5, its app listens on
    // 127.0.0.9:7000 (Istio would only take 127.0.0.1).
    let mut state = corpus_plus(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: mysql, namespace: bookinfo}
spec:
  workloadSelector: {labels: {app: mysqldb, version: v1}}
  ingress:
  - port: {number: 3306, protocol: TCP, name: tcp}
    defaultEndpoint: 127.0.0.9:7000
",
    );
    let w = state
        .workloads
        .iter_mut()
        .find(|w| w.name == "mysqldb-v1")
        .unwrap();
    w.address = "127.0.0.5".parse().unwrap();
    let r = run(&state, &proxy("bookinfo", "127.0.0.5", Interception::None));
    let inbound = get::<Listener>(&r, "inbound_127.0.0.5_3306");
    assert_eq!(listen_address(&inbound), "127.0.0.5:3306");
    assert_eq!(tcp_cluster(&inbound.filter_chains[0]), "inbound|3306||");
    let c = get::<Cluster>(&r, "inbound|3306||");
    assert_eq!(
        endpoints(c.load_assignment.as_ref().unwrap())[0].0,
        "127.0.0.9:7000"
    );
}

#[test]
fn none_layout_without_an_ip_has_no_listeners_but_declares_them() {
    let node = ProxyNode {
        namespace: "bookinfo".into(),
        interception: Interception::None,
        ..Default::default()
    };
    let r = run(&corpus(), &node);
    assert!(names::<Listener>(&r).is_empty());
    assert!(
        r.of_type(&ringmesh_xds::TypeUrl::listener()).is_some(),
        "declared"
    );
    assert_eq!(names::<RouteConfig>(&r), ["http_proxy"]);
}

#[test]
fn two_tcp_services_on_one_port_get_no_listener() {
    let mut state = corpus();
    let mut second = service(
        "bookinfo",
        "postgres",
        vec![ringmesh_registry::ServicePort {
            name: "tcp".into(),
            port: 3306,
            target_port: 5432,
            protocol: ringmesh_registry::Protocol::Tcp,
        }],
        &[("app", "postgres")],
    );
    second.export_to = vec!["*".into()];
    state.services.push(second);
    let r = run(
        &state,
        &proxy("bookinfo", "10.0.0.30", Interception::Redirect),
    );
    assert!(!names::<Listener>(&r).contains(&"0.0.0.0_3306".to_string()));
    // Both keep their clusters.
    assert!(names::<Cluster>(&r)
        .contains(&"outbound|3306||postgres.bookinfo.svc.cluster.local".to_string()));
}

#[test]
fn labels_and_service_account_come_from_the_registry_when_metadata_lacks_them() {
    // productpage's node carries no labels: its Sidecar is still found
    // through the registry workload with its IP (REGISTRY_ONLY).
    let node = ProxyNode::from_node(&ringmesh_xds::NodeInfo {
        id: "sidecar~10.0.0.10~productpage-v1-abc.bookinfo~bookinfo.svc.cluster.local".into(),
        ..Default::default()
    });
    assert!(node.labels.is_empty());
    let r = run(&corpus(), &node);
    let vo = get::<Listener>(&r, "virtualOutbound");
    assert_eq!(tcp_cluster(&vo.filter_chains[0]), "BlackHoleCluster");
}
