//! Compiled HTTP route tables.
//!
//! A [`RouteTable`] is built once when a configuration snapshot is compiled
//! and then only read, lock-free, by every shard. Matching follows Envoy's
//! semantics: the virtual host is chosen by authority (exact domain, then the
//! longest `*.suffix` / `prefix.*` wildcard, then `*`), and within it the
//! *first* route in configuration order whose match holds wins. The compiled
//! form keeps that order while avoiding a linear scan over every route:
//! domains are hashed (wildcards grouped by length, longest first), and each
//! virtual host's paths, prefix and exact alike, live in one radix tree whose
//! nodes remember the lowest route index ending there. A lookup is one walk
//! down the request path, whatever the number of routes, and never allocates.
#![forbid(unsafe_code)]

mod domain;
mod path;
mod ser;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, sync::Arc, time::Duration};

use domain::{classify, strip_port, with_lowercase, DomainIndex};
use path::{Kind, PathIndex};
pub use ser::format_duration;

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path (without query) equals this.
    Exact(Box<str>),
    /// The path starts with this (`/` matches everything).
    Prefix(Box<str>),
}

/// Where a matched request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAction {
    /// Cluster name (for metrics/logs).
    pub cluster: Arc<str>,
    /// Index of the cluster in the snapshot's cluster list.
    pub cluster_idx: u32,
    /// Whole-request timeout (Envoy's route `timeout`, default 15 s);
    /// `None` disables it.
    pub timeout: Option<Duration>,
}

/// One route, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: Arc<str>,
    pub path: PathMatch,
    pub action: RouteAction,
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

/// A compiled, immutable route table.
///
/// Lookups never allocate, with one documented exception: an authority
/// longer than 256 bytes that contains upper-case letters is lowercased into
/// a heap buffer (no valid DNS name with a port is that long).
#[derive(Clone)]
pub struct RouteTable {
    pub name: Arc<str>,
    vhosts: Vec<VirtualHost>,
    domains: DomainIndex,
    /// Parallel to `vhosts`.
    paths: Vec<PathIndex>,
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
                &self.paths.iter().map(PathIndex::node_count).sum::<usize>(),
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
        let mut paths = Vec::with_capacity(vhosts.len());

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
            let mut index = PathIndex::default();
            for (r, route) in vh.routes.iter().enumerate() {
                let (key, kind, which) = match &route.path {
                    PathMatch::Prefix(p) => (p, Kind::Prefix, "prefix"),
                    PathMatch::Exact(p) => (p, Kind::Exact, "exact"),
                };
                if let Err(reason) = validate_path(key) {
                    err(
                        format!("virtual_hosts[{v}].routes[{r}].match.{which}"),
                        reason,
                    );
                    continue;
                }
                index.insert(key.as_bytes(), kind, r as u32);
            }
            index.finish();
            paths.push(index);
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RouteTable {
            name: name.into(),
            vhosts,
            domains,
            paths,
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

    /// The first route of the chosen virtual host whose match holds for
    /// `path` (the path without the query string).
    #[inline]
    pub fn route(&self, authority: &[u8], path: &[u8]) -> Option<&Route> {
        let vhost = self.find_vhost_index(authority)?;
        self.route_in(vhost, path)
    }

    /// The first route of virtual host number `vhost_index` whose match
    /// holds for `path`; `None` also when the index is out of range.
    #[inline]
    pub fn route_in(&self, vhost_index: usize, path: &[u8]) -> Option<&Route> {
        let routes = &self.vhosts.get(vhost_index)?.routes;
        let idx = self.paths[vhost_index].lookup(path)?;
        routes.get(idx as usize)
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
