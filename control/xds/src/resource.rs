//! The resource model the server serves: typed, named, versioned, encoded
//! once. It knows nothing about where resources come from (translation,
//! a file, a test) and names no generated Envoy type.

use std::{
    borrow::Borrow,
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{Arc, OnceLock, Weak},
};

use parking_lot::Mutex;

use crate::wire;

/// An xDS type URL (`type.googleapis.com/envoy.config.listener.v3.Listener`).
///
/// Build it from a message type ([`TypeUrl::of`]) or use the constants for
/// the five types a sidecar needs; never spell one by hand — the Rust paths
/// of the generated types differ from the proto names.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TypeUrl(Arc<str>);

impl TypeUrl {
    /// The type URL of a protobuf message type (from its `prost::Name`).
    pub fn of<M: prost::Name>() -> TypeUrl {
        TypeUrl(M::type_url().into())
    }

    /// A type URL as received on the wire.
    pub fn from_wire(s: &str) -> TypeUrl {
        TypeUrl(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Listener` (LDS).
    pub fn listener() -> TypeUrl {
        known().listener.clone()
    }
    /// `RouteConfiguration` (RDS).
    pub fn route() -> TypeUrl {
        known().route.clone()
    }
    /// `Cluster` (CDS).
    pub fn cluster() -> TypeUrl {
        known().cluster.clone()
    }
    /// `ClusterLoadAssignment` (EDS).
    pub fn endpoint() -> TypeUrl {
        known().endpoint.clone()
    }
    /// `Secret` (SDS).
    pub fn secret() -> TypeUrl {
        known().secret.clone()
    }

    /// The short name operators know the type by (`LDS`, `RDS`, `CDS`,
    /// `EDS`, `SDS`), or the message name for any other type.
    pub fn short_name(&self) -> &str {
        let k = known();
        if *self == k.listener {
            "LDS"
        } else if *self == k.route {
            "RDS"
        } else if *self == k.cluster {
            "CDS"
        } else if *self == k.endpoint {
            "EDS"
        } else if *self == k.secret {
            "SDS"
        } else {
            self.0.rsplit(['/', '.']).next().unwrap_or(&self.0)
        }
    }

    /// Where this type goes in a push that touches several types.
    ///
    /// Envoy warms in dependency order: clusters before the endpoints
    /// they ask for, listeners before the routes their connection
    /// managers ask for, so a push sends CDS, EDS, LDS, RDS, SDS and then
    /// anything else (by type URL). Sending EDS before the CDS that names
    /// it would be wasted: Envoy has not subscribed yet.
    pub(crate) fn push_rank(&self) -> u8 {
        let k = known();
        if *self == k.cluster {
            0
        } else if *self == k.endpoint {
            1
        } else if *self == k.listener {
            2
        } else if *self == k.route {
            3
        } else if *self == k.secret {
            4
        } else {
            5
        }
    }
}

/// The empty type URL; only useful as a placeholder.
impl Default for TypeUrl {
    fn default() -> Self {
        TypeUrl::from_wire("")
    }
}

impl fmt::Debug for TypeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for TypeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for TypeUrl {
    fn borrow(&self) -> &str {
        &self.0
    }
}

struct Known {
    listener: TypeUrl,
    route: TypeUrl,
    cluster: TypeUrl,
    endpoint: TypeUrl,
    secret: TypeUrl,
}

fn known() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| Known {
        listener: wire::type_url::listener(),
        route: wire::type_url::route(),
        cluster: wire::type_url::cluster(),
        endpoint: wire::type_url::endpoint(),
        secret: wire::type_url::secret(),
    })
}

/// One named, versioned, encoded resource.
///
/// `version` must change exactly when the resource's meaning changes:
/// derive it from the *source state* the resource was computed from (a
/// generation counter, or [`content_version`] over a canonical encoding of
/// that source). Do not hash `body`: prost encodes map fields from a
/// `HashMap`, in a different order each time, so equal resources would
/// get different versions and be pushed again for nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub name: String,
    pub version: String,
    /// The encoded message; `body.type_url` is the resource's type.
    pub body: prost_types::Any,
}

impl Resource {
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        body: prost_types::Any,
    ) -> Self {
        Resource {
            name: name.into(),
            version: version.into(),
            body,
        }
    }

    /// Encode `message` as the body.
    pub fn from_message<M: prost::Name>(
        name: impl Into<String>,
        version: impl Into<String>,
        message: &M,
    ) -> Self {
        Resource::new(name, version, wire::pack(message))
    }

    pub fn type_url(&self) -> TypeUrl {
        TypeUrl::from_wire(&self.body.type_url)
    }
}

/// A stable version string for canonical source bytes: 64-bit FNV-1a, in
/// hex. Stable across processes, platforms and compiler versions (unlike
/// `std`'s `DefaultHasher`), so replicas and restarts agree on versions
/// and a reconnecting Envoy's `initial_resource_versions` still match.
///
/// Feed it a canonical encoding of the *source* (sorted maps, fixed field
/// order), never a prost-encoded message with map fields.
pub fn content_version(canonical: &[u8]) -> String {
    let mut h = Fnv64::new();
    h.write(canonical);
    h.hex()
}

/// FNV-1a, 64 bit: tiny, deterministic, and good enough to tell versions
/// apart (it is not a defence against someone forging collisions, which
/// nobody who can publish resources needs).
pub(crate) struct Fnv64(u64);

impl Fnv64 {
    pub(crate) fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// A length-prefixed field, so `("ab","c")` and `("a","bc")` differ.
    pub(crate) fn field(&mut self, s: &str) {
        self.write(&(s.len() as u64).to_le_bytes());
        self.write(s.as_bytes());
    }
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
    pub(crate) fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The version of a set of resources: a hash of their (name, version)
/// pairs in name order. It changes when any member is added, removed or
/// changes version, and only then.
pub(crate) fn set_version<'a>(members: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut h = Fnv64::new();
    for (name, version) in members {
        h.field(name);
        h.field(version);
    }
    h.hex()
}

/// Every resource of one scope, by type and name: what the server serves
/// to the proxies of that scope. Publishing it is all-or-nothing (a
/// snapshot), so a proxy never sees half of an update.
///
/// Resources sit behind `Arc`, so one computed and encoded copy can be
/// shared by several scopes and by every stream of a scope.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    by_type: BTreeMap<TypeUrl, BTreeMap<String, Arc<Resource>>>,
}

impl Resources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace a resource (by its type and name).
    pub fn insert(&mut self, resource: impl Into<Arc<Resource>>) -> &mut Self {
        let resource = resource.into();
        self.by_type
            .entry(resource.type_url())
            .or_default()
            .insert(resource.name.clone(), resource);
        self
    }

    /// Builder-style [`Resources::insert`].
    pub fn with(mut self, resource: impl Into<Arc<Resource>>) -> Self {
        self.insert(resource);
        self
    }

    /// Declare a type with no resources. A wildcard subscriber to a
    /// declared type gets an (empty) answer; for an undeclared type the
    /// server answers the same way — absence of resources is an answer
    /// too — so this only matters to [`Resources::types`].
    pub fn declare(&mut self, type_url: TypeUrl) -> &mut Self {
        self.by_type.entry(type_url).or_default();
        self
    }

    pub fn remove(&mut self, type_url: &TypeUrl, name: &str) -> Option<Arc<Resource>> {
        self.by_type.get_mut(type_url)?.remove(name)
    }

    pub fn get(&self, type_url: &TypeUrl, name: &str) -> Option<&Arc<Resource>> {
        self.by_type.get(type_url)?.get(name)
    }

    /// The resources of one type, by name.
    pub fn of_type(&self, type_url: &TypeUrl) -> Option<&BTreeMap<String, Arc<Resource>>> {
        self.by_type.get(type_url)
    }

    pub fn types(&self) -> impl Iterator<Item = &TypeUrl> {
        self.by_type.keys()
    }

    pub fn len(&self) -> usize {
        self.by_type.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The resources of one type, by name.
pub(crate) type TypeMap = BTreeMap<String, Arc<Resource>>;

/// One copy of each distinct published map: the scopes of thousands of
/// pods publish equal maps (the same class, or the same outbound part),
/// which then cost one map, not one each. Found by (type, set version)
/// and checked member by member — name, version *and bytes*, since
/// versions are the caller's and two servers in one process may publish
/// different resources under the same name and version — so a hash
/// collision only costs sharing. Interned resources compare by pointer.
fn share_map(type_url: &TypeUrl, version: &str, map: TypeMap) -> Arc<TypeMap> {
    type Maps = HashMap<(TypeUrl, String), Weak<TypeMap>>;
    static MAPS: OnceLock<Mutex<(Maps, usize)>> = OnceLock::new();
    let mut guard = MAPS.get_or_init(Default::default).lock();
    let (maps, inserts) = &mut *guard;
    let key = (type_url.clone(), version.to_owned());
    if let Some(have) = maps.get(&key).and_then(Weak::upgrade) {
        let same = have.len() == map.len()
            && have
                .iter()
                .zip(map.iter())
                .all(|((n1, r1), (n2, r2))| n1 == n2 && (Arc::ptr_eq(r1, r2) || **r1 == **r2));
        if same {
            return have;
        }
    }
    let shared = Arc::new(map);
    maps.insert(key, Arc::downgrade(&shared));
    *inserts += 1;
    if *inserts >= 1024 {
        *inserts = 0;
        maps.retain(|_, w| w.strong_count() > 0);
    }
    shared
}

/// A published [`Resources`] with its per-type versions computed once.
/// Each type's map sits behind its own `Arc`, so a stream can keep the
/// map it last diffed against (what its client holds) for the price of
/// a pointer.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) by_type: BTreeMap<TypeUrl, Arc<TypeMap>>,
    pub(crate) type_versions: BTreeMap<TypeUrl, String>,
}

/// The version of a type nobody published: the hash of the empty set.
pub(crate) fn empty_set_version() -> String {
    set_version(std::iter::empty())
}

impl Snapshot {
    pub(crate) fn new(resources: Resources) -> Self {
        let type_versions: BTreeMap<TypeUrl, String> = resources
            .by_type
            .iter()
            .map(|(t, rs)| {
                let v = set_version(rs.values().map(|r| (r.name.as_str(), r.version.as_str())));
                (t.clone(), v)
            })
            .collect();
        let by_type = resources
            .by_type
            .into_iter()
            .map(|(t, rs)| {
                let version: &String = &type_versions[&t];
                let shared = share_map(&t, version, rs);
                (t, shared)
            })
            .collect();
        Snapshot {
            by_type,
            type_versions,
        }
    }

    pub(crate) fn type_version(&self, type_url: &TypeUrl) -> String {
        self.type_versions
            .get(type_url)
            .cloned()
            .unwrap_or_else(empty_set_version)
    }

    pub(crate) fn of_type(&self, type_url: &TypeUrl) -> Option<&Arc<TypeMap>> {
        self.by_type.get(type_url)
    }

    /// Whether `other` serves exactly the same thing: every type with the
    /// same set version. An empty type and an absent one are the same.
    pub(crate) fn same_as(&self, other: &Snapshot) -> bool {
        let empty = empty_set_version();
        let nonempty = |s: &'_ Snapshot| {
            s.type_versions
                .iter()
                .filter(|(_, v)| **v != empty)
                .map(|(t, v)| (t.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        nonempty(self) == nonempty(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_version_is_fnv1a_64() {
        // Published FNV-1a test vectors: stable across builds and hosts.
        assert_eq!(content_version(b""), "cbf29ce484222325");
        assert_eq!(content_version(b"a"), "af63dc4c8601ec8c");
        assert_eq!(content_version(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn set_version_sees_membership_and_versions_not_bytes() {
        let body = |v: &[u8]| prost_types::Any {
            type_url: TypeUrl::cluster().to_string(),
            value: v.to_vec(),
        };
        let a = Snapshot::new(Resources::new().with(Resource::new("a", "1", body(b"x"))));
        // Different bytes, same version: the same (the caller's version
        // is the truth, e.g. a map field encoded in another order).
        let same = Snapshot::new(Resources::new().with(Resource::new("a", "1", body(b"y"))));
        assert!(a.same_as(&same));
        let bumped = Snapshot::new(Resources::new().with(Resource::new("a", "2", body(b"x"))));
        assert!(!a.same_as(&bumped));
        let renamed = Snapshot::new(Resources::new().with(Resource::new("b", "1", body(b"x"))));
        assert!(!a.same_as(&renamed));
        // Field boundaries count: ("ab","c") is not ("a","bc").
        assert_ne!(set_version([("ab", "c")]), set_version([("a", "bc")]));
        // An empty declared type is no different from an absent one.
        let mut declared = Resources::new();
        declared.declare(TypeUrl::listener());
        assert!(Snapshot::new(declared).same_as(&Snapshot::new(Resources::new())));
    }

    #[test]
    fn resources_insert_replace_remove() {
        let body = prost_types::Any {
            type_url: TypeUrl::route().to_string(),
            value: vec![],
        };
        let mut r = Resources::new();
        r.insert(Resource::new("a", "1", body.clone()));
        r.insert(Resource::new("a", "2", body.clone()));
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(&TypeUrl::route(), "a").unwrap().version, "2");
        assert!(r.remove(&TypeUrl::route(), "a").is_some());
        assert!(r.is_empty());
        assert_eq!(r.types().count(), 1);
    }
}
