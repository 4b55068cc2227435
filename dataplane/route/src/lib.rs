//! Compiled HTTP route tables.
//!
//! A [`RouteTable`] is built once when a configuration snapshot is compiled
//! and then only read, lock-free, by every shard. Matching follows Envoy's
//! semantics: the virtual host is chosen by authority (exact domain, then the
//! longest `*.suffix` / `prefix.*` wildcard, then `*`), and within it the
//! *first* route in configuration order whose match holds wins. The compiled
//! form keeps that order while avoiding a linear scan over every route:
//! exact paths are hashed and prefixes are indexed by length, and only the
//! candidates are checked in order.
#![forbid(unsafe_code)]

use std::{sync::Arc, time::Duration};

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

/// A compiled, immutable route table.
#[derive(Debug, Clone)]
pub struct RouteTable {
    pub name: Arc<str>,
    vhosts: Vec<VirtualHost>,
    // Implementation-defined indexes.
}

impl RouteTable {
    /// Compile. Rejects: a domain that appears in two virtual hosts, more
    /// than one `*`, wildcards anywhere but a leading `*.`/`*` or trailing
    /// `.*`, empty domains, paths not starting with `/`.
    pub fn build(name: &str, vhosts: Vec<VirtualHost>) -> Result<RouteTable, Vec<BuildError>> {
        let _ = (name, vhosts);
        todo!("ringmesh-route: RouteTable::build")
    }

    pub fn virtual_hosts(&self) -> &[VirtualHost] {
        &self.vhosts
    }

    /// The virtual host for `authority` (raw Host bytes; ASCII
    /// case-insensitive; a `:port` suffix is tried with the port first, then
    /// without it, as Envoy does).
    pub fn find_vhost(&self, authority: &[u8]) -> Option<&VirtualHost> {
        let _ = authority;
        todo!("ringmesh-route: RouteTable::find_vhost")
    }

    /// The first route of the chosen virtual host whose match holds for
    /// `path` (the path without the query string).
    pub fn route(&self, authority: &[u8], path: &[u8]) -> Option<&Route> {
        let _ = (authority, path);
        todo!("ringmesh-route: RouteTable::route")
    }
}
