//! Who is connecting, and which published configuration they get.

use std::{fmt, sync::Arc};

/// The identity a proxy presents in its first request (Envoy's `Node`),
/// reduced to what scoping and status need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    /// `node.id`; Istio uses `sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local`.
    pub id: String,
    /// `node.cluster`: the service (cluster) the proxy belongs to.
    pub cluster: String,
    /// `node.metadata` as JSON (Istio puts `NAMESPACE`, `LABELS`, … here).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// `envoy`, `ringmesh-proxy`, …
    pub user_agent_name: String,
    pub user_agent_version: String,
}

/// A group of proxies that get exactly the same resources, so the
/// resources are computed, encoded and stored once for all of them
/// (Istio computes per proxy; most proxies of one workload and one
/// `Sidecar` scope are interchangeable).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScopeKey(Arc<str>);

impl ScopeKey {
    pub fn new(s: impl AsRef<str>) -> Self {
        ScopeKey(s.as_ref().into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `"default"`: the scope of [`crate::ServerBuilder`]'s default mapping,
/// which puts every proxy in one scope.
impl Default for ScopeKey {
    fn default() -> Self {
        ScopeKey::new("default")
    }
}

impl fmt::Debug for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ScopeKey {
    fn from(s: &str) -> Self {
        ScopeKey::new(s)
    }
}

impl From<String> for ScopeKey {
    fn from(s: String) -> Self {
        ScopeKey(s.into())
    }
}

/// Maps a connecting proxy to its scope. Called once per stream, on the
/// first request; it must be cheap and must not block.
pub type ScopeFn = Arc<dyn Fn(&NodeInfo) -> ScopeKey + Send + Sync>;
