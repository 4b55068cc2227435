//! Clusters (CDS) and their load assignments (EDS): one outbound cluster
//! per visible service port and DestinationRule subset, the proxy's own
//! inbound clusters, and the passthrough / black-hole clusters.

use std::{collections::BTreeMap, time::Duration};

use ringmesh_istio::networking::destination_rule::{
    ClientTlsSettings, ConnectionPoolSettings, H2UpgradePolicy, LocalityLbSetting,
    OutlierDetection, SimpleLb, Subset, TlsMode,
};
use ringmesh_registry::{MeshState, Protocol, ServicePort};
use tracing::warn;

use crate::{
    mtls,
    view::{Discovery, Ep, EpAddr, InboundPort, Policy, Svc, View},
    wire::{self, cluster, core, endpoint, tls, upstream_http},
};

/// Istio's default connect timeout.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const PASSTHROUGH: &str = "PassthroughCluster";
pub(crate) const INBOUND_PASSTHROUGH: &str = "InboundPassthroughCluster";
pub(crate) const BLACKHOLE: &str = "BlackHoleCluster";
/// The source address of the inbound passthrough cluster: the
/// interception rules let the proxy's traffic from it through (no loop).
const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6";

/// `outbound|PORT|SUBSET|HOST`.
pub(crate) fn outbound_name(port: u16, subset: Option<&str>, host: &str) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

/// `inbound|PORT||`.
pub(crate) fn inbound_name(port: u16) -> String {
    format!("inbound|{port}||")
}

/// The clusters and load assignments of one proxy.
#[derive(Default)]
pub(crate) struct Clusters {
    pub clusters: Vec<cluster::Cluster>,
    pub assignments: Vec<endpoint::ClusterLoadAssignment>,
}

fn base(name: &str, connect_timeout: Duration) -> cluster::Cluster {
    cluster::Cluster {
        name: name.to_owned(),
        connect_timeout: Some(wire::duration(connect_timeout)),
        lb_policy: cluster::cluster::LbPolicy::RoundRobin as i32,
        ..Default::default()
    }
}

fn set_type(c: &mut cluster::Cluster, t: cluster::cluster::DiscoveryType) {
    c.cluster_discovery_type = Some(cluster::cluster::ClusterDiscoveryType::Type(t as i32));
}

fn original_dst(name: &str) -> cluster::Cluster {
    let mut c = base(name, DEFAULT_CONNECT_TIMEOUT);
    set_type(&mut c, cluster::cluster::DiscoveryType::OriginalDst);
    c.lb_policy = cluster::cluster::LbPolicy::ClusterProvided as i32;
    c
}

/// `PassthroughCluster`, `BlackHoleCluster` and (for interception)
/// `InboundPassthroughCluster`.
pub(crate) fn fixed(redirect: bool, out: &mut Clusters) {
    out.clusters.push(original_dst(PASSTHROUGH));
    let mut black_hole = base(BLACKHOLE, DEFAULT_CONNECT_TIMEOUT);
    set_type(&mut black_hole, cluster::cluster::DiscoveryType::Static);
    out.clusters.push(black_hole);
    if redirect {
        let mut inbound = original_dst(INBOUND_PASSTHROUGH);
        inbound.upstream_bind_config = Some(core::BindConfig {
            source_address: Some(wire::socket_address(INBOUND_PASSTHROUGH_SOURCE, 0)),
            ..Default::default()
        });
        out.clusters.push(inbound);
    }
}

/// `inbound|PORT||`: STATIC, one endpoint, the application.
pub(crate) fn inbound(ports: &[InboundPort], out: &mut Clusters) {
    for p in ports {
        let name = inbound_name(p.port);
        let mut c = base(&name, DEFAULT_CONNECT_TIMEOUT);
        set_type(&mut c, cluster::cluster::DiscoveryType::Static);
        c.load_assignment = Some(endpoint::ClusterLoadAssignment {
            cluster_name: name,
            endpoints: vec![endpoint::LocalityLbEndpoints {
                lb_endpoints: vec![lb_endpoint(
                    wire::ip_address(p.endpoint.ip(), p.endpoint.port()),
                    1,
                )],
                ..Default::default()
            }],
            ..Default::default()
        });
        out.clusters.push(c);
    }
}

fn lb_endpoint(address: core::Address, weight: u32) -> endpoint::LbEndpoint {
    endpoint::LbEndpoint {
        host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
            endpoint::Endpoint {
                address: Some(address),
                ..Default::default()
            },
        )),
        load_balancing_weight: Some(wire::u32v(weight)),
        ..Default::default()
    }
}

/// Every outbound cluster (and load assignment) of the visible services.
pub(crate) fn outbound(view: &View, state: &MeshState, out: &mut Clusters) {
    for svc in &view.services {
        let dr = view.destination_rule(svc);
        for port in &svc.ports {
            build(view, state, svc, port, dr, None, out);
            if let Some(dr) = dr {
                for subset in &dr.spec.subsets {
                    build(view, state, svc, port, Some(dr), Some(subset), out);
                }
            }
        }
    }
}

fn build<'a>(
    view: &View<'a>,
    state: &MeshState,
    svc: &Svc<'a>,
    port: &ServicePort,
    dr: Option<&'a ringmesh_istio::Resource<ringmesh_istio::DestinationRule>>,
    subset: Option<&'a Subset>,
    out: &mut Clusters,
) {
    let name = outbound_name(port.port, subset.map(|s| s.name.as_str()), &svc.host);
    let policy = View::policy(dr, subset, port.port);
    let connect_timeout = policy
        .connection_pool
        .and_then(|p| p.tcp.as_ref())
        .and_then(|t| t.connect_timeout)
        .map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.get());
    let mut c = base(&name, connect_timeout);
    let passthrough_lb = policy
        .load_balancer
        .and_then(|lb| lb.simple)
        .is_some_and(|s| s == SimpleLb::Passthrough);
    let discovery = if passthrough_lb {
        Discovery::Passthrough
    } else {
        svc.discovery
    };
    let empty = BTreeMap::new();
    let subset_labels = subset.map_or(&empty, |s| &s.labels);
    // The cluster's endpoints, for auto mTLS (EDS clusters only).
    let mut workload_eps = None;
    match discovery {
        Discovery::Eds => {
            set_type(&mut c, cluster::cluster::DiscoveryType::Eds);
            c.eds_cluster_config = Some(cluster::cluster::EdsClusterConfig {
                eds_config: Some(wire::ads()),
                service_name: name.clone(),
            });
            let eps = view.endpoints(svc, port, subset_labels);
            let (cla, weighted) = assignment(view, &name, &eps, &policy);
            if weighted {
                c.common_lb_config = Some(cluster::cluster::CommonLbConfig {
                    locality_config_specifier: Some(
                        cluster::cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                            Default::default(),
                        ),
                    ),
                    ..Default::default()
                });
            }
            out.assignments.push(cla);
            workload_eps = Some(eps);
        }
        Discovery::Dns { logical } => {
            set_type(
                &mut c,
                if logical {
                    cluster::cluster::DiscoveryType::LogicalDns
                } else {
                    cluster::cluster::DiscoveryType::StrictDns
                },
            );
            let mut eps = view.endpoints(svc, port, subset_labels);
            if logical && eps.len() > 1 {
                // LOGICAL_DNS takes exactly one name.
                eps.truncate(1);
            }
            let (cla, _) = assignment(view, &name, &eps, &Policy::default());
            c.load_assignment = Some(cla);
        }
        Discovery::Passthrough => {
            set_type(&mut c, cluster::cluster::DiscoveryType::OriginalDst);
            c.lb_policy = cluster::cluster::LbPolicy::ClusterProvided as i32;
        }
    }
    if discovery != Discovery::Passthrough {
        load_balancer(&mut c, &policy);
    }
    if let Some(pool) = policy.connection_pool {
        connection_pool(&mut c, pool);
    }
    if port.protocol.is_http() {
        if let Some(opts) = http_protocol_options(port.protocol, policy.connection_pool) {
            // The one entry of this map (see `wire::resource`).
            c.typed_extension_protocol_options.insert(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
                wire::any(&opts),
            );
        }
    }
    if let Some(od) = policy.outlier_detection {
        outlier_detection(&mut c, od);
    }
    match (policy.tls, workload_eps) {
        (Some(t), _) => c.transport_socket = transport_socket(view, svc, port.port, subset, t),
        // No `tls` in the DestinationRule: auto mTLS.
        (None, Some(eps)) => {
            if mtls::auto_mtls(view, state, svc, &eps).0 == mtls::ClientMode::IstioMutual {
                c.transport_socket = Some(mtls::istio_mutual_socket(
                    port.port,
                    subset.map(|s| s.name.as_str()),
                    &svc.host,
                    &view.service_accounts(svc),
                ));
            }
        }
        (None, None) => {}
    }
    out.clusters.push(c);
}

fn load_balancer(c: &mut cluster::Cluster, policy: &Policy) {
    use cluster::cluster::{LbConfig, LbPolicy};
    let Some(lb) = policy.load_balancer else {
        return;
    };
    if let Some(ch) = &lb.consistent_hash {
        if let Some(m) = &ch.maglev {
            c.lb_policy = LbPolicy::Maglev as i32;
            if let Some(size) = m.table_size {
                c.lb_config = Some(LbConfig::MaglevLbConfig(cluster::cluster::MaglevLbConfig {
                    table_size: Some(wire::UInt64Value { value: size }),
                }));
            }
        } else {
            c.lb_policy = LbPolicy::RingHash as i32;
            let min = ch
                .ring_hash
                .as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(ch.minimum_ring_size);
            if let Some(min) = min {
                c.lb_config = Some(LbConfig::RingHashLbConfig(
                    cluster::cluster::RingHashLbConfig {
                        minimum_ring_size: Some(wire::UInt64Value { value: min }),
                        ..Default::default()
                    },
                ));
            }
        }
        return;
    }
    c.lb_policy = match lb.simple {
        Some(SimpleLb::LeastRequest | SimpleLb::LeastConn) => LbPolicy::LeastRequest,
        Some(SimpleLb::Random) => LbPolicy::Random,
        _ => LbPolicy::RoundRobin,
    } as i32;
}

fn connection_pool(c: &mut cluster::Cluster, pool: &ConnectionPoolSettings) {
    use cluster::circuit_breakers::Thresholds;
    let limit = |v: Option<i64>| {
        // Istio: unset means unlimited, not Envoy's 1024.
        Some(wire::u32v(
            v.and_then(|v| u32::try_from(v).ok()).unwrap_or(u32::MAX),
        ))
    };
    let tcp = pool.tcp.as_ref();
    let h = pool.http.as_ref();
    c.circuit_breakers = Some(cluster::CircuitBreakers {
        thresholds: vec![Thresholds {
            max_connections: limit(tcp.and_then(|t| t.max_connections)),
            max_pending_requests: limit(h.and_then(|h| h.http1_max_pending_requests)),
            max_requests: limit(h.and_then(|h| h.http2_max_requests)),
            max_retries: limit(h.and_then(|h| h.max_retries)),
            ..Default::default()
        }],
        ..Default::default()
    });
    if let Some(ka) = tcp.and_then(|t| t.tcp_keepalive.as_ref()) {
        let secs = |d: Option<ringmesh_istio::Duration>| {
            d.map(|d| wire::u32v(u32::try_from(d.get().as_secs()).unwrap_or(u32::MAX)))
        };
        c.upstream_connection_options = Some(cluster::UpstreamConnectionOptions {
            tcp_keepalive: Some(core::TcpKeepalive {
                keepalive_probes: ka.probes.map(wire::u32v),
                keepalive_time: secs(ka.time),
                keepalive_interval: secs(ka.interval),
            }),
            ..Default::default()
        });
    }
}

/// The upstream HTTP options of an HTTP-family port: HTTP/2 for `HTTP2`
/// and `GRPC` ports (and `h2UpgradePolicy: UPGRADE`), the client's
/// protocol with `useClientProtocol`, and the connection pool's
/// per-connection settings. `None` when all are defaults (HTTP/1.1).
fn http_protocol_options(
    protocol: Protocol,
    pool: Option<&ConnectionPoolSettings>,
) -> Option<upstream_http::HttpProtocolOptions> {
    use upstream_http::http_protocol_options::{
        explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
    };
    let h = pool.and_then(|p| p.http.as_ref());
    let tcp = pool.and_then(|p| p.tcp.as_ref());
    let per_conn = h
        .and_then(|h| h.max_requests_per_connection)
        .filter(|v| *v > 0)
        .and_then(|v| u32::try_from(v).ok());
    let idle = h.and_then(|h| h.idle_timeout);
    let max_duration = tcp.and_then(|t| t.max_connection_duration);
    let h2 = matches!(protocol, Protocol::Http2 | Protocol::Grpc)
        || h.and_then(|h| h.h2_upgrade_policy) == Some(H2UpgradePolicy::Upgrade);
    let client_protocol = h.and_then(|h| h.use_client_protocol) == Some(true);
    let max_streams = h
        .and_then(|h| h.max_concurrent_streams)
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0);
    if !h2 && !client_protocol && per_conn.is_none() && idle.is_none() && max_duration.is_none() {
        return None;
    }
    let http2 = || envoy_core_http2(max_streams);
    let upstream = if client_protocol {
        UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            upstream_http::http_protocol_options::UseDownstreamHttpConfig {
                http2_protocol_options: Some(http2()),
                ..Default::default()
            },
        )
    } else {
        UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
            protocol_config: Some(if h2 {
                ProtocolConfig::Http2ProtocolOptions(http2())
            } else {
                ProtocolConfig::HttpProtocolOptions(Default::default())
            }),
        })
    };
    let common = (per_conn.is_some() || idle.is_some() || max_duration.is_some()).then(|| {
        core::HttpProtocolOptions {
            idle_timeout: idle.map(|d| wire::duration(d.get())),
            max_connection_duration: max_duration.map(|d| wire::duration(d.get())),
            max_requests_per_connection: per_conn.map(wire::u32v),
            ..Default::default()
        }
    });
    Some(upstream_http::HttpProtocolOptions {
        common_http_protocol_options: common,
        upstream_protocol_options: Some(upstream),
        ..Default::default()
    })
}

fn envoy_core_http2(max_streams: Option<u32>) -> core::Http2ProtocolOptions {
    core::Http2ProtocolOptions {
        max_concurrent_streams: max_streams.map(wire::u32v),
        ..Default::default()
    }
}

fn outlier_detection(c: &mut cluster::Cluster, od: &OutlierDetection) {
    let u = |v: u32| Some(wire::u32v(v));
    let enforce = |v: u32| u(if v > 0 { 100 } else { 0 });
    let mut out = cluster::OutlierDetection {
        interval: od.interval.map(|d| wire::duration(d.get())),
        base_ejection_time: od.base_ejection_time.map(|d| wire::duration(d.get())),
        max_ejection_percent: od
            .max_ejection_percent
            .and_then(|v| u32::try_from(v).ok())
            .and_then(u),
        ..Default::default()
    };
    let five_xx = od
        .consecutive_5xx_errors
        .or(od.consecutive_errors.and_then(|v| u32::try_from(v).ok()));
    if let Some(v) = five_xx {
        out.consecutive_5xx = u(v);
        out.enforcing_consecutive_5xx = enforce(v);
    }
    if let Some(v) = od.consecutive_gateway_errors {
        out.consecutive_gateway_failure = u(v);
        out.enforcing_consecutive_gateway_failure = enforce(v);
        if five_xx.is_none() {
            // Istio: gateway errors alone do not eject on other 5xx.
            out.enforcing_consecutive_5xx = u(0);
        }
    }
    if od.split_external_local_origin_errors == Some(true) {
        out.split_external_local_origin_errors = true;
        if let Some(v) = od.consecutive_local_origin_failures {
            out.consecutive_local_origin_failure = u(v);
            out.enforcing_consecutive_local_origin_failure = enforce(v);
        }
    }
    c.outlier_detection = Some(out);
    if let Some(min) = od.min_health_percent.filter(|v| *v >= 0) {
        let common = c.common_lb_config.get_or_insert_with(Default::default);
        common.healthy_panic_threshold = Some(wire::types::Percent {
            value: min.min(100) as f64,
        });
    }
}

fn transport_socket(
    view: &View,
    svc: &Svc,
    port: u16,
    subset: Option<&Subset>,
    t: &ClientTlsSettings,
) -> Option<core::TransportSocket> {
    use tls::common_tls_context::ValidationContextType;
    let file = |f: &str| core::DataSource {
        specifier: Some(core::data_source::Specifier::Filename(f.to_owned())),
        ..Default::default()
    };
    let mut common = tls::CommonTlsContext::default();
    let mut ctx = tls::UpstreamTlsContext::default();
    match t.mode {
        TlsMode::Disable => return None,
        TlsMode::IstioMutual => {
            let sans = if t.subject_alt_names.is_empty() {
                view.service_accounts(svc)
            } else {
                t.subject_alt_names.clone()
            };
            return Some(mtls::istio_mutual_socket(
                port,
                subset.map(|s| s.name.as_str()),
                &svc.host,
                &sans,
            ));
        }
        TlsMode::Simple | TlsMode::Mutual => {
            if t.credential_name.is_some() {
                warn!(
                    host = svc.host,
                    "tls.credentialName is not supported yet (no SDS for Kubernetes secrets); \
                     give caCertificates/clientCertificate/privateKey files"
                );
            }
            if t.mode == TlsMode::Mutual {
                if let (Some(cert), Some(key)) = (&t.client_certificate, &t.private_key) {
                    common.tls_certificates = vec![tls::TlsCertificate {
                        certificate_chain: Some(file(cert)),
                        private_key: Some(file(key)),
                        ..Default::default()
                    }];
                }
            }
            if t.insecure_skip_verify != Some(true) {
                if let Some(ca) = &t.ca_certificates {
                    common.validation_context_type =
                        Some(ValidationContextType::ValidationContext(
                            tls::CertificateValidationContext {
                                trusted_ca: Some(file(ca)),
                                match_typed_subject_alt_names: mtls::san_matchers(
                                    &t.subject_alt_names,
                                ),
                                crl: t.ca_crl.as_deref().map(file),
                                ..Default::default()
                            },
                        ));
                }
            }
            ctx.sni = t.sni.clone().unwrap_or_else(|| {
                if svc.host.starts_with('*') {
                    String::new()
                } else {
                    svc.host.clone()
                }
            });
        }
    }
    ctx.common_tls_context = Some(common);
    Some(core::TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(wire::any(
            &ctx,
        ))),
    })
}

/// `region/zone/subzone`, missing parts empty.
fn locality_parts(s: &str) -> [&str; 3] {
    let mut it = s.splitn(3, '/');
    [
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
    ]
}

/// Does `pattern` (`region/zone/subzone`, parts may be `*` or missing)
/// cover `locality`?
fn locality_matches(pattern: &str, locality: &str) -> bool {
    let p = locality_parts(pattern);
    let l = locality_parts(locality);
    p.iter()
        .zip(l.iter())
        .all(|(p, l)| p.is_empty() || *p == "*" || p == l)
}

/// The load assignment for `eps`, grouped by locality. Locality-aware
/// load balancing needs the proxy's locality: with `distribute`, each
/// locality gets its share as a weight (the bool result: the cluster must
/// enable locality-weighted balancing); with outlier detection (Istio's
/// requirement for failover), localities get priorities by proximity —
/// same zone and subzone, same zone, same region, a `failover` target
/// region, anywhere else.
fn assignment(
    view: &View,
    name: &str,
    eps: &[Ep],
    policy: &Policy,
) -> (endpoint::ClusterLoadAssignment, bool) {
    let mut groups: BTreeMap<&str, Vec<&Ep>> = BTreeMap::new();
    for ep in eps {
        groups
            .entry(ep.locality.unwrap_or(""))
            .or_default()
            .push(ep);
    }
    let setting: Option<&LocalityLbSetting> = policy
        .load_balancer
        .and_then(|lb| lb.locality_lb_setting.as_ref());
    let enabled = setting.is_none_or(|s| s.enabled != Some(false));
    let proxy_locality = view.locality().filter(|_| enabled);
    let mut weights: BTreeMap<&str, u32> = BTreeMap::new();
    let mut priorities: BTreeMap<&str, u32> = BTreeMap::new();
    let mut weighted = false;
    if let Some(here) = proxy_locality {
        let distribute = setting
            .into_iter()
            .flat_map(|s| &s.distribute)
            .find(|d| locality_matches(&d.from, here));
        if let Some(d) = distribute {
            weighted = true;
            for (to, w) in &d.to {
                let matching: Vec<&str> = groups
                    .keys()
                    .copied()
                    .filter(|l| locality_matches(to, l))
                    .collect();
                let n = matching.len() as u32;
                for l in matching {
                    *weights.entry(l).or_default() += w / n.max(1);
                }
            }
        } else if policy.outlier_detection.is_some() {
            let here = locality_parts(here);
            let failover_to: Vec<&str> = setting
                .into_iter()
                .flat_map(|s| &s.failover)
                .filter(|f| f.from == here[0])
                .map(|f| f.to.as_str())
                .collect();
            let raw: BTreeMap<&str, u32> = groups
                .keys()
                .map(|l| {
                    let there = locality_parts(l);
                    let p = if there == here {
                        0
                    } else if there[..2] == here[..2] {
                        1
                    } else if there[0] == here[0] {
                        2
                    } else if failover_to.contains(&there[0]) {
                        3
                    } else {
                        4
                    };
                    (*l, p)
                })
                .collect();
            // Envoy wants priorities without gaps.
            let mut used: Vec<u32> = raw.values().copied().collect();
            used.sort_unstable();
            used.dedup();
            for (l, p) in raw {
                let dense = used.iter().position(|u| *u == p).unwrap_or(0) as u32;
                priorities.insert(l, dense);
            }
        }
    }
    let mut endpoints = Vec::new();
    for (locality, eps) in &groups {
        let weight = if weighted {
            match weights.get(locality).copied().unwrap_or(0) {
                0 => continue,
                w => Some(wire::u32v(w)),
            }
        } else {
            None
        };
        let [region, zone, sub_zone] = locality_parts(locality);
        endpoints.push(endpoint::LocalityLbEndpoints {
            locality: (!locality.is_empty()).then(|| core::Locality {
                region: region.to_owned(),
                zone: zone.to_owned(),
                sub_zone: sub_zone.to_owned(),
            }),
            lb_endpoints: eps
                .iter()
                .map(|ep| {
                    let address = match &ep.address {
                        EpAddr::Ip(ip) => wire::ip_address(*ip, ep.port),
                        EpAddr::Name(n) => wire::address(n, u32::from(ep.port)),
                    };
                    lb_endpoint(address, ep.weight)
                })
                .collect(),
            load_balancing_weight: weight,
            priority: priorities.get(locality).copied().unwrap_or(0),
            ..Default::default()
        });
    }
    // Priority order, then locality, so the encoding is canonical.
    endpoints.sort_by_key(|e| e.priority);
    (
        endpoint::ClusterLoadAssignment {
            cluster_name: name.to_owned(),
            endpoints,
            ..Default::default()
        },
        weighted,
    )
}
