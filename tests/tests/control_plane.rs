//! The control plane end to end: `ringmesh-control` reads a directory of
//! registry objects and Istio resources and configures two
//! `ringmesh-proxy` sidecars over Delta ADS, with real backends on
//! loopback. Each "pod" has its own 127.0.0.x address; the proxies run
//! without iptables (`INTERCEPTION_MODE: NONE`), so the control plane
//! binds their listeners on the pod address: the outbound HTTP proxy on
//! `IP:15001`, inbound listeners on `IP:<target port>`.
//!
//! ```text
//!   test client ──▶ frontend sidecar 127.0.0.21:15001 ─┬─▶ reviews-v1 / reviews-v2 (no sidecar)
//!                                                      └─▶ ratings sidecar 127.0.0.22:9080 ──▶ ratings app
//! ```
//!
//! Proves: a VirtualService 90/10 split observed within ±3 points over
//! 2,000 requests; a header-matched route; an endpoint added and removed
//! under traffic with zero failed requests; the control plane killed and
//! restarted under traffic with zero failed requests (and still in
//! charge afterwards); a real Envoy bootstrapped with
//! `ads_config: {api_type: DELTA_GRPC}` ACKs every type it is sent and
//! routes per the same VirtualService.
//!
//! Pod addresses are fixed per test function (127.0.0.2x for the proxy
//! tests, 127.0.0.3x for the restart test, 127.0.0.4x for Envoy) so the
//! functions can run in parallel.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use ringmesh_e2e::{
    envoy::Envoy,
    mesh::{pod_metadata, pod_xds, write_atomic, ControlPlane},
    wait_for, Backend, Client, Driver, Proxy, TempDir,
};
use serde_json::json;

/// The registry: services, workloads and Istio resources of the test mesh.
struct MeshFiles {
    dir: TempDir,
}

/// A workload of the `reviews` service without a sidecar.
struct ReviewsPod<'a> {
    name: &'a str,
    version: &'a str,
    backend: &'a Backend,
}

impl MeshFiles {
    fn new() -> MeshFiles {
        MeshFiles {
            dir: TempDir::new("mesh"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn services(&self) {
        write_atomic(
            self.path(),
            "services.yaml",
            "\
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
  selector: {app: reviews}
---
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
  selector: {app: ratings}
",
        );
    }

    /// The reviews workloads: each a testbed on 127.0.0.1 with its own
    /// port, selected by `app: reviews`, subset by `version`.
    fn reviews(&self, pods: &[ReviewsPod]) {
        let mut text = String::new();
        for p in pods {
            text.push_str(&format!(
                "\
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata:
  name: {name}
  namespace: default
  labels: {{app: reviews, version: {version}}}
spec:
  address: {ip}
  serviceAccount: reviews
  ports: {{http: {port}}}
  sidecar: false
",
                name = p.name,
                version = p.version,
                ip = p.backend.addr().ip(),
                port = p.backend.addr().port(),
            ));
        }
        write_atomic(self.path(), "reviews-workloads.yaml", &text);
    }

    /// The ratings pod: a sidecar on `pod_ip` (its inbound listener binds
    /// `pod_ip:9080`) in front of the app at `app`.
    fn ratings(&self, pod_ip: &str, app: SocketAddr) {
        write_atomic(
            self.path(),
            "ratings.yaml",
            &format!(
                "\
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata:
  name: ratings-0
  namespace: default
  labels: {{app: ratings, version: v1}}
spec:
  address: {pod_ip}
  serviceAccount: ratings
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: ratings, namespace: default}}
spec:
  workloadSelector:
    labels: {{app: ratings}}
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: {app}
"
            ),
        );
    }

    /// Istio's routing for reviews: `end-user: jason` → v2, everyone
    /// else v1/v2 split `v1_weight`/`100 - v1_weight`.
    fn reviews_routing(&self, v1_weight: u32) {
        let v2_weight = 100 - v1_weight;
        write_atomic(
            self.path(),
            "reviews-routing.yaml",
            &format!(
                "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers:
        end-user: {{exact: jason}}
    route:
    - destination: {{host: reviews, subset: v2}}
  - name: canary
    route:
    - destination: {{host: reviews, subset: v1}}
      weight: {v1_weight}
    - destination: {{host: reviews, subset: v2}}
      weight: {v2_weight}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews.default.svc.cluster.local
  subsets:
  - name: v1
    labels: {{version: v1}}
  - name: v2
    labels: {{version: v2}}
"
            ),
        );
    }
}

/// A sidecar configured only by the control plane.
fn sidecar(driver: Driver, control: SocketAddr, ip: &str, pod: &str, app: &str) -> Proxy {
    Proxy::start(
        driver,
        json!({ "xds": pod_xds(control, ip, pod, "default", json!({ "app": app, "version": "v1" })) }),
    )
}

/// `GET /` for `host` through the outbound proxy at `via`: (status,
/// x-backend).
fn call(c: &mut Client, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
    match c.request("GET", host, "/", headers, b"") {
        Ok(r) => (r.status, r.header("x-backend").unwrap_or("").to_string()),
        Err(e) => (0, format!("error: {e}")),
    }
}

/// Requests on `clients` keep-alive connections in a loop until stopped:
/// counts every request and every failure (anything but 200 from one of
/// `ok_backends`).
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<Vec<String>>>,
}

impl Traffic {
    fn start(via: SocketAddr, host: &'static str, clients: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
                thread::spawn(move || {
                    let mut errors = Vec::new();
                    let mut c = Client::connect(via);
                    // Bounded: at most 60 s or 200k requests per client.
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < 200_000
                    {
                        n += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                        let (status, backend) = call(&mut c, host, &[]);
                        if status != 200 {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if errors.len() < 10 {
                                errors.push(format!("{status} {backend}"));
                            }
                            c = Client::connect(via);
                        }
                        thread::sleep(Duration::from_millis(2));
                    }
                    errors
                })
            })
            .collect();
        Traffic {
            stop,
            sent,
            failed,
            threads,
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stop, and assert not one request failed.
    fn finish(self, what: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let errors: Vec<String> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().expect("traffic thread"))
            .collect();
        let (sent, failed) = (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        );
        assert_eq!(
            failed, 0,
            "{what}: {failed} of {sent} requests failed; first errors: {errors:?}"
        );
        assert!(sent > 50, "{what}: only {sent} requests were sent");
        sent
    }
}

/// Requests `b` has served, counting the stats requests that ask.
fn requests_served(b: &Backend) -> u64 {
    b.stats()["requests"].as_u64().unwrap_or(0)
}

#[test]
fn istio_routing_through_two_sidecars() {
    let v1 = Backend::start("reviews-v1");
    let v2 = Backend::start("reviews-v2");
    let ratings_app = Backend::start("ratings");
    let mesh = MeshFiles::new();
    mesh.services();
    mesh.reviews(&[
        ReviewsPod {
            name: "reviews-v1-0",
            version: "v1",
            backend: &v1,
        },
        ReviewsPod {
            name: "reviews-v2-0",
            version: "v2",
            backend: &v2,
        },
    ]);
    mesh.ratings("127.0.0.22", ratings_app.addr());
    mesh.reviews_routing(90);
    let control = ControlPlane::start(mesh.path());

    let frontend = sidecar(
        Driver::Uring,
        control.addr(),
        "127.0.0.21",
        "frontend-0",
        "frontend",
    );
    let ratings = sidecar(
        Driver::Epoll,
        control.addr(),
        "127.0.0.22",
        "ratings-0",
        "ratings",
    );
    let outbound: SocketAddr = "127.0.0.21:15001".parse().unwrap();
    let mut c = Client::connect(outbound);

    // The 90/10 canary, over 2,000 requests.
    let (mut n1, mut n2) = (0u32, 0u32);
    for i in 0..2000 {
        let (status, backend) = call(&mut c, "reviews:9080", &[]);
        assert_eq!(status, 200, "request {i} to reviews: {backend}");
        match backend.as_str() {
            "reviews-v1" => n1 += 1,
            "reviews-v2" => n2 += 1,
            other => panic!("request {i} answered by {other:?}"),
        }
    }
    let v2_share = f64::from(n2) / 20.0;
    assert!(
        (7.0..=13.0).contains(&v2_share),
        "reviews v2 got {v2_share}% of 2,000 requests (v1 {n1}, v2 {n2}); the VirtualService says 10%"
    );

    // The header route: jason always sees v2, whatever the split.
    for i in 0..100 {
        let (status, backend) = call(&mut c, "reviews:9080", &[("end-user", "jason")]);
        assert_eq!(
            (status, backend.as_str()),
            (200, "reviews-v2"),
            "jason's request {i}"
        );
    }
    // Service names resolve the way Kubernetes DNS spells them.
    for host in [
        "reviews.default:9080",
        "reviews.default.svc.cluster.local:9080",
    ] {
        let (status, _) = call(&mut c, host, &[("end-user", "jason")]);
        assert_eq!(status, 200, "{host}");
    }
    // Unknown hosts are not forwarded anywhere.
    let (status, _) = call(&mut c, "unknown:9080", &[]);
    assert_eq!(status, 404, "a host no service has");

    // Frontend sidecar → ratings sidecar (inbound on 127.0.0.22:9080) → app.
    let before = ratings.metrics();
    for i in 0..20 {
        let (status, backend) = call(&mut c, "ratings:9080", &[]);
        assert_eq!(
            (status, backend.as_str()),
            (200, "ratings"),
            "ratings request {i}"
        );
    }
    let after = ratings.metrics();
    let served = |m: &ringmesh_e2e::Metrics| m.get_or_zero("ringmesh_http_requests_total", &[]);
    assert!(
        served(&after) - served(&before) >= 20.0,
        "the ratings sidecar's inbound listener carried the 20 requests"
    );

    // The split moves when the VirtualService changes: 100% v2.
    mesh.reviews_routing(0);
    wait_for(Duration::from_secs(10), "the new split to apply", || {
        (0..20)
            .all(|_| call(&mut c, "reviews:9080", &[]).1 == "reviews-v2")
            .then_some(())
    });

    // A broken VirtualService is rejected; the last good one keeps serving.
    write_atomic(
        mesh.path(),
        "reviews-routing.yaml",
        "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 30
    - destination: {host: reviews, subset: v2}
      weight: 30
",
    );
    wait_for(Duration::from_secs(10), "the rejection in the log", || {
        control.log().contains("weights sum to 60").then_some(())
    });
    for i in 0..50 {
        let (status, backend) = call(&mut c, "reviews:9080", &[]);
        assert_eq!(
            (status, backend.as_str()),
            (200, "reviews-v2"),
            "request {i} after a bad edit still follows the last good VirtualService"
        );
    }
    drop(frontend);
}

#[test]
fn endpoints_change_under_traffic_without_a_failed_request() {
    let v1a = Backend::start("reviews-v1-a");
    let v1b = Backend::start("reviews-v1-b");
    let mesh = MeshFiles::new();
    mesh.services();
    let pod_a = || ReviewsPod {
        name: "reviews-v1-a",
        version: "v1",
        backend: &v1a,
    };
    let pod_b = || ReviewsPod {
        name: "reviews-v1-b",
        version: "v1",
        backend: &v1b,
    };
    mesh.reviews(&[pod_a()]);
    let control = ControlPlane::start(mesh.path());
    let _frontend = sidecar(
        Driver::Uring,
        control.addr(),
        "127.0.0.23",
        "frontend-1",
        "frontend",
    );
    let outbound: SocketAddr = "127.0.0.23:15001".parse().unwrap();

    let traffic = Traffic::start(outbound, "reviews:9080", 4);
    wait_for(Duration::from_secs(10), "traffic to flow", || {
        (traffic.sent() > 100).then_some(())
    });

    // Scale up: the new endpoint takes traffic.
    mesh.reviews(&[pod_a(), pod_b()]);
    wait_for(
        Duration::from_secs(10),
        "the added endpoint to serve",
        || (requests_served(&v1b) > 50).then_some(()),
    );

    // Scale down: the removed endpoint stops getting requests, and none
    // of the requests in flight fails.
    mesh.reviews(&[pod_b()]);
    let mut last = requests_served(&v1a);
    wait_for(
        Duration::from_secs(10),
        "the removed endpoint to stop serving",
        || {
            thread::sleep(Duration::from_millis(500));
            let now = requests_served(&v1a);
            // The stats request itself is counted.
            let idle = now <= last + 1;
            last = now;
            idle.then_some(())
        },
    );
    let before = requests_served(&v1b);
    wait_for(Duration::from_secs(10), "traffic to continue", || {
        (requests_served(&v1b) > before + 100).then_some(())
    });
    traffic.finish("endpoint add and remove");
}

#[test]
fn control_plane_restart_under_traffic_fails_no_request() {
    let v1 = Backend::start("reviews-v1");
    let v2 = Backend::start("reviews-v2");
    let mesh = MeshFiles::new();
    mesh.services();
    mesh.reviews(&[
        ReviewsPod {
            name: "reviews-v1-0",
            version: "v1",
            backend: &v1,
        },
        ReviewsPod {
            name: "reviews-v2-0",
            version: "v2",
            backend: &v2,
        },
    ]);
    mesh.reviews_routing(100);
    let mut control = ControlPlane::start(mesh.path());
    let addr = control.addr();
    let frontend = sidecar(
        Driver::Epoll,
        control.addr(),
        "127.0.0.31",
        "frontend-2",
        "frontend",
    );
    let outbound: SocketAddr = "127.0.0.31:15001".parse().unwrap();

    let traffic = Traffic::start(outbound, "reviews:9080", 4);
    wait_for(Duration::from_secs(10), "traffic to flow", || {
        (traffic.sent() > 100).then_some(())
    });
    control.kill();
    let during = traffic.sent();
    wait_for(Duration::from_secs(10), "traffic during the outage", || {
        (traffic.sent() > during + 300).then_some(())
    });
    // Restarted on the same address: it rebuilds its state before it
    // answers, so the reconnecting proxy is not rolled back...
    let control = ControlPlane::start_on(mesh.path(), addr);
    let after = traffic.sent();
    wait_for(Duration::from_secs(10), "traffic after the restart", || {
        (traffic.sent() > after + 300).then_some(())
    });
    // ... and is in charge again: a change reaches the proxy.
    mesh.reviews_routing(0);
    let mut c = Client::connect(outbound);
    wait_for(Duration::from_secs(15), "the post-restart change", || {
        (0..10)
            .all(|_| call(&mut c, "reviews:9080", &[]).1 == "reviews-v2")
            .then_some(())
    });
    traffic.finish("control plane restart");
    let m = frontend.metrics();
    assert!(
        m.get("ringmesh_xds_updates_total", &[("result", "rejected")])
            .unwrap_or(0.0)
            == 0.0,
        "no update was rejected:\n{}",
        frontend.log()
    );
    drop(control);
}

#[test]
fn envoy_is_a_client_of_ringmesh_control() {
    let v1 = Backend::start("reviews-v1");
    let v2 = Backend::start("reviews-v2");
    let mesh = MeshFiles::new();
    mesh.services();
    mesh.reviews(&[
        ReviewsPod {
            name: "reviews-v1-0",
            version: "v1",
            backend: &v1,
        },
        ReviewsPod {
            name: "reviews-v2-0",
            version: "v2",
            backend: &v2,
        },
    ]);
    mesh.reviews_routing(90);
    let control = ControlPlane::start(mesh.path());
    let ip = "127.0.0.41";
    let mut envoy = Envoy::start_node(
        json!({
            "id": ringmesh_e2e::mesh::node_id(ip, "frontend-envoy", "default"),
            "cluster": "frontend",
            "metadata": pod_metadata(ip, "frontend-envoy", "default", json!({ "app": "frontend" })),
        }),
        "DELTA_GRPC",
        control.addr(),
    );
    let outbound: SocketAddr = format!("{ip}:15001").parse().unwrap();
    let mut c = wait_for(Duration::from_secs(30), "Envoy's outbound listener", || {
        envoy.assert_alive();
        let mut c = Client::try_connect(outbound, Duration::from_secs(1)).ok()?;
        (call(&mut c, "reviews:9080", &[]).0 == 200).then_some(c)
    });
    let (mut n1, mut n2) = (0u32, 0u32);
    for i in 0..2000 {
        let (status, backend) = call(&mut c, "reviews:9080", &[]);
        assert_eq!(status, 200, "request {i} through Envoy: {backend}");
        match backend.as_str() {
            "reviews-v1" => n1 += 1,
            "reviews-v2" => n2 += 1,
            other => panic!("request {i} answered by {other:?}"),
        }
    }
    let v2_share = f64::from(n2) / 20.0;
    assert!(
        (7.0..=13.0).contains(&v2_share),
        "through Envoy reviews v2 got {v2_share}% (v1 {n1}, v2 {n2}); the VirtualService says 10%"
    );
    for i in 0..50 {
        let (status, backend) = call(&mut c, "reviews:9080", &[("end-user", "jason")]);
        assert_eq!(
            (status, backend.as_str()),
            (200, "reviews-v2"),
            "jason's request {i} through Envoy"
        );
    }
    // Every type Envoy was sent is ACKed: its stats count no rejected
    // update of any listener, route, cluster or endpoint subscription.
    let stats = envoy_stats(envoy.admin());
    assert_eq!(
        stat(&stats, ".update_rejected"),
        0,
        "Envoy rejected an update:\n{stats}\n{}",
        envoy.log()
    );
    for t in [
        "lds.update_success",
        "cds.update_success",
        "rds.http_proxy.update_success",
    ] {
        assert!(stat(&stats, t) >= 1, "Envoy accepted no {t}:\n{stats}");
    }
    drop(control);
}

fn envoy_stats(admin: SocketAddr) -> String {
    let mut c = Client::connect(admin);
    c.get("localhost", "/stats").text()
}

fn stat(stats: &str, suffix: &str) -> u64 {
    stats
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.ends_with(suffix))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}
