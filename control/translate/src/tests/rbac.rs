//! AuthorizationPolicy → RBAC filters, with the examples of Istio's
//! documentation. The filters are decoded from the translated listeners
//! and evaluated by a small model of Envoy's RBAC semantics (`Req`,
//! `decide`), so the tests state outcomes ("A may POST /api/v1/charge, B
//! gets 403") as well as the shape istiod gives them.

use super::*;
use crate::rbac::{
    pb::{http_rbac, network_rbac, rbac},
    HTTP_RBAC, NETWORK_RBAC,
};

fn ap(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

/// The corpus plus AuthorizationPolicies (and other Istio YAML); fails on
/// any error diagnostic.
fn with_policies(yaml: &str) -> MeshState {
    let mut state = corpus();
    let extra = ringmesh_istio::load_str(yaml, "authz.yaml");
    let errors: Vec<String> = extra
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    state
        .istio
        .authorization_policies
        .extend(extra.model.authorization_policies);
    state
        .istio
        .peer_authentications
        .extend(extra.model.peer_authentications);
    state
}

/// ratings' sidecar (bookinfo, 10.0.0.40, inbound HTTP 9080) without
/// interception.
fn ratings() -> ProxyNode {
    proxy("bookinfo", "10.0.0.40", Interception::None)
}

/// mysqldb's sidecar (bookinfo, 10.0.0.50, inbound TCP 3306).
fn mysqldb() -> ProxyNode {
    proxy("bookinfo", "10.0.0.50", Interception::None)
}

/// The filters of a chain's single HTTP connection manager.
fn http_filters(state: &MeshState, node: &ProxyNode, listener: &str) -> Vec<wire::hcm::HttpFilter> {
    let l: Listener = get(&run(state, node), listener);
    let mut all = Vec::new();
    for c in &l.filter_chains {
        let h = hcm_of(c);
        all.push(h.http_filters);
    }
    let first = all[0].clone();
    assert!(all.iter().all(|f| *f == first), "chains differ");
    first
}

/// `(action, policies)` of the RBAC filters, in filter order.
fn http_rbacs(state: &MeshState, node: &ProxyNode) -> Vec<rbac::Rbac> {
    let filters = http_filters(state, node, "inbound_10.0.0.40_9080");
    assert_eq!(
        filters.last().map(|f| f.name.as_str()),
        Some("envoy.filters.http.router")
    );
    filters
        .iter()
        .filter(|f| f.name == HTTP_RBAC)
        .map(|f| {
            let Some(wire::hcm::http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                panic!()
            };
            inner::<http_rbac::Rbac>(any).rules.expect("rules")
        })
        .collect()
}

fn tcp_rbacs(state: &MeshState, node: &ProxyNode, listener: &str) -> Vec<rbac::Rbac> {
    let l: Listener = get(&run(state, node), listener);
    let chain = &l.filter_chains[0];
    let names: Vec<&str> = chain.filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.last(), Some(&"envoy.filters.network.tcp_proxy"));
    chain
        .filters
        .iter()
        .filter(|f| f.name == NETWORK_RBAC)
        .map(|f| {
            let Some(wire::listener::filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                panic!()
            };
            let n: network_rbac::Rbac = inner(any);
            assert_eq!(n.stat_prefix, "tcp.");
            n.rules.expect("rules")
        })
        .collect()
}

fn actions(rbacs: &[rbac::Rbac]) -> Vec<rbac::rbac::Action> {
    rbacs.iter().map(|r| r.action()).collect()
}

fn policy_names(r: &rbac::Rbac) -> Vec<String> {
    let mut n: Vec<String> = r.policies.keys().cloned().collect();
    n.sort();
    n
}

// ---------------------------------------------------------------------------
// A model of Envoy's RBAC evaluation, for the matchers this crate emits
// ---------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Req<'a> {
    /// The peer's URI SAN (mTLS), if any.
    principal: Option<&'a str>,
    source_ip: &'a str,
    method: &'a str,
    path: &'a str,
    host: &'a str,
    port: u32,
    headers: Vec<(&'a str, &'a str)>,
    /// A TCP connection: no HTTP attributes.
    tcp: bool,
}

fn string_match(m: &wire::matcher::StringMatcher, v: &str) -> bool {
    use wire::matcher::string_matcher::MatchPattern;
    let ignore_case = m.ignore_case;
    let fold = |s: &str| {
        if ignore_case {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        }
    };
    let v = fold(v);
    match m.match_pattern.as_ref().unwrap() {
        MatchPattern::Exact(s) => v == fold(s),
        MatchPattern::Prefix(s) => v.starts_with(&fold(s)),
        MatchPattern::Suffix(s) => v.ends_with(&fold(s)),
        MatchPattern::Contains(s) => v.contains(&fold(s)),
        MatchPattern::SafeRegex(r) if r.regex == ".+" => !v.is_empty(),
        MatchPattern::SafeRegex(r) => {
            // `.*/ns/NS/.*`, the only other regex emitted.
            let ns = r
                .regex
                .strip_prefix(".*/ns/")
                .and_then(|s| s.strip_suffix("/.*"))
                .unwrap_or_else(|| panic!("unexpected regex {}", r.regex));
            assert!(!ns.contains(".*"), "test model: no wildcard namespaces");
            v.contains(&format!("/ns/{ns}/"))
        }
        other => panic!("unexpected matcher {other:?}"),
    }
}

fn in_cidr(c: &wire::core::CidrRange, ip: &str) -> bool {
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    let base: std::net::Ipv4Addr = c.address_prefix.parse().unwrap();
    let len = c.prefix_len.as_ref().unwrap().value;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(base) & mask
}

fn header_value<'a>(req: &Req<'a>, name: &str) -> Option<&'a str> {
    match name {
        ":method" => Some(req.method),
        ":authority" => Some(req.host),
        ":path" => Some(req.path),
        _ => req
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v),
    }
}

fn header_match(h: &wire::route::HeaderMatcher, req: &Req) -> bool {
    use wire::route::header_matcher::HeaderMatchSpecifier;
    assert!(!req.tcp, "a header matcher in a TCP filter");
    let v = header_value(req, &h.name);
    let m = match h.header_match_specifier.as_ref().unwrap() {
        HeaderMatchSpecifier::PresentMatch(p) => v.is_some() == *p,
        HeaderMatchSpecifier::StringMatch(s) => v.is_some_and(|v| string_match(s, v)),
        other => panic!("unexpected {other:?}"),
    };
    m != h.invert_match
}

fn principal_match(p: &rbac::Principal, req: &Req) -> bool {
    use rbac::principal::Identifier;
    match p.identifier.as_ref().unwrap() {
        Identifier::Any(a) => *a,
        Identifier::AndIds(s) => s.ids.iter().all(|i| principal_match(i, req)),
        Identifier::OrIds(s) => s.ids.iter().any(|i| principal_match(i, req)),
        Identifier::NotId(i) => !principal_match(i, req),
        Identifier::Authenticated(a) => req
            .principal
            .is_some_and(|p| string_match(a.principal_name.as_ref().unwrap(), p)),
        Identifier::DirectRemoteIp(c) | Identifier::RemoteIp(c) => in_cidr(c, req.source_ip),
        Identifier::Header(h) => header_match(h, req),
        other => panic!("unexpected {other:?}"),
    }
}

fn permission_match(p: &rbac::Permission, req: &Req) -> bool {
    use rbac::permission::Rule;
    match p.rule.as_ref().unwrap() {
        Rule::Any(a) => *a,
        Rule::AndRules(s) => s.rules.iter().all(|r| permission_match(r, req)),
        Rule::OrRules(s) => s.rules.iter().any(|r| permission_match(r, req)),
        Rule::NotRule(r) => !permission_match(r, req),
        Rule::Header(h) => header_match(h, req),
        Rule::DestinationPort(port) => req.port == *port,
        Rule::UrlPath(m) => {
            assert!(!req.tcp, "a path matcher in a TCP filter");
            let Some(wire::matcher::path_matcher::Rule::Path(s)) = &m.rule else {
                panic!()
            };
            string_match(s, req.path.split('?').next().unwrap())
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn policy_match(p: &rbac::Policy, req: &Req) -> bool {
    p.permissions.iter().any(|x| permission_match(x, req))
        && p.principals.iter().any(|x| principal_match(x, req))
}

/// Envoy's decision over the filters in order: `true` = allowed.
fn decide(rbacs: &[rbac::Rbac], req: &Req) -> bool {
    use rbac::rbac::Action;
    rbacs.iter().all(|r| {
        let matched = r.policies.values().any(|p| policy_match(p, req));
        match r.action() {
            Action::Allow => matched,
            Action::Deny => !matched,
            Action::Log => true,
        }
    })
}

const A: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
const B: &str = "spiffe://cluster.local/ns/bookinfo/sa/intruder";

fn from<'a>(principal: &'a str, method: &'a str, path: &'a str) -> Req<'a> {
    Req {
        principal: Some(principal),
        source_ip: "10.1.1.10",
        method,
        path,
        host: "ratings.bookinfo.svc.cluster.local:9080",
        port: 9080,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn no_policy_no_filter_and_paths_normalized() {
    let state = corpus();
    let filters = http_filters(&state, &ratings(), "inbound_10.0.0.40_9080");
    let names: Vec<&str> = filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["envoy.filters.http.router"]);
    let l: Listener = get(&run(&state, &ratings()), "inbound_10.0.0.40_9080");
    let h = hcm_of(&l.filter_chains[0]);
    assert_eq!(h.normalize_path, Some(wire::boolv(true)));
    assert!(h.merge_slashes);
    assert_eq!(
        h.path_with_escaped_slashes_action(),
        wire::hcm::http_connection_manager::PathWithEscapedSlashesAction::UnescapeAndForward
    );
    // The outbound side is untouched.
    let vo: Listener = get(&run(&state, &ratings()), "virtualOutbound");
    assert_eq!(hcm_of(&vo.filter_chains[0]).normalize_path, None);
}

#[test]
fn allow_nothing_denies_everything() {
    // istio.io "allow-nothing": an ALLOW policy without rules.
    let state = with_policies(&ap("allow-nothing", "bookinfo", "{}"));
    let r = http_rbacs(&state, &ratings());
    assert_eq!(actions(&r), [rbac::rbac::Action::Allow]);
    assert!(r[0].policies.is_empty());
    assert!(!decide(&r, &from(A, "GET", "/")));
    // Another namespace's policy does not apply.
    let state = with_policies(&ap("allow-nothing", "shop", "{}"));
    assert!(http_rbacs(&state, &ratings()).is_empty());
}

#[test]
fn deny_all_and_the_mesh_wide_root_namespace() {
    // istio.io "deny-all": DENY with `rules: [{}]`, here mesh-wide.
    let state = with_policies(&ap(
        "deny-all",
        "istio-system",
        "{action: DENY, rules: [{}]}",
    ));
    let r = http_rbacs(&state, &ratings());
    assert_eq!(actions(&r), [rbac::rbac::Action::Deny]);
    assert_eq!(
        policy_names(&r[0]),
        ["ns[istio-system]-policy[deny-all]-rule[0]"]
    );
    let p = &r[0].policies["ns[istio-system]-policy[deny-all]-rule[0]"];
    assert_eq!(
        p.principals,
        [rbac::Principal {
            identifier: Some(rbac::principal::Identifier::Any(true))
        }]
    );
    assert!(!decide(&r, &from(A, "GET", "/")));
    // A DENY without rules denies nothing: no filter.
    let state = with_policies(&ap("deny-nothing", "bookinfo", "{action: DENY}"));
    assert!(http_rbacs(&state, &ratings()).is_empty());
    // An ALLOW with `rules: [{}]` allows all.
    let state = with_policies(&ap("allow-all", "bookinfo", "{rules: [{}]}"));
    assert!(decide(
        &http_rbacs(&state, &ratings()),
        &from(B, "DELETE", "/x")
    ));
}

const CHARGE: &str = "{selector: {matchLabels: {app: ratings}}, rules: [{from: [{source: \
                      {principals: [cluster.local/ns/shop/sa/frontend]}}], to: [{operation: \
                      {methods: [POST], paths: [/api/v1/charge]}}]}]}";

#[test]
fn allow_by_principal_method_and_path() {
    let state = with_policies(&ap("charge", "bookinfo", CHARGE));
    let r = http_rbacs(&state, &ratings());
    assert_eq!(actions(&r), [rbac::rbac::Action::Allow]);
    let p = &r[0].policies["ns[bookinfo]-policy[charge]-rule[0]"];
    use rbac::principal::{Authenticated, Identifier};
    assert_eq!(
        p.principals[0].identifier,
        Some(Identifier::Authenticated(Authenticated {
            principal_name: Some(wire::matcher::StringMatcher {
                ignore_case: false,
                match_pattern: Some(wire::matcher::string_matcher::MatchPattern::Exact(A.into()))
            })
        }))
    );
    assert!(decide(&r, &from(A, "POST", "/api/v1/charge")));
    assert!(decide(&r, &from(A, "POST", "/api/v1/charge?amount=5")));
    assert!(!decide(&r, &from(A, "GET", "/api/v1/charge")));
    assert!(!decide(&r, &from(A, "POST", "/api/v1/charge/x")));
    assert!(!decide(&r, &from(B, "POST", "/api/v1/charge")));
    let plaintext = Req {
        principal: None,
        ..from(A, "POST", "/api/v1/charge")
    };
    assert!(!decide(&r, &plaintext));
    // The selector: productpage's sidecar gets no filter.
    let l: Listener = get(&run(&state, &productpage()), "virtualInbound");
    assert!(l
        .filter_chains
        .iter()
        .all(|c| c.filters.iter().all(|f| f.name != NETWORK_RBAC)));
}

#[test]
fn deny_beats_allow_and_audit_comes_first() {
    let state = with_policies(
        &(ap("charge", "bookinfo", CHARGE)
            + &ap(
                "no-frontend",
                "bookinfo",
                "{action: DENY, rules: [{from: [{source: {principals: ['*/sa/frontend']}}]}]}",
            )
            + &ap(
                "audit",
                "istio-system",
                "{action: AUDIT, rules: [{to: [{operation: {methods: [POST]}}]}]}",
            )),
    );
    let r = http_rbacs(&state, &ratings());
    use rbac::rbac::Action;
    assert_eq!(actions(&r), [Action::Log, Action::Deny, Action::Allow]);
    assert_eq!(
        policy_names(&r[0]),
        ["ns[istio-system]-policy[audit]-rule[0]"]
    );
    assert!(!decide(&r, &from(A, "POST", "/api/v1/charge")));
    assert!(!decide(&r, &from(B, "POST", "/api/v1/charge")));
}

#[test]
fn wildcards_namespaces_and_not_forms() {
    let state = with_policies(&ap(
        "mixed",
        "bookinfo",
        "{rules: [
           {from: [{source: {namespaces: [shop], notPrincipals: ['cluster.local/ns/shop/sa/cart']}}],
            to: [{operation: {paths: ['/public/*', '*.png', /exact], notMethods: [DELETE]}}]},
           {from: [{source: {principals: ['cluster.local/ns/bookinfo/*']}}],
            to: [{operation: {hosts: ['*.svc.cluster.local:9080'], notPaths: ['/admin*']}}]},
           {to: [{operation: {paths: ['*'], ports: ['9090']}}]}
         ]}",
    ));
    let r = http_rbacs(&state, &ratings());
    assert_eq!(
        policy_names(&r[0]),
        [
            "ns[bookinfo]-policy[mixed]-rule[0]",
            "ns[bookinfo]-policy[mixed]-rule[1]",
            "ns[bookinfo]-policy[mixed]-rule[2]"
        ]
    );
    let cart = "spiffe://cluster.local/ns/shop/sa/cart";
    // Rule 0: from namespace shop, except cart.
    assert!(decide(&r, &from(A, "GET", "/public/index.html")));
    assert!(decide(&r, &from(A, "GET", "/img/a.png")));
    assert!(decide(&r, &from(A, "PUT", "/exact")));
    assert!(!decide(&r, &from(A, "DELETE", "/exact")));
    assert!(!decide(&r, &from(A, "GET", "/exact/")));
    assert!(!decide(&r, &from(A, "GET", "/public")));
    assert!(!decide(&r, &from(cart, "GET", "/public/x")));
    // Rule 1: bookinfo principals, host suffix (any case), not /admin*.
    assert!(decide(&r, &from(B, "DELETE", "/anything")));
    let upper = Req {
        host: "RATINGS.bookinfo.SVC.cluster.local:9080",
        ..from(B, "GET", "/x")
    };
    assert!(decide(&r, &upper));
    assert!(!decide(&r, &from(B, "GET", "/admin/users")));
    let other_host = Req {
        host: "evil.example.com",
        ..from(B, "GET", "/x")
    };
    assert!(!decide(&r, &other_host));
    // Rule 2: any path on port 9090, from anyone (even plaintext).
    let on_9090 = Req {
        principal: None,
        port: 9090,
        ..from(B, "GET", "/x")
    };
    assert!(decide(&r, &on_9090));
}

#[test]
fn path_templates_become_anchored_regexes() {
    assert_eq!(
        crate::rbac::path_template_regex("/a.b/{*}/c/{**}"),
        "/a\\.b/[^/]+/c/.*"
    );
    let state = with_policies(&ap(
        "templates",
        "bookinfo",
        "{rules: [{to: [{operation: {paths: ['/v1/{*}/charge']}}]}]}",
    ));
    let r = http_rbacs(&state, &ratings());
    let p = &r[0].policies["ns[bookinfo]-policy[templates]-rule[0]"];
    let Some(rbac::permission::Rule::UrlPath(m)) = &p.permissions[0].rule else {
        panic!("{p:?}")
    };
    let Some(wire::matcher::path_matcher::Rule::Path(s)) = &m.rule else {
        panic!()
    };
    assert_eq!(
        s.match_pattern,
        Some(wire::matcher::string_matcher::MatchPattern::SafeRegex(
            wire::regex("/v1/[^/]+/charge")
        ))
    );
}

#[test]
fn ip_blocks_and_when_conditions() {
    let state = with_policies(&ap(
        "by-ip",
        "bookinfo",
        "{rules: [
           {from: [{source: {ipBlocks: [10.1.0.0/16], notIpBlocks: [10.1.1.66]}}],
            when: [{key: 'request.headers[x-token]', values: ['secret-*']},
                   {key: source.namespace, values: [shop]},
                   {key: destination.port, notValues: ['9091']}]},
           {when: [{key: source.ip, values: [192.168.0.0/24]},
                   {key: source.principal, values: ['*']}]}
         ]}",
    ));
    let r = http_rbacs(&state, &ratings());
    let with = |ip, token| Req {
        source_ip: ip,
        headers: vec![("x-token", token)],
        ..from(A, "GET", "/")
    };
    assert!(decide(&r, &with("10.1.1.10", "secret-1")));
    assert!(!decide(&r, &with("10.1.1.10", "public")));
    assert!(!decide(&r, &with("10.1.1.66", "secret-1")));
    assert!(!decide(&r, &with("10.2.0.1", "secret-1")));
    let wrong_port = Req {
        port: 9091,
        ..with("10.1.1.10", "secret-1")
    };
    assert!(!decide(&r, &wrong_port));
    let bookinfo_peer = Req {
        principal: Some(B),
        ..with("10.1.1.10", "secret-1")
    };
    assert!(!decide(&r, &bookinfo_peer));
    // Rule 1: the subnet, any authenticated peer.
    assert!(decide(&r, &with("192.168.0.7", "")));
    let plaintext = Req {
        principal: None,
        ..with("192.168.0.7", "")
    };
    assert!(!decide(&r, &plaintext));
}

#[test]
fn tcp_context_drops_allow_rules_and_broadens_deny_rules() {
    // mysqldb's inbound port is TCP: the network RBAC filter.
    let state = with_policies(
        &(ap(
            "mysql",
            "bookinfo",
            "{selector: {matchLabels: {app: mysqldb}}, rules: [
               {from: [{source: {principals: ['cluster.local/ns/shop/sa/frontend']}}],
                to: [{operation: {ports: ['3306']}}]},
               {from: [{source: {principals: ['*']}}], to: [{operation: {methods: [GET]}}]}
             ]}",
        ) + &ap(
            "no-admin",
            "bookinfo",
            "{selector: {matchLabels: {app: mysqldb}}, action: DENY, rules: [
               {from: [{source: {namespaces: [legacy]}}], to: [{operation: {paths: ['/admin']}}]}
             ]}",
        )),
    );
    let r = tcp_rbacs(&state, &mysqldb(), "inbound_10.0.0.50_3306");
    use rbac::rbac::Action;
    assert_eq!(actions(&r), [Action::Deny, Action::Allow]);
    // The ALLOW rule with `methods` is gone; the DENY rule lost `paths`.
    assert_eq!(policy_names(&r[1]), ["ns[bookinfo]-policy[mysql]-rule[0]"]);
    assert_eq!(
        policy_names(&r[0]),
        ["ns[bookinfo]-policy[no-admin]-rule[0]"]
    );
    let conn = |principal| Req {
        principal: Some(principal),
        source_ip: "10.1.1.10",
        port: 3306,
        tcp: true,
        ..Default::default()
    };
    assert!(decide(&r, &conn(A)));
    assert!(!decide(&r, &conn(B)));
    // Any legacy peer is refused outright (the DENY rule broadened).
    assert!(!decide(&r, &conn("spiffe://cluster.local/ns/legacy/sa/a")));

    // An ALLOW policy whose every rule is HTTP-only denies all TCP.
    let state = with_policies(&ap(
        "get-only",
        "bookinfo",
        "{selector: {matchLabels: {app: mysqldb}}, rules: [{to: [{operation: {methods: [GET]}}]}]}",
    ));
    let r = tcp_rbacs(&state, &mysqldb(), "inbound_10.0.0.50_3306");
    assert_eq!(actions(&r), [Action::Allow]);
    assert!(r[0].policies.is_empty());
    assert!(!decide(&r, &conn(A)));
}

#[test]
fn request_principals_never_match() {
    // No JWT authentication yet: an ALLOW rule needing a request
    // principal is dropped, a DENY rule ignores the field (denies more).
    let state = with_policies(
        &(ap(
            "jwt",
            "bookinfo",
            "{rules: [{from: [{source: {requestPrincipals: ['*']}}]},
                      {to: [{operation: {paths: [/health]}}]}]}",
        ) + &ap(
            "jwt-deny",
            "bookinfo",
            "{action: DENY, rules: [{from: [{source: {notRequestPrincipals: ['*']}}],
                                     to: [{operation: {paths: ['/admin/*']}}]}]}",
        )),
    );
    let r = http_rbacs(&state, &ratings());
    assert_eq!(policy_names(&r[1]), ["ns[bookinfo]-policy[jwt]-rule[1]"]);
    assert!(decide(&r, &from(A, "GET", "/health")));
    assert!(!decide(&r, &from(A, "GET", "/other")));
    assert!(!decide(&r, &from(A, "GET", "/admin/x")));
}

#[test]
fn every_inbound_chain_gets_the_filters() {
    // PERMISSIVE with an identity: an mTLS chain and a plaintext chain,
    // both with the filters (http_filters asserts they are equal); in the
    // redirect layout the passthrough chain gets the TCP filter.
    let state = with_policies(&ap("charge", "bookinfo", CHARGE));
    let mut node = ratings();
    node.identity = IdentitySource::Csr;
    let opts = Options {
        trust_bundle_pem: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n".into(),
        ..Options::default()
    };
    let l: Listener = get(&translate(&state, &node, &opts), "inbound_10.0.0.40_9080");
    assert_eq!(l.filter_chains.len(), 2);
    for c in &l.filter_chains {
        let names: Vec<String> = hcm_of(c).http_filters.into_iter().map(|f| f.name).collect();
        assert_eq!(names, [HTTP_RBAC, "envoy.filters.http.router"]);
    }
    let redirect = proxy("bookinfo", "10.0.0.40", Interception::Redirect);
    let vi: Listener = get(&run(&state, &redirect), "virtualInbound");
    let catchall = vi.filter_chains.last().unwrap();
    assert_eq!(catchall.name, "virtualInbound-catchall-tcp");
    let names: Vec<&str> = catchall.filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, [NETWORK_RBAC, "envoy.filters.network.tcp_proxy"]);
}

#[test]
fn output_is_deterministic() {
    let yaml = ap("charge", "bookinfo", CHARGE)
        + &ap(
            "b",
            "bookinfo",
            "{rules: [{}, {to: [{operation: {ports: ['1']}}]}]}",
        )
        + &ap(
            "a",
            "istio-system",
            "{rules: [{from: [{source: {namespaces: [x, y]}}]}]}",
        )
        + &ap("d", "bookinfo", "{action: DENY, rules: [{}, {}, {}]}");
    let state = with_policies(&yaml);
    let mut shuffled = state.clone();
    shuffled.istio.authorization_policies.reverse();
    let one = run(&state, &ratings());
    for _ in 0..3 {
        assert_eq!(run(&state, &ratings()), one);
        assert_eq!(run(&shuffled, &ratings()), one);
    }
    // The policies are encoded in name order.
    let r = http_rbacs(&state, &ratings());
    assert_eq!(
        policy_names(&r[1]),
        [
            "ns[bookinfo]-policy[b]-rule[0]",
            "ns[bookinfo]-policy[b]-rule[1]",
            "ns[bookinfo]-policy[charge]-rule[0]",
            "ns[istio-system]-policy[a]-rule[0]"
        ]
    );
}
