//! `ringmesh-inject`: sidecar injection as a pure function, shared by
//! `ringmesh inject -f` (offline, multi-document YAML) and the control
//! plane's mutating admission webhook (`POST /inject`, a JSON Patch).
//!
//! What a pod gets ([`inject_pod_spec`]), the way Istio users expect:
//!
//! - the init container `ringmesh-init` (the interception rules; NET_ADMIN
//!   and NET_RAW only, UID 0, not privileged), first;
//! - the sidecar `ringmesh-proxy` (UID/GID 1337, read-only root, no
//!   privilege escalation, no capabilities, seccomp) as a Kubernetes
//!   *native sidecar* — an init container with `restartPolicy: Always`
//!   right after `ringmesh-init`, so the application's containers (and the
//!   pod's own init containers, which stay after ours) start only once
//!   the proxy's startup probe passes. The classic layout (a regular
//!   container, first) is for clusters older than 1.29:
//!   `sidecar.istio.io/nativeSidecar: "false"` or [`Settings::native_sidecar`];
//! - the proxy's bootstrap (`sidecar.ringmesh.io/bootstrap`, projected into
//!   the container by the downward API), a projected service-account
//!   token for the CA, an in-memory work directory, and the annotation
//!   `sidecar.ringmesh.io/status` recording what was injected, so a pod is
//!   never injected twice.
//!
//! Whether to inject ([`decide`]): never for `hostNetwork` pods, pods
//! already injected, or `sidecar.istio.io/inject: "false"` (label first,
//! then annotation, as Istio); otherwise the caller's default — the
//! webhook is only called for pods its selectors chose (namespace
//! `istio-injection=enabled`, or the pod label `sidecar.istio.io/inject:
//! "true"`), and `ringmesh inject` injects what it is given, as
//! `istioctl kube-inject` does.

#![forbid(unsafe_code)]

mod bootstrap;
pub mod patch;
mod pod;
mod yaml;

pub use bootstrap::bootstrap_yaml;
pub use pod::{decide, inject_pod, inject_pod_spec, Decision, PodContext};
pub use yaml::{inject_object, inject_yaml, DocumentReport, ObjectOutcome};

/// Names, annotations and labels the injector reads or writes.
pub mod names {
    /// The interception init container.
    pub const INIT_CONTAINER: &str = "ringmesh-init";
    /// The sidecar.
    pub const PROXY_CONTAINER: &str = "ringmesh-proxy";
    /// Volumes added to the pod.
    pub const BOOTSTRAP_VOLUME: &str = "ringmesh-bootstrap";
    pub const TOKEN_VOLUME: &str = "ringmesh-token";
    pub const WORK_VOLUME: &str = "ringmesh-work";
    /// What was injected (JSON); its presence means "already injected".
    pub const STATUS_ANNOTATION: &str = "sidecar.ringmesh.io/status";
    /// The proxy's bootstrap configuration (YAML), mounted as
    /// `/etc/ringmesh/proxy.yaml` through the downward API.
    pub const BOOTSTRAP_ANNOTATION: &str = "sidecar.ringmesh.io/bootstrap";
    /// Istio's opt-in / opt-out, as a label or an annotation.
    pub const INJECT: &str = "sidecar.istio.io/inject";
    /// `"true"` / `"false"`: native sidecar or classic layout.
    pub const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
    /// Per-pod proxy image and resources (Istio's annotations).
    pub const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";
    pub const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
    pub const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
    pub const PROXY_CPU_LIMIT: &str = "sidecar.istio.io/proxyCPULimit";
    pub const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";
    /// Interception (Istio's annotations, passed to ringmesh-init).
    pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
    pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
    pub const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
    pub const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
    pub const INCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
    /// Label Istio puts on meshed pods (peers use mTLS with them).
    pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
    /// `kubectl logs` / `exec` pick this container by default.
    pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
    /// Where the proxy finds things inside its container.
    pub const BOOTSTRAP_DIR: &str = "/etc/ringmesh";
    pub const TOKEN_DIR: &str = "/var/run/secrets/ringmesh";
    pub const TOKEN_FILE: &str = "ringmesh-token";
    pub const WORK_DIR: &str = "/var/lib/ringmesh";
}

/// The proxy's ports (Istio's conventions, and ringmesh-init's defaults).
pub mod ports {
    /// Admin server, loopback only.
    pub const ADMIN: u16 = 15000;
    /// Outbound capture.
    pub const OUTBOUND: u16 = 15001;
    /// Inbound capture.
    pub const INBOUND: u16 = 15006;
    /// Health: a static listener forwarding only `GET /ready` to the admin
    /// server, for kubelet's probes (the admin server stays on loopback).
    pub const HEALTH: u16 = 15021;
}

/// Container resources (Kubernetes quantities, checked by the API server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
}

/// How pods are injected: the webhook's flags, `ringmesh inject`'s flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Image of the sidecar (`ringmesh-proxy` as its entrypoint).
    pub proxy_image: String,
    /// Image of the init container (`ringmesh-init` as its entrypoint,
    /// with `iptables-restore` available).
    pub init_image: String,
    /// `Always`, `IfNotPresent`, `Never`; `None` leaves Kubernetes' default.
    pub image_pull_policy: Option<String>,
    /// The control plane's `IP:PORT` (ADS and the CA's signing service on
    /// one gRPC port). The proxy does not resolve host names, so this is
    /// the Service's cluster IP (the manifests pass
    /// `$(RINGMESH_CONTROL_SERVICE_HOST)`).
    pub control_plane_address: String,
    /// SPIFFE trust domain of the workload identities.
    pub trust_domain: String,
    /// Cluster domain of service host names (the node id's suffix).
    pub domain_suffix: String,
    /// Audience of the projected service-account token the proxy presents
    /// to the CA.
    pub token_audience: String,
    /// Outbound ports never captured, for every pod (the annotation adds
    /// to them).
    pub exclude_outbound_ports: Vec<u16>,
    /// Inbound ports never captured besides the proxy's own
    /// (15000, 15020, 15021), for every pod.
    pub exclude_inbound_ports: Vec<u16>,
    /// Native sidecar (Kubernetes ≥ 1.29) unless a pod's annotation says
    /// otherwise.
    pub native_sidecar: bool,
    /// The proxy's seccomp profile: `None` is `RuntimeDefault` (io_uring
    /// blocked, the proxy uses epoll); `Some(path)` a `Localhost` profile
    /// relative to kubelet's seccomp directory, e.g.
    /// `ringmesh/ringmesh-proxy.json` (deploy/seccomp, which allows
    /// io_uring; it must be installed on every node).
    pub seccomp_localhost_profile: Option<String>,
    /// Also install the IPv6 rules (ringmesh-init `--ipv6`).
    pub ipv6: bool,
    pub proxy_resources: Resources,
    pub init_resources: Resources,
}

impl Default for Settings {
    fn default() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        Settings {
            proxy_image: format!("ghcr.io/ringmesh/ringmesh-proxy:{version}"),
            init_image: format!("ghcr.io/ringmesh/ringmesh-init:{version}"),
            image_pull_policy: None,
            control_plane_address: "127.0.0.1:15010".into(),
            trust_domain: "cluster.local".into(),
            domain_suffix: "cluster.local".into(),
            token_audience: "ringmesh-ca".into(),
            exclude_outbound_ports: Vec::new(),
            exclude_inbound_ports: Vec::new(),
            native_sidecar: true,
            seccomp_localhost_profile: None,
            ipv6: false,
            proxy_resources: Resources {
                cpu_request: "100m".into(),
                memory_request: "128Mi".into(),
                cpu_limit: Some("2".into()),
                memory_limit: Some("1Gi".into()),
            },
            init_resources: Resources {
                cpu_request: "10m".into(),
                memory_request: "16Mi".into(),
                cpu_limit: Some("100m".into()),
                memory_limit: Some("64Mi".into()),
            },
        }
    }
}

impl Settings {
    /// Checks what would otherwise only fail inside the pod.
    pub fn validate(&self) -> Result<(), InjectError> {
        let bad = |what: &str, why: String| Err(InjectError::Settings(format!("{what}: {why}")));
        if self.proxy_image.trim().is_empty() {
            return bad("proxy image", "empty".into());
        }
        if self.init_image.trim().is_empty() {
            return bad("init image", "empty".into());
        }
        if self
            .control_plane_address
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return bad(
                "control-plane address",
                format!(
                    "{:?} is not IP:PORT (the proxy does not resolve host names; use the \
                     Service's cluster IP)",
                    self.control_plane_address
                ),
            );
        }
        if let Some(p) = &self.image_pull_policy {
            if !matches!(p.as_str(), "Always" | "IfNotPresent" | "Never") {
                return bad(
                    "image pull policy",
                    format!("{p:?} (expected Always, IfNotPresent or Never)"),
                );
            }
        }
        if self.trust_domain.is_empty()
            || !self
                .trust_domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return bad(
                "trust domain",
                format!(
                    "{:?} (lowercase letters, digits, '.', '-', '_')",
                    self.trust_domain
                ),
            );
        }
        if self.token_audience.is_empty() {
            return bad("token audience", "empty".into());
        }
        if self.exclude_inbound_ports.contains(&0) || self.exclude_outbound_ports.contains(&0) {
            return bad("excluded ports", "0 is not a port".into());
        }
        Ok(())
    }
}

/// Why an object cannot be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// The object is not what its kind promises (e.g. a Pod without
    /// `spec.containers`).
    #[error("{0}")]
    Malformed(String),
    /// An annotation the injector honours has a value it cannot use.
    #[error("annotation {key}: {problem}")]
    Annotation { key: String, problem: String },
    /// YAML that does not parse.
    #[error("{0}")]
    Yaml(String),
    #[error("injection settings: {0}")]
    Settings(String),
}

#[cfg(test)]
mod tests;
