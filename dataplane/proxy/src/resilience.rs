//! Per-cluster state that must hold for the proxy as a whole: circuit
//! breakers, outlier detection, requests in flight per endpoint.
//!
//! # Design: one set of atomics per cluster, shared by every shard
//!
//! Circuit-breaker limits are proxy-wide (`max_requests: 100` means 100
//! for the sidecar, not 100 per core), so their counters cannot be
//! shard-local. Each cluster has one [`ClusterState`], found by name in a
//! process-wide registry (`arc-swap` map, copy-on-write when a cluster is
//! first seen) and cached per shard by cluster id, so the request path does
//! a shard-local hash lookup and a few relaxed atomic operations on the
//! cluster's own cache lines: admit (`fetch_add` + compare), release
//! (`fetch_sub`). State survives configuration updates (it is keyed by
//! name, not by snapshot), so an EDS update neither forgets ejections nor
//! miscounts requests in flight. This is also how Envoy does it (its
//! resource manager is a set of atomics per cluster shared by workers).
//!
//! Outlier detection is passive and immediate: each answer from an
//! endpoint updates its consecutive-error counters (5xx; gateway errors =
//! 502/503/504, connect failures, resets, timeouts); crossing a threshold
//! ejects the endpoint for `base_ejection_time × times ejected` (at most
//! `max_ejection_time`), unless `max_ejection_percent` of the cluster is
//! already ejected (one endpoint may always be ejected, as in Envoy).
//! Ejection ends lazily: a pick after the deadline finds the endpoint
//! usable again. The multiplier decays by one for every `interval` the
//! endpoint stayed un-ejected. When fewer than `healthy_panic_threshold`
//! percent of the endpoints are usable, picks ignore ejections (Envoy's
//! panic mode).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use ringmesh_config::{CircuitBreakers, Cluster, OutlierDetection};

/// Milliseconds since the process's first use of this module: ejection
/// deadlines fit an atomic.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// One endpoint's shared state.
#[derive(Debug, Default)]
pub struct EndpointState {
    /// Requests in flight to it (least-request balancing).
    pub active: AtomicU32,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// Ejected while `now_ms() < ejected_until` (0: never ejected).
    ejected_until: AtomicU64,
    times_ejected: AtomicU32,
}

impl EndpointState {
    pub fn is_ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Relaxed)
    }
}

/// What an exchange with an endpoint came to, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Status(u16),
    /// Connect failure, TLS failure, reset before a response, or timeout:
    /// Envoy counts these local-origin errors as gateway failures.
    LocalFailure,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    Requests,
    Pending,
    Connections,
    Retries,
}

impl Overflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Requests => "max_requests",
            Overflow::Pending => "max_pending_requests",
            Overflow::Connections => "max_connections",
            Overflow::Retries => "max_retries",
        }
    }
}

/// A cluster's shared state.
#[derive(Debug, Default)]
pub struct ClusterState {
    pub rq_active: AtomicU32,
    pub rq_pending: AtomicU32,
    pub cx_active: AtomicU32,
    pub retries_active: AtomicU32,
    endpoints: ArcSwap<HashMap<SocketAddr, Arc<EndpointState>>>,
    /// Counters, exported by [`render`].
    pub overflow_requests: AtomicU64,
    pub overflow_pending: AtomicU64,
    pub overflow_connections: AtomicU64,
    pub overflow_retries: AtomicU64,
    pub ejections_total: AtomicU64,
    pub ejections_overflow: AtomicU64,
    pub retries_total: AtomicU64,
    pub retry_budget_exhausted: AtomicU64,
}

/// Holds one admitted request against the cluster's `max_requests`.
#[derive(Debug)]
pub struct RequestSlot(Arc<ClusterState>);

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.0.rq_active.fetch_sub(1, Relaxed);
    }
}

/// Holds one pending request (waiting for a new connection) or one
/// retry in flight against the cluster's limits.
#[derive(Debug)]
pub struct Held(Arc<ClusterState>, Overflow);

impl Drop for Held {
    fn drop(&mut self) {
        let c = match self.1 {
            Overflow::Pending => &self.0.rq_pending,
            Overflow::Retries => &self.0.retries_active,
            Overflow::Connections => &self.0.cx_active,
            Overflow::Requests => &self.0.rq_active,
        };
        c.fetch_sub(1, Relaxed);
    }
}

/// One request in flight to one endpoint (least request).
#[derive(Debug)]
pub struct InFlight(Arc<EndpointState>);

impl InFlight {
    pub fn new(ep: Arc<EndpointState>) -> InFlight {
        ep.active.fetch_add(1, Relaxed);
        InFlight(ep)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

fn take(counter: &AtomicU32, limit: u32) -> bool {
    if limit == u32::MAX {
        counter.fetch_add(1, Relaxed);
        return true;
    }
    // Optimistic: add, and back out when over (no CAS loop).
    if counter.fetch_add(1, Relaxed) >= limit {
        counter.fetch_sub(1, Relaxed);
        return false;
    }
    true
}

impl ClusterState {
    /// Admit a request under `max_requests`.
    pub fn admit(self: &Arc<Self>, limits: &CircuitBreakers) -> Result<RequestSlot, Overflow> {
        if take(&self.rq_active, limits.max_requests) {
            Ok(RequestSlot(self.clone()))
        } else {
            self.overflow_requests.fetch_add(1, Relaxed);
            Err(Overflow::Requests)
        }
    }

    /// Hold a place under `max_pending_requests` (while connecting) or
    /// `max_retries` (while a retry is in flight) or `max_connections`
    /// (while a connection is open).
    pub fn hold(self: &Arc<Self>, what: Overflow, limits: &CircuitBreakers) -> Option<Held> {
        let (counter, limit, overflow) = match what {
            Overflow::Pending => (
                &self.rq_pending,
                limits.max_pending_requests,
                &self.overflow_pending,
            ),
            Overflow::Retries => (
                &self.retries_active,
                limits.max_retries,
                &self.overflow_retries,
            ),
            Overflow::Connections => (
                &self.cx_active,
                limits.max_connections,
                &self.overflow_connections,
            ),
            Overflow::Requests => (
                &self.rq_active,
                limits.max_requests,
                &self.overflow_requests,
            ),
        };
        if take(counter, limit) {
            Some(Held(self.clone(), what))
        } else {
            overflow.fetch_add(1, Relaxed);
            None
        }
    }

    /// A place for one retry: within the retry budget (retries in flight
    /// ≤ max(budget % of requests in flight, min concurrency)) and
    /// `max_retries`. `None` (counted) when either is used up.
    pub fn try_retry(self: &Arc<Self>, limits: &CircuitBreakers) -> Option<Held> {
        let active = u64::from(self.rq_active.load(Relaxed));
        let budget = (active * u64::from(limits.retry_budget_percent) / 100)
            .max(u64::from(limits.min_retry_concurrency));
        if u64::from(self.retries_active.load(Relaxed)) >= budget {
            self.retry_budget_exhausted.fetch_add(1, Relaxed);
            return None;
        }
        let held = self.hold(Overflow::Retries, limits)?;
        self.retries_total.fetch_add(1, Relaxed);
        Some(held)
    }

    /// The endpoint's state, created on first use.
    pub fn endpoint(&self, addr: SocketAddr) -> Arc<EndpointState> {
        if let Some(e) = self.endpoints.load().get(&addr) {
            return e.clone();
        }
        let mut out = None;
        self.endpoints.rcu(|m| {
            let mut m = HashMap::clone(m);
            let e = m.entry(addr).or_default().clone();
            out = Some(e);
            m
        });
        out.unwrap_or_default()
    }

    /// The endpoint's state if it exists (no allocation on the pick path).
    pub fn endpoint_if_known(&self, addr: &SocketAddr) -> Option<Arc<EndpointState>> {
        self.endpoints.load().get(addr).cloned()
    }

    /// The endpoints' map, loaded once for a whole pick.
    pub fn endpoints(&self) -> arc_swap::Guard<Arc<HashMap<SocketAddr, Arc<EndpointState>>>> {
        self.endpoints.load()
    }

    /// Whether `addr` is ejected now.
    pub fn is_ejected(&self, addr: &SocketAddr, now: u64) -> bool {
        self.endpoints
            .load()
            .get(addr)
            .is_some_and(|e| e.is_ejected(now))
    }

    /// Forget endpoints no longer in the cluster (called off the request
    /// path, on the shard timer).
    pub fn retain(&self, live: impl Fn(&SocketAddr) -> bool) {
        if self.endpoints.load().keys().all(&live) {
            return;
        }
        self.endpoints.rcu(|m| {
            m.iter()
                .filter(|(a, _)| live(a))
                .map(|(a, e)| (*a, e.clone()))
                .collect::<HashMap<_, _>>()
        });
    }

    /// Record an answer from `addr`; may eject it. Returns whether this
    /// report ejected the endpoint.
    pub fn report(&self, cluster: &Cluster, addr: SocketAddr, outcome: Outcome) -> bool {
        let Some(od) = &cluster.outlier_detection else {
            return false;
        };
        let ep = self.endpoint(addr);
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Status(s) => (s >= 500, matches!(s, 502..=504)),
            Outcome::LocalFailure => (true, true),
        };
        if !is_5xx {
            // Success: reset only what is set (no write in the common case).
            if ep.consecutive_5xx.load(Relaxed) != 0 {
                ep.consecutive_5xx.store(0, Relaxed);
            }
            if ep.consecutive_gateway.load(Relaxed) != 0 {
                ep.consecutive_gateway.store(0, Relaxed);
            }
            return false;
        }
        let n5 = ep.consecutive_5xx.fetch_add(1, Relaxed) + 1;
        let ngw = if is_gateway {
            ep.consecutive_gateway.fetch_add(1, Relaxed) + 1
        } else {
            if ep.consecutive_gateway.load(Relaxed) != 0 {
                ep.consecutive_gateway.store(0, Relaxed);
            }
            0
        };
        let tripped = od.consecutive_5xx.is_some_and(|t| n5 >= t)
            || od.consecutive_gateway_failure.is_some_and(|t| ngw >= t);
        if !tripped {
            return false;
        }
        self.eject(cluster, od, addr, &ep)
    }

    fn eject(
        &self,
        cluster: &Cluster,
        od: &OutlierDetection,
        addr: SocketAddr,
        ep: &EndpointState,
    ) -> bool {
        let now = now_ms();
        if ep.is_ejected(now) {
            return false;
        }
        let total = cluster.endpoints.len().max(1);
        let ejected = self
            .endpoints
            .load()
            .iter()
            .filter(|(a, e)| {
                e.is_ejected(now) && cluster.endpoints.iter().any(|x| x.address == **a)
            })
            .count();
        // At least one endpoint may always be ejected (as Envoy does).
        let allowed = (total * od.max_ejection_percent as usize / 100).max(1);
        if ejected >= allowed {
            self.ejections_overflow.fetch_add(1, Relaxed);
            return false;
        }
        // The multiplier decays by one per interval spent un-ejected.
        let last_end = ep.ejected_until.load(Relaxed);
        let mut times = ep.times_ejected.load(Relaxed);
        if last_end != 0 {
            let healthy_for = now.saturating_sub(last_end);
            let intervals = healthy_for / (od.interval.as_millis().max(1) as u64);
            times = times.saturating_sub(intervals.min(u64::from(u32::MAX)) as u32);
        }
        times = times.saturating_add(1);
        let base = od.base_ejection_time;
        let cap = od.max_ejection_time.max(base);
        let duration = base.saturating_mul(times).min(cap);
        ep.times_ejected.store(times, Relaxed);
        ep.ejected_until
            .store(now + duration.as_millis() as u64, Relaxed);
        ep.consecutive_5xx.store(0, Relaxed);
        ep.consecutive_gateway.store(0, Relaxed);
        self.ejections_total.fetch_add(1, Relaxed);
        tracing::info!(
            cluster = %cluster.name,
            endpoint = %addr,
            ejection = ?Duration::from_millis(duration.as_millis() as u64),
            times,
            "outlier ejected"
        );
        true
    }
}

/// The process-wide registry of cluster states, by cluster name.
fn registry() -> &'static ArcSwap<HashMap<Arc<str>, Arc<ClusterState>>> {
    static R: OnceLock<ArcSwap<HashMap<Arc<str>, Arc<ClusterState>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Bumped whenever a cluster's state leaves the registry, so shard caches
/// of it ([`crate::lb::Balancer`]) are dropped and a cluster that comes
/// back gets one state on every shard.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The registry's generation (see [`GENERATION`]).
pub fn generation() -> u64 {
    GENERATION.load(Relaxed)
}

/// The state of the cluster named `name` (created on first use).
pub fn state_of(name: &Arc<str>) -> Arc<ClusterState> {
    if let Some(s) = registry().load().get(name) {
        return s.clone();
    }
    let mut out = None;
    registry().rcu(|m| {
        let mut m = HashMap::clone(m);
        out = Some(m.entry(name.clone()).or_default().clone());
        m
    });
    out.unwrap_or_default()
}

/// [`retain`] for the clusters of a new snapshot.
pub fn retain_for(snapshot: &ringmesh_config::Snapshot) {
    let live: HashMap<&str, &Cluster> =
        snapshot.clusters.iter().map(|c| (&*c.name, &**c)).collect();
    retain(&live);
}

/// Drop the states of clusters `live` no longer names and, in the others,
/// endpoints that left (control thread, after a configuration change).
/// Requests in flight keep their `Arc`s, so their slots are released
/// correctly even after the state was dropped here.
pub fn retain(live: &HashMap<&str, &Cluster>) {
    let reg = registry();
    if reg.load().keys().any(|k| !live.contains_key(&**k)) {
        GENERATION.fetch_add(1, Relaxed);
        reg.rcu(|m| {
            m.iter()
                .filter(|(k, _)| live.contains_key(&***k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>()
        });
    }
    for (name, state) in reg.load().iter() {
        if let Some(c) = live.get(&**name) {
            state.retain(|a| c.endpoints.iter().any(|e| e.address == *a));
        }
    }
}

/// The current milliseconds clock, for picks.
pub fn now() -> u64 {
    now_ms()
}

/// A metric family: name, whether a counter, help, value of one cluster.
type Family = (&'static str, bool, &'static str, fn(&ClusterState) -> u64);

/// Every cluster's shared counters and gauges.
pub fn render(e: &mut ringmesh_metrics::prometheus::Exposition) {
    let reg = registry().load();
    let mut names: Vec<&Arc<str>> = reg.keys().collect();
    names.sort();
    let families: [Family; 11] = [
        (
            "ringmesh_cluster_upstream_rq_retry_total",
            true,
            "Retries sent to the cluster.",
            |c| c.retries_total.load(Relaxed),
        ),
        (
            "ringmesh_cluster_upstream_rq_retry_budget_exhausted_total",
            true,
            "Retries not sent because the retry budget was used up.",
            |c| c.retry_budget_exhausted.load(Relaxed),
        ),
        (
            "ringmesh_cluster_upstream_rq_pending_overflow_total",
            true,
            "Requests refused by the cluster's max_pending_requests.",
            |c| c.overflow_pending.load(Relaxed),
        ),
        (
            "ringmesh_cluster_upstream_rq_overflow_total",
            true,
            "Requests refused by the cluster's max_requests.",
            |c| c.overflow_requests.load(Relaxed),
        ),
        (
            "ringmesh_cluster_upstream_cx_overflow_total",
            true,
            "Connections refused by the cluster's max_connections.",
            |c| c.overflow_connections.load(Relaxed),
        ),
        (
            "ringmesh_cluster_upstream_rq_retry_overflow_total",
            true,
            "Retries refused by the cluster's max_retries.",
            |c| c.overflow_retries.load(Relaxed),
        ),
        (
            "ringmesh_cluster_outlier_ejections_total",
            true,
            "Endpoints ejected by outlier detection.",
            |c| c.ejections_total.load(Relaxed),
        ),
        (
            "ringmesh_cluster_outlier_ejections_overflow_total",
            true,
            "Ejections not made because of max_ejection_percent.",
            |c| c.ejections_overflow.load(Relaxed),
        ),
        (
            "ringmesh_cluster_outlier_ejected",
            false,
            "Endpoints ejected now.",
            |c| {
                let now = now_ms();
                c.endpoints
                    .load()
                    .values()
                    .filter(|e| e.is_ejected(now))
                    .count() as u64
            },
        ),
        (
            "ringmesh_cluster_upstream_rq_active_proxy",
            false,
            "Requests in flight to the cluster, all shards together.",
            |c| u64::from(c.rq_active.load(Relaxed)),
        ),
        (
            "ringmesh_cluster_upstream_cx_active_proxy",
            false,
            "Connections open to the cluster, all shards together.",
            |c| u64::from(c.cx_active.load(Relaxed)),
        ),
    ];
    for (name, counter, help, get) in families {
        for n in &names {
            let v = get(&reg[*n]);
            let labels = [("cluster", &***n)];
            if counter {
                e.counter(name, help, &labels, v);
            } else {
                e.gauge(name, help, &labels, v as i64);
            }
        }
    }
}
