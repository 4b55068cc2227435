//! HTTP/1.1 proxying: keep-alive and pooling, bodies and framing, the
//! headers the proxy strips and adds, 100-continue, and the metrics that
//! count all of it.

use std::time::Duration;

use ringmesh_e2e::{
    echo_header, on_both_drivers, pattern, show, simple_http_config, Backend, Client, Driver,
    Proxy, ProxyOpts,
};
use serde_json::Value;

fn setup(driver: Driver) -> (Backend, Proxy) {
    let backend = Backend::start("a");
    let proxy = Proxy::start(driver, simple_http_config(&[backend.addr()]));
    (backend, proxy)
}

fn echo(c: &mut Client, headers: &[(&str, &str)]) -> Value {
    let r = c
        .request("GET", "svc", "/echo", headers, b"")
        .expect("GET /echo through the proxy");
    assert_eq!(r.status, 200, "{}", r.status_line);
    r.json()
}

// ---------------------------------------------------------------------------
// Keep-alive and pooling
// ---------------------------------------------------------------------------

/// 100 requests on one client connection reuse one (or very few) pooled
/// upstream connections.
fn keep_alive_reuses_upstream_connections(driver: Driver) {
    let (backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    for i in 0..100 {
        let r = c.get("svc", &format!("/req/{i}"));
        assert_eq!((r.status, r.text().as_str()), (200, "a"), "request {i}");
        assert!(
            !r.has_connection_close(),
            "request {i} closed the client connection: {}",
            show(&r.raw_head)
        );
    }
    let stats = backend.stats();
    // The stats request itself is one connection and one request.
    let upstream_conns = stats["connections"].as_u64().unwrap() - 1;
    assert_eq!(stats["requests"], 101, "{stats}");
    assert!(
        upstream_conns <= 2,
        "100 keep-alive requests used {upstream_conns} upstream connections"
    );
    proxy.wait_metric("ringmesh_downstream_cx_total", &[("listener", "http")], 1.0);
    let m = proxy.metrics();
    let up = m
        .get("ringmesh_upstream_cx_total", &[("cluster", "web")])
        .expect("ringmesh_upstream_cx_total{cluster=\"web\"}");
    assert!(
        (1.0..=2.0).contains(&up),
        "ringmesh_upstream_cx_total{{cluster=\"web\"}} = {up}"
    );
    assert_eq!(
        m.get("ringmesh_upstream_cx_active", &[("cluster", "web")]),
        Some(upstream_conns as f64)
    );
    assert_eq!(
        m.get("ringmesh_downstream_cx_active", &[("listener", "http")]),
        Some(1.0)
    );
}

/// Requests from several client connections share the shard's pool: with
/// sequential clients, one upstream connection serves them all.
fn pool_shared_across_client_connections(driver: Driver) {
    let (backend, proxy) = setup(driver);
    for i in 0..20 {
        let mut c = Client::connect(proxy.addr("http"));
        assert_eq!(c.get("svc", &format!("/c/{i}")).status, 200);
    }
    let conns = backend.stats()["connections"].as_u64().unwrap() - 1;
    assert!(
        conns <= 2,
        "20 sequential clients opened {conns} upstream connections: no pooling"
    );
}

/// Two requests in one write are answered in order.
fn pipelined_requests_answered_in_order(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.send(b"GET /echo?n=1 HTTP/1.1\r\nHost: svc\r\n\r\nGET /echo?n=2 HTTP/1.1\r\nHost: svc\r\n\r\nGET /bytes/3 HTTP/1.1\r\nHost: svc\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().json()["target"], "/echo?n=1");
    assert_eq!(c.read_response().unwrap().json()["target"], "/echo?n=2");
    assert_eq!(c.read_response().unwrap().body, vec![0, 1, 2]);
}

/// HTTP/1.0 without keep-alive: answered, then closed.
fn http10_client_gets_close(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.send(b"GET /bytes/10 HTTP/1.0\r\nHost: svc\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_len, 10);
    let (_, closed) = c.read_until_close(Duration::from_secs(3));
    assert!(closed, "HTTP/1.0 connection without keep-alive left open");
}

/// An HTTP/1.0 client cannot parse chunked coding: a chunked upstream
/// response reaches it de-chunked, delimited by close (RFC 9112 §6.1).
fn http10_client_never_gets_chunked(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.send(b"GET /bytes/5000?chunked=1 HTTP/1.0\r\nHost: svc\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("transfer-encoding").is_none(),
        "chunked sent to an HTTP/1.0 client: {}",
        show(&r.raw_head)
    );
    assert_eq!(r.body_len, 5000);
    assert_eq!(crc32fast::hash(&r.body), pattern::crc32(5000));
}

/// `Connection: close` from the client: response carries it, then close.
fn client_connection_close(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let r = c
        .request("GET", "svc", "/", &[("Connection", "close")], b"")
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.has_connection_close(), "{}", show(&r.raw_head));
    let (_, closed) = c.read_until_close(Duration::from_secs(3));
    assert!(closed);
}

/// The upstream closes after its response (`/close`): the client
/// connection survives and the next request gets a fresh upstream.
fn upstream_close_does_not_break_client(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    for _ in 0..3 {
        assert_eq!(c.get("svc", "/close").status, 200);
        assert_eq!(c.get("svc", "/").text(), "a");
    }
}

/// HEAD: Content-Length passes through, no body follows, and the
/// connection stays in sync.
fn head_request(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let r = c.request("HEAD", "svc", "/bytes/1000", &[], b"").unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some("1000")));
    let r = c
        .request("HEAD", "svc", "/bytes/1000?chunked=1", &[], b"")
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(c.get("svc", "/").text(), "a");
}

/// 204 and 304 have no body; the connection stays in sync.
fn bodiless_statuses(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    assert_eq!(c.get("svc", "/status/204").status, 204);
    assert_eq!(c.get("svc", "/status/304").status, 304);
    assert_eq!(c.get("svc", "/status/418").status, 418);
    assert_eq!(c.get("svc", "/").text(), "a");
}

// ---------------------------------------------------------------------------
// Bodies and framing
// ---------------------------------------------------------------------------

/// A chunked request body (with an extension and several chunk sizes)
/// arrives intact, still chunked.
fn chunked_request_body(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.send(b"POST /echo HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n1\r\n \r\n10\r\n0123456789abcdef\r\n0\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["body_len"], 22);
    assert_eq!(v["body_crc32"], crc32fast::hash(b"hello 0123456789abcdef"));
    assert_eq!(echo_header(&v, "transfer-encoding"), vec!["chunked"], "{v}");
    assert!(echo_header(&v, "content-length").is_empty(), "{v}");
    // Still usable.
    assert_eq!(c.get("svc", "/").status, 200);
}

/// Request trailers pass through with the chunked body.
fn chunked_request_trailers(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.send(b"POST /echo HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n3\r\nabc\r\n0\r\nx-t: done\r\n\r\n")
        .unwrap();
    let v = c.read_response().unwrap().json();
    assert_eq!(v["body_len"], 3);
    assert_eq!(v["trailers"], serde_json::json!([["x-t", "done"]]), "{v}");
}

/// A larger chunked upload (8 MiB, sent in 3000-byte chunks split across
/// writes) to /sink: byte count and checksum match.
fn chunked_upload_8mib(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let len: u64 = 8 << 20;
    let mut body = Vec::with_capacity(len as usize + 100_000);
    let mut data = Vec::with_capacity(len as usize);
    pattern::for_each_slice(len, |s| data.extend_from_slice(s));
    for chunk in data.chunks(3000) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    c.send(b"POST /sink HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let mut w = c.stream().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        for piece in body.chunks(7777) {
            w.write_all(piece).unwrap();
        }
    });
    let v = c.read_response().unwrap().json();
    writer.join().unwrap();
    assert_eq!(v["bytes"], len);
    assert_eq!(v["crc32"], pattern::crc32(len));
}

/// Chunked response bodies arrive intact (de-chunked content compared).
fn chunked_response_body(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let n = 3_000_000u64;
    c.send(format!("GET /bytes/{n}?chunked=1 HTTP/1.1\r\nHost: svc\r\n\r\n").as_bytes())
        .unwrap();
    let mut crc = crc32fast::Hasher::new();
    let r = c
        .read_response_streaming(false, &mut |b| crc.update(b))
        .unwrap();
    assert_eq!((r.status, r.body_len), (200, n));
    assert!(r.chunked, "response re-framed: {}", show(&r.raw_head));
    assert_eq!(crc.finalize(), pattern::crc32(n));
    assert_eq!(c.get("svc", "/").status, 200);
}

/// Response trailers reach the client.
fn chunked_response_trailers(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let r = c.get("svc", "/chunked");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello chunked world");
    let crc = crc32fast::hash(b"hello chunked world").to_string();
    assert_eq!(
        r.trailer("x-checksum"),
        Some(crc.as_str()),
        "trailers: {:?}",
        r.trailers
    );
    assert_eq!(
        r.trailer("x-trailer-a"),
        Some("1"),
        "trailers: {:?}",
        r.trailers
    );
}

/// Content-Length bodies both ways, including an empty POST.
fn content_length_bodies(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let body = b"x".repeat(100_000);
    let v = c
        .request("POST", "svc", "/sink", &[], &body)
        .unwrap()
        .json();
    assert_eq!(v["bytes"], 100_000);
    let v = c.request("POST", "svc", "/echo", &[], b"").unwrap().json();
    assert_eq!(v["body_len"], 0);
    assert_eq!(echo_header(&v, "content-length"), vec!["0"]);
    let r = c.get("svc", "/bytes/100000");
    assert_eq!(r.body_len, 100_000);
    assert_eq!(crc32fast::hash(&r.body), pattern::crc32(100_000));
}

/// A response delimited by the upstream closing is delivered whole.
fn close_delimited_upstream_response(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let r = c.get("svc", "/until-close");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "body delimited by close");
    let mut c = Client::connect(proxy.addr("http"));
    assert_eq!(c.get("svc", "/").status, 200);
}

/// Valid but unusual framing is accepted: `Transfer-Encoding` is
/// case-insensitive (treating `Chunked` as "no body" would be a smuggling
/// hole; 501 would at least be safe), and Content-Length may have leading
/// zeros.
fn unusual_but_valid_framing(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.send(b"POST /echo HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    match r.status {
        200 => assert_eq!(
            r.json()["body_len"],
            5,
            "`Chunked` was not treated as chunked"
        ),
        501 => return,
        other => panic!("Transfer-Encoding: Chunked answered {other}"),
    }
    let v = c.request("POST", "svc", "/echo", &[], b"").unwrap().json();
    assert_eq!(v["body_len"], 0);
    let mut c = Client::connect(proxy.addr("http"));
    c.send(b"POST /echo HTTP/1.1\r\nHost: svc\r\nContent-Length: 005\r\n\r\nhello")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(
        r.status, 200,
        "Content-Length: 005 rejected: {}",
        r.status_line
    );
    assert_eq!(r.json()["body_len"], 5);
}

/// Field values with bytes above 0x7f (obs-text, e.g. UTF-8) are legal and
/// common; they pass through untouched.
fn obs_text_header_value_passes(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.send("GET /echo HTTP/1.1\r\nHost: svc\r\nX-Name: Zoë Ångström\r\n\r\n".as_bytes())
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_eq!(echo_header(&r.json(), "x-name"), vec!["Zoë Ångström"]);
}

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

/// Hop-by-hop fields and the ones `Connection` nominates are not forwarded;
/// end-to-end fields are, in order.
fn hop_by_hop_request_headers_stripped(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let v = echo(
        &mut c,
        &[
            ("X-First", "1"),
            ("Connection", "keep-alive, x-secret"),
            ("X-Secret", "do not forward"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("X-Last", "2"),
        ],
    );
    for gone in ["x-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(
            echo_header(&v, gone).is_empty(),
            "{gone} was forwarded: {v}"
        );
    }
    for conn in echo_header(&v, "connection") {
        assert!(
            !conn.to_ascii_lowercase().contains("x-secret"),
            "connection header forwarded as {conn:?}"
        );
    }
    assert_eq!(echo_header(&v, "host"), vec!["svc"]);
    assert_eq!(echo_header(&v, "x-first"), vec!["1"]);
    assert_eq!(echo_header(&v, "x-last"), vec!["2"]);
    let names: Vec<String> = ringmesh_e2e::echo_headers(&v)
        .into_iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    let first = names.iter().position(|n| n == "x-first").unwrap();
    let last = names.iter().position(|n| n == "x-last").unwrap();
    assert!(first < last, "end-to-end header order changed: {names:?}");
}

/// Hop-by-hop fields of the upstream response are not forwarded either.
fn hop_by_hop_response_headers_stripped(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let r = c.get("svc", "/hop");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-public"), Some("yes"));
    assert_eq!(r.header("x-internal"), None, "{}", show(&r.raw_head));
    assert_eq!(r.header("keep-alive"), None, "{}", show(&r.raw_head));
}

/// XFF: the client address is appended to what the client sent, in one
/// field; `x-forwarded-proto` is set to `http`, replacing the client's.
fn forwarded_headers(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let v = echo(&mut c, &[]);
    assert_eq!(echo_header(&v, "x-forwarded-for"), vec!["127.0.0.1"], "{v}");
    assert_eq!(echo_header(&v, "x-forwarded-proto"), vec!["http"], "{v}");
    let v = echo(
        &mut c,
        &[
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Forwarded-Proto", "https"),
        ],
    );
    assert_eq!(
        echo_header(&v, "x-forwarded-for"),
        vec!["10.0.0.1, 127.0.0.1"],
        "{v}"
    );
    assert_eq!(echo_header(&v, "x-forwarded-proto"), vec!["http"], "{v}");
}

/// `Connection: x-forwarded-for` must not let a client remove the proxy's
/// own XFF entry or have its spoofed value taken as the last hop.
fn connection_nominated_xff_cannot_spoof(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let v = echo(
        &mut c,
        &[
            ("Connection", "x-forwarded-for"),
            ("X-Forwarded-For", "6.6.6.6"),
        ],
    );
    let xff = echo_header(&v, "x-forwarded-for");
    assert_eq!(xff.len(), 1, "x-forwarded-for fields upstream: {xff:?}");
    let last = xff[0].rsplit(',').next().unwrap().trim();
    assert_eq!(
        last, "127.0.0.1",
        "last XFF hop is not the real client: {xff:?}"
    );
    let v = echo(
        &mut c,
        &[("Connection", "close, X-Forwarded-For, x-request-id")],
    );
    let xff = echo_header(&v, "x-forwarded-for");
    assert_eq!(xff, vec!["127.0.0.1"], "{v}");
    assert_eq!(
        echo_header(&v, "x-request-id").len(),
        1,
        "x-request-id removed by nomination: {v}"
    );
}

/// x-request-id: generated (unique) when absent, preserved when present.
fn request_id(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let a = echo_header(&echo(&mut c, &[]), "x-request-id");
    let b = echo_header(&echo(&mut c, &[]), "x-request-id");
    assert_eq!((a.len(), b.len()), (1, 1), "generated ids: {a:?} {b:?}");
    assert!(
        a[0].len() >= 8,
        "generated x-request-id {:?} too short to be unique",
        a[0]
    );
    assert_ne!(a, b, "x-request-id not unique");
    let kept = echo_header(
        &echo(&mut c, &[("X-Request-Id", "my-id-123")]),
        "x-request-id",
    );
    assert_eq!(kept, vec!["my-id-123"]);
}

/// `Expect: 100-continue`: the proxy answers `100 Continue` itself before
/// the body is sent, and does not forward Expect.
fn expect_100_continue(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.set_read_timeout(Duration::from_secs(3));
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let interim = c
        .read_response()
        .unwrap_or_else(|e| panic!("no 100 Continue before the body was sent: {e}"));
    assert_eq!(
        interim.status_line,
        "HTTP/1.1 100 Continue",
        "{}",
        show(&interim.raw_head)
    );
    c.send(b"hello").unwrap();
    let r = c.read_final_response().unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["body_len"], 5);
    assert!(
        echo_header(&v, "expect").is_empty(),
        "Expect forwarded upstream: {v}"
    );
    // The connection is still in sync.
    assert_eq!(c.get("svc", "/").status, 200);
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/// `/stats/prometheus` shows the driver that was asked for, the shard
/// count, and counters matching the traffic sent.
fn metrics_match_traffic(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let m = proxy.metrics();
    assert_eq!(
        m.get("ringmesh_io_driver", &[("driver", driver.metric_label())]),
        Some(1.0),
        "asked for --io-driver {}:\n{}",
        driver.arg(),
        m.text
            .lines()
            .filter(|l| l.contains("io_driver"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let other = match driver {
        Driver::Uring => "epoll",
        Driver::Epoll => "io_uring",
    };
    assert!(
        m.get_or_zero("ringmesh_io_driver", &[("driver", other)]) == 0.0,
        "both drivers reported in use"
    );
    assert_eq!(m.get("ringmesh_shards", &[]), Some(1.0));
    assert!(
        m.get("ringmesh_config_version", &[]).is_some(),
        "no ringmesh_config_version"
    );
    assert_eq!(
        m.get("ringmesh_config_reloads_total", &[("result", "success")]),
        Some(0.0)
    );
    assert_eq!(
        m.get("ringmesh_config_reloads_total", &[("result", "failure")]),
        Some(0.0)
    );

    let mut c1 = Client::connect(proxy.addr("http"));
    for _ in 0..5 {
        assert_eq!(c1.get("svc", "/").status, 200);
    }
    let mut c2 = Client::connect(proxy.addr("http"));
    assert_eq!(c2.get("svc", "/").status, 200);
    assert_eq!(c2.get("svc", "/status/201").status, 201);
    assert_eq!(c2.get("svc", "/status/404").status, 404);
    assert_eq!(c2.get("svc", "/status/503").status, 503);
    drop(c1);
    drop(c2);
    let http = ("listener", "http");
    proxy.wait_metric(
        "ringmesh_http_requests_total",
        &[http, ("code_class", "2xx")],
        7.0,
    );
    proxy.wait_metric(
        "ringmesh_http_requests_total",
        &[http, ("code_class", "4xx")],
        1.0,
    );
    proxy.wait_metric(
        "ringmesh_http_requests_total",
        &[http, ("code_class", "5xx")],
        1.0,
    );
    proxy.wait_metric("ringmesh_downstream_cx_total", &[http], 2.0);
    proxy.wait_metric("ringmesh_downstream_cx_active", &[http], 0.0);
    let m = proxy.metrics();
    let up = m.get_or_zero("ringmesh_upstream_cx_total", &[("cluster", "web")]);
    assert!(
        (1.0..=2.0).contains(&up),
        "ringmesh_upstream_cx_total = {up}"
    );
    // A 5xx from the upstream is not a local reply.
    assert_eq!(
        m.get_or_zero("ringmesh_http_local_replies_total", &[("code", "503")]),
        0.0
    );
}

/// `--concurrency 2` runs two shards, all on the requested driver.
fn two_shards(driver: Driver) {
    let backend = Backend::start("a");
    let mut opts = ProxyOpts::new(driver);
    opts.concurrency = 2;
    let proxy = Proxy::start_with(opts, simple_http_config(&[backend.addr()]));
    let m = proxy.metrics();
    assert_eq!(m.get("ringmesh_shards", &[]), Some(2.0));
    // One sample per shard or one for the process: either way in use, and
    // the other driver not.
    assert!(
        m.get_or_zero("ringmesh_io_driver", &[("driver", driver.metric_label())]) >= 1.0,
        "{}",
        m.text
    );
    let other = if driver == Driver::Uring {
        "epoll"
    } else {
        "io_uring"
    };
    assert_eq!(
        m.get_or_zero("ringmesh_io_driver", &[("driver", other)]),
        0.0,
        "{}",
        m.text
    );
    for _ in 0..20 {
        let mut c = Client::connect(proxy.addr("http"));
        assert_eq!(c.get("svc", "/").status, 200);
    }
    proxy.wait_metric(
        "ringmesh_http_requests_total",
        &[("listener", "http"), ("code_class", "2xx")],
        20.0,
    );
}

/// The admin endpoints other than metrics.
fn admin_endpoints(driver: Driver) {
    let (backend, proxy) = setup(driver);
    let r = proxy.admin_get("/ready");
    assert_eq!(r.status, 200);
    let dump = proxy.admin_get("/config_dump");
    assert_eq!(dump.status, 200);
    let v = dump.json();
    assert!(
        v.get("version").is_some(),
        "no version in /config_dump: {v}"
    );
    assert_eq!(v["config"]["clusters"][0]["name"], "web", "{v}");
    let clusters = proxy.admin_get("/clusters");
    assert_eq!(clusters.status, 200);
    let text = clusters.text();
    assert!(
        text.contains("web") && text.contains(&backend.addr().to_string()),
        "/clusters: {text}"
    );
    assert_eq!(proxy.admin_get("/no-such-admin-page").status, 404);
}

// ---------------------------------------------------------------------------
// Load balancing, concurrency, limits
// ---------------------------------------------------------------------------

/// `round_robin` over two endpoints alternates between them.
fn round_robin_across_endpoints(driver: Driver) {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let proxy = Proxy::start(driver, simple_http_config(&[a.addr(), b.addr()]));
    let mut seen = Vec::new();
    let mut c = Client::connect(proxy.addr("http"));
    for _ in 0..20 {
        let r = c.get("svc", "/");
        assert_eq!(r.status, 200);
        seen.push(r.header("x-backend").unwrap_or("?").to_string());
    }
    let na = seen.iter().filter(|n| *n == "a").count();
    assert!(
        (8..=12).contains(&na),
        "round robin over 2 endpoints sent {na} of 20 to a: {seen:?}"
    );
    assert!(
        seen.windows(2).filter(|w| w[0] == w[1]).count() <= 2,
        "not alternating: {seen:?}"
    );
}

/// Eight clients at once on two shards, each request carrying a unique
/// header: every response belongs to its own request (no cross-talk
/// between pooled connections).
fn concurrent_clients_get_their_own_responses(driver: Driver) {
    let (_backend, proxy) = {
        let backend = Backend::start("a");
        let mut opts = ProxyOpts::new(driver);
        opts.concurrency = 2;
        let proxy = Proxy::start_with(opts, simple_http_config(&[backend.addr()]));
        (backend, proxy)
    };
    let addr = proxy.addr("http");
    let workers: Vec<_> = (0..8)
        .map(|w| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..150 {
                    let tag = format!("{w}-{i}");
                    let r = if i % 3 == 0 {
                        c.request("POST", "svc", "/echo", &[("x-tag", &tag)], tag.as_bytes())
                    } else {
                        c.request("GET", "svc", "/echo", &[("x-tag", &tag)], b"")
                    }
                    .unwrap_or_else(|e| panic!("worker {w} request {i}: {e}"));
                    assert_eq!(r.status, 200, "worker {w} request {i}");
                    let v = r.json();
                    assert_eq!(
                        echo_header(&v, "x-tag"),
                        vec![tag.clone()],
                        "worker {w} got someone else's response"
                    );
                    if i % 50 == 49 {
                        c = Client::connect(addr);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client worker failed");
    }
    proxy.wait_metric(
        "ringmesh_http_requests_total",
        &[("listener", "http"), ("code_class", "2xx")],
        1200.0,
    );
}

/// `max_connections_per_shard`: a connection over the limit is not served
/// while the limit is reached, is counted, and service resumes when a
/// connection closes.
fn connection_limit(driver: Driver) {
    let backend = Backend::start("a");
    let mut cfg = simple_http_config(&[backend.addr()]);
    cfg["limits"] = serde_json::json!({ "max_connections_per_shard": 2 });
    let proxy = Proxy::start(driver, cfg);
    let mut c1 = Client::connect(proxy.addr("http"));
    let mut c2 = Client::connect(proxy.addr("http"));
    assert_eq!(c1.get("svc", "/").status, 200);
    assert_eq!(c2.get("svc", "/").status, 200);
    let mut c3 = Client::connect(proxy.addr("http"));
    c3.set_read_timeout(Duration::from_secs(1));
    let r = c3.request("GET", "svc", "/", &[], b"");
    assert!(
        !matches!(&r, Ok(r) if r.status == 200),
        "a third connection was served with a limit of 2"
    );
    proxy.wait_metric(
        "ringmesh_downstream_cx_overflow_total",
        &[("listener", "http")],
        1.0,
    );
    drop(c1);
    let ok = ringmesh_e2e::wait_for(
        Duration::from_secs(3),
        "service after a connection closed",
        || {
            let mut c = Client::try_connect(proxy.addr("http"), Duration::from_secs(1)).ok()?;
            c.set_read_timeout(Duration::from_secs(1));
            c.request("GET", "svc", "/", &[], b"")
                .ok()
                .filter(|r| r.status == 200)
        },
    );
    assert_eq!(ok.status, 200);
    assert_eq!(c2.get("svc", "/").status, 200);
}

// ---------------------------------------------------------------------------
// Pool hygiene: connections in an unknown state are never reused
// ---------------------------------------------------------------------------

/// The backend closes a pooled connection while it is idle: the next
/// request must not fail (the proxy notices, or retries the request that
/// nothing was received for on a fresh connection).
fn upstream_idle_close_is_survived(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    for round in 0..5 {
        assert_eq!(c.get("svc", "/close-after/50").status, 200, "round {round}");
        std::thread::sleep(Duration::from_millis(200));
        let r = c.get("svc", "/echo");
        assert_eq!(
            r.status, 200,
            "round {round}: request on a pool whose connection the backend closed: {}",
            r.status_line
        );
    }
}

/// A client that gives up while its response is pending: that upstream
/// connection still owes a response and must not serve the next client.
fn client_abort_before_response_does_not_poison_pool(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut a = Client::connect(proxy.addr("http"));
    a.send(b"GET /delay/300 HTTP/1.1\r\nHost: svc\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(a);
    let mut b = Client::connect(proxy.addr("http"));
    for i in 0..3 {
        let r = b.get("svc", "/echo");
        assert_eq!(r.status, 200);
        assert!(
            r.text().starts_with('{'),
            "request {i} got another client's response: {:?}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// A client that disconnects in the middle of a request body: the upstream
/// connection is mid-message and must be closed, not pooled.
fn client_abort_mid_body_does_not_poison_pool(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut a = Client::connect(proxy.addr("http"));
    a.send(b"POST /sink HTTP/1.1\r\nHost: svc\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    a.send(&[b'x'; 5000]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(a);
    std::thread::sleep(Duration::from_millis(100));
    let mut b = Client::connect(proxy.addr("http"));
    b.set_read_timeout(Duration::from_secs(3));
    for i in 0..3 {
        let r = b.request("GET", "svc", "/echo", &[], b"").unwrap_or_else(|e| {
            panic!("request {i} after another client aborted its upload: {e} (its bytes went into a half-sent body?)")
        });
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["path"], "/echo");
    }
}

/// A body that arrives slowly, in pieces, is forwarded as it comes.
fn slow_request_body(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.send(b"POST /echo HTTP/1.1\r\nHost: svc\r\nContent-Length: 10\r\n\r\nhello")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.send(b"world").unwrap();
    let v = c.read_response().unwrap().json();
    assert_eq!(v["body_len"], 10);
    assert_eq!(v["body_crc32"], crc32fast::hash(b"helloworld"));
}

/// Pipelined requests with bodies (CL and chunked) in one write.
fn pipelined_requests_with_bodies(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc\
          POST /echo HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
          GET /echo HTTP/1.1\r\nHost: svc\r\n\r\n",
    )
    .unwrap();
    for (i, len) in [3, 2, 0].into_iter().enumerate() {
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("pipelined response {i}: {e}"));
        assert_eq!(r.json()["body_len"], len, "pipelined response {i}");
    }
}

/// `Expect: 100-continue` with a chunked body.
fn expect_100_continue_chunked(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.set_read_timeout(Duration::from_secs(3));
    c.send(b"POST /echo HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n").unwrap();
    let interim = c
        .read_response()
        .unwrap_or_else(|e| panic!("no 100 Continue: {e}"));
    assert_eq!(interim.status, 100);
    c.send(b"4\r\nbody\r\n0\r\n\r\n").unwrap();
    let v = c.read_final_response().unwrap().json();
    assert_eq!(v["body_len"], 4);
    assert!(echo_header(&v, "expect").is_empty());
}

/// Three hundred connections open at once, each served.
fn many_concurrent_connections(driver: Driver) {
    let (_backend, proxy) = setup(driver);
    let mut clients: Vec<Client> = (0..300)
        .map(|_| Client::connect(proxy.addr("http")))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("GET /c/{i} HTTP/1.1\r\nHost: svc\r\n\r\n").as_bytes())
            .unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(r.status, 200, "connection {i}");
    }
    proxy.wait_metric(
        "ringmesh_downstream_cx_active",
        &[("listener", "http")],
        300.0,
    );
    drop(clients);
    proxy.wait_metric(
        "ringmesh_downstream_cx_active",
        &[("listener", "http")],
        0.0,
    );
}

on_both_drivers!(
    upstream_idle_close_is_survived,
    client_abort_before_response_does_not_poison_pool,
    client_abort_mid_body_does_not_poison_pool,
    slow_request_body,
    pipelined_requests_with_bodies,
    expect_100_continue_chunked,
    many_concurrent_connections,
);

on_both_drivers!(
    round_robin_across_endpoints,
    concurrent_clients_get_their_own_responses,
    connection_limit,
);

/// `--io-driver auto` starts on one driver and says which.
#[test]
fn auto_driver_reports_what_it_runs_on() {
    let backend = Backend::start("a");
    let proxy = {
        let mut cmd_opts = ProxyOpts::new(Driver::Epoll);
        cmd_opts.driver_arg = Some("auto".into());
        Proxy::start_with(cmd_opts, simple_http_config(&[backend.addr()]))
    };
    let m = proxy.metrics();
    let uring = m.get_or_zero("ringmesh_io_driver", &[("driver", "io_uring")]);
    let epoll = m.get_or_zero("ringmesh_io_driver", &[("driver", "epoll")]);
    assert!(
        (uring >= 1.0) != (epoll >= 1.0),
        "auto: io_uring {uring}, epoll {epoll}"
    );
    let disabled =
        std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").unwrap_or_default();
    if disabled.trim() == "0" {
        // This machine allows io_uring (the uring tests prove it works), so
        // auto should pick it.
        assert!(
            uring >= 1.0,
            "auto chose epoll although io_uring is available"
        );
    }
    let mut c = Client::connect(proxy.addr("http"));
    assert_eq!(c.get("svc", "/").status, 200);
}

on_both_drivers!(
    keep_alive_reuses_upstream_connections,
    pool_shared_across_client_connections,
    pipelined_requests_answered_in_order,
    http10_client_gets_close,
    http10_client_never_gets_chunked,
    client_connection_close,
    upstream_close_does_not_break_client,
    head_request,
    bodiless_statuses,
    chunked_request_body,
    chunked_request_trailers,
    chunked_upload_8mib,
    chunked_response_body,
    chunked_response_trailers,
    content_length_bodies,
    close_delimited_upstream_response,
    unusual_but_valid_framing,
    obs_text_header_value_passes,
    hop_by_hop_request_headers_stripped,
    hop_by_hop_response_headers_stripped,
    forwarded_headers,
    connection_nominated_xff_cannot_spoof,
    request_id,
    expect_100_continue,
    metrics_match_traffic,
    two_shards,
    admin_endpoints,
);
