//! HTTP/1.1 clients to clusters with `protocol: http2` (h2-only servers,
//! gRPC backends): the request the HTTP/1.1 path prepared for its
//! upstream (head with the proxy's fields, then the body bytes that came
//! with it) goes out as an h2 stream on the cluster's pooled h2
//! connection, the rest of the body streamed from the client as DATA;
//! the response comes back as an HTTP/1.1 response (its length, or
//! chunked, or until close for HTTP/1.0 clients). Trailers cannot reach
//! an HTTP/1.1 client here and are dropped (their `grpc-status` is still
//! reported).
//!
//! The HTTP/1.1 path keeps what it owns (admission, telemetry, the
//! connection's next request): [`forward_h1_request_to_h2`] returns an
//! [`H1Outcome`] it records.

use std::{future::poll_fn, net::SocketAddr, rc::Rc, sync::Arc, time::Duration};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request};
use monoio::time::Instant;
use ringmesh_config::Cluster;
use ringmesh_http1::{
    parse_request, reason_phrase, BodyFraming, ChunkedDecoder, Limits, ParseStatus, RequestHead,
};

use super::{
    client::{filter_response, sender},
    grpc_status_of, http_status_for_grpc, is_connection_specific,
    server::{report, send_flow, within},
};
use crate::{
    io::{ReadIo, WriteIo},
    resilience::Outcome,
    shard::ShardCtx,
    stats::ClusterCells,
    telemetry::{ResponseFlags, PEER_HEADER},
};

/// Read size for request bodies.
const BODY_BUF: usize = 64 * 1024;

/// How an HTTP/1.1 request to an h2 cluster went.
#[derive(Debug, Default)]
pub struct H1Outcome {
    /// Nothing was sent to the client: answer with this local reply
    /// (status, reason) and close after it (the request body may be
    /// half read). `None` with `status` 0: the client went away (flag
    /// `DC`), close.
    pub local: Option<(u16, &'static str)>,
    /// The response status sent to the client.
    pub status: u16,
    pub grpc_status: Option<u16>,
    pub flags: ResponseFlags,
    pub upstream_host: Option<SocketAddr>,
    /// The response's `x-ringmesh-peer` (removed from what the client
    /// gets): the destination's metadata for requests to mesh clusters.
    pub peer_header: Option<Vec<u8>>,
    /// Request body bytes read from the client (beyond those in the
    /// prepared request).
    pub request_read: u64,
    /// Bytes written to the client (head and body).
    pub response_bytes: u64,
    /// The client connection may carry another request.
    pub keep_alive: bool,
}

impl H1Outcome {
    fn local(status: u16, reason: &'static str) -> H1Outcome {
        H1Outcome {
            local: Some((status, reason)),
            ..H1Outcome::default()
        }
    }
}

/// What the HTTP/1.1 path has for the request.
pub struct H1Request<'a> {
    /// The prepared upstream request: its head (what
    /// `write_upstream_request_to` wrote, with the proxy's fields and the
    /// normalized target), then the request body bytes that arrived with
    /// the client's head.
    pub prepared: &'a [u8],
    /// `https` on TLS client connections.
    pub scheme: &'static str,
    pub limits: &'a Limits,
    /// The client sent `Expect: 100-continue` (stripped from `prepared`):
    /// answer `100 Continue` before reading the rest of the body.
    pub expect_continue: bool,
    /// The client is HTTP/1.0 (no chunked responses).
    pub http10: bool,
    /// Close the client connection after this response.
    pub close: bool,
    pub deadline: Option<Instant>,
    pub idle: Duration,
    /// Our metadata for the client's sidecar (inbound, mTLS clients):
    /// sent as `x-ringmesh-peer` in the response.
    pub own_peer_header: Option<&'a [u8]>,
}

/// Forward an HTTP/1.1 client's request to an `http2` cluster and write
/// the response to the client (`down`). `rbuf` holds the client's bytes
/// not yet consumed (after the body bytes in `prepared`); on return it
/// holds those after the request (a pipelined next request).
#[allow(clippy::too_many_arguments)]
pub async fn forward_h1_request_to_h2<S: ReadIo + WriteIo>(
    ctx: &Rc<ShardCtx>,
    cluster: &Arc<Cluster>,
    ccells: &Arc<ClusterCells>,
    orig_dst: Option<SocketAddr>,
    req: H1Request<'_>,
    down: &mut S,
    rbuf: &mut Vec<u8>,
) -> H1Outcome {
    let ready = match within(req.deadline, sender(ctx, orig_dst, cluster, ccells)).await {
        None => return H1Outcome::local(504, "upstream request timeout"),
        Some(Err(l)) => {
            let reason = match l.body {
                std::borrow::Cow::Borrowed(b) => {
                    std::str::from_utf8(b).unwrap_or("upstream connect error")
                }
                std::borrow::Cow::Owned(_) => "upstream connect error",
            };
            return H1Outcome::local(l.status, reason);
        }
        Some(Ok(r)) => r,
    };
    ccells.rq_total.inc();
    let addr = ready.addr;
    let mut o = exchange_on(ready.send.clone(), req, down, rbuf).await;
    o.upstream_host = Some(addr);
    let outcome = match (&o.local, o.flags) {
        (Some((504, _)), _) | (None, ResponseFlags::UT) => Some(Outcome::LocalFailure),
        (Some((s, _)), _) if *s >= 500 => Some(Outcome::LocalFailure),
        (Some(_), _) => None,
        (None, f) if f.0 & ResponseFlags::UC.0 != 0 => Some(Outcome::LocalFailure),
        (None, _) => Some(Outcome::Status(
            o.grpc_status.map_or(o.status, http_status_for_grpc),
        )),
    };
    if let Some(outcome) = outcome {
        report(ctx, cluster, addr, outcome);
    }
    if o.local.is_some_and(|(s, _)| s == 504) {
        ccells.rq_timeout.inc();
    }
    drop(ready);
    o
}

/// The exchange on a ready h2 connection (no shard state: unit-tested
/// on its own).
pub async fn exchange_on<S: ReadIo + WriteIo>(
    mut send: SendRequest<Bytes>,
    req: H1Request<'_>,
    down: &mut S,
    rbuf: &mut Vec<u8>,
) -> H1Outcome {
    let mut head = RequestHead::default();
    match parse_request(req.prepared, req.limits, &mut head) {
        Ok(ParseStatus::Complete(_)) => {}
        _ => return H1Outcome::local(400, "invalid request"),
    }
    let p = req.prepared;
    let authority = String::from_utf8_lossy(head.authority.get(p)).into_owned();
    let target = String::from_utf8_lossy(head.target.get(p)).into_owned();
    let target = if target.starts_with('/') || target == "*" {
        target
    } else {
        // Absolute-form: the path part.
        String::from_utf8_lossy(head.path.get(p)).into_owned()
            + if head.query.get(p).is_empty() {
                ""
            } else {
                "?"
            }
            + &String::from_utf8_lossy(head.query.get(p))
    };
    let Ok(uri) = format!("{}://{authority}{target}", req.scheme).parse::<http::Uri>() else {
        return H1Outcome::local(400, "invalid request target");
    };
    let method = match http::Method::from_bytes(head.method_span.get(p)) {
        Ok(m) => m,
        Err(_) => return H1Outcome::local(400, "invalid method"),
    };
    let is_head = method == http::Method::HEAD;
    let mut r = Request::builder().method(method).uri(uri);
    let hm = r.headers_mut().expect("a fresh builder has headers");
    for h in &head.headers {
        if h.hop_by_hop {
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(h.name.get(p)) else {
            continue;
        };
        let n = name.as_str();
        if is_connection_specific(n) || matches!(n, "host" | "te" | "expect") {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(h.value.get(p)) {
            hm.append(name, v);
        }
    }
    let Ok(request) = r.body(()) else {
        return H1Outcome::local(400, "invalid request");
    };
    let mut body = match head.framing {
        BodyFraming::ContentLength(0) | BodyFraming::None | BodyFraming::UntilClose => {
            ReqBody::Done
        }
        BodyFraming::ContentLength(n) => ReqBody::Length(n),
        BodyFraming::Chunked => ReqBody::Chunked(ChunkedDecoder::new()),
    };
    let mut o = H1Outcome::default();
    let (resp, mut up) = match send.send_request(request, matches!(body, ReqBody::Done)) {
        Ok(x) => x,
        Err(_) => {
            o.local = Some((
                503,
                "upstream connect error or disconnect/reset before headers",
            ));
            return o;
        }
    };

    // The request body: what came with the head, then the client's.
    if !matches!(body, ReqBody::Done) {
        let mut first = p[head.head_len..].to_vec();
        let mut from_client = false;
        let mut asked = false;
        loop {
            let (data, consumed) = match body.take(&first) {
                Ok(x) => x,
                Err(reason) => {
                    up.send_reset(h2::Reason::CANCEL);
                    o.local = Some((400, reason));
                    return o;
                }
            };
            if from_client {
                rbuf.drain(..consumed);
            }
            let done = body.is_done();
            if (!data.is_empty() || done)
                && within(req.deadline, send_flow(&mut up, data, done, req.idle))
                    .await
                    .is_none_or(|r| r.is_err())
            {
                o.local = Some((503, "upstream reset while sending the request body"));
                return o;
            }
            if done {
                break;
            }
            // More from the client.
            if rbuf.is_empty() {
                if req.expect_continue && !asked {
                    asked = true;
                    const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
                    let (r, _) = down.write_range(CONTINUE.to_vec(), CONTINUE.len()).await;
                    if r.is_err() {
                        // The client went away: nothing to answer.
                        up.send_reset(h2::Reason::CANCEL);
                        o.flags = ResponseFlags::DC;
                        return o;
                    }
                }
                let mut b = std::mem::take(rbuf);
                if b.capacity() < BODY_BUF {
                    b.reserve(BODY_BUF);
                }
                match monoio::time::timeout(req.idle, down.read_into(b)).await {
                    Ok((Ok(n), b)) if n > 0 => {
                        o.request_read += n as u64;
                        *rbuf = b;
                    }
                    Ok((_, b)) => {
                        *rbuf = b;
                        up.send_reset(h2::Reason::CANCEL);
                        o.local = Some((400, "request body truncated"));
                        return o;
                    }
                    Err(_) => {
                        up.send_reset(h2::Reason::CANCEL);
                        o.local = Some((408, "request body timeout"));
                        return o;
                    }
                }
            }
            first = rbuf.clone();
            from_client = true;
        }
    }

    // The response head.
    let resp = match within(req.deadline, resp).await {
        None => {
            o.local = Some((504, "upstream request timeout"));
            return o;
        }
        Some(Err(_)) => {
            o.local = Some((503, "upstream reset before response"));
            return o;
        }
        Some(Ok(r)) => r,
    };
    let (parts, mut rbody) = resp.into_parts();
    let status = parts.status.as_u16();
    let mut headers = filter_response(&parts.headers);
    o.peer_header = headers.remove(PEER_HEADER).map(|v| v.as_bytes().to_vec());
    o.status = status;
    o.grpc_status = grpc_status_of(&headers);
    let no_body = is_head || status == 204 || status == 304 || rbody.is_end_stream();
    let length = headers.get(header::CONTENT_LENGTH).is_some();
    enum Frame {
        Length,
        Chunked,
        UntilClose,
    }
    let frame = if no_body || length {
        Frame::Length
    } else if req.http10 {
        Frame::UntilClose
    } else {
        Frame::Chunked
    };
    let close = req.close || matches!(frame, Frame::UntilClose);
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    write_fields(&headers, &mut out);
    if let Some(own) = req.own_peer_header {
        out.extend_from_slice(PEER_HEADER.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(own);
        out.extend_from_slice(b"\r\n");
    }
    match frame {
        Frame::Length if !length && status != 204 && status != 304 && !is_head => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        Frame::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !write(down, &mut out, &mut o).await {
        return o;
    }
    if no_body {
        o.keep_alive = !close;
        return o;
    }

    // The response body.
    loop {
        let next = within(req.deadline, monoio::time::timeout(req.idle, rbody.data())).await;
        match next {
            Some(Ok(Some(Ok(b)))) => {
                let _ = rbody.flow_control().release_capacity(b.len());
                if b.is_empty() {
                    continue;
                }
                out.clear();
                if matches!(frame, Frame::Chunked) {
                    out.extend_from_slice(format!("{:x}\r\n", b.len()).as_bytes());
                    out.extend_from_slice(&b);
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.extend_from_slice(&b);
                }
                if !write(down, &mut out, &mut o).await {
                    return o;
                }
            }
            Some(Ok(None)) => break,
            Some(Ok(Some(Err(_)))) => {
                o.flags = ResponseFlags::UC;
                return o;
            }
            Some(Err(_)) | None => {
                o.flags = ResponseFlags::UT;
                return o;
            }
        }
    }
    // Trailers: only their grpc-status is kept.
    if let Some(Ok(Some(t))) = within(req.deadline, poll_fn(|cx| rbody.poll_trailers(cx))).await {
        if let Some(g) = grpc_status_of(&t) {
            o.grpc_status = Some(g);
        }
    }
    if matches!(frame, Frame::Chunked) {
        out.clear();
        out.extend_from_slice(b"0\r\n\r\n");
        if !write(down, &mut out, &mut o).await {
            return o;
        }
    }
    o.keep_alive = !close;
    o
}

fn write_fields(h: &HeaderMap, out: &mut Vec<u8>) {
    for (name, value) in h {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Write `out` to the client; `false` (flag DC) when it went away.
async fn write<S: WriteIo>(down: &mut S, out: &mut Vec<u8>, o: &mut H1Outcome) -> bool {
    let len = out.len();
    let (r, b) = down.write_range(std::mem::take(out), len).await;
    *out = b;
    if r.is_err() {
        o.flags = ResponseFlags::DC;
        return false;
    }
    o.response_bytes += len as u64;
    true
}

/// The rest of a request body.
enum ReqBody {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl ReqBody {
    fn is_done(&self) -> bool {
        match self {
            ReqBody::Done => true,
            ReqBody::Length(n) => *n == 0,
            ReqBody::Chunked(d) => d.is_done(),
        }
    }

    /// The body data at the start of `input`, and how many bytes of it
    /// were consumed.
    fn take(&mut self, input: &[u8]) -> Result<(Bytes, usize), &'static str> {
        match self {
            ReqBody::Done => Ok((Bytes::new(), 0)),
            ReqBody::Length(rem) => {
                let n = (*rem).min(input.len() as u64) as usize;
                *rem -= n as u64;
                Ok((Bytes::copy_from_slice(&input[..n]), n))
            }
            ReqBody::Chunked(d) => {
                let mut data = Vec::with_capacity(input.len());
                let n = d
                    .scan_with(input, |r| data.extend_from_slice(&input[r]))
                    .map_err(|_| "invalid chunked request body")?;
                Ok((Bytes::from(data), n))
            }
        }
    }
}
