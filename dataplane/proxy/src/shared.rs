//! State shared between the shards and the control thread. Everything here
//! is either immutable, swapped atomically (`arc-swap`), or a flag: no lock
//! is taken on the request path.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use arc_swap::ArcSwap;
use ringmesh_config::Snapshot;
use ringmesh_runtime::Driver;

use crate::{identity::IdentityState, stats::Stats};

pub struct Shared {
    /// The live configuration. Shards `load_full()` it once per request (or
    /// connection, for TCP) and keep that `Arc` until they finish with it.
    pub snapshot: ArcSwap<Snapshot>,
    /// Set once, on SIGTERM/SIGINT: stop accepting, close keep-alive
    /// connections after their current exchange.
    pub draining: AtomicBool,
    pub shards: usize,
    /// Per shard: the version of the last snapshot whose listeners it has
    /// all bound (`u64::MAX`: none yet). Ready means every shard has caught
    /// up with the live snapshot, not merely with some earlier one.
    pub shard_ready: Vec<AtomicU64>,
    /// Driver per shard (index = shard), set when the shard starts.
    pub drivers: Vec<std::sync::OnceLock<Driver>>,
    pub stats: Stats,
    /// Cleared while a configured control plane has not delivered a first
    /// configuration: the proxy is not ready until it has.
    pub xds_synced: AtomicBool,
    /// This proxy's certificate and the TLS configurations built on it.
    pub identity: IdentityState,
}

impl Shared {
    pub fn new(snapshot: Snapshot, shards: usize) -> Arc<Shared> {
        let identity = IdentityState::new(snapshot.identity.is_some());
        Arc::new(Shared {
            identity,
            snapshot: ArcSwap::from_pointee(snapshot),
            draining: AtomicBool::new(false),
            shards,
            shard_ready: (0..shards).map(|_| AtomicU64::new(u64::MAX)).collect(),
            drivers: (0..shards).map(|_| std::sync::OnceLock::new()).collect(),
            stats: Stats::default(),
            xds_synced: AtomicBool::new(true),
        })
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn is_ready(&self) -> bool {
        !self.is_draining()
            && self.xds_synced.load(Ordering::Acquire)
            && self.identity.is_ready()
            && {
                let live = self.snapshot.load().version;
                self.shard_ready
                    .iter()
                    .all(|r| r.load(Ordering::Acquire) == live)
            }
    }
}
