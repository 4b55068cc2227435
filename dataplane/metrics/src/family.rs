#![allow(clippy::disallowed_types)] // this module is the one place a lock is allowed: registration and scrape, never per request
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One set of per-shard cells (`T`, e.g. a struct of counters) for one label
/// value (`key`, e.g. a listener or cluster name).
#[derive(Debug)]
pub struct Family<T> {
    pub key: Arc<str>,
    pub shard: usize,
    pub cells: Arc<T>,
}

/// Where shards register their cells so the admin thread can find them.
///
/// The lock is taken when a shard meets a new key for the first time (a new
/// listener or cluster) and at scrape time, never per request: shards cache
/// their `Arc<T>` locally after registering.
#[derive(Debug)]
pub struct Registry<T> {
    #[allow(clippy::disallowed_types)] // registration and scrape only, never per request
    entries: Mutex<Vec<Family<T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        #[allow(clippy::disallowed_types)]
        Registry {
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl<T: Default> Registry<T> {
    /// Register (or find) the cells of `shard` for `key`.
    pub fn register(&self, key: &Arc<str>, shard: usize) -> Arc<T> {
        let mut entries = self.lock();
        if let Some(f) = entries.iter().find(|f| f.shard == shard && *f.key == **key) {
            return f.cells.clone();
        }
        let cells = Arc::new(T::default());
        entries.push(Family {
            key: key.clone(),
            shard,
            cells: cells.clone(),
        });
        cells
    }
}

impl<T> Registry<T> {
    /// Visit every key once with all its shards' cells (keys sorted, so the
    /// exposition is stable).
    pub fn for_each_key(&self, mut f: impl FnMut(&str, &[&T])) {
        let entries = self.lock();
        let mut keys: Vec<&Arc<str>> = entries.iter().map(|e| &e.key).collect();
        keys.sort();
        keys.dedup();
        let mut cells: Vec<&T> = Vec::new();
        for k in keys {
            cells.clear();
            cells.extend(entries.iter().filter(|e| e.key == *k).map(|e| &*e.cells));
            f(k, &cells);
        }
    }

    /// Drop the cells of keys no longer in use (e.g. after a config change
    /// removed a cluster), when no shard holds them any more.
    pub fn retain_in_use(&self) {
        self.lock().retain(|f| Arc::strong_count(&f.cells) > 1);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Family<T>>> {
        // A panic while holding this lock cannot leave the Vec inconsistent
        // (push/retain), so poisoning is ignored.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
