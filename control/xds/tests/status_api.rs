//! `MeshStatus` (feature `status-api`) over a real loopback socket: ADS
//! and the status service on one tonic server, a Delta client that ACKs
//! one type and NACKs another, and `ListProxies` called through the
//! generated tonic client.

use std::{net::SocketAddr, time::Duration};

use envoy_types::pb::{
    envoy::{
        config::core::v3::Node,
        service::discovery::v3::{
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
            DeltaDiscoveryRequest, DeltaDiscoveryResponse,
        },
    },
    google::rpc,
};
use ringmesh_proto::mesh::v1::{
    mesh_status_client::MeshStatusClient, ListProxiesRequest, ListProxiesResponse, SyncState,
    XdsProtocol,
};
use ringmesh_xds::{
    status_service,
    testing::{eds_cluster, http_listener, load_assignment, route_to_cluster},
    Resources, ScopeKey, StatusService, TypeUrl, XdsServer,
};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{transport::Channel, Code, Streaming};

const WAIT: Duration = Duration::from_secs(5);
const NODE: &str = "sidecar~10.0.0.7~reviews-v1.default~default.svc.cluster.local";
const ERROR: &str = "Listener \"http\": filter_chains[0].filters[0]: unsupported filter";

/// ADS and MeshStatus on one server, as `ringmesh-control` serves them.
async fn start(server: &XdsServer, status: StatusService) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tonic::transport::Server::builder()
        .add_service(server.service())
        .add_service(status.into_server());
    tokio::spawn(async move {
        router
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap()
    });
    addr
}

struct Delta {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl Delta {
    async fn open(addr: SocketAddr, first: DeltaDiscoveryRequest) -> Delta {
        let (tx, rx) = mpsc::channel(16);
        tx.send(first).await.unwrap();
        let rx = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connecting to ADS")
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("opening the delta stream")
            .into_inner();
        Delta { tx, rx }
    }

    async fn recv(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.next())
            .await
            .expect("a response within 5 s")
            .expect("the stream is open")
            .expect("a response, not an error")
    }

    async fn answer(&self, r: &DeltaDiscoveryResponse, error: Option<&str>) {
        self.tx
            .send(DeltaDiscoveryRequest {
                type_url: r.type_url.clone(),
                response_nonce: r.nonce.clone(),
                error_detail: error.map(|m| rpc::Status {
                    code: Code::InvalidArgument as i32,
                    message: m.to_owned(),
                    details: Vec::new(),
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn subscribe(&self, t: &TypeUrl, names: &[&str]) {
        self.tx
            .send(DeltaDiscoveryRequest {
                type_url: t.to_string(),
                resource_names_subscribe: names.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

async fn status_client(addr: SocketAddr) -> MeshStatusClient<Channel> {
    MeshStatusClient::connect(format!("http://{addr}"))
        .await
        .expect("connecting to MeshStatus")
}

/// Call ListProxies until `f` holds (the server records an answer just
/// after it reads it).
async fn list_until(
    client: &mut MeshStatusClient<Channel>,
    filter: &str,
    what: &str,
    f: impl Fn(&ListProxiesResponse) -> bool,
) -> ListProxiesResponse {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = client
            .list_proxies(ListProxiesRequest {
                node_id_contains: filter.to_owned(),
            })
            .await
            .expect("ListProxies")
            .into_inner();
        if f(&r) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last answer: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn state_of(r: &ListProxiesResponse, short: &str) -> Option<SyncState> {
    let t = r
        .proxies
        .first()?
        .types
        .iter()
        .find(|t| t.short_name == short)?;
    Some(t.state())
}

#[tokio::test]
async fn list_proxies_shows_acked_and_nacked_types() {
    let server = XdsServer::builder()
        .scope_by(|n| ScopeKey::new(&n.cluster))
        .build();
    let listen = SocketAddr::from(([127, 0, 0, 1], 15080));
    server.publish(
        "reviews",
        Resources::new()
            .with(http_listener("http", listen, "local_route"))
            .with(route_to_cluster("local_route", "backend"))
            .with(eds_cluster("backend"))
            .with(load_assignment("backend", &[listen])),
    );
    let addr = start(
        &server,
        StatusService::new(server.clone()).with_control_plane("cp-0", "9.9.9"),
    )
    .await;

    // CDS first, ACKed; then LDS, NACKed.
    let mut d = Delta::open(
        addr,
        DeltaDiscoveryRequest {
            node: Some(Node {
                id: NODE.into(),
                cluster: "reviews".into(),
                user_agent_name: "ringmesh-proxy".into(),
                ..Default::default()
            }),
            type_url: TypeUrl::cluster().to_string(),
            ..Default::default()
        },
    )
    .await;
    let cds = d.recv().await;
    assert_eq!(cds.type_url, TypeUrl::cluster().as_str());
    d.answer(&cds, None).await;
    d.subscribe(&TypeUrl::listener(), &[]).await;
    let lds = d.recv().await;
    assert_eq!(lds.type_url, TypeUrl::listener().as_str());
    d.answer(&lds, Some(ERROR)).await;

    let mut client = status_client(addr).await;
    let r = list_until(&mut client, "", "CDS SYNCED and LDS NACKED", |r| {
        state_of(r, "CDS") == Some(SyncState::Synced)
            && state_of(r, "LDS") == Some(SyncState::Nacked)
    })
    .await;

    let cp = r.control_plane.as_ref().expect("control_plane");
    assert_eq!((cp.id.as_str(), cp.version.as_str()), ("cp-0", "9.9.9"));
    assert_eq!(r.proxies.len(), 1);
    let p = &r.proxies[0];
    assert_eq!(p.node_id, NODE);
    assert_eq!(p.node_cluster, "reviews");
    assert_eq!(p.scope, "reviews");
    assert_eq!(p.user_agent_name, "ringmesh-proxy");
    assert_eq!(p.protocol(), XdsProtocol::Delta);
    assert!(!p.waiting_for_first_publish);
    assert!(p.connected_at.is_some());
    let shorts: Vec<&str> = p.types.iter().map(|t| t.short_name.as_str()).collect();
    assert_eq!(shorts.len(), 2);
    assert!(
        shorts.contains(&"CDS") && shorts.contains(&"LDS"),
        "{shorts:?}"
    );

    let published = &r.published["reviews"].versions;
    let cds_t = p.types.iter().find(|t| t.short_name == "CDS").unwrap();
    assert_eq!(cds_t.type_url, TypeUrl::cluster().as_str());
    assert!(cds_t.subscription.as_ref().unwrap().wildcard);
    let acked = cds_t.acked.as_ref().expect("CDS acked");
    assert_eq!(acked.version, cds.system_version_info);
    assert_eq!(acked.nonce, cds.nonce);
    assert_eq!(
        published[TypeUrl::cluster().as_str()],
        cds.system_version_info
    );
    assert_eq!(cds_t.sent.as_ref().unwrap().resources, 1);
    assert_eq!(cds_t.resources, 1);
    assert!(cds_t.last_nack.is_none());
    assert!(cds_t.rejected.is_empty());

    let lds_t = p.types.iter().find(|t| t.short_name == "LDS").unwrap();
    assert!(lds_t.acked.is_none());
    let nack = lds_t.last_nack.as_ref().expect("LDS NACK");
    assert_eq!(nack.error_message, ERROR);
    assert_eq!(nack.error_code, Code::InvalidArgument as i32);
    assert_eq!(nack.nonce, lds.nonce);
    assert_eq!(nack.version, lds.system_version_info);
    let listener_version = &lds.resources[0].version;
    assert_eq!(nack.rejected["http"].version, *listener_version);
    assert_eq!(nack.rejected["http"].reason, ERROR);
    assert_eq!(lds_t.rejected["http"], *listener_version);

    // The filter matches node id substrings only.
    let none = client
        .list_proxies(ListProxiesRequest {
            node_id_contains: "ratings".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        none.proxies.is_empty() && none.published.is_empty(),
        "{none:#?}"
    );
    let some = list_until(&mut client, "reviews-v1", "the filtered proxy", |r| {
        r.proxies.len() == 1
    })
    .await;
    assert_eq!(some.proxies[0].node_id, NODE);
}

#[tokio::test]
async fn waiting_proxy_and_stale_type() {
    let server = XdsServer::builder()
        .scope_by(|n| ScopeKey::new(&n.cluster))
        .build();
    let addr = start(&server, StatusService::new(server.clone())).await;
    let first = |cluster: &str| DeltaDiscoveryRequest {
        node: Some(Node {
            id: format!("sidecar~{cluster}"),
            cluster: cluster.into(),
            ..Default::default()
        }),
        type_url: TypeUrl::cluster().to_string(),
        ..Default::default()
    };
    // Nobody published scope "late": the proxy waits, nothing is sent.
    let _waiting = Delta::open(addr, first("late")).await;
    let mut client = status_client(addr).await;
    let r = list_until(&mut client, "late", "the waiting proxy", |r| {
        r.proxies.len() == 1 && !r.proxies[0].types.is_empty()
    })
    .await;
    assert!(r.proxies[0].waiting_for_first_publish);
    assert_eq!(state_of(&r, "CDS"), Some(SyncState::NotSent));
    assert!(
        r.published.is_empty(),
        "an unpublished scope has no versions"
    );
    assert!(!r.control_plane.unwrap().id.is_empty());

    // Sent and not answered yet: STALE.
    server.publish("early", Resources::new().with(eds_cluster("backend")));
    let mut d = Delta::open(addr, first("early")).await;
    let _cds = d.recv().await;
    let r = list_until(&mut client, "early", "STALE", |r| {
        state_of(r, "CDS") == Some(SyncState::Stale)
    })
    .await;
    let t = &r.proxies[0].types[0];
    assert!(t.acked.is_none());
    assert_eq!(
        t.sent.as_ref().unwrap().version,
        r.published["early"].versions[TypeUrl::cluster().as_str()]
    );
}

#[test]
fn status_service_is_named_for_the_wire() {
    use tonic::server::NamedService;
    fn name<S: NamedService>(_: &S) -> &'static str {
        S::NAME
    }
    assert_eq!(
        name(&status_service(XdsServer::default())),
        "ringmesh.mesh.v1.MeshStatus"
    );
}
