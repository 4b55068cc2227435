//! The compiled, immutable snapshot.
//!
//! Every type here serializes (for the admin `/config_dump`) in the shape
//! and with the names of the configuration file, durations as duration
//! strings, so that the live state reads like its source.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use ringmesh_route::RouteTable;
use serde::{ser::SerializeStruct, Serialize, Serializer};

/// Everything a shard needs to serve traffic, compiled once.
///
/// Serializes as `{version, listeners, clusters, limits, admin}`: `version`
/// as a 16-digit hex string (a JSON number would lose its low bits), and
/// without `source` and `cluster_by_name` (dump `source` on its own).
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Derived from the source state (file hash / xDS versions).
    #[serde(serialize_with = "hex_version")]
    pub version: u64,
    pub listeners: Vec<Listener>,
    /// Indexed by `ClusterRef::index` (routes) and `cluster_idx` (TCP
    /// listeners).
    pub clusters: Vec<Arc<Cluster>>,
    #[serde(skip)]
    pub cluster_by_name: HashMap<Arc<str>, u32>,
    pub limits: ProxyLimits,
    pub admin: Option<SocketAddr>,
    /// The model this snapshot was compiled from (served by `/config_dump`).
    #[serde(skip)]
    pub source: Arc<crate::model::ProxyConfig>,
}

fn hex_version<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:016x}"))
}

fn duration_str<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::format_duration(*d))
}

/// Serializes as `{name, address, protocol: http, routes: {...}}` or
/// `{name, address, protocol: tcp, cluster, cluster_idx}`.
#[derive(Debug, Clone, Serialize)]
pub struct Listener {
    pub name: Arc<str>,
    pub address: SocketAddr,
    /// Recover the original destination of each connection.
    pub original_dst: bool,
    #[serde(flatten)]
    pub kind: ListenerKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum ListenerKind {
    Http { routes: Arc<RouteTable> },
    Tcp { cluster: Arc<str>, cluster_idx: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    RoundRobin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cluster {
    pub name: Arc<str>,
    /// Stable id (FNV-1a of the name): keys per-shard state (pools, LB
    /// cursors, stats) across snapshots.
    pub id: u64,
    #[serde(serialize_with = "duration_str")]
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    pub kind: ClusterKind,
    pub endpoints: Arc<[Endpoint]>,
}

/// Where a cluster's endpoints come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterKind {
    /// The configured endpoints.
    Static,
    /// The downstream connection's original destination (requires a
    /// listener with `original_dst: true`); Envoy's ORIGINAL_DST cluster.
    OriginalDst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyLimits {
    pub http1: ringmesh_http1::Limits,
    pub request_headers_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub max_connections_per_shard: usize,
    /// `None`: no limit (bodies are streamed).
    pub max_request_body: Option<u64>,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            http1: ringmesh_http1::Limits::default(),
            request_headers_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(5),
            max_connections_per_shard: 16384,
            max_request_body: None,
        }
    }
}

impl Serialize for ProxyLimits {
    /// The `limits:` section of the file, every value filled in.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ProxyLimits", 8)?;
        st.serialize_field(
            "max_request_headers_kb",
            &(self.http1.max_head_bytes / 1024),
        )?;
        st.serialize_field("max_request_headers_count", &self.http1.max_headers)?;
        st.serialize_field("max_uri_length", &self.http1.max_uri_len)?;
        st.serialize_field(
            "request_headers_timeout",
            &crate::format_duration(self.request_headers_timeout),
        )?;
        st.serialize_field("idle_timeout", &crate::format_duration(self.idle_timeout))?;
        st.serialize_field("drain_timeout", &crate::format_duration(self.drain_timeout))?;
        st.serialize_field("max_connections_per_shard", &self.max_connections_per_shard)?;
        if let Some(b) = self.max_request_body {
            st.serialize_field("max_request_body_bytes", &b)?;
        }
        st.end()
    }
}
