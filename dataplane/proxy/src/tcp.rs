//! L4 proxying: bytes both ways with half-close. Plaintext on both sides is
//! spliced in the kernel; when either side is TLS the bytes pass through
//! user space (decrypt, encrypt) with one reused buffer per direction.

use std::{rc::Rc, sync::Arc};

use monoio::{
    io::{zero_copy, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable},
    net::TcpStream,
};
use ringmesh_config::{authz::AuthzInput, ListenerKind};

use crate::{
    io::{pump, ReadIo, WriteIo},
    shard::ShardCtx,
    stats::{record_verdict, ListenerStats},
    telemetry::{PeerId, Reporter, Security},
    tls::{TlsReadHalf, TlsStream, TlsWriteHalf},
    upstream::{acquire_fresh, UpStream},
};

/// Bytes copied per read when the data passes through user space.
const COPY_BUF: usize = 16 * 1024;

/// The downstream side of a TCP connection.
pub enum Down {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// A reading half, plaintext or TLS.
enum ReadSide {
    Plain(OwnedReadHalf<TcpStream>),
    Tls(TlsReadHalf),
}

/// A writing half, plaintext or TLS.
enum WriteSide {
    Plain(OwnedWriteHalf<TcpStream>),
    Tls(TlsWriteHalf),
}

impl ReadIo for ReadSide {
    async fn read_into(&mut self, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        match self {
            ReadSide::Plain(r) => r.read_into(buf).await,
            ReadSide::Tls(r) => r.read_into(buf).await,
        }
    }
}

impl WriteIo for WriteSide {
    async fn write_range(&mut self, buf: Vec<u8>, end: usize) -> (std::io::Result<usize>, Vec<u8>) {
        match self {
            WriteSide::Plain(w) => w.write_range(buf, end).await,
            WriteSide::Tls(w) => w.write_range(buf, end).await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            WriteSide::Plain(w) => WriteIo::shutdown(w).await,
            WriteSide::Tls(w) => w.shutdown().await,
        }
    }
}

fn split_down(d: Down) -> (ReadSide, WriteSide) {
    match d {
        Down::Plain(s) => {
            let (r, w) = s.into_split();
            (ReadSide::Plain(r), WriteSide::Plain(w))
        }
        Down::Tls(s) => {
            let (r, w) = s.into_split();
            (ReadSide::Tls(r), WriteSide::Tls(w))
        }
    }
}

fn split_up(u: UpStream) -> (ReadSide, WriteSide) {
    match u {
        UpStream::Plain(s) => split_down(Down::Plain(s)),
        UpStream::Tls(s) => split_down(Down::Tls(s)),
    }
}

/// Serve one TCP connection: connect to the listener's cluster (mTLS when
/// it says so) and copy both ways until both directions are closed.
/// `received` holds bytes already read from the client (protocol
/// detection); they are sent upstream first.
pub async fn serve(
    ctx: Rc<ShardCtx>,
    listener: Arc<str>,
    ls: Rc<ListenerStats>,
    down: Down,
    conn: crate::ConnInfo,
    received: Vec<u8>,
) {
    let peer = conn.peer;
    let snap = ctx.snapshot();
    let Some(l) = snap.listeners.iter().find(|l| l.name == listener) else {
        return;
    };
    let cluster = match &l.kind {
        ListenerKind::Tcp { cluster_idx, .. } => snap.clusters[*cluster_idx as usize].clone(),
        _ => return,
    };
    // Network RBAC: checked once, before anything is sent upstream; a
    // denied connection is closed (Envoy's network RBAC filter).
    if !l.rbac.is_empty() {
        let principal = conn.peer_identity.as_ref().map(|id| id.to_string());
        let verdict = l.rbac.evaluate(&AuthzInput {
            request: None,
            peer: peer.ip(),
            destination: conn.destination(),
            principal: principal.as_deref(),
            sni: conn.sni.as_deref(),
        });
        record_verdict(&ls, &listener, &verdict, peer, principal.as_deref(), None);
        if verdict.denied.is_some() {
            return;
        }
    }
    let reporter = Reporter::of(l.tls, Some(&cluster));
    drop(snap);
    let cells = ctx.stats.cluster(cluster.id, &cluster.name);
    let tls = match ctx.client_tls(&cluster) {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(%peer, cluster = %cluster.name, error = %e, "tcp: no upstream connection");
            return;
        }
    };
    let up = match acquire_fresh(&ctx.pools, &cluster, &cells, conn.orig_dst, tls.as_ref()).await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%peer, cluster = %cluster.name, error = %e, "tcp: no upstream connection");
            return;
        }
    };
    cells.rq_total.inc();
    // Istio TCP metrics: opened now, closed (with the bytes) on return.
    let (peer_id, security) = match reporter {
        Reporter::Source => (PeerId::UNKNOWN, Security::Unknown),
        Reporter::Destination => {
            let principal = conn.peer_identity.as_ref().map(|id| id.to_string());
            let p = ctx.stats.telemetry.inbound_peer(principal.as_deref(), None);
            let sec = if principal.is_some() {
                Security::MutualTls
            } else {
                Security::None
            };
            (p, sec)
        }
    };
    let snap = ctx.snapshot();
    ctx.stats
        .telemetry
        .tcp_opened(&snap, reporter, peer_id, &cluster, security);
    let mut closed = TcpClosed {
        ctx: &ctx,
        reporter,
        peer: peer_id,
        cluster: &cluster,
        security,
        sent: 0,
        received: 0,
    };
    let (up_stream, _active) = up.into_parts();
    if !received.is_empty() {
        ls.cells.rx_bytes.add(received.len() as u64);
        closed.received = received.len() as u64;
    }
    let (sent, received_total) = match (down, up_stream) {
        (Down::Plain(down), UpStream::Plain(mut up)) => {
            // Bytes read while detecting the protocol go first.
            if !received.is_empty() {
                let n = received.len();
                let (r, _) = up.write_range(received, n).await;
                if r.is_err() {
                    return;
                }
            }
            let (mut dr, mut dw) = down.into_split();
            let (mut ur, mut uw) = up.into_split();
            monoio::join!(
                async {
                    let r = zero_copy(&mut dr, &mut uw).await;
                    let _ = AsyncWriteRent::shutdown(&mut uw).await;
                    r
                },
                async {
                    let r = zero_copy(&mut ur, &mut dw).await;
                    let _ = AsyncWriteRent::shutdown(&mut dw).await;
                    r
                }
            )
        }
        (down, up) => {
            let (mut dr, mut dw) = split_down(down);
            let (mut ur, mut uw) = split_up(up);
            if !received.is_empty() {
                let n = received.len();
                let (r, _) = uw.write_range(received, n).await;
                if r.is_err() {
                    return;
                }
            }
            monoio::join!(
                pump(&mut dr, &mut uw, Vec::with_capacity(COPY_BUF)),
                pump(&mut ur, &mut dw, Vec::with_capacity(COPY_BUF))
            )
        }
    };
    if let Ok(n) = sent {
        ls.cells.rx_bytes.add(n);
        closed.received += n;
    }
    if let Ok(n) = received_total {
        ls.cells.tx_bytes.add(n);
        closed.sent = n;
    }
}

/// Records `istio_tcp_connections_closed_total` and the byte counts when
/// the connection ends, whichever way.
struct TcpClosed<'a> {
    ctx: &'a ShardCtx,
    reporter: Reporter,
    peer: PeerId,
    cluster: &'a ringmesh_config::Cluster,
    security: Security,
    /// To the client, from the client.
    sent: u64,
    received: u64,
}

impl Drop for TcpClosed<'_> {
    fn drop(&mut self) {
        let snap = self.ctx.snapshot();
        self.ctx.stats.telemetry.tcp_closed(
            &snap,
            self.reporter,
            self.peer,
            self.cluster,
            self.security,
            self.sent,
            self.received,
        );
    }
}
