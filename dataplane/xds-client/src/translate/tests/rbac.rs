//! Envoy RBAC filters (HTTP and network) and the connection manager's
//! path normalization → the model's `rbac:` and `path_normalization`,
//! then compiled and evaluated; and the NACK of everything unsupported.

use std::collections::HashMap;

use ringmesh_config::model::{
    AuthenticatedSpec, EscapedSlashesSpec, PathNormalizationSpec, PermissionSetSpec,
    PermissionSpec, PolicySpec, PrincipalSetSpec, PrincipalSpec, RbacAction, RbacFilterSpec,
    RbacRulesSpec, StringMatchSpec,
};

use super::*;
use crate::wire::pb::envoy::{
    config::{
        core::v3::{CidrRange, TypedExtensionConfig},
        rbac::v3::{self as rbac, permission::Rule, principal::Identifier},
    },
    extensions::filters::{
        http::{rbac::v3::Rbac as HttpRbac, router::v3::Router},
        network::{
            http_connection_manager::v3::{
                http_connection_manager::PathWithEscapedSlashesAction, http_filter, HttpFilter,
            },
            rbac::v3::Rbac as NetworkRbac,
        },
    },
    r#type::matcher::v3::{path_matcher, string_matcher::MatchPattern, PathMatcher, StringMatcher},
};

fn exact(s: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::Exact(s.into())),
        ignore_case: false,
    }
}

fn perm(rule: Rule) -> rbac::Permission {
    rbac::Permission { rule: Some(rule) }
}

fn princ(id: Identifier) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(id),
    }
}

fn policy(permissions: Vec<rbac::Permission>, principals: Vec<rbac::Principal>) -> rbac::Policy {
    rbac::Policy {
        permissions,
        principals,
        ..Default::default()
    }
}

fn rules(action: rbac::rbac::Action, policies: Vec<(&str, rbac::Policy)>) -> rbac::Rbac {
    rbac::Rbac {
        action: action as i32,
        policies: policies
            .into_iter()
            .map(|(n, p)| (n.to_owned(), p))
            .collect::<HashMap<_, _>>(),
        audit_logging_options: None,
    }
}

/// Istio's "only the frontend may POST /api/v1/charge".
fn charge_policy() -> rbac::Policy {
    policy(
        vec![perm(Rule::AndRules(rbac::permission::Set {
            rules: vec![
                perm(Rule::Header(HeaderMatcher {
                    name: ":method".into(),
                    header_match_specifier: Some(
                        crate::wire::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier::StringMatch(exact("POST")),
                    ),
                    ..Default::default()
                })),
                perm(Rule::UrlPath(PathMatcher {
                    rule: Some(path_matcher::Rule::Path(exact("/api/v1/charge"))),
                })),
            ],
        }))],
        vec![princ(Identifier::AndIds(rbac::principal::Set {
            ids: vec![princ(Identifier::Authenticated(
                rbac::principal::Authenticated {
                    principal_name: Some(exact(
                        "spiffe://cluster.local/ns/default/sa/frontend",
                    )),
                },
            ))],
        }))],
    )
}

fn http_rbac_filter(name: &str, cfg: &HttpRbac) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(cfg))),
        ..Default::default()
    }
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

fn inline_routes() -> RouteSpecifier {
    RouteSpecifier::RouteConfig(route_config(
        "local",
        vec![route(PathSpecifier::Prefix("/".into()), "app", None)],
    ))
}

fn hcm_with(filters: Vec<HttpFilter>, f: impl FnOnce(&mut HttpConnectionManager)) -> Listener {
    let mut h = HttpConnectionManager {
        route_specifier: Some(inline_routes()),
        http_filters: filters,
        ..Default::default()
    };
    f(&mut h);
    listener_with("inbound", any(&h))
}

fn istio_like_listener() -> Listener {
    let audit = HttpRbac {
        rules: Some(rules(
            rbac::rbac::Action::Log,
            vec![(
                "audit-all",
                policy(
                    vec![perm(Rule::Any(true))],
                    vec![princ(Identifier::Any(true))],
                ),
            )],
        )),
        ..Default::default()
    };
    let deny = HttpRbac {
        rules: Some(rules(
            rbac::rbac::Action::Deny,
            vec![(
                "deny-net",
                policy(
                    vec![perm(Rule::Any(true))],
                    vec![princ(Identifier::RemoteIp(CidrRange {
                        address_prefix: "192.0.2.0".into(),
                        prefix_len: Some(UInt32Value { value: 24 }),
                    }))],
                ),
            )],
        )),
        ..Default::default()
    };
    let allow = HttpRbac {
        rules: Some(rules(
            rbac::rbac::Action::Allow,
            vec![("ns[default]-policy[charge]-rule[0]", charge_policy())],
        )),
        shadow_rules_stat_prefix: "istio_dry_run_allow_".into(),
        ..Default::default()
    };
    hcm_with(
        vec![
            http_rbac_filter("envoy.filters.http.rbac", &audit),
            http_rbac_filter("envoy.filters.http.rbac", &deny),
            http_rbac_filter("envoy.filters.http.rbac", &allow),
            router(),
        ],
        |h| {
            h.normalize_path = Some(BoolValue { value: true });
            h.merge_slashes = true;
            h.path_with_escaped_slashes_action =
                PathWithEscapedSlashesAction::UnescapeAndForward as i32;
        },
    )
}

fn listener_spec(l: &Listener) -> XdsListener {
    match conv(ResourceType::Listener, &l.name, l) {
        Ok(Converted::Listener(x)) => x,
        other => panic!("{other:?}"),
    }
}

#[test]
fn http_rbac_filters_become_the_listener_chain() {
    let x = listener_spec(&istio_like_listener());
    let f = "envoy.filters.http.rbac".to_owned();
    let any_perm = PermissionSpec {
        any: Some(true),
        ..Default::default()
    };
    let any_princ = PrincipalSpec {
        any: Some(true),
        ..Default::default()
    };
    assert_eq!(x.spec.rbac.len(), 3);
    assert_eq!(
        x.spec.rbac[0],
        RbacFilterSpec {
            name: Some(f.clone()),
            rules: Some(RbacRulesSpec {
                action: RbacAction::Log,
                policies: [(
                    "audit-all".to_owned(),
                    PolicySpec {
                        permissions: vec![any_perm.clone()],
                        principals: vec![any_princ.clone()],
                    }
                )]
                .into(),
            }),
            shadow_rules: None,
        }
    );
    assert_eq!(
        x.spec.rbac[1].rules.as_ref().unwrap().policies["deny-net"].principals[0],
        PrincipalSpec {
            remote_ip: Some("192.0.2.0/24".into()),
            ..Default::default()
        }
    );
    let allow = x.spec.rbac[2].rules.as_ref().unwrap();
    assert_eq!(allow.action, RbacAction::Allow);
    let charge = &allow.policies["ns[default]-policy[charge]-rule[0]"];
    assert_eq!(
        charge.permissions,
        vec![PermissionSpec {
            and_rules: Some(PermissionSetSpec {
                rules: vec![
                    PermissionSpec {
                        header: Some(HeaderMatchSpec {
                            name: ":method".into(),
                            exact: Some("POST".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    PermissionSpec {
                        url_path: Some(StringMatchSpec::exact("/api/v1/charge")),
                        ..Default::default()
                    },
                ],
            }),
            ..Default::default()
        }]
    );
    assert_eq!(
        charge.principals,
        vec![PrincipalSpec {
            and_ids: Some(PrincipalSetSpec {
                ids: vec![PrincipalSpec {
                    authenticated: Some(AuthenticatedSpec {
                        principal_name: Some(StringMatchSpec::exact(
                            "spiffe://cluster.local/ns/default/sa/frontend"
                        )),
                    }),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }]
    );
    assert_eq!(
        x.spec.path_normalization,
        Some(PathNormalizationSpec {
            normalize: Some(true),
            merge_slashes: Some(true),
            escaped_slashes: Some(EscapedSlashesSpec::UnescapeAndForward),
        })
    );

    // Through the same compile as a file, and evaluated.
    let mut state = XdsState::new(false);
    state.insert(
        ResourceType::Listener,
        "inbound",
        "1",
        Converted::Listener(x),
    );
    let cfg = state.to_proxy_config(&ProxyConfig::default());
    let snap = ringmesh_config::compile(&cfg, 1).unwrap_or_else(|e| panic!("{e}"));
    let l = &snap.listeners[0];
    assert_eq!(
        l.path_normalization.escaped_slashes.as_str(),
        "unescape_and_forward"
    );
    let decide = |method: &str, path: &str, who: &str, peer: &str| {
        let req = ringmesh_route::Request::new(b"svc", b"/")
            .with_target(path.as_bytes())
            .with_method(method.as_bytes());
        let principal = format!("spiffe://cluster.local/ns/default/sa/{who}");
        let v = l.rbac.evaluate(&ringmesh_config::authz::AuthzInput {
            request: Some(&req),
            peer: peer.parse().unwrap(),
            destination: "127.0.0.1:8080".parse().unwrap(),
            principal: Some(&principal),
            sni: None,
        });
        assert_eq!(
            v.logged.map(|(_, p)| p),
            Some("audit-all"),
            "AUDIT sees every request"
        );
        v.denied.map(|(_, p)| p.unwrap_or("-").to_owned())
    };
    assert_eq!(
        decide("POST", "/api/v1/charge", "frontend", "10.0.0.1"),
        None
    );
    assert_eq!(
        decide("POST", "/api/v1/charge", "intruder", "10.0.0.1").as_deref(),
        Some("-")
    );
    assert_eq!(
        decide("POST", "/api/v1/charge", "frontend", "192.0.2.7").as_deref(),
        Some("deny-net")
    );
}

#[test]
fn network_rbac_before_tcp_proxy() {
    let net = NetworkRbac {
        stat_prefix: "tcp.".into(),
        rules: Some(rules(
            rbac::rbac::Action::Deny,
            vec![(
                "no-intruder",
                policy(
                    vec![perm(Rule::OrRules(rbac::permission::Set {
                        rules: vec![
                            perm(Rule::DestinationPort(9000)),
                            perm(Rule::NotRule(Box::new(perm(Rule::DestinationIp(
                                CidrRange {
                                    address_prefix: "10.0.0.0".into(),
                                    prefix_len: Some(UInt32Value { value: 8 }),
                                },
                            ))))),
                        ],
                    }))],
                    vec![princ(Identifier::NotId(Box::new(princ(
                        Identifier::Authenticated(rbac::principal::Authenticated {
                            principal_name: None,
                        }),
                    ))))],
                ),
            )],
        )),
        ..Default::default()
    };
    let mut l = listener_with(
        "tcp-in",
        any(&TcpProxy {
            cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster("app".into())),
            ..Default::default()
        }),
    );
    l.filter_chains[0].filters.insert(
        0,
        Filter {
            name: "envoy.filters.network.rbac".into(),
            config_type: Some(filter::ConfigType::TypedConfig(any(&net))),
        },
    );
    let x = listener_spec(&l);
    assert_eq!(x.spec.protocol, ListenerProtocol::Tcp);
    assert_eq!(x.spec.rbac.len(), 1);
    assert_eq!(x.spec.rbac[0].name.as_deref(), Some("tcp."));
    let policy = &x.spec.rbac[0].rules.as_ref().unwrap().policies["no-intruder"];
    assert_eq!(
        policy.permissions[0].or_rules.as_ref().unwrap().rules[1]
            .not_rule
            .as_ref()
            .unwrap()
            .destination_ip
            .as_deref(),
        Some("10.0.0.0/8")
    );
    assert_eq!(x.spec.path_normalization, None);
}

#[test]
#[allow(deprecated)] // `metadata` is deprecated, and still must be refused
fn unsupported_rbac_is_rejected_naming_the_field() {
    let with_allow = |p: rbac::Policy| HttpRbac {
        rules: Some(rules(rbac::rbac::Action::Allow, vec![("p", p)])),
        ..Default::default()
    };
    let nack = |l: &Listener| err_text(ResourceType::Listener, "inbound", l);
    let http = |cfg: &HttpRbac| hcm_with(vec![http_rbac_filter("rbac", cfg), router()], |_| {});
    let at = "filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.rules.policies[\"p\"]";

    let metadata = with_allow(policy(
        vec![perm(Rule::Metadata(Default::default()))],
        vec![princ(Identifier::Any(true))],
    ));
    let e = nack(&http(&metadata));
    assert!(
        e.contains(&format!(
            "{at}.permissions[0].metadata: metadata rules are not supported"
        )),
        "{e}"
    );

    let filter_state = with_allow(policy(
        vec![perm(Rule::Any(true))],
        vec![princ(Identifier::OrIds(rbac::principal::Set {
            ids: vec![princ(Identifier::FilterState(Default::default()))],
        }))],
    ));
    let e = nack(&http(&filter_state));
    assert!(e.contains(&format!("{at}.principals[0].or_ids.ids[0].filter_state: filter state principals are not supported")), "{e}");

    let mut cel = with_allow(policy(
        vec![perm(Rule::Any(true))],
        vec![princ(Identifier::Any(true))],
    ));
    cel.rules
        .as_mut()
        .unwrap()
        .policies
        .get_mut("p")
        .unwrap()
        .condition = Some(Default::default());
    assert!(
        nack(&http(&cel)).contains(&format!("{at}.condition: CEL conditions are not supported"))
    );

    let template = with_allow(policy(
        vec![perm(Rule::UriTemplate(TypedExtensionConfig::default()))],
        vec![princ(Identifier::Any(true))],
    ));
    assert!(
        nack(&http(&template)).contains("uri_template: URI template matchers are not supported")
    );

    let ports = with_allow(policy(
        vec![perm(Rule::DestinationPortRange(Default::default()))],
        vec![princ(Identifier::Any(true))],
    ));
    assert!(nack(&http(&ports)).contains("destination_port_range: port ranges are not supported"));

    let matcher = HttpRbac {
        matcher: Some(Default::default()),
        ..Default::default()
    };
    assert!(
        nack(&http(&matcher)).contains("http_filters[0].typed_config.matcher: matcher-tree RBAC")
    );

    let mut audit_log = with_allow(policy(
        vec![perm(Rule::Any(true))],
        vec![princ(Identifier::Any(true))],
    ));
    audit_log.rules.as_mut().unwrap().audit_logging_options = Some(Default::default());
    assert!(nack(&http(&audit_log))
        .contains("audit_logging_options: RBAC audit loggers are not supported"));

    // A disabled filter (enabled per route) and an unknown filter.
    let mut disabled = http_rbac_filter("rbac", &with_allow(charge_policy()));
    disabled.disabled = true;
    assert!(nack(&hcm_with(vec![disabled, router()], |_| {}))
        .contains("http_filters[0].disabled: RBAC filters enabled per route are not supported"));
    let fault = HttpFilter {
        name: "envoy.filters.http.fault".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault".into(),
            value: Vec::new(),
        })),
        ..Default::default()
    };
    let e = nack(&hcm_with(vec![fault, router()], |_| {}));
    assert!(
        e.contains("http_filters[0]: unsupported HTTP filter \"envoy.filters.http.fault\""),
        "{e}"
    );
    let e = nack(&hcm_with(
        vec![
            router(),
            http_rbac_filter("rbac", &with_allow(charge_policy())),
        ],
        |_| {},
    ));
    assert!(
        e.contains("http_filters[0]: the router must be the last HTTP filter"),
        "{e}"
    );

    // Network RBAC: no L7 rules, no continuous enforcement, nothing else
    // before the terminal filter.
    let tcp = |cfg: Any, name: &str| {
        let mut l = listener_with(
            "inbound",
            any(&TcpProxy {
                cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster("app".into())),
                ..Default::default()
            }),
        );
        l.filter_chains[0].filters.insert(
            0,
            Filter {
                name: name.into(),
                config_type: Some(filter::ConfigType::TypedConfig(cfg)),
            },
        );
        l
    };
    let l7 = NetworkRbac {
        rules: with_allow(charge_policy()).rules,
        ..Default::default()
    };
    let e = nack(&tcp(any(&l7), "envoy.filters.network.rbac"));
    assert!(
        e.contains("permissions[0].and_rules.rules[0].header: a header rule cannot be evaluated by a network (L4) RBAC filter"),
        "{e}"
    );
    let continuous = NetworkRbac {
        enforcement_type: 1,
        ..Default::default()
    };
    assert!(nack(&tcp(any(&continuous), "rbac"))
        .contains("enforcement_type: only ONE_TIME_ON_FIRST_BYTE"));
    let e = nack(&tcp(
        Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit".into(),
            value: Vec::new(),
        },
        "ratelimit",
    ));
    assert!(
        e.contains(
            "filter_chains[0].filters[0].typed_config: unsupported network filter \"ratelimit\""
        ),
        "{e}"
    );

    // A bad CIDR and a bad regex are refused here too.
    let cidr = with_allow(policy(
        vec![perm(Rule::DestinationIp(CidrRange {
            address_prefix: "10.0.0.300".into(),
            prefix_len: Some(UInt32Value { value: 8 }),
        }))],
        vec![princ(Identifier::Any(true))],
    ));
    assert!(
        nack(&http(&cidr)).contains("permissions[0].destination_ip: \"10.0.0.300/8\" is not an IP")
    );
    let regex = with_allow(policy(
        vec![perm(Rule::Any(true))],
        vec![princ(Identifier::Authenticated(
            rbac::principal::Authenticated {
                principal_name: Some(StringMatcher {
                    match_pattern: Some(MatchPattern::SafeRegex(
                        crate::wire::pb::envoy::r#type::matcher::v3::RegexMatcher {
                            regex: "(".into(),
                            ..Default::default()
                        },
                    )),
                    ignore_case: false,
                }),
            },
        ))],
    ));
    let e = nack(&http(&regex));
    assert!(e.contains("authenticated.principal_name.safe_regex"), "{e}");
}

#[test]
fn a_rejected_rule_that_only_compile_catches_fails_the_whole_config() {
    // `any: false` passes the translation (it is a valid proto) and is
    // refused by the compile step, which makes the update a NACK.
    let cfg = HttpRbac {
        rules: Some(rules(
            rbac::rbac::Action::Allow,
            vec![(
                "p",
                policy(
                    vec![perm(Rule::Any(false))],
                    vec![princ(Identifier::Any(true))],
                ),
            )],
        )),
        ..Default::default()
    };
    let x = listener_spec(&hcm_with(
        vec![http_rbac_filter("rbac", &cfg), router()],
        |_| {},
    ));
    let mut state = XdsState::new(false);
    state.insert(
        ResourceType::Listener,
        "inbound",
        "1",
        Converted::Listener(x),
    );
    let e = ringmesh_config::compile(&state.to_proxy_config(&ProxyConfig::default()), 1)
        .expect_err("any: false must be refused")
        .to_string();
    assert!(
        e.contains("listeners[0].rbac[0].rules.policies.p.permissions[0].any: must be true"),
        "{e}"
    );
}

#[test]
fn path_normalization_fields_are_honoured() {
    let pn = |f: fn(&mut HttpConnectionManager)| {
        listener_spec(&hcm_with(vec![router()], f))
            .spec
            .path_normalization
    };
    // Nothing said: merge_slashes is a plain bool (false), the rest our
    // safe defaults.
    assert_eq!(
        pn(|_| {}),
        Some(PathNormalizationSpec {
            normalize: None,
            merge_slashes: Some(false),
            escaped_slashes: None,
        })
    );
    assert_eq!(
        pn(|h| {
            h.normalize_path = Some(BoolValue { value: false });
            h.path_with_escaped_slashes_action = PathWithEscapedSlashesAction::KeepUnchanged as i32;
        }),
        Some(PathNormalizationSpec {
            normalize: Some(false),
            merge_slashes: Some(false),
            escaped_slashes: Some(EscapedSlashesSpec::Keep),
        })
    );
    assert_eq!(
        pn(|h| h.path_with_escaped_slashes_action =
            PathWithEscapedSlashesAction::UnescapeAndRedirect as i32)
        .and_then(|p| p.escaped_slashes),
        Some(EscapedSlashesSpec::UnescapeAndRedirect)
    );
    assert_eq!(
        pn(|h| h.path_with_escaped_slashes_action =
            PathWithEscapedSlashesAction::RejectRequest as i32)
        .and_then(|p| p.escaped_slashes),
        Some(EscapedSlashesSpec::Reject)
    );
    let e = err_text(
        ResourceType::Listener,
        "inbound",
        &hcm_with(vec![router()], |h| h.path_with_escaped_slashes_action = 42),
    );
    assert!(
        e.contains("path_with_escaped_slashes_action: unknown action 42"),
        "{e}"
    );
    let e = err_text(
        ResourceType::Listener,
        "inbound",
        &hcm_with(vec![router()], |h| {
            h.path_normalization_options = Some(Default::default())
        }),
    );
    assert!(
        e.contains("path_normalization_options: not supported"),
        "{e}"
    );
}
