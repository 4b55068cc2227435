//! The control thread: one tokio current-thread runtime for everything that
//! is not request traffic — configuration reload (file watch + SIGHUP),
//! this proxy's certificate ([`crate::identity`]), the admin server, and
//! shutdown (SIGTERM/SIGINT → drain). It never
//! touches a data-plane socket; it talks to the shards only by publishing
//! snapshots and flags in [`Shared`].

use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tokio::signal::unix::{signal, SignalKind};

use crate::shared::Shared;

/// How often the configuration file is checked for changes.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Run until the proxy has drained; returns the process exit code.
pub fn run(shared: Arc<Shared>, config: PathBuf) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the control thread runtime");
            return 1;
        }
    };
    rt.block_on(async move {
        if let Some(addr) = shared.snapshot.load().admin {
            let s = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::admin::serve(s, addr).await {
                    tracing::error!(address = %addr, error = %e, "admin server failed; set admin.address to a free loopback port");
                }
            });
        }
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install SIGHUP handler");
                return 1;
            }
        };
        let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(t), Ok(i)) => (t, i),
            _ => {
                tracing::error!("cannot install SIGTERM/SIGINT handlers");
                return 1;
            }
        };
        let identity_reload = Arc::new(tokio::sync::Notify::new());
        if let Some(identity) = shared.snapshot.load().identity.clone() {
            let base_dir = config
                .parent()
                .map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() })
                .unwrap_or_else(|| PathBuf::from("."));
            tokio::spawn(crate::identity::run(
                shared.clone(),
                identity,
                base_dir,
                identity_reload.clone(),
            ));
        }
        let xds = shared.snapshot.load().source.xds.clone();
        if let Some(x) = xds {
            // The client runs for the life of the process; it keeps the last
            // good configuration through control-plane outages.
            shared.xds_synced.store(false, Ordering::Release);
            let base = (*shared.snapshot.load().source).clone();
            tokio::spawn(run_xds(shared.clone(), x, base));
        }
        let mut watcher = Watcher::new(config, &shared);
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => watcher.check(&shared, false),
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading configuration");
                    watcher.check(&shared, true);
                    identity_reload.notify_one();
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        drain(&shared).await;
        0
    })
}

/// Stop accepting, let in-flight exchanges finish (keep-alive responses
/// carry `connection: close`), and return when every connection is gone or
/// the drain timeout has passed.
async fn drain(shared: &Shared) {
    let timeout = shared.snapshot.load().limits.drain_timeout;
    tracing::info!(drain_timeout = ?timeout, "draining");
    shared.draining.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + timeout;
    // Give shards one tick to close their listeners before counting.
    tokio::time::sleep(Duration::from_millis(150)).await;
    loop {
        let mut active = 0i64;
        shared.stats.listeners.for_each_key(|_, cells| {
            active += cells.iter().map(|c| c.cx_active.get()).sum::<i64>()
        });
        if active <= 0 {
            tracing::info!("drained: no connections left");
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                active,
                "drain timeout reached; exiting with connections still open"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Fetch configuration from the control plane (Delta ADS): every update is
/// the bootstrap file's own resources plus the control plane's, compiled by
/// the same `ringmesh_config::compile` as the file; what does not compile
/// is NACKed with the reasons and the last good snapshot keeps serving.
async fn run_xds(
    shared: Arc<Shared>,
    spec: ringmesh_config::model::XdsSpec,
    base: ringmesh_config::model::ProxyConfig,
) {
    let endpoint = format!("http://{}", spec.address);
    let node = ringmesh_xds_client::NodeIdentity {
        id: spec.node_id.clone(),
        cluster: spec.node_cluster.clone().unwrap_or_default(),
        metadata: spec.metadata.clone(),
    };
    tracing::info!(control_plane = %endpoint, node = %spec.node_id, "fetching configuration over Delta ADS");
    let on_update = move |cfg: ringmesh_config::model::ProxyConfig, version: u64| {
        match ringmesh_config::compile(&cfg, version) {
            Ok(snap) => {
                tracing::info!(
                    version = format!("{version:016x}"),
                    listeners = snap.listeners.len(),
                    clusters = snap.clusters.len(),
                    "configuration from the control plane applied"
                );
                shared.identity.set_sds_roots(snap.sds_roots.clone());
                crate::resilience::retain_for(&snap);
                shared.snapshot.store(Arc::new(snap));
                shared.stats.xds_accepted.inc();
                shared.xds_synced.store(true, Ordering::Release);
                Ok(())
            }
            Err(errors) => {
                shared.stats.xds_rejected.inc();
                let reasons: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                for r in &reasons {
                    tracing::error!("rejected configuration from the control plane: {r}");
                }
                Err(reasons)
            }
        }
    };
    let never = ringmesh_xds_client::run(endpoint, node, base, on_update).await;
    match never {}
}

/// Reloads the configuration when the file's contents change (or on SIGHUP).
struct Watcher {
    path: PathBuf,
    /// Hash of the last contents we acted on, good or bad: a bad file is
    /// reported once, not every poll.
    last_seen: u64,
}

impl Watcher {
    fn new(path: PathBuf, shared: &Shared) -> Watcher {
        Watcher {
            path,
            last_seen: shared.snapshot.load().version,
        }
    }

    fn check(&mut self, shared: &Shared, forced: bool) {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) => {
                if forced {
                    tracing::error!(file = %self.path.display(), error = %e, "cannot read configuration; keeping the current one");
                    shared.stats.reload_failure.inc();
                }
                return;
            }
        };
        let hash = ringmesh_config::fnv1a64(&bytes);
        if hash == self.last_seen && !forced {
            return;
        }
        self.last_seen = hash;
        if hash == shared.snapshot.load().version {
            if forced {
                tracing::info!("configuration unchanged");
                shared.stats.reload_success.inc();
            }
            return;
        }
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(_) => {
                tracing::error!(file = %self.path.display(), "configuration is not UTF-8; keeping the current one");
                shared.stats.reload_failure.inc();
                return;
            }
        };
        if shared.snapshot.load().source.xds.is_some() {
            tracing::warn!(
                file = %self.path.display(),
                "the bootstrap file changed, but this proxy takes its configuration from the control plane; restart it to apply bootstrap changes"
            );
            return;
        }
        let compiled = ringmesh_config::load_str(text, Some(&self.path));
        match compiled {
            Ok(snap) => {
                let old = shared.snapshot.load();
                if snap.admin != old.admin {
                    tracing::warn!(
                        "admin.address changed; the new address takes effect on restart"
                    );
                }
                if snap.identity != old.identity {
                    tracing::warn!(
                        "the identity section changed; it takes effect on restart (certificate files are re-read when they change)"
                    );
                }
                drop(old);
                tracing::info!(
                    version = format!("{hash:016x}"),
                    listeners = snap.listeners.len(),
                    clusters = snap.clusters.len(),
                    "configuration reloaded"
                );
                crate::resilience::retain_for(&snap);
                shared.snapshot.store(Arc::new(snap));
                shared.stats.reload_success.inc();
            }
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!("rejected configuration: {e}");
                }
                tracing::error!(file = %self.path.display(), "configuration rejected; the last good configuration keeps serving");
                shared.stats.reload_failure.inc();
            }
        }
    }
}
