//! Envoy v3 resources → the neutral [`ProxyConfig`]. Pure: no I/O, no
//! clock.
//!
//! Each resource is converted on its own as it arrives ([`convert`]); one
//! that uses something the proxy does not implement is rejected with its
//! name, the field and the reason ([`ResourceError`], which becomes the
//! NACK's `error_detail`) and is not recorded as held, so the server
//! offers its next version. The held, converted resources ([`XdsState`])
//! are then assembled with the bootstrap's base configuration
//! ([`XdsState::to_proxy_config`]) and go through `ringmesh_config::compile`
//! like the static file.
//!
//! Supported shapes:
//! - Listener: one IP socket address (TCP), one filter chain without match
//!   (plaintext, or mutual TLS = `STRICT`), or Istio's `PERMISSIVE` pair
//!   (TLS inspector, chains matching `transport_protocol` `tls` / `raw_buffer`;
//!   see [`tls`]), one network filter: the HTTP connection manager
//!   (RDS by name or an inline route configuration; only the router HTTP
//!   filter) → `protocol: http`, or `tcp_proxy` to one cluster →
//!   `protocol: tcp`; `use_original_dst` → `original_dst: true`.
//! - RouteConfiguration: virtual hosts (domains); routes matching a path
//!   prefix, exact path (either possibly `case_sensitive: false`) or
//!   `safe_regex`, plus header matchers (every
//!   `string_match` form, the deprecated direct fields, `present_match`,
//!   `invert_match`, `treat_missing_header_as_empty`) and query-parameter
//!   matchers; to one cluster or `weighted_clusters` (names and weights;
//!   `total_weight`, if given, must equal their sum); an optional timeout;
//!   a retry policy only if it allows no retry.
//! - Cluster: STATIC (inline `load_assignment`), EDS (endpoints from the
//!   ClusterLoadAssignment named by `eds_cluster_config.service_name`, or
//!   the cluster's own name), ORIGINAL_DST; round robin; `connect_timeout`;
//!   an `UpstreamTlsContext` transport socket → `ISTIO_MUTUAL`.
//! - Secret: the mesh trust bundle `ROOTCA` (PEM roots inline).
//! - ClusterLoadAssignment: priority-0 endpoints with IP socket addresses
//!   and `load_balancing_weight`; unhealthy, draining and timed-out
//!   endpoints are left out, as Envoy does.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, SocketAddr},
};

use ringmesh_config::model::{
    ClusterSpec, ClusterTypeSpec, DownstreamTlsMode, EndpointSpec, HeaderMatchSpec, LbPolicySpec,
    ListenerProtocol, ListenerSpec, ListenerTlsSpec, ProxyConfig, QueryParameterMatchSpec,
    RouteConfigSpec, RouteMatchSpec, RouteSpec, TrustBundleSpec, VirtualHostSpec,
    WeightedClusterSpec,
};

pub use self::tls::{SecretRefs, OWN_CERT, ROOT_CA};
use crate::wire::{self, pb};

mod rbac;
mod resilience;
mod tls;

/// The resource types a sidecar takes over ADS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Listener,
    RouteConfiguration,
    Cluster,
    ClusterLoadAssignment,
    /// SDS: only the mesh trust bundle ([`ROOT_CA`]), by name.
    Secret,
}

impl ResourceType {
    pub const ALL: [ResourceType; 5] = [
        ResourceType::Cluster,
        ResourceType::ClusterLoadAssignment,
        ResourceType::Listener,
        ResourceType::RouteConfiguration,
        ResourceType::Secret,
    ];

    /// The type URL on the wire (from the generated types).
    pub fn type_url(self) -> String {
        wire::type_url(self)
    }

    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// LDS, RDS, CDS, EDS.
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Listener => "LDS",
            ResourceType::RouteConfiguration => "RDS",
            ResourceType::Cluster => "CDS",
            ResourceType::ClusterLoadAssignment => "EDS",
            ResourceType::Secret => "SDS",
        }
    }

    fn message_name(self) -> &'static str {
        match self {
            ResourceType::Listener => "Listener",
            ResourceType::RouteConfiguration => "RouteConfiguration",
            ResourceType::Cluster => "Cluster",
            ResourceType::ClusterLoadAssignment => "ClusterLoadAssignment",
            ResourceType::Secret => "Secret",
        }
    }
}

/// Why one resource was rejected. Displayed as
/// `Listener "name": field.path: reason` — one line of a NACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    pub resource_type: ResourceType,
    pub name: String,
    /// Path inside the resource, e.g. `filter_chains[0].filters[0]`;
    /// empty when the whole resource is at fault.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: ", self.resource_type.message_name(), self.name)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ResourceError {}

/// A field path and reason, before the resource's name is attached.
type Reject = (String, String);

fn reject<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, Reject> {
    Err((field.into(), reason.into()))
}

/// A converted Listener.
#[derive(Debug, Clone, PartialEq)]
pub struct XdsListener {
    /// `route_config` is the RDS name, or the inline route's generated
    /// name ([`inline_route_name`]).
    pub spec: ListenerSpec,
    /// The connection manager's inline route configuration.
    pub inline_route: Option<RouteConfigSpec>,
    /// The route configuration to fetch by RDS.
    pub rds: Option<String>,
    /// The SDS secrets its TLS context names.
    pub refs: SecretRefs,
    /// Index of the filter chain served (the TLS one of a PERMISSIVE pair).
    pub chain: usize,
}

/// A converted Cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct XdsCluster {
    pub spec: ClusterSpec,
    /// The ClusterLoadAssignment to fetch by EDS (EDS clusters only).
    pub eds_service: Option<String>,
    /// The SDS secrets its TLS context names.
    pub refs: SecretRefs,
}

/// One converted resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Converted {
    Listener(XdsListener),
    Route(RouteConfigSpec),
    Cluster(XdsCluster),
    Endpoints(Vec<EndpointSpec>),
    /// An SDS trust bundle.
    Secret(TrustBundleSpec),
}

impl Converted {
    /// The SDS secrets it references.
    pub fn refs(&self) -> SecretRefs {
        match self {
            Converted::Listener(l) => l.refs,
            Converted::Cluster(c) => c.refs,
            _ => SecretRefs::default(),
        }
    }
}

/// The name an inline route configuration gets in the model (it has
/// none of its own that is unique across listeners).
pub fn inline_route_name(listener: &str) -> String {
    format!("{listener}#inline")
}

/// Convert one resource of type `t` named `name` from its `Any` parts.
pub fn convert(
    t: ResourceType,
    name: &str,
    type_url: &str,
    bytes: &[u8],
) -> Result<Converted, ResourceError> {
    let err = |(field, reason): Reject| ResourceError {
        resource_type: t,
        name: name.to_owned(),
        field,
        reason,
    };
    let body_err = |reason: String| err((String::new(), reason));
    match t {
        ResourceType::Listener => {
            let l = wire::decode(type_url, bytes).map_err(body_err)?;
            listener(name, &l).map(Converted::Listener).map_err(err)
        }
        ResourceType::RouteConfiguration => {
            let rc = wire::decode(type_url, bytes).map_err(body_err)?;
            route_config(name, &rc).map(Converted::Route).map_err(err)
        }
        ResourceType::Cluster => {
            let c = wire::decode(type_url, bytes).map_err(body_err)?;
            cluster(name, &c).map(Converted::Cluster).map_err(err)
        }
        ResourceType::ClusterLoadAssignment => {
            let cla = wire::decode(type_url, bytes).map_err(body_err)?;
            endpoints("", &cla).map(Converted::Endpoints).map_err(err)
        }
        ResourceType::Secret => {
            let secret = wire::decode(type_url, bytes).map_err(body_err)?;
            tls::secret(name, &secret)
                .map(Converted::Secret)
                .map_err(err)
        }
    }
}

fn duration(field: &str, d: &pb::google::protobuf::Duration) -> Result<String, Reject> {
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return reject(field, "must be a non-negative duration");
    }
    let d = std::time::Duration::new(d.seconds as u64, d.nanos as u32);
    Ok(ringmesh_config::format_duration(d))
}

fn socket_address(
    field: &str,
    a: Option<&pb::envoy::config::core::v3::Address>,
) -> Result<String, Reject> {
    use pb::envoy::config::core::v3::{address, socket_address::PortSpecifier};
    let Some(a) = a.and_then(|a| a.address.as_ref()) else {
        return reject(field, "missing (a socket address is required)");
    };
    let address::Address::SocketAddress(sa) = a else {
        return reject(
            field,
            "only socket addresses are supported (not pipes or internal addresses)",
        );
    };
    if sa.protocol != 0 {
        return reject(format!("{field}.protocol"), "only TCP is supported");
    }
    if !sa.resolver_name.is_empty() {
        return reject(
            format!("{field}.resolver_name"),
            "custom resolvers are not supported",
        );
    }
    let ip: IpAddr = sa.address.parse().map_err(|_| {
        (
            format!("{field}.address"),
            format!(
                "{:?} is not an IP address (names are not resolved)",
                sa.address
            ),
        )
    })?;
    let port = match sa.port_specifier {
        Some(PortSpecifier::PortValue(p)) => u16::try_from(p)
            .map_err(|_| (format!("{field}.port_value"), format!("{p} is not a port")))?,
        Some(PortSpecifier::NamedPort(_)) => {
            return reject(
                format!("{field}.named_port"),
                "named ports are not supported",
            )
        }
        None => return reject(format!("{field}.port_value"), "missing"),
    };
    Ok(SocketAddr::new(ip, port).to_string())
}

fn listener(
    name: &str,
    l: &pb::envoy::config::listener::v3::Listener,
) -> Result<XdsListener, Reject> {
    use pb::envoy::config::listener::v3::filter::ConfigType;
    let address = socket_address("address", l.address.as_ref())?;
    if !l.additional_addresses.is_empty() {
        return reject(
            "additional_addresses",
            "only one address per listener is supported",
        );
    }
    // A listener that only receives connections handed over by another
    // (Istio's `0.0.0.0_PORT` behind `virtualOutbound`) must not be bound:
    // binding it would claim the port on every interface.
    if l.bind_to_port.as_ref().is_some_and(|b| !b.value) {
        return reject(
            "bind_to_port",
            "listeners that are not bound (connection hand-off from a use_original_dst listener) \
             are not supported",
        );
    }
    if l.default_filter_chain.is_some() {
        return reject(
            "default_filter_chain",
            "not supported (give exactly one filter chain, or the PERMISSIVE pair)",
        );
    }
    if l.filter_chain_matcher.is_some() {
        return reject(
            "filter_chain_matcher",
            "filter chain matching is not supported",
        );
    }
    let selected = tls::select_chain(l)?;
    let chain = selected.chain;
    let ci = selected.index;
    // Network RBAC filters may precede the terminal filter (connection
    // manager or tcp_proxy), as Istio puts them.
    let Some((filter, leading)) = chain.filters.split_last() else {
        return reject(format!("filter_chains[{ci}].filters"), "no network filter");
    };
    let mut rbac_filters = Vec::new();
    for (k, f) in leading.iter().enumerate() {
        let fat = format!("filter_chains[{ci}].filters[{k}]");
        rbac_filters.push(network_rbac(&fat, f)?);
    }
    let at = &format!("filter_chains[{ci}].filters[{}]", leading.len());
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        return reject(
            format!("{at}.typed_config"),
            "missing (the filter's configuration must be given inline)",
        );
    };
    let mut spec = ListenerSpec {
        name: name.to_owned(),
        address,
        protocol: ListenerProtocol::Http,
        route_config: None,
        cluster: None,
        original_dst: l.use_original_dst.as_ref().is_some_and(|b| b.value),
        tls: (selected.mode != DownstreamTlsMode::Disable).then_some(ListenerTlsSpec {
            mode: selected.mode,
        }),
        rbac: Vec::new(),
        path_normalization: None,
    };
    let refs = selected.refs;
    use pb::envoy::extensions::filters::network::{
        http_connection_manager::v3::HttpConnectionManager, tcp_proxy::v3::TcpProxy,
    };
    use prost::Name;
    if any.type_url == HttpConnectionManager::type_url() {
        let hcm: HttpConnectionManager = wire::decode(&any.type_url, &any.value)
            .map_err(|r| (format!("{at}.typed_config"), r))?;
        let (route_name, inline_route, rds) =
            hcm_routes(name, &format!("{at}.typed_config"), &hcm)?;
        spec.route_config = Some(route_name);
        rbac_filters.extend(hcm_rbac(&format!("{at}.typed_config"), &hcm)?);
        spec.rbac = rbac_filters;
        spec.path_normalization = Some(rbac::path_normalization(
            &format!("{at}.typed_config"),
            &hcm,
        )?);
        Ok(XdsListener {
            spec,
            inline_route,
            rds,
            refs,
            chain: ci,
        })
    } else if any.type_url == TcpProxy::type_url() {
        use pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::ClusterSpecifier;
        let tcp: TcpProxy = wire::decode(&any.type_url, &any.value)
            .map_err(|r| (format!("{at}.typed_config"), r))?;
        let cluster = match tcp.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => c,
            Some(ClusterSpecifier::WeightedClusters(_)) => {
                return reject(
                    format!("{at}.typed_config.weighted_clusters"),
                    "weighted clusters are not supported",
                )
            }
            _ => return reject(format!("{at}.typed_config.cluster"), "missing"),
        };
        spec.protocol = ListenerProtocol::Tcp;
        spec.cluster = Some(cluster);
        spec.rbac = rbac_filters;
        Ok(XdsListener {
            spec,
            inline_route: None,
            rds: None,
            refs,
            chain: ci,
        })
    } else {
        reject(
            format!("{at}.typed_config"),
            format!(
                "unsupported network filter {:?} (type {}); supported: {}, {}",
                filter.name,
                any.type_url,
                HttpConnectionManager::full_name(),
                TcpProxy::full_name()
            ),
        )
    }
}

/// The route configuration name, the inline route (if any) and the RDS
/// name (if any) of a connection manager.
fn hcm_routes(
    listener: &str,
    at: &str,
    hcm: &pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager,
) -> Result<(String, Option<RouteConfigSpec>, Option<String>), Reject> {
    use pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
    match &hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            if rds.route_config_name.is_empty() {
                return reject(format!("{at}.rds.route_config_name"), "missing");
            }
            Ok((
                rds.route_config_name.clone(),
                None,
                Some(rds.route_config_name.clone()),
            ))
        }
        Some(RouteSpecifier::RouteConfig(rc)) => {
            let name = inline_route_name(listener);
            let spec =
                route_config(&name, rc).map_err(|(f, r)| (format!("{at}.route_config.{f}"), r))?;
            Ok((name, Some(spec), None))
        }
        Some(RouteSpecifier::ScopedRoutes(_)) => reject(
            format!("{at}.scoped_routes"),
            "scoped routes are not supported",
        ),
        None => reject(format!("{at}.rds"), "missing (give rds or route_config)"),
    }
}

/// A network filter before the terminal one: only RBAC is supported.
fn network_rbac(
    at: &str,
    f: &pb::envoy::config::listener::v3::Filter,
) -> Result<ringmesh_config::model::RbacFilterSpec, Reject> {
    use pb::envoy::{
        config::listener::v3::filter::ConfigType,
        extensions::filters::network::rbac::v3::Rbac as NetworkRbac,
    };
    use prost::Name;
    match &f.config_type {
        Some(ConfigType::TypedConfig(any)) if any.type_url == NetworkRbac::type_url() => {
            let cfg: NetworkRbac = wire::decode(&any.type_url, &any.value)
                .map_err(|r| (format!("{at}.typed_config"), r))?;
            rbac::network_filter(&format!("{at}.typed_config"), &f.name, &cfg)
        }
        Some(ConfigType::TypedConfig(any)) => reject(
            format!("{at}.typed_config"),
            format!(
                "unsupported network filter {:?} (type {}) before the terminal filter; only {} \
                 may precede http_connection_manager or tcp_proxy",
                f.name,
                any.type_url,
                NetworkRbac::full_name()
            ),
        ),
        _ => reject(
            format!("{at}.typed_config"),
            "missing (the filter's configuration must be given inline)",
        ),
    }
}

/// The connection manager's HTTP filters: RBAC filters, then the router
/// last. Anything else is rejected.
fn hcm_rbac(
    at: &str,
    hcm: &pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager,
) -> Result<Vec<ringmesh_config::model::RbacFilterSpec>, Reject> {
    use pb::envoy::extensions::filters::{
        http::{rbac::v3::Rbac as HttpRbac, router::v3::Router},
        network::http_connection_manager::v3::http_filter,
    };
    use prost::Name;
    let mut out = Vec::new();
    let n = hcm.http_filters.len();
    for (i, f) in hcm.http_filters.iter().enumerate() {
        let fat = format!("{at}.http_filters[{i}]");
        let any = match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(a)) => Some(a),
            None => None,
            Some(_) => {
                return reject(
                    format!("{fat}.config_discovery"),
                    "filter configuration discovery (ECDS) is not supported",
                )
            }
        };
        let router = match any {
            Some(a) => a.type_url == Router::type_url(),
            None => f.name == "envoy.filters.http.router",
        };
        if router {
            if i + 1 != n {
                return reject(fat, "the router must be the last HTTP filter");
            }
            continue;
        }
        match any {
            Some(a) if a.type_url == HttpRbac::type_url() => {
                if f.disabled {
                    return reject(
                        format!("{fat}.disabled"),
                        "RBAC filters enabled per route are not supported",
                    );
                }
                let cfg: HttpRbac = wire::decode(&a.type_url, &a.value)
                    .map_err(|r| (format!("{fat}.typed_config"), r))?;
                out.push(rbac::http_filter(
                    &format!("{fat}.typed_config"),
                    &f.name,
                    &cfg,
                )?);
            }
            _ => {
                return reject(
                    fat,
                    format!(
                        "unsupported HTTP filter {:?}; supported: {} (before the router) and \
                         the router ({})",
                        f.name,
                        HttpRbac::full_name(),
                        Router::full_name()
                    ),
                )
            }
        }
    }
    Ok(out)
}

fn route_config(
    name: &str,
    rc: &pb::envoy::config::route::v3::RouteConfiguration,
) -> Result<RouteConfigSpec, Reject> {
    use pb::envoy::config::route::v3::{route::Action, route_action::ClusterSpecifier};
    if rc.vhds.is_some() {
        return reject("vhds", "virtual host discovery is not supported");
    }
    let mut virtual_hosts = Vec::with_capacity(rc.virtual_hosts.len());
    for (v, vh) in rc.virtual_hosts.iter().enumerate() {
        let vat = format!("virtual_hosts[{v}]");
        if vh.require_tls != 0 {
            return reject(format!("{vat}.require_tls"), "not supported");
        }
        let mut routes = Vec::with_capacity(vh.routes.len());
        for (r, route) in vh.routes.iter().enumerate() {
            let at = format!("{vat}.routes[{r}]");
            let matcher = route_match(&format!("{at}.match"), route.r#match.as_ref())?;
            let action = match &route.action {
                Some(Action::Route(a)) => a,
                Some(_) => return reject(
                    format!("{at}.action"),
                    "only route actions are supported (not redirect, direct_response or others)",
                ),
                None => return reject(format!("{at}.route"), "missing"),
            };
            let (cluster, weighted_clusters) = match &action.cluster_specifier {
                Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => (Some(c.clone()), None),
                Some(ClusterSpecifier::WeightedClusters(w)) => (
                    None,
                    Some(weighted_clusters(
                        &format!("{at}.route.weighted_clusters"),
                        w,
                    )?),
                ),
                Some(ClusterSpecifier::ClusterHeader(_)) => {
                    return reject(format!("{at}.route.cluster_header"), "not supported")
                }
                Some(
                    ClusterSpecifier::ClusterSpecifierPlugin(_)
                    | ClusterSpecifier::InlineClusterSpecifierPlugin(_),
                ) => {
                    return reject(
                        format!("{at}.route"),
                        "cluster specifier plugins are not supported",
                    )
                }
                _ => return reject(format!("{at}.route.cluster"), "missing"),
            };
            if !action.prefix_rewrite.is_empty() || action.regex_rewrite.is_some() {
                return reject(
                    format!("{at}.route.prefix_rewrite"),
                    "path rewrites are not supported",
                );
            }
            if action.host_rewrite_specifier.is_some() {
                return reject(
                    format!("{at}.route.host_rewrite"),
                    "host rewrites are not supported",
                );
            }
            let retry_policy = match &action.retry_policy {
                None => None,
                Some(p) => retry_policy(&format!("{at}.route.retry_policy"), p)?,
            };
            if !action.hash_policy.is_empty() {
                return reject(
                    format!("{at}.route.hash_policy"),
                    "hash policies are not supported",
                );
            }
            let timeout = action
                .timeout
                .as_ref()
                .map(|d| duration(&format!("{at}.route.timeout"), d))
                .transpose()?;
            routes.push(RouteSpec {
                name: (!route.name.is_empty()).then(|| route.name.clone()),
                matcher,
                cluster,
                weighted_clusters,
                timeout,
                retry_policy,
            });
        }
        virtual_hosts.push(VirtualHostSpec {
            name: vh.name.clone(),
            domains: vh.domains.clone(),
            routes,
        });
    }
    Ok(RouteConfigSpec {
        name: name.to_owned(),
        virtual_hosts,
    })
}

/// A `RouteMatch` (`at` is its field path): the path specifier plus header
/// and query-parameter conditions.
fn route_match(
    at: &str,
    m: Option<&pb::envoy::config::route::v3::RouteMatch>,
) -> Result<RouteMatchSpec, Reject> {
    use pb::envoy::config::route::v3::route_match::PathSpecifier;
    let Some(m) = m else {
        return reject(at, "missing path specifier");
    };
    let mut spec = RouteMatchSpec::default();
    match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => spec.prefix = Some(p.clone()),
        Some(PathSpecifier::Path(p)) => spec.exact = Some(p.clone()),
        Some(PathSpecifier::SafeRegex(r)) => {
            spec.regex = Some(regex(&format!("{at}.safe_regex"), r)?)
        }
        Some(PathSpecifier::ConnectMatcher(_)) => {
            return reject(
                format!("{at}.connect_matcher"),
                "CONNECT requests are not routed",
            )
        }
        Some(PathSpecifier::PathSeparatedPrefix(_)) => {
            return reject(
                format!("{at}.path_separated_prefix"),
                "not supported (use prefix, path or safe_regex)",
            )
        }
        Some(PathSpecifier::PathMatchPolicy(_)) => {
            return reject(
                format!("{at}.path_match_policy"),
                "path templates are not supported (use prefix, path or safe_regex)",
            )
        }
        None => return reject(at, "missing path specifier"),
    }
    // `case_sensitive: false` (Istio's ignoreUriCase) applies to prefix
    // and path; Envoy ignores it for safe_regex.
    spec.ignore_case = m.case_sensitive.as_ref().is_some_and(|b| !b.value) && spec.regex.is_none();
    let unsupported: [(&str, bool, &str); 6] = [
        (
            "runtime_fraction",
            m.runtime_fraction.is_some(),
            "runtime fractions are not supported",
        ),
        (
            "grpc",
            m.grpc.is_some(),
            "gRPC request matching is not supported",
        ),
        (
            "tls_context",
            m.tls_context.is_some(),
            "TLS context matching is not supported",
        ),
        (
            "cookies",
            !m.cookies.is_empty(),
            "cookie matches are not supported",
        ),
        (
            "dynamic_metadata",
            !m.dynamic_metadata.is_empty(),
            "dynamic metadata matches are not supported",
        ),
        (
            "filter_state",
            !m.filter_state.is_empty(),
            "filter state matches are not supported",
        ),
    ];
    if let Some((field, _, reason)) = unsupported.into_iter().find(|(_, set, _)| *set) {
        return reject(format!("{at}.{field}"), reason);
    }
    spec.headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(h, hm)| header_matcher(&format!("{at}.headers[{h}]"), hm))
        .collect::<Result<_, _>>()?;
    spec.query_parameters = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(q, qm)| query_parameter_matcher(&format!("{at}.query_parameters[{q}]"), qm))
        .collect::<Result<_, _>>()?;
    Ok(spec)
}

/// A regex pattern, checked here so that a NACK names the Envoy field.
/// The engine type (`google_re2`, deprecated) and its program size are
/// ignored: the proxy's own engine takes RE2 syntax and bounds the
/// compiled size itself.
fn regex(at: &str, r: &pb::envoy::r#type::matcher::v3::RegexMatcher) -> Result<String, Reject> {
    ringmesh_route::matcher::check_regex(&r.regex)
        .map_err(|reason| (format!("{at}.regex"), reason))?;
    Ok(r.regex.clone())
}

/// One value rule of a `StringMatcher`: its key in the model (`exact`,
/// `prefix`, `suffix`, `contains`, `regex`), the pattern and whether it
/// ignores case.
fn string_matcher(
    at: &str,
    sm: &pb::envoy::r#type::matcher::v3::StringMatcher,
) -> Result<(&'static str, String, bool), Reject> {
    use pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
    let ic = sm.ignore_case;
    Ok(match &sm.match_pattern {
        Some(MatchPattern::Exact(v)) => ("exact", v.clone(), ic),
        Some(MatchPattern::Prefix(v)) => ("prefix", v.clone(), ic),
        Some(MatchPattern::Suffix(v)) => ("suffix", v.clone(), ic),
        Some(MatchPattern::Contains(v)) => ("contains", v.clone(), ic),
        // Envoy: ignore_case "has no effect for safe_regex".
        Some(MatchPattern::SafeRegex(r)) => {
            ("regex", regex(&format!("{at}.safe_regex"), r)?, false)
        }
        Some(MatchPattern::Custom(_)) => {
            return reject(
                format!("{at}.custom"),
                "custom string matchers are not supported",
            )
        }
        None => return reject(at, "missing match pattern"),
    })
}

/// The value fields shared by header and query-parameter matchers.
#[derive(Default)]
struct ValueRule {
    exact: Option<String>,
    prefix: Option<String>,
    suffix: Option<String>,
    contains: Option<String>,
    regex: Option<String>,
    ignore_case: bool,
}

impl ValueRule {
    fn new((key, value, ignore_case): (&'static str, String, bool)) -> ValueRule {
        let mut r = ValueRule {
            ignore_case,
            ..ValueRule::default()
        };
        *match key {
            "exact" => &mut r.exact,
            "prefix" => &mut r.prefix,
            "suffix" => &mut r.suffix,
            "contains" => &mut r.contains,
            _ => &mut r.regex,
        } = Some(value);
        r
    }
}

fn header_matcher(
    at: &str,
    h: &pb::envoy::config::route::v3::HeaderMatcher,
) -> Result<HeaderMatchSpec, Reject> {
    use pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier as S;
    let mut present = None;
    #[allow(deprecated)] // the deprecated direct fields are still sent
    let rule = match &h.header_match_specifier {
        // Envoy: a matcher without a rule checks presence.
        None => {
            present = Some(true);
            ValueRule::default()
        }
        Some(S::PresentMatch(p)) => {
            present = Some(*p);
            ValueRule::default()
        }
        // Envoy's deprecated `exact_match: ""` accepts any value of a
        // present header (and, like any value rule, fails a missing one).
        Some(S::ExactMatch(v)) if v.is_empty() => ValueRule::new(("regex", "(?s).*".into(), false)),
        Some(S::ExactMatch(v)) => ValueRule::new(("exact", v.clone(), false)),
        Some(S::PrefixMatch(v)) => ValueRule::new(("prefix", v.clone(), false)),
        Some(S::SuffixMatch(v)) => ValueRule::new(("suffix", v.clone(), false)),
        Some(S::ContainsMatch(v)) => ValueRule::new(("contains", v.clone(), false)),
        Some(S::SafeRegexMatch(r)) => {
            ValueRule::new(("regex", regex(&format!("{at}.safe_regex_match"), r)?, false))
        }
        Some(S::StringMatch(sm)) => {
            ValueRule::new(string_matcher(&format!("{at}.string_match"), sm)?)
        }
        Some(S::RangeMatch(_)) => {
            return reject(
                format!("{at}.range_match"),
                "range matches are not supported",
            )
        }
    };
    Ok(HeaderMatchSpec {
        name: h.name.clone(),
        exact: rule.exact,
        prefix: rule.prefix,
        suffix: rule.suffix,
        contains: rule.contains,
        regex: rule.regex,
        present,
        invert: h.invert_match,
        ignore_case: rule.ignore_case,
        treat_missing_as_empty: h.treat_missing_header_as_empty,
    })
}

fn query_parameter_matcher(
    at: &str,
    q: &pb::envoy::config::route::v3::QueryParameterMatcher,
) -> Result<QueryParameterMatchSpec, Reject> {
    use pb::envoy::config::route::v3::query_parameter_matcher::QueryParameterMatchSpecifier as S;
    let mut present = None;
    let rule = match &q.query_parameter_match_specifier {
        // Envoy: no rule checks presence.
        None => {
            present = Some(true);
            ValueRule::default()
        }
        Some(S::PresentMatch(p)) => {
            present = Some(*p);
            ValueRule::default()
        }
        Some(S::StringMatch(sm)) => {
            ValueRule::new(string_matcher(&format!("{at}.string_match"), sm)?)
        }
    };
    Ok(QueryParameterMatchSpec {
        name: q.name.clone(),
        exact: rule.exact,
        prefix: rule.prefix,
        suffix: rule.suffix,
        contains: rule.contains,
        regex: rule.regex,
        present,
        ignore_case: rule.ignore_case,
    })
}

/// `weighted_clusters` (`at` is its field path): names and weights only.
fn weighted_clusters(
    at: &str,
    w: &pb::envoy::config::route::v3::WeightedCluster,
) -> Result<Vec<WeightedClusterSpec>, Reject> {
    use pb::envoy::config::route::v3::weighted_cluster::RandomValueSpecifier;
    // `runtime_key_prefix` is accepted and ignored: without a runtime
    // layer, Envoy too uses the configured weights.
    match &w.random_value_specifier {
        None => {}
        Some(RandomValueSpecifier::HeaderName(_)) => {
            return reject(
                format!("{at}.header_name"),
                "a random value from a request header is not supported",
            )
        }
        Some(RandomValueSpecifier::UseHashPolicy(_)) => {
            return reject(
                format!("{at}.use_hash_policy"),
                "hash policies are not supported",
            )
        }
    }
    if w.clusters.is_empty() {
        return reject(format!("{at}.clusters"), "must not be empty");
    }
    let mut out = Vec::with_capacity(w.clusters.len());
    for (k, c) in w.clusters.iter().enumerate() {
        let cat = format!("{at}.clusters[{k}]");
        let unsupported: [(&str, bool, &str); 8] = [
            (
                "cluster_header",
                !c.cluster_header.is_empty(),
                "clusters named by a request header are not supported",
            ),
            (
                "metadata_match",
                c.metadata_match.is_some(),
                "subset load balancing is not supported",
            ),
            (
                "request_headers_to_add",
                !c.request_headers_to_add.is_empty(),
                "per-cluster header changes are not supported",
            ),
            (
                "request_headers_to_remove",
                !c.request_headers_to_remove.is_empty(),
                "per-cluster header changes are not supported",
            ),
            (
                "response_headers_to_add",
                !c.response_headers_to_add.is_empty(),
                "per-cluster header changes are not supported",
            ),
            (
                "response_headers_to_remove",
                !c.response_headers_to_remove.is_empty(),
                "per-cluster header changes are not supported",
            ),
            (
                "host_rewrite_literal",
                c.host_rewrite_specifier.is_some(),
                "host rewrites are not supported",
            ),
            (
                "typed_per_filter_config",
                !c.typed_per_filter_config.is_empty(),
                "per-filter configuration is not supported (only the router filter is)",
            ),
        ];
        if let Some((field, _, reason)) = unsupported.into_iter().find(|(_, set, _)| *set) {
            return reject(format!("{cat}.{field}"), reason);
        }
        if c.name.is_empty() {
            return reject(format!("{cat}.name"), "missing");
        }
        out.push(WeightedClusterSpec {
            cluster: c.name.clone(),
            weight: c.weight.map_or(0, |v| v.value),
        });
    }
    let sum: u64 = out.iter().map(|c| u64::from(c.weight)).sum();
    // The deprecated `total_weight`, when given, is what the weights must
    // add up to (Envoy before it was deprecated); otherwise the sum is the
    // total, which must be positive and fit in 32 bits.
    #[allow(deprecated)]
    let total = w.total_weight.map(|t| t.value).filter(|&t| t != 0);
    if let Some(total) = total {
        if sum != u64::from(total) {
            return reject(
                format!("{at}.total_weight"),
                format!("the weights add up to {sum}, not to total_weight {total}"),
            );
        }
    }
    if sum == 0 {
        return reject(
            format!("{at}.clusters"),
            "the weights must add up to more than 0",
        );
    }
    if sum > u64::from(u32::MAX) {
        return reject(
            format!("{at}.clusters"),
            format!("the sum of the weights must not exceed {}", u32::MAX),
        );
    }
    Ok(out)
}

/// A route's retry policy; `None` for one that allows no retry (control
/// planes send `num_retries: 0` to say so explicitly).
/// `retry_host_predicate` (Istio sends `previous_hosts`) and
/// `host_selection_retry_max_attempts` are accepted: every policy but the
/// consistent-hash ones picks afresh per attempt, so a retry goes to
/// another endpoint whenever there is one, and ejected endpoints are never
/// picked. Retriable headers and rate-limited backoff are refused.
fn retry_policy(
    at: &str,
    p: &pb::envoy::config::route::v3::RetryPolicy,
) -> Result<Option<ringmesh_config::model::RetryPolicySpec>, Reject> {
    if p.num_retries.is_some_and(|n| n.value == 0) {
        return Ok(None);
    }
    let refused: [(&str, bool); 4] = [
        ("retriable_headers", !p.retriable_headers.is_empty()),
        (
            "retriable_request_headers",
            !p.retriable_request_headers.is_empty(),
        ),
        (
            "rate_limited_retry_back_off",
            p.rate_limited_retry_back_off.is_some(),
        ),
        ("retry_priority", p.retry_priority.is_some()),
    ];
    if let Some((field, _)) = refused.into_iter().find(|(_, set)| *set) {
        return reject(format!("{at}.{field}"), "not supported");
    }
    let dur = |field: &str, d: &Option<pb::google::protobuf::Duration>| {
        d.as_ref()
            .map(|d| duration(&format!("{at}.{field}"), d))
            .transpose()
    };
    let back_off = p.retry_back_off.as_ref();
    let codes = p
        .retriable_status_codes
        .iter()
        .map(|c| {
            u16::try_from(*c)
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| {
                    (
                        format!("{at}.retriable_status_codes"),
                        format!("{c} is not an HTTP status"),
                    )
                })
        })
        .collect::<Result<Vec<u16>, Reject>>()?;
    Ok(Some(ringmesh_config::model::RetryPolicySpec {
        retry_on: p.retry_on.clone(),
        num_retries: Some(p.num_retries.as_ref().map_or(1, |n| n.value)),
        per_try_timeout: dur("per_try_timeout", &p.per_try_timeout)?,
        retriable_status_codes: codes,
        backoff_base: dur(
            "retry_back_off.base_interval",
            &back_off.and_then(|b| b.base_interval),
        )?,
        backoff_max: dur(
            "retry_back_off.max_interval",
            &back_off.and_then(|b| b.max_interval),
        )?,
        retry_non_idempotent: false,
    }))
}

/// The protocol to the endpoints: HTTP/2 when the cluster says so
/// explicitly (`typed_extension_protocol_options`'
/// `HttpProtocolOptions.explicit_http_config.http2_protocol_options`, or
/// the deprecated `http2_protocol_options`); HTTP/1.1 otherwise
/// (`use_downstream_protocol_config` and `auto_config` included).
fn upstream_protocol(
    c: &pb::envoy::config::cluster::v3::Cluster,
) -> Result<ringmesh_config::model::UpstreamProtocolSpec, Reject> {
    use pb::envoy::extensions::upstreams::http::v3::{
        http_protocol_options::{explicit_http_config::ProtocolConfig, UpstreamProtocolOptions},
        HttpProtocolOptions,
    };
    use ringmesh_config::model::UpstreamProtocolSpec;
    const KEY: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    #[allow(deprecated)]
    if c.http2_protocol_options.is_some() {
        return Ok(UpstreamProtocolSpec::Http2);
    }
    let Some(any) = c.typed_extension_protocol_options.get(KEY) else {
        return Ok(UpstreamProtocolSpec::Http1);
    };
    let opts: HttpProtocolOptions = match wire::decode(&any.type_url, &any.value) {
        Ok(o) => o,
        Err(e) => return reject("typed_extension_protocol_options", e),
    };
    Ok(match opts.upstream_protocol_options {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(e))
            if matches!(
                e.protocol_config,
                Some(ProtocolConfig::Http2ProtocolOptions(_))
            ) =>
        {
            UpstreamProtocolSpec::Http2
        }
        _ => UpstreamProtocolSpec::Http1,
    })
}

fn cluster(name: &str, c: &pb::envoy::config::cluster::v3::Cluster) -> Result<XdsCluster, Reject> {
    use pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy};
    let kind = match c.cluster_discovery_type {
        None => DiscoveryType::Static,
        Some(ClusterDiscoveryType::Type(t)) => match DiscoveryType::try_from(t) {
            Ok(t @ (DiscoveryType::Static | DiscoveryType::Eds | DiscoveryType::OriginalDst)) => t,
            Ok(other) => {
                return reject(
                    "type",
                    format!(
                        "{} clusters are not supported (STATIC, EDS and ORIGINAL_DST are)",
                        other.as_str_name()
                    ),
                )
            }
            Err(_) => return reject("type", format!("unknown discovery type {t}")),
        },
        Some(ClusterDiscoveryType::ClusterType(_)) => {
            return reject("cluster_type", "custom cluster types are not supported")
        }
    };
    let lb_policy = match LbPolicy::try_from(c.lb_policy) {
        Ok(LbPolicy::RoundRobin) => Some(LbPolicySpec::RoundRobin),
        Ok(LbPolicy::LeastRequest) => Some(LbPolicySpec::LeastRequest),
        Ok(LbPolicy::Random) => Some(LbPolicySpec::Random),
        Ok(LbPolicy::RingHash) => Some(LbPolicySpec::RingHash),
        Ok(LbPolicy::Maglev) => Some(LbPolicySpec::Maglev),
        // Envoy requires CLUSTER_PROVIDED for ORIGINAL_DST clusters.
        Ok(LbPolicy::ClusterProvided) if kind == DiscoveryType::OriginalDst => {
            Some(LbPolicySpec::RoundRobin)
        }
        _ => None,
    };
    let Some(lb_policy) = lb_policy.filter(|_| c.load_balancing_policy.is_none()) else {
        return reject(
            "lb_policy",
            "supported: ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV \
             (CLUSTER_PROVIDED for ORIGINAL_DST clusters); not load_balancing_policy",
        );
    };
    let (circuit_breakers, outlier_detection, healthy_panic_threshold) = resilience::cluster(c)?;
    if !c.transport_socket_matches.is_empty() {
        return reject(
            "transport_socket_matches",
            "per-endpoint transport sockets (auto mTLS) are not supported; give transport_socket",
        );
    }
    let upstream_tls = match &c.transport_socket {
        Some(ts) => tls::upstream(ts)?,
        None => None,
    };
    if !c.health_checks.is_empty() {
        return reject("health_checks", "active health checking is not supported");
    }
    let connect_timeout = c
        .connect_timeout
        .as_ref()
        .map(|d| duration("connect_timeout", d))
        .transpose()?;
    let mut spec = ClusterSpec {
        name: name.to_owned(),
        cluster_type: ClusterTypeSpec::Static,
        connect_timeout,
        lb_policy,
        endpoints: Vec::new(),
        tls: upstream_tls.as_ref().map(|(t, _)| t.clone()),
        protocol: upstream_protocol(c)?,
        circuit_breakers,
        outlier_detection,
        healthy_panic_threshold,
    };
    let refs = upstream_tls.map(|(_, r)| r).unwrap_or_default();
    let mut eds_service = None;
    match kind {
        DiscoveryType::Eds => {
            let service = c
                .eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| name.to_owned());
            eds_service = Some(service);
        }
        DiscoveryType::OriginalDst => spec.cluster_type = ClusterTypeSpec::OriginalDst,
        _ => {
            if let Some(cla) = &c.load_assignment {
                spec.endpoints = endpoints("load_assignment.", cla)?;
            }
        }
    }
    Ok(XdsCluster {
        spec,
        eds_service,
        refs,
    })
}

fn endpoints(
    prefix: &str,
    cla: &pb::envoy::config::endpoint::v3::ClusterLoadAssignment,
) -> Result<Vec<EndpointSpec>, Reject> {
    use pb::envoy::config::{core::v3::HealthStatus, endpoint::v3::lb_endpoint::HostIdentifier};
    let mut out = Vec::new();
    for (i, locality) in cla.endpoints.iter().enumerate() {
        let lat = format!("{prefix}endpoints[{i}]");
        if locality.priority != 0 {
            return reject(
                format!("{lat}.priority"),
                "priorities other than 0 are not supported",
            );
        }
        for (j, lb) in locality.lb_endpoints.iter().enumerate() {
            let at = format!("{lat}.lb_endpoints[{j}]");
            let ep = match &lb.host_identifier {
                Some(HostIdentifier::Endpoint(ep)) => ep,
                Some(HostIdentifier::EndpointName(_)) => {
                    return reject(
                        format!("{at}.endpoint_name"),
                        "named endpoints are not supported",
                    )
                }
                None => return reject(format!("{at}.endpoint"), "missing"),
            };
            let address = socket_address(&format!("{at}.endpoint.address"), ep.address.as_ref())?;
            let weight = lb.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            if weight == 0 {
                return reject(format!("{at}.load_balancing_weight"), "must be at least 1");
            }
            let excluded = matches!(
                HealthStatus::try_from(lb.health_status),
                Ok(HealthStatus::Unhealthy | HealthStatus::Draining | HealthStatus::Timeout)
            );
            if !excluded {
                out.push(EndpointSpec { address, weight });
            }
        }
    }
    Ok(out)
}

/// A held resource: its version and converted form.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub version: String,
    pub value: Converted,
}

/// The resources the client holds (accepted ones only), by type and name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct XdsState {
    types: BTreeMap<ResourceType, BTreeMap<String, Held>>,
    /// The bootstrap has an `identity`: TLS contexts naming this proxy's
    /// own certificate (SDS [`OWN_CERT`]) can be honoured.
    has_identity: bool,
}

impl XdsState {
    /// An empty state for a proxy with (or without) an identity.
    pub fn new(has_identity: bool) -> XdsState {
        XdsState {
            types: BTreeMap::new(),
            has_identity,
        }
    }

    /// Convert and hold a resource, replacing its older version. A
    /// rejected resource leaves the held version (if any) in place.
    pub fn apply(
        &mut self,
        t: ResourceType,
        name: &str,
        version: &str,
        type_url: &str,
        bytes: &[u8],
    ) -> Result<(), ResourceError> {
        let value = convert(t, name, type_url, bytes)?;
        if value.refs().own_cert && !self.has_identity {
            return Err(ResourceError {
                resource_type: t,
                name: name.to_owned(),
                field: match &value {
                    Converted::Listener(l) => {
                        format!("filter_chains[{}].transport_socket", l.chain)
                    }
                    _ => "transport_socket".into(),
                },
                reason: format!(
                    "needs this proxy's own certificate (SDS {OWN_CERT:?}), but its bootstrap has \
                     no identity section"
                ),
            });
        }
        self.insert(t, name, version, value);
        Ok(())
    }

    pub fn insert(&mut self, t: ResourceType, name: &str, version: &str, value: Converted) {
        self.types.entry(t).or_default().insert(
            name.to_owned(),
            Held {
                version: version.to_owned(),
                value,
            },
        );
    }

    pub fn remove(&mut self, t: ResourceType, name: &str) -> Option<Held> {
        self.types.get_mut(&t)?.remove(name)
    }

    pub fn get(&self, t: ResourceType, name: &str) -> Option<&Held> {
        self.types.get(&t)?.get(name)
    }

    /// name → version of what is held of `t` (a reconnect's
    /// `initial_resource_versions`).
    pub fn versions(&self, t: ResourceType) -> BTreeMap<String, String> {
        self.of(t)
            .map(|(n, h)| (n.clone(), h.version.clone()))
            .collect()
    }

    fn of(&self, t: ResourceType) -> impl Iterator<Item = (&String, &Held)> {
        self.types.get(&t).into_iter().flatten()
    }

    /// The names to subscribe to by RDS / EDS: those the held listeners
    /// and clusters reference.
    pub fn wanted(&self, t: ResourceType) -> BTreeSet<String> {
        match t {
            ResourceType::RouteConfiguration => self
                .of(ResourceType::Listener)
                .filter_map(|(_, h)| match &h.value {
                    Converted::Listener(l) => l.rds.clone(),
                    _ => None,
                })
                .collect(),
            ResourceType::ClusterLoadAssignment => self
                .of(ResourceType::Cluster)
                .filter_map(|(_, h)| match &h.value {
                    Converted::Cluster(c) => c.eds_service.clone(),
                    _ => None,
                })
                .collect(),
            ResourceType::Secret => {
                let used = self
                    .of(ResourceType::Listener)
                    .chain(self.of(ResourceType::Cluster))
                    .any(|(_, h)| h.value.refs().root_ca);
                if used {
                    BTreeSet::from([ROOT_CA.to_owned()])
                } else {
                    BTreeSet::new()
                }
            }
            ResourceType::Listener | ResourceType::Cluster => BTreeSet::new(),
        }
    }

    /// Drop held route configurations, load assignments and secrets that
    /// nothing references any more (they are unsubscribed).
    pub fn retain_wanted(&mut self) {
        for t in [
            ResourceType::RouteConfiguration,
            ResourceType::ClusterLoadAssignment,
            ResourceType::Secret,
        ] {
            let wanted = self.wanted(t);
            if let Some(m) = self.types.get_mut(&t) {
                m.retain(|n, _| wanted.contains(n));
            }
        }
    }

    /// A stable hash of the held (type, name, version) set: the version
    /// of the configuration built from it.
    pub fn version(&self) -> u64 {
        let mut canonical = Vec::new();
        for (t, m) in &self.types {
            for (name, h) in m {
                canonical.extend_from_slice(t.short_name().as_bytes());
                canonical.push(0);
                canonical.extend_from_slice(name.as_bytes());
                canonical.push(0);
                canonical.extend_from_slice(h.version.as_bytes());
                canonical.push(b'\n');
            }
        }
        ringmesh_config::fnv1a64(&canonical)
    }

    /// Listeners whose RDS route configuration has not arrived yet: they
    /// are left out of the configuration until it does (Envoy's warming).
    pub fn warming_listeners(&self) -> Vec<String> {
        self.of(ResourceType::Listener)
            .filter(|(_, h)| match &h.value {
                Converted::Listener(l) => l
                    .rds
                    .as_ref()
                    .is_some_and(|r| self.get(ResourceType::RouteConfiguration, r).is_none()),
                _ => false,
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The base configuration (bootstrap: admin, limits, static
    /// resources) plus everything held, in name order. An EDS cluster
    /// whose assignment has not arrived has no endpoints yet, and a
    /// cluster referenced but not held is added empty (503, as Envoy).
    pub fn to_proxy_config(&self, base: &ProxyConfig) -> ProxyConfig {
        let mut cfg = base.clone();
        let warming = self.warming_listeners();
        for (name, h) in self.of(ResourceType::Listener) {
            if let Converted::Listener(l) = &h.value {
                if warming.contains(name) {
                    continue;
                }
                cfg.listeners.push(l.spec.clone());
                if let Some(rc) = &l.inline_route {
                    cfg.route_configs.push(rc.clone());
                }
            }
        }
        for (_, h) in self.of(ResourceType::RouteConfiguration) {
            if let Converted::Route(rc) = &h.value {
                cfg.route_configs.push(rc.clone());
            }
        }
        for (_, h) in self.of(ResourceType::Cluster) {
            if let Converted::Cluster(c) = &h.value {
                let mut spec = c.spec.clone();
                if let Some(service) = &c.eds_service {
                    if let Some(Held {
                        value: Converted::Endpoints(eps),
                        ..
                    }) = self.get(ResourceType::ClusterLoadAssignment, service)
                    {
                        spec.endpoints = eps.clone();
                    }
                }
                cfg.clusters.push(spec);
            }
        }
        for (_, h) in self.of(ResourceType::Secret) {
            if let Converted::Secret(b) = &h.value {
                cfg.trust_bundles.push(b.clone());
            }
        }
        // A route or TCP listener may name a cluster that is not (or no
        // longer) held: the control plane removes a cluster (CDS) before
        // it updates the routes (RDS) that used it. Envoy answers 503 for
        // such a route; an empty cluster does the same here, instead of
        // the whole configuration failing to compile.
        let known: BTreeSet<&str> = cfg.clusters.iter().map(|c| c.name.as_str()).collect();
        let missing: BTreeSet<String> = cfg
            .route_configs
            .iter()
            .flat_map(|rc| &rc.virtual_hosts)
            .flat_map(|vh| &vh.routes)
            .flat_map(|r| r.cluster_names())
            .chain(cfg.listeners.iter().filter_map(|l| l.cluster.as_deref()))
            .filter(|c| !known.contains(c))
            .map(str::to_owned)
            .collect();
        for name in missing {
            cfg.clusters.push(ClusterSpec {
                name,
                cluster_type: ClusterTypeSpec::Static,
                connect_timeout: None,
                lb_policy: LbPolicySpec::RoundRobin,
                endpoints: Vec::new(),
                tls: None,
                protocol: Default::default(),
                circuit_breakers: None,
                outlier_detection: None,
                healthy_panic_threshold: None,
            });
        }
        cfg
    }
}

#[cfg(test)]
mod tests;
