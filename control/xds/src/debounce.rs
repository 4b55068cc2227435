//! Coalescing bursts of publishes.
//!
//! A deployment rollout changes endpoints dozens of times a second; each
//! publish costs every affected proxy a push. The [`Debouncer`] holds the
//! latest resources per scope and publishes once the changes pause for
//! the quiet period — but never later than the maximum delay after the
//! first unpublished change, so a steady trickle cannot starve proxies.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tracing::debug;

use crate::{resource::Snapshot, Resources, ScopeKey, XdsServer};

/// Timing of a [`Debouncer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebounceConfig {
    /// Publish once no change came for this long (default 100 ms).
    pub quiet: Duration,
    /// Publish at the latest this long after the first pending change
    /// (default 1 s).
    pub max_delay: Duration,
}

impl Default for DebounceConfig {
    fn default() -> Self {
        DebounceConfig {
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }
}

/// The pending window: when its first and latest change came.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Window {
    span: Option<(Instant, Instant)>,
}

impl Window {
    pub(crate) fn on_change(&mut self, now: Instant) {
        let first = self.span.map_or(now, |(first, _)| first);
        self.span = Some((first, now));
    }

    /// When to publish, if anything is pending.
    pub(crate) fn deadline(&self, config: &DebounceConfig) -> Option<Instant> {
        self.span
            .map(|(first, last)| (last + config.quiet).min(first + config.max_delay))
    }

    pub(crate) fn clear(&mut self) {
        self.span = None;
    }
}

enum Command {
    Publish(Vec<ScopeKey>, Arc<Snapshot>),
    Flush(oneshot::Sender<()>),
}

/// Publishes to an [`XdsServer`] through a quiet period and a maximum
/// delay (see the module docs). Later resources for a scope replace
/// earlier pending ones; scopes pending together publish together.
///
/// Dropping it publishes whatever is pending, at once.
#[derive(Debug)]
pub struct Debouncer {
    tx: mpsc::UnboundedSender<Command>,
}

impl Debouncer {
    /// Start the debouncing task on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(server: XdsServer, config: DebounceConfig) -> Debouncer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(server, config, rx));
        Debouncer { tx }
    }

    /// Queue the complete resources of `scope` for publishing.
    pub fn publish(&self, scope: impl Into<ScopeKey>, resources: Resources) {
        // The task only ends once every sender is gone, so this cannot
        // fail while `self` exists.
        let snapshot = Arc::new(Snapshot::new(resources));
        let _ = self.tx.send(Command::Publish(vec![scope.into()], snapshot));
    }

    /// Queue the same complete `resources` for every scope of `scopes`
    /// (computed and stored once; see [`XdsServer::publish_group`]).
    pub fn publish_group(&self, scopes: Vec<ScopeKey>, resources: Resources) {
        let snapshot = Arc::new(Snapshot::new(resources));
        let _ = self.tx.send(Command::Publish(scopes, snapshot));
    }

    /// Publish everything pending now, and return once it is published.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(server: XdsServer, config: DebounceConfig, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut pending: BTreeMap<ScopeKey, Arc<Snapshot>> = BTreeMap::new();
    let mut window = Window::default();
    let publish_all = |pending: &mut BTreeMap<ScopeKey, Arc<Snapshot>>, window: &mut Window| {
        window.clear();
        for (scope, snapshot) in std::mem::take(pending) {
            server.publish_snapshot(scope, snapshot);
        }
    };
    loop {
        let deadline = window.deadline(&config);
        let due = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Publish(scopes, snapshot)) => {
                    for scope in scopes {
                        pending.insert(scope, snapshot.clone());
                    }
                    window.on_change(Instant::now());
                }
                Some(Command::Flush(done)) => {
                    publish_all(&mut pending, &mut window);
                    let _ = done.send(());
                }
                None => {
                    publish_all(&mut pending, &mut window);
                    return;
                }
            },
            () = due => {
                debug!(scopes = pending.len(), "debounced publish");
                publish_all(&mut pending, &mut window);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Resource, TypeUrl};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn window_deadline_is_quiet_after_last_capped_by_max_after_first() {
        let config = DebounceConfig::default();
        let t0 = Instant::now();
        let mut w = Window::default();
        assert_eq!(w.deadline(&config), None);
        w.on_change(t0);
        assert_eq!(w.deadline(&config), Some(t0 + ms(100)));
        w.on_change(t0 + ms(50));
        assert_eq!(w.deadline(&config), Some(t0 + ms(150)));
        w.on_change(t0 + ms(950));
        assert_eq!(w.deadline(&config), Some(t0 + ms(1000)));
        w.clear();
        assert_eq!(w.deadline(&config), None);
    }

    fn resources(version: &str) -> Resources {
        let body = prost_types::Any {
            type_url: TypeUrl::cluster().to_string(),
            value: vec![],
        };
        Resources::new().with(Resource::new("c", version, body))
    }

    fn published(server: &XdsServer) -> Option<String> {
        server
            .published_versions(&ScopeKey::default())
            .map(|v| v[&TypeUrl::cluster()].clone())
    }

    #[tokio::test(start_paused = true)]
    async fn single_publish_waits_for_the_quiet_period() {
        let server = XdsServer::default();
        let d = Debouncer::spawn(server.clone(), DebounceConfig::default());
        d.publish(ScopeKey::default(), resources("1"));
        tokio::time::sleep(ms(99)).await;
        assert_eq!(published(&server), None);
        tokio::time::sleep(ms(2)).await;
        assert!(published(&server).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn steady_trickle_publishes_at_max_delay_with_the_latest() {
        let server = XdsServer::default();
        let d = Debouncer::spawn(server.clone(), DebounceConfig::default());
        let start = Instant::now();
        let mut first_seen = None;
        for i in 0..30u32 {
            d.publish(ScopeKey::default(), resources(&i.to_string()));
            tokio::time::sleep(ms(50)).await;
            if first_seen.is_none() {
                if let Some(v) = published(&server) {
                    first_seen = Some((Instant::now() - start, i, v));
                }
            }
        }
        let (at, i, version) = first_seen.expect("published during a steady trickle");
        assert!(at >= ms(1000) && at <= ms(1050), "first publish at {at:?}");
        // What was published is the latest queued by the deadline (at
        // 1000 ms, this iteration's publish and the timer are simultaneous
        // and either may go first), never an early one.
        let version_of = |i: u32| {
            crate::resource::Snapshot::new(resources(&i.to_string())).type_versions
                [&TypeUrl::cluster()]
                .clone()
        };
        assert!(
            version == version_of(i) || version == version_of(i - 1),
            "published an early version"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn flush_and_drop_publish_at_once() {
        let server = XdsServer::default();
        let d = Debouncer::spawn(server.clone(), DebounceConfig::default());
        d.publish(ScopeKey::default(), resources("1"));
        d.flush().await;
        assert!(published(&server).is_some());
        let before = published(&server);
        d.publish(ScopeKey::default(), resources("2"));
        drop(d);
        tokio::time::sleep(ms(1)).await;
        assert_ne!(published(&server), before);
    }
}
