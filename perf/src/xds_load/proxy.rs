//! One simulated sidecar's view of the control plane, without I/O: what
//! it subscribes to, what it holds (name → version per type), and what it
//! says back (ACKs and subscription changes), the way Envoy behaves on a
//! Delta ADS stream:
//!
//! - LDS and CDS are wildcard subscriptions, opened on every stream;
//! - RDS follows the listeners: the route configurations their HTTP
//!   connection managers name (`rds.route_config_name`);
//! - EDS follows the clusters: the EDS name of every EDS cluster;
//! - every response is ACKed (nothing is NACKed), after the subscription
//!   changes it caused, as Envoy subscribes a warming cluster's endpoints
//!   before it ACKs the cluster;
//! - on a new stream after a disconnect, each type's first request
//!   carries the versions held (`initial_resource_versions`).
//!
//! Memory per proxy is bounded by `max_resources`: a response that would
//! make it hold more is an error for that proxy.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
};

use crate::xds_load::catalog::{Catalog, Sym};

/// The four resource types a sidecar follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    #[default]
    Listener,
    Route,
    Cluster,
    Endpoint,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Listener, Kind::Route, Kind::Cluster, Kind::Endpoint];
    /// The order of the first requests on a stream: clusters before their
    /// endpoints, listeners before their routes (Envoy's warming order).
    pub const REQUEST_ORDER: [Kind; 4] =
        [Kind::Cluster, Kind::Endpoint, Kind::Listener, Kind::Route];

    pub fn index(self) -> usize {
        match self {
            Kind::Listener => 0,
            Kind::Route => 1,
            Kind::Cluster => 2,
            Kind::Endpoint => 3,
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Kind::Listener => "LDS",
            Kind::Route => "RDS",
            Kind::Cluster => "CDS",
            Kind::Endpoint => "EDS",
        }
    }

    /// Subscribed with a wildcard (LDS, CDS) rather than by name.
    pub fn wildcard(self) -> bool {
        matches!(self, Kind::Listener | Kind::Cluster)
    }
}

/// A request, in our terms (see `wire::request`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    pub subscribe: Vec<Sym>,
    pub unsubscribe: Vec<Sym>,
    pub initial_versions: Vec<(Sym, Sym)>,
    /// Set on an ACK.
    pub nonce: Option<String>,
}

/// A resource of a response; `body` is the encoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawResource {
    pub name: String,
    pub version: String,
    pub body: Option<Vec<u8>>,
}

/// A response, in our terms (see `wire::response`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// `None` for a type this sidecar does not follow.
    pub kind: Option<Kind>,
    pub type_url: String,
    pub nonce: String,
    pub resources: Vec<RawResource>,
    pub removed: Vec<String>,
}

/// What a response did, and what to send back.
#[derive(Debug, Default)]
pub struct Applied {
    /// Subscription changes first, then the ACK.
    pub requests: Vec<Request>,
    /// Resources that are new or have a new version, plus held resources
    /// removed: the response's useful content.
    pub changed: usize,
    /// Resources re-sent with the version already held, and removals of
    /// names not held: content the proxy did not need.
    pub redundant: usize,
    /// Resources of a named type sent without being subscribed (ignored).
    pub unsolicited: usize,
    /// Resources whose body did not decode (recorded, still ACKed).
    pub decode_errors: Vec<String>,
    /// Watched load assignments received: name and endpoint addresses.
    pub watched: Vec<(Sym, Arc<[IpAddr]>)>,
}

impl Applied {
    /// Nothing in the response changed what the proxy holds.
    pub fn noop(&self) -> bool {
        self.changed == 0
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeState {
    /// Names subscribed (RDS, EDS); empty for the wildcard types.
    subscribed: HashSet<Sym>,
    /// What the proxy holds: name → version.
    held: HashMap<Sym, Sym>,
    /// Subscribed names the server said do not exist.
    absent: HashSet<Sym>,
    /// Responses of this type on the current stream.
    responses: u64,
    /// Reconnected holding resources of this (wildcard) type.
    resumed: bool,
    /// The type's first request went out on the current stream.
    opened: bool,
}

/// One simulated sidecar's state across its streams.
#[derive(Clone, Debug)]
pub struct ProxyState {
    types: [TypeState; 4],
    max_resources: usize,
}

impl ProxyState {
    pub fn new(max_resources: usize) -> ProxyState {
        ProxyState {
            types: Default::default(),
            max_resources,
        }
    }

    fn t(&self, kind: Kind) -> &TypeState {
        &self.types[kind.index()]
    }

    fn t_mut(&mut self, kind: Kind) -> &mut TypeState {
        &mut self.types[kind.index()]
    }

    /// What the proxy holds of `kind`: name → version.
    pub fn held(&self, kind: Kind) -> &HashMap<Sym, Sym> {
        &self.t(kind).held
    }

    pub fn is_subscribed(&self, kind: Kind, name: Sym) -> bool {
        self.t(kind).subscribed.contains(&name)
    }

    pub fn resource_count(&self) -> usize {
        self.types.iter().map(|t| t.held.len()).sum()
    }

    /// The first requests of a new stream: CDS and LDS wildcard, and
    /// RDS/EDS for the names already subscribed (after a reconnect), each
    /// with the versions held. A named type with nothing to subscribe
    /// waits: its first request must name something, or the server takes
    /// it for a wildcard.
    pub fn open_stream(&mut self) -> Vec<Request> {
        let mut out = Vec::new();
        for kind in Kind::REQUEST_ORDER {
            let t = self.t_mut(kind);
            t.responses = 0;
            t.opened = false;
            // A wildcard type held on reconnecting is complete without an
            // answer: the server sends nothing when the versions held are
            // current (and sends what changed otherwise).
            t.resumed = kind.wildcard() && !t.held.is_empty();
            if !kind.wildcard() && t.subscribed.is_empty() {
                continue;
            }
            t.opened = true;
            let mut subscribe: Vec<Sym> = t.subscribed.iter().copied().collect();
            subscribe.sort();
            let mut initial: Vec<(Sym, Sym)> = t.held.iter().map(|(n, v)| (*n, *v)).collect();
            initial.sort();
            out.push(Request {
                kind,
                subscribe,
                initial_versions: initial,
                ..Request::default()
            });
        }
        out
    }

    /// Take one response: update what is held, follow listeners and
    /// clusters to the routes and endpoints they need, and say what to
    /// send back. `watched` tells which load assignments a measurement
    /// wants the endpoint addresses of.
    ///
    /// Errors (the proxy gives up its stream): a response that would
    /// exceed `max_resources`, or the catalog is full.
    pub fn on_response(
        &mut self,
        resp: Response,
        catalog: &Catalog,
        watched: &dyn Fn(Sym) -> bool,
    ) -> Result<Applied, String> {
        let mut applied = Applied::default();
        let Some(kind) = resp.kind else {
            // The server answers only types the client asked about.
            return Err(format!(
                "response of a type never subscribed: {}",
                resp.type_url
            ));
        };
        let added = resp.resources.len();
        if self.resource_count() + added > self.max_resources {
            return Err(format!(
                "a {} response would make this proxy hold more than {} resources (--max-resources)",
                kind.short(),
                self.max_resources
            ));
        }
        for r in resp.resources {
            let name = catalog.intern(&r.name)?;
            let version = catalog.intern(&r.version)?;
            if !kind.wildcard() && !self.t(kind).subscribed.contains(&name) {
                // Sent while our unsubscribe was on its way, most likely.
                applied.unsolicited += 1;
                continue;
            }
            let Some(body) = r.body else {
                applied
                    .decode_errors
                    .push(format!("{} {}: no body", kind.short(), r.name));
                continue;
            };
            let learnt = match kind {
                Kind::Listener => catalog.learn_listener(name, version, &body).map(|_| ()),
                Kind::Cluster => catalog.learn_cluster(name, version, &body).map(|_| ()),
                Kind::Endpoint if watched(name) => catalog
                    .learn_endpoints(name, version, &body)
                    .map(|addrs| applied.watched.push((name, addrs))),
                Kind::Route | Kind::Endpoint => Ok(()),
            };
            if let Err(e) = learnt {
                // Not held: the catalog could not derive what it needs.
                applied
                    .decode_errors
                    .push(format!("{} {}: {e}", kind.short(), r.name));
                continue;
            }
            let t = self.t_mut(kind);
            t.absent.remove(&name);
            match t.held.insert(name, version) {
                Some(old) if old == version => applied.redundant += 1,
                _ => applied.changed += 1,
            }
        }
        for name in resp.removed {
            let Some(name) = catalog.lookup(&name) else {
                applied.redundant += 1;
                continue;
            };
            let t = self.t_mut(kind);
            if t.held.remove(&name).is_some() {
                applied.changed += 1;
            } else {
                applied.redundant += 1;
            }
            if !kind.wildcard() && t.subscribed.contains(&name) {
                t.absent.insert(name);
            }
        }
        self.t_mut(kind).responses += 1;

        // Follow: listeners → routes, clusters → endpoints.
        let follow = match kind {
            Kind::Listener => Some(Kind::Route),
            Kind::Cluster => Some(Kind::Endpoint),
            _ => None,
        };
        if let Some(dep) = follow.filter(|_| applied.changed > 0) {
            if let Some(req) = self.follow(kind, dep, catalog)? {
                applied.requests.push(req);
            }
        }
        applied.requests.push(Request {
            kind,
            nonce: Some(resp.nonce),
            ..Request::default()
        });
        Ok(applied)
    }

    /// Bring the subscriptions of `dep` in line with what the held
    /// resources of `kind` name.
    fn follow(
        &mut self,
        kind: Kind,
        dep: Kind,
        catalog: &Catalog,
    ) -> Result<Option<Request>, String> {
        let mut wanted: HashSet<Sym> = HashSet::new();
        for (name, version) in &self.t(kind).held {
            match kind {
                Kind::Listener => {
                    let routes = catalog.listener_routes(*name, *version).ok_or_else(|| {
                        format!("listener {} was never learnt", catalog.resolve(*name))
                    })?;
                    wanted.extend(routes.iter().copied());
                }
                _ => {
                    let eds = catalog.cluster_eds(*name, *version).ok_or_else(|| {
                        format!("cluster {} was never learnt", catalog.resolve(*name))
                    })?;
                    wanted.extend(eds);
                }
            }
        }
        let t = self.t_mut(dep);
        let mut subscribe: Vec<Sym> = wanted.difference(&t.subscribed).copied().collect();
        let mut unsubscribe: Vec<Sym> = t.subscribed.difference(&wanted).copied().collect();
        for n in &unsubscribe {
            // The client drops what it no longer subscribes to.
            t.held.remove(n);
            t.absent.remove(n);
        }
        t.subscribed = wanted;
        if subscribe.is_empty() && (unsubscribe.is_empty() || !t.opened) {
            return Ok(None);
        }
        if !t.opened {
            // The type's first request: names only (see `open_stream`).
            unsubscribe.clear();
        }
        t.opened = true;
        subscribe.sort();
        unsubscribe.sort();
        Ok(Some(Request {
            kind: dep,
            subscribe,
            unsubscribe,
            ..Request::default()
        }))
    }

    /// Whether the proxy has its whole configuration from the current
    /// stream: LDS and CDS answered, and every route and load assignment
    /// it subscribes to either held or declared absent by the server.
    pub fn is_complete(&self) -> bool {
        Kind::ALL.into_iter().all(|k| {
            let t = self.t(k);
            if k.wildcard() {
                t.responses > 0 || t.resumed
            } else {
                t.subscribed
                    .iter()
                    .all(|n| t.held.contains_key(n) || t.absent.contains(n))
            }
        })
    }
}

/// How one proxy's resources differ from the truth, per resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The truth has it; the proxy does not.
    Missing { kind: Kind, name: Sym },
    /// Both have it with different versions.
    Stale {
        kind: Kind,
        name: Sym,
        held: Sym,
        truth: Sym,
    },
    /// The proxy holds something the truth does not.
    Extra { kind: Kind, name: Sym },
}

/// Compare a proxy's resources with a fresh stream's, every type.
pub fn compare(proxy: &ProxyState, truth: &ProxyState) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let (p, t) = (proxy.held(kind), truth.held(kind));
        for (name, version) in t {
            match p.get(name) {
                None => out.push(Mismatch::Missing { kind, name: *name }),
                Some(held) if held != version => out.push(Mismatch::Stale {
                    kind,
                    name: *name,
                    held: *held,
                    truth: *version,
                }),
                Some(_) => {}
            }
        }
        for name in p.keys() {
            if !t.contains_key(name) {
                out.push(Mismatch::Extra { kind, name: *name });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
