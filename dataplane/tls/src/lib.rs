//! `ringmesh-tls`: the sidecar's SPIFFE mTLS, as plain rustls
//! configurations (no runtime dependency: the shards drive
//! `rustls::ServerConnection`/`ClientConnection` over their own sockets).
//!
//! - [`SpiffeId`]: the mesh identity `spiffe://<td>/ns/<ns>/sa/<sa>`,
//!   strictly parsed. It lives here, not in the CA crate, because the data
//!   plane must not depend on the control plane; `ringmesh-ca` depends on
//!   this crate for it (and for [`TrustBundle`]) instead of duplicating it.
//! - [`SpiffeServerVerifier`] / [`SpiffeClientVerifier`]: rustls verifiers
//!   enforcing the X.509-SVID rules on top of webpki chain verification
//!   (see [`verify`] for the exact list), the server verifier against the
//!   identities allowed for a destination.
//! - [`server_config`] / [`client_config`]: TLS 1.3 preferred, 1.2
//!   minimum, ALPN `h2`/`http/1.1`, session resumption, mandatory client
//!   certificates; see [`config`] for resumption caveats.
//! - [`CertifiedKeyResolver`] and [`SharedTrustBundle`]: the SVID and the
//!   bundle behind `arc-swap`, so rotation swaps them under live configs —
//!   the next handshake uses the new ones, established connections carry on.
//! - [`generate_key_and_csr`]: the proxy's key and CSR; the key never
//!   leaves the proxy.
//!
//! Guarantees: a handshake that completes with these configs authenticated
//! a peer holding the key of an unexpired, non-CA leaf chaining to the
//! current bundle, carrying exactly one URI SAN that is a mesh SPIFFE ID of
//! the configured trust domain, with the EKU of its role — and, for
//! outbound connections, an ID in the allowed set.
//!
//! Not done yet: revocation (SVIDs are short-lived instead), federation
//! with other trust domains (one trust domain per config), authorization
//! policy (the caller decides what the peer ID may do), PERMISSIVE-mode
//! detection of TLS vs plaintext (the listener's job), and SDS: loading
//! and rotating files or streams into the resolver is the caller's.

#![forbid(unsafe_code)]

pub mod bundle;
pub mod config;
pub mod csr;
pub mod id;
pub mod svid;
pub mod verify;

pub use bundle::{cert_to_pem, pem_error_text, BundleError, SharedTrustBundle, TrustBundle};
pub use config::{
    client_config, provider, server_config, ConfigError, ALPN_H2, ALPN_HTTP11, DEFAULT_ALPN,
};
pub use csr::{generate_key_and_csr, KeyAndCsr};
pub use id::{IdError, SpiffeId};
pub use svid::{peer_identity, serial_hex, CertifiedKeyResolver, Svid, SvidLoadError};
pub use verify::{
    check_svid_leaf, svid_error, verify_svid, Role, SpiffeClientVerifier, SpiffeServerVerifier,
    SvidError,
};
