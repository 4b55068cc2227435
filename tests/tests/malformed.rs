//! Malformed requests: each gets the exact status line with
//! `connection: close`, the connection is closed, the recording backend
//! never sees a byte of it, and the proxy keeps serving other clients.
//!
//! Every request carries the marker `MARK` (in its target) so the backend's
//! record can be searched for it.

use std::{
    io::Write,
    thread,
    time::{Duration, Instant},
};

use ringmesh_e2e::{
    on_both_drivers, show, simple_http_config, Backend, Client, Driver, Proxy, Response,
};
use serde_json::json;

const S400: &str = "HTTP/1.1 400 Bad Request";
const S408: &str = "HTTP/1.1 408 Request Timeout";
const S413: &str = "HTTP/1.1 413 Content Too Large";
const S414: &str = "HTTP/1.1 414 URI Too Long";
const S431: &str = "HTTP/1.1 431 Request Header Fields Too Large";
const S501: &str = "HTTP/1.1 501 Not Implemented";
const S505: &str = "HTTP/1.1 505 HTTP Version Not Supported";

fn start(driver: Driver) -> (Backend, Proxy) {
    let backend = Backend::start_recording("m");
    let mut cfg = simple_http_config(&[backend.addr()]);
    cfg["limits"] = json!({ "request_headers_timeout": "1s", "idle_timeout": "2s" });
    let proxy = Proxy::start(driver, cfg);
    (backend, proxy)
}

/// Write `bytes` from another thread while this one reads the response, so
/// an early answer (the proxy rejects before reading everything) is read
/// as soon as it arrives. Write errors are expected and ignored: the proxy
/// may close before taking every byte.
fn send_and_read(client: &mut Client, bytes: &[u8]) -> Response {
    let mut w = client
        .stream()
        .try_clone()
        .expect("clone the client socket");
    let bytes = bytes.to_vec();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&bytes);
    });
    let r = client.read_response();
    let _ = writer.join();
    r.unwrap_or_else(|e| panic!("no response: {e}"))
}

/// After the bad request: nothing reached the backend, and a normal request
/// on a new connection still works and is the first thing it sees.
fn assert_backend_untouched_and_proxy_serving(
    backend: &Backend,
    proxy: &mut Proxy,
    request: &[u8],
) {
    thread::sleep(Duration::from_millis(50));
    let rec = backend.recorded();
    assert!(
        rec.is_empty(),
        "the backend received bytes of the malformed request {}:\n{}",
        show(request),
        show(&rec)
    );
    proxy.assert_alive();
    let mut c = Client::connect(proxy.addr("http"));
    let r = c.get("svc", "/after");
    assert_eq!(
        r.status, 200,
        "a normal request after the malformed one: {}",
        r.status_line
    );
    let rec = backend.recorded();
    assert!(
        rec.starts_with(b"GET /after HTTP/1.1\r\n"),
        "backend record: {}",
        show(&rec)
    );
    assert!(
        memchr::memmem::find(&rec, b"MARK").is_none(),
        "malformed bytes reached the backend: {}",
        show(&rec)
    );
}

fn check(driver: Driver, request: &[u8], expected: &str) {
    let (backend, mut proxy) = start(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let r = send_and_read(&mut c, request);
    assert_eq!(
        r.status_line,
        expected,
        "request: {}\nresponse head: {}",
        show(request),
        show(&r.raw_head)
    );
    assert!(
        r.has_connection_close(),
        "no `connection: close` in {}",
        show(&r.raw_head)
    );
    let (rest, closed) = c.read_until_close(Duration::from_secs(5));
    assert!(
        closed,
        "the proxy kept the connection open after {expected}"
    );
    assert!(
        !rest.windows(5).any(|w| w == b"HTTP/"),
        "more responses after {expected}: {}",
        show(&rest)
    );
    assert_backend_untouched_and_proxy_serving(&backend, &mut proxy, request);
}

fn post_chunked(body: &str) -> Vec<u8> {
    format!("POST /MARK HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
        .into_bytes()
}

fn with_header(line: &[u8]) -> Vec<u8> {
    let mut v = b"GET /MARK HTTP/1.1\r\nHost: svc\r\n".to_vec();
    v.extend_from_slice(line);
    v.extend_from_slice(b"\r\n\r\n");
    v
}

fn cl(value: &str) -> Vec<u8> {
    format!("POST /MARK HTTP/1.1\r\nHost: svc\r\nContent-Length: {value}\r\n\r\nhello").into_bytes()
}

fn big_header_section() -> Vec<u8> {
    // 61 KiB of one field value: over the 60 KiB default.
    let mut v = b"GET /MARK HTTP/1.1\r\nHost: svc\r\nX-Big: ".to_vec();
    v.extend(std::iter::repeat_n(b'a', 61 * 1024));
    v.extend_from_slice(b"\r\n\r\n");
    v
}

fn many_headers() -> Vec<u8> {
    let mut v = b"GET /MARK HTTP/1.1\r\nHost: svc\r\n".to_vec();
    for i in 0..101 {
        v.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    v.extend_from_slice(b"\r\n");
    v
}

fn long_uri() -> Vec<u8> {
    // Over the 16 KiB default, well under the 60 KiB head limit.
    let mut v = b"GET /MARK/".to_vec();
    v.extend(std::iter::repeat_n(b'u', 17 * 1024));
    v.extend_from_slice(b" HTTP/1.1\r\nHost: svc\r\n\r\n");
    v
}

macro_rules! malformed {
    ($($name:ident => $status:expr, $request:expr;)+) => {
        $(
            fn $name(driver: Driver) {
                check(driver, AsRef::<[u8]>::as_ref(&$request), $status)
            }
        )+
        on_both_drivers!($($name),+);
    };
}

malformed! {
    // Framing ambiguity (request smuggling).
    cl_and_te => S400, b"POST /MARK HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    te_and_cl => S400, b"POST /MARK HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n";
    duplicate_cl_different => S400, b"POST /MARK HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
    duplicate_cl_equal => S400, b"POST /MARK HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
    cl_list => S400, cl("5, 5");
    cl_plus => S400, cl("+5");
    cl_minus => S400, cl("-1");
    cl_non_digit => S400, cl("5a");
    cl_hex => S400, cl("0x5");
    cl_overflow => S400, cl("99999999999999999999999");
    cl_empty => S400, cl("");
    te_gzip_chunked => S501, b"POST /MARK HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    te_chunked_identity => S400, b"POST /MARK HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n";
    te_chunked_chunked => S400, b"POST /MARK HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n";
    te_space_before_colon => S400, b"POST /MARK HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n";
    te_tab_and_vertical_tab => S400, b"POST /MARK HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding:\tchunked\x0b\r\n\r\n0\r\n\r\n";
    te_in_http10 => S400, b"POST /MARK HTTP/1.0\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    // Line endings and folding.
    bare_lf_everywhere => S400, b"GET /MARK HTTP/1.1\nHost: svc\n\n";
    bare_lf_in_one_header => S400, b"GET /MARK HTTP/1.1\r\nHost: svc\nX-A: b\r\n\r\n";
    bare_cr_in_value => S400, with_header(b"X-A: a\rb");
    obs_fold => S400, b"GET /MARK HTTP/1.1\r\nHost: svc\r\nX-Long: a\r\n  b\r\n\r\n";
    // Bytes not allowed in field names and values.
    name_with_ctl => S400, with_header(b"X-Bad\x01Name: 1");
    name_with_space => S400, with_header(b"X Bad: 1");
    name_with_separator => S400, with_header(b"X(Bad): 1");
    name_empty => S400, with_header(b": empty");
    value_with_nul => S400, with_header(b"X-A: a\x00b");
    value_with_ctl => S400, with_header(b"X-A: a\x07b");
    value_with_del => S400, with_header(b"X-A: a\x7fb");
    // Host.
    duplicate_host => S400, b"GET /MARK HTTP/1.1\r\nHost: svc\r\nHost: other\r\n\r\n";
    missing_host => S400, b"GET /MARK HTTP/1.1\r\nX-A: b\r\n\r\n";
    // Request line.
    bad_method_char => S400, b"GE(T /MARK HTTP/1.1\r\nHost: svc\r\n\r\n";
    space_in_target => S400, b"GET /MARK x HTTP/1.1\r\nHost: svc\r\n\r\n";
    garbage_version => S400, b"GET /MARK HTTX/1.1\r\nHost: svc\r\n\r\n";
double_space_in_request_line => S400, b"GET  /MARK HTTP/1.1\r\nHost: svc\r\n\r\n";
    nul_in_target => S400, b"GET /MARK\x00x HTTP/1.1\r\nHost: svc\r\n\r\n";
    whitespace_before_first_header => S400, b"GET /MARK HTTP/1.1\r\n Host: svc\r\n\r\n";
        http2_version_string => S505, b"GET /MARK HTTP/2.0\r\nHost: svc\r\n\r\n";
    // Limits.
    header_section_over_60k => S431, big_header_section();
    over_100_headers => S431, many_headers();
    uri_too_long => S414, long_uri();
    // Chunked framing (arriving with the head, so it is validated before
    // anything goes upstream).
    chunk_size_overflow => S400, post_chunked("ffffffffffffffffff\r\nx\r\n0\r\n\r\n");
    chunk_size_not_hex => S400, post_chunked("zz\r\nx\r\n0\r\n\r\n");
    chunk_data_without_crlf => S400, post_chunked("5\r\nhelloXX0\r\n\r\n");
}

// ---------------------------------------------------------------------------
// Timing-dependent cases
// ---------------------------------------------------------------------------

/// Half a head, then silence: 408 after `request_headers_timeout` (1 s).
fn request_header_timeout(driver: Driver) {
    let (backend, mut proxy) = start(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let request = b"GET /MARK HTTP/1.1\r\nHost: svc\r\n";
    let t = Instant::now();
    c.send(request).unwrap();
    let r = c.read_response().unwrap_or_else(|e| panic!("no 408: {e}"));
    let waited = t.elapsed();
    assert_eq!(r.status_line, S408, "{}", show(&r.raw_head));
    assert!(r.has_connection_close(), "{}", show(&r.raw_head));
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "408 after {waited:?}, configured 1s"
    );
    let (_, closed) = c.read_until_close(Duration::from_secs(5));
    assert!(closed);
    assert_backend_untouched_and_proxy_serving(&backend, &mut proxy, request);
}

/// A trickle of header bytes does not extend the deadline (slowloris).
fn request_header_timeout_is_not_reset_by_trickle(driver: Driver) {
    let (backend, mut proxy) = start(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let t = Instant::now();
    c.send(b"GET /MARK HTTP/1.1\r\nHost: svc\r\n").unwrap();
    let mut w = c.stream().try_clone().unwrap();
    let trickler = thread::spawn(move || {
        for i in 0..30 {
            thread::sleep(Duration::from_millis(100));
            if w.write_all(format!("X-{i}: v\r\n").as_bytes()).is_err() {
                return;
            }
        }
    });
    let r = c.read_response().unwrap_or_else(|e| panic!("no 408: {e}"));
    let waited = t.elapsed();
    let _ = trickler.join();
    assert_eq!(r.status_line, S408);
    assert!(
        waited < Duration::from_millis(2500),
        "408 only after {waited:?}: the trickle extended the deadline"
    );
    assert_backend_untouched_and_proxy_serving(&backend, &mut proxy, b"GET /MARK (trickled)");
}

/// A connection that never sends a byte is closed without a response.
fn idle_connection_closed_silently(driver: Driver) {
    let (backend, mut proxy) = start(driver);
    let mut c = Client::connect(proxy.addr("http"));
    let t = Instant::now();
    let (bytes, closed) = c.read_until_close(Duration::from_secs(6));
    assert!(
        closed,
        "an idle connection stayed open for {:?} (idle_timeout 2s)",
        t.elapsed()
    );
    assert!(
        bytes.is_empty(),
        "an idle connection got bytes before being closed: {}",
        show(&bytes)
    );
    assert_backend_untouched_and_proxy_serving(&backend, &mut proxy, b"");
}

/// A keep-alive connection idle after a request is closed silently too.
fn idle_keep_alive_closed_silently(driver: Driver) {
    let (_backend, proxy) = start(driver);
    let mut c = Client::connect(proxy.addr("http"));
    assert_eq!(c.get("svc", "/first").status, 200);
    let t = Instant::now();
    let (bytes, closed) = c.read_until_close(Duration::from_secs(6));
    assert!(
        closed,
        "an idle keep-alive connection stayed open for {:?} (idle_timeout 2s)",
        t.elapsed()
    );
    assert!(
        bytes.is_empty(),
        "bytes before the idle close: {}",
        show(&bytes)
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "closed after {:?}, before idle_timeout",
        t.elapsed()
    );
}

/// A malformed request after a good one on the same keep-alive connection:
/// the good one was forwarded, the bad one is not.
fn malformed_after_good_request_on_same_connection(driver: Driver) {
    let (backend, proxy) = start(driver);
    let mut c = Client::connect(proxy.addr("http"));
    assert_eq!(c.get("svc", "/good").status, 200);
    let r = send_and_read(
        &mut c,
        b"GET /MARK HTTP/1.1\r\nHost: svc\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    );
    assert_eq!(r.status_line, S400);
    assert!(r.has_connection_close());
    thread::sleep(Duration::from_millis(50));
    let rec = backend.recorded();
    assert!(rec.starts_with(b"GET /good HTTP/1.1\r\n"), "{}", show(&rec));
    assert!(
        memchr::memmem::find(&rec, b"MARK").is_none(),
        "{}",
        show(&rec)
    );
}

/// A smuggling attempt pipelined behind a valid request in one write: the
/// first is served, the second rejected, the backend sees only the first.
fn smuggled_request_pipelined_behind_valid_one(driver: Driver) {
    let (backend, proxy) = start(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.send(
        b"GET /good HTTP/1.1\r\nHost: svc\r\n\r\n\
          POST /MARK HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /MARK2 HTTP/1.1\r\nHost: svc\r\n\r\n",
    )
    .unwrap();
    let first = c.read_response().unwrap();
    assert_eq!(first.status, 200);
    let second = c.read_response().unwrap();
    assert_eq!(second.status_line, S400);
    assert!(second.has_connection_close());
    thread::sleep(Duration::from_millis(50));
    let rec = backend.recorded();
    assert!(
        memchr::memmem::find(&rec, b"MARK").is_none(),
        "{}",
        show(&rec)
    );
}

/// Bad chunk framing that arrives after the head has gone upstream: the
/// client gets 400 + close and the bad bytes never reach the backend (the
/// upstream connection is abandoned, not completed).
fn bad_chunk_after_head_was_forwarded(driver: Driver) {
    let (backend, mut proxy) = start(driver);
    let mut c = Client::connect(proxy.addr("http"));
    c.send(b"POST /sink HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let bad = b"ffffffffffffffffffMARK\r\nxx\r\n0\r\n\r\n";
    let r = send_and_read(&mut c, bad);
    assert_eq!(r.status_line, S400, "{}", show(&r.raw_head));
    assert!(r.has_connection_close());
    let (_, closed) = c.read_until_close(Duration::from_secs(5));
    assert!(closed);
    thread::sleep(Duration::from_millis(100));
    let rec = backend.recorded();
    assert!(
        memchr::memmem::find(&rec, b"MARK").is_none(),
        "bad chunk reached the backend: {}",
        show(&rec)
    );
    assert!(
        memchr::memmem::find(&rec, b"ffffffff").is_none(),
        "bad chunk reached the backend: {}",
        show(&rec)
    );
    proxy.assert_alive();
    let mut c2 = Client::connect(proxy.addr("http"));
    assert_eq!(c2.get("svc", "/after").status, 200);
}

/// Local replies are counted: `ringmesh_http_local_replies_total{code}`.
fn local_replies_are_counted(driver: Driver) {
    let (_backend, proxy) = start(driver);
    for req in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..],
        b"GET / HTTP/1.1\nHost: a\n\n",
    ] {
        let mut c = Client::connect(proxy.addr("http"));
        assert_eq!(send_and_read(&mut c, req).status, 400);
    }
    let mut c = Client::connect(proxy.addr("http"));
    assert_eq!(send_and_read(&mut c, &long_uri()).status, 414);
    proxy.wait_metric("ringmesh_http_local_replies_total", &[("code", "400")], 2.0);
    proxy.wait_metric("ringmesh_http_local_replies_total", &[("code", "414")], 1.0);
}

/// `max_request_body_bytes`: a Content-Length over the limit, and a chunked
/// body that grows past it in the first packet, are answered 413 before
/// anything is forwarded; a body within the limit passes.
fn body_limit(driver: Driver) {
    let backend = Backend::start_recording("m");
    let mut cfg = simple_http_config(&[backend.addr()]);
    cfg["limits"] = json!({ "max_request_body_bytes": 16 });
    let mut proxy = Proxy::start(driver, cfg);
    let cases: [&[u8]; 2] = [
        b"POST /MARK HTTP/1.1\r\nHost: svc\r\nContent-Length: 17\r\n\r\n01234567890123456",
        b"POST /MARK HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nX\r\n0\r\n\r\n",
    ];
    for req in cases {
        let mut c = Client::connect(proxy.addr("http"));
        let r = send_and_read(&mut c, req);
        assert_eq!(r.status_line, S413, "for {}", show(req));
        assert!(r.has_connection_close(), "413 must close: {}", show(req));
        assert_backend_untouched_and_proxy_serving(&backend, &mut proxy, req);
        backend.clear_record();
    }
    // Exactly at the limit is fine.
    let mut c = Client::connect(proxy.addr("http"));
    let r = send_and_read(
        &mut c,
        b"POST /sink HTTP/1.1\r\nHost: svc\r\nContent-Length: 16\r\n\r\n0123456789abcdef",
    );
    assert_eq!(r.status, 200, "{}", r.status_line);
}

on_both_drivers!(
    body_limit,
    request_header_timeout,
    request_header_timeout_is_not_reset_by_trickle,
    idle_connection_closed_silently,
    idle_keep_alive_closed_silently,
    malformed_after_good_request_on_same_connection,
    smuggled_request_pipelined_behind_valid_one,
    bad_chunk_after_head_was_forwarded,
    local_replies_are_counted,
);
