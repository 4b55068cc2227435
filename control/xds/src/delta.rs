//! Delta ADS, one stream's state machine, without I/O: requests in,
//! responses out, against whatever snapshot the stream's scope has.
//!
//! Per type it keeps the subscription (wildcard and/or names), what the
//! client holds, the responses in flight by nonce, and the ACK/NACK
//! status.
//!
//! What the client holds is not stored name by name: after a diff it is
//! exactly the published map of that diff (shared with the snapshot)
//! restricted to the subscription of that diff (`Base`), plus a few
//! `overrides` until the next diff (a reconnecting client's
//! `initial_resource_versions`, names it unsubscribed). A publish that
//! changes nothing but the map is diffed against the base map in one
//! ordered pass; anything else takes the general name-by-name diff.
//!
//! The record is updated when a response is *sent*, not when it is
//! ACKed. That is what makes a NACK stick: the client keeps its last good
//! version, the record says it has the rejected one, so the rejected
//! version is not offered again; the next change to the resource has a
//! new version and is sent. A reconnecting client reports what it really
//! holds in `initial_resource_versions`, so a restarted stream starts from
//! the truth.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    sync::{Arc, OnceLock, Weak},
    time::SystemTime,
};

use parking_lot::Mutex;
use tracing::debug;

use crate::{
    resource::{Snapshot, TypeMap},
    server::StreamProtocol,
    status::{Acked, Nack, Protocol, Sent, Subscription, TypeStatus},
    ErrorDetail, Resource, TypeUrl,
};

/// The explicit wildcard name.
const WILDCARD: &str = "*";

/// Responses remembered for ACK matching; a client that answers none of
/// them does not make the server grow without bound.
const MAX_IN_FLIGHT: usize = 32;

/// About the most resource bytes one response carries; more go out in
/// several responses (at least one resource each).
const MAX_RESPONSE_BYTES: usize = 32 * 1024;

/// A `DeltaDiscoveryRequest`, as this crate sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeltaRequest {
    pub type_url: TypeUrl,
    pub subscribe: Vec<String>,
    pub unsubscribe: Vec<String>,
    /// Only meaningful on the first request of a type on a stream.
    pub initial_versions: BTreeMap<String, String>,
    /// Empty on a subscription-only request.
    pub response_nonce: String,
    /// Present on a NACK.
    pub error: Option<ErrorDetail>,
}

/// A `DeltaDiscoveryResponse`, as this crate sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeltaResponse {
    pub type_url: TypeUrl,
    /// The version of the scope's whole set of this type (informational
    /// for the client; the per-resource versions are what count).
    pub system_version: String,
    pub nonce: String,
    pub resources: Vec<Arc<Resource>>,
    pub removed: Vec<String>,
}

#[derive(Debug)]
struct InFlight {
    nonce: String,
    system_version: String,
    /// The sent resources (their names and versions), shared with the
    /// snapshot.
    resources: Vec<Arc<Resource>>,
}

/// A subscribed name set: shared (copy on write) between a stream's
/// current subscription and the one of its last diff.
type NameSet = BTreeSet<Arc<str>>;

/// One copy of each resource name for every stream that subscribes to
/// it (a mesh's EDS names are subscribed by thousands of streams).
/// Bounded: past [`MAX_INTERNED`] names, new ones get a private copy, so
/// clients naming random resources cannot grow it without limit.
fn intern_name(name: String) -> Arc<str> {
    static NAMES: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock();
    if let Some(n) = names.get(name.as_str()) {
        return n.clone();
    }
    let n: Arc<str> = name.into();
    if names.len() < MAX_INTERNED {
        names.insert(n.clone());
    }
    n
}

const MAX_INTERNED: usize = 1 << 20;

/// One copy of each distinct subscribed name *set*: the sidecars of one
/// namespace subscribe to the same EDS names, so their streams share one
/// set (copy on write when one of them changes its subscription).
fn share_set(names: &mut Arc<NameSet>) {
    type Sets = HashMap<u64, Vec<Weak<NameSet>>>;
    static SETS: OnceLock<Mutex<Sets>> = OnceLock::new();
    if names.len() < 2 {
        return;
    }
    let mut h = crate::resource::Fnv64::new();
    for n in names.iter() {
        h.field(n);
    }
    let key = h.finish();
    let mut sets = SETS.get_or_init(Default::default).lock();
    let candidates = sets.entry(key).or_default();
    candidates.retain(|w| w.strong_count() > 0);
    for w in candidates.iter() {
        if let Some(set) = w.upgrade() {
            if Arc::ptr_eq(&set, names) {
                return;
            }
            if *set == **names {
                *names = set;
                return;
            }
        }
    }
    candidates.push(Arc::downgrade(names));
    if sets.len() > 4096 {
        sets.retain(|_, v| {
            v.retain(|w| w.strong_count() > 0);
            !v.is_empty()
        });
    }
}

/// What a client held for one name, in the general diff.
#[derive(Clone, Debug, PartialEq)]
enum Held {
    Version(String),
    /// Told it does not exist (an explicitly subscribed name).
    Absent,
}

/// What the client holds as of the last diff: for every name it wanted
/// then, the resource of `map` (or, for an explicit name `map` lacks,
/// "does not exist"). Nothing per name is stored: the map is the
/// snapshot's, shared by every stream of the scope.
#[derive(Debug)]
struct Base {
    map: Arc<TypeMap>,
    wildcard: bool,
    names: Arc<NameSet>,
}

impl Base {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

#[derive(Debug, Default)]
struct DeltaType {
    wildcard: bool,
    names: Arc<NameSet>,
    /// What the client holds: `base`, then `overrides` on top (name →
    /// `None`: holds nothing). Overrides come from the first request's
    /// `initial_resource_versions` and from unsubscriptions; a diff
    /// folds them into a new base.
    base: Option<Base>,
    overrides: BTreeMap<String, Option<Held>>,
    /// The client is waiting for an answer even if it would be empty:
    /// a fresh wildcard subscription holding nothing must be answered,
    /// or Envoy waits for its initial fetch timeout.
    owes_answer: bool,
    /// The subscription (or `overrides`) changed since the last diff.
    dirty: bool,
    /// The snapshot's set version at the last diff; equal and not dirty
    /// means nothing can have changed for this type.
    diffed_version: Option<String>,
    in_flight: VecDeque<InFlight>,
    status: TypeStatus,
}

impl DeltaType {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// What the client holds, name by name (the general diff's input).
    fn known(&self) -> BTreeMap<String, Option<Held>> {
        let mut known = BTreeMap::new();
        if let Some(base) = &self.base {
            if base.wildcard {
                for (name, r) in base.map.iter() {
                    known.insert(name.clone(), Some(Held::Version(r.version.clone())));
                }
            }
            for name in base.names.iter() {
                let held = match base.map.get(&**name) {
                    Some(r) => Held::Version(r.version.clone()),
                    None => Held::Absent,
                };
                known.insert(name.to_string(), Some(held));
            }
        }
        for (name, held) in &self.overrides {
            known.insert(name.clone(), held.clone());
        }
        known.retain(|_, held| held.is_some());
        known
    }

    /// What the client holds for `name` (`None`: nothing).
    fn held(&self, name: &str) -> Option<Held> {
        if let Some(held) = self.overrides.get(name) {
            return held.clone();
        }
        let base = self.base.as_ref().filter(|b| b.wants(name))?;
        match base.map.get(name) {
            Some(r) => Some(Held::Version(r.version.clone())),
            None => base.names.contains(name).then_some(Held::Absent),
        }
    }

    /// Record that the client holds `name` no more (no message needed:
    /// it drops what it unsubscribes).
    fn forget(&mut self, name: &str) {
        let held =
            self.overrides.contains_key(name) || self.base.as_ref().is_some_and(|b| b.wants(name));
        if held {
            self.overrides.insert(name.to_owned(), None);
        }
    }
}

/// One Delta ADS stream's state.
#[derive(Debug, Default)]
pub struct DeltaStream {
    next_nonce: u64,
    types: BTreeMap<TypeUrl, DeltaType>,
}

impl DeltaStream {
    /// Take a request: subscription changes, ACK or NACK.
    pub fn on_request(&mut self, req: DeltaRequest, now: SystemTime) {
        let first = !self.types.contains_key(&req.type_url);
        let t = self.types.entry(req.type_url.clone()).or_default();

        if !req.response_nonce.is_empty() {
            match t
                .in_flight
                .iter()
                .position(|f| f.nonce == req.response_nonce)
            {
                Some(pos) => {
                    // Older responses the client skipped are superseded.
                    t.in_flight.drain(..pos);
                    let f = t.in_flight.pop_front().expect("position found above");
                    settle(t, f, req.error, now);
                }
                None => debug!(
                    type_url = %req.type_url,
                    nonce = %req.response_nonce,
                    "answer to an unknown or expired nonce"
                ),
            }
        }

        if first {
            // What a reconnecting client already holds. Names it holds
            // but no longer subscribes to are dropped in the diff.
            for (name, version) in req.initial_versions {
                t.overrides.insert(name, Some(Held::Version(version)));
            }
            // The first request of a type with no names is a wildcard
            // subscription (Envoy's LDS and CDS).
            if req.subscribe.is_empty() {
                t.wildcard = true;
            }
            t.owes_answer = t.overrides.is_empty();
            t.dirty = true;
        } else if !req.initial_versions.is_empty() {
            debug!(type_url = %req.type_url, "initial_resource_versions after the first request ignored");
        }

        let changed = !req.subscribe.is_empty() || !req.unsubscribe.is_empty();
        for name in req.subscribe {
            t.dirty = true;
            if name == WILDCARD {
                if !t.wildcard && t.known().is_empty() {
                    t.owes_answer = true;
                }
                t.wildcard = true;
            } else if !t.names.contains(name.as_str()) {
                Arc::make_mut(&mut t.names).insert(intern_name(name));
            }
        }
        for name in req.unsubscribe {
            t.dirty = true;
            if name == WILDCARD {
                t.wildcard = false;
                // The client drops what it no longer subscribes to.
                let known = t.known();
                for held in known.keys() {
                    if !t.names.contains(held.as_str()) {
                        t.forget(held);
                    }
                }
            } else {
                if t.names.contains(name.as_str()) {
                    Arc::make_mut(&mut t.names).remove(name.as_str());
                }
                if !t.wildcard {
                    t.forget(&name);
                }
            }
        }
        if changed {
            share_set(&mut t.names);
        }
    }

    /// The response for `type_url` against `snapshot`, if the client
    /// lacks anything (or is owed an answer). Records it as sent.
    pub fn respond(
        &mut self,
        type_url: &TypeUrl,
        snapshot: &Snapshot,
        now: SystemTime,
    ) -> Option<DeltaResponse> {
        let t = self.types.get_mut(type_url)?;
        let system_version = snapshot.type_version(type_url);
        if !t.dirty && t.diffed_version.as_deref() == Some(system_version.as_str()) {
            return None;
        }
        let current = snapshot
            .of_type(type_url)
            .cloned()
            .unwrap_or_else(|| Arc::new(BTreeMap::new()));
        let (mut resources, removed) = match &t.base {
            // Only the published map changed: compare it with the one the
            // client has, in one ordered pass (unchanged resources are
            // usually the same `Arc`).
            Some(base) if !t.dirty && t.overrides.is_empty() => diff_maps(t, base, &current),
            _ => diff_general(t, &current),
        };
        // A big answer goes out in parts of about MAX_RESPONSE_BYTES: the
        // connection's buffers grow to the largest message and stay that
        // size, so this bounds them per stream. What is not sent yet is
        // recorded as still held at its old version, and the next diff
        // (forced) sends it.
        let mut size = 0;
        let cut = resources.iter().position(|r| {
            size += r.body.value.len();
            size > MAX_RESPONSE_BYTES
        });
        let unsent: Vec<(String, Option<Held>)> = match cut {
            Some(cut) => resources
                .split_off(cut.max(1))
                .iter()
                .map(|r| (r.name.clone(), t.held(&r.name)))
                .collect(),
            None => Vec::new(),
        };
        // A resource that is gone or re-offered is no longer "rejected".
        if !t.status.rejected.is_empty() {
            for name in removed.iter().chain(resources.iter().map(|r| &r.name)) {
                t.status.rejected.remove(name);
            }
        }
        t.base = Some(Base {
            map: current.clone(),
            wildcard: t.wildcard,
            names: t.names.clone(),
        });
        t.overrides.clear();
        t.dirty = !unsent.is_empty();
        t.overrides.extend(unsent);
        t.diffed_version = Some(system_version.clone());
        t.status.resources = if t.wildcard {
            current.len()
        } else {
            t.names
                .iter()
                .filter(|n| current.contains_key(&***n))
                .count()
        };
        if resources.is_empty() && removed.is_empty() && !t.owes_answer {
            if t.status.sent.is_none() && t.status.rejected.is_empty() {
                // A reconnecting client that already holds exactly what
                // we serve: in sync without a response.
                t.status.acked = Some(Acked {
                    version: system_version,
                    nonce: String::new(),
                    at: now,
                });
            }
            return None;
        }
        t.owes_answer = false;
        self.next_nonce += 1;
        let nonce = self.next_nonce.to_string();
        t.status.sent = Some(Sent {
            version: system_version.clone(),
            nonce: nonce.clone(),
            at: now,
            resources: resources.len(),
            removed: removed.len(),
        });
        if t.in_flight.len() == MAX_IN_FLIGHT {
            t.in_flight.pop_front();
        }
        t.in_flight.push_back(InFlight {
            nonce: nonce.clone(),
            system_version: system_version.clone(),
            resources: resources.clone(),
        });
        Some(DeltaResponse {
            type_url: type_url.clone(),
            system_version,
            nonce,
            resources,
            removed,
        })
    }

    pub fn status(&self) -> BTreeMap<TypeUrl, TypeStatus> {
        self.types
            .iter()
            .map(|(k, t)| {
                let mut status = t.status.clone();
                status.subscription = Subscription {
                    wildcard: t.wildcard,
                    names: t.names.iter().map(|n| n.to_string()).collect(),
                };
                (k.clone(), status)
            })
            .collect()
    }
}

/// The diff when the subscription is the one of the last diff and the
/// client holds exactly `base`: walk both maps in name order.
fn diff_maps(
    t: &DeltaType,
    base: &Base,
    current: &Arc<TypeMap>,
) -> (Vec<Arc<Resource>>, Vec<String>) {
    let mut resources = Vec::new();
    let mut removed = Vec::new();
    if Arc::ptr_eq(&base.map, current) {
        return (resources, removed);
    }
    let mut old = base.map.iter().peekable();
    let mut new = current.iter().peekable();
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((o, _)), Some((n, _))) => o.as_str().cmp(n.as_str()),
        };
        match order {
            Ordering::Equal => {
                let ((name, was), (_, now)) = (old.next().unwrap(), new.next().unwrap());
                if !Arc::ptr_eq(was, now) && was.version != now.version && t.wants(name) {
                    resources.push(now.clone());
                }
            }
            // Added.
            Ordering::Greater => {
                let (name, now) = new.next().unwrap();
                if t.wants(name) {
                    resources.push(now.clone());
                }
            }
            // Gone: a wildcard client drops it; an explicit one learns it
            // does not exist.
            Ordering::Less => {
                let (name, _) = old.next().unwrap();
                if t.wants(name) {
                    removed.push(name.clone());
                }
            }
        }
    }
    (resources, removed)
}

/// The diff in general: what the client holds (`base` with `overrides`)
/// against what it should hold now.
fn diff_general(t: &DeltaType, current: &TypeMap) -> (Vec<Arc<Resource>>, Vec<String>) {
    let mut known = t.known();
    let mut resources = Vec::new();
    let mut removed = Vec::new();
    let mut offer = |known: &mut BTreeMap<String, Option<Held>>, r: &Arc<Resource>| {
        let held = match known.get(&r.name) {
            Some(Some(Held::Version(v))) => Some(v.as_str()),
            _ => None,
        };
        if held != Some(r.version.as_str()) {
            known.insert(r.name.clone(), Some(Held::Version(r.version.clone())));
            resources.push(r.clone());
        }
    };
    if t.wildcard {
        for r in current.values() {
            offer(&mut known, r);
        }
    }
    for name in t.names.iter() {
        match current.get(&**name) {
            Some(r) => {
                if !t.wildcard {
                    offer(&mut known, r);
                }
            }
            // Explicitly asked for and absent: say so once, so the
            // client stops waiting (and drops it if it had it).
            None => {
                if known.get(&**name) != Some(&Some(Held::Absent)) {
                    known.insert(name.to_string(), Some(Held::Absent));
                    removed.push(name.to_string());
                }
            }
        }
    }
    // Held but gone, or no longer wanted.
    for (name, held) in &known {
        if current.contains_key(name) && t.wants(name) {
            continue;
        }
        if t.names.contains(name.as_str()) {
            continue; // explicit and absent: handled above
        }
        if held.is_some() && t.wants(name) {
            removed.push(name.clone());
        }
    }
    (resources, removed)
}

fn settle(t: &mut DeltaType, f: InFlight, error: Option<ErrorDetail>, now: SystemTime) {
    match error {
        None => {
            if !t.status.rejected.is_empty() {
                for r in &f.resources {
                    t.status.rejected.remove(&r.name);
                }
            }
            t.status.acked = Some(Acked {
                version: f.system_version,
                nonce: f.nonce,
                at: now,
            });
        }
        Some(error) => {
            debug!(nonce = %f.nonce, message = %error.message, "NACK");
            let rejected: BTreeMap<String, String> = f
                .resources
                .iter()
                .map(|r| (r.name.clone(), r.version.clone()))
                .collect();
            t.status.rejected.extend(rejected.clone());
            t.status.last_nack = Some(Nack {
                version: f.system_version,
                nonce: f.nonce,
                at: now,
                error,
                rejected,
            });
        }
    }
}

impl StreamProtocol for DeltaStream {
    type Request = DeltaRequest;
    type Response = DeltaResponse;
    const PROTOCOL: Protocol = Protocol::Delta;

    fn on_request(&mut self, req: DeltaRequest, now: SystemTime) {
        DeltaStream::on_request(self, req, now)
    }
    fn respond(&mut self, t: &TypeUrl, s: &Snapshot, now: SystemTime) -> Option<DeltaResponse> {
        DeltaStream::respond(self, t, s, now)
    }
    fn types(&self) -> Vec<TypeUrl> {
        self.types.keys().cloned().collect()
    }
    fn status(&self) -> BTreeMap<TypeUrl, TypeStatus> {
        DeltaStream::status(self)
    }
    fn sent(resp: &DeltaResponse) -> (TypeUrl, String, usize) {
        let bytes = resp.resources.iter().map(|r| r.body.value.len()).sum();
        (resp.type_url.clone(), resp.nonce.clone(), bytes)
    }
    fn answers(req: &DeltaRequest) -> Option<(TypeUrl, String)> {
        (!req.response_nonce.is_empty()).then(|| (req.type_url.clone(), req.response_nonce.clone()))
    }
}

#[cfg(test)]
mod tests;
