//! Upstream connections: endpoint choice (the cluster's policy, skipping
//! ejected endpoints: [`crate::lb`]), connect with a timeout (and, for
//! `ISTIO_MUTUAL` clusters, the mTLS handshake within the same timeout)
//! under the cluster's circuit breakers, outlier reports, and the shard's
//! idle-connection pool.
//!
//! Pools and balancer state are shard-local (`RefCell`, no locks): each
//! shard keeps its own pool and cursors, as each shard owns its own
//! downstream connections. Circuit breakers and outlier state are the
//! cluster's, shared by all shards ([`crate::resilience`]). Pooled connections are keyed by endpoint *and*
//! TLS settings ([`ringmesh_config::UpstreamTls::key`], 0 for plaintext),
//! so a connection is only reused for a cluster that would have verified
//! the server the same way.

use std::{
    cell::RefCell,
    collections::HashMap,
    io,
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    sync::Arc,
    time::{Duration, Instant},
};

use monoio::net::TcpStream;
use ringmesh_config::{Cluster, ClusterKind};
use rustls::{pki_types::ServerName, ClientConfig};

use crate::{
    io::{Io, ReadIo, WriteIo},
    lb::Balancer,
    resilience::{ClusterState, Held, InFlight, Outcome, Overflow},
    stats::ClusterCells,
    tls::TlsStream,
};

/// Idle connections kept per endpoint per shard.
const MAX_IDLE_PER_ENDPOINT: usize = 64;

/// An upstream connection: plaintext, or mTLS for `ISTIO_MUTUAL`
/// clusters. A plaintext connection costs one branch on the enum per
/// I/O call, nothing more.
pub enum UpStream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl UpStream {
    fn raw_fd(&self) -> RawFd {
        match self {
            UpStream::Plain(s) => s.as_raw_fd(),
            UpStream::Tls(s) => s.raw_fd(),
        }
    }
}

impl ReadIo for UpStream {
    async fn read_into(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            UpStream::Plain(s) => s.read_into(buf).await,
            UpStream::Tls(s) => s.read_into(buf).await,
        }
    }
}

impl WriteIo for UpStream {
    async fn write_range(&mut self, buf: Vec<u8>, end: usize) -> (io::Result<usize>, Vec<u8>) {
        match self {
            UpStream::Plain(s) => s.write_range(buf, end).await,
            UpStream::Tls(s) => s.write_range(buf, end).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            UpStream::Plain(s) => WriteIo::shutdown(s).await,
            UpStream::Tls(s) => WriteIo::shutdown(&mut **s).await,
        }
    }
}

impl Io for UpStream {
    const TLS: bool = false;
}

/// How to originate mTLS for one cluster: its client configuration (with
/// the session cache shared by every connection of equal settings) and the
/// SNI to send.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    /// `None`: no SNI; rustls is given the endpoint's IP address.
    pub sni: Option<ServerName<'static>>,
}

/// An upstream connection and the bookkeeping that follows it.
pub struct Upstream {
    pub stream: UpStream,
    pub addr: SocketAddr,
    /// The cluster's TLS key (0: plaintext): the pool key beside `addr`.
    pub tls_key: u64,
    /// Taken from the pool rather than freshly connected.
    pub reused: bool,
    active: ActiveUpstream,
    /// The cluster's shared state, when acquired for a cluster (outlier
    /// reports, circuit breakers).
    state: Option<Arc<ClusterState>>,
    /// The connection's place under `max_connections`.
    _cx_slot: Option<Held>,
    /// The request in flight on it (least request); cleared on checkin.
    in_flight: Option<InFlight>,
}

/// Keeps `upstream_cx_active` right however the connection ends.
pub struct ActiveUpstream(Arc<ClusterCells>);

impl Drop for ActiveUpstream {
    fn drop(&mut self) {
        self.0.cx_active.dec();
    }
}

/// What an upstream connection taken apart keeps accounted for; the
/// fields are only ever dropped.
pub struct UpstreamGuard(
    #[allow(dead_code)] ActiveUpstream,
    #[allow(dead_code)] Option<Held>,
    #[allow(dead_code)] Option<InFlight>,
);

impl Upstream {
    /// The stream, and the guards to hold while it is open (connection
    /// counts, circuit-breaker slot, request in flight).
    pub fn into_parts(self) -> (UpStream, UpstreamGuard) {
        (
            self.stream,
            UpstreamGuard(self.active, self._cx_slot, self.in_flight),
        )
    }

    /// Tell outlier detection how the exchange on this connection ended
    /// (a response status, or a local failure: reset, timeout). Returns
    /// whether the endpoint was ejected by it.
    pub fn report(&self, cluster: &Cluster, outcome: Outcome) -> bool {
        self.state
            .as_ref()
            .is_some_and(|s| s.report(cluster, self.addr, outcome))
    }
}

struct Idle {
    conn: Upstream,
    since: Instant,
}

#[derive(Default)]
pub struct Pools {
    idle: RefCell<HashMap<(SocketAddr, u64), Vec<Idle>>>,
    pub lb: Balancer,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no healthy upstream")]
    NoEndpoints,
    #[error("upstream connect error: {0}")]
    Failed(io::Error),
    #[error("upstream connect timeout")]
    Timeout,
    #[error("upstream TLS handshake failed: {0}")]
    Tls(crate::tls::HandshakeError),
    /// The cluster needs mTLS and this proxy has no certificate yet.
    #[error("no TLS identity yet (waiting for this proxy's certificate)")]
    NoIdentity,
    /// The cluster's TLS client configuration could not be built.
    #[error("cannot configure TLS for the cluster: {0}")]
    TlsConfig(String),
    /// A circuit breaker is open (Envoy's response flag `UO`).
    #[error("upstream overflow ({})", .0.as_str())]
    Overflow(Overflow),
}

impl Pools {
    /// Next endpoint by the cluster's policy (ejected endpoints skipped);
    /// for an `original_dst` cluster, the connection's original
    /// destination. `hash` is the request's consistent-hash key.
    pub fn pick(&self, cluster: &Cluster, orig_dst: Option<SocketAddr>) -> Option<SocketAddr> {
        self.pick_hashed(cluster, orig_dst, None)
    }

    pub fn pick_hashed(
        &self,
        cluster: &Cluster,
        orig_dst: Option<SocketAddr>,
        hash: Option<u64>,
    ) -> Option<SocketAddr> {
        if cluster.kind == ClusterKind::OriginalDst {
            return orig_dst;
        }
        self.lb.pick(cluster, hash)
    }

    /// An idle pooled connection to `addr`, if any. With `verify`, one
    /// non-blocking peek makes sure the upstream has not closed it.
    pub fn checkout(
        &self,
        addr: SocketAddr,
        tls_key: u64,
        idle_timeout: Duration,
        verify: bool,
    ) -> Option<Upstream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&(addr, tls_key))?;
        while let Some(mut i) = list.pop() {
            if i.since.elapsed() < idle_timeout && (!verify || still_open(&mut i.conn.stream)) {
                i.conn.reused = true;
                i.conn.in_flight = i
                    .conn
                    .state
                    .as_ref()
                    .map(|s| InFlight::new(s.endpoint(addr)));
                return Some(i.conn);
            }
        }
        None
    }

    /// Return a connection whose exchange completed cleanly.
    pub fn checkin(&self, mut conn: Upstream) {
        conn.in_flight = None;
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry((conn.addr, conn.tls_key)).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Drop idle connections to endpoints no longer in `live`, and ones idle
    /// for longer than `idle_timeout` (called on the shard's timer).
    pub fn sweep(&self, live: &dyn Fn(&SocketAddr) -> bool, idle_timeout: Duration) {
        let mut idle = self.idle.borrow_mut();
        idle.retain(|(addr, _), list| {
            if !live(addr) {
                return false;
            }
            list.retain(|i| i.since.elapsed() < idle_timeout);
            !list.is_empty()
        });
    }

    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}

/// A pooled connection the upstream closed (EOF) or that has unexpected
/// bytes waiting is not reusable (for TLS that includes a `close_notify`
/// or anything rustls still holds). One non-blocking `recv(MSG_PEEK)`.
fn still_open(s: &mut UpStream) -> bool {
    if let UpStream::Tls(t) = s {
        if !t.is_quiet() {
            return false;
        }
    }
    let mut b = [0u8; 1];
    // SAFETY: the fd is owned by `s` and open; `b` is a valid 1-byte buffer.
    let r = unsafe {
        libc::recv(
            s.raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return e.kind() == io::ErrorKind::WouldBlock;
    }
    false
}

/// Connect to `addr` and, with `tls`, complete the mTLS handshake — both
/// within `timeout` (as Envoy's `connect_timeout` covers a TLS transport
/// socket's handshake).
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    cells: &Arc<ClusterCells>,
    tls: Option<(&ClientTls, u64)>,
) -> Result<Upstream, ConnectError> {
    let handshaking = std::cell::Cell::new(false);
    let r = monoio::time::timeout(timeout, open(addr, tls, cells, &handshaking)).await;
    let (stream, tls_key) = match r {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            cells.cx_connect_fail.inc();
            return Err(e);
        }
        Err(_) => {
            cells.cx_connect_fail.inc();
            if handshaking.get() {
                cells.tls_handshake_fail.inc();
            }
            return Err(ConnectError::Timeout);
        }
    };
    cells.cx_total.inc();
    cells.cx_active.inc();
    Ok(Upstream {
        stream,
        addr,
        tls_key,
        reused: false,
        active: ActiveUpstream(cells.clone()),
        state: None,
        _cx_slot: None,
        in_flight: None,
    })
}

async fn open(
    addr: SocketAddr,
    tls: Option<(&ClientTls, u64)>,
    cells: &ClusterCells,
    handshaking: &std::cell::Cell<bool>,
) -> Result<(UpStream, u64), ConnectError> {
    let stream = TcpStream::connect_addr(addr)
        .await
        .map_err(ConnectError::Failed)?;
    let _ = stream.set_nodelay(true);
    let Some((tls, key)) = tls else {
        return Ok((UpStream::Plain(stream), 0));
    };
    handshaking.set(true);
    let name = tls
        .sni
        .clone()
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
    let mut s = match TlsStream::client(stream, tls.config.clone(), name) {
        Ok(s) => s,
        Err(e) => {
            cells.tls_handshake_fail.inc();
            return Err(ConnectError::Tls(crate::tls::HandshakeError::Tls(e)));
        }
    };
    match s.handshake().await {
        Ok(()) => {
            cells.tls_handshake_ok.inc();
            if s.resumed() {
                cells.tls_resumed.inc();
            }
            Ok((UpStream::Tls(Box::new(s)), key))
        }
        Err(e) => {
            cells.tls_handshake_fail.inc();
            Err(ConnectError::Tls(e))
        }
    }
}

/// A connection to some endpoint of `cluster`: pooled if possible, else a
/// new one; on connect failure the next endpoints are tried (nothing has
/// been sent yet, so this is always safe), up to three attempts.
///
/// `tls` gives the cluster's client configuration when it originates mTLS
/// (looked up only when a new connection is needed).
pub async fn acquire(
    pools: &Pools,
    cluster: &Cluster,
    cells: &Arc<ClusterCells>,
    idle_timeout: Duration,
    verify: bool,
    orig_dst: Option<SocketAddr>,
    tls: impl Fn() -> Result<Option<ClientTls>, ConnectError>,
) -> Result<Upstream, ConnectError> {
    acquire_hashed(
        pools,
        cluster,
        cells,
        idle_timeout,
        verify,
        orig_dst,
        None,
        tls,
    )
    .await
}

/// [`acquire`] with the request's consistent-hash key.
#[allow(clippy::too_many_arguments)]
pub async fn acquire_hashed(
    pools: &Pools,
    cluster: &Cluster,
    cells: &Arc<ClusterCells>,
    idle_timeout: Duration,
    verify: bool,
    orig_dst: Option<SocketAddr>,
    hash: Option<u64>,
    tls: impl Fn() -> Result<Option<ClientTls>, ConnectError>,
) -> Result<Upstream, ConnectError> {
    let attempts = cluster.endpoints.len().clamp(1, 3);
    let tls_key = cluster.tls.as_ref().map_or(0, |t| t.key);
    let state = pools.lb.state(cluster);
    let limits = &cluster.circuit_breakers;
    let mut last = ConnectError::NoEndpoints;
    let mut client: Option<Option<ClientTls>> = None;
    for _ in 0..attempts {
        let Some(addr) = pools.pick_hashed(cluster, orig_dst, hash) else {
            return Err(ConnectError::NoEndpoints);
        };
        if let Some(mut c) = pools.checkout(addr, tls_key, idle_timeout, verify) {
            cells.cx_pool_reuse.inc();
            if c.state.is_none() {
                c.in_flight = Some(InFlight::new(state.endpoint(addr)));
                c.state = Some(state.clone());
            }
            return Ok(c);
        }
        // A new connection: the request is pending until it is up.
        let Some(_pending) = state.hold(Overflow::Pending, limits) else {
            return Err(ConnectError::Overflow(Overflow::Pending));
        };
        let Some(cx_slot) = state.hold(Overflow::Connections, limits) else {
            return Err(ConnectError::Overflow(Overflow::Connections));
        };
        if client.is_none() {
            client = Some(tls()?);
        }
        let with = client
            .as_ref()
            .and_then(Option::as_ref)
            .map(|c| (c, tls_key));
        match connect(addr, cluster.connect_timeout, cells, with).await {
            Ok(mut c) => {
                c.in_flight = Some(InFlight::new(state.endpoint(addr)));
                c.state = Some(state);
                c._cx_slot = Some(cx_slot);
                return Ok(c);
            }
            Err(e) => {
                tracing::debug!(cluster = %cluster.name, %addr, error = %e, "upstream connect failed");
                if cluster.kind != ClusterKind::OriginalDst {
                    state.report(cluster, addr, Outcome::LocalFailure);
                }
                last = e;
            }
        }
    }
    Err(last)
}

/// A new connection (never pooled: for TCP proxying), trying up to three
/// endpoints, under the cluster's `max_connections`.
pub async fn acquire_fresh(
    pools: &Pools,
    cluster: &Cluster,
    cells: &Arc<ClusterCells>,
    orig_dst: Option<SocketAddr>,
    tls: Option<&ClientTls>,
) -> Result<Upstream, ConnectError> {
    let attempts = cluster.endpoints.len().clamp(1, 3);
    let tls_key = cluster.tls.as_ref().map_or(0, |t| t.key);
    let state = pools.lb.state(cluster);
    let mut last = ConnectError::NoEndpoints;
    for _ in 0..attempts {
        let Some(addr) = pools.pick(cluster, orig_dst) else {
            return Err(ConnectError::NoEndpoints);
        };
        let Some(cx_slot) = state.hold(Overflow::Connections, &cluster.circuit_breakers) else {
            return Err(ConnectError::Overflow(Overflow::Connections));
        };
        match connect(
            addr,
            cluster.connect_timeout,
            cells,
            tls.map(|t| (t, tls_key)),
        )
        .await
        {
            Ok(mut c) => {
                c.in_flight = Some(InFlight::new(state.endpoint(addr)));
                c.state = Some(state);
                c._cx_slot = Some(cx_slot);
                return Ok(c);
            }
            Err(e) => {
                if cluster.kind != ClusterKind::OriginalDst {
                    state.report(cluster, addr, Outcome::LocalFailure);
                }
                last = e;
            }
        }
    }
    Err(last)
}
