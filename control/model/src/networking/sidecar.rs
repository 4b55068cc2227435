//! `Sidecar`: the scope of a sidecar — which services it sees (egress),
//! how it accepts traffic (ingress), and what happens to unknown
//! destinations.

use serde::{Deserialize, Serialize};

use super::{destination_rule::ConnectionPoolSettings, Destination};
use crate::common::WorkloadSelector;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Sidecar {
    /// Absent: applies to every workload of the namespace.
    pub workload_selector: Option<WorkloadSelector>,
    pub ingress: Vec<IngressListener>,
    pub egress: Vec<EgressListener>,
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SidecarPort {
    pub number: u32,
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureMode {
    Default,
    Iptables,
    None,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IngressListener {
    pub port: Option<SidecarPort>,
    pub bind: Option<String>,
    pub capture_mode: Option<CaptureMode>,
    /// `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT` or `unix:///path`.
    pub default_endpoint: Option<String>,
    /// Accepted and ignored (with a warning).
    pub tls: Option<serde_yaml_ng::Value>,
    pub connection_pool: Option<ConnectionPoolSettings>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EgressListener {
    /// Absent: the catch-all listener (at most one, and last).
    pub port: Option<SidecarPort>,
    pub bind: Option<String>,
    pub capture_mode: Option<CaptureMode>,
    /// `namespace/dnsName`: `istio-system/*`, `./reviews.default.svc.cluster.local`, `*/*.example.com`.
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    RegistryOnly,
    AllowAny,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OutboundTrafficPolicy {
    /// Absent means `REGISTRY_ONLY`, the protobuf default.
    pub mode: Option<OutboundMode>,
    pub egress_proxy: Option<Destination>,
}

impl OutboundTrafficPolicy {
    pub fn mode(&self) -> OutboundMode {
        self.mode.unwrap_or(OutboundMode::RegistryOnly)
    }
}
