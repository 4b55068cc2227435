//! Kubernetes objects → the registry's sources.
//!
//! Pure functions over the objects as the API server sends them (JSON), so
//! that a malformed object is one diagnostic, never a broken watch. Istio
//! resources pass through unchanged to the Istio loader; Services and Pods
//! (with the readiness their EndpointSlices report) become the registry's
//! own `Service` and `Workload` documents, which the registry validates
//! exactly as in file mode. Every source is labelled
//! `kubernetes://<apiVersion>/<Kind>/<namespace>/<name>`, which is what a
//! diagnostic names as its file.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The objects one registry build reads, by kind, keyed by
/// (namespace, name). Values are the objects as received.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    pub services: BTreeMap<(String, String), Value>,
    pub pods: BTreeMap<(String, String), Value>,
    pub endpoint_slices: BTreeMap<(String, String), Value>,
    /// Istio resources of every watched kind, keyed by
    /// (apiVersion/kind, namespace, name).
    pub istio: BTreeMap<(String, String, String), Value>,
}

/// The annotation Istio uses for a service's visibility.
pub const EXPORT_TO: &str = "networking.istio.io/exportTo";
/// Annotations an injector leaves on a pod it added a sidecar to.
pub const SIDECAR_STATUS: [&str; 2] = ["sidecar.ringmesh.io/status", "sidecar.istio.io/status"];
/// Container names of a sidecar proxy.
pub const PROXY_CONTAINERS: [&str; 2] = ["ringmesh-proxy", "istio-proxy"];

/// A source for the registry: its label (a diagnostic's "file") and text.
pub type Source = (String, String);

/// Every object as a registry source, in a stable order.
pub fn sources(objects: &Objects) -> Vec<Source> {
    let mut out = Vec::new();
    for ((ns, name), svc) in &objects.services {
        if let Some(doc) = service(svc) {
            out.push((label("v1", "Service", ns, name), doc.to_string()));
        }
    }
    let ready = endpoint_readiness(objects.endpoint_slices.values());
    for ((ns, name), pod) in &objects.pods {
        let selecting: Vec<&Value> = objects
            .services
            .range((ns.clone(), String::new())..)
            .take_while(|((sns, _), _)| sns == ns)
            .map(|(_, s)| s)
            .filter(|s| selects(s, pod))
            .collect();
        let slice_ready = ready.get(&(ns.clone(), name.clone())).copied();
        if let Some(doc) = workload(pod, &selecting, slice_ready) {
            out.push((label("v1", "Pod", ns, name), doc.to_string()));
        }
    }
    for ((api_kind, ns, name), obj) in &objects.istio {
        let (api, kind) = api_kind.rsplit_once('/').unwrap_or(("", api_kind));
        out.push((label(api, kind, ns, name), obj.to_string()));
    }
    out
}

fn label(api_version: &str, kind: &str, ns: &str, name: &str) -> String {
    format!("kubernetes://{api_version}/{kind}/{ns}/{name}")
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn string_map(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.is_string())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn meta(obj: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    let md = obj.get("metadata");
    for key in ["name", "namespace"] {
        if let Some(v) = md.and_then(|md| md.get(key)) {
            m.insert(key.to_owned(), v.clone());
        }
    }
    let labels = string_map(md.and_then(|md| md.get("labels")));
    if !labels.is_empty() {
        m.insert("labels".to_owned(), Value::Object(labels));
    }
    m
}

/// The application protocol of a Kubernetes service port, Istio's way:
/// `appProtocol` first; otherwise the registry infers it from the name.
fn app_protocol(port: &Value) -> Option<&'static str> {
    let ap = port.get("appProtocol")?.as_str()?.to_ascii_lowercase();
    Some(match ap.as_str() {
        "http" | "kubernetes.io/ws" | "kubernetes.io/wss" => "HTTP",
        "http2" | "kubernetes.io/h2c" => "HTTP2",
        "grpc" | "grpc-web" => "GRPC",
        "https" => "HTTPS",
        "tls" => "TLS",
        "tcp" | "mongo" | "mysql" | "redis" => "TCP",
        _ => return None,
    })
}

/// A Kubernetes Service as a registry Service; `None` for kinds the mesh
/// does not route (ExternalName; a service with only UDP/SCTP ports).
pub fn service(svc: &Value) -> Option<Value> {
    let spec = svc.get("spec");
    if spec.and_then(|s| str_at(s, &["type"])) == Some("ExternalName") {
        return None;
    }
    let ports: Vec<Value> = spec
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|p| matches!(str_at(p, &["protocol"]), None | Some("TCP")))
        .map(|p| {
            let number = p.get("port").cloned().unwrap_or(Value::Null);
            let name = match p.get("name").and_then(Value::as_str) {
                Some(n) if !n.is_empty() => n.to_owned(),
                // Kubernetes allows one unnamed port.
                _ => format!("port-{}", number.as_i64().unwrap_or(0)),
            };
            let mut out = Map::new();
            out.insert("name".to_owned(), Value::String(name));
            out.insert("port".to_owned(), number);
            // A named targetPort is resolved per pod (`Workload.ports`).
            if let Some(t) = p.get("targetPort").filter(|t| t.is_i64()) {
                out.insert("targetPort".to_owned(), t.clone());
            }
            if let Some(proto) = app_protocol(p) {
                out.insert("protocol".to_owned(), Value::String(proto.to_owned()));
            }
            Value::Object(out)
        })
        .collect();
    if ports.is_empty() {
        return None;
    }
    let mut spec_out = Map::new();
    spec_out.insert("ports".to_owned(), Value::Array(ports));
    let selector = string_map(spec.and_then(|s| s.get("selector")));
    if !selector.is_empty() {
        spec_out.insert("selector".to_owned(), Value::Object(selector));
    }
    if let Some(export) = str_at(svc, &["metadata", "annotations", EXPORT_TO]) {
        let list: Vec<Value> = export
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_owned()))
            .collect();
        spec_out.insert("exportTo".to_owned(), Value::Array(list));
    }
    Some(json!({
        "apiVersion": ringmesh_registry::API_VERSION,
        "kind": "Service",
        "metadata": meta(svc),
        "spec": spec_out,
    }))
}

/// Whether a Service's selector picks a pod (same namespace assumed).
pub fn selects(svc: &Value, pod: &Value) -> bool {
    let selector = string_map(svc.pointer("/spec/selector"));
    let labels = pod.pointer("/metadata/labels");
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Readiness of pods as their EndpointSlices report it: a pod is ready
/// only if no slice lists it as not ready or terminating.
pub fn endpoint_readiness<'a>(
    slices: impl Iterator<Item = &'a Value>,
) -> BTreeMap<(String, String), bool> {
    let mut out = BTreeMap::new();
    for slice in slices {
        let slice_ns = str_at(slice, &["metadata", "namespace"]).unwrap_or("default");
        let endpoints = slice.get("endpoints").and_then(Value::as_array);
        for ep in endpoints.map(Vec::as_slice).unwrap_or_default() {
            let Some(target) = ep.get("targetRef") else {
                continue;
            };
            if str_at(target, &["kind"]) != Some("Pod") {
                continue;
            }
            let Some(name) = str_at(target, &["name"]) else {
                continue;
            };
            let ns = str_at(target, &["namespace"]).unwrap_or(slice_ns);
            let cond = ep.get("conditions");
            let ready = cond.and_then(|c| c.get("ready")).and_then(Value::as_bool) != Some(false)
                && cond
                    .and_then(|c| c.get("terminating"))
                    .and_then(Value::as_bool)
                    != Some(true);
            let e = out.entry((ns.to_owned(), name.to_owned())).or_insert(true);
            *e = *e && ready;
        }
    }
    out
}

/// A pod as a registry Workload; `None` while it has no IP or after it
/// finished.
pub fn workload(pod: &Value, selecting: &[&Value], slice_ready: Option<bool>) -> Option<Value> {
    let ip = str_at(pod, &["status", "podIP"]).filter(|ip| !ip.is_empty())?;
    if matches!(
        str_at(pod, &["status", "phase"]),
        Some("Succeeded" | "Failed")
    ) {
        return None;
    }
    let spec = pod.get("spec");
    let containers = || {
        ["containers", "initContainers"]
            .into_iter()
            .filter_map(move |k| spec.and_then(|s| s.get(k)).and_then(Value::as_array))
            .flatten()
    };
    let annotations = pod.pointer("/metadata/annotations");
    let sidecar = SIDECAR_STATUS
        .iter()
        .any(|a| annotations.and_then(|m| m.get(*a)).is_some())
        || containers()
            .any(|c| str_at(c, &["name"]).is_some_and(|n| PROXY_CONTAINERS.contains(&n)));
    let pod_ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                str_at(c, &["type"]) == Some("Ready") && str_at(c, &["status"]) == Some("True")
            })
        });
    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
    let ready = pod_ready && !deleting && slice_ready != Some(false);

    // Named target ports, resolved against this pod's container ports.
    let mut ports = Map::new();
    for svc in selecting {
        let svc_ports = svc.pointer("/spec/ports").and_then(Value::as_array);
        for p in svc_ports.map(Vec::as_slice).unwrap_or_default() {
            let (Some(target), Some(name)) = (
                p.get("targetPort").and_then(Value::as_str),
                p.get("name").and_then(Value::as_str),
            ) else {
                continue;
            };
            let found = containers()
                .filter_map(|c| c.get("ports").and_then(Value::as_array))
                .flatten()
                .find(|cp| str_at(cp, &["name"]) == Some(target))
                .and_then(|cp| cp.get("containerPort").cloned());
            if let Some(number) = found {
                ports.insert(name.to_owned(), number);
            }
        }
    }

    let mut spec_out = Map::new();
    spec_out.insert("address".to_owned(), Value::String(ip.to_owned()));
    if let Some(sa) = spec
        .and_then(|s| str_at(s, &["serviceAccountName"]))
        .filter(|s| !s.is_empty())
    {
        spec_out.insert("serviceAccount".to_owned(), Value::String(sa.to_owned()));
    }
    // Istio's label for a pod's locality: `region.zone.subzone`.
    if let Some(loc) = str_at(pod, &["metadata", "labels", "istio-locality"]) {
        spec_out.insert("locality".to_owned(), Value::String(loc.replace('.', "/")));
    }
    if !ports.is_empty() {
        spec_out.insert("ports".to_owned(), Value::Object(ports));
    }
    spec_out.insert("sidecar".to_owned(), Value::Bool(sidecar));
    spec_out.insert("ready".to_owned(), Value::Bool(ready));
    Some(json!({
        "apiVersion": ringmesh_registry::API_VERSION,
        "kind": "Workload",
        "metadata": meta(pod),
        "spec": spec_out,
    }))
}
