use prost::Name;

mod l7;
mod rbac;
mod tls;

use super::*;
use crate::wire::pb::{
    envoy::{
        config::{
            cluster::v3::{
                cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy},
                Cluster,
            },
            core::v3::{
                address, socket_address::PortSpecifier, transport_socket, Address, HealthStatus,
                SocketAddress, TransportSocket,
            },
            endpoint::v3::{
                lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
                LocalityLbEndpoints,
            },
            listener::v3::{filter, Filter, FilterChain, Listener},
            route::v3::{
                route, route_action, route_match::PathSpecifier, HeaderMatcher, Route, RouteAction,
                RouteConfiguration, RouteMatch, VirtualHost,
            },
        },
        extensions::filters::network::{
            http_connection_manager::v3::{
                http_connection_manager::RouteSpecifier, HttpConnectionManager, Rds,
            },
            tcp_proxy::v3::{tcp_proxy, TcpProxy},
        },
    },
    google::protobuf::{Any, BoolValue, Duration, UInt32Value},
};

fn any<M: Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn conv<M: Name>(t: ResourceType, name: &str, m: &M) -> Result<Converted, ResourceError> {
    convert(t, name, &M::type_url(), &m.encode_to_vec())
}

fn err_text<M: Name>(t: ResourceType, name: &str, m: &M) -> String {
    conv(t, name, m).expect_err("must be rejected").to_string()
}

fn addr(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn listener_with(name: &str, typed: Any) -> Listener {
    Listener {
        name: name.into(),
        address: Some(addr("127.0.0.1", 8080)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "f".into(),
                config_type: Some(filter::ConfigType::TypedConfig(typed)),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn hcm(spec: RouteSpecifier) -> Any {
    any(&HttpConnectionManager {
        route_specifier: Some(spec),
        ..Default::default()
    })
}

fn rds_listener(name: &str, route: &str) -> Listener {
    listener_with(
        name,
        hcm(RouteSpecifier::Rds(Rds {
            route_config_name: route.into(),
            config_source: None,
        })),
    )
}

fn route(m: PathSpecifier, cluster: &str, timeout: Option<Duration>) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(m),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.into())),
            timeout,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn route_config(name: &str, routes: Vec<Route>) -> RouteConfiguration {
    RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![VirtualHost {
            name: "vh".into(),
            domains: vec!["example.com".into(), "*".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn lb(ip: &str, port: u32, weight: Option<u32>, health: HealthStatus) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(addr(ip, port)),
            ..Default::default()
        })),
        load_balancing_weight: weight.map(|value| UInt32Value { value }),
        health_status: health as i32,
        ..Default::default()
    }
}

fn cla(name: &str, eps: Vec<LbEndpoint>) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: eps,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn cluster_of(name: &str, t: DiscoveryType) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(t as i32)),
        connect_timeout: Some(Duration {
            seconds: 0,
            nanos: 250_000_000,
        }),
        ..Default::default()
    }
}

#[test]
fn http_listener_with_rds() {
    let Converted::Listener(l) =
        conv(ResourceType::Listener, "in", &rds_listener("in", "main")).unwrap()
    else {
        panic!("not a listener")
    };
    assert_eq!(
        l.spec,
        ListenerSpec {
            name: "in".into(),
            address: "127.0.0.1:8080".into(),
            protocol: ListenerProtocol::Http,
            route_config: Some("main".into()),
            cluster: None,
            original_dst: false,
            tls: None,
            rbac: Vec::new(),
            path_normalization: Some(ringmesh_config::model::PathNormalizationSpec {
                normalize: None,
                merge_slashes: Some(false),
                escaped_slashes: None,
            }),
        }
    );
    assert_eq!(l.rds.as_deref(), Some("main"));
    assert_eq!(l.inline_route, None);
}

#[test]
fn http_listener_with_inline_route_and_original_dst() {
    let mut l = listener_with(
        "out",
        hcm(RouteSpecifier::RouteConfig(route_config(
            "ignored",
            vec![route(PathSpecifier::Prefix("/".into()), "web", None)],
        ))),
    );
    l.use_original_dst = Some(BoolValue { value: true });
    l.address = Some(addr("::1", 15001));
    let Converted::Listener(x) = conv(ResourceType::Listener, "out", &l).unwrap() else {
        panic!()
    };
    assert_eq!(x.spec.address, "[::1]:15001");
    assert!(x.spec.original_dst);
    assert_eq!(x.rds, None);
    assert_eq!(x.spec.route_config.as_deref(), Some("out#inline"));
    let rc = x.inline_route.unwrap();
    assert_eq!(rc.name, "out#inline");
    assert_eq!(
        rc.virtual_hosts[0].routes[0].cluster.as_deref(),
        Some("web")
    );
}

#[test]
fn tcp_proxy_listener() {
    let tcp = any(&TcpProxy {
        stat_prefix: "db".into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster("db".into())),
        ..Default::default()
    });
    let Converted::Listener(l) =
        conv(ResourceType::Listener, "db", &listener_with("db", tcp)).unwrap()
    else {
        panic!()
    };
    assert_eq!(l.spec.protocol, ListenerProtocol::Tcp);
    assert_eq!(l.spec.cluster.as_deref(), Some("db"));
    assert_eq!(l.spec.route_config, None);
}

#[test]
fn route_configuration_prefix_exact_and_timeout() {
    let rc = route_config(
        "main",
        vec![
            route(
                PathSpecifier::Path("/healthz".into()),
                "health",
                Some(Duration {
                    seconds: 0,
                    nanos: 0,
                }),
            ),
            route(
                PathSpecifier::Prefix("/".into()),
                "web",
                Some(Duration {
                    seconds: 2,
                    nanos: 500_000_000,
                }),
            ),
        ],
    );
    let Converted::Route(r) = conv(ResourceType::RouteConfiguration, "main", &rc).unwrap() else {
        panic!()
    };
    let vh = &r.virtual_hosts[0];
    assert_eq!(vh.domains, ["example.com", "*"]);
    assert_eq!(vh.routes[0].matcher.exact.as_deref(), Some("/healthz"));
    assert_eq!(vh.routes[0].timeout.as_deref(), Some("0s"));
    assert_eq!(vh.routes[1].matcher.prefix.as_deref(), Some("/"));
    assert_eq!(vh.routes[1].timeout.as_deref(), Some("2500ms"));
    assert_eq!(vh.routes[1].cluster.as_deref(), Some("web"));
}

#[test]
fn clusters_static_eds_original_dst() {
    let mut s = cluster_of("s", DiscoveryType::Static);
    s.load_assignment = Some(cla(
        "s",
        vec![
            lb("10.0.0.1", 80, Some(3), HealthStatus::Healthy),
            lb("10.0.0.2", 80, None, HealthStatus::Unknown),
            lb("10.0.0.3", 80, None, HealthStatus::Unhealthy),
        ],
    ));
    let Converted::Cluster(c) = conv(ResourceType::Cluster, "s", &s).unwrap() else {
        panic!()
    };
    assert_eq!(c.spec.cluster_type, ClusterTypeSpec::Static);
    assert_eq!(c.spec.connect_timeout.as_deref(), Some("250ms"));
    assert_eq!(
        c.spec.endpoints,
        [
            EndpointSpec {
                address: "10.0.0.1:80".into(),
                weight: 3
            },
            EndpointSpec {
                address: "10.0.0.2:80".into(),
                weight: 1
            },
        ],
        "the unhealthy endpoint is left out"
    );
    assert_eq!(c.eds_service, None);

    let mut e = cluster_of("e", DiscoveryType::Eds);
    let Converted::Cluster(c) = conv(ResourceType::Cluster, "e", &e).unwrap() else {
        panic!()
    };
    assert_eq!(
        c.eds_service.as_deref(),
        Some("e"),
        "defaults to the cluster name"
    );
    e.eds_cluster_config = Some(EdsClusterConfig {
        eds_config: None,
        service_name: "svc".into(),
    });
    let Converted::Cluster(c) = conv(ResourceType::Cluster, "e", &e).unwrap() else {
        panic!()
    };
    assert_eq!(c.eds_service.as_deref(), Some("svc"));

    let mut o = cluster_of("o", DiscoveryType::OriginalDst);
    o.lb_policy = LbPolicy::ClusterProvided as i32;
    let Converted::Cluster(c) = conv(ResourceType::Cluster, "o", &o).unwrap() else {
        panic!()
    };
    assert_eq!(c.spec.cluster_type, ClusterTypeSpec::OriginalDst);
    assert!(c.spec.endpoints.is_empty());
}

#[test]
fn rejections_name_the_resource_field_and_reason() {
    let unknown = Any {
        type_url: "type.googleapis.com/x.NoSuchFilter".into(),
        value: vec![],
    };
    let t = err_text(
        ResourceType::Listener,
        "bad",
        &listener_with("bad", unknown),
    );
    assert!(t.starts_with("Listener \"bad\": filter_chains[0].filters[0].typed_config: unsupported network filter"), "{t}");
    assert!(t.contains("x.NoSuchFilter"), "{t}");

    let mut two = rds_listener("l", "r");
    two.filter_chains.push(two.filter_chains[0].clone());
    let t = err_text(ResourceType::Listener, "l", &two);
    assert!(
        t.contains("filter_chains: two filter chains are supported only as the PERMISSIVE pair"),
        "{t}"
    );

    let mut unbound = rds_listener("0.0.0.0_9080", "9080");
    unbound.bind_to_port = Some(pb::google::protobuf::BoolValue { value: false });
    assert!(
        err_text(ResourceType::Listener, "0.0.0.0_9080", &unbound)
            .contains("bind_to_port: listeners that are not bound"),
        "an unbound listener must not be bound by the proxy"
    );
    let mut bound = rds_listener("l", "r");
    bound.bind_to_port = Some(pb::google::protobuf::BoolValue { value: true });
    conv(ResourceType::Listener, "l", &bound).expect("bind_to_port: true is the default");

    let mut tls = rds_listener("l", "r");
    tls.filter_chains[0].transport_socket = Some(TransportSocket {
        name: "tls".into(),
        config_type: None::<transport_socket::ConfigType>,
    });
    let t = err_text(ResourceType::Listener, "l", &tls);
    assert!(
        t.contains("filter_chains[0].transport_socket.typed_config: missing (transport socket \"tls\" needs its configuration inline)"),
        "{t}"
    );

    let mut host = rds_listener("l", "r");
    host.address = Some(addr("example.com", 80));
    assert!(err_text(ResourceType::Listener, "l", &host)
        .contains("address.address: \"example.com\" is not an IP address"));

    let mut range = route_config(
        "rc",
        vec![route(PathSpecifier::Prefix("/".into()), "c", None)],
    );
    range.virtual_hosts[0].routes[0]
        .r#match
        .as_mut()
        .unwrap()
        .headers = vec![HeaderMatcher {
        name: "x".into(),
        header_match_specifier: Some(
            crate::wire::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier::RangeMatch(
                Default::default(),
            ),
        ),
        ..Default::default()
    }];
    assert_eq!(
        err_text(ResourceType::RouteConfiguration, "rc", &range),
        "RouteConfiguration \"rc\": virtual_hosts[0].routes[0].match.headers[0].range_match: range matches are not supported"
    );

    let dns = cluster_of("d", DiscoveryType::StrictDns);
    assert_eq!(
        err_text(ResourceType::Cluster, "d", &dns),
        "Cluster \"d\": type: STRICT_DNS clusters are not supported (STATIC, EDS and ORIGINAL_DST are)"
    );
    let mut cp = cluster_of("c", DiscoveryType::Static);
    cp.lb_policy = LbPolicy::ClusterProvided as i32;
    let t = err_text(ResourceType::Cluster, "c", &cp);
    assert!(
        t.contains("lb_policy: supported: ROUND_ROBIN, LEAST_REQUEST"),
        "{t}"
    );
    let mut ctls = cluster_of("c", DiscoveryType::Eds);
    ctls.transport_socket = Some(TransportSocket::default());
    let t = err_text(ResourceType::Cluster, "c", &ctls);
    assert!(t.contains("transport_socket.typed_config: missing"), "{t}");

    let zero = cla(
        "z",
        vec![lb("10.0.0.1", 80, Some(0), HealthStatus::Healthy)],
    );
    assert_eq!(
        err_text(ResourceType::ClusterLoadAssignment, "z", &zero),
        "ClusterLoadAssignment \"z\": endpoints[0].lb_endpoints[0].load_balancing_weight: must be at least 1"
    );

    // A body of another type, or one that does not decode.
    let e = convert(ResourceType::Cluster, "x", &Listener::type_url(), &[]).unwrap_err();
    assert!(
        e.to_string()
            .contains("expected type.googleapis.com/envoy.config.cluster.v3.Cluster"),
        "{e}"
    );
    let e = convert(
        ResourceType::Cluster,
        "x",
        &Cluster::type_url(),
        &[0xff, 0xff],
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not decode"), "{e}");
}

fn full_state() -> XdsState {
    let mut s = XdsState::default();
    let mut put = |t: ResourceType, name: &str, body: Any| {
        s.apply(t, name, "v1", &body.type_url, &body.value).unwrap();
    };
    put(
        ResourceType::Listener,
        "in",
        any(&rds_listener("in", "main")),
    );
    put(
        ResourceType::RouteConfiguration,
        "main",
        any(&route_config(
            "main",
            vec![route(PathSpecifier::Prefix("/".into()), "web", None)],
        )),
    );
    put(
        ResourceType::Cluster,
        "web",
        any(&cluster_of("web", DiscoveryType::Eds)),
    );
    put(
        ResourceType::ClusterLoadAssignment,
        "web",
        any(&cla(
            "web",
            vec![lb("127.0.0.1", 9000, Some(2), HealthStatus::Healthy)],
        )),
    );
    s
}

#[test]
fn state_assembles_a_config_that_compiles() {
    let s = full_state();
    let base = ProxyConfig {
        admin: Some(ringmesh_config::model::AdminSpec {
            address: "127.0.0.1:15000".into(),
        }),
        ..Default::default()
    };
    let cfg = s.to_proxy_config(&base);
    assert_eq!(cfg.admin, base.admin, "admin comes from the bootstrap");
    assert_eq!(cfg.listeners.len(), 1);
    assert_eq!(cfg.route_configs[0].name, "main");
    assert_eq!(
        cfg.clusters[0].endpoints,
        [EndpointSpec {
            address: "127.0.0.1:9000".into(),
            weight: 2
        }]
    );
    ringmesh_config::compile(&cfg, s.version()).expect("compiles");
    assert_eq!(
        s.wanted(ResourceType::RouteConfiguration),
        BTreeSet::from(["main".to_string()])
    );
    assert_eq!(
        s.wanted(ResourceType::ClusterLoadAssignment),
        BTreeSet::from(["web".to_string()])
    );
}

#[test]
fn warming_listener_is_left_out_until_its_route_arrives() {
    let mut s = full_state();
    s.remove(ResourceType::RouteConfiguration, "main");
    assert_eq!(s.warming_listeners(), ["in"]);
    assert!(s
        .to_proxy_config(&ProxyConfig::default())
        .listeners
        .is_empty());
}

#[test]
fn version_is_stable_and_follows_the_held_set() {
    let a = full_state();
    assert_eq!(a.version(), full_state().version());
    let mut b = full_state();
    let body = any(&cluster_of("web", DiscoveryType::Eds));
    b.apply(
        ResourceType::Cluster,
        "web",
        "v2",
        &body.type_url,
        &body.value,
    )
    .unwrap();
    assert_ne!(a.version(), b.version());
    // A rejected resource keeps the held version.
    let mut c = full_state();
    let dns = any(&cluster_of("web", DiscoveryType::StrictDns));
    assert!(c
        .apply(
            ResourceType::Cluster,
            "web",
            "v3",
            &dns.type_url,
            &dns.value
        )
        .is_err());
    assert_eq!(c, a);
}

#[test]
fn unreferenced_routes_and_assignments_are_dropped() {
    let mut s = full_state();
    s.remove(ResourceType::Listener, "in");
    s.remove(ResourceType::Cluster, "web");
    s.retain_wanted();
    assert!(s.versions(ResourceType::RouteConfiguration).is_empty());
    assert!(s.versions(ResourceType::ClusterLoadAssignment).is_empty());
}

#[test]
fn a_referenced_cluster_not_held_is_added_empty() {
    let mut s = full_state();
    s.remove(ResourceType::Cluster, "web");
    let cfg = s.to_proxy_config(&ProxyConfig::default());
    assert_eq!(cfg.clusters.len(), 1);
    assert_eq!(cfg.clusters[0].name, "web");
    assert!(cfg.clusters[0].endpoints.is_empty());
    ringmesh_config::compile(&cfg, 1).expect("compiles");
}

#[test]
fn cluster_resilience_settings() {
    use crate::wire::pb::envoy::{
        config::{
            cluster::v3::{circuit_breakers::Thresholds, CircuitBreakers, OutlierDetection},
            core::v3::RoutingPriority,
        },
        r#type::v3::Percent,
    };
    use ringmesh_config::model::{CircuitBreakersSpec, LbPolicySpec, OutlierDetectionSpec};
    let u = |v: u32| Some(UInt32Value { value: v });
    let mut c = cluster_of("r", DiscoveryType::Static);
    c.lb_policy = LbPolicy::Maglev as i32;
    c.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![
            Thresholds {
                priority: RoutingPriority::High as i32,
                max_requests: u(1),
                ..Default::default()
            },
            Thresholds {
                max_connections: u(10),
                max_requests: u(20),
                max_retries: u(3),
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    c.outlier_detection = Some(OutlierDetection {
        consecutive_gateway_failure: u(2),
        enforcing_consecutive_gateway_failure: u(100),
        enforcing_consecutive_5xx: u(0),
        base_ejection_time: Some(Duration {
            seconds: 2,
            nanos: 0,
        }),
        max_ejection_percent: u(50),
        ..Default::default()
    });
    c.common_lb_config = Some(
        crate::wire::pb::envoy::config::cluster::v3::cluster::CommonLbConfig {
            healthy_panic_threshold: Some(Percent { value: 0.0 }),
            ..Default::default()
        },
    );
    let Converted::Cluster(x) = conv(ResourceType::Cluster, "r", &c).unwrap() else {
        panic!("not a cluster")
    };
    assert_eq!(x.spec.lb_policy, LbPolicySpec::Maglev);
    assert_eq!(
        x.spec.circuit_breakers,
        Some(CircuitBreakersSpec {
            max_connections: Some(10),
            // Envoy's default for an unset DEFAULT threshold.
            max_pending_requests: Some(1024),
            max_requests: Some(20),
            max_retries: Some(3),
            retry_budget_percent: None,
            min_retry_concurrency: None,
        })
    );
    assert_eq!(
        x.spec.outlier_detection,
        Some(OutlierDetectionSpec {
            consecutive_5xx: None,
            consecutive_gateway_failure: Some(2),
            interval: None,
            base_ejection_time: Some("2s".into()),
            max_ejection_time: None,
            max_ejection_percent: Some(50),
        })
    );
    assert_eq!(x.spec.healthy_panic_threshold, Some(0));

    // Envoy's defaults for an empty outlier_detection: 5 consecutive 5xx.
    let mut d = cluster_of("d", DiscoveryType::Static);
    d.outlier_detection = Some(OutlierDetection::default());
    let Converted::Cluster(x) = conv(ResourceType::Cluster, "d", &d).unwrap() else {
        panic!("not a cluster")
    };
    let od = x.spec.outlier_detection.unwrap();
    assert_eq!(
        (od.consecutive_5xx, od.consecutive_gateway_failure),
        (Some(5), None)
    );

    let mut bad = cluster_of("b", DiscoveryType::Static);
    bad.outlier_detection = Some(OutlierDetection {
        max_ejection_percent: u(150),
        ..Default::default()
    });
    let t = err_text(ResourceType::Cluster, "b", &bad);
    assert!(t.contains("outlier_detection.max_ejection_percent"), "{t}");
}
