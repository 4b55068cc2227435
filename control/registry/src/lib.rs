//! `ringmesh-registry`: the mesh state the control plane translates —
//! services, the workloads behind them, and the Istio resources — and the
//! [`Registry`] trait its sources implement (the file-mode registry here;
//! the Kubernetes registry later).
//!
//! The types in this file are the contract with `ringmesh-translate` and
//! `ringmesh-control`; keep them stable.
#![forbid(unsafe_code)]

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

pub use ringmesh_istio::{Diagnostic, Model};

/// The application protocol of a service port (Istio's names). Unknown
/// or absent protocols are inferred from the port name prefix the way
/// Istio does (`http-web` → HTTP, `grpc` → GRPC), else TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Https,
    Tls,
    Tcp,
}

impl Protocol {
    /// HTTP-family protocols get HTTP listeners and routes.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc)
    }
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePort {
    /// The port's name (`http`, `grpc-api`); unique within the service.
    pub name: String,
    /// The service port clients call (`reviews:9080`).
    pub port: u16,
    /// The port the workloads listen on (defaults to `port`).
    pub target_port: u16,
    pub protocol: Protocol,
}

/// A service: a stable name in front of the workloads its selector picks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    /// `name.namespace.svc.<domain suffix>` — the host Istio resources
    /// refer to and cluster names carry.
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    /// Label selector over workloads of the same namespace; an empty
    /// selector selects nothing (like a Kubernetes Service without one).
    pub selector: BTreeMap<String, String>,
    /// Namespaces the service is visible to (`*` = all, `.` = own); empty
    /// means all.
    pub export_to: Vec<String>,
}

/// A workload instance (a pod, a VM): where traffic is sent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub address: IpAddr,
    pub labels: BTreeMap<String, String>,
    /// Kubernetes service account; the SPIFFE identity is
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service_account>`.
    pub service_account: String,
    /// `region/zone/subzone`, any suffix may be missing.
    pub locality: Option<String>,
    /// Load-balancing weight (default 1).
    pub weight: u32,
    /// Per-port-name overrides of the service's target port.
    pub ports: BTreeMap<String, u16>,
    /// Whether the workload runs a sidecar (default true). Callers of a
    /// workload without one send plaintext even under ISTIO_MUTUAL.
    pub has_sidecar: bool,
    /// `false` while draining/not ready: kept out of load assignments.
    pub ready: bool,
}

impl Workload {
    /// The port this workload receives `port` on.
    pub fn target_port(&self, port: &ServicePort) -> u16 {
        self.ports
            .get(&port.name)
            .copied()
            .unwrap_or(port.target_port)
    }
}

/// Everything the control plane translates, as of one moment. Lists are
/// sorted (services and workloads by namespace, name) so the same input
/// always gives the same state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeshState {
    pub services: Vec<Service>,
    pub workloads: Vec<Workload>,
    /// Valid Istio resources (invalid ones are left out, with diagnostics).
    pub istio: Model,
    /// Every finding from the last load: bad registry objects and bad
    /// Istio resources alike, each with file, resource, field and reason.
    pub diagnostics: Vec<Diagnostic>,
    /// Content hash of the state (not of file timestamps): equal states
    /// have equal versions.
    pub version: String,
}

impl MeshState {
    /// The workloads a service selects, ready ones only, in state order.
    pub fn endpoints_of<'a>(&'a self, service: &'a Service) -> impl Iterator<Item = &'a Workload> {
        self.workloads.iter().filter(move |w| {
            w.ready
                && w.namespace == service.namespace
                && !service.selector.is_empty()
                && service
                    .selector
                    .iter()
                    .all(|(k, v)| w.labels.get(k) == Some(v))
        })
    }

    pub fn service_by_host(&self, hostname: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.hostname == hostname)
    }
}

/// A source of mesh state. Implementations publish a complete
/// [`MeshState`] whenever their input changes; a load that finds errors
/// still publishes (the bad resources are left out and reported).
pub trait Registry: Send + Sync {
    /// The current state and every later one.
    fn watch(&self) -> tokio::sync::watch::Receiver<Arc<MeshState>>;
}
