//! Route configurations (RDS): one per outbound HTTP port (`"9080"`), or
//! the single `http_proxy` one without interception; a virtual host per
//! visible service port, its routes from the host's VirtualService, or
//! the default route to `outbound|PORT||HOST`.

use std::collections::{BTreeMap, BTreeSet};

use ringmesh_istio::{
    networking::{
        destination_rule::ConsistentHashLb,
        sidecar::OutboundMode,
        virtual_service::{
            fault_percentage, Headers, HttpFaultInjection, HttpMatchRequest, HttpRetry, HttpRoute,
            HttpRouteDestination, RouteDestination,
        },
    },
    Destination, Resource, StringMatch, VirtualService,
};
use ringmesh_registry::ServicePort;
use tracing::warn;

use crate::{
    cds::{outbound_name, PASSTHROUGH},
    view::{Svc, View},
    wire::{self, common_fault, core, fault, matcher, previous_hosts, route},
};

/// The route configuration of the HTTP proxy listener (no interception).
pub(crate) const HTTP_PROXY: &str = "http_proxy";

/// A built route configuration and whether any route uses the fault
/// filter (its connection manager must then include it).
pub(crate) struct Built {
    pub config: route::RouteConfiguration,
    pub uses_fault: bool,
}

/// How virtual host domains are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Domains {
    /// A port's own route configuration: bare names and `name:port`.
    Port,
    /// The HTTP proxy's: `name:port`, bare names only for port 80.
    Proxy,
}

/// The HTTP ports of the visible services, each with its services.
fn http_ports<'v, 'a>(view: &'v View<'a>) -> BTreeMap<u16, Vec<(&'v Svc<'a>, &'v ServicePort)>> {
    let mut out: BTreeMap<u16, Vec<_>> = BTreeMap::new();
    for svc in &view.services {
        for p in svc.ports.iter().filter(|p| p.protocol.is_http()) {
            out.entry(p.port).or_default().push((svc, p));
        }
    }
    out
}

/// The outbound HTTP port numbers (each gets a route configuration and a
/// listener with interception).
pub(crate) fn outbound_http_ports(view: &View) -> BTreeSet<u16> {
    http_ports(view).into_keys().collect()
}

/// One route configuration per outbound HTTP port, named by the port.
pub(crate) fn per_port(view: &View) -> Vec<Built> {
    let mut out = Vec::new();
    for (port, services) in http_ports(view) {
        let mut b = Builder::default();
        for (svc, sp) in services {
            b.vhost(view, svc, sp, Domains::Port);
        }
        // Istio's catch-all for hosts the registry does not know.
        let catch_all = match view.outbound_mode() {
            OutboundMode::AllowAny => route::VirtualHost {
                name: "allow_any".into(),
                domains: vec!["*".into()],
                routes: vec![route::Route {
                    name: "allow_any".into(),
                    r#match: Some(prefix_match("/")),
                    action: Some(route::route::Action::Route(route::RouteAction {
                        cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster(
                            PASSTHROUGH.into(),
                        )),
                        timeout: Some(wire::duration(Default::default())),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            },
            OutboundMode::RegistryOnly => route::VirtualHost {
                name: "block_all".into(),
                domains: vec!["*".into()],
                routes: vec![route::Route {
                    name: "block_all".into(),
                    r#match: Some(prefix_match("/")),
                    action: Some(route::route::Action::DirectResponse(
                        route::DirectResponseAction {
                            status: 502,
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }],
                ..Default::default()
            },
        };
        b.vhosts.push(catch_all);
        out.push(b.finish(&port.to_string()));
    }
    out
}

/// The HTTP proxy's route configuration: every HTTP port's virtual hosts
/// with port-qualified domains.
pub(crate) fn http_proxy(view: &View) -> Built {
    let mut b = Builder::default();
    for (_, services) in http_ports(view) {
        for (svc, sp) in services {
            b.vhost(view, svc, sp, Domains::Proxy);
        }
    }
    b.finish(HTTP_PROXY)
}

/// An inline route configuration sending everything to one cluster (the
/// inbound connection managers').
pub(crate) fn inline_to(name: &str, vhost: &str, cluster: &str) -> route::RouteConfiguration {
    route::RouteConfiguration {
        name: name.to_owned(),
        virtual_hosts: vec![route::VirtualHost {
            name: vhost.to_owned(),
            domains: vec!["*".into()],
            routes: vec![default_route(cluster, Vec::new())],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[derive(Default)]
struct Builder {
    vhosts: Vec<route::VirtualHost>,
    domains: BTreeSet<String>,
    uses_fault: bool,
}

impl Builder {
    fn vhost(&mut self, view: &View, svc: &Svc, port: &ServicePort, mode: Domains) {
        let mut domains = Vec::new();
        for name in names(view, svc) {
            if mode == Domains::Port || port.port == 80 {
                domains.push(name.clone());
            }
            domains.push(format!("{name}:{}", port.port));
        }
        // Envoy rejects a domain used twice in one route configuration.
        domains.retain(|d| {
            let fresh = self.domains.insert(d.clone());
            if !fresh {
                warn!(
                    domain = d,
                    host = svc.host,
                    "domain already used by another virtual host; left out"
                );
            }
            fresh
        });
        if domains.is_empty() {
            return;
        }
        let (routes, fault) = routes(view, svc, port.port);
        self.uses_fault |= fault;
        self.vhosts.push(route::VirtualHost {
            name: format!("{}:{}", svc.host, port.port),
            domains,
            routes,
            ..Default::default()
        });
    }

    fn finish(self, name: &str) -> Built {
        Built {
            config: route::RouteConfiguration {
                name: name.to_owned(),
                virtual_hosts: self.vhosts,
                validate_clusters: Some(wire::boolv(false)),
                ..Default::default()
            },
            uses_fault: self.uses_fault,
        }
    }
}

/// The names a client may use for `svc`: the host, and for a Kubernetes
/// service `name.ns` and `name.ns.svc` (resolvable through the DNS search
/// path), plus `name` from the same namespace.
fn names(view: &View, svc: &Svc) -> Vec<String> {
    let mut out = vec![svc.host.clone()];
    if let Some(short) = &svc.short_name {
        let short = short.to_ascii_lowercase();
        let ns = svc.namespace.to_ascii_lowercase();
        if svc.namespace == view.proxy.namespace {
            out.push(short.clone());
        }
        out.push(format!("{short}.{ns}"));
        out.push(format!("{short}.{ns}.svc"));
    }
    let mut seen = BTreeSet::new();
    out.retain(|n| seen.insert(n.clone()));
    out
}

fn prefix_match(prefix: &str) -> route::RouteMatch {
    route::RouteMatch {
        path_specifier: Some(route::route_match::PathSpecifier::Prefix(prefix.to_owned())),
        ..Default::default()
    }
}

/// `/` → `cluster`, no timeout (Istio disables Envoy's 15 s default).
fn default_route(cluster: &str, hash_policy: Vec<route::route_action::HashPolicy>) -> route::Route {
    route::Route {
        name: "default".into(),
        r#match: Some(prefix_match("/")),
        action: Some(route::route::Action::Route(route::RouteAction {
            cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster(
                cluster.to_owned(),
            )),
            timeout: Some(wire::duration(Default::default())),
            hash_policy,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The routes of `svc`'s virtual host on `port`, and whether any uses the
/// fault filter.
fn routes(view: &View, svc: &Svc, port: u16) -> (Vec<route::Route>, bool) {
    let mut out = Vec::new();
    let mut uses_fault = false;
    if let Some(vs) = view.virtual_service(svc) {
        for (i, r) in vs.spec.http.iter().enumerate() {
            if r.delegate.is_some() {
                warn!(
                    virtual_service = %vs.reference(),
                    route = i,
                    "delegate is not supported yet; route skipped"
                );
                continue;
            }
            let applicable: Vec<&HttpMatchRequest> = r
                .matches
                .iter()
                .filter(|m| m.port.is_none_or(|p| p == u32::from(port)))
                .filter(|m| {
                    view.source_matches(
                        &m.source_labels,
                        m.source_namespace.as_deref(),
                        &m.gateways,
                    )
                })
                .collect();
            if !r.matches.is_empty() && applicable.is_empty() {
                continue;
            }
            let Some((action, fault)) = http_action(view, vs, r, port) else {
                continue;
            };
            let conditions: Vec<Option<&HttpMatchRequest>> = if r.matches.is_empty() {
                vec![None]
            } else {
                applicable.into_iter().map(Some).collect()
            };
            for m in conditions {
                let mut er = route::Route {
                    name: route_name(r, m),
                    r#match: Some(route_match(m)),
                    action: Some(action.clone()),
                    ..Default::default()
                };
                header_ops(&mut er, r.headers.as_ref());
                if let [single] = live_destinations(r).as_slice() {
                    header_ops(&mut er, single.headers.as_ref());
                }
                if let Some(f) = &fault {
                    // The one entry of this map (see `wire::resource`).
                    er.typed_per_filter_config
                        .insert(wire::FAULT_FILTER.into(), wire::any(f));
                    uses_fault = true;
                }
                out.push(er);
            }
            if r.matches.is_empty() {
                // A catch-all: nothing after it can match (as Istio).
                break;
            }
        }
    }
    if out.is_empty() {
        let cluster = outbound_name(port, None, &svc.host);
        out.push(default_route(
            &cluster,
            hash_policy(view, &svc.host, None, port),
        ));
    }
    (out, uses_fault)
}

fn route_name(r: &HttpRoute, m: Option<&HttpMatchRequest>) -> String {
    match (r.name.as_deref(), m.and_then(|m| m.name.as_deref())) {
        (Some(r), Some(m)) => format!("{r}.{m}"),
        (Some(n), None) | (None, Some(n)) => n.to_owned(),
        (None, None) => String::new(),
    }
}

fn route_match(m: Option<&HttpMatchRequest>) -> route::RouteMatch {
    use route::route_match::PathSpecifier;
    let Some(m) = m else {
        return prefix_match("/");
    };
    let path = match &m.uri {
        Some(StringMatch::Exact(p)) => PathSpecifier::Path(p.clone()),
        Some(StringMatch::Prefix(p)) => PathSpecifier::Prefix(p.clone()),
        Some(StringMatch::Regex(r)) => PathSpecifier::SafeRegex(wire::regex(r)),
        Some(StringMatch::Present) | None => PathSpecifier::Prefix("/".into()),
    };
    let mut headers = Vec::new();
    for (name, sm) in &m.headers {
        headers.push(header_matcher(name, sm, false));
    }
    for (name, sm) in [
        (":method", &m.method),
        (":authority", &m.authority),
        (":scheme", &m.scheme),
    ] {
        if let Some(sm) = sm {
            headers.push(header_matcher(name, sm, false));
        }
    }
    for (name, sm) in &m.without_headers {
        headers.push(header_matcher(name, sm, true));
    }
    let query_parameters = m
        .query_params
        .iter()
        .map(|(name, sm)| {
            use route::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
            route::QueryParameterMatcher {
                name: name.clone(),
                query_parameter_match_specifier: Some(match wire::string_matcher(sm, false) {
                    Some(s) => Q::StringMatch(s),
                    None => Q::PresentMatch(true),
                }),
            }
        })
        .collect();
    route::RouteMatch {
        path_specifier: Some(path),
        case_sensitive: m.ignore_uri_case.then(|| wire::boolv(false)),
        headers,
        query_parameters,
        ..Default::default()
    }
}

fn header_matcher(name: &str, sm: &StringMatch, invert: bool) -> route::HeaderMatcher {
    use route::header_matcher::HeaderMatchSpecifier as H;
    route::HeaderMatcher {
        name: name.to_ascii_lowercase(),
        invert_match: invert,
        header_match_specifier: Some(match wire::string_matcher(sm, false) {
            Some(s) => H::StringMatch(s),
            None => H::PresentMatch(true),
        }),
        ..Default::default()
    }
}

fn header_ops(r: &mut route::Route, headers: Option<&Headers>) {
    use core::header_value_option::HeaderAppendAction as A;
    let Some(h) = headers else { return };
    if let Some(req) = &h.request {
        for (k, v) in &req.set {
            r.request_headers_to_add
                .push(wire::header_option(k, v, A::OverwriteIfExistsOrAdd));
        }
        for (k, v) in &req.add {
            r.request_headers_to_add
                .push(wire::header_option(k, v, A::AppendIfExistsOrAdd));
        }
        r.request_headers_to_remove
            .extend(req.remove.iter().cloned());
    }
    if let Some(resp) = &h.response {
        for (k, v) in &resp.set {
            r.response_headers_to_add
                .push(wire::header_option(k, v, A::OverwriteIfExistsOrAdd));
        }
        for (k, v) in &resp.add {
            r.response_headers_to_add
                .push(wire::header_option(k, v, A::AppendIfExistsOrAdd));
        }
        r.response_headers_to_remove
            .extend(resp.remove.iter().cloned());
    }
}

/// The cluster a destination names, seen from a VirtualService in `ns`
/// routing `port`.
fn destination_cluster(view: &View, ns: &str, d: &Destination, port: u16) -> (String, String, u16) {
    let host = view.fqdn(&d.host, ns);
    let p = d
        .port
        .and_then(|p| u16::try_from(p.number).ok())
        .unwrap_or_else(|| view.destination_port(&host, port));
    (outbound_name(p, d.subset.as_deref(), &host), host, p)
}

/// The action of a VirtualService route and its fault configuration.
fn http_action(
    view: &View,
    vs: &Resource<VirtualService>,
    r: &HttpRoute,
    port: u16,
) -> Option<(route::route::Action, Option<fault::HttpFault>)> {
    use route::route::Action;
    let ns = vs.meta.namespace.as_str();
    if let Some(rd) = &r.redirect {
        use route::redirect_action::{
            PathRewriteSpecifier, RedirectResponseCode as C, SchemeRewriteSpecifier,
        };
        let code = match rd.redirect_code.unwrap_or(301) {
            302 => C::Found,
            303 => C::SeeOther,
            307 => C::TemporaryRedirect,
            308 => C::PermanentRedirect,
            _ => C::MovedPermanently,
        };
        return Some((
            Action::Redirect(route::RedirectAction {
                host_redirect: rd.authority.clone().unwrap_or_default(),
                port_redirect: rd.port.unwrap_or(0),
                response_code: code as i32,
                scheme_rewrite_specifier: rd
                    .scheme
                    .clone()
                    .map(SchemeRewriteSpecifier::SchemeRedirect),
                path_rewrite_specifier: rd.uri.clone().map(PathRewriteSpecifier::PathRedirect),
                ..Default::default()
            }),
            None,
        ));
    }
    if let Some(dr) = &r.direct_response {
        let body = dr.body.as_ref().and_then(|b| {
            let specifier = match (&b.string, &b.bytes) {
                (Some(s), _) => core::data_source::Specifier::InlineString(s.clone()),
                (None, Some(b64)) => match base64_decode(b64) {
                    Some(bytes) => core::data_source::Specifier::InlineBytes(bytes),
                    None => {
                        warn!(virtual_service = %vs.reference(), "directResponse.body.bytes is not base64; body left out");
                        return None;
                    }
                },
                (None, None) => return None,
            };
            Some(core::DataSource {
                specifier: Some(specifier),
                ..Default::default()
            })
        });
        return Some((
            Action::DirectResponse(route::DirectResponseAction {
                status: dr.status,
                body,
                ..Default::default()
            }),
            None,
        ));
    }
    let dests = live_destinations(r);
    let cluster_specifier = match dests.as_slice() {
        [] => {
            warn!(virtual_service = %vs.reference(), "route without destinations; skipped");
            return None;
        }
        [one] => route::route_action::ClusterSpecifier::Cluster(
            destination_cluster(view, ns, &one.destination, port).0,
        ),
        many => route::route_action::ClusterSpecifier::WeightedClusters(route::WeightedCluster {
            clusters: many
                .iter()
                .map(|d| {
                    let mut cw = route::weighted_cluster::ClusterWeight {
                        name: destination_cluster(view, ns, &d.destination, port).0,
                        weight: Some(wire::u32v(
                            u32::try_from(d.weight.unwrap_or(0)).unwrap_or(0),
                        )),
                        ..Default::default()
                    };
                    weighted_header_ops(&mut cw, d.headers.as_ref());
                    cw
                })
                .collect(),
            ..Default::default()
        }),
    };
    let first = &dests[0].destination;
    let (_, first_host, first_port) = destination_cluster(view, ns, first, port);
    let mut action = route::RouteAction {
        cluster_specifier: Some(cluster_specifier),
        timeout: Some(wire::duration(
            r.timeout.map(|t| t.get()).unwrap_or_default(),
        )),
        retry_policy: r.retries.as_ref().and_then(retry_policy),
        hash_policy: hash_policy(view, &first_host, first.subset.as_deref(), first_port),
        ..Default::default()
    };
    let mirrors = r
        .mirror
        .iter()
        .map(|m| (m, r.effective_mirror_percentage()))
        .chain(
            r.mirrors
                .iter()
                .map(|m| (&m.destination, m.percentage.map_or(100.0, |p| p.value))),
        );
    for (m, pct) in mirrors {
        action
            .request_mirror_policies
            .push(route::route_action::RequestMirrorPolicy {
                cluster: destination_cluster(view, ns, m, port).0,
                runtime_fraction: Some(core::RuntimeFractionalPercent {
                    default_value: Some(wire::fraction(pct)),
                    ..Default::default()
                }),
                ..Default::default()
            });
    }
    if let Some(rw) = &r.rewrite {
        if let Some(uri) = &rw.uri {
            action.prefix_rewrite = uri.clone();
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            action.regex_rewrite = Some(matcher::RegexMatchAndSubstitute {
                pattern: Some(wire::regex(&rr.pattern)),
                substitution: rr.rewrite.clone(),
            });
        }
        if let Some(a) = &rw.authority {
            action.host_rewrite_specifier =
                Some(route::route_action::HostRewriteSpecifier::HostRewriteLiteral(a.clone()));
        }
    }
    let fault = r.fault.as_ref().and_then(|f| http_fault(vs, f));
    Some((Action::Route(action), fault))
}

/// The destinations that get traffic: a lone one, or those with a
/// positive weight (Istio drops weight-0 destinations).
fn live_destinations(r: &HttpRoute) -> Vec<&HttpRouteDestination> {
    r.route
        .iter()
        .filter(|d| r.route.len() == 1 || d.weight.unwrap_or(0) > 0)
        .collect()
}

fn weighted_header_ops(cw: &mut route::weighted_cluster::ClusterWeight, headers: Option<&Headers>) {
    let mut r = route::Route::default();
    header_ops(&mut r, headers);
    cw.request_headers_to_add = r.request_headers_to_add;
    cw.request_headers_to_remove = r.request_headers_to_remove;
    cw.response_headers_to_add = r.response_headers_to_add;
    cw.response_headers_to_remove = r.response_headers_to_remove;
}

/// Istio's retry policy, only when the VirtualService asks for retries
/// (attempts > 0); no implicit default.
fn retry_policy(r: &HttpRetry) -> Option<route::RetryPolicy> {
    let attempts = u32::try_from(r.attempts.unwrap_or(0))
        .ok()
        .filter(|a| *a > 0)?;
    let mut codes = Vec::new();
    let mut on = Vec::new();
    match &r.retry_on {
        Some(s) => {
            for cond in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match cond.parse::<u32>() {
                    Ok(code) => codes.push(code),
                    Err(_) => on.push(cond.to_owned()),
                }
            }
        }
        None => {
            // Istio's default conditions.
            on.extend(
                [
                    "connect-failure",
                    "refused-stream",
                    "unavailable",
                    "cancelled",
                ]
                .map(str::to_owned),
            );
            codes.push(503);
        }
    }
    if !codes.is_empty() && !on.iter().any(|c| c == "retriable-status-codes") {
        on.push("retriable-status-codes".into());
    }
    let mut policy = route::RetryPolicy {
        retry_on: on.join(","),
        num_retries: Some(wire::u32v(attempts)),
        per_try_timeout: r.per_try_timeout.map(|d| wire::duration(d.get())),
        retriable_status_codes: codes,
        retry_back_off: r.backoff.map(|b| route::retry_policy::RetryBackOff {
            base_interval: Some(wire::duration(b.get())),
            ..Default::default()
        }),
        ..Default::default()
    };
    if r.retry_ignore_previous_hosts != Some(false) {
        policy.retry_host_predicate = vec![route::retry_policy::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(
                route::retry_policy::retry_host_predicate::ConfigType::TypedConfig(wire::any(
                    &previous_hosts::PreviousHostsPredicate {},
                )),
            ),
        }];
        policy.host_selection_retry_max_attempts = 5;
    }
    Some(policy)
}

fn http_fault(vs: &Resource<VirtualService>, f: &HttpFaultInjection) -> Option<fault::HttpFault> {
    let delay = f.delay.as_ref().and_then(|d| {
        let fixed = d.fixed_delay?;
        Some(common_fault::FaultDelay {
            fault_delay_secifier: Some(common_fault::fault_delay::FaultDelaySecifier::FixedDelay(
                wire::duration(fixed.get()),
            )),
            percentage: Some(wire::fraction(fault_percentage(d.percentage, d.percent))),
        })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        use fault::fault_abort::ErrorType;
        let error_type = if let Some(s) = a.http_status.and_then(|s| u32::try_from(s).ok()) {
            ErrorType::HttpStatus(s)
        } else if let Some(g) = a.grpc_status.as_deref().and_then(grpc_code) {
            ErrorType::GrpcStatus(g)
        } else {
            warn!(
                virtual_service = %vs.reference(),
                "fault.abort needs httpStatus or a known grpcStatus (http2Error is not supported by Envoy); abort left out"
            );
            return None;
        };
        Some(fault::FaultAbort {
            error_type: Some(error_type),
            percentage: Some(wire::fraction(fault_percentage(a.percentage, a.percent))),
            ..Default::default()
        })
    });
    if delay.is_none() && abort.is_none() {
        return None;
    }
    Some(fault::HttpFault {
        delay,
        abort,
        ..Default::default()
    })
}

/// A gRPC status name (or number) to its code.
fn grpc_code(name: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    name.parse().ok().or_else(|| {
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| i as u32)
    })
}

/// The route hash policy for session affinity, when the destination's
/// DestinationRule asks for a consistent hash.
fn hash_policy(
    view: &View,
    host: &str,
    subset: Option<&str>,
    port: u16,
) -> Vec<route::route_action::HashPolicy> {
    use route::route_action::hash_policy::{self as hp, PolicySpecifier};
    let Some(svc) = view.service(host) else {
        return Vec::new();
    };
    let dr = view.destination_rule(svc);
    let subset = subset.and_then(|s| dr.and_then(|dr| dr.spec.subset(s)));
    let policy = View::policy(dr, subset, port);
    let Some(ch): Option<&ConsistentHashLb> = policy
        .load_balancer
        .and_then(|lb| lb.consistent_hash.as_ref())
    else {
        return Vec::new();
    };
    let specifier = if let Some(h) = &ch.http_header_name {
        PolicySpecifier::Header(hp::Header {
            header_name: h.clone(),
            ..Default::default()
        })
    } else if let Some(c) = &ch.http_cookie {
        PolicySpecifier::Cookie(hp::Cookie {
            name: c.name.clone(),
            path: c.path.clone().unwrap_or_default(),
            ttl: c.ttl.map(|d| wire::duration(d.get())),
            attributes: c
                .attributes
                .iter()
                .map(|a| hp::CookieAttribute {
                    name: a.name.clone(),
                    value: a.value.clone().unwrap_or_default(),
                })
                .collect(),
        })
    } else if ch.use_source_ip == Some(true) {
        PolicySpecifier::ConnectionProperties(hp::ConnectionProperties { source_ip: true })
    } else if let Some(q) = &ch.http_query_parameter_name {
        PolicySpecifier::QueryParameter(hp::QueryParameter { name: q.clone() })
    } else {
        return Vec::new();
    };
    vec![route::route_action::HashPolicy {
        policy_specifier: Some(specifier),
        ..Default::default()
    }]
}

/// The TCP destination of `svc` on `port`: its VirtualService's first
/// `tcp` route that applies, else `outbound|PORT||HOST`. Returns the
/// clusters and weights (one entry: a plain cluster).
pub(crate) fn tcp_destinations(view: &View, svc: &Svc, port: u16) -> Vec<(String, u32)> {
    if let Some(vs) = view.virtual_service(svc) {
        let ns = vs.meta.namespace.as_str();
        let applies = |r: &&ringmesh_istio::networking::virtual_service::TcpRoute| {
            r.matches.is_empty()
                || r.matches.iter().any(|m| {
                    m.port.is_none_or(|p| p == u32::from(port))
                        && view.source_matches(
                            &m.source_labels,
                            m.source_namespace.as_deref(),
                            &m.gateways,
                        )
                })
        };
        if let Some(r) = vs.spec.tcp.iter().find(applies) {
            let dests: Vec<&RouteDestination> = r
                .route
                .iter()
                .filter(|d| r.route.len() == 1 || d.weight.unwrap_or(0) > 0)
                .collect();
            if !dests.is_empty() {
                return dests
                    .iter()
                    .map(|d| {
                        let (cluster, _, _) = destination_cluster(view, ns, &d.destination, port);
                        let w = u32::try_from(d.weight.unwrap_or(100)).unwrap_or(0);
                        (cluster, w)
                    })
                    .collect();
            }
        }
    }
    vec![(outbound_name(port, None, &svc.host), 100)]
}

/// Standard base64 (with or without padding).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
