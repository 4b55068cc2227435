//! Endpoint choice: round robin (weighted), random (weighted), least
//! request (power of two choices over requests in flight, proxy-wide),
//! ring hash and Maglev (consistent hashing of a request key), all
//! skipping endpoints that outlier detection ejected — unless fewer than
//! the cluster's `healthy_panic_threshold` percent are usable, when every
//! endpoint is used (Envoy's panic mode).
//!
//! Shard-local: cursors, the random generator and the hash tables live in
//! the shard's [`Balancer`]; hash tables are built once per endpoint set
//! (keyed by the `Arc` of the cluster's endpoint list) and reused by every
//! pick until the endpoints change.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
};

use ringmesh_config::{Cluster, Endpoint, LbPolicy};

use crate::resilience::{ClusterState, EndpointState};

/// Points per unit of weight on the ring, and the ring's minimum size
/// (Envoy's default `minimum_ring_size`).
const RING_MIN: usize = 1024;
const RING_MAX: usize = 8 * 1024 * 1024;
/// Maglev lookup table size (a prime; Envoy's default).
const MAGLEV_SIZE: usize = 65_537;

/// A consistent-hash table over one endpoint list.
enum Table {
    /// Sorted (hash, endpoint index).
    Ring(Vec<(u64, u32)>),
    /// Slot → endpoint index.
    Maglev(Vec<u32>),
}

/// Per-shard balancing state.
#[derive(Default)]
pub struct Balancer {
    cursors: RefCell<HashMap<u64, usize>>,
    rng: Cell<u64>,
    tables: RefCell<HashMap<u64, (usize, Rc<Table>)>>,
    states: RefCell<HashMap<u64, Arc<ClusterState>>>,
    /// The registry generation `states` was filled under.
    generation: Cell<u64>,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finalizer.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stable 64-bit hash of an endpoint address and a salt.
fn addr_hash(a: &SocketAddr, salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for x in b {
            h ^= u64::from(*x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match a.ip() {
        std::net::IpAddr::V4(v) => eat(&v.octets()),
        std::net::IpAddr::V6(v) => eat(&v.octets()),
    }
    eat(&a.port().to_be_bytes());
    mix(h ^ mix(salt))
}

fn build_ring(eps: &[Endpoint]) -> Table {
    let total: u64 = eps.iter().map(|e| u64::from(e.weight.max(1))).sum();
    let size = (RING_MIN as u64).max(total).min(RING_MAX as u64);
    let mut ring = Vec::with_capacity(size as usize + eps.len());
    for (i, e) in eps.iter().enumerate() {
        let points = (size * u64::from(e.weight.max(1))).div_ceil(total).max(1);
        for p in 0..points {
            ring.push((addr_hash(&e.address, p), i as u32));
        }
    }
    ring.sort_unstable();
    Table::Ring(ring)
}

fn build_maglev(eps: &[Endpoint]) -> Table {
    let m = MAGLEV_SIZE as u64;
    let max_w = eps.iter().map(|e| e.weight.max(1)).max().unwrap_or(1);
    let perms: Vec<(u64, u64)> = eps
        .iter()
        .map(|e| {
            let offset = addr_hash(&e.address, 0xA5A5) % m;
            let skip = addr_hash(&e.address, 0x5A5A) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; eps.len()];
    let mut table = vec![u32::MAX; MAGLEV_SIZE];
    let mut filled = 0;
    // Weighted Maglev: an endpoint takes a turn in a round only while its
    // share of the rounds (weight / max weight) allows.
    let mut round: u64 = 0;
    while filled < MAGLEV_SIZE {
        round += 1;
        for (i, e) in eps.iter().enumerate() {
            let w = u64::from(e.weight.max(1));
            if round * w / u64::from(max_w) == (round - 1) * w / u64::from(max_w) {
                continue;
            }
            let (offset, skip) = perms[i];
            loop {
                let slot = ((offset + next[i] * skip) % m) as usize;
                next[i] += 1;
                if table[slot] == u32::MAX {
                    table[slot] = i as u32;
                    filled += 1;
                    break;
                }
            }
            if filled == MAGLEV_SIZE {
                break;
            }
        }
    }
    Table::Maglev(table)
}

impl Balancer {
    fn rand(&self) -> u64 {
        let mut x = self.rng.get();
        if x == 0 {
            x = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9E37_79B9_7F4A_7C15)
                | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The cluster's shared state (cached per shard by cluster id).
    pub fn state(&self, cluster: &Cluster) -> Arc<ClusterState> {
        let generation = crate::resilience::generation();
        if generation != self.generation.get() {
            self.generation.set(generation);
            self.states.borrow_mut().clear();
            self.tables.borrow_mut().clear();
        }
        if let Some(s) = self.states.borrow().get(&cluster.id) {
            return s.clone();
        }
        let s = crate::resilience::state_of(&cluster.name);
        self.states.borrow_mut().insert(cluster.id, s.clone());
        s
    }

    fn table(&self, cluster: &Cluster) -> Rc<Table> {
        let key = Arc::as_ptr(&cluster.endpoints) as *const Endpoint as usize;
        if let Some((k, t)) = self.tables.borrow().get(&cluster.id) {
            if *k == key {
                return t.clone();
            }
        }
        let t = Rc::new(match cluster.lb_policy {
            LbPolicy::Maglev => build_maglev(&cluster.endpoints),
            _ => build_ring(&cluster.endpoints),
        });
        self.tables
            .borrow_mut()
            .insert(cluster.id, (key, t.clone()));
        t
    }

    /// The next endpoint of `cluster` by its policy; `hash` is the
    /// request's key for consistent hashing (random when `None`).
    pub fn pick(&self, cluster: &Cluster, hash: Option<u64>) -> Option<SocketAddr> {
        let eps = &cluster.endpoints;
        if eps.is_empty() {
            return None;
        }
        let state = self.state(cluster);
        let now = crate::resilience::now();
        let map = state.endpoints();
        let ejected = |a: &SocketAddr| map.get(a).is_some_and(|e| e.is_ejected(now));
        let mut usable = eps.len();
        if !map.is_empty() {
            usable -= eps.iter().filter(|e| ejected(&e.address)).count();
        }
        // Panic mode: too few usable endpoints → use them all.
        let ok = |a: &SocketAddr| {
            usable * 100 < cluster.healthy_panic_threshold as usize * eps.len()
                || usable == 0
                || !ejected(a)
        };
        match cluster.lb_policy {
            LbPolicy::RoundRobin => self.round_robin(cluster, &ok),
            LbPolicy::Random => self.random(eps, &ok),
            LbPolicy::LeastRequest => {
                let a = self.random(eps, &ok)?;
                let b = self.random(eps, &ok)?;
                let load = |x: &SocketAddr| {
                    map.get(x).map_or(0, |e: &Arc<EndpointState>| {
                        e.active.load(std::sync::atomic::Ordering::Relaxed)
                    })
                };
                Some(if load(&b) < load(&a) { b } else { a })
            }
            LbPolicy::RingHash | LbPolicy::Maglev => {
                let key = hash.unwrap_or_else(|| self.rand());
                let table = self.table(cluster);
                let found = match &*table {
                    Table::Ring(ring) => {
                        let start = ring.partition_point(|(h, _)| *h < key);
                        (0..ring.len().min(4 * eps.len() + 16))
                            .map(|i| eps[ring[(start + i) % ring.len()].1 as usize].address)
                            .find(|a| ok(a))
                    }
                    Table::Maglev(t) => (0..8u64)
                        .map(|i| {
                            let k = if i == 0 { key } else { mix(key ^ i) };
                            eps[t[(k % t.len() as u64) as usize] as usize].address
                        })
                        .find(|a| ok(a)),
                };
                found.or_else(|| self.round_robin(cluster, &ok))
            }
        }
    }

    fn round_robin(
        &self,
        cluster: &Cluster,
        ok: &dyn Fn(&SocketAddr) -> bool,
    ) -> Option<SocketAddr> {
        let eps = &cluster.endpoints;
        let total: u64 = eps.iter().map(|e| u64::from(e.weight.max(1))).sum();
        let mut cursors = self.cursors.borrow_mut();
        let c = cursors.entry(cluster.id).or_insert(0);
        // Up to one full turn to find a usable endpoint.
        for _ in 0..eps.len().max(1) {
            let mut slot = (*c as u64) % total;
            *c = c.wrapping_add(1);
            let mut chosen = eps[0].address;
            for e in eps.iter() {
                let w = u64::from(e.weight.max(1));
                if slot < w {
                    chosen = e.address;
                    break;
                }
                slot -= w;
            }
            if ok(&chosen) {
                return Some(chosen);
            }
            // Jump past the rest of this endpoint's weight.
            let idx = eps.iter().position(|e| e.address == chosen).unwrap_or(0);
            let skip: u64 = eps[idx].weight.max(1).into();
            *c = c.wrapping_add(skip.saturating_sub(1) as usize);
        }
        eps.iter().map(|e| e.address).find(|a| ok(a))
    }

    fn random(&self, eps: &[Endpoint], ok: &dyn Fn(&SocketAddr) -> bool) -> Option<SocketAddr> {
        let total: u64 = eps
            .iter()
            .filter(|e| ok(&e.address))
            .map(|e| u64::from(e.weight.max(1)))
            .sum();
        if total == 0 {
            return None;
        }
        let mut slot = self.rand() % total;
        for e in eps.iter().filter(|e| ok(&e.address)) {
            let w = u64::from(e.weight.max(1));
            if slot < w {
                return Some(e.address);
            }
            slot -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmesh_config::{CircuitBreakers, ClusterKind, UpstreamProtocol};
    use std::time::Duration;

    fn cluster(name: &str, policy: LbPolicy, n: u16) -> Cluster {
        Cluster {
            name: name.into(),
            id: u64::from(n) << 32 | name.len() as u64 ^ 0x77,
            connect_timeout: Duration::from_secs(1),
            lb_policy: policy,
            kind: ClusterKind::Static,
            endpoints: (0..n)
                .map(|i| Endpoint {
                    address: SocketAddr::from(([10, 0, 0, (i + 1) as u8], 80)),
                    weight: 1,
                })
                .collect::<Vec<_>>()
                .into(),
            tls: None,
            protocol: UpstreamProtocol::Http1,
            circuit_breakers: CircuitBreakers::default(),
            outlier_detection: None,
            healthy_panic_threshold: 50,
        }
    }

    #[test]
    fn consistent_hash_is_sticky_and_spreads() {
        for policy in [LbPolicy::RingHash, LbPolicy::Maglev] {
            let c = cluster(&format!("ch-{policy:?}"), policy, 5);
            let b = Balancer::default();
            let mut per = HashMap::new();
            for key in 0..5000u64 {
                let k = mix(key);
                let a = b.pick(&c, Some(k)).unwrap();
                assert_eq!(b.pick(&c, Some(k)), Some(a), "{policy:?} sticky");
                *per.entry(a).or_insert(0u32) += 1;
            }
            assert_eq!(per.len(), 5, "{policy:?}: {per:?}");
            for n in per.values() {
                assert!((500..1500).contains(n), "{policy:?} spread: {per:?}");
            }
            // Removing one endpoint moves only the keys it had (mostly).
            let mut smaller = c.clone();
            smaller.endpoints = c.endpoints[..4].to_vec().into();
            let b2 = Balancer::default();
            let moved = (0..2000u64)
                .map(mix)
                .filter(|k| {
                    let before = b.pick(&c, Some(*k)).unwrap();
                    let after = b2.pick(&smaller, Some(*k)).unwrap();
                    before != c.endpoints[4].address && before != after
                })
                .count();
            assert!(moved < 200, "{policy:?}: {moved} keys moved");
        }
    }

    #[test]
    fn round_robin_and_random_cover_every_endpoint() {
        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::LeastRequest,
        ] {
            let c = cluster(&format!("cover-{policy:?}"), policy, 3);
            let b = Balancer::default();
            let seen: std::collections::HashSet<_> =
                (0..300).map(|_| b.pick(&c, None).unwrap()).collect();
            assert_eq!(seen.len(), 3, "{policy:?}");
        }
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let c = cluster("lr-idle", LbPolicy::LeastRequest, 2);
        let b = Balancer::default();
        let state = b.state(&c);
        let busy = state.endpoint(c.endpoints[0].address);
        let _held: Vec<_> = (0..10)
            .map(|_| crate::resilience::InFlight::new(busy.clone()))
            .collect();
        state.endpoint(c.endpoints[1].address);
        let idle = (0..1000)
            .filter(|_| b.pick(&c, None) == Some(c.endpoints[1].address))
            .count();
        // P2C picks the busy one only when both draws are the busy one.
        assert!(idle > 650, "{idle}");
    }
}
