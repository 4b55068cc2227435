//! `ringmesh-xds-client`: the proxy's Delta ADS client. It subscribes to
//! listeners and clusters (wildcard) and to the route configurations, load
//! assignments and SDS trust bundle (`ROOTCA`) they reference (by name), translates the Envoy v3
//! resources it holds into the neutral [`ringmesh_config::model::ProxyConfig`]
//! ([`translate`]) and hands it to the caller, which compiles it with
//! `ringmesh_config::compile` exactly like the static file and publishes
//! the snapshot. What does not translate or compile is NACKed with the
//! resource, field and reason, and the last good configuration keeps
//! serving — across control-plane outages and restarts too ([`client`]).
//!
//! Runs on the proxy's control thread (tokio current-thread); nothing
//! here touches a data-plane thread. The generated Envoy types stay in
//! the private `wire` module.
#![forbid(unsafe_code)]

pub mod client;
pub mod translate;
mod wire;

pub use client::{run, run_with, ClientOptions, NodeIdentity};
pub use translate::{Converted, ResourceError, ResourceType, XdsState};
