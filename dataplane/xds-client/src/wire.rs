//! The facade over the generated xDS v3 types (`envoy-types`): the only
//! module that names that crate. The translation reads the generated
//! resource messages through [`pb`]; the client speaks this module's own
//! [`DeltaRequest`] / [`DeltaResponse`], so generating our own types later
//! changes this file (and the field accesses in `translate`) only.

use std::collections::BTreeMap;

/// The generated types, for `translate` and the unit tests.
pub(crate) use envoy_types::pb;
use envoy_types::pb::{
    envoy::{
        config::core::v3::Node,
        service::discovery::v3::{
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
            DeltaDiscoveryRequest, DeltaDiscoveryResponse,
        },
    },
    google::{
        protobuf::{value::Kind, Struct, Value},
        rpc,
    },
};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::UnboundedReceiverStream, StreamExt};
use tonic::transport::Channel;

use crate::{client::NodeIdentity, translate::ResourceType};

/// The type URL of a resource type, from the generated type's
/// `prost::Name` (never spelled by hand).
pub(crate) fn type_url(t: ResourceType) -> String {
    use pb::envoy::config::{
        cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
        route::v3::RouteConfiguration,
    };
    use prost::Name;
    match t {
        ResourceType::Listener => Listener::type_url(),
        ResourceType::RouteConfiguration => RouteConfiguration::type_url(),
        ResourceType::Cluster => Cluster::type_url(),
        ResourceType::ClusterLoadAssignment => ClusterLoadAssignment::type_url(),
    }
}

/// Decode a message of type `M` from an `Any`'s parts; `Err` says why.
pub(crate) fn decode<M: prost::Name + Default>(type_url: &str, bytes: &[u8]) -> Result<M, String> {
    let expected = M::type_url();
    if type_url != expected {
        return Err(format!("expected {expected}, got {type_url:?}"));
    }
    M::decode(bytes).map_err(|e| format!("does not decode as {}: {e}", M::full_name()))
}

/// One request on the Delta ADS stream, in this crate's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeltaRequest {
    pub type_url: String,
    pub subscribe: Vec<String>,
    pub unsubscribe: Vec<String>,
    pub initial_versions: BTreeMap<String, String>,
    pub response_nonce: String,
    /// A NACK's message (gRPC code INVALID_ARGUMENT).
    pub error: Option<String>,
    /// Set on the first request of a stream.
    pub node: Option<NodeIdentity>,
}

/// One resource of a response: its name, version and encoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawResource {
    pub name: String,
    pub version: String,
    /// `None` when the server sent only the name (no body).
    pub body: Option<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeltaResponse {
    pub type_url: String,
    pub nonce: String,
    pub resources: Vec<RawResource>,
    pub removed: Vec<String>,
}

fn node(n: &NodeIdentity) -> Node {
    let fields = n
        .metadata
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Value {
                    kind: Some(Kind::StringValue(v.clone())),
                },
            )
        })
        .collect();
    Node {
        id: n.id.clone(),
        cluster: n.cluster.clone(),
        metadata: (!n.metadata.is_empty()).then_some(Struct { fields }),
        user_agent_name: "ringmesh".into(),
        user_agent_version_type: Some(
            pb::envoy::config::core::v3::node::UserAgentVersionType::UserAgentVersion(
                env!("CARGO_PKG_VERSION").into(),
            ),
        ),
        ..Default::default()
    }
}

fn to_wire(r: DeltaRequest) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: r.node.as_ref().map(node),
        type_url: r.type_url,
        resource_names_subscribe: r.subscribe,
        resource_names_unsubscribe: r.unsubscribe,
        initial_resource_versions: r.initial_versions.into_iter().collect(),
        response_nonce: r.response_nonce,
        error_detail: r.error.map(|message| rpc::Status {
            code: tonic::Code::InvalidArgument as i32,
            message,
            details: Vec::new(),
        }),
        ..Default::default()
    }
}

fn from_wire(r: DeltaDiscoveryResponse) -> DeltaResponse {
    DeltaResponse {
        type_url: r.type_url,
        nonce: r.nonce,
        resources: r
            .resources
            .into_iter()
            .map(|res| RawResource {
                name: res.name,
                version: res.version,
                body: res.resource.map(|a| (a.type_url, a.value)),
            })
            .collect(),
        removed: r.removed_resources,
    }
}

/// Why a stream could not be opened or ended.
#[derive(Debug)]
pub(crate) enum StreamError {
    Connect(tonic::transport::Error),
    Status(tonic::Status),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Connect(e) => write!(f, "cannot connect: {e}"),
            StreamError::Status(s) => write!(f, "stream failed: {} ({:?})", s.message(), s.code()),
        }
    }
}

/// An open `DeltaAggregatedResources` stream.
pub(crate) struct AdsStream {
    inbound: tonic::Streaming<DeltaDiscoveryResponse>,
}

impl AdsStream {
    /// Connect to `endpoint` (`http://IP:PORT`) and open the stream; what
    /// `outbound` yields is sent on it (queue the first requests before
    /// calling: the call waits for the server's response headers).
    pub(crate) async fn open(
        endpoint: &str,
        connect_timeout: std::time::Duration,
        outbound: mpsc::UnboundedReceiver<DeltaRequest>,
    ) -> Result<AdsStream, StreamError> {
        let channel = Channel::from_shared(endpoint.to_owned())
            .map_err(|e| StreamError::Status(tonic::Status::invalid_argument(e.to_string())))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(StreamError::Connect)?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let requests = UnboundedReceiverStream::new(outbound).map(to_wire);
        let inbound = client
            .delta_aggregated_resources(requests)
            .await
            .map_err(StreamError::Status)?
            .into_inner();
        Ok(AdsStream { inbound })
    }

    /// The next response; `Ok(None)` when the server ended the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<DeltaResponse>, StreamError> {
        match self.inbound.message().await {
            Ok(r) => Ok(r.map(from_wire)),
            Err(s) => Err(StreamError::Status(s)),
        }
    }
}
