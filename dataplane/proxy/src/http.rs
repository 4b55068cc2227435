//! HTTP/1.1 proxying for one downstream connection.
//!
//! One exchange at a time (no pipelined concurrency): read and validate the
//! head, route it, forward head + body to a pooled upstream connection,
//! forward the response, then either keep both connections or close.
//!
//! Buffers are owned by the connection and reused across exchanges; monoio's
//! rent-style I/O moves them into the kernel and back. Heads are forwarded
//! from the original bytes (only hop-by-hop fields are dropped and the
//! proxy's own fields added) and bodies pass through the read buffers
//! without further copies. Nothing a client sends is forwarded before its
//! head — and whatever body bytes arrived with it — has been validated.

use std::{cmp::min, io, mem::take, net::SocketAddr, rc::Rc, sync::Arc, time::Duration};

use monoio::time::Instant;
use ringmesh_config::{authz::AuthzInput, ListenerKind};
use ringmesh_http1::{
    normalize_path, parse_request, parse_response, write_downstream_response, write_local_response,
    write_upstream_request_to, BodyFraming, ChunkedDecoder, ForwardInfo, Method, Normalized,
    ParseStatus, RequestHead, ResponseHead,
};
use ringmesh_metrics::Counter;

use crate::{
    io::{Io, ReadIo, WriteIo},
    routing::{query_of, request_view, HeadHeaders},
    shard::ShardCtx,
    stats::{class_index, record_verdict, ListenerStats},
    upstream::{acquire, ConnectError, Upstream},
};

/// Initial capacity of each per-connection buffer; heads grow it up to the
/// configured header limit.
const INITIAL_BUF: usize = 8 * 1024;
/// Read size while streaming bodies.
const BODY_BUF: usize = 64 * 1024;
/// How long a connection we are closing keeps reading (and discarding) what
/// the client still sends, so our error response is not destroyed by a RST.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;

/// What to do with the downstream connection after an exchange.
enum Next {
    KeepAlive,
    Close,
    /// Close after draining what the client still sends (local error reply).
    Linger,
}

/// A body being forwarded, in either direction.
enum Body {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Chunked from the upstream, forwarded as plain data to an HTTP/1.0
    /// client (which cannot receive chunked; the body ends at close).
    Dechunk(ChunkedDecoder),
    UntilClose,
}

impl Body {
    fn new(f: BodyFraming) -> Body {
        match f {
            BodyFraming::None | BodyFraming::ContentLength(0) => Body::Done,
            BodyFraming::ContentLength(n) => Body::Length(n),
            BodyFraming::Chunked => Body::Chunked(ChunkedDecoder::new()),
            BodyFraming::UntilClose => Body::UntilClose,
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Body::Done => true,
            // Chunked bodies keep their decoder when done, for `data_bytes`.
            Body::Chunked(d) | Body::Dechunk(d) => d.is_done(),
            Body::Length(_) | Body::UntilClose => false,
        }
    }

    /// Chunk data seen so far (0 for other framings, whose size is known
    /// from the head).
    fn chunked_data(&self) -> u64 {
        match self {
            Body::Chunked(d) | Body::Dechunk(d) => d.data_bytes(),
            _ => 0,
        }
    }

    /// How many leading bytes of `avail` belong to the body; updates the
    /// state (to `Done` when the body ends within `avail`).
    fn take(&mut self, avail: &[u8]) -> Result<usize, ringmesh_http1::ChunkError> {
        match self {
            Body::Done => Ok(0),
            Body::Length(rem) => {
                let n = min(*rem, avail.len() as u64);
                *rem -= n;
                if *rem == 0 {
                    *self = Body::Done;
                }
                Ok(n as usize)
            }
            Body::Chunked(d) => d.scan(avail),
            Body::Dechunk(_) => unreachable!("Body::Dechunk goes through take_in_place"),
            Body::UntilClose => Ok(avail.len()),
        }
    }

    /// Like [`Body::take`] on `buf`, but may rewrite it: returns
    /// `(consumed, out)` where `buf[..out]` is what to forward. Only
    /// `Dechunk` rewrites (chunk data moved to the front, framing dropped).
    fn take_in_place(
        &mut self,
        buf: &mut [u8],
    ) -> Result<(usize, usize), ringmesh_http1::ChunkError> {
        let Body::Dechunk(d) = self else {
            let n = self.take(buf)?;
            return Ok((n, n));
        };
        let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
        let n = d.scan_with(buf, |r| ranges.push(r))?;
        let mut out = 0;
        for r in ranges {
            let len = r.len();
            buf.copy_within(r, out);
            out += len;
        }
        Ok((n, out))
    }
}

#[derive(Debug)]
#[allow(dead_code)] // the io::Errors are read through Debug, in logs
enum BodyError {
    /// The side we read from failed or closed early.
    Src(io::Error),
    /// The side we write to failed.
    Dst(io::Error),
    Framing(ringmesh_http1::ChunkError),
    Idle,
    /// A chunked request body grew past `max_request_body_bytes`.
    TooLarge,
}

/// Read, appending to `buf`, growing it when full.
#[inline]
async fn read_into<S: ReadIo>(s: &mut S, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    s.read_into(buf).await
}

#[inline]
async fn write_range<S: WriteIo>(
    s: &mut S,
    buf: Vec<u8>,
    end: usize,
) -> (io::Result<usize>, Vec<u8>) {
    s.write_range(buf, end).await
}

/// Forward the rest of a body from `src` to `dst`. `buf` must be empty on
/// entry; on success it holds any bytes read past the end of the body (the
/// next pipelined message, for requests).
#[allow(clippy::too_many_arguments)]
async fn forward_body<A: ReadIo, B: WriteIo>(
    src: &mut A,
    dst: &mut B,
    mut buf: Vec<u8>,
    body: &mut Body,
    idle: Duration,
    src_bytes: &Counter,
    dst_bytes: &Counter,
    limit: Option<u64>,
) -> (Result<(), BodyError>, Vec<u8>) {
    if buf.capacity() < BODY_BUF {
        buf.reserve(BODY_BUF);
    }
    loop {
        debug_assert!(buf.is_empty());
        let (r, b) = match monoio::time::timeout(idle, read_into(src, buf)).await {
            Ok(x) => x,
            Err(_) => return (Err(BodyError::Idle), Vec::new()),
        };
        buf = b;
        match r {
            Ok(0) => {
                if matches!(body, Body::UntilClose) {
                    *body = Body::Done;
                    return (Ok(()), buf);
                }
                return (
                    Err(BodyError::Src(io::ErrorKind::UnexpectedEof.into())),
                    buf,
                );
            }
            Ok(n) => src_bytes.add(n as u64),
            Err(e) => return (Err(BodyError::Src(e)), buf),
        }
        let (n, out) = match body.take_in_place(&mut buf) {
            Ok(x) => x,
            Err(e) => return (Err(BodyError::Framing(e)), buf),
        };
        if limit.is_some_and(|l| body.chunked_data() > l) {
            return (Err(BodyError::TooLarge), buf);
        }
        let (r, b) = write_range(dst, buf, out).await;
        buf = b;
        if let Err(e) = r {
            return (Err(BodyError::Dst(e)), buf);
        }
        dst_bytes.add(out as u64);
        if body.is_done() {
            buf.drain(..n);
            return (Ok(()), buf);
        }
        buf.clear();
    }
}

struct Conn<S> {
    down: S,
    peer: SocketAddr,
    orig_dst: Option<SocketAddr>,
    /// The client's verified SPIFFE ID (mTLS connections).
    peer_identity: Option<Rc<ringmesh_tls::SpiffeId>>,
    /// The same as a URI, for RBAC principals (made once per connection).
    principal: Option<Box<str>>,
    /// RBAC's destination: the original destination, or the local address.
    dest: SocketAddr,
    sni: Option<Rc<str>>,
    /// The normalized request-target (path, then `?query`), when
    /// normalization changed the path: matched and forwarded instead of
    /// the received one.
    target: Vec<u8>,
    /// The current request is HTTP/1.0 (no chunked, no interim responses).
    http10: bool,
    /// Downstream bytes received and not yet consumed.
    rbuf: Vec<u8>,
    /// Upstream bytes received.
    ubuf: Vec<u8>,
    /// Heads (and small bodies) on their way out.
    wbuf: Vec<u8>,
    head: RequestHead,
    rhead: ResponseHead,
}

/// Serve one downstream connection until it closes. `rbuf` holds bytes
/// already received (protocol detection), if any.
pub async fn serve<S: Io>(
    ctx: Rc<ShardCtx>,
    listener: Arc<str>,
    ls: Rc<ListenerStats>,
    down: S,
    conn: crate::ConnInfo,
    rbuf: Vec<u8>,
) {
    let rbuf = if rbuf.capacity() == 0 {
        Vec::with_capacity(INITIAL_BUF)
    } else {
        rbuf
    };
    let mut c = Conn {
        down,
        peer: conn.peer,
        orig_dst: conn.orig_dst,
        principal: conn.peer_identity.as_ref().map(|id| id.to_string().into()),
        dest: conn.destination(),
        sni: conn.sni.clone(),
        peer_identity: conn.peer_identity,
        target: Vec::new(),
        http10: false,
        rbuf,
        ubuf: Vec::with_capacity(INITIAL_BUF),
        wbuf: Vec::with_capacity(1024),
        head: RequestHead::default(),
        rhead: ResponseHead::default(),
    };
    loop {
        match c.exchange(&ctx, &listener, &ls).await {
            Next::KeepAlive => continue,
            Next::Close => {
                if S::TLS {
                    // close_notify: the peer can tell our close from a
                    // truncation. Bounded: the peer may not be reading.
                    let _ = monoio::time::timeout(LINGER, WriteIo::shutdown(&mut c.down)).await;
                }
                break;
            }
            Next::Linger => {
                c.linger().await;
                break;
            }
        }
    }
}

/// Outcome of sending the request and reading the response head.
enum Attempt {
    Ok(Upstream),
    /// The upstream closed or reset a reused connection before answering:
    /// nothing was processed, the request may be sent again.
    Stale,
    Reply(u16, &'static str, Next),
    Abort,
}

impl<S: Io> Conn<S> {
    /// `https` on TLS connections: the scheme route matching sees and the
    /// `x-forwarded-proto` sent upstream.
    const SCHEME: &'static str = if S::TLS { "https" } else { "http" };

    async fn exchange(&mut self, ctx: &Rc<ShardCtx>, lname: &Arc<str>, ls: &ListenerStats) -> Next {
        let limits = ctx.snapshot().limits;

        // Wait for the first byte of the next request (keep-alive idle).
        if self.rbuf.is_empty() {
            if ctx.drain.is_fired() {
                return Next::Close;
            }
            let buf = take(&mut self.rbuf);
            let r = monoio::select! {
                r = read_into(&mut self.down, buf) => Some(r),
                _ = ctx.drain.wait() => None,
                _ = monoio::time::sleep(limits.idle_timeout) => None,
            };
            match r {
                Some((Ok(n), buf)) if n > 0 => {
                    ls.cells.rx_bytes.add(n as u64);
                    self.rbuf = buf;
                }
                _ => return Next::Close,
            }
        }
        let start = Instant::now();

        // Read the whole head within the request-header timeout.
        let deadline = start + limits.request_headers_timeout;
        loop {
            match parse_request(&self.rbuf, &limits.http1, &mut self.head) {
                Ok(ParseStatus::Complete(_)) => break,
                Ok(ParseStatus::Partial) => {
                    let buf = take(&mut self.rbuf);
                    match monoio::time::timeout_at(deadline, read_into(&mut self.down, buf)).await {
                        Err(_) => {
                            return self
                                .local_reply(
                                    ctx,
                                    ls,
                                    start,
                                    408,
                                    "request header timeout",
                                    Next::Linger,
                                )
                                .await
                        }
                        Ok((Ok(n), buf)) if n > 0 => {
                            ls.cells.rx_bytes.add(n as u64);
                            self.rbuf = buf;
                        }
                        Ok(_) => return Next::Close,
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = %self.peer, peer_identity = self.peer_identity.as_deref().map(tracing::field::display), error = %e, "rejected request head");
                    return self
                        .local_reply(ctx, ls, start, e.status(), e.reason(), Next::Linger)
                        .await;
                }
            }
        }

        // Route. The request keeps this snapshot until it finishes.
        let snap = ctx.snapshot();
        let head = &self.head;
        let has_body = !matches!(
            head.framing,
            BodyFraming::None | BodyFraming::ContentLength(0)
        );
        let after_local = if has_body || head.close {
            Next::Linger
        } else {
            Next::KeepAlive
        };
        let Some(listener) = snap.listeners.iter().find(|l| l.name == *lname) else {
            return self
                .local_reply(ctx, ls, start, 503, "listener removed", Next::Linger)
                .await;
        };
        let ListenerKind::Http { routes } = &listener.kind else {
            return self
                .local_reply(ctx, ls, start, 503, "listener removed", Next::Linger)
                .await;
        };
        // Normalize the path before anything reads it: routes and RBAC
        // match the normal form, and it is what goes upstream.
        let normalized = match normalize_path(
            head.path.get(&self.rbuf),
            &listener.path_normalization,
            &mut self.target,
        ) {
            Ok(n) => n,
            Err(e) => {
                ls.cells.rq_path_rejected.inc();
                tracing::debug!(peer = %self.peer, peer_identity = self.principal.as_deref(), reason = e.reason(), "rejected request path");
                self.consume_head_if(&after_local);
                return self
                    .local_reply(ctx, ls, start, 400, e.reason(), after_local)
                    .await;
            }
        };
        if normalized != Normalized::Unchanged {
            if let Some(q) = query_of(&self.rbuf, head) {
                self.target.push(b'?');
                self.target.extend_from_slice(q);
            }
        }
        if normalized == Normalized::Redirect {
            let location = self.target.clone();
            self.consume_head_if(&after_local);
            return self
                .local_reply_with(
                    ctx,
                    ls,
                    start,
                    307,
                    "escaped slashes in the path; follow the redirect".as_bytes(),
                    after_local,
                    &[("location", &location)],
                )
                .await;
        }
        let target = (normalized == Normalized::Rewritten).then_some(&self.target[..]);
        // Path, header and query conditions read the head in place.
        let headers = HeadHeaders::new(&self.rbuf, head);
        let mut request = request_view(&self.rbuf, head, &headers, Self::SCHEME.as_bytes());
        if let Some(t) = target {
            request = request.with_target(t);
        }
        if !listener.rbac.is_empty() {
            let verdict = listener.rbac.evaluate(&AuthzInput {
                request: Some(&request),
                peer: self.peer.ip(),
                destination: self.dest,
                principal: self.principal.as_deref(),
                sni: self.sni.as_deref(),
            });
            record_verdict(
                ls,
                lname,
                &verdict,
                self.peer,
                self.principal.as_deref(),
                Some(&request),
            );
            if verdict.denied.is_some() {
                self.consume_head_if(&after_local);
                return self
                    .local_reply_with(
                        ctx,
                        ls,
                        start,
                        403,
                        b"RBAC: access denied",
                        after_local,
                        &[],
                    )
                    .await;
            }
        }
        let Some(route) = routes.route_request(&request) else {
            self.consume_head_if(&after_local);
            return self
                .local_reply(ctx, ls, start, 404, "route not found", after_local)
                .await;
        };
        // A weighted split draws from the shard's generator; the picked
        // cluster is what pools, endpoints and stats see.
        let picked = route.action.pick(|| ctx.next_u64());
        let cluster = snap.clusters[picked.index as usize].clone();
        let req_deadline = route.action.timeout.map(|t| start + t);
        let ccells = ctx.stats.cluster(cluster.id, &cluster.name);
        let method: Method = head.method;
        let client_close = head.close;
        let http10 = head.version == ringmesh_http1::Version::Http10;
        self.http10 = http10;
        let expect_continue = head.expect_continue;

        // The upstream head, then whatever body bytes came with the head —
        // validated before anything is sent.
        self.wbuf.clear();
        let rid = ctx.request_id_if_missing(head);
        write_upstream_request_to(
            &self.rbuf,
            head,
            &ForwardInfo {
                client_ip: self.peer.ip(),
                proto: Self::SCHEME,
                request_id: rid.as_ref().map(|r| &r[..]),
                strip_expect: expect_continue,
                extra_headers: &[],
            },
            target,
            &mut self.wbuf,
        );
        let head_len = head.head_len;
        let mut body = Body::new(head.framing);
        let too_large = |n: u64| limits.max_request_body.is_some_and(|l| n > l);
        if let BodyFraming::ContentLength(n) = head.framing {
            if too_large(n) {
                return self
                    .local_reply(ctx, ls, start, 413, "request body too large", Next::Linger)
                    .await;
            }
        }
        let taken = match body.take(&self.rbuf[head_len..]) {
            Ok(n) => n,
            Err(e) => {
                return self
                    .local_reply(ctx, ls, start, 400, chunk_reason(e), Next::Linger)
                    .await
            }
        };
        if too_large(body.chunked_data()) {
            return self
                .local_reply(ctx, ls, start, 413, "request body too large", Next::Linger)
                .await;
        }
        self.wbuf
            .extend_from_slice(&self.rbuf[head_len..head_len + taken]);
        self.rbuf.drain(..head_len + taken);
        // Safe to send again if a reused connection turns out to be dead:
        // the whole request is in hand and repeating it is harmless.
        let replayable = body.is_done() && method.is_idempotent();

        // Send, retrying only when a reused connection turned out to be
        // closed and the whole request is still in hand.
        let mut sent_continue = false;
        let mut up = None;
        for _ in 0..3 {
            match self
                .attempt(
                    ctx,
                    ls,
                    &cluster,
                    &ccells,
                    &limits,
                    req_deadline,
                    method,
                    &mut body,
                    expect_continue,
                    &mut sent_continue,
                    replayable,
                )
                .await
            {
                Attempt::Ok(u) => {
                    up = Some(u);
                    break;
                }
                Attempt::Stale if replayable => continue,
                Attempt::Stale => {
                    return self
                        .local_reply(
                            ctx,
                            ls,
                            start,
                            503,
                            "upstream reset before response",
                            Next::Linger,
                        )
                        .await
                }
                Attempt::Reply(code, reason, next) => {
                    if code == 504 {
                        ccells.rq_timeout.inc();
                    }
                    let next = if body.is_done() { next } else { Next::Linger };
                    return self.local_reply(ctx, ls, start, code, reason, next).await;
                }
                Attempt::Abort => return Next::Close,
            }
        }
        let Some(mut up) = up else {
            return self
                .local_reply(
                    ctx,
                    ls,
                    start,
                    503,
                    "upstream reset before response",
                    Next::Linger,
                )
                .await;
        };

        // The response: head (+ the body bytes that came with it) in one write.
        let draining = ctx.drain.is_fired();
        let mut rbody = Body::new(self.rhead.framing);
        if http10 && matches!(rbody, Body::Chunked(_)) {
            // HTTP/1.0 has no chunked coding (RFC 9112 §6.1): forward the
            // data only and end the body by closing.
            rbody = Body::Dechunk(ChunkedDecoder::new());
            self.rhead.framing = BodyFraming::UntilClose;
        }
        let rhead = &self.rhead;
        let down_close =
            client_close || draining || matches!(rhead.framing, BodyFraming::UntilClose);
        let status = rhead.status;
        let mut reusable = !rhead.close;
        self.wbuf.clear();
        write_downstream_response(&self.ubuf, rhead, down_close, &mut self.wbuf);
        let rlen = rhead.head_len;
        let (taken, out) = match rbody.take_in_place(&mut self.ubuf[rlen..]) {
            Ok(x) => x,
            Err(_) => {
                return self
                    .local_reply(
                        ctx,
                        ls,
                        start,
                        502,
                        "upstream sent invalid chunked framing",
                        Next::Linger,
                    )
                    .await
            }
        };
        self.wbuf.extend_from_slice(&self.ubuf[rlen..rlen + out]);
        if rbody.is_done() && self.ubuf.len() > rlen + taken {
            // Bytes after the response: the upstream is confused; never
            // reuse it (and never forward them).
            reusable = false;
        }
        self.ubuf.clear();
        let wlen = self.wbuf.len();
        let (r, w) = write_range(&mut self.down, take(&mut self.wbuf), wlen).await;
        self.wbuf = w;
        if r.is_err() {
            return Next::Close;
        }
        ls.cells.tx_bytes.add(wlen as u64);
        if !rbody.is_done() {
            let buf = take(&mut self.ubuf);
            let (r, b) = forward_body(
                &mut up.stream,
                &mut self.down,
                buf,
                &mut rbody,
                limits.idle_timeout,
                &Counter::default(),
                &ls.cells.tx_bytes,
                None,
            )
            .await;
            self.ubuf = b;
            match r {
                Ok(()) => {
                    if !self.ubuf.is_empty() {
                        reusable = false;
                        self.ubuf.clear();
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = %self.peer, peer_identity = self.peer_identity.as_deref().map(tracing::field::display), error = ?e, "response body aborted");
                    self.record(ls, &ccells, start, status);
                    return Next::Close;
                }
            }
        }
        self.record(ls, &ccells, start, status);
        if reusable && !draining {
            ctx.pools.checkin(up);
        }
        if down_close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Acquire a connection, send the request (streaming any body rest) and
    /// read the final response head into `self.ubuf` / `self.rhead`.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &mut self,
        ctx: &Rc<ShardCtx>,
        ls: &ListenerStats,
        cluster: &Arc<ringmesh_config::Cluster>,
        ccells: &Arc<crate::stats::ClusterCells>,
        limits: &ringmesh_config::ProxyLimits,
        deadline: Option<Instant>,
        method: Method,
        body: &mut Body,
        expect_continue: bool,
        sent_continue: &mut bool,
        replayable: bool,
    ) -> Attempt {
        // A request we can replay does not need a pooled connection checked
        // first: if the upstream had closed it, we notice before any response
        // byte and send the request again (`Attempt::Stale`). One syscall
        // saved per request. Others are checked with a peek.
        let verify = !replayable;
        let acquiring = acquire(
            &ctx.pools,
            cluster,
            ccells,
            limits.idle_timeout,
            verify,
            self.orig_dst,
            || ctx.client_tls(cluster),
        );
        let acquired = match deadline {
            Some(d) => match monoio::time::timeout_at(d, acquiring).await {
                Ok(r) => r,
                Err(_) => return Attempt::Reply(504, "upstream request timeout", Next::KeepAlive),
            },
            None => acquiring.await,
        };
        let mut up = match acquired {
            Ok(u) => u,
            Err(ConnectError::NoEndpoints) => {
                return Attempt::Reply(503, "no healthy upstream", Next::KeepAlive)
            }
            Err(ConnectError::NoIdentity) => {
                return Attempt::Reply(
                    503,
                    "upstream requires mTLS and this proxy has no certificate yet",
                    Next::KeepAlive,
                )
            }
            Err(ConnectError::Tls(e)) => {
                tracing::debug!(cluster = %cluster.name, error = %e, "upstream TLS handshake failed");
                return Attempt::Reply(
                    503,
                    "upstream connect error (TLS handshake failed)",
                    Next::KeepAlive,
                );
            }
            Err(_) => return Attempt::Reply(503, "upstream connect error", Next::KeepAlive),
        };
        ccells.rq_total.inc();

        if expect_continue && !body.is_done() && !*sent_continue {
            *sent_continue = true;
            const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
            let (r, _) = self
                .down
                .write_range(CONTINUE.to_vec(), CONTINUE.len())
                .await;
            if r.is_err() {
                return Attempt::Abort;
            }
        }
        let wlen = self.wbuf.len();
        let (r, w) = write_range(&mut up.stream, take(&mut self.wbuf), wlen).await;
        self.wbuf = w;
        if r.is_err() {
            return if up.reused {
                Attempt::Stale
            } else {
                Attempt::Reply(503, "upstream write failed", Next::KeepAlive)
            };
        }
        if !body.is_done() {
            let buf = take(&mut self.rbuf);
            debug_assert!(buf.is_empty());
            let (r, b) = forward_body(
                &mut self.down,
                &mut up.stream,
                buf,
                body,
                limits.idle_timeout,
                &ls.cells.rx_bytes,
                &Counter::default(),
                limits.max_request_body,
            )
            .await;
            self.rbuf = b;
            match r {
                Ok(()) => {}
                Err(BodyError::Framing(e)) => {
                    return Attempt::Reply(400, chunk_reason(e), Next::Linger)
                }
                Err(BodyError::Idle) => {
                    return Attempt::Reply(408, "request body timeout", Next::Linger)
                }
                Err(BodyError::TooLarge) => {
                    return Attempt::Reply(413, "request body too large", Next::Linger)
                }
                Err(BodyError::Src(_)) => return Attempt::Abort,
                Err(BodyError::Dst(_)) => {
                    return Attempt::Reply(
                        503,
                        "upstream reset while sending the request body",
                        Next::Linger,
                    )
                }
            }
        }

        // The response head, skipping interim (1xx) responses.
        self.ubuf.clear();
        loop {
            if !self.ubuf.is_empty() {
                match parse_response(&self.ubuf, &limits.http1, method, &mut self.rhead) {
                    Ok(ParseStatus::Complete(n)) => {
                        let s = self.rhead.status;
                        if s == 101 {
                            return Attempt::Reply(
                                502,
                                "upstream switched protocols unexpectedly",
                                Next::Linger,
                            );
                        }
                        if (100..200).contains(&s) {
                            // HTTP/1.0 clients cannot read interim responses.
                            if s != 100 && !self.http10 {
                                self.wbuf.clear();
                                write_downstream_response(
                                    &self.ubuf,
                                    &self.rhead,
                                    false,
                                    &mut self.wbuf,
                                );
                                let wl = self.wbuf.len();
                                let (r, w) =
                                    write_range(&mut self.down, take(&mut self.wbuf), wl).await;
                                self.wbuf = w;
                                if r.is_err() {
                                    return Attempt::Abort;
                                }
                            }
                            self.ubuf.drain(..n);
                            continue;
                        }
                        return Attempt::Ok(up);
                    }
                    Ok(ParseStatus::Partial) => {}
                    Err(e) => {
                        tracing::debug!(cluster = %cluster.name, error = %e, "invalid response head from upstream");
                        return Attempt::Reply(
                            502,
                            "upstream sent an invalid response",
                            Next::KeepAlive,
                        );
                    }
                }
            }
            let buf = take(&mut self.ubuf);
            let read = read_into(&mut up.stream, buf);
            let r = match deadline {
                Some(d) => match monoio::time::timeout_at(d, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Attempt::Reply(504, "upstream request timeout", Next::KeepAlive)
                    }
                },
                None => read.await,
            };
            match r {
                (Ok(n), buf) if n > 0 => self.ubuf = buf,
                (_, buf) => {
                    let nothing = buf.is_empty();
                    self.ubuf = buf;
                    self.ubuf.clear();
                    if nothing && up.reused {
                        return Attempt::Stale;
                    }
                    return Attempt::Reply(
                        if nothing { 503 } else { 502 },
                        if nothing {
                            "upstream connect error or disconnect/reset before headers"
                        } else {
                            "upstream sent a truncated response head"
                        },
                        Next::KeepAlive,
                    );
                }
            }
        }
    }

    fn record(
        &self,
        ls: &ListenerStats,
        cc: &crate::stats::ClusterCells,
        start: Instant,
        status: u16,
    ) {
        let i = class_index(status);
        ls.cells.rq_by_class[i].inc();
        cc.rq_by_class[i].inc();
        ls.latency.record_us(start.elapsed().as_micros() as u64);
    }

    /// A request answered without a body of its own ends with its head:
    /// consume it so the next request on the connection is read next.
    fn consume_head_if(&mut self, next: &Next) {
        if matches!(next, Next::KeepAlive) {
            let n = self.head.head_len;
            self.rbuf.drain(..n);
        }
    }

    async fn local_reply(
        &mut self,
        ctx: &ShardCtx,
        ls: &ListenerStats,
        start: Instant,
        status: u16,
        reason: &str,
        next: Next,
    ) -> Next {
        let mut body = Vec::with_capacity(reason.len() + 1);
        body.extend_from_slice(reason.as_bytes());
        body.push(b'\n');
        self.local_reply_with(ctx, ls, start, status, &body, next, &[])
            .await
    }

    /// A local response with exactly `body` and the `extra` fields.
    #[allow(clippy::too_many_arguments)]
    async fn local_reply_with(
        &mut self,
        ctx: &ShardCtx,
        ls: &ListenerStats,
        start: Instant,
        status: u16,
        body: &[u8],
        next: Next,
        extra: &[(&str, &[u8])],
    ) -> Next {
        ctx.stats.local_reply(status);
        ls.cells.rq_by_class[class_index(status)].inc();
        let close = !matches!(next, Next::KeepAlive) || ctx.drain.is_fired();
        self.wbuf.clear();
        write_local_response(status, body, close, extra, &mut self.wbuf);
        let wl = self.wbuf.len();
        let (r, w) = write_range(&mut self.down, take(&mut self.wbuf), wl).await;
        self.wbuf = w;
        ls.latency.record_us(start.elapsed().as_micros() as u64);
        if r.is_err() {
            return Next::Close;
        }
        ls.cells.tx_bytes.add(wl as u64);
        match next {
            Next::KeepAlive if close => Next::Close,
            n => n,
        }
    }

    /// Half-close and read what the peer still sends for a short while, so
    /// the response we just wrote reaches it instead of being destroyed by a
    /// RST (closing with unread data in the receive queue sends one).
    async fn linger(&mut self) {
        if S::TLS {
            // Flushing close_notify may wait on a peer that does not read.
            let _ = monoio::time::timeout(LINGER, WriteIo::shutdown(&mut self.down)).await;
        } else {
            let _ = WriteIo::shutdown(&mut self.down).await;
        }
        let deadline = Instant::now() + LINGER;
        let mut seen = 0;
        let mut buf = take(&mut self.rbuf);
        while seen < LINGER_BYTES {
            buf.clear();
            match monoio::time::timeout_at(deadline, read_into(&mut self.down, buf)).await {
                Ok((Ok(n), b)) if n > 0 => {
                    seen += n;
                    buf = b;
                }
                _ => break,
            }
        }
    }
}

fn chunk_reason(e: ringmesh_http1::ChunkError) -> &'static str {
    use ringmesh_http1::ChunkError::*;
    match e {
        BadSize => "invalid chunk size",
        SizeOverflow => "chunk size overflow",
        MissingCrlf => "chunk data not followed by CRLF",
        BadExtension => "invalid chunk extension",
        LineTooLong => "chunk size line too long",
        BadTrailer => "invalid trailer section",
        TrailerTooLarge => "trailer section too large",
    }
}
