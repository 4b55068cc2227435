//! HTTP/2 through the proxy: prior-knowledge clients (`curl
//! --http2-prior-knowledge`, `h2load` from nghttp2-client) on an HTTP
//! listener in front of HTTP/1.1 backends (the downgrade), gRPC (a tonic
//! client and a tonic server behind a `protocol: http2` cluster: unary,
//! errors in trailers, bidirectional streaming, `grpc-timeout`), and
//! frame floods (rapid reset, CONTINUATION, SETTINGS, PING, HPACK bomb)
//! that must close only the offending connection.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    pin::Pin,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use ringmesh_e2e::{on_both_drivers, simple_http_config, Backend, Client, Driver, Proxy};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

struct Curl {
    status: u16,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// `curl --http2-prior-knowledge` with `args`, to `url`.
fn curl(args: &[&str], url: &str) -> Curl {
    curl_stdin(args, url, None)
}

/// [`curl`], with `stdin` as its standard input (for `-T -`: a body of
/// unknown length).
fn curl_stdin(args: &[&str], url: &str, stdin: Option<&[u8]>) -> Curl {
    let dir = std::env::temp_dir().join(format!("ringmesh-h2-curl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let head = dir.join(format!("{n}.head"));
    let body = dir.join(format!("{n}.body"));
    let mut child = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "--max-time", "20"])
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args)
        .arg(url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running curl (package curl) failed");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.map(<[u8]>::to_vec);
    let feeder = thread::spawn(move || {
        if let Some(d) = data {
            let _ = input.write_all(&d);
        }
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        out.status.success(),
        "curl {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = w.split(' ');
    let status = it.next().unwrap().parse().unwrap();
    let version = it.next().unwrap_or("").to_string();
    let head_text = std::fs::read_to_string(&head).unwrap_or_default();
    let headers = head_text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body_bytes = std::fs::read(&body).unwrap_or_default();
    let _ = std::fs::remove_file(&head);
    let _ = std::fs::remove_file(&body);
    Curl {
        status,
        version,
        headers,
        body: body_bytes,
    }
}

impl Curl {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

fn url(proxy: &Proxy, path: &str) -> String {
    format!("http://{}{path}", proxy.addr("http"))
}

/// The value of header `name` in a testbed /echo answer.
fn echoed<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap())
        .collect()
}

fn config_with_rbac(backend: SocketAddr) -> Value {
    let mut c = simple_http_config(&[backend]);
    c["listeners"][0]["rbac"] = json!([
        { "name": "deny",
          "rules": { "action": "DENY", "policies": {
              "no-secret": { "permissions": [{ "url_path": { "prefix": "/secret" } }],
                             "principals": [{ "any": true }] } } } }
    ]);
    c["route_configs"][0]["virtual_hosts"][0]["domains"] = json!(["svc", "svc:*"]);
    c
}

// ---------------------------------------------------------------------------
// HTTP/2 clients, HTTP/1.1 backends
// ---------------------------------------------------------------------------

/// curl with prior knowledge: GET (status, body, headers both ways), a
/// 300 KB POST with content-length and one streamed without (chunked
/// upstream), a 4 MB download, 404 for an unknown host, 403 from RBAC;
/// HTTP/1.1 on the same listener still works.
fn curl_prior_knowledge(driver: Driver) {
    let backend = Backend::start("a");
    let proxy = Proxy::start(driver, config_with_rbac(backend.addr()));
    let host = ["-H", "host: svc"];

    let r = curl(
        &[&host[..], &["-H", "x-custom: one"]].concat(),
        &url(&proxy, "/echo?q=1"),
    );
    assert_eq!((r.status, r.version.as_str()), (200, "2"));
    assert_eq!(r.header("x-backend"), Some("a"));
    let e = r.json();
    assert_eq!(e["method"], "GET");
    assert_eq!(e["target"], "/echo?q=1");
    assert_eq!(
        e["version"], "HTTP/1.1",
        "the backend is reached over HTTP/1.1"
    );
    assert_eq!(echoed(&e, "host"), ["svc"]);
    assert_eq!(echoed(&e, "x-custom"), ["one"]);
    assert_eq!(echoed(&e, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed(&e, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed(&e, "x-request-id").len(), 1);

    // A body of a few hundred KB, with and without content-length.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let crc = crc32fast::hash(&data);
    let file = std::env::temp_dir().join(format!(
        "ringmesh-h2-body-{}-{driver:?}",
        std::process::id()
    ));
    std::fs::write(&file, &data).unwrap();
    let at_file = format!("@{}", file.display());
    let r = curl(
        &[&host[..], &["--data-binary", &at_file]].concat(),
        &url(&proxy, "/echo"),
    );
    assert_eq!(r.status, 200);
    let e = r.json();
    assert_eq!(
        (e["body_len"].as_u64(), e["body_crc32"].as_u64()),
        (Some(300_000), Some(u64::from(crc)))
    );
    assert_eq!(echoed(&e, "content-length"), ["300000"]);
    let r = curl_stdin(
        &[&host[..], &["-X", "POST", "-T", "-"]].concat(),
        &url(&proxy, "/echo"),
        Some(&data),
    );
    assert_eq!(r.status, 200);
    let e = r.json();
    assert_eq!(e["body_crc32"].as_u64(), Some(u64::from(crc)));
    assert_eq!(echoed(&e, "transfer-encoding"), ["chunked"]);
    let _ = std::fs::remove_file(&file);

    // Downloads: content-length, chunked, close-delimited.
    let r = curl(&host, &url(&proxy, "/bytes/4000000"));
    assert_eq!((r.status, r.body.len()), (200, 4_000_000));
    let r = curl(&host, &url(&proxy, "/chunked"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"hello chunked world"[..])
    );
    let r = curl(&host, &url(&proxy, "/until-close"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"body delimited by close"[..])
    );

    // Local replies.
    let r = curl(&["-H", "host: elsewhere"], &url(&proxy, "/echo"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (404, &b"route not found\n"[..])
    );
    let r = curl(&host, &url(&proxy, "/secret/x"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (403, &b"RBAC: access denied\n"[..])
    );
    // Normalized before RBAC and routing, as HTTP/1.
    let r = curl(
        &[&host[..], &["--path-as-is"]].concat(),
        &url(&proxy, "/a/../secret/x"),
    );
    assert_eq!(r.status, 403);

    // HTTP/1.1 on the same listener.
    let mut c = Client::connect(proxy.addr("http"));
    let r = c.get("svc", "/echo");
    assert_eq!(r.status, 200);
    proxy.wait_metric("ringmesh_rbac_denied_total", &[("listener", "http")], 2.0);
}

/// Many concurrent streams on few connections (h2load from
/// nghttp2-client): every request answered, over few upstream
/// connections.
fn many_concurrent_streams(driver: Driver) {
    let backend = Backend::start("a");
    let proxy = Proxy::start(driver, simple_http_config(&[backend.addr()]));
    let out = Command::new("h2load")
        .args([
            "-n",
            "3000",
            "-c",
            "2",
            "-m",
            "100",
            "-H",
            ":authority: svc",
        ])
        .arg(url(&proxy, "/echo"))
        .output()
        .expect("running h2load (package nghttp2-client) failed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("requests: 3000 total, 3000 started, 3000 done, 3000 succeeded, 0 failed"),
        "{text}"
    );
    assert!(text.contains("status codes: 3000 2xx"), "{text}");
    // And the proxy kept serving.
    assert_eq!(
        curl(&["-H", "host: svc"], &url(&proxy, "/echo")).status,
        200
    );
}

// ---------------------------------------------------------------------------
// Floods
// ---------------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET http://svc/` (static table, literal authority).
fn get_headers() -> Vec<u8> {
    let mut h = vec![0x82, 0x86, 0x84, 0x41, 3];
    h.extend_from_slice(b"svc");
    h
}

/// Send `flood` after the preface and an empty SETTINGS, then read until
/// the proxy closes: the GOAWAY error code it sent, if any. Panics if the
/// connection stays open.
fn flood(proxy: &Proxy, flood: &[u8]) -> Option<u32> {
    let mut s = TcpStream::connect(proxy.addr("http")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend_from_slice(flood);
    // The proxy may close before reading it all (a reset is fine).
    let writer = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || {
            let _ = s.write_all(&out);
        })
    };
    let mut got = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the flooding connection is still open after {:?}: {e}",
                start.elapsed()
            ),
        }
    }
    let _ = writer.join();
    let mut i = 0;
    let mut goaway = None;
    while i + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[i], got[i + 1], got[i + 2]]) as usize;
        if got[i + 3] == 7 && i + 17 <= got.len() {
            goaway = Some(u32::from_be_bytes(got[i + 13..i + 17].try_into().unwrap()));
        }
        i += 9 + len;
    }
    goaway
}

const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Rapid reset, CONTINUATION, SETTINGS and PING floods and an HPACK bomb:
/// each closes its connection (GOAWAY, or a protocol error for the bomb);
/// the proxy stays up and a well-behaved client is served after each.
fn floods_close_the_connection(driver: Driver) {
    let backend = Backend::start("a");
    let proxy = Proxy::start(driver, simple_http_config(&[backend.addr()]));
    let ok = || {
        let r = curl(&["-H", "host: svc"], &url(&proxy, "/echo"));
        assert_eq!(r.status, 200);
    };
    ok();
    let hdr = get_headers();

    let rapid_reset: Vec<u8> = (0..2000u32)
        .flat_map(|i| {
            let id = 2 * i + 1;
            let mut f = frame(1, 0x4 | 0x1, id, &hdr);
            f.extend(frame(3, 0, id, &8u32.to_be_bytes()));
            f
        })
        .collect();
    assert_eq!(
        flood(&proxy, &rapid_reset),
        Some(ENHANCE_YOUR_CALM),
        "rapid reset"
    );
    ok();

    let mut continuation = frame(1, 0x1, 1, &hdr);
    for _ in 0..10_000 {
        continuation.extend(frame(9, 0, 1, b""));
    }
    assert_eq!(
        flood(&proxy, &continuation),
        Some(ENHANCE_YOUR_CALM),
        "CONTINUATION flood"
    );
    ok();

    let settings: Vec<u8> = (0..5000).flat_map(|_| frame(4, 0, 0, &[])).collect();
    assert_eq!(
        flood(&proxy, &settings),
        Some(ENHANCE_YOUR_CALM),
        "SETTINGS flood"
    );
    ok();

    let ping: Vec<u8> = (0..5000u64)
        .flat_map(|i| frame(6, 0, 0, &i.to_be_bytes()))
        .collect();
    assert_eq!(flood(&proxy, &ping), Some(ENHANCE_YOUR_CALM), "PING flood");
    ok();

    // HPACK bomb: one large header inserted in the dynamic table, then
    // referenced thousands of times (tiny on the wire, huge decoded).
    let mut bomb = hdr.clone();
    // Literal with incremental indexing, new name `x`, a 4000-byte value
    // (length: 7-bit prefix 127, then 3873 as a varint).
    bomb.extend_from_slice(&[0x40, 1, b'x', 0x7f, 0xa1, 0x1e]);
    bomb.extend(std::iter::repeat_n(b'a', 4000));
    // Dynamic index 62, many times.
    bomb.extend(std::iter::repeat_n(0xbe, 16_000));
    let mut frames = Vec::new();
    let mut chunks = bomb.chunks(16_000);
    let first = chunks.next().unwrap();
    let more: Vec<&[u8]> = chunks.collect();
    frames.extend(frame(
        1,
        0x1 | if more.is_empty() { 0x4 } else { 0 },
        1,
        first,
    ));
    for (i, c) in more.iter().enumerate() {
        frames.extend(frame(9, if i + 1 == more.len() { 0x4 } else { 0 }, 1, c));
    }
    // The stream or the connection is refused (431-like): either way the
    // decoded list never exceeds the limit and the proxy answers others.
    let _ = flood_or_reset(&proxy, &frames);
    ok();

    // Still one healthy process, every closed connection accounted for
    // (the proxy notices the last close a moment after the client).
    proxy.wait_metric(
        "ringmesh_downstream_cx_active",
        &[("listener", "http")],
        0.0,
    );
}

/// Like [`flood`], but a stream reset (the connection left open) is also
/// an acceptable answer: returns whether the connection was closed.
fn flood_or_reset(proxy: &Proxy, frames: &[u8]) -> bool {
    let mut s = TcpStream::connect(proxy.addr("http")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend_from_slice(frames);
    let _ = s.write_all(&out);
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
        // A RST_STREAM or a response HEADERS for stream 1 ends it.
        let mut i = 0;
        while i + 9 <= got.len() {
            let len = u32::from_be_bytes([0, got[i], got[i + 1], got[i + 2]]) as usize;
            let sid = u32::from_be_bytes(got[i + 5..i + 9].try_into().unwrap());
            if sid == 1 && (got[i + 3] == 3 || got[i + 3] == 1) {
                return false;
            }
            i += 9 + len;
        }
    }
    false
}

// ---------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------

mod grpc {
    use std::{convert::Infallible, task::Poll};

    use bytes::{Buf, BufMut};
    use tonic::{
        codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming},
        codegen::{http, BoxFuture, Service},
        server::{Grpc, NamedService, StreamingService, UnaryService},
        Code, Request, Response, Status,
    };

    use super::Pin;

    /// Messages are raw bytes.
    #[derive(Clone, Copy, Default)]
    pub struct Raw;
    pub struct RawEnc;
    pub struct RawDec;

    impl Encoder for RawEnc {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for RawDec {
        type Item = Vec<u8>;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            let n = src.remaining();
            Ok(Some(src.copy_to_bytes(n).to_vec()))
        }
    }

    impl Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawEnc;
        type Decoder = RawDec;
        fn encoder(&mut self) -> RawEnc {
            RawEnc
        }
        fn decoder(&mut self) -> RawDec {
            RawDec
        }
    }

    /// `test.Echo`: `Unary` (echo with a prefix), `Fail` (NOT_FOUND with a
    /// message), `Slow` (answers after 3 s), `Bidi` (each message back,
    /// upper-cased). `down`: every call fails with UNAVAILABLE (an
    /// endpoint for outlier detection to eject).
    #[derive(Clone)]
    pub struct Echo {
        pub down: bool,
    }

    impl NamedService for Echo {
        const NAME: &'static str = "test.Echo";
    }

    struct Unary(&'static str);

    impl UnaryService<Vec<u8>> for Unary {
        type Response = Vec<u8>;
        type Future = BoxFuture<Response<Vec<u8>>, Status>;
        fn call(&mut self, req: Request<Vec<u8>>) -> Self::Future {
            let which = self.0;
            Box::pin(async move {
                let seen_by = req
                    .metadata()
                    .get("x-forwarded-proto")
                    .map(|v| v.to_str().unwrap_or("").to_owned())
                    .unwrap_or_default();
                match which {
                    "Unary" => {
                        let mut out = format!("echo({seen_by}):").into_bytes();
                        out.extend_from_slice(req.get_ref());
                        Ok(Response::new(out))
                    }
                    "Slow" => {
                        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                        Ok(Response::new(b"late".to_vec()))
                    }
                    _ => Err(Status::new(Code::NotFound, "thing 42 not found")),
                }
            })
        }
    }

    struct Bidi;

    type Out = Pin<Box<dyn tokio_stream::Stream<Item = Result<Vec<u8>, Status>> + Send>>;

    impl StreamingService<Vec<u8>> for Bidi {
        type Response = Vec<u8>;
        type ResponseStream = Out;
        type Future = BoxFuture<Response<Out>, Status>;
        fn call(&mut self, req: Request<Streaming<Vec<u8>>>) -> Self::Future {
            Box::pin(async move {
                use tokio_stream::StreamExt;
                let s = req.into_inner().map(|m| m.map(|v| v.to_ascii_uppercase()));
                Ok(Response::new(Box::pin(s) as Out))
            })
        }
    }

    impl<B> Service<http::Request<B>> for Echo
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            let path = req.uri().path().to_owned();
            let down = self.down;
            Box::pin(async move {
                if down {
                    return Ok(Status::unavailable("endpoint down").into_http());
                }
                let mut g = Grpc::new(Raw);
                Ok(match path.as_str() {
                    "/test.Echo/Unary" => g.unary(Unary("Unary"), req).await,
                    "/test.Echo/Fail" => g.unary(Unary("Fail"), req).await,
                    "/test.Echo/Slow" => g.unary(Unary("Slow"), req).await,
                    "/test.Echo/Bidi" => g.streaming(Bidi, req).await,
                    _ => Status::unimplemented("no such method").into_http(),
                })
            })
        }
    }
}

/// A tonic server (plaintext h2) on loopback, on its own thread.
fn start_grpc_server() -> SocketAddr {
    start_grpc_server_with(false)
}

/// [`start_grpc_server`]; `down`: one whose every call is UNAVAILABLE.
fn start_grpc_server_with(down: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            tonic::transport::Server::builder()
                .add_service(grpc::Echo { down })
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
                .await
                .unwrap();
        });
    });
    addr
}

fn grpc_config(server: SocketAddr) -> Value {
    let mut c = simple_http_config(&[server]);
    c["clusters"][0]["protocol"] = json!("http2");
    c
}

/// gRPC through the proxy to a `protocol: http2` cluster: a unary call, an
/// error status with its message (trailers), a bidirectional stream, and
/// a `grpc-timeout` shorter than the server's answer.
fn grpc_through_the_proxy(driver: Driver) {
    let server = start_grpc_server();
    let proxy = Proxy::start(driver, grpc_config(server));
    let addr = proxy.addr("http");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use tonic::codegen::http::uri::PathAndQuery;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connecting to the proxy");
        let mut client = tonic::client::Grpc::new(channel);

        // Unary.
        for i in 0..20 {
            client.ready().await.unwrap();
            let r = client
                .unary(
                    tonic::Request::new(format!("hello {i}").into_bytes()),
                    PathAndQuery::from_static("/test.Echo/Unary"),
                    grpc::Raw,
                )
                .await
                .expect("unary call through the proxy");
            assert_eq!(r.into_inner(), format!("echo(http):hello {i}").into_bytes());
        }

        // An error: grpc-status and grpc-message come back from the trailers.
        client.ready().await.unwrap();
        let e = client
            .unary(
                tonic::Request::new(b"x".to_vec()),
                PathAndQuery::from_static("/test.Echo/Fail"),
                grpc::Raw,
            )
            .await
            .expect_err("Fail fails");
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        assert_eq!(e.message(), "thing 42 not found");

        // Bidirectional streaming: messages flow both ways at once.
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        client.ready().await.unwrap();
        let resp = client
            .streaming(
                tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
                PathAndQuery::from_static("/test.Echo/Bidi"),
                grpc::Raw,
            )
            .await
            .expect("bidi call through the proxy");
        let mut inbound = resp.into_inner();
        for i in 0..10 {
            tx.send(format!("msg {i}").into_bytes()).await.unwrap();
            let m = inbound
                .message()
                .await
                .unwrap()
                .expect("a reply per message");
            assert_eq!(m, format!("MSG {i}").into_bytes());
        }
        drop(tx);
        assert!(
            inbound.message().await.unwrap().is_none(),
            "stream ends with OK"
        );
    });

    // Trailers through an independent client: curl shows grpc-status and
    // grpc-message after the body (a gRPC frame: flag, length, message).
    let mut msg = vec![0u8, 0, 0, 0, 2];
    msg.extend_from_slice(b"hi");
    let grpc_args = [
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-X",
        "POST",
        "--data-binary",
        "@-",
    ];
    let r = curl_stdin(
        &grpc_args,
        &format!("http://{addr}/test.Echo/Fail"),
        Some(&msg),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("5"), "{:?}", r.headers);
    // (tonic percent-encodes it on the wire.)
    assert_eq!(r.header("grpc-message"), Some("thing%2042%20not%20found"));
    let r = curl_stdin(
        &grpc_args,
        &format!("http://{addr}/test.Echo/Unary"),
        Some(&msg),
    );
    assert_eq!(r.header("grpc-status"), Some("0"), "{:?}", r.headers);
    assert_eq!(&r.body[5..], b"echo(http):hi");
}

/// `grpc-timeout` is the request's deadline when shorter than the
/// route's: the proxy answers DEADLINE_EXCEEDED itself. (The backend is
/// the HTTP/1.1 testbed, which ignores the header, so only the proxy can
/// enforce it; a tonic server would race it with its own timer.)
fn grpc_timeout_is_honoured(driver: Driver) {
    let backend = Backend::start("a");
    let mut config = simple_http_config(&[backend.addr()]);
    config["route_configs"][0]["virtual_hosts"][0]["routes"][0]["timeout"] = json!("10s");
    let proxy = Proxy::start(driver, config);
    let addr = proxy.addr("http");
    let msg = [0u8, 0, 0, 0, 2, b'h', b'i'];
    let args = [
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-H",
        "grpc-timeout: 300m",
        "-X",
        "POST",
        "--data-binary",
        "@-",
    ];
    let start = Instant::now();
    let r = curl_stdin(&args, &format!("http://{addr}/delay/3000"), Some(&msg));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("grpc-status"),
        Some("4"),
        "DEADLINE_EXCEEDED: {:?}",
        r.headers
    );
    assert_eq!(r.header("grpc-message"), Some("upstream request timeout"));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // A deadline the backend meets changes nothing.
    let r = curl_stdin(
        &[
            &args[..4],
            &[
                "-H",
                "grpc-timeout: 5S",
                "-X",
                "POST",
                "--data-binary",
                "@-",
            ],
        ]
        .concat(),
        &format!("http://{addr}/delay/10"),
        Some(&msg),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), None);
    proxy.wait_metric(
        "ringmesh_upstream_rq_timeout_total",
        &[("cluster", "web")],
        1.0,
    );
}

// ---------------------------------------------------------------------------
// Between sidecars (mTLS)
// ---------------------------------------------------------------------------

const TD: &str = "cluster.local";
const HOUR: Duration = Duration::from_secs(3600);

/// A mesh CA (a self-signed root in a `CaStore`) issuing SVIDs to files.
struct Pki {
    dir: ringmesh_e2e::TempDir,
    ca: ringmesh_ca::CaStore,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let dir = ringmesh_e2e::TempDir::new("h2-pki");
        let ca_dir = dir.path().join("ca");
        std::fs::create_dir_all(&ca_dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "h2 test root");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = std::time::SystemTime::now();
        params.not_before = (now - HOUR).into();
        params.not_after = (now + 24 * HOUR).into();
        let pem = params.self_signed(&key).unwrap().pem();
        std::fs::write(ca_dir.join("root-cert.pem"), pem).unwrap();
        std::fs::write(ca_dir.join("root-key.pem"), key.serialize_pem()).unwrap();
        let ca = ringmesh_ca::CaStore::open(&ca_dir, ringmesh_ca::CaOptions::new(TD)).unwrap();
        Pki { dir, ca }
    }

    /// The `identity` section of a proxy holding an SVID for `sa`.
    fn identity(&self, sa: &str) -> Value {
        let id = ringmesh_tls::SpiffeId::new(TD, "default", sa).unwrap();
        let req = ringmesh_tls::generate_key_and_csr(&id).unwrap();
        let issued = self.ca.sign(&req.csr_pem, &id, HOUR).unwrap();
        let c = self.dir.path().join(format!("{sa}-cert.pem"));
        let k = self.dir.path().join(format!("{sa}-key.pem"));
        std::fs::write(&c, issued.cert_chain_pem).unwrap();
        std::fs::write(&k, req.key_pem).unwrap();
        json!({
            "namespace": "default",
            "service_account": sa,
            "cert_chain": c.display().to_string(),
            "private_key": k.display().to_string(),
            "trust_bundle": self.dir.path().join("ca").join("root-cert.pem").display().to_string(),
        })
    }
}

/// gRPC through a sidecar pair: tonic client → outbound proxy (plaintext
/// h2) → mTLS with ALPN h2 (`protocol: http2`, `ISTIO_MUTUAL`) → inbound
/// proxy (STRICT; ALPN h2 served by the h2 server) → tonic server
/// (`protocol: http2`). HTTP/1.1 clients and HTTP/1.1 clusters keep
/// working through the same pair.
fn grpc_between_sidecars(driver: Driver) {
    let pki = Pki::new();
    let server = start_grpc_server();
    let backend = Backend::start("web");
    let reviews = "spiffe://cluster.local/ns/default/sa/reviews";
    let inbound = Proxy::start(
        driver,
        json!({
            "identity": pki.identity("reviews"),
            "listeners": [{ "name": "http", "address": "auto", "protocol": "http",
                            "route_config": "local", "tls": { "mode": "STRICT" } }],
            "route_configs": [{ "name": "local", "virtual_hosts": [
                { "name": "grpc", "domains": ["grpc"],
                  "routes": [{ "match": { "prefix": "/" }, "cluster": "grpc-app" }] },
                { "name": "web", "domains": ["*"],
                  "routes": [{ "match": { "prefix": "/" }, "cluster": "web-app" }] }] }],
            "clusters": [
                { "name": "grpc-app", "protocol": "http2",
                  "endpoints": [{ "address": server.to_string() }] },
                { "name": "web-app", "endpoints": [{ "address": backend.addr().to_string() }] }],
        }),
    );
    let to_inbound = inbound.addr("http").to_string();
    let outbound = Proxy::start(
        driver,
        json!({
            "identity": pki.identity("productpage"),
            "listeners": [{ "name": "http", "address": "auto", "protocol": "http",
                            "route_config": "out" }],
            "route_configs": [{ "name": "out", "virtual_hosts": [
                { "name": "grpc", "domains": ["grpc", "grpc:*"],
                  "routes": [{ "match": { "prefix": "/" }, "cluster": "reviews-h2" }] },
                { "name": "web", "domains": ["*"],
                  "routes": [{ "match": { "prefix": "/" }, "cluster": "reviews-h1" }] }] }],
            "clusters": [
                { "name": "reviews-h2", "protocol": "http2",
                  "endpoints": [{ "address": to_inbound }],
                  "tls": { "mode": "ISTIO_MUTUAL", "subject_alt_names": [reviews] } },
                { "name": "reviews-h1",
                  "endpoints": [{ "address": to_inbound }],
                  "tls": { "mode": "ISTIO_MUTUAL", "subject_alt_names": [reviews] } }],
        }),
    );
    let addr = outbound.addr("http");
    // HTTP/2 and HTTP/1.1 clients to the HTTP/1.1 cluster over mTLS. An
    // h2 client's streams cross between the sidecars on one h2
    // connection (ALPN h2 offered to the ISTIO_MUTUAL cluster, chosen by
    // the inbound sidecar): 20 concurrent streams, one more connection
    // at most (the first one: nothing else has connected yet).
    let r = curl(&["-H", "host: web"], &format!("http://{addr}/echo"));
    assert_eq!((r.status, r.header("x-backend")), (200, Some("web")));
    assert_eq!(echoed(&r.json(), "x-forwarded-proto"), ["https"]);
    let cx = |p: &Proxy| {
        p.metrics()
            .get("ringmesh_downstream_cx_total", &[("listener", "http")])
            .unwrap_or(0.0)
    };
    let before = cx(&inbound);
    let out = Command::new("h2load")
        .args(["-n", "400", "-c", "1", "-m", "20", "-H", ":authority: web"])
        .arg(format!("http://{addr}/echo"))
        .output()
        .expect("running h2load (package nghttp2-client) failed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status codes: 400 2xx"), "{text}");
    let opened = cx(&inbound) - before;
    assert!(
        opened <= 1.0,
        "20 concurrent h2 streams opened {opened} connections between the sidecars"
    );
    assert_eq!(cx(&inbound), 1.0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use tonic::codegen::http::uri::PathAndQuery;
        // Dial the proxy; `:authority` says `grpc` (the route's domain).
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .origin("http://grpc".parse().unwrap())
            .connect()
            .await
            .expect("connecting to the outbound proxy");
        let mut client = tonic::client::Grpc::new(channel);
        for i in 0..10 {
            client.ready().await.unwrap();
            let r = client
                .unary(
                    tonic::Request::new(format!("hi {i}").into_bytes()),
                    PathAndQuery::from_static("/test.Echo/Unary"),
                    grpc::Raw,
                )
                .await
                .expect("unary call through two sidecars");
            // The inbound sidecar received it over mTLS: https.
            assert_eq!(r.into_inner(), format!("echo(https):hi {i}").into_bytes());
        }
        client.ready().await.unwrap();
        let e = client
            .unary(
                tonic::Request::new(b"x".to_vec()),
                PathAndQuery::from_static("/test.Echo/Fail"),
                grpc::Raw,
            )
            .await
            .expect_err("Fail fails");
        assert_eq!(
            (e.code(), e.message()),
            (tonic::Code::NotFound, "thing 42 not found")
        );
    });
    let mut c = Client::connect(addr);
    assert_eq!(c.get("web", "/echo").status, 200);
    assert!(
        inbound
            .metrics()
            .get(
                "ringmesh_downstream_cx_security_total",
                &[("listener", "http"), ("security", "mtls")]
            )
            .unwrap_or(0.0)
            >= 2.0
    );
}

/// Draining (SIGTERM): the h2 client gets GOAWAY, its request in flight
/// completes, and the proxy exits once it has.
fn drain_finishes_streams_in_flight(driver: Driver) {
    let backend = Backend::start("a");
    let mut proxy = Proxy::start(driver, simple_http_config(&[backend.addr()]));
    let u = url(&proxy, "/delay/1500");
    let slow = thread::spawn(move || curl(&["-H", "host: svc"], &u));
    // Wait until the request is in flight at the backend.
    ringmesh_e2e::wait_for(Duration::from_secs(5), "the request at the backend", || {
        (backend.stats()["requests"].as_u64().unwrap_or(0) >= 2).then_some(())
    });
    proxy.signal(libc::SIGTERM);
    let r = slow.join().unwrap();
    assert_eq!((r.status, r.version.as_str()), (200, "2"));
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy exits after draining");
    assert!(status.success(), "{status:?}");
}

/// A stream the client resets stops costing upstream work at once: the
/// request waiting for a slow backend is abandoned (its upstream
/// connection closed), not left to finish (20 s here).
fn reset_stream_abandons_the_upstream_request(driver: Driver) {
    let backend = Backend::start("a");
    let proxy = Proxy::start(driver, simple_http_config(&[backend.addr()]));
    let mut s = TcpStream::connect(proxy.addr("http")).unwrap();
    let path = b"/delay/20000";
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x41, 3]);
    block.extend_from_slice(b"svc");
    let mut out = PREFACE.to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend(frame(1, 0x5, 1, &block));
    s.write_all(&out).unwrap();
    proxy.wait_metric("ringmesh_upstream_cx_active", &[("cluster", "web")], 1.0);
    s.write_all(&frame(3, 0, 1, &8u32.to_be_bytes())).unwrap(); // CANCEL
    proxy.wait_metric("ringmesh_upstream_cx_active", &[("cluster", "web")], 0.0);
    // The connection itself is still served.
    s.write_all(&frame(6, 0, 0, b"pingpong")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(8).any(|w| w == b"pingpong") {
        let n = s.read(&mut buf).expect("a PING ack");
        assert!(n > 0, "the connection was closed");
        got.extend_from_slice(&buf[..n]);
    }
}

// ---------------------------------------------------------------------------
// Telemetry and resilience of h2 streams
// ---------------------------------------------------------------------------

fn workload(name: &str, app: &str) -> Value {
    json!({ "name": name, "namespace": "default", "app": app, "version": "v1",
            "cluster": "test-cluster" })
}

/// Wait (5 s) until `ok` holds for the proxy's metrics (a stream is
/// recorded just after its last frame is sent).
fn wait_metrics(p: &Proxy, what: &str, ok: impl Fn(&ringmesh_e2e::Metrics) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = p.metrics();
        if ok(&m) {
            return;
        }
        if Instant::now() > deadline {
            let lines: Vec<&str> = m
                .text
                .lines()
                .filter(|l| {
                    l.starts_with("istio_requests_total") || l.starts_with("ringmesh_cluster")
                })
                .collect();
            panic!("{what}: not reached; series:\n{}", lines.join("\n"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// JSON access log lines of `path` (waits until there are `n`).
fn log_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";

/// Istio metrics and access logs of h2 streams through an mTLS sidecar
/// pair: h2 clients to an HTTP/1.1 service (h2 between the sidecars,
/// HTTP/1.1 to the app) and gRPC to an h2 service. Both sides report
/// (source / destination) with the peer's workload learned from the
/// metadata exchange, `request_protocol` `http` or `grpc` (Istio's values:
/// there is no `http/2`), the gRPC status from the trailers, and the
/// metadata header never reaches an application or a client.
fn telemetry_of_h2_streams(driver: Driver) {
    let pki = Pki::new();
    let server = start_grpc_server();
    let backend = Backend::start("reviews-app");
    let dir = ringmesh_e2e::TempDir::new("h2-telemetry");
    let inbound_log = dir.path().join("inbound.log");
    let outbound_log = dir.path().join("outbound.log");
    let inbound = Proxy::start(
        driver,
        json!({
            "identity": pki.identity("reviews"),
            "workload": workload("reviews-v1", "reviews"),
            "access_log": { "path": inbound_log.display().to_string() },
            "listeners": [{ "name": "inbound", "address": "auto", "protocol": "http",
                            "route_config": "local", "tls": { "mode": "STRICT" } }],
            "route_configs": [{ "name": "local", "virtual_hosts": [
                { "name": "grpc", "domains": ["grpc"],
                  "routes": [{ "match": { "prefix": "/" }, "cluster": "inbound|9090||" }] },
                { "name": "web", "domains": ["*"],
                  "routes": [{ "match": { "prefix": "/" }, "cluster": "inbound|9080||" }] }] }],
            "clusters": [
                { "name": "inbound|9090||", "protocol": "http2",
                  "endpoints": [{ "address": server.to_string() }] },
                { "name": "inbound|9080||",
                  "endpoints": [{ "address": backend.addr().to_string() }] }],
        }),
    );
    let to_inbound = inbound.addr("inbound").to_string();
    let grpc_svc = "outbound|9090||grpc.default.svc.cluster.local";
    let web_svc = "outbound|9080||reviews.default.svc.cluster.local";
    let outbound = Proxy::start(
        driver,
        json!({
            "identity": pki.identity("productpage"),
            "workload": workload("productpage-v1", "productpage"),
            "access_log": { "path": outbound_log.display().to_string() },
            "listeners": [{ "name": "http", "address": "auto", "protocol": "http",
                            "route_config": "out" }],
            "route_configs": [{ "name": "out", "virtual_hosts": [
                { "name": "grpc", "domains": ["grpc"],
                  "routes": [{ "match": { "prefix": "/" }, "cluster": grpc_svc }] },
                { "name": "web", "domains": ["*"],
                  "routes": [{ "match": { "prefix": "/" }, "cluster": web_svc }] }] }],
            "clusters": [
                { "name": grpc_svc, "protocol": "http2",
                  "endpoints": [{ "address": to_inbound }],
                  "tls": { "mode": "ISTIO_MUTUAL", "subject_alt_names": [REVIEWS] } },
                { "name": web_svc,
                  "endpoints": [{ "address": to_inbound }],
                  "tls": { "mode": "ISTIO_MUTUAL", "subject_alt_names": [REVIEWS] } }],
        }),
    );
    let addr = outbound.addr("http");

    // h2 → HTTP/1.1 service: 3 × 200, one 404, one /echo.
    for _ in 0..3 {
        let r = curl(
            &["-H", "host: web", "-A", "h2-telemetry"],
            &format!("http://{addr}/status/200"),
        );
        assert_eq!((r.status, r.version.as_str()), (200, "2"));
        assert_eq!(r.header("x-ringmesh-peer"), None, "{:?}", r.headers);
    }
    let r = curl(&["-H", "host: web"], &format!("http://{addr}/status/404"));
    assert_eq!(r.status, 404);
    // A client's own metadata header is dropped, ours is not shown to the app.
    let r = curl(
        &[
            "-H",
            "host: web",
            "-H",
            "x-ringmesh-peer: id=spiffe://evil/ns/x/sa/y;w=evil",
        ],
        &format!("http://{addr}/echo"),
    );
    assert_eq!(r.status, 200);
    assert!(
        echoed(&r.json(), "x-ringmesh-peer").is_empty(),
        "{:?}",
        r.json()
    );
    assert_eq!(r.header("x-ringmesh-peer"), None);

    // gRPC: OK and NOT_FOUND (in the trailers).
    let mut msg = vec![0u8, 0, 0, 0, 2];
    msg.extend_from_slice(b"hi");
    let grpc_args = [
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-H",
        "host: grpc",
        "-X",
        "POST",
        "--data-binary",
        "@-",
    ];
    let r = curl_stdin(
        &grpc_args,
        &format!("http://{addr}/test.Echo/Unary"),
        Some(&msg),
    );
    assert_eq!(r.header("grpc-status"), Some("0"), "{:?}", r.headers);
    assert_eq!(&r.body[5..], b"echo(https):hi");
    assert_eq!(r.header("x-ringmesh-peer"), None);
    let r = curl_stdin(
        &grpc_args,
        &format!("http://{addr}/test.Echo/Fail"),
        Some(&msg),
    );
    assert_eq!(r.header("grpc-status"), Some("5"), "{:?}", r.headers);

    let src = [
        ("source_workload", "productpage-v1"),
        ("source_principal", PRODUCTPAGE),
        ("destination_workload", "reviews-v1"),
        ("destination_principal", REVIEWS),
        ("destination_app", "reviews"),
        ("destination_cluster", "test-cluster"),
    ];
    let with = |base: &[(&'static str, &'static str)], more: &[(&'static str, &'static str)]| {
        let mut v = base.to_vec();
        v.extend_from_slice(more);
        v
    };
    let out_http = with(
        &src,
        &[
            ("reporter", "source"),
            ("request_protocol", "http"),
            ("destination_service", "reviews.default.svc.cluster.local"),
            ("connection_security_policy", "unknown"),
            ("grpc_response_status", ""),
            ("response_flags", "-"),
        ],
    );
    let out_grpc = with(
        &src,
        &[
            ("reporter", "source"),
            ("request_protocol", "grpc"),
            ("destination_service", "grpc.default.svc.cluster.local"),
            ("response_code", "200"),
        ],
    );
    wait_metrics(&outbound, "outbound h2 streams", |m| {
        let n = |extra: &[(&str, &str)]| {
            let mut l = out_http.clone();
            l.extend_from_slice(extra);
            m.get_or_zero("istio_requests_total", &l)
        };
        let g = |status: &str| {
            let mut l = out_grpc.clone();
            l.push(("grpc_response_status", status));
            m.get_or_zero("istio_requests_total", &l)
        };
        n(&[("response_code", "200")]) == 4.0
            && n(&[("response_code", "404")]) == 1.0
            && g("0") == 1.0
            && g("5") == 1.0
            && m.get_or_zero("istio_requests_total", &[]) == 7.0
    });
    let dst = [
        ("reporter", "destination"),
        ("source_workload", "productpage-v1"),
        ("source_app", "productpage"),
        ("source_principal", PRODUCTPAGE),
        ("destination_workload", "reviews-v1"),
        ("connection_security_policy", "mutual_tls"),
    ];
    wait_metrics(&inbound, "inbound h2 streams", |m| {
        let n = |extra: &[(&str, &str)]| {
            let mut l = dst.to_vec();
            l.extend_from_slice(extra);
            m.get_or_zero("istio_requests_total", &l)
        };
        n(&[("request_protocol", "http"), ("response_code", "200")]) == 4.0
            && n(&[("request_protocol", "http"), ("response_code", "404")]) == 1.0
            && n(&[("request_protocol", "grpc"), ("grpc_response_status", "0")]) == 1.0
            && n(&[("request_protocol", "grpc"), ("grpc_response_status", "5")]) == 1.0
            && m.get_or_zero("istio_requests_total", &[]) == 7.0
    });
    // Sizes: the gRPC request carried a 7-byte message (and its headers).
    let m = outbound.metrics();
    assert!(
        m.get_or_zero(
            "istio_request_bytes_sum",
            &[("request_protocol", "grpc"), ("grpc_response_status", "0")]
        ) > 7.0
    );
    assert!(m.get_or_zero("istio_response_bytes_sum", &[("request_protocol", "grpc")]) > 0.0);

    // Access logs: one line per stream on each side, as for HTTP/1.
    let outl = log_lines(&outbound_log, 7);
    assert_eq!(outl.len(), 7, "{outl:?}");
    let first = &outl[0];
    assert_eq!(first["protocol"], "HTTP/2", "{first}");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/status/200");
    assert_eq!(first["authority"], "web");
    assert_eq!(first["response_code"], 200);
    assert_eq!(first["response_flags"], "-");
    assert_eq!(first["user_agent"], "h2-telemetry");
    assert_eq!(first["upstream_cluster"], web_svc);
    assert_eq!(first["upstream_host"], to_inbound);
    assert!(
        first["x_request_id"]
            .as_str()
            .is_some_and(|s| s.len() == 36),
        "{first}"
    );
    let grpc_line = outl
        .iter()
        .find(|l| l["path"] == "/test.Echo/Fail")
        .expect("a line for the gRPC call");
    assert_eq!(grpc_line["method"], "POST");
    assert_eq!(grpc_line["protocol"], "HTTP/2");
    assert_eq!(grpc_line["upstream_cluster"], grpc_svc);
    assert!(
        grpc_line["bytes_received"].as_u64().unwrap() > 7,
        "{grpc_line}"
    );
    let inl = log_lines(&inbound_log, 7);
    assert_eq!(inl.len(), 7, "{inl:?}");
    for l in &inl {
        assert_eq!(l["protocol"], "HTTP/2", "{l}");
        assert_eq!(l["downstream_peer_principal"], PRODUCTPAGE);
    }
    // The request id went across: the inbound line of the first request
    // has the outbound's id.
    assert!(inl
        .iter()
        .any(|l| l["x_request_id"] == first["x_request_id"]));
}

/// Envoy's local replies to gRPC clients in the metrics: `:status 200`,
/// the error in `grpc_response_status`, the flag from the reason.
fn local_replies_of_h2_streams(driver: Driver) {
    let proxy = Proxy::start(
        driver,
        json!({
            "listeners": [{ "name": "http", "address": "auto", "protocol": "http",
                            "route_config": "main" }],
            "route_configs": [{ "name": "main", "virtual_hosts": [
                { "name": "only", "domains": ["svc"],
                  "routes": [{ "match": { "prefix": "/" }, "cluster": "empty" }] }] }],
            "clusters": [{ "name": "empty", "endpoints": [] }],
        }),
    );
    let addr = proxy.addr("http");
    let r = curl(&["-H", "host: nowhere"], &format!("http://{addr}/x"));
    assert_eq!(r.status, 404);
    let r = curl(&["-H", "host: svc"], &format!("http://{addr}/x"));
    assert_eq!(r.status, 503);
    // (No body: the reply is sent before any would be read.)
    let r = curl(
        &[
            "-H",
            "content-type: application/grpc",
            "-H",
            "host: svc",
            "-X",
            "POST",
        ],
        &format!("http://{addr}/test.Echo/Unary"),
    );
    assert_eq!((r.status, r.header("grpc-status")), (200, Some("14")));
    let base = [
        ("reporter", "source"),
        ("connection_security_policy", "unknown"),
    ];
    wait_metrics(&proxy, "local replies", |m| {
        let n = |extra: &[(&str, &str)]| {
            let mut l = base.to_vec();
            l.extend_from_slice(extra);
            m.get_or_zero("istio_requests_total", &l)
        };
        n(&[
            ("response_code", "404"),
            ("response_flags", "NR"),
            ("request_protocol", "http"),
        ]) == 1.0
            && n(&[
                ("response_code", "503"),
                ("response_flags", "UH"),
                ("request_protocol", "http"),
            ]) == 1.0
            && n(&[
                ("response_code", "200"),
                ("response_flags", "UH"),
                ("request_protocol", "grpc"),
                ("grpc_response_status", "14"),
            ]) == 1.0
    });
    // Counted once in the proxy's own stats too.
    let m = proxy.metrics();
    assert_eq!(
        m.get_or_zero("ringmesh_http_requests_total", &[("listener", "http")]),
        m.get_or_zero("istio_requests_total", &[])
    );
}

/// `max_requests: 1` holds per h2 stream: of two concurrent streams to a
/// slow backend, one is answered and one refused at once with 503 and
/// `x-envoy-overloaded: true`; to a gRPC client the refusal is
/// UNAVAILABLE (as Envoy maps 503).
fn circuit_breaker_on_h2_streams(driver: Driver) {
    let backend = Backend::start("slow");
    let mut config = simple_http_config(&[backend.addr()]);
    config["clusters"][0]["circuit_breakers"] = json!({ "max_requests": 1 });
    let proxy = Proxy::start(driver, config);
    let slow_url = url(&proxy, "/delay/2000");
    let slow = thread::spawn(move || curl(&["-H", "host: svc"], &slow_url));
    // The slow stream holds the cluster's only place.
    proxy.wait_metric(
        "ringmesh_cluster_upstream_rq_active_proxy",
        &[("cluster", "web")],
        1.0,
    );
    let refused = curl(&["-H", "host: svc"], &url(&proxy, "/delay/10"));
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("x-envoy-overloaded"), Some("true"));
    assert_eq!(refused.body, b"upstream overflow\n");
    let ok = slow.join().unwrap();
    assert_eq!((ok.status, ok.header("x-envoy-overloaded")), (200, None));
    // The slot was given back.
    assert_eq!(curl(&["-H", "host: svc"], &url(&proxy, "/")).status, 200);
    let m = proxy.metrics();
    assert_eq!(
        m.get(
            "ringmesh_cluster_upstream_rq_overflow_total",
            &[("cluster", "web")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get_or_zero(
            "istio_requests_total",
            &[("response_code", "503"), ("response_flags", "UO")]
        ),
        1.0
    );

    // gRPC: two concurrent calls on one connection (h2 upstream).
    let server = start_grpc_server();
    let mut config = grpc_config(server);
    config["clusters"][0]["circuit_breakers"] = json!({ "max_requests": 1 });
    let proxy = Proxy::start(driver, config);
    let addr = proxy.addr("http");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (first, second) = rt.block_on(async move {
        use tonic::codegen::http::uri::PathAndQuery;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connecting to the proxy");
        let mut a = tonic::client::Grpc::new(channel.clone());
        let mut b = tonic::client::Grpc::new(channel);
        a.ready().await.unwrap();
        b.ready().await.unwrap();
        let slow = a.unary(
            tonic::Request::new(b"1".to_vec()),
            PathAndQuery::from_static("/test.Echo/Slow"),
            grpc::Raw,
        );
        let quick = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            b.unary(
                tonic::Request::new(b"2".to_vec()),
                PathAndQuery::from_static("/test.Echo/Unary"),
                grpc::Raw,
            )
            .await
        };
        tokio::join!(slow, quick)
    });
    assert_eq!(first.expect("the first call").into_inner(), b"late");
    let e = second.expect_err("the second call is refused");
    assert_eq!(
        (e.code(), e.message()),
        (tonic::Code::Unavailable, "upstream overflow")
    );
    assert_eq!(
        e.metadata()
            .get("x-envoy-overloaded")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    proxy.wait_metric(
        "ringmesh_cluster_upstream_rq_overflow_total",
        &[("cluster", "web")],
        1.0,
    );
}

/// A keep-alive HTTP/1.1 server answering 503 to everything; counts.
fn start_503_backend() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::{
        io::{BufRead, BufReader},
        sync::{atomic::Ordering, Arc},
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s = served.clone();
    thread::spawn(move || {
        // Bounded: 200 connections, 1,000 requests each.
        for conn in l.incoming().take(200).flatten() {
            let s = s.clone();
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                for _ in 0..1000 {
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    s.fetch_add(1, Ordering::Relaxed);
                    let resp = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nx-backend: bad\r\n\r\nbad\n";
                    if w.write_all(resp).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, served)
}

/// Outlier detection hears h2 streams: an endpoint answering 503 (HTTP/1.1
/// cluster, h2 clients) or UNAVAILABLE (h2 cluster, gRPC clients) is
/// ejected after 2 in a row, then all traffic goes to the healthy one.
fn outlier_detection_on_h2_streams(driver: Driver) {
    use std::sync::atomic::Ordering;
    let od = json!({ "consecutive_5xx": 2, "base_ejection_time": "30s" });
    let good = Backend::start("good");
    let (bad, served) = start_503_backend();
    let mut config = simple_http_config(&[good.addr(), bad]);
    config["clusters"][0]["outlier_detection"] = od.clone();
    let proxy = Proxy::start(driver, config);
    let mut bad_answers = 0;
    for _ in 0..20 {
        let r = curl(&["-H", "host: svc"], &url(&proxy, "/"));
        if r.status == 503 {
            assert_eq!(r.header("x-backend"), Some("bad"));
            bad_answers += 1;
            if bad_answers == 2 {
                break;
            }
        } else {
            assert_eq!(r.status, 200);
        }
    }
    assert_eq!(bad_answers, 2);
    let before = served.load(Ordering::Relaxed);
    let out = Command::new("h2load")
        .args(["-n", "40", "-c", "2", "-m", "4", "-H", ":authority: svc"])
        .arg(url(&proxy, "/"))
        .output()
        .expect("running h2load (package nghttp2-client) failed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status codes: 40 2xx"), "{text}");
    assert_eq!(
        served.load(Ordering::Relaxed),
        before,
        "the ejected endpoint got traffic"
    );
    let m = proxy.metrics();
    assert_eq!(
        m.get(
            "ringmesh_cluster_outlier_ejections_total",
            &[("cluster", "web")]
        ),
        Some(1.0)
    );

    // gRPC to an h2 cluster: UNAVAILABLE counts as 503.
    let up = start_grpc_server();
    let down = start_grpc_server_with(true);
    let mut config = grpc_config(up);
    config["clusters"][0]["endpoints"] = json!([{ "address": up.to_string() },
                                                 { "address": down.to_string() }]);
    config["clusters"][0]["outlier_detection"] = od;
    let proxy = Proxy::start(driver, config);
    let addr = proxy.addr("http");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (failed, after) = rt.block_on(async move {
        use tonic::codegen::http::uri::PathAndQuery;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connecting to the proxy");
        let mut client = tonic::client::Grpc::new(channel);
        let mut call = async move || {
            client.ready().await.unwrap();
            client
                .unary(
                    tonic::Request::new(b"x".to_vec()),
                    PathAndQuery::from_static("/test.Echo/Unary"),
                    grpc::Raw,
                )
                .await
        };
        let mut failed = 0;
        for _ in 0..20 {
            if let Err(e) = call().await {
                assert_eq!(
                    (e.code(), e.message()),
                    (tonic::Code::Unavailable, "endpoint down")
                );
                failed += 1;
                if failed == 2 {
                    break;
                }
            }
        }
        let mut after = Vec::new();
        for _ in 0..20 {
            after.push(call().await.map(|r| r.into_inner()).map_err(|e| e.code()));
        }
        (failed, after)
    });
    assert_eq!(failed, 2);
    assert!(
        after
            .iter()
            .all(|r| r.as_deref() == Ok(&b"echo(http):x"[..])),
        "{after:?}"
    );
    let m = proxy.metrics();
    assert_eq!(
        m.get(
            "ringmesh_cluster_outlier_ejections_total",
            &[("cluster", "web")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get("ringmesh_cluster_outlier_ejected", &[("cluster", "web")]),
        Some(1.0)
    );
}

/// HTTP/1.1 clients to a `protocol: http2` cluster (an h2-only gRPC
/// server): the request goes out as an h2 stream, the answer comes back
/// as HTTP/1.1 (chunked), keep-alive holds, and the exchange is recorded
/// like any other HTTP/1.1 request.
fn h1_client_to_h2_cluster(driver: Driver) {
    let server = start_grpc_server();
    let proxy = Proxy::start(driver, grpc_config(server));
    let mut c = Client::connect(proxy.addr("http"));
    let msg = [0u8, 0, 0, 0, 2, b'h', b'i'];
    for _ in 0..3 {
        let r = c
            .request(
                "POST",
                "svc",
                "/test.Echo/Unary",
                &[("content-type", "application/grpc"), ("te", "trailers")],
                &msg,
            )
            .expect("a response on the same connection");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/grpc"));
        assert_eq!(&r.body[5..], b"echo(http):hi");
    }
    // A gRPC error arrives as trailers-only: its status is in the head.
    let r = c
        .request(
            "POST",
            "svc",
            "/test.Echo/Fail",
            &[("content-type", "application/grpc")],
            &msg,
        )
        .unwrap();
    assert_eq!((r.status, r.header("grpc-status")), (200, Some("5")));
    proxy.wait_metric(
        "istio_requests_total",
        &[("request_protocol", "http"), ("response_code", "200")],
        4.0,
    );
    assert_eq!(
        proxy
            .metrics()
            .get("ringmesh_upstream_cx_total", &[("cluster", "web")]),
        Some(1.0),
        "one multiplexed h2 connection upstream"
    );
}

on_both_drivers!(
    h1_client_to_h2_cluster,
    telemetry_of_h2_streams,
    local_replies_of_h2_streams,
    circuit_breaker_on_h2_streams,
    outlier_detection_on_h2_streams,
);

on_both_drivers!(
    reset_stream_abandons_the_upstream_request,
    drain_finishes_streams_in_flight,
    grpc_between_sidecars,
    curl_prior_knowledge,
    many_concurrent_streams,
    floods_close_the_connection,
    grpc_through_the_proxy,
    grpc_timeout_is_honoured,
);
