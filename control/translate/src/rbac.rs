//! AuthorizationPolicy → Envoy RBAC filters on the inbound side, the way
//! istiod builds them.
//!
//! Which policies apply: those in the root namespace `istio-system`
//! (mesh-wide) and in the workload's namespace, without a selector or
//! with `selector.matchLabels` matching the workload's labels. `CUSTOM`
//! never gets here (the model rejects it, RM0005).
//!
//! Filters, per action, on every inbound HTTP connection manager (before
//! the router) and every inbound TCP chain (before `tcp_proxy`):
//! `AUDIT` (Envoy action `LOG`, never blocks, so it sees every request),
//! then `DENY`, then `ALLOW`. An action with no policy gets no filter,
//! except that an applying `ALLOW` policy without (usable) rules still
//! yields an `ALLOW` filter with no policies: deny all, as in Istio.
//!
//! One Envoy policy per rule, named `ns[NS]-policy[NAME]-rule[I]`; a rule
//! is `principals: [AND(from-ORs, principal conditions)]` and
//! `permissions: [AND(to-ORs, permission conditions)]`, `any` where
//! nothing constrains it. Values inside a field are OR-ed; `notX` is
//! `not_id`/`not_rule` of the OR.
//!
//! Fields a context cannot evaluate — HTTP-only fields (`hosts`,
//! `methods`, `paths`, `request.headers[...]`) on a TCP chain, and
//! attributes Ringmesh does not produce (`requestPrincipals`,
//! `request.auth.*`, `experimental.*`; the model warns about them) — are
//! handled as istiod handles HTTP fields in TCP: an `ALLOW` or `AUDIT`
//! rule that uses one is dropped (it can never match, so it allows
//! less), a `DENY` rule drops just those fields (it matches more broadly,
//! so it denies more). Never fail open.
//!
//! The RBAC `policies` field is a protobuf map, which the generated types
//! hold in a `HashMap` (encoding order varies); the filter configs are
//! therefore encoded through the small mirror messages below, with the
//! map entries in sorted order, so the output is byte-for-byte
//! deterministic. The wire format is the same.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use ringmesh_istio::{
    security::authorization_policy::{Action, AuthorizationPolicy, Condition, Rule},
    Resource,
};
use ringmesh_registry::MeshState;
use tracing::warn;

use crate::{
    view::{selects, View, ROOT_NAMESPACE},
    wire::{self, core, hcm, listener, matcher, route},
};

/// The HTTP filter's name (one per action, as Istio does).
pub(crate) const HTTP_RBAC: &str = "envoy.filters.http.rbac";
/// The network filter's name.
pub(crate) const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
/// The network filter's stat prefix (Istio's).
const TCP_STAT_PREFIX: &str = "tcp.";

/// The generated RBAC types, for the tests.
#[cfg(test)]
pub(crate) mod pb {
    pub(crate) use envoy_types::pb::envoy::{
        config::rbac::v3 as rbac,
        extensions::filters::{http::rbac::v3 as http_rbac, network::rbac::v3 as network_rbac},
    };
}

// ---------------------------------------------------------------------------
// Deterministic mirrors of the filter configurations
// ---------------------------------------------------------------------------

/// `envoy.config.rbac.v3.RBAC` with `policies` as sorted map entries.
#[derive(Clone, PartialEq, prost::Message)]
struct RulesConfig {
    #[prost(int32, tag = "1")]
    action: i32,
    #[prost(message, repeated, tag = "2")]
    policies: Vec<PolicyEntry>,
}

/// One `map<string, Policy>` entry.
#[derive(Clone, PartialEq, prost::Message)]
struct PolicyEntry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<rbac::Policy>,
}

/// `envoy.extensions.filters.http.rbac.v3.RBAC` (`rules` only).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HttpRbac {
    #[prost(message, optional, tag = "1")]
    rules: Option<RulesConfig>,
}

impl prost::Name for HttpRbac {
    const NAME: &'static str = "RBAC";
    const PACKAGE: &'static str = "envoy.extensions.filters.http.rbac.v3";
    fn full_name() -> String {
        "envoy.extensions.filters.http.rbac.v3.RBAC".into()
    }
    fn type_url() -> String {
        "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC".into()
    }
}

/// `envoy.extensions.filters.network.rbac.v3.RBAC` (`rules`, `stat_prefix`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NetworkRbac {
    #[prost(message, optional, tag = "1")]
    rules: Option<RulesConfig>,
    #[prost(string, tag = "3")]
    stat_prefix: String,
}

impl prost::Name for NetworkRbac {
    const NAME: &'static str = "RBAC";
    const PACKAGE: &'static str = "envoy.extensions.filters.network.rbac.v3";
    fn full_name() -> String {
        "envoy.extensions.filters.network.rbac.v3.RBAC".into()
    }
    fn type_url() -> String {
        "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC".into()
    }
}

// ---------------------------------------------------------------------------
// Which policies, which filters
// ---------------------------------------------------------------------------

/// The RBAC filters of a proxy's inbound side, built once per proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct InboundAuthz {
    /// HTTP filters to put before the router (AUDIT, DENY, ALLOW).
    pub http: Vec<hcm::HttpFilter>,
    /// Network filters to put before `tcp_proxy`.
    pub tcp: Vec<listener::Filter>,
}

/// The policies that apply to the proxy's workload, by namespace/name.
pub(crate) fn applicable<'a>(
    policies: &'a [Resource<AuthorizationPolicy>],
    namespace: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Vec<&'a Resource<AuthorizationPolicy>> {
    let mut out: Vec<&Resource<AuthorizationPolicy>> = policies
        .iter()
        .filter(|ap| ap.meta.namespace == ROOT_NAMESPACE || ap.meta.namespace == namespace)
        .filter(|ap| {
            ap.spec
                .selector
                .as_ref()
                .is_none_or(|s| selects(&s.match_labels, labels))
        })
        .collect();
    out.sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    out
}

/// The inbound RBAC filters of the proxy of `view`.
pub(crate) fn inbound(view: &View, state: &MeshState) -> InboundAuthz {
    let policies = applicable(
        &state.istio.authorization_policies,
        &view.proxy.namespace,
        &view.proxy.labels,
    );
    build(&policies, &view.opts.trust_domain)
}

/// The filters for `policies` (already in namespace/name order).
pub(crate) fn build(
    policies: &[&Resource<AuthorizationPolicy>],
    trust_domain: &str,
) -> InboundAuthz {
    let mut out = InboundAuthz::default();
    for action in [Action::Audit, Action::Deny, Action::Allow] {
        let of_action: Vec<_> = policies
            .iter()
            .filter(|ap| ap.spec.action == action)
            .collect();
        if of_action.is_empty() {
            continue;
        }
        for ctx in [Ctx::Http, Ctx::Tcp] {
            let mut entries = Vec::new();
            for ap in &of_action {
                for (i, rule) in ap.spec.rules.iter().enumerate() {
                    if let Some(policy) = rule_policy(rule, action, ctx, trust_domain) {
                        entries.push(PolicyEntry {
                            key: policy_name(&ap.meta.namespace, &ap.meta.name, i),
                            value: Some(policy),
                        });
                    }
                }
            }
            // No policy: DENY denies nothing and AUDIT logs nothing, so
            // no filter; ALLOW with none allows nothing, so keep it.
            if entries.is_empty() && action != Action::Allow {
                continue;
            }
            entries.sort_by(|a, b| a.key.cmp(&b.key));
            let rules = RulesConfig {
                action: envoy_action(action) as i32,
                policies: entries,
            };
            match ctx {
                Ctx::Http => out.http.push(hcm::HttpFilter {
                    name: HTTP_RBAC.into(),
                    config_type: Some(hcm::http_filter::ConfigType::TypedConfig(wire::any(
                        &HttpRbac { rules: Some(rules) },
                    ))),
                    ..Default::default()
                }),
                Ctx::Tcp => out.tcp.push(wire::network_filter(
                    NETWORK_RBAC,
                    &NetworkRbac {
                        rules: Some(rules),
                        stat_prefix: TCP_STAT_PREFIX.into(),
                    },
                )),
            }
        }
    }
    for ap in policies
        .iter()
        .filter(|ap| ap.spec.action == Action::Custom)
    {
        // The model rejects CUSTOM; should one get here, say so.
        warn!(
            policy = %ap.reference(),
            "CUSTOM authorization is not supported; the policy is not applied"
        );
    }
    out
}

/// istiod's policy name: `ns[NS]-policy[NAME]-rule[I]`.
pub(crate) fn policy_name(namespace: &str, name: &str, rule: usize) -> String {
    format!("ns[{namespace}]-policy[{name}]-rule[{rule}]")
}

fn envoy_action(action: Action) -> rbac::rbac::Action {
    match action {
        Action::Allow => rbac::rbac::Action::Allow,
        Action::Deny | Action::Custom => rbac::rbac::Action::Deny,
        Action::Audit => rbac::rbac::Action::Log,
    }
}

/// Where the filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Http,
    Tcp,
}

// ---------------------------------------------------------------------------
// One rule
// ---------------------------------------------------------------------------

/// Collects the parts of one rule, and whether a part could not be
/// evaluated in this context.
struct RuleBuilder<'a> {
    ctx: Ctx,
    trust_domain: &'a str,
    /// A field this context cannot evaluate was left out.
    skipped: bool,
}

impl RuleBuilder<'_> {
    /// Can this context evaluate a field? HTTP-only fields are usable in
    /// an HTTP context; `supported: false` fields nowhere.
    fn usable(&mut self, http_only: bool, supported: bool) -> bool {
        let ok = supported && (!http_only || self.ctx == Ctx::Http);
        if !ok {
            self.skipped = true;
        }
        ok
    }
}

/// The Envoy policy of one rule; `None` when the rule is dropped (an
/// ALLOW/AUDIT rule using a field the context cannot evaluate).
fn rule_policy(rule: &Rule, action: Action, ctx: Ctx, trust_domain: &str) -> Option<rbac::Policy> {
    let mut b = RuleBuilder {
        ctx,
        trust_domain,
        skipped: false,
    };
    let mut principals = Vec::new();
    let mut permissions = Vec::new();

    // from: OR of sources, each an AND of its fields.
    if !rule.from.is_empty() {
        let sources: Vec<rbac::Principal> = rule
            .from
            .iter()
            .map(|f| {
                let parts = f
                    .source
                    .as_ref()
                    .map(|s| source(&mut b, s))
                    .unwrap_or_default();
                and_ids(parts)
            })
            .collect();
        principals.push(or_ids(sources));
    }
    // to: OR of operations, each an AND of its fields.
    if !rule.to.is_empty() {
        let operations: Vec<rbac::Permission> = rule
            .to
            .iter()
            .map(|t| {
                let parts = t
                    .operation
                    .as_ref()
                    .map(|o| operation(&mut b, o))
                    .unwrap_or_default();
                and_rules(parts)
            })
            .collect();
        permissions.push(or_rules(operations));
    }
    for c in &rule.when {
        match condition(&mut b, c) {
            Some(Cond::Principal(p)) => principals.push(p),
            Some(Cond::Permission(p)) => permissions.push(p),
            None => {}
        }
    }
    if b.skipped && action != Action::Deny {
        return None;
    }
    Some(rbac::Policy {
        permissions: vec![and_rules(permissions)],
        principals: vec![and_ids(principals)],
        ..Default::default()
    })
}

/// A field's values OR-ed, or `not_id` of that OR for a `notX` field.
fn principal_field(
    out: &mut Vec<rbac::Principal>,
    values: &[String],
    negate: bool,
    one: impl Fn(&str) -> rbac::Principal,
) {
    if values.is_empty() {
        return;
    }
    let or = or_ids(values.iter().map(|v| one(v)).collect());
    out.push(if negate { not_id(or) } else { or });
}

fn permission_field(
    out: &mut Vec<rbac::Permission>,
    values: &[String],
    negate: bool,
    one: impl Fn(&str) -> rbac::Permission,
) {
    if values.is_empty() {
        return;
    }
    let or = or_rules(values.iter().map(|v| one(v)).collect());
    out.push(if negate { not_rule(or) } else { or });
}

fn source(
    b: &mut RuleBuilder,
    s: &ringmesh_istio::security::authorization_policy::Source,
) -> Vec<rbac::Principal> {
    let td = b.trust_domain;
    let mut out = Vec::new();
    for (values, negate) in [(&s.principals, false), (&s.not_principals, true)] {
        principal_field(&mut out, values, negate, principal_name);
    }
    for (values, negate) in [(&s.namespaces, false), (&s.not_namespaces, true)] {
        principal_field(&mut out, values, negate, namespace);
    }
    for (values, negate) in [
        (&s.service_accounts, false),
        (&s.not_service_accounts, true),
    ] {
        principal_field(&mut out, values, negate, |v| service_account(td, v));
    }
    for (values, negate) in [(&s.ip_blocks, false), (&s.not_ip_blocks, true)] {
        principal_field(&mut out, values, negate, |v| {
            principal(rbac::principal::Identifier::DirectRemoteIp(cidr(v)))
        });
    }
    for (values, negate) in [
        (&s.remote_ip_blocks, false),
        (&s.not_remote_ip_blocks, true),
    ] {
        principal_field(&mut out, values, negate, |v| {
            principal(rbac::principal::Identifier::RemoteIp(cidr(v)))
        });
    }
    // Request principals need JWT authentication, which Ringmesh does not
    // do yet: no request has one.
    if !(s.request_principals.is_empty() && s.not_request_principals.is_empty()) {
        b.usable(true, false);
    }
    out
}

fn operation(
    b: &mut RuleBuilder,
    o: &ringmesh_istio::security::authorization_policy::Operation,
) -> Vec<rbac::Permission> {
    let mut out = Vec::new();
    if !(o.hosts.is_empty() && o.not_hosts.is_empty()) && b.usable(true, true) {
        for (values, negate) in [(&o.hosts, false), (&o.not_hosts, true)] {
            permission_field(&mut out, values, negate, |v| {
                permission_header(":authority", wildcard(v, "", true))
            });
        }
    }
    for (values, negate) in [(&o.ports, false), (&o.not_ports, true)] {
        permission_field(&mut out, values, negate, destination_port);
    }
    if !(o.methods.is_empty() && o.not_methods.is_empty()) && b.usable(true, true) {
        for (values, negate) in [(&o.methods, false), (&o.not_methods, true)] {
            permission_field(&mut out, values, negate, |v| {
                permission_header(":method", wildcard(v, "", false))
            });
        }
    }
    if !(o.paths.is_empty() && o.not_paths.is_empty()) && b.usable(true, true) {
        for (values, negate) in [(&o.paths, false), (&o.not_paths, true)] {
            permission_field(&mut out, values, negate, path);
        }
    }
    out
}

enum Cond {
    Principal(rbac::Principal),
    Permission(rbac::Permission),
}

/// How one condition value becomes a matcher.
enum OneValue<'a> {
    Principal(Box<dyn Fn(&str) -> rbac::Principal + 'a>),
    Permission(Box<dyn Fn(&str) -> rbac::Permission + 'a>),
}

fn condition(b: &mut RuleBuilder, c: &Condition) -> Option<Cond> {
    let td = b.trust_domain;
    let key = c.key.as_str();
    let header_name = key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'));
    let one = if let Some(name) = header_name {
        if !b.usable(true, true) {
            return None;
        }
        OneValue::Principal(Box::new(move |v| principal_header(name, v)))
    } else {
        match key {
            "source.ip" => OneValue::Principal(Box::new(|v| {
                principal(rbac::principal::Identifier::DirectRemoteIp(cidr(v)))
            })),
            "remote.ip" => OneValue::Principal(Box::new(|v| {
                principal(rbac::principal::Identifier::RemoteIp(cidr(v)))
            })),
            "source.principal" => OneValue::Principal(Box::new(principal_name)),
            "source.namespace" => OneValue::Principal(Box::new(namespace)),
            "source.serviceAccount" => {
                OneValue::Principal(Box::new(move |v| service_account(td, v)))
            }
            "destination.ip" => OneValue::Permission(Box::new(|v| rbac::Permission {
                rule: Some(rbac::permission::Rule::DestinationIp(cidr(v))),
            })),
            "destination.port" => OneValue::Permission(Box::new(destination_port)),
            "connection.sni" => OneValue::Permission(Box::new(|v| rbac::Permission {
                rule: Some(rbac::permission::Rule::RequestedServerName(wildcard(
                    v, "", false,
                ))),
            })),
            // request.auth.* (no JWT authentication yet), experimental.*,
            // anything else the model let through.
            _ => {
                b.usable(key.starts_with("request."), false);
                return None;
            }
        }
    };
    Some(match one {
        OneValue::Principal(one) => {
            let mut parts = Vec::new();
            principal_field(&mut parts, &c.values, false, &one);
            principal_field(&mut parts, &c.not_values, true, &one);
            Cond::Principal(and_ids(parts))
        }
        OneValue::Permission(one) => {
            let mut parts = Vec::new();
            permission_field(&mut parts, &c.values, false, &one);
            permission_field(&mut parts, &c.not_values, true, &one);
            Cond::Permission(and_rules(parts))
        }
    })
}

/// A port (validated by the model).
fn destination_port(v: &str) -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::DestinationPort(
            v.parse::<u16>().map_or(0, u32::from),
        )),
    }
}

// ---------------------------------------------------------------------------
// Matchers
// ---------------------------------------------------------------------------

/// Istio's wildcard strings: `*` any non-empty value, `*suffix`,
/// `prefix*` (the `prefix` put in front, e.g. `spiffe://`), else exact.
fn wildcard(v: &str, prefix: &str, ignore_case: bool) -> matcher::StringMatcher {
    use matcher::string_matcher::MatchPattern;
    let pattern = if v == "*" {
        MatchPattern::SafeRegex(wire::regex(".+"))
    } else if let Some(suffix) = v.strip_prefix('*') {
        MatchPattern::Suffix(suffix.to_owned())
    } else if let Some(p) = v.strip_suffix('*') {
        MatchPattern::Prefix(format!("{prefix}{p}"))
    } else {
        MatchPattern::Exact(format!("{prefix}{v}"))
    };
    matcher::StringMatcher {
        ignore_case,
        match_pattern: Some(pattern),
    }
}

fn principal(id: rbac::principal::Identifier) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(id),
    }
}

fn authenticated(m: matcher::StringMatcher) -> rbac::Principal {
    principal(rbac::principal::Identifier::Authenticated(
        rbac::principal::Authenticated {
            principal_name: Some(m),
        },
    ))
}

/// `cluster.local/ns/default/sa/a` → the peer's URI SAN
/// `spiffe://cluster.local/ns/default/sa/a`, with Istio's wildcards.
fn principal_name(v: &str) -> rbac::Principal {
    authenticated(wildcard(v, "spiffe://", false))
}

/// RE2 metacharacters escaped.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A namespace, as istiod matches it: the peer's principal contains
/// `/ns/NS/` (`*` within the name matches anything).
fn namespace(v: &str) -> rbac::Principal {
    let ns = v
        .split('*')
        .map(regex_escape)
        .collect::<Vec<_>>()
        .join(".*");
    authenticated(matcher::StringMatcher {
        ignore_case: false,
        match_pattern: Some(matcher::string_matcher::MatchPattern::SafeRegex(
            wire::regex(&format!(".*/ns/{ns}/.*")),
        )),
    })
}

/// `namespace/name` → `spiffe://TD/ns/namespace/sa/name`.
fn service_account(trust_domain: &str, v: &str) -> rbac::Principal {
    let (ns, sa) = v.split_once('/').unwrap_or(("", v));
    authenticated(matcher::StringMatcher {
        ignore_case: false,
        match_pattern: Some(matcher::string_matcher::MatchPattern::Exact(format!(
            "spiffe://{trust_domain}/ns/{ns}/sa/{sa}"
        ))),
    })
}

/// An IP or CIDR (validated by the model); an unparsable one becomes a
/// range no address is in... never reached, but never `0.0.0.0/0`.
fn cidr(v: &str) -> core::CidrRange {
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().ok()),
        None => (v, None),
    };
    let full = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => 32,
        Ok(IpAddr::V6(_)) => 128,
        Err(_) => 128,
    };
    core::CidrRange {
        address_prefix: if addr.parse::<IpAddr>().is_ok() {
            addr.to_owned()
        } else {
            "::".to_owned()
        },
        prefix_len: Some(wire::u32v(len.unwrap_or(full).min(full))),
    }
}

fn header(name: &str, v: &str, ignore_case: bool) -> route::HeaderMatcher {
    use route::header_matcher::HeaderMatchSpecifier;
    let spec = if v == "*" {
        HeaderMatchSpecifier::PresentMatch(true)
    } else {
        HeaderMatchSpecifier::StringMatch(wildcard(v, "", ignore_case))
    };
    route::HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

/// `request.headers[NAME]` values (Istio: a principal attribute).
fn principal_header(name: &str, v: &str) -> rbac::Principal {
    principal(rbac::principal::Identifier::Header(header(name, v, false)))
}

fn permission_header(name: &str, m: matcher::StringMatcher) -> rbac::Permission {
    use route::header_matcher::HeaderMatchSpecifier;
    let spec = match &m.match_pattern {
        Some(matcher::string_matcher::MatchPattern::SafeRegex(r)) if r.regex == ".+" => {
            HeaderMatchSpecifier::PresentMatch(true)
        }
        _ => HeaderMatchSpecifier::StringMatch(m),
    };
    rbac::Permission {
        rule: Some(rbac::permission::Rule::Header(route::HeaderMatcher {
            name: name.to_owned(),
            header_match_specifier: Some(spec),
            ..Default::default()
        })),
    }
}

/// Paths (the path without the query, after the connection manager's
/// normalization): exact, `/x/*` prefix, `*.ext` suffix, `*` any;
/// `{*}` (one segment) and `{**}` (the rest) templates as an anchored
/// RE2 regex (`[^/]+`, `.*`) rather than Envoy's `uri_template` matcher,
/// which ringmesh-proxy does not read.
fn path(v: &str) -> rbac::Permission {
    let matcher = if v.contains('{') {
        matcher::StringMatcher {
            ignore_case: false,
            match_pattern: Some(matcher::string_matcher::MatchPattern::SafeRegex(
                wire::regex(&path_template_regex(v)),
            )),
        }
    } else {
        wildcard(v, "", false)
    };
    rbac::Permission {
        rule: Some(rbac::permission::Rule::UrlPath(matcher::PathMatcher {
            rule: Some(matcher::path_matcher::Rule::Path(matcher)),
        })),
    }
}

/// `/a/{*}/b/{**}` → `/a/[^/]+/b/.*` (the model allows `{*}`/`{**}` only
/// as whole segments, `{**}` last).
pub(crate) fn path_template_regex(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{*}" => "[^/]+".to_owned(),
            "{**}" => ".*".to_owned(),
            other => regex_escape(other),
        })
        .collect::<Vec<_>>()
        .join("/")
}

// ---------------------------------------------------------------------------
// Sets
// ---------------------------------------------------------------------------

fn any_principal() -> rbac::Principal {
    principal(rbac::principal::Identifier::Any(true))
}

fn any_permission() -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::Any(true)),
    }
}

/// AND of ids; none is `any`, one is itself (Envoy requires non-empty sets).
fn and_ids(mut ids: Vec<rbac::Principal>) -> rbac::Principal {
    match ids.len() {
        0 => any_principal(),
        1 => ids.remove(0),
        _ => principal(rbac::principal::Identifier::AndIds(rbac::principal::Set {
            ids,
        })),
    }
}

/// OR of ids; only called with at least one.
fn or_ids(mut ids: Vec<rbac::Principal>) -> rbac::Principal {
    match ids.len() {
        0 => any_principal(),
        1 => ids.remove(0),
        _ => principal(rbac::principal::Identifier::OrIds(rbac::principal::Set {
            ids,
        })),
    }
}

fn not_id(id: rbac::Principal) -> rbac::Principal {
    principal(rbac::principal::Identifier::NotId(Box::new(id)))
}

fn and_rules(mut rules: Vec<rbac::Permission>) -> rbac::Permission {
    match rules.len() {
        0 => any_permission(),
        1 => rules.remove(0),
        _ => rbac::Permission {
            rule: Some(rbac::permission::Rule::AndRules(rbac::permission::Set {
                rules,
            })),
        },
    }
}

fn or_rules(mut rules: Vec<rbac::Permission>) -> rbac::Permission {
    match rules.len() {
        0 => any_permission(),
        1 => rules.remove(0),
        _ => rbac::Permission {
            rule: Some(rbac::permission::Rule::OrRules(rbac::permission::Set {
                rules,
            })),
        },
    }
}

fn not_rule(rule: rbac::Permission) -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::NotRule(Box::new(rule))),
    }
}
