//! The compiled, immutable snapshot.
//!
//! Every type here serializes (for the admin `/config_dump`) in the shape
//! and with the names of the configuration file, durations as duration
//! strings, so that the live state reads like its source.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use ringmesh_route::RouteTable;
use ringmesh_tls::{SpiffeId, TrustBundle};
use serde::{ser::SerializeStruct, Serialize, Serializer};

use crate::resilience::{CircuitBreakers, LbPolicy, OutlierDetection};

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
    /// This proxy's identity (from the bootstrap), when it has one.
    pub identity: Option<Arc<IdentityConfig>>,
    /// Roots from the control plane's SDS validation contexts, trusted in
    /// addition to the identity's own bundle (empty without xDS).
    #[serde(skip)]
    pub sds_roots: Arc<TrustBundle>,
    /// The model this snapshot was compiled from (served by `/config_dump`).
    #[serde(skip)]
    pub source: Arc<crate::model::ProxyConfig>,
    /// This proxy's workload metadata (telemetry labels, peer exchange).
    pub workload: Arc<WorkloadInfo>,
    /// JSON access logs (`None`: off).
    pub access_log: Option<Arc<AccessLogConfig>>,
}

/// This proxy's workload, with every field resolved (`unknown` when
/// nothing says).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadInfo {
    pub name: String,
    pub namespace: String,
    pub app: String,
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub cluster: String,
    /// `spiffe://…` when known from the identity section (else taken from
    /// the certificate at run time).
    pub principal: Option<String>,
}

impl Default for WorkloadInfo {
    fn default() -> Self {
        let u = || "unknown".to_string();
        WorkloadInfo {
            name: u(),
            namespace: u(),
            app: u(),
            version: u(),
            canonical_service: u(),
            canonical_revision: "latest".into(),
            cluster: u(),
            principal: None,
        }
    }
}

/// The compiled `access_log` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLogConfig {
    pub path: PathBuf,
    pub status_min: Option<u16>,
    pub duration_min_ms: Option<u64>,
    pub queue_lines: usize,
}

impl AccessLogConfig {
    /// Whether a request with this outcome is logged.
    #[inline]
    pub fn wants(&self, status: u16, duration: Duration) -> bool {
        self.status_min.is_none_or(|m| status >= m)
            && self
                .duration_min_ms
                .is_none_or(|m| duration.as_millis() >= u128::from(m))
    }
}

fn hex_version<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:016x}"))
}

pub(crate) fn duration_str<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::format_duration(*d))
}

fn display_opt<T: std::fmt::Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn display_all<T: std::fmt::Display, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

/// Serializes as `{name, address, protocol: http, routes: {...}}` or
/// `{name, address, protocol: tcp, cluster, cluster_idx}`.
#[derive(Debug, Clone, Serialize)]
pub struct Listener {
    pub name: Arc<str>,
    pub address: SocketAddr,
    /// Recover the original destination of each connection.
    pub original_dst: bool,
    /// Inbound TLS mode.
    pub tls: DownstreamTls,
    #[serde(flatten)]
    pub kind: ListenerKind,
    /// Authorization (empty: everything is allowed).
    pub rbac: Arc<crate::authz::RbacChain>,
    /// How request paths are normalized (HTTP listeners).
    #[serde(serialize_with = "path_normalization")]
    pub path_normalization: ringmesh_http1::PathNormalization,
}

fn path_normalization<S: Serializer>(
    p: &ringmesh_http1::PathNormalization,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut st = s.serialize_struct("PathNormalization", 3)?;
    st.serialize_field("normalize", &p.normalize)?;
    st.serialize_field("merge_slashes", &p.merge_slashes)?;
    st.serialize_field("escaped_slashes", p.escaped_slashes.as_str())?;
    st.end()
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum ListenerKind {
    Http { routes: Arc<RouteTable> },
    Tcp { cluster: Arc<str>, cluster_idx: u32 },
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
    /// mTLS to the endpoints (`ISTIO_MUTUAL`); plaintext when `None`.
    pub tls: Option<Arc<UpstreamTls>>,
    /// HTTP/1.1 or HTTP/2 to the endpoints.
    pub protocol: UpstreamProtocol,
    /// Limits for the proxy as a whole (all shards together).
    pub circuit_breakers: CircuitBreakers,
    /// Passive health checking; `None`: no endpoint is ever ejected.
    pub outlier_detection: Option<OutlierDetection>,
    /// Below this percentage of usable (not ejected) endpoints, ejections
    /// are ignored and every endpoint is used (Envoy's panic threshold).
    pub healthy_panic_threshold: u32,
}

/// The HTTP version spoken to a cluster's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    Http2,
}

/// A listener's inbound TLS (Istio's PeerAuthentication mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DownstreamTls {
    /// Plaintext only.
    #[default]
    Disable,
    /// mTLS required; plaintext connections are closed.
    Strict,
    /// mTLS or plaintext, told apart by the connection's first bytes.
    Permissive,
}

/// How to originate mTLS to a cluster's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamTls {
    /// The server must present one of these SPIFFE IDs; empty: any
    /// workload of the trust domain.
    #[serde(serialize_with = "display_all")]
    pub subject_alt_names: Vec<SpiffeId>,
    /// Server name for the ClientHello; none (no SNI) when absent.
    pub sni: Option<String>,
    /// Stable hash of the settings above: connections are pooled and
    /// TLS client configurations (with their session caches) shared only
    /// between clusters with equal settings. Never 0 (plaintext's key).
    #[serde(skip)]
    pub key: u64,
}

/// The compiled `identity` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityConfig {
    pub trust_domain: String,
    /// The identity this proxy holds: required with a CA; with files, the
    /// loaded certificate is checked against it when given.
    #[serde(serialize_with = "display_opt")]
    pub id: Option<SpiffeId>,
    pub source: IdentitySource,
    /// Extra roots (required with files), as written in the file.
    pub trust_bundle: Option<PathBuf>,
}

/// Where the SVID comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IdentitySource {
    /// Key generated here, CSR signed by the mesh CA, renewed at half-life.
    Ca {
        address: SocketAddr,
        token_file: PathBuf,
        /// Requested lifetime; the CA's default when `None`.
        #[serde(serialize_with = "duration_opt")]
        ttl: Option<Duration>,
    },
    /// Certificate chain and key read from files (re-read when they change).
    Files {
        cert_chain: PathBuf,
        private_key: PathBuf,
    },
}

fn duration_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&crate::format_duration(*d)),
        None => s.serialize_none(),
    }
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
    /// Inbound TLS handshake, from its first byte.
    pub tls_handshake_timeout: Duration,
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
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Serialize for ProxyLimits {
    /// The `limits:` section of the file, every value filled in.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ProxyLimits", 9)?;
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
        st.serialize_field(
            "tls_handshake_timeout",
            &crate::format_duration(self.tls_handshake_timeout),
        )?;
        st.end()
    }
}
