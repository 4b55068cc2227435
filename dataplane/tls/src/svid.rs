//! This workload's own SVID: loading it, and a rustls certificate resolver
//! whose certificate can be replaced live when the SVID is rotated.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use rustls::{
    client::ResolvesClientCert,
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    SignatureScheme,
};
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

use crate::{
    bundle::pem_error_text,
    id::SpiffeId,
    verify::{check_svid_leaf, Role, SvidError},
};

/// A loaded SVID: the identity it proves, the certificate chain with its
/// private key ready for rustls, and its validity period (for rotation at
/// half-life).
#[derive(Clone)]
pub struct Svid {
    pub id: SpiffeId,
    pub certified_key: Arc<CertifiedKey>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Why an SVID could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SvidLoadError {
    #[error("certificate chain PEM is malformed: {0}")]
    ChainPem(String),
    #[error("certificate chain PEM contains no CERTIFICATE block")]
    NoCertificate,
    #[error("private key PEM is malformed or holds no private key: {0}")]
    KeyPem(String),
    #[error("private key is not usable: {0}")]
    Key(rustls::Error),
    #[error("private key does not match the leaf certificate's public key")]
    KeyMismatch,
    #[error("leaf certificate is not a usable SVID: {0}")]
    NotAnSvid(SvidError),
}

impl Svid {
    /// Loads a PEM chain (leaf first, then intermediates) and its PEM
    /// private key (PKCS#8, SEC1 or PKCS#1). The leaf must be an SVID
    /// usable both as a server and as a client certificate of
    /// `trust_domain` — a sidecar presents the same SVID in both roles —
    /// and the key must match it.
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        trust_domain: &str,
        provider: &CryptoProvider,
    ) -> Result<Self, SvidLoadError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SvidLoadError::ChainPem(pem_error_text(&e)))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| SvidLoadError::KeyPem(pem_error_text(&e)))?;
        Self::from_der(chain, key, trust_domain, provider)
    }

    /// [`Svid::from_pem`] for DER input.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        trust_domain: &str,
        provider: &CryptoProvider,
    ) -> Result<Self, SvidLoadError> {
        let leaf = chain.first().ok_or(SvidLoadError::NoCertificate)?;
        let id = check_svid_leaf(leaf, Role::Server, trust_domain)
            .and_then(|_| check_svid_leaf(leaf, Role::Client, trust_domain))
            .map_err(SvidLoadError::NotAnSvid)?;
        let (not_before, not_after) = validity(leaf).map_err(SvidLoadError::NotAnSvid)?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(SvidLoadError::Key)?;
        let certified_key = CertifiedKey::new(chain, signing_key);
        match certified_key.keys_match() {
            // Unknown: the key cannot report its public half; rustls'
            // own loader accepts that too.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(SvidLoadError::KeyMismatch)
            }
            Err(e) => return Err(SvidLoadError::Key(e)),
        }
        Ok(Svid {
            id,
            certified_key: Arc::new(certified_key),
            not_before,
            not_after,
        })
    }

    /// The leaf certificate's serial number, lowercase hex (logs, admin).
    pub fn serial_hex(&self) -> String {
        self.certified_key
            .cert
            .first()
            .and_then(|c| serial_hex(c))
            .unwrap_or_default()
    }

    /// When to request the next SVID: half-way through this one's life,
    /// as Istio's agent does.
    pub fn refresh_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        self.not_before + life / 2
    }
}

impl fmt::Debug for Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Svid")
            .field("id", &self.id)
            .field("chain_len", &self.certified_key.cert.len())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The serial number of a DER certificate as lowercase hex without
/// leading zero bytes; `None` when it does not parse.
pub fn serial_hex(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let raw = cert.raw_serial();
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    Some(raw[start..].iter().map(|b| format!("{b:02x}")).collect())
}

fn validity(der: &[u8]) -> Result<(SystemTime, SystemTime), SvidError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| SvidError::BadEncoding(e.to_string()))?;
    let to_system = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
        } else {
            SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    };
    Ok((
        to_system(cert.validity().not_before),
        to_system(cert.validity().not_after),
    ))
}

/// The certificate this workload presents, as server and as client,
/// replaceable while configs using it stay in place: [`store`](Self::store)
/// a rotated SVID and the next handshake presents it; connections already
/// established are unaffected (their keys were agreed at handshake time).
pub struct CertifiedKeyResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertifiedKeyResolver {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        CertifiedKeyResolver {
            current: ArcSwap::new(key),
        }
    }

    /// A resolver presenting `svid`.
    pub fn from_svid(svid: &Svid) -> Self {
        Self::new(svid.certified_key.clone())
    }

    /// Presents `key` from the next handshake on. The key is taken as
    /// is; load it through [`Svid`] to have it checked.
    pub fn store(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }

    /// Presents `svid` from the next handshake on (rotation).
    pub fn store_svid(&self, svid: &Svid) {
        self.store(svid.certified_key.clone());
    }

    /// The certificate and key presented now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl fmt::Debug for CertifiedKeyResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKeyResolver")
            .field("chain_len", &self.current.load().cert.len())
            .finish()
    }
}

impl ResolvesServerCert for CertifiedKeyResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ResolvesClientCert for CertifiedKeyResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let key = self.current.load_full();
        // Offering a certificate whose key cannot sign with any scheme the
        // server accepts would only fail later with a less clear error.
        key.key.choose_scheme(sigschemes).map(|_| key)
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The verified SPIFFE ID of the peer of an established connection —
/// also after session resumption, where rustls restores the peer's
/// certificates from the session. `None` before the handshake completes
/// or when the peer presented no certificate (never the case with the
/// configs of this crate, which require one).
pub fn peer_identity(conn: &rustls::CommonState) -> Option<SpiffeId> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let uri = uris.next()?;
    if uris.next().is_some() {
        return None;
    }
    SpiffeId::parse(uri).ok()
}
