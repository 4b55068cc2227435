//! Trust bundles: the set of root certificates a trust domain's SVIDs
//! chain to. During a root rotation the bundle holds the old and the new
//! root, so certificates from either verify until the old one is removed.

use std::{fmt, sync::Arc};

use arc_swap::ArcSwap;
use base64::Engine as _;
use rustls::pki_types::{pem::PemObject, CertificateDer, TrustAnchor};

/// An ordered, duplicate-free list of root certificates with their
/// parsed trust anchors (kept side by side so verification borrows a
/// ready slice).
#[derive(Clone, Default)]
pub struct TrustBundle {
    certs: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

/// Why a bundle could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("trust bundle PEM is malformed: {0}")]
    Pem(String),
    #[error("trust bundle PEM contains no CERTIFICATE block")]
    Empty,
    #[error("trust bundle certificate {index} is not a usable root: {reason}")]
    BadRoot { index: usize, reason: String },
}

impl TrustBundle {
    /// An empty bundle: nothing verifies against it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every `CERTIFICATE` block of `pem` (other block types are skipped);
    /// at least one is required.
    pub fn from_pem(pem: &[u8]) -> Result<Self, BundleError> {
        let mut bundle = Self::new();
        bundle.extend_pem(pem)?;
        Ok(bundle)
    }

    /// Roots from DER certificates, in order; duplicates are kept once.
    pub fn from_der(
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, BundleError> {
        let mut bundle = Self::new();
        for (index, cert) in certs.into_iter().enumerate() {
            bundle
                .add(cert)
                .map_err(|reason| BundleError::BadRoot { index, reason })?;
        }
        Ok(bundle)
    }

    /// Appends every certificate of `pem`; returns how many were new.
    /// Nothing is added when any block is bad.
    pub fn extend_pem(&mut self, pem: &[u8]) -> Result<usize, BundleError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BundleError::Pem(pem_error_text(&e)))?;
        if certs.is_empty() {
            return Err(BundleError::Empty);
        }
        let mut next = self.clone();
        let mut added = 0;
        for (index, cert) in certs.into_iter().enumerate() {
            if next
                .add(cert)
                .map_err(|reason| BundleError::BadRoot { index, reason })?
            {
                added += 1;
            }
        }
        *self = next;
        Ok(added)
    }

    /// Adds a root; `Ok(false)` when it was already there. The error says
    /// why the certificate cannot serve as a trust anchor.
    pub fn add(&mut self, cert: CertificateDer<'static>) -> Result<bool, String> {
        if self.contains(&cert) {
            return Ok(false);
        }
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| format!("not a parseable X.509 certificate ({e})"))?
            .to_owned();
        self.certs.push(cert);
        self.anchors.push(anchor);
        Ok(true)
    }

    /// Removes a root (compared by DER bytes); `false` when absent.
    pub fn remove(&mut self, cert: &[u8]) -> bool {
        match self.certs.iter().position(|c| c.as_ref() == cert) {
            Some(i) => {
                self.certs.remove(i);
                self.anchors.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, cert: &[u8]) -> bool {
        self.certs.iter().any(|c| c.as_ref() == cert)
    }

    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The roots, in bundle order.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The roots as webpki trust anchors, in bundle order.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The bundle as concatenated PEM `CERTIFICATE` blocks.
    pub fn to_pem(&self) -> String {
        let mut out = String::new();
        for cert in &self.certs {
            out.push_str(&cert_to_pem(cert));
        }
        out
    }
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("roots", &self.certs.len())
            .finish()
    }
}

/// A PEM parse error in words (rustls-pki-types prints raw byte arrays).
pub fn pem_error_text(err: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match err {
        E::MissingSectionEnd { end_marker } => format!(
            "the \"-----BEGIN {}-----\" block has no END line",
            String::from_utf8_lossy(end_marker)
        ),
        E::IllegalSectionStart { line } => {
            format!("malformed BEGIN line {:?}", String::from_utf8_lossy(line))
        }
        E::Base64Decode(e) => format!("invalid base64 inside a PEM block: {e}"),
        E::NoItemsFound => "no PEM block of the expected type".to_owned(),
        other => other.to_string(),
    }
}

/// One certificate as a PEM block (64-column base64, LF line endings).
pub fn cert_to_pem(cert: &[u8]) -> String {
    to_pem("CERTIFICATE", cert)
}

pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // base64 output is ASCII, so byte chunks are char boundaries.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// A trust bundle that can be replaced while configs that read it stay
/// in use: verifiers take a snapshot per handshake, so a handshake sees
/// one consistent bundle and the next handshake sees the new one.
#[derive(Clone)]
pub struct SharedTrustBundle(Arc<ArcSwap<TrustBundle>>);

impl SharedTrustBundle {
    pub fn new(bundle: TrustBundle) -> Self {
        SharedTrustBundle(Arc::new(ArcSwap::from_pointee(bundle)))
    }

    /// The current bundle, for the duration of one use (cheap: no
    /// reference count is touched on the fast path).
    pub fn load(&self) -> arc_swap::Guard<Arc<TrustBundle>> {
        self.0.load()
    }

    /// The current bundle, to keep.
    pub fn load_full(&self) -> Arc<TrustBundle> {
        self.0.load_full()
    }

    /// Replaces the bundle for every later handshake.
    pub fn store(&self, bundle: TrustBundle) {
        self.0.store(Arc::new(bundle));
    }
}

impl fmt::Debug for SharedTrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedTrustBundle")
            .field(&*self.load())
            .finish()
    }
}
