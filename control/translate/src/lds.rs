//! Listeners (LDS), in one of two layouts:
//!
//! - **Redirect** (Istio's sidecar layout, with iptables capture):
//!   `virtualOutbound` on 0.0.0.0:15001 hands captured connections to the
//!   listener of their original destination port — `0.0.0.0_PORT`, not
//!   bound, an HTTP connection manager fetching route configuration
//!   `"PORT"`, or a TCP proxy — and passes (or black-holes) the rest;
//!   `virtualInbound` on 0.0.0.0:15006 has one filter chain per workload
//!   port.
//! - **None** (no capture): `virtualOutbound` is an HTTP proxy bound at
//!   `IP:15001` (route configuration `http_proxy`), and each workload port
//!   gets a listener bound at `IP:PORT` in front of the application.
//!
//! In both, a workload port's filter chains follow its PeerAuthentication
//! (`inbound_chains`): one mTLS chain (STRICT), an mTLS chain for
//! `transport_protocol: tls` beside a plaintext one for `raw_buffer` with
//! the TLS inspector on the listener (PERMISSIVE), or one plaintext chain.
//! Every inbound chain carries the workload's AuthorizationPolicies
//! ([`crate::rbac`]): HTTP RBAC filters before the router in a connection
//! manager that normalizes paths, or network RBAC filters before the TCP
//! proxy (also on `virtualInbound`'s passthrough chain).

use std::{collections::BTreeMap, net::IpAddr};

use ringmesh_istio::networking::sidecar::OutboundMode;
use ringmesh_registry::Protocol;
use tracing::warn;

use crate::{
    cds::{inbound_name, BLACKHOLE, INBOUND_PASSTHROUGH, PASSTHROUGH},
    mtls::{self, InboundTls},
    rbac::InboundAuthz,
    rds::{self, HTTP_PROXY},
    view::{InboundPort, Svc, View},
    wire::{self, core, hcm, listener, original_dst, tcp_proxy, tls_inspector},
};

pub(crate) const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
pub(crate) const VIRTUAL_INBOUND: &str = "virtualInbound";
pub(crate) const OUTBOUND_PORT: u16 = 15001;
pub(crate) const INBOUND_PORT: u16 = 15006;

/// An HTTP connection manager: RDS by name over ADS, or an inline route
/// configuration; the fault filter before the router when asked.
fn http_manager(
    stat_prefix: &str,
    routes: hcm::http_connection_manager::RouteSpecifier,
    with_fault: bool,
) -> listener::Filter {
    let mut http_filters = Vec::new();
    if with_fault {
        http_filters.push(wire::fault_filter());
    }
    http_filters.push(wire::router_filter());
    wire::network_filter(
        "envoy.filters.network.http_connection_manager",
        &hcm::HttpConnectionManager {
            stat_prefix: stat_prefix.to_owned(),
            route_specifier: Some(routes),
            http_filters,
            ..Default::default()
        },
    )
}

/// The inbound connection manager: the RBAC filters before the router,
/// and the path normalized before anything matches on it (Istio's
/// `DECODE_AND_MERGE_SLASHES`: RFC 3986 normalization, `//` merged,
/// `%2F`/`%5C` decoded and forwarded), so no spelling of a path slips
/// past an authorization rule.
fn inbound_http_manager(
    stat_prefix: &str,
    routes: hcm::http_connection_manager::RouteSpecifier,
    authz: &InboundAuthz,
) -> listener::Filter {
    let mut http_filters = authz.http.clone();
    http_filters.push(wire::router_filter());
    wire::network_filter(
        "envoy.filters.network.http_connection_manager",
        &hcm::HttpConnectionManager {
            stat_prefix: stat_prefix.to_owned(),
            route_specifier: Some(routes),
            http_filters,
            normalize_path: Some(wire::boolv(true)),
            merge_slashes: true,
            path_with_escaped_slashes_action:
                hcm::http_connection_manager::PathWithEscapedSlashesAction::UnescapeAndForward
                    as i32,
            ..Default::default()
        },
    )
}

fn rds(name: &str) -> hcm::http_connection_manager::RouteSpecifier {
    hcm::http_connection_manager::RouteSpecifier::Rds(hcm::Rds {
        config_source: Some(wire::ads()),
        route_config_name: name.to_owned(),
    })
}

/// A TCP proxy to one cluster, or split by weight.
fn tcp_proxy_filter(stat_prefix: &str, destinations: &[(String, u32)]) -> listener::Filter {
    use tcp_proxy::tcp_proxy::{
        weighted_cluster::ClusterWeight, ClusterSpecifier, WeightedCluster,
    };
    let specifier = match destinations {
        [(cluster, _)] => ClusterSpecifier::Cluster(cluster.clone()),
        many => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .map(|(name, weight)| ClusterWeight {
                    name: name.clone(),
                    weight: *weight,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    wire::network_filter(
        "envoy.filters.network.tcp_proxy",
        &tcp_proxy::TcpProxy {
            stat_prefix: stat_prefix.to_owned(),
            cluster_specifier: Some(specifier),
            ..Default::default()
        },
    )
}

fn chain(name: &str, filter: listener::Filter) -> listener::FilterChain {
    chain_of(name, vec![filter])
}

fn chain_of(name: &str, filters: Vec<listener::Filter>) -> listener::FilterChain {
    listener::FilterChain {
        name: name.to_owned(),
        filters,
        ..Default::default()
    }
}

/// A TCP proxy to `cluster`, the network RBAC filters before it.
fn inbound_tcp_filters(
    stat_prefix: &str,
    cluster: &str,
    authz: &InboundAuthz,
) -> Vec<listener::Filter> {
    let mut filters = authz.tcp.clone();
    filters.push(tcp_proxy_filter(stat_prefix, &[(cluster.to_owned(), 100)]));
    filters
}

fn listener_at(
    name: &str,
    address: core::Address,
    direction: core::TrafficDirection,
) -> listener::Listener {
    listener::Listener {
        name: name.to_owned(),
        address: Some(address),
        traffic_direction: direction as i32,
        ..Default::default()
    }
}

fn listener_filter<M: prost::Name>(name: &str, config: &M) -> listener::ListenerFilter {
    listener::ListenerFilter {
        name: name.to_owned(),
        config_type: Some(listener::listener_filter::ConfigType::TypedConfig(
            wire::any(config),
        )),
        ..Default::default()
    }
}

/// The inbound connection manager or TCP proxy for a workload port,
/// behind its RBAC filters.
fn inbound_filters(
    p: &InboundPort,
    stat_prefix: &str,
    authz: &InboundAuthz,
) -> Vec<listener::Filter> {
    let cluster = inbound_name(p.port);
    if p.protocol.is_http() {
        let rc = rds::inline_to(&cluster, &format!("inbound|http|{}", p.port), &cluster);
        vec![inbound_http_manager(
            stat_prefix,
            hcm::http_connection_manager::RouteSpecifier::RouteConfig(rc),
            authz,
        )]
    } else {
        inbound_tcp_filters(&cluster, &cluster, authz)
    }
}

fn tls_inspector() -> listener::ListenerFilter {
    listener_filter(
        "envoy.filters.listener.tls_inspector",
        &tls_inspector::TlsInspector::default(),
    )
}

/// The filter chains of a workload port, by its PeerAuthentication mode:
/// one plaintext chain (DISABLE), one mTLS chain (STRICT), or an mTLS
/// chain for `transport_protocol: tls` and a plaintext one for
/// `raw_buffer` (PERMISSIVE; the listener needs the TLS inspector).
/// `destination_port` goes into every chain's match (virtualInbound).
fn inbound_chains(
    p: &InboundPort,
    name: &str,
    stat_prefix: &str,
    destination_port: Option<u16>,
    authz: &InboundAuthz,
) -> Vec<listener::FilterChain> {
    let with_match = |mut c: listener::FilterChain, transport: Option<&str>| {
        let m = listener::FilterChainMatch {
            destination_port: destination_port.map(|p| wire::u32v(u32::from(p))),
            transport_protocol: transport.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        if m != listener::FilterChainMatch::default() {
            c.filter_chain_match = Some(m);
        }
        c
    };
    let plain = |name: &str| chain_of(name, inbound_filters(p, stat_prefix, authz));
    let mtls = |name: &str| {
        let mut c = plain(name);
        c.transport_socket = Some(mtls::downstream_socket());
        c
    };
    match p.tls {
        InboundTls::Plaintext => vec![with_match(plain(name), None)],
        InboundTls::Strict => vec![with_match(mtls(name), None)],
        InboundTls::Permissive => vec![
            with_match(mtls(&format!("{name}-tls")), Some("tls")),
            with_match(plain(&format!("{name}-plaintext")), Some("raw_buffer")),
        ],
    }
}

/// Ports the proxy itself uses; a service port among them would collide.
fn reserved(port: u16) -> bool {
    port == OUTBOUND_PORT || port == INBOUND_PORT
}

/// Redirect layout.
pub(crate) fn redirect(
    view: &View,
    http_ports_with_fault: &BTreeMap<u16, bool>,
    inbound: &[InboundPort],
    authz: &InboundAuthz,
) -> Vec<listener::Listener> {
    let mut out = Vec::new();
    let at = |port: u16| wire::address("0.0.0.0", u32::from(port));

    // virtualOutbound: hands off by original destination; the rest passes
    // through (ALLOW_ANY) or is dropped (REGISTRY_ONLY).
    let fallback = match view.outbound_mode() {
        OutboundMode::AllowAny => PASSTHROUGH,
        OutboundMode::RegistryOnly => BLACKHOLE,
    };
    let mut vo = listener_at(
        VIRTUAL_OUTBOUND,
        at(OUTBOUND_PORT),
        core::TrafficDirection::Outbound,
    );
    vo.use_original_dst = Some(wire::boolv(true));
    vo.filter_chains = vec![chain(
        "virtualOutbound-catchall-tcp",
        tcp_proxy_filter(fallback, &[(fallback.to_owned(), 100)]),
    )];
    out.push(vo);

    // HTTP ports.
    for (&port, &fault) in http_ports_with_fault {
        if reserved(port) {
            warn!(
                port,
                "service port collides with the proxy's capture ports; no outbound listener"
            );
            continue;
        }
        let name = format!("0.0.0.0_{port}");
        let mut l = listener_at(&name, at(port), core::TrafficDirection::Outbound);
        l.bind_to_port = Some(wire::boolv(false));
        l.filter_chains = vec![chain(
            &name,
            http_manager(
                &format!("outbound_0.0.0.0_{port}"),
                rds(&port.to_string()),
                fault,
            ),
        )];
        out.push(l);
    }

    // TCP and TLS ports.
    let mut tcp: BTreeMap<u16, Vec<&Svc>> = BTreeMap::new();
    let mut tls: BTreeMap<u16, Vec<&Svc>> = BTreeMap::new();
    for svc in &view.services {
        for p in svc.ports.iter().filter(|p| !p.protocol.is_http()) {
            let map = if matches!(p.protocol, Protocol::Https | Protocol::Tls) {
                &mut tls
            } else {
                &mut tcp
            };
            map.entry(p.port).or_default().push(svc);
        }
    }
    for (port, services) in &tls {
        if reserved(*port) || http_ports_with_fault.contains_key(port) {
            warn!(
                port,
                "TLS services share a port with HTTP services or the proxy; no TLS listener"
            );
            continue;
        }
        if tcp.contains_key(port) {
            warn!(port, "plain TCP and TLS services share the port; only the TLS ones get a listener (by SNI)");
        }
        // One chain per service by SNI; everything else passes or drops.
        let name = format!("0.0.0.0_{port}");
        let mut l = listener_at(&name, at(*port), core::TrafficDirection::Outbound);
        l.bind_to_port = Some(wire::boolv(false));
        l.listener_filters = vec![tls_inspector()];
        for svc in services {
            let dests = rds::tcp_destinations(view, svc, *port);
            let mut c = chain(
                &format!("{}:{port}", svc.host),
                tcp_proxy_filter(&dests[0].0, &dests),
            );
            c.filter_chain_match = Some(listener::FilterChainMatch {
                server_names: vec![svc.host.clone()],
                ..Default::default()
            });
            l.filter_chains.push(c);
        }
        l.default_filter_chain = Some(chain(
            &format!("{name}-catchall"),
            tcp_proxy_filter(fallback, &[(fallback.to_owned(), 100)]),
        ));
        out.push(l);
    }
    for (port, services) in &tcp {
        if reserved(*port) || http_ports_with_fault.contains_key(port) || tls.contains_key(port) {
            if !tls.contains_key(port) {
                warn!(
                    port,
                    "TCP services share a port with HTTP services or the proxy; no TCP listener"
                );
            }
            continue;
        }
        let [svc] = services.as_slice() else {
            warn!(
                port,
                services = services.len(),
                "several TCP services on one port cannot be told apart without service IPs; \
                 no TCP listener (traffic goes to the catch-all)"
            );
            continue;
        };
        let name = format!("0.0.0.0_{port}");
        let dests = rds::tcp_destinations(view, svc, *port);
        let mut l = listener_at(&name, at(*port), core::TrafficDirection::Outbound);
        l.bind_to_port = Some(wire::boolv(false));
        l.filter_chains = vec![chain(&name, tcp_proxy_filter(&dests[0].0, &dests))];
        out.push(l);
    }

    // virtualInbound: one chain per workload port, by original destination
    // port (the original_dst listener filter restores it), and a
    // passthrough for the rest.
    let mut vi = listener_at(
        VIRTUAL_INBOUND,
        at(INBOUND_PORT),
        core::TrafficDirection::Inbound,
    );
    vi.listener_filters = vec![listener_filter(
        "envoy.filters.listener.original_dst",
        &original_dst::OriginalDst::default(),
    )];
    for p in inbound {
        if reserved(p.port) {
            warn!(
                port = p.port,
                "workload port collides with the proxy's capture ports; skipped"
            );
            continue;
        }
        vi.filter_chains.extend(inbound_chains(
            p,
            &inbound_name(p.port),
            &format!("inbound_0.0.0.0_{}", p.port),
            Some(p.port),
            authz,
        ));
    }
    if inbound
        .iter()
        .any(|p| p.tls == InboundTls::Permissive && !reserved(p.port))
    {
        vi.listener_filters.push(tls_inspector());
    }
    // The passthrough is inbound traffic too: the same TCP policies.
    vi.filter_chains.push(chain_of(
        "virtualInbound-catchall-tcp",
        inbound_tcp_filters(INBOUND_PASSTHROUGH, INBOUND_PASSTHROUGH, authz),
    ));
    out.push(vi);
    out
}

/// No-interception layout; needs the proxy's IP.
pub(crate) fn none(
    ip: IpAddr,
    proxy_uses_fault: bool,
    inbound: &[InboundPort],
    authz: &InboundAuthz,
) -> Vec<listener::Listener> {
    let mut out = Vec::new();
    let mut vo = listener_at(
        VIRTUAL_OUTBOUND,
        wire::ip_address(ip, OUTBOUND_PORT),
        core::TrafficDirection::Outbound,
    );
    vo.filter_chains = vec![chain(
        VIRTUAL_OUTBOUND,
        http_manager(
            &format!("outbound_{ip}_{OUTBOUND_PORT}"),
            rds(HTTP_PROXY),
            proxy_uses_fault,
        ),
    )];
    out.push(vo);
    for p in inbound {
        if p.port == OUTBOUND_PORT {
            warn!(
                port = p.port,
                "workload port collides with the HTTP proxy port; skipped"
            );
            continue;
        }
        if p.endpoint.ip() == ip && p.endpoint.port() == p.port {
            warn!(
                port = p.port,
                "the application's endpoint is the proxy's own inbound address; skipped (set a \
                 Sidecar ingress defaultEndpoint on another loopback address or port)"
            );
            continue;
        }
        let name = format!("inbound_{ip}_{}", p.port);
        let mut l = listener_at(
            &name,
            wire::ip_address(ip, p.port),
            core::TrafficDirection::Inbound,
        );
        l.filter_chains = inbound_chains(p, &name, &name, None, authz);
        if p.tls == InboundTls::Permissive {
            l.listener_filters = vec![tls_inspector()];
        }
        out.push(l);
    }
    out
}
