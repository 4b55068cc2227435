//! The facade over the generated xDS v3 types (`envoy-types`): the only
//! module that names that crate. Everything else works on this crate's
//! own model ([`Resource`], [`DeltaRequest`], …), so generating our own
//! types later (in `proto/`) changes this file and nothing else.
//!
//! What is here: packing messages into `Any`, type URLs taken from the
//! generated types' `prost::Name` impls, conversion of requests and
//! responses at the gRPC boundary, and the tonic service glue.

use std::{collections::BTreeMap, pin::Pin, sync::Arc};

/// The generated types, for this crate's test support
/// (`testing`, behind the `test-util` feature) and unit tests.
#[allow(unused_imports)]
pub(crate) use envoy_types::pb;
use envoy_types::pb::{
    envoy::{
        config::core::v3::Node,
        service::discovery::v3::{
            aggregated_discovery_service_server::{
                AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
            },
            DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
            Resource as WireResource,
        },
    },
    google::{
        protobuf::{value::Kind, Any as WireAny, Struct, Value},
        rpc,
    },
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    delta::{DeltaRequest, DeltaResponse, DeltaStream},
    server::{self, Inner},
    sotw::{SotwRequest, SotwResponse, SotwStream},
    ErrorDetail, NodeInfo, Resource, TypeUrl,
};

/// Type URLs of the resource types a sidecar uses, from the generated
/// types (never spelled by hand).
pub(crate) mod type_url {
    use envoy_types::pb::envoy::{
        config::{
            cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
            route::v3::RouteConfiguration,
        },
        extensions::transport_sockets::tls::v3::Secret,
    };

    use crate::TypeUrl;

    pub(crate) fn listener() -> TypeUrl {
        TypeUrl::of::<Listener>()
    }
    pub(crate) fn route() -> TypeUrl {
        TypeUrl::of::<RouteConfiguration>()
    }
    pub(crate) fn cluster() -> TypeUrl {
        TypeUrl::of::<Cluster>()
    }
    pub(crate) fn endpoint() -> TypeUrl {
        TypeUrl::of::<ClusterLoadAssignment>()
    }
    pub(crate) fn secret() -> TypeUrl {
        TypeUrl::of::<Secret>()
    }
}

/// Encode a message into an `Any` carrying its type URL.
pub fn pack<M: prost::Name>(message: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// Decode an `Any` as `M`; `None` if it carries another type or does not
/// decode.
pub fn unpack<M: prost::Name + Default>(any: &prost_types::Any) -> Option<M> {
    if any.type_url != M::type_url() {
        return None;
    }
    M::decode(any.value.as_slice()).ok()
}

/// The same `Any` as the generated types spell it. This copies the
/// encoded bytes once per resource per response (`Vec<u8>` in the
/// generated type); see the crate docs for the zero-copy alternative.
fn wire_any(any: &prost_types::Any) -> WireAny {
    WireAny {
        type_url: any.type_url.clone(),
        value: any.value.clone(),
    }
}

fn wire_resource(r: &Resource) -> WireResource {
    WireResource {
        name: r.name.clone(),
        version: r.version.clone(),
        resource: Some(wire_any(&r.body)),
        ..Default::default()
    }
}

fn error_detail(status: Option<rpc::Status>) -> Option<ErrorDetail> {
    status.map(|s| ErrorDetail {
        code: s.code,
        message: s.message,
    })
}

pub(crate) fn node_info(node: Option<&Node>) -> NodeInfo {
    let Some(node) = node else {
        return NodeInfo::default();
    };
    use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
    let user_agent_version = match &node.user_agent_version_type {
        Some(UserAgentVersionType::UserAgentVersion(v)) => v.clone(),
        Some(UserAgentVersionType::UserAgentBuildVersion(b)) => b
            .version
            .as_ref()
            .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch))
            .unwrap_or_default(),
        None => String::new(),
    };
    NodeInfo {
        id: node.id.clone(),
        cluster: node.cluster.clone(),
        metadata: node
            .metadata
            .as_ref()
            .map(struct_to_json)
            .unwrap_or_default(),
        user_agent_name: node.user_agent_name.clone(),
        user_agent_version,
    }
}

fn struct_to_json(s: &Struct) -> serde_json::Map<String, serde_json::Value> {
    // Sorted, so the same metadata always converts the same way.
    let sorted: BTreeMap<_, _> = s.fields.iter().collect();
    sorted
        .into_iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

fn value_to_json(v: &Value) -> serde_json::Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(struct_to_json(s)),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(value_to_json).collect())
        }
    }
}

pub(crate) fn delta_request(r: DeltaDiscoveryRequest) -> DeltaRequest {
    DeltaRequest {
        type_url: TypeUrl::from_wire(&r.type_url),
        subscribe: r.resource_names_subscribe,
        unsubscribe: r.resource_names_unsubscribe,
        initial_versions: r.initial_resource_versions.into_iter().collect(),
        response_nonce: r.response_nonce,
        error: error_detail(r.error_detail),
    }
}

pub(crate) fn delta_response(r: DeltaResponse) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        system_version_info: r.system_version,
        resources: r.resources.iter().map(|r| wire_resource(r)).collect(),
        type_url: r.type_url.as_str().to_owned(),
        removed_resources: r.removed,
        nonce: r.nonce,
        ..Default::default()
    }
}

pub(crate) fn sotw_request(r: DiscoveryRequest) -> SotwRequest {
    SotwRequest {
        type_url: TypeUrl::from_wire(&r.type_url),
        version_info: r.version_info,
        names: r.resource_names,
        response_nonce: r.response_nonce,
        error: error_detail(r.error_detail),
    }
}

pub(crate) fn sotw_response(r: SotwResponse) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: r.version_info,
        resources: r.resources.iter().map(|r| wire_any(&r.body)).collect(),
        type_url: r.type_url.as_str().to_owned(),
        nonce: r.nonce,
        ..Default::default()
    }
}

/// The ADS gRPC service (`envoy.service.discovery.v3.AggregatedDiscoveryService`),
/// ready to add to a tonic server next to other services. Get one from
/// [`crate::XdsServer::service`].
pub type AdsService = AggregatedDiscoveryServiceServer<Ads>;

/// The handler behind [`AdsService`].
#[derive(Clone)]
pub struct Ads(pub(crate) Arc<Inner>);

impl std::fmt::Debug for Ads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ads")
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = BoxStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = BoxStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut inbound = request.into_inner();
        let inner = self.0.clone();
        let out = server::spawn_stream::<SotwStream, _>(inner, async move {
            // The node is only guaranteed on the first request.
            let first = inbound.next().await?.ok()?;
            let node = node_info(first.node.as_ref());
            let rest = inbound.map(|r| r.map(sotw_request));
            Some((node, sotw_request(first), rest))
        });
        Ok(Response::new(Box::pin(out.map(|r| r.map(sotw_response)))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let mut inbound = request.into_inner();
        let inner = self.0.clone();
        let out = server::spawn_stream::<DeltaStream, _>(inner, async move {
            let first = inbound.next().await?.ok()?;
            let node = node_info(first.node.as_ref());
            let rest = inbound.map(|r| r.map(delta_request));
            Some((node, delta_request(first), rest))
        });
        Ok(Response::new(Box::pin(out.map(|r| r.map(delta_response)))))
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::listener::v3::Listener;

    use super::*;

    #[test]
    fn type_urls_are_the_proto_names() {
        // Spelled out once here, as the check that the generated names
        // (not the Rust paths) are what goes on the wire.
        let p = "type.googleapis.com/envoy.config.";
        assert_eq!(
            TypeUrl::listener().as_str(),
            format!("{p}listener.v3.Listener")
        );
        assert_eq!(
            TypeUrl::route().as_str(),
            format!("{p}route.v3.RouteConfiguration")
        );
        assert_eq!(
            TypeUrl::cluster().as_str(),
            format!("{p}cluster.v3.Cluster")
        );
        assert_eq!(
            TypeUrl::endpoint().as_str(),
            format!("{p}endpoint.v3.ClusterLoadAssignment")
        );
        assert_eq!(
            TypeUrl::secret().as_str(),
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
        );
        assert_eq!(TypeUrl::endpoint().short_name(), "EDS");
        assert_eq!(
            TypeUrl::from_wire("type.googleapis.com/a.b.Thing").short_name(),
            "Thing"
        );
    }

    #[test]
    fn pack_unpack_round_trip() {
        let l = Listener {
            name: "l".into(),
            ..Default::default()
        };
        let any = pack(&l);
        assert_eq!(any.type_url, TypeUrl::listener().as_str());
        assert_eq!(unpack::<Listener>(&any), Some(l));
        let r = Resource::from_message("l", "1", &Listener::default());
        assert_eq!(r.type_url(), TypeUrl::listener());
        use envoy_types::pb::envoy::config::cluster::v3::Cluster;
        assert_eq!(unpack::<Cluster>(&any), None, "wrong type");
    }

    #[test]
    fn node_info_from_envoy_node() {
        use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
        let metadata = Struct {
            fields: [
                (
                    "NAMESPACE".to_string(),
                    Value {
                        kind: Some(Kind::StringValue("ns".into())),
                    },
                ),
                (
                    "PORT".to_string(),
                    Value {
                        kind: Some(Kind::NumberValue(8080.0)),
                    },
                ),
                (
                    "MESH".to_string(),
                    Value {
                        kind: Some(Kind::BoolValue(true)),
                    },
                ),
            ]
            .into_iter()
            .collect(),
        };
        let n = Node {
            id: "sidecar~10.0.0.1~p.ns~ns.svc.cluster.local".into(),
            cluster: "reviews.ns".into(),
            metadata: Some(metadata),
            user_agent_name: "envoy".into(),
            user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion("1.40.0".into())),
            ..Default::default()
        };
        let info = node_info(Some(&n));
        assert_eq!(info.id, n.id);
        assert_eq!(info.cluster, "reviews.ns");
        assert_eq!(info.user_agent_version, "1.40.0");
        assert_eq!(
            serde_json::Value::Object(info.metadata),
            serde_json::json!({ "NAMESPACE": "ns", "PORT": 8080.0, "MESH": true })
        );
        assert_eq!(node_info(None), NodeInfo::default());
    }
}
