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
    use pb::envoy::{
        config::{
            cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
            route::v3::RouteConfiguration,
        },
        extensions::transport_sockets::tls::v3::Secret,
    };
    use prost::Name;
    match t {
        ResourceType::Listener => Listener::type_url(),
        ResourceType::RouteConfiguration => RouteConfiguration::type_url(),
        ResourceType::Cluster => Cluster::type_url(),
        ResourceType::ClusterLoadAssignment => ClusterLoadAssignment::type_url(),
        ResourceType::Secret => Secret::type_url(),
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
        .map(|(k, v)| (k.clone(), json_to_value(v)))
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

/// JSON → `google.protobuf.Value` (numbers become doubles, as in the
/// protobuf JSON mapping). Iterative, so deep nesting cannot overflow the
/// stack.
pub(crate) fn json_to_value(v: &serde_json::Value) -> Value {
    use pb::google::protobuf::ListValue;
    use serde_json::Value as J;
    // Work items: a value to convert, or "pop N finished values into a
    // list / the named fields of a struct".
    enum Work<'a> {
        Convert(&'a J),
        List(usize),
        Struct(Vec<&'a String>),
    }
    let mut work = vec![Work::Convert(v)];
    let mut done: Vec<Value> = Vec::new();
    while let Some(w) = work.pop() {
        match w {
            Work::Convert(j) => {
                let kind = match j {
                    J::Null => Kind::NullValue(0),
                    J::Bool(b) => Kind::BoolValue(*b),
                    J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
                    J::String(s) => Kind::StringValue(s.clone()),
                    J::Array(items) => {
                        work.push(Work::List(items.len()));
                        work.extend(items.iter().rev().map(Work::Convert));
                        continue;
                    }
                    J::Object(map) => {
                        work.push(Work::Struct(map.keys().collect()));
                        work.extend(map.values().rev().map(Work::Convert));
                        continue;
                    }
                };
                done.push(Value { kind: Some(kind) });
            }
            Work::List(n) => {
                let values = done.split_off(done.len() - n);
                done.push(Value {
                    kind: Some(Kind::ListValue(ListValue { values })),
                });
            }
            Work::Struct(keys) => {
                let values = done.split_off(done.len() - keys.len());
                let fields = keys.into_iter().cloned().zip(values).collect();
                done.push(Value {
                    kind: Some(Kind::StructValue(Struct { fields })),
                });
            }
        }
    }
    done.pop().unwrap_or(Value {
        kind: Some(Kind::NullValue(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_becomes_a_struct_of_protobuf_values() {
        let meta = serde_json::json!({
            "NAMESPACE": "default",
            "LABELS": { "app": "reviews", "version": "v1" },
            "INSTANCE_IPS": "10.0.0.5",
            "PORT": 9080,
            "MESH": true,
            "NONE": null,
            "LIST": ["a", 1.5, { "k": [] }]
        });
        let identity = NodeIdentity {
            id: "sidecar~10.0.0.5~reviews-v1.default~default.svc.cluster.local".into(),
            cluster: "reviews.default".into(),
            metadata: meta
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let n = node(&identity);
        let fields = n.metadata.unwrap().fields;
        let s = |v: &str| Value {
            kind: Some(Kind::StringValue(v.into())),
        };
        assert_eq!(fields["NAMESPACE"], s("default"));
        let Some(Kind::StructValue(labels)) = &fields["LABELS"].kind else {
            panic!("{:?}", fields["LABELS"])
        };
        assert_eq!(labels.fields["app"], s("reviews"));
        assert_eq!(labels.fields["version"], s("v1"));
        assert_eq!(fields["PORT"].kind, Some(Kind::NumberValue(9080.0)));
        assert_eq!(fields["MESH"].kind, Some(Kind::BoolValue(true)));
        assert_eq!(fields["NONE"].kind, Some(Kind::NullValue(0)));
        let Some(Kind::ListValue(list)) = &fields["LIST"].kind else {
            panic!()
        };
        assert_eq!(list.values[0], s("a"));
        assert_eq!(list.values[1].kind, Some(Kind::NumberValue(1.5)));
        let Some(Kind::StructValue(inner)) = &list.values[2].kind else {
            panic!()
        };
        assert_eq!(
            inner.fields["k"].kind,
            Some(Kind::ListValue(Default::default()))
        );
        // Nothing configured: no Struct at all.
        assert_eq!(node(&NodeIdentity::default()).metadata, None);
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let mut v = serde_json::Value::String("x".into());
        for _ in 0..100_000 {
            v = serde_json::Value::Array(vec![v]);
        }
        let mut depth = 0;
        let mut cur = json_to_value(&v);
        while let Some(Kind::ListValue(mut l)) = cur.kind {
            depth += 1;
            cur = l.values.pop().unwrap();
        }
        assert_eq!(depth, 100_000);
        assert_eq!(cur.kind, Some(Kind::StringValue("x".into())));
        // serde_json's own drop of `v` and prost's of the converted value
        // recurse; leak both rather than overflow the test thread.
        std::mem::forget(v);
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
