//! Mutual TLS between sidecars, decided the way Istio decides it:
//!
//! - **Server side** ([`server_mode`]): which PeerAuthentication applies to
//!   a workload port. The most specific policy that sets a mode wins: a
//!   port-level setting of a policy selecting the workload, then that
//!   policy's own mode, then the namespace-wide policy (no selector) of
//!   the workload's namespace, then the mesh-wide one (no selector, in the
//!   root namespace `istio-system`); `UNSET` inherits from the next level
//!   and nothing at all means PERMISSIVE. Where several policies compete
//!   on one level Istio takes the oldest; files have no age, so the first
//!   by namespace/name stands in for it (as `ringmesh analyze` does).
//! - **Client side** ([`client_tls`], and the clusters): a DestinationRule
//!   `tls` setting wins; without one, *auto mTLS* originates ISTIO_MUTUAL
//!   when every endpoint of the cluster runs a sidecar (registry
//!   `Workload::has_sidecar`; a ServiceEntry endpoint counts when labelled
//!   `security.istio.io/tlsMode: istio`) and none of them has DISABLE on
//!   that port, and plaintext otherwise. Istio sends mixed destinations
//!   mTLS to the sidecar endpoints only, through `transport_socket_matches`
//!   on endpoint metadata; here a mixed cluster is plaintext as a whole
//!   (PERMISSIVE sidecars accept it) until the proxy reads socket matches.
//!
//! Opportunistic mTLS needs a workload identity on both ends: PERMISSIVE's
//! TLS filter chain and auto mTLS are generated only for a proxy that has
//! one ([`crate::IdentitySource`]) and when the mesh has a trust bundle
//! ([`crate::Options::trust_bundle_pem`]). STRICT and an explicit
//! ISTIO_MUTUAL are always generated — they are never weakened to
//! plaintext — and wait for an identity that a proxy without one never
//! gets.

use std::{collections::BTreeMap, fmt};

use ringmesh_istio::{
    networking::destination_rule::TlsMode,
    security::peer_authentication::{MtlsMode, PeerAuthentication},
    Resource,
};
use ringmesh_registry::MeshState;

use crate::{
    view::{selects, Discovery, Ep, Svc, View, ROOT_NAMESPACE},
    wire::{self, core, matcher, tls},
    IdentitySource, Options, ProxyNode,
};

/// The SDS name of a proxy's own certificate and key (Istio's).
pub const SDS_DEFAULT: &str = "default";
/// The SDS name of the trust bundle (Istio's).
pub const SDS_ROOTCA: &str = "ROOTCA";
/// The endpoint label Istio puts on workloads with a sidecar; a
/// ServiceEntry endpoint with it takes auto mTLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// The effective server-side mode of a workload port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerMode {
    /// mTLS only; plaintext is refused.
    Strict,
    /// mTLS and plaintext on the same port, told apart by the first bytes.
    Permissive,
    /// Plaintext only.
    Disable,
}

impl ServerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerMode::Strict => "STRICT",
            ServerMode::Permissive => "PERMISSIVE",
            ServerMode::Disable => "DISABLE",
        }
    }

    fn from_model(mode: MtlsMode) -> Option<ServerMode> {
        match mode {
            MtlsMode::Unset => None,
            MtlsMode::Disable => Some(ServerMode::Disable),
            MtlsMode::Permissive => Some(ServerMode::Permissive),
            MtlsMode::Strict => Some(ServerMode::Strict),
        }
    }
}

impl fmt::Display for ServerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a PeerAuthentication applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyLevel {
    /// No selector, in the root namespace.
    Mesh,
    /// No selector, in the workload's namespace.
    Namespace,
    /// A selector matching the workload.
    Workload,
    /// `portLevelMtls` of a policy matching the workload.
    Port,
}

impl PolicyLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyLevel::Mesh => "mesh",
            PolicyLevel::Namespace => "namespace",
            PolicyLevel::Workload => "workload",
            PolicyLevel::Port => "port",
        }
    }
}

/// The PeerAuthentication that decided a mode.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DecidingPolicy {
    pub namespace: String,
    pub name: String,
    pub level: PolicyLevel,
}

impl fmt::Display for DecidingPolicy {
    /// `namespace/name (level)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ({})",
            self.namespace,
            self.name,
            self.level.as_str()
        )
    }
}

/// A workload port's effective mode and the policy that set it (`None`:
/// no policy sets one, Istio's default PERMISSIVE).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerMtls {
    pub mode: ServerMode,
    pub policy: Option<DecidingPolicy>,
}

fn mode_of(pa: &PeerAuthentication) -> MtlsMode {
    pa.mtls.as_ref().map_or(MtlsMode::Unset, |m| m.mode)
}

fn has_selector(pa: &PeerAuthentication) -> bool {
    pa.selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty())
}

/// The effective mTLS mode of `port` (a workload port, as
/// `portLevelMtls` keys are) of a workload in `namespace` with `labels`,
/// under `policies` (any order). See the module docs for the precedence.
pub fn server_mode(
    policies: &[Resource<PeerAuthentication>],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u16,
) -> ServerMtls {
    let mut sorted: Vec<&Resource<PeerAuthentication>> = policies.iter().collect();
    sorted
        .sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    let first =
        |f: &dyn Fn(&Resource<PeerAuthentication>) -> bool| sorted.iter().copied().find(|pa| f(pa));
    let mesh = first(&|pa| pa.meta.namespace == ROOT_NAMESPACE && !has_selector(&pa.spec));
    let namespace_wide = first(&|pa| pa.meta.namespace == namespace && !has_selector(&pa.spec));
    let workload = first(&|pa| {
        pa.meta.namespace == namespace
            && pa
                .spec
                .selector
                .as_ref()
                .is_some_and(|s| !s.match_labels.is_empty() && selects(&s.match_labels, labels))
    });

    let decided = |pa: &Resource<PeerAuthentication>, level| DecidingPolicy {
        namespace: pa.meta.namespace.clone(),
        name: pa.meta.name.clone(),
        level,
    };
    let mut out = ServerMtls {
        mode: ServerMode::Permissive,
        policy: None,
    };
    // From the least specific level to the most; UNSET inherits.
    let levels = [
        (mesh, PolicyLevel::Mesh),
        // In the root namespace the namespace policy is the mesh policy.
        (
            namespace_wide.filter(|_| namespace != ROOT_NAMESPACE),
            PolicyLevel::Namespace,
        ),
        (workload, PolicyLevel::Workload),
    ];
    for (pa, level) in levels {
        let Some(pa) = pa else { continue };
        if let Some(mode) = ServerMode::from_model(mode_of(&pa.spec)) {
            out = ServerMtls {
                mode,
                policy: Some(decided(pa, level)),
            };
        }
    }
    if let Some(pa) = workload {
        let port_mode = pa
            .spec
            .port_level_mtls
            .iter()
            .find(|(k, _)| k.0 == u32::from(port))
            .and_then(|(_, m)| ServerMode::from_model(m.mode));
        if let Some(mode) = port_mode {
            out = ServerMtls {
                mode,
                policy: Some(decided(pa, PolicyLevel::Port)),
            };
        }
    }
    out
}

/// How an inbound port is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum InboundTls {
    /// One plaintext filter chain (DISABLE, or PERMISSIVE on a proxy that
    /// cannot terminate mTLS).
    #[default]
    Plaintext,
    /// One filter chain with the mTLS transport socket.
    Strict,
    /// TLS inspector; an mTLS chain (`transport_protocol: tls`) and a
    /// plaintext one (`raw_buffer`).
    Permissive,
}

/// Can this proxy take part in opportunistic mTLS: has it a workload
/// identity, and the mesh a trust bundle to verify peers with?
pub(crate) fn can_mtls(node: &ProxyNode, opts: &Options) -> bool {
    node.identity != IdentitySource::None && !opts.trust_bundle_pem.trim().is_empty()
}

/// How the proxy of `view` serves its workload port `port`.
pub(crate) fn inbound(view: &View, state: &MeshState, port: u16) -> InboundTls {
    let mode = server_mode(
        &state.istio.peer_authentications,
        &view.proxy.namespace,
        &view.proxy.labels,
        port,
    )
    .mode;
    match mode {
        ServerMode::Strict => InboundTls::Strict,
        ServerMode::Permissive if can_mtls(&view.proxy, view.opts) => InboundTls::Permissive,
        ServerMode::Permissive | ServerMode::Disable => InboundTls::Plaintext,
    }
}

/// The client side's TLS mode toward a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientMode {
    /// Plaintext.
    Disable,
    /// TLS, server verified with given files.
    Simple,
    /// TLS with a client certificate from given files.
    Mutual,
    /// mTLS with the workload's SVID, the mesh trust bundle and the
    /// destination's SPIFFE identities.
    IstioMutual,
}

impl ClientMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientMode::Disable => "DISABLE",
            ClientMode::Simple => "SIMPLE",
            ClientMode::Mutual => "MUTUAL",
            ClientMode::IstioMutual => "ISTIO_MUTUAL",
        }
    }

    fn from_model(mode: TlsMode) -> ClientMode {
        match mode {
            TlsMode::Disable => ClientMode::Disable,
            TlsMode::Simple => ClientMode::Simple,
            TlsMode::Mutual => ClientMode::Mutual,
            TlsMode::IstioMutual => ClientMode::IstioMutual,
        }
    }
}

impl fmt::Display for ClientMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why auto mTLS chose what it chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AutoReason {
    /// Every endpoint has a sidecar that accepts mTLS.
    AllSidecars,
    /// An endpoint runs without a sidecar.
    NoSidecar,
    /// An endpoint's PeerAuthentication is DISABLE on that port.
    ServerDisabled,
    /// The destination has no (ready) endpoints.
    NoEndpoints,
    /// Endpoints are resolved by DNS or passed through: not workloads.
    NotWorkloads,
    /// The client proxy has no workload identity, or the mesh no trust
    /// bundle.
    NoIdentity,
}

impl AutoReason {
    pub fn describe(self) -> &'static str {
        match self {
            AutoReason::AllSidecars => "every endpoint has a sidecar",
            AutoReason::NoSidecar => "an endpoint has no sidecar",
            AutoReason::ServerDisabled => "an endpoint's PeerAuthentication is DISABLE",
            AutoReason::NoEndpoints => "no ready endpoints",
            AutoReason::NotWorkloads => "endpoints are not mesh workloads (DNS or passthrough)",
            AutoReason::NoIdentity => "the client has no workload identity",
        }
    }
}

/// The client side's TLS toward one cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientTls {
    pub mode: ClientMode,
    /// `Some`: no DestinationRule sets `tls`; auto mTLS decided, for
    /// this reason.
    pub auto: Option<AutoReason>,
    /// The DestinationRule (`namespace/name`) that set `tls`, or that
    /// applies to the host without setting it.
    pub destination_rule: Option<String>,
}

/// Auto mTLS for the cluster of `svc` with these endpoints (the
/// cluster's subset, ready only).
pub(crate) fn auto_mtls(
    view: &View,
    state: &MeshState,
    svc: &Svc,
    eps: &[Ep],
) -> (ClientMode, AutoReason) {
    if !can_mtls(&view.proxy, view.opts) {
        return (ClientMode::Disable, AutoReason::NoIdentity);
    }
    if svc.discovery != Discovery::Eds {
        return (ClientMode::Disable, AutoReason::NotWorkloads);
    }
    if eps.is_empty() {
        return (ClientMode::Disable, AutoReason::NoEndpoints);
    }
    for ep in eps {
        let (sidecar, ns) = match ep.workload {
            Some(w) => (w.has_sidecar, w.namespace.as_str()),
            None => (
                ep.labels.get(TLS_MODE_LABEL).is_some_and(|v| v == "istio"),
                svc.namespace.as_str(),
            ),
        };
        if !sidecar {
            return (ClientMode::Disable, AutoReason::NoSidecar);
        }
        let mode = server_mode(&state.istio.peer_authentications, ns, ep.labels, ep.port).mode;
        if mode == ServerMode::Disable {
            return (ClientMode::Disable, AutoReason::ServerDisabled);
        }
    }
    (ClientMode::IstioMutual, AutoReason::AllSidecars)
}

/// The client-side TLS a proxy in `from_namespace` (with a workload
/// identity) uses toward `host:port` — a service port, by its FQDN or a
/// ServiceEntry host — with the same DestinationRule selection and auto
/// mTLS as the clusters it would get. `None` when no such service port is
/// visible from that namespace.
pub fn client_tls(
    state: &MeshState,
    opts: &Options,
    from_namespace: &str,
    host: &str,
    port: u16,
) -> Option<ClientTls> {
    let node = ProxyNode {
        namespace: from_namespace.to_owned(),
        identity: IdentitySource::Csr,
        ..ProxyNode::default()
    };
    let mut opts = opts.clone();
    if opts.trust_bundle_pem.trim().is_empty() {
        // The question is what a client with an identity would do.
        opts.trust_bundle_pem = "(assumed)".to_owned();
    }
    let view = View::new(state, &node, &opts);
    let svc = view.service(&host.to_ascii_lowercase())?;
    let sp = svc.ports.iter().find(|p| p.port == port)?;
    let dr = view.destination_rule(svc);
    let policy = View::policy(dr, None, port);
    let dr_name = dr.map(|d| format!("{}/{}", d.meta.namespace, d.meta.name));
    if let Some(t) = policy.tls {
        return Some(ClientTls {
            mode: ClientMode::from_model(t.mode),
            auto: None,
            destination_rule: dr_name,
        });
    }
    let eps = view.endpoints(svc, sp, &BTreeMap::new());
    let (mode, reason) = auto_mtls(&view, state, svc, &eps);
    Some(ClientTls {
        mode,
        auto: Some(reason),
        destination_rule: dr_name,
    })
}

fn sds(name: &str) -> tls::SdsSecretConfig {
    tls::SdsSecretConfig {
        name: name.to_owned(),
        sds_config: Some(wire::ads()),
    }
}

fn tls_socket<M: prost::Name>(ctx: &M) -> core::TransportSocket {
    core::TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(wire::any(
            ctx,
        ))),
    }
}

/// The inbound mTLS transport socket: the proxy's SVID (`default`),
/// client certificates required and verified against `ROOTCA`, ALPN h2
/// and HTTP/1.1.
pub(crate) fn downstream_socket() -> core::TransportSocket {
    use tls::common_tls_context::ValidationContextType;
    tls_socket(&tls::DownstreamTlsContext {
        require_client_certificate: Some(wire::boolv(true)),
        common_tls_context: Some(tls::CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds(SDS_DEFAULT)],
            validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(
                sds(SDS_ROOTCA),
            )),
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Exact URI (or DNS, without a scheme) SAN matchers.
pub(crate) fn san_matchers(sans: &[String]) -> Vec<tls::SubjectAltNameMatcher> {
    sans.iter()
        .map(|san| tls::SubjectAltNameMatcher {
            san_type: if san.contains("://") {
                tls::subject_alt_name_matcher::SanType::Uri
            } else {
                tls::subject_alt_name_matcher::SanType::Dns
            } as i32,
            matcher: Some(matcher::StringMatcher {
                match_pattern: Some(matcher::string_matcher::MatchPattern::Exact(san.clone())),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// ISTIO_MUTUAL toward a cluster: the proxy's SVID (`default`), the
/// server verified against `ROOTCA` and `sans` (the destination's SPIFFE
/// IDs), Istio's SNI `outbound_.PORT_.SUBSET_.HOST`.
pub(crate) fn istio_mutual_socket(
    port: u16,
    subset: Option<&str>,
    host: &str,
    sans: &[String],
) -> core::TransportSocket {
    use tls::common_tls_context::{CombinedCertificateValidationContext, ValidationContextType};
    tls_socket(&tls::UpstreamTlsContext {
        common_tls_context: Some(tls::CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds(SDS_DEFAULT)],
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(tls::CertificateValidationContext {
                        match_typed_subject_alt_names: san_matchers(sans),
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds(SDS_ROOTCA)),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        sni: format!("outbound_.{port}_.{}_.{host}", subset.unwrap_or("")),
        ..Default::default()
    })
}

/// The secrets of one proxy: `ROOTCA` (the trust bundle, inline) when the
/// mesh has one, and `default` as file references for a proxy whose
/// certificate and key are files (Envoy; our proxy makes its own key).
pub(crate) fn secrets(node: &ProxyNode, opts: &Options) -> Vec<tls::Secret> {
    use tls::secret::Type;
    let mut out = Vec::new();
    if !opts.trust_bundle_pem.trim().is_empty() {
        out.push(tls::Secret {
            name: SDS_ROOTCA.into(),
            r#type: Some(Type::ValidationContext(tls::CertificateValidationContext {
                trusted_ca: Some(core::DataSource {
                    specifier: Some(core::data_source::Specifier::InlineString(
                        opts.trust_bundle_pem.clone(),
                    )),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        });
    }
    if let IdentitySource::Files { cert_chain, key } = &node.identity {
        let file = |f: &str| core::DataSource {
            specifier: Some(core::data_source::Specifier::Filename(f.to_owned())),
            ..Default::default()
        };
        out.push(tls::Secret {
            name: SDS_DEFAULT.into(),
            r#type: Some(Type::TlsCertificate(tls::TlsCertificate {
                certificate_chain: Some(file(cert_chain)),
                private_key: Some(file(key)),
                ..Default::default()
            })),
        });
    }
    out
}
