//! `ringmesh-ca`: the mesh CA core — signing material on disk, the trust
//! bundle, CSR signing into X.509 SVIDs, and proof of identity for the
//! signing API (bootstrap tokens behind an [`Authenticator`] trait). The
//! gRPC signing service and Kubernetes TokenReview are built on it
//! elsewhere; nothing here does I/O beyond the data directory.
//!
//! **Signing material** ([`CaStore::open`]): a self-signed ECDSA P-256 root
//! (CN "Ringmesh Root CA", O = trust domain, 10 years, `cA` with pathLen 1,
//! keyCertSign + cRLSign) generated on first start and written atomically
//! (`root-key.pem` mode 0600, `root-cert.pem`), loaded on later starts; or
//! a plug-in CA in Istio's `cacerts` layout (`ca-cert.pem`, `ca-key.pem`,
//! `root-cert.pem`, `cert-chain.pem`). Everything is validated on load and
//! errors name the file and the problem. `trust-bundle.pem` adds roots to
//! the bundle (root rotation: old and new roots both trusted).
//!
//! **Guarantees of [`CaStore::sign`]**: the CSR's self-signature is
//! verified (SHA-1 and other weak algorithms refused) and its key must be
//! ECDSA P-256 or RSA 2048–8192; the issued leaf has an empty subject, one
//! critical SAN — the URI of the *proven* identity, never a requested one —
//! critical `cA=false`, key usage digitalSignature + keyEncipherment, EKU
//! serverAuth + clientAuth, a random 128-bit serial, the issuer's key id,
//! and validity from one minute before now to now + TTL, capped by the
//! configured maximum and by the signing chain's expiry. Requested
//! subjects, SANs, extensions and attributes that were not granted are
//! reported in [`IssuedCert::dropped`].
//!
//! **Identity type**: [`Identity`] is `ringmesh_tls::SpiffeId`. The data
//! plane must not depend on the CA, so the type lives in `ringmesh-tls`
//! and this crate depends on it (as it does for [`TrustBundle`]).
//!
//! Not done yet: CRLs/OCSP (SVIDs are short-lived instead), HSM/KMS keys,
//! reloading changed files without a restart, automatic root rotation
//! (today an operator adds the new root to `trust-bundle.pem`, waits for
//! bundles to propagate, then swaps the signing material), and the
//! Kubernetes TokenReview [`Authenticator`].

#![forbid(unsafe_code)]

mod fsutil;
mod keys;
mod sign;
mod store;
mod token;
mod x509;

pub use ringmesh_tls::{SpiffeId as Identity, TrustBundle};
pub use sign::{Dropped, IssuedCert, SignError, TtlCap, CLOCK_SKEW};
pub use store::{
    CaError, CaMode, CaOptions, CaStore, FileProblem, CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT,
    ROOT_COMMON_NAME, ROOT_KEY, TRUST_BUNDLE,
};
pub use token::{
    AuthError, Authenticator, TokenAuthority, TokenError, TokenKeyError, TOKEN_KEY, TOKEN_KEY_LEN,
};

/// A PEM block of `der` under `label`.
#[cfg(test)]
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
