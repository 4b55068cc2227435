//! Envoy's TLS transport sockets and SDS secrets → the model's `tls`
//! fields and trust bundles.
//!
//! Accepted, as Istio (and ringmesh-control) emit them for mesh mTLS:
//! - Cluster `transport_socket` `UpstreamTlsContext`: this proxy's own
//!   certificate by SDS name [`OWN_CERT`], peers validated against the SDS
//!   trust bundle [`ROOT_CA`] (optionally combined with URI-SAN exact
//!   matchers: the SPIFFE IDs allowed), an optional `sni` →
//!   `tls: { mode: ISTIO_MUTUAL }`.
//! - Listener filter chain `transport_socket` `DownstreamTlsContext` with
//!   `require_client_certificate: true` and the same SDS names →
//!   `tls: { mode: STRICT }`; with the `tls_inspector` listener filter and
//!   a second, otherwise identical chain matching `transport_protocol:
//!   raw_buffer` (the TLS one matching `tls`) → `PERMISSIVE`.
//! - Secret [`ROOT_CA`]: a validation context whose `trusted_ca` holds PEM
//!   roots inline → a trust bundle, trusted in addition to the identity's.
//!
//! Anything else the proxy could not honour — certificates from files or
//! inline, other SDS names, CRLs, SPKI/hash pinning, custom validators,
//! TLS without client certificates, renegotiation, cipher suite lists —
//! is rejected with the field and the reason. ALPN lists are not: the
//! proxy offers `http/1.1` between sidecars for now.

use ringmesh_config::model::{ClusterTlsSpec, DownstreamTlsMode, TrustBundleSpec, UpstreamTlsMode};

use super::{reject, Reject};
use crate::wire::{self, pb};

/// The SDS name of this proxy's own certificate (Istio's).
pub const OWN_CERT: &str = "default";
/// The SDS name of the mesh trust bundle (Istio's).
pub const ROOT_CA: &str = "ROOTCA";

use pb::envoy::{
    config::{core::v3::TransportSocket, listener::v3 as listener},
    extensions::transport_sockets::tls::v3 as tls,
};

/// What a TLS transport socket references, for subscriptions and checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecretRefs {
    /// Uses this proxy's own certificate (needs an `identity`).
    pub own_cert: bool,
    /// Uses the [`ROOT_CA`] trust bundle (subscribed over ADS).
    pub root_ca: bool,
}

/// The typed config of a transport socket, if it is TLS of type `M`;
/// `Ok(None)` for a raw-buffer (plaintext) socket.
fn tls_config<M: prost::Name + Default>(
    at: &str,
    ts: &TransportSocket,
) -> Result<Option<M>, Reject> {
    use pb::envoy::{
        config::core::v3::transport_socket::ConfigType,
        extensions::transport_sockets::raw_buffer::v3::RawBuffer,
    };
    use prost::Name;
    let Some(ConfigType::TypedConfig(any)) = &ts.config_type else {
        if ts.name == "envoy.transport_sockets.raw_buffer" || ts.name == "raw_buffer" {
            return Ok(None);
        }
        return reject(
            format!("{at}.typed_config"),
            format!(
                "missing (transport socket {:?} needs its configuration inline)",
                ts.name
            ),
        );
    };
    if any.type_url == RawBuffer::type_url() {
        return Ok(None);
    }
    if any.type_url != M::type_url() {
        return reject(
            format!("{at}.typed_config"),
            format!(
                "unsupported transport socket {:?} (type {}); supported: {} and raw_buffer",
                ts.name,
                any.type_url,
                M::full_name()
            ),
        );
    }
    wire::decode(&any.type_url, &any.value)
        .map(Some)
        .map_err(|r| (format!("{at}.typed_config"), r))
}

/// A cluster's transport socket.
pub(super) fn upstream(
    ts: &TransportSocket,
) -> Result<Option<(ClusterTlsSpec, SecretRefs)>, Reject> {
    let at = "transport_socket";
    let Some(ctx) = tls_config::<tls::UpstreamTlsContext>(at, ts)? else {
        return Ok(None);
    };
    let at = format!("{at}.typed_config");
    if ctx.allow_renegotiation {
        return reject(
            format!("{at}.allow_renegotiation"),
            "renegotiation is never allowed",
        );
    }
    if ctx.auto_host_sni || ctx.auto_sni_san_validation {
        return reject(
            format!("{at}.auto_host_sni"),
            "SNI from the request's host is not supported (set sni)",
        );
    }
    let Some(common) = &ctx.common_tls_context else {
        return reject(format!("{at}.common_tls_context"), "missing");
    };
    let (sans, refs) = common_context(&format!("{at}.common_tls_context"), common, true)?;
    Ok(Some((
        ClusterTlsSpec {
            mode: UpstreamTlsMode::IstioMutual,
            subject_alt_names: sans,
            sni: (!ctx.sni.is_empty()).then(|| ctx.sni.clone()),
        },
        refs,
    )))
}

/// A listener filter chain's transport socket: `Some` for mutual TLS.
fn downstream(at: &str, ts: &TransportSocket) -> Result<Option<SecretRefs>, Reject> {
    let Some(ctx) = tls_config::<tls::DownstreamTlsContext>(at, ts)? else {
        return Ok(None);
    };
    let at = format!("{at}.typed_config");
    if ctx
        .require_client_certificate
        .as_ref()
        .is_none_or(|b| !b.value)
    {
        return reject(
            format!("{at}.require_client_certificate"),
            "must be true: only mutual TLS is supported (TLS without client certificates is not)",
        );
    }
    if ctx.require_sni.as_ref().is_some_and(|b| b.value) {
        return reject(format!("{at}.require_sni"), "not supported");
    }
    if ctx.session_ticket_keys_type.is_some() {
        return reject(
            format!("{at}.session_ticket_keys"),
            "session ticket keys are managed by the proxy",
        );
    }
    if ctx.ocsp_staple_policy != 0 {
        return reject(
            format!("{at}.ocsp_staple_policy"),
            "OCSP stapling is not supported",
        );
    }
    let Some(common) = &ctx.common_tls_context else {
        return reject(format!("{at}.common_tls_context"), "missing");
    };
    let (_, refs) = common_context(&format!("{at}.common_tls_context"), common, false)?;
    Ok(Some(refs))
}

/// The common part: own certificate by SDS, validation by SDS, SANs
/// (allowed only upstream). Returns the SANs and what is referenced.
fn common_context(
    at: &str,
    c: &tls::CommonTlsContext,
    sans_allowed: bool,
) -> Result<(Vec<String>, SecretRefs), Reject> {
    use tls::common_tls_context::ValidationContextType;
    if let Some(p) = &c.tls_params {
        tls_params(&format!("{at}.tls_params"), p)?;
    }
    if !c.tls_certificates.is_empty() {
        return reject(
            format!("{at}.tls_certificates"),
            format!(
                "certificates inline or from files are not supported; the proxy presents its own \
                 (SDS secret {OWN_CERT:?})"
            ),
        );
    }
    #[allow(deprecated)]
    let providers = c.tls_certificate_provider_instance.is_some()
        || c.custom_tls_certificate_selector.is_some()
        || c.tls_certificate_certificate_provider.is_some()
        || c.tls_certificate_certificate_provider_instance.is_some();
    if providers {
        return reject(
            format!("{at}.tls_certificate_provider_instance"),
            "certificate providers are not supported",
        );
    }
    if c.custom_handshaker.is_some() {
        return reject(format!("{at}.custom_handshaker"), "not supported");
    }
    if c.key_log.is_some() {
        return reject(format!("{at}.key_log"), "key logging is not supported");
    }
    match c.tls_certificate_sds_secret_configs.as_slice() {
        [s] if s.name == OWN_CERT => {}
        [s] => {
            return reject(
                format!("{at}.tls_certificate_sds_secret_configs[0].name"),
                format!(
                    "{:?}: only {OWN_CERT:?} (this proxy's own certificate, from its identity) is supported",
                    s.name
                ),
            )
        }
        [] => {
            return reject(
                format!("{at}.tls_certificate_sds_secret_configs"),
                format!("missing: mesh mTLS presents this proxy's certificate (SDS {OWN_CERT:?})"),
            )
        }
        _ => {
            return reject(
                format!("{at}.tls_certificate_sds_secret_configs"),
                "only one certificate is supported",
            )
        }
    }
    let root = |field: String, s: &tls::SdsSecretConfig| -> Result<(), Reject> {
        if s.name == ROOT_CA {
            Ok(())
        } else {
            reject(
                field,
                format!(
                    "{:?}: only {ROOT_CA:?} (the mesh trust bundle) is supported",
                    s.name
                ),
            )
        }
    };
    let sans = match &c.validation_context_type {
        Some(ValidationContextType::CombinedValidationContext(combined)) => {
            let cat = format!("{at}.combined_validation_context");
            #[allow(deprecated)]
            if combined.validation_context_certificate_provider.is_some()
                || combined.validation_context_certificate_provider_instance.is_some()
            {
                return reject(cat, "certificate providers are not supported");
            }
            let Some(sds) = &combined.validation_context_sds_secret_config else {
                return reject(
                    format!("{cat}.validation_context_sds_secret_config"),
                    format!("missing (the trust bundle comes from SDS {ROOT_CA:?})"),
                );
            };
            root(format!("{cat}.validation_context_sds_secret_config.name"), sds)?;
            match &combined.default_validation_context {
                Some(v) => validation_context(&format!("{cat}.default_validation_context"), v)?,
                None => Vec::new(),
            }
        }
        Some(ValidationContextType::ValidationContextSdsSecretConfig(sds)) => {
            root(format!("{at}.validation_context_sds_secret_config.name"), sds)?;
            Vec::new()
        }
        Some(ValidationContextType::ValidationContext(_)) => {
            return reject(
                format!("{at}.validation_context"),
                format!(
                    "inline validation contexts are not supported; the trust bundle comes from SDS {ROOT_CA:?}"
                ),
            )
        }
        #[allow(deprecated)]
        Some(_) => {
            return reject(
                format!("{at}.validation_context_type"),
                "certificate providers are not supported",
            )
        }
        None => {
            return reject(
                format!("{at}.validation_context_type"),
                format!("missing: mesh mTLS verifies peers against SDS {ROOT_CA:?}"),
            )
        }
    };
    if !sans.is_empty() && !sans_allowed {
        return reject(
            format!("{at}.combined_validation_context.default_validation_context.match_typed_subject_alt_names"),
            "restricting client identities in the TLS context is not supported (use authorization policies)",
        );
    }
    Ok((
        sans,
        SecretRefs {
            own_cert: true,
            root_ca: true,
        },
    ))
}

/// The SAN matchers of a validation context; everything else in it must
/// be unset.
fn validation_context(
    at: &str,
    v: &tls::CertificateValidationContext,
) -> Result<Vec<String>, Reject> {
    let unsupported: [(&str, bool); 12] = [
        ("trusted_ca", v.trusted_ca.is_some()),
        (
            "ca_certificate_provider_instance",
            v.ca_certificate_provider_instance.is_some(),
        ),
        ("system_root_certs", v.system_root_certs.is_some()),
        ("watched_directory", v.watched_directory.is_some()),
        (
            "verify_certificate_spki",
            !v.verify_certificate_spki.is_empty(),
        ),
        (
            "verify_certificate_hash",
            !v.verify_certificate_hash.is_empty(),
        ),
        (
            "require_signed_certificate_timestamp",
            v.require_signed_certificate_timestamp.is_some(),
        ),
        ("crl", v.crl.is_some()),
        ("allow_expired_certificate", v.allow_expired_certificate),
        ("trust_chain_verification", v.trust_chain_verification != 0),
        (
            "custom_validator_config",
            v.custom_validator_config.is_some(),
        ),
        (
            "max_verify_depth",
            v.max_verify_depth.is_some() || v.only_verify_leaf_cert_crl,
        ),
    ];
    if let Some((field, _)) = unsupported.into_iter().find(|(_, set)| *set) {
        return reject(
            format!("{at}.{field}"),
            "not supported (mesh peers are verified as SPIFFE X.509-SVIDs against the trust bundle)",
        );
    }
    let mut sans = Vec::new();
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        let mat = format!("{at}.match_typed_subject_alt_names[{i}]");
        if m.san_type != tls::subject_alt_name_matcher::SanType::Uri as i32 {
            return reject(
                format!("{mat}.san_type"),
                "only URI SANs (SPIFFE IDs) are supported",
            );
        }
        sans.push(exact(&format!("{mat}.matcher"), m.matcher.as_ref())?);
    }
    #[allow(deprecated)]
    for (i, m) in v.match_subject_alt_names.iter().enumerate() {
        let s = exact(&format!("{at}.match_subject_alt_names[{i}]"), Some(m))?;
        if !s.starts_with("spiffe://") {
            return reject(
                format!("{at}.match_subject_alt_names[{i}]"),
                format!("{s:?} is not a SPIFFE ID (only URI SANs are supported)"),
            );
        }
        sans.push(s);
    }
    Ok(sans)
}

/// An exact, case-sensitive string match.
fn exact(
    at: &str,
    m: Option<&pb::envoy::r#type::matcher::v3::StringMatcher>,
) -> Result<String, Reject> {
    use pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
    match m {
        Some(m) if m.ignore_case => reject(
            format!("{at}.ignore_case"),
            "SPIFFE IDs compare case-sensitively",
        ),
        Some(pb::envoy::r#type::matcher::v3::StringMatcher {
            match_pattern: Some(MatchPattern::Exact(s)),
            ..
        }) if !s.is_empty() => Ok(s.clone()),
        _ => reject(at, "only a non-empty exact match is supported"),
    }
}

/// TLS 1.2 and 1.3 are always on offer; a range that excludes both, or a
/// cipher-suite / curve / signature-algorithm list, cannot be honoured.
fn tls_params(at: &str, p: &tls::TlsParameters) -> Result<(), Reject> {
    use tls::tls_parameters::TlsProtocol;
    let min = TlsProtocol::try_from(p.tls_minimum_protocol_version).unwrap_or(TlsProtocol::TlsAuto);
    let max = TlsProtocol::try_from(p.tls_maximum_protocol_version).unwrap_or(TlsProtocol::TlsAuto);
    if max != TlsProtocol::TlsAuto && max < TlsProtocol::TlSv12 {
        return reject(
            format!("{at}.tls_maximum_protocol_version"),
            "TLS 1.2 is the minimum this proxy speaks",
        );
    }
    if min == TlsProtocol::TlSv13 && max != TlsProtocol::TlsAuto && max < TlsProtocol::TlSv13 {
        return reject(at, "the protocol version range is empty");
    }
    for (field, set) in [
        ("cipher_suites", !p.cipher_suites.is_empty()),
        ("ecdh_curves", !p.ecdh_curves.is_empty()),
        ("signature_algorithms", !p.signature_algorithms.is_empty()),
        ("compliance_policies", !p.compliance_policies.is_empty()),
    ] {
        if set {
            return reject(
                format!("{at}.{field}"),
                "not supported (the proxy's suites are fixed: TLS 1.3 and TLS 1.2 ECDHE with AEAD ciphers)",
            );
        }
    }
    Ok(())
}

/// The filter chain a listener is served by, where it is in the list, its
/// inbound TLS and what that references.
pub(super) struct Chain<'a> {
    pub chain: &'a listener::FilterChain,
    pub index: usize,
    pub mode: DownstreamTlsMode,
    pub refs: SecretRefs,
}

fn is_tls_inspector(f: &listener::ListenerFilter) -> bool {
    use listener::listener_filter::ConfigType;
    use pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
    use prost::Name;
    f.filter_disabled.is_none()
        && match &f.config_type {
            Some(ConfigType::TypedConfig(a)) => a.type_url == TlsInspector::type_url(),
            None => f.name == "envoy.filters.listener.tls_inspector",
            Some(_) => false,
        }
}

/// The `transport_protocol` a chain matches on ("" when it has no match);
/// nothing else may be matched on.
fn transport_protocol<'a>(at: &str, c: &'a listener::FilterChain) -> Result<&'a str, Reject> {
    let Some(m) = &c.filter_chain_match else {
        return Ok("");
    };
    let rest = listener::FilterChainMatch {
        transport_protocol: String::new(),
        ..m.clone()
    };
    if rest != listener::FilterChainMatch::default() {
        return reject(
            format!("{at}.filter_chain_match"),
            "filter chain matching is not supported (only transport_protocol, for PERMISSIVE mTLS)",
        );
    }
    match m.transport_protocol.as_str() {
        p @ ("" | "tls" | "raw_buffer") => Ok(p),
        other => reject(
            format!("{at}.filter_chain_match.transport_protocol"),
            format!("{other:?}: only \"tls\" and \"raw_buffer\" are supported"),
        ),
    }
}

/// Pick the filter chain of a listener: one chain (plaintext, or mutual TLS
/// = STRICT), or Istio's PERMISSIVE pair (TLS inspector + a `tls` chain
/// terminating mTLS + an otherwise identical `raw_buffer` chain).
pub(super) fn select_chain(l: &listener::Listener) -> Result<Chain<'_>, Reject> {
    let inspector = match l.listener_filters.as_slice() {
        [] => false,
        [f] if is_tls_inspector(f) => true,
        fs => {
            let i = fs.iter().position(|f| !is_tls_inspector(f)).unwrap_or(1);
            return reject(
                format!("listener_filters[{i}]"),
                format!(
                    "listener filter {:?} is not supported (only the TLS inspector is; use \
                     use_original_dst for the original destination)",
                    fs[i.min(fs.len() - 1)].name
                ),
            );
        }
    };
    let chains = l.filter_chains.as_slice();
    match chains {
        [] => reject("filter_chains", "no filter chain"),
        [c] => {
            let at = "filter_chains[0]";
            let proto = transport_protocol(at, c)?;
            let tls = match &c.transport_socket {
                Some(ts) => downstream(&format!("{at}.transport_socket"), ts)?,
                None => None,
            };
            match (tls, proto) {
                (Some(refs), "" | "tls") => Ok(Chain {
                    chain: c,
                    index: 0,
                    mode: DownstreamTlsMode::Strict,
                    refs,
                }),
                (None, "" | "raw_buffer") => Ok(Chain {
                    chain: c,
                    index: 0,
                    mode: DownstreamTlsMode::Disable,
                    refs: SecretRefs::default(),
                }),
                (None, _) => reject(
                    format!("{at}.transport_socket"),
                    "a chain matching transport_protocol \"tls\" must terminate it (a TLS transport socket)",
                ),
                (Some(_), _) => reject(
                    format!("{at}.filter_chain_match.transport_protocol"),
                    "a chain with a TLS transport socket cannot match \"raw_buffer\"",
                ),
            }
        }
        [a, b] => {
            const PAIR: &str = "two filter chains are supported only as the PERMISSIVE pair: one matching \
                                transport_protocol \"tls\" with a mutual-TLS transport socket, one matching \
                                \"raw_buffer\" without, with the same filters";
            let (pa, pb) = (
                transport_protocol("filter_chains[0]", a)?,
                transport_protocol("filter_chains[1]", b)?,
            );
            let (ti, ri) = match (pa, pb) {
                ("tls", "raw_buffer") => (0, 1),
                ("raw_buffer", "tls") => (1, 0),
                _ => return reject("filter_chains", PAIR),
            };
            if !inspector {
                return reject(
                    "listener_filters",
                    "the PERMISSIVE pair of filter chains needs the TLS inspector listener filter",
                );
            }
            let (t, r) = (&chains[ti], &chains[ri]);
            let tat = format!("filter_chains[{ti}].transport_socket");
            let refs = match &t.transport_socket {
                Some(ts) => downstream(&tat, ts)?,
                None => None,
            };
            let Some(refs) = refs else {
                return reject(tat, PAIR);
            };
            let rat = format!("filter_chains[{ri}].transport_socket");
            if let Some(ts) = &r.transport_socket {
                if downstream(&rat, ts)?.is_some() {
                    return reject(rat, PAIR);
                }
            }
            if t.filters != r.filters {
                return reject(
                    format!("filter_chains[{ri}].filters"),
                    "must equal the TLS chain's filters (PERMISSIVE serves TLS and plaintext alike)",
                );
            }
            Ok(Chain {
                chain: t,
                index: ti,
                mode: DownstreamTlsMode::Permissive,
                refs,
            })
        }
        _ => reject(
            "filter_chains",
            "more than two filter chains (filter chain matching is supported only for PERMISSIVE mTLS)",
        ),
    }
}

/// An SDS secret: the mesh trust bundle ([`ROOT_CA`]) as PEM roots.
pub(super) fn secret(name: &str, s: &tls::Secret) -> Result<TrustBundleSpec, Reject> {
    use pb::envoy::config::core::v3::data_source::Specifier;
    use tls::secret::Type;
    if name != ROOT_CA {
        return reject(
            "name",
            format!("only the trust bundle {ROOT_CA:?} is taken over ADS; this proxy's own certificate comes from its identity"),
        );
    }
    if !s.name.is_empty() && s.name != name {
        return reject(
            "name",
            format!("{:?} differs from the resource name {name:?}", s.name),
        );
    }
    let v = match &s.r#type {
        Some(Type::ValidationContext(v)) => v,
        _ => {
            return reject(
                "validation_context",
                "missing (the secret must be a validation context)",
            )
        }
    };
    let at = "validation_context";
    let trusted = v.trusted_ca.as_ref();
    let stripped = tls::CertificateValidationContext {
        trusted_ca: None,
        ..v.clone()
    };
    if stripped != tls::CertificateValidationContext::default() {
        return reject(
            at,
            "only trusted_ca is supported in the trust bundle's validation context",
        );
    }
    let pem = match trusted.and_then(|d| d.specifier.as_ref()) {
        Some(Specifier::InlineBytes(b)) => String::from_utf8(b.clone()).map_err(|_| {
            (
                format!("{at}.trusted_ca.inline_bytes"),
                "not UTF-8 PEM".to_owned(),
            )
        })?,
        Some(Specifier::InlineString(s)) => s.clone(),
        Some(_) => return reject(
            format!("{at}.trusted_ca"),
            "only inline_bytes or inline_string is supported (no files or environment variables)",
        ),
        None => return reject(format!("{at}.trusted_ca"), "missing"),
    };
    if let Err(e) = ringmesh_tls::TrustBundle::from_pem(pem.as_bytes()) {
        return reject(format!("{at}.trusted_ca"), e.to_string());
    }
    Ok(TrustBundleSpec {
        name: name.to_owned(),
        pem,
    })
}
