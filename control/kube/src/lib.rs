//! `ringmesh-kube`: the Kubernetes registry.
//!
//! Watches (kube-rs `watcher`s: list, then watch, resuming from the last
//! resource version, relisting on `410 Gone`, with backoff) Services,
//! EndpointSlices and Pods, and the Istio resources we read
//! (`networking.istio.io/v1` VirtualService, DestinationRule,
//! ServiceEntry, Sidecar; `security.istio.io/v1` AuthorizationPolicy,
//! PeerAuthentication), keeps the objects in memory, and after a change
//! (debounced) rebuilds the [`MeshState`] through the same loader and
//! checks as file mode ([`ringmesh_registry::load_sources_after`]): the
//! same diagnostics (the "file" of a diagnostic is
//! `kubernetes://<apiVersion>/<Kind>/<namespace>/<name>`), the same
//! last-good rule, the same content version. A state is published only
//! when its version changes.
//!
//! Mapping: a Service becomes a registry Service (ports of protocol TCP;
//! `appProtocol` gives the protocol, else the port name does; a named
//! `targetPort` is resolved per pod from its container ports; the
//! `networking.istio.io/exportTo` annotation gives `exportTo`;
//! ExternalName services are skipped). A pod with an IP becomes a
//! Workload: its labels, service account, the `istio-locality` label,
//! whether it has a sidecar (an injector's status annotation or a
//! `ringmesh-proxy`/`istio-proxy` container), and readiness — its `Ready`
//! condition, not being deleted, and no EndpointSlice listing it as not
//! ready or terminating (so endpoints leave load assignments as soon as
//! Kubernetes starts draining them).
//!
//! [`KubeRegistry::start`] returns once every kind has been listed (a kind
//! whose API is missing, such as an Istio CRD that is not installed, is
//! reported and counted as empty, and keeps being retried), so a control
//! plane that starts serving from it answers from a complete state.
#![forbid(unsafe_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
pub use kube::Client;
use kube::{
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::{watcher, WatchStreamExt},
    Api,
};
use ringmesh_registry::{load_sources_after, FileOptions, MeshState, Registry};
use serde_json::Value;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

pub mod convert;
#[cfg(test)]
mod tests;
mod token_review;

pub use convert::Objects;
pub use token_review::{review_token, ReviewError, ReviewedIdentity};

/// How the registry reads the cluster.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// The cluster domain: services are `name.namespace.svc.<suffix>`.
    pub domain_suffix: String,
    /// Changes arriving within this window are one rebuild (default 100 ms).
    pub debounce: Duration,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            domain_suffix: FileOptions::default().domain_suffix,
            debounce: Duration::from_millis(100),
        }
    }
}

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes client configuration: {0}")]
    Config(String),
    #[error("the registry stopped before its first state")]
    Stopped,
}

/// A client for `api` (an API server URL such as `http://127.0.0.1:8080`)
/// or, without one, the usual inference: `KUBECONFIG` / `~/.kube/config`,
/// else the in-cluster service account.
pub async fn client(api: Option<&str>) -> Result<Client, Error> {
    let config = match api {
        Some(url) => {
            let uri = url
                .parse()
                .map_err(|e| Error::Config(format!("API server URL {url:?}: {e}")))?;
            kube::Config::new(uri)
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| Error::Config(e.to_string()))
}

/// What one watched kind is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Services,
    Pods,
    EndpointSlices,
    Istio,
}

/// The kinds watched: (group, version, kind, plural, where they go).
const KINDS: [(&str, &str, &str, &str, Slot); 9] = [
    ("", "v1", "Service", "services", Slot::Services),
    ("", "v1", "Pod", "pods", Slot::Pods),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        Slot::EndpointSlices,
    ),
    (
        "networking.istio.io",
        "v1",
        "VirtualService",
        "virtualservices",
        Slot::Istio,
    ),
    (
        "networking.istio.io",
        "v1",
        "DestinationRule",
        "destinationrules",
        Slot::Istio,
    ),
    (
        "networking.istio.io",
        "v1",
        "ServiceEntry",
        "serviceentries",
        Slot::Istio,
    ),
    (
        "networking.istio.io",
        "v1",
        "Sidecar",
        "sidecars",
        Slot::Istio,
    ),
    (
        "security.istio.io",
        "v1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        Slot::Istio,
    ),
    (
        "security.istio.io",
        "v1",
        "PeerAuthentication",
        "peerauthentications",
        Slot::Istio,
    ),
];

/// The Kubernetes registry. Dropping it stops the watches.
pub struct KubeRegistry {
    states: watch::Receiver<Arc<MeshState>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for KubeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeRegistry")
            .field("version", &self.states.borrow().version)
            .finish()
    }
}

impl Drop for KubeRegistry {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Registry for KubeRegistry {
    fn watch(&self) -> watch::Receiver<Arc<MeshState>> {
        self.states.clone()
    }
}

impl KubeRegistry {
    /// Start the watches; returns after every kind has been listed once.
    pub async fn start(client: Client, options: KubeOptions) -> Result<KubeRegistry, Error> {
        let (updates, received) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (group, version, kind, plural, slot) in KINDS {
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            tasks.push(tokio::spawn(watch_kind(api, ar, slot, updates.clone())));
        }
        let (tx, mut rx) = watch::channel(Arc::new(MeshState::default()));
        tasks.push(tokio::spawn(build_loop(received, tx, options)));
        // The first published state is the complete one.
        rx.changed().await.map_err(|_| Error::Stopped)?;
        rx.mark_changed();
        Ok(KubeRegistry { states: rx, tasks })
    }
}

fn key_of(obj: &DynamicObject) -> (String, String) {
    (
        obj.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        obj.metadata.name.clone().unwrap_or_default(),
    )
}

/// The object as JSON, with its apiVersion and kind filled in (watch
/// events of some servers leave them out).
fn to_value(obj: &DynamicObject, ar: &ApiResource) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.entry("apiVersion")
            .or_insert_with(|| Value::String(ar.api_version.clone()));
        m.entry("kind")
            .or_insert_with(|| Value::String(ar.kind.clone()));
    }
    v
}

fn map_of(objects: &mut Objects, slot: Slot) -> Option<&mut BTreeMap<(String, String), Value>> {
    match slot {
        Slot::Services => Some(&mut objects.services),
        Slot::Pods => Some(&mut objects.pods),
        Slot::EndpointSlices => Some(&mut objects.endpoint_slices),
        Slot::Istio => None,
    }
}

fn put(objects: &mut Objects, slot: Slot, ar: &ApiResource, obj: &DynamicObject) {
    let (ns, name) = key_of(obj);
    let value = to_value(obj, ar);
    match map_of(objects, slot) {
        Some(m) => {
            m.insert((ns, name), value);
        }
        None => {
            let kind = format!("{}/{}", ar.api_version, ar.kind);
            objects.istio.insert((kind, ns, name), value);
        }
    }
}

fn remove(objects: &mut Objects, slot: Slot, ar: &ApiResource, key: (String, String)) {
    match map_of(objects, slot) {
        Some(m) => {
            m.remove(&key);
        }
        None => {
            let kind = format!("{}/{}", ar.api_version, ar.kind);
            objects.istio.remove(&(kind, key.0, key.1));
        }
    }
}

/// Replace every object of this kind (after a (re)list).
fn replace_all(objects: &mut Objects, slot: Slot, ar: &ApiResource, listed: &[DynamicObject]) {
    match map_of(objects, slot) {
        Some(m) => m.clear(),
        None => {
            let kind = format!("{}/{}", ar.api_version, ar.kind);
            objects.istio.retain(|(k, _, _), _| *k != kind);
        }
    }
    for obj in listed {
        put(objects, slot, ar, obj);
    }
}

/// What a watcher tells the builder.
enum Update {
    /// The kind was listed (or found missing: `None`), replacing all its
    /// objects.
    Listed(Slot, ApiResource, Option<Vec<DynamicObject>>),
    Applied(Slot, ApiResource, Box<DynamicObject>),
    Deleted(Slot, ApiResource, (String, String)),
}

async fn watch_kind(
    api: Api<DynamicObject>,
    ar: ApiResource,
    slot: Slot,
    updates: mpsc::UnboundedSender<Update>,
) {
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut synced = false;
    let mut listing: Vec<DynamicObject> = Vec::new();
    let mut failures = 0u32;
    while let Some(event) = stream.next().await {
        let update = match event {
            Err(e) => {
                failures += 1;
                // The first failure says why; repeats are paced by the
                // backoff, and logged every 10th time.
                if failures == 1 || failures.is_multiple_of(10) {
                    warn!(kind = %ar.kind, error = %e, failures, "watch failed; retrying");
                }
                if synced {
                    continue;
                }
                // A missing kind (an Istio CRD not installed, RBAC not
                // granted) must not hold the control plane back: empty
                // until it lists.
                synced = true;
                Update::Listed(slot, ar.clone(), None)
            }
            Ok(watcher::Event::Init) => {
                failures = 0;
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(obj)) => {
                listing.push(obj);
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                if !synced {
                    info!(kind = %ar.kind, "listed");
                }
                synced = true;
                Update::Listed(slot, ar.clone(), Some(std::mem::take(&mut listing)))
            }
            Ok(watcher::Event::Apply(obj)) => Update::Applied(slot, ar.clone(), Box::new(obj)),
            Ok(watcher::Event::Delete(obj)) => Update::Deleted(slot, ar.clone(), key_of(&obj)),
        };
        if updates.send(update).is_err() {
            return;
        }
    }
}

/// Apply updates, rebuild the state after changes (debounced), publish
/// when its version changes. Nothing is published before every kind has
/// been listed.
async fn build_loop(
    mut updates: mpsc::UnboundedReceiver<Update>,
    tx: watch::Sender<Arc<MeshState>>,
    options: KubeOptions,
) {
    let file_options = FileOptions {
        domain_suffix: options.domain_suffix.clone(),
        ..FileOptions::default()
    };
    let mut objects = Objects::default();
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let mut previous: Option<Arc<MeshState>> = None;
    let apply = |objects: &mut Objects, listed: &mut BTreeSet<String>, u: Update| match u {
        Update::Listed(slot, ar, list) => {
            replace_all(objects, slot, &ar, list.as_deref().unwrap_or_default());
            listed.insert(ar.kind);
        }
        Update::Applied(slot, ar, obj) => put(objects, slot, &ar, &obj),
        Update::Deleted(slot, ar, key) => remove(objects, slot, &ar, key),
    };
    while let Some(first) = updates.recv().await {
        apply(&mut objects, &mut listed, first);
        // Take in whatever else arrives within the debounce window.
        let window = tokio::time::sleep(options.debounce);
        tokio::pin!(window);
        loop {
            tokio::select! {
                _ = &mut window => break,
                next = updates.recv() => match next {
                    Some(u) => apply(&mut objects, &mut listed, u),
                    None => return,
                },
            }
        }
        if listed.len() < KINDS.len() {
            continue;
        }
        let sources = convert::sources(&objects);
        let state = load_sources_after(
            sources.iter().map(|(l, t)| (l.as_str(), t.as_str())),
            &file_options,
            previous.as_deref(),
        );
        if previous
            .as_ref()
            .is_some_and(|p| p.version == state.version)
        {
            continue;
        }
        info!(
            version = %state.version,
            services = state.services.len(),
            workloads = state.workloads.len(),
            diagnostics = state.diagnostics.len(),
            "kubernetes registry state"
        );
        for d in &state.diagnostics {
            warn!("{d}");
        }
        let state = Arc::new(state);
        previous = Some(state.clone());
        if tx.send(state).is_err() {
            return;
        }
    }
}
