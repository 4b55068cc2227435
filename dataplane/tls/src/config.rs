//! rustls configurations for mesh mTLS.
//!
//! Both sides: TLS 1.3 preferred, TLS 1.2 the minimum (rustls implements
//! nothing older, so TLS 1.0/1.1 cannot be negotiated at all), the ring
//! provider's AEAD suites only, no 0-RTT data (replayable). rustls never
//! renegotiates — a TLS 1.2 HelloRequest or renegotiating ClientHello is
//! refused — so renegotiation attacks do not apply.
//!
//! Session resumption is on: the server issues stateless tickets (TLS 1.2
//! and 1.3, keys rotated by rustls' ticketer) and keeps a session-ID cache;
//! the client caches sessions per server name. A resumed handshake skips
//! certificate verification and restores the peer's certificates from the
//! session, so [`crate::peer_identity`] still answers. Two consequences a
//! caller must respect:
//! - each [`client_config`] owns its own session cache: never share one
//!   between configs with different allowed identities, or a session
//!   verified for one destination's identities could resume for another;
//! - removing a root from the bundle does not invalidate sessions already
//!   established under it until their tickets expire (hours).

use std::sync::Arc;

use rustls::{
    client::{ClientSessionMemoryCache, Resumption},
    crypto::CryptoProvider,
    server::ServerSessionMemoryCache,
    ClientConfig, ServerConfig,
};

use crate::{
    bundle::SharedTrustBundle,
    id::{validate_trust_domain, IdError, SpiffeId},
    svid::CertifiedKeyResolver,
    verify::{SpiffeClientVerifier, SpiffeServerVerifier},
};

/// ALPN id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// What sidecars offer each other: HTTP/2 first, then HTTP/1.1.
pub const DEFAULT_ALPN: &[&[u8]] = &[ALPN_H2, ALPN_HTTP11];

/// Sessions remembered per config (server: session IDs; client: per server
/// name).
const SESSION_CACHE_SIZE: usize = 1024;

/// The crypto provider every mesh config uses: rustls' ring provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid trust domain: {0}")]
    TrustDomain(IdError),
    #[error("allowed identity {id} is not in the trust domain {trust_domain:?}")]
    ForeignAllowedId { id: SpiffeId, trust_domain: String },
    #[error("ALPN protocol id {index} is empty or longer than 255 bytes")]
    BadAlpn { index: usize },
    #[error("rustls rejected the configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn check_alpn(alpn: &[&[u8]]) -> Result<Vec<Vec<u8>>, ConfigError> {
    alpn.iter()
        .enumerate()
        .map(|(index, p)| {
            if p.is_empty() || p.len() > 255 {
                Err(ConfigError::BadAlpn { index })
            } else {
                Ok(p.to_vec())
            }
        })
        .collect()
}

/// The inbound (server) side: presents `identity`, requires a client SVID
/// of `trust_domain` verified against `bundle`, offers `alpn` in order.
pub fn server_config(
    identity: Arc<CertifiedKeyResolver>,
    bundle: SharedTrustBundle,
    trust_domain: &str,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, ConfigError> {
    validate_trust_domain(trust_domain).map_err(ConfigError::TrustDomain)?;
    let alpn = check_alpn(alpn)?;
    let provider = provider();
    let verifier = Arc::new(SpiffeClientVerifier::new(
        bundle,
        trust_domain,
        provider.clone(),
    ));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    config.alpn_protocols = alpn;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// The outbound (client) side for one destination: presents `identity`,
/// requires a server SVID of `trust_domain` verified against `bundle`
/// whose ID is one of `allowed` (empty: any workload of the trust domain),
/// offers `alpn` in order. Build one per set of allowed identities (see
/// the module docs on session caches).
pub fn client_config(
    identity: Arc<CertifiedKeyResolver>,
    bundle: SharedTrustBundle,
    trust_domain: &str,
    allowed: Vec<SpiffeId>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, ConfigError> {
    validate_trust_domain(trust_domain).map_err(ConfigError::TrustDomain)?;
    if let Some(id) = allowed.iter().find(|id| id.trust_domain() != trust_domain) {
        return Err(ConfigError::ForeignAllowedId {
            id: id.clone(),
            trust_domain: trust_domain.to_owned(),
        });
    }
    let alpn = check_alpn(alpn)?;
    let provider = provider();
    let verifier = Arc::new(SpiffeServerVerifier::new(
        bundle,
        trust_domain,
        allowed,
        provider.clone(),
    ));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(identity);
    config.alpn_protocols = alpn;
    config.resumption =
        Resumption::store(Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE_SIZE)));
    config.enable_early_data = false;
    Ok(Arc::new(config))
}
