//! Authorization: Envoy's RBAC filters (`envoy.filters.http.rbac`,
//! `envoy.filters.network.rbac`, as istiod generates them from Istio
//! AuthorizationPolicy), as a listener's `rbac:` chain.
//!
//! The model ([`RbacFilterSpec`] and below) mirrors Envoy's
//! `config.rbac.v3` messages field for field in snake_case, so the static
//! YAML and the xDS translation say the same thing and go through one
//! [`compile_chain`]. The compiled [`RbacChain`] lives in the `Snapshot`;
//! the shard evaluates it per request (HTTP) or per connection (TCP)
//! without allocating: string and header matchers are the route table's
//! compiled ones, CIDRs are masks, principals are compared against the
//! peer's verified SPIFFE ID.
//!
//! Semantics (Envoy's): the filters run in order and the first denial
//! wins. A filter's `rules` with action `ALLOW` deny when no policy
//! matches; `DENY` deny when one does; `LOG` never deny (they mark the
//! request for audit). `shadow_rules` are evaluated and counted, never
//! enforced. A policy matches when any of its permissions and any of its
//! principals match. A filter without `rules` enforces nothing.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use ringmesh_route::{
    CompiledHeader, CompiledString, HeaderMatch, HeaderMatcher, Request, StringMatch, StringMatcher,
};
use serde::{Deserialize, Serialize};

use crate::model::HeaderMatchSpec;

// ---- the model ---------------------------------------------------------------------

/// One RBAC filter of a listener's chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RbacFilterSpec {
    /// A label for logs (Envoy's filter name / `stat_prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Enforced; absent: the filter enforces nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<RbacRulesSpec>,
    /// Evaluated and counted only (`ringmesh_rbac_shadow_*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_rules: Option<RbacRulesSpec>,
}

/// Envoy's `config.rbac.v3.RBAC`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RbacRulesSpec {
    pub action: RbacAction,
    /// Policy name → policy (names appear in logs).
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RbacAction {
    Allow,
    Deny,
    /// Istio's AUDIT: matched requests are logged, never blocked.
    Log,
}

impl RbacAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RbacAction::Allow => "ALLOW",
            RbacAction::Deny => "DENY",
            RbacAction::Log => "LOG",
        }
    }
}

/// Envoy's `Policy`: any permission and any principal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub permissions: Vec<PermissionSpec>,
    pub principals: Vec<PrincipalSpec>,
}

/// Envoy's `Permission` (the supported rules): exactly one field set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionSpec {
    /// Must be `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and_rules: Option<PermissionSetSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub or_rules: Option<PermissionSetSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_rule: Option<Box<PermissionSpec>>,
    /// `:method`, `:authority` (or `host`), `:path` (normalized, with the
    /// query) and other request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatchSpec>,
    /// The normalized path without the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_path: Option<StringMatchSpec>,
    /// CIDR (`10.0.0.0/8`) or IP of the connection's destination (the
    /// original destination on `original_dst` listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
    /// The SNI the client sent (TLS connections; empty otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_server_name: Option<StringMatchSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionSetSpec {
    pub rules: Vec<PermissionSpec>,
}

/// Envoy's `Principal` (the supported identifiers): exactly one field set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSpec {
    /// Must be `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and_ids: Option<PrincipalSetSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub or_ids: Option<PrincipalSetSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_id: Option<Box<PrincipalSpec>>,
    /// The peer's verified SPIFFE ID (URI SAN); without `principal_name`,
    /// any mTLS peer. A plaintext peer never matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<AuthenticatedSpec>,
    /// CIDR or IP of the downstream peer. There is no proxy protocol and
    /// no trusted `x-forwarded-for`: all three are the socket's peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_remote_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatchSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_path: Option<StringMatchSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSetSpec {
    pub ids: Vec<PrincipalSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticatedSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_name: Option<StringMatchSpec>,
}

/// The one rule a [`PermissionSpec`] holds.
enum PermRule<'a> {
    Any(bool),
    And(&'a [PermissionSpec]),
    Or(&'a [PermissionSpec]),
    Not(&'a PermissionSpec),
    Header(&'a HeaderMatchSpec),
    UrlPath(&'a StringMatchSpec),
    DestIp(&'a str),
    DestPort(u16),
    Sni(&'a StringMatchSpec),
}

impl PermissionSpec {
    fn rule(&self) -> Result<PermRule<'_>, String> {
        let mut set: Vec<(&str, PermRule<'_>)> = Vec::new();
        if let Some(v) = self.any {
            set.push(("any", PermRule::Any(v)));
        }
        if let Some(v) = &self.and_rules {
            set.push(("and_rules", PermRule::And(&v.rules)));
        }
        if let Some(v) = &self.or_rules {
            set.push(("or_rules", PermRule::Or(&v.rules)));
        }
        if let Some(v) = &self.not_rule {
            set.push(("not_rule", PermRule::Not(v)));
        }
        if let Some(v) = &self.header {
            set.push(("header", PermRule::Header(v)));
        }
        if let Some(v) = &self.url_path {
            set.push(("url_path", PermRule::UrlPath(v)));
        }
        if let Some(v) = &self.destination_ip {
            set.push(("destination_ip", PermRule::DestIp(v)));
        }
        if let Some(v) = self.destination_port {
            set.push(("destination_port", PermRule::DestPort(v)));
        }
        if let Some(v) = &self.requested_server_name {
            set.push(("requested_server_name", PermRule::Sni(v)));
        }
        one_of(
            set,
            "any, and_rules, or_rules, not_rule, header, url_path, destination_ip, \
             destination_port, requested_server_name",
        )
    }
}

/// The one identifier a [`PrincipalSpec`] holds.
enum PrincRule<'a> {
    Any(bool),
    And(&'a [PrincipalSpec]),
    Or(&'a [PrincipalSpec]),
    Not(&'a PrincipalSpec),
    Authenticated(&'a AuthenticatedSpec),
    Ip(&'static str, &'a str),
    Header(&'a HeaderMatchSpec),
    UrlPath(&'a StringMatchSpec),
}

impl PrincipalSpec {
    fn rule(&self) -> Result<PrincRule<'_>, String> {
        let mut set: Vec<(&str, PrincRule<'_>)> = Vec::new();
        if let Some(v) = self.any {
            set.push(("any", PrincRule::Any(v)));
        }
        if let Some(v) = &self.and_ids {
            set.push(("and_ids", PrincRule::And(&v.ids)));
        }
        if let Some(v) = &self.or_ids {
            set.push(("or_ids", PrincRule::Or(&v.ids)));
        }
        if let Some(v) = &self.not_id {
            set.push(("not_id", PrincRule::Not(v)));
        }
        if let Some(v) = &self.authenticated {
            set.push(("authenticated", PrincRule::Authenticated(v)));
        }
        for (k, v) in [
            ("source_ip", &self.source_ip),
            ("direct_remote_ip", &self.direct_remote_ip),
            ("remote_ip", &self.remote_ip),
        ] {
            if let Some(v) = v {
                set.push((k, PrincRule::Ip(k, v)));
            }
        }
        if let Some(v) = &self.header {
            set.push(("header", PrincRule::Header(v)));
        }
        if let Some(v) = &self.url_path {
            set.push(("url_path", PrincRule::UrlPath(v)));
        }
        one_of(
            set,
            "any, and_ids, or_ids, not_id, authenticated, source_ip, direct_remote_ip, \
             remote_ip, header, url_path",
        )
    }
}

fn one_of<T>(mut set: Vec<(&str, T)>, keys: &str) -> Result<T, String> {
    match set.len() {
        1 => Ok(set.pop().map(|(_, v)| v).expect("one element")),
        0 => Err(format!("one of {keys} is required")),
        _ => {
            let names: Vec<&str> = set.iter().map(|(k, _)| *k).collect();
            Err(format!(
                "only one rule may be given (got {})",
                names.join(" and ")
            ))
        }
    }
}

/// Envoy's `StringMatcher`: exactly one of `exact`, `prefix`, `suffix`,
/// `contains`, `regex` (full match).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatchSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_case: bool,
}

impl StringMatchSpec {
    pub fn exact(s: &str) -> StringMatchSpec {
        StringMatchSpec {
            exact: Some(s.into()),
            ..Default::default()
        }
    }
}

/// A listener's path normalization (Envoy HCM's `normalize_path`,
/// `merge_slashes`, `path_with_escaped_slashes_action`); every field
/// defaults to the safe choice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathNormalizationSpec {
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<bool>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_slashes: Option<bool>,
    /// Default `reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escaped_slashes: Option<EscapedSlashesSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashesSpec {
    Keep,
    Reject,
    UnescapeAndForward,
    UnescapeAndRedirect,
}

impl PathNormalizationSpec {
    pub fn compile(&self) -> ringmesh_http1::PathNormalization {
        use ringmesh_http1::{EscapedSlashes as E, PathNormalization};
        let d = PathNormalization::SAFE;
        PathNormalization {
            normalize: self.normalize.unwrap_or(d.normalize),
            merge_slashes: self.merge_slashes.unwrap_or(d.merge_slashes),
            escaped_slashes: match self.escaped_slashes {
                None => d.escaped_slashes,
                Some(EscapedSlashesSpec::Keep) => E::Keep,
                Some(EscapedSlashesSpec::Reject) => E::Reject,
                Some(EscapedSlashesSpec::UnescapeAndForward) => E::UnescapeAndForward,
                Some(EscapedSlashesSpec::UnescapeAndRedirect) => E::UnescapeAndRedirect,
            },
        }
    }
}

// ---- compiled ------------------------------------------------------------------------

/// An IP network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// `IP` or `IP/LEN`; host bits are ignored (masked, as Envoy does).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { addr, len })
    }

    /// Envoy's `CidrRange` parts.
    pub fn from_parts(prefix: &str, len: u32) -> Result<Cidr, String> {
        Cidr::parse(&format!("{prefix}/{len}"))
    }

    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[derive(Debug, Clone)]
enum Perm {
    Any,
    And(Box<[Perm]>),
    Or(Box<[Perm]>),
    Not(Box<Perm>),
    Header(CompiledHeader),
    UrlPath(CompiledString),
    DestIp(Cidr),
    DestPort(u16),
    Sni(CompiledString),
}

#[derive(Debug, Clone)]
enum Princ {
    Any,
    And(Box<[Princ]>),
    Or(Box<[Princ]>),
    Not(Box<Princ>),
    Authenticated(Option<CompiledString>),
    Source(Cidr),
    Header(CompiledHeader),
    UrlPath(CompiledString),
}

#[derive(Debug, Clone)]
struct Policy {
    name: Arc<str>,
    permissions: Box<[Perm]>,
    principals: Box<[Princ]>,
}

#[derive(Debug, Clone)]
struct RuleSet {
    action: RbacAction,
    policies: Box<[Policy]>,
}

#[derive(Debug, Clone)]
struct Filter {
    name: Arc<str>,
    rules: Option<RuleSet>,
    shadow: Option<RuleSet>,
}

/// A listener's compiled RBAC filters, in order. Serialized (for
/// `/config_dump`) as the number of filters and policies.
#[derive(Debug, Clone, Default)]
pub struct RbacChain {
    filters: Box<[Filter]>,
}

impl Serialize for RbacChain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.filters.len()))?;
        for f in self.filters.iter() {
            fn names(r: &Option<RuleSet>) -> Option<(&'static str, Vec<&str>)> {
                r.as_ref().map(|r| {
                    (
                        r.action.as_str(),
                        r.policies.iter().map(|p| &*p.name).collect::<Vec<_>>(),
                    )
                })
            }
            seq.serialize_element(&serde_json::json!({
                "name": &*f.name,
                "rules": names(&f.rules),
                "shadow_rules": names(&f.shadow),
            }))?;
        }
        seq.end()
    }
}

/// What a request or connection is, as the rules see it.
#[derive(Clone, Copy)]
pub struct AuthzInput<'a> {
    /// The HTTP request (normalized path); `None` for a TCP connection.
    pub request: Option<&'a Request<'a>>,
    pub peer: IpAddr,
    /// The destination (original destination when recovered).
    pub destination: SocketAddr,
    /// The peer's verified SPIFFE ID, as a URI (`None`: plaintext).
    pub principal: Option<&'a str>,
    /// SNI sent by the client (TLS connections).
    pub sni: Option<&'a str>,
}

/// The result of a chain: whether to deny, and what to count and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict<'a> {
    /// `Some((filter, policy))`: denied by that filter; the policy is the
    /// DENY policy that matched (`None` for an ALLOW filter none of whose
    /// policies matched).
    pub denied: Option<(&'a str, Option<&'a str>)>,
    /// A LOG (AUDIT) policy matched: `(filter, policy)`.
    pub logged: Option<(&'a str, &'a str)>,
    /// Shadow rules that would have denied / allowed.
    pub shadow_denied: u32,
    pub shadow_allowed: u32,
}

impl RbacChain {
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Evaluate the chain, first denial wins (later filters are not
    /// evaluated, as in Envoy, where a denial stops the filter chain).
    pub fn evaluate<'s>(&'s self, input: &AuthzInput<'_>) -> Verdict<'s> {
        let mut v = Verdict::default();
        for f in self.filters.iter() {
            if let Some(shadow) = &f.shadow {
                match shadow.decide(input) {
                    Decision::Deny(_) => v.shadow_denied += 1,
                    _ => v.shadow_allowed += 1,
                }
            }
            let Some(rules) = &f.rules else { continue };
            match rules.decide(input) {
                Decision::Allow => {}
                Decision::Log(p) => {
                    if v.logged.is_none() {
                        v.logged = Some((&f.name, p));
                    }
                }
                Decision::Deny(p) => {
                    v.denied = Some((&f.name, p));
                    return v;
                }
            }
        }
        v
    }
}

enum Decision<'a> {
    Allow,
    Log(&'a str),
    Deny(Option<&'a str>),
}

impl RuleSet {
    fn decide(&self, input: &AuthzInput<'_>) -> Decision<'_> {
        let matched = self.policies.iter().find(|p| p.matches(input));
        match (self.action, matched) {
            (RbacAction::Allow, Some(_)) => Decision::Allow,
            (RbacAction::Allow, None) => Decision::Deny(None),
            (RbacAction::Deny, Some(p)) => Decision::Deny(Some(&p.name)),
            (RbacAction::Deny, None) => Decision::Allow,
            (RbacAction::Log, Some(p)) => Decision::Log(&p.name),
            (RbacAction::Log, None) => Decision::Allow,
        }
    }
}

impl Policy {
    fn matches(&self, input: &AuthzInput<'_>) -> bool {
        self.permissions.iter().any(|p| p.matches(input))
            && self.principals.iter().any(|p| p.matches(input))
    }
}

impl Perm {
    fn matches(&self, i: &AuthzInput<'_>) -> bool {
        match self {
            Perm::Any => true,
            Perm::And(all) => all.iter().all(|p| p.matches(i)),
            Perm::Or(any) => any.iter().any(|p| p.matches(i)),
            Perm::Not(p) => !p.matches(i),
            Perm::Header(h) => i.request.is_some_and(|r| h.matches(r)),
            Perm::UrlPath(s) => i.request.is_some_and(|r| s.matches(r.path)),
            Perm::DestIp(c) => c.contains(i.destination.ip()),
            Perm::DestPort(p) => i.destination.port() == *p,
            Perm::Sni(s) => s.matches(i.sni.unwrap_or("").as_bytes()),
        }
    }
}

impl Princ {
    fn matches(&self, i: &AuthzInput<'_>) -> bool {
        match self {
            Princ::Any => true,
            Princ::And(all) => all.iter().all(|p| p.matches(i)),
            Princ::Or(any) => any.iter().any(|p| p.matches(i)),
            Princ::Not(p) => !p.matches(i),
            Princ::Authenticated(name) => match (i.principal, name) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(id), Some(m)) => m.matches(id.as_bytes()),
            },
            Princ::Source(c) => c.contains(i.peer),
            Princ::Header(h) => i.request.is_some_and(|r| h.matches(r)),
            Princ::UrlPath(s) => i.request.is_some_and(|r| s.matches(r.path)),
        }
    }
}

// ---- compiling -----------------------------------------------------------------------

/// Compile errors: `(field relative to the chain, reason)`.
pub type AuthzError = (String, String);

/// Compile a listener's `rbac:` chain. `http`: whether the listener
/// speaks HTTP (a TCP listener's rules cannot read headers or paths).
pub fn compile_chain(specs: &[RbacFilterSpec], http: bool) -> Result<RbacChain, Vec<AuthzError>> {
    let mut errs = Vec::new();
    let mut filters = Vec::with_capacity(specs.len());
    for (i, f) in specs.iter().enumerate() {
        let at = format!("[{i}]");
        let mut c = Compiler {
            http,
            errs: &mut errs,
            depth: 0,
        };
        let rules = f
            .rules
            .as_ref()
            .map(|r| c.rule_set(r, &format!("{at}.rules")));
        let shadow = f
            .shadow_rules
            .as_ref()
            .map(|r| c.rule_set(r, &format!("{at}.shadow_rules")));
        filters.push(Filter {
            name: f.name.clone().unwrap_or_else(|| format!("rbac{i}")).into(),
            rules,
            shadow,
        });
    }
    if errs.is_empty() {
        Ok(RbacChain {
            filters: filters.into(),
        })
    } else {
        Err(errs)
    }
}

/// Nesting deeper than this is rejected (evaluation recurses).
const MAX_DEPTH: usize = 64;

struct Compiler<'e> {
    http: bool,
    errs: &'e mut Vec<AuthzError>,
    depth: usize,
}

impl Compiler<'_> {
    fn err(&mut self, at: String, reason: impl Into<String>) {
        self.errs.push((at, reason.into()));
    }

    fn rule_set(&mut self, r: &RbacRulesSpec, at: &str) -> RuleSet {
        let mut policies = Vec::with_capacity(r.policies.len());
        for (name, p) in &r.policies {
            let pat = format!("{at}.policies.{name}");
            if p.permissions.is_empty() {
                self.err(
                    format!("{pat}.permissions"),
                    "at least one permission is required (use `any: true`)",
                );
            }
            if p.principals.is_empty() {
                self.err(
                    format!("{pat}.principals"),
                    "at least one principal is required (use `any: true`)",
                );
            }
            let permissions = p
                .permissions
                .iter()
                .enumerate()
                .map(|(k, x)| self.permission(x, &format!("{pat}.permissions[{k}]")))
                .collect();
            let principals = p
                .principals
                .iter()
                .enumerate()
                .map(|(k, x)| self.principal(x, &format!("{pat}.principals[{k}]")))
                .collect();
            policies.push(Policy {
                name: name.as_str().into(),
                permissions,
                principals,
            });
        }
        RuleSet {
            action: r.action,
            policies: policies.into(),
        }
    }

    fn deeper(&mut self, at: &str) -> bool {
        if self.depth >= MAX_DEPTH {
            self.err(
                at.to_owned(),
                format!("rules nest deeper than {MAX_DEPTH} levels"),
            );
            return false;
        }
        true
    }

    fn needs_http(&mut self, at: &str, what: &str) -> bool {
        if !self.http {
            self.err(
                at.to_owned(),
                format!("{what} cannot be evaluated on a TCP listener (no HTTP request)"),
            );
        }
        self.http
    }

    fn permission(&mut self, p: &PermissionSpec, at: &str) -> Perm {
        let rule = match p.rule() {
            Ok(r) => r,
            Err(reason) => {
                self.err(at.to_owned(), reason);
                return Perm::Any;
            }
        };
        match rule {
            PermRule::Any(true) => Perm::Any,
            PermRule::Any(false) => {
                self.err(format!("{at}.any"), "must be true");
                Perm::Any
            }
            PermRule::And(rules) | PermRule::Or(rules) => {
                let and = matches!(rule, PermRule::And(_));
                let key = if and { "and_rules" } else { "or_rules" };
                if !self.deeper(at) {
                    return Perm::Any;
                }
                if rules.is_empty() {
                    self.err(format!("{at}.{key}.rules"), "must not be empty");
                }
                self.depth += 1;
                let v: Box<[Perm]> = rules
                    .iter()
                    .enumerate()
                    .map(|(k, r)| self.permission(r, &format!("{at}.{key}.rules[{k}]")))
                    .collect();
                self.depth -= 1;
                if and {
                    Perm::And(v)
                } else {
                    Perm::Or(v)
                }
            }
            PermRule::Not(inner) => {
                if !self.deeper(at) {
                    return Perm::Any;
                }
                self.depth += 1;
                let v = self.permission(inner, &format!("{at}.not_rule"));
                self.depth -= 1;
                Perm::Not(Box::new(v))
            }
            PermRule::Header(h) => {
                let at = format!("{at}.header");
                if !self.needs_http(&at, "a header rule") {
                    return Perm::Any;
                }
                self.header(h, &at).map_or(Perm::Any, Perm::Header)
            }
            PermRule::UrlPath(s) => {
                let at = format!("{at}.url_path");
                if !self.needs_http(&at, "a url_path rule") {
                    return Perm::Any;
                }
                self.string(s, &at).map_or(Perm::Any, Perm::UrlPath)
            }
            PermRule::DestIp(c) => match Cidr::parse(c) {
                Ok(c) => Perm::DestIp(c),
                Err(r) => {
                    self.err(format!("{at}.destination_ip"), r);
                    Perm::Any
                }
            },
            PermRule::DestPort(p) => Perm::DestPort(p),
            PermRule::Sni(s) => self
                .string(s, &format!("{at}.requested_server_name"))
                .map_or(Perm::Any, Perm::Sni),
        }
    }

    fn principal(&mut self, p: &PrincipalSpec, at: &str) -> Princ {
        let rule = match p.rule() {
            Ok(r) => r,
            Err(reason) => {
                self.err(at.to_owned(), reason);
                return Princ::Any;
            }
        };
        match rule {
            PrincRule::Any(true) => Princ::Any,
            PrincRule::Any(false) => {
                self.err(format!("{at}.any"), "must be true");
                Princ::Any
            }
            PrincRule::And(ids) | PrincRule::Or(ids) => {
                let and = matches!(rule, PrincRule::And(_));
                let key = if and { "and_ids" } else { "or_ids" };
                if !self.deeper(at) {
                    return Princ::Any;
                }
                if ids.is_empty() {
                    self.err(format!("{at}.{key}.ids"), "must not be empty");
                }
                self.depth += 1;
                let v: Box<[Princ]> = ids
                    .iter()
                    .enumerate()
                    .map(|(k, r)| self.principal(r, &format!("{at}.{key}.ids[{k}]")))
                    .collect();
                self.depth -= 1;
                if and {
                    Princ::And(v)
                } else {
                    Princ::Or(v)
                }
            }
            PrincRule::Not(inner) => {
                if !self.deeper(at) {
                    return Princ::Any;
                }
                self.depth += 1;
                let v = self.principal(inner, &format!("{at}.not_id"));
                self.depth -= 1;
                Princ::Not(Box::new(v))
            }
            PrincRule::Authenticated(a) => {
                let m = a
                    .principal_name
                    .as_ref()
                    .and_then(|s| self.string(s, &format!("{at}.authenticated.principal_name")));
                Princ::Authenticated(m)
            }
            PrincRule::Ip(key, c) => match Cidr::parse(c) {
                Ok(c) => Princ::Source(c),
                Err(r) => {
                    self.err(format!("{at}.{key}"), r);
                    Princ::Any
                }
            },
            PrincRule::Header(h) => {
                let at = format!("{at}.header");
                if !self.needs_http(&at, "a header rule") {
                    return Princ::Any;
                }
                self.header(h, &at).map_or(Princ::Any, Princ::Header)
            }
            PrincRule::UrlPath(s) => {
                let at = format!("{at}.url_path");
                if !self.needs_http(&at, "a url_path rule") {
                    return Princ::Any;
                }
                self.string(s, &at).map_or(Princ::Any, Princ::UrlPath)
            }
        }
    }

    fn string(&mut self, s: &StringMatchSpec, at: &str) -> Option<CompiledString> {
        let given: Vec<(&str, &String)> = [
            ("exact", &s.exact),
            ("prefix", &s.prefix),
            ("suffix", &s.suffix),
            ("contains", &s.contains),
            ("regex", &s.regex),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        let (key, v) = match given.as_slice() {
            [one] => *one,
            [] => {
                self.err(
                    at.to_owned(),
                    "one of exact, prefix, suffix, contains, regex is required",
                );
                return None;
            }
            several => {
                let keys: Vec<&str> = several.iter().map(|(k, _)| *k).collect();
                self.err(
                    at.to_owned(),
                    format!(
                        "only one of exact, prefix, suffix, contains, regex may be given (got {})",
                        keys.join(" and ")
                    ),
                );
                return None;
            }
        };
        let v: Box<str> = v.as_str().into();
        let pattern = match key {
            "exact" => StringMatch::Exact(v),
            "prefix" => StringMatch::Prefix(v),
            "suffix" => StringMatch::Suffix(v),
            "contains" => StringMatch::Contains(v),
            _ => StringMatch::Regex(v),
        };
        let m = StringMatcher {
            pattern,
            ignore_case: s.ignore_case,
        };
        match CompiledString::compile(&m) {
            Ok(c) => Some(c),
            Err((field, reason)) => {
                self.err(format!("{at}.{field}"), reason);
                None
            }
        }
    }

    fn header(&mut self, h: &HeaderMatchSpec, at: &str) -> Option<CompiledHeader> {
        let values = [
            ("exact", &h.exact),
            ("prefix", &h.prefix),
            ("suffix", &h.suffix),
            ("contains", &h.contains),
            ("regex", &h.regex),
        ];
        let mut given: Vec<&str> = values
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        if h.present.is_some() {
            given.push("present");
        }
        let rule = match given.as_slice() {
            ["present"] => HeaderMatch::Present(h.present.unwrap_or(true)),
            [_] => {
                let s = StringMatchSpec {
                    exact: h.exact.clone(),
                    prefix: h.prefix.clone(),
                    suffix: h.suffix.clone(),
                    contains: h.contains.clone(),
                    regex: h.regex.clone(),
                    ignore_case: h.ignore_case,
                };
                // Validated by `string`; the uncompiled form is what the
                // header matcher takes.
                self.string(&s, at)?;
                let (k, v) = values.iter().find(|(_, v)| v.is_some())?;
                let v: Box<str> = v.as_deref()?.into();
                HeaderMatch::Value(StringMatcher {
                    pattern: match *k {
                        "exact" => StringMatch::Exact(v),
                        "prefix" => StringMatch::Prefix(v),
                        "suffix" => StringMatch::Suffix(v),
                        "contains" => StringMatch::Contains(v),
                        _ => StringMatch::Regex(v),
                    },
                    ignore_case: h.ignore_case,
                })
            }
            [] => {
                self.err(
                    at.to_owned(),
                    "one of exact, prefix, suffix, contains, regex or present is required",
                );
                return None;
            }
            several => {
                self.err(
                    at.to_owned(),
                    format!(
                        "only one of exact, prefix, suffix, contains, regex and present may be \
                         given (got {})",
                        several.join(" and ")
                    ),
                );
                return None;
            }
        };
        // `host` is `:authority` to the route matchers; Envoy's RBAC
        // accepts either name for the Host.
        let name = if h.name.eq_ignore_ascii_case("host") {
            ":authority"
        } else {
            h.name.as_str()
        };
        let m = HeaderMatcher {
            name: name.into(),
            rule,
            invert: h.invert,
            treat_missing_as_empty: h.treat_missing_as_empty,
        };
        match CompiledHeader::compile(&m) {
            Ok(c) => Some(c),
            Err((field, reason)) => {
                self.err(format!("{at}.{field}"), reason);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
