//! SIGTERM: stop accepting, finish what is in flight (with
//! `connection: close`), report not-ready meanwhile, exit 0 — as soon as the
//! work is done, and no later than `drain_timeout`.

use std::{
    net::TcpStream,
    thread,
    time::{Duration, Instant},
};

use ringmesh_e2e::{
    on_both_drivers, show, simple_http_config, Backend, Client, Driver, Proxy, Response,
};
use serde_json::json;

fn start(driver: Driver, drain_timeout: &str) -> (Backend, Proxy) {
    let backend = Backend::start("slow");
    let mut cfg = simple_http_config(&[backend.addr()]);
    cfg["limits"] = json!({ "drain_timeout": drain_timeout });
    let proxy = Proxy::start(driver, cfg);
    (backend, proxy)
}

/// Wait until the backend has `n` requests in hand (the stats request
/// itself counts: subtract the ones we made).
fn wait_backend_requests(backend: &Backend, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for asked in 1.. {
        let seen = backend.stats()["requests"].as_u64().unwrap() - asked;
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {seen} of {n} requests reached the backend"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm_finishes_in_flight_requests(driver: Driver) {
    let (backend, mut proxy) = start(driver, "5s");
    let addr = proxy.addr("http");
    let slow: Vec<thread::JoinHandle<Result<Response, String>>> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.request("GET", "svc", "/delay/1500", &[], b"")
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    // An idle keep-alive client must not hold the drain open.
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("svc", "/").status, 200);
    wait_backend_requests(&backend, 5);

    let t = Instant::now();
    proxy.signal(libc::SIGTERM);

    // Not ready while draining (the signal is handled asynchronously).
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        match proxy.try_admin_get("/ready") {
            Ok(r) if r.status == 503 => break,
            Ok(r) => assert!(
                Instant::now() < deadline,
                "/ready while draining: {}",
                r.status_line
            ),
            Err(e) => panic!("admin unreachable while draining (expected /ready 503): {e}"),
        }
        thread::sleep(Duration::from_millis(20));
    }

    // New connections refused shortly after.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "new connections still accepted 1s after SIGTERM"
        );
        thread::sleep(Duration::from_millis(20));
    }

    // The idle keep-alive connection is closed.
    let (bytes, closed) = idle.read_until_close(Duration::from_secs(3));
    assert!(
        closed,
        "an idle keep-alive connection stayed open during the drain"
    );
    assert!(
        bytes.is_empty(),
        "bytes on the idle connection: {}",
        show(&bytes)
    );

    for (i, h) in slow.into_iter().enumerate() {
        let r = h
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("in-flight request {i} failed during the drain: {e}"));
        assert_eq!(r.status, 200, "in-flight request {i}: {}", r.status_line);
        assert_eq!(r.text(), "slow");
        assert!(
            r.has_connection_close(),
            "in-flight request {i} answered without connection: close: {}",
            show(&r.raw_head)
        );
    }
    let status = proxy
        .wait_exit(Duration::from_secs(7))
        .expect("the proxy did not exit within drain_timeout + 2s");
    let took = t.elapsed();
    assert!(status.success(), "exit status {status}\n{}", proxy.log());
    assert!(
        took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM although the last request finished at ~1.5s (drain_timeout 5s)"
    );
}

/// A request that outlives `drain_timeout` does not keep the process up.
fn drain_timeout_bounds_exit(driver: Driver) {
    let (backend, mut proxy) = start(driver, "1s");
    let addr = proxy.addr("http");
    let stuck = thread::spawn(move || {
        let mut c = Client::connect(addr);
        let _ = c.request("GET", "svc", "/delay/10000", &[], b"");
    });
    wait_backend_requests(&backend, 1);
    let t = Instant::now();
    proxy.signal(libc::SIGTERM);
    let status = proxy
        .wait_exit(Duration::from_secs(4))
        .expect("the proxy outlived drain_timeout (1s) by 3s");
    let took = t.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before drain_timeout (1s)"
    );
    assert!(
        took < Duration::from_millis(2500),
        "exited {took:?} after SIGTERM, drain_timeout 1s"
    );
    drop(backend);
    let _ = stuck.join();
}

/// With nothing in flight the proxy exits at once.
fn idle_proxy_exits_promptly(driver: Driver) {
    let (_backend, mut proxy) = start(driver, "5s");
    let t = Instant::now();
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_exit(Duration::from_secs(6)).expect("no exit");
    assert!(status.success(), "exit status {status}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "an idle proxy took {:?} to exit",
        t.elapsed()
    );
}

on_both_drivers!(
    sigterm_finishes_in_flight_requests,
    drain_timeout_bounds_exit,
    idle_proxy_exits_promptly
);
