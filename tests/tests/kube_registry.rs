//! `ringmesh-control --kubernetes` against a Kubernetes API server: the
//! PyPI emulator `kmock` (list + watch + create/patch/delete, objects with
//! `metadata.name` and `resourceVersion`), started by the test from
//! `tests/fixtures/kmock/apiserver.py`. A real `ringmesh-proxy` sidecar is
//! configured by the control plane, and traffic through it shows services,
//! pods and Istio resources appear, change and disappear as they do in
//! the API server:
//!
//! - a Service with a named `targetPort` and two pods (one not ready):
//!   traffic reaches only the ready pod, on the container port the name
//!   resolves to;
//! - the second pod turns ready: traffic reaches both;
//! - an EndpointSlice marks the first terminating: traffic leaves it;
//! - a VirtualService + DestinationRule send `end-user: jason` to v2;
//! - an invalid VirtualService is reported with its
//!   `kubernetes://…/VirtualService/ns/name` and the last good routing
//!   keeps serving;
//! - the Service is deleted: the host is no longer routed.
//!
//! And the CA in Kubernetes mode: a service-account token the API server's
//! TokenReview vouches for gets an SVID for exactly that service account;
//! an unknown token is refused.
//!
//! Needs python3 with `kmock` (installed by scripts/test.sh); fails loudly
//! without it.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use ringmesh_e2e::{
    die_with_parent,
    mesh::{pod_xds, ControlPlane},
    wait_for, workspace_root, Backend, Client, Driver, Proxy,
};
use ringmesh_tls::{generate_key_and_csr, SpiffeId};
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};

const TOKEN: &str = "sa-token-of-shop-reviews";
const AUDIENCE: &str = "ringmesh-ca";
const HOST: &str = "reviews.shop.svc.cluster.local:9080";
const FRONTEND_IP: &str = "127.0.0.61";

/// The emulated API server, killed by PID on drop.
struct ApiServer {
    child: Child,
    url: String,
    addr: SocketAddr,
}

impl ApiServer {
    fn start() -> ApiServer {
        let probe = Command::new("python3")
            .args(["-c", "import kmock"])
            .status()
            .expect("python3 is required for the Kubernetes registry tests");
        assert!(
            probe.success(),
            "the PyPI package kmock is required (pip install kmock==0.8; scripts/test.sh installs it)"
        );
        let script = workspace_root().join("tests/fixtures/kmock/apiserver.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args([TOKEN, "shop", "reviews", AUDIENCE])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("starting the kmock API server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("URL ").map(str::to_owned) else {
            let _ = child.kill();
            panic!("the kmock API server did not start (got {line:?})");
        };
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("kmock URL is http://IP:PORT");
        ApiServer { child, url, addr }
    }

    /// A request to the API server; panics unless it answers 2xx.
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let mut c = Client::connect(self.addr);
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let ctype = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let r = c
            .request(
                method,
                "kmock",
                path,
                &[("Content-Type", ctype), ("Connection", "close")],
                &body,
            )
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            (200..300).contains(&r.status),
            "{method} {path}: {} {}",
            r.status,
            r.text()
        );
        serde_json::from_str(&r.text()).unwrap_or(Value::Null)
    }

    fn create(&self, collection: &str, obj: Value) {
        self.call("POST", collection, &obj);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(name: &str, version: &str, port: u16, ready: bool, rv: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": rv.to_string(),
                     "labels": {"app": "reviews", "version": version}},
        "spec": {"serviceAccountName": "reviews",
                 "containers": [{"name": "app", "image": "reviews:1",
                                 "ports": [{"name": "web", "containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

/// Backends answering `n` requests for `HOST` through the sidecar (with
/// `headers`); failures are counted as "error".
fn backends_seen(via: SocketAddr, headers: &[(&str, &str)], n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let Ok(mut c) = Client::try_connect(via, Duration::from_secs(2)) else {
        seen.insert("error".to_owned());
        return seen;
    };
    for _ in 0..n {
        match c.request("GET", HOST, "/", headers, b"") {
            Ok(r) if r.status == 200 => {
                seen.insert(r.header("x-backend").unwrap_or("?").to_owned());
            }
            Ok(r) => {
                seen.insert(format!("status {}", r.status));
            }
            Err(_) => {
                seen.insert("error".to_owned());
                match Client::try_connect(via, Duration::from_secs(2)) {
                    Ok(n) => c = n,
                    Err(_) => return seen,
                }
            }
        }
    }
    seen
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn wait_seen(via: SocketAddr, headers: &[(&str, &str)], want: &[&str], what: &str) {
    let want = set(want);
    let mut last = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        last = backends_seen(via, headers, 40);
        if last == want {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}: saw {last:?}, want {want:?}");
}

#[test]
fn services_pods_and_istio_resources_follow_the_api_server() {
    let api = ApiServer::start();
    let v1 = Backend::start("v1");
    let v2 = Backend::start("v2");
    api.create(
        "/api/v1/namespaces/shop/services",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "reviews", "namespace": "shop", "resourceVersion": "1"},
            "spec": {"selector": {"app": "reviews"},
                     "ports": [{"name": "http", "port": 9080, "targetPort": "web", "protocol": "TCP"}]}
        }),
    );
    api.create(
        "/api/v1/namespaces/shop/pods",
        pod("reviews-v1", "v1", v1.addr().port(), true, 2),
    );
    api.create(
        "/api/v1/namespaces/shop/pods",
        pod("reviews-v2", "v2", v2.addr().port(), false, 3),
    );

    let control = ControlPlane::start_kubernetes(&api.url, None);
    let frontend = Proxy::start(
        Driver::Uring,
        json!({ "xds": pod_xds(control.addr(), FRONTEND_IP, "frontend-0", "shop", json!({"app": "frontend"})) }),
    );
    let via: SocketAddr = format!("{FRONTEND_IP}:15001").parse().unwrap();

    // Only the ready pod, on the port its container names `web`.
    wait_seen(via, &[], &["v1"], "traffic to the ready pod only");

    // The second pod turns ready.
    api.call(
        "PATCH",
        "/api/v1/namespaces/shop/pods/reviews-v2",
        &json!({"metadata": {"resourceVersion": "4"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    wait_seen(via, &[], &["v1", "v2"], "traffic to both pods");

    // Kubernetes starts draining v1: its EndpointSlice says terminating.
    api.create(
        "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices",
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "reviews-x1", "namespace": "shop", "resourceVersion": "5",
                         "labels": {"kubernetes.io/service-name": "reviews"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["127.0.0.1"], "conditions": {"ready": false, "terminating": true},
                 "targetRef": {"kind": "Pod", "name": "reviews-v1", "namespace": "shop"}},
                {"addresses": ["127.0.0.1"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "reviews-v2", "namespace": "shop"}}]
        }),
    );
    wait_seen(via, &[], &["v2"], "the terminating endpoint out");
    api.call(
        "DELETE",
        "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/reviews-x1",
        &Value::Null,
    );
    wait_seen(via, &[], &["v1", "v2"], "both pods again");

    // Istio routing from the API server: jason → v2, everyone else → v1.
    api.create(
        "/apis/networking.istio.io/v1/namespaces/shop/destinationrules",
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "shop", "resourceVersion": "6"},
            "spec": {"host": "reviews",
                     "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                 {"name": "v2", "labels": {"version": "v2"}}]}
        }),
    );
    api.create(
        "/apis/networking.istio.io/v1/namespaces/shop/virtualservices",
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "shop", "resourceVersion": "7"},
            "spec": {"hosts": ["reviews"],
                     "http": [{"match": [{"headers": {"end-user": {"exact": "jason"}}}],
                               "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
                              {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}
        }),
    );
    wait_seen(via, &[], &["v1"], "the default route to v1");
    wait_seen(via, &[("end-user", "jason")], &["v2"], "jason to v2");

    // A broken update is reported with where it came from; the last good
    // version keeps routing.
    api.call(
        "PATCH",
        "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/reviews",
        &json!({"metadata": {"resourceVersion": "8"},
                "spec": {"http": [{"route": [{"destination": {"host": "reviews", "subset": 7}}]}]}}),
    );
    wait_for(Duration::from_secs(20), "the diagnostic in the log", || {
        control
            .log()
            .contains("kubernetes://networking.istio.io/v1/VirtualService/shop/reviews")
            .then_some(())
    });
    assert_eq!(
        backends_seen(via, &[("end-user", "jason")], 20),
        set(&["v2"])
    );
    assert_eq!(backends_seen(via, &[], 20), set(&["v1"]));

    // The service goes away: its host is no longer routed.
    api.call(
        "DELETE",
        "/api/v1/namespaces/shop/services/reviews",
        &Value::Null,
    );
    wait_for(Duration::from_secs(20), "the host unrouted", || {
        let seen = backends_seen(via, &[], 5);
        (!seen.contains("v1") && !seen.contains("v2")).then_some(())
    });
    drop(frontend);
}

#[test]
fn the_ca_accepts_service_account_tokens_the_api_server_vouches_for() {
    let api = ApiServer::start();
    let control = ControlPlane::start_kubernetes(&api.url, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let id = SpiffeId::new("cluster.local", "shop", "reviews").expect("identity");
    let kc = generate_key_and_csr(&id).expect("key and CSR");
    let endpoint = format!("http://{}", control.addr());
    let sign = |token: &str| {
        rt.block_on(ringmesh_ca::request_certificate(
            &endpoint,
            token,
            &kc.csr_pem,
            Duration::from_secs(3600),
        ))
    };
    let (chain, _bundle) = sign(TOKEN).expect("the CA signs for a reviewed token");
    let leaf = rustls::pki_types::CertificateDer::from_pem_slice(chain[0].as_bytes())
        .expect("a PEM certificate");
    let got = ringmesh_tls::check_svid_leaf(&leaf, ringmesh_tls::Role::Client, "cluster.local")
        .expect("an SVID");
    assert_eq!(got.to_string(), "spiffe://cluster.local/ns/shop/sa/reviews");

    let refused = sign("not-a-token-the-api-server-knows").expect_err("refused");
    assert!(
        refused.to_string().contains("not authenticated")
            || refused.to_string().contains("invalid bearer token"),
        "{refused}"
    );
}
