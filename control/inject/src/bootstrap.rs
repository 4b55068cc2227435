//! The injected proxy's bootstrap configuration (docs/CONFIG.md): the
//! admin server on loopback, a health listener for kubelet, the control
//! plane (xDS) and the identity from the mesh CA.
//!
//! It is written into the pod's annotation `sidecar.ringmesh.io/bootstrap`
//! and projected into the container as `/etc/ringmesh/proxy.yaml` by a
//! downward-API volume: the proxy reads a file and does not expand
//! environment variables, and everything in it is known when the pod is
//! admitted — except the pod's IP and, for pods named by `generateName`,
//! its final name (the node id then ends in `***`, as Istio's injector
//! writes it; the control plane's scope does not depend on it).

use serde_json::{json, Map, Value};

use crate::{names, pod::PodContext, ports, Settings};

/// The bootstrap YAML for the pod `template` described by `ctx`.
pub fn bootstrap_yaml(template: &Value, ctx: &PodContext, settings: &Settings) -> String {
    let mut labels = Map::new();
    if let Some(l) = template["metadata"]["labels"].as_object() {
        for (k, v) in l {
            if let Some(s) = v.as_str() {
                labels.insert(k.clone(), s.into());
            }
        }
    }
    labels
        .entry(names::TLS_MODE_LABEL)
        .or_insert_with(|| "istio".into());
    let ns = &ctx.namespace;
    let node_id = format!(
        "sidecar~0.0.0.0~{}.{ns}~{ns}.svc.{}",
        ctx.pod_name, settings.domain_suffix
    );
    let config = json!({
        "admin": {"address": format!("127.0.0.1:{}", ports::ADMIN)},
        "listeners": [{
            "name": "ringmesh-health",
            "address": format!("0.0.0.0:{}", ports::HEALTH),
            "protocol": "http",
            "route_config": "ringmesh-health",
        }],
        "route_configs": [{
            "name": "ringmesh-health",
            "virtual_hosts": [{
                "name": "health",
                "domains": ["*"],
                "routes": [{
                    "name": "ready",
                    "match": {"exact": "/ready"},
                    "cluster": "ringmesh-admin",
                    "timeout": "2s",
                }],
            }],
        }],
        "clusters": [{
            "name": "ringmesh-admin",
            "connect_timeout": "1s",
            "endpoints": [{"address": format!("127.0.0.1:{}", ports::ADMIN)}],
        }],
        "xds": {
            "address": settings.control_plane_address,
            "node_id": node_id,
            "node_cluster": format!("{}.{ns}", ctx.workload),
            "metadata": {
                "NAMESPACE": ns,
                "SERVICE_ACCOUNT": ctx.service_account,
                "WORKLOAD_NAME": ctx.workload,
                "INTERCEPTION_MODE": "REDIRECT",
                "LABELS": labels,
            },
        },
        "identity": {
            "trust_domain": settings.trust_domain,
            "namespace": ns,
            "service_account": ctx.service_account,
            "ca_address": settings.control_plane_address,
            "token_file": format!("{}/{}", names::TOKEN_DIR, names::TOKEN_FILE),
        },
    });
    let body = serde_yaml_ng::to_string(&config).unwrap_or_default();
    format!(
        "# ringmesh-proxy bootstrap, written by the injector ({} {}); see docs/CONFIG.md\n{body}",
        names::STATUS_ANNOTATION,
        env!("CARGO_PKG_VERSION")
    )
}
