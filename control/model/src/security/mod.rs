//! `security.istio.io`: PeerAuthentication and AuthorizationPolicy.

pub mod authorization_policy;
pub mod peer_authentication;
