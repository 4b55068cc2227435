//! Compiled HTTP route tables.
//!
//! A [`RouteTable`] is built once when a configuration snapshot is compiled
//! and then only read, lock-free, by every shard. Matching follows Envoy's
//! semantics: the virtual host is chosen by authority (exact domain, then the
//! longest `*.suffix` / `prefix.*` wildcard, then `*`), and within it the
//! *first* route in configuration order whose match holds wins — its path
//! (exact, prefix or full-match regex) and every header and query-parameter
//! condition ([`matcher`]). The compiled form keeps that order while
//! avoiding a linear scan over every route: domains are hashed (wildcards
//! grouped by length, longest first), and each virtual host's exact and
//! prefix paths live in one radix tree whose nodes remember the lowest route
//! index ending there. A lookup is one walk down the request path, whatever
//! the number of routes; only routes with a regex or case-insensitive path
//! or extra conditions that come before the best plain match are then
//! checked, in order. Plain lookups never allocate.
//!
//! A route sends its requests to one cluster or splits them by weight
//! ([`Destination`]).
#![forbid(unsafe_code)]

mod domain;
pub mod matcher;
mod path;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
pub mod retry;
mod ser;
#[cfg(test)]
mod tests;
mod weighted;

use std::{collections::HashMap, sync::Arc, time::Duration};

use domain::{classify, strip_port, with_lowercase, DomainIndex};
pub use matcher::{
    CompiledHeader, CompiledString, HeaderMatch, HeaderMatcher, HeaderSource, NoHeaders,
    QueryMatch, QueryParameterMatcher, Request, StringMatch, StringMatcher,
};
use matcher::{CompiledQuery, Conditions, FullRegex};
use path::{Kind, PathIndex};
pub use retry::{Failure, RetryOn, RetryPolicy};
pub use ser::format_duration;
pub use weighted::{ClusterRef, Destination, WeightedCluster, WeightedClusters};

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path (without query) equals this.
    Exact(Box<str>),
    /// The path starts with this (`/` matches everything).
    Prefix(Box<str>),
    /// The whole path (without query) matches this regex (Envoy's
    /// `safe_regex`).
    Regex(Box<str>),
}

/// Where a matched request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAction {
    pub destination: Destination,
    /// Whole-request timeout (Envoy's route `timeout`, default 15 s);
    /// `None` disables it.
    pub timeout: Option<Duration>,
    /// Retries; `None`: a failed attempt is the answer.
    pub retry: Option<Arc<RetryPolicy>>,
}

impl RouteAction {
    /// To one cluster.
    pub fn cluster(name: Arc<str>, index: u32, timeout: Option<Duration>) -> RouteAction {
        RouteAction {
            destination: Destination::Cluster(ClusterRef { name, index }),
            timeout,
            retry: None,
        }
    }

    /// The cluster for this request; `random` (a uniformly distributed
    /// 64-bit number) is drawn only for a weighted split.
    #[inline]
    pub fn pick(&self, random: impl FnOnce() -> u64) -> &ClusterRef {
        self.destination.pick(random)
    }
}

/// One route, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: Arc<str>,
    pub path: PathMatch,
    /// Compare a prefix or exact path ASCII case-insensitively (Envoy's
    /// `case_sensitive: false`); not allowed with a regex (write `(?i)`).
    pub path_ignore_case: bool,
    /// All must hold.
    pub headers: Vec<HeaderMatcher>,
    /// All must hold.
    pub query_parameters: Vec<QueryParameterMatcher>,
    pub action: RouteAction,
}

impl Route {
    /// A route matching on the path only.
    pub fn new(name: &str, path: PathMatch, action: RouteAction) -> Route {
        Route {
            name: name.into(),
            path,
            path_ignore_case: false,
            headers: Vec::new(),
            query_parameters: Vec::new(),
            action,
        }
    }
}

/// A virtual host: a set of domains and the routes tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualHost {
    pub name: Arc<str>,
    /// Domains as configured (`example.com`, `*.example.com`, `api.*`, `*`),
    /// optionally with `:port`.
    pub domains: Vec<Box<str>>,
    pub routes: Vec<Route>,
}

/// Why a route table could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    /// Field path relative to the route configuration, e.g.
    /// `virtual_hosts[1].domains[0]`.
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for BuildError {}

/// How a route's path is checked once the route is a candidate.
#[derive(Clone, Debug, Default)]
enum PathCheck {
    /// In the radix tree: a candidate's path already matched.
    #[default]
    Indexed,
    Regex(FullRegex),
    /// Lowercased.
    PrefixIgnoreCase(Box<[u8]>),
    /// Lowercased.
    ExactIgnoreCase(Box<[u8]>),
}

impl PathCheck {
    #[inline]
    fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathCheck::Indexed => true,
            PathCheck::Regex(re) => re.is_match(path),
            PathCheck::PrefixIgnoreCase(p) => {
                path.len() >= p.len() && path[..p.len()].eq_ignore_ascii_case(p)
            }
            PathCheck::ExactIgnoreCase(p) => path.eq_ignore_ascii_case(p),
        }
    }
}

/// The compiled matchers of one route beyond its tree-indexed path.
#[derive(Clone, Debug, Default)]
struct CompiledRoute {
    path: PathCheck,
    conditions: Conditions,
}

/// One virtual host's compiled routes.
#[derive(Clone, Default)]
struct VhostIndex {
    paths: PathIndex,
    /// Parallel to the virtual host's routes.
    routes: Box<[CompiledRoute]>,
    /// Routes the tree cannot index (regex and case-insensitive paths),
    /// ascending: checked in order while below the best tree match.
    scanned: Box<[u32]>,
}

impl VhostIndex {
    #[inline]
    fn lookup(&self, req: &Request<'_>) -> Option<u32> {
        self.paths.lookup(req.path, &self.scanned, |i| {
            self.routes
                .get(i as usize)
                .is_some_and(|r| r.path.matches(req.path) && r.conditions.hold(req))
        })
    }
}

/// A compiled, immutable route table.
///
/// Lookups of plain routes never allocate, with one documented exception:
/// an authority longer than 256 bytes that contains upper-case letters is
/// lowercased into a heap buffer (no valid DNS name with a port is that
/// long). See [`matcher`] for when header conditions do.
#[derive(Clone)]
pub struct RouteTable {
    pub name: Arc<str>,
    vhosts: Vec<VirtualHost>,
    domains: DomainIndex,
    /// Parallel to `vhosts`.
    index: Vec<VhostIndex>,
}

impl std::fmt::Debug for RouteTable {
    /// The configured virtual hosts plus the sizes of the indexes (the
    /// indexes themselves are an implementation detail and large).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (exact, suffix, prefix, default) = self.domains.counts();
        f.debug_struct("RouteTable")
            .field("name", &self.name)
            .field("virtual_hosts", &self.vhosts)
            .field("exact_domains", &exact)
            .field("suffix_wildcards", &suffix)
            .field("prefix_wildcards", &prefix)
            .field("has_default", &default)
            .field(
                "path_nodes",
                &self
                    .index
                    .iter()
                    .map(|i| i.paths.node_count())
                    .sum::<usize>(),
            )
            .finish()
    }
}

impl RouteTable {
    /// Compile. Rejects: a domain that appears in two virtual hosts, more
    /// than one `*`, wildcards anywhere but a leading `*.`/`*` or trailing
    /// `.*`, empty domains, paths not starting with `/`.
    ///
    /// Also rejected (every error is collected, in configuration order): a
    /// virtual host without a name or domains, two virtual hosts with the
    /// same name, characters that cannot appear in a Host header, a bad
    /// `:port`, and paths containing `?`, `#`, whitespace or control
    /// characters (the query is never part of the matched path). As in
    /// Envoy, a trailing wildcard may follow any prefix (`api-*`) and a
    /// leading one may precede any suffix (`*-bar.example.com`); domains
    /// compare ASCII case-insensitively, so `Example.com` and `example.com`
    /// are duplicates.
    ///
    /// Regexes (path, header and query values) are compiled here: an
    /// invalid or too large one is rejected with its field
    /// (`virtual_hosts[0].routes[2].match.headers[1].regex`), and so are
    /// header names that are not tokens, unknown pseudo-headers, `host`
    /// (the Host is `:authority`), empty query-parameter names, empty
    /// prefix / suffix / contains patterns and `ignore_case` on a regex.
    pub fn build(name: &str, vhosts: Vec<VirtualHost>) -> Result<RouteTable, Vec<BuildError>> {
        let mut errors = Vec::new();
        let mut err = |field: String, reason: String| errors.push(BuildError { field, reason });
        if vhosts.len() >= u32::MAX as usize {
            err(String::new(), "too many virtual hosts".into());
        }

        let mut domains = DomainIndex::default();
        // Lowercased domain -> where it was first seen.
        let mut seen_domains: HashMap<String, (usize, usize)> = HashMap::new();
        let mut seen_names: HashMap<&str, usize> = HashMap::new();
        let mut index = Vec::with_capacity(vhosts.len());

        for (v, vh) in vhosts.iter().enumerate() {
            if vh.name.is_empty() {
                err(
                    format!("virtual_hosts[{v}].name"),
                    "must not be empty".into(),
                );
            } else if let Some(first) = seen_names.get(&*vh.name) {
                err(
                    format!("virtual_hosts[{v}].name"),
                    format!(
                        "duplicate virtual host name {:?} (first at virtual_hosts[{first}])",
                        vh.name
                    ),
                );
            } else {
                seen_names.insert(&vh.name, v);
            }

            if vh.domains.is_empty() {
                err(
                    format!("virtual_hosts[{v}].domains"),
                    "at least one domain is required".into(),
                );
            }
            for (d, domain) in vh.domains.iter().enumerate() {
                let field = || format!("virtual_hosts[{v}].domains[{d}]");
                if let Err(reason) = validate_domain(domain) {
                    err(field(), reason);
                    continue;
                }
                let lower = domain.to_ascii_lowercase();
                if let Some((fv, fd)) = seen_domains.get(&lower) {
                    err(
                        field(),
                        format!("duplicate domain {domain:?} (first at virtual_hosts[{fv}].domains[{fd}])"),
                    );
                    continue;
                }
                domains.insert(classify(lower.as_bytes()), v as u32);
                seen_domains.insert(lower, (v, d));
            }

            if vh.routes.len() >= u32::MAX as usize {
                err(
                    format!("virtual_hosts[{v}].routes"),
                    "too many routes".into(),
                );
            }
            let mut paths = PathIndex::default();
            let mut compiled = Vec::with_capacity(vh.routes.len());
            let mut scanned = Vec::new();
            for (r, route) in vh.routes.iter().enumerate() {
                let at = format!("virtual_hosts[{v}].routes[{r}].match");
                let mut c = CompiledRoute {
                    path: PathCheck::Indexed,
                    conditions: compile_conditions(route, &at, &mut err),
                };
                let conditional = !c.conditions.is_empty();
                let (key, kind, which) = match &route.path {
                    PathMatch::Prefix(p) => (p, Kind::Prefix, "prefix"),
                    PathMatch::Exact(p) => (p, Kind::Exact, "exact"),
                    PathMatch::Regex(p) => {
                        if route.path_ignore_case {
                            err(
                                format!("{at}.ignore_case"),
                                "applies only to prefix and exact paths; write (?i) in the regex instead"
                                    .into(),
                            );
                        }
                        match FullRegex::new(p) {
                            Ok(re) => {
                                c.path = PathCheck::Regex(re);
                                scanned.push(r as u32);
                            }
                            Err(reason) => err(format!("{at}.regex"), reason),
                        }
                        compiled.push(c);
                        continue;
                    }
                };
                if let Err(reason) = validate_path(key) {
                    err(format!("{at}.{which}"), reason);
                    compiled.push(c);
                    continue;
                }
                if route.path_ignore_case {
                    let lower = key.to_ascii_lowercase().into_bytes().into();
                    c.path = match kind {
                        Kind::Prefix => PathCheck::PrefixIgnoreCase(lower),
                        Kind::Exact => PathCheck::ExactIgnoreCase(lower),
                    };
                    scanned.push(r as u32);
                } else {
                    paths.insert(key.as_bytes(), kind, r as u32, conditional);
                }
                compiled.push(c);
            }
            paths.finish();
            index.push(VhostIndex {
                paths,
                routes: compiled.into(),
                scanned: scanned.into(),
            });
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RouteTable {
            name: name.into(),
            vhosts,
            domains,
            index,
        })
    }

    pub fn virtual_hosts(&self) -> &[VirtualHost] {
        &self.vhosts
    }

    /// The virtual host for `authority` (raw Host bytes; ASCII
    /// case-insensitive; a `:port` suffix is tried with the port first, then
    /// without it, as Envoy does).
    ///
    /// Precisely: exact, suffix and prefix domains are tried with the whole
    /// authority, then (if it ends in `:digits`) with the host alone, and
    /// only then does `*` answer. So `example.com:8080` reaches the virtual
    /// host of `example.com` even when a `*` virtual host exists, while a
    /// domain `example.com:8080` takes precedence over `example.com`.
    pub fn find_vhost(&self, authority: &[u8]) -> Option<&VirtualHost> {
        self.find_vhost_index(authority).map(|i| &self.vhosts[i])
    }

    /// Like [`RouteTable::find_vhost`], as an index into
    /// [`RouteTable::virtual_hosts`] (for per-virtual-host state).
    #[inline]
    pub fn find_vhost_index(&self, authority: &[u8]) -> Option<usize> {
        let domains = &self.domains;
        if domains.only_default() {
            return domains.default_vhost().map(|v| v as usize);
        }
        with_lowercase(authority, |a| {
            domains
                .find_specific(a)
                .or_else(|| strip_port(a).and_then(|host| domains.find_specific(host)))
                .or_else(|| domains.default_vhost())
        })
        .map(|v| v as usize)
    }

    /// The route for `req`: the virtual host of `req.authority`, then its
    /// first route (in configuration order) whose path and conditions all
    /// hold.
    #[inline]
    pub fn route_request(&self, req: &Request<'_>) -> Option<&Route> {
        let vhost = self.find_vhost_index(req.authority)?;
        self.route_in_request(vhost, req)
    }

    /// The first route of virtual host number `vhost_index` that matches
    /// `req` (its authority is not looked at again); `None` also when the
    /// index is out of range, and for a request without a path (CONNECT),
    /// which no path rule matches in Envoy either (not even a regex that
    /// accepts the empty string).
    #[inline]
    pub fn route_in_request(&self, vhost_index: usize, req: &Request<'_>) -> Option<&Route> {
        if req.path.is_empty() {
            return None;
        }
        let routes = &self.vhosts.get(vhost_index)?.routes;
        let idx = self.index[vhost_index].lookup(req)?;
        routes.get(idx as usize)
    }

    /// [`RouteTable::route_request`] for a request that has only an
    /// authority and a path (the path without the query string): no
    /// method, scheme, query or other headers, so routes with such
    /// conditions match as they would for a request without them.
    #[inline]
    pub fn route(&self, authority: &[u8], path: &[u8]) -> Option<&Route> {
        self.route_request(&Request::new(authority, path))
    }

    /// [`RouteTable::route_in_request`] for a request that has only a path.
    #[inline]
    pub fn route_in(&self, vhost_index: usize, path: &[u8]) -> Option<&Route> {
        self.route_in_request(vhost_index, &Request::new(b"", path))
    }
}

/// Compile a route's header and query conditions; errors name
/// `{at}.headers[i].field` / `{at}.query_parameters[i].field`.
fn compile_conditions(route: &Route, at: &str, err: &mut impl FnMut(String, String)) -> Conditions {
    let mut headers = Vec::with_capacity(route.headers.len());
    for (h, m) in route.headers.iter().enumerate() {
        match CompiledHeader::compile(m) {
            Ok(c) => headers.push(c),
            Err((field, reason)) => err(format!("{at}.headers[{h}].{field}"), reason),
        }
    }
    let mut query = Vec::with_capacity(route.query_parameters.len());
    for (q, m) in route.query_parameters.iter().enumerate() {
        match CompiledQuery::compile(m) {
            Ok(c) => query.push(c),
            Err((field, reason)) => err(format!("{at}.query_parameters[{q}].{field}"), reason),
        }
    }
    Conditions {
        headers: headers.into(),
        query: query.into(),
    }
}

const DOMAIN_CHARS: &str =
    "letters, digits, '-', '.', '_', ':', '[', ']' and one leading or trailing '*'";

fn validate_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = domain.chars().find(|&c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '[' | ']' | '*'))
    }) {
        return Err(format!("invalid character {c:?} (allowed: {DOMAIN_CHARS})"));
    }
    let stars = domain.matches('*').count();
    if stars > 1 {
        return Err("at most one wildcard '*' is allowed".into());
    }
    if stars == 1 && !(domain.starts_with('*') || domain.ends_with('*')) {
        return Err(
            "a wildcard '*' must be the whole domain, its first character (*.example.com) or its last (api.*)"
                .into(),
        );
    }
    // A port, if any, is what follows the last ':' outside brackets.
    let unbracketed = match domain.rfind(']') {
        Some(close) => {
            if !domain.starts_with('[') {
                return Err("']' without a leading '[' (IPv6 literals are written [::1])".into());
            }
            &domain[close + 1..]
        }
        None if domain.contains('[') => return Err("'[' without a closing ']'".into()),
        None => domain,
    };
    if let Some(colon) = unbracketed.rfind(':') {
        if domain.rfind(']').is_none() && unbracketed[..colon].contains(':') {
            return Err("IPv6 addresses must be in brackets ([::1]:8080)".into());
        }
        let port = &unbracketed[colon + 1..];
        let ok = port == "*" || matches!(port.parse::<u32>(), Ok(1..=65535));
        if !ok {
            return Err(format!("invalid port {port:?} (expected 1-65535)"));
        }
    } else if domain.rfind(']').is_some() && !unbracketed.is_empty() {
        return Err(format!(
            "unexpected {unbracketed:?} after ']' (expected :PORT)"
        ));
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with \"/\""));
    }
    if path.contains(['?', '#']) {
        return Err(format!(
            "{path:?} must not contain '?' or '#' (routes match the path without the query)"
        ));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{path:?} must not contain whitespace or control characters"
        ));
    }
    Ok(())
}

// A snapshot is shared by every shard.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RouteTable>();
};
