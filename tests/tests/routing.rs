//! Routing: virtual host by authority (exact, `*.` wildcard, case and port
//! insensitive), route by path (exact, prefix, first match), and the local
//! answers: 404 without a route, 503 without a usable endpoint, 504 when
//! the route timeout expires.

use std::time::{Duration, Instant};

use ringmesh_e2e::{
    on_both_drivers, raw_upstream, refused_addr, show, simple_http_config, Backend, Client, Driver,
    Proxy,
};
use serde_json::{json, Value};

struct Setup {
    _a: Backend,
    _b: Backend,
    proxy: Proxy,
}

fn config(a: &Backend, b: &Backend) -> Value {
    json!({
        "listeners": [{ "name": "http", "address": "auto", "protocol": "http", "route_config": "main" }],
        "route_configs": [{
            "name": "main",
            "virtual_hosts": [
                {
                    "name": "exact",
                    "domains": ["exact.test"],
                    "routes": [
                        { "match": { "exact": "/only" }, "cluster": "a" },
                        { "match": { "prefix": "/api/" }, "cluster": "b" },
                        { "match": { "prefix": "/delay/" }, "cluster": "a", "timeout": "400ms" },
                        { "match": { "prefix": "/api/v2/" }, "cluster": "a" }
                    ]
                },
                {
                    "name": "wild",
                    "domains": ["*.wild.test"],
                    "routes": [{ "match": { "prefix": "/" }, "cluster": "b" }]
                },
                {
                    "name": "down",
                    "domains": ["down.test"],
                    "routes": [{ "match": { "prefix": "/" }, "cluster": "refused" }]
                }
            ]
        }],
        "clusters": [
            { "name": "a", "connect_timeout": "1s", "endpoints": [{ "address": a.addr().to_string() }] },
            { "name": "b", "connect_timeout": "1s", "endpoints": [{ "address": b.addr().to_string() }] },
            { "name": "refused", "connect_timeout": "500ms", "endpoints": [{ "address": refused_addr().to_string() }] }
        ]
    })
}

fn setup(driver: Driver) -> Setup {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let proxy = Proxy::start(driver, config(&a, &b));
    Setup {
        _a: a,
        _b: b,
        proxy,
    }
}

/// (status, x-backend) of `GET path` with `Host: host`, on a connection of
/// its own (keep-alive after local replies has its own test).
fn hit(proxy: &Proxy, host: &str, path: &str) -> (u16, String) {
    let mut c = Client::connect(proxy.addr("http"));
    let r = c.get(host, path);
    (r.status, r.header("x-backend").unwrap_or("-").to_string())
}

fn ok(backend: &str) -> (u16, String) {
    (200, backend.to_string())
}

fn local(status: u16) -> (u16, String) {
    (status, "-".to_string())
}

fn host_and_path_matching(driver: Driver) {
    let s = setup(driver);
    // Exact path.
    assert_eq!(hit(&s.proxy, "exact.test", "/only"), ok("a"));
    assert_eq!(
        hit(&s.proxy, "exact.test", "/only?x=1"),
        ok("a"),
        "the query is not part of the path"
    );
    assert_eq!(hit(&s.proxy, "exact.test", "/only/more"), local(404));
    assert_eq!(hit(&s.proxy, "exact.test", "/onl"), local(404));
    // Prefix; first match in configuration order wins.
    assert_eq!(hit(&s.proxy, "exact.test", "/api/x"), ok("b"));
    assert_eq!(
        hit(&s.proxy, "exact.test", "/api/v2/x"),
        ok("b"),
        "a later, longer prefix must not win"
    );
    assert_eq!(hit(&s.proxy, "exact.test", "/api"), local(404));
    // Authority: case-insensitive, port ignored.
    assert_eq!(hit(&s.proxy, "EXACT.Test", "/only"), ok("a"));
    assert_eq!(hit(&s.proxy, "exact.test:8080", "/only"), ok("a"));
    // Wildcard.
    assert_eq!(hit(&s.proxy, "foo.wild.test", "/anything"), ok("b"));
    assert_eq!(hit(&s.proxy, "a.b.wild.test", "/"), ok("b"));
    assert_eq!(
        hit(&s.proxy, "wild.test", "/"),
        local(404),
        "`*.wild.test` must not match `wild.test`"
    );
    assert_eq!(hit(&s.proxy, "foowild.test", "/"), local(404));
    // No virtual host at all.
    assert_eq!(hit(&s.proxy, "nomatch.test", "/"), local(404));
}

/// A local 404 on a keep-alive connection consumes that request: the next
/// request on the same connection is routed on its own (exactly one
/// response each).
fn keep_alive_after_local_404(driver: Driver) {
    let s = setup(driver);
    let mut c = Client::connect(s.proxy.addr("http"));
    let r = c.get("nomatch.test", "/x");
    assert_eq!(r.status, 404);
    if r.has_connection_close() {
        return;
    }
    let r = c.get("exact.test", "/only");
    assert_eq!(
        (r.status, r.header("x-backend")),
        (200, Some("a")),
        "the request after a keep-alive 404 was answered {}",
        r.status_line
    );
    let (extra, _) = c.read_until_close(Duration::from_millis(300));
    assert!(
        extra.is_empty(),
        "unsolicited bytes after the exchange: {}",
        show(&extra)
    );
}

/// An absolute-form target routes by its own authority and goes upstream in
/// origin-form. A Host that disagrees with it must never win: the proxy may
/// route by the target (RFC 9112 §3.2.2) or reject the request (400).
fn absolute_form_target_routes_by_its_authority(driver: Driver) {
    let s = setup(driver);
    let mut c = Client::connect(s.proxy.addr("http"));
    c.send(b"GET http://foo.wild.test/echo?x=1 HTTP/1.1\r\nHost: foo.wild.test\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(
        (r.status, r.header("x-backend")),
        (200, Some("b")),
        "{}",
        show(&r.raw_head)
    );
    assert_eq!(
        r.json()["target"],
        "/echo?x=1",
        "absolute-form not reduced to origin-form upstream"
    );

    let mut c = Client::connect(s.proxy.addr("http"));
    c.send(b"GET http://foo.wild.test/only HTTP/1.1\r\nHost: exact.test\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    let routed_by_target = r.status == 200 && r.header("x-backend") == Some("b");
    assert!(
        routed_by_target || r.status == 400,
        "Host won over the target's authority: {}",
        show(&r.raw_head)
    );
}

fn no_route_is_404(driver: Driver) {
    let s = setup(driver);
    let mut c = Client::connect(s.proxy.addr("http"));
    let r = c.get("nomatch.test", "/");
    assert_eq!(r.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(r.header("x-backend"), None);
    // A 404 for a request with a body must not leave the body to be parsed
    // as the next request.
    let r = c
        .request(
            "POST",
            "nomatch.test",
            "/",
            &[],
            b"GET /smuggled HTTP/1.1\r\nHost: exact.test\r\n\r\n",
        )
        .unwrap();
    assert_eq!(r.status, 404);
    if !r.has_connection_close() {
        let r = c.get("exact.test", "/only");
        assert_eq!(
            (r.status, r.header("x-backend")),
            (200, Some("a")),
            "{}",
            r.status_line
        );
    }
}

fn refused_endpoint_is_503(driver: Driver) {
    let s = setup(driver);
    let mut c = Client::connect(s.proxy.addr("http"));
    let t = Instant::now();
    let r = c.get("down.test", "/");
    assert_eq!(r.status, 503, "{}", show(&r.raw_head));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a refused connect took {:?}",
        t.elapsed()
    );
    assert_eq!(hit(&s.proxy, "exact.test", "/only"), ok("a"));
}

/// `Expect: 100-continue` on a request with no route: the final 404 comes
/// without waiting for a body that will never be needed.
fn expect_continue_without_route(driver: Driver) {
    let s = setup(driver);
    let mut c = Client::connect(s.proxy.addr("http"));
    c.set_read_timeout(Duration::from_secs(3));
    c.send(b"POST / HTTP/1.1\r\nHost: nomatch.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").unwrap();
    let r = c
        .read_final_response()
        .unwrap_or_else(|e| panic!("no final response without the body: {e}"));
    assert_eq!(r.status, 404);
}

/// A cluster with an empty endpoint list (valid: endpoints may come later)
/// answers 503.
fn cluster_without_endpoints_is_503(driver: Driver) {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let mut cfg = config(&a, &b);
    cfg["route_configs"][0]["virtual_hosts"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": "empty",
            "domains": ["empty.test"],
            "routes": [{ "match": { "prefix": "/" }, "cluster": "empty" }]
        }));
    cfg["clusters"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "empty", "endpoints": [] }));
    let proxy = Proxy::start(driver, cfg);
    let mut c = Client::connect(proxy.addr("http"));
    let r = c.get("empty.test", "/");
    assert_eq!(r.status, 503, "{}", show(&r.raw_head));
}

fn route_timeout_is_504(driver: Driver) {
    let s = setup(driver);
    assert_eq!(hit(&s.proxy, "exact.test", "/delay/50"), ok("a"));
    let mut c = Client::connect(s.proxy.addr("http"));
    let t = Instant::now();
    let r = c.get("exact.test", "/delay/3000");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", show(&r.raw_head));
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(2000),
        "504 after {took:?}, route timeout 400ms"
    );
    // Fresh connection still fine (the timed-out upstream one is not reused
    // for another request while the backend still works on it).
    assert_eq!(hit(&s.proxy, "exact.test", "/only"), ok("a"));
    s.proxy.wait_metric(
        "ringmesh_http_requests_total",
        &[("listener", "http"), ("code_class", "5xx")],
        1.0,
    );
}

/// An upstream answering with an invalid response head: 502, and the
/// proxy goes on serving.
fn invalid_upstream_response_is_502(driver: Driver) {
    for (what, reply) in [
        (
            "duplicate content-length",
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"[..],
        ),
        ("garbage status line", b"HTTTP/1.1 200 OK\r\n\r\n"),
        ("bare LF head", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    ] {
        let up = raw_upstream(reply);
        let proxy = Proxy::start(driver, simple_http_config(&[up]));
        let mut c = Client::connect(proxy.addr("http"));
        let r = c.get("svc", "/");
        assert_eq!(r.status, 502, "{what}: {}", show(&r.raw_head));
        let mut c = Client::connect(proxy.addr("http"));
        assert_eq!(c.get("svc", "/").status, 502, "{what}: second request");
    }
}

/// A response with both Content-Length and Transfer-Encoding from the
/// upstream: 502, or chunked framing with the Content-Length dropped (RFC
/// 9112 §6.3) — never both forwarded, never the CL honoured.
fn ambiguous_upstream_response_framing(driver: Driver) {
    let up = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    let proxy = Proxy::start(driver, simple_http_config(&[up]));
    let mut c = Client::connect(proxy.addr("http"));
    c.set_read_timeout(Duration::from_secs(3));
    let r = c.get("svc", "/");
    match r.status {
        502 => {}
        200 => {
            assert!(
                r.header("content-length").is_none() || r.header("transfer-encoding").is_none(),
                "{}",
                show(&r.raw_head)
            );
            assert_eq!(r.text(), "hello");
        }
        other => panic!(
            "ambiguous upstream framing answered {other}: {}",
            show(&r.raw_head)
        ),
    }
}

/// A response head larger than the limit from the upstream: 502.
fn oversized_upstream_response_head_is_502(driver: Driver) {
    static HEAD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let head = HEAD.get_or_init(|| {
        let mut v = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        v.extend(std::iter::repeat_n(b'b', 200 * 1024));
        v.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
        v
    });
    let up = raw_upstream(head);
    let proxy = Proxy::start(driver, simple_http_config(&[up]));
    let mut c = Client::connect(proxy.addr("http"));
    let r = c.get("svc", "/");
    assert_eq!(r.status, 502, "{}", show(&r.raw_head));
}

/// Local replies that keep the connection (no `connection: close`) leave
/// it in sync: the next request gets its own answer.
fn keep_alive_after_local_replies(driver: Driver) {
    let s = setup(driver);
    for (host, path, status) in [("down.test", "/", 503), ("exact.test", "/delay/2000", 504)] {
        let mut c = Client::connect(s.proxy.addr("http"));
        let r = c.get(host, path);
        assert_eq!(r.status, status, "{host}{path}");
        if r.has_connection_close() {
            continue;
        }
        c.set_read_timeout(Duration::from_secs(3));
        let r = c
            .request("GET", "exact.test", "/only", &[], b"")
            .unwrap_or_else(|e| panic!("after {status}: {e}"));
        assert_eq!(
            (r.status, r.header("x-backend")),
            (200, Some("a")),
            "the request after a keep-alive {status}"
        );
    }
}

/// An upstream that closes without answering: 502 or 503, never a hang or
/// an empty reply.
fn upstream_closing_without_response(driver: Driver) {
    let up = raw_upstream(b"");
    let proxy = Proxy::start(driver, simple_http_config(&[up]));
    let mut c = Client::connect(proxy.addr("http"));
    let t = Instant::now();
    let r = c.get("svc", "/");
    assert!(r.status == 502 || r.status == 503, "{}", show(&r.raw_head));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
}

on_both_drivers!(
    invalid_upstream_response_is_502,
    ambiguous_upstream_response_framing,
    oversized_upstream_response_head_is_502,
    keep_alive_after_local_replies,
    expect_continue_without_route,
    upstream_closing_without_response,
);

on_both_drivers!(
    host_and_path_matching,
    keep_alive_after_local_404,
    absolute_form_target_routes_by_its_authority,
    no_route_is_404,
    refused_endpoint_is_503,
    cluster_without_endpoints_is_503,
    route_timeout_is_504,
);
