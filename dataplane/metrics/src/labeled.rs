#![allow(clippy::disallowed_types)] // the Mutex is taken when a shard meets a new label set and at scrape, never per request
//! Label sets with bounded cardinality, per shard.
//!
//! A shard looks its cells up by a small `Copy` key (ids it interned
//! itself); the label strings are built only the first time a key is seen,
//! when the cells are also published for the admin thread. Past `cap` label
//! sets a shard stops creating new ones: further keys share one overflow
//! set (labels chosen by the caller, e.g. all `unknown`) and are counted.

use std::{
    cell::RefCell,
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use crate::Counter;

/// Label values of one set, in the metric family's label order.
pub type LabelValues = Arc<[Box<str>]>;

/// Where shards publish their label sets (one per process and family).
#[derive(Debug)]
pub struct LabeledRegistry<T> {
    entries: Mutex<Vec<(LabelValues, Arc<T>)>>,
    /// Keys folded into an overflow set, all shards.
    pub overflow: Arc<OverflowCounters>,
}

/// One counter per shard (single writer each), summed on scrape.
#[derive(Debug, Default)]
pub struct OverflowCounters {
    cells: Mutex<Vec<Arc<Counter>>>,
}

impl OverflowCounters {
    /// A new counter for one shard.
    pub fn register(&self) -> Arc<Counter> {
        let c = Arc::new(Counter::default());
        self.cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(c.clone());
        c
    }

    pub fn total(&self) -> u64 {
        self.cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|c| c.get())
            .sum()
    }
}

impl<T> Default for LabeledRegistry<T> {
    fn default() -> Self {
        LabeledRegistry {
            entries: Mutex::new(Vec::new()),
            overflow: Default::default(),
        }
    }
}

impl<T> LabeledRegistry<T> {
    fn lock(&self) -> MutexGuard<'_, Vec<(LabelValues, Arc<T>)>> {
        // push-only: a panic while holding the lock leaves it consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Visit each distinct label set once with the cells of every shard
    /// that has it, sorted by label values (a stable exposition).
    pub fn for_each_set(&self, mut f: impl FnMut(&[Box<str>], &[&T])) {
        let entries = self.lock();
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by(|&a, &b| entries[a].0.cmp(&entries[b].0));
        let mut i = 0;
        let mut group: Vec<&T> = Vec::new();
        while i < order.len() {
            let labels = &entries[order[i]].0;
            group.clear();
            while i < order.len() && entries[order[i]].0 == *labels {
                group.push(&entries[order[i]].1);
                i += 1;
            }
            f(labels, &group);
        }
    }

    /// Number of (shard, label set) entries.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A shard's view: its own label sets by key. Not `Sync`.
#[derive(Debug)]
pub struct ShardLabeled<K, T> {
    map: RefCell<HashMap<K, Arc<T>>>,
    overflow_cells: RefCell<Option<Arc<T>>>,
    overflow_count: Arc<Counter>,
    cap: usize,
    registry: Arc<LabeledRegistry<T>>,
}

impl<K: Hash + Eq + Copy, T: Default> ShardLabeled<K, T> {
    /// At most `cap` label sets on this shard (plus the overflow set).
    pub fn new(registry: Arc<LabeledRegistry<T>>, cap: usize) -> Self {
        ShardLabeled {
            map: Default::default(),
            overflow_cells: Default::default(),
            overflow_count: registry.overflow.register(),
            cap,
            registry,
        }
    }

    /// Run `f` on the cells of `key`, creating them (with the labels
    /// `labels()` returns) the first time. Past the cap, `f` gets the
    /// overflow set (labels `overflow_labels()`) and the overflow counter
    /// goes up. No atomic read-modify-write on the hit path.
    #[inline]
    pub fn with<R>(
        &self,
        key: K,
        labels: impl FnOnce() -> Vec<Box<str>>,
        overflow_labels: impl FnOnce() -> Vec<Box<str>>,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        if let Some(c) = self.map.borrow().get(&key) {
            return f(c);
        }
        if self.map.borrow().len() >= self.cap {
            self.overflow_count.inc();
            let mut o = self.overflow_cells.borrow_mut();
            let cells = o.get_or_insert_with(|| self.publish(overflow_labels()));
            return f(cells);
        }
        let cells = self.publish(labels());
        let r = f(&cells);
        self.map.borrow_mut().insert(key, cells);
        r
    }

    fn publish(&self, labels: Vec<Box<str>>) -> Arc<T> {
        let cells = Arc::new(T::default());
        self.registry.lock().push((labels.into(), cells.clone()));
        cells
    }

    /// Label sets held by this shard (without the overflow set).
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A histogram with fixed bucket bounds, written by one shard: one
/// [`Counter`] per bucket (non-cumulative), plus the sum and the count.
#[derive(Debug)]
pub struct FixedHistogram<const N: usize> {
    pub buckets: [Counter; N],
    /// Values above the last bound.
    pub overflow: Counter,
    /// Sum, in the unit the caller chose (see `record`).
    pub sum: Counter,
}

impl<const N: usize> Default for FixedHistogram<N> {
    fn default() -> Self {
        FixedHistogram {
            buckets: std::array::from_fn(|_| Counter::default()),
            overflow: Counter::default(),
            sum: Counter::default(),
        }
    }
}

impl<const N: usize> FixedHistogram<N> {
    /// Record `value` (compared against `bounds`, same unit as `value`) and
    /// add `sum_value` to the sum (a finer unit, e.g. µs for ms buckets).
    #[inline]
    pub fn record(&self, bounds: &[u64; N], value: u64, sum_value: u64) {
        match bounds.iter().position(|&b| value <= b) {
            Some(i) => self.buckets[i].inc(),
            None => self.overflow.inc(),
        }
        self.sum.add(sum_value);
    }
}

/// Several shards' histograms summed: non-cumulative bucket counts,
/// count and sum.
pub fn merge_fixed<const N: usize>(parts: &[&FixedHistogram<N>]) -> ([u64; N], u64, u64) {
    let mut buckets = [0u64; N];
    let mut count = 0;
    let mut sum = 0;
    for p in parts {
        for (b, c) in buckets.iter_mut().zip(p.buckets.iter()) {
            let v = c.get();
            *b += v;
            count += v;
        }
        count += p.overflow.get();
        sum += p.sum.get();
    }
    (buckets, count, sum)
}
