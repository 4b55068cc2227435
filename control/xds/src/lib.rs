//! `ringmesh-xds`: the control plane's ADS server core. It serves Envoy
//! xDS v3 over gRPC — Delta ADS (`DeltaAggregatedResources`) first,
//! state-of-the-world ADS (`StreamAggregatedResources`) for compatibility
//! — to any xDS client, a real Envoy included. Callers publish complete,
//! versioned [`Resources`] per [`ScopeKey`] (a group of proxies that get
//! the same configuration); each connected stream gets only what its
//! proxy lacks, and the server tracks every ACK and NACK per stream and
//! type for `ringmesh proxy-status` ([`XdsServer::status`]).
//!
//! ```text
//!  translation ──publish(scope, Resources)──▶ Debouncer ──▶ XdsServer
//!                                                            │ scope → watch<Snapshot>
//!                          one task per stream ◀─────────────┘
//!                          DeltaStream / SotwStream state machine
//!                          (subscriptions, nonces, ACK/NACK, diff)
//! ```
//!
//! Invariants:
//! - A resource's version comes from the source state the caller
//!   provides ([`content_version`] hashes canonical bytes), never from a
//!   prost encoding: map fields encode in a different order every time.
//! - A stream is answered only after its scope's first publish
//!   ([`NotReady`]), so a restarted control plane never answers a
//!   reconnecting proxy from partial state.
//! - A NACKed version is not offered again; the next version is. The
//!   proxy keeps its last good configuration meanwhile.
//! - The generated Envoy types stay inside the `wire` module.
//!
//! Cost per push: resources are encoded once per publish and shared by
//! `Arc`; building a response copies each sent resource's bytes once
//! (the generated `Any` owns a `Vec<u8>`). A hand-written codec could
//! write the shared bytes straight to the socket if that ever shows up.
#![forbid(unsafe_code)]

mod debounce;
mod delta;
mod resource;
mod scope;
mod server;
mod sotw;
mod status;
#[cfg(feature = "status-api")]
mod status_api;
mod wire;

#[cfg(feature = "test-util")]
pub mod testing;

pub use debounce::{DebounceConfig, Debouncer};
pub use resource::{content_version, Resource, Resources, TypeUrl};
pub use scope::{NodeInfo, ScopeFn, ScopeKey};
pub use server::{NotReady, ServerBuilder, XdsServer};
pub use status::{
    Acked, ErrorDetail, Nack, Protocol, Sent, StreamStatus, Subscription, SyncState, TypeStatus,
};
#[cfg(feature = "status-api")]
pub use status_api::{reason_for, status_service, StatusService};
pub use wire::{pack, unpack, Ads, AdsService};
