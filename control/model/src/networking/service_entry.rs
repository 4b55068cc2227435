//! `ServiceEntry`: services the mesh does not discover by itself (an
//! external API, VMs, a database by IP).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::common::WorkloadSelector;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServiceEntry {
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs of the service.
    pub addresses: Vec<String>,
    pub ports: Vec<ServicePort>,
    /// Defaults to `MESH_EXTERNAL`.
    pub location: Option<Location>,
    /// Defaults to `NONE`.
    pub resolution: Option<Resolution>,
    pub endpoints: Vec<WorkloadEntry>,
    pub workload_selector: Option<WorkloadSelector>,
    pub export_to: Vec<String>,
    pub subject_alt_names: Vec<String>,
}

impl ServiceEntry {
    pub fn location(&self) -> Location {
        self.location.unwrap_or(Location::MeshExternal)
    }

    pub fn resolution(&self) -> Resolution {
        self.resolution.unwrap_or(Resolution::None)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServicePort {
    pub number: u32,
    /// `HTTP`, `HTTPS`, `GRPC`, `HTTP2`, `MONGO`, `TCP`, `TLS`, ... (any case).
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    MeshExternal,
    MeshInternal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    None,
    Static,
    Dns,
    DnsRoundRobin,
}

/// An endpoint of a ServiceEntry (Istio's inline `WorkloadEntry`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkloadEntry {
    /// IP, hostname (DNS resolution) or `unix:///path`.
    pub address: Option<String>,
    /// Port name → endpoint port, overriding the service port.
    pub ports: BTreeMap<String, u32>,
    pub labels: BTreeMap<String, String>,
    pub network: Option<String>,
    /// `region/zone/subzone`.
    pub locality: Option<String>,
    pub weight: Option<u32>,
    pub service_account: Option<String>,
}
