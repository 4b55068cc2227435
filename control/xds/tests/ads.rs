//! The ADS server over a real loopback socket, driven by the generated
//! tonic client: what an xDS client sees, request by request.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use envoy_types::pb::{
    envoy::{
        config::core::v3::Node,
        service::discovery::v3::{
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
            DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
        },
    },
    google::rpc,
};
use ringmesh_xds::{
    NotReady, Resource, Resources, ScopeKey, StreamStatus, SyncState, TypeUrl, XdsServer,
};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{Code, Streaming};

const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const SILENCE: Duration = Duration::from_millis(300);

fn res(t: &TypeUrl, name: &str, version: &str) -> Resource {
    Resource::new(
        name,
        version,
        prost_types::Any {
            type_url: t.to_string(),
            value: format!("{name}@{version}").into_bytes(),
        },
    )
}

fn resources(items: &[(TypeUrl, &str, &str)]) -> Resources {
    let mut r = Resources::new();
    for (t, n, v) in items {
        r.insert(res(t, n, v));
    }
    r
}

async fn start(server: &XdsServer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener, std::future::pending()).await.unwrap() });
    addr
}

fn node(id: &str, cluster: &str) -> Option<Node> {
    Some(Node {
        id: id.into(),
        cluster: cluster.into(),
        ..Default::default()
    })
}

async fn client(addr: SocketAddr) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connecting to the ADS server")
}

struct Delta {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl Delta {
    async fn open(addr: SocketAddr, first: DeltaDiscoveryRequest) -> Delta {
        let (tx, rx) = mpsc::channel(16);
        tx.send(first).await.unwrap();
        let rx = client(addr)
            .await
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("opening the delta stream")
            .into_inner();
        Delta { tx, rx }
    }

    async fn send(&self, r: DeltaDiscoveryRequest) {
        self.tx.send(r).await.unwrap();
    }

    async fn recv(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.next())
            .await
            .expect("a response within 5 s")
            .expect("the stream is open")
            .expect("a response, not an error")
    }

    async fn silence(&mut self) {
        if let Ok(r) = tokio::time::timeout(SILENCE, self.rx.next()).await {
            panic!("expected nothing, got {r:?}");
        }
    }

    async fn ack(&self, r: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        })
        .await;
    }
}

fn subscribe(t: &TypeUrl, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: t.to_string(),
        resource_names_subscribe: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn carried(r: &DeltaDiscoveryResponse) -> Vec<(String, String)> {
    r.resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Poll the server's status until `f` holds for the stream of `node_id`.
async fn wait_status(
    server: &XdsServer,
    node_id: &str,
    what: &str,
    f: impl Fn(&StreamStatus) -> bool,
) -> StreamStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(s) = server
            .status()
            .into_iter()
            .find(|s| s.node.id == node_id && f(s))
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; status: {:#?}",
            server.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn lds() -> TypeUrl {
    TypeUrl::listener()
}
fn rds() -> TypeUrl {
    TypeUrl::route()
}

#[tokio::test]
async fn delta_wildcard_and_named_subscriptions_are_acked() {
    let server = XdsServer::default();
    server.publish(
        ScopeKey::default(),
        resources(&[
            (lds(), "l1", "1"),
            (lds(), "l2", "1"),
            (rds(), "r1", "1"),
            (rds(), "r2", "1"),
        ]),
    );
    let addr = start(&server).await;
    let mut d = Delta::open(
        addr,
        DeltaDiscoveryRequest {
            node: node("n1", "c1"),
            ..subscribe(&lds(), &[])
        },
    )
    .await;
    let r = d.recv().await;
    assert_eq!(r.type_url, lds().to_string());
    assert_eq!(carried(&r), pairs(&[("l1", "1"), ("l2", "1")]));
    assert!(!r.system_version_info.is_empty());
    d.ack(&r).await;

    d.send(subscribe(&rds(), &["r1"])).await;
    let r = d.recv().await;
    assert_eq!(carried(&r), pairs(&[("r1", "1")]));
    d.ack(&r).await;

    let st = wait_status(&server, "n1", "both types ACKed", |s| s.synced()).await;
    assert_eq!(st.node.cluster, "c1");
    assert_eq!(st.scope, ScopeKey::default());
    assert_eq!(st.types.len(), 2);
    assert!(st.types[&lds()].subscription.wildcard);
    assert_eq!(st.types[&rds()].subscription.names, ["r1"]);
    d.silence().await;
}

#[tokio::test]
async fn delta_push_sends_only_changes_and_removals() {
    let server = XdsServer::default();
    server.publish(
        ScopeKey::default(),
        resources(&[(lds(), "a", "1"), (lds(), "b", "1"), (rds(), "r", "1")]),
    );
    let addr = start(&server).await;
    let mut d = Delta::open(
        addr,
        DeltaDiscoveryRequest {
            node: node("n", "c"),
            ..subscribe(&lds(), &[])
        },
    )
    .await;
    let r = d.recv().await;
    d.ack(&r).await;

    // Only RDS changed: the LDS subscriber hears nothing.
    assert!(server.publish(
        ScopeKey::default(),
        resources(&[(lds(), "a", "1"), (lds(), "b", "1"), (rds(), "r", "2")]),
    ));
    d.silence().await;

    // Same versions again: not even a wake-up.
    assert!(!server.publish(
        ScopeKey::default(),
        resources(&[(lds(), "a", "1"), (lds(), "b", "1"), (rds(), "r", "2")]),
    ));

    server.publish(
        ScopeKey::default(),
        resources(&[(lds(), "a", "2"), (lds(), "c", "1"), (rds(), "r", "2")]),
    );
    let r = d.recv().await;
    assert_eq!(carried(&r), pairs(&[("a", "2"), ("c", "1")]));
    assert_eq!(r.removed_resources, ["b"]);
    d.ack(&r).await;
    d.silence().await;
}

#[tokio::test]
async fn delta_nack_keeps_last_good_until_a_newer_version() {
    let server = XdsServer::default();
    server.publish(ScopeKey::default(), resources(&[(lds(), "a", "1")]));
    let addr = start(&server).await;
    let mut d = Delta::open(
        addr,
        DeltaDiscoveryRequest {
            node: node("nacker", "c"),
            ..subscribe(&lds(), &[])
        },
    )
    .await;
    let r1 = d.recv().await;
    d.ack(&r1).await;

    server.publish(ScopeKey::default(), resources(&[(lds(), "a", "2-bad")]));
    let r2 = d.recv().await;
    assert_eq!(carried(&r2), pairs(&[("a", "2-bad")]));
    d.send(DeltaDiscoveryRequest {
        type_url: lds().to_string(),
        response_nonce: r2.nonce.clone(),
        error_detail: Some(rpc::Status {
            code: Code::InvalidArgument as i32,
            message: "Error adding/updating listener(s) a: unknown filter".into(),
            details: vec![],
        }),
        ..Default::default()
    })
    .await;
    let st = wait_status(&server, "nacker", "the NACK", |s| {
        s.types[&lds()].state() == SyncState::Nacked
    })
    .await;
    let t = &st.types[&lds()];
    let nack = t.last_nack.as_ref().unwrap();
    assert!(nack.error.message.contains("unknown filter"));
    assert_eq!(nack.error.code, Code::InvalidArgument as i32);
    assert_eq!(nack.rejected.get("a").map(String::as_str), Some("2-bad"));
    assert_eq!(t.acked.as_ref().unwrap().nonce, r1.nonce);
    assert!(!st.synced());

    // The rejected version is not offered again…
    d.silence().await;
    // …the next one is.
    server.publish(ScopeKey::default(), resources(&[(lds(), "a", "3")]));
    let r3 = d.recv().await;
    assert_eq!(carried(&r3), pairs(&[("a", "3")]));
    d.ack(&r3).await;
    wait_status(&server, "nacker", "synced again", |s| s.synced()).await;
}

#[tokio::test]
async fn delta_reconnect_with_initial_versions_sends_nothing_new() {
    let server = XdsServer::default();
    server.publish(
        ScopeKey::default(),
        resources(&[(lds(), "a", "1"), (lds(), "b", "1"), (rds(), "r", "1")]),
    );
    let addr = start(&server).await;

    // What the client holds after a first life.
    let mut held: HashMap<TypeUrl, HashMap<String, String>> = HashMap::new();
    {
        let mut d = Delta::open(
            addr,
            DeltaDiscoveryRequest {
                node: node("re", "c"),
                ..subscribe(&lds(), &[])
            },
        )
        .await;
        d.send(subscribe(&rds(), &["r"])).await;
        for _ in 0..2 {
            let r = d.recv().await;
            for res in &r.resources {
                held.entry(TypeUrl::from_wire(&r.type_url))
                    .or_default()
                    .insert(res.name.clone(), res.version.clone());
            }
            d.ack(&r).await;
        }
    }
    assert_eq!(held[&lds()].len(), 2);
    assert_eq!(held[&rds()].len(), 1);

    // Reconnect with those versions: nothing is sent.
    let mut d = Delta::open(
        addr,
        DeltaDiscoveryRequest {
            node: node("re", "c"),
            initial_resource_versions: held[&lds()].clone(),
            ..subscribe(&lds(), &[])
        },
    )
    .await;
    d.send(DeltaDiscoveryRequest {
        initial_resource_versions: held[&rds()].clone(),
        ..subscribe(&rds(), &["r"])
    })
    .await;
    d.silence().await;

    // Then a change is sent as usual.
    server.publish(
        ScopeKey::default(),
        resources(&[(lds(), "a", "1"), (rds(), "r", "1")]),
    );
    let r = d.recv().await;
    assert_eq!(r.type_url, lds().to_string());
    assert!(r.resources.is_empty());
    assert_eq!(r.removed_resources, ["b"]);
}

#[tokio::test]
async fn streams_wait_for_the_first_publish_of_their_scope() {
    let server = XdsServer::builder()
        .scope_by(|n| ScopeKey::new(&n.cluster))
        .build();
    let addr = start(&server).await;
    let mut d = Delta::open(
        addr,
        DeltaDiscoveryRequest {
            node: node("early", "late-scope"),
            initial_resource_versions: HashMap::from([("a".into(), "1".into())]),
            ..subscribe(&lds(), &[])
        },
    )
    .await;
    // A restarted control plane without state must not answer: an
    // empty answer would remove the proxy's listener "a".
    d.silence().await;
    let st = wait_status(&server, "early", "the waiting stream", |_| true).await;
    assert!(st.waiting_for_first_publish);
    assert_eq!(server.waiting_scopes(), [ScopeKey::new("late-scope")]);

    // Publishing another scope changes nothing for it.
    server.publish("other", resources(&[(lds(), "z", "1")]));
    d.silence().await;

    server.publish(
        "late-scope",
        resources(&[(lds(), "a", "1"), (lds(), "b", "1")]),
    );
    let r = d.recv().await;
    assert_eq!(carried(&r), pairs(&[("b", "1")]));
    assert!(server.waiting_scopes().is_empty());
}

#[tokio::test]
async fn scopes_are_requested_on_demand_and_forgotten_when_idle() {
    let server = XdsServer::builder()
        .scope_by(|n| ScopeKey::new(&n.cluster))
        .build();
    let addr = start(&server).await;
    let mut requests = server.scope_requests();
    requests.borrow_and_update();
    let d = Delta::open(
        addr,
        DeltaDiscoveryRequest {
            node: node("p1", "scope-a"),
            ..subscribe(&lds(), &[])
        },
    )
    .await;
    // The computing side is woken and finds the scope to compute.
    tokio::time::timeout(WAIT, requests.changed())
        .await
        .expect("a scope request")
        .unwrap();
    assert_eq!(server.waiting_scopes(), [ScopeKey::new("scope-a")]);
    server.publish("scope-a", resources(&[(lds(), "a", "1")]));
    // Published with nobody listening: forgotten on the next sweep, so
    // it cannot go stale while nobody recomputes it.
    server.publish("scope-idle", resources(&[(lds(), "a", "1")]));
    assert_eq!(server.retain_active_scopes(), [ScopeKey::new("scope-a")]);
    assert!(!server.is_published(&ScopeKey::new("scope-idle")));

    // Once its last stream is gone, the scope goes too.
    drop(d);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !server.retain_active_scopes().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "scope-a still active"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn refuse_policy_closes_unready_streams_with_unavailable() {
    let server = XdsServer::builder().not_ready(NotReady::Refuse).build();
    let addr = start(&server).await;
    let mut d = Delta::open(
        addr,
        DeltaDiscoveryRequest {
            node: node("refused", "c"),
            ..subscribe(&lds(), &[])
        },
    )
    .await;
    let err = tokio::time::timeout(WAIT, d.rx.next())
        .await
        .unwrap()
        .unwrap()
        .expect_err("UNAVAILABLE");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("no configuration"), "{err}");
}

#[tokio::test]
async fn wait_policy_gives_up_after_max() {
    let server = XdsServer::builder()
        .not_ready(NotReady::Wait {
            max: Some(Duration::from_millis(200)),
        })
        .build();
    let addr = start(&server).await;
    let mut d = Delta::open(
        addr,
        DeltaDiscoveryRequest {
            node: node("patient", "c"),
            ..subscribe(&lds(), &[])
        },
    )
    .await;
    let err = tokio::time::timeout(WAIT, d.rx.next())
        .await
        .unwrap()
        .unwrap()
        .expect_err("UNAVAILABLE");
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test]
async fn close_streams_ends_open_streams() {
    let server = XdsServer::default();
    server.publish(ScopeKey::default(), resources(&[(lds(), "a", "1")]));
    let addr = start(&server).await;
    let mut d = Delta::open(
        addr,
        DeltaDiscoveryRequest {
            node: node("closing", "c"),
            ..subscribe(&lds(), &[])
        },
    )
    .await;
    d.recv().await;
    server.close_streams();
    let end = tokio::time::timeout(WAIT, d.rx.next()).await.unwrap();
    assert!(end.is_none(), "stream ended cleanly: {end:?}");
    tokio::time::timeout(WAIT, async {
        while !server.status().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("stream deregistered");
}

struct Sotw {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl Sotw {
    async fn open(addr: SocketAddr, first: DiscoveryRequest) -> Sotw {
        let (tx, rx) = mpsc::channel(16);
        tx.send(first).await.unwrap();
        let rx = client(addr)
            .await
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("opening the SotW stream")
            .into_inner();
        Sotw { tx, rx }
    }
    async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.next())
            .await
            .expect("a response within 5 s")
            .expect("the stream is open")
            .expect("a response, not an error")
    }
    async fn silence(&mut self) {
        if let Ok(r) = tokio::time::timeout(SILENCE, self.rx.next()).await {
            panic!("expected nothing, got {r:?}");
        }
    }
}

fn sotw_req(t: &TypeUrl, names: &[&str], last: Option<&DiscoveryResponse>) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: t.to_string(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: last.map(|r| r.version_info.clone()).unwrap_or_default(),
        response_nonce: last.map(|r| r.nonce.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

#[tokio::test]
async fn sotw_wildcard_named_ack_and_nack() {
    let server = XdsServer::default();
    server.publish(
        ScopeKey::default(),
        resources(&[
            (lds(), "a", "1"),
            (lds(), "b", "1"),
            (rds(), "r1", "1"),
            (rds(), "r2", "1"),
        ]),
    );
    let addr = start(&server).await;
    let mut s = Sotw::open(
        addr,
        DiscoveryRequest {
            node: node("sotw", "c"),
            ..sotw_req(&lds(), &[], None)
        },
    )
    .await;
    let l1 = s.recv().await;
    assert_eq!(l1.resources.len(), 2);
    s.tx.send(sotw_req(&lds(), &[], Some(&l1))).await.unwrap();
    s.tx.send(sotw_req(&rds(), &["r1"], None)).await.unwrap();
    let r1 = s.recv().await;
    assert_eq!(r1.type_url, rds().to_string());
    assert_eq!(r1.resources.len(), 1);
    s.tx.send(sotw_req(&rds(), &["r1"], Some(&r1)))
        .await
        .unwrap();
    wait_status(&server, "sotw", "SotW synced", |st| st.synced()).await;

    // A new listener set, rejected.
    server.publish(
        ScopeKey::default(),
        resources(&[
            (lds(), "a", "2"),
            (lds(), "b", "1"),
            (rds(), "r1", "1"),
            (rds(), "r2", "1"),
        ]),
    );
    let l2 = s.recv().await;
    assert_eq!(l2.type_url, lds().to_string());
    assert_eq!(l2.resources.len(), 2, "the whole set");
    s.tx.send(DiscoveryRequest {
        error_detail: Some(rpc::Status {
            code: Code::Internal as i32,
            message: "bad listener a".into(),
            details: vec![],
        }),
        version_info: l1.version_info.clone(),
        ..sotw_req(&lds(), &[], Some(&l2))
    })
    .await
    .unwrap();
    let st = wait_status(&server, "sotw", "SotW NACK", |st| {
        st.types[&lds()].state() == SyncState::Nacked
    })
    .await;
    let t = &st.types[&lds()];
    assert_eq!(
        t.last_nack.as_ref().unwrap().error.message,
        "bad listener a"
    );
    assert_eq!(t.acked.as_ref().unwrap().version, l1.version_info);
    s.silence().await;
}

#[tokio::test]
async fn publishing_one_scope_wakes_only_its_streams() {
    let server = XdsServer::builder()
        .scope_by(|n| ScopeKey::new(&n.cluster))
        .build();
    server.publish("a", resources(&[(lds(), "l", "1")]));
    server.publish("b", resources(&[(lds(), "l", "1")]));
    let addr = start(&server).await;
    let open = |id: &'static str, scope: &'static str| {
        Delta::open(
            addr,
            DeltaDiscoveryRequest {
                node: node(id, scope),
                ..subscribe(&lds(), &[])
            },
        )
    };
    let mut in_a = open("in-a", "a").await;
    let mut in_b = open("in-b", "b").await;
    let ra = in_a.recv().await;
    in_a.ack(&ra).await;
    let rb = in_b.recv().await;
    in_b.ack(&rb).await;

    server.publish("a", resources(&[(lds(), "l", "2")]));
    let ra = in_a.recv().await;
    assert_eq!(carried(&ra), pairs(&[("l", "2")]));
    in_b.silence().await;
    let st = wait_status(&server, "in-b", "b's status", |_| true).await;
    assert_eq!(st.scope, ScopeKey::new("b"));
    assert_eq!(st.types[&lds()].sent.as_ref().unwrap().nonce, rb.nonce);
}
