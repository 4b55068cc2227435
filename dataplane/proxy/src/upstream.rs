//! Upstream connections: endpoint choice (round robin), connect with a
//! timeout, and the shard's idle-connection pool.
//!
//! Everything here is shard-local (`RefCell`, no locks): each shard keeps
//! its own pool and its own round-robin cursors, as each shard owns its own
//! downstream connections.

use std::{
    cell::RefCell,
    collections::HashMap,
    io,
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::Arc,
    time::{Duration, Instant},
};

use monoio::net::TcpStream;
use ringmesh_config::{Cluster, ClusterKind};

use crate::stats::ClusterCells;

/// Idle connections kept per endpoint per shard.
const MAX_IDLE_PER_ENDPOINT: usize = 64;

/// An upstream connection and the bookkeeping that follows it.
pub struct Upstream {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    /// Taken from the pool rather than freshly connected.
    pub reused: bool,
    active: ActiveUpstream,
}

/// Keeps `upstream_cx_active` right however the connection ends.
pub struct ActiveUpstream(Arc<ClusterCells>);

impl Drop for ActiveUpstream {
    fn drop(&mut self) {
        self.0.cx_active.dec();
    }
}

impl Upstream {
    /// The stream, and the guard to hold while it is open.
    pub fn into_parts(self) -> (TcpStream, ActiveUpstream) {
        (self.stream, self.active)
    }
}

struct Idle {
    conn: Upstream,
    since: Instant,
}

#[derive(Default)]
pub struct Pools {
    idle: RefCell<HashMap<SocketAddr, Vec<Idle>>>,
    cursors: RefCell<HashMap<u64, usize>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no healthy upstream")]
    NoEndpoints,
    #[error("upstream connect error: {0}")]
    Failed(io::Error),
    #[error("upstream connect timeout")]
    Timeout,
}

impl Pools {
    /// Next endpoint by (weighted) round robin for this shard; for an
    /// `original_dst` cluster, the connection's original destination.
    pub fn pick(&self, cluster: &Cluster, orig_dst: Option<SocketAddr>) -> Option<SocketAddr> {
        if cluster.kind == ClusterKind::OriginalDst {
            return orig_dst;
        }
        let eps = &cluster.endpoints;
        if eps.is_empty() {
            return None;
        }
        let mut cursors = self.cursors.borrow_mut();
        let c = cursors.entry(cluster.id).or_insert(0);
        let total: u64 = eps.iter().map(|e| u64::from(e.weight.max(1))).sum();
        let mut slot = (*c as u64) % total;
        *c = c.wrapping_add(1);
        for e in eps.iter() {
            let w = u64::from(e.weight.max(1));
            if slot < w {
                return Some(e.address);
            }
            slot -= w;
        }
        Some(eps[0].address)
    }

    /// An idle pooled connection to `addr`, if any. With `verify`, one
    /// non-blocking peek makes sure the upstream has not closed it.
    pub fn checkout(
        &self,
        addr: SocketAddr,
        idle_timeout: Duration,
        verify: bool,
    ) -> Option<Upstream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(mut i) = list.pop() {
            if i.since.elapsed() < idle_timeout && (!verify || still_open(&i.conn.stream)) {
                i.conn.reused = true;
                return Some(i.conn);
            }
        }
        None
    }

    /// Return a connection whose exchange completed cleanly.
    pub fn checkin(&self, conn: Upstream) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(conn.addr).or_default();
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
        idle.retain(|addr, list| {
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
/// bytes waiting is not reusable. One non-blocking `recv(MSG_PEEK)`.
fn still_open(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: the fd is owned by `s` and open; `b` is a valid 1-byte buffer.
    let r = unsafe {
        libc::recv(
            s.as_raw_fd(),
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

/// Connect to `addr` within `timeout`.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    cells: &Arc<ClusterCells>,
) -> Result<Upstream, ConnectError> {
    let r = monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await;
    let stream = match r {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            cells.cx_connect_fail.inc();
            return Err(ConnectError::Failed(e));
        }
        Err(_) => {
            cells.cx_connect_fail.inc();
            return Err(ConnectError::Timeout);
        }
    };
    let _ = stream.set_nodelay(true);
    cells.cx_total.inc();
    cells.cx_active.inc();
    Ok(Upstream {
        stream,
        addr,
        reused: false,
        active: ActiveUpstream(cells.clone()),
    })
}

/// A connection to some endpoint of `cluster`: pooled if possible, else a
/// new one; on connect failure the next endpoints are tried (nothing has
/// been sent yet, so this is always safe), up to three attempts.
pub async fn acquire(
    pools: &Pools,
    cluster: &Cluster,
    cells: &Arc<ClusterCells>,
    idle_timeout: Duration,
    verify: bool,
    orig_dst: Option<SocketAddr>,
) -> Result<Upstream, ConnectError> {
    let attempts = cluster.endpoints.len().clamp(1, 3);
    let mut last = ConnectError::NoEndpoints;
    for _ in 0..attempts {
        let Some(addr) = pools.pick(cluster, orig_dst) else {
            return Err(ConnectError::NoEndpoints);
        };
        if let Some(c) = pools.checkout(addr, idle_timeout, verify) {
            cells.cx_pool_reuse.inc();
            return Ok(c);
        }
        match connect(addr, cluster.connect_timeout, cells).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::debug!(cluster = %cluster.name, %addr, error = %e, "upstream connect failed");
                last = e;
            }
        }
    }
    Err(last)
}

/// A new connection (never pooled: for TCP proxying), trying up to three
/// endpoints.
pub async fn acquire_fresh(
    pools: &Pools,
    cluster: &Cluster,
    cells: &Arc<ClusterCells>,
    orig_dst: Option<SocketAddr>,
) -> Result<Upstream, ConnectError> {
    let attempts = cluster.endpoints.len().clamp(1, 3);
    let mut last = ConnectError::NoEndpoints;
    for _ in 0..attempts {
        let Some(addr) = pools.pick(cluster, orig_dst) else {
            return Err(ConnectError::NoEndpoints);
        };
        match connect(addr, cluster.connect_timeout, cells).await {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
    }
    Err(last)
}
