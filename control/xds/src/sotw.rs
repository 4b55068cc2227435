//! State-of-the-world ADS, one stream's state machine, without I/O.
//!
//! Every response carries the whole set of the type the client asked for
//! (all of it for a wildcard subscription, the named ones otherwise), and
//! its `version_info` is the version of exactly that set. That makes NACK
//! handling fall out: the rejected set has the version we last sent, so it
//! is not sent again until the set changes.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::SystemTime,
};

use tracing::debug;

use crate::{
    resource::{set_version, Snapshot},
    server::StreamProtocol,
    status::{Acked, Nack, Protocol, Sent, Subscription, TypeStatus},
    ErrorDetail, Resource, TypeUrl,
};

const WILDCARD: &str = "*";

/// A `DiscoveryRequest`, as this crate sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SotwRequest {
    pub type_url: TypeUrl,
    /// The version the client last accepted (empty at first).
    pub version_info: String,
    pub names: Vec<String>,
    pub response_nonce: String,
    pub error: Option<ErrorDetail>,
}

/// A `DiscoveryResponse`, as this crate sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct SotwResponse {
    pub type_url: TypeUrl,
    pub version_info: String,
    pub nonce: String,
    pub resources: Vec<Arc<Resource>>,
}

#[derive(Debug)]
struct LastSent {
    version: String,
    nonce: String,
    resources: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct SotwType {
    /// A first request with no names: every resource, for as long as the
    /// client keeps sending no names (the legacy wildcard of the spec).
    legacy_wildcard: bool,
    /// Explicit `*`.
    explicit_wildcard: bool,
    names: BTreeSet<String>,
    /// The client waits for an answer even if its version would not change.
    owes_answer: bool,
    /// The subscription changed since the last diff.
    dirty: bool,
    /// The scope's set version of the type at the last diff.
    diffed_version: Option<String>,
    last_sent: Option<LastSent>,
    status: TypeStatus,
}

impl SotwType {
    fn wildcard(&self) -> bool {
        self.legacy_wildcard || self.explicit_wildcard
    }
}

/// One state-of-the-world ADS stream's state.
#[derive(Debug, Default)]
pub struct SotwStream {
    next_nonce: u64,
    types: BTreeMap<TypeUrl, SotwType>,
}

impl SotwStream {
    pub fn on_request(&mut self, req: SotwRequest, now: SystemTime) {
        let first = !self.types.contains_key(&req.type_url);
        let t = self.types.entry(req.type_url.clone()).or_default();

        if !req.response_nonce.is_empty() {
            let Some(last) = t
                .last_sent
                .as_ref()
                .filter(|l| l.nonce == req.response_nonce)
            else {
                // An answer to an older response, overtaken by a newer
                // one the client has not seen yet: the spec says ignore
                // it. Its names come again with the newer nonce.
                debug!(type_url = %req.type_url, nonce = %req.response_nonce, "stale nonce ignored");
                return;
            };
            match req.error {
                None => {
                    t.status.rejected.clear();
                    t.status.acked = Some(Acked {
                        version: last.version.clone(),
                        nonce: last.nonce.clone(),
                        at: now,
                    });
                }
                Some(error) => {
                    debug!(nonce = %last.nonce, message = %error.message, "NACK");
                    t.status.rejected = last.resources.clone();
                    t.status.last_nack = Some(Nack {
                        version: last.version.clone(),
                        nonce: last.nonce.clone(),
                        at: now,
                        error,
                        rejected: last.resources.clone(),
                    });
                }
            }
        }

        let was = (t.wildcard(), std::mem::take(&mut t.names));
        if first {
            t.legacy_wildcard = req.names.is_empty();
            t.owes_answer = true;
        } else if !req.names.is_empty() {
            t.legacy_wildcard = false;
        }
        t.explicit_wildcard = req.names.iter().any(|n| n == WILDCARD);
        t.names = req.names.into_iter().filter(|n| n != WILDCARD).collect();
        // Newly named resources are owed an answer even when none of
        // them exists, so the client does not wait for its fetch timeout.
        if t.names.difference(&was.1).next().is_some() {
            t.owes_answer = true;
        }
        if first || was.0 != t.wildcard() || was.1 != t.names {
            t.dirty = true;
        }
        t.status.subscription = Subscription {
            wildcard: t.wildcard(),
            names: t.names.iter().cloned().collect(),
        };
    }

    pub fn respond(
        &mut self,
        type_url: &TypeUrl,
        snapshot: &Snapshot,
        now: SystemTime,
    ) -> Option<SotwResponse> {
        let t = self.types.get_mut(type_url)?;
        let set = snapshot.type_version(type_url);
        if !t.dirty && t.diffed_version.as_deref() == Some(set.as_str()) {
            return None;
        }
        t.dirty = false;
        t.diffed_version = Some(set);
        let empty = BTreeMap::new();
        let current = snapshot.of_type(type_url).map_or(&empty, |m| &**m);
        let resources: Vec<Arc<Resource>> = if t.wildcard() {
            current.values().cloned().collect()
        } else {
            t.names
                .iter()
                .filter_map(|n| current.get(n).cloned())
                .collect()
        };
        let version = set_version(
            resources
                .iter()
                .map(|r| (r.name.as_str(), r.version.as_str())),
        );
        let unchanged = t.last_sent.as_ref().is_some_and(|l| l.version == version);
        if unchanged && !t.owes_answer {
            return None;
        }
        t.owes_answer = false;
        self.next_nonce += 1;
        let nonce = self.next_nonce.to_string();
        let sent: BTreeMap<String, String> = resources
            .iter()
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect();
        t.status.sent = Some(Sent {
            version: version.clone(),
            nonce: nonce.clone(),
            at: now,
            resources: resources.len(),
            removed: 0,
        });
        t.status.resources = resources.len();
        t.last_sent = Some(LastSent {
            version: version.clone(),
            nonce: nonce.clone(),
            resources: sent,
        });
        Some(SotwResponse {
            type_url: type_url.clone(),
            version_info: version,
            nonce,
            resources,
        })
    }

    pub fn status(&self) -> BTreeMap<TypeUrl, TypeStatus> {
        self.types
            .iter()
            .map(|(k, t)| (k.clone(), t.status.clone()))
            .collect()
    }
}

impl StreamProtocol for SotwStream {
    type Request = SotwRequest;
    type Response = SotwResponse;
    const PROTOCOL: Protocol = Protocol::StateOfTheWorld;

    fn on_request(&mut self, req: SotwRequest, now: SystemTime) {
        SotwStream::on_request(self, req, now)
    }
    fn respond(&mut self, t: &TypeUrl, s: &Snapshot, now: SystemTime) -> Option<SotwResponse> {
        SotwStream::respond(self, t, s, now)
    }
    fn types(&self) -> Vec<TypeUrl> {
        self.types.keys().cloned().collect()
    }
    fn status(&self) -> BTreeMap<TypeUrl, TypeStatus> {
        SotwStream::status(self)
    }
    fn sent(resp: &SotwResponse) -> (TypeUrl, String, usize) {
        let bytes = resp.resources.iter().map(|r| r.body.value.len()).sum();
        (resp.type_url.clone(), resp.nonce.clone(), bytes)
    }
    fn answers(req: &SotwRequest) -> Option<(TypeUrl, String)> {
        (!req.response_nonce.is_empty()).then(|| (req.type_url.clone(), req.response_nonce.clone()))
    }
}

#[cfg(test)]
mod tests;
