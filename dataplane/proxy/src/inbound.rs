//! Inbound TLS: what a `STRICT` or `PERMISSIVE` listener does with an
//! accepted connection before HTTP or TCP proxying takes over.
//!
//! The connection's first bytes are read (within the idle timeout, or
//! [`PERMISSIVE_TCP_DETECT`] on a PERMISSIVE TCP listener, whose clients
//! may wait for the server to speak first) and sniffed: a TLS handshake
//! record (`0x16 0x03`) is terminated with this proxy's SVID, requiring a
//! client SVID of the trust domain; anything else is plaintext, served on
//! a PERMISSIVE listener and closed on a STRICT one. The bytes read while
//! sniffing are not lost: they become the first ciphertext of the TLS
//! connection, or the start of the plaintext stream.
//!
//! The handshake must complete within `limits.tls_handshake_timeout` of
//! its first byte. The peer's verified SPIFFE ID travels on in
//! [`ConnInfo::peer_identity`](crate::ConnInfo).

use std::{rc::Rc, sync::Arc, time::Duration};

use monoio::{net::TcpStream, time::Instant};
use ringmesh_config::DownstreamTls;

use crate::{
    io::ReadIo,
    shard::ShardCtx,
    stats::ListenerStats,
    tcp::Down,
    tls::{sniff, HandshakeError, Sniffed, TlsStream},
};

/// How long a PERMISSIVE TCP listener waits for the client's first byte
/// before taking the connection for plaintext (a server-first protocol):
/// Istio's former protocol detection timeout.
pub const PERMISSIVE_TCP_DETECT: Duration = Duration::from_millis(100);

/// Capacity of the buffer the first bytes are read into. It becomes the
/// HTTP read buffer (plaintext) or the TLS ciphertext buffer.
const FIRST_READ: usize = 8 * 1024;

/// Serve a connection accepted on a listener with TLS `mode` (not
/// `Disable`).
pub async fn serve(
    ctx: Rc<ShardCtx>,
    listener: Arc<str>,
    ls: Rc<ListenerStats>,
    mut stream: TcpStream,
    mut conn: crate::ConnInfo,
    mode: DownstreamTls,
    http: bool,
) {
    let limits = ctx.snapshot().limits;
    let mut buf = Vec::with_capacity(FIRST_READ);

    // The first byte: a client idle this long is closed, as a keep-alive
    // connection would be. A PERMISSIVE TCP listener decides sooner.
    let first_wait = if mode == DownstreamTls::Permissive && !http {
        PERMISSIVE_TCP_DETECT
    } else {
        limits.idle_timeout
    };
    // Waiting for readability consumes nothing, so giving up (timeout,
    // drain) cannot lose bytes.
    let ready = monoio::select! {
        r = monoio::time::timeout(first_wait, stream.readable(false)) => Some(r),
        _ = ctx.drain.wait() => None,
    };
    let silent = match ready {
        None | Some(Ok(Err(_))) => return,
        Some(Ok(Ok(()))) => false,
        // Nothing said: on a PERMISSIVE TCP listener, a server-first
        // plaintext protocol; otherwise an idle client.
        Some(Err(_)) if mode == DownstreamTls::Permissive && !http => true,
        Some(Err(_)) => return,
    };
    // From the first byte on, the handshake clock runs.
    let deadline = Instant::now() + limits.tls_handshake_timeout;
    let kind = if silent {
        Sniffed::Plaintext
    } else {
        loop {
            match sniff(&buf) {
                Sniffed::NeedMore => {}
                decided => break decided,
            }
            match monoio::time::timeout_at(deadline, stream.read_into(buf)).await {
                Ok((Ok(n), b)) if n > 0 => buf = b,
                Ok(_) => return, // closed or failed before a decision
                Err(_) => {
                    ls.cells.tls_handshake_timeout.inc();
                    return;
                }
            }
        }
    };

    if kind == Sniffed::Plaintext {
        if mode == DownstreamTls::Strict {
            ls.cells.cx_plaintext_refused.inc();
            tracing::debug!(peer = %conn.peer, listener = %listener, "plaintext connection refused: the listener requires mTLS (STRICT)");
            return;
        }
        ls.cells.cx_plaintext.inc();
        if http {
            // HTTP/2 prior knowledge or HTTP/1 (a preface prefix waits for
            // more bytes; anything else is decided already).
            let Some(h2) = crate::h2::detect(&ctx, &mut stream, &mut buf).await else {
                return;
            };
            // (The TCP path counts them as it forwards them.)
            ls.cells.rx_bytes.add(buf.len() as u64);
            if h2 {
                crate::h2::server::serve_plain(ctx, listener, ls, stream, conn, buf).await;
            } else {
                crate::http::serve(ctx, listener, ls, stream, conn, buf).await;
            }
        } else {
            crate::tcp::serve(ctx, listener, ls, Down::Plain(stream), conn, buf).await;
        }
        return;
    }

    // TLS.
    let Some(mesh) = ctx.shared.identity.mesh() else {
        ls.cells.tls_handshake_fail.inc();
        tracing::warn!(peer = %conn.peer, listener = %listener, "TLS connection refused: this proxy has no certificate yet");
        return;
    };
    let config = if http {
        mesh.server_http.clone()
    } else {
        mesh.server_tcp.clone()
    };
    let mut tls = match TlsStream::server(stream, config, buf) {
        Ok(t) => t,
        Err(e) => {
            ls.cells.tls_handshake_fail.inc();
            tracing::warn!(error = %e, "cannot start a TLS connection");
            return;
        }
    };
    let done = monoio::time::timeout_at(deadline, tls.handshake()).await;
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            ls.cells.tls_handshake_fail.inc();
            log_failure(&conn, &listener, &e);
            return;
        }
        Err(_) => {
            ls.cells.tls_handshake_timeout.inc();
            tracing::debug!(peer = %conn.peer, listener = %listener, "TLS handshake timed out");
            return;
        }
    }
    ls.cells.tls_handshake_ok.inc();
    let Some(id) = tls.peer_identity() else {
        // The verifier requires a client SVID; a session resumed from one
        // carries it too. Nothing else may pass.
        ls.cells.tls_handshake_fail.inc();
        tracing::warn!(peer = %conn.peer, listener = %listener, "mTLS connection without a peer SPIFFE ID; closed");
        return;
    };
    ls.cells.cx_mtls.inc();
    tracing::trace!(peer = %conn.peer, peer_identity = %id, listener = %listener, "mTLS connection");
    conn.peer_identity = Some(Rc::new(id));
    conn.sni = tls.server_name().map(Rc::from);
    if http {
        // ALPN `h2` announces HTTP/2, but the first bytes decide: a client
        // that offered h2 and speaks HTTP/1.1 anyway is still served.
        let mut pre = Vec::with_capacity(FIRST_READ);
        let Some(h2) = crate::h2::detect(&ctx, &mut tls, &mut pre).await else {
            return;
        };
        ls.cells.rx_bytes.add(pre.len() as u64);
        if h2 {
            crate::h2::server::serve_tls(ctx, listener, ls, tls, conn, pre).await;
        } else {
            crate::http::serve(ctx, listener, ls, tls, conn, pre).await;
        }
    } else {
        crate::tcp::serve(
            ctx,
            listener,
            ls,
            Down::Tls(Box::new(tls)),
            conn,
            Vec::new(),
        )
        .await;
    }
}

fn log_failure(conn: &crate::ConnInfo, listener: &str, e: &HandshakeError) {
    match e {
        HandshakeError::Tls(err) => {
            let reason = ringmesh_tls::svid_error(err)
                .map(ToString::to_string)
                .unwrap_or_else(|| err.to_string());
            tracing::info!(peer = %conn.peer, listener, "TLS handshake refused: {reason}");
        }
        other => tracing::debug!(peer = %conn.peer, listener, "TLS handshake failed: {other}"),
    }
}
