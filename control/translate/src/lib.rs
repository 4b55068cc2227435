//! `ringmesh-translate`: the mesh state (registry services and workloads,
//! Istio resources) translated into the Envoy xDS v3 resources of one
//! proxy — listeners, route configurations, clusters and load
//! assignments — with Istio's names and layout, so that a real Envoy and
//! Istio's tooling make sense of them. [`translate`] is pure and
//! deterministic: the same state and [`ProxyNode`] give byte-identical
//! resources whatever the order of the input lists, and proxies with
//! equal `ProxyNode`s share one scope ([`ProxyNode::scope_key`]).
//!
//! ```text
//! MeshState ─┐
//! ProxyNode ─┴─ View (visible services, Sidecar, VS/DR per host) ─┬─ cds: Cluster + ClusterLoadAssignment
//!                                                                  ├─ rds: RouteConfiguration
//!                                                                  └─ lds: Listener
//! ```
//!
//! Names: clusters `outbound|PORT|SUBSET|HOST`, `inbound|PORT||`,
//! `PassthroughCluster`, `InboundPassthroughCluster`, `BlackHoleCluster`;
//! route configurations `"PORT"` (or `http_proxy`); virtual hosts
//! `HOST:PORT`; listeners `virtualOutbound`, `virtualInbound`,
//! `0.0.0.0_PORT`, `inbound_IP_PORT`. Inbound `PORT` is the workload
//! (target) port, as in Istio.
//!
//! Input that cannot be translated (a delegate route, a fault without a
//! status, a ServiceEntry endpoint that is not an IP) is left out with a
//! `tracing` warning; nothing input-driven panics.
//!
//! | Istio | Envoy | notes |
//! | --- | --- | --- |
//! | Service / ServiceEntry port | Cluster `outbound\|P\|\|H` (EDS over ADS) + ClusterLoadAssignment | ready workloads; weight; locality `region/zone/subzone` |
//! | ServiceEntry `resolution` | STATIC → EDS, DNS → STRICT_DNS, DNS_ROUND_ROBIN → LOGICAL_DNS, NONE → ORIGINAL_DST | endpoints, `workloadSelector` |
//! | DestinationRule `subsets` | Cluster `outbound\|P\|S\|H`, endpoints filtered by labels | |
//! | `trafficPolicy` (+ `portLevelSettings`, subset) | most specific wins per field | |
//! | `loadBalancer.simple` | `lb_policy` ROUND_ROBIN, LEAST_REQUEST, RANDOM; PASSTHROUGH → ORIGINAL_DST | default ROUND_ROBIN |
//! | `loadBalancer.consistentHash` | RING_HASH / MAGLEV (`lb_config`) + route `hash_policy` | header, cookie, source IP, query parameter |
//! | `loadBalancer.localityLbSetting` | `distribute` → locality weights; failover (with outlier detection) → priorities by proximity and `failover` | `failoverPriority` not yet |
//! | `connectionPool` | `circuit_breakers` (unset = unlimited), `connect_timeout`, HttpProtocolOptions (max requests per connection, idle timeout, max connection duration, `h2UpgradePolicy`, `useClientProtocol`, `maxConcurrentStreams`), TCP keepalive | `tcp.idleTimeout` not yet |
//! | port protocol `HTTP2`/`GRPC` | upstream HTTP/2 (HttpProtocolOptions) | |
//! | `outlierDetection` | `outlier_detection`; `minHealthPercent` → `healthy_panic_threshold` | |
//! | `tls` | `transport_socket` UpstreamTlsContext; ISTIO_MUTUAL: SDS `default` + `ROOTCA` over ADS, SPIFFE SANs of the service's accounts, Istio's SNI `outbound_.P_.S_.H` | `credentialName` not yet |
//! | no `tls` (auto mTLS) | ISTIO_MUTUAL as above when every endpoint of the cluster has a sidecar (ServiceEntry endpoints: label `security.istio.io/tlsMode: istio`) and none is DISABLE there; else plaintext | mixed clusters are plaintext (no `transport_socket_matches` yet); only for proxies with an identity |
//! | VirtualService `http[].match` | `path`/`prefix`/`safe_regex`, `case_sensitive`; headers, `withoutHeaders` (inverted), method/authority/scheme as pseudo-headers; query parameters; one route per match | `sourceLabels`, `sourceNamespace`, `gateways`, `port` filter at translate time |
//! | `route` | `cluster` or `weighted_clusters` (weights as given, total 100), per-destination headers | weight-0 destinations dropped |
//! | `timeout` | `timeout` (0 = disabled, also the default) | |
//! | `retries` | `retry_policy` only when attempts > 0: `retry_on` (status codes → `retriable_status_codes`), `per_try_timeout`, previous-hosts predicate, back-off | no implicit default policy; `retryRemoteLocalities` not yet |
//! | `fault` | per-route `envoy.filters.http.fault` config + the fault filter before the router in that connection manager | `http2Error` not supported |
//! | `mirror(s)`, `mirrorPercentage` | `request_mirror_policies` | |
//! | `rewrite` | `prefix_rewrite`, `regex_rewrite`, `host_rewrite_literal` | |
//! | `redirect`, `directResponse` | `redirect`, `direct_response` | `derivePort` not yet |
//! | `headers` | `request/response_headers_to_add` (set = overwrite, add = append), `_to_remove` | |
//! | `tcp` | `tcp_proxy` cluster / weighted clusters | `destinationSubnets` not yet |
//! | `tls`, `delegate`, `corsPolicy` | — | not yet (warning) |
//! | Sidecar `egress[].hosts` | which services get clusters and virtual hosts | an egress listener counts for its port (or all); no per-listener binds |
//! | Sidecar `ingress[]` | the workload ports, `defaultEndpoint` (any loopback address: see below) | `bind`, `captureMode` not yet |
//! | `outboundTrafficPolicy` | ALLOW_ANY → PassthroughCluster + `allow_any` vhost; REGISTRY_ONLY → BlackHoleCluster + `block_all` (502) | default ALLOW_ANY |
//! | `exportTo` (services, VS, DR) | visibility from the proxy's namespace | |
//! | PeerAuthentication | per inbound port ([`server_mode`]: port level > workload > namespace > mesh, default PERMISSIVE): STRICT → `DownstreamTlsContext` (client certificate required, SDS `default`/`ROOTCA`, ALPN h2, http/1.1); PERMISSIVE → `tls_inspector` + a `transport_protocol: tls` chain with it and a `raw_buffer` plaintext chain; DISABLE → plaintext | PERMISSIVE is plaintext-only for a proxy without an identity |
//! | mesh CA | SDS `ROOTCA` (`validation_context.trusted_ca`, the whole bundle inline); `default` as file references for a node with `TLS_SERVER_CERT_CHAIN` + `TLS_SERVER_KEY` | from [`Options::trust_bundle_pem`] |
//! | AuthorizationPolicy | inbound `envoy.filters.http.rbac` (before the router) / `envoy.filters.network.rbac` (before `tcp_proxy`): AUDIT (LOG), DENY, ALLOW; policies `ns[NS]-policy[NAME]-rule[I]` (`src/rbac.rs`, README) | root namespace + workload namespace, `selector`; CUSTOM rejected by the model; `requestPrincipals`/`request.auth.*` never match (no JWT yet) |
//!
//! Precedence where Istio merges: one VirtualService per host (exact host
//! before wildcard, then the proxy's namespace, the service's, the root
//! `istio-system`, then namespace/name) and one DestinationRule per host
//! (one selecting the proxy first, then the same namespace order, exact
//! before the longest wildcard). Istio merges several; Ringmesh warns.
//!
//! `defaultEndpoint` relaxation: Istio accepts only `127.0.0.1:PORT` (or
//! `0.0.0.0:PORT`); any 127.0.0.0/8 address (and `[::1]`) is accepted
//! here, because on a loopback test bed each "pod" has its own 127.0.0.x
//! and its application listens on 127.0.0.1 at a port of its own.
//!
//! mTLS ([`mtls`]): Istio's rules, with one addition — opportunistic
//! mTLS (PERMISSIVE's TLS chain, auto mTLS) only for a proxy that has a
//! workload identity ([`IdentitySource`]: node metadata
//! `RINGMESH_IDENTITY: csr` for a proxy that gets its SVID from the CA
//! itself, or `TLS_SERVER_CERT_CHAIN` + `TLS_SERVER_KEY` file paths for
//! Envoy) in a mesh with a trust bundle, so proxies without certificates
//! keep working in plaintext. STRICT and explicit ISTIO_MUTUAL are never
//! weakened.
//!
//! TCP without service IPs: a plain TCP port gets a `0.0.0.0_PORT`
//! listener only when one visible TCP service uses it (else the traffic
//! takes the catch-all); TLS/HTTPS ports get one listener with a filter
//! chain per service by SNI. Without interception only HTTP goes through
//! the proxy outbound.
#![forbid(unsafe_code)]

mod cds;
mod lds;
pub mod mtls;
mod node;
mod rbac;
mod rds;
mod view;
mod wire;

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

pub use mtls::{
    client_tls, server_mode, AutoReason, ClientMode, ClientTls, DecidingPolicy, PolicyLevel,
    ServerMode, ServerMtls,
};
pub use node::{IdentitySource, Interception, ProxyNode, META_CERT_CHAIN, META_IDENTITY, META_KEY};
use ringmesh_registry::MeshState;
use ringmesh_xds::{Resource, Resources, TypeUrl};
use tracing::warn;

use crate::{cds::Clusters, view::View};

/// Mesh-wide settings of the translation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The cluster domain short names expand with (`cluster.local`).
    pub domain_suffix: String,
    /// The SPIFFE trust domain (`cluster.local`).
    pub trust_domain: String,
    /// The mesh CA's trust bundle (PEM; every root during a rotation),
    /// served as the `ROOTCA` secret. Empty: no CA, so no opportunistic
    /// mTLS (see [`mtls`]).
    pub trust_bundle_pem: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            domain_suffix: ringmesh_istio::DEFAULT_DOMAIN_SUFFIX.to_owned(),
            trust_domain: "cluster.local".to_owned(),
            trust_bundle_pem: String::new(),
        }
    }
}

/// The resources of one proxy. Pure and deterministic: same inputs →
/// byte-identical resources. Every type (LDS, RDS, CDS, EDS, SDS) is
/// declared, so an empty set is an explicit answer.
///
/// To translate many proxies of one state, use a [`Translator`]: it gives
/// the same resources and shares the work between them.
pub fn translate(state: &MeshState, proxy: &ProxyNode, opts: &Options) -> Resources {
    let view = View::new(state, proxy, opts);
    let outbound = outbound_part(&view, state);
    local_part(&view, state, &outbound, opts, &mut |r| Arc::new(r))
}

/// The outbound half of a proxy's configuration: outbound and fixed
/// clusters, their load assignments and the route configurations, plus
/// what the listeners need to know about the routes. It depends on the
/// proxy only through [`outbound_key`], so proxies with equal keys share
/// one (see [`Translator`]).
struct Outbound {
    resources: Vec<Arc<Resource>>,
    /// Redirect mode: outbound HTTP port → whether its routes use faults.
    ports: BTreeMap<u16, bool>,
    /// Interception NONE: whether the `http_proxy` routes use faults.
    uses_fault: bool,
}

fn outbound_part(view: &View, state: &MeshState) -> Outbound {
    let redirect = view.proxy.interception == Interception::Redirect;
    let mut clusters = Clusters::default();
    cds::fixed(redirect, &mut clusters);
    cds::outbound(view, state, &mut clusters);
    let mut out = Outbound {
        resources: Vec::new(),
        ports: BTreeMap::new(),
        uses_fault: false,
    };
    if redirect {
        for built in rds::per_port(view) {
            if let Ok(port) = built.config.name.parse::<u16>() {
                out.ports.insert(port, built.uses_fault);
            }
            out.resources
                .push(Arc::new(wire::resource(&built.config.name, &built.config)));
        }
        debug_assert_eq!(
            out.ports.keys().copied().collect::<Vec<_>>(),
            rds::outbound_http_ports(view)
                .into_iter()
                .collect::<Vec<_>>()
        );
    } else {
        let built = rds::http_proxy(view);
        out.uses_fault = built.uses_fault;
        out.resources
            .push(Arc::new(wire::resource(&built.config.name, &built.config)));
    }
    for c in &clusters.clusters {
        out.resources.push(Arc::new(wire::resource(&c.name, c)));
    }
    for a in &clusters.assignments {
        out.resources
            .push(Arc::new(wire::resource(&a.cluster_name, a)));
    }
    out
}

/// What [`outbound_part`] depends on besides the mesh state: equal keys
/// (for one state) give equal outbound parts.
fn outbound_key(view: &View, labels_matter: bool) -> String {
    let p = &view.proxy;
    let mut key = format!(
        "ns={:?};mode={:?};mtls={};locality={:?};sidecar={:?}",
        p.namespace,
        p.interception,
        mtls::can_mtls(p, view.opts),
        view.locality(),
        view.sidecar.map(|s| (&s.meta.namespace, &s.meta.name)),
    );
    if labels_matter {
        key.push_str(&format!(";labels={:?}", p.labels));
    }
    key
}

/// Whether any resource of `state` selects proxies by their labels in a
/// way the outbound half depends on (a Sidecar or DestinationRule
/// workload selector, a VirtualService `sourceLabels` match).
fn outbound_labels_matter(state: &MeshState) -> bool {
    let m = &state.istio;
    m.sidecars
        .iter()
        .any(|s| s.spec.workload_selector.is_some())
        || m.destination_rules
            .iter()
            .any(|d| d.spec.workload_selector.is_some())
        || m.virtual_services.iter().any(|vs| {
            vs.spec
                .http
                .iter()
                .flat_map(|r| &r.matches)
                .any(|m| !m.source_labels.is_empty())
                || vs
                    .spec
                    .tcp
                    .iter()
                    .flat_map(|r| &r.matches)
                    .any(|m| !m.source_labels.is_empty())
                || vs
                    .spec
                    .tls
                    .iter()
                    .flat_map(|r| &r.matches)
                    .any(|m| !m.source_labels.is_empty())
        })
}

/// The proxy-specific half (listeners, inbound clusters, secrets) added
/// to `outbound`: the complete resources of the proxy of `view`.
fn local_part(
    view: &View,
    state: &MeshState,
    outbound: &Outbound,
    opts: &Options,
    intern: &mut dyn FnMut(Resource) -> Arc<Resource>,
) -> Resources {
    let proxy = &view.proxy;
    let mut inbound = view.inbound_ports();
    for p in &mut inbound {
        p.tls = mtls::inbound(view, state, p.port);
    }
    let mut clusters = Clusters::default();
    cds::inbound(&inbound, &mut clusters);
    let authz = rbac::inbound(view, state);

    let listeners = if proxy.interception == Interception::Redirect {
        lds::redirect(view, &outbound.ports, &inbound, &authz)
    } else {
        match proxy.ip {
            Some(ip) => lds::none(ip, outbound.uses_fault, &inbound, &authz),
            None => {
                warn!(
                    namespace = proxy.namespace,
                    "INTERCEPTION_MODE NONE needs the proxy's IP (INSTANCE_IPS or the node id) \
                     to bind its listeners; no listeners"
                );
                Vec::new()
            }
        }
    };

    let mut out = Resources::new();
    for t in [
        wire::type_url::<wire::listener::Listener>(),
        wire::type_url::<wire::route::RouteConfiguration>(),
        wire::type_url::<wire::cluster::Cluster>(),
        wire::type_url::<wire::endpoint::ClusterLoadAssignment>(),
        wire::type_url::<wire::tls::Secret>(),
    ] {
        out.declare(t);
    }
    for r in &outbound.resources {
        out.insert(r.clone());
    }
    for l in &listeners {
        out.insert(intern(wire::resource(&l.name, l)));
    }
    for c in &clusters.clusters {
        out.insert(intern(wire::resource(&c.name, c)));
    }
    for a in &clusters.assignments {
        out.insert(intern(wire::resource(&a.cluster_name, a)));
    }
    for s in mtls::secrets(proxy, opts) {
        out.insert(intern(wire::resource(&s.name, &s)));
    }
    out
}

/// Translates the proxies of one mesh state, sharing the work: the state
/// is sorted and indexed once, the outbound half (clusters, load
/// assignments, routes — most of the bytes) is computed and encoded once
/// per [`outbound_key`] instead of once per proxy, and every resource is
/// interned, so equal resources of different proxies (and of the
/// previous state, see [`Translator::next`]) are one `Arc`. The result
/// for each proxy equals [`translate`]'s, byte for byte.
pub struct Translator {
    state: Arc<MeshState>,
    opts: Options,
    index: view::Index,
    /// `state.workloads` positions by address.
    by_ip: HashMap<std::net::IpAddr, Vec<usize>>,
    labels_matter: bool,
    outbound: HashMap<String, Arc<Outbound>>,
    /// (type URL, name, version) → the one shared copy, this state's.
    interned: HashMap<(TypeUrl, String, String), Arc<Resource>>,
    /// The previous state's interned resources, reused when unchanged.
    previous: HashMap<(TypeUrl, String, String), Arc<Resource>>,
}

impl Translator {
    pub fn new(state: Arc<MeshState>, opts: Options) -> Translator {
        let mut by_ip: HashMap<std::net::IpAddr, Vec<usize>> = HashMap::new();
        for (i, w) in state.workloads.iter().enumerate() {
            by_ip.entry(w.address).or_default().push(i);
        }
        Translator {
            index: view::Index::new(&state),
            by_ip,
            labels_matter: outbound_labels_matter(&state),
            state,
            opts,
            outbound: HashMap::new(),
            interned: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    /// A translator of `state` that reuses this one's resources where
    /// they did not change (same `Arc`, so memory stays shared).
    pub fn next(self, state: Arc<MeshState>) -> Translator {
        let mut t = Translator::new(state, self.opts);
        t.previous = self.interned;
        t
    }

    pub fn state(&self) -> &Arc<MeshState> {
        &self.state
    }

    /// A key equal for two proxies exactly when they get the same
    /// resources from this state (a sufficient condition: proxies whose
    /// keys differ may still get equal resources). With REDIRECT
    /// interception the pod IP only selects the registry workload, so
    /// the pods of one workload (equal node metadata, workload equal but
    /// for its name and address) share a key.
    pub fn class_key(&self, proxy: &ProxyNode) -> String {
        if proxy.interception != Interception::Redirect {
            return proxy.scope_key().as_str().to_owned();
        }
        let workload = proxy.ip.and_then(|ip| {
            self.by_ip
                .get(&ip)?
                .iter()
                .map(|&i| &self.state.workloads[i])
                .filter(|w| w.namespace == proxy.namespace)
                .min()
        });
        let without_ip = ProxyNode {
            ip: None,
            ..proxy.clone()
        };
        let mut key = without_ip.scope_key().as_str().to_owned();
        if let Some(w) = workload {
            key.push_str(&format!(
                "|wl={:?}",
                (
                    &w.labels,
                    &w.service_account,
                    &w.locality,
                    &w.ports,
                    w.weight,
                    w.has_sidecar
                )
            ));
        }
        key
    }

    /// The resources of `proxy`: equal to [`translate`] of this state.
    pub fn translate(&mut self, proxy: &ProxyNode) -> Resources {
        let Translator {
            state,
            opts,
            index,
            labels_matter,
            outbound,
            by_ip: _,
            interned,
            previous,
        } = self;
        let view = View::indexed(state, index, proxy, opts);
        let key = outbound_key(&view, *labels_matter);
        let shared = match outbound.get(&key) {
            Some(o) => o.clone(),
            None => {
                let mut o = outbound_part(&view, state);
                for r in &mut o.resources {
                    *r = intern(interned, previous, r.clone());
                }
                let o = Arc::new(o);
                outbound.insert(key, o.clone());
                o
            }
        };
        local_part(&view, state, &shared, opts, &mut |r| {
            intern(interned, previous, Arc::new(r))
        })
    }
}

fn intern(
    interned: &mut HashMap<(TypeUrl, String, String), Arc<Resource>>,
    previous: &HashMap<(TypeUrl, String, String), Arc<Resource>>,
    r: Arc<Resource>,
) -> Arc<Resource> {
    let key = (r.type_url(), r.name.clone(), r.version.clone());
    if let Some(have) = interned.get(&key) {
        return have.clone();
    }
    let shared = previous.get(&key).cloned().unwrap_or(r);
    interned.insert(key, shared.clone());
    shared
}
