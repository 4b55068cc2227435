//! `VirtualService`: how requests to a host are routed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Destination;
use crate::{
    common::{Percent, StringMatch},
    duration::Duration,
};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VirtualService {
    /// Hosts the routes apply to. Empty for a delegate VirtualService.
    pub hosts: Vec<String>,
    /// Gateways (`[namespace/]name`) and/or `mesh`; empty means `mesh`.
    pub gateways: Vec<String>,
    pub http: Vec<HttpRoute>,
    pub tls: Vec<TlsRoute>,
    pub tcp: Vec<TcpRoute>,
    pub export_to: Vec<String>,
}

impl VirtualService {
    /// Does this VirtualService apply to sidecars (the `mesh` gateway)?
    pub fn applies_to_mesh(&self) -> bool {
        self.gateways.is_empty() || self.gateways.iter().any(|g| g == "mesh")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRoute {
    pub name: Option<String>,
    /// Conditions, OR-ed; empty matches every request.
    #[serde(rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    pub route: Vec<HttpRouteDestination>,
    pub redirect: Option<HttpRedirect>,
    pub direct_response: Option<HttpDirectResponse>,
    pub delegate: Option<Delegate>,
    pub rewrite: Option<HttpRewrite>,
    pub timeout: Option<Duration>,
    pub retries: Option<HttpRetry>,
    pub fault: Option<HttpFaultInjection>,
    pub mirror: Option<Destination>,
    pub mirrors: Vec<HttpMirrorPolicy>,
    pub mirror_percentage: Option<Percent>,
    /// Deprecated integer form of `mirrorPercentage` (Istio's CRD spells
    /// it `mirror_percent`).
    #[serde(alias = "mirror_percent")]
    pub mirror_percent: Option<u32>,
    /// Accepted and ignored (with a warning): CORS is not implemented.
    pub cors_policy: Option<serde_yaml_ng::Value>,
    pub headers: Option<Headers>,
}

impl HttpRoute {
    /// The share of requests mirrored, 0-100, when mirroring is on.
    pub fn effective_mirror_percentage(&self) -> f64 {
        match (self.mirror_percentage, self.mirror_percent) {
            (Some(p), _) => p.value,
            (None, Some(p)) => f64::from(p),
            (None, None) => 100.0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpMatchRequest {
    pub name: Option<String>,
    pub uri: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    /// Header name (lower case) to match; `{}` means present.
    pub headers: BTreeMap<String, StringMatch>,
    pub port: Option<u32>,
    pub source_labels: BTreeMap<String, String>,
    pub gateways: Vec<String>,
    pub query_params: BTreeMap<String, StringMatch>,
    pub ignore_uri_case: bool,
    pub without_headers: BTreeMap<String, StringMatch>,
    pub source_namespace: Option<String>,
    pub stat_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRouteDestination {
    pub destination: Destination,
    /// Relative share; may be omitted for a single destination.
    pub weight: Option<i64>,
    pub headers: Option<Headers>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DerivePort {
    FromProtocolDefault,
    FromRequestPort,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRedirect {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub port: Option<u32>,
    pub derive_port: Option<DerivePort>,
    pub scheme: Option<String>,
    /// 301 (the default), 302, 303, 307 or 308.
    pub redirect_code: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpDirectResponse {
    pub status: u32,
    pub body: Option<HttpBody>,
}

/// One of `string` or `bytes` (base64).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpBody {
    pub string: Option<String>,
    pub bytes: Option<String>,
}

/// Hand the route over to another (delegate) VirtualService.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Delegate {
    pub name: String,
    /// Defaults to the namespace of the referring VirtualService.
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRewrite {
    /// Replaces the matched prefix (or the whole path for exact/regex).
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RegexRewrite {
    #[serde(rename = "match")]
    pub pattern: String,
    /// Substitution with `\1`-style group references.
    pub rewrite: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRetry {
    /// Retries (not counting the first try); 0 disables retries.
    pub attempts: Option<i64>,
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated Envoy retry conditions and status codes.
    pub retry_on: Option<String>,
    pub retry_remote_localities: Option<bool>,
    /// Skip hosts already tried (Istio's default: true).
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval of the exponential back-off between retries.
    pub backoff: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpFaultInjection {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FaultDelay {
    pub fixed_delay: Option<Duration>,
    /// Not supported by Istio either; rejected by validation.
    pub exponential_delay: Option<Duration>,
    pub percentage: Option<Percent>,
    /// Deprecated integer form of `percentage`.
    pub percent: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FaultAbort {
    pub http_status: Option<i64>,
    /// A gRPC status name such as `UNAVAILABLE`.
    pub grpc_status: Option<String>,
    pub http2_error: Option<String>,
    pub percentage: Option<Percent>,
    /// Deprecated integer form of `percentage`.
    pub percent: Option<i64>,
}

/// The share of requests a fault applies to: `percentage`, else the
/// deprecated `percent`, else all of them.
pub fn fault_percentage(percentage: Option<Percent>, percent: Option<i64>) -> f64 {
    match (percentage, percent) {
        (Some(p), _) => p.value,
        (None, Some(p)) => p as f64,
        (None, None) => 100.0,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpMirrorPolicy {
    pub destination: Destination,
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Headers {
    pub request: Option<HeaderOperations>,
    pub response: Option<HeaderOperations>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HeaderOperations {
    /// Values may be written as unquoted booleans or integers (Istio's own
    /// examples write `test: true`); they are kept as text.
    #[serde(deserialize_with = "crate::common::scalar_string_map")]
    pub set: BTreeMap<String, String>,
    #[serde(deserialize_with = "crate::common::scalar_string_map")]
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TcpRoute {
    #[serde(rename = "match")]
    pub matches: Vec<L4MatchAttributes>,
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct L4MatchAttributes {
    /// IPs or CIDRs.
    pub destination_subnets: Vec<String>,
    pub port: Option<u32>,
    pub source_labels: BTreeMap<String, String>,
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
    pub source_subnet: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsRoute {
    #[serde(rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsMatchAttributes {
    /// Required: SNI values (wildcards allowed) to match.
    pub sni_hosts: Vec<String>,
    pub destination_subnets: Vec<String>,
    pub port: Option<u32>,
    pub source_labels: BTreeMap<String, String>,
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
}

/// An L4 (TCP/TLS) route destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RouteDestination {
    pub destination: Destination,
    pub weight: Option<i64>,
}
