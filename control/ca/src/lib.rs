//! `ringmesh-ca`: the mesh CA core — signing material on disk, the trust
//! bundle, CSR signing into X.509 SVIDs, and proof of identity for the
//! signing API (bootstrap tokens behind an [`Authenticator`] trait). The
//! Kubernetes TokenReview is built on it elsewhere; without the `grpc`
//! feature nothing here does I/O beyond the data directory.
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
//! **Signing service** (feature `grpc`): `ca_service` serves
//! `ringmesh.ca.v1.CertificateService` (`proto/ringmesh/ca/v1/ca.proto`)
//! over a [`CaStore`] and an [`Authenticator`] — bearer credential from
//! the `authorization` metadata, the documented status codes, a
//! per-identity rate limit, CSRs claiming unproven SANs or CA authority
//! refused (`CsrPolicy`), every issuance and refusal logged.
//! `request_certificate` is the proxy's client for it (feature
//! `grpc-client` alone gives the client without the server code).
//!
//! **Bootstrap tokens** (file mode): [`TokenAuthority::open`] loads the
//! HMAC key `token-key` from the data directory, creating it on first use.
//! Whoever mints tokens and the signing service must open the *same*
//! directory. A `token` subcommand does:
//!
//! ```no_run
//! # fn f(data_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use ringmesh_ca::{Identity, TokenAuthority};
//!
//! let authority = TokenAuthority::open(data_dir)?;
//! let identity = Identity::new("cluster.local", "default", "reviews")?;
//! println!("{}", authority.issue(&identity, Duration::from_secs(24 * 3600)));
//! # Ok(()) }
//! ```
//!
//! A token proves its identity until it expires; there is no revocation
//! short of replacing `token-key` (which invalidates every token).
//!
//! **Identity type**: [`Identity`] is `ringmesh_tls::SpiffeId`. The data
//! plane must not depend on the CA, so the type lives in `ringmesh-tls`
//! and this crate depends on it (as it does for [`TrustBundle`]).
//!
//! Not done yet: CRLs/OCSP (SVIDs are short-lived instead), HSM/KMS keys,
//! reloading changed files without a restart, automatic root rotation
//! (today an operator adds the new root to `trust-bundle.pem`, waits for
//! bundles to propagate, then swaps the signing material), the
//! Kubernetes TokenReview [`Authenticator`], and TLS on the signing API
//! (the client speaks `http://` only, so a bootstrap token crosses the
//! network in clear; keep the control plane on a trusted network or
//! loopback until then).

#![forbid(unsafe_code)]

#[cfg(feature = "grpc-client")]
mod client;
mod fsutil;
mod keys;
#[cfg(feature = "grpc")]
mod service;
mod serving;
mod sign;
mod store;
mod token;
mod x509;

#[cfg(feature = "grpc-client")]
pub use client::{request_certificate, ClientError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
#[cfg(feature = "grpc")]
pub use service::{
    ca_service, CaService, CsrPolicy, RateLimit, ServiceOptions, AUTHORIZATION,
    DEFAULT_MAX_CSR_BYTES,
};

pub use ringmesh_tls::{SpiffeId as Identity, TrustBundle};
pub use serving::ServingCert;
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
