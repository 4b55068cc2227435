//! What the server knows about each connected proxy: the data behind
//! `ringmesh proxy-status`.

use std::{collections::BTreeMap, fmt, time::SystemTime};

use crate::{NodeInfo, ScopeKey, TypeUrl};

/// The `error_detail` of a NACK (a `google.rpc.Status`). Envoy's message
/// is protobuf debug text with the reason inside: match substrings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: i32,
    pub message: String,
}

/// Which ADS flavour a stream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `DeltaAggregatedResources`: incremental, per-resource versions.
    Delta,
    /// `StreamAggregatedResources`: state of the world per type.
    StateOfTheWorld,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Delta => "delta",
            Protocol::StateOfTheWorld => "sotw",
        })
    }
}

/// One connected ADS stream.
#[derive(Clone, Debug)]
pub struct StreamStatus {
    /// Unique within this server process.
    pub stream_id: u64,
    pub protocol: Protocol,
    pub node: NodeInfo,
    pub scope: ScopeKey,
    pub connected_at: SystemTime,
    /// True while the stream waits for the first publish of its scope
    /// (nothing has been sent to it yet).
    pub waiting_for_first_publish: bool,
    pub types: BTreeMap<TypeUrl, TypeStatus>,
}

impl StreamStatus {
    /// True when every type the proxy subscribed to has had its latest
    /// response ACKed.
    pub fn synced(&self) -> bool {
        !self.waiting_for_first_publish
            && self.types.values().all(|t| t.state() == SyncState::Synced)
    }
}

/// One type on one stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypeStatus {
    /// What the proxy asked for.
    pub subscription: Subscription,
    /// The latest response sent.
    pub sent: Option<Sent>,
    /// The latest response the proxy accepted. With an empty nonce and
    /// no `sent`: nothing had to be sent, because the proxy reconnected
    /// holding exactly the versions served (`initial_resource_versions`).
    pub acked: Option<Acked>,
    /// The latest response the proxy rejected (kept after later ACKs, as
    /// history; compare its nonce with `sent` to know whether the proxy is
    /// currently running on an older version than the one we offer).
    pub last_nack: Option<Nack>,
    /// Resources whose latest offered version the proxy rejected and
    /// that nothing newer has replaced yet: name → rejected version. The
    /// proxy runs an older version of each (or none).
    pub rejected: BTreeMap<String, String>,
    /// How many resources of this type the proxy holds (delta: by our
    /// bookkeeping; state of the world: in the latest response).
    pub resources: usize,
}

/// A response as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// `system_version_info` (delta) or `version_info` (state of the
    /// world): the version of the type's resource set.
    pub version: String,
    pub nonce: String,
    pub at: SystemTime,
    /// Resources carried (delta: only the changed ones).
    pub resources: usize,
    /// Names carried in `removed_resources` (delta only).
    pub removed: usize,
}

/// A response the proxy accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    pub version: String,
    pub nonce: String,
    pub at: SystemTime,
}

/// A response the proxy rejected. The proxy keeps running on its last
/// accepted version; the server does not offer the rejected versions
/// again until a newer version of the resource exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    pub version: String,
    pub nonce: String,
    pub at: SystemTime,
    pub error: ErrorDetail,
    /// The resources in the rejected response: name → version.
    pub rejected: BTreeMap<String, String>,
}

/// What a proxy subscribed to for one type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Every resource of the type (LDS/CDS), besides `names`.
    pub wildcard: bool,
    pub names: Vec<String>,
}

/// Summary of a [`TypeStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Nothing sent yet (and the proxy did not already hold it).
    NotSent,
    /// The latest response is not answered yet.
    Pending,
    /// The latest response was accepted.
    Synced,
    /// The latest response is answered, but some offered resource was
    /// rejected and not replaced since: the proxy runs an older version.
    Nacked,
}

impl fmt::Display for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncState::NotSent => "NOT SENT",
            SyncState::Pending => "STALE",
            SyncState::Synced => "SYNCED",
            SyncState::Nacked => "NACKED",
        })
    }
}

impl TypeStatus {
    pub fn state(&self) -> SyncState {
        let Some(sent) = &self.sent else {
            return match self.acked {
                Some(_) => SyncState::Synced,
                None => SyncState::NotSent,
            };
        };
        let answered = self.acked.as_ref().is_some_and(|a| a.nonce == sent.nonce)
            || self
                .last_nack
                .as_ref()
                .is_some_and(|n| n.nonce == sent.nonce);
        if !answered {
            SyncState::Pending
        } else if self.rejected.is_empty() {
            SyncState::Synced
        } else {
            SyncState::Nacked
        }
    }
}
