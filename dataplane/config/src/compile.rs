//! Model → [`Snapshot`]: validation (every error, with its field path) and
//! compilation. Errors are reported in the order of the file's sections:
//! admin, listeners, route_configs, clusters, limits.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use ringmesh_route::{
    ClusterRef, Destination, HeaderMatch, HeaderMatcher, PathMatch, QueryMatch,
    QueryParameterMatcher, Route, RouteAction, RouteTable, StringMatch, StringMatcher, VirtualHost,
    WeightedCluster, WeightedClusters,
};

use ringmesh_tls::{SpiffeId, TrustBundle};

use crate::{
    fnv1a64,
    model::{
        ClusterSpec, ClusterTlsSpec, DownstreamTlsMode, HeaderMatchSpec, IdentitySpec,
        ListenerProtocol, ProxyConfig, QueryParameterMatchSpec, RouteConfigSpec, RouteSpec,
        TrustBundleSpec, UpstreamTlsMode,
    },
    parse_duration, Cluster, ClusterKind, ConfigError, DownstreamTls, Endpoint, IdentityConfig,
    IdentitySource, Listener, ListenerKind, ProxyLimits, Snapshot, UpstreamTls,
};

/// Route `timeout` when none is configured (Envoy's default).
pub(crate) const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Cluster `connect_timeout` when none is configured.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Errors(Vec<ConfigError>);

impl Errors {
    pub(crate) fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError {
            file: None,
            line: None,
            field: Some(field.into()),
            reason: reason.into(),
        });
    }
}

pub(crate) fn compile(cfg: &ProxyConfig, version: u64) -> Result<Snapshot, Vec<ConfigError>> {
    // Sections are validated in dependency order (clusters before the routes
    // that name them) but their errors are emitted in file order.
    let mut admin_errs = Errors::default();
    let mut listener_errs = Errors::default();
    let mut route_errs = Errors::default();
    let mut cluster_errs = Errors::default();
    let mut limit_errs = Errors::default();

    let admin = cfg
        .admin
        .as_ref()
        .and_then(|a| match parse_listen_addr(&a.address) {
            Ok(addr) => Some(addr),
            Err(reason) => {
                admin_errs.add("admin.address", reason);
                None
            }
        });

    let mut identity_errs = Errors::default();
    let identity = cfg
        .identity
        .as_ref()
        .map(|spec| compile_identity(spec, &mut identity_errs));
    // What the TLS settings of listeners and clusters are checked against:
    // whether there is an identity, and its trust domain when valid.
    let mesh = Mesh {
        has_identity: cfg.identity.is_some(),
        trust_domain: identity
            .as_ref()
            .and_then(|i| i.as_ref().map(|i| i.trust_domain.clone())),
    };
    let identity = identity.flatten();
    let (clusters, cluster_by_name) = compile_clusters(&cfg.clusters, &mesh, &mut cluster_errs);
    let tables = compile_route_configs(
        &cfg.route_configs,
        &clusters,
        &cluster_by_name,
        &mut route_errs,
    );
    let listeners = compile_listeners(
        cfg,
        admin,
        &tables,
        &clusters,
        &cluster_by_name,
        &mesh,
        &mut listener_errs,
    );
    let limits = compile_limits(cfg, &mut limit_errs);
    let mut xds_errs = Errors::default();
    if let Some(x) = &cfg.xds {
        if let Err(reason) = parse_upstream_addr(&x.address) {
            xds_errs.add("xds.address", reason);
        }
        if x.node_id.trim().is_empty() {
            xds_errs.add("xds.node_id", "must not be empty");
        }
        if x.metadata.contains_key("") {
            xds_errs.add("xds.metadata", "keys must not be empty");
        }
    }

    let workload = compile_workload(cfg, identity.as_ref(), &mut xds_errs);
    let access_log = cfg
        .access_log
        .as_ref()
        .and_then(|a| compile_access_log(a, &mut xds_errs));

    let mut bundle_errs = Errors::default();
    let sds_roots = compile_trust_bundles(&cfg.trust_bundles, &mut bundle_errs);

    let errors: Vec<ConfigError> = [
        admin_errs,
        listener_errs,
        route_errs,
        cluster_errs,
        limit_errs,
        xds_errs,
        identity_errs,
        bundle_errs,
    ]
    .into_iter()
    .flat_map(|e| e.0)
    .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Snapshot {
        version,
        listeners,
        clusters,
        cluster_by_name,
        limits,
        admin,
        identity: identity.map(Arc::new),
        sds_roots: Arc::new(sds_roots),
        source: Arc::new(cfg.clone()),
        workload: Arc::new(workload),
        access_log: access_log.map(Arc::new),
    })
}

/// Characters a workload metadata value may hold (Kubernetes names,
/// labels): what the peer metadata header carries unescaped.
pub fn valid_meta_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn compile_workload(
    cfg: &ProxyConfig,
    identity: Option<&crate::IdentityConfig>,
    errs: &mut Errors,
) -> crate::WorkloadInfo {
    let spec = cfg.workload.clone().unwrap_or_default();
    let meta = cfg.xds.as_ref().map(|x| &x.metadata);
    let meta_str = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let label = |k: &str| {
        meta.and_then(|m| m.get("LABELS"))
            .and_then(|l| l.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let mut w = crate::WorkloadInfo::default();
    let fields: [(&str, Option<String>, &mut String); 7] = [
        (
            "name",
            spec.name.or_else(|| meta_str("WORKLOAD_NAME")),
            &mut w.name,
        ),
        (
            "namespace",
            spec.namespace
                .or_else(|| meta_str("NAMESPACE"))
                .or_else(|| {
                    identity
                        .and_then(|i| i.id.as_ref())
                        .map(|id| id.namespace().to_string())
                }),
            &mut w.namespace,
        ),
        ("app", spec.app.clone().or_else(|| label("app")), &mut w.app),
        (
            "version",
            spec.version.clone().or_else(|| label("version")),
            &mut w.version,
        ),
        (
            "canonical_service",
            spec.canonical_service
                .or_else(|| label("service.istio.io/canonical-name"))
                .or_else(|| spec.app.clone().or_else(|| label("app"))),
            &mut w.canonical_service,
        ),
        (
            "canonical_revision",
            spec.canonical_revision
                .or_else(|| label("service.istio.io/canonical-revision"))
                .or_else(|| spec.version.clone().or_else(|| label("version"))),
            &mut w.canonical_revision,
        ),
        (
            "cluster",
            spec.cluster.or_else(|| meta_str("CLUSTER_ID")),
            &mut w.cluster,
        ),
    ];
    for (field, value, slot) in fields {
        if let Some(v) = value {
            if valid_meta_value(&v) {
                *slot = v;
            } else {
                errs.add(
                    format!("workload.{field}"),
                    "must be 1-253 characters of letters, digits, '-', '.', '_'",
                );
            }
        }
    }
    if w.canonical_service == "unknown" && w.name != "unknown" {
        w.canonical_service = w.name.clone();
    }
    w.principal = identity
        .and_then(|i| i.id.as_ref())
        .map(|id| id.to_string());
    w
}

fn compile_access_log(
    spec: &crate::model::AccessLogSpec,
    errs: &mut Errors,
) -> Option<crate::AccessLogConfig> {
    if spec.path.trim().is_empty() {
        errs.add("access_log.path", "must not be empty");
        return None;
    }
    let queue = spec.queue_lines.unwrap_or(4096);
    if queue == 0 || queue > 1 << 20 {
        errs.add("access_log.queue_lines", "must be between 1 and 1048576");
        return None;
    }
    let filter = spec.filter.clone().unwrap_or_default();
    if let Some(s) = filter.status_min {
        if !(100..=999).contains(&s) {
            errs.add(
                "access_log.filter.status_min",
                "must be a status code (100-999)",
            );
            return None;
        }
    }
    Some(crate::AccessLogConfig {
        path: spec.path.clone().into(),
        status_min: filter.status_min,
        duration_min_ms: filter.duration_min_ms,
        queue_lines: queue as usize,
    })
}

/// What listener and cluster TLS settings depend on.
struct Mesh {
    has_identity: bool,
    /// The identity's trust domain, when it is valid.
    trust_domain: Option<String>,
}

impl Mesh {
    /// The error for a TLS mode that needs an identity the proxy lacks.
    fn require_identity(&self, mode: &str, at: String, errs: &mut Errors) {
        if !self.has_identity {
            errs.add(
                at,
                format!(
                    "{mode} needs this proxy's own certificate: add an identity section \
                     (ca_address + token_file, or cert_chain + private_key + trust_bundle)"
                ),
            );
        }
    }
}

/// `None` when the section is invalid (its errors are in `errs`).
fn compile_identity(spec: &IdentitySpec, errs: &mut Errors) -> Option<IdentityConfig> {
    let before = errs.0.len();
    let at = |f: &str| format!("identity.{f}");
    if let Err(e) = ringmesh_tls::id::validate_trust_domain(&spec.trust_domain) {
        errs.add(at("trust_domain"), e.to_string());
    }
    let path = |field: &str, value: &Option<String>, errs: &mut Errors| -> Option<PathBuf> {
        match value.as_deref() {
            Some("") => {
                errs.add(at(field), "must not be empty (a file path)");
                None
            }
            Some(p) => Some(PathBuf::from(p)),
            None => None,
        }
    };
    let token_file = path("token_file", &spec.token_file, errs);
    let cert_chain = path("cert_chain", &spec.cert_chain, errs);
    let private_key = path("private_key", &spec.private_key, errs);
    let trust_bundle = path("trust_bundle", &spec.trust_bundle, errs);

    let id = match (&spec.namespace, &spec.service_account) {
        (Some(ns), Some(sa)) => {
            match SpiffeId::new(spec.trust_domain.as_str(), ns.as_str(), sa.as_str()) {
                Ok(id) => Some(id),
                Err(e) => {
                    // Blame the part that is wrong (the trust domain has its own error).
                    if ringmesh_tls::id::validate_trust_domain(&spec.trust_domain).is_ok() {
                        let field = if SpiffeId::new(spec.trust_domain.as_str(), ns.as_str(), "x")
                            .is_err()
                        {
                            "namespace"
                        } else {
                            "service_account"
                        };
                        errs.add(at(field), e.to_string());
                    }
                    None
                }
            }
        }
        (Some(_), None) => {
            errs.add(at("service_account"), "required with namespace");
            None
        }
        (None, Some(_)) => {
            errs.add(at("namespace"), "required with service_account");
            None
        }
        (None, None) => None,
    };

    let source = match (&spec.ca_address, &spec.cert_chain) {
        (Some(address), chain) => {
            if chain.is_some() {
                errs.add(
                    at("cert_chain"),
                    "not allowed with ca_address (the certificate comes from the CA)",
                );
            }
            if spec.private_key.is_some() {
                errs.add(
                    at("private_key"),
                    "not allowed with ca_address (the key is generated by the proxy and never leaves it)",
                );
            }
            if spec.token_file.is_none() {
                errs.add(
                    at("token_file"),
                    "required with ca_address (the bootstrap token proves this proxy's identity to the CA)",
                );
            }
            if spec.namespace.is_none() && spec.service_account.is_none() {
                errs.add(
                    at("namespace"),
                    "required with ca_address (with service_account: the identity to ask for)",
                );
            }
            let address = match parse_upstream_addr(address) {
                Ok(a) => Some(a),
                Err(reason) => {
                    errs.add(at("ca_address"), reason);
                    None
                }
            };
            let ttl = match spec.ttl.as_deref().map(parse_duration) {
                None => None,
                Some(Ok(d)) if d < Duration::from_secs(2) => {
                    errs.add(at("ttl"), "must be at least 2s");
                    None
                }
                Some(Ok(d)) => Some(d),
                Some(Err(reason)) => {
                    errs.add(at("ttl"), reason);
                    None
                }
            };
            match (address, token_file) {
                (Some(address), Some(token_file)) => Some(IdentitySource::Ca {
                    address,
                    token_file,
                    ttl,
                }),
                _ => None,
            }
        }
        (None, Some(_)) => {
            if spec.token_file.is_some() {
                errs.add(at("token_file"), "only with ca_address");
            }
            if spec.ttl.is_some() {
                errs.add(
                    at("ttl"),
                    "only with ca_address (a certificate from files lives as long as it says)",
                );
            }
            if spec.private_key.is_none() {
                errs.add(at("private_key"), "required with cert_chain");
            }
            if spec.trust_bundle.is_none() {
                errs.add(
                    at("trust_bundle"),
                    "required with cert_chain (the roots peers' certificates must chain to)",
                );
            }
            match (cert_chain, private_key) {
                (Some(cert_chain), Some(private_key)) => Some(IdentitySource::Files {
                    cert_chain,
                    private_key,
                }),
                _ => None,
            }
        }
        (None, None) => {
            errs.add(
                "identity",
                "give ca_address and token_file (a certificate from the mesh CA), or cert_chain, \
                 private_key and trust_bundle (files)",
            );
            None
        }
    };
    if errs.0.len() > before {
        return None;
    }
    Some(IdentityConfig {
        trust_domain: spec.trust_domain.clone(),
        id,
        source: source?,
        trust_bundle,
    })
}

/// The union of the control plane's trust bundles.
fn compile_trust_bundles(specs: &[TrustBundleSpec], errs: &mut Errors) -> TrustBundle {
    let mut all = TrustBundle::new();
    for (i, b) in specs.iter().enumerate() {
        if let Err(e) = all.extend_pem(b.pem.as_bytes()) {
            errs.add(
                format!("trust_bundles[{i}].pem"),
                format!("{:?}: {e}", b.name),
            );
        }
    }
    all
}

/// A listener's `tls` section.
fn listener_tls(
    spec: Option<&crate::model::ListenerTlsSpec>,
    at: &str,
    mesh: &Mesh,
    errs: &mut Errors,
) -> DownstreamTls {
    let Some(spec) = spec else {
        return DownstreamTls::Disable;
    };
    let (tls, name) = match spec.mode {
        DownstreamTlsMode::Disable => return DownstreamTls::Disable,
        DownstreamTlsMode::Strict => (DownstreamTls::Strict, "STRICT"),
        DownstreamTlsMode::Permissive => (DownstreamTls::Permissive, "PERMISSIVE"),
    };
    mesh.require_identity(name, format!("{at}.tls.mode"), errs);
    tls
}

/// A cluster's `tls` section.
fn cluster_tls(
    spec: Option<&ClusterTlsSpec>,
    at: &str,
    mesh: &Mesh,
    errs: &mut Errors,
) -> Option<Arc<UpstreamTls>> {
    let spec = spec?;
    if spec.mode == UpstreamTlsMode::Disable {
        if !spec.subject_alt_names.is_empty() {
            errs.add(
                format!("{at}.tls.subject_alt_names"),
                "only with mode ISTIO_MUTUAL",
            );
        }
        if spec.sni.is_some() {
            errs.add(format!("{at}.tls.sni"), "only with mode ISTIO_MUTUAL");
        }
        return None;
    }
    mesh.require_identity("ISTIO_MUTUAL", format!("{at}.tls.mode"), errs);
    let mut sans = Vec::with_capacity(spec.subject_alt_names.len());
    for (k, san) in spec.subject_alt_names.iter().enumerate() {
        let field = format!("{at}.tls.subject_alt_names[{k}]");
        match SpiffeId::parse(san) {
            Ok(id) => {
                if let Some(td) = mesh.trust_domain.as_deref() {
                    if id.trust_domain() != td {
                        errs.add(
                            field,
                            format!(
                                "{san:?} is in trust domain {:?}, but this proxy's identity is in {td:?} \
                                 (one trust domain per proxy)",
                                id.trust_domain()
                            ),
                        );
                        continue;
                    }
                }
                if !sans.contains(&id) {
                    sans.push(id);
                }
            }
            Err(e) => errs.add(field, format!("{san:?} is not a mesh SPIFFE ID: {e}")),
        }
    }
    if let Some(sni) = &spec.sni {
        if rustls_pki_types::DnsName::try_from(sni.as_str()).is_err() {
            errs.add(
                format!("{at}.tls.sni"),
                format!("{sni:?} is not a valid DNS name"),
            );
        }
    }
    // The key covers everything that decides whether a connection (or a
    // TLS session) made for one cluster is acceptable for another.
    let mut canonical = Vec::new();
    canonical.extend_from_slice(b"istio_mutual\0");
    for id in &sans {
        canonical.extend_from_slice(id.to_string().as_bytes());
        canonical.push(0);
    }
    canonical.push(b'\n');
    canonical.extend_from_slice(spec.sni.as_deref().unwrap_or("").as_bytes());
    let key = fnv1a64(&canonical).max(1);
    Some(Arc::new(UpstreamTls {
        subject_alt_names: sans,
        sni: spec.sni.clone(),
        key,
    }))
}

type ClusterIndex = HashMap<Arc<str>, u32>;

fn compile_clusters(
    specs: &[ClusterSpec],
    mesh: &Mesh,
    errs: &mut Errors,
) -> (Vec<Arc<Cluster>>, ClusterIndex) {
    let mut clusters = Vec::with_capacity(specs.len());
    let mut by_name: ClusterIndex = HashMap::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let at = |f: &str| format!("clusters[{i}].{f}");
        let name: Arc<str> = spec.name.as_str().into();
        if name.is_empty() {
            errs.add(at("name"), "must not be empty");
        } else if let Some(first) = by_name.get(&name) {
            errs.add(
                at("name"),
                format!(
                    "duplicate cluster name {:?} (first at clusters[{first}])",
                    spec.name
                ),
            );
        } else {
            by_name.insert(Arc::clone(&name), i as u32);
        }

        let connect_timeout = match spec.connect_timeout.as_deref().map(parse_duration) {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(Ok(d)) if d.is_zero() => {
                errs.add(at("connect_timeout"), "must be greater than 0s");
                DEFAULT_CONNECT_TIMEOUT
            }
            Some(Ok(d)) => d,
            Some(Err(reason)) => {
                errs.add(at("connect_timeout"), reason);
                DEFAULT_CONNECT_TIMEOUT
            }
        };

        let mut endpoints = Vec::with_capacity(spec.endpoints.len());
        let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
        let mut total_weight: u64 = 0;
        for (e, ep) in spec.endpoints.iter().enumerate() {
            let at = |f: &str| format!("clusters[{i}].endpoints[{e}].{f}");
            match parse_upstream_addr(&ep.address) {
                Ok(address) => {
                    if let Some(first) = seen.insert(address, e) {
                        seen.insert(address, first);
                        errs.add(
                            at("address"),
                            format!("duplicate endpoint {address} (first at clusters[{i}].endpoints[{first}])"),
                        );
                    }
                    endpoints.push(Endpoint {
                        address,
                        weight: ep.weight,
                    });
                }
                Err(reason) => errs.add(at("address"), reason),
            }
            if ep.weight == 0 {
                errs.add(at("weight"), "must be at least 1");
            }
            total_weight += u64::from(ep.weight);
        }
        if total_weight > u64::from(u32::MAX) {
            errs.add(
                at("endpoints"),
                format!("the sum of the weights must not exceed {}", u32::MAX),
            );
        }

        let kind = match spec.cluster_type {
            crate::model::ClusterTypeSpec::Static => ClusterKind::Static,
            crate::model::ClusterTypeSpec::OriginalDst => {
                if !spec.endpoints.is_empty() {
                    errs.add(at("endpoints"), "an original_dst cluster takes its endpoint from each connection; remove the endpoints");
                }
                ClusterKind::OriginalDst
            }
        };
        let tls = cluster_tls(spec.tls.as_ref(), &format!("clusters[{i}]"), mesh, errs);
        clusters.push(Arc::new(Cluster {
            id: fnv1a64(spec.name.as_bytes()),
            name,
            connect_timeout,
            lb_policy: crate::resilience::lb_policy(spec.lb_policy),
            kind,
            endpoints: endpoints.into(),
            tls,
            protocol: match spec.protocol {
                crate::model::UpstreamProtocolSpec::Http1 => crate::UpstreamProtocol::Http1,
                crate::model::UpstreamProtocolSpec::Http2 => crate::UpstreamProtocol::Http2,
            },
            circuit_breakers: crate::resilience::circuit_breakers(spec.circuit_breakers.as_ref()),
            outlier_detection: crate::resilience::outlier_detection(
                spec.outlier_detection.as_ref(),
                &format!("clusters[{i}].outlier_detection"),
                errs,
            ),
            healthy_panic_threshold: crate::resilience::panic_threshold(
                spec.healthy_panic_threshold,
                &format!("clusters[{i}]"),
                errs,
            ),
        }));
    }
    (clusters, by_name)
}

/// Route tables by route-config index; `None` where the configuration was
/// rejected. Name lookups go through `route_config_names` in the listeners.
fn compile_route_configs(
    specs: &[RouteConfigSpec],
    clusters: &[Arc<Cluster>],
    cluster_by_name: &ClusterIndex,
    errs: &mut Errors,
) -> Vec<Option<Arc<RouteTable>>> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut tables = Vec::with_capacity(specs.len());
    for (i, rc) in specs.iter().enumerate() {
        let before = errs.0.len();
        if rc.name.is_empty() {
            errs.add(format!("route_configs[{i}].name"), "must not be empty");
        } else if let Some(first) = names.get(rc.name.as_str()) {
            errs.add(
                format!("route_configs[{i}].name"),
                format!(
                    "duplicate route config name {:?} (first at route_configs[{first}])",
                    rc.name
                ),
            );
        } else {
            names.insert(&rc.name, i);
        }

        let mut vhosts = Vec::with_capacity(rc.virtual_hosts.len());
        for (v, vh) in rc.virtual_hosts.iter().enumerate() {
            let routes = vh
                .routes
                .iter()
                .enumerate()
                .map(|(r, route)| {
                    let at = format!("route_configs[{i}].virtual_hosts[{v}].routes[{r}]");
                    compile_route(route, &at, clusters, cluster_by_name, errs)
                })
                .collect();
            vhosts.push(VirtualHost {
                name: vh.name.as_str().into(),
                domains: vh.domains.iter().map(|d| d.as_str().into()).collect(),
                routes,
            });
        }

        match RouteTable::build(&rc.name, vhosts) {
            Ok(table) if errs.0.len() == before => tables.push(Some(Arc::new(table))),
            Ok(_) => tables.push(None),
            Err(build_errors) => {
                for e in build_errors {
                    let field = if e.field.is_empty() {
                        format!("route_configs[{i}]")
                    } else {
                        format!("route_configs[{i}].{}", e.field)
                    };
                    errs.add(field, e.reason);
                }
                tables.push(None);
            }
        }
        // The route table's own errors (names, domains, paths, conditions)
        // arrive after ours (matches, clusters, timeouts): interleave them
        // so that this config's errors read top to bottom. The sort is
        // stable.
        let prefix_len = format!("route_configs[{i}]").len();
        errs.0[before..].sort_by_key(|e| {
            position_in_route_config(&e.field.as_deref().unwrap_or("")[prefix_len..])
        });
    }
    tables
}

/// One route of the model. Invalid parts still produce placeholders (a
/// `/` prefix, a presence check, cluster 0) so that the indexes in the
/// route table's own errors stay aligned with the file.
fn compile_route(
    route: &RouteSpec,
    at: &str,
    clusters: &[Arc<Cluster>],
    cluster_by_name: &ClusterIndex,
    errs: &mut Errors,
) -> Route {
    let m = &route.matcher;
    let paths: Vec<(&str, &String)> = [
        ("prefix", &m.prefix),
        ("exact", &m.exact),
        ("regex", &m.regex),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let path = match paths.as_slice() {
        [("prefix", p)] => PathMatch::Prefix(p.as_str().into()),
        [("exact", p)] => PathMatch::Exact(p.as_str().into()),
        [(_, p)] => PathMatch::Regex(p.as_str().into()),
        [] => {
            errs.add(
                format!("{at}.match"),
                "one of prefix, exact or regex is required",
            );
            PathMatch::Prefix("/".into())
        }
        several => {
            errs.add(
                format!("{at}.match"),
                only_one("prefix, exact and regex", several),
            );
            PathMatch::Prefix("/".into())
        }
    };
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(h, spec)| header_matcher(spec, &format!("{at}.match.headers[{h}]"), errs))
        .collect();
    let query_parameters = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(q, spec)| query_matcher(spec, &format!("{at}.match.query_parameters[{q}]"), errs))
        .collect();

    let mut resolve = |name: &str, field: String| match cluster_by_name.get(name) {
        Some(&idx) => ClusterRef {
            name: Arc::clone(&clusters[idx as usize].name),
            index: idx,
        },
        None => {
            errs.add(field, format!("unknown cluster {name:?}"));
            ClusterRef {
                name: name.into(),
                index: 0,
            }
        }
    };
    let placeholder = || {
        Destination::Cluster(ClusterRef {
            name: "".into(),
            index: 0,
        })
    };
    let destination = match (&route.cluster, &route.weighted_clusters) {
        (Some(c), None) => Destination::Cluster(resolve(c, format!("{at}.cluster"))),
        (None, Some(split)) => {
            let entries = split
                .iter()
                .enumerate()
                .map(|(k, w)| WeightedCluster {
                    cluster: resolve(&w.cluster, format!("{at}.weighted_clusters[{k}].cluster")),
                    weight: w.weight,
                })
                .collect();
            match WeightedClusters::new(entries) {
                Ok(w) => Destination::Weighted(w),
                Err(reason) => {
                    errs.add(format!("{at}.weighted_clusters"), reason);
                    placeholder()
                }
            }
        }
        (None, None) => {
            errs.add(at, "one of cluster or weighted_clusters is required");
            placeholder()
        }
        (Some(_), Some(_)) => {
            errs.add(
                format!("{at}.weighted_clusters"),
                "cluster and weighted_clusters are mutually exclusive",
            );
            placeholder()
        }
    };
    let timeout = match route.timeout.as_deref().map(parse_duration) {
        None => Some(DEFAULT_ROUTE_TIMEOUT),
        Some(Ok(d)) if d.is_zero() => None,
        Some(Ok(d)) => Some(d),
        Some(Err(reason)) => {
            errs.add(format!("{at}.timeout"), reason);
            None
        }
    };
    Route {
        name: route.name.as_deref().unwrap_or("").into(),
        path,
        path_ignore_case: m.ignore_case,
        headers,
        query_parameters,
        action: RouteAction {
            destination,
            timeout,
            retry: route
                .retry_policy
                .as_ref()
                .map(|r| Arc::new(retry_policy(r, &format!("{at}.retry_policy"), errs))),
        },
    }
}

/// A route's retry policy; errors name `at.<field>`.
fn retry_policy(
    spec: &crate::model::RetryPolicySpec,
    at: &str,
    errs: &mut Errors,
) -> ringmesh_route::RetryPolicy {
    use ringmesh_route::{RetryOn, RetryPolicy};
    let retry_on = RetryOn::parse(&spec.retry_on).unwrap_or_else(|reason| {
        errs.add(format!("{at}.retry_on"), reason);
        RetryOn::default()
    });
    let mut dur = |field: &str, v: &Option<String>| match v.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) if d.is_zero() => {
            errs.add(format!("{at}.{field}"), "must be greater than 0s");
            None
        }
        Some(Ok(d)) => Some(d),
        Some(Err(reason)) => {
            errs.add(format!("{at}.{field}"), reason);
            None
        }
    };
    let per_try_timeout = dur("per_try_timeout", &spec.per_try_timeout);
    let backoff_base =
        dur("backoff_base", &spec.backoff_base).unwrap_or(RetryPolicy::DEFAULT_BACKOFF_BASE);
    let backoff_max = dur("backoff_max", &spec.backoff_max).unwrap_or(backoff_base * 10);
    if backoff_max < backoff_base {
        errs.add(
            format!("{at}.backoff_max"),
            "must not be less than backoff_base",
        );
    }
    for (i, code) in spec.retriable_status_codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            errs.add(
                format!("{at}.retriable_status_codes[{i}]"),
                "must be an HTTP status (100-599)",
            );
        }
    }
    let num_retries = spec.num_retries.unwrap_or(1);
    if num_retries > MAX_RETRIES {
        errs.add(
            format!("{at}.num_retries"),
            format!("at most {MAX_RETRIES}"),
        );
    }
    RetryPolicy {
        retry_on,
        num_retries: num_retries.min(MAX_RETRIES),
        per_try_timeout,
        retriable_status_codes: spec.retriable_status_codes.clone().into(),
        backoff_base,
        backoff_max: backoff_max.max(backoff_base),
        retry_non_idempotent: spec.retry_non_idempotent,
    }
}

/// More retries than this is a configuration mistake, not resilience.
const MAX_RETRIES: u32 = 10;

/// `only one of {what} may be given (got a and b)`.
fn only_one<T>(what: &str, given: &[(&str, T)]) -> String {
    let names: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
    format!(
        "only one of {what} may be given (got {})",
        names.join(" and ")
    )
}

const VALUE_RULES: &str = "exact, prefix, suffix, contains, regex";

/// The one value rule or presence check of a header / query matcher.
/// `Err` when there is none or more than one (reported at `at`).
fn value_rule(
    fields: [(&'static str, &Option<String>); 5],
    present: Option<bool>,
    ignore_case: bool,
    at: &str,
    errs: &mut Errors,
) -> Option<Result<StringMatcher, bool>> {
    let mut given: Vec<(&str, Option<&String>)> = fields
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, Some(v))))
        .collect();
    if present.is_some() {
        given.push(("present", None));
    }
    match given.as_slice() {
        [] => {
            errs.add(at, format!("one of {VALUE_RULES} or present is required"));
            None
        }
        [("present", None)] => {
            if ignore_case {
                errs.add(
                    format!("{at}.ignore_case"),
                    "applies only to exact, prefix, suffix and contains",
                );
            }
            present.map(Err)
        }
        [(key, Some(v))] => {
            let v = v.as_str().into();
            let pattern = match *key {
                "exact" => StringMatch::Exact(v),
                "prefix" => StringMatch::Prefix(v),
                "suffix" => StringMatch::Suffix(v),
                "contains" => StringMatch::Contains(v),
                _ => StringMatch::Regex(v),
            };
            Some(Ok(StringMatcher {
                pattern,
                ignore_case,
            }))
        }
        several => {
            errs.add(at, only_one(&format!("{VALUE_RULES} and present"), several));
            None
        }
    }
}

fn header_matcher(spec: &HeaderMatchSpec, at: &str, errs: &mut Errors) -> HeaderMatcher {
    let fields = [
        ("exact", &spec.exact),
        ("prefix", &spec.prefix),
        ("suffix", &spec.suffix),
        ("contains", &spec.contains),
        ("regex", &spec.regex),
    ];
    let rule = match value_rule(fields, spec.present, spec.ignore_case, at, errs) {
        Some(Ok(sm)) => HeaderMatch::Value(sm),
        Some(Err(present)) => HeaderMatch::Present(present),
        None => HeaderMatch::Present(true),
    };
    HeaderMatcher {
        name: spec.name.as_str().into(),
        rule,
        invert: spec.invert,
        treat_missing_as_empty: spec.treat_missing_as_empty,
    }
}

fn query_matcher(
    spec: &QueryParameterMatchSpec,
    at: &str,
    errs: &mut Errors,
) -> QueryParameterMatcher {
    let fields = [
        ("exact", &spec.exact),
        ("prefix", &spec.prefix),
        ("suffix", &spec.suffix),
        ("contains", &spec.contains),
        ("regex", &spec.regex),
    ];
    let rule = match value_rule(fields, spec.present, spec.ignore_case, at, errs) {
        Some(Ok(sm)) => QueryMatch::Value(sm),
        Some(Err(present)) => QueryMatch::Present(present),
        None => QueryMatch::Present(true),
    };
    QueryParameterMatcher {
        name: spec.name.as_str().into(),
        rule,
    }
}

/// Where a field under one route config is, for ordering errors:
/// `(virtual host, route, part of the route)`, e.g.
/// `.virtual_hosts[1].routes[2].match.headers[3].name` → `(1, 2, (1, 3))`.
/// The parts of a route read: path, headers, query parameters, the rest.
type RouteConfigPosition = (Option<usize>, Option<usize>, (u8, usize));

fn position_in_route_config(field: &str) -> RouteConfigPosition {
    fn index<'a>(s: &'a str, key: &str) -> Option<(usize, &'a str)> {
        let rest = s.strip_prefix(key)?;
        let close = rest.find(']')?;
        Some((rest[..close].parse().ok()?, &rest[close + 1..]))
    }
    let Some((v, rest)) = index(field, ".virtual_hosts[") else {
        return (None, None, (0, 0));
    };
    let Some((r, rest)) = index(rest, ".routes[") else {
        return (Some(v), None, (0, 0));
    };
    let part = if let Some((h, _)) = index(rest, ".match.headers[") {
        (1, h)
    } else if let Some((q, _)) = index(rest, ".match.query_parameters[") {
        (2, q)
    } else if rest.is_empty() || rest.starts_with(".match") {
        (0, 0)
    } else {
        (3, 0)
    };
    (Some(v), Some(r), part)
}

fn compile_listeners(
    cfg: &ProxyConfig,
    admin: Option<SocketAddr>,
    tables: &[Option<Arc<RouteTable>>],
    clusters: &[Arc<Cluster>],
    cluster_by_name: &ClusterIndex,
    mesh: &Mesh,
    errs: &mut Errors,
) -> Vec<Listener> {
    // First definition of each route-config name wins, as for clusters.
    let mut route_config_by_name: HashMap<&str, usize> = HashMap::new();
    for (i, rc) in cfg.route_configs.iter().enumerate() {
        route_config_by_name.entry(rc.name.as_str()).or_insert(i);
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addresses: HashMap<SocketAddr, String> = HashMap::new();
    if let Some(a) = admin {
        addresses.insert(a, "admin.address".into());
    }

    let mut listeners = Vec::with_capacity(cfg.listeners.len());
    for (i, l) in cfg.listeners.iter().enumerate() {
        let at = |f: &str| format!("listeners[{i}].{f}");
        if l.name.is_empty() {
            errs.add(at("name"), "must not be empty");
        } else if let Some(first) = names.get(l.name.as_str()) {
            errs.add(
                at("name"),
                format!(
                    "duplicate listener name {:?} (first at listeners[{first}])",
                    l.name
                ),
            );
        } else {
            names.insert(&l.name, i);
        }

        let address = match parse_listen_addr(&l.address) {
            Ok(a) => {
                // Port 0 asks the kernel for a fresh port: never a clash.
                if a.port() != 0 {
                    if let Some(first) = addresses.get(&a) {
                        errs.add(at("address"), format!("{a} is already used by {first}"));
                    } else {
                        addresses.insert(a, format!("listeners[{i}]"));
                    }
                }
                Some(a)
            }
            Err(reason) => {
                errs.add(at("address"), reason);
                None
            }
        };

        let kind = match l.protocol {
            ListenerProtocol::Http => {
                if l.cluster.is_some() {
                    errs.add(
                        at("cluster"),
                        "not allowed on an http listener (it routes with route_config)",
                    );
                }
                match l.route_config.as_deref() {
                    None => {
                        errs.add(at("route_config"), "required for an http listener");
                        None
                    }
                    Some(rc) => match route_config_by_name.get(rc) {
                        None => {
                            errs.add(at("route_config"), format!("unknown route config {rc:?}"));
                            None
                        }
                        // `None` table: its errors are already reported.
                        Some(&idx) => tables[idx].as_ref().map(|t| ListenerKind::Http {
                            routes: Arc::clone(t),
                        }),
                    },
                }
            }
            ListenerProtocol::Tcp => {
                if l.route_config.is_some() {
                    errs.add(
                        at("route_config"),
                        "not allowed on a tcp listener (it forwards to cluster)",
                    );
                }
                match l.cluster.as_deref() {
                    None => {
                        errs.add(at("cluster"), "required for a tcp listener");
                        None
                    }
                    Some(c) => match cluster_by_name.get(c) {
                        None => {
                            errs.add(at("cluster"), format!("unknown cluster {c:?}"));
                            None
                        }
                        Some(&idx) => Some(ListenerKind::Tcp {
                            cluster: Arc::clone(&clusters[idx as usize].name),
                            cluster_idx: idx,
                        }),
                    },
                }
            }
        };

        let tls = listener_tls(l.tls.as_ref(), &format!("listeners[{i}]"), mesh, errs);
        let http = l.protocol == ListenerProtocol::Http;
        let rbac = match crate::authz::compile_chain(&l.rbac, http) {
            Ok(chain) => Some(Arc::new(chain)),
            Err(list) => {
                for (field, reason) in list {
                    errs.add(format!("listeners[{i}].rbac{field}"), reason);
                }
                None
            }
        };
        if l.path_normalization.is_some() && !http {
            errs.add(
                at("path_normalization"),
                "only an http listener has request paths",
            );
        }
        let path_normalization = l
            .path_normalization
            .as_ref()
            .map(|p| p.compile())
            .unwrap_or_default();
        if let (Some(address), Some(kind), Some(rbac)) = (address, kind, rbac) {
            listeners.push(Listener {
                name: l.name.as_str().into(),
                address,
                original_dst: l.original_dst,
                tls,
                kind,
                rbac,
                path_normalization,
            });
        }
    }
    listeners
}

fn compile_limits(cfg: &ProxyConfig, errs: &mut Errors) -> ProxyLimits {
    let spec = &cfg.limits;
    let d = ProxyLimits::default();
    let mut range =
        |field: &str, value: Option<u32>, min: u32, max: u32, default: usize| -> usize {
            match value {
                None => default,
                Some(v) if (min..=max).contains(&v) => v as usize,
                Some(v) => {
                    errs.0.push(ConfigError {
                        file: None,
                        line: None,
                        field: Some(format!("limits.{field}")),
                        reason: format!("must be between {min} and {max}, got {v}"),
                    });
                    default
                }
            }
        };
    let head_kb = range(
        "max_request_headers_kb",
        spec.max_request_headers_kb,
        1,
        8192,
        d.http1.max_head_bytes / 1024,
    );
    let max_headers = range(
        "max_request_headers_count",
        spec.max_request_headers_count,
        1,
        10_000,
        d.http1.max_headers,
    );
    let max_uri_len = range(
        "max_uri_length",
        spec.max_uri_length,
        16,
        1 << 20,
        d.http1.max_uri_len,
    );
    let max_connections_per_shard = range(
        "max_connections_per_shard",
        spec.max_connections_per_shard,
        1,
        1_000_000,
        d.max_connections_per_shard,
    );

    let mut duration =
        |field: &str, value: &Option<String>, zero_ok: bool, default: Duration| -> Duration {
            let Some(text) = value else { return default };
            match parse_duration(text) {
                Ok(v) if v.is_zero() && !zero_ok => {
                    errs.add(format!("limits.{field}"), "must be greater than 0s");
                    default
                }
                Ok(v) => v,
                Err(reason) => {
                    errs.add(format!("limits.{field}"), reason);
                    default
                }
            }
        };
    ProxyLimits {
        http1: ringmesh_http1::Limits {
            max_head_bytes: head_kb * 1024,
            max_headers,
            max_uri_len,
        },
        request_headers_timeout: duration(
            "request_headers_timeout",
            &spec.request_headers_timeout,
            false,
            d.request_headers_timeout,
        ),
        idle_timeout: duration("idle_timeout", &spec.idle_timeout, false, d.idle_timeout),
        // 0s: close connections at once when draining.
        drain_timeout: duration("drain_timeout", &spec.drain_timeout, true, d.drain_timeout),
        max_connections_per_shard,
        max_request_body: spec.max_request_body_bytes,
        tls_handshake_timeout: duration(
            "tls_handshake_timeout",
            &spec.tls_handshake_timeout,
            false,
            d.tls_handshake_timeout,
        ),
    }
}

const ADDR_EXAMPLE: &str = "e.g. 127.0.0.1:8080 or [::1]:8080";

/// `IP:PORT` for something we bind (port 0 allowed: the kernel picks).
pub(crate) fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if s.is_empty() {
        return Err(format!(
            "must not be empty (expected IP:PORT, {ADDR_EXAMPLE})"
        ));
    }
    if s.parse::<IpAddr>().is_ok()
        || s.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
    {
        return Err(format!(
            "{s:?} has no port (expected IP:PORT, {ADDR_EXAMPLE})"
        ));
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "{s:?} has an invalid port {port:?} (expected 0-65535)"
            ));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_err() && !bare.is_empty() && !bare.contains(':') {
            return Err(format!(
                "{s:?} is a host name; use IP:PORT (host names are not resolved), e.g. 127.0.0.1:{port}"
            ));
        }
    }
    Err(format!("{s:?} is not an IP:PORT address ({ADDR_EXAMPLE})"))
}

/// `IP:PORT` for something we connect to: a real port and address.
pub(crate) fn parse_upstream_addr(s: &str) -> Result<SocketAddr, String> {
    let a = parse_listen_addr(s)?;
    if a.port() == 0 {
        return Err(format!("{s:?}: port 0 cannot be connected to"));
    }
    if a.ip().is_unspecified() {
        return Err(format!(
            "{s:?}: {} cannot be connected to; use the endpoint's own address",
            a.ip()
        ));
    }
    Ok(a)
}
