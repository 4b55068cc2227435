//! The server: scopes with their published snapshots, the registry of
//! connected streams, and the task that drives each stream.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use parking_lot::Mutex;
use tokio::{
    sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore},
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
    streams: Mutex<BTreeMap<u64, Arc<dyn StatusCell>>>,
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
        self.publish_snapshot(scope.into(), Arc::new(Snapshot::new(resources)))
    }

    /// [`XdsServer::publish`] the same `resources` to every scope of
    /// `scopes`: computed, versioned and stored once, shared by all of
    /// them. Returns how many scopes changed.
    pub fn publish_group(&self, scopes: &[ScopeKey], resources: Resources) -> usize {
        let snapshot = Arc::new(Snapshot::new(resources));
        scopes
            .iter()
            .filter(|scope| self.publish_snapshot((*scope).clone(), snapshot.clone()))
            .count()
    }

    pub(crate) fn publish_snapshot(&self, scope: ScopeKey, snapshot: Arc<Snapshot>) -> bool {
        let mut scopes = self.inner.scopes.lock();
        let tx = scopes
            .entry(scope.clone())
            .or_insert_with(|| watch::channel(None).0);
        let changed = tx.send_if_modified(|current| match current {
            Some(old) if Arc::ptr_eq(old, &snapshot) || old.same_as(&snapshot) => false,
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
        cells.iter().map(|c| c.status()).collect()
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
    /// A response's type, nonce and size (the bytes of its resources).
    fn sent(resp: &Self::Response) -> (TypeUrl, String, usize);
    /// The type and nonce a request ACKs or NACKs, if any.
    fn answers(req: &Self::Request) -> Option<(TypeUrl, String)>;
}

/// Bytes of responses the whole server has handed to its streams and
/// not yet seen answered (ACK or NACK): the bound on what waits in
/// per-connection buffers for slow clients. Streams take their share
/// first come, first served (a fair semaphore), so a slow client delays
/// only its own next response once the budget is spent, not everyone's
/// forever; an answer that never comes frees its share after
/// [`UNANSWERED_GRACE`].
const SEND_BUDGET: usize = 256 << 20;
/// The unit of [`SEND_BUDGET`].
const PERMIT_BYTES: usize = 4096;
const UNANSWERED_GRACE: Duration = Duration::from_secs(10);

fn send_budget() -> Arc<Semaphore> {
    static BUDGET: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    BUDGET
        .get_or_init(|| Arc::new(Semaphore::new(SEND_BUDGET / PERMIT_BYTES)))
        .clone()
}

/// A sent response's share of the budget, held until it is answered.
struct Unanswered {
    type_url: TypeUrl,
    nonce: String,
    since: Instant,
    _permit: OwnedSemaphorePermit,
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
struct Registration<P: StreamProtocol> {
    inner: Arc<Inner>,
    id: u64,
    scope: ScopeKey,
    rx: watch::Receiver<Option<Arc<Snapshot>>>,
    cell: Arc<Cell<P>>,
}

/// A stream's status, read on demand: its fixed facts, and its protocol
/// state (which the stream task locks briefly for each step), so nothing
/// per resource is copied for `proxy-status` until someone asks.
pub(crate) struct Cell<P> {
    status: Mutex<StreamStatus>,
    proto: Mutex<P>,
}

pub(crate) trait StatusCell: Send + Sync {
    fn status(&self) -> StreamStatus;
}

impl<P: StreamProtocol> StatusCell for Cell<P> {
    fn status(&self) -> StreamStatus {
        let mut status = self.status.lock().clone();
        status.types = self.proto.lock().status();
        status
    }
}

impl<P: StreamProtocol> Drop for Registration<P> {
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
    let cell = Arc::new(Cell {
        status: Mutex::new(StreamStatus {
            stream_id: id,
            protocol: P::PROTOCOL,
            node: node.clone(),
            scope: scope.clone(),
            connected_at: SystemTime::now(),
            waiting_for_first_publish: true,
            types: BTreeMap::new(),
        }),
        proto: Mutex::new(P::default()),
    });
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
    reg.cell.proto.lock().on_request(first, SystemTime::now());
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

    let budget = send_budget();
    let mut unanswered: VecDeque<Unanswered> = VecDeque::new();
    // Responses computed but not yet handed to the connection. New ones
    // are computed only once these are out, so a slow client gets fewer,
    // fresher responses (a later diff covers what it missed), never a
    // backlog; and requests are read all the while, so a client blocked
    // on sending its ACKs never deadlocks with a server blocked on
    // sending it responses.
    let mut outbox: VecDeque<P::Response> = VecDeque::new();
    let mut stale = true;
    loop {
        if outbox.is_empty() && stale {
            stale = false;
            if let Some(snap) = &snapshot {
                // Diff under the lock, send without it.
                let mut proto = reg.cell.proto.lock();
                let mut types = proto.types();
                types.sort_by(|a, b| (a.push_rank(), a).cmp(&(b.push_rank(), b)));
                outbox = types
                    .iter()
                    .filter_map(|t| proto.respond(t, snap, SystemTime::now()))
                    .collect();
                // A big answer goes in parts: ask again once these are out
                // (a no-op diff when nothing is left).
                stale = !outbox.is_empty();
            }
        }
        reg.cell.status.lock().waiting_for_first_publish = snapshot.is_none();

        let give_up = async {
            match deadline {
                Some(d) if snapshot.is_none() => tokio::time::sleep_until(d).await,
                _ => std::future::pending().await,
            }
        };
        let oldest = unanswered.front().map(|u| u.since + UNANSWERED_GRACE);
        let grace_over = async {
            match oldest {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // Room for the next response: its share of the server-wide
        // budget, then a place in the connection's queue.
        let next_bytes = outbox.front().map(|r| P::sent(r).2);
        let room = async {
            match next_bytes {
                None => std::future::pending().await,
                Some(bytes) => {
                    let permits = (bytes / PERMIT_BYTES + 1).min(SEND_BUDGET / PERMIT_BYTES / 4);
                    let permit = budget.clone().acquire_many_owned(permits as u32).await;
                    (permit, tx.reserve().await)
                }
            }
        };
        tokio::select! {
            (permit, slot) = room => {
                let (Ok(permit), Ok(slot)) = (permit, slot) else {
                    break; // the client went away
                };
                let resp = outbox.pop_front().expect("room is sought only for a waiting response");
                let (type_url, nonce, _) = P::sent(&resp);
                slot.send(Ok(resp));
                unanswered.push_back(Unanswered {
                    type_url,
                    nonce,
                    since: Instant::now(),
                    _permit: permit,
                });
            }
            req = inbound.next() => match req {
                Some(Ok(req)) => {
                    if let Some((type_url, nonce)) = P::answers(&req) {
                        // This answer settles its response and every
                        // earlier one of the type.
                        if let Some(pos) = unanswered
                            .iter()
                            .position(|u| u.type_url == type_url && u.nonce == nonce)
                        {
                            let mut i = 0;
                            unanswered.retain(|u| {
                                let keep = i > pos || u.type_url != type_url;
                                i += 1;
                                keep
                            });
                        }
                    }
                    reg.cell.proto.lock().on_request(req, SystemTime::now());
                    stale = true;
                }
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
                stale = true;
            }
            () = tx.closed() => break,
            _ = close.changed() => {
                info!(stream = id, "closing the stream: server shutting down");
                break;
            }
            () = grace_over => {
                let now = Instant::now();
                while unanswered.front().is_some_and(|u| u.since + UNANSWERED_GRACE <= now) {
                    unanswered.pop_front();
                }
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
