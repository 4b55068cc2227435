//! Key generation in the proxy: a fresh ECDSA P-256 key and a CSR for it.
//! The private key never leaves the proxy; only the CSR goes to the CA,
//! which signs the public key for the identity the caller *proved*
//! (whatever the CSR asks for is only a request).

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::id::SpiffeId;

/// A new private key and the CSR carrying its public key.
pub struct KeyAndCsr {
    /// PKCS#8 DER.
    pub key_der: PrivatePkcs8KeyDer<'static>,
    /// PKCS#8 PEM (`PRIVATE KEY`).
    pub key_pem: String,
    pub csr_der: CertificateSigningRequestDer<'static>,
    /// `CERTIFICATE REQUEST` PEM.
    pub csr_pem: String,
}

impl KeyAndCsr {
    /// The key in the form rustls loads.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }
}

impl fmt::Debug for KeyAndCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAndCsr")
            .field("key", &"[elided]")
            .field("csr_len", &self.csr_der.as_ref().len())
            .finish()
    }
}

/// Generates an ECDSA P-256 key and a CSR with an empty subject and the
/// single URI SAN `identity` (what Istio's agent sends).
pub fn generate_key_and_csr(identity: &SpiffeId) -> Result<KeyAndCsr, rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(identity.to_string().try_into()?)];
    let csr = params.serialize_request(&key)?;
    let csr_pem = csr.pem()?;
    let key_pem = key.serialize_pem();
    Ok(KeyAndCsr {
        key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        key_pem,
        csr_der: csr.der().clone(),
        csr_pem,
    })
}
