//! The client against `ringmesh-xds`'s server over loopback: what the
//! proxy's control thread gets, and what the control plane sees.

use std::{net::SocketAddr, time::Duration};

use ringmesh_config::model::{
    AdminSpec, ClusterSpec, ClusterTypeSpec, EndpointSpec, LbPolicySpec, ListenerProtocol,
    ListenerSpec, ProxyConfig, RouteConfigSpec, RouteMatchSpec, RouteSpec, VirtualHostSpec,
};
use ringmesh_xds::{
    testing::{
        broken_listener, eds_cluster, http_listener, load_assignment, route_to_cluster,
        ServerThread,
    },
    Resources, ScopeKey, StreamStatus, SyncState, TypeUrl, XdsServer,
};
use ringmesh_xds_client::{run_with, ClientOptions, NodeIdentity};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
const SILENCE: Duration = Duration::from_millis(400);

fn listen() -> SocketAddr {
    "127.0.0.1:18080".parse().unwrap()
}

fn ep(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn resources(cluster: &str, endpoints: &[SocketAddr], listener_ok: bool) -> Resources {
    let listener = if listener_ok {
        http_listener("in", listen(), "main")
    } else {
        broken_listener("in", listen())
    };
    Resources::new()
        .with(listener)
        .with(route_to_cluster("main", cluster))
        .with(eds_cluster(cluster))
        .with(load_assignment(cluster, endpoints))
}

fn base() -> ProxyConfig {
    ProxyConfig {
        admin: Some(AdminSpec {
            address: "127.0.0.1:15000".into(),
        }),
        ..Default::default()
    }
}

fn expected(cluster: &str, endpoints: &[SocketAddr]) -> ProxyConfig {
    ProxyConfig {
        listeners: vec![ListenerSpec {
            name: "in".into(),
            address: listen().to_string(),
            protocol: ListenerProtocol::Http,
            route_config: Some("main".into()),
            cluster: None,
            original_dst: false,
            tls: None,
            rbac: Vec::new(),
            path_normalization: Some(ringmesh_config::model::PathNormalizationSpec {
                normalize: None,
                merge_slashes: Some(false),
                escaped_slashes: None,
            }),
        }],
        route_configs: vec![RouteConfigSpec {
            name: "main".into(),
            virtual_hosts: vec![VirtualHostSpec {
                name: "all".into(),
                domains: vec!["*".into()],
                routes: vec![RouteSpec {
                    name: None,
                    matcher: RouteMatchSpec {
                        prefix: Some("/".into()),
                        ..Default::default()
                    },
                    cluster: Some(cluster.into()),
                    weighted_clusters: None,
                    timeout: None,
                    retry_policy: None,
                }],
            }],
        }],
        clusters: vec![ClusterSpec {
            name: cluster.into(),
            cluster_type: ClusterTypeSpec::Static,
            connect_timeout: Some("1s".into()),
            lb_policy: LbPolicySpec::RoundRobin,
            endpoints: endpoints
                .iter()
                .map(|a| EndpointSpec {
                    address: a.to_string(),
                    weight: 1,
                })
                .collect(),
            tls: None,
            protocol: Default::default(),
            ..Default::default()
        }],
        ..base()
    }
}

/// The next configuration equal to `want` (partial ones may come first
/// while RDS/EDS arrive).
async fn until_config(
    rx: &mut mpsc::UnboundedReceiver<(ProxyConfig, u64)>,
    want: &ProxyConfig,
) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((cfg, v))) if &cfg == want => return v,
            Ok(Some((cfg, _))) => last = Some(cfg),
            Ok(None) => panic!("the client stopped"),
            Err(_) => panic!("no configuration equal to\n{want:#?}\nlast one:\n{last:#?}"),
        }
    }
}

async fn until_status(
    server: &XdsServer,
    what: &str,
    ok: impl Fn(&StreamStatus) -> bool,
) -> StreamStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = server.status();
        if let Some(s) = all.iter().find(|s| ok(s)) {
            return s.clone();
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; status: {all:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_synced(s: &StreamStatus) -> bool {
    [
        TypeUrl::listener(),
        TypeUrl::route(),
        TypeUrl::cluster(),
        TypeUrl::endpoint(),
    ]
    .iter()
    .all(|t| {
        s.types
            .get(t)
            .is_some_and(|ts| ts.state() == SyncState::Synced)
    })
}

#[tokio::test(flavor = "current_thread")]
async fn client_follows_the_control_plane_nacks_and_survives_a_restart() {
    let server = XdsServer::default();
    let scope = ScopeKey::default();
    server.publish(scope.clone(), resources("web", &[ep(9001)], true));
    let st = ServerThread::start(server.clone());
    let addr = st.addr();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let node = NodeIdentity {
        id: "sidecar~127.0.0.1~p.ns~ns.svc.cluster.local".into(),
        cluster: "web.ns".into(),
        metadata: [
            ("NAMESPACE".to_string(), serde_json::json!("ns")),
            (
                "LABELS".to_string(),
                serde_json::json!({ "app": "web", "version": "v1" }),
            ),
        ]
        .into(),
    };
    let options = ClientOptions {
        backoff_max: Duration::from_millis(500),
        ..Default::default()
    };
    let client = tokio::spawn(run_with(
        format!("http://{addr}"),
        node,
        base(),
        move |cfg: ProxyConfig, version| {
            ringmesh_config::compile(&cfg, version)
                .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
            let _ = tx.send((cfg, version));
            Ok(())
        },
        options,
    ));

    // 1. The published resources arrive as one compiled configuration, and
    // the server sees every type ACKed.
    let v1 = until_config(&mut rx, &expected("web", &[ep(9001)])).await;
    let s = until_status(&server, "every type synced", all_synced).await;
    assert_eq!(s.node.cluster, "web.ns");
    assert_eq!(s.node.user_agent_name, "ringmesh");
    assert_eq!(
        serde_json::Value::Object(s.node.metadata.clone()),
        serde_json::json!({ "NAMESPACE": "ns", "LABELS": { "app": "web", "version": "v1" } }),
        "the node metadata reaches the control plane as a Struct"
    );

    // 2. A changed route (to a new cluster) delivers a new configuration;
    // the old cluster and its endpoints are dropped.
    server.publish(scope.clone(), resources("web2", &[ep(9002)], true));
    let v2 = until_config(&mut rx, &expected("web2", &[ep(9002)])).await;
    assert_ne!(v1, v2);
    until_status(&server, "synced after the change", all_synced).await;

    // 3. An unsupported listener is NACKed with our message; nothing new
    // is delivered (the last good configuration stays).
    server.publish(scope.clone(), resources("web2", &[ep(9002)], false));
    let s = until_status(&server, "an LDS NACK", |s| {
        s.types
            .get(&TypeUrl::listener())
            .is_some_and(|t| t.state() == SyncState::Nacked)
    })
    .await;
    let nack = s.types[&TypeUrl::listener()].last_nack.clone().unwrap();
    assert!(
        nack.error.message.contains(
            "Listener \"in\": filter_chains[0].filters[0].typed_config: unsupported network filter"
        ),
        "{}",
        nack.error.message
    );
    assert!(nack
        .error
        .message
        .contains(ringmesh_xds::testing::UNKNOWN_FILTER_TYPE));
    tokio::time::sleep(SILENCE).await;
    assert!(
        rx.try_recv().is_err(),
        "a NACKed resource must not change the configuration"
    );

    // 4. The control plane restarts on the same port. It waits for its
    // first publish; meanwhile the reconnected client keeps its
    // configuration (no rollback, no update).
    drop(st);
    let server = XdsServer::default();
    let st = ServerThread::start_on(server.clone(), addr);
    until_status(&server, "the client reconnected", |s| {
        s.waiting_for_first_publish
    })
    .await;
    tokio::time::sleep(SILENCE).await;
    assert!(
        rx.try_recv().is_err(),
        "nothing is delivered before the new server publishes"
    );
    // The same state: the client already holds it, nothing changes.
    server.publish(scope.clone(), resources("web2", &[ep(9002)], true));
    until_status(&server, "synced with the restarted server", all_synced).await;
    // Then a change converges.
    server.publish(
        scope.clone(),
        resources("web2", &[ep(9002), ep(9003)], true),
    );
    until_config(&mut rx, &expected("web2", &[ep(9002), ep(9003)])).await;
    until_status(&server, "synced after the restart", all_synced).await;

    client.abort();
    drop(st);
}
