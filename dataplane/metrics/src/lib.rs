//! Metric cells for a thread-per-core proxy.
//!
//! Every shard owns its own cells and is their only writer, so recording
//! never contends across cores: a [`Counter`] increment is a relaxed load and
//! a relaxed store on a cache line no other core writes (no `lock`-prefixed
//! instruction). The admin thread only reads, merging the shards' cells into
//! one Prometheus exposition at scrape time.
//!
//! Latency is recorded into a shard-local HDR histogram ([`LocalHistogram`])
//! that the shard publishes (copy + `arc-swap`) on a timer, so the admin
//! thread never reads a histogram while it is being written. A scrape sees
//! histograms at most one publish interval old; counters are always current.
#![forbid(unsafe_code)]

mod family;
mod histogram;
pub mod labeled;
pub mod prometheus;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

pub use family::{Family, Registry};
pub use histogram::{
    merge as histogram_merge, LocalHistogram, PublishedHistogram, HISTOGRAM_BUCKETS_MS,
};
pub use labeled::{
    merge_fixed, FixedHistogram, LabelValues, LabeledRegistry, OverflowCounters as ShardCounters,
    ShardLabeled,
};

/// A monotonically increasing counter with a single writer (its shard).
///
/// Invariant: only one thread calls [`Counter::add`] on a given cell. That is
/// what makes the non-atomic read-modify-write correct; readers on other
/// threads may see a slightly old value, never a torn one.
#[derive(Debug, Default)]
#[repr(align(8))]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A gauge with a single writer (its shard). Same invariant as [`Counter`].
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }
    #[inline]
    pub fn dec(&self) {
        self.add(-1)
    }
    #[inline]
    pub fn add(&self, n: i64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }
    #[inline]
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// A counter written by any thread (control-plane events: reloads, xDS).
/// Never use it on the request path.
#[derive(Debug, Default)]
pub struct SharedCounter(AtomicU64);

impl SharedCounter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

#[cfg(test)]
mod tests;
