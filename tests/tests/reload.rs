//! Configuration reload under continuous traffic: the route is switched
//! between two backends by rewriting the file (picked up by polling) and by
//! SIGHUP, with zero failed requests; then a bad file is rejected, counted,
//! logged with where it is wrong, and the last good configuration keeps
//! serving.

// Test-harness threads, not the proxy's data path that the lint protects:
// the traffic thread and the test share state.
#![allow(clippy::disallowed_types)]

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use ringmesh_e2e::{on_both_drivers, Backend, Client, Driver, Proxy};
use serde_json::{json, Value};

/// Bounds of the traffic loop.
const MAX_REQUESTS: u64 = 3000;
const MAX_TIME: Duration = Duration::from_secs(20);

fn config(a: &Backend, b: &Backend, target: &str) -> Value {
    json!({
        "listeners": [{ "name": "http", "address": "auto", "protocol": "http", "route_config": "main" }],
        "route_configs": [{
            "name": "main",
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [{ "match": { "prefix": "/" }, "cluster": target }]
            }]
        }],
        "clusters": [
            { "name": "a", "endpoints": [{ "address": a.addr().to_string() }] },
            { "name": "b", "endpoints": [{ "address": b.addr().to_string() }] }
        ]
    })
}

#[derive(Default)]
struct Traffic {
    stop: AtomicBool,
    sent: AtomicU64,
    /// Responses per backend: [a, b].
    seen: [AtomicU64; 2],
    /// The backend of the latest response, and its sequence number.
    last: Mutex<(u64, String)>,
    failures: Mutex<Vec<String>>,
}

/// Keep-alive client loop; reconnects only when the proxy says close.
fn run_traffic(addr: std::net::SocketAddr, t: Arc<Traffic>) {
    let start = Instant::now();
    let mut c: Option<Client> = None;
    while !t.stop.load(Ordering::Relaxed)
        && t.sent.load(Ordering::Relaxed) < MAX_REQUESTS
        && start.elapsed() < MAX_TIME
    {
        let n = t.sent.fetch_add(1, Ordering::Relaxed);
        let client = c.get_or_insert_with(|| Client::connect(addr));
        match client.request("GET", "svc", &format!("/n/{n}"), &[], b"") {
            Ok(r) if r.status == 200 => {
                let name = r.header("x-backend").unwrap_or("?").to_string();
                match name.as_str() {
                    "a" => t.seen[0].fetch_add(1, Ordering::Relaxed),
                    "b" => t.seen[1].fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                *t.last.lock().unwrap() = (n, name);
                if r.has_connection_close() {
                    c = None;
                }
            }
            Ok(r) => {
                t.failures
                    .lock()
                    .unwrap()
                    .push(format!("request {n}: {}", r.status_line));
                c = None;
            }
            Err(e) => {
                t.failures.lock().unwrap().push(format!("request {n}: {e}"));
                c = None;
            }
        }
        // A steady stream, not a flood: leaves CPU for the reloads.
        thread::sleep(Duration::from_millis(2));
    }
}

/// Wait until a response sent after `since` came from `backend`. The file
/// is polled at least every second and SIGHUP is immediate, so 2.5 s is
/// generous for either.
fn wait_backend(t: &Traffic, since: u64, backend: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_millis(2500);
    loop {
        {
            let last = t.last.lock().unwrap();
            if last.0 > since && last.1 == backend {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: traffic did not move to backend {backend} within 2.5s"
        );
        assert!(!t.stop.load(Ordering::Relaxed), "traffic loop stopped");
        thread::sleep(Duration::from_millis(10));
    }
}

fn reload_under_traffic(driver: Driver) {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let mut proxy = Proxy::start(driver, config(&a, &b, "a"));
    let version0 = proxy.metrics().get("ringmesh_config_version", &[]);
    let traffic = Arc::new(Traffic::default());
    let worker = {
        let (addr, t) = (proxy.addr("http"), Arc::clone(&traffic));
        thread::spawn(move || run_traffic(addr, t))
    };
    wait_backend(&traffic, 0, "a", "initial config");

    // Two switches by file change alone (polled), two by SIGHUP.
    let plan = [("b", false), ("a", false), ("b", true), ("a", true)];
    for (i, (target, sighup)) in plan.iter().enumerate() {
        // Distinct mtimes even on coarse filesystems.
        thread::sleep(Duration::from_millis(300));
        let since = traffic.sent.load(Ordering::Relaxed);
        proxy.rewrite_config(config(&a, &b, target));
        if *sighup {
            proxy.signal(libc::SIGHUP);
        }
        let how = if *sighup { "SIGHUP" } else { "file change" };
        wait_backend(
            &traffic,
            since,
            target,
            &format!("reload {} by {how}", i + 1),
        );
        if i == 0 {
            let v = proxy.metrics().get("ringmesh_config_version", &[]);
            assert_ne!(
                v, version0,
                "ringmesh_config_version did not change with the configuration"
            );
        }
    }
    proxy.assert_alive();
    let m = proxy.metrics();
    let ok = m.get_or_zero("ringmesh_config_reloads_total", &[("result", "success")]);
    assert!(
        ok >= plan.len() as f64,
        "ringmesh_config_reloads_total{{result=\"success\"}} = {ok}"
    );
    assert_eq!(
        m.get_or_zero("ringmesh_config_reloads_total", &[("result", "failure")]),
        0.0
    );

    // A bad file: an unknown field, in a config that would move traffic to
    // b if it were applied.
    let mut bad = config(&a, &b, "b");
    bad["clusters"][1]["bogus_field"] = json!(1);
    proxy.rewrite_config(bad);
    let bad_line = 1 + proxy
        .config_text()
        .lines()
        .position(|l| l.contains("bogus_field"))
        .expect("the bad field is in the file");
    let since_bad = traffic.sent.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let failed = proxy
            .metrics()
            .get_or_zero("ringmesh_config_reloads_total", &[("result", "failure")]);
        if failed >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bad file was not reported within 4s (polling is at most 1s)"
        );
        thread::sleep(Duration::from_millis(100));
    }
    // Also by SIGHUP: rejected again, still serving.
    let failed_before = proxy
        .metrics()
        .get_or_zero("ringmesh_config_reloads_total", &[("result", "failure")]);
    proxy.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(3);
    while proxy
        .metrics()
        .get_or_zero("ringmesh_config_reloads_total", &[("result", "failure")])
        <= failed_before
    {
        assert!(
            Instant::now() < deadline,
            "SIGHUP with a bad file did not count a failure"
        );
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(500));
    let after_bad = traffic.sent.load(Ordering::Relaxed);
    assert!(
        after_bad > since_bad + 20,
        "traffic stalled after the bad config ({since_bad} -> {after_bad})"
    );
    let last = traffic.last.lock().unwrap().clone();
    assert_eq!(
        last.1, "a",
        "a rejected config was applied (traffic moved to {})",
        last.1
    );
    let log = proxy.log();
    let rejection = log
        .lines()
        .find(|l| l.contains("bogus_field"))
        .unwrap_or_else(|| panic!("the rejection log does not name the field:\n{log}"));
    assert!(
        rejection.contains(&format!("ringmesh.yaml:{bad_line}")),
        "the rejection does not point at ringmesh.yaml line {bad_line}: {rejection}"
    );

    // A good file again is applied.
    let since = traffic.sent.load(Ordering::Relaxed);
    thread::sleep(Duration::from_millis(300));
    proxy.rewrite_config(config(&a, &b, "b"));
    wait_backend(&traffic, since, "b", "recovery after the bad file");

    traffic.stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    let failures = traffic.failures.lock().unwrap().clone();
    let sent = traffic.sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed during reloads: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let (sa, sb) = (
        traffic.seen[0].load(Ordering::Relaxed),
        traffic.seen[1].load(Ordering::Relaxed),
    );
    assert!(sa > 0 && sb > 0, "backends seen: a {sa}, b {sb}");
    eprintln!("{sent} requests, a {sa}, b {sb}");
    let dump = proxy.admin_get("/config_dump").json();
    let route_cluster =
        &dump["config"]["route_configs"][0]["virtual_hosts"][0]["routes"][0]["cluster"];
    assert_eq!(
        route_cluster, "b",
        "/config_dump does not show the live config: {dump}"
    );
}

/// A reload that is only whitespace/comments: accepted, traffic unaffected.
fn reload_same_content(driver: Driver) {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let mut proxy = Proxy::start(driver, config(&a, &b, "a"));
    let text = proxy.config_text();
    proxy.write_config_text(&format!("# touched\n{text}"));
    proxy.signal(libc::SIGHUP);
    thread::sleep(Duration::from_millis(1500));
    proxy.assert_alive();
    let m = proxy.metrics();
    assert_eq!(
        m.get_or_zero("ringmesh_config_reloads_total", &[("result", "failure")]),
        0.0
    );
    let mut c = Client::connect(proxy.addr("http"));
    assert_eq!(c.get("svc", "/").header("x-backend"), Some("a"));
}

/// Semantically invalid (a route to an undefined cluster): rejected too.
fn reload_rejects_dangling_cluster_reference(driver: Driver) {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let mut proxy = Proxy::start(driver, config(&a, &b, "a"));
    proxy.rewrite_config(config(&a, &b, "no-such-cluster"));
    proxy.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(3);
    while proxy
        .metrics()
        .get_or_zero("ringmesh_config_reloads_total", &[("result", "failure")])
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "a route to an undefined cluster was not rejected"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let mut c = Client::connect(proxy.addr("http"));
    assert_eq!(c.get("svc", "/").header("x-backend"), Some("a"));
    assert!(
        proxy.log().contains("no-such-cluster"),
        "the log does not name the bad reference"
    );
}

/// Moving a cluster's endpoint: pooled connections to the old endpoint
/// are not used for new requests, even on a kept-alive client connection.
fn reload_changes_cluster_endpoints(driver: Driver) {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let mut proxy = Proxy::start(driver, ringmesh_e2e::simple_http_config(&[a.addr()]));
    let mut c = Client::connect(proxy.addr("http"));
    for _ in 0..3 {
        assert_eq!(c.get("svc", "/").header("x-backend"), Some("a"));
    }
    proxy.rewrite_config(ringmesh_e2e::simple_http_config(&[b.addr()]));
    proxy.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = c.get("svc", "/");
        assert_eq!(r.status, 200);
        if r.header("x-backend") == Some("b") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still sent to the removed endpoint 3s after the reload"
        );
        thread::sleep(Duration::from_millis(50));
    }
    for i in 0..20 {
        let r = c.get("svc", "/");
        assert_eq!(
            r.header("x-backend"),
            Some("b"),
            "request {i} after the switch went to the old endpoint"
        );
    }
}

/// Listeners added by a reload start serving; removed ones stop.
fn reload_adds_and_removes_listeners(driver: Driver) {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let mut proxy = Proxy::start(driver, config(&a, &b, "a"));
    let mut two = config(&a, &b, "a");
    two["listeners"].as_array_mut().unwrap().push(json!({
        "name": "extra", "address": "auto", "protocol": "http", "route_config": "main"
    }));
    proxy.rewrite_config(two);
    proxy.signal(libc::SIGHUP);
    let extra = proxy.addr("extra");
    let r = ringmesh_e2e::wait_for(
        Duration::from_secs(3),
        "the added listener to serve",
        || {
            let mut c = Client::try_connect(extra, Duration::from_millis(200)).ok()?;
            c.request("GET", "svc", "/", &[], b"").ok()
        },
    );
    assert_eq!(r.status, 200);
    assert_eq!(proxy.admin_get("/ready").status, 200);
    proxy.rewrite_config(config(&a, &b, "a"));
    proxy.signal(libc::SIGHUP);
    ringmesh_e2e::wait_for(
        Duration::from_secs(3),
        "the removed listener to refuse connections",
        || match std::net::TcpStream::connect_timeout(&extra, Duration::from_millis(200)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        },
    );
    let mut c = Client::connect(proxy.addr("http"));
    assert_eq!(c.get("svc", "/").status, 200);
}

on_both_drivers!(
    reload_under_traffic,
    reload_same_content,
    reload_rejects_dangling_cluster_reference,
    reload_changes_cluster_endpoints,
    reload_adds_and_removes_listeners,
);
