//! Downstream HTTP/2: one `h2::server` connection per client connection,
//! driven by the connection's task on the shard; each stream is a task of
//! its own on the same shard.
//!
//! Per stream, the same steps as an HTTP/1 exchange (`crate::http`): the
//! path is normalized, RBAC evaluated on the normalized request, the route
//! table consulted, a cluster and an endpoint picked. Then the request goes
//! upstream over HTTP/1.1 (head written here, body streamed with
//! `content-length` or chunked, response parsed with
//! `ringmesh_http1::parse_response` and its body sent back as DATA frames),
//! or over HTTP/2 for clusters with `protocol: http2` ([`super::client`]).
//! Local replies (400, 403, 404, 413, 503, 504) are HTTP/2 responses; to a
//! gRPC client they are trailers-only gRPC errors.

use std::{
    borrow::Cow,
    future::{poll_fn, Future},
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use bytes::Bytes;
use h2::{server::SendResponse, Reason, RecvStream, SendStream};
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response};
use monoio::{net::TcpStream, time::Instant};
use ringmesh_config::{authz::AuthzInput, Cluster, ListenerKind, UpstreamProtocol};
use ringmesh_http1::{
    normalize_path, parse_response, BodyFraming, ChunkedDecoder, Normalized, ParseStatus,
    RequestHead, ResponseHead,
};
use ringmesh_route::HeaderSource;

use super::{
    compat::{Compat, Tripped},
    grpc_status_for, grpc_timeout,
    guard::{Budgets, FrameGuard},
    is_connection_specific, Tel,
};
use crate::{
    io::{ReadIo, WriteIo},
    resilience::Outcome,
    shard::ShardCtx,
    stats::{record_verdict, ClusterCells, ListenerStats},
    telemetry::{Reporter, ResponseFlags, OVERFLOW_REASON, PEER_HEADER},
    tls::TlsStream,
    upstream::{acquire, ConnectError, Upstream},
};

/// Streams a client may open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Receive window per stream and for the connection.
pub const STREAM_WINDOW: u32 = 256 * 1024;
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Bytes h2 buffers per stream on the way to the client.
pub const MAX_SEND_BUFFER: usize = 64 * 1024;
/// HPACK dynamic table the client may make us keep.
pub const HEADER_TABLE_SIZE: u32 = 4096;
/// Streams a client may reset before we accept them.
pub const MAX_PENDING_ACCEPT_RESETS: usize = 50;
/// Streams we may reset for the client's protocol errors.
pub const MAX_LOCAL_ERROR_RESETS: usize = 256;
/// After a GOAWAY we initiated, how long the connection may take to flush
/// it before it is closed.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Upstream read size while streaming bodies.
const BODY_BUF: usize = 64 * 1024;

/// What every stream of a connection shares.
pub struct ConnShared {
    pub ctx: Rc<ShardCtx>,
    pub listener: Arc<str>,
    pub ls: Rc<ListenerStats>,
    pub peer: SocketAddr,
    pub orig_dst: Option<SocketAddr>,
    pub principal: Option<Box<str>>,
    pub dest: SocketAddr,
    pub sni: Option<Rc<str>>,
    /// The connection is TLS (`https` for routes, RBAC and
    /// `x-forwarded-proto`).
    pub tls: bool,
    /// The listener's downstream TLS mode: who reports its requests
    /// (inbound listeners terminate mesh mTLS).
    pub listener_tls: ringmesh_config::DownstreamTls,
}

/// Serve a plaintext connection whose first bytes (`pre`) are the h2
/// preface.
pub async fn serve_plain(
    ctx: Rc<ShardCtx>,
    listener: Arc<str>,
    ls: Rc<ListenerStats>,
    stream: TcpStream,
    conn: crate::ConnInfo,
    pre: Vec<u8>,
) {
    use monoio::io::Splitable;
    let (r, w) = stream.into_split();
    serve_io(ctx, listener, ls, conn, false, r, w, pre).await;
}

/// Serve a TLS connection that negotiated h2 (or sent the preface); `pre`
/// holds the plaintext already read.
pub async fn serve_tls(
    ctx: Rc<ShardCtx>,
    listener: Arc<str>,
    ls: Rc<ListenerStats>,
    stream: TlsStream,
    conn: crate::ConnInfo,
    pre: Vec<u8>,
) {
    let (r, w) = stream.into_split();
    serve_io(ctx, listener, ls, conn, true, r, w, pre).await;
}

/// The server settings for a listener whose header limit is
/// `max_header_bytes`.
pub fn builder(max_header_bytes: usize) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(16 * 1024)
        .max_header_list_size(max_header_bytes.min(u32::MAX as usize) as u32)
        .header_table_size(HEADER_TABLE_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_concurrent_reset_streams(MAX_PENDING_ACCEPT_RESETS);
    b
}

/// A stream the client opened.
type Accepted = (Request<RecvStream>, SendResponse<Bytes>);

enum Event {
    Accept(Option<Result<Box<Accepted>, h2::Error>>),
    Timer,
}

#[allow(clippy::too_many_arguments)]
async fn serve_io<R: ReadIo + 'static, W: WriteIo + 'static>(
    ctx: Rc<ShardCtx>,
    listener: Arc<str>,
    ls: Rc<ListenerStats>,
    conn: crate::ConnInfo,
    tls: bool,
    r: R,
    w: W,
    pre: Vec<u8>,
) {
    let limits = ctx.snapshot().limits;
    let tripped: Tripped = Rc::default();
    let io =
        Compat::new(r, w, pre).with_guard(FrameGuard::server(Budgets::default()), tripped.clone());
    let hs = builder(limits.http1.max_head_bytes).handshake::<_, Bytes>(io);
    let mut h2c = match monoio::time::timeout(limits.request_headers_timeout, hs).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(peer = %conn.peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => return,
    };
    let shared = Rc::new(ConnShared {
        ctx: ctx.clone(),
        listener: listener.clone(),
        ls,
        peer: conn.peer,
        orig_dst: conn.orig_dst,
        principal: conn.peer_identity.as_ref().map(|id| id.to_string().into()),
        dest: conn.destination(),
        sni: conn.sni.clone(),
        tls,
        listener_tls: ctx
            .snapshot()
            .listeners
            .iter()
            .find(|l| l.name == listener)
            .map_or(ringmesh_config::DownstreamTls::Disable, |l| l.tls),
    });
    let mut drain = Box::pin(ctx.drain.wait());
    let mut drained = false;
    let mut shut = false;
    // The idle timer; once the connection is closing, the close deadline.
    let mut timer: Pin<Box<monoio::time::Sleep>> =
        Box::pin(monoio::time::sleep(limits.idle_timeout));
    let mut closing = false;
    loop {
        let ev = poll_fn(|cx| {
            if !shut {
                if let Some(reason) = tripped.get() {
                    shut = true;
                    tracing::debug!(peer = %shared.peer, listener = %listener, reason, "HTTP/2 flood: connection closed (GOAWAY ENHANCE_YOUR_CALM)");
                    h2c.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                    timer = Box::pin(monoio::time::sleep(CLOSE_GRACE));
                    closing = true;
                }
            }
            if !drained && drain.as_mut().poll(cx).is_ready() {
                drained = true;
                h2c.graceful_shutdown();
                if !closing {
                    timer = Box::pin(monoio::time::sleep(limits.drain_timeout));
                    closing = true;
                }
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Timer);
            }
            h2c.poll_accept(cx)
                .map(|a| Event::Accept(a.map(|r| r.map(Box::new))))
        })
        .await;
        match ev {
            Event::Timer => {
                if closing {
                    break;
                }
                if h2c.has_streams() {
                    timer = Box::pin(monoio::time::sleep(limits.idle_timeout));
                } else {
                    h2c.graceful_shutdown();
                    timer = Box::pin(monoio::time::sleep(CLOSE_GRACE));
                    closing = true;
                }
            }
            Event::Accept(Some(Ok(accepted))) => {
                let (req, respond) = *accepted;
                if !closing {
                    timer = Box::pin(monoio::time::sleep(limits.idle_timeout));
                }
                monoio::spawn(handle_stream(shared.clone(), req, respond));
            }
            Event::Accept(Some(Err(e))) => {
                tracing::debug!(peer = %shared.peer, error = %e, "HTTP/2 connection error");
                break;
            }
            Event::Accept(None) => break,
        }
    }
}

/// A reply the proxy makes itself. Status 0: the stream is abandoned (the
/// client reset it, or the response had started): nothing to send.
pub struct Local {
    pub status: u16,
    pub body: Cow<'static, [u8]>,
    pub location: Option<Vec<u8>>,
    /// Refused by a circuit breaker: `x-envoy-overloaded: true`.
    pub overloaded: bool,
}

impl Local {
    pub fn new(status: u16, reason: &'static str) -> Local {
        Local {
            status,
            body: Cow::Borrowed(reason.as_bytes()),
            location: None,
            overloaded: false,
        }
    }

    /// 503 for a stream a circuit breaker refused (Envoy's flag `UO`).
    pub fn overflow() -> Local {
        Local {
            overloaded: true,
            ..Local::new(503, OVERFLOW_REASON)
        }
    }

    pub fn abort() -> Local {
        Local::new(0, "")
    }

    /// The reply for a failed upstream connect (as HTTP/1 words it).
    pub fn connect(cluster: &Cluster, e: ConnectError) -> Local {
        match e {
            ConnectError::NoEndpoints => Local::new(503, "no healthy upstream"),
            ConnectError::NoIdentity => Local::new(
                503,
                "upstream requires mTLS and this proxy has no certificate yet",
            ),
            ConnectError::Tls(e) => {
                tracing::debug!(cluster = %cluster.name, error = %e, "upstream TLS handshake failed");
                Local::new(503, "upstream connect error (TLS handshake failed)")
            }
            ConnectError::Overflow(_) => Local::overflow(),
            _ => Local::new(503, "upstream connect error"),
        }
    }
}

/// The request as it goes upstream.
pub struct Forward {
    pub method: http::Method,
    pub authority: String,
    /// Origin-form target (normalized when normalization changed it).
    pub target: String,
    pub headers: HeaderMap,
    pub body: RecvStream,
    pub deadline: Option<Instant>,
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

async fn handle_stream(
    sh: Rc<ConnShared>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let grpc = is_grpc(req.headers());
    let mut tel = Tel::new(&sh.ctx, &req, grpc);
    match route_stream(&sh, req, &mut respond, &mut tel).await {
        Ok(()) => {}
        // Abandoned before a response (the client reset the stream): not
        // a request anyone saw answered (as an aborted HTTP/1 exchange).
        Err(l) if l.status == 0 => {
            respond.send_reset(Reason::CANCEL);
            return;
        }
        Err(l) => send_local(&mut respond, l, &mut tel),
    }
    tel.record(&sh);
}

/// Answer with a local reply (plain text, or trailers-only gRPC).
fn send_local(respond: &mut SendResponse<Bytes>, local: Local, tel: &mut Tel) {
    tel.local = true;
    tel.flag(ResponseFlags::of_local_reply(local.status, &local.body));
    let mut reason: Vec<u8> = local.body.into_owned();
    if tel.grpc {
        let g = grpc_status_for(local.status);
        let mut r = Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "application/grpc")
            .header("grpc-status", g.to_string());
        if let Ok(v) = HeaderValue::from_bytes(&reason) {
            r = r.header("grpc-message", v);
        }
        if local.overloaded {
            r = r.header("x-envoy-overloaded", "true");
        }
        if let Ok(resp) = r.body(()) {
            tel.response_head(local.status, resp.headers());
            tel.grpc_status = Some(u16::from(g));
            if respond.send_response(resp, true).is_err() {
                tel.flag(ResponseFlags::DC);
            }
        }
        return;
    }
    reason.push(b'\n');
    let mut r = Response::builder()
        .status(local.status)
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::CONTENT_LENGTH, reason.len());
    if let Some(loc) = local.location.as_deref() {
        if let Ok(v) = HeaderValue::from_bytes(loc) {
            r = r.header(header::LOCATION, v);
        }
    }
    if local.overloaded {
        r = r.header("x-envoy-overloaded", "true");
    }
    let Ok(resp) = r.body(()) else { return };
    tel.response_head(local.status, resp.headers());
    let n = reason.len() as u64;
    match respond.send_response(resp, false) {
        Ok(mut s) => match s.send_data(Bytes::from(reason), true) {
            Ok(()) => tel.rs_bytes += n,
            Err(_) => tel.flag(ResponseFlags::DC),
        },
        Err(_) => tel.flag(ResponseFlags::DC),
    }
}

/// The request's header fields for route and RBAC matching.
struct H2Headers<'a>(Vec<(&'a [u8], &'a [u8])>);

impl<'a> H2Headers<'a> {
    fn new(h: &'a HeaderMap) -> Self {
        H2Headers(
            h.iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
                .collect(),
        )
    }
}

impl HeaderSource for H2Headers<'_> {
    fn header_count(&self) -> usize {
        self.0.len()
    }
    fn header_at(&self, i: usize) -> (&[u8], &[u8]) {
        self.0[i]
    }
}

/// Route one stream and forward it; `Err` is the local reply to send.
async fn route_stream(
    sh: &ConnShared,
    req: Request<RecvStream>,
    respond: &mut SendResponse<Bytes>,
    tel: &mut Tel,
) -> Result<(), Local> {
    let ctx = &sh.ctx;
    let snap = ctx.snapshot();
    let limits = snap.limits;
    let start = tel.start;
    let (mut parts, body) = req.into_parts();
    // The peer metadata header never reaches the application; believed
    // only on mTLS, against the verified SPIFFE ID (as for HTTP/1).
    let peer_header = parts.headers.remove(PEER_HEADER);
    if sh.listener_tls != ringmesh_config::DownstreamTls::Disable {
        tel.peer = ctx.stats.telemetry.inbound_peer(
            sh.principal.as_deref(),
            peer_header.as_ref().map(HeaderValue::as_bytes),
        );
    }
    let Some(listener) = snap.listeners.iter().find(|l| l.name == sh.listener) else {
        return Err(Local::new(503, "listener removed"));
    };
    let ListenerKind::Http { routes } = &listener.kind else {
        return Err(Local::new(503, "listener removed"));
    };
    if parts.method == http::Method::CONNECT {
        return Err(Local::new(405, "CONNECT is not supported over HTTP/2"));
    }
    let authority: String = match parts.uri.authority() {
        Some(a) => a.as_str().to_owned(),
        None => match parts.headers.get(header::HOST).map(|h| h.to_str()) {
            Some(Ok(h)) => h.to_owned(),
            _ => return Err(Local::new(400, "missing :authority")),
        },
    };
    let path = parts.uri.path();
    let query = parts.uri.query();
    let path_and_query = parts.uri.path_and_query().map_or(path, |pq| pq.as_str());
    // Normalize the path before anything reads it, as for HTTP/1: routes
    // and RBAC match the normal form, and it is what goes upstream.
    let mut target = Vec::new();
    let normalized = match normalize_path(
        path.as_bytes(),
        &listener.path_normalization,
        &mut target,
    ) {
        Ok(n) => n,
        Err(e) => {
            sh.ls.cells.rq_path_rejected.inc();
            tracing::debug!(peer = %sh.peer, peer_identity = sh.principal.as_deref(), reason = e.reason(), "rejected request path");
            return Err(Local::new(400, e.reason()));
        }
    };
    if normalized != Normalized::Unchanged {
        if let Some(q) = query {
            target.push(b'?');
            target.extend_from_slice(q.as_bytes());
        }
    }
    if normalized == Normalized::Redirect {
        return Err(Local {
            status: 307,
            body: Cow::Borrowed(b"escaped slashes in the path; follow the redirect"),
            location: Some(target),
            overloaded: false,
        });
    }
    let rewritten = normalized == Normalized::Rewritten;
    let scheme: &[u8] = if sh.tls { b"https" } else { b"http" };
    let (cluster, route_timeout) = {
        let headers = H2Headers::new(&parts.headers);
        let mut request = ringmesh_route::Request {
            method: parts.method.as_str().as_bytes(),
            scheme,
            authority: authority.as_bytes(),
            path: path.as_bytes(),
            query: query.map(str::as_bytes),
            path_and_query: Some(path_and_query.as_bytes()),
            headers: &headers,
        };
        if rewritten {
            request = request.with_target(&target);
        }
        if !listener.rbac.is_empty() {
            let verdict = listener.rbac.evaluate(&AuthzInput {
                request: Some(&request),
                peer: sh.peer.ip(),
                destination: sh.dest,
                principal: sh.principal.as_deref(),
                sni: sh.sni.as_deref(),
            });
            record_verdict(
                &sh.ls,
                &sh.listener,
                &verdict,
                sh.peer,
                sh.principal.as_deref(),
                Some(&request),
            );
            if verdict.denied.is_some() {
                return Err(Local::new(403, "RBAC: access denied"));
            }
        }
        let Some(route) = routes.route_request(&request) else {
            return Err(Local::new(404, "route not found"));
        };
        let picked = route.action.pick(|| ctx.next_u64());
        (
            snap.clusters[picked.index as usize].clone(),
            route.action.timeout,
        )
    };
    // The route's timeout, or the client's grpc-timeout when shorter.
    let client_timeout = parts
        .headers
        .get("grpc-timeout")
        .and_then(|v| grpc_timeout(v.as_bytes()));
    let timeout = match (route_timeout, client_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let ccells = ctx.stats.cluster(cluster.id, &cluster.name);
    let target = if rewritten {
        String::from_utf8(target).map_err(|_| Local::new(400, "invalid path"))?
    } else {
        path_and_query.to_owned()
    };
    let mut headers = parts.headers;
    // One request id for the upstream and the access log.
    if let Some(id) = request_id(ctx, &headers) {
        if let Ok(v) = HeaderValue::from_str(&id) {
            headers.insert("x-request-id", v);
            if let Some(l) = &mut tel.log {
                l.request_id = Some(id.into_bytes());
            }
        }
    }
    tel.cluster = Some(cluster.clone());
    tel.ccells = Some(ccells.clone());
    // Requests to mesh (ISTIO_MUTUAL) clusters carry our metadata.
    let reporter = Reporter::of(sh.listener_tls, Some(&cluster));
    if reporter == Reporter::Source && cluster.tls.is_some() {
        let own = ctx.stats.telemetry.own_header(&snap);
        if let Ok(v) = HeaderValue::from_bytes(&own) {
            headers.insert(PEER_HEADER, v);
        }
    }
    let fwd = Forward {
        method: parts.method,
        authority,
        target,
        headers,
        body,
        deadline: timeout.map(|t| start + t),
    };
    if let Some(n) = limits.max_request_body {
        let cl = fwd
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if cl.is_some_and(|cl| cl > n) {
            return Err(Local::new(413, "request body too large"));
        }
    }
    // The cluster's circuit breaker: a place under max_requests for the
    // whole stream (all shards count together).
    let _admitted = ctx
        .pools
        .lb
        .state(&cluster)
        .admit(&cluster.circuit_breakers)
        .map_err(|_| Local::overflow())?;
    let r = match cluster.protocol {
        UpstreamProtocol::Http2 => {
            super::client::forward(sh, &cluster, &ccells, fwd, respond, tel).await
        }
        // HTTP/2 between sidecars when the peer agrees.
        UpstreamProtocol::Http1 if cluster.tls.is_some() => {
            use super::client::{forward_on, sidecar, Sidecar};
            match guarded(respond, fwd.deadline, sidecar(sh, &cluster, &ccells)).await? {
                None => Err(Local::new(504, "upstream request timeout")),
                Some(Err(l)) => Err(l),
                Some(Ok(Sidecar::H2(ready))) => {
                    forward_on(sh, &cluster, &ccells, fwd, respond, ready, tel).await
                }
                Some(Ok(Sidecar::Http1(up))) => {
                    forward_http1(sh, &cluster, &ccells, fwd, respond, Some(up), tel).await
                }
                Some(Ok(Sidecar::Pooled)) => {
                    forward_http1(sh, &cluster, &ccells, fwd, respond, None, tel).await
                }
            }
        }
        UpstreamProtocol::Http1 => {
            forward_http1(sh, &cluster, &ccells, fwd, respond, None, tel).await
        }
    };
    if let Err(l) = &r {
        if l.status == 504 {
            ccells.rq_timeout.inc();
        }
    }
    r
}

/// [`within`], unless the client resets the stream first: then the
/// request is abandoned (`Err(Local::abort())` through `?`), so a reset
/// stream stops costing upstream work at once (rapid reset).
pub async fn guarded<F: Future>(
    respond: &mut SendResponse<Bytes>,
    deadline: Option<Instant>,
    fut: F,
) -> Result<Option<F::Output>, Local> {
    let reset = poll_fn(|cx| respond.poll_reset(cx));
    monoio::select! {
        r = within(deadline, fut) => Ok(r),
        _ = reset => Err(Local::abort()),
    }
}

/// `fut` within `deadline` (when there is one); `None` on timeout.
pub async fn within<F: std::future::Future>(
    deadline: Option<Instant>,
    fut: F,
) -> Option<F::Output> {
    match deadline {
        Some(d) => monoio::time::timeout_at(d, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// The `x-forwarded-for` value: what the client sent, then its address.
pub fn forwarded_for(headers: &HeaderMap, peer: SocketAddr) -> String {
    let mut out = String::new();
    for v in headers.get_all("x-forwarded-for") {
        if let Ok(v) = v.to_str() {
            if !v.is_empty() {
                out.push_str(v);
                out.push_str(", ");
            }
        }
    }
    out.push_str(&peer.ip().to_string());
    out
}

/// A fresh `x-request-id` when the request has none.
pub fn request_id(ctx: &ShardCtx, headers: &HeaderMap) -> Option<String> {
    if headers.contains_key("x-request-id") {
        return None;
    }
    let id = ctx.request_id_if_missing(&RequestHead::default())?;
    Some(String::from_utf8_lossy(&id).into_owned())
}

/// The HTTP/1.1 request head for `f`. Cookie fields (which HTTP/2 may
/// split) are joined into one (RFC 9113 §8.2.3).
pub fn http1_head(sh: &ConnShared, f: &Forward, framing: BodyFraming, out: &mut Vec<u8>) {
    out.extend_from_slice(f.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(f.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(f.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &f.headers {
        let n = name.as_str();
        if is_connection_specific(n)
            || matches!(
                n,
                "te" | "host"
                    | "content-length"
                    | "expect"
                    | "x-forwarded-for"
                    | "x-forwarded-proto"
            )
        {
            continue;
        }
        if n == "cookie" {
            cookies.push(value.as_bytes());
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !cookies.is_empty() {
        out.extend_from_slice(b"cookie: ");
        out.extend_from_slice(&cookies.join(&b"; "[..]));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    out.extend_from_slice(forwarded_for(&f.headers, sh.peer).as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(if sh.tls { b"https" } else { b"http" });
    out.extend_from_slice(b"\r\n");
    if let Some(id) = request_id(&sh.ctx, &f.headers) {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        BodyFraming::ContentLength(n) => {
            out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

fn http1_method(m: &http::Method) -> ringmesh_http1::Method {
    use ringmesh_http1::Method as M;
    match *m {
        http::Method::GET => M::Get,
        http::Method::HEAD => M::Head,
        http::Method::POST => M::Post,
        http::Method::PUT => M::Put,
        http::Method::DELETE => M::Delete,
        http::Method::OPTIONS => M::Options,
        http::Method::TRACE => M::Trace,
        http::Method::PATCH => M::Patch,
        http::Method::CONNECT => M::Connect,
        _ => M::Other,
    }
}

/// Send `data` on `send` as flow control allows, waiting at most `idle`
/// for each grant of capacity. `Err` when the client reset the stream or
/// went quiet.
pub async fn send_flow(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    idle: Duration,
) -> Result<(), ()> {
    if data.is_empty() {
        return send.send_data(data, end).map_err(|_| ());
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = monoio::time::timeout(
            idle,
            poll_fn(|cx| loop {
                if send.capacity() > 0 {
                    return Poll::Ready(Ok(send.capacity()));
                }
                match send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(0))) => continue,
                    Poll::Ready(Some(Ok(n))) => return Poll::Ready(Ok(n)),
                    Poll::Ready(Some(Err(_))) | Poll::Ready(None) => return Poll::Ready(Err(())),
                    Poll::Pending => {
                        if send.poll_reset(cx).is_ready() {
                            return Poll::Ready(Err(()));
                        }
                        return Poll::Pending;
                    }
                }
            }),
        )
        .await;
        let n = match granted {
            Ok(Ok(n)) => n,
            _ => return Err(()),
        };
        let chunk = data.split_to(n.min(data.len()));
        let last = data.is_empty() && end;
        send.send_data(chunk, last).map_err(|_| ())?;
    }
    Ok(())
}

/// The next DATA of a request body, with its flow-control capacity given
/// back: `Ok(None)` at the end, `Err` when the client reset or idled.
pub async fn next_data(body: &mut RecvStream, idle: Duration) -> Result<Option<Bytes>, ()> {
    match monoio::time::timeout(idle, body.data()).await {
        Ok(Some(Ok(b))) => {
            let _ = body.flow_control().release_capacity(b.len());
            Ok(Some(b))
        }
        Ok(None) => Ok(None),
        _ => Err(()),
    }
}

/// The peer metadata of a response: removed from `headers` (it never
/// reaches the client), believed for requests to mesh (ISTIO_MUTUAL)
/// clusters; toward the mTLS client of an inbound listener, ours is added.
pub fn response_peer(sh: &ConnShared, cluster: &Cluster, tel: &mut Tel, headers: &mut HeaderMap) {
    let theirs = headers.remove(PEER_HEADER);
    let ctx = &sh.ctx;
    match Reporter::of(sh.listener_tls, Some(cluster)) {
        Reporter::Source if cluster.tls.is_some() => {
            tel.peer = ctx
                .stats
                .telemetry
                .outbound_peer(theirs.as_ref().map(HeaderValue::as_bytes));
        }
        Reporter::Destination if sh.principal.is_some() => {
            let own = ctx.stats.telemetry.own_header(&ctx.snapshot());
            if let Ok(v) = HeaderValue::from_bytes(&own) {
                headers.insert(PEER_HEADER, v);
            }
        }
        _ => {}
    }
}

/// Tell outlier detection how an exchange with `addr` ended.
pub fn report(ctx: &ShardCtx, cluster: &Cluster, addr: SocketAddr, outcome: Outcome) {
    ctx.pools.lb.state(cluster).report(cluster, addr, outcome);
}

/// Forward to an HTTP/1.1 upstream (the downgrade).
async fn forward_http1(
    sh: &ConnShared,
    cluster: &Arc<Cluster>,
    ccells: &Arc<ClusterCells>,
    mut f: Forward,
    respond: &mut SendResponse<Bytes>,
    mut fresh: Option<Upstream>,
    tel: &mut Tel,
) -> Result<(), Local> {
    let ctx = &sh.ctx;
    let limits = ctx.snapshot().limits;
    let idle = limits.idle_timeout;
    let content_length = f
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let empty = f.body.is_end_stream();
    let framing = if empty {
        match content_length {
            Some(_) => BodyFraming::ContentLength(0),
            None if matches!(
                f.method,
                http::Method::POST | http::Method::PUT | http::Method::PATCH
            ) =>
            {
                BodyFraming::ContentLength(0)
            }
            None => BodyFraming::None,
        }
    } else {
        match content_length {
            Some(n) => BodyFraming::ContentLength(n),
            None => BodyFraming::Chunked,
        }
    };
    let mut head = Vec::with_capacity(1024);
    http1_head(sh, &f, framing, &mut head);
    let deadline = f.deadline;

    // Connect and send the head; a reused connection found dead before any
    // response byte is replaced (the head alone is always replayable).
    let mut attempts = 0;
    let mut up: Upstream = loop {
        attempts += 1;
        if let Some(mut up) = fresh.take() {
            // A connection opened for this request (no stale-retry).
            ccells.rq_total.inc();
            let len = head.len();
            let (r, _) = up.stream.write_range(head, len).await;
            match r {
                Ok(_) => break up,
                Err(_) => {
                    report(ctx, cluster, up.addr, Outcome::LocalFailure);
                    return Err(Local::new(503, "upstream write failed"));
                }
            }
        }
        let acquiring = acquire(&ctx.pools, cluster, ccells, idle, true, sh.orig_dst, || {
            ctx.client_tls(cluster)
        });
        let mut up = match guarded(respond, deadline, acquiring).await? {
            None => return Err(Local::new(504, "upstream request timeout")),
            Some(Err(e)) => return Err(Local::connect(cluster, e)),
            Some(Ok(u)) => u,
        };
        ccells.rq_total.inc();
        let len = head.len();
        let (r, h) = up.stream.write_range(head, len).await;
        head = h;
        match r {
            Ok(_) => break up,
            Err(_) if up.reused && attempts < 3 => continue,
            Err(_) => {
                report(ctx, cluster, up.addr, Outcome::LocalFailure);
                return Err(Local::new(503, "upstream write failed"));
            }
        }
    };
    tel.upstream_host = Some(up.addr);

    // The request body.
    if !empty {
        let chunked = framing == BodyFraming::Chunked;
        let mut total = 0u64;
        let mut out = Vec::with_capacity(BODY_BUF);
        let mut finished = false;
        loop {
            let data = match within(deadline, next_data(&mut f.body, idle)).await {
                None => return Err(Local::new(504, "upstream request timeout")),
                Some(Err(())) => return Err(Local::abort()),
                Some(Ok(d)) => d,
            };
            out.clear();
            match data {
                Some(b) => {
                    if b.is_empty() {
                        continue;
                    }
                    total += b.len() as u64;
                    if limits.max_request_body.is_some_and(|l| total > l) {
                        return Err(Local::new(413, "request body too large"));
                    }
                    sh.ls.cells.rx_bytes.add(b.len() as u64);
                    tel.rq_bytes.set(tel.rq_bytes.get() + b.len() as u64);
                    if chunked {
                        out.extend_from_slice(format!("{:x}\r\n", b.len()).as_bytes());
                        out.extend_from_slice(&b);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(&b);
                    }
                }
                None => {
                    finished = true;
                    if chunked {
                        out.extend_from_slice(b"0\r\n\r\n");
                    } else if Some(total) != content_length {
                        // h2 checks content-length against DATA too.
                        return Err(Local::new(400, "request body shorter than content-length"));
                    }
                }
            }
            if !out.is_empty() {
                let len = out.len();
                let (r, o) = up.stream.write_range(out, len).await;
                out = o;
                if r.is_err() {
                    report(ctx, cluster, up.addr, Outcome::LocalFailure);
                    return Err(Local::new(
                        503,
                        "upstream reset while sending the request body",
                    ));
                }
            }
            if finished || (!chunked && Some(total) == content_length) {
                break;
            }
        }
    }

    // The response head (1xx skipped).
    let method = http1_method(&f.method);
    let mut rhead = ResponseHead::default();
    let mut ubuf: Vec<u8> = Vec::with_capacity(8 * 1024);
    loop {
        if !ubuf.is_empty() {
            match parse_response(&ubuf, &limits.http1, method, &mut rhead) {
                Ok(ParseStatus::Complete(n)) => {
                    if rhead.status == 101 {
                        report(ctx, cluster, up.addr, Outcome::Status(502));
                        return Err(Local::new(502, "upstream switched protocols unexpectedly"));
                    }
                    if (100..200).contains(&rhead.status) {
                        ubuf.drain(..n);
                        continue;
                    }
                    break;
                }
                Ok(ParseStatus::Partial) => {}
                Err(e) => {
                    tracing::debug!(cluster = %cluster.name, error = %e, "invalid response head from upstream");
                    report(ctx, cluster, up.addr, Outcome::Status(502));
                    return Err(Local::new(502, "upstream sent an invalid response"));
                }
            }
        }
        let r = match guarded(respond, deadline, up.stream.read_into(ubuf)).await? {
            None => {
                report(ctx, cluster, up.addr, Outcome::LocalFailure);
                return Err(Local::new(504, "upstream request timeout"));
            }
            Some(r) => r,
        };
        match r {
            (Ok(n), b) if n > 0 => ubuf = b,
            (_, b) => {
                report(ctx, cluster, up.addr, Outcome::LocalFailure);
                return Err(if b.is_empty() {
                    Local::new(
                        503,
                        "upstream connect error or disconnect/reset before headers",
                    )
                } else {
                    Local::new(502, "upstream sent a truncated response head")
                });
            }
        }
    }

    // The response head downstream.
    let status = rhead.status;
    report(ctx, cluster, up.addr, Outcome::Status(status));
    let mut resp = Response::builder().status(status);
    for h in &rhead.headers {
        if h.hop_by_hop {
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(h.name.get(&ubuf)) else {
            continue;
        };
        if is_connection_specific(name.as_str()) || name == header::TE {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(h.value.get(&ubuf)) {
            resp = resp.header(name, v);
        }
    }
    let Ok(mut resp) = resp.body(()) else {
        return Err(Local::new(502, "upstream sent an invalid response"));
    };
    response_peer(sh, cluster, tel, resp.headers_mut());
    tel.response_head(status, resp.headers());
    let head_len = rhead.head_len;
    let no_body = method == ringmesh_http1::Method::Head
        || matches!(
            rhead.framing,
            BodyFraming::None | BodyFraming::ContentLength(0)
        );
    let mut send = match respond.send_response(resp, no_body) {
        Ok(s) => s,
        Err(_) => {
            tel.flag(ResponseFlags::DC);
            return Ok(());
        }
    };
    let mut reusable = !rhead.close;
    if no_body {
        if ubuf.len() > head_len {
            reusable = false;
        }
        if reusable && !ctx.drain.is_fired() {
            ctx.pools.checkin(up);
        }
        return Ok(());
    }

    // The response body, as DATA frames.
    enum Rb {
        Len(u64),
        Chunked(ChunkedDecoder),
        UntilClose,
    }
    let mut rb = match rhead.framing {
        BodyFraming::ContentLength(n) => Rb::Len(n),
        BodyFraming::Chunked => Rb::Chunked(ChunkedDecoder::new()),
        _ => Rb::UntilClose,
    };
    ubuf.drain(..head_len);
    let mut done = false;
    let mut ok = true;
    loop {
        if !ubuf.is_empty() {
            let (data, consumed) = match &mut rb {
                Rb::Len(rem) => {
                    let n = (*rem).min(ubuf.len() as u64) as usize;
                    *rem -= n as u64;
                    done = *rem == 0;
                    (Bytes::copy_from_slice(&ubuf[..n]), n)
                }
                Rb::Chunked(d) => {
                    let mut out = Vec::with_capacity(ubuf.len());
                    match d.scan_with(&ubuf, |r| out.extend_from_slice(&ubuf[r])) {
                        Ok(n) => {
                            done = d.is_done();
                            (Bytes::from(out), n)
                        }
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                }
                Rb::UntilClose => (Bytes::copy_from_slice(&ubuf), ubuf.len()),
            };
            let dlen = data.len() as u64;
            if send_flow(&mut send, data, done, idle).await.is_err() {
                // The client went away: the upstream is mid-response.
                tel.flag(ResponseFlags::DC);
                return Ok(());
            }
            sh.ls.cells.tx_bytes.add(dlen);
            tel.rs_bytes += dlen;
            if done && consumed < ubuf.len() {
                reusable = false;
            }
            ubuf.drain(..consumed);
            if done {
                break;
            }
        }
        ubuf.clear();
        if ubuf.capacity() < BODY_BUF {
            ubuf.reserve(BODY_BUF);
        }
        match monoio::time::timeout(idle, up.stream.read_into(ubuf)).await {
            Ok((Ok(n), b)) if n > 0 => ubuf = b,
            Ok((Ok(_), _)) if matches!(rb, Rb::UntilClose) => {
                let _ = send.send_data(Bytes::new(), true);
                done = true;
                reusable = false;
                break;
            }
            _ => {
                ok = false;
                break;
            }
        }
    }
    if !ok || !done {
        tel.flag(ResponseFlags::UC);
        send.send_reset(Reason::INTERNAL_ERROR);
        return Ok(());
    }
    if reusable && !ctx.drain.is_fired() {
        ctx.pools.checkin(up);
    }
    Ok(())
}
