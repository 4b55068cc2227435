//! The `ringmesh.mesh.v1.MeshStatus` gRPC service (feature `status-api`):
//! [`XdsServer::status`] and [`XdsServer::published_versions`] as the
//! messages of `proto/ringmesh/mesh/v1/status.proto`, for `ringmesh
//! proxy-status`. Add [`status_service`] to the tonic server that serves
//! ADS:
//!
//! ```no_run
//! # async fn f(server: ringmesh_xds::XdsServer, l: tokio::net::TcpListener) {
//! tonic::transport::Server::builder()
//!     .add_service(server.service())
//!     .add_service(ringmesh_xds::status_service(server.clone()))
//!     .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
//!     .await
//!     .unwrap();
//! # }
//! ```
//!
//! Reading the status copies each stream's record under its own short
//! lock; streams are not paused and no ADS work waits on a status call.

use std::{collections::BTreeMap, time::SystemTime};

use ringmesh_proto::mesh::v1::{
    mesh_status_server::{MeshStatus, MeshStatusServer},
    Acked as PbAcked, ControlPlane, ListProxiesRequest, ListProxiesResponse, Nack as PbNack,
    ProxyStatus, PublishedVersions, Rejection, Sent as PbSent, Subscription as PbSubscription,
    SyncState as PbSyncState, TypeStatus as PbTypeStatus, XdsProtocol,
};
use tonic::{Request, Response, Status};

use crate::{
    status::{Acked, Nack, Sent, StreamStatus, TypeStatus},
    Protocol, SyncState, XdsServer,
};

/// The gRPC service for [`status_service`]: `MeshStatus` over one
/// [`XdsServer`].
#[derive(Clone, Debug)]
pub struct StatusService {
    server: XdsServer,
    control_plane: ControlPlane,
}

/// `MeshStatus` over `server`, named after this host, ready to add to a
/// tonic server next to [`XdsServer::service`].
pub fn status_service(server: XdsServer) -> MeshStatusServer<StatusService> {
    MeshStatusServer::new(StatusService::new(server))
}

impl StatusService {
    /// Answers for `server`; the control plane's id is this host's name
    /// (`/proc/sys/kernel/hostname`, then `$HOSTNAME`, then
    /// `ringmesh-control`) and its version this crate's.
    pub fn new(server: XdsServer) -> Self {
        StatusService {
            server,
            control_plane: ControlPlane {
                id: host_name(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
        }
    }

    /// Name this control plane instance in answers (the CONTROL PLANE
    /// column): a pod name, for instance.
    pub fn with_control_plane(mut self, id: impl Into<String>, version: impl Into<String>) -> Self {
        self.control_plane = ControlPlane {
            id: id.into(),
            version: version.into(),
        };
        self
    }

    /// The tonic service.
    pub fn into_server(self) -> MeshStatusServer<Self> {
        MeshStatusServer::new(self)
    }

    /// The answer to `req`, now.
    pub fn list(&self, req: &ListProxiesRequest) -> ListProxiesResponse {
        let proxies: Vec<ProxyStatus> = self
            .server
            .status()
            .iter()
            .filter(|s| s.node.id.contains(&req.node_id_contains))
            .map(proxy_status)
            .collect();
        let mut published = BTreeMap::new();
        for p in &proxies {
            if published.contains_key(&p.scope) {
                continue;
            }
            if let Some(versions) = self
                .server
                .published_versions(&crate::ScopeKey::new(&p.scope))
            {
                let versions = versions
                    .into_iter()
                    .map(|(t, v)| (t.as_str().to_owned(), v))
                    .collect();
                published.insert(p.scope.clone(), PublishedVersions { versions });
            }
        }
        ListProxiesResponse {
            proxies,
            published: published.into_iter().collect(),
            control_plane: Some(self.control_plane.clone()),
        }
    }
}

#[tonic::async_trait]
impl MeshStatus for StatusService {
    async fn list_proxies(
        &self,
        request: Request<ListProxiesRequest>,
    ) -> Result<Response<ListProxiesResponse>, Status> {
        Ok(Response::new(self.list(request.get_ref())))
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "ringmesh-control".to_owned())
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

fn proxy_status(s: &StreamStatus) -> ProxyStatus {
    ProxyStatus {
        stream_id: s.stream_id,
        node_id: s.node.id.clone(),
        node_cluster: s.node.cluster.clone(),
        scope: s.scope.as_str().to_owned(),
        user_agent_name: s.node.user_agent_name.clone(),
        user_agent_version: s.node.user_agent_version.clone(),
        protocol: match s.protocol {
            Protocol::Delta => XdsProtocol::Delta,
            Protocol::StateOfTheWorld => XdsProtocol::Sotw,
        } as i32,
        connected_at: Some(timestamp(s.connected_at)),
        waiting_for_first_publish: s.waiting_for_first_publish,
        types: s
            .types
            .iter()
            .map(|(url, t)| type_status(url.as_str(), url.short_name(), t))
            .collect(),
    }
}

fn type_status(type_url: &str, short_name: &str, t: &TypeStatus) -> PbTypeStatus {
    PbTypeStatus {
        type_url: type_url.to_owned(),
        short_name: short_name.to_owned(),
        state: sync_state(t.state()) as i32,
        subscription: Some(PbSubscription {
            wildcard: t.subscription.wildcard,
            names: t.subscription.names.clone(),
        }),
        sent: t.sent.as_ref().map(sent),
        acked: t.acked.as_ref().map(acked),
        last_nack: t.last_nack.as_ref().map(nack),
        rejected: t
            .rejected
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        resources: t.resources as u64,
    }
}

fn sync_state(s: SyncState) -> PbSyncState {
    match s {
        SyncState::NotSent => PbSyncState::NotSent,
        SyncState::Pending => PbSyncState::Stale,
        SyncState::Synced => PbSyncState::Synced,
        SyncState::Nacked => PbSyncState::Nacked,
    }
}

fn sent(s: &Sent) -> PbSent {
    PbSent {
        version: s.version.clone(),
        nonce: s.nonce.clone(),
        at: Some(timestamp(s.at)),
        resources: s.resources as u64,
        removed: s.removed as u64,
    }
}

fn acked(a: &Acked) -> PbAcked {
    PbAcked {
        version: a.version.clone(),
        nonce: a.nonce.clone(),
        at: Some(timestamp(a.at)),
    }
}

fn nack(n: &Nack) -> PbNack {
    PbNack {
        version: n.version.clone(),
        nonce: n.nonce.clone(),
        at: Some(timestamp(n.at)),
        error_code: n.error.code,
        error_message: n.error.message.clone(),
        rejected: n
            .rejected
            .iter()
            .map(|(name, version)| {
                let rejection = Rejection {
                    version: version.clone(),
                    reason: reason_for(&n.error.message, name),
                };
                (name.clone(), rejection)
            })
            .collect(),
    }
}

/// The parts of a NACK's error message that name `resource`.
///
/// A NACK answers a whole response; which resource the client objected
/// to is only in its free-text message. ringmesh-proxy writes one
/// `Kind "name": field: reason` per rejected resource joined by `"; "`;
/// Envoy writes lines such as `Error adding/updating listener(s) name:
/// reason`. So the message is split at `"; "` and line breaks, and the
/// parts naming the resource as a whole word are kept.
pub fn reason_for(message: &str, resource: &str) -> String {
    if resource.is_empty() {
        return String::new();
    }
    message
        .split("; ")
        .flat_map(str::lines)
        .map(str::trim)
        .filter(|part| names(part, resource))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether `text` contains `word` not as part of a longer name.
fn names(text: &str, word: &str) -> bool {
    let in_name = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '|' | '~');
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let rest = &text[at + word.len()..];
        let mut after = rest.chars();
        let starts_clean = before.is_none_or(|c| !in_name(c));
        let ends_clean = match after.next() {
            None => true,
            // A sentence's full stop is not part of the name.
            Some('.') => after.next().is_none_or(char::is_whitespace),
            Some(c) => !in_name(c),
        };
        starts_clean && ends_clean
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_the_parts_naming_the_resource() {
        let msg = "Listener \"http\": filter_chains[0]: unsupported filter; \
                   Cluster \"http_backend\": lb_policy: MAGLEV is not supported";
        assert_eq!(
            reason_for(msg, "http"),
            "Listener \"http\": filter_chains[0]: unsupported filter"
        );
        assert_eq!(
            reason_for(msg, "http_backend"),
            "Cluster \"http_backend\": lb_policy: MAGLEV is not supported"
        );
        assert_eq!(reason_for(msg, "backend"), "");
        assert_eq!(reason_for(msg, ""), "");
    }

    #[test]
    fn envoy_style_lines_and_full_stops() {
        let msg = "Error adding/updating listener(s) 0.0.0.0_9080: bad filter\n\
                   other problem with listener web.";
        assert_eq!(
            reason_for(msg, "0.0.0.0_9080"),
            "Error adding/updating listener(s) 0.0.0.0_9080: bad filter"
        );
        assert_eq!(reason_for(msg, "web"), "other problem with listener web.");
        // Part of a longer dotted name: not a mention.
        assert_eq!(reason_for(msg, "0.0.0.0"), "");
    }
}
