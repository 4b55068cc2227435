//! HTTP/2: downstream connections on HTTP listeners (prior knowledge on
//! plaintext, the preface after a TLS handshake, which ALPN `h2`
//! announces) and upstream connections to clusters with
//! `protocol: http2`, on the shard's monoio runtime with the `h2` crate.
//!
//! - [`compat`]: tokio `AsyncRead`/`AsyncWrite` over our streams (h2 needs
//!   nothing else from tokio: no runtime, no timers).
//! - [`guard`]: frame floods close the connection (GOAWAY
//!   `ENHANCE_YOUR_CALM`).
//! - [`server`]: the downstream connection and each stream: routing view,
//!   path normalization, RBAC and route as for HTTP/1, then forwarding —
//!   over HTTP/1.1 to ordinary clusters (a downgrade, so h2 clients reach
//!   every cluster), or over h2 to `http2` clusters.
//! - [`client`]: one multiplexed h2 connection per endpoint per shard,
//!   requests and responses with trailers (gRPC).
//! - [`h1`]: HTTP/1.1 clients to `http2` clusters (called by the HTTP/1.1
//!   path).
//!
//! Each stream is recorded once, when it ends, through [`Tel::record`]:
//! the one place h2 touches the stats and telemetry APIs (listener and
//! cluster counters, Istio metrics, access log), as the HTTP/1 path does.

pub mod client;
pub mod compat;
pub mod guard;
pub mod h1;
pub mod server;
#[cfg(test)]
mod tests;

use std::{cell::Cell, net::SocketAddr, rc::Rc, sync::Arc, time::Duration};

use http::HeaderMap;
use monoio::time::Instant;
use ringmesh_config::Cluster;

use crate::{
    io::ReadIo,
    shard::ShardCtx,
    stats::{class_index, ClusterCells},
    telemetry::{LogFields, PeerId, Protocol, Reporter, RequestRecord, ResponseFlags, Security},
};
use server::ConnShared;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `bytes` start an HTTP/2 connection: `Some(true)` for the whole
/// preface, `Some(false)` as soon as a byte differs, `None` while they
/// are a proper prefix of it. No HTTP/1 request starts with `PRI * `
/// except this one, so HTTP/1 clients are told apart by their first
/// bytes and never wait.
pub fn is_preface(bytes: &[u8]) -> Option<bool> {
    let n = bytes.len().min(PREFACE.len());
    if bytes[..n] != PREFACE[..n] {
        Some(false)
    } else if n == PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

/// Read the first bytes of a plaintext (or just decrypted) HTTP connection
/// into `buf` until they tell HTTP/2 from HTTP/1: `Some(true)` for h2.
/// The first byte may take the idle timeout (a keep-alive connection
/// waits that long too) and ends early when the proxy drains; the rest of
/// a preface must follow within the request-header timeout. `None`: the
/// client closed or went quiet before saying anything useful.
pub async fn detect<S: ReadIo>(ctx: &ShardCtx, s: &mut S, buf: &mut Vec<u8>) -> Option<bool> {
    let limits = ctx.snapshot().limits;
    if buf.is_empty() {
        let b = std::mem::take(buf);
        let r = monoio::select! {
            r = s.read_into(b) => Some(r),
            _ = ctx.drain.wait() => None,
            _ = monoio::time::sleep(limits.idle_timeout) => None,
        };
        match r {
            Some((Ok(n), b)) if n > 0 => *buf = b,
            _ => return None,
        }
    }
    let deadline = Instant::now() + limits.request_headers_timeout;
    loop {
        if let Some(h2) = is_preface(buf) {
            return Some(h2);
        }
        let b = std::mem::take(buf);
        match monoio::time::timeout_at(deadline, s.read_into(b)).await {
            Ok((Ok(n), b)) if n > 0 => *buf = b,
            _ => return None,
        }
    }
}

/// Per-stream telemetry: what [`Tel::record`] reports when the stream
/// ends (forwarded or answered locally), through the same
/// `ShardTelemetry::record_request` as HTTP/1 exchanges, so every h2
/// stream is counted once: listener and cluster status classes, latency,
/// Istio metrics and an access log line.
pub struct Tel {
    pub start: Instant,
    /// The request is gRPC (`content-type: application/grpc…`):
    /// `request_protocol="grpc"`, local replies are gRPC errors.
    pub grpc: bool,
    pub cluster: Option<Arc<Cluster>>,
    pub ccells: Option<Arc<ClusterCells>>,
    pub upstream_host: Option<SocketAddr>,
    /// The other side (see `RequestRecord::peer`).
    pub peer: PeerId,
    /// Bytes received from the client: header fields and DATA (shared
    /// with the task that pumps the body to an h2 upstream).
    pub rq_bytes: Rc<Cell<u64>>,
    /// Bytes sent to the client: header fields, DATA and trailers.
    pub rs_bytes: u64,
    /// The response status (0: no response head was sent).
    pub status: u16,
    pub grpc_status: Option<u16>,
    pub flags: ResponseFlags,
    /// Answered by the proxy itself.
    pub local: bool,
    pub log: Option<LogCopy>,
}

/// What the access log needs from a request, copied when access logs are
/// on.
#[derive(Default)]
pub struct LogCopy {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub request_id: Option<Vec<u8>>,
    pub traceparent: Option<Vec<u8>>,
    pub user_agent: Option<Vec<u8>>,
}

/// Size of a header section as Envoy counts it (`byteSize`: names and
/// values).
pub fn header_bytes(h: &HeaderMap) -> u64 {
    h.iter()
        .map(|(n, v)| (n.as_str().len() + v.len()) as u64)
        .sum()
}

/// The `grpc-status` of a header or trailer section.
pub fn grpc_status_of(h: &HeaderMap) -> Option<u16> {
    h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()
}

/// The HTTP status outlier detection counts for a gRPC status (Envoy's
/// `grpcToHttpStatus`).
pub fn http_status_for_grpc(g: u16) -> u16 {
    match g {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

impl Tel {
    pub fn new(ctx: &ShardCtx, req: &http::Request<h2::RecvStream>, grpc: bool) -> Tel {
        let parts = req.uri();
        let h = req.headers();
        // The pseudo-header fields, as Envoy counts them.
        let pseudo = req.method().as_str().len()
            + parts.path_and_query().map_or(1, |p| p.as_str().len())
            + parts.authority().map_or(0, |a| a.as_str().len())
            + parts.scheme_str().map_or(0, str::len)
            + ":method:path:authority:scheme".len();
        let log = ctx.snapshot().access_log.is_some().then(|| {
            let get = |n: &str| h.get(n).map(|v| v.as_bytes().to_vec());
            LogCopy {
                method: req.method().as_str().to_owned(),
                path: parts
                    .path_and_query()
                    .map_or_else(|| parts.path().to_owned(), |p| p.as_str().to_owned()),
                authority: parts
                    .authority()
                    .map(|a| a.as_str().to_owned())
                    .or_else(|| Some(h.get("host")?.to_str().ok()?.to_owned()))
                    .unwrap_or_default(),
                request_id: get("x-request-id"),
                traceparent: get("traceparent"),
                user_agent: get("user-agent"),
            }
        });
        Tel {
            start: Instant::now(),
            grpc,
            cluster: None,
            ccells: None,
            upstream_host: None,
            peer: PeerId::UNKNOWN,
            rq_bytes: Rc::new(Cell::new(pseudo as u64 + header_bytes(h))),
            rs_bytes: 0,
            status: 0,
            grpc_status: None,
            flags: ResponseFlags::NONE,
            local: false,
            log,
        }
    }

    /// Add response flags.
    pub fn flag(&mut self, f: ResponseFlags) {
        self.flags = ResponseFlags(self.flags.0 | f.0);
    }

    /// Count a response head sent to the client.
    pub fn response_head(&mut self, status: u16, headers: &HeaderMap) {
        self.status = status;
        self.rs_bytes += ":status".len() as u64 + 3 + header_bytes(headers);
        if let Some(g) = grpc_status_of(headers) {
            self.grpc_status = Some(g);
        }
    }

    /// Record the finished stream (once: the caller owns the `Tel`).
    pub fn record(self, sh: &ConnShared) {
        let ctx = &sh.ctx;
        let status = self.status;
        let i = class_index(status);
        if self.local {
            ctx.stats.local_reply(status);
        } else if let Some(cc) = &self.ccells {
            cc.rq_by_class[i].inc();
        }
        sh.ls.cells.rq_by_class[i].inc();
        let duration = self.start.elapsed();
        sh.ls.latency.record_us(duration.as_micros() as u64);

        let snap = ctx.snapshot();
        let cluster = self.cluster.as_deref();
        let reporter = Reporter::of(sh.listener_tls, cluster);
        let security = match reporter {
            Reporter::Source => Security::Unknown,
            Reporter::Destination if sh.principal.is_some() => Security::MutualTls,
            Reporter::Destination => Security::None,
        };
        let peer = match (reporter, self.peer) {
            // Answered before the header was read: the SPIFFE ID says who.
            (Reporter::Destination, PeerId::UNKNOWN) => ctx
                .stats
                .telemetry
                .inbound_peer(sh.principal.as_deref(), None),
            (_, p) => p,
        };
        // A local reply to a gRPC client is `:status 200` on the wire, its
        // error in `grpc-status` (what Istio reports, as for Envoy).
        let response_code = if self.local && self.grpc { 200 } else { status };
        let r = RequestRecord {
            reporter,
            peer,
            cluster,
            protocol: if self.grpc {
                Protocol::Grpc
            } else {
                Protocol::Http
            },
            response_code,
            grpc_status: self.grpc_status,
            flags: self.flags,
            request_bytes: self.rq_bytes.get(),
            response_bytes: self.rs_bytes,
            duration,
            security,
        };
        ctx.stats.telemetry.record_request(&snap, &r, || {
            let l = self.log.as_ref();
            let opt = |f: fn(&LogCopy) -> &Option<Vec<u8>>| l.and_then(|l| f(l).as_deref());
            LogFields {
                method: l.map_or(&[][..], |l| l.method.as_bytes()),
                path: l.map_or(&[][..], |l| l.path.as_bytes()),
                protocol: "HTTP/2",
                authority: l.map_or(&[][..], |l| l.authority.as_bytes()),
                upstream_host: self.upstream_host,
                downstream_principal: sh.principal.as_deref(),
                request_id: opt(|l| &l.request_id),
                traceparent: opt(|l| &l.traceparent),
                user_agent: opt(|l| &l.user_agent),
            }
        });
    }
}

/// `grpc-timeout` (RFC-less gRPC wire spec: at most 8 digits and a unit
/// `H M S m u n`). `None` when absent or malformed (ignored, as gRPC
/// servers do).
pub fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n.saturating_mul(3600)),
        b'M' => Duration::from_secs(n.saturating_mul(60)),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status a local reply maps to (as Envoy maps HTTP statuses
/// for gRPC clients).
pub fn grpc_status_for(http: u16) -> u8 {
    match http {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        413 => 8,              // RESOURCE_EXHAUSTED
        429 | 502 | 503 => 14, // UNAVAILABLE
        504 => 4,              // DEADLINE_EXCEEDED
        _ => 2,                // UNKNOWN
    }
}

/// Connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2), also
/// hop-by-hop in HTTP/1.1; never forwarded in either direction. `te` is
/// handled apart (only `trailers` may cross into h2).
pub fn is_connection_specific(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
    )
}
