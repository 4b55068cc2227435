//! Traffic interception for the Ringmesh sidecar, the way Istio's init
//! container does it: `nat`-table rules in a pod's network namespace
//! redirect the application's outbound TCP to the proxy's outbound capture
//! port (15001) and inbound TCP to its inbound capture port (15006), except
//! the proxy's own traffic (by UID/GID 1337), localhost, and whatever the
//! operator excludes. The proxy then reads where each connection was going
//! with [`original_dst`].
//!
//! The rules are data ([`rules::rules`] builds a list of [`rules::Rule`]s
//! from a [`Config`]); [`restore`] renders them as `iptables-restore`
//! input, and [`exec`] applies that in one atomic `iptables-restore
//! --noflush` call, idempotently, and removes it again (`--cleanup`). The
//! `ringmesh-init` binary is the command line around it; `README.md` in this
//! folder explains every rule.
#![deny(unsafe_code)]

pub mod cidr;
pub mod config;
pub mod exec;
mod original_dst;
pub mod restore;
pub mod rules;

pub use cidr::Cidr;
pub use config::{Config, ConfigError, Selection};
pub use original_dst::original_dst;
pub use rules::Family;

#[cfg(test)]
mod tests;
