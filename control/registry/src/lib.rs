//! `ringmesh-registry`: the mesh state the control plane translates —
//! services, the workloads behind them, and the Istio resources — and the
//! [`Registry`] trait its sources implement (the file-mode registry here;
//! the Kubernetes registry later).
//!
//! The types in this file are the contract with `ringmesh-translate` and
//! `ringmesh-control`; keep them stable.
//!
//! # The file registry
//!
//! [`FileRegistry`] reads a directory (recursively; `*.yaml`, `*.yml` and
//! `*.json` in path order; names starting with `.` skipped) holding Istio
//! resources and the registry's own objects, side by side in the same
//! multi-document files. [`load_state`] does one load without watching.
//!
//! ```yaml
//! apiVersion: registry.ringmesh.io/v1
//! kind: Service
//! metadata: {name: reviews, namespace: default, labels: {app: reviews}}
//! spec:
//!   ports:
//!   - {name: http, port: 9080, targetPort: 9080, protocol: HTTP}
//!   selector: {app: reviews}
//!   exportTo: ["*"]
//! ---
//! apiVersion: registry.ringmesh.io/v1
//! kind: Workload
//! metadata: {name: reviews-v1-0, namespace: default, labels: {app: reviews, version: v1}}
//! spec:
//!   address: 127.0.0.3
//!   serviceAccount: reviews
//!   locality: us-east1/us-east1-b/rack1
//!   weight: 1
//!   ports: {http: 19080}
//!   sidecar: true
//!   ready: true
//! ```
//!
//! | field | default | rules |
//! | --- | --- | --- |
//! | `metadata.name` | required | DNS-1123 label |
//! | `metadata.namespace` | `default` ([`FileOptions::default_namespace`]) | DNS-1123 label |
//! | `metadata.labels`, `metadata.annotations` | none | string → string |
//! | Service `spec.ports[]` | required, at least one | names and numbers unique within the service |
//! | `ports[].name` | required | DNS-1123 label; gives the protocol when `protocol` is absent |
//! | `ports[].port`, `ports[].targetPort` | `targetPort` = `port` | 1–65535 |
//! | `ports[].protocol` | from the name's prefix before `-` (`http`, `http2`, `grpc`, `https`, `tls`, `tcp`; `grpc-web` → HTTP), else TCP | one of HTTP, HTTP2, GRPC, HTTPS, TLS, TCP (any case) |
//! | Service `spec.selector` | none (selects nothing) | labels a workload of the same namespace must all carry |
//! | Service `spec.exportTo` | all namespaces | `*`, `.` (own namespace) or namespace names |
//! | Workload `spec.address` | required | an IPv4 or IPv6 unicast address |
//! | `spec.serviceAccount` | `default` | DNS-1123 subdomain |
//! | `spec.locality` | none | `region[/zone[/subzone]]`, parts non-empty |
//! | `spec.weight` | 1 | 1–128 |
//! | `spec.ports` | none | port name → target port (1–65535), overriding the service's `targetPort` |
//! | `spec.sidecar` | `true` | `false`: callers send plaintext even under `ISTIO_MUTUAL` |
//! | `spec.ready` | `true` | `false`: kept out of load assignments |
//!
//! A Service's host is `name.namespace.svc.<domain suffix>`
//! ([`FileOptions::domain_suffix`], `cluster.local` by default). Parsing is
//! strict: an unknown field is an error (a typo must not silently load a
//! default). The Istio loader's note that these objects are "not an Istio
//! resource" (RM0013) is dropped; everything else it reports, and the
//! registry's own findings, are in [`MeshState::diagnostics`], in the same
//! [`Diagnostic`] form (file, line and column, resource, field path,
//! reason, code). The registry's codes ([`codes`]):
//!
//! | code | severity | meaning |
//! | --- | --- | --- |
//! | RM0201 | error | unknown kind or apiVersion in registry.ringmesh.io; skipped |
//! | RM0202 | error | does not match the schema (unknown field, wrong type, missing field) |
//! | RM0203 | error | a value breaks a validation rule |
//! | RM0204 | error | two ports of a Service share a name or a number |
//! | RM0205 | error | a Service or Workload with the same namespace and name was already loaded; the first (by file path, then position) is kept |
//! | RM0206 | warning | its file cannot be read or parsed; the last good version keeps serving |
//!
//! Unreadable files and directories are reported with the Istio loader's
//! RM0009, bad YAML with its RM0001.
//!
//! # The last good version
//!
//! A bad resource is rejected and the others load. When a resource the
//! state being served has (Istio resource, Service or Workload, by kind,
//! namespace and name) is rejected by a new load while still in the files,
//! its last good version keeps serving, and the errors that rejected the
//! new one end in "; keeping the last good version". When a file cannot be
//! read, or holds a document that is not valid YAML or cannot be told
//! apart (no `kind`, no `metadata.name`), the resources it held that are
//! no longer found are kept too (warning RM0206). Removing a resource from
//! the files removes it.
//!
//! # Changes
//!
//! The registry polls ([`FileOptions::poll_interval`], 250 ms): each file's
//! mtime, size and inode, reading the ones whose stamp changed (and any
//! modified in the last two seconds, as mtimes can be coarse) and comparing
//! content hashes; files added and removed are seen by the listing. Editors
//! that write a temporary file and rename it over the original are seen as
//! a change of the original. After a change, the directory is read again
//! until two reads agree, so a save caught halfway is not published. A new
//! [`MeshState`] is published only when its [`MeshState::version`] changes:
//! the hex FNV-1a hash of the state's canonical rendering (services,
//! workloads, the Istio model and the diagnostics; never timestamps). A
//! directory that disappears or cannot be read keeps the last state, with
//! an RM0009 diagnostic.
#![forbid(unsafe_code)]

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

pub use ringmesh_istio::{Diagnostic, Model};

pub mod codes;
mod file;
mod format;
mod path;
mod source;
mod state;
#[cfg(test)]
mod tests;

pub use file::{load_sources, load_sources_after, load_state, FileOptions, FileRegistry};
pub use format::{API_VERSION, GROUP, MAX_WEIGHT};

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
