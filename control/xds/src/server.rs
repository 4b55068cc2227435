//! The server: scopes with their published snapshots, the registry of
//! connected streams, and the task that drives each stream.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use parking_lot::Mutex;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::Status;
use tracing::{debug, info, warn};

use crate::{
    resource::Snapshot,
    scope::ScopeFn,
    status::{Protocol, StreamStatus, TypeStatus},
    wire::{Ads, AdsService},
    NodeInfo, Resources, ScopeKey, TypeUrl,
};

/// Responses queued per stream before the stream task waits for the
/// client to read (backpressure instead of unbounded memory).
const STREAM_QUEUE: usize = 16;

/// What a stream gets when its scope has never been published.
///
/// A restarted control plane must rebuild its full state before it
/// answers anyone: a reconnecting Envoy reports the versions it holds,
/// and an answer computed from partial state would remove everything
/// not rebuilt yet — a mesh-wide rollback. So the server never answers a
/// stream before the first [`XdsServer::publish`] of its scope, and the
/// caller publishes a scope only once it is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// Keep the stream open, take its subscriptions, and answer once the
    /// scope is published. After `max` (if set) give up with
    /// `UNAVAILABLE`; the client reconnects with backoff.
    Wait { max: Option<Duration> },
    /// Close the stream at once with `UNAVAILABLE`.
    Refuse,
}

impl Default for NotReady {
    /// Wait without limit: Envoy keeps its current configuration (or, on
    /// a cold start, finishes initialising empty after its
    /// `initial_fetch_timeout`) and gets everything as soon as it exists.
    fn default() -> Self {
        NotReady::Wait { max: None }
    }
}

/// Builds an [`XdsServer`].
pub struct ServerBuilder {
    scope_of: ScopeFn,
    not_ready: NotReady,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            scope_of: Arc::new(|_| ScopeKey::default()),
            not_ready: NotReady::default(),
        }
    }
}

impl ServerBuilder {
    /// How a connecting proxy maps to its scope (default: every proxy in
    /// [`ScopeKey::default`]).
    pub fn scope_by(mut self, f: impl Fn(&NodeInfo) -> ScopeKey + Send + Sync + 'static) -> Self {
        self.scope_of = Arc::new(f);
        self
    }

    pub fn not_ready(mut self, policy: NotReady) -> Self {
        self.not_ready = policy;
        self
    }

    pub fn build(self) -> XdsServer {
        XdsServer {
            inner: Arc::new(Inner {
                scope_of: self.scope_of,
                not_ready: self.not_ready,
                scopes: Mutex::new(HashMap::new()),
                streams: Mutex::new(BTreeMap::new()),
                next_stream_id: AtomicU64::new(1),
                close: watch::channel(0).0,
                waiting: watch::channel(0).0,
            }),
        }
    }
}

/// The ADS server: cheap to clone, one per process.
///
/// Publish each scope's complete [`Resources`] with
/// [`XdsServer::publish`]; serve it with [`XdsServer::serve`] (or add
/// [`XdsServer::service`] to a tonic server of your own); read
/// [`XdsServer::status`] for `proxy-status`.
#[derive(Clone)]
pub struct XdsServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for XdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsServer")
            .field("not_ready", &self.inner.not_ready)
            .finish_non_exhaustive()
    }
}

impl Default for XdsServer {
    fn default() -> Self {
        ServerBuilder::default().build()
    }
}

pub(crate) struct Inner {
    scope_of: ScopeFn,
    not_ready: NotReady,
    /// `None` until the scope's first publish. Locked briefly to find or
    /// create a scope; streams wait on their receiver, not on the lock.
    scopes: Mutex<HashMap<ScopeKey, watch::Sender<Option<Arc<Snapshot>>>>>,
    streams: Mutex<BTreeMap<u64, Arc<Mutex<StreamStatus>>>>,
    next_stream_id: AtomicU64,
    /// Bumped by [`XdsServer::close_streams`]; every stream then ends.
    close: watch::Sender<u64>,
    /// Bumped whenever a stream starts waiting for an unpublished scope.
    waiting: watch::Sender<u64>,
}

impl XdsServer {
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Replace the resources of `scope`. Returns whether anything changed.
    ///
    /// `resources` must be the scope's *complete* state. Only the streams
    /// of this scope wake up, and each sends only what its client lacks
    /// (delta: resources whose version differs; state of the world: the
    /// types whose set version differs). Publishing the same versions
    /// again wakes nobody.
    pub fn publish(&self, scope: impl Into<ScopeKey>, resources: Resources) -> bool {
        let scope = scope.into();
        let snapshot = Arc::new(Snapshot::new(resources));
        let mut scopes = self.inner.scopes.lock();
        let tx = scopes
            .entry(scope.clone())
            .or_insert_with(|| watch::channel(None).0);
        let changed = tx.send_if_modified(|current| match current {
            Some(old) if old.same_as(&snapshot) => false,
            _ => {
                *current = Some(snapshot);
                true
            }
        });
        debug!(%scope, changed, "publish");
        changed
    }

    /// Whether `scope` has been published (streams of it are served).
    pub fn is_published(&self, scope: &ScopeKey) -> bool {
        self.inner
            .scopes
            .lock()
            .get(scope)
            .is_some_and(|tx| tx.borrow().is_some())
    }

    /// The published version of each type of `scope` (a hash of the
    /// names and versions of its resources).
    pub fn published_versions(&self, scope: &ScopeKey) -> Option<BTreeMap<TypeUrl, String>> {
        let scopes = self.inner.scopes.lock();
        let snapshot = scopes.get(scope)?.borrow().clone()?;
        Some(snapshot.type_versions.clone())
    }

    /// Scopes some connected stream waits for (never published yet):
    /// what a translator that computes scopes on demand should compute.
    pub fn waiting_scopes(&self) -> Vec<ScopeKey> {
        let scopes = self.inner.scopes.lock();
        let mut v: Vec<ScopeKey> = scopes
            .iter()
            .filter(|(_, tx)| tx.borrow().is_none() && tx.receiver_count() > 0)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    /// Changes whenever a stream starts waiting for a scope that was never
    /// published (see [`XdsServer::waiting_scopes`]): a translator that
    /// computes scopes on demand waits on this.
    pub fn scope_requests(&self) -> watch::Receiver<u64> {
        self.inner.waiting.subscribe()
    }

    /// Forget published scopes no connected stream uses, and return the
    /// scopes that are left (published or waiting) — the ones worth
    /// recomputing after a change. A forgotten scope is computed afresh
    /// when a proxy of it connects again, so a proxy coming back after a
    /// long absence is never served a snapshot that went stale while
    /// nobody was listening.
    pub fn retain_active_scopes(&self) -> Vec<ScopeKey> {
        let mut scopes = self.inner.scopes.lock();
        scopes.retain(|_, tx| tx.receiver_count() > 0);
        let mut v: Vec<ScopeKey> = scopes.keys().cloned().collect();
        v.sort();
        v
    }

    /// Every connected stream, in connection order.
    pub fn status(&self) -> Vec<StreamStatus> {
        let cells: Vec<_> = self.inner.streams.lock().values().cloned().collect();
        cells.iter().map(|c| c.lock().clone()).collect()
    }

    /// End every open stream (gracefully, with an OK status); clients
    /// reconnect — to another replica, or to this one later. Streams
    /// opened afterwards are served as usual.
    pub fn close_streams(&self) {
        self.inner.close.send_modify(|n| *n += 1);
    }

    /// The gRPC service, to add to a tonic server.
    pub fn service(&self) -> AdsService {
        AdsService::new(Ads(self.inner.clone()))
    }

    /// Serve ADS on `listener` until `shutdown` completes; then stop
    /// accepting, end every open stream ([`XdsServer::close_streams`]:
    /// ADS streams never end by themselves, so a graceful shutdown would
    /// wait forever) and return once the connections are closed.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            // Find dead proxies: an ADS stream is idle for long stretches.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .tcp_nodelay(true)
            .add_service(self.service())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    shutdown.await;
                    self.close_streams();
                },
            )
            .await
    }
}

/// One ADS flavour's per-stream state machine (see `delta` and `sotw`).
pub(crate) trait StreamProtocol: Default + Send + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;
    const PROTOCOL: Protocol;

    fn on_request(&mut self, req: Self::Request, now: SystemTime);
    /// The response `type_url` needs against `snapshot`, if any; records
    /// it as sent.
    fn respond(
        &mut self,
        type_url: &TypeUrl,
        snapshot: &Snapshot,
        now: SystemTime,
    ) -> Option<Self::Response>;
    /// The types the client has asked about.
    fn types(&self) -> Vec<TypeUrl>;
    fn status(&self) -> BTreeMap<TypeUrl, TypeStatus>;
}

/// Run one stream on its own task. `open` yields the client's node, its
/// first request and the rest of its requests (`None`: it went away
/// before saying anything). Returns the stream of responses.
pub(crate) fn spawn_stream<P, S>(
    inner: Arc<Inner>,
    open: impl Future<Output = Option<(NodeInfo, P::Request, S)>> + Send + 'static,
) -> ReceiverStream<Result<P::Response, Status>>
where
    P: StreamProtocol,
    S: Stream<Item = Result<P::Request, Status>> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    tokio::spawn(async move {
        if let Some((node, first, inbound)) = open.await {
            drive::<P, S>(inner, node, first, inbound, tx).await;
        }
    });
    ReceiverStream::new(rx)
}

/// A stream's entry in the registry and its hold on its scope; both are
/// released on drop, whichever way the stream ends.
struct Registration {
    inner: Arc<Inner>,
    id: u64,
    scope: ScopeKey,
    rx: watch::Receiver<Option<Arc<Snapshot>>>,
    cell: Arc<Mutex<StreamStatus>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.streams.lock().remove(&self.id);
        // A scope nobody published and nobody waits for any more is
        // forgotten, so clients naming random scopes cannot grow the map.
        let mut scopes = self.inner.scopes.lock();
        if let Some(tx) = scopes.get(&self.scope) {
            // 1: our own receiver, still alive here.
            if tx.borrow().is_none() && tx.receiver_count() <= 1 {
                scopes.remove(&self.scope);
            }
        }
    }
}

fn unavailable(scope: &ScopeKey) -> Status {
    Status::unavailable(format!(
        "the control plane has no configuration for scope {scope:?} yet (starting up, or \
         nothing computes this scope); retry later"
    ))
}

async fn drive<P, S>(
    inner: Arc<Inner>,
    node: NodeInfo,
    first: P::Request,
    mut inbound: S,
    tx: mpsc::Sender<Result<P::Response, Status>>,
) where
    P: StreamProtocol,
    S: Stream<Item = Result<P::Request, Status>> + Send + Unpin + 'static,
{
    let scope = (inner.scope_of)(&node);
    let id = inner.next_stream_id.fetch_add(1, Ordering::Relaxed);
    let rx = {
        let mut scopes = inner.scopes.lock();
        let rx = scopes
            .entry(scope.clone())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe();
        if rx.borrow().is_none() {
            // Wake whoever computes scopes on demand.
            inner.waiting.send_modify(|n| *n += 1);
        }
        rx
    };
    let cell = Arc::new(Mutex::new(StreamStatus {
        stream_id: id,
        protocol: P::PROTOCOL,
        node: node.clone(),
        scope: scope.clone(),
        connected_at: SystemTime::now(),
        waiting_for_first_publish: true,
        types: BTreeMap::new(),
    }));
    inner.streams.lock().insert(id, cell.clone());
    let mut reg = Registration {
        inner: inner.clone(),
        id,
        scope: scope.clone(),
        rx,
        cell,
    };
    info!(stream = id, node = %node.id, %scope, protocol = %P::PROTOCOL, "ADS stream opened");

    let mut close = inner.close.subscribe();
    let mut proto = P::default();
    proto.on_request(first, SystemTime::now());
    let mut snapshot = reg.rx.borrow_and_update().clone();
    if snapshot.is_none() {
        match inner.not_ready {
            NotReady::Refuse => {
                warn!(stream = id, %scope, "refused: scope not published yet");
                let _ = tx.send(Err(unavailable(&scope))).await;
                return;
            }
            NotReady::Wait { .. } => {
                info!(stream = id, %scope, "waiting for the scope's first publish")
            }
        }
    }
    let deadline = match inner.not_ready {
        NotReady::Wait { max: Some(max) } => Some(Instant::now() + max),
        _ => None,
    };

    loop {
        if let Some(snap) = &snapshot {
            let mut types = proto.types();
            types.sort_by(|a, b| (a.push_rank(), a).cmp(&(b.push_rank(), b)));
            for t in types {
                if let Some(resp) = proto.respond(&t, snap, SystemTime::now()) {
                    if tx.send(Ok(resp)).await.is_err() {
                        return; // the client went away
                    }
                }
            }
        }
        {
            let mut st = reg.cell.lock();
            st.waiting_for_first_publish = snapshot.is_none();
            st.types = proto.status();
        }

        let give_up = async {
            match deadline {
                Some(d) if snapshot.is_none() => tokio::time::sleep_until(d).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            req = inbound.next() => match req {
                Some(Ok(req)) => proto.on_request(req, SystemTime::now()),
                Some(Err(status)) => {
                    debug!(stream = id, %status, "ADS stream error");
                    break;
                }
                None => break,
            },
            changed = reg.rx.changed() => {
                if changed.is_err() {
                    break;
                }
                snapshot = reg.rx.borrow_and_update().clone();
            }
            () = tx.closed() => break,
            _ = close.changed() => {
                info!(stream = id, "closing the stream: server shutting down");
                break;
            }
            () = give_up => {
                warn!(stream = id, %scope, "gave up waiting for the scope's first publish");
                let _ = tx.send(Err(unavailable(&scope))).await;
                break;
            }
        }
    }
    info!(stream = id, node = %node.id, %scope, "ADS stream closed");
}
