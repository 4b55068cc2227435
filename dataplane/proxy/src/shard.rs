//! A shard: one pinned thread, one monoio runtime, its own listeners
//! (`SO_REUSEPORT`), pools, balancer cursors and metric cells.
//!
//! The shard follows the configuration by polling the shared snapshot
//! pointer on a short timer (a pointer comparison, no lock): new listeners
//! are bound, removed or changed ones stopped. Requests pick up route and
//! cluster changes immediately because each request loads the snapshot.

use std::{
    cell::Cell,
    collections::HashMap,
    net::SocketAddr,
    rc::Rc,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use ringmesh_config::{Cluster, DownstreamTls, ListenerKind, Snapshot};
use ringmesh_http1::RequestHead;
use ringmesh_runtime::{bind_reuseport, Driver};
use rustls::pki_types::ServerName;

use crate::{
    shared::Shared,
    signal::Signal,
    stats::ShardStats,
    upstream::{ClientTls, ConnectError, Pools},
};

const TICK: Duration = Duration::from_millis(100);
const SWEEP_EVERY: u32 = 50; // ticks: 5 s
const BACKLOG: i32 = 1024;

pub struct ShardCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub pools: Pools,
    pub stats: ShardStats,
    /// Fired once when the proxy starts draining.
    pub drain: Signal,
    /// Open downstream connections on this shard.
    pub active: Cell<usize>,
    rng: Cell<u64>,
    /// This shard's reference to the live snapshot. Requests clone the `Rc`
    /// (a non-atomic increment) instead of the shared `Arc`, whose reference
    /// count would be a cache line every core writes on every request.
    #[allow(clippy::redundant_allocation)]
    // one extra allocation per published snapshot buys non-atomic clones per request
    current: std::cell::RefCell<Rc<Arc<Snapshot>>>,
    /// Client TLS configurations by cluster TLS key: one session cache per
    /// set of settings on this shard (resumption without cross-core locks).
    client_tls: std::cell::RefCell<HashMap<u64, ClientTls>>,
}

impl ShardCtx {
    pub fn new(id: usize, shared: Arc<Shared>) -> ShardCtx {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            ^ ((id as u64 + 1) << 32)
            ^ u64::from(std::process::id());
        ShardCtx {
            id,
            stats: ShardStats::new(id, shared.clone()),
            current: std::cell::RefCell::new(Rc::new(shared.snapshot.load_full())),
            shared,
            pools: Pools::default(),
            drain: Signal::new(),
            active: Cell::new(0),
            rng: Cell::new(seed | 1),
            client_tls: Default::default(),
        }
    }

    /// How to originate mTLS to `cluster`'s endpoints: `None` for a
    /// plaintext cluster. Built on first use per shard and settings;
    /// called only when a new connection is opened.
    pub fn client_tls(&self, cluster: &Cluster) -> Result<Option<ClientTls>, ConnectError> {
        let Some(settings) = cluster.tls.as_deref() else {
            return Ok(None);
        };
        if let Some(c) = self.client_tls.borrow().get(&settings.key) {
            return Ok(Some(c.clone()));
        }
        let Some(mesh) = self.shared.identity.mesh() else {
            return Err(ConnectError::NoIdentity);
        };
        let config = ringmesh_tls::client_config(
            mesh.resolver.clone(),
            mesh.bundle.clone(),
            &mesh.trust_domain,
            settings.subject_alt_names.clone(),
            &[ringmesh_tls::ALPN_HTTP11],
        )
        .map_err(|e| {
            tracing::error!(cluster = %cluster.name, error = %e, "cannot build the cluster's TLS configuration");
            ConnectError::TlsConfig(e.to_string())
        })?;
        // The SNI was validated when the configuration was compiled.
        let sni = settings
            .sni
            .as_ref()
            .and_then(|s| ServerName::try_from(s.clone()).ok());
        let c = ClientTls { config, sni };
        self.client_tls.borrow_mut().insert(settings.key, c.clone());
        Ok(Some(c))
    }

    /// The live snapshot, for one request or connection to keep until it
    /// finishes. The `arc-swap` guard is a thread-local fast path; only when
    /// the control thread has published a new snapshot does this shard take
    /// a reference to it.
    #[allow(clippy::redundant_allocation)]
    pub fn snapshot(&self) -> Rc<Arc<Snapshot>> {
        let live = self.shared.snapshot.load();
        let mut cur = self.current.borrow_mut();
        if !Arc::ptr_eq(&cur, &live) {
            *cur = Rc::new(arc_swap::Guard::into_inner(live));
        }
        cur.clone()
    }

    /// xorshift64*: fast, shard-local, good enough for request ids and
    /// weighted cluster picks (not for anything secret).
    pub fn next_u64(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A UUIDv4-formatted `x-request-id` when the request has none.
    pub fn request_id_if_missing(&self, head: &RequestHead) -> Option<[u8; 36]> {
        if head.request_id.is_some() {
            return None;
        }
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        raw[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        raw[6] = (raw[6] & 0x0f) | 0x40;
        raw[8] = (raw[8] & 0x3f) | 0x80;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 36];
        let mut j = 0;
        for (i, b) in raw.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out[j] = b'-';
                j += 1;
            }
            out[j] = HEX[(b >> 4) as usize];
            out[j + 1] = HEX[(b & 15) as usize];
            j += 2;
        }
        Some(out)
    }
}

struct Running {
    address: SocketAddr,
    http: bool,
    original_dst: bool,
    tls: DownstreamTls,
    stop: Signal,
}

/// The shard's main task: keep listeners in line with the snapshot, publish
/// histograms, sweep pools, and start draining when asked.
pub async fn run(ctx: Rc<ShardCtx>, driver: Driver) {
    let _ = ctx.shared.drivers[ctx.id].set(driver);
    let mut running: HashMap<Arc<str>, Running> = HashMap::new();
    let mut current: Option<Arc<Snapshot>> = None;
    let mut all_bound = false;
    let mut bind_errors: HashMap<Arc<str>, String> = HashMap::new();
    let mut ticks = 0u32;
    loop {
        if ctx.shared.is_draining() {
            if !ctx.drain.is_fired() {
                tracing::info!(shard = ctx.id, "draining: listeners closed, keep-alive connections close after their current exchange");
                for (_, r) in running.drain() {
                    r.stop.fire();
                }
                ctx.pools.clear();
                ctx.drain.fire();
            }
        } else {
            let snap = ctx.shared.snapshot.load_full();
            let changed = current.as_ref().is_none_or(|c| !Arc::ptr_eq(c, &snap));
            if changed || !all_bound {
                all_bound = sync_listeners(&ctx, &snap, &mut running, &mut bind_errors);
                let bound = if all_bound { snap.version } else { u64::MAX };
                ctx.shared.shard_ready[ctx.id].store(bound, Ordering::Release);
                current = Some(snap);
            }
        }
        ctx.stats.publish();
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(SWEEP_EVERY) {
            if let Some(snap) = &current {
                let live = |a: &SocketAddr| {
                    snap.clusters
                        .iter()
                        .any(|c| c.endpoints.iter().any(|e| e.address == *a))
                };
                ctx.pools.sweep(&live, snap.limits.idle_timeout);
                ctx.client_tls.borrow_mut().retain(|key, _| {
                    snap.clusters
                        .iter()
                        .any(|c| c.tls.as_ref().is_some_and(|t| t.key == *key))
                });
            }
            ctx.shared.stats.listeners.retain_in_use();
            ctx.shared.stats.clusters.retain_in_use();
        }
        monoio::time::sleep(TICK).await;
    }
}

/// Start, stop and restart listeners so they match `snap`. Returns whether
/// every listener is bound.
fn sync_listeners(
    ctx: &Rc<ShardCtx>,
    snap: &Snapshot,
    running: &mut HashMap<Arc<str>, Running>,
    bind_errors: &mut HashMap<Arc<str>, String>,
) -> bool {
    running.retain(|name, r| {
        let keep = snap.listeners.iter().any(|l| {
            l.name == *name
                && l.address == r.address
                && l.original_dst == r.original_dst
                && l.tls == r.tls
                && matches!(l.kind, ListenerKind::Http { .. }) == r.http
        });
        if !keep {
            tracing::info!(shard = ctx.id, listener = %name, "listener stopped");
            r.stop.fire();
        }
        keep
    });
    let mut ok = true;
    for l in &snap.listeners {
        if running.contains_key(&l.name) {
            continue;
        }
        let http = matches!(l.kind, ListenerKind::Http { .. });
        match bind_reuseport(l.address, BACKLOG) {
            Ok(listener) => {
                bind_errors.remove(&l.name);
                let stop = Signal::new();
                running.insert(
                    l.name.clone(),
                    Running {
                        address: l.address,
                        http,
                        original_dst: l.original_dst,
                        tls: l.tls,
                        stop: stop.clone(),
                    },
                );
                tracing::info!(shard = ctx.id, listener = %l.name, address = %l.address, protocol = if http { "http" } else { "tcp" }, tls = ?l.tls, "listening");
                monoio::spawn(accept_loop(
                    ctx.clone(),
                    l.name.clone(),
                    listener,
                    stop,
                    Accepting {
                        http,
                        original_dst: l.original_dst,
                        tls: l.tls,
                        address: l.address,
                    },
                ));
            }
            Err(e) => {
                ok = false;
                let msg = e.to_string();
                if bind_errors.get(&l.name) != Some(&msg) {
                    tracing::error!(shard = ctx.id, listener = %l.name, address = %l.address, error = %msg, "cannot bind listener; retrying (is another process using the port?)");
                    bind_errors.insert(l.name.clone(), msg);
                }
            }
        }
    }
    ok
}

struct ActiveGuard(Rc<ShardCtx>, Rc<crate::stats::ListenerStats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
        self.1.cells.cx_active.dec();
    }
}

/// The pre-REDIRECT destination of `s`, unless it is our own address (not
/// redirected: forwarding there would loop back to this listener).
fn redirected_destination(s: &monoio::net::TcpStream) -> Option<SocketAddr> {
    let local = s.local_addr().ok()?;
    match ringmesh_iptables::original_dst(s) {
        Ok(orig) if orig != local => Some(orig),
        _ => None,
    }
}

/// How a listener treats the connections it accepts.
#[derive(Clone, Copy)]
struct Accepting {
    http: bool,
    original_dst: bool,
    tls: DownstreamTls,
    /// The configured address (the accepted socket's own is preferred).
    address: std::net::SocketAddr,
}

async fn accept_loop(
    ctx: Rc<ShardCtx>,
    name: Arc<str>,
    listener: monoio::net::TcpListener,
    stop: Signal,
    how: Accepting,
) {
    let ls = ctx.stats.listener(&name);
    let mut last_error: Option<std::io::ErrorKind> = None;
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = stop.wait() => None,
        };
        let Some(accepted) = accepted else { break };
        match accepted {
            Ok((stream, peer)) => {
                last_error = None;
                let max = ctx.snapshot().limits.max_connections_per_shard;
                if ctx.active.get() >= max {
                    ls.cells.cx_overflow.inc();
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(how.address);
                let orig_dst = if how.original_dst {
                    redirected_destination(&stream)
                } else {
                    None
                };
                ctx.active.set(ctx.active.get() + 1);
                ls.cells.cx_total.inc();
                ls.cells.cx_active.inc();
                let guard = ActiveGuard(ctx.clone(), ls.clone());
                let (c, n, l) = (ctx.clone(), name.clone(), ls.clone());
                monoio::spawn(async move {
                    let conn = crate::ConnInfo {
                        peer,
                        orig_dst,
                        peer_identity: None,
                        local,
                        sni: None,
                    };
                    match (how.tls, how.http) {
                        (DownstreamTls::Disable, true) => {
                            l.cells.cx_plaintext.inc();
                            // HTTP/2 with prior knowledge, or HTTP/1: the
                            // first bytes tell (see `crate::h2::detect`).
                            let mut stream = stream;
                            let mut buf = Vec::with_capacity(8 * 1024);
                            if let Some(h2) = crate::h2::detect(&c, &mut stream, &mut buf).await {
                                l.cells.rx_bytes.add(buf.len() as u64);
                                if h2 {
                                    crate::h2::server::serve_plain(c, n, l, stream, conn, buf)
                                        .await;
                                } else {
                                    crate::http::serve(c, n, l, stream, conn, buf).await;
                                }
                            }
                        }
                        (DownstreamTls::Disable, false) => {
                            l.cells.cx_plaintext.inc();
                            crate::tcp::serve(
                                c,
                                n,
                                l,
                                crate::tcp::Down::Plain(stream),
                                conn,
                                Vec::new(),
                            )
                            .await;
                        }
                        (mode, http) => {
                            crate::inbound::serve(c, n, l, stream, conn, mode, http).await;
                        }
                    }
                    drop(guard);
                });
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: back off instead of spinning.
                if last_error != Some(e.kind()) {
                    tracing::warn!(shard = ctx.id, listener = %name, error = %e, "accept failed");
                    last_error = Some(e.kind());
                }
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
