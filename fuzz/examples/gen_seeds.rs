//! Writes the binary seed corpora that cannot be typed by hand: Envoy xDS
//! resources (protobuf) for `xds_listener`, `xds_route` and `xds_cluster`,
//! and certificate requests for `csr_sign`. Each seed is a realistic
//! resource written out here field by field (Istio's names and shapes, plus
//! the shapes the proxy rejects), encoded with prost.
//!
//!     cd fuzz && cargo run --example gen_seeds
//!
//! Deterministic except for the ECDSA signatures of the CSR seeds. Existing
//! seeds of the same name are overwritten; others are left alone.

use std::{fs, path::Path};

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{
                cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy},
                Cluster,
            },
            core::v3::{
                address, socket_address::PortSpecifier, transport_socket, Address, HealthStatus,
                Pipe, SocketAddress, TransportSocket,
            },
            endpoint::v3::{
                lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
                LocalityLbEndpoints,
            },
            listener::v3::{filter, Filter, FilterChain, Listener, ListenerFilter},
            route::v3::{
                header_matcher::HeaderMatchSpecifier, query_parameter_matcher, route,
                route_action::ClusterSpecifier, route_match::PathSpecifier, weighted_cluster,
                HeaderMatcher, QueryParameterMatcher, RedirectAction, RetryPolicy, Route,
                RouteAction, RouteConfiguration, RouteMatch, Vhds, VirtualHost, WeightedCluster,
            },
        },
        extensions::filters::{
            http::router::v3::Router,
            network::{
                http_connection_manager::v3::{
                    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
                    HttpFilter, Rds,
                },
                tcp_proxy::v3::{tcp_proxy, TcpProxy},
            },
        },
        r#type::matcher::v3::{string_matcher::MatchPattern, RegexMatcher, StringMatcher},
    },
    google::protobuf::{Any, BoolValue, Duration, UInt32Value},
};
use prost::{Message, Name};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use ringmesh_xds_client::{translate::convert, ResourceType};

/// The `csr_sign` target's fixed request key (same PEM as in the target).
const REQUEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoFdB6V+Qz0L86j6x
PoMet3IK/easuYZ1ujBpQE0bQquhRANCAAQU8z4Fef1qaj6XezjpjZNgSn/tA5Eb
3mw2oGMegAgSIfH6lbPKZ6OQcj27IA0PpYdbWs0JWiNQNF2qAMumhkGq
-----END PRIVATE KEY-----
";

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("corpus directory");
        fs::write(dir.join(name), bytes).expect("seed written");
    };
    for (name, l) in listeners() {
        report(ResourceType::Listener, name, &l.encode_to_vec());
        write("xds_listener", name, &l.encode_to_vec());
    }
    for (name, rc) in route_configs() {
        report(ResourceType::RouteConfiguration, name, &rc.encode_to_vec());
        write("xds_route", name, &rc.encode_to_vec());
    }
    for (name, c, cla) in clusters() {
        report(ResourceType::Cluster, name, &c.encode_to_vec());
        report(
            ResourceType::ClusterLoadAssignment,
            name,
            &cla.encode_to_vec(),
        );
        let c = c.encode_to_vec();
        let mut seed = u16::try_from(c.len())
            .expect("a small cluster")
            .to_le_bytes()
            .to_vec();
        seed.extend_from_slice(&c);
        seed.extend_from_slice(&cla.encode_to_vec());
        write("xds_cluster", name, &seed);
    }
    for (name, seed) in csrs() {
        write("csr_sign", name, &seed);
    }
    control_plane_seeds(&root, &write);
}

/// What the control plane really sends: the registry seed mesh
/// (`corpus/registry_yaml/bookinfo-mesh.yaml`) translated for the
/// `reviews-v1-0` sidecar, a few resources of each type (`cp-` seeds).
fn control_plane_seeds(root: &Path, write: &dyn Fn(&str, &str, &[u8])) {
    use ringmesh_translate::{IdentitySource, Options, ProxyNode};
    let mesh = fs::read_to_string(root.join("registry_yaml/bookinfo-mesh.yaml"))
        .expect("the registry seed mesh");
    let state = ringmesh_registry::load_sources(
        [("bookinfo-mesh.yaml", mesh.as_str())],
        &ringmesh_registry::FileOptions::default(),
    );
    let w = state
        .workloads
        .iter()
        .find(|w| w.name == "reviews-v1-0")
        .expect("the reviews workload");
    let node = ProxyNode {
        namespace: w.namespace.clone(),
        ip: Some(w.address),
        labels: w.labels.clone(),
        workload_name: w.name.clone(),
        service_account: w.service_account.clone(),
        identity: IdentitySource::Csr,
        ..ProxyNode::default()
    };
    let opts = Options {
        trust_bundle_pem: "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n".into(),
        ..Options::default()
    };
    let resources = ringmesh_translate::translate(&state, &node, &opts);
    let file_name = |name: &str| {
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("cp-{clean}")
    };
    let of = |t: ResourceType| {
        resources
            .types()
            .find(|u| u.as_str() == t.type_url())
            .and_then(|u| resources.of_type(u))
            .into_iter()
            .flatten()
    };
    for (name, r) in of(ResourceType::Listener).take(6) {
        report(ResourceType::Listener, name, &r.body.value);
        write("xds_listener", &file_name(name), &r.body.value);
    }
    for (name, r) in of(ResourceType::RouteConfiguration).take(6) {
        report(ResourceType::RouteConfiguration, name, &r.body.value);
        write("xds_route", &file_name(name), &r.body.value);
    }
    let assignments: Vec<_> = of(ResourceType::ClusterLoadAssignment).collect();
    for (name, r) in of(ResourceType::Cluster).take(6) {
        report(ResourceType::Cluster, name, &r.body.value);
        let cla = assignments
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| a.body.value.clone())
            .unwrap_or_default();
        let mut seed = u16::try_from(r.body.value.len())
            .expect("a small cluster")
            .to_le_bytes()
            .to_vec();
        seed.extend_from_slice(&r.body.value);
        seed.extend_from_slice(&cla);
        write("xds_cluster", &file_name(name), &seed);
    }
}

/// Prints whether the proxy's xDS client accepts a seed (the `reject-`
/// seeds are meant to be rejected).
fn report(t: ResourceType, name: &str, bytes: &[u8]) {
    match convert(t, name, &t.type_url(), bytes) {
        Ok(_) => println!("{t:?} {name}: accepted"),
        Err(e) => println!("{t:?} {name}: rejected: {e}"),
    }
}

// ---- building blocks ----------------------------------------------------------------

fn any<M: Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
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

fn secs(seconds: i64) -> Duration {
    Duration { seconds, nanos: 0 }
}

fn router() -> HttpFilter {
    HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(
            any(&Router::default()),
        )),
        ..Default::default()
    }
}

fn listener(name: &str, address: Address, filter: Any) -> Listener {
    Listener {
        name: name.into(),
        address: Some(address),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(filter)),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn hcm(routes: RouteSpecifier) -> Any {
    any(&HttpConnectionManager {
        stat_prefix: "outbound_0.0.0.0_9080".into(),
        http_filters: vec![router()],
        route_specifier: Some(routes),
        ..Default::default()
    })
}

fn tcp(cluster: &str) -> Any {
    any(&TcpProxy {
        stat_prefix: cluster.into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.into())),
        ..Default::default()
    })
}

fn route_to(m: PathSpecifier, action: RouteAction) -> Route {
    Route {
        name: String::new(),
        r#match: Some(RouteMatch {
            path_specifier: Some(m),
            ..Default::default()
        }),
        action: Some(route::Action::Route(action)),
        ..Default::default()
    }
}

fn to_cluster(cluster: &str) -> RouteAction {
    RouteAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.into())),
        ..Default::default()
    }
}

fn split(weights: &[(&str, u32)]) -> RouteAction {
    RouteAction {
        cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: weights
                .iter()
                .map(|(name, w)| weighted_cluster::ClusterWeight {
                    name: (*name).into(),
                    weight: Some(UInt32Value { value: *w }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })),
        timeout: Some(secs(0)),
        ..Default::default()
    }
}

fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.into(),
        ..Default::default()
    }
}

fn header(name: &str, spec: HeaderMatchSpecifier) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

fn string(p: MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(p),
        ignore_case,
    }
}

// ---- LDS -------------------------------------------------------------------------------

fn listeners() -> Vec<(&'static str, Listener)> {
    let inline = RouteConfiguration {
        name: "inline".into(),
        virtual_hosts: vec![VirtualHost {
            name: "backend".into(),
            domains: vec!["*".into()],
            routes: vec![
                route_to(PathSpecifier::Prefix("/api/".into()), to_cluster("api")),
                route_to(PathSpecifier::Prefix("/".into()), to_cluster("backend")),
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut original_dst = listener(
        "virtualOutbound",
        addr("0.0.0.0", 15001),
        tcp("PassthroughCluster"),
    );
    original_dst.use_original_dst = Some(BoolValue { value: true });
    let mut two_chains = listener("0.0.0.0_9080", addr("0.0.0.0", 9080), tcp("a"));
    two_chains
        .filter_chains
        .push(two_chains.filter_chains[0].clone());
    let mut tls = listener("inbound_10.0.0.1_9080", addr("10.0.0.1", 9080), tcp("b"));
    tls.filter_chains[0].transport_socket = Some(TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(Any {
            type_url:
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
                    .into(),
            value: Vec::new(),
        })),
    });
    let mut sniffing = listener("virtualInbound", addr("0.0.0.0", 15006), tcp("c"));
    sniffing.listener_filters = vec![ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        ..Default::default()
    }];
    let pipe = Listener {
        address: Some(Address {
            address: Some(address::Address::Pipe(Pipe {
                path: "/tmp/envoy.sock".into(),
                mode: 0,
            })),
        }),
        ..listener("pipe", addr("127.0.0.1", 1), tcp("d"))
    };
    vec![
        (
            "rds-9080",
            listener(
                "0.0.0.0_9080",
                addr("0.0.0.0", 9080),
                hcm(RouteSpecifier::Rds(Rds {
                    route_config_name: "9080".into(),
                    config_source: None,
                })),
            ),
        ),
        (
            "inline-route",
            listener(
                "127.0.0.1_15080",
                addr("127.0.0.1", 15080),
                hcm(RouteSpecifier::RouteConfig(inline)),
            ),
        ),
        (
            "tcp-proxy-ipv6",
            listener(
                "[::]_3306",
                addr("::", 3306),
                tcp("outbound|3306||mysql.db.svc.cluster.local"),
            ),
        ),
        ("use-original-dst", original_dst),
        ("reject-two-filter-chains", two_chains),
        ("reject-transport-socket", tls),
        ("listener-filter-tls-inspector", sniffing),
        ("reject-pipe-address", pipe),
    ]
}

// ---- RDS -------------------------------------------------------------------------------

fn route_configs() -> Vec<(&'static str, RouteConfiguration)> {
    let reviews = RouteConfiguration {
        name: "9080".into(),
        virtual_hosts: vec![
            VirtualHost {
                name: "reviews.default.svc.cluster.local:9080".into(),
                domains: vec![
                    "reviews.default.svc.cluster.local".into(),
                    "reviews".into(),
                    "reviews.default".into(),
                    "10.96.0.12".into(),
                    "reviews.default.svc.cluster.local:9080".into(),
                ],
                routes: vec![
                    Route {
                        r#match: Some(RouteMatch {
                            path_specifier: Some(PathSpecifier::Prefix("/".into())),
                            headers: vec![header(
                                "end-user",
                                HeaderMatchSpecifier::StringMatch(string(
                                    MatchPattern::Exact("jason".into()),
                                    false,
                                )),
                            )],
                            ..Default::default()
                        }),
                        ..route_to(
                            PathSpecifier::Prefix("/".into()),
                            to_cluster("outbound|9080|v2|reviews.default.svc.cluster.local"),
                        )
                    },
                    route_to(
                        PathSpecifier::Prefix("/".into()),
                        split(&[
                            ("outbound|9080|v1|reviews.default.svc.cluster.local", 50),
                            ("outbound|9080|v3|reviews.default.svc.cluster.local", 50),
                        ]),
                    ),
                ],
                ..Default::default()
            },
            VirtualHost {
                name: "allow_any".into(),
                domains: vec!["*".into()],
                routes: vec![route_to(
                    PathSpecifier::Prefix("/".into()),
                    RouteAction {
                        timeout: Some(secs(0)),
                        ..to_cluster("PassthroughCluster")
                    },
                )],
                ..Default::default()
            },
        ],
        ..Default::default()
    };

    #[allow(deprecated)]
    let matchers = RouteConfiguration {
        name: "matchers".into(),
        virtual_hosts: vec![VirtualHost {
            name: "api".into(),
            domains: vec!["api.example.com".into(), "*.example.com".into(), "api.*".into()],
            routes: vec![
                route_to(
                    PathSpecifier::SafeRegex(regex("/api/v[0-9]+/users/[0-9]+")),
                    RouteAction {
                        timeout: Some(Duration {
                            seconds: 2,
                            nanos: 500_000_000,
                        }),
                        retry_policy: Some(RetryPolicy {
                            num_retries: Some(UInt32Value { value: 0 }),
                            ..Default::default()
                        }),
                        ..to_cluster("users")
                    },
                ),
                Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(PathSpecifier::Prefix("/Static/".into())),
                        case_sensitive: Some(BoolValue { value: false }),
                        headers: vec![
                            header(":method", HeaderMatchSpecifier::ExactMatch("GET".into())),
                            header("x-debug", HeaderMatchSpecifier::PresentMatch(false)),
                            HeaderMatcher {
                                invert_match: true,
                                treat_missing_header_as_empty: true,
                                ..header(
                                    "user-agent",
                                    HeaderMatchSpecifier::SafeRegexMatch(regex(".*[Bb]ot.*")),
                                )
                            },
                            header("x-any", HeaderMatchSpecifier::ExactMatch(String::new())),
                            header("x-p", HeaderMatchSpecifier::PrefixMatch("v".into())),
                            header(
                                "cookie",
                                HeaderMatchSpecifier::StringMatch(string(
                                    MatchPattern::Contains("SESSION=".into()),
                                    true,
                                )),
                            ),
                        ],
                        query_parameters: vec![
                            QueryParameterMatcher {
                                name: "lang".into(),
                                query_parameter_match_specifier: Some(
                                    query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                                        string(MatchPattern::Suffix("en".into()), true),
                                    ),
                                ),
                            },
                            QueryParameterMatcher {
                                name: "debug".into(),
                                query_parameter_match_specifier: None,
                            },
                        ],
                        ..Default::default()
                    }),
                    ..route_to(
                        PathSpecifier::Prefix("/Static/".into()),
                        split(&[("static-a", 3), ("static-b", 1), ("static-c", 0)]),
                    )
                },
                route_to(PathSpecifier::Path("/healthz".into()), to_cluster("health")),
            ],
            ..Default::default()
        }],
        ..Default::default()
    };

    let redirect = RouteConfiguration {
        name: "redirect".into(),
        virtual_hosts: vec![VirtualHost {
            name: "http".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::Action::Redirect(RedirectAction {
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };

    let vhds = RouteConfiguration {
        name: "vhds".into(),
        vhds: Some(Vhds::default()),
        ..Default::default()
    };

    let bad_regex = RouteConfiguration {
        name: "bad-regex".into(),
        virtual_hosts: vec![VirtualHost {
            name: "x".into(),
            domains: vec!["x".into(), "X".into()],
            routes: vec![route_to(
                PathSpecifier::SafeRegex(regex("/(unclosed")),
                to_cluster("x"),
            )],
            ..Default::default()
        }],
        ..Default::default()
    };

    let duplicate_domains = RouteConfiguration {
        name: "dup".into(),
        virtual_hosts: vec![
            VirtualHost {
                name: "a".into(),
                domains: vec!["example.com".into()],
                routes: vec![route_to(PathSpecifier::Prefix("/".into()), to_cluster("a"))],
                ..Default::default()
            },
            VirtualHost {
                name: "b".into(),
                domains: vec!["Example.com".into(), "*".into()],
                routes: vec![route_to(
                    PathSpecifier::Prefix("no-slash".into()),
                    to_cluster("b"),
                )],
                ..Default::default()
            },
        ],
        ..Default::default()
    };

    vec![
        ("reviews-9080", reviews),
        ("matchers", matchers),
        ("reject-redirect", redirect),
        ("reject-vhds", vhds),
        ("reject-bad-regex", bad_regex),
        ("compile-duplicate-domains", duplicate_domains),
    ]
}

// ---- CDS + EDS -------------------------------------------------------------------------

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

fn cla(name: &str, priority: u32, eps: Vec<LbEndpoint>) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: eps,
            priority,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn cluster_of(name: &str, t: DiscoveryType, lb_policy: LbPolicy) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(t as i32)),
        lb_policy: lb_policy as i32,
        connect_timeout: Some(Duration {
            seconds: 10,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn clusters() -> Vec<(&'static str, Cluster, ClusterLoadAssignment)> {
    let reviews = "outbound|9080|v1|reviews.default.svc.cluster.local";
    let eds = Cluster {
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: None,
            service_name: reviews.into(),
        }),
        ..cluster_of(reviews, DiscoveryType::Eds, LbPolicy::RoundRobin)
    };
    let eds_cla = cla(
        reviews,
        0,
        vec![
            lb("10.244.1.7", 9080, Some(1), HealthStatus::Healthy),
            lb("10.244.2.9", 9080, Some(3), HealthStatus::Unknown),
            lb("10.244.3.2", 9080, None, HealthStatus::Unhealthy),
            lb("fd00::12", 9080, Some(2), HealthStatus::Draining),
        ],
    );
    let static_cluster = Cluster {
        load_assignment: Some(cla(
            "backend",
            0,
            vec![
                lb("127.0.0.1", 18080, None, HealthStatus::Unknown),
                lb("::1", 18080, Some(5), HealthStatus::Healthy),
            ],
        )),
        ..cluster_of("backend", DiscoveryType::Static, LbPolicy::RoundRobin)
    };
    let passthrough = Cluster {
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 250_000_000,
        }),
        ..cluster_of(
            "PassthroughCluster",
            DiscoveryType::OriginalDst,
            LbPolicy::ClusterProvided,
        )
    };
    let own_name = cluster_of(
        "outbound|3306||mysql",
        DiscoveryType::Eds,
        LbPolicy::RoundRobin,
    );
    let strict_dns = cluster_of(
        "outbound|443||api.example.com",
        DiscoveryType::StrictDns,
        LbPolicy::RoundRobin,
    );
    let ring_hash = cluster_of("ring", DiscoveryType::Eds, LbPolicy::RingHash);
    let mtls = Cluster {
        transport_socket: Some(TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: None,
        }),
        ..cluster_of(
            "outbound|9080||ratings",
            DiscoveryType::Eds,
            LbPolicy::RoundRobin,
        )
    };
    vec![
        ("eds-with-assignment", eds, eds_cla),
        (
            "static-with-empty-assignment",
            static_cluster,
            ClusterLoadAssignment::default(),
        ),
        (
            "original-dst",
            passthrough,
            cla(
                "x",
                0,
                vec![lb("0.0.0.0", 0, Some(0), HealthStatus::Healthy)],
            ),
        ),
        (
            "eds-own-name-priority-1",
            own_name,
            cla(
                "outbound|3306||mysql",
                1,
                vec![lb("10.0.0.5", 3306, None, HealthStatus::Healthy)],
            ),
        ),
        (
            "reject-strict-dns",
            strict_dns,
            cla(
                "dns",
                0,
                vec![lb("not-an-ip", 443, None, HealthStatus::Healthy)],
            ),
        ),
        (
            "reject-ring-hash",
            ring_hash,
            ClusterLoadAssignment::default(),
        ),
        (
            "reject-transport-socket",
            mtls,
            cla(
                "outbound|9080||ratings",
                0,
                vec![lb("10.244.0.3", 70000, None, HealthStatus::Healthy)],
            ),
        ),
    ]
}

// ---- CSRs ------------------------------------------------------------------------------

/// `[mode, knobs, request]` seeds for `csr_sign`: mode 0 DER, 1 PEM, 2 the
/// `CertificationRequestInfo` alone (re-signed by the target).
fn csrs() -> Vec<(&'static str, Vec<u8>)> {
    let key = KeyPair::from_pem(REQUEST_KEY_PEM).expect("the fixed key");
    let identity = "spiffe://fuzz.test/ns/default/sa/fuzz";

    let plain = {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = vec![SanType::URI(identity.try_into().expect("a URI"))];
        p.serialize_request(&key).expect("a CSR")
    };
    let greedy = {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "reviews.default.svc");
        dn.push(DnType::OrganizationName, "fuzz.test");
        p.distinguished_name = dn;
        p.subject_alt_names = vec![
            SanType::URI(
                "spiffe://fuzz.test/ns/kube-system/sa/admin"
                    .try_into()
                    .expect("a URI"),
            ),
            SanType::DnsName(
                "reviews.default.svc.cluster.local"
                    .try_into()
                    .expect("a name"),
            ),
            SanType::IpAddress("10.0.0.1".parse().expect("an IP")),
            SanType::Rfc822Name("a@example.com".try_into().expect("a mail")),
        ];
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::ContentCommitment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::CodeSigning,
        ];
        p.serialize_request(&key).expect("a CSR")
    };
    let bare = CertificateParams::default()
        .serialize_request(&key)
        .expect("a CSR");

    let seed = |mode: u8, knobs: u8, body: &[u8]| {
        let mut s = vec![mode, knobs];
        s.extend_from_slice(body);
        s
    };
    let info = |der: &[u8]| first_element(der).to_vec();
    vec![
        ("der-spiffe", seed(0, 0, plain.der())),
        (
            "pem-spiffe",
            seed(1, 1, plain.pem().expect("PEM").as_bytes()),
        ),
        (
            "pem-greedy",
            seed(1, 2, greedy.pem().expect("PEM").as_bytes()),
        ),
        ("der-wrong-trust-domain", seed(0, 0x80, plain.der())),
        ("der-zero-ttl", seed(0, 5, plain.der())),
        ("info-spiffe", seed(2, 0, &info(plain.der()))),
        ("info-greedy", seed(2, 3, &info(greedy.der()))),
        ("info-bare", seed(2, 4, &info(bare.der()))),
    ]
}

/// The first element (tag, length and value) inside a DER SEQUENCE.
fn first_element(der: &[u8]) -> &[u8] {
    let (_, inner) = split_tlv(der);
    let (whole, _) = split_tlv(inner);
    whole
}

/// `(the whole TLV, its value)` at the start of `der`.
fn split_tlv(der: &[u8]) -> (&[u8], &[u8]) {
    let first = der[1];
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        (len, 2 + n)
    };
    (&der[..header + len], &der[header..header + len])
}
