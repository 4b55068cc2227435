//! Cluster resilience in the proxy, with real backends that fail: outlier
//! detection ejects an endpoint that keeps answering 503 and lets it back
//! after the ejection time; circuit breakers hold for the proxy as a
//! whole (all shards) and answer 503 with `x-envoy-overloaded: true`;
//! every load-balancing policy spreads over the endpoints.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use ringmesh_e2e::{on_both_drivers, simple_http_config, Backend, Client, Driver, Proxy};
use serde_json::{json, Value};

/// A keep-alive HTTP/1.1 server that answers every request with one
/// status (503 by default) after an optional delay, and counts them.
/// Stops (and its threads end) when dropped.
struct FailingBackend {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FailingBackend {
    fn start() -> FailingBackend {
        Self::answering(503, "bad", Duration::ZERO)
    }

    fn answering(status: u16, name: &'static str, delay: Duration) -> FailingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (served.clone(), stop.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !st2.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (s3, st3) = (s2.clone(), st2.clone());
                        thread::spawn(move || serve_fixed(conn, &s3, &st3, status, name, delay));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FailingBackend { addr, served, stop }
    }
}

impl Drop for FailingBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_fixed(
    conn: TcpStream,
    served: &AtomicU64,
    stop: &AtomicBool,
    status: u16,
    name: &str,
    delay: Duration,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut w = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    // Bounded: at most 10,000 requests per connection.
    for _ in 0..10_000 {
        let mut content_length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(_) if !stop.load(Ordering::Relaxed) => continue,
                Err(_) => return,
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; content_length];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        served.fetch_add(1, Ordering::Relaxed);
        thread::sleep(delay);
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nx-backend: {name}\r\n\r\n{name}",
            name.len()
        );
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn config_with(endpoints: &[SocketAddr], cluster_extra: Value) -> Value {
    let mut cfg = simple_http_config(endpoints);
    let cluster = cfg["clusters"][0].as_object_mut().unwrap();
    for (k, v) in cluster_extra.as_object().unwrap() {
        cluster.insert(k.clone(), v.clone());
    }
    cfg
}

/// Who answered `n` sequential requests: x-backend (or body) → count,
/// with non-200s keyed by status.
fn answers(c: &mut Client, n: usize, path: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let r = c.get("svc", path);
        let who = if r.status == 200 {
            r.text()
        } else {
            format!("{} {}", r.status, r.header("x-backend").unwrap_or("local"))
        };
        *out.entry(who).or_insert(0) += 1;
    }
    out
}

fn metric(proxy: &Proxy, name: &str, cluster: &str) -> f64 {
    proxy
        .metrics()
        .get(name, &[("cluster", cluster)])
        .unwrap_or_else(|| panic!("{name}{{cluster={cluster:?}}} missing"))
}

/// An endpoint answering 503 is ejected after 3 in a row; while ejected it
/// gets nothing; after the ejection time it is tried again (and, still
/// failing, ejected again, for longer).
fn outlier_detection_ejects_and_readmits(driver: Driver) {
    let good = Backend::start("good");
    let bad = FailingBackend::start();
    let proxy = Proxy::start(
        driver,
        config_with(
            &[good.addr(), bad.addr],
            json!({
                "outlier_detection": {
                    "consecutive_5xx": 3,
                    "base_ejection_time": "2s",
                    "max_ejection_percent": 50
                }
            }),
        ),
    );
    let mut c = Client::connect(proxy.addr("http"));
    // Round robin alternates: the bad endpoint sees 3 requests, then is out.
    let first = answers(&mut c, 10, "/");
    assert_eq!(first.get("503 bad"), Some(&3), "{first:?}");
    assert_eq!(bad.served.load(Ordering::Relaxed), 3);
    let ejected = answers(&mut c, 40, "/");
    assert_eq!(ejected, BTreeMap::from([("good".to_string(), 40)]));
    assert_eq!(
        metric(&proxy, "ringmesh_cluster_outlier_ejections_total", "web"),
        1.0
    );
    assert_eq!(
        metric(&proxy, "ringmesh_cluster_outlier_ejected", "web"),
        1.0
    );

    // After the ejection time the endpoint is back in rotation; three more
    // 503s eject it again.
    thread::sleep(Duration::from_millis(2300));
    let again = answers(&mut c, 20, "/");
    assert_eq!(again.get("503 bad"), Some(&3), "{again:?}");
    assert_eq!(
        metric(&proxy, "ringmesh_cluster_outlier_ejections_total", "web"),
        2.0
    );
    // The second ejection lasts twice as long: still out after 2.3 s.
    thread::sleep(Duration::from_millis(2300));
    let still = answers(&mut c, 10, "/");
    assert_eq!(still, BTreeMap::from([("good".to_string(), 10)]));
}

/// `max_ejection_percent` with every endpoint failing: one endpoint may be
/// ejected, the second may not; the cluster keeps being tried (the
/// client sees the upstream's 503s, not "no healthy upstream").
fn ejection_is_capped(driver: Driver) {
    let a = FailingBackend::start();
    let b = FailingBackend::start();
    let proxy = Proxy::start(
        driver,
        config_with(
            &[a.addr, b.addr],
            json!({ "outlier_detection": { "consecutive_5xx": 2, "max_ejection_percent": 10 } }),
        ),
    );
    let mut c = Client::connect(proxy.addr("http"));
    let seen = answers(&mut c, 30, "/");
    assert_eq!(seen, BTreeMap::from([("503 bad".to_string(), 30)]));
    assert_eq!(
        metric(&proxy, "ringmesh_cluster_outlier_ejections_total", "web"),
        1.0
    );
    assert!(
        metric(
            &proxy,
            "ringmesh_cluster_outlier_ejections_overflow_total",
            "web"
        ) >= 1.0
    );
}

/// `max_requests: 2` holds for the proxy as a whole: of 6 concurrent slow
/// requests on 6 connections (spread over the shards), exactly 2 reach the
/// backend and 4 are refused at once with 503 and `x-envoy-overloaded`.
fn circuit_breaker_limits_concurrent_requests(driver: Driver) {
    let backend = Backend::start("slow");
    let proxy = Proxy::start_with(
        ringmesh_e2e::ProxyOpts {
            concurrency: 2,
            ..ringmesh_e2e::ProxyOpts::new(driver)
        },
        config_with(
            &[backend.addr()],
            json!({ "circuit_breakers": { "max_requests": 2 } }),
        ),
    );
    let addr = proxy.addr("http");
    let clients: Vec<_> = (0..6)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                let r = c.get("svc", "/delay/3000");
                (r.status, r.header("x-envoy-overloaded").map(str::to_owned))
            })
        })
        .collect();
    let mut results: Vec<(u16, Option<String>)> =
        clients.into_iter().map(|t| t.join().unwrap()).collect();
    results.sort();
    assert_eq!(
        results,
        vec![
            (200, None),
            (200, None),
            (503, Some("true".into())),
            (503, Some("true".into())),
            (503, Some("true".into())),
            (503, Some("true".into())),
        ]
    );
    assert_eq!(
        metric(&proxy, "ringmesh_cluster_upstream_rq_overflow_total", "web"),
        4.0
    );
    // The slots were given back: the next request goes through, and once
    // its exchange has ended (a moment after the client has the answer)
    // nothing is in flight.
    let mut c = Client::connect(addr);
    assert_eq!(c.get("svc", "/").status, 200);
    proxy.wait_metric(
        "ringmesh_cluster_upstream_rq_active_proxy",
        &[("cluster", "web")],
        0.0,
    );
}

/// Every policy reaches every endpoint, and consistent hashing with no
/// key still spreads.
fn every_lb_policy_spreads(driver: Driver) {
    let backends: Vec<Backend> = ["b0", "b1", "b2"]
        .iter()
        .map(|n| Backend::start(n))
        .collect();
    let addrs: Vec<SocketAddr> = backends.iter().map(Backend::addr).collect();
    for policy in [
        "round_robin",
        "least_request",
        "random",
        "ring_hash",
        "maglev",
    ] {
        let proxy = Proxy::start(driver, config_with(&addrs, json!({ "lb_policy": policy })));
        let mut c = Client::connect(proxy.addr("http"));
        let seen = answers(&mut c, 90, "/");
        assert_eq!(seen.len(), 3, "{policy}: {seen:?}");
        assert!(
            seen.values().all(|n| *n >= 10),
            "{policy}: uneven spread {seen:?}"
        );
    }
}

fn with_retries(endpoints: &[SocketAddr], policy: Value, cluster_extra: Value) -> Value {
    let mut cfg = config_with(endpoints, cluster_extra);
    cfg["route_configs"][0]["virtual_hosts"][0]["routes"][0]["retry_policy"] = policy;
    cfg
}

/// Retries hide a failing endpoint: with `5xx` and 2 retries, every GET
/// succeeds although half the first attempts hit the 503 endpoint.
fn retries_hide_failures(driver: Driver) {
    let good = Backend::start("good");
    let bad = FailingBackend::start();
    let proxy = Proxy::start(
        driver,
        with_retries(
            &[good.addr(), bad.addr],
            json!({ "retry_on": "5xx", "num_retries": 2, "backoff_base": "1ms" }),
            json!({}),
        ),
    );
    let mut c = Client::connect(proxy.addr("http"));
    let seen = answers(&mut c, 40, "/");
    assert_eq!(seen, BTreeMap::from([("good".to_string(), 40)]));
    let bad_hits = bad.served.load(Ordering::Relaxed) as f64;
    assert!(bad_hits >= 10.0, "the 503 endpoint saw {bad_hits} attempts");
    assert_eq!(
        metric(&proxy, "ringmesh_cluster_upstream_rq_retry_total", "web"),
        bad_hits
    );

    // POST is not idempotent: it is not retried after it reached the
    // endpoint, so the 503s get through ...
    let post = |c: &mut Client| {
        c.request("POST", "svc", "/", &[], b"order=1")
            .unwrap()
            .status
    };
    let statuses: Vec<u16> = (0..20).map(|_| post(&mut c)).collect();
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    // ... unless the policy says it may be.
    let proxy = Proxy::start(
        driver,
        with_retries(
            &[good.addr(), bad.addr],
            json!({ "retry_on": "5xx", "num_retries": 2, "backoff_base": "1ms",
                    "retry_non_idempotent": true }),
            json!({}),
        ),
    );
    let mut c = Client::connect(proxy.addr("http"));
    let statuses: Vec<u16> = (0..20).map(|_| post(&mut c)).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// A per-try timeout gives up on a slow endpoint and retries elsewhere,
/// well within the route timeout.
fn per_try_timeout_moves_on(driver: Driver) {
    let slow = FailingBackend::answering(200, "slow", Duration::from_secs(3));
    let fast = Backend::start("fast");
    let proxy = Proxy::start(
        driver,
        with_retries(
            &[slow.addr, fast.addr()],
            json!({ "retry_on": "gateway-error", "num_retries": 1,
                    "per_try_timeout": "200ms", "backoff_base": "1ms" }),
            json!({}),
        ),
    );
    let mut c = Client::connect(proxy.addr("http"));
    let seen = answers(&mut c, 6, "/");
    assert_eq!(seen, BTreeMap::from([("fast".to_string(), 6)]));
    assert!(slow.served.load(Ordering::Relaxed) >= 2);
}

/// The retry budget caps the extra load: with a budget of 0 % and no
/// floor, nothing is retried and the exhaustion is counted.
fn retry_budget_caps_retries(driver: Driver) {
    let bad = FailingBackend::start();
    let proxy = Proxy::start(
        driver,
        with_retries(
            &[bad.addr],
            json!({ "retry_on": "5xx", "num_retries": 3, "backoff_base": "1ms" }),
            json!({ "circuit_breakers": { "retry_budget_percent": 0, "min_retry_concurrency": 0 } }),
        ),
    );
    let mut c = Client::connect(proxy.addr("http"));
    let seen = answers(&mut c, 10, "/");
    assert_eq!(seen, BTreeMap::from([("503 bad".to_string(), 10)]));
    assert_eq!(bad.served.load(Ordering::Relaxed), 10, "no retry was sent");
    assert_eq!(
        metric(
            &proxy,
            "ringmesh_cluster_upstream_rq_retry_budget_exhausted_total",
            "web"
        ),
        10.0
    );
    // With the default budget (20 %, at least 3 in flight) sequential
    // requests are retried: 1 + 3 attempts each.
    let proxy = Proxy::start(
        driver,
        with_retries(
            &[bad.addr],
            json!({ "retry_on": "5xx", "num_retries": 3, "backoff_base": "1ms" }),
            json!({}),
        ),
    );
    let before = bad.served.load(Ordering::Relaxed);
    let mut c = Client::connect(proxy.addr("http"));
    let seen = answers(&mut c, 5, "/");
    assert_eq!(seen, BTreeMap::from([("503 bad".to_string(), 5)]));
    assert_eq!(bad.served.load(Ordering::Relaxed) - before, 20);
}

on_both_drivers!(
    retries_hide_failures,
    per_try_timeout_moves_on,
    retry_budget_caps_retries,
);

on_both_drivers!(
    outlier_detection_ejects_and_readmits,
    ejection_is_capped,
    circuit_breaker_limits_concurrent_requests,
    every_lb_policy_spreads,
);
