//! The documented configuration model (see `docs/CONFIG.md`). Every struct
//! is `deny_unknown_fields`; durations are strings like `250ms`, `15s`,
//! `1m`; addresses are `IP:PORT`.
//!
//! ```yaml
//! admin: { address: 127.0.0.1:15000 }
//! listeners:
//!   - name: http
//!     address: 127.0.0.1:8080
//!     protocol: http          # http | tcp
//!     route_config: main      # http only
//!   - name: db
//!     address: 127.0.0.1:5433
//!     protocol: tcp
//!     cluster: db             # tcp only
//! route_configs:
//!   - name: main
//!     virtual_hosts:
//!       - name: web
//!         domains: ["example.com", "*.example.com", "*"]
//!         routes:
//!           - match: { prefix: "/" }       # or { exact: "/healthz" }
//!             cluster: web
//!             timeout: 15s                 # optional; "0s" disables
//! clusters:
//!   - name: web
//!     connect_timeout: 1s
//!     lb_policy: round_robin
//!     endpoints:
//!       - address: 127.0.0.1:9000
//!         weight: 1
//! limits:                      # all optional, defaults shown
//!   max_request_headers_kb: 60
//!   max_request_headers_count: 100
//!   max_uri_length: 16384
//!   request_headers_timeout: 10s
//!   idle_timeout: 60s
//!   drain_timeout: 5s
//!   max_connections_per_shard: 16384
//!   max_request_body_bytes: 1048576   # no limit unless set
//! ```
//!
//! A route may also match a regex path, headers and query parameters, and
//! split its traffic by weight (see `docs/CONFIG.md`):
//!
//! ```yaml
//! - match:
//!     regex: "/reviews/[0-9]+"       # instead of prefix / exact
//!     headers:                       # all must hold
//!       - { name: end-user, exact: jason }
//!       - { name: ":method", regex: "GET|HEAD" }
//!     query_parameters:              # all must hold
//!       - { name: debug, present: true }
//!   weighted_clusters:               # instead of cluster
//!     - { cluster: reviews-v1, weight: 90 }
//!     - { cluster: reviews-v2, weight: 10 }
//! ```
//!
//! mTLS (see `docs/CONFIG.md`): an `identity` section, listener
//! `tls: { mode: STRICT | PERMISSIVE | DISABLE }` and cluster
//! `tls: { mode: ISTIO_MUTUAL, subject_alt_names: [...], sni: ... }`:
//!
//! ```yaml
//! identity:
//!   trust_domain: cluster.local
//!   namespace: default
//!   service_account: reviews
//!   ca_address: 127.0.0.1:15012     # or cert_chain / private_key / trust_bundle files
//!   token_file: /var/run/ringmesh/token
//!   ttl: 24h
//! ```
//!
//! Implementation note: field names above are the contract other crates and
//! tests rely on. Each struct derives `Serialize` too (for `/config_dump`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::authz::{
    AuthenticatedSpec, EscapedSlashesSpec, PathNormalizationSpec, PermissionSetSpec,
    PermissionSpec, PolicySpec, PrincipalSetSpec, PrincipalSpec, RbacAction, RbacFilterSpec,
    RbacRulesSpec, StringMatchSpec,
};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSpec>,
    #[serde(default)]
    pub listeners: Vec<ListenerSpec>,
    #[serde(default)]
    pub route_configs: Vec<RouteConfigSpec>,
    #[serde(default)]
    pub clusters: Vec<ClusterSpec>,
    #[serde(default)]
    pub limits: LimitsSpec,
    /// The control plane to fetch listeners, routes, clusters and endpoints
    /// from (Delta ADS). The file's own resources stay as static ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xds: Option<XdsSpec>,
    /// This proxy's mesh identity (its SPIFFE X.509-SVID and the roots it
    /// trusts), needed by listeners and clusters with mTLS. Read once at
    /// start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySpec>,
    /// Roots delivered by the control plane as SDS validation-context
    /// secrets (Istio's `ROOTCA`), trusted in addition to the identity's
    /// own bundle. Filled in by the xDS client only: a file cannot set it.
    #[serde(default, skip_deserializing, skip_serializing_if = "Vec::is_empty")]
    pub trust_bundles: Vec<TrustBundleSpec>,
    /// This proxy's workload (Istio's node metadata): the `source_*` /
    /// `destination_*` labels of the Istio metrics and the peer metadata
    /// exchanged with other sidecars. Unset fields fall back to the `xds`
    /// node metadata (`WORKLOAD_NAME`, `NAMESPACE`, `LABELS`, `CLUSTER_ID`)
    /// and the identity's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadSpec>,
    /// JSON access logs, off unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLogSpec>,
}

/// This proxy's workload metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Workload name (e.g. the Deployment: `reviews-v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The `app` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The `version` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `service.istio.io/canonical-name`; default: app, then name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_service: Option<String>,
    /// `service.istio.io/canonical-revision`; default: version, then `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_revision: Option<String>,
    /// The cluster the workload runs in (Istio's `CLUSTER_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// Where and what to log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSpec {
    /// A file (appended to), `/dev/stdout` or `/dev/stderr`.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<AccessLogFilterSpec>,
    /// Lines queued (all shards together) for the writer thread; when
    /// full, lines are dropped (and counted) rather than delaying
    /// requests. Default 4096. Read when the first line is logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_lines: Option<u32>,
}

/// Log only requests matching all the given conditions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFilterSpec {
    /// Only responses with at least this status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_min: Option<u16>,
    /// Only requests that took at least this long (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_min_ms: Option<u64>,
}

/// Where this proxy's certificate comes from: the mesh CA (`ca_address`,
/// `token_file`, `namespace`, `service_account`), or files (`cert_chain`,
/// `private_key`, `trust_bundle`). Relative paths are relative to the
/// configuration file's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// The SPIFFE trust domain; default `cluster.local` (Istio's).
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// With `service_account`: the identity `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// `IP:PORT` of the CA's certificate service (`ringmesh.ca.v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_address: Option<String>,
    /// File holding the bootstrap token that proves the identity to the CA;
    /// read again at every renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Requested certificate lifetime (duration); the CA's default when
    /// absent. Renewed at half-life.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::duration::opt_duration"
    )]
    pub ttl: Option<String>,
    /// PEM certificate chain file (leaf first), instead of a CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_chain: Option<String>,
    /// PEM private key file of `cert_chain`'s leaf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// PEM file of the roots peers' certificates must chain to (required
    /// with files; added to the CA's bundle otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_bundle: Option<String>,
}

fn default_trust_domain() -> String {
    "cluster.local".to_owned()
}

/// A named set of PEM root certificates from the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustBundleSpec {
    pub name: String,
    pub pem: String,
}

/// Inbound TLS of a listener (Istio's PeerAuthentication modes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DownstreamTlsMode {
    /// mTLS required: plaintext connections are closed.
    Strict,
    /// mTLS or plaintext on the same port, told apart by the first bytes.
    Permissive,
    /// Plaintext only.
    #[default]
    Disable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsSpec {
    pub mode: DownstreamTlsMode,
}

/// Outbound TLS of a cluster (Istio's DestinationRule `tls.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpstreamTlsMode {
    /// mTLS with this proxy's SVID; the server must present an SVID of
    /// the trust domain (and one of `subject_alt_names`, if given).
    IstioMutual,
    #[default]
    Disable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsSpec {
    pub mode: UpstreamTlsMode,
    /// SPIFFE IDs the server may present; empty: any workload of the
    /// trust domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Server name sent in the ClientHello; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XdsSpec {
    /// `IP:PORT` of the ADS server (plaintext gRPC for now).
    pub address: String,
    /// This proxy's node id (Envoy's `--service-node`), e.g.
    /// `sidecar~10.0.0.5~reviews-v1.default~default.svc.cluster.local`.
    pub node_id: String,
    /// The node's cluster (Envoy's `--service-cluster`); the control plane
    /// may scope configuration by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_cluster: Option<String>,
    /// Sent as the node's `metadata` Struct: strings or any JSON/YAML
    /// value (Istio's `NAMESPACE`, `LABELS`, `INSTANCE_IPS`,
    /// `INTERCEPTION_MODE`, `SERVICE_ACCOUNT`, `WORKLOAD_NAME`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    /// `IP:PORT`; loopback recommended.
    pub address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerProtocol {
    Http,
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    pub name: String,
    pub address: String,
    pub protocol: ListenerProtocol,
    /// Required for `http`, forbidden for `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_config: Option<String>,
    /// Required for `tcp`, forbidden for `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Recover each connection's original destination (`SO_ORIGINAL_DST`,
    /// set by an iptables REDIRECT) so `original_dst` clusters can forward
    /// to it. Envoy's `use_original_dst`. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub original_dst: bool,
    /// Inbound TLS; plaintext when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTlsSpec>,
    /// Authorization: Envoy RBAC filters, evaluated in order (see
    /// `docs/CONFIG.md`); per request on `http`, per connection on `tcp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rbac: Vec<RbacFilterSpec>,
    /// `http` only: how request paths are normalized before routing,
    /// authorization and forwarding; safe defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_normalization: Option<PathNormalizationSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfigSpec {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHostSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHostSpec {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<RouteSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: RouteMatchSpec,
    /// Exactly one of `cluster` and `weighted_clusters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Split by weight (Envoy's `weighted_clusters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_clusters: Option<Vec<WeightedClusterSpec>>,
    /// Duration string; `0s` disables; default 15s.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::duration::opt_duration"
    )]
    pub timeout: Option<String>,
    /// Retries (Envoy's `retry_policy`); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicySpec>,
}

/// A route's retries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicySpec {
    /// Envoy's conditions, comma-separated: `5xx`, `gateway-error`,
    /// `reset`, `connect-failure`, `retriable-4xx`, `refused-stream`,
    /// `retriable-status-codes`, and the gRPC `cancelled`,
    /// `deadline-exceeded`, `internal`, `resource-exhausted`,
    /// `unavailable`.
    pub retry_on: String,
    /// Retries after the first attempt; default 1 (Envoy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retriable_status_codes: Vec<u16>,
    /// Default 25ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_base: Option<String>,
    /// Default 10 × `backoff_base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max: Option<String>,
    /// Also retry non-idempotent requests (POST, PATCH) after they may
    /// have reached the upstream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_non_idempotent: bool,
}

impl RouteSpec {
    /// The clusters this route may send to (one, or each of a split).
    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        self.cluster.as_deref().into_iter().chain(
            self.weighted_clusters
                .iter()
                .flatten()
                .map(|w| w.cluster.as_str()),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedClusterSpec {
    pub cluster: String,
    /// 0 or more; the weights of a route must add up to 1..=4294967295.
    pub weight: u32,
}

/// Exactly one of `prefix` / `exact` / `regex`, plus optional header and
/// query-parameter conditions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatchSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Must match the whole path (without the query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Compare `prefix` / `exact` ASCII case-insensitively (Envoy's
    /// `case_sensitive: false`, Istio's `ignoreUriCase`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_case: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatchSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_parameters: Vec<QueryParameterMatchSpec>,
}

/// Envoy's `HeaderMatcher`: exactly one of `exact`, `prefix`, `suffix`,
/// `contains`, `regex`, `present`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchSpec {
    /// Case-insensitive; `:method`, `:authority`, `:path`, `:scheme` too.
    pub name: String,
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
    /// `true`: the header is present; `false`: it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// Negate the result (a missing header still fails a value rule).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
    /// ASCII case-insensitive `exact` / `prefix` / `suffix` / `contains`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_case: bool,
    /// Match a missing header as the empty value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub treat_missing_as_empty: bool,
}

/// Envoy's `QueryParameterMatcher`: exactly one of `exact`, `prefix`,
/// `suffix`, `contains`, `regex`, `present`, on the first raw value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParameterMatchSpec {
    pub name: String,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_case: bool,
}

pub use crate::resilience::{CircuitBreakersSpec, LbPolicySpec, OutlierDetectionSpec};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: String,
    /// `static` (the listed endpoints) or `original_dst` (the connection's
    /// original destination; no endpoints). Default `static`.
    #[serde(default, rename = "type")]
    pub cluster_type: ClusterTypeSpec,
    /// Duration string; default 1s (Envoy's default is 5s; a sidecar on a
    /// local network should fail over faster).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::duration::opt_duration"
    )]
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub lb_policy: LbPolicySpec,
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
    /// Outbound TLS; plaintext when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClusterTlsSpec>,
    /// The protocol spoken to the endpoints: `http1` (default) or `http2`
    /// (h2 with prior knowledge, or ALPN `h2` over mTLS; gRPC backends).
    #[serde(default, skip_serializing_if = "UpstreamProtocolSpec::is_default")]
    pub protocol: UpstreamProtocolSpec,
    /// Limits for the proxy as a whole; unset fields are unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breakers: Option<CircuitBreakersSpec>,
    /// Passive health checking; absent: endpoints are never ejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetectionSpec>,
    /// Percentage (default 50) of usable endpoints below which ejections
    /// are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_panic_threshold: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocolSpec {
    #[default]
    Http1,
    Http2,
}

impl UpstreamProtocolSpec {
    fn is_default(&self) -> bool {
        *self == UpstreamProtocolSpec::Http1
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterTypeSpec {
    #[default]
    Static,
    OriginalDst,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Every field optional; defaults in [`crate::ProxyLimits::default`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_headers_kb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_headers_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uri_length: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::duration::opt_duration"
    )]
    pub request_headers_timeout: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::duration::opt_duration"
    )]
    pub idle_timeout: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::duration::opt_duration"
    )]
    pub drain_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_shard: Option<u32>,
    /// Largest request body accepted (bytes); larger ones get 413. Bodies
    /// are streamed, so the default is no limit (as Envoy's HTTP connection
    /// manager when it does not buffer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    /// Longest an inbound TLS handshake may take from its first byte;
    /// default 10s. (Outbound handshakes count against the cluster's
    /// `connect_timeout`, as in Envoy.)
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::duration::opt_duration"
    )]
    pub tls_handshake_timeout: Option<String>,
}
