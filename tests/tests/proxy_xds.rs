//! ringmesh-proxy configured by a control plane: its bootstrap names only
//! the admin address and an `xds` section; listeners, routes, clusters and
//! endpoints arrive over Delta ADS from `ringmesh-xds` (the same server a
//! real Envoy is tested against in `envoy_xds.rs`), go through the same
//! compile step as the static file, and are ACKed — or NACKed with the
//! reason while the last good configuration keeps serving. A control-plane
//! outage costs no request.

use std::{net::SocketAddr, time::Duration};

use ringmesh_e2e::{free_port, on_both_drivers, wait_for, Backend, Client, Driver, Proxy};
use ringmesh_xds::{
    testing::{
        broken_listener, eds_cluster, http_listener, load_assignment, route_to_cluster,
        ServerThread,
    },
    Resources, ScopeKey, StreamStatus, SyncState, TypeUrl, XdsServer,
};
use serde_json::json;

const NODE: &str = "sidecar~127.0.0.1~app.default~default.svc.cluster.local";

struct Mesh {
    b1: Backend,
    b2: Backend,
    listener: SocketAddr,
}

impl Mesh {
    fn resources(&self, route_cluster: &str, broken: bool) -> Resources {
        let listener = if broken {
            broken_listener("http", self.listener)
        } else {
            http_listener("http", self.listener, "local_route")
        };
        Resources::new()
            .with(listener)
            .with(route_to_cluster("local_route", route_cluster))
            .with(eds_cluster("backend"))
            .with(eds_cluster("backend2"))
            .with(load_assignment("backend", &[self.b1.addr()]))
            .with(load_assignment("backend2", &[self.b2.addr()]))
    }
}

fn stream_of(server: &XdsServer) -> Option<StreamStatus> {
    server.status().into_iter().find(|s| s.node.id == NODE)
}

fn backend_of(listener: SocketAddr) -> Option<String> {
    let mut c = Client::try_connect(listener, Duration::from_secs(2)).ok()?;
    let r = c.request("GET", "svc", "/", &[], b"").ok()?;
    (r.status == 200).then(|| r.text())
}

fn configured_by_control_plane(driver: Driver) {
    let mesh = Mesh {
        b1: Backend::start("b1"),
        b2: Backend::start("b2"),
        listener: SocketAddr::from(([127, 0, 0, 1], free_port())),
    };
    let server = XdsServer::default();
    let scope = ScopeKey::default();
    server.publish(scope.clone(), mesh.resources("backend", false));
    let xds = ServerThread::start(server.clone());

    // Ready only once the control plane's configuration is in.
    let proxy = Proxy::start(
        driver,
        json!({ "xds": { "address": xds.addr().to_string(), "node_id": NODE, "node_cluster": "app" } }),
    );
    assert_eq!(backend_of(mesh.listener).as_deref(), Some("b1"));
    let st = wait_for(Duration::from_secs(10), "every type ACKed", || {
        let s = stream_of(&server)?;
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
        .then_some(s)
    });
    assert_eq!(st.node.cluster, "app");

    // A route change moves traffic.
    server.publish(scope.clone(), mesh.resources("backend2", false));
    wait_for(Duration::from_secs(10), "traffic to move to b2", || {
        (backend_of(mesh.listener).as_deref() == Some("b2")).then_some(())
    });

    // An unsupported listener is NACKed with the reason; the last good
    // configuration keeps serving.
    server.publish(scope.clone(), mesh.resources("backend2", true));
    let st = wait_for(Duration::from_secs(10), "the LDS NACK", || {
        let s = stream_of(&server)?;
        (s.types[&TypeUrl::listener()].state() == SyncState::Nacked).then_some(s)
    });
    let detail = &st.types[&TypeUrl::listener()]
        .last_nack
        .as_ref()
        .expect("NACK recorded")
        .error
        .message;
    assert!(
        detail.contains("http"),
        "the NACK names the listener: {detail}"
    );
    for _ in 0..20 {
        assert_eq!(backend_of(mesh.listener).as_deref(), Some("b2"));
    }

    // Control plane gone: not a single request fails.
    drop(xds);
    let mut c = Client::connect(mesh.listener);
    for i in 0..200 {
        let r = c.get("svc", "/");
        assert_eq!(r.status, 200, "request {i} during the control-plane outage");
        assert_eq!(r.text(), "b2");
    }
    let m = proxy.metrics();
    assert!(
        m.get("ringmesh_xds_updates_total", &[("result", "accepted")])
            .unwrap_or(0.0)
            >= 2.0,
        "accepted updates counted"
    );
}

on_both_drivers!(configured_by_control_plane);
