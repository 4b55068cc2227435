//! `ringmesh-proxy`: the Ringmesh sidecar.
//!
//! Threads (see `docs/ARCHITECTURE.md`): one shard per usable core, each a
//! pinned monoio runtime (io_uring, or epoll where io_uring is blocked)
//! owning its listeners (`SO_REUSEPORT`), upstream pools and metric cells;
//! and one control thread (tokio) for configuration, admin and shutdown.
//! They share only the [`shared::Shared`] state: an `arc-swap`ped snapshot,
//! flags, and single-writer metric cells.
//!
//! Modules: [`http`] (HTTP/1.1 proxying), [`routing`] (the head as the
//! route table sees it), [`tcp`] (L4), [`upstream`]
//! (endpoint choice, connect and mTLS origination, pools), [`shard`]
//! (listener lifecycle, accept), [`inbound`] (STRICT / PERMISSIVE TLS
//! termination), [`io`] and [`tls`] (plaintext and TLS streams on
//! monoio), [`identity`] (this proxy's SVID and its renewal), [`control`]
//! (reload, signals, drain), [`admin`], [`stats`].

pub mod admin;
pub mod control;
pub mod h2;
pub mod http;
pub mod identity;
pub mod inbound;
pub mod io;
pub mod lb;
pub mod resilience;
pub mod routing;
pub mod shard;
pub mod shared;
pub mod signal;
pub mod stats;
pub mod tcp;
pub mod telemetry;
pub mod tls;
pub mod upstream;

use std::{path::PathBuf, rc::Rc};

use ringmesh_runtime::{select_driver, spawn_shard, DriverChoice, ShardPlan};

/// What a shard knows about a downstream connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: std::net::SocketAddr,
    /// Where the client was going before an iptables REDIRECT brought the
    /// connection here (listeners with `original_dst: true`).
    pub orig_dst: Option<std::net::SocketAddr>,
    /// The client's SPIFFE ID, verified by the mTLS handshake (`None` on
    /// plaintext connections): for authorization, logs and metrics.
    pub peer_identity: Option<Rc<ringmesh_tls::SpiffeId>>,
    /// The local address the connection was accepted on.
    pub local: std::net::SocketAddr,
    /// The server name (SNI) the client asked for (TLS connections).
    pub sni: Option<Rc<str>>,
}

impl ConnInfo {
    /// Where the client was going: the original destination when one was
    /// recovered, else the address it connected to (RBAC's
    /// `destination_ip` / `destination_port`).
    pub fn destination(&self) -> std::net::SocketAddr {
        self.orig_dst.unwrap_or(self.local)
    }
}

/// Command-line options of `ringmesh-proxy`.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub concurrency: Option<usize>,
    pub io_driver: DriverChoice,
}

/// Start the proxy and block until it has drained. Returns the exit code.
pub fn run(opts: Options) -> i32 {
    let snapshot = match ringmesh_config::load_file(&opts.config) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!(
                "ringmesh-proxy: the configuration above was rejected; fix it and start again"
            );
            return 2;
        }
    };
    let plan = ShardPlan::detect(opts.concurrency);
    let driver = match select_driver(opts.io_driver) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ringmesh-proxy: {e}");
            return 2;
        }
    };
    tracing::info!(
        shards = plan.len(),
        driver = %driver,
        config = %opts.config.display(),
        version = format!("{:016x}", snapshot.version),
        "starting ringmesh-proxy"
    );
    let shared = shared::Shared::new(snapshot, plan.len());
    for (i, cpu) in plan.cpus.iter().copied().enumerate() {
        let s = shared.clone();
        let started = spawn_shard(i, cpu, driver, move |d| {
            let ctx = Rc::new(shard::ShardCtx::new(i, s));
            shard::run(ctx, d)
        });
        if let Err(e) = started {
            eprintln!("ringmesh-proxy: {e}");
            return 1;
        }
    }
    control::run(shared, opts.config)
}
