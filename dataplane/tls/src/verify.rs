//! X.509-SVID verification for rustls: [`SpiffeServerVerifier`] (used by
//! the client side of a connection, to check the server) and
//! [`SpiffeClientVerifier`] (used by the server side, to check clients).
//!
//! Both run the same two stages on every full handshake:
//!
//! 1. **Chain** — webpki path building from the leaf through the
//!    presented intermediates to a root of the current trust bundle:
//!    signatures, validity periods (at the handshake's `now`), basic
//!    constraints and path lengths, name constraints, and the EKU of every
//!    certificate on the path where it has one.
//! 2. **SPIFFE** — on the leaf: exactly one URI SAN (other SAN types are
//!    allowed by the X.509-SVID spec and ignored), which parses strictly as
//!    a mesh SPIFFE ID in the expected trust domain; `cA` false; key usage
//!    present with `digitalSignature` and without `keyCertSign`/`cRLSign`;
//!    an EKU extension that lists `serverAuth` (server certificates) or
//!    `clientAuth` (client certificates). The server verifier then checks
//!    the peer ID against the allowed set.
//!
//! The DNS name the client dialled (SNI) is not checked: mesh identity is
//! the SPIFFE ID, and SNI only routes. Revocation is not checked: SVIDs
//! live for hours, which is what bounds a stolen key.

use std::sync::Arc;

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{CertificateDer, ServerName, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

use crate::{
    bundle::SharedTrustBundle,
    id::{IdError, SpiffeId},
};

/// Which side of a connection a certificate authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A server certificate: its EKU must list `serverAuth`.
    Server,
    /// A client certificate: its EKU must list `clientAuth`.
    Client,
}

impl Role {
    fn eku_name(self) -> &'static str {
        match self {
            Role::Server => "serverAuth",
            Role::Client => "clientAuth",
        }
    }
}

/// Why a peer certificate is not an acceptable X.509-SVID. Carried inside
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))` when it
/// is not one of rustls' own categories; [`svid_error`] gets it back out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SvidError {
    #[error("certificate is not valid DER X.509: {0}")]
    BadEncoding(String),
    #[error("certificate chain does not verify against the trust bundle: {0}")]
    Chain(webpki::Error),
    #[error("leaf certificate is a CA certificate (basicConstraints cA=true)")]
    LeafIsCa,
    #[error("leaf certificate has no URI SAN, so no SPIFFE ID")]
    NoUriSan,
    #[error("leaf certificate has {count} URI SANs; an X.509-SVID has exactly one")]
    MultipleUriSans { count: usize },
    #[error("URI SAN {uri:?} is not a mesh SPIFFE ID: {reason}")]
    BadSpiffeId { uri: String, reason: IdError },
    #[error("peer {peer} is in trust domain {found:?}, expected {expected:?}")]
    WrongTrustDomain {
        peer: SpiffeId,
        expected: String,
        found: String,
    },
    #[error("leaf certificate's extended key usage does not include {required}")]
    MissingEku { required: &'static str },
    #[error("leaf certificate's key usage is not that of an SVID: {reason}")]
    BadKeyUsage { reason: &'static str },
    #[error("peer {peer} is not one of the identities allowed for this destination: {allowed}")]
    NotAllowed { peer: SpiffeId, allowed: String },
}

/// The [`SvidError`] inside a rustls error, if that is what it carries.
pub fn svid_error(err: &rustls::Error) -> Option<&SvidError> {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<SvidError>()
        }
        _ => None,
    }
}

impl From<SvidError> for rustls::Error {
    fn from(err: SvidError) -> Self {
        let cert_err = match err {
            SvidError::BadEncoding(_) => CertificateError::BadEncoding,
            other => CertificateError::Other(OtherError(Arc::new(other))),
        };
        rustls::Error::InvalidCertificate(cert_err)
    }
}

/// webpki's chain errors in rustls' categories (so the peer gets the
/// usual alert: `certificate_expired`, `unknown_ca`, ...); a CA leaf or a
/// leaf EKU without the role's purpose as the same [`SvidError`] the
/// SPIFFE stage reports; the rest as [`SvidError::Chain`].
fn chain_error(err: webpki::Error, role: Role) -> rustls::Error {
    use webpki::Error as E;
    let cert_err = match err {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        E::CertExpired { time, not_after } => CertificateError::ExpiredContext { time, not_after },
        E::InvalidCertValidity => CertificateError::Expired,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        E::CaUsedAsEndEntity => CertificateError::Other(OtherError(Arc::new(SvidError::LeafIsCa))),
        #[allow(deprecated)]
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            CertificateError::Other(OtherError(Arc::new(SvidError::MissingEku {
                required: role.eku_name(),
            })))
        }
        other => CertificateError::Other(OtherError(Arc::new(SvidError::Chain(other)))),
    };
    rustls::Error::InvalidCertificate(cert_err)
}

/// What the SPIFFE stage needs from a leaf certificate.
struct LeafFacts {
    uri_sans: Vec<String>,
    is_ca: bool,
    /// `None` when the certificate has no key usage extension.
    key_usage: Option<(bool, bool)>, // (digitalSignature, keyCertSign || cRLSign)
    /// `None` when the certificate has no EKU extension.
    eku: Option<(bool, bool)>, // (serverAuth, clientAuth)
}

fn leaf_facts(der: &[u8]) -> Result<LeafFacts, SvidError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| SvidError::BadEncoding(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SvidError::BadEncoding(
            "trailing bytes after the certificate".into(),
        ));
    }
    let bad = |e: x509_parser::error::X509Error| SvidError::BadEncoding(e.to_string());
    let uri_sans = match cert.subject_alternative_name().map_err(bad)? {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some((*uri).to_owned()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    let is_ca = cert
        .basic_constraints()
        .map_err(bad)?
        .is_some_and(|bc| bc.value.ca);
    let key_usage = cert.key_usage().map_err(bad)?.map(|ku| {
        let ku = ku.value;
        (ku.digital_signature(), ku.key_cert_sign() || ku.crl_sign())
    });
    let eku = cert.extended_key_usage().map_err(bad)?.map(|eku| {
        (
            eku.value.server_auth || eku.value.any,
            eku.value.client_auth || eku.value.any,
        )
    });
    Ok(LeafFacts {
        uri_sans,
        is_ca,
        key_usage,
        eku,
    })
}

/// The SPIFFE stage on a leaf certificate (no chain verification): the
/// leaf's identity if it is a well-formed X.509-SVID for `role` in
/// `trust_domain`.
pub fn check_svid_leaf(der: &[u8], role: Role, trust_domain: &str) -> Result<SpiffeId, SvidError> {
    let facts = leaf_facts(der)?;
    if facts.is_ca {
        return Err(SvidError::LeafIsCa);
    }
    match facts.key_usage {
        None => {
            return Err(SvidError::BadKeyUsage {
                reason: "the key usage extension is missing",
            })
        }
        Some((false, _)) => {
            return Err(SvidError::BadKeyUsage {
                reason: "digitalSignature is not set",
            })
        }
        Some((_, true)) => {
            return Err(SvidError::BadKeyUsage {
                reason: "keyCertSign or cRLSign is set",
            })
        }
        Some((true, false)) => {}
    }
    let eku_ok = match (facts.eku, role) {
        (None, _) => false,
        (Some((server, _)), Role::Server) => server,
        (Some((_, client)), Role::Client) => client,
    };
    if !eku_ok {
        return Err(SvidError::MissingEku {
            required: role.eku_name(),
        });
    }
    let uri = match facts.uri_sans.as_slice() {
        [] => return Err(SvidError::NoUriSan),
        [one] => one,
        many => return Err(SvidError::MultipleUriSans { count: many.len() }),
    };
    let id = SpiffeId::parse(uri).map_err(|reason| SvidError::BadSpiffeId {
        uri: uri.clone(),
        reason,
    })?;
    if id.trust_domain() != trust_domain {
        return Err(SvidError::WrongTrustDomain {
            expected: trust_domain.to_owned(),
            found: id.trust_domain().to_owned(),
            peer: id,
        });
    }
    Ok(id)
}

/// Both stages: the chain to `bundle` at `now`, then the SPIFFE checks.
/// Returns the verified peer identity.
pub fn verify_svid(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    bundle: &SharedTrustBundle,
    trust_domain: &str,
    role: Role,
    now: UnixTime,
    provider: &CryptoProvider,
) -> Result<SpiffeId, rustls::Error> {
    let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|e| chain_error(e, role))?;
    let roots = bundle.load();
    // webpki checks the EKU of every certificate on the path where one is
    // present (roots and intermediates usually have none); the leaf's EKU
    // is then required outright in `check_svid_leaf`.
    let usage = match role {
        Role::Server => webpki::KeyUsage::server_auth(),
        Role::Client => webpki::KeyUsage::client_auth(),
    };
    cert.verify_for_usage(
        provider.signature_verification_algorithms.all,
        roots.anchors(),
        intermediates,
        now,
        usage,
        None,
        None,
    )
    .map_err(|e| chain_error(e, role))?;
    Ok(check_svid_leaf(end_entity, role, trust_domain)?)
}

/// Checks servers (installed in a `ClientConfig`): a valid SVID of the
/// trust domain whose ID is in the allowed set (empty set: any workload of
/// the trust domain).
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    bundle: SharedTrustBundle,
    trust_domain: String,
    allowed: Vec<SpiffeId>,
    provider: Arc<CryptoProvider>,
}

impl SpiffeServerVerifier {
    pub fn new(
        bundle: SharedTrustBundle,
        trust_domain: impl Into<String>,
        allowed: Vec<SpiffeId>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        SpiffeServerVerifier {
            bundle,
            trust_domain: trust_domain.into(),
            allowed,
            provider,
        }
    }

    pub fn allowed(&self) -> &[SpiffeId] {
        &self.allowed
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let peer = verify_svid(
            end_entity,
            intermediates,
            &self.bundle,
            &self.trust_domain,
            Role::Server,
            now,
            &self.provider,
        )?;
        if !self.allowed.is_empty() && !self.allowed.contains(&peer) {
            let allowed = self
                .allowed
                .iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SvidError::NotAllowed { peer, allowed }.into());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Checks clients (installed in a `ServerConfig`): client certificates
/// are mandatory and must be valid SVIDs of the trust domain; any
/// workload of the trust domain is accepted here — authorization of the
/// peer ID ([`crate::peer_identity`]) is the caller's job.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    bundle: SharedTrustBundle,
    trust_domain: String,
    provider: Arc<CryptoProvider>,
}

impl SpiffeClientVerifier {
    pub fn new(
        bundle: SharedTrustBundle,
        trust_domain: impl Into<String>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        SpiffeClientVerifier {
            bundle,
            trust_domain: trust_domain.into(),
            provider,
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No CA names are sent: the bundle can change between handshakes and
    /// a mesh client has exactly one SVID to offer anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        verify_svid(
            end_entity,
            intermediates,
            &self.bundle,
            &self.trust_domain,
            Role::Client,
            now,
            &self.provider,
        )?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
