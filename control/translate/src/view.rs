//! The mesh as one proxy sees it: the services it may call (registry
//! services and ServiceEntry hosts, after `exportTo` and its Sidecar's
//! egress hosts), the VirtualService and DestinationRule that apply to
//! each host, its own workload and Sidecar. Everything is sorted here, so
//! the translation that follows is deterministic whatever the input order.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use ringmesh_istio::{
    networking::{
        destination_rule::{
            ClientTlsSettings, ConnectionPoolSettings, LoadBalancerSettings, OutlierDetection,
            Subset, TrafficPolicy,
        },
        service_entry::Resolution,
        sidecar::OutboundMode,
    },
    DestinationRule, Resource, ServiceEntry, Sidecar, VirtualService,
};
use ringmesh_registry::{MeshState, Protocol, Service, ServicePort, Workload};
use tracing::warn;

use crate::{mtls::InboundTls, Options, ProxyNode};

/// Istio's root namespace: a Sidecar or DestinationRule there applies
/// mesh-wide (after the proxy's and the service's own namespaces).
pub(crate) const ROOT_NAMESPACE: &str = "istio-system";

/// How a service's endpoints are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discovery {
    /// Known endpoints, served by EDS.
    Eds,
    /// Envoy resolves the endpoints' names (`STRICT_DNS`, or `LOGICAL_DNS`
    /// for `DNS_ROUND_ROBIN`).
    Dns { logical: bool },
    /// Forward to the original destination (`ORIGINAL_DST`).
    Passthrough,
}

/// Where a service came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    Registry(&'a Service),
    Entry(&'a Resource<ServiceEntry>),
}

/// A service the proxy may call.
#[derive(Debug, Clone)]
pub(crate) struct Svc<'a> {
    /// Lower-case FQDN (or a ServiceEntry's wildcard host).
    pub host: String,
    pub namespace: String,
    /// The Kubernetes short name (registry services only).
    pub short_name: Option<String>,
    /// The ports the proxy may use (after Sidecar egress), by number.
    pub ports: Vec<ServicePort>,
    pub discovery: Discovery,
    pub source: Source<'a>,
}

/// An endpoint address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum EpAddr {
    Ip(IpAddr),
    /// A DNS name (DNS resolution only).
    Name(String),
}

/// One endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ep<'a> {
    pub locality: Option<&'a str>,
    pub address: EpAddr,
    pub port: u16,
    pub weight: u32,
    pub labels: &'a BTreeMap<String, String>,
    /// The registry workload behind the endpoint (`None` for a
    /// ServiceEntry's own endpoints).
    pub workload: Option<&'a Workload>,
}

/// A DestinationRule's policy for one port and subset, most specific
/// setting winning (rule, rule's port level, subset, subset's port level).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Policy<'a> {
    pub load_balancer: Option<&'a LoadBalancerSettings>,
    pub connection_pool: Option<&'a ConnectionPoolSettings>,
    pub outlier_detection: Option<&'a OutlierDetection>,
    pub tls: Option<&'a ClientTlsSettings>,
}

impl<'a> Policy<'a> {
    fn apply(&mut self, tp: &'a TrafficPolicy, port: u16) {
        self.load_balancer = tp.load_balancer.as_ref().or(self.load_balancer);
        self.connection_pool = tp.connection_pool.as_ref().or(self.connection_pool);
        self.outlier_detection = tp.outlier_detection.as_ref().or(self.outlier_detection);
        self.tls = tp.tls.as_ref().or(self.tls);
        if let Some(pl) = tp
            .port_level_settings
            .iter()
            .find(|pl| pl.port.is_some_and(|p| p.number == u32::from(port)))
        {
            self.load_balancer = pl.load_balancer.as_ref().or(self.load_balancer);
            self.connection_pool = pl.connection_pool.as_ref().or(self.connection_pool);
            self.outlier_detection = pl.outlier_detection.as_ref().or(self.outlier_detection);
            self.tls = pl.tls.as_ref().or(self.tls);
        }
    }
}

/// A port the proxy receives traffic on for its own workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InboundPort {
    /// The workload port (the service's target port): Istio names inbound
    /// clusters and listeners by it.
    pub port: u16,
    pub protocol: Protocol,
    /// Where the application listens.
    pub endpoint: SocketAddr,
    /// How the port is served (PeerAuthentication); filled in by
    /// `translate` through `mtls::inbound`.
    pub tls: InboundTls,
}

pub(crate) struct View<'a> {
    pub opts: &'a Options,
    /// The proxy, with labels and service account filled in from its
    /// registry workload when its metadata lacks them.
    pub proxy: ProxyNode,
    pub workload: Option<&'a Workload>,
    pub sidecar: Option<&'a Resource<Sidecar>>,
    /// Visible services, sorted by host, one per host.
    pub services: Vec<Svc<'a>>,
    /// Every service port number by host, visible or not (to resolve a
    /// route destination's port).
    all_ports: BTreeMap<String, Vec<u16>>,
    registry_services: Vec<&'a Service>,
    workloads: Vec<&'a Workload>,
    /// Positions in `workloads` by `namespace\0key\0value` (from an
    /// [`Index`]); without one, selectors scan every workload.
    by_label: Option<&'a HashMap<String, Vec<u32>>>,
    virtual_services: Vec<&'a Resource<VirtualService>>,
    destination_rules: Vec<&'a Resource<DestinationRule>>,
}

/// Per mesh state, what every [`View`] of it needs sorted and indexed:
/// built once per state instead of once per proxy.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// `state.workloads` positions in `Workload` order.
    workloads: Vec<usize>,
    /// `state.services` positions in `Service` order.
    services: Vec<usize>,
    /// Positions in `workloads` by [`label_key`].
    by_label: HashMap<String, Vec<u32>>,
}

impl Index {
    pub(crate) fn new(state: &MeshState) -> Index {
        let mut workloads: Vec<usize> = (0..state.workloads.len()).collect();
        workloads.sort_by(|&a, &b| state.workloads[a].cmp(&state.workloads[b]));
        let mut services: Vec<usize> = (0..state.services.len()).collect();
        services.sort_by(|&a, &b| state.services[a].cmp(&state.services[b]));
        let mut by_label: HashMap<String, Vec<u32>> = HashMap::new();
        for (pos, &i) in workloads.iter().enumerate() {
            let w = &state.workloads[i];
            for (k, v) in &w.labels {
                let pos = u32::try_from(pos).expect("fewer than 2^32 workloads");
                by_label
                    .entry(label_key(&w.namespace, k, v))
                    .or_default()
                    .push(pos);
            }
        }
        Index {
            workloads,
            services,
            by_label,
        }
    }
}

fn label_key(ns: &str, k: &str, v: &str) -> String {
    format!("{ns}\0{k}\0{v}")
}

fn sorted_resources<T>(v: &[Resource<T>]) -> Vec<&Resource<T>> {
    let mut out: Vec<&Resource<T>> = v.iter().collect();
    out.sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    out
}

/// Does the (possibly wildcard) `pattern` cover `host` (itself possibly
/// a wildcard)?
pub(crate) fn covers(pattern: &str, host: &str) -> bool {
    if pattern == "*" || pattern == host {
        return true;
    }
    match (pattern.strip_prefix('*'), host.strip_prefix('*')) {
        (Some(suffix), None) => host.ends_with(suffix) && host.len() > suffix.len(),
        (Some(suffix), Some(inner)) => inner.ends_with(suffix),
        _ => false,
    }
}

/// Is a resource of `owner_ns` with this `exportTo` visible from `ns`?
fn exported_to(export_to: &[String], owner_ns: &str, ns: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == ns || (e == "." && owner_ns == ns))
}

pub(crate) fn selects(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Istio's protocol names (any case), else inferred from the port name
/// prefix (`http-web`), else TCP.
pub(crate) fn parse_protocol(protocol: Option<&str>, name: Option<&str>) -> Protocol {
    let from = |s: &str| match s.to_ascii_uppercase().as_str() {
        "HTTP" => Some(Protocol::Http),
        "HTTP2" => Some(Protocol::Http2),
        "GRPC" | "GRPC-WEB" => Some(Protocol::Grpc),
        "HTTPS" => Some(Protocol::Https),
        "TLS" => Some(Protocol::Tls),
        "" => None,
        _ => Some(Protocol::Tcp),
    };
    if let Some(p) = protocol.and_then(from) {
        return p;
    }
    let prefix = name.unwrap_or("").split(['-', '_']).next().unwrap_or("");
    match from(prefix) {
        Some(p @ (Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::Https)) => p,
        Some(Protocol::Tls) => Protocol::Tls,
        _ => Protocol::Tcp,
    }
}

impl<'a> View<'a> {
    pub(crate) fn new(state: &'a MeshState, proxy: &ProxyNode, opts: &'a Options) -> View<'a> {
        let mut workloads: Vec<&Workload> = state.workloads.iter().collect();
        workloads.sort();
        let mut registry_services: Vec<&Service> = state.services.iter().collect();
        registry_services.sort();
        Self::build(state, workloads, registry_services, None, proxy, opts)
    }

    /// [`View::new`] from the sorted lists of an [`Index`] of `state`
    /// (the same view, without sorting and scanning per proxy).
    pub(crate) fn indexed(
        state: &'a MeshState,
        index: &'a Index,
        proxy: &ProxyNode,
        opts: &'a Options,
    ) -> View<'a> {
        let workloads = index
            .workloads
            .iter()
            .map(|&i| &state.workloads[i])
            .collect();
        let services = index.services.iter().map(|&i| &state.services[i]).collect();
        Self::build(
            state,
            workloads,
            services,
            Some(&index.by_label),
            proxy,
            opts,
        )
    }

    fn build(
        state: &'a MeshState,
        workloads: Vec<&'a Workload>,
        registry_services: Vec<&'a Service>,
        by_label: Option<&'a HashMap<String, Vec<u32>>>,
        proxy: &ProxyNode,
        opts: &'a Options,
    ) -> View<'a> {
        let mut proxy = proxy.clone();
        let workload = proxy.ip.and_then(|ip| {
            workloads
                .iter()
                .copied()
                .find(|w| w.address == ip && w.namespace == proxy.namespace)
        });
        if let Some(w) = workload {
            if proxy.labels.is_empty() {
                proxy.labels = w.labels.clone();
            }
            if proxy.service_account.is_empty() {
                proxy.service_account = w.service_account.clone();
            }
        }

        let model = &state.istio;
        let sidecars = sorted_resources(&model.sidecars);
        let sidecar = Self::find_sidecar(&sidecars, &proxy);

        let mut view = View {
            opts,
            proxy,
            workload,
            sidecar,
            services: Vec::new(),
            all_ports: BTreeMap::new(),
            registry_services,
            workloads,
            by_label,
            virtual_services: Vec::new(),
            destination_rules: Vec::new(),
        };
        view.collect_services(state);
        view.collect_rules(state);
        view
    }

    /// The proxy's Sidecar: one in its namespace selecting it, else one in
    /// its namespace without a selector, else the root namespace's.
    fn find_sidecar(
        sidecars: &[&'a Resource<Sidecar>],
        proxy: &ProxyNode,
    ) -> Option<&'a Resource<Sidecar>> {
        fn in_ns<'s, 'a>(
            sidecars: &'s [&'a Resource<Sidecar>],
            ns: &'s str,
        ) -> impl Iterator<Item = &'a Resource<Sidecar>> + 's {
            sidecars
                .iter()
                .copied()
                .filter(move |s| s.meta.namespace == ns)
        }
        in_ns(sidecars, &proxy.namespace)
            .find(|s| {
                s.spec
                    .workload_selector
                    .as_ref()
                    .is_some_and(|ws| !ws.labels.is_empty() && selects(&ws.labels, &proxy.labels))
            })
            .or_else(|| {
                in_ns(sidecars, &proxy.namespace).find(|s| {
                    s.spec
                        .workload_selector
                        .as_ref()
                        .is_none_or(|ws| ws.labels.is_empty())
                })
            })
            .or_else(|| {
                in_ns(sidecars, ROOT_NAMESPACE).find(|s| {
                    s.spec
                        .workload_selector
                        .as_ref()
                        .is_none_or(|ws| ws.labels.is_empty())
                })
            })
    }

    /// The fully qualified form of a host written in namespace `ns`.
    pub(crate) fn fqdn(&self, host: &str, ns: &str) -> String {
        if host.contains('.') || host.starts_with('*') {
            host.to_ascii_lowercase()
        } else {
            format!("{host}.{ns}.svc.{}", self.opts.domain_suffix).to_ascii_lowercase()
        }
    }

    fn collect_services(&mut self, state: &'a MeshState) {
        let mut all: Vec<Svc<'a>> = Vec::new();
        for s in &self.registry_services {
            all.push(Svc {
                host: s.hostname.to_ascii_lowercase(),
                namespace: s.namespace.clone(),
                short_name: Some(s.name.clone()),
                ports: s.ports.clone(),
                discovery: Discovery::Eds,
                source: Source::Registry(s),
            });
        }
        for se in sorted_resources(&state.istio.service_entries) {
            let mut ports = Vec::new();
            for p in &se.spec.ports {
                let (Ok(port), Ok(target)) = (
                    u16::try_from(p.number),
                    u16::try_from(p.target_port.unwrap_or(p.number)),
                ) else {
                    warn!(
                        service_entry = %se.reference(),
                        port = p.number,
                        "port out of range; skipped"
                    );
                    continue;
                };
                ports.push(ServicePort {
                    name: p.name.clone().unwrap_or_else(|| format!("port-{port}")),
                    port,
                    target_port: target,
                    protocol: parse_protocol(p.protocol.as_deref(), p.name.as_deref()),
                });
            }
            let discovery = match se.spec.resolution() {
                Resolution::Static => Discovery::Eds,
                Resolution::Dns => Discovery::Dns { logical: false },
                Resolution::DnsRoundRobin => Discovery::Dns { logical: true },
                Resolution::None => Discovery::Passthrough,
            };
            for host in &se.spec.hosts {
                let host = host.to_ascii_lowercase();
                if discovery == Discovery::Eds && host.starts_with('*') {
                    warn!(
                        service_entry = %se.reference(),
                        host,
                        "a wildcard host cannot have STATIC endpoints; skipped"
                    );
                    continue;
                }
                all.push(Svc {
                    host,
                    namespace: se.meta.namespace.clone(),
                    short_name: None,
                    ports: ports.clone(),
                    discovery,
                    source: Source::Entry(se),
                });
            }
        }
        // One service per host: registry services first (they were pushed
        // first), then ServiceEntries by namespace/name.
        let mut seen = BTreeMap::new();
        for svc in all {
            if let Some(first) = seen.get(&svc.host) {
                let first: &Svc = first;
                let same_entry = matches!(
                    (first.source, svc.source),
                    (Source::Entry(a), Source::Entry(b)) if std::ptr::eq(a, b)
                );
                if !same_entry {
                    warn!(
                        host = svc.host,
                        "host defined more than once (registry service or ServiceEntry); \
                         the first definition is used"
                    );
                }
                continue;
            }
            seen.insert(svc.host.clone(), svc);
        }
        for svc in seen.values() {
            let mut ports: Vec<u16> = svc.ports.iter().map(|p| p.port).collect();
            ports.sort_unstable();
            self.all_ports.insert(svc.host.clone(), ports);
        }
        let ns = self.proxy.namespace.clone();
        for (_, mut svc) in seen {
            let export_to: &[String] = match svc.source {
                Source::Registry(s) => &s.export_to,
                Source::Entry(se) => &se.spec.export_to,
            };
            if !exported_to(export_to, &svc.namespace, &ns) {
                continue;
            }
            let mut ports = std::mem::take(&mut svc.ports);
            ports.sort_by_key(|p| p.port);
            ports.dedup_by_key(|p| p.port);
            ports.retain(|p| self.egress_allows(&svc, p.port));
            if ports.is_empty() {
                continue;
            }
            svc.ports = ports;
            self.services.push(svc);
        }
    }

    /// Does the proxy's Sidecar let it see `svc` on `port`? An egress
    /// listener counts when it has no port or this port; its hosts are
    /// `namespace/dnsName` with `*` (any), `.` (the proxy's) and `~`
    /// (none) namespaces and `*`, `*.suffix` or exact names.
    fn egress_allows(&self, svc: &Svc, port: u16) -> bool {
        let Some(sc) = self.sidecar else { return true };
        if sc.spec.egress.is_empty() {
            return true;
        }
        sc.spec
            .egress
            .iter()
            .filter(|e| e.port.as_ref().is_none_or(|p| p.number == u32::from(port)))
            .flat_map(|e| &e.hosts)
            .any(|h| self.egress_host_matches(h, svc))
    }

    fn egress_host_matches(&self, entry: &str, svc: &Svc) -> bool {
        let (ns, name) = entry.split_once('/').unwrap_or(("*", entry));
        let ns_ok = match ns {
            "*" => true,
            "." => svc.namespace == self.proxy.namespace,
            "~" => false,
            other => svc.namespace == other,
        };
        if !ns_ok {
            return false;
        }
        let name = name.to_ascii_lowercase();
        if name == "*" {
            return true;
        }
        // A short name is read in the namespace the entry names.
        let pattern = if !name.contains('.') && !name.starts_with('*') {
            let ns = match ns {
                "." | "*" => self.proxy.namespace.as_str(),
                other => other,
            };
            self.fqdn(&name, ns)
        } else {
            name
        };
        covers(&pattern, &svc.host)
    }

    fn collect_rules(&mut self, state: &'a MeshState) {
        let ns = self.proxy.namespace.clone();
        self.virtual_services = sorted_resources(&state.istio.virtual_services)
            .into_iter()
            .filter(|vs| vs.spec.applies_to_mesh())
            .filter(|vs| exported_to(&vs.spec.export_to, &vs.meta.namespace, &ns))
            .collect();
        self.destination_rules = sorted_resources(&state.istio.destination_rules)
            .into_iter()
            .filter(|dr| exported_to(&dr.spec.export_to, &dr.meta.namespace, &ns))
            .filter(|dr| match &dr.spec.workload_selector {
                Some(sel) if !sel.match_labels.is_empty() => {
                    dr.meta.namespace == ns && selects(&sel.match_labels, &self.proxy.labels)
                }
                _ => true,
            })
            .collect();
    }

    /// How close `ns` is to the proxy for rule precedence: the proxy's
    /// namespace, then the service's, then the root namespace.
    fn ns_rank(&self, ns: &str, svc_ns: &str) -> u8 {
        if ns == self.proxy.namespace {
            0
        } else if ns == svc_ns {
            1
        } else if ns == ROOT_NAMESPACE {
            2
        } else {
            3
        }
    }

    /// The VirtualService routing `svc`: an exact host before a wildcard,
    /// then the proxy's namespace, the service's, the root's; then by
    /// namespace/name. Only one applies (Istio merges several; see the
    /// crate docs).
    pub(crate) fn virtual_service(&self, svc: &Svc) -> Option<&'a Resource<VirtualService>> {
        let rank = |vs: &Resource<VirtualService>| {
            let (wildcard, len) = vs
                .spec
                .hosts
                .iter()
                .map(|h| self.fqdn(h, &vs.meta.namespace))
                .filter(|h| covers(h, &svc.host))
                .map(|h| (h != svc.host, usize::MAX - h.len()))
                .min()?;
            Some((
                wildcard,
                len,
                self.ns_rank(&vs.meta.namespace, &svc.namespace),
            ))
        };
        let (_, vs) = self
            .virtual_services
            .iter()
            .filter_map(|vs| Some((rank(vs)?, *vs)))
            .min_by_key(|(r, _)| *r)?;
        let exact = |o: &Resource<VirtualService>| {
            o.spec
                .hosts
                .iter()
                .any(|h| self.fqdn(h, &o.meta.namespace) == svc.host)
        };
        if exact(vs)
            && self
                .virtual_services
                .iter()
                .any(|o| !std::ptr::eq(*o, vs) && exact(o))
        {
            warn!(
                host = svc.host,
                used = %vs.reference(),
                "several VirtualServices for one host; only the first is applied"
            );
        }
        Some(vs)
    }

    /// The DestinationRule for `svc`: a rule selecting this proxy before
    /// one that does not, then the proxy's namespace, the service's, the
    /// root's; an exact host before the longest wildcard.
    pub(crate) fn destination_rule(&self, svc: &Svc) -> Option<&'a Resource<DestinationRule>> {
        let rank = |dr: &Resource<DestinationRule>| {
            let host = self.fqdn(&dr.spec.host, &dr.meta.namespace);
            if !covers(&host, &svc.host) {
                return None;
            }
            let selected = dr
                .spec
                .workload_selector
                .as_ref()
                .is_some_and(|s| !s.match_labels.is_empty());
            Some((
                !selected,
                self.ns_rank(&dr.meta.namespace, &svc.namespace),
                host != svc.host,
                usize::MAX - host.len(),
            ))
        };
        self.destination_rules
            .iter()
            .filter_map(|dr| Some((rank(dr)?, *dr)))
            .min_by_key(|(r, _)| *r)
            .map(|(_, dr)| dr)
    }

    /// The merged traffic policy for `port` and `subset`.
    pub(crate) fn policy(
        dr: Option<&'a Resource<DestinationRule>>,
        subset: Option<&'a Subset>,
        port: u16,
    ) -> Policy<'a> {
        let mut policy = Policy::default();
        if let Some(tp) = dr.and_then(|dr| dr.spec.traffic_policy.as_ref()) {
            policy.apply(tp, port);
        }
        if let Some(tp) = subset.and_then(|s| s.traffic_policy.as_ref()) {
            policy.apply(tp, port);
        }
        policy
    }

    /// The visible service with this host.
    pub(crate) fn service(&self, host: &str) -> Option<&Svc<'a>> {
        self.services
            .binary_search_by(|s| s.host.as_str().cmp(host))
            .ok()
            .map(|i| &self.services[i])
    }

    /// The port of `host` a destination without an explicit port means:
    /// the service's only port, else the port being routed.
    pub(crate) fn destination_port(&self, host: &str, routed: u16) -> u16 {
        match self.all_ports.get(host).map(Vec::as_slice) {
            Some([only]) => *only,
            _ => routed,
        }
    }

    /// The registry workloads `selector` picks in `ns` (ready ones only).
    fn selected_workloads(
        &self,
        ns: &'a str,
        selector: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a Workload> + '_ {
        self.selector_candidates(ns, selector)
            .filter(move |w| w.ready && w.namespace == ns && selects(selector, &w.labels))
    }

    /// The workloads (in order) that `selector` may pick in `ns`: none
    /// for an empty selector, those with its first label when indexed,
    /// else all of them.
    fn selector_candidates(
        &self,
        ns: &str,
        selector: &BTreeMap<String, String>,
    ) -> Box<dyn Iterator<Item = &'a Workload> + '_> {
        let Some((k, v)) = selector.iter().next() else {
            return Box::new(std::iter::empty());
        };
        match self.by_label {
            Some(index) => {
                let positions = index
                    .get(&label_key(ns, k, v))
                    .map_or(&[][..], Vec::as_slice);
                Box::new(positions.iter().map(|&p| self.workloads[p as usize]))
            }
            None => Box::new(self.workloads.iter().copied()),
        }
    }

    /// The endpoints of `svc` on `port` whose labels include
    /// `subset_labels`, sorted.
    pub(crate) fn endpoints(
        &self,
        svc: &Svc<'a>,
        port: &ServicePort,
        subset_labels: &BTreeMap<String, String>,
    ) -> Vec<Ep<'a>> {
        let mut out = Vec::new();
        let from_workload = |w: &'a Workload| Ep {
            locality: w.locality.as_deref(),
            address: EpAddr::Ip(w.address),
            port: w.target_port(port),
            weight: w.weight.max(1),
            labels: &w.labels,
            workload: Some(w),
        };
        match svc.source {
            Source::Registry(s) => out.extend(
                self.selected_workloads(&s.namespace, &s.selector)
                    .map(from_workload),
            ),
            Source::Entry(se) => {
                if let Some(sel) = &se.spec.workload_selector {
                    out.extend(
                        self.selected_workloads(&se.meta.namespace, &sel.labels)
                            .map(from_workload),
                    );
                }
                for ep in &se.spec.endpoints {
                    let Some(addr) = ep.address.as_deref() else {
                        continue;
                    };
                    let address = match (addr.parse::<IpAddr>(), svc.discovery) {
                        (Ok(ip), _) => EpAddr::Ip(ip),
                        (Err(_), Discovery::Dns { .. }) if !addr.starts_with("unix://") => {
                            EpAddr::Name(addr.to_ascii_lowercase())
                        }
                        _ => {
                            warn!(
                                service_entry = %se.reference(),
                                address = addr,
                                "endpoint address is not an IP address (only DNS resolution \
                                 takes names; unix sockets are not supported); skipped"
                            );
                            continue;
                        }
                    };
                    let ep_port = ep
                        .ports
                        .get(&port.name)
                        .and_then(|p| u16::try_from(*p).ok())
                        .unwrap_or(port.target_port);
                    out.push(Ep {
                        locality: ep.locality.as_deref(),
                        address,
                        port: ep_port,
                        weight: ep.weight.unwrap_or(1).max(1),
                        labels: &ep.labels,
                        workload: None,
                    });
                }
                if out.is_empty() && matches!(svc.discovery, Discovery::Dns { .. }) {
                    out.push(Ep {
                        locality: None,
                        address: EpAddr::Name(svc.host.clone()),
                        port: port.target_port,
                        weight: 1,
                        labels: empty_labels(),
                        workload: None,
                    });
                }
            }
        }
        out.retain(|ep| selects(subset_labels, ep.labels));
        out.sort();
        out.dedup();
        out
    }

    /// The SPIFFE identities of a service's workloads (all of them, ready
    /// or not), sorted.
    pub(crate) fn service_accounts(&self, svc: &Svc<'a>) -> Vec<String> {
        let td = &self.opts.trust_domain;
        let mut out: Vec<String> = match svc.source {
            Source::Registry(s) => self
                .selector_candidates(&s.namespace, &s.selector)
                .filter(|w| w.namespace == s.namespace && selects(&s.selector, &w.labels))
                .filter(|w| !w.service_account.is_empty())
                .map(|w| format!("spiffe://{td}/ns/{}/sa/{}", w.namespace, w.service_account))
                .collect(),
            Source::Entry(se) => {
                let mut v = se.spec.subject_alt_names.clone();
                v.extend(
                    se.spec
                        .endpoints
                        .iter()
                        .filter_map(|e| e.service_account.as_deref())
                        .map(|sa| format!("spiffe://{td}/ns/{}/sa/{sa}", se.meta.namespace)),
                );
                v
            }
        };
        out.sort();
        out.dedup();
        out
    }

    /// The outbound traffic policy: the Sidecar's, else ALLOW_ANY (Istio's
    /// mesh default).
    pub(crate) fn outbound_mode(&self) -> OutboundMode {
        self.sidecar
            .and_then(|s| s.spec.outbound_traffic_policy.as_ref())
            .map_or(OutboundMode::AllowAny, |p| p.mode())
    }

    /// The proxy's own locality (from its registry workload).
    pub(crate) fn locality(&self) -> Option<&'a str> {
        self.workload.and_then(|w| w.locality.as_deref())
    }

    /// Does this match condition apply to this proxy (source labels and
    /// namespace, gateways)?
    pub(crate) fn source_matches(
        &self,
        source_labels: &BTreeMap<String, String>,
        source_namespace: Option<&str>,
        gateways: &[String],
    ) -> bool {
        selects(source_labels, &self.proxy.labels)
            && source_namespace.is_none_or(|ns| ns == self.proxy.namespace)
            && (gateways.is_empty() || gateways.iter().any(|g| g == "mesh"))
    }

    /// The ports this proxy receives traffic on for its own workload: the
    /// Sidecar's `ingress` ports when it lists any (as Istio), else every
    /// port of every registry service in its namespace that selects it.
    pub(crate) fn inbound_ports(&self) -> Vec<InboundPort> {
        let mut out: Vec<InboundPort> = Vec::new();
        let ingress = self
            .sidecar
            .map(|s| s.spec.ingress.as_slice())
            .unwrap_or(&[]);
        if !ingress.is_empty() {
            for l in ingress {
                let Some(p) = &l.port else { continue };
                let Ok(port) = u16::try_from(p.number) else {
                    continue;
                };
                out.push(InboundPort {
                    port,
                    protocol: parse_protocol(p.protocol.as_deref(), p.name.as_deref()),
                    endpoint: self.app_endpoint(port),
                    tls: InboundTls::default(),
                });
            }
        } else if !self.proxy.labels.is_empty() {
            for s in &self.registry_services {
                if s.namespace != self.proxy.namespace
                    || s.selector.is_empty()
                    || !selects(&s.selector, &self.proxy.labels)
                {
                    continue;
                }
                for p in &s.ports {
                    let port = self.workload.map_or(p.target_port, |w| w.target_port(p));
                    if let Some(existing) = out.iter().find(|i| i.port == port) {
                        if existing.protocol.is_http() != p.protocol.is_http() {
                            warn!(
                                service = s.hostname,
                                port,
                                "workload port is HTTP for one service and TCP for another; \
                                 the first one is used"
                            );
                        }
                        continue;
                    }
                    out.push(InboundPort {
                        port,
                        protocol: p.protocol,
                        endpoint: self.app_endpoint(port),
                        tls: InboundTls::default(),
                    });
                }
            }
        }
        out.sort_by_key(|p| p.port);
        out.dedup_by_key(|p| p.port);
        out
    }

    /// Where the application receives `port`: the Sidecar ingress
    /// listener's `defaultEndpoint` for that port when it is a loopback
    /// address — any of 127.0.0.0/8 or `[::1]`, wider than Istio's
    /// 127.0.0.1, because on a loopback test bed each "pod" has its own
    /// 127.0.0.x and its app listens on a port of its own there —
    /// `0.0.0.0:P`/`[::]:P` (the app listens everywhere) as
    /// `127.0.0.1:P`/`[::1]:P`; else `127.0.0.1:port`.
    fn app_endpoint(&self, port: u16) -> SocketAddr {
        let fallback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let Some(sc) = self.sidecar else {
            return fallback;
        };
        let Some(ep) = sc
            .spec
            .ingress
            .iter()
            .find(|l| l.port.as_ref().is_some_and(|p| p.number == u32::from(port)))
            .and_then(|l| l.default_endpoint.as_deref())
        else {
            return fallback;
        };
        match ep.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => a,
            Ok(a) if a.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED) => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), a.port())
            }
            Ok(a) if a.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), a.port())
            }
            _ => {
                warn!(
                    sidecar = %sc.reference(),
                    default_endpoint = ep,
                    "defaultEndpoint is not a loopback IP:port (unix sockets and other \
                     addresses are not supported); using 127.0.0.1:{port}"
                );
                fallback
            }
        }
    }
}

fn empty_labels() -> &'static BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    &EMPTY
}
