//! Unit tests of the h2 module: preface detection, `grpc-timeout`, the
//! frame guard, and the tokio I/O adapter carrying real h2 connections
//! over loopback TCP on both monoio drivers.

use std::{future::Future, time::Duration};

use bytes::Bytes;
use monoio::{
    io::Splitable,
    net::{TcpListener, TcpStream},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    compat::{Compat, Tripped, MAX_QUEUED},
    grpc_status_for, grpc_timeout,
    guard::{Budgets, FrameGuard},
    is_connection_specific, is_preface, PREFACE,
};

fn on_both_drivers<F, Fut>(f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut uring = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime (is io_uring blocked here?)");
    uring.block_on(f());
    let mut epoll = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    epoll.block_on(f());
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn preface_detection() {
    assert_eq!(is_preface(b""), None);
    assert_eq!(is_preface(b"P"), None);
    assert_eq!(is_preface(b"PRI * HTTP/2.0\r\n"), None);
    assert_eq!(is_preface(PREFACE), Some(true));
    let mut more = PREFACE.to_vec();
    more.extend_from_slice(&frame(4, 0, 0, &[]));
    assert_eq!(is_preface(&more), Some(true));
    // HTTP/1 requests are told apart at their first differing byte.
    assert_eq!(is_preface(b"POST / HTTP/1.1\r\n"), Some(false));
    assert_eq!(is_preface(b"PUT"), Some(false));
    assert_eq!(is_preface(b"GET / HTTP/1.1\r\n"), Some(false));
    assert_eq!(is_preface(b"PRI * HTTP/1.1\r\n"), Some(false));
}

#[test]
fn grpc_timeouts() {
    assert_eq!(grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
    assert_eq!(grpc_timeout(b"2M"), Some(Duration::from_secs(120)));
    assert_eq!(grpc_timeout(b"3S"), Some(Duration::from_secs(3)));
    assert_eq!(grpc_timeout(b"300m"), Some(Duration::from_millis(300)));
    assert_eq!(
        grpc_timeout(b"99999999u"),
        Some(Duration::from_micros(99_999_999))
    );
    assert_eq!(grpc_timeout(b"5n"), Some(Duration::from_nanos(5)));
    for bad in [
        &b""[..],
        b"S",
        b"10",
        b"123456789S",
        b"1x",
        b"-1S",
        b"1 S",
        b"1.5S",
    ] {
        assert_eq!(
            grpc_timeout(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(grpc_status_for(504), 4);
    assert_eq!(grpc_status_for(503), 14);
    assert_eq!(grpc_status_for(403), 7);
    assert_eq!(grpc_status_for(404), 12);
    assert!(is_connection_specific("transfer-encoding"));
    assert!(!is_connection_specific("te"));
}

fn guard() -> FrameGuard {
    let mut g = FrameGuard::server(Budgets {
        control: 10,
        resets: 20,
        continuations: 4,
    });
    g.inspect(PREFACE).unwrap();
    g
}

#[test]
fn guard_passes_ordinary_traffic() {
    let mut g = guard();
    let mut bytes = frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]);
    bytes.extend(frame(4, 1, 0, &[])); // SETTINGS ACKs are free
    for id in 0..200u32 {
        bytes.extend(frame(1, 0x4, 2 * id + 1, &[0x82, 0x86, 0x84]));
        bytes.extend(frame(0, 0, 2 * id + 1, &[7; 1000]));
        bytes.extend(frame(0, 1, 2 * id + 1, &[])); // empty END_STREAM: fine
        bytes.extend(frame(8, 0, 0, &1000u32.to_be_bytes()));
    }
    for _ in 0..50 {
        bytes.extend(frame(6, 1, 0, &[0; 8])); // PING ACKs are free
    }
    // Byte by byte and all at once alike.
    for b in bytes.chunks(1) {
        g.inspect(b).unwrap();
    }
    let mut g = guard();
    g.inspect(&bytes).unwrap();
}

#[test]
fn guard_trips_on_each_flood() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "PING flood",
            (0..11).flat_map(|_| frame(6, 0, 0, &[0; 8])).collect(),
        ),
        (
            "SETTINGS flood",
            (0..11).flat_map(|_| frame(4, 0, 0, &[])).collect(),
        ),
        (
            "RST_STREAM flood (rapid reset)",
            (0..21u32)
                .flat_map(|i| {
                    let mut f = frame(1, 0x5, 2 * i + 1, &[0x82]);
                    f.extend(frame(3, 0, 2 * i + 1, &8u32.to_be_bytes()));
                    f
                })
                .collect(),
        ),
        (
            "PRIORITY flood",
            (0..11).flat_map(|_| frame(2, 0, 1, &[0; 5])).collect(),
        ),
        (
            "empty DATA flood",
            (0..11).flat_map(|_| frame(0, 0, 1, &[])).collect(),
        ),
        ("CONTINUATION flood", {
            let mut f = frame(1, 0, 1, &[0x82]);
            for _ in 0..5 {
                f.extend(frame(9, 0, 1, &[]));
            }
            f
        }),
    ];
    for (want, bytes) in cases {
        let mut g = guard();
        let (reason, at) = g.inspect(&bytes).unwrap_err();
        assert_eq!(reason, want);
        // The offset is where the offending frame starts.
        assert!(at > 0 && at < bytes.len(), "{want}: {at}");
        assert_eq!(
            bytes.len() - at,
            9 + u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize,
            "{want}"
        );
    }
    // A header block ended in time resets the CONTINUATION count.
    let mut g = guard();
    for id in 0..10u32 {
        let mut f = frame(1, 0, 2 * id + 1, &[0x82]);
        for _ in 0..3 {
            f.extend(frame(9, 0, 2 * id + 1, &[]));
        }
        f.extend(frame(9, 0x4, 2 * id + 1, &[]));
        g.inspect(&f).unwrap();
    }
}

#[test]
fn guard_budgets_are_per_second() {
    let mut g = guard();
    let pings: Vec<u8> = (0..10).flat_map(|_| frame(6, 0, 0, &[0; 8])).collect();
    g.inspect(&pings).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    g.inspect(&pings).unwrap();
    assert!(g.inspect(&frame(6, 0, 0, &[0; 8])).is_err());
}

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = monoio::spawn(async move { l.accept().await.unwrap().0 });
    let c = TcpStream::connect(addr).await.unwrap();
    (c, accepted.await)
}

/// Bytes pre-read during detection come first; then large writes and
/// reads both ways go through, with writes queued behind one in flight.
#[test]
fn compat_moves_bytes_both_ways() {
    on_both_drivers(|| async {
        let (a, b) = pair().await;
        let (ar, aw) = a.into_split();
        let (br, bw) = b.into_split();
        let mut x = Compat::new(ar, aw, b"pre-read ".to_vec());
        let mut y = Compat::new(br, bw, Vec::new());
        let data: Vec<u8> = (0..3 * MAX_QUEUED as u32 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let sent = data.clone();
        let writer = monoio::spawn(async move {
            y.write_all(b"hello ").await.unwrap();
            y.write_all(&sent).await.unwrap();
            y.flush().await.unwrap();
            y.shutdown().await.unwrap();
            y
        });
        let mut got = Vec::new();
        x.read_to_end(&mut got).await.unwrap();
        let mut want = b"pre-read hello ".to_vec();
        want.extend_from_slice(&data);
        assert_eq!(got.len(), want.len());
        assert!(got == want);
        drop(writer.await);
    });
}

/// A real h2 client and server over the adapter: a request with a large
/// body, the response with a body and trailers.
#[test]
fn h2_over_compat() {
    on_both_drivers(|| async {
        let (a, b) = pair().await;
        let (ar, aw) = a.into_split();
        let (br, bw) = b.into_split();
        let server = monoio::spawn(async move {
            let io = Compat::new(br, bw, Vec::new())
                .with_guard(FrameGuard::server(Budgets::default()), Tripped::default());
            let mut conn = h2::server::handshake(io).await.unwrap();
            let (req, mut respond) = conn.accept().await.unwrap().unwrap();
            monoio::spawn(async move { while conn.accept().await.is_some() {} });
            let (parts, mut body) = req.into_parts();
            assert_eq!(parts.uri.path(), "/svc/Method");
            let mut n = 0usize;
            while let Some(d) = body.data().await {
                let d = d.unwrap();
                n += d.len();
                body.flow_control().release_capacity(d.len()).unwrap();
            }
            let mut send = respond
                .send_response(
                    http::Response::builder().status(200).body(()).unwrap(),
                    false,
                )
                .unwrap();
            send.send_data(Bytes::from(format!("got {n}")), false)
                .unwrap();
            let mut t = http::HeaderMap::new();
            t.insert("grpc-status", "0".parse().unwrap());
            send.send_trailers(t).unwrap();
            // Keep the stream alive until the client has read it all.
            let _ = std::future::poll_fn(|cx| send.poll_reset(cx)).await;
        });
        let io = Compat::new(ar, aw, Vec::new());
        let (client, conn) = h2::client::handshake(io).await.unwrap();
        monoio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri("http://svc/svc/Method")
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, false).unwrap();
        let body = Bytes::from(vec![9u8; 300_000]);
        let mut rest = body.clone();
        while !rest.is_empty() {
            send.reserve_capacity(rest.len());
            let cap = std::future::poll_fn(|cx| send.poll_capacity(cx))
                .await
                .unwrap()
                .unwrap();
            let chunk = rest.split_to(cap.min(rest.len()));
            send.send_data(chunk, false).unwrap();
        }
        send.send_data(Bytes::new(), true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while let Some(d) = body.data().await {
            got.extend_from_slice(&d.unwrap());
        }
        assert_eq!(got, b"got 300000");
        let t = body.trailers().await.unwrap().unwrap();
        assert_eq!(t["grpc-status"], "0");
        drop(body);
        drop(client);
        let _ = monoio::time::timeout(Duration::from_secs(2), server).await;
    });
}

/// `protocol: http2` on a cluster reaches the snapshot; the default is
/// HTTP/1.1; anything else is refused.
#[test]
fn cluster_protocol_config() {
    use ringmesh_config::UpstreamProtocol;
    let text = |p: &str| {
        format!(
            "listeners:\n  - {{ name: l, address: '127.0.0.1:1', protocol: http, route_config: r }}\n\
             route_configs:\n  - name: r\n    virtual_hosts:\n      - {{ name: v, domains: ['*'], routes: [{{ match: {{ prefix: / }}, cluster: c }}] }}\n\
             clusters:\n  - {{ name: c, endpoints: [{{ address: '127.0.0.1:2' }}] {p} }}\n"
        )
    };
    let snap = ringmesh_config::load_str(&text(""), None).unwrap();
    assert_eq!(snap.clusters[0].protocol, UpstreamProtocol::Http1);
    let snap = ringmesh_config::load_str(&text(", protocol: http2"), None).unwrap();
    assert_eq!(snap.clusters[0].protocol, UpstreamProtocol::Http2);
    let snap = ringmesh_config::load_str(&text(", protocol: http1"), None).unwrap();
    assert_eq!(snap.clusters[0].protocol, UpstreamProtocol::Http1);
    assert!(ringmesh_config::load_str(&text(", protocol: h3"), None).is_err());
}

/// An h2 server on `b` for [`h1_requests_to_an_h2_server`]: answers each
/// stream with what it saw (no content-length: the HTTP/1.1 client gets
/// it chunked), a peer metadata header and `grpc-status` in trailers.
async fn h2_echo_server(b: TcpStream) {
    let (br, bw) = b.into_split();
    let mut conn = h2::server::handshake(Compat::new(br, bw, Vec::new()))
        .await
        .unwrap();
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        monoio::spawn(async move {
            let (parts, mut body) = req.into_parts();
            let mut got = Vec::new();
            while let Some(d) = body.data().await {
                let d = d.unwrap();
                body.flow_control().release_capacity(d.len()).unwrap();
                got.extend_from_slice(&d);
            }
            let seen = format!(
                "{} {} {} {} {}",
                parts.method,
                parts.uri.path_and_query().unwrap(),
                parts.uri.authority().unwrap(),
                parts.headers["x-test"].to_str().unwrap(),
                parts.headers.contains_key("connection"),
            );
            let resp = http::Response::builder()
                .status(201)
                .header("x-seen", seen)
                .header("x-ringmesh-peer", "id=spiffe://td/ns/a/sa/b")
                .body(())
                .unwrap();
            let mut send = respond.send_response(resp, false).unwrap();
            let mut out = b"got:".to_vec();
            out.extend_from_slice(&got);
            send.send_data(Bytes::from(out), false).unwrap();
            let mut t = http::HeaderMap::new();
            t.insert("grpc-status", "0".parse().unwrap());
            send.send_trailers(t).unwrap();
            let _ = std::future::poll_fn(|cx| send.poll_reset(cx)).await;
        });
    }
}

/// Read from `s` until `end` was seen (5 s at most).
async fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    use crate::io::ReadIo;
    let mut got = Vec::new();
    let deadline = monoio::time::Instant::now() + Duration::from_secs(5);
    while !got.windows(end.len()).any(|w| w == end) {
        let buf = Vec::with_capacity(4096);
        let (r, buf) = monoio::time::timeout_at(deadline, s.read_into(buf))
            .await
            .expect("the response in time");
        assert!(
            r.unwrap() > 0,
            "closed early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf);
    }
    got
}

/// HTTP/1.1 requests to an h2-only server (`h1::exchange_on`, what the
/// HTTP/1.1 path calls for `protocol: http2` clusters): a content-length
/// body partly in the prepared request and partly already read (a
/// pipelined request after it stays in the buffer), then a chunked body
/// the client is still sending; responses come back chunked with the
/// upstream's fields, less the peer metadata (returned apart) and
/// connection-specific ones.
#[test]
fn h1_requests_to_an_h2_server() {
    use super::h1::{exchange_on, H1Request};
    on_both_drivers(|| async {
        let (ua, ub) = pair().await;
        let server = monoio::spawn(h2_echo_server(ub));
        let (ar, aw) = ua.into_split();
        let (send, conn) = h2::client::handshake(Compat::new(ar, aw, Vec::new()))
            .await
            .unwrap();
        monoio::spawn(async move {
            let _ = conn.await;
        });
        let send = send.ready().await.unwrap();
        let (mut proxy_side, mut client) = pair().await;
        let limits = ringmesh_http1::Limits::default();
        let req = |prepared| H1Request {
            prepared,
            scheme: "http",
            limits: &limits,
            expect_continue: false,
            http10: false,
            close: false,
            deadline: None,
            idle: Duration::from_secs(5),
            own_peer_header: None,
        };

        // Content-length: 5 bytes prepared, 6 in the buffer, then the
        // next request.
        let prepared = b"POST /p?q=1 HTTP/1.1\r\nhost: svc\r\nx-test: yes\r\n\
                         connection: keep-alive\r\ncontent-length: 11\r\n\r\nhello";
        let mut rbuf = b" worldGET /next HTTP/1.1\r\n\r\n".to_vec();
        let o = exchange_on(send.clone(), req(&prepared[..]), &mut proxy_side, &mut rbuf).await;
        assert_eq!(o.local, None);
        assert_eq!(
            (o.status, o.grpc_status, o.keep_alive),
            (201, Some(0), true)
        );
        assert_eq!(
            o.peer_header.as_deref(),
            Some(&b"id=spiffe://td/ns/a/sa/b"[..])
        );
        assert_eq!(rbuf, b"GET /next HTTP/1.1\r\n\r\n");
        let got = read_until(&mut client, b"0\r\n\r\n").await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 201 Created\r\n"), "{text}");
        assert!(
            text.contains("x-seen: POST /p?q=1 svc yes false\r\n"),
            "{text}"
        );
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert!(
            text.contains("\r\n\r\nf\r\ngot:hello world\r\n0\r\n\r\n"),
            "{text}"
        );
        assert!(!text.contains("x-ringmesh-peer"), "{text}");
        assert_eq!(o.response_bytes, got.len() as u64);

        // Chunked, the rest still coming from the client.
        let prepared = b"PUT /c HTTP/1.1\r\nhost: svc\r\nx-test: 2\r\n\
                         transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
        let mut rbuf = Vec::new();
        let writer = monoio::spawn(async move {
            use crate::io::WriteIo;
            monoio::time::sleep(Duration::from_millis(50)).await;
            let rest = b"6\r\n world\r\n0\r\n\r\n".to_vec();
            let n = rest.len();
            let (r, _) = client.write_range(rest, n).await;
            r.unwrap();
            client
        });
        let o = exchange_on(send.clone(), req(&prepared[..]), &mut proxy_side, &mut rbuf).await;
        let mut client = writer.await;
        assert_eq!((o.local, o.status, o.keep_alive), (None, 201, true));
        assert!(rbuf.is_empty());
        assert_eq!(o.request_read, 16);
        let got = read_until(&mut client, b"0\r\n\r\n").await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("x-seen: PUT /c svc 2 false\r\n"), "{text}");
        assert!(text.contains("got:hello world\r\n0\r\n\r\n"), "{text}");

        // A malformed chunked body is refused before the server sees more.
        let prepared = b"PUT /c HTTP/1.1\r\nhost: svc\r\nx-test: 3\r\n\
                         transfer-encoding: chunked\r\n\r\nzz\r\n";
        let mut rbuf = Vec::new();
        let o = exchange_on(send.clone(), req(&prepared[..]), &mut proxy_side, &mut rbuf).await;
        assert_eq!(o.local.map(|l| l.0), Some(400));
        drop(send);
        drop(server);
    });
}
