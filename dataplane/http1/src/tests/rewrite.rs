use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{req_ok, resp_ok};
use crate::{
    reason_phrase, write_downstream_response, write_local_response, write_upstream_request,
    ForwardInfo, Method,
};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

fn info() -> ForwardInfo<'static> {
    ForwardInfo {
        client_ip: CLIENT,
        proto: "http",
        request_id: None,
        strip_expect: false,
        extra_headers: &[],
    }
}

fn upstream(buf: &[u8], info: &ForwardInfo<'_>) -> String {
    let head = req_ok(buf);
    let mut out = b"previous".to_vec();
    write_upstream_request(buf, &head, info, &mut out);
    assert!(out.starts_with(b"previous"), "appends");
    String::from_utf8(out.split_off(8)).expect("ascii")
}

fn downstream(buf: &[u8], method: Method, close: bool) -> String {
    let head = resp_ok(buf, method);
    let mut out = Vec::new();
    write_downstream_response(buf, &head, close, &mut out);
    String::from_utf8(out).expect("ascii")
}

fn local(status: u16, body: &[u8], close: bool, extra: &[(&str, &[u8])]) -> String {
    let mut out = Vec::new();
    write_local_response(status, body, close, extra, &mut out);
    String::from_utf8(out).expect("ascii")
}

#[test]
fn plain_get() {
    let buf =
        b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n";
    assert_eq!(
        upstream(buf, &info()),
        "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\
         x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
}

#[test]
fn xff_is_merged() {
    let buf = b"GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 1.1.1.1\r\n\r\n";
    assert_eq!(
        upstream(buf, &info()),
        "GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 1.1.1.1, 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
    // Several fields and list values merge in order into one field.
    let buf = b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nHost: h\r\nX-Forwarded-For: 3.3.3.3\r\n\
                X-Forwarded-For:\r\n\r\n";
    assert_eq!(
        upstream(buf, &info()),
        "GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1\r\n\
         x-forwarded-proto: http\r\n\r\n"
    );
}

#[test]
fn xff_nominated_by_connection_is_dropped() {
    let buf = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    assert_eq!(
        upstream(buf, &info()),
        "GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
}

#[test]
fn ipv6_client() {
    let buf = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let info = ForwardInfo {
        client_ip: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
        ..info()
    };
    assert_eq!(
        upstream(buf, &info),
        "GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: fd00::1\r\nx-forwarded-proto: http\r\n\r\n"
    );
}

#[test]
fn xfp_replaced_request_id_and_extras() {
    let buf =
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nX-Request-Id: client-id\r\n\r\n";
    // The existing request id is forwarded verbatim when the proxy has none.
    assert_eq!(
        upstream(
            buf,
            &ForwardInfo {
                proto: "https",
                ..info()
            }
        ),
        "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: client-id\r\nx-forwarded-for: 10.0.0.1\r\n\
         x-forwarded-proto: https\r\n\r\n"
    );
    // A request id from the proxy replaces it; extra fields come last.
    let extra: &[(&str, &[u8])] = &[("x-envoy-attempt-count", b"1"), ("x-b3-sampled", b"0")];
    let info = ForwardInfo {
        request_id: Some(b"generated"),
        extra_headers: extra,
        ..info()
    };
    assert_eq!(
        upstream(buf, &info),
        "GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\
         x-request-id: generated\r\nx-envoy-attempt-count: 1\r\nx-b3-sampled: 0\r\n\r\n"
    );
}

#[test]
fn chunked_and_hop_by_hop() {
    let buf = b"POST /up HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: 5\r\nX-Hop: 1\r\n\
                Transfer-Encoding: chunked\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\
                Upgrade: websocket\r\nX-End: 2\r\n\r\n";
    assert_eq!(
        upstream(buf, &info()),
        "POST /up HTTP/1.1\r\nHost: h\r\nX-End: 2\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn connection_cannot_remove_host_or_content_length() {
    let buf = b"POST / HTTP/1.1\r\nConnection: Host, Content-Length\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(
        upstream(buf, &info()),
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
}

#[test]
fn strip_expect() {
    let buf = b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    let kept = upstream(buf, &info());
    assert!(kept.contains("Expect: 100-continue\r\n"));
    assert_eq!(
        upstream(buf, &ForwardInfo { strip_expect: true, ..info() }),
        "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
}

#[test]
fn absolute_form_becomes_origin_form() {
    for (target, origin) in [
        ("http://h/a/b?c", "/a/b?c"),
        ("http://h", "/"),
        ("http://h?x=1", "/?x=1"),
        ("HTTP://h:80/p", "/p"),
    ] {
        let host = if target.contains(":80") { "h:80" } else { "h" };
        let buf = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
        let out = upstream(&buf, &info());
        assert!(
            out.starts_with(&format!("GET {origin} HTTP/1.1\r\nHost: {host}\r\n")),
            "{target}: {out}"
        );
    }
}

#[test]
fn http10_upgraded_to_11_with_host() {
    let buf = b"GET http://a.example/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    assert_eq!(
        upstream(buf, &info()),
        "GET /x HTTP/1.1\r\nhost: a.example\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
    // No authority at all: an empty Host, as RFC 9112 §3.2 prescribes.
    let buf = b"GET /x HTTP/1.0\r\n\r\n";
    assert_eq!(
        upstream(buf, &info()),
        "GET /x HTTP/1.1\r\nhost: \r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
}

#[test]
fn connect_and_options_targets() {
    let buf = b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n";
    assert!(upstream(buf, &info()).starts_with("CONNECT h:443 HTTP/1.1\r\n"));
    let buf = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(upstream(buf, &info()).starts_with("OPTIONS * HTTP/1.1\r\n"));
}

#[test]
fn leading_empty_lines_are_not_forwarded() {
    let buf = b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(upstream(buf, &info()).starts_with("GET / HTTP/1.1\r\nHost: h\r\n"));
}

#[test]
fn downstream_response() {
    let buf = b"HTTP/1.1 201 Created Fine\r\nContent-Length: 2\r\nConnection: keep-alive, X-Up\r\nX-Up: 1\r\n\
                Keep-Alive: timeout=5\r\nSet-Cookie: a=b\r\n\r\n";
    assert_eq!(
        downstream(buf, Method::Post, false),
        "HTTP/1.1 201 Created Fine\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\n\r\n"
    );
    assert_eq!(
        downstream(buf, Method::Post, true),
        "HTTP/1.1 201 Created Fine\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\nconnection: close\r\n\r\n"
    );
}

#[test]
fn downstream_response_framing() {
    let buf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: 1\r\n\r\n";
    assert_eq!(
        downstream(buf, Method::Get, false),
        "HTTP/1.1 200 OK\r\nX: 1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    // HTTP/1.0 upstream, close-delimited: the client learns the end from the close.
    let buf = b"HTTP/1.0 200 OK\r\nX: 1\r\n\r\n";
    assert_eq!(
        downstream(buf, Method::Get, false),
        "HTTP/1.1 200 OK\r\nX: 1\r\nconnection: close\r\n\r\n"
    );
    // No reason phrase.
    let buf = b"HTTP/1.1 204\r\n\r\n";
    assert_eq!(downstream(buf, Method::Get, false), "HTTP/1.1 204 \r\n\r\n");
    // HEAD: Content-Length forwarded, no body.
    let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    assert_eq!(
        downstream(buf, Method::Head, false),
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    );
}

#[test]
fn local_responses() {
    assert_eq!(
        local(503, b"no healthy upstream", false, &[]),
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 19\r\ncontent-type: text/plain\r\n\r\nno healthy upstream"
    );
    assert_eq!(
        local(404, b"", false, &[]),
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
    );
    assert_eq!(
        local(
            400,
            b"bad",
            true,
            &[("x-ringmesh-reason", b"bare LF in head")]
        ),
        "HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\ncontent-type: text/plain\r\n\
         x-ringmesh-reason: bare LF in head\r\nconnection: close\r\n\r\nbad"
    );
    assert_eq!(
        local(204, b"ignored", false, &[]),
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
    assert_eq!(local(100, b"", false, &[]), "HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(
        local(1000, b"", false, &[]),
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
    );
    assert_eq!(
        local(42, b"", true, &[]),
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let big = vec![b'x'; 123456];
    assert!(
        local(200, &big, false, &[]).starts_with("HTTP/1.1 200 OK\r\ncontent-length: 123456\r\n")
    );
}

#[test]
fn reason_phrases() {
    for (code, reason) in [
        (400, "Bad Request"),
        (404, "Not Found"),
        (408, "Request Timeout"),
        (413, "Content Too Large"),
        (414, "URI Too Long"),
        (417, "Expectation Failed"),
        (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"),
        (501, "Not Implemented"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (504, "Gateway Timeout"),
        (505, "HTTP Version Not Supported"),
        (299, "Success"),
        (450, "Client Error"),
        (599, "Server Error"),
        (999, "Unknown"),
    ] {
        assert_eq!(reason_phrase(code), reason);
        assert!(local(code, b"", false, &[]).starts_with(&format!("HTTP/1.1 {code} {reason}\r\n")));
    }
}

#[test]
fn written_requests_reparse_identically() {
    let bufs: [&[u8]; 4] = [
        b"POST http://h/p?q HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: x\r\nX: 1\r\n\r\n",
        b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"PUT /y HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
        b"CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\n\r\n",
    ];
    for buf in bufs {
        let a = req_ok(buf);
        let mut out = Vec::new();
        write_upstream_request(buf, &a, &info(), &mut out);
        let b = req_ok(&out);
        assert_eq!(a.method, b.method);
        assert_eq!(a.path.get(buf), b.path.get(&out));
        assert_eq!(a.query.get(buf), b.query.get(&out));
        assert_eq!(a.framing, b.framing);
        assert_eq!(a.authority.get(buf), b.authority.get(&out));
    }
}

/// fuzz/regressions/http1_request/http10-expect-forwarded: an HTTP/1.0
/// request's `Expect: 100-continue` (ignored by the parser) was forwarded in
/// the HTTP/1.1 upstream request, inviting a 100 the 1.0 client cannot read.
#[test]
fn regression_http10_expect_not_forwarded() {
    let buf = include_bytes!("../../../../fuzz/regressions/http1_request/http10-expect-forwarded");
    let head = req_ok(&buf[..buf.len() - 2]);
    assert!(!head.expect_continue);
    let mut out = Vec::new();
    write_upstream_request(buf, &head, &info(), &mut out);
    assert_eq!(
        String::from_utf8(out).expect("ascii"),
        "PUT /ws HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
    );
}
