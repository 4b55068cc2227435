//! The registry's own object kinds, `Service` and `Workload` of
//! `registry.ringmesh.io/v1`: their YAML schema (strict: unknown fields are
//! errors), their validation, and protocol inference from port names.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use ringmesh_istio::{Diagnostic, ResourceRef, Severity};
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::{codes, path::FieldPath, Protocol, Service, ServicePort, Workload};

/// The API group of the registry's kinds.
pub const GROUP: &str = "registry.ringmesh.io";
/// The only version of that group so far.
pub const API_VERSION: &str = "registry.ringmesh.io/v1";

/// Largest load-balancing weight a workload may carry. Envoy accepts much
/// larger ones; a bound keeps the sum of a service's weights far from any
/// overflow and typos (`weight: 10000`) visible.
pub const MAX_WEIGHT: u32 = 128;

impl Protocol {
    /// Every protocol, in the order error messages list them.
    pub const ALL: [Protocol; 6] = [
        Protocol::Http,
        Protocol::Http2,
        Protocol::Grpc,
        Protocol::Https,
        Protocol::Tls,
        Protocol::Tcp,
    ];

    /// Istio's name (`HTTP`, `GRPC`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Grpc => "GRPC",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
        }
    }

    /// The protocol named `name`, case-insensitively as Istio reads it.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name))
    }

    /// The protocol Istio infers from a port's name: the part before the
    /// first `-` (`http-web` → HTTP, `grpc` → GRPC, `tcp-db` → TCP),
    /// case-insensitively. `grpc-web` is HTTP (gRPC-Web runs over plain
    /// HTTP requests). Anything else is TCP, which is what Istio does with
    /// a protocol it cannot tell.
    pub fn from_port_name(port_name: &str) -> Protocol {
        let lower = port_name.to_ascii_lowercase();
        if lower == "grpc-web" || lower.starts_with("grpc-web-") {
            return Protocol::Http;
        }
        let prefix = lower.split('-').next().unwrap_or_default();
        Protocol::from_name(prefix).unwrap_or(Protocol::Tcp)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object as written: the envelope around a spec. Unlike the Istio
/// loader, which accepts all of Kubernetes' `ObjectMeta` (what `kubectl get`
/// prints), these objects are written by hand, so only the fields that
/// mean something here are accepted.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Object<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: ObjectMeta,
    spec: S,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ObjectMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    /// Accepted for the user's notes; not used.
    #[serde(default)]
    #[allow(dead_code)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServiceSpec {
    ports: Vec<PortSpec>,
    #[serde(default)]
    selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    export_to: Option<Vec<String>>,
}

/// Numbers are read wide and range-checked by the validator, so that
/// `port: 70000` gets a message about ports, not about `u16`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PortSpec {
    name: String,
    port: i64,
    #[serde(default)]
    target_port: Option<i64>,
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WorkloadSpec {
    address: String,
    #[serde(default)]
    service_account: Option<String>,
    #[serde(default)]
    locality: Option<String>,
    #[serde(default)]
    weight: Option<i64>,
    #[serde(default)]
    ports: Option<BTreeMap<String, i64>>,
    #[serde(default)]
    sidecar: Option<bool>,
    #[serde(default)]
    ready: Option<bool>,
}

/// A registry kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RegistryKind {
    Service,
    Workload,
}

impl RegistryKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RegistryKind::Service => "Service",
            RegistryKind::Workload => "Workload",
        }
    }

    pub(crate) fn find(kind: &str) -> Option<RegistryKind> {
        [RegistryKind::Service, RegistryKind::Workload]
            .into_iter()
            .find(|k| k.as_str() == kind)
    }
}

/// A parsed and valid registry object.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    Service(Service),
    Workload(Workload),
}

/// Where an object sits: its document's text, the lines before that text
/// in the file, and the path from the document's root to the object (root,
/// or `items[i]` of a `kind: List`).
#[derive(Clone)]
pub(crate) struct Place<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
    pub(crate) line_offset: usize,
    pub(crate) at: FieldPath,
}

impl Place<'_> {
    /// 1-based file line and column of a field of the object, or of its
    /// deepest existing ancestor.
    pub(crate) fn position(&self, field: &FieldPath) -> Option<(usize, usize)> {
        let path = self.at.join(field);
        ringmesh_istio::locate_in_document(self.text, &path.steps())
            .map(|(l, c)| (l + self.line_offset, c))
    }

    /// The line the object starts on.
    pub(crate) fn line(&self) -> usize {
        self.position(&FieldPath::root())
            .map_or(self.line_offset + 1, |p| p.0)
    }

    pub(crate) fn diagnostic(
        &self,
        severity: Severity,
        code: &'static str,
        resource: Option<ResourceRef>,
        field: &FieldPath,
        message: impl Into<String>,
    ) -> Diagnostic {
        let pos = self.position(field);
        Diagnostic {
            severity,
            code,
            file: self.file.to_owned(),
            resource,
            field: (!field.is_root()).then(|| field.to_string()),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            message: message.into(),
        }
    }
}

/// Parsing options the objects need.
pub(crate) struct Defaults<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) domain_suffix: &'a str,
}

/// Parse and validate one object of the registry's group. `api_version`
/// and `kind` were read from the untyped value already. Returns the object
/// when it is valid; every finding goes to `diagnostics`.
pub(crate) fn parse_object(
    place: &Place<'_>,
    value: &Value,
    api_version: &str,
    kind: &str,
    resource: ResourceRef,
    defaults: &Defaults<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Parsed> {
    let version = api_version.rsplit_once('/').map_or("", |(_, v)| v);
    let found = RegistryKind::find(kind);
    if version != "v1" {
        diagnostics.push(place.diagnostic(
            Severity::Error,
            codes::UNKNOWN_KIND,
            Some(resource),
            &FieldPath::root().key("apiVersion"),
            format!("unknown apiVersion {api_version:?} for {kind} (expected {API_VERSION})"),
        ));
        return None;
    }
    let Some(kind) = found else {
        diagnostics.push(place.diagnostic(
            Severity::Error,
            codes::UNKNOWN_KIND,
            Some(resource),
            &FieldPath::root().key("kind"),
            format!("unknown kind {kind:?} in {API_VERSION} (expected Service or Workload)"),
        ));
        return None;
    };
    let mut cx = Ctx::default();
    let parsed = match kind {
        RegistryKind::Service => typed::<ServiceSpec>(value)
            .map(|obj| service(obj, defaults, &mut cx).map(Parsed::Service)),
        RegistryKind::Workload => typed::<WorkloadSpec>(value)
            .map(|obj| workload(obj, defaults, &mut cx).map(Parsed::Workload)),
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err((path, message)) => {
            diagnostics.push(place.diagnostic(
                Severity::Error,
                codes::SCHEMA,
                Some(resource),
                &path,
                message,
            ));
            return None;
        }
    };
    // The typed parse may have settled the namespace (the default one).
    let resource = match &parsed {
        Some(Parsed::Service(s)) => reference(RegistryKind::Service, &s.namespace, &s.name),
        Some(Parsed::Workload(w)) => reference(RegistryKind::Workload, &w.namespace, &w.name),
        None => resource,
    };
    let rejected = cx.issues.iter().any(|i| i.severity == Severity::Error);
    for issue in cx.issues {
        diagnostics.push(place.diagnostic(
            issue.severity,
            issue.code,
            Some(resource.clone()),
            &issue.path,
            issue.message,
        ));
    }
    if rejected {
        None
    } else {
        parsed
    }
}

pub(crate) fn reference(kind: RegistryKind, namespace: &str, name: &str) -> ResourceRef {
    ResourceRef {
        kind: kind.as_str().to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// Deserialize an object, with the field path of the first error.
fn typed<S: serde::de::DeserializeOwned>(value: &Value) -> Result<Object<S>, (FieldPath, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = FieldPath::from_serde(e.path());
        (path, e.into_inner().to_string())
    })
}

struct Issue {
    severity: Severity,
    code: &'static str,
    path: FieldPath,
    message: String,
}

#[derive(Default)]
struct Ctx {
    issues: Vec<Issue>,
}

impl Ctx {
    fn error(&mut self, code: &'static str, path: &FieldPath, message: String) {
        self.issues.push(Issue {
            severity: Severity::Error,
            code,
            path: path.clone(),
            message,
        });
    }

    fn invalid(&mut self, path: &FieldPath, message: String) {
        self.error(codes::INVALID_VALUE, path, message);
    }

    /// `value` as a port number, or an error at `path`.
    fn port(&mut self, path: &FieldPath, what: &str, value: i64) -> Option<u16> {
        match u16::try_from(value) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                self.invalid(path, format!("{what} {value} is out of range (1-65535)"));
                None
            }
        }
    }

    /// Name and namespace; returns the namespace to use.
    fn metadata(&mut self, meta: &ObjectMeta, defaults: &Defaults<'_>) -> String {
        let md = FieldPath::root().key("metadata");
        if !is_dns_label(&meta.name) {
            self.invalid(
                &md.key("name"),
                format!("invalid name {:?}: {DNS_LABEL_RULE}", meta.name),
            );
        }
        let namespace = meta
            .namespace
            .clone()
            .unwrap_or_else(|| defaults.namespace.to_owned());
        if !is_dns_label(&namespace) {
            self.invalid(
                &md.key("namespace"),
                format!("invalid namespace {namespace:?}: {DNS_LABEL_RULE}"),
            );
        }
        namespace
    }
}

const DNS_LABEL_RULE: &str =
    "a DNS-1123 label is at most 63 lower case letters, digits and '-', starting and ending \
     with a letter or digit";

/// A DNS-1123 label (Kubernetes names and namespaces).
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (service account names): labels joined by dots.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn service(obj: Object<ServiceSpec>, defaults: &Defaults<'_>, cx: &mut Ctx) -> Option<Service> {
    let namespace = cx.metadata(&obj.metadata, defaults);
    let spec = FieldPath::root().key("spec");
    let ports_path = spec.key("ports");
    if obj.spec.ports.is_empty() {
        cx.invalid(&ports_path, "a Service needs at least one port".to_owned());
    }
    let mut ports = Vec::with_capacity(obj.spec.ports.len());
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut numbers: HashMap<i64, usize> = HashMap::new();
    for (i, p) in obj.spec.ports.iter().enumerate() {
        let at = ports_path.index(i);
        if !is_dns_label(&p.name) {
            cx.invalid(
                &at.key("name"),
                format!("invalid port name {:?}: {DNS_LABEL_RULE}", p.name),
            );
        } else if let Some(first) = names.insert(&p.name, i) {
            names.insert(&p.name, first);
            cx.error(
                codes::DUPLICATE_PORT,
                &at.key("name"),
                format!(
                    "duplicate port name {:?} (also spec.ports[{first}])",
                    p.name
                ),
            );
        }
        let port = cx.port(&at.key("port"), "port", p.port);
        if port.is_some() {
            if let Some(first) = numbers.insert(p.port, i) {
                numbers.insert(p.port, first);
                cx.error(
                    codes::DUPLICATE_PORT,
                    &at.key("port"),
                    format!("duplicate port {} (also spec.ports[{first}])", p.port),
                );
            }
        }
        let target_port = match p.target_port {
            Some(t) => cx.port(&at.key("targetPort"), "targetPort", t),
            None => port,
        };
        let protocol = match &p.protocol {
            None => Some(Protocol::from_port_name(&p.name)),
            Some(name) => {
                let found = Protocol::from_name(name);
                if found.is_none() {
                    let all: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
                    cx.invalid(
                        &at.key("protocol"),
                        format!(
                            "unknown protocol {name:?} (expected one of {})",
                            all.join(", ")
                        ),
                    );
                }
                found
            }
        };
        if let (Some(port), Some(target_port), Some(protocol)) = (port, target_port, protocol) {
            ports.push(ServicePort {
                name: p.name.clone(),
                port,
                target_port,
                protocol,
            });
        }
    }
    let export_to = obj.spec.export_to.unwrap_or_default();
    for (i, e) in export_to.iter().enumerate() {
        if e != "*" && e != "." && !is_dns_label(e) {
            cx.invalid(
                &spec.key("exportTo").index(i),
                format!("invalid exportTo entry {e:?}: expected \"*\", \".\" or a namespace name"),
            );
        }
    }
    let hostname = format!(
        "{}.{namespace}.svc.{}",
        obj.metadata.name, defaults.domain_suffix
    );
    Some(Service {
        name: obj.metadata.name,
        namespace,
        hostname,
        labels: obj.metadata.labels.unwrap_or_default(),
        ports,
        selector: obj.spec.selector.unwrap_or_default(),
        export_to,
    })
}

fn workload(obj: Object<WorkloadSpec>, defaults: &Defaults<'_>, cx: &mut Ctx) -> Option<Workload> {
    let namespace = cx.metadata(&obj.metadata, defaults);
    let spec = FieldPath::root().key("spec");
    let s = obj.spec;
    let address = match s.address.parse::<IpAddr>() {
        Ok(a) if a.is_unspecified() || a.is_multicast() => {
            cx.invalid(
                &spec.key("address"),
                format!(
                    "address {a} cannot receive traffic: give the workload's own unicast address"
                ),
            );
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            cx.invalid(
                &spec.key("address"),
                format!(
                    "invalid address {:?}: not an IPv4 or IPv6 address",
                    s.address
                ),
            );
            None
        }
    };
    let service_account = s.service_account.unwrap_or_else(|| "default".to_owned());
    if !is_dns_subdomain(&service_account) {
        cx.invalid(
            &spec.key("serviceAccount"),
            format!(
                "invalid serviceAccount {service_account:?}: lower case letters, digits, '-' and \
                 '.', at most 253"
            ),
        );
    }
    if let Some(locality) = &s.locality {
        let parts: Vec<&str> = locality.split('/').collect();
        let bad_part = |p: &&str| p.is_empty() || p.chars().any(|c| c.is_whitespace());
        if parts.len() > 3 || parts.iter().any(bad_part) {
            cx.invalid(
                &spec.key("locality"),
                format!(
                    "invalid locality {locality:?}: expected region, region/zone or \
                     region/zone/subzone, each part non-empty and without spaces"
                ),
            );
        }
    }
    let weight = match s.weight {
        None => Some(1),
        Some(w) => match u32::try_from(w) {
            Ok(w) if (1..=MAX_WEIGHT).contains(&w) => Some(w),
            _ => {
                cx.invalid(
                    &spec.key("weight"),
                    format!("weight {w} is out of range (1-{MAX_WEIGHT})"),
                );
                None
            }
        },
    };
    let mut ports = BTreeMap::new();
    for (name, port) in s.ports.unwrap_or_default() {
        let at = spec.key("ports").key(name.as_str());
        if !is_dns_label(&name) {
            cx.invalid(&at, format!("invalid port name {name:?}: {DNS_LABEL_RULE}"));
            continue;
        }
        if let Some(p) = cx.port(&at, "port", port) {
            ports.insert(name, p);
        }
    }
    Some(Workload {
        name: obj.metadata.name,
        namespace,
        address: address?,
        labels: obj.metadata.labels.unwrap_or_default(),
        service_account,
        locality: s.locality,
        weight: weight?,
        ports,
        has_sidecar: s.sidecar.unwrap_or(true),
        ready: s.ready.unwrap_or(true),
    })
}
