//! Route matching beyond prefix/path (regex paths, header and query
//! matchers) and weighted clusters, from Envoy v3 resources.

use ringmesh_config::model::{HeaderMatchSpec, QueryParameterMatchSpec, WeightedClusterSpec};

use super::*;
use crate::wire::pb::{
    envoy::{
        config::{
            core::v3::{HeaderValue, HeaderValueOption, Metadata},
            route::v3::{
                header_matcher::HeaderMatchSpecifier as H,
                query_parameter_matcher::QueryParameterMatchSpecifier as Q,
                route_match,
                weighted_cluster::{self, ClusterWeight},
                CookieMatcher, QueryParameterMatcher, RetryPolicy, WeightedCluster,
            },
        },
        r#type::matcher::v3::{
            regex_matcher::{EngineType, GoogleRe2},
            string_matcher::MatchPattern,
            RegexMatcher, StringMatcher,
        },
    },
    google::protobuf::UInt32Value,
};

/// With the (deprecated) engine type Istio still sets.
#[allow(deprecated)]
fn re(pattern: &str) -> RegexMatcher {
    RegexMatcher {
        regex: pattern.into(),
        engine_type: Some(EngineType::GoogleRe2(GoogleRe2 {
            max_program_size: None,
        })),
    }
}

fn sm(p: MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        ignore_case,
        match_pattern: Some(p),
    }
}

/// A route configuration with one route `/` → `c` whose match is changed
/// by `edit`.
fn one_route(edit: impl FnOnce(&mut RouteMatch)) -> RouteConfiguration {
    let mut rc = route_config(
        "rc",
        vec![route(PathSpecifier::Prefix("/".into()), "c", None)],
    );
    edit(rc.virtual_hosts[0].routes[0].r#match.as_mut().unwrap());
    rc
}

fn with_action(edit: impl FnOnce(&mut RouteAction)) -> RouteConfiguration {
    let mut rc = route_config(
        "rc",
        vec![route(PathSpecifier::Prefix("/".into()), "c", None)],
    );
    let Some(route::Action::Route(a)) = &mut rc.virtual_hosts[0].routes[0].action else {
        unreachable!()
    };
    edit(a);
    rc
}

fn converted(rc: &RouteConfiguration) -> RouteSpec {
    let Converted::Route(r) =
        conv(ResourceType::RouteConfiguration, "rc", rc).unwrap_or_else(|e| panic!("{e}"))
    else {
        panic!()
    };
    r.virtual_hosts[0].routes[0].clone()
}

fn rejected(rc: &RouteConfiguration) -> String {
    err_text(ResourceType::RouteConfiguration, "rc", rc)
}

fn header(name: &str, spec: Option<H>) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: spec,
        ..Default::default()
    }
}

#[test]
fn safe_regex_path() {
    let r = converted(&one_route(|m| {
        m.path_specifier = Some(PathSpecifier::SafeRegex(re("/reviews/[0-9]+")))
    }));
    assert_eq!(
        r.matcher,
        RouteMatchSpec {
            regex: Some("/reviews/[0-9]+".into()),
            ..Default::default()
        }
    );
    assert_eq!(
        rejected(&one_route(|m| {
            m.path_specifier = Some(PathSpecifier::SafeRegex(re("/v[")))
        })),
        "RouteConfiguration \"rc\": virtual_hosts[0].routes[0].match.safe_regex.regex: invalid regex \"/v[\": unclosed character class"
    );
}

#[test]
#[allow(deprecated)]
fn header_matchers_in_every_form() {
    let r = converted(&one_route(|m| {
        m.headers = vec![
            header(
                "end-user",
                Some(H::StringMatch(sm(
                    MatchPattern::Exact("jason".into()),
                    false,
                ))),
            ),
            header(
                "a",
                Some(H::StringMatch(sm(MatchPattern::Prefix("p".into()), true))),
            ),
            header(
                "b",
                Some(H::StringMatch(sm(MatchPattern::Suffix("s".into()), false))),
            ),
            header(
                "c",
                Some(H::StringMatch(sm(
                    MatchPattern::Contains("c".into()),
                    false,
                ))),
            ),
            // ignore_case has no effect on a regex in Envoy: dropped.
            header(
                "d",
                Some(H::StringMatch(sm(MatchPattern::SafeRegex(re("d+")), true))),
            ),
            header("e", Some(H::ExactMatch("x".into()))),
            header("f", Some(H::PrefixMatch("x".into()))),
            header("g", Some(H::SuffixMatch("x".into()))),
            header("h", Some(H::ContainsMatch("x".into()))),
            header("i", Some(H::SafeRegexMatch(re("x|y")))),
            header("j", Some(H::PresentMatch(false))),
            HeaderMatcher {
                invert_match: true,
                treat_missing_header_as_empty: true,
                ..header(":method", Some(H::ExactMatch("GET".into())))
            },
            // No rule: a presence check, as in Envoy.
            header("k", None),
            // The deprecated empty exact_match accepts any value.
            header("l", Some(H::ExactMatch(String::new()))),
        ];
    }));
    let h = |name: &str| HeaderMatchSpec {
        name: name.into(),
        ..Default::default()
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        r.matcher.headers,
        [
            HeaderMatchSpec {
                exact: s("jason"),
                ..h("end-user")
            },
            HeaderMatchSpec {
                prefix: s("p"),
                ignore_case: true,
                ..h("a")
            },
            HeaderMatchSpec {
                suffix: s("s"),
                ..h("b")
            },
            HeaderMatchSpec {
                contains: s("c"),
                ..h("c")
            },
            HeaderMatchSpec {
                regex: s("d+"),
                ..h("d")
            },
            HeaderMatchSpec {
                exact: s("x"),
                ..h("e")
            },
            HeaderMatchSpec {
                prefix: s("x"),
                ..h("f")
            },
            HeaderMatchSpec {
                suffix: s("x"),
                ..h("g")
            },
            HeaderMatchSpec {
                contains: s("x"),
                ..h("h")
            },
            HeaderMatchSpec {
                regex: s("x|y"),
                ..h("i")
            },
            HeaderMatchSpec {
                present: Some(false),
                ..h("j")
            },
            HeaderMatchSpec {
                exact: s("GET"),
                invert: true,
                treat_missing_as_empty: true,
                ..h(":method")
            },
            HeaderMatchSpec {
                present: Some(true),
                ..h("k")
            },
            HeaderMatchSpec {
                regex: s("(?s).*"),
                ..h("l")
            },
        ]
    );
    // Every one of them compiles in the proxy's model.
    let cfg = ProxyConfig {
        route_configs: vec![RouteConfigSpec {
            name: "rc".into(),
            virtual_hosts: vec![VirtualHostSpec {
                name: "v".into(),
                domains: vec!["*".into()],
                routes: vec![r],
            }],
        }],
        clusters: vec![ClusterSpec {
            name: "c".into(),
            cluster_type: ClusterTypeSpec::Static,
            connect_timeout: None,
            lb_policy: LbPolicySpec::RoundRobin,
            endpoints: vec![],
            tls: None,
            protocol: Default::default(),
            circuit_breakers: None,
            outlier_detection: None,
            healthy_panic_threshold: None,
        }],
        ..Default::default()
    };
    ringmesh_config::compile(&cfg, 1).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn header_matcher_rejections() {
    let with = |m: HeaderMatcher| rejected(&one_route(|r| r.headers = vec![header("ok", None), m]));
    assert_eq!(
        with(header("x", Some(H::StringMatch(StringMatcher::default())))),
        "RouteConfiguration \"rc\": virtual_hosts[0].routes[0].match.headers[1].string_match: missing match pattern"
    );
    assert_eq!(
        with(header(
            "x",
            Some(H::StringMatch(sm(MatchPattern::Custom(Default::default()), false)))
        )),
        "RouteConfiguration \"rc\": virtual_hosts[0].routes[0].match.headers[1].string_match.custom: custom string matchers are not supported"
    );
    #[allow(deprecated)]
    let bad = header("x", Some(H::SafeRegexMatch(re("("))));
    assert_eq!(
        with(bad),
        "RouteConfiguration \"rc\": virtual_hosts[0].routes[0].match.headers[1].safe_regex_match.regex: invalid regex \"(\": unclosed group"
    );
    assert_eq!(
        with(header(
            "x",
            Some(H::StringMatch(sm(MatchPattern::SafeRegex(re("a{2,1}")), false)))
        )),
        "RouteConfiguration \"rc\": virtual_hosts[0].routes[0].match.headers[1].string_match.safe_regex.regex: invalid regex \"a{2,1}\": invalid repetition count range, the start must be <= the end"
    );
}

#[test]
fn query_parameter_matchers() {
    let q = |name: &str, spec: Option<Q>| QueryParameterMatcher {
        name: name.into(),
        query_parameter_match_specifier: spec,
    };
    let r = converted(&one_route(|m| {
        m.query_parameters = vec![
            q(
                "debug",
                Some(Q::StringMatch(sm(MatchPattern::Exact("1".into()), false))),
            ),
            q(
                "v",
                Some(Q::StringMatch(sm(
                    MatchPattern::SafeRegex(re("[0-9]+")),
                    false,
                ))),
            ),
            q(
                "p",
                Some(Q::StringMatch(sm(MatchPattern::Prefix("a".into()), true))),
            ),
            q("on", Some(Q::PresentMatch(true))),
            q("off", Some(Q::PresentMatch(false))),
            q("bare", None),
        ];
    }));
    let p = |name: &str| QueryParameterMatchSpec {
        name: name.into(),
        ..Default::default()
    };
    assert_eq!(
        r.matcher.query_parameters,
        [
            QueryParameterMatchSpec {
                exact: Some("1".into()),
                ..p("debug")
            },
            QueryParameterMatchSpec {
                regex: Some("[0-9]+".into()),
                ..p("v")
            },
            QueryParameterMatchSpec {
                prefix: Some("a".into()),
                ignore_case: true,
                ..p("p")
            },
            QueryParameterMatchSpec {
                present: Some(true),
                ..p("on")
            },
            QueryParameterMatchSpec {
                present: Some(false),
                ..p("off")
            },
            QueryParameterMatchSpec {
                present: Some(true),
                ..p("bare")
            },
        ]
    );
}

#[test]
fn unsupported_match_fields_are_named() {
    let cases: Vec<(RouteConfiguration, &str)> = vec![
        (
            one_route(|m| m.cookies = vec![CookieMatcher::default()]),
            "match.cookies: cookie matches are not supported",
        ),
        (
            one_route(|m| m.grpc = Some(Default::default())),
            "match.grpc: gRPC request matching is not supported",
        ),
        (
            one_route(|m| m.runtime_fraction = Some(Default::default())),
            "match.runtime_fraction: runtime fractions are not supported",
        ),
        (
            one_route(|m| m.dynamic_metadata = vec![Default::default()]),
            "match.dynamic_metadata: dynamic metadata matches are not supported",
        ),
        (
            one_route(|m| m.path_specifier = Some(PathSpecifier::PathSeparatedPrefix("/a".into()))),
            "match.path_separated_prefix: not supported (use prefix, path or safe_regex)",
        ),
        (
            one_route(|m| {
                m.path_specifier = Some(PathSpecifier::ConnectMatcher(
                    route_match::ConnectMatcher::default(),
                ))
            }),
            "match.connect_matcher: CONNECT requests are not routed",
        ),
    ];
    for (rc, want) in cases {
        assert_eq!(
            rejected(&rc),
            format!("RouteConfiguration \"rc\": virtual_hosts[0].routes[0].{want}")
        );
    }
}

#[test]
fn case_insensitive_paths() {
    let r = converted(&one_route(|m| {
        m.case_sensitive = Some(BoolValue { value: false })
    }));
    assert_eq!(
        r.matcher,
        RouteMatchSpec {
            prefix: Some("/".into()),
            ignore_case: true,
            ..Default::default()
        }
    );
    // Said explicitly, case-sensitive is the default.
    let r = converted(&one_route(|m| {
        m.case_sensitive = Some(BoolValue { value: true })
    }));
    assert!(!r.matcher.ignore_case);
    // Envoy ignores it for a regex.
    let r = converted(&one_route(|m| {
        m.case_sensitive = Some(BoolValue { value: false });
        m.path_specifier = Some(PathSpecifier::SafeRegex(re("/A")));
    }));
    assert!(!r.matcher.ignore_case);
    assert_eq!(r.matcher.regex.as_deref(), Some("/A"));
}

fn cw(name: &str, weight: Option<u32>) -> ClusterWeight {
    ClusterWeight {
        name: name.into(),
        weight: weight.map(|value| UInt32Value { value }),
        ..Default::default()
    }
}

fn split(clusters: Vec<ClusterWeight>) -> WeightedCluster {
    WeightedCluster {
        clusters,
        ..Default::default()
    }
}

fn weighted(w: WeightedCluster) -> RouteConfiguration {
    with_action(|a| a.cluster_specifier = Some(route_action::ClusterSpecifier::WeightedClusters(w)))
}

#[test]
fn weighted_clusters_keep_names_and_weights() {
    let mut w = split(vec![
        cw("reviews-v1", Some(90)),
        cw("reviews-v2", Some(10)),
        cw("reviews-v3", None),
    ]);
    w.runtime_key_prefix = "routing.traffic_split.reviews".into();
    let r = converted(&weighted(w.clone()));
    assert_eq!(r.cluster, None);
    assert_eq!(
        r.weighted_clusters.as_deref(),
        Some(
            &[
                WeightedClusterSpec {
                    cluster: "reviews-v1".into(),
                    weight: 90
                },
                WeightedClusterSpec {
                    cluster: "reviews-v2".into(),
                    weight: 10
                },
                WeightedClusterSpec {
                    cluster: "reviews-v3".into(),
                    weight: 0
                },
            ][..]
        )
    );
    // total_weight (deprecated): honoured when it is the sum.
    #[allow(deprecated)]
    {
        w.total_weight = Some(UInt32Value { value: 100 });
        converted(&weighted(w.clone()));
        w.total_weight = Some(UInt32Value { value: 0 });
        converted(&weighted(w.clone()));
        w.total_weight = Some(UInt32Value { value: 1000 });
    }
    assert_eq!(
        rejected(&weighted(w)),
        "RouteConfiguration \"rc\": virtual_hosts[0].routes[0].route.weighted_clusters.total_weight: the weights add up to 100, not to total_weight 1000"
    );
}

#[test]
fn weighted_cluster_rejections() {
    let at = "RouteConfiguration \"rc\": virtual_hosts[0].routes[0].route.weighted_clusters";
    let header_op = HeaderValueOption {
        header: Some(HeaderValue {
            key: "x".into(),
            value: "1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let per_cluster: Vec<(ClusterWeight, &str)> = vec![
        (
            ClusterWeight {
                request_headers_to_add: vec![header_op.clone()],
                ..cw("a", Some(1))
            },
            "clusters[0].request_headers_to_add: per-cluster header changes are not supported",
        ),
        (
            ClusterWeight {
                response_headers_to_remove: vec!["x".into()],
                ..cw("a", Some(1))
            },
            "clusters[0].response_headers_to_remove: per-cluster header changes are not supported",
        ),
        (
            ClusterWeight {
                metadata_match: Some(Metadata::default()),
                ..cw("a", Some(1))
            },
            "clusters[0].metadata_match: subset load balancing is not supported",
        ),
        (
            ClusterWeight {
                cluster_header: "x-cluster".into(),
                ..cw("", Some(1))
            },
            "clusters[0].cluster_header: clusters named by a request header are not supported",
        ),
        (
            ClusterWeight {
                host_rewrite_specifier: Some(
                    weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(
                        "h".into(),
                    ),
                ),
                ..cw("a", Some(1))
            },
            "clusters[0].host_rewrite_literal: host rewrites are not supported",
        ),
        (cw("", Some(1)), "clusters[0].name: missing"),
    ];
    for (c, want) in per_cluster {
        assert_eq!(rejected(&weighted(split(vec![c]))), format!("{at}.{want}"));
    }
    assert_eq!(
        rejected(&weighted(split(vec![]))),
        format!("{at}.clusters: must not be empty")
    );
    assert_eq!(
        rejected(&weighted(split(vec![cw("a", Some(0)), cw("b", None)]))),
        format!("{at}.clusters: the weights must add up to more than 0")
    );
    assert_eq!(
        rejected(&weighted(split(vec![
            cw("a", Some(u32::MAX)),
            cw("b", Some(1))
        ]))),
        format!("{at}.clusters: the sum of the weights must not exceed 4294967295")
    );
    let mut by_header = split(vec![cw("a", Some(1))]);
    by_header.random_value_specifier = Some(weighted_cluster::RandomValueSpecifier::HeaderName(
        "x-random".into(),
    ));
    assert_eq!(
        rejected(&weighted(by_header)),
        format!("{at}.header_name: a random value from a request header is not supported")
    );
}

#[test]
fn retry_policies_convert() {
    use crate::wire::pb::envoy::config::route::v3::retry_policy::RetryBackOff;
    // num_retries: 0 allows no retry: no policy.
    let none = converted(&with_action(|a| {
        a.retry_policy = Some(RetryPolicy {
            num_retries: Some(UInt32Value { value: 0 }),
            ..Default::default()
        })
    }));
    assert_eq!(none.retry_policy, None);
    // Istio's default shape; num_retries defaults to Envoy's 1.
    let r = converted(&with_action(|a| {
        a.retry_policy = Some(RetryPolicy {
            retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
                .into(),
            retriable_status_codes: vec![503],
            per_try_timeout: Some(Duration {
                seconds: 0,
                nanos: 500_000_000,
            }),
            retry_back_off: Some(RetryBackOff {
                base_interval: Some(Duration {
                    seconds: 0,
                    nanos: 10_000_000,
                }),
                max_interval: None,
            }),
            ..Default::default()
        })
    }))
    .retry_policy
    .expect("a policy");
    assert_eq!(r.num_retries, Some(1));
    assert_eq!(r.retriable_status_codes, vec![503]);
    assert_eq!(r.per_try_timeout.as_deref(), Some("500ms"));
    assert_eq!(r.backoff_base.as_deref(), Some("10ms"));
    // What we cannot honour is refused, naming the field.
    let t = rejected(&with_action(|a| {
        a.retry_policy = Some(RetryPolicy {
            retry_on: "5xx".into(),
            retriable_status_codes: vec![42],
            ..Default::default()
        })
    }));
    assert!(t.contains("retry_policy.retriable_status_codes"), "{t}");
}

#[test]
fn a_weighted_route_compiles_and_its_clusters_are_referenced() {
    let mut s = full_state();
    let mut rc = route_config(
        "main",
        vec![route(PathSpecifier::Prefix("/".into()), "web", None)],
    );
    let r = &mut rc.virtual_hosts[0].routes[0];
    r.r#match.as_mut().unwrap().headers = vec![header(
        "end-user",
        Some(H::StringMatch(sm(
            MatchPattern::Exact("jason".into()),
            false,
        ))),
    )];
    let Some(route::Action::Route(a)) = &mut r.action else {
        unreachable!()
    };
    a.cluster_specifier = Some(route_action::ClusterSpecifier::WeightedClusters(split(
        vec![cw("web", Some(90)), cw("canary", Some(10))],
    )));
    let body = any(&rc);
    s.apply(
        ResourceType::RouteConfiguration,
        "main",
        "v2",
        &body.type_url,
        &body.value,
    )
    .unwrap();
    let cfg = s.to_proxy_config(&ProxyConfig::default());
    // "canary" is not held: added empty (503 until CDS sends it), so the
    // configuration still compiles.
    assert_eq!(
        cfg.clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["web", "canary"]
    );
    let snap = ringmesh_config::compile(&cfg, s.version()).unwrap_or_else(|e| panic!("{e}"));
    let ringmesh_config::ListenerKind::Http { routes } = &snap.listeners[0].kind else {
        panic!()
    };
    let lines = [("End-User", "jason")];
    let req = ringmesh_route::Request::new(b"example.com", b"/x").with_headers(&lines);
    let route = routes
        .route_request(&req)
        .expect("the header route matches");
    let ringmesh_route::Destination::Weighted(w) = &route.action.destination else {
        panic!()
    };
    assert_eq!(w.total_weight(), 100);
    assert!(routes.route(b"example.com", b"/x").is_none());
}

/// The upstream protocol: explicit HTTP/2 in the cluster's
/// `HttpProtocolOptions` (as Istio writes for gRPC and `http2` ports) or
/// the deprecated `http2_protocol_options` → `http2`; downstream-follows
/// and auto configs, or nothing, → `http1`.
#[test]
fn cluster_upstream_protocol() {
    use crate::wire::pb::envoy::{
        config::core::v3::{Http1ProtocolOptions, Http2ProtocolOptions},
        extensions::upstreams::http::v3::{
            http_protocol_options::{
                explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
                UseDownstreamHttpConfig,
            },
            HttpProtocolOptions,
        },
    };
    use ringmesh_config::model::UpstreamProtocolSpec;
    let protocol = |opts: Option<UpstreamProtocolOptions>| {
        let mut c = cluster_of("c", DiscoveryType::Eds);
        if let Some(o) = opts {
            c.typed_extension_protocol_options.insert(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
                any(&HttpProtocolOptions {
                    upstream_protocol_options: Some(o),
                    ..Default::default()
                }),
            );
        }
        let Converted::Cluster(c) = conv(ResourceType::Cluster, "c", &c).unwrap() else {
            panic!()
        };
        c.spec.protocol
    };
    assert_eq!(protocol(None), UpstreamProtocolSpec::Http1);
    let explicit = |p| {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(p),
            },
        ))
    };
    assert_eq!(
        protocol(explicit(ProtocolConfig::Http2ProtocolOptions(
            Http2ProtocolOptions::default()
        ))),
        UpstreamProtocolSpec::Http2
    );
    assert_eq!(
        protocol(explicit(ProtocolConfig::HttpProtocolOptions(
            Http1ProtocolOptions::default()
        ))),
        UpstreamProtocolSpec::Http1
    );
    assert_eq!(
        protocol(Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            UseDownstreamHttpConfig::default()
        ))),
        UpstreamProtocolSpec::Http1
    );
    let mut c = cluster_of("c", DiscoveryType::Eds);
    #[allow(deprecated)]
    {
        c.http2_protocol_options = Some(Http2ProtocolOptions::default());
    }
    let Converted::Cluster(c) = conv(ResourceType::Cluster, "c", &c).unwrap() else {
        panic!()
    };
    assert_eq!(c.spec.protocol, UpstreamProtocolSpec::Http2);
}
