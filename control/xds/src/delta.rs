//! Delta ADS, one stream's state machine, without I/O: requests in,
//! responses out, against whatever snapshot the stream's scope has.
//!
//! Per type it keeps the subscription (wildcard and/or names), what the
//! client holds (`known`: name → version, or "told it does not exist"),
//! the responses in flight by nonce, and the ACK/NACK status.
//!
//! `known` is updated when a response is *sent*, not when it is ACKed.
//! That is what makes a NACK stick: the client keeps its last good
//! version, `known` says it has the rejected one, so the rejected version
//! is not offered again; the next change to the resource has a new
//! version and is sent. A reconnecting client reports what it really
//! holds in `initial_resource_versions`, so a restarted stream starts from
//! the truth.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
    time::SystemTime,
};

use tracing::debug;

use crate::{
    resource::Snapshot,
    server::StreamProtocol,
    status::{Acked, Nack, Protocol, Sent, Subscription, TypeStatus},
    ErrorDetail, Resource, TypeUrl,
};

/// The explicit wildcard name.
const WILDCARD: &str = "*";

/// Responses remembered for ACK matching; a client that answers none of
/// them does not make the server grow without bound.
const MAX_IN_FLIGHT: usize = 32;

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
    /// Sent resources: name → version.
    resources: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct DeltaType {
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the client holds: name → `Some(version)`, or `None` when we
    /// told it the (explicitly subscribed) resource does not exist.
    known: BTreeMap<String, Option<String>>,
    /// The client is waiting for an answer even if it would be empty:
    /// a fresh wildcard subscription holding nothing must be answered,
    /// or Envoy waits for its initial fetch timeout.
    owes_answer: bool,
    /// The subscription changed since the last diff.
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
                t.known.insert(name, Some(version));
            }
            // The first request of a type with no names is a wildcard
            // subscription (Envoy's LDS and CDS).
            if req.subscribe.is_empty() {
                t.wildcard = true;
            }
            t.owes_answer = t.known.is_empty();
            t.dirty = true;
        } else if !req.initial_versions.is_empty() {
            debug!(type_url = %req.type_url, "initial_resource_versions after the first request ignored");
        }

        for name in req.subscribe {
            t.dirty = true;
            if name == WILDCARD {
                if !t.wildcard && t.known.is_empty() {
                    t.owes_answer = true;
                }
                t.wildcard = true;
            } else {
                t.names.insert(name);
            }
        }
        for name in req.unsubscribe {
            t.dirty = true;
            if name == WILDCARD {
                t.wildcard = false;
                // The client drops what it no longer subscribes to.
                let names = &t.names;
                t.known.retain(|n, _| names.contains(n));
            } else {
                t.names.remove(&name);
                if !t.wildcard {
                    t.known.remove(&name);
                }
            }
        }
        t.status.subscription = Subscription {
            wildcard: t.wildcard,
            names: t.names.iter().cloned().collect(),
        };
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
        let empty = BTreeMap::new();
        let current = snapshot.of_type(type_url).unwrap_or(&empty);
        let mut resources = Vec::new();
        let mut removed = Vec::new();

        let mut offer = |t: &mut DeltaType, r: &Arc<Resource>| {
            let held = t.known.get(&r.name).and_then(Option::as_deref);
            if held != Some(r.version.as_str()) {
                t.known.insert(r.name.clone(), Some(r.version.clone()));
                resources.push(r.clone());
            }
        };
        if t.wildcard {
            for r in current.values() {
                offer(t, r);
            }
        }
        let names: Vec<String> = t.names.iter().cloned().collect();
        for name in &names {
            match current.get(name) {
                Some(r) => {
                    if !t.wildcard {
                        offer(t, r);
                    }
                }
                // Explicitly asked for and absent: say so once, so the
                // client stops waiting (and drops it if it had it).
                None => {
                    if t.known.get(name) != Some(&None) {
                        t.known.insert(name.clone(), None);
                        removed.push(name.clone());
                    }
                }
            }
        }
        // Held but gone, or no longer wanted.
        let mut forget = Vec::new();
        for (name, held) in &t.known {
            if current.contains_key(name) && t.wants(name) {
                continue;
            }
            if t.names.contains(name) {
                continue; // explicit and absent: handled above
            }
            if held.is_some() && t.wants(name) {
                removed.push(name.clone());
            }
            forget.push(name.clone());
        }
        for name in forget {
            t.known.remove(&name);
        }
        // A resource that is gone or re-offered is no longer "rejected".
        for name in removed.iter().chain(resources.iter().map(|r| &r.name)) {
            t.status.rejected.remove(name);
        }

        t.dirty = false;
        t.diffed_version = Some(system_version.clone());
        t.status.resources = t.known.values().filter(|v| v.is_some()).count();
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
            resources: resources
                .iter()
                .map(|r| (r.name.clone(), r.version.clone()))
                .collect(),
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
            .map(|(k, t)| (k.clone(), t.status.clone()))
            .collect()
    }
}

fn settle(t: &mut DeltaType, f: InFlight, error: Option<ErrorDetail>, now: SystemTime) {
    match error {
        None => {
            for name in f.resources.keys() {
                t.status.rejected.remove(name);
            }
            t.status.acked = Some(Acked {
                version: f.system_version,
                nonce: f.nonce,
                at: now,
            });
        }
        Some(error) => {
            debug!(nonce = %f.nonce, message = %error.message, "NACK");
            t.status.rejected.extend(f.resources.clone());
            t.status.last_nack = Some(Nack {
                version: f.system_version,
                nonce: f.nonce,
                at: now,
                error,
                rejected: f.resources,
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
}

#[cfg(test)]
mod tests;
