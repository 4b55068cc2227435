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
use ringmesh_route::Failure;

use crate::{
    io::{Io, ReadIo, WriteIo},
    resilience::Outcome,
    routing::{query_of, request_view, HeadHeaders},
    shard::ShardCtx,
    stats::{class_index, record_verdict, ListenerStats},
    telemetry::{
        LogFields, PeerId, Protocol, Reporter, RequestRecord, ResponseFlags, Security,
        OVERFLOW_REASON, PEER_HEADER,
    },
    upstream::{acquire, ConnectError, Upstream},
};

/// What the access log needs from a request head, copied before the head
/// leaves the read buffer (only when access logs are on).
#[derive(Default)]
struct LogCopy {
    method: Vec<u8>,
    path: Vec<u8>,
    authority: Vec<u8>,
    request_id: Option<Vec<u8>>,
    traceparent: Option<Vec<u8>>,
    user_agent: Option<Vec<u8>>,
}

/// Per-exchange telemetry state.
#[derive(Default)]
struct Exchange {
    /// Bytes of the request head as received (0 until parsed).
    head_len: u64,
    /// `rq_bytes` / `rs_bytes` when the exchange started.
    rq0: u64,
    rs0: u64,
    /// Response bytes written so far outside `rs_bytes` (heads).
    rs_head: u64,
    cluster: Option<Arc<ringmesh_config::Cluster>>,
    upstream_host: Option<SocketAddr>,
    /// The other side (see [`RequestRecord::peer`]).
    peer: PeerId,
    log: Option<LogCopy>,
}

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
    /// The listener's downstream TLS mode (inbound listeners terminate
    /// mesh mTLS): who reports this connection's requests.
    listener_tls: ringmesh_config::DownstreamTls,
    /// Request body bytes forwarded, response body bytes streamed (the
    /// connection's totals; an exchange uses the difference).
    rq_bytes: Counter,
    rs_bytes: Counter,
    x: Exchange,
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
        listener_tls: ctx
            .snapshot()
            .listeners
            .iter()
            .find(|l| l.name == listener)
            .map_or(ringmesh_config::DownstreamTls::Disable, |l| l.tls),
        rq_bytes: Counter::default(),
        rs_bytes: Counter::default(),
        x: Exchange::default(),
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
        self.x = Exchange {
            rq0: self.rq_bytes.get(),
            rs0: self.rs_bytes.get(),
            ..Exchange::default()
        };

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
        self.x.head_len = self.head.head_len as u64;
        // The peer metadata header never reaches the application: marked
        // hop-by-hop, the writer drops it. Believed only on mTLS.
        let mut peer_header = None;
        for h in self.head.headers.iter_mut() {
            if h.name
                .get(&self.rbuf)
                .eq_ignore_ascii_case(PEER_HEADER.as_bytes())
            {
                h.hop_by_hop = true;
                peer_header.get_or_insert(h.value);
            }
        }
        if self.listener_tls != ringmesh_config::DownstreamTls::Disable {
            self.x.peer = ctx.stats.telemetry.inbound_peer(
                self.principal.as_deref(),
                peer_header.map(|v| v.get(&self.rbuf)),
            );
        }
        if snap.access_log.is_some() {
            let h = &self.head;
            let b = &self.rbuf;
            self.x.log = Some(LogCopy {
                method: h.method_span.get(b).to_vec(),
                path: h.target.get(b).to_vec(),
                authority: h.authority.get(b).to_vec(),
                request_id: h.header(b, "x-request-id").map(<[u8]>::to_vec),
                traceparent: h.header(b, "traceparent").map(<[u8]>::to_vec),
                user_agent: h.header(b, "user-agent").map(<[u8]>::to_vec),
            });
        }
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
        self.x.cluster = Some(cluster.clone());
        let reporter = Reporter::of(self.listener_tls, Some(&cluster));
        // Requests to mesh (ISTIO_MUTUAL) clusters carry our metadata.
        let own_header = (reporter == Reporter::Source && cluster.tls.is_some())
            .then(|| ctx.stats.telemetry.own_header(&snap));
        let extra: &[(&str, &[u8])] = match &own_header {
            Some(h) => &[(PEER_HEADER, h)],
            None => &[],
        };
        let method: Method = head.method;
        let client_close = head.close;
        let http10 = head.version == ringmesh_http1::Version::Http10;
        self.http10 = http10;
        let expect_continue = head.expect_continue;

        // The upstream head, then whatever body bytes came with the head —
        // validated before anything is sent.
        self.wbuf.clear();
        let rid = ctx.request_id_if_missing(head);
        if let (Some(l), Some(r)) = (&mut self.x.log, &rid) {
            l.request_id = Some(r.to_vec());
        }
        write_upstream_request_to(
            &self.rbuf,
            head,
            &ForwardInfo {
                client_ip: self.peer.ip(),
                proto: Self::SCHEME,
                request_id: rid.as_ref().map(|r| &r[..]),
                strip_expect: expect_continue,
                extra_headers: extra,
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
        self.rq_bytes.add(taken as u64);
        self.rbuf.drain(..head_len + taken);
        // Safe to send again if a reused connection turns out to be dead:
        // the whole request is in hand and repeating it is harmless.
        let replayable = body.is_done() && method.is_idempotent();

        // The cluster's circuit breaker: a place under max_requests for
        // the whole exchange (all shards count together).
        let cstate = ctx.pools.lb.state(&cluster);
        let _admitted = match cstate.admit(&cluster.circuit_breakers) {
            Ok(slot) => slot,
            Err(_) => return self.overflow_reply(ctx, ls, start, &body).await,
        };

        // HTTP/2-only clusters (gRPC backends): the prepared request goes
        // out as an h2 stream (`crate::h2::h1`).
        if cluster.protocol == ringmesh_config::UpstreamProtocol::Http2 {
            let flags = (expect_continue, http10, client_close);
            return self
                .forward_h2(
                    ctx,
                    ls,
                    &cluster,
                    &ccells,
                    start,
                    req_deadline,
                    &body,
                    flags,
                )
                .await;
        }

        // Send. A reused connection found closed before any answer is
        // replayed when the whole request is in hand (`Stale`, not a
        // retry). The route's retry policy retries failed attempts while
        // the request is in hand (a copy of it is kept), the method allows
        // it, retries are left and the cluster's retry budget has room.
        let policy = route.action.retry.clone();
        let in_hand = body.is_done();
        let request_copy = match &policy {
            Some(_) if in_hand => Some(self.wbuf.clone()),
            _ => None,
        };
        let mut retries_done = 0u32;
        let mut _retry_slots = Vec::new();
        let mut stale_replays = 0;
        let mut sent_continue = false;
        let up = loop {
            let try_deadline = match policy.as_ref().and_then(|p| p.per_try_timeout) {
                Some(t) => {
                    let d = Instant::now() + t;
                    Some(req_deadline.map_or(d, |r| r.min(d)))
                }
                None => req_deadline,
            };
            let outcome = self
                .attempt(
                    ctx,
                    ls,
                    &cluster,
                    &ccells,
                    &limits,
                    try_deadline,
                    method,
                    &mut body,
                    expect_continue,
                    &mut sent_continue,
                    replayable,
                )
                .await;
            // What failed, if the policy may retry it.
            let failure = match &outcome {
                Attempt::Ok(_) => Some(Failure::Status(self.rhead.status, None)),
                Attempt::Reply(code, reason, _) => {
                    retry_failure(*code, reason, try_deadline != req_deadline)
                }
                _ => None,
            };
            let retry = match (&policy, &request_copy, failure) {
                (Some(p), Some(_), Some(f)) => {
                    p.retriable(f)
                        && retries_done < p.num_retries
                        && (method.is_idempotent() || p.retry_non_idempotent || f.nothing_sent())
                        && req_deadline.is_none_or(|d| Instant::now() < d)
                }
                _ => false,
            };
            let slot = if retry {
                cstate.try_retry(&cluster.circuit_breakers)
            } else {
                None
            };
            if let (Some(slot), Some(p), Some(copy)) = (slot, &policy, &request_copy) {
                // The failed answer (and its connection) is dropped.
                drop(outcome);
                _retry_slots.push(slot);
                retries_done += 1;
                let pause = p.backoff(retries_done, ctx.next_u64());
                if !pause.is_zero() {
                    monoio::time::sleep(pause).await;
                }
                self.wbuf.clear();
                self.wbuf.extend_from_slice(copy);
                continue;
            }
            match outcome {
                Attempt::Ok(u) => break u,
                Attempt::Stale if replayable && stale_replays < 2 => {
                    stale_replays += 1;
                    continue;
                }
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
                Attempt::Reply(503, OVERFLOW_REASON, _) => {
                    return self.overflow_reply(ctx, ls, start, &body).await
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
        };
        let mut up = up;

        // The response: head (+ the body bytes that came with it) in one write.
        let draining = ctx.drain.is_fired();
        let mut rbody = Body::new(self.rhead.framing);
        if http10 && matches!(rbody, Body::Chunked(_)) {
            // HTTP/1.0 has no chunked coding (RFC 9112 §6.1): forward the
            // data only and end the body by closing.
            rbody = Body::Dechunk(ChunkedDecoder::new());
            self.rhead.framing = BodyFraming::UntilClose;
        }
        self.x.upstream_host = Some(up.addr);
        let mut resp_peer = None;
        for h in self.rhead.headers.iter_mut() {
            if h.name
                .get(&self.ubuf)
                .eq_ignore_ascii_case(PEER_HEADER.as_bytes())
            {
                h.hop_by_hop = true;
                resp_peer.get_or_insert(h.value);
            }
        }
        if reporter == Reporter::Source && cluster.tls.is_some() {
            self.x.peer = ctx
                .stats
                .telemetry
                .outbound_peer(resp_peer.map(|v| v.get(&self.ubuf)));
        }
        let rhead = &self.rhead;
        let down_close =
            client_close || draining || matches!(rhead.framing, BodyFraming::UntilClose);
        let status = rhead.status;
        let mut reusable = !rhead.close;
        self.wbuf.clear();
        write_downstream_response(&self.ubuf, rhead, down_close, &mut self.wbuf);
        if reporter == Reporter::Destination && self.peer_identity.is_some() {
            // Our metadata for the source's sidecar, before the blank line.
            let own = ctx.stats.telemetry.own_header(&snap);
            let end = self.wbuf.len() - 2;
            self.wbuf.truncate(end);
            self.wbuf.extend_from_slice(PEER_HEADER.as_bytes());
            self.wbuf.extend_from_slice(b": ");
            self.wbuf.extend_from_slice(&own);
            self.wbuf.extend_from_slice(b"\r\n\r\n");
        }
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
        self.x.rs_head += wlen as u64;
        if !rbody.is_done() {
            let buf = take(&mut self.ubuf);
            let before = self.rs_bytes.get();
            let (r, b) = forward_body(
                &mut up.stream,
                &mut self.down,
                buf,
                &mut rbody,
                limits.idle_timeout,
                &Counter::default(),
                &self.rs_bytes,
                None,
            )
            .await;
            ls.cells.tx_bytes.add(self.rs_bytes.get() - before);
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
                    let flags = match e {
                        BodyError::Dst(_) => ResponseFlags::DC,
                        _ => ResponseFlags::UC,
                    };
                    self.record(ctx, ls, &ccells, start, status, flags);
                    return Next::Close;
                }
            }
        }
        self.record(ctx, ls, &ccells, start, status, ResponseFlags::NONE);
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
            Err(ConnectError::Overflow(_)) => {
                return Attempt::Reply(503, OVERFLOW_REASON, Next::KeepAlive)
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
                up.report(cluster, Outcome::LocalFailure);
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
                &self.rq_bytes,
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
                        up.report(cluster, Outcome::Status(s));
                        return Attempt::Ok(up);
                    }
                    Ok(ParseStatus::Partial) => {}
                    Err(e) => {
                        tracing::debug!(cluster = %cluster.name, error = %e, "invalid response head from upstream");
                        up.report(cluster, Outcome::Status(502));
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
                        up.report(cluster, Outcome::LocalFailure);
                        return Attempt::Reply(504, "upstream request timeout", Next::KeepAlive);
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
                    up.report(cluster, Outcome::LocalFailure);
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

    /// A request to a `protocol: http2` cluster (see `crate::h2::h1`).
    #[allow(clippy::too_many_arguments)]
    async fn forward_h2(
        &mut self,
        ctx: &Rc<ShardCtx>,
        ls: &ListenerStats,
        cluster: &Arc<ringmesh_config::Cluster>,
        ccells: &Arc<crate::stats::ClusterCells>,
        start: Instant,
        deadline: Option<Instant>,
        body: &Body,
        (expect_continue, http10, client_close): (bool, bool, bool),
    ) -> Next {
        let snap = ctx.snapshot();
        let limits = snap.limits;
        let reporter = Reporter::of(self.listener_tls, Some(cluster));
        let own = (reporter == Reporter::Destination && self.peer_identity.is_some())
            .then(|| ctx.stats.telemetry.own_header(&snap));
        let o = crate::h2::h1::forward_h1_request_to_h2(
            ctx,
            cluster,
            ccells,
            self.orig_dst,
            crate::h2::h1::H1Request {
                prepared: &self.wbuf,
                scheme: Self::SCHEME,
                limits: &limits.http1,
                expect_continue,
                http10,
                close: client_close || ctx.drain.is_fired(),
                deadline,
                idle: limits.idle_timeout,
                own_peer_header: own.as_deref(),
            },
            &mut self.down,
            &mut self.rbuf,
        )
        .await;
        ls.cells.rx_bytes.add(o.request_read);
        self.rq_bytes.add(o.request_read);
        ls.cells.tx_bytes.add(o.response_bytes);
        self.x.rs_head += o.response_bytes;
        self.x.upstream_host = o.upstream_host;
        if reporter == Reporter::Source && cluster.tls.is_some() {
            self.x.peer = ctx.stats.telemetry.outbound_peer(o.peer_header.as_deref());
        }
        match o.local {
            Some((503, OVERFLOW_REASON)) => self.overflow_reply(ctx, ls, start, body).await,
            Some((code, reason)) => {
                self.local_reply(ctx, ls, start, code, reason, Next::Linger)
                    .await
            }
            None if o.status == 0 => Next::Close,
            None => {
                self.record(ctx, ls, ccells, start, o.status, o.flags);
                if o.keep_alive {
                    Next::KeepAlive
                } else {
                    Next::Close
                }
            }
        }
    }

    fn record(
        &self,
        ctx: &ShardCtx,
        ls: &ListenerStats,
        cc: &crate::stats::ClusterCells,
        start: Instant,
        status: u16,
        flags: ResponseFlags,
    ) {
        let i = class_index(status);
        ls.cells.rq_by_class[i].inc();
        cc.rq_by_class[i].inc();
        let elapsed = start.elapsed();
        ls.latency.record_us(elapsed.as_micros() as u64);
        self.record_istio(ctx, status, flags, elapsed);
    }

    /// Istio metrics and the access log line of the current exchange.
    fn record_istio(
        &self,
        ctx: &ShardCtx,
        status: u16,
        flags: ResponseFlags,
        duration: std::time::Duration,
    ) {
        let snap = ctx.snapshot();
        let x = &self.x;
        let cluster = x.cluster.as_deref();
        let reporter = Reporter::of(self.listener_tls, cluster);
        let security = match reporter {
            Reporter::Source => Security::Unknown,
            Reporter::Destination if self.peer_identity.is_some() => Security::MutualTls,
            Reporter::Destination => Security::None,
        };
        let peer = match (reporter, x.peer) {
            // Answered before the head was read: the SPIFFE ID still says who.
            (Reporter::Destination, PeerId::UNKNOWN) => ctx
                .stats
                .telemetry
                .inbound_peer(self.principal.as_deref(), None),
            (_, p) => p,
        };
        let r = RequestRecord {
            reporter,
            peer,
            cluster,
            protocol: Protocol::Http,
            response_code: status,
            grpc_status: None,
            flags,
            request_bytes: x.head_len + (self.rq_bytes.get() - x.rq0),
            response_bytes: x.rs_head + (self.rs_bytes.get() - x.rs0),
            duration,
            security,
        };
        ctx.stats.telemetry.record_request(&snap, &r, || {
            let l = x.log.as_ref();
            let opt = |f: fn(&LogCopy) -> &Option<Vec<u8>>| l.and_then(|l| f(l).as_deref());
            LogFields {
                method: l.map_or(&[][..], |l| &l.method),
                path: l.map_or(&[][..], |l| &l.path),
                protocol: if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" },
                authority: l.map_or(&[][..], |l| &l.authority),
                upstream_host: x.upstream_host,
                downstream_principal: self.principal.as_deref(),
                request_id: opt(|l| &l.request_id),
                traceparent: opt(|l| &l.traceparent),
                user_agent: opt(|l| &l.user_agent),
            }
        });
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

    /// 503 for a request a circuit breaker refused, with Envoy's
    /// `x-envoy-overloaded: true`.
    async fn overflow_reply(
        &mut self,
        ctx: &ShardCtx,
        ls: &ListenerStats,
        start: Instant,
        body: &Body,
    ) -> Next {
        let next = if body.is_done() {
            Next::KeepAlive
        } else {
            Next::Linger
        };
        let text = format!("{OVERFLOW_REASON}\n");
        self.local_reply_with(
            ctx,
            ls,
            start,
            503,
            text.as_bytes(),
            next,
            &[("x-envoy-overloaded", b"true")],
        )
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
        let elapsed = start.elapsed();
        ls.latency.record_us(elapsed.as_micros() as u64);
        let mut flags = ResponseFlags::of_local_reply(status, body);
        if r.is_ok() {
            self.x.rs_head += wl as u64;
        } else {
            flags = ResponseFlags(flags.0 | ResponseFlags::DC.0);
        }
        self.record_istio(ctx, status, flags, elapsed);
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

/// The retry view of a local answer to a failed attempt: which failure
/// it stands for, if it is one a retry policy may retry.
/// `per_try_bound`: the attempt's deadline was the per-try timeout (not
/// the route's).
fn retry_failure(code: u16, reason: &str, per_try_bound: bool) -> Option<Failure> {
    match (code, reason) {
        (503, "upstream connect error" | "upstream connect error (TLS handshake failed)") => {
            Some(Failure::ConnectFailure)
        }
        (503, "upstream connect error or disconnect/reset before headers")
        | (503, "upstream write failed") => Some(Failure::Reset),
        (504, "upstream request timeout") if per_try_bound => Some(Failure::PerTryTimeout),
        (502, "upstream sent an invalid response" | "upstream sent a truncated response head") => {
            Some(Failure::Status(502, None))
        }
        _ => None,
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
