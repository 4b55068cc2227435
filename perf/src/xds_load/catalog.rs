//! What all simulated proxies share: interned names and versions, and
//! what each received resource implies, computed once per distinct
//! resource rather than once per proxy.
//!
//! Ten thousand proxies that each hold two thousand resources would need
//! gigabytes if every proxy kept its own strings, and decoding every
//! cluster and listener once per proxy would make the load tool, not the
//! control plane, the bottleneck. So names and versions are interned
//! ([`Sym`]), and the route names of a listener and the EDS name of a
//! cluster are derived once per (name, version) and looked up after.
//!
//! That relies on the xDS contract that a resource's version changes
//! whenever its content does. The tool checks it instead of trusting it:
//! every listener and cluster body is fingerprinted, and a body that
//! differs from the one first seen under the same name and version is
//! counted as a version reuse (reported as a failure).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use crate::xds_load::wire;

/// An interned string (a resource name or version).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(u32);

/// A body's length and 64-bit hash.
type Fingerprint = (usize, u64);

struct Derived<T> {
    fingerprint: Fingerprint,
    value: T,
}

#[derive(Default)]
struct Names {
    ids: HashMap<Arc<str>, Sym>,
    strings: Vec<Arc<str>>,
}

/// The shared tables. Every method takes `&self`; locks are held for a
/// map lookup or insert only.
pub struct Catalog {
    names: RwLock<Names>,
    max_names: usize,
    /// Cluster (name, version) → its EDS service name, if it is an EDS
    /// cluster.
    clusters: RwLock<HashMap<(Sym, Sym), Derived<Option<Sym>>>>,
    /// Listener (name, version) → the route configurations its HTTP
    /// connection managers load over RDS.
    listeners: RwLock<HashMap<(Sym, Sym), Derived<Arc<[Sym]>>>>,
    /// Load assignment (name, version) → its endpoint addresses; filled
    /// only for the assignments a measurement watches.
    endpoints: RwLock<HashMap<(Sym, Sym), Arc<[IpAddr]>>>,
    version_reuse: AtomicU64,
}

impl Catalog {
    /// A catalog holding at most `max_names` distinct strings, so a
    /// control plane sending endless new names cannot exhaust memory.
    pub fn new(max_names: usize) -> Catalog {
        Catalog {
            names: RwLock::new(Names::default()),
            max_names,
            clusters: RwLock::default(),
            listeners: RwLock::default(),
            endpoints: RwLock::default(),
            version_reuse: AtomicU64::new(0),
        }
    }

    /// The symbol of `s`, interning it if new.
    pub fn intern(&self, s: &str) -> Result<Sym, String> {
        if let Some(sym) = read(&self.names).ids.get(s) {
            return Ok(*sym);
        }
        let mut names = write(&self.names);
        if let Some(sym) = names.ids.get(s) {
            return Ok(*sym);
        }
        if names.strings.len() >= self.max_names {
            return Err(format!(
                "more than {} distinct resource names and versions; raise --max-names if the mesh \
                 really is that large",
                self.max_names
            ));
        }
        let id = u32::try_from(names.strings.len())
            .map_err(|_| "more than 2^32 distinct names".to_owned())?;
        let s: Arc<str> = s.into();
        names.strings.push(s.clone());
        names.ids.insert(s, Sym(id));
        Ok(Sym(id))
    }

    /// The symbol of `s` if it was ever interned.
    pub fn lookup(&self, s: &str) -> Option<Sym> {
        read(&self.names).ids.get(s).copied()
    }

    /// The string of a symbol made by this catalog.
    pub fn resolve(&self, sym: Sym) -> Arc<str> {
        read(&self.names)
            .strings
            .get(sym.0 as usize)
            .cloned()
            .unwrap_or_else(|| "<unknown symbol>".into())
    }

    pub fn distinct_names(&self) -> usize {
        read(&self.names).strings.len()
    }

    /// How many times a listener or cluster came with a body different
    /// from the one first seen under the same name and version.
    pub fn version_reuse(&self) -> u64 {
        self.version_reuse.load(Ordering::Relaxed)
    }

    /// The EDS service name of a received cluster (`None`: not an EDS
    /// cluster), decoding `body` unless this (name, version) was seen.
    pub fn learn_cluster(
        &self,
        name: Sym,
        version: Sym,
        body: &[u8],
    ) -> Result<Option<Sym>, String> {
        let fp = fingerprint(body);
        if let Some(d) = read(&self.clusters).get(&(name, version)) {
            self.check(d.fingerprint, fp);
            return Ok(d.value);
        }
        let cluster_name = self.resolve(name);
        let eds = wire::cluster_eds_name(&cluster_name, body)?
            .map(|n| self.intern(&n))
            .transpose()?;
        write(&self.clusters)
            .entry((name, version))
            .or_insert(Derived {
                fingerprint: fp,
                value: eds,
            });
        Ok(eds)
    }

    /// The EDS name of a cluster learnt before.
    pub fn cluster_eds(&self, name: Sym, version: Sym) -> Option<Option<Sym>> {
        read(&self.clusters).get(&(name, version)).map(|d| d.value)
    }

    /// The RDS route names of a received listener.
    pub fn learn_listener(
        &self,
        name: Sym,
        version: Sym,
        body: &[u8],
    ) -> Result<Arc<[Sym]>, String> {
        let fp = fingerprint(body);
        if let Some(d) = read(&self.listeners).get(&(name, version)) {
            self.check(d.fingerprint, fp);
            return Ok(d.value.clone());
        }
        let routes = wire::listener_route_names(body)?
            .iter()
            .map(|r| self.intern(r))
            .collect::<Result<Arc<[Sym]>, String>>()?;
        write(&self.listeners)
            .entry((name, version))
            .or_insert(Derived {
                fingerprint: fp,
                value: routes.clone(),
            });
        Ok(routes)
    }

    /// The route names of a listener learnt before.
    pub fn listener_routes(&self, name: Sym, version: Sym) -> Option<Arc<[Sym]>> {
        read(&self.listeners)
            .get(&(name, version))
            .map(|d| d.value.clone())
    }

    /// The endpoint addresses of a load assignment.
    pub fn learn_endpoints(
        &self,
        name: Sym,
        version: Sym,
        body: &[u8],
    ) -> Result<Arc<[IpAddr]>, String> {
        if let Some(a) = read(&self.endpoints).get(&(name, version)) {
            return Ok(a.clone());
        }
        let addrs: Arc<[IpAddr]> = wire::endpoint_addresses(body)?.into();
        write(&self.endpoints).insert((name, version), addrs.clone());
        Ok(addrs)
    }

    fn check(&self, first: Fingerprint, now: Fingerprint) {
        if first != now {
            self.version_reuse.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Length and a fast 64-bit hash (8 bytes per step): cheap enough to run
/// over every listener and cluster every proxy receives.
pub fn fingerprint(bytes: &[u8]) -> Fingerprint {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
    }
    (bytes.len(), h)
}

// A poisoned lock means a thread panicked while holding it; the tables
// are plain maps that stay consistent, so keep going with them.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_bounded() {
        let c = Catalog::new(3);
        let a = c.intern("a").unwrap();
        assert_eq!(c.intern("a").unwrap(), a);
        let b = c.intern("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(&*c.resolve(b), "b");
        assert_eq!(c.lookup("b"), Some(b));
        assert_eq!(c.lookup("zz"), None);
        c.intern("c").unwrap();
        let err = c.intern("d").unwrap_err();
        assert!(err.contains("--max-names"), "{err}");
        assert_eq!(c.distinct_names(), 3);
    }

    #[test]
    fn fingerprint_sees_every_byte_and_the_length() {
        let base = fingerprint(b"0123456789abcdef!");
        assert_ne!(base, fingerprint(b"0123456789abcdef?"));
        assert_ne!(base, fingerprint(b"1123456789abcdef!"));
        assert_ne!(fingerprint(b""), fingerprint(b"\0"));
        assert_eq!(base, fingerprint(b"0123456789abcdef!"));
    }
}
