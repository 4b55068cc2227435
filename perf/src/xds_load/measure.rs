//! Convergence bookkeeping: what a change must look like at a proxy, who
//! has seen it and when, and the summary statistics.
//!
//! A change is an endpoint added to or removed from a service. It has
//! converged at a proxy when that proxy received — and ACKed — a load
//! assignment of the service's cluster that contains the endpoint (added)
//! or no longer contains it (removed). Checking the content, not just the
//! arrival of *some* update, matters under churn: a push caused by an
//! earlier change of the same service must not count for a later one.
//! The driver keeps every change monotone (an address is added once and
//! never removed in the same run; removals take addresses that existed
//! before the run), so a condition that held once holds from then on.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use crate::xds_load::catalog::Sym;

/// What one change must look like at every affected proxy.
#[derive(Debug)]
pub struct Expectation {
    pub id: usize,
    /// The load assignment that shows it.
    pub cluster: Sym,
    pub address: IpAddr,
    /// Added (the address must be present) or removed (absent).
    pub present: bool,
    /// When the registry file was replaced.
    pub t0: Instant,
    /// Proxies subscribed to `cluster` at `t0`.
    pub affected: HashSet<u32>,
    converged: Mutex<HashMap<u32, Duration>>,
}

impl Expectation {
    pub fn new(
        id: usize,
        cluster: Sym,
        address: IpAddr,
        present: bool,
        t0: Instant,
        affected: HashSet<u32>,
    ) -> Expectation {
        Expectation {
            id,
            cluster,
            address,
            present,
            t0,
            affected,
            converged: Mutex::new(HashMap::new()),
        }
    }

    /// `proxy` received (and ACKed, at `at`) an assignment of `cluster`
    /// with `addresses` (sorted). Records the first time it satisfies
    /// this expectation; returns whether it did now.
    pub fn observe(&self, proxy: u32, addresses: &[IpAddr], at: Instant) -> bool {
        if !self.affected.contains(&proxy)
            || addresses.binary_search(&self.address).is_ok() != self.present
        {
            return false;
        }
        let mut c = lock(&self.converged);
        if c.contains_key(&proxy) {
            return false;
        }
        c.insert(proxy, at.saturating_duration_since(self.t0));
        true
    }

    pub fn converged_count(&self) -> usize {
        lock(&self.converged).len()
    }

    pub fn is_converged(&self) -> bool {
        self.converged_count() == self.affected.len()
    }

    /// Each converged proxy's time from the change to its ACK.
    pub fn latencies(&self) -> Vec<Duration> {
        lock(&self.converged).values().copied().collect()
    }

    /// Affected proxies that have not converged.
    pub fn stragglers(&self) -> Vec<u32> {
        let c = lock(&self.converged);
        let mut v: Vec<u32> = self
            .affected
            .iter()
            .filter(|p| !c.contains_key(p))
            .copied()
            .collect();
        v.sort_unstable();
        v
    }
}

/// The expectations in force, by cluster; every proxy task consults it
/// for each load assignment it receives, so the common case (nothing
/// watched, or another cluster) is one atomic load or one read lock.
#[derive(Default)]
pub struct Watches {
    by_cluster: RwLock<HashMap<Sym, Vec<Arc<Expectation>>>>,
    count: AtomicUsize,
}

impl Watches {
    pub fn is_watched(&self, cluster: Sym) -> bool {
        self.count.load(Ordering::Acquire) > 0
            && self
                .by_cluster
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(&cluster)
    }

    pub fn add(&self, e: Arc<Expectation>) {
        let mut m = self
            .by_cluster
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(e.cluster).or_default().push(e);
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// Stop watching (the change converged or timed out).
    pub fn remove(&self, e: &Expectation) {
        let mut m = self
            .by_cluster
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = m.get_mut(&e.cluster) {
            let before = v.len();
            v.retain(|x| x.id != e.id);
            if v.len() < before {
                self.count.fetch_sub(1, Ordering::AcqRel);
            }
            if v.is_empty() {
                m.remove(&e.cluster);
            }
        }
    }

    /// A proxy received `cluster`'s assignment with `addresses`.
    pub fn observe(&self, proxy: u32, cluster: Sym, addresses: &[IpAddr], at: Instant) {
        let m = self
            .by_cluster
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = m.get(&cluster) {
            for e in v {
                e.observe(proxy, addresses, at);
            }
        }
    }
}

/// Percentiles of a set of durations (nearest rank).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Summary {
        let mut v = samples.to_vec();
        v.sort_unstable();
        Summary {
            count: v.len(),
            p50: nearest_rank(&v, 50),
            p99: nearest_rank(&v, 99),
            max: v.last().copied().unwrap_or_default(),
        }
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "p50_ms": ms(self.p50),
            "p99_ms": ms(self.p99),
            "max_ms": ms(self.max),
        })
    }
}

/// The smallest sample with at least `pct` % of the samples at or below
/// it; zero for no samples.
pub fn nearest_rank(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds_load::catalog::Catalog;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn an_addition_converges_once_per_affected_proxy_with_the_address() {
        let c = Catalog::new(10);
        let cluster = c.intern("outbound|80||a").unwrap();
        let t0 = Instant::now();
        let e = Expectation::new(1, cluster, ip("10.0.0.9"), true, t0, [1, 2].into());
        // An earlier push without the address does not count.
        assert!(!e.observe(1, &[ip("10.0.0.1")], t0 + d(5)));
        assert!(e.observe(1, &[ip("10.0.0.1"), ip("10.0.0.9")], t0 + d(10)));
        // A later push does not move the first convergence.
        assert!(!e.observe(1, &[ip("10.0.0.9")], t0 + d(50)));
        // Not affected: ignored.
        assert!(!e.observe(3, &[ip("10.0.0.9")], t0 + d(1)));
        assert!(!e.is_converged());
        assert_eq!(e.stragglers(), [2]);
        assert!(e.observe(2, &[ip("10.0.0.9")], t0 + d(30)));
        assert!(e.is_converged());
        let mut l = e.latencies();
        l.sort();
        assert_eq!(l, [d(10), d(30)]);
    }

    #[test]
    fn a_removal_converges_when_the_address_is_gone() {
        let c = Catalog::new(10);
        let cluster = c.intern("c").unwrap();
        let t0 = Instant::now();
        let e = Expectation::new(2, cluster, ip("10.0.0.2"), false, t0, [7].into());
        assert!(!e.observe(7, &[ip("10.0.0.1"), ip("10.0.0.2")], t0 + d(1)));
        assert!(e.observe(7, &[ip("10.0.0.1")], t0 + d(2)));
        assert!(e.is_converged());
    }

    #[test]
    fn watches_route_observations_by_cluster_and_forget_removed_ones() {
        let c = Catalog::new(10);
        let (a, b) = (c.intern("a").unwrap(), c.intern("b").unwrap());
        let w = Watches::default();
        assert!(!w.is_watched(a));
        let t0 = Instant::now();
        let e1 = Arc::new(Expectation::new(1, a, ip("10.0.0.1"), true, t0, [1].into()));
        let e2 = Arc::new(Expectation::new(2, a, ip("10.0.0.2"), true, t0, [1].into()));
        w.add(e1.clone());
        w.add(e2.clone());
        assert!(w.is_watched(a) && !w.is_watched(b));
        w.observe(1, b, &[ip("10.0.0.1")], t0);
        assert!(!e1.is_converged());
        w.observe(1, a, &[ip("10.0.0.1")], t0 + d(3));
        assert!(e1.is_converged() && !e2.is_converged());
        w.remove(&e1);
        assert!(w.is_watched(a));
        w.remove(&e2);
        w.remove(&e2);
        assert!(!w.is_watched(a));
    }

    #[test]
    fn summary_uses_nearest_rank() {
        let samples: Vec<Duration> = (1..=200).rev().map(d).collect();
        let s = Summary::of(&samples);
        assert_eq!(s.count, 200);
        assert_eq!(s.p50, d(100));
        assert_eq!(s.p99, d(198));
        assert_eq!(s.max, d(200));
        assert_eq!(Summary::of(&[]), Summary::default());
        let one = Summary::of(&[d(7)]);
        assert_eq!((one.p50, one.p99, one.max), (d(7), d(7), d(7)));
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }
}
