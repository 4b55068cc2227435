//! The facade over the generated xDS v3 types (`envoy-types`) and the
//! tonic ADS client: the only module of the load tool that names them.
//! The bookkeeping works on its own [`Request`] and [`Response`].

use std::{collections::HashMap, net::IpAddr, time::Duration};

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{cluster::ClusterDiscoveryType, cluster::DiscoveryType, Cluster},
            core::v3::{address, node::UserAgentVersionType, Node},
            endpoint::v3::{lb_endpoint::HostIdentifier, ClusterLoadAssignment},
            listener::v3::{filter::ConfigType, Filter, Listener},
            route::v3::RouteConfiguration,
        },
        extensions::filters::network::http_connection_manager::v3::{
            http_connection_manager::RouteSpecifier, HttpConnectionManager,
        },
        service::discovery::v3::{
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
            DeltaDiscoveryRequest, DeltaDiscoveryResponse,
        },
    },
    google::protobuf::{value::Kind as ValueKind, ListValue, Struct, Value},
};
use prost::{Message, Name};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::xds_load::{
    catalog::Catalog,
    proxy::{Kind, RawResource, Request, Response},
};

/// Requests queued per stream before the stream task waits.
const REQUEST_QUEUE: usize = 64;

/// The type URL of a kind, from the generated type (never spelled by
/// hand).
pub fn type_url(kind: Kind) -> String {
    match kind {
        Kind::Listener => Listener::type_url(),
        Kind::Route => RouteConfiguration::type_url(),
        Kind::Cluster => Cluster::type_url(),
        Kind::Endpoint => ClusterLoadAssignment::type_url(),
    }
}

/// The kind of a type URL, if it is one of the four a sidecar follows.
pub fn kind_of(type_url: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| type_url == type_url_str(*k))
}

fn type_url_str(kind: Kind) -> &'static str {
    use std::sync::OnceLock;
    static URLS: OnceLock<[String; 4]> = OnceLock::new();
    let urls = URLS.get_or_init(|| Kind::ALL.map(type_url));
    &urls[kind.index()]
}

fn decode<M: Message + Name + Default>(body: &[u8]) -> Result<M, String> {
    M::decode(body).map_err(|e| format!("does not decode as {}: {e}", M::full_name()))
}

/// The EDS name of a cluster: its `eds_cluster_config.service_name`, or
/// its own name when that is empty (Envoy's rule); `None` for a cluster
/// that is not of type EDS.
pub fn cluster_eds_name(name: &str, body: &[u8]) -> Result<Option<String>, String> {
    let c: Cluster = decode(body)?;
    let eds = matches!(
        c.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(t)) if t == DiscoveryType::Eds as i32
    );
    if !eds {
        return Ok(None);
    }
    let service = c
        .eds_cluster_config
        .map(|e| e.service_name)
        .filter(|s| !s.is_empty());
    Ok(Some(service.unwrap_or_else(|| {
        if c.name.is_empty() {
            name.to_owned()
        } else {
            c.name
        }
    })))
}

/// The route configurations a listener's HTTP connection managers load
/// over RDS (every filter chain and the default one), sorted, unique.
pub fn listener_route_names(body: &[u8]) -> Result<Vec<String>, String> {
    let l: Listener = decode(body)?;
    let hcm_url = HttpConnectionManager::type_url();
    let filters = l
        .filter_chains
        .iter()
        .chain(l.default_filter_chain.iter())
        .flat_map(|fc| fc.filters.iter());
    let mut out = Vec::new();
    for f in filters {
        let Filter {
            config_type: Some(ConfigType::TypedConfig(any)),
            ..
        } = f
        else {
            continue;
        };
        if any.type_url != hcm_url {
            continue;
        }
        let hcm: HttpConnectionManager = decode(&any.value)
            .map_err(|e| format!("listener {}: filter {}: {e}", l.name, f.name))?;
        if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
            out.push(rds.route_config_name);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The IP addresses of a load assignment's endpoints, every locality.
pub fn endpoint_addresses(body: &[u8]) -> Result<Vec<IpAddr>, String> {
    let cla: ClusterLoadAssignment = decode(body)?;
    let mut out = Vec::new();
    for lb in cla.endpoints.iter().flat_map(|l| l.lb_endpoints.iter()) {
        let Some(HostIdentifier::Endpoint(ep)) = &lb.host_identifier else {
            continue;
        };
        let Some(address::Address::SocketAddress(sa)) =
            ep.address.as_ref().and_then(|a| a.address.as_ref())
        else {
            continue;
        };
        if let Ok(ip) = sa.address.parse() {
            out.push(ip);
        }
    }
    out.sort();
    Ok(out)
}

/// Envoy's `Node` for a simulated sidecar.
pub fn node(
    id: &str,
    cluster: &str,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Node {
    Node {
        id: id.to_owned(),
        cluster: cluster.to_owned(),
        metadata: Some(Struct {
            fields: metadata
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect(),
        }),
        user_agent_name: "envoy".into(),
        user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion(
            "ringmesh-xds-load".into(),
        )),
        ..Default::default()
    }
}

/// Our own metadata is a few levels deep at most (strings and the
/// `LABELS` object), so plain recursion is fine.
fn json_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    let kind = match v {
        J::Null => ValueKind::NullValue(0),
        J::Bool(b) => ValueKind::BoolValue(*b),
        J::Number(n) => ValueKind::NumberValue(n.as_f64().unwrap_or(0.0)),
        J::String(s) => ValueKind::StringValue(s.clone()),
        J::Array(a) => ValueKind::ListValue(ListValue {
            values: a.iter().map(json_value).collect(),
        }),
        J::Object(o) => ValueKind::StructValue(Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), json_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// Our request on the wire; `node` goes on the first request of a stream.
pub fn request(req: &Request, catalog: &Catalog, node: Option<Node>) -> DeltaDiscoveryRequest {
    let names = |v: &[crate::xds_load::catalog::Sym]| -> Vec<String> {
        v.iter().map(|s| catalog.resolve(*s).to_string()).collect()
    };
    DeltaDiscoveryRequest {
        node,
        type_url: type_url(req.kind),
        resource_names_subscribe: names(&req.subscribe),
        resource_names_unsubscribe: names(&req.unsubscribe),
        initial_resource_versions: req
            .initial_versions
            .iter()
            .map(|(n, v)| {
                (
                    catalog.resolve(*n).to_string(),
                    catalog.resolve(*v).to_string(),
                )
            })
            .collect::<HashMap<_, _>>(),
        response_nonce: req.nonce.clone().unwrap_or_default(),
        ..Default::default()
    }
}

/// A response in our terms, and its size on the wire (the encoded
/// message plus the 5-byte gRPC frame header).
pub fn response(resp: DeltaDiscoveryResponse) -> (Response, usize) {
    let size = resp.encoded_len() + 5;
    let kind = kind_of(&resp.type_url);
    let resources = resp
        .resources
        .into_iter()
        .map(|r| RawResource {
            name: r.name,
            version: r.version,
            body: r.resource.map(|a| a.value),
        })
        .collect();
    (
        Response {
            kind,
            type_url: resp.type_url,
            nonce: resp.nonce,
            resources,
            removed: resp.removed_resources,
        },
        size,
    )
}

/// One open Delta ADS stream: requests go in through `send`, responses
/// come out of `recv`.
pub struct AdsStream {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    inbound: tonic::Streaming<DeltaDiscoveryResponse>,
}

/// Connect to the control plane: one HTTP/2 connection (as one Envoy
/// has).
pub async fn connect(url: &str, timeout: Duration) -> Result<Channel, String> {
    Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("bad control-plane address {url}: {e}"))?
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

impl AdsStream {
    /// Open `DeltaAggregatedResources` on `channel`, sending `first`
    /// before the call so the server sees the node at once.
    pub async fn open(
        channel: Channel,
        first: Vec<DeltaDiscoveryRequest>,
        max_message: usize,
    ) -> Result<AdsStream, String> {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE.max(first.len()));
        for r in first {
            // The receiver is alive (it is `rx`, right here).
            let _ = tx.try_send(r);
        }
        let mut client =
            AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(max_message);
        let inbound = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .map_err(|s| format!("DeltaAggregatedResources refused: {s}"))?
            .into_inner();
        Ok(AdsStream { tx, inbound })
    }

    pub async fn send(&self, req: DeltaDiscoveryRequest) -> Result<(), String> {
        self.tx
            .send(req)
            .await
            .map_err(|_| "the request stream closed".to_owned())
    }

    /// The next response; `Ok(None)` when the server ended the stream.
    pub async fn recv(&mut self) -> Result<Option<(Response, usize)>, String> {
        match self.inbound.message().await {
            Ok(Some(r)) => Ok(Some(response(r))),
            Ok(None) => Ok(None),
            Err(s) => Err(format!("stream failed: {} ({:?})", s.message(), s.code())),
        }
    }
}

/// Encoded test fixtures, so the bookkeeping's unit tests run against
/// real Envoy messages.
#[cfg(test)]
pub mod fixtures {
    use envoy_types::pb::{
        envoy::{
            config::{
                cluster::v3::cluster::EdsClusterConfig,
                core::v3::{Address, SocketAddress},
                endpoint::v3::{Endpoint, LbEndpoint, LocalityLbEndpoints},
                listener::v3::FilterChain,
            },
            extensions::filters::network::http_connection_manager::v3::Rds,
        },
        google::protobuf::Any,
    };

    use super::*;

    pub fn eds_cluster(name: &str, service_name: &str) -> Vec<u8> {
        Cluster {
            name: name.into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            eds_cluster_config: Some(EdsClusterConfig {
                service_name: service_name.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    pub fn static_cluster(name: &str) -> Vec<u8> {
        Cluster {
            name: name.into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
            ..Default::default()
        }
        .encode_to_vec()
    }

    pub fn listener(name: &str, routes: &[&str]) -> Vec<u8> {
        let chains = routes
            .iter()
            .map(|r| FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(ConfigType::TypedConfig(Any {
                        type_url: HttpConnectionManager::type_url(),
                        value: HttpConnectionManager {
                            route_specifier: Some(RouteSpecifier::Rds(Rds {
                                route_config_name: (*r).into(),
                                ..Default::default()
                            })),
                            ..Default::default()
                        }
                        .encode_to_vec(),
                    })),
                }],
                ..Default::default()
            })
            .collect();
        Listener {
            name: name.into(),
            filter_chains: chains,
            ..Default::default()
        }
        .encode_to_vec()
    }

    pub fn assignment(name: &str, ips: &[&str]) -> Vec<u8> {
        ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: ips
                    .iter()
                    .map(|ip| LbEndpoint {
                        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                            address: Some(Address {
                                address: Some(address::Address::SocketAddress(SocketAddress {
                                    address: (*ip).into(),
                                    ..Default::default()
                                })),
                            }),
                            ..Default::default()
                        })),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, *};

    #[test]
    fn eds_name_is_the_service_name_or_the_cluster_name() {
        let b = eds_cluster("outbound|80||a", "outbound|80||a.svc");
        assert_eq!(
            cluster_eds_name("x", &b).unwrap().as_deref(),
            Some("outbound|80||a.svc")
        );
        let b = eds_cluster("outbound|80||a", "");
        assert_eq!(
            cluster_eds_name("x", &b).unwrap().as_deref(),
            Some("outbound|80||a")
        );
        assert_eq!(cluster_eds_name("x", &static_cluster("s")).unwrap(), None);
        assert!(cluster_eds_name("x", b"\xff\xff").is_err());
    }

    #[test]
    fn listener_routes_come_from_every_rds_connection_manager() {
        let b = listener("0.0.0.0_80", &["80", "8080", "80"]);
        assert_eq!(listener_route_names(&b).unwrap(), ["80", "8080"]);
        assert!(listener_route_names(&listener("tcp", &[]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn assignment_addresses_are_parsed_and_sorted() {
        let b = assignment("c", &["10.0.0.2", "10.0.0.1", "not-an-ip"]);
        let ips: Vec<String> = endpoint_addresses(&b)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn type_urls_round_trip_through_kinds() {
        for k in Kind::ALL {
            assert_eq!(kind_of(&type_url(k)), Some(k));
        }
        assert_eq!(kind_of("type.googleapis.com/other"), None);
    }
}
