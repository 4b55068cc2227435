//! The compiled, immutable snapshot.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use ringmesh_route::RouteTable;

/// Everything a shard needs to serve traffic, compiled once.
#[derive(Debug)]
pub struct Snapshot {
    /// Derived from the source state (file hash / xDS versions).
    pub version: u64,
    pub listeners: Vec<Listener>,
    /// Index = `RouteAction::cluster_idx`.
    pub clusters: Vec<Arc<Cluster>>,
    pub cluster_by_name: HashMap<Arc<str>, u32>,
    pub limits: ProxyLimits,
    pub admin: Option<SocketAddr>,
    /// The model this snapshot was compiled from (served by `/config_dump`).
    pub source: Arc<crate::model::ProxyConfig>,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: Arc<str>,
    pub address: SocketAddr,
    pub kind: ListenerKind,
}

#[derive(Debug, Clone)]
pub enum ListenerKind {
    Http { routes: Arc<RouteTable> },
    Tcp { cluster: Arc<str>, cluster_idx: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: Arc<str>,
    /// Stable id (FNV-1a of the name): keys per-shard state (pools, LB
    /// cursors, stats) across snapshots.
    pub id: u64,
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    pub endpoints: Arc<[Endpoint]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyLimits {
    pub http1: ringmesh_http1::Limits,
    pub request_headers_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub max_connections_per_shard: usize,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            http1: ringmesh_http1::Limits::default(),
            request_headers_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(5),
            max_connections_per_shard: 16384,
        }
    }
}
