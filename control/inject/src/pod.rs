//! The decision and the injection itself, on a pod or a pod template
//! (`{metadata, spec}` as JSON).

use ringmesh_iptables::config::{self as init_config, Selection};
use serde_json::{json, Map, Value};

use crate::{bootstrap, names, patch, ports, InjectError, Resources, Settings};

/// Whether a pod gets the sidecar, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Inject,
    /// Left as it is, for this reason (logged, returned as a warning).
    Skip(String),
}

/// What the proxy's identity and node id are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContext {
    pub namespace: String,
    /// The pod's name; for a pod named by the API server later
    /// (`generateName`) the prefix followed by `***`, as Istio does.
    pub pod_name: String,
    /// The workload (Deployment, StatefulSet, ... or the pod itself).
    pub workload: String,
    /// `spec.serviceAccountName`, `default` when unset.
    pub service_account: String,
}

impl PodContext {
    /// From a pod's (or template's) metadata and spec. `namespace` is used
    /// when the metadata has none (a webhook request names it; a template
    /// inherits its workload's).
    pub fn from_template(template: &Value, namespace: &str, workload: Option<&str>) -> Self {
        let meta = &template["metadata"];
        let namespace = meta["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or(namespace)
            .to_string();
        let name = meta["name"].as_str().filter(|s| !s.is_empty());
        let generate = meta["generateName"].as_str().filter(|s| !s.is_empty());
        let pod_name = match (name, generate, workload) {
            (Some(n), _, _) => n.to_string(),
            (None, Some(g), _) => format!("{g}***"),
            (None, None, Some(w)) => format!("{w}-***"),
            (None, None, None) => "***".to_string(),
        };
        let workload = workload
            .map(str::to_string)
            .or_else(|| workload_from_owner(meta))
            .or_else(|| generate.map(|g| g.trim_end_matches('-').to_string()))
            .or_else(|| name.map(str::to_string))
            .unwrap_or_else(|| "unknown".to_string());
        let service_account = template["spec"]["serviceAccountName"]
            .as_str()
            .or_else(|| template["spec"]["serviceAccount"].as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        PodContext {
            namespace,
            pod_name,
            workload,
            service_account,
        }
    }
}

/// The controlling owner's name; a ReplicaSet made by a Deployment (its
/// pods carry `pod-template-hash`) stands for the Deployment, a Job made
/// by a CronJob for the CronJob, as Istio names workloads.
fn workload_from_owner(meta: &Value) -> Option<String> {
    let owners = meta["ownerReferences"].as_array()?;
    let owner = owners
        .iter()
        .find(|o| o["controller"].as_bool() == Some(true))
        .or_else(|| owners.first())?;
    let name = owner["name"].as_str()?;
    let kind = owner["kind"].as_str().unwrap_or("");
    if kind == "ReplicaSet" {
        if let Some(hash) = meta["labels"]["pod-template-hash"].as_str() {
            if let Some(base) = name.strip_suffix(&format!("-{hash}")) {
                return Some(base.to_string());
            }
        }
    }
    if kind == "Job" {
        // CronJob jobs are named <cronjob>-<scheduled minute>.
        if let Some((base, suffix)) = name.rsplit_once('-') {
            if suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit()) {
                return Some(base.to_string());
            }
        }
    }
    Some(name.to_string())
}

/// Namespaces Istio never injects.
const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Whether `template` (a pod or a pod template) gets the sidecar.
/// `default_inject` decides when the pod says nothing.
pub fn decide(template: &Value, namespace: &str, default_inject: bool) -> Decision {
    let meta = &template["metadata"];
    let spec = &template["spec"];
    if spec["hostNetwork"].as_bool() == Some(true) {
        return Decision::Skip("hostNetwork pods are not injected".into());
    }
    if let Some(why) = already_injected(template) {
        return Decision::Skip(format!("already injected ({why})"));
    }
    if SYSTEM_NAMESPACES.contains(&namespace) {
        return Decision::Skip(format!("namespace {namespace} is never injected"));
    }
    // The label wins over the annotation (Istio's order).
    for (place, value) in [
        ("label", meta["labels"][names::INJECT].as_str()),
        ("annotation", meta["annotations"][names::INJECT].as_str()),
    ] {
        let Some(value) = value else { continue };
        return match parse_bool(value) {
            Some(true) => Decision::Inject,
            Some(false) => Decision::Skip(format!("{place} {}={value:?}", names::INJECT)),
            None => Decision::Skip(format!(
                "{place} {}={value:?} is neither true nor false; not injecting",
                names::INJECT
            )),
        };
    }
    if default_inject {
        Decision::Inject
    } else {
        Decision::Skip(format!(
            "no {}: \"true\" on the pod and injection is off by default",
            names::INJECT
        ))
    }
}

fn already_injected(template: &Value) -> Option<String> {
    if template["metadata"]["annotations"][names::STATUS_ANNOTATION].is_string() {
        return Some(format!("annotation {}", names::STATUS_ANNOTATION));
    }
    for list in ["initContainers", "containers"] {
        for c in template["spec"][list].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or("");
            if name == names::PROXY_CONTAINER || name == names::INIT_CONTAINER {
                return Some(format!("{list} has {name}"));
            }
        }
    }
    None
}

/// Kubernetes' and Istio's spellings of booleans in annotations.
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" | "enabled" => Some(true),
        "false" | "no" | "n" | "off" | "disabled" => Some(false),
        _ => None,
    }
}

/// The webhook's entry point: decide for `pod` (as the API server sent
/// it; `namespace` from the AdmissionRequest) and return the decision and
/// the JSON Patch (empty when skipped).
pub fn inject_pod(
    pod: &Value,
    namespace: &str,
    settings: &Settings,
) -> Result<(Decision, Vec<Value>), InjectError> {
    if !pod.is_object() {
        return Err(InjectError::Malformed(
            "the pod is not a JSON object".into(),
        ));
    }
    let decision = decide(pod, namespace, true);
    if decision != Decision::Inject {
        return Ok((decision, Vec::new()));
    }
    let ctx = PodContext::from_template(pod, namespace, None);
    let mut injected = pod.clone();
    inject_pod_spec(&mut injected, &ctx, settings)?;
    Ok((Decision::Inject, patch::diff(pod, &injected)))
}

fn annotation<'a>(template: &'a Value, key: &str) -> Option<&'a str> {
    template["metadata"]["annotations"][key]
        .as_str()
        .map(str::trim)
}

fn annotation_err(key: &str, problem: impl ToString) -> InjectError {
    InjectError::Annotation {
        key: key.to_string(),
        problem: problem.to_string(),
    }
}

fn ports_annotation(template: &Value, key: &str) -> Result<Vec<u16>, InjectError> {
    match annotation(template, key) {
        None => Ok(Vec::new()),
        Some(v) => init_config::parse_ports(v).map_err(|e| annotation_err(key, e)),
    }
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn extend_unique<T: PartialEq + Copy>(to: &mut Vec<T>, from: &[T]) {
    for x in from {
        if !to.contains(x) {
            to.push(*x);
        }
    }
}

/// ringmesh-init's arguments for this pod: the settings, then the pod's
/// `traffic.sidecar.istio.io/*` annotations (checked with ringmesh-init's
/// own parsers).
fn init_args(template: &Value, settings: &Settings) -> Result<Vec<String>, InjectError> {
    let mut exclude_in = init_config::DEFAULT_EXCLUDED_INBOUND_PORTS.to_vec();
    extend_unique(&mut exclude_in, &settings.exclude_inbound_ports);
    extend_unique(
        &mut exclude_in,
        &ports_annotation(template, names::EXCLUDE_INBOUND_PORTS)?,
    );
    let mut exclude_out = settings.exclude_outbound_ports.clone();
    extend_unique(
        &mut exclude_out,
        &ports_annotation(template, names::EXCLUDE_OUTBOUND_PORTS)?,
    );
    let include_in = match annotation(template, names::INCLUDE_INBOUND_PORTS) {
        None => "*".to_string(),
        Some(v) => init_config::parse_selection(v, init_config::parse_port)
            .map_err(|e| annotation_err(names::INCLUDE_INBOUND_PORTS, e))?
            .to_string(),
    };
    let exclude_cidrs = match annotation(template, names::EXCLUDE_OUTBOUND_IP_RANGES) {
        None => String::new(),
        Some(v) => join(
            &init_config::parse_cidrs(v)
                .map_err(|e| annotation_err(names::EXCLUDE_OUTBOUND_IP_RANGES, e))?,
        ),
    };
    let include_cidrs = match annotation(template, names::INCLUDE_OUTBOUND_IP_RANGES) {
        None => "*".to_string(),
        Some(v) => {
            let sel = init_config::parse_selection(v, |p| {
                p.parse::<ringmesh_iptables::Cidr>().map_err(Into::into)
            })
            .map_err(|e| annotation_err(names::INCLUDE_OUTBOUND_IP_RANGES, e))?;
            if let Selection::Only(list) = &sel {
                if list.is_empty() {
                    // Istio: an empty include list captures nothing
                    // outbound; ringmesh-init says the same with "".
                    String::new()
                } else {
                    sel.to_string()
                }
            } else {
                sel.to_string()
            }
        }
    };
    let mut args = vec![
        format!("--proxy-uid={}", init_config::PROXY_ID),
        format!("--proxy-gid={}", init_config::PROXY_ID),
        format!("--outbound-port={}", ports::OUTBOUND),
        format!("--inbound-port={}", ports::INBOUND),
        format!("--include-inbound-ports={include_in}"),
        format!("--exclude-inbound-ports={}", join(&exclude_in)),
    ];
    if !exclude_out.is_empty() {
        args.push(format!("--exclude-outbound-ports={}", join(&exclude_out)));
    }
    if !exclude_cidrs.is_empty() {
        args.push(format!("--exclude-outbound-cidrs={exclude_cidrs}"));
    }
    if include_cidrs != "*" {
        args.push(format!("--include-outbound-cidrs={include_cidrs}"));
    }
    if settings.ipv6 {
        args.push("--ipv6".into());
    }
    Ok(args)
}

/// A Kubernetes quantity, roughly (the API server has the last word):
/// digits with an optional fraction and suffix.
fn quantity(key: &str, v: &str) -> Result<String, InjectError> {
    let digits_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(digits_end);
    let ok_suffix = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ]
    .contains(&suffix);
    if num.is_empty() || num.parse::<f64>().is_err() || !ok_suffix {
        return Err(annotation_err(
            key,
            format!("{v:?} is not a Kubernetes quantity (e.g. 100m, 2, 128Mi)"),
        ));
    }
    Ok(v.to_string())
}

fn resources(
    template: &Value,
    base: &Resources,
    keys: Option<[&str; 4]>,
) -> Result<Value, InjectError> {
    let mut r = base.clone();
    if let Some([cpu, mem, cpu_limit, mem_limit]) = keys {
        if let Some(v) = annotation(template, cpu) {
            r.cpu_request = quantity(cpu, v)?;
        }
        if let Some(v) = annotation(template, mem) {
            r.memory_request = quantity(mem, v)?;
        }
        if let Some(v) = annotation(template, cpu_limit) {
            r.cpu_limit = Some(quantity(cpu_limit, v)?);
        }
        if let Some(v) = annotation(template, mem_limit) {
            r.memory_limit = Some(quantity(mem_limit, v)?);
        }
    }
    let mut limits = Map::new();
    if let Some(c) = r.cpu_limit {
        limits.insert("cpu".into(), c.into());
    }
    if let Some(m) = r.memory_limit {
        limits.insert("memory".into(), m.into());
    }
    let mut out = json!({"requests": {"cpu": r.cpu_request, "memory": r.memory_request}});
    if !limits.is_empty() {
        out["limits"] = Value::Object(limits);
    }
    Ok(out)
}

fn seccomp(settings: &Settings) -> Value {
    match &settings.seccomp_localhost_profile {
        Some(path) => json!({"type": "Localhost", "localhostProfile": path}),
        None => json!({"type": "RuntimeDefault"}),
    }
}

fn init_container(template: &Value, settings: &Settings) -> Result<Value, InjectError> {
    let mut c = json!({
        "name": names::INIT_CONTAINER,
        "image": settings.init_image,
        "args": init_args(template, settings)?,
        "resources": resources(template, &settings.init_resources, None)?,
        "securityContext": {
            // Root for iptables, but only the two capabilities it needs;
            // writable root filesystem for iptables' lock file.
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "privileged": false,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    if let Some(p) = &settings.image_pull_policy {
        c["imagePullPolicy"] = p.clone().into();
    }
    Ok(c)
}

fn http_probe(period: u32, failures: u32) -> Value {
    json!({
        "httpGet": {"path": "/ready", "port": ports::HEALTH, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    })
}

fn proxy_container(
    template: &Value,
    settings: &Settings,
    native: bool,
) -> Result<Value, InjectError> {
    let image = annotation(template, names::PROXY_IMAGE)
        .filter(|s| !s.is_empty())
        .unwrap_or(&settings.proxy_image);
    let field =
        |path: &str| json!({"valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}});
    let env = |name: &str, path: &str| {
        let mut e = field(path);
        e["name"] = name.into();
        e
    };
    let mut c = json!({
        "name": names::PROXY_CONTAINER,
        "image": image,
        "args": ["--config", format!("{}/proxy.yaml", names::BOOTSTRAP_DIR)],
        "ports": [{"name": "ringmesh-health", "containerPort": ports::HEALTH, "protocol": "TCP"}],
        "env": [
            env("POD_NAME", "metadata.name"),
            env("POD_NAMESPACE", "metadata.namespace"),
            env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            env("INSTANCE_IP", "status.podIP"),
            env("HOST_IP", "status.hostIP"),
        ],
        "resources": resources(
            template,
            &settings.proxy_resources,
            Some([names::PROXY_CPU, names::PROXY_MEMORY, names::PROXY_CPU_LIMIT, names::PROXY_MEMORY_LIMIT]),
        )?,
        "securityContext": {
            "runAsUser": 1337,
            "runAsGroup": 1337,
            "runAsNonRoot": true,
            "privileged": false,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": seccomp(settings),
        },
        // Up to 10 minutes for the first configuration and certificate
        // (the app waits behind a native sidecar's startup probe).
        "startupProbe": http_probe(1, 600),
        "readinessProbe": http_probe(15, 4),
        "volumeMounts": [
            {"name": names::BOOTSTRAP_VOLUME, "mountPath": names::BOOTSTRAP_DIR, "readOnly": true},
            {"name": names::TOKEN_VOLUME, "mountPath": names::TOKEN_DIR, "readOnly": true},
            {"name": names::WORK_VOLUME, "mountPath": names::WORK_DIR},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    if native {
        c["restartPolicy"] = "Always".into();
    }
    if let Some(p) = &settings.image_pull_policy {
        c["imagePullPolicy"] = p.clone().into();
    }
    Ok(c)
}

fn volumes(settings: &Settings) -> [Value; 3] {
    [
        json!({
            "name": names::BOOTSTRAP_VOLUME,
            "downwardAPI": {
                "defaultMode": 0o444,
                "items": [{
                    "path": "proxy.yaml",
                    "fieldRef": {
                        "apiVersion": "v1",
                        "fieldPath": format!("metadata.annotations['{}']", names::BOOTSTRAP_ANNOTATION),
                    },
                }],
            },
        }),
        json!({
            "name": names::TOKEN_VOLUME,
            "projected": {
                "sources": [{"serviceAccountToken": {
                    "audience": settings.token_audience,
                    "expirationSeconds": 43200,
                    "path": names::TOKEN_FILE,
                }}],
            },
        }),
        json!({"name": names::WORK_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}),
    ]
}

fn object_at<'a>(
    v: &'a mut Value,
    key: &str,
    what: &str,
) -> Result<&'a mut Map<String, Value>, InjectError> {
    let map = v
        .as_object_mut()
        .ok_or_else(|| InjectError::Malformed(format!("{what} is not an object")))?;
    let entry = map.entry(key).or_insert_with(|| json!({}));
    if entry.is_null() {
        *entry = json!({});
    }
    entry
        .as_object_mut()
        .ok_or_else(|| InjectError::Malformed(format!("{what}.{key} is not an object")))
}

fn array_at<'a>(
    v: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Vec<Value>, InjectError> {
    let entry = v.entry(key).or_insert_with(|| json!([]));
    if entry.is_null() {
        *entry = json!([]);
    }
    entry
        .as_array_mut()
        .ok_or_else(|| InjectError::Malformed(format!("spec.{key} is not a list")))
}

/// Injects into `template` (a Pod, or a workload's `spec.template`) in
/// place. The caller has decided ([`decide`]); this only fails on a
/// malformed object or an unusable annotation.
pub fn inject_pod_spec(
    template: &mut Value,
    ctx: &PodContext,
    settings: &Settings,
) -> Result<(), InjectError> {
    settings.validate()?;
    let containers = template["spec"]["containers"]
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| InjectError::Malformed("spec.containers is missing or empty".into()))?;
    let first_app = containers[0]["name"].as_str().map(str::to_string);
    for (i, c) in containers.iter().enumerate() {
        if !c.is_object() {
            return Err(InjectError::Malformed(format!(
                "spec.containers[{i}] is not an object"
            )));
        }
    }
    let native = match annotation(template, names::NATIVE_SIDECAR) {
        None => settings.native_sidecar,
        Some(v) => parse_bool(v).ok_or_else(|| {
            annotation_err(
                names::NATIVE_SIDECAR,
                format!("{v:?} is neither true nor false"),
            )
        })?,
    };
    let init = init_container(template, settings)?;
    let proxy = proxy_container(template, settings, native)?;
    let bootstrap = bootstrap::bootstrap_yaml(template, ctx, settings);
    let status = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "layout": if native { "native" } else { "classic" },
        "initContainers": if native {
            json!([names::INIT_CONTAINER, names::PROXY_CONTAINER])
        } else {
            json!([names::INIT_CONTAINER])
        },
        "containers": if native { json!([]) } else { json!([names::PROXY_CONTAINER]) },
        "volumes": [names::BOOTSTRAP_VOLUME, names::TOKEN_VOLUME, names::WORK_VOLUME],
    });

    {
        let meta = object_at(template, "metadata", "the object")?;
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if labels.is_null() {
            *labels = json!({});
        }
        let labels = labels
            .as_object_mut()
            .ok_or_else(|| InjectError::Malformed("metadata.labels is not an object".into()))?;
        labels
            .entry(names::TLS_MODE_LABEL)
            .or_insert_with(|| "istio".into());
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if annotations.is_null() {
            *annotations = json!({});
        }
        let annotations = annotations.as_object_mut().ok_or_else(|| {
            InjectError::Malformed("metadata.annotations is not an object".into())
        })?;
        annotations.insert(names::STATUS_ANNOTATION.into(), status.to_string().into());
        annotations.insert(names::BOOTSTRAP_ANNOTATION.into(), bootstrap.into());
        if let Some(app) = first_app {
            annotations
                .entry(names::DEFAULT_CONTAINER)
                .or_insert_with(|| app.into());
        }
    }

    let spec = object_at(template, "spec", "the object")?;
    // Ours first: interception before anything else runs, and the proxy
    // ready before the pod's own init containers (they may need the
    // network).
    let inits = array_at(spec, "initContainers")?;
    if native {
        inits.insert(0, proxy);
        inits.insert(0, init);
    } else {
        inits.insert(0, init);
        array_at(spec, "containers")?.insert(0, proxy);
    }
    array_at(spec, "volumes")?.extend(volumes(settings));
    Ok(())
}
