//! The task of one simulated sidecar: its own HTTP/2 connection and
//! Delta ADS stream, driven by its [`ProxyState`], with counters the
//! driver reads between changes.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::xds_load::{
    catalog::Catalog,
    measure::Watches,
    mesh::ProxyDef,
    proxy::{Kind, ProxyState},
    wire,
};

/// What every proxy task shares.
pub struct Env {
    pub catalog: Arc<Catalog>,
    pub watches: Arc<Watches>,
    /// `http://IP:PORT` of the control plane.
    pub url: String,
    pub connect_timeout: Duration,
    pub max_message: usize,
    /// Becomes `true` when the run ends.
    pub stop: watch::Receiver<bool>,
}

/// One proxy's counters, updated by its task and read by the driver.
#[derive(Default)]
pub struct Stats {
    pub responses: AtomicU64,
    pub bytes: AtomicU64,
    /// Responses that changed nothing the proxy holds.
    pub noop_responses: AtomicU64,
    pub redundant_resources: AtomicU64,
    pub unsolicited: AtomicU64,
    pub decode_errors: AtomicU64,
    pub by_kind: [AtomicU64; 4],
    pub streams: AtomicU64,
    pub disconnects: AtomicU64,
    /// Holds its whole configuration (see [`ProxyState::is_complete`]).
    pub complete: AtomicBool,
    /// Gave up (a limit was exceeded); see `error`.
    pub failed: AtomicBool,
}

/// A plain copy of [`Stats`]' counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub responses: u64,
    pub bytes: u64,
    pub noop_responses: u64,
    pub redundant_resources: u64,
    pub by_kind: [u64; 4],
}

impl Counters {
    pub fn since(&self, before: &Counters) -> Counters {
        let mut by_kind = [0; 4];
        for (i, k) in by_kind.iter_mut().enumerate() {
            *k = self.by_kind[i].saturating_sub(before.by_kind[i]);
        }
        Counters {
            responses: self.responses.saturating_sub(before.responses),
            bytes: self.bytes.saturating_sub(before.bytes),
            noop_responses: self.noop_responses.saturating_sub(before.noop_responses),
            redundant_resources: self
                .redundant_resources
                .saturating_sub(before.redundant_resources),
            by_kind,
        }
    }

    pub fn add(&mut self, o: &Counters) {
        self.responses += o.responses;
        self.bytes += o.bytes;
        self.noop_responses += o.noop_responses;
        self.redundant_resources += o.redundant_resources;
        for (i, k) in self.by_kind.iter_mut().enumerate() {
            *k += o.by_kind[i];
        }
    }
}

impl Stats {
    pub fn counters(&self) -> Counters {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            responses: r(&self.responses),
            bytes: r(&self.bytes),
            noop_responses: r(&self.noop_responses),
            redundant_resources: r(&self.redundant_resources),
            by_kind: [
                r(&self.by_kind[0]),
                r(&self.by_kind[1]),
                r(&self.by_kind[2]),
                r(&self.by_kind[3]),
            ],
        }
    }
}

/// One simulated proxy: its state, counters and last error.
pub struct Proxy {
    pub index: u32,
    pub def: ProxyDef,
    pub state: Mutex<ProxyState>,
    pub stats: Stats,
    pub error: Mutex<Option<String>>,
}

impl Proxy {
    pub fn new(index: u32, def: ProxyDef, max_resources: usize) -> Proxy {
        Proxy {
            index,
            def,
            state: Mutex::new(ProxyState::new(max_resources)),
            stats: Stats::default(),
            error: Mutex::new(None),
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, ProxyState> {
        lock(&self.state)
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.error).clone()
    }
}

enum End {
    /// The run is over.
    Stopped,
    /// `until_complete` was asked and the proxy is complete.
    Complete,
    /// Transport trouble: reconnect.
    Lost(String),
    /// A limit or a protocol violation: give up.
    Fatal(String),
}

/// Run `proxy` until the run stops, reconnecting (with the versions it
/// holds) after a lost stream, as Envoy does.
pub async fn run(env: Arc<Env>, proxy: Arc<Proxy>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match session(&env, &proxy, false).await {
            End::Stopped | End::Complete => return,
            End::Fatal(e) => {
                *lock(&proxy.error) = Some(e);
                proxy.stats.failed.store(true, Ordering::Relaxed);
                proxy.stats.complete.store(false, Ordering::Relaxed);
                return;
            }
            End::Lost(e) => {
                *lock(&proxy.error) = Some(e);
                proxy.stats.disconnects.fetch_add(1, Ordering::Relaxed);
                proxy.stats.complete.store(false, Ordering::Relaxed);
            }
        }
        // Jitter from the index: reconnecting proxies spread out.
        let jitter = Duration::from_millis(u64::from(proxy.index % 250));
        let mut stop = env.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(backoff + jitter) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Open a fresh stream for `proxy` (a proxy with an empty state) and
/// return once it holds its whole configuration: the truth for its
/// scope. Errors after `timeout`.
pub async fn fetch_complete(env: &Env, proxy: &Proxy, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, session(env, proxy, true)).await {
        Err(_) => Err(format!("no complete configuration within {timeout:?}")),
        Ok(End::Complete) => Ok(()),
        Ok(End::Stopped) => Err("the run stopped".into()),
        Ok(End::Lost(e) | End::Fatal(e)) => Err(e),
    }
}

async fn session(env: &Env, proxy: &Proxy, until_complete: bool) -> End {
    let mut stop = env.stop.clone();
    if *stop.borrow() {
        return End::Stopped;
    }
    let channel = match wire::connect(&env.url, env.connect_timeout).await {
        Ok(c) => c,
        Err(e) => return End::Lost(e),
    };
    let node = wire::node(&proxy.def.node_id, &proxy.def.cluster, &proxy.def.metadata);
    let first: Vec<_> = {
        let mut st = proxy.state();
        st.open_stream()
    }
    .iter()
    .enumerate()
    .map(|(i, r)| wire::request(r, &env.catalog, (i == 0).then(|| node.clone())))
    .collect();
    let mut stream = match wire::AdsStream::open(channel, first, env.max_message).await {
        Ok(s) => s,
        Err(e) => return End::Lost(e),
    };
    proxy.stats.streams.fetch_add(1, Ordering::Relaxed);
    let stats = &proxy.stats;
    // A reconnecting proxy that already holds everything it subscribes
    // to is complete at once: the server owes it nothing (and sends what
    // changed, if anything did).
    let resumed = proxy.state().is_complete();
    stats.complete.store(resumed, Ordering::Relaxed);
    if until_complete && resumed {
        return End::Complete;
    }
    loop {
        let next = tokio::select! {
            r = stream.recv() => r,
            _ = stop.wait_for(|s| *s) => return End::Stopped,
        };
        let (resp, size) = match next {
            Ok(Some(r)) => r,
            Ok(None) => return End::Lost("the control plane ended the stream".into()),
            Err(e) => return End::Lost(e),
        };
        let kind = resp.kind;
        let (applied, complete) = {
            let mut st = proxy.state();
            let watched = |s| env.watches.is_watched(s);
            match st.on_response(resp, &env.catalog, &watched) {
                Ok(a) => (a, st.is_complete()),
                Err(e) => return End::Fatal(e),
            }
        };
        let mut sent = Ok(());
        for req in &applied.requests {
            sent = stream.send(wire::request(req, &env.catalog, None)).await;
            if sent.is_err() {
                break;
            }
        }
        // Received, applied and ACKed. When the stream broke before the
        // ACK went out, the proxy still holds the new version and says so
        // in `initial_resource_versions` on its next stream (which is then
        // sent nothing for it), so that is when it converged too.
        let now = Instant::now();
        for (name, addrs) in &applied.watched {
            env.watches.observe(proxy.index, *name, addrs, now);
        }
        let add = |a: &AtomicU64, n: u64| {
            a.fetch_add(n, Ordering::Relaxed);
        };
        add(&stats.responses, 1);
        add(&stats.bytes, size as u64);
        add(&stats.noop_responses, u64::from(applied.noop()));
        add(&stats.redundant_resources, applied.redundant as u64);
        add(&stats.unsolicited, applied.unsolicited as u64);
        add(&stats.decode_errors, applied.decode_errors.len() as u64);
        if let Some(e) = applied.decode_errors.first() {
            *lock(&proxy.error) = Some(format!("undecodable resource: {e}"));
        }
        if let Some(k) = kind {
            add(&stats.by_kind[k.index()], 1);
        }
        stats.complete.store(complete, Ordering::Relaxed);
        if let Err(e) = sent {
            return End::Lost(e);
        }
        if until_complete && complete {
            return End::Complete;
        }
    }
}

/// The kinds in report order, with their short names.
pub fn kinds() -> impl Iterator<Item = (usize, &'static str)> {
    Kind::ALL.into_iter().map(|k| (k.index(), k.short()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
