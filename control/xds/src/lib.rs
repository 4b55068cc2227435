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
//! Cost per push: resources are encoded once by the caller and shared by
//! `Arc` ([`XdsServer::publish_group`] shares one snapshot between many
//! scopes); building a response copies each sent resource's bytes once
//! (the generated `Any` owns a `Vec<u8>`). A hand-written codec could
//! write the shared bytes straight to the socket if that ever shows up.
//!
//! Cost per stream: per type, the published map it last diffed against
//! (one `Arc`) and its subscribed names (interned `Arc<str>`), not a
//! name → version record; a new publish is diffed against that map in
//! one ordered pass (unchanged resources are usually the same `Arc`). A
//! stream's status is read from its state only when asked for.
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
