//! Upstream HTTP/2 for clusters with `protocol: http2` (gRPC backends):
//! one multiplexed `h2::client` connection per endpoint (and TLS
//! settings) per shard, reused while it accepts streams
//! (`SendRequest::ready`), closed when idle.
//!
//! Requests go out with their body streamed by a task of their own (so a
//! bidirectional gRPC stream flows both ways at once), responses come back
//! with their trailers (`grpc-status`, `grpc-message`). Resets propagate
//! both ways: a client reset drops the upstream stream (h2 sends
//! RST_STREAM CANCEL), an upstream reset resets the client's stream with
//! the same code.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    future::poll_fn,
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use h2::{client::SendRequest, server::SendResponse, Reason, RecvStream, SendStream};
use http::{header, HeaderMap, HeaderValue, Request, Response};
use monoio::{
    io::{OwnedReadHalf, OwnedWriteHalf, Splitable},
    net::TcpStream,
};
use ringmesh_config::Cluster;
use rustls::pki_types::ServerName;

use super::{
    compat::Compat,
    grpc_status_of, header_bytes, http_status_for_grpc, is_connection_specific,
    server::{
        forwarded_for, guarded, next_data, report, request_id, response_peer, send_flow, within,
        ConnShared, Forward, Local, CONNECTION_WINDOW, MAX_SEND_BUFFER, STREAM_WINDOW,
    },
    Tel,
};
use crate::{
    io::{ReadIo, WriteIo},
    resilience::{self, Held, Outcome, Overflow},
    shard::ShardCtx,
    stats::ClusterCells,
    telemetry::{ResponseFlags, PEER_HEADER},
    tls::{TlsReadHalf, TlsWriteHalf},
    upstream::{connect, ClientTls, ConnectError, UpStream, Upstream},
};

/// How long a peer that chose HTTP/1.1 over h2 is not offered h2 again.
const H1_ONLY_FOR: Duration = Duration::from_secs(60);
/// How often an idle upstream connection checks whether to close.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The read half of an upstream connection.
pub enum UpRead {
    Plain(OwnedReadHalf<TcpStream>),
    Tls(TlsReadHalf),
}

/// The write half of an upstream connection.
pub enum UpWrite {
    Plain(OwnedWriteHalf<TcpStream>),
    Tls(TlsWriteHalf),
}

impl ReadIo for UpRead {
    async fn read_into(&mut self, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        match self {
            UpRead::Plain(s) => s.read_into(buf).await,
            UpRead::Tls(s) => s.read_into(buf).await,
        }
    }
}

impl WriteIo for UpWrite {
    async fn write_range(&mut self, buf: Vec<u8>, end: usize) -> (std::io::Result<usize>, Vec<u8>) {
        match self {
            UpWrite::Plain(s) => s.write_range(buf, end).await,
            UpWrite::Tls(s) => s.write_range(buf, end).await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            UpWrite::Plain(s) => WriteIo::shutdown(s).await,
            UpWrite::Tls(s) => WriteIo::shutdown(s).await,
        }
    }
}

/// Split an upstream stream for [`Compat`].
pub fn split(s: UpStream) -> (UpRead, UpWrite) {
    match s {
        UpStream::Plain(s) => {
            let (r, w) = s.into_split();
            (UpRead::Plain(r), UpWrite::Plain(w))
        }
        UpStream::Tls(s) => {
            let (r, w) = s.into_split();
            (UpRead::Tls(r), UpWrite::Tls(w))
        }
    }
}

struct Entry {
    send: SendRequest<Bytes>,
    /// Streams in flight on the connection.
    inflight: Rc<Cell<usize>>,
    /// Tells this connection from a later one to the same endpoint.
    id: u64,
}

type Key = (SocketAddr, u64);

thread_local! {
    /// This shard's h2 connections (a shard is one thread).
    static POOL: RefCell<HashMap<Key, Entry>> = RefCell::default();
    /// Client TLS configurations offering ALPN `h2`, by TLS settings key.
    static TLS: RefCell<HashMap<u64, ClientTls>> = RefCell::default();
    /// The same offering `h2` then `http/1.1` (sidecars, [`sidecar`]).
    static TLS_AUTO: RefCell<HashMap<u64, ClientTls>> = RefCell::default();
    /// Peers that chose HTTP/1.1 when offered h2, and when.
    static H1_ONLY: RefCell<HashMap<Key, std::time::Instant>> = RefCell::default();
}

/// Open h2 connections on this shard (tests, admin).
pub fn pooled_connections() -> usize {
    POOL.with(|p| p.borrow().len())
}

type TlsCache = std::thread::LocalKey<RefCell<HashMap<u64, ClientTls>>>;

/// The cluster's client TLS offering `alpn` (`None`: plaintext), cached
/// in `cache` by TLS settings.
fn client_tls(
    ctx: &ShardCtx,
    cluster: &Cluster,
    cache: &'static TlsCache,
    alpn: &[&[u8]],
) -> Result<Option<ClientTls>, ConnectError> {
    let Some(settings) = cluster.tls.as_deref() else {
        return Ok(None);
    };
    if let Some(c) = cache.with(|t| t.borrow().get(&settings.key).cloned()) {
        return Ok(Some(c));
    }
    let Some(mesh) = ctx.shared.identity.mesh() else {
        return Err(ConnectError::NoIdentity);
    };
    let config = ringmesh_tls::client_config(
        mesh.resolver.clone(),
        mesh.bundle.clone(),
        &mesh.trust_domain,
        settings.subject_alt_names.clone(),
        alpn,
    )
    .map_err(|e| ConnectError::TlsConfig(e.to_string()))?;
    let sni = settings
        .sni
        .as_ref()
        .and_then(|s| ServerName::try_from(s.clone()).ok());
    let c = ClientTls { config, sni };
    cache.with(|t| t.borrow_mut().insert(settings.key, c.clone()));
    Ok(Some(c))
}

/// A connection ready for one more stream, and what the stream holds
/// while it lives.
pub struct Ready {
    pub send: SendRequest<Bytes>,
    /// The endpoint (outlier detection reports).
    pub addr: SocketAddr,
    _inflight: InFlight,
    /// The stream counted on its endpoint (least request).
    _endpoint: resilience::InFlight,
}

impl Ready {
    fn new(
        cluster: &Cluster,
        ctx: &ShardCtx,
        addr: SocketAddr,
        send: SendRequest<Bytes>,
        inflight: InFlight,
    ) -> Ready {
        Ready {
            send,
            addr,
            _inflight: inflight,
            _endpoint: resilience::InFlight::new(ctx.pools.lb.state(cluster).endpoint(addr)),
        }
    }
}

/// A place under the cluster's `max_connections` for a new connection.
fn connection_slot(ctx: &ShardCtx, cluster: &Cluster) -> Result<Held, Local> {
    ctx.pools
        .lb
        .state(cluster)
        .hold(Overflow::Connections, &cluster.circuit_breakers)
        .ok_or_else(Local::overflow)
}

/// A pooled h2 connection to `key`, ready for a stream.
async fn pooled(key: Key, ccells: &ClusterCells) -> Option<(SendRequest<Bytes>, InFlight)> {
    let entry = POOL.with(|p| {
        p.borrow()
            .get(&key)
            .map(|e| (e.send.clone(), e.id, e.inflight.clone()))
    });
    let (send, id, inflight) = entry?;
    match send.ready().await {
        Ok(s) => {
            ccells.cx_pool_reuse.inc();
            Some((s, InFlight::new(inflight)))
        }
        Err(_) => {
            forget(key, id);
            None
        }
    }
}

/// A stream-ready sender to some endpoint of `cluster`: a pooled
/// connection when one is ready, else a new one; connect failures move on
/// to the next endpoint (up to three attempts).
pub(super) async fn sender(
    ctx: &Rc<ShardCtx>,
    orig_dst: Option<SocketAddr>,
    cluster: &Cluster,
    ccells: &Arc<ClusterCells>,
) -> Result<Ready, Local> {
    let tls_key = cluster.tls.as_ref().map_or(0, |t| t.key);
    let attempts = cluster.endpoints.len().clamp(1, 3);
    let mut last = Local::new(503, "no healthy upstream");
    for _ in 0..attempts {
        let Some(addr) = ctx.pools.pick(cluster, orig_dst) else {
            return Err(Local::new(503, "no healthy upstream"));
        };
        let key = (addr, tls_key);
        if let Some((send, inflight)) = pooled(key, ccells).await {
            return Ok(Ready::new(cluster, ctx, addr, send, inflight));
        }
        let slot = connection_slot(ctx, cluster)?;
        let tls = client_tls(ctx, cluster, &TLS, &[ringmesh_tls::ALPN_H2])
            .map_err(|e| Local::connect(cluster, e))?;
        let up = match connect(
            addr,
            cluster.connect_timeout,
            ccells,
            tls.as_ref().map(|t| (t, tls_key)),
        )
        .await
        {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(cluster = %cluster.name, %addr, error = %e, "upstream connect failed");
                if cluster.kind != ringmesh_config::ClusterKind::OriginalDst {
                    report(ctx, cluster, addr, Outcome::LocalFailure);
                }
                last = Local::connect(cluster, e);
                continue;
            }
        };
        match start_h2(ctx, cluster, ccells, key, up, slot).await {
            Ok((send, inflight)) => return Ok(Ready::new(cluster, ctx, addr, send, inflight)),
            Err(l) => {
                report(ctx, cluster, addr, Outcome::LocalFailure);
                last = l;
            }
        }
    }
    Err(last)
}

/// Run the h2 handshake on a new connection, pool it, and drive it on a
/// task of its own until it fails or idles out; the connection holds
/// `slot` (its place under the cluster's `max_connections`) while open.
async fn start_h2(
    ctx: &Rc<ShardCtx>,
    cluster: &Cluster,
    ccells: &ClusterCells,
    key: Key,
    up: Upstream,
    slot: Held,
) -> Result<(SendRequest<Bytes>, InFlight), Local> {
    let addr = key.0;
    let (stream, active) = up.into_parts();
    let (r, w) = split(stream);
    let limits = ctx.snapshot().limits;
    let mut b = h2::client::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_header_list_size(limits.http1.max_head_bytes.min(u32::MAX as usize) as u32)
        .enable_push(false);
    let hs = b.handshake::<_, Bytes>(Compat::new(r, w, Vec::new()));
    let (send, conn) = match monoio::time::timeout(cluster.connect_timeout, hs).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::debug!(cluster = %cluster.name, %addr, error = %e, "upstream HTTP/2 handshake failed");
            ccells.cx_connect_fail.inc();
            return Err(Local::new(
                503,
                "upstream connect error (HTTP/2 handshake failed)",
            ));
        }
        Err(_) => {
            ccells.cx_connect_fail.inc();
            return Err(Local::new(
                503,
                "upstream connect error (HTTP/2 handshake timeout)",
            ));
        }
    };
    let id = ctx.next_u64();
    let inflight = Rc::new(Cell::new(0));
    POOL.with(|p| {
        p.borrow_mut().insert(
            key,
            Entry {
                send: send.clone(),
                inflight: inflight.clone(),
                id,
            },
        )
    });
    let watch = inflight.clone();
    let c = ctx.clone();
    monoio::spawn(async move {
        // Holds `active` (upstream_cx_active) and the connection's place
        // under max_connections as long as it runs.
        let _active = active;
        let _slot = slot;
        let mut conn = std::pin::pin!(conn);
        let mut idle_since: Option<monoio::time::Instant> = None;
        loop {
            let tick = monoio::time::sleep(IDLE_CHECK);
            let ended = monoio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection ended");
                    }
                    true
                }
                _ = tick => false,
            };
            if ended {
                break;
            }
            if watch.get() > 0 {
                idle_since = None;
                continue;
            }
            let since = *idle_since.get_or_insert_with(monoio::time::Instant::now);
            if c.drain.is_fired() || since.elapsed() >= c.snapshot().limits.idle_timeout {
                break;
            }
        }
        forget(key, id);
    });
    match send.ready().await {
        Ok(s) => Ok((s, InFlight::new(inflight))),
        Err(_) => Err(Local::new(
            503,
            "upstream connect error or disconnect/reset before headers",
        )),
    }
}

/// How an h2 stream reaches an `ISTIO_MUTUAL` HTTP/1.1 cluster.
pub enum Sidecar {
    /// HTTP/2 between the sidecars (the peer chose ALPN `h2`).
    H2(Ready),
    /// A new connection on which the peer chose HTTP/1.1.
    Http1(Upstream),
    /// The peer is known to refuse h2: the ordinary HTTP/1.1 pool.
    Pooled,
}

/// For a downstream h2 stream to an `ISTIO_MUTUAL` cluster of HTTP/1.1:
/// offer ALPN `h2`, `http/1.1` and use HTTP/2 between the sidecars when
/// the peer (another ringmesh sidecar, or an Envoy that offers h2) agrees.
/// Peers that chose HTTP/1.1 are remembered for a while, so their
/// connections come from the HTTP/1.1 pool.
pub async fn sidecar(
    sh: &ConnShared,
    cluster: &Cluster,
    ccells: &Arc<ClusterCells>,
) -> Result<Sidecar, Local> {
    let ctx = &sh.ctx;
    let tls_key = cluster.tls.as_ref().map_or(0, |t| t.key);
    let Some(addr) = ctx.pools.pick(cluster, sh.orig_dst) else {
        return Err(Local::new(503, "no healthy upstream"));
    };
    let key = (addr, tls_key);
    if let Some((send, inflight)) = pooled(key, ccells).await {
        return Ok(Sidecar::H2(Ready::new(cluster, ctx, addr, send, inflight)));
    }
    let refused = H1_ONLY.with(|m| {
        let mut m = m.borrow_mut();
        match m.get(&key) {
            Some(t) if t.elapsed() < H1_ONLY_FOR => true,
            Some(_) => {
                m.remove(&key);
                false
            }
            None => false,
        }
    });
    if refused {
        return Ok(Sidecar::Pooled);
    }
    let tls = client_tls(
        ctx,
        cluster,
        &TLS_AUTO,
        &[ringmesh_tls::ALPN_H2, ringmesh_tls::ALPN_HTTP11],
    )
    .map_err(|e| Local::connect(cluster, e))?;
    let slot = connection_slot(ctx, cluster)?;
    let up = match connect(
        addr,
        cluster.connect_timeout,
        ccells,
        tls.as_ref().map(|t| (t, tls_key)),
    )
    .await
    {
        Ok(u) => u,
        // The HTTP/1.1 path tries the other endpoints (and reports).
        Err(_) => return Ok(Sidecar::Pooled),
    };
    let h2 =
        matches!(&up.stream, UpStream::Tls(t) if t.alpn_protocol() == Some(ringmesh_tls::ALPN_H2));
    if !h2 {
        H1_ONLY.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() >= 4096 {
                m.clear();
            }
            m.insert(key, std::time::Instant::now());
        });
        return Ok(Sidecar::Http1(up));
    }
    let (send, inflight) = match start_h2(ctx, cluster, ccells, key, up, slot).await {
        Ok(x) => x,
        Err(l) => {
            report(ctx, cluster, addr, Outcome::LocalFailure);
            return Err(l);
        }
    };
    Ok(Sidecar::H2(Ready::new(cluster, ctx, addr, send, inflight)))
}

/// Counts a stream on its connection while it lives.
pub struct InFlight(Rc<Cell<usize>>);

impl InFlight {
    fn new(c: Rc<Cell<usize>>) -> InFlight {
        c.set(c.get() + 1);
        InFlight(c)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

fn forget(key: Key, id: u64) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.get(&key).is_some_and(|e| e.id == id) {
            p.remove(&key);
        }
    });
}

/// The request head for the upstream: the client's fields less the
/// connection-specific ones, plus the proxy's own.
fn upstream_request(sh: &ConnShared, f: &Forward) -> Result<Request<()>, Local> {
    let scheme = if sh.tls { "https" } else { "http" };
    let uri: http::Uri = format!("{scheme}://{}{}", f.authority, f.target)
        .parse()
        .map_err(|_| Local::new(400, "invalid request target"))?;
    let mut req = Request::builder().method(f.method.clone()).uri(uri);
    let h = req.headers_mut().expect("a fresh builder has headers");
    for (name, value) in &f.headers {
        let n = name.as_str();
        if is_connection_specific(n)
            || matches!(n, "host" | "x-forwarded-for" | "x-forwarded-proto")
            || (n == "te" && value.as_bytes() != b"trailers")
        {
            continue;
        }
        h.append(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&forwarded_for(&f.headers, sh.peer)) {
        h.insert("x-forwarded-for", v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
    if let Some(id) = request_id(&sh.ctx, &f.headers) {
        if let Ok(v) = HeaderValue::from_str(&id) {
            h.insert("x-request-id", v);
        }
    }
    req.body(()).map_err(|_| Local::new(400, "invalid request"))
}

/// Copy the request body (and trailers) from the client's stream to the
/// upstream's; a client reset or idle resets the upstream stream.
async fn pump_request(
    mut body: RecvStream,
    mut up: SendStream<Bytes>,
    idle: Duration,
    received: Rc<Cell<u64>>,
) {
    loop {
        match next_data(&mut body, idle).await {
            Ok(Some(b)) => {
                received.set(received.get() + b.len() as u64);
                if send_flow(&mut up, b, false, idle).await.is_err() {
                    return;
                }
            }
            Ok(None) => break,
            Err(()) => {
                up.send_reset(Reason::CANCEL);
                return;
            }
        }
    }
    match monoio::time::timeout(idle, body.trailers()).await {
        Ok(Ok(Some(t))) => {
            received.set(received.get() + header_bytes(&t));
            let _ = up.send_trailers(t);
        }
        Ok(Ok(None)) => {
            let _ = up.send_data(Bytes::new(), true);
        }
        _ => up.send_reset(Reason::CANCEL),
    }
}

/// Response fields for the client: the upstream's, less the
/// connection-specific ones.
pub(super) fn filter_response(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if is_connection_specific(name.as_str()) || name == header::TE {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Forward one stream to an HTTP/2 upstream.
pub async fn forward(
    sh: &ConnShared,
    cluster: &Arc<Cluster>,
    ccells: &Arc<ClusterCells>,
    f: Forward,
    respond: &mut SendResponse<Bytes>,
    tel: &mut Tel,
) -> Result<(), Local> {
    let ready = match guarded(
        respond,
        f.deadline,
        sender(&sh.ctx, sh.orig_dst, cluster, ccells),
    )
    .await?
    {
        None => return Err(Local::new(504, "upstream request timeout")),
        Some(r) => r?,
    };
    forward_on(sh, cluster, ccells, f, respond, ready, tel).await
}

/// Forward one stream on a ready h2 connection. Every answer (or failure:
/// a reset by the upstream, a timeout) is reported to outlier detection
/// once, when the stream ends; a gRPC answer counts as the HTTP status
/// its `grpc-status` maps to (as Envoy does).
pub async fn forward_on(
    sh: &ConnShared,
    cluster: &Arc<Cluster>,
    ccells: &Arc<ClusterCells>,
    f: Forward,
    respond: &mut SendResponse<Bytes>,
    ready: Ready,
    tel: &mut Tel,
) -> Result<(), Local> {
    let ctx = &sh.ctx;
    let idle = ctx.snapshot().limits.idle_timeout;
    let deadline = f.deadline;
    let addr = ready.addr;
    let mut send = ready.send.clone();
    tel.upstream_host = Some(addr);
    ccells.rq_total.inc();
    let req = upstream_request(sh, &f)?;
    let end = f.body.is_end_stream();
    let (resp, up_send) = send.send_request(req, end).map_err(|e| {
        tracing::debug!(cluster = %cluster.name, error = %e, "upstream HTTP/2 request failed");
        report(ctx, cluster, addr, Outcome::LocalFailure);
        Local::new(
            503,
            "upstream connect error or disconnect/reset before headers",
        )
    })?;
    if !end {
        monoio::spawn(pump_request(f.body, up_send, idle, tel.rq_bytes.clone()));
    }
    let resp = match guarded(respond, deadline, resp).await? {
        None => {
            report(ctx, cluster, addr, Outcome::LocalFailure);
            return Err(Local::new(504, "upstream request timeout"));
        }
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            tracing::debug!(cluster = %cluster.name, error = %e, "upstream reset before response");
            report(ctx, cluster, addr, Outcome::LocalFailure);
            return Err(Local::new(503, "upstream reset before response"));
        }
    };
    let (parts, mut body) = resp.into_parts();
    let status = parts.status.as_u16();
    let mut down = Response::builder().status(parts.status);
    if let Some(h) = down.headers_mut() {
        *h = filter_response(&parts.headers);
    }
    let Ok(mut down) = down.body(()) else {
        report(ctx, cluster, addr, Outcome::Status(502));
        return Err(Local::new(502, "upstream sent an invalid response"));
    };
    response_peer(sh, cluster, tel, down.headers_mut());
    tel.response_head(status, down.headers());
    // What outlier detection hears: the status, or the gRPC status's.
    let answered = |g: Option<u16>| Outcome::Status(g.map_or(status, http_status_for_grpc));
    let end = body.is_end_stream();
    let mut out = match respond.send_response(down, end) {
        Ok(s) => s,
        Err(_) => {
            report(ctx, cluster, addr, answered(tel.grpc_status));
            tel.flag(ResponseFlags::DC);
            return Ok(());
        }
    };
    if end {
        report(ctx, cluster, addr, answered(tel.grpc_status));
        return Ok(());
    }
    loop {
        let next = within(deadline, monoio::time::timeout(idle, body.data())).await;
        match next {
            Some(Ok(Some(Ok(b)))) => {
                let _ = body.flow_control().release_capacity(b.len());
                let n = b.len() as u64;
                if send_flow(&mut out, b, false, idle).await.is_err() {
                    // The client went away; dropping `body` resets upstream.
                    report(ctx, cluster, addr, answered(None));
                    tel.flag(ResponseFlags::DC);
                    return Ok(());
                }
                sh.ls.cells.tx_bytes.add(n);
                tel.rs_bytes += n;
            }
            Some(Ok(None)) => break,
            Some(Ok(Some(Err(e)))) => {
                // Reset by the upstream mid-response.
                report(ctx, cluster, addr, Outcome::LocalFailure);
                tel.flag(ResponseFlags::UC);
                out.send_reset(e.reason().unwrap_or(Reason::INTERNAL_ERROR));
                return Ok(());
            }
            Some(Err(_)) => {
                report(ctx, cluster, addr, Outcome::LocalFailure);
                tel.flag(ResponseFlags::UT);
                out.send_reset(Reason::CANCEL);
                return Ok(());
            }
            None => {
                ccells.rq_timeout.inc();
                report(ctx, cluster, addr, Outcome::LocalFailure);
                tel.flag(ResponseFlags::UT);
                out.send_reset(Reason::CANCEL);
                return Ok(());
            }
        }
    }
    match within(deadline, poll_fn(|cx| body.poll_trailers(cx))).await {
        Some(Ok(Some(t))) => {
            let mut t = filter_response(&t);
            t.remove(PEER_HEADER);
            if let Some(g) = grpc_status_of(&t) {
                tel.grpc_status = Some(g);
            }
            tel.rs_bytes += header_bytes(&t);
            report(ctx, cluster, addr, answered(tel.grpc_status));
            if out.send_trailers(t).is_err() {
                tel.flag(ResponseFlags::DC);
            }
        }
        Some(Ok(None)) => {
            report(ctx, cluster, addr, answered(tel.grpc_status));
            let _ = out.send_data(Bytes::new(), true);
        }
        Some(Err(e)) => {
            report(ctx, cluster, addr, Outcome::LocalFailure);
            tel.flag(ResponseFlags::UC);
            out.send_reset(e.reason().unwrap_or(Reason::INTERNAL_ERROR));
        }
        None => {
            ccells.rq_timeout.inc();
            report(ctx, cluster, addr, Outcome::LocalFailure);
            tel.flag(ResponseFlags::UT);
            out.send_reset(Reason::CANCEL);
        }
    }
    Ok(())
}
