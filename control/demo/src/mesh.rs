//! The sample mesh: which pods exist, on which addresses, and the files
//! that describe them to `ringmesh-control` (registry Services and
//! Workloads, Istio Sidecar / VirtualService / DestinationRule /
//! PeerAuthentication / AuthorizationPolicy) and to each `ringmesh-proxy`
//! (its bootstrap).
//!
//! ```text
//!            ┌ pod frontend-0 (base+0) ┐   ┌ pod reviews-v1-0 (base+1) ┐
//! caller ──▶ │ :9080 sidecar ─▶ app    │──▶│ :9080 sidecar ─▶ app      │
//!            │ app ─▶ :15001 sidecar   │─┐ └───────────────────────────┘
//!            └─────────────────────────┘ │ ┌ pod reviews-v2-0 (base+2) ┐   ┌ pod ratings-0 (base+3) ┐
//!                        end-user: jason └▶│ :9080 sidecar ─▶ app      │   │ :9080 sidecar ─▶ app   │
//!                          or 10% ────────▶│ app ─▶ :15001 sidecar     │──▶│                        │
//!                                          └───────────────────────────┘   └────────────────────────┘
//! ```
//!
//! Every pod has its own loopback address; its sidecar binds `IP:9080`
//! (inbound, the service's target port), `IP:15001` (the outbound HTTP
//! proxy its app sends requests to) and `IP:15000` (admin). Apps listen
//! on `127.0.0.1` at ports of their own, named by each pod's Istio
//! `Sidecar` resource (`ingress[].defaultEndpoint`). Like bookinfo,
//! reviews v1 answers alone and reviews v2 calls ratings.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr, TcpListener},
};

pub const NAMESPACE: &str = "default";
pub const TRUST_DOMAIN: &str = "cluster.local";
/// Every service's port, and its target port (the sidecar's inbound).
pub const SERVICE_PORT: u16 = 9080;
/// The sidecar's outbound HTTP proxy (no interception).
pub const OUTBOUND_PORT: u16 = 15001;
/// The sidecar's admin endpoint (`/ready`, `/stats/prometheus`).
pub const ADMIN_PORT: u16 = 15000;

/// One pod: a workload with a sidecar and its app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// The workload name (`reviews-v2-0`).
    pub name: &'static str,
    /// Its service (`app` label) and service account.
    pub app: &'static str,
    pub version: &'static str,
    pub ip: Ipv4Addr,
    /// The service its app calls for every request.
    pub calls: Option<&'static str>,
}

impl Pod {
    /// The sidecar's inbound listener: the address callers reach the pod at.
    pub fn inbound(&self) -> SocketAddr {
        SocketAddr::from((self.ip, SERVICE_PORT))
    }
    /// The sidecar's outbound HTTP proxy.
    pub fn outbound(&self) -> SocketAddr {
        SocketAddr::from((self.ip, OUTBOUND_PORT))
    }
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from((self.ip, ADMIN_PORT))
    }
    /// Its SPIFFE identity, as AuthorizationPolicy principals spell it
    /// (`cluster.local/ns/default/sa/frontend`).
    pub fn principal(&self) -> String {
        format!("{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{}", self.app)
    }
    /// Istio's node id for a sidecar.
    pub fn node_id(&self) -> String {
        format!(
            "sidecar~{}~{}.{NAMESPACE}~{NAMESPACE}.svc.cluster.local",
            self.ip, self.name
        )
    }
    /// `Host` to reach its service (`reviews:9080`).
    pub fn service_authority(&self) -> String {
        format!("{}:{SERVICE_PORT}", self.app)
    }
}

/// The pods of the demo, in start order: frontend, reviews v1, reviews
/// v2, ratings, on four consecutive addresses from `base`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pods: Vec<Pod>,
}

impl Plan {
    pub fn new(base: Ipv4Addr) -> Result<Plan, String> {
        let [a, b, c, d] = base.octets();
        if a != 127 {
            return Err(format!(
                "--base-ip {base}: the demo's pods live on loopback; use an address in \
                 127.0.0.0/8, e.g. 127.0.0.100"
            ));
        }
        if d == 0 || d > 251 {
            return Err(format!(
                "--base-ip {base}: the four pods need {base} and the three addresses after it \
                 within 127.{b}.{c}.1-254; use e.g. 127.{b}.{c}.100"
            ));
        }
        let ip = |i: u8| Ipv4Addr::new(a, b, c, d + i);
        let pod = |i, name, app, version, calls| Pod {
            name,
            app,
            version,
            ip: ip(i),
            calls,
        };
        Ok(Plan {
            pods: vec![
                pod(0, "frontend-0", "frontend", "v1", Some("reviews")),
                pod(1, "reviews-v1-0", "reviews", "v1", None),
                pod(2, "reviews-v2-0", "reviews", "v2", Some("ratings")),
                pod(3, "ratings-0", "ratings", "v1", None),
            ],
        })
    }

    pub fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("the plan has no pod {name}"))
    }

    pub fn frontend(&self) -> &Pod {
        self.pod("frontend-0")
    }
    pub fn reviews_v1(&self) -> &Pod {
        self.pod("reviews-v1-0")
    }
    pub fn ratings(&self) -> &Pod {
        self.pod("ratings-0")
    }

    /// The last pod address (for messages).
    pub fn last_ip(&self) -> Ipv4Addr {
        self.pods.last().map_or(Ipv4Addr::LOCALHOST, |p| p.ip)
    }

    /// Every address a sidecar will bind must be free now: another demo
    /// (or anything else) on the same block would steal its traffic.
    pub fn check_free(&self) -> Result<(), String> {
        for pod in &self.pods {
            for addr in [pod.inbound(), pod.outbound(), pod.admin()] {
                if let Err(e) = TcpListener::bind(addr) {
                    return Err(format!(
                        "{addr} (pod {}) cannot be bound: {e}. Is another demo running? Move the \
                         pods with --base-ip, e.g. --base-ip 127.0.0.{}",
                        pod.name,
                        if pod.ip.octets()[3] >= 150 { 50 } else { 200 }
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The weights of the reviews canary.
pub const CANARY_V1_WEIGHT: u32 = 90;
pub const CANARY_V2_WEIGHT: u32 = 100 - CANARY_V1_WEIGHT;
/// The header of the route that always goes to reviews v2.
pub const CANARY_HEADER: (&str, &str) = ("end-user", "jason");
/// Names of the Istio resources the view refers to.
pub const AUTHZ_POLICY: &str = "reviews-from-frontend";
pub const PEER_AUTHN: &str = "default";
pub const FRONTEND_PEER_AUTHN: &str = "frontend-ingress";

/// The control plane's files: `(file name, YAML)`. `apps` gives each
/// pod's app address (the Sidecar `defaultEndpoint`), by pod name.
pub fn control_files(plan: &Plan, apps: &[(&str, SocketAddr)]) -> Vec<(&'static str, String)> {
    vec![
        ("services.yaml", services()),
        ("workloads.yaml", workloads(plan)),
        ("sidecars.yaml", sidecars(plan, apps)),
        ("reviews-routing.yaml", reviews_routing()),
        ("security.yaml", security()),
    ]
}

fn services() -> String {
    let mut out = String::from(
        "# The services of the sample application (registry objects: what\n\
         # Kubernetes Services are to Istio).\n",
    );
    for (i, name) in ["frontend", "reviews", "ratings"].iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let _ = write!(
            out,
            "\
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  ports:
  - {{name: http, port: {SERVICE_PORT}, targetPort: {SERVICE_PORT}}}
  selector: {{app: {name}}}
"
        );
    }
    out
}

fn workloads(plan: &Plan) -> String {
    let mut out = String::from(
        "# One workload per pod; its address is the pod IP, where its sidecar\n\
         # listens (inbound on the service's target port).\n",
    );
    for (i, pod) in plan.pods.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let _ = write!(
            out,
            "\
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata:
  name: {name}
  namespace: {NAMESPACE}
  labels: {{app: {app}, version: {version}}}
spec:
  address: {ip}
  serviceAccount: {app}
",
            name = pod.name,
            app = pod.app,
            version = pod.version,
            ip = pod.ip,
        );
    }
    out
}

fn sidecars(plan: &Plan, apps: &[(&str, SocketAddr)]) -> String {
    let mut out = String::from(
        "# Each sidecar's inbound port forwards to its app on 127.0.0.1 (the\n\
         # apps share one loopback address, so each has a port of its own).\n",
    );
    let mut first = true;
    for pod in &plan.pods {
        let Some((_, app)) = apps.iter().find(|(n, _)| *n == pod.name) else {
            continue;
        };
        if !first {
            out.push_str("---\n");
        }
        first = false;
        let _ = write!(
            out,
            "\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  workloadSelector:
    labels: {{app: {app}, version: {version}}}
  ingress:
  - port: {{number: {SERVICE_PORT}, protocol: HTTP, name: http}}
    defaultEndpoint: \"{addr}\"
",
            name = pod.name,
            app = pod.app,
            version = pod.version,
            addr = app,
        );
    }
    out
}

fn reviews_routing() -> String {
    let (header, value) = CANARY_HEADER;
    format!(
        "\
# The reviews canary: `{header}: {value}` always sees v2; everyone else
# is split {CANARY_V1_WEIGHT}/{CANARY_V2_WEIGHT} between v1 and v2. Edit the weights while the demo
# runs: the control plane picks the change up within a second.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: {NAMESPACE}}}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers:
        {header}: {{exact: {value}}}
    route:
    - destination: {{host: reviews, subset: v2}}
  - name: canary
    route:
    - destination: {{host: reviews, subset: v1}}
      weight: {CANARY_V1_WEIGHT}
    - destination: {{host: reviews, subset: v2}}
      weight: {CANARY_V2_WEIGHT}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: {NAMESPACE}}}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {{version: v1}}
  - name: v2
    labels: {{version: v2}}
"
    )
}

fn security() -> String {
    format!(
        "\
# Zero trust: mutual TLS required between every pair of sidecars
# (mesh-wide: the root namespace), and only the frontend may call reviews.
# The frontend is the mesh's entry: callers outside the mesh (the demo's
# load generator) reach it in plaintext, so its own policy is PERMISSIVE.
# The reviews sidecars answer anyone else with 403 (RBAC: access denied).
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {PEER_AUTHN}, namespace: istio-system}}
spec:
  mtls: {{mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {FRONTEND_PEER_AUTHN}, namespace: {NAMESPACE}}}
spec:
  selector:
    matchLabels: {{app: frontend}}
  mtls: {{mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {AUTHZ_POLICY}, namespace: {NAMESPACE}}}
spec:
  selector:
    matchLabels: {{app: reviews}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [\"{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/frontend\"]
"
    )
}

/// The bootstrap of one pod's sidecar: its admin address and the control
/// plane; everything else comes over xDS.
pub fn proxy_bootstrap(pod: &Pod, control: SocketAddr, token_file: &std::path::Path) -> String {
    format!(
        "\
# ringmesh-proxy bootstrap of pod {name}: admin and xDS only.
admin:
  address: \"{admin}\"
xds:
  address: \"{control}\"
  node_id: \"{node_id}\"
  node_cluster: \"{name}\"
  metadata:
    NAMESPACE: {NAMESPACE}
    INSTANCE_IPS: \"{ip}\"
    INTERCEPTION_MODE: NONE
    WORKLOAD_NAME: {name}
    SERVICE_ACCOUNT: {app}
    LABELS: {{app: {app}, version: {version}}}
    # This sidecar makes its own key and gets its SVID from the CA: the
    # control plane may send it mTLS settings.
    RINGMESH_IDENTITY: csr
identity:
  trust_domain: {TRUST_DOMAIN}
  namespace: {NAMESPACE}
  service_account: {app}
  ca_address: \"{control}\"
  token_file: \"{token}\"
limits:
  # The demo stops its sidecars with SIGTERM; in-flight requests get this
  # long to finish.
  drain_timeout: 2s
",
        name = pod.name,
        admin = pod.admin(),
        node_id = pod.node_id(),
        ip = pod.ip,
        app = pod.app,
        version = pod.version,
        token = token_file.display(),
    )
}

#[cfg(test)]
mod tests;
