//! The generated mesh: a registry directory that `ringmesh-control
//! --config-dir` serves, and the changes the driver makes to it.
//!
//! Layout (deterministic from [`MeshSpec`]):
//! - namespaces `ns-0` … `ns-{N-1}`; service `svc-i` lives in
//!   `ns-{i mod N}`, one HTTP port 8080, selector `app: svc-i`;
//! - each service has `workloads_per_service` workloads (pods; versions
//!   v1/v2 alternating) and `extra_endpoints` more that no simulated
//!   proxy runs on (the ones churn removes);
//! - simulated proxy `p` is the sidecar of workload `p / S` of service
//!   `p mod S` (S = services): its node IP is that workload's address;
//! - `routed_services` services, spread evenly, get a VirtualService
//!   (header match, 90/10 split, timeout, retries) and a DestinationRule
//!   (subsets v1/v2, connection pool, outlier detection);
//! - a `Sidecar` restricting egress to the namespace's own services
//!   (`./*`, `istio-system/*`) in every namespace, in the even ones, or
//!   in none (`--sidecars all|half|none`).
//!
//! One file per service (`ns-K/svc-i.yaml`: the Service and its
//! Workloads), so an endpoint change rewrites one small file: written to a
//! dot-file beside it (the registry skips names starting with `.`) and
//! renamed over it, so the registry never reads half a file.

use std::{
    fmt::Write as _,
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde_json::{json, Map, Value};

/// The manifest `generate` writes and `run` reads (a dot-file: the
/// registry skips it).
pub const MANIFEST: &str = ".xds-load.json";
/// The service port of every generated service.
pub const PORT: u16 = 8080;
const DOMAIN: &str = "cluster.local";

/// Where Sidecar resources limit egress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sidecars {
    None,
    /// Even-numbered namespaces.
    Half,
    All,
}

impl Sidecars {
    pub fn parse(s: &str) -> Result<Sidecars, String> {
        match s {
            "none" => Ok(Sidecars::None),
            "half" => Ok(Sidecars::Half),
            "all" => Ok(Sidecars::All),
            _ => Err(format!("--sidecars {s:?}: expected none, half or all")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sidecars::None => "none",
            Sidecars::Half => "half",
            Sidecars::All => "all",
        }
    }

    fn applies(self, namespace: usize) -> bool {
        match self {
            Sidecars::None => false,
            Sidecars::Half => namespace % 2 == 0,
            Sidecars::All => true,
        }
    }
}

/// The parameters of a generated mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshSpec {
    pub proxies: usize,
    pub services: usize,
    pub namespaces: usize,
    /// Pods per service; at least `ceil(proxies / services)`; 0 = that.
    pub workloads_per_service: usize,
    pub extra_endpoints: usize,
    pub routed_services: usize,
    pub sidecars: Sidecars,
    /// Whether a proxy's node carries its pod IP (in the node id and
    /// `INSTANCE_IPS`), as every Kubernetes sidecar's does. Without it the
    /// control plane's scope key (which includes the IP) groups the pods
    /// of one workload: a what-if that measures what per-pod scopes cost.
    pub node_ip: bool,
}

impl MeshSpec {
    /// Fill in defaults and check the limits.
    pub fn validated(mut self) -> Result<MeshSpec, String> {
        if self.services == 0 {
            return Err("--services must be at least 1".into());
        }
        if self.namespaces == 0 || self.namespaces > self.services {
            return Err(format!(
                "--namespaces {} must be between 1 and --services ({})",
                self.namespaces, self.services
            ));
        }
        let needed = self.proxies.div_ceil(self.services).max(1);
        if self.workloads_per_service == 0 {
            self.workloads_per_service = needed;
        }
        if self.workloads_per_service < needed {
            return Err(format!(
                "--workloads-per-service {} is too few for {} proxies over {} services (need {needed})",
                self.workloads_per_service, self.proxies, self.services
            ));
        }
        let total = self.services * (self.workloads_per_service + self.extra_endpoints);
        if total >= 199 << 16 {
            return Err(format!(
                "{total} workloads do not fit the generated address range (10.1.0.0-10.199.255.255)"
            ));
        }
        self.routed_services = self.routed_services.min(self.services);
        Ok(self)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "proxies": self.proxies,
            "services": self.services,
            "namespaces": self.namespaces,
            "workloads_per_service": self.workloads_per_service,
            "extra_endpoints": self.extra_endpoints,
            "routed_services": self.routed_services,
            "sidecars": self.sidecars.as_str(),
            "node_ip": if self.node_ip { "pod" } else { "none" },
        })
    }

    pub fn from_json(v: &Value) -> Result<MeshSpec, String> {
        let n = |k: &str| -> Result<usize, String> {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("{MANIFEST}: field {k}: missing or not a number"))
        };
        let sidecars = v
            .get("sidecars")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{MANIFEST}: field sidecars: missing"))?;
        MeshSpec {
            proxies: n("proxies")?,
            services: n("services")?,
            namespaces: n("namespaces")?,
            workloads_per_service: n("workloads_per_service")?,
            extra_endpoints: n("extra_endpoints")?,
            routed_services: n("routed_services")?,
            sidecars: Sidecars::parse(sidecars)?,
            node_ip: match v.get("node_ip").and_then(Value::as_str) {
                Some("pod") => true,
                Some("none") => false,
                _ => return Err(format!("{MANIFEST}: field node_ip: expected pod or none")),
            },
        }
        .validated()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub ip: Ipv4Addr,
    pub version: &'static str,
}

#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub namespace: usize,
    pub host: String,
    pub endpoints: Vec<Endpoint>,
    pub routed: bool,
    /// Indexes into `endpoints` of the extras churn may remove (never a
    /// proxy's own workload, never one added during the run).
    removable: Vec<usize>,
}

impl Service {
    pub fn namespace_name(&self) -> String {
        format!("ns-{}", self.namespace)
    }

    /// The EDS name of the service's port (Istio's cluster name).
    pub fn cluster(&self) -> String {
        format!("outbound|{PORT}||{}", self.host)
    }

    pub fn removable_left(&self) -> usize {
        self.removable.len()
    }
}

/// A simulated sidecar: its node identity.
#[derive(Clone, Debug)]
pub struct ProxyDef {
    pub service: usize,
    pub pod: String,
    pub namespace: String,
    pub ip: Ipv4Addr,
    pub node_id: String,
    pub cluster: String,
    pub metadata: Map<String, Value>,
}

/// One change made to the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub service: usize,
    pub cluster: String,
    pub ip: Ipv4Addr,
    /// Added (true) or removed (false).
    pub added: bool,
}

#[derive(Debug)]
pub struct Mesh {
    pub spec: MeshSpec,
    pub dir: PathBuf,
    pub services: Vec<Service>,
    pub proxies: Vec<ProxyDef>,
    added: u32,
}

/// The address of the `g`-th generated workload: 10.1.0.0 upwards
/// (`MeshSpec::validated` keeps it below 10.200.0.0, where the endpoints
/// added during a run start). Addresses are only names here: nothing
/// listens on them.
fn pod_ip(g: usize) -> Ipv4Addr {
    let g = g + (1 << 16);
    Ipv4Addr::new(10, (g >> 16) as u8, (g >> 8) as u8, g as u8)
}

impl Mesh {
    /// The mesh of `spec` in `dir` (nothing written yet).
    pub fn new(spec: MeshSpec, dir: &Path) -> Mesh {
        let s = spec.services;
        let per = spec.workloads_per_service + spec.extra_endpoints;
        let routed_every = s.checked_div(spec.routed_services).unwrap_or(0);
        let services = (0..s)
            .map(|i| {
                let ns = i % spec.namespaces;
                let name = format!("svc-{i}");
                let host = format!("{name}.ns-{ns}.svc.{DOMAIN}");
                let endpoints: Vec<Endpoint> = (0..per)
                    .map(|k| Endpoint {
                        name: if k < spec.workloads_per_service {
                            format!("{name}-{k}")
                        } else {
                            format!("{name}-x{}", k - spec.workloads_per_service)
                        },
                        ip: pod_ip(i * per + k),
                        version: if k % 2 == 0 { "v1" } else { "v2" },
                    })
                    .collect();
                Service {
                    removable: (spec.workloads_per_service..per).collect(),
                    routed: routed_every > 0
                        && i % routed_every == 0
                        && i / routed_every < spec.routed_services,
                    name,
                    namespace: ns,
                    host,
                    endpoints,
                }
            })
            .collect::<Vec<_>>();
        let proxies = (0..spec.proxies)
            .map(|p| {
                let svc = &services[p % s];
                let ep = &svc.endpoints[p / s];
                let ns = svc.namespace_name();
                let mut labels = Map::new();
                labels.insert("app".into(), svc.name.clone().into());
                labels.insert("version".into(), ep.version.into());
                let mut metadata = Map::new();
                metadata.insert("NAMESPACE".into(), ns.clone().into());
                if spec.node_ip {
                    metadata.insert("INSTANCE_IPS".into(), ep.ip.to_string().into());
                }
                metadata.insert("INTERCEPTION_MODE".into(), "REDIRECT".into());
                metadata.insert("LABELS".into(), Value::Object(labels));
                metadata.insert(
                    "WORKLOAD_NAME".into(),
                    format!("{}-{}", svc.name, ep.version).into(),
                );
                metadata.insert("SERVICE_ACCOUNT".into(), svc.name.clone().into());
                ProxyDef {
                    service: p % s,
                    pod: ep.name.clone(),
                    node_id: if spec.node_ip {
                        format!("sidecar~{}~{}.{ns}~{ns}.svc.{DOMAIN}", ep.ip, ep.name)
                    } else {
                        format!("sidecar~~{}.{ns}~{ns}.svc.{DOMAIN}", ep.name)
                    },
                    cluster: format!("{}.{ns}", svc.name),
                    namespace: ns,
                    ip: ep.ip,
                    metadata,
                }
            })
            .collect();
        Mesh {
            spec,
            dir: dir.to_owned(),
            services,
            proxies,
            added: 0,
        }
    }

    /// Write the whole registry directory and the manifest. The directory
    /// must be empty, missing, or a previous generation (whose files are
    /// replaced).
    pub fn generate(&self) -> Result<(), String> {
        let dir = &self.dir;
        if dir.exists() {
            let entries: Vec<_> = fs::read_dir(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .filter_map(Result::ok)
                .collect();
            if !entries.is_empty() && !dir.join(MANIFEST).exists() {
                return Err(format!(
                    "{} is not empty and was not generated by ringmesh-xds-load; choose an empty \
                     directory",
                    dir.display()
                ));
            }
            for e in entries {
                let p = e.path();
                let r = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                r.map_err(|e| format!("removing {}: {e}", p.display()))?;
            }
        }
        for ns in 0..self.spec.namespaces {
            let d = dir.join(format!("ns-{ns}"));
            fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
            if self.spec.sidecars.applies(ns) {
                write_atomic(&d.join("sidecar.yaml"), &sidecar_yaml(ns))?;
            }
        }
        for svc in &self.services {
            write_atomic(&self.service_path(svc), &service_yaml(svc))?;
            if svc.routed {
                let p = self
                    .dir
                    .join(svc.namespace_name())
                    .join(format!("{}-routing.yaml", svc.name));
                write_atomic(&p, &routing_yaml(svc))?;
            }
        }
        let manifest = json!({"spec": self.spec.to_json(), "used": false});
        write_atomic(&dir.join(MANIFEST), &format!("{manifest:#}\n"))
    }

    /// Open a generated directory for a run. A directory is good for one
    /// run: the run changes it.
    pub fn open(dir: &Path) -> Result<Mesh, String> {
        let path = dir.join(MANIFEST);
        let text = fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (run `ringmesh-xds-load generate --dir {}` first)",
                path.display(),
                dir.display()
            )
        })?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if v.get("used").and_then(Value::as_bool) != Some(false) {
            return Err(format!(
                "{} was changed by an earlier run; generate it again",
                dir.display()
            ));
        }
        let spec = MeshSpec::from_json(v.get("spec").unwrap_or(&Value::Null))?;
        let manifest = json!({"spec": spec.to_json(), "used": true});
        write_atomic(&path, &format!("{manifest:#}\n"))?;
        Ok(Mesh::new(spec, dir))
    }

    fn service_path(&self, svc: &Service) -> PathBuf {
        self.dir
            .join(svc.namespace_name())
            .join(format!("{}.yaml", svc.name))
    }

    /// Add a fresh endpoint (no proxy runs on it) to `service`, in
    /// memory; [`Mesh::write_service`] puts it in the registry.
    pub fn add_endpoint(&mut self, service: usize) -> Result<Change, String> {
        let n = self.added;
        if n >= 55 << 16 {
            return Err("more endpoints added than the address range 10.200.0.0/13 holds".into());
        }
        let svc = self
            .services
            .get_mut(service)
            .ok_or_else(|| format!("no service {service}"))?;
        self.added += 1;
        let ip = Ipv4Addr::new(10, 200 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
        svc.endpoints.push(Endpoint {
            name: format!("{}-add{n}", svc.name),
            ip,
            version: "v1",
        });
        Ok(Change {
            service,
            cluster: svc.cluster(),
            ip,
            added: true,
        })
    }

    /// Remove one of `service`'s extra endpoints, if it has any left, in
    /// memory; [`Mesh::write_service`] puts it in the registry.
    pub fn remove_endpoint(&mut self, service: usize) -> Result<Option<Change>, String> {
        let svc = self
            .services
            .get_mut(service)
            .ok_or_else(|| format!("no service {service}"))?;
        let Some(idx) = svc.removable.pop() else {
            return Ok(None);
        };
        let ep = svc.endpoints.remove(idx);
        // Indexes after the removed one shift down.
        for r in &mut svc.removable {
            if *r > idx {
                *r -= 1;
            }
        }
        Ok(Some(Change {
            service,
            cluster: svc.cluster(),
            ip: ep.ip,
            added: false,
        }))
    }

    /// Replace `service`'s file with its current endpoints.
    pub fn write_service(&self, service: usize) -> Result<(), String> {
        let svc = self
            .services
            .get(service)
            .ok_or_else(|| format!("no service {service}"))?;
        write_atomic(&self.service_path(svc), &service_yaml(svc))
    }
}

/// Write `content` to a dot-file beside `path` and rename it over `path`.
pub fn write_atomic(path: &Path, content: &str) -> Result<(), String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file path", path.display()))?;
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&tmp, content).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path)
        .map_err(|e| format!("renaming {} over {}: {e}", tmp.display(), path.display()))
}

fn service_yaml(svc: &Service) -> String {
    let ns = svc.namespace_name();
    let mut out = format!(
        "apiVersion: registry.ringmesh.io/v1\n\
         kind: Service\n\
         metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}\n\
         spec:\n  \
           ports:\n  \
           - {{name: http, port: {PORT}, targetPort: {PORT}, protocol: HTTP}}\n  \
           selector: {{app: {name}}}\n",
        name = svc.name
    );
    for ep in &svc.endpoints {
        let _ = write!(
            out,
            "---\n\
             apiVersion: registry.ringmesh.io/v1\n\
             kind: Workload\n\
             metadata: {{name: {}, namespace: {ns}, labels: {{app: {}, version: {}}}}}\n\
             spec: {{address: {}, serviceAccount: {}}}\n",
            ep.name, svc.name, ep.version, ep.ip, svc.name
        );
    }
    out
}

fn routing_yaml(svc: &Service) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\n\
         kind: VirtualService\n\
         metadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  \
           hosts: [{host}]\n  \
           http:\n  \
           - match:\n    \
             - headers: {{x-canary: {{exact: \"1\"}}}}\n    \
             route:\n    \
             - destination: {{host: {host}, subset: v2}}\n  \
           - route:\n    \
             - destination: {{host: {host}, subset: v1}}\n      \
               weight: 90\n    \
             - destination: {{host: {host}, subset: v2}}\n      \
               weight: 10\n    \
             timeout: 5s\n    \
             retries: {{attempts: 2, perTryTimeout: 2s, retryOn: 5xx}}\n\
         ---\n\
         apiVersion: networking.istio.io/v1\n\
         kind: DestinationRule\n\
         metadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  \
           host: {host}\n  \
           trafficPolicy:\n    \
             connectionPool: {{http: {{http1MaxPendingRequests: 100}}}}\n    \
             outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}\n  \
           subsets:\n  \
           - {{name: v1, labels: {{version: v1}}}}\n  \
           - {{name: v2, labels: {{version: v2}}}}\n",
        name = svc.name,
        ns = svc.namespace_name(),
        host = svc.host,
    )
}

fn sidecar_yaml(ns: usize) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\n\
         kind: Sidecar\n\
         metadata: {{name: default, namespace: ns-{ns}}}\n\
         spec:\n  \
           egress:\n  \
           - hosts: [\"./*\", \"istio-system/*\"]\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(proxies: usize, services: usize) -> MeshSpec {
        MeshSpec {
            proxies,
            services,
            namespaces: 2,
            workloads_per_service: 0,
            extra_endpoints: 1,
            routed_services: 2,
            sidecars: Sidecars::Half,
            node_ip: true,
        }
        .validated()
        .unwrap()
    }

    #[test]
    fn proxies_are_the_pods_of_the_services() {
        let m = Mesh::new(spec(7, 3), Path::new("/nonexistent"));
        assert_eq!(m.spec.workloads_per_service, 3);
        assert_eq!(m.proxies.len(), 7);
        // Proxy 4: service 1 (ns-1), its workload 1.
        let p = &m.proxies[4];
        assert_eq!(p.service, 1);
        assert_eq!(p.pod, "svc-1-1");
        assert_eq!(p.ip, m.services[1].endpoints[1].ip);
        assert_eq!(
            p.node_id,
            format!("sidecar~{}~svc-1-1.ns-1~ns-1.svc.cluster.local", p.ip)
        );
        assert_eq!(p.metadata["NAMESPACE"], "ns-1");
        assert_eq!(p.metadata["INTERCEPTION_MODE"], "REDIRECT");
        assert_eq!(p.metadata["LABELS"]["version"], "v2");
        // Every address is distinct.
        let mut ips: Vec<Ipv4Addr> = m
            .services
            .iter()
            .flat_map(|s| s.endpoints.iter().map(|e| e.ip))
            .collect();
        let n = ips.len();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), n);
        assert_eq!(m.services.iter().filter(|s| s.routed).count(), 2);
    }

    #[test]
    fn limits_are_checked() {
        let mut s = spec(10, 5);
        s.workloads_per_service = 1;
        assert!(s.clone().validated().unwrap_err().contains("too few"));
        s.namespaces = 6;
        assert!(s.validated().unwrap_err().contains("--namespaces"));
        assert_eq!(
            MeshSpec::from_json(&spec(4, 2).to_json()).unwrap(),
            spec(4, 2)
        );
        assert!(MeshSpec::from_json(&json!({"proxies": 1})).is_err());
        let shared = MeshSpec {
            node_ip: false,
            ..spec(4, 2)
        };
        assert_eq!(MeshSpec::from_json(&shared.to_json()).unwrap(), shared);
    }

    #[test]
    fn without_node_ip_pods_of_a_workload_have_equal_metadata() {
        let spec = MeshSpec {
            node_ip: false,
            ..spec(8, 2)
        };
        let m = Mesh::new(spec, Path::new("/nonexistent"));
        // Proxies 0 and 4: service 0, workloads 0 and 2 (both v1).
        let (a, b) = (&m.proxies[0], &m.proxies[4]);
        assert_eq!(a.metadata, b.metadata);
        assert!(!a.metadata.contains_key("INSTANCE_IPS"));
        assert_eq!(a.node_id, "sidecar~~svc-0-0.ns-0~ns-0.svc.cluster.local");
    }

    #[test]
    fn generate_then_change_endpoints_atomically() {
        let dir = std::env::temp_dir().join(format!("xds-load-mesh-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let m = Mesh::new(spec(4, 2), &dir);
        m.generate().unwrap();
        let svc0 = fs::read_to_string(dir.join("ns-0/svc-0.yaml")).unwrap();
        assert_eq!(svc0.matches("kind: Workload").count(), 3);
        assert!(svc0.contains("selector: {app: svc-0}"));
        assert!(dir.join("ns-0/sidecar.yaml").exists());
        assert!(!dir.join("ns-1/sidecar.yaml").exists());
        assert!(dir.join("ns-0/svc-0-routing.yaml").exists());

        // A directory is good for one run.
        let mut m = Mesh::open(&dir).unwrap();
        assert!(Mesh::open(&dir).unwrap_err().contains("generate it again"));

        let c = m.add_endpoint(1).unwrap();
        m.write_service(1).unwrap();
        assert!(c.added);
        assert_eq!(c.cluster, "outbound|8080||svc-1.ns-1.svc.cluster.local");
        let svc1 = fs::read_to_string(dir.join("ns-1/svc-1.yaml")).unwrap();
        assert!(svc1.contains(&c.ip.to_string()));
        let r = m.remove_endpoint(1).unwrap().unwrap();
        m.write_service(1).unwrap();
        assert!(!r.added);
        let svc1 = fs::read_to_string(dir.join("ns-1/svc-1.yaml")).unwrap();
        assert!(!svc1.contains(&format!("address: {},", r.ip)));
        assert!(svc1.contains(&c.ip.to_string()), "the added one stays");
        // Only the one extra was removable.
        assert!(m.remove_endpoint(1).unwrap().is_none());
        // No temporary file left behind.
        assert!(fs::read_dir(dir.join("ns-1")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")));
        // Regenerating over a generated directory works; over a foreign one not.
        Mesh::new(spec(4, 2), &dir).generate().unwrap();
        let other = dir.join("ns-0");
        assert!(Mesh::new(spec(4, 2), &other)
            .generate()
            .unwrap_err()
            .contains("not empty"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
