//! Istio's standard metrics and access logs, recorded per shard.
//!
//! Protocol-neutral: the HTTP/1.1 path (and any other codec) describes a
//! finished request as a [`RequestRecord`] and calls
//! [`ShardTelemetry::record_request`]; TCP connections call
//! [`ShardTelemetry::tcp_opened`] / [`ShardTelemetry::tcp_closed`].
//!
//! Each shard keys its cells by a small `Copy` key of ids it interned
//! itself (the peer's metadata, the cluster, the code, the flags…): the ~25
//! label strings are built once per key, when its cells are published for
//! the admin thread (see `ringmesh_metrics::ShardLabeled`). A shard holds at
//! most [`MAX_LABEL_SETS`] sets per family; further ones are folded into an
//! all-`unknown` set and counted in `ringmesh_metrics_label_overflow_total`.
//! Recording is single-writer counter stores: no lock, no atomic RMW.

pub mod access_log;
pub mod peer;

use std::{cell::RefCell, collections::HashMap, rc::Rc, sync::Arc, time::Duration};

use ringmesh_config::{Cluster, Snapshot};
use ringmesh_metrics::{
    merge_fixed, prometheus::Exposition, Counter, FixedHistogram, LabeledRegistry, ShardLabeled,
};

pub use peer::{PeerMeta, PEER_HEADER};

/// Label sets per shard and family before folding into `unknown`.
pub const MAX_LABEL_SETS: usize = 1000;
/// Distinct peers a shard remembers (more: `unknown`).
const MAX_PEERS: usize = 4096;

/// Istio's duration buckets (ms), as µs for recording.
const DURATION_BOUNDS_US: [u64; 19] = [
    500,
    1_000,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    600_000_000,
    1_800_000_000,
    3_600_000_000,
];
const DURATION_LE: [&str; 19] = [
    "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000",
    "30000", "60000", "300000", "600000", "1800000", "3600000",
];
/// Byte buckets: powers of ten, 1 B to 1 GB.
const BYTES_BOUNDS: [u64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];
const BYTES_LE: [&str; 10] = [
    "1", "10", "100", "1000", "10000", "100000", "1e+06", "1e+07", "1e+08", "1e+09",
];

/// Which side reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The client's sidecar (outbound).
    Source,
    /// The server's sidecar (inbound).
    Destination,
}

impl Reporter {
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }

    /// Inbound when the listener terminates mesh mTLS or the cluster is an
    /// Istio inbound cluster (`inbound|PORT||`).
    pub fn of(listener_tls: ringmesh_config::DownstreamTls, cluster: Option<&Cluster>) -> Self {
        if listener_tls != ringmesh_config::DownstreamTls::Disable
            || cluster.is_some_and(|c| c.name.starts_with("inbound|"))
        {
            Reporter::Destination
        } else {
            Reporter::Source
        }
    }
}

/// `request_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Grpc,
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
        }
    }
}

/// `connection_security_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Security {
    MutualTls,
    None,
    /// What a source reporter says (it cannot know the server's policy).
    Unknown,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Security::MutualTls => "mutual_tls",
            Security::None => "none",
            Security::Unknown => "unknown",
        }
    }
}

/// The body of the local reply to a request a circuit breaker refused.
pub const OVERFLOW_REASON: &str = "upstream overflow";

/// Envoy's response flags (the short names Istio reports), as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ResponseFlags(pub u16);

impl ResponseFlags {
    pub const NONE: ResponseFlags = ResponseFlags(0);
    /// No route.
    pub const NR: ResponseFlags = ResponseFlags(1);
    /// No healthy upstream.
    pub const UH: ResponseFlags = ResponseFlags(1 << 1);
    /// Upstream connection failure.
    pub const UF: ResponseFlags = ResponseFlags(1 << 2);
    /// Upstream request timeout.
    pub const UT: ResponseFlags = ResponseFlags(1 << 3);
    /// Upstream connection termination.
    pub const UC: ResponseFlags = ResponseFlags(1 << 4);
    /// Downstream connection termination.
    pub const DC: ResponseFlags = ResponseFlags(1 << 5);
    /// Downstream protocol error.
    pub const DPE: ResponseFlags = ResponseFlags(1 << 6);
    /// Upstream protocol error.
    pub const UPE: ResponseFlags = ResponseFlags(1 << 7);
    /// Denied by RBAC.
    pub const RBAC: ResponseFlags = ResponseFlags(1 << 8);
    /// Upstream overflow: a circuit breaker was open.
    pub const UO: ResponseFlags = ResponseFlags(1 << 9);

    const NAMES: [(u16, &'static str); 10] = [
        (1, "NR"),
        (1 << 1, "UH"),
        (1 << 2, "UF"),
        (1 << 3, "UT"),
        (1 << 4, "UC"),
        (1 << 5, "DC"),
        (1 << 6, "DPE"),
        (1 << 7, "UPE"),
        (1 << 8, "RBAC"),
        (1 << 9, "UO"),
    ];

    /// `-` when none, else the names joined by `,`.
    pub fn render(self) -> String {
        if self.0 == 0 {
            return "-".into();
        }
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, n)| *n)
            .collect();
        names.join(",")
    }

    /// The flag of a response the proxy generated itself, from its status
    /// and reason text.
    pub fn of_local_reply(status: u16, reason: &[u8]) -> ResponseFlags {
        let starts = |p: &[u8]| reason.starts_with(p);
        match status {
            403 if starts(b"RBAC") => Self::RBAC,
            404 if starts(b"route not found") => Self::NR,
            503 if starts(b"no healthy upstream") => Self::UH,
            503 if starts(OVERFLOW_REASON.as_bytes()) => Self::UO,
            503 if starts(b"upstream connect error or disconnect") || starts(b"upstream reset") => {
                Self::UC
            }
            503 if starts(b"upstream") => Self::UF,
            504 => Self::UT,
            502 => Self::UPE,
            400 | 408 | 413 | 414 | 417 | 431 | 505 => Self::DPE,
            _ => Self::NONE,
        }
    }
}

/// A peer, interned by the shard (0: unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PeerId(u32);

impl PeerId {
    pub const UNKNOWN: PeerId = PeerId(0);
}

/// One finished request, whatever its protocol.
#[derive(Debug, Clone)]
pub struct RequestRecord<'a> {
    pub reporter: Reporter,
    /// The other side: the source for a destination reporter, the
    /// destination for a source reporter.
    pub peer: PeerId,
    /// The cluster the request went to (none: answered before routing).
    pub cluster: Option<&'a Cluster>,
    pub protocol: Protocol,
    pub response_code: u16,
    pub grpc_status: Option<u16>,
    pub flags: ResponseFlags,
    /// Head and body bytes received from the client.
    pub request_bytes: u64,
    /// Head and body bytes sent to the client.
    pub response_bytes: u64,
    pub duration: Duration,
    pub security: Security,
}

/// What the access log adds to a [`RequestRecord`] (borrowed from the
/// request; built only when a line is written).
#[derive(Debug, Clone, Default)]
pub struct LogFields<'a> {
    pub method: &'a [u8],
    pub path: &'a [u8],
    /// `HTTP/1.1`, `HTTP/2`, ...
    pub protocol: &'a str,
    pub authority: &'a [u8],
    pub upstream_host: Option<std::net::SocketAddr>,
    pub downstream_principal: Option<&'a str>,
    pub request_id: Option<&'a [u8]>,
    pub traceparent: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct RqKey {
    reporter: Reporter,
    peer: PeerId,
    cluster: u64,
    code: u16,
    grpc: u16,
    flags: ResponseFlags,
    protocol: Protocol,
    security: Security,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TcpKey {
    reporter: Reporter,
    peer: PeerId,
    cluster: u64,
    flags: ResponseFlags,
    security: Security,
}

/// Cells of one `istio_requests_total` label set.
#[derive(Debug, Default)]
pub struct RqCells {
    pub requests: Counter,
    pub duration: FixedHistogram<19>,
    pub request_bytes: FixedHistogram<10>,
    pub response_bytes: FixedHistogram<10>,
}

/// Cells of one TCP label set.
#[derive(Debug, Default)]
pub struct TcpCells {
    pub opened: Counter,
    pub closed: Counter,
    pub sent: Counter,
    pub received: Counter,
}

/// Process-wide: where shards publish their label sets.
#[derive(Debug, Default)]
pub struct Registries {
    pub requests: Arc<LabeledRegistry<RqCells>>,
    pub tcp: Arc<LabeledRegistry<TcpCells>>,
    pub access_log: access_log::Sink,
}

/// This shard's own metadata, for one snapshot.
struct Own {
    version: u64,
    meta: Rc<PeerMeta>,
    /// The header value sent to peers.
    header: Rc<[u8]>,
}

#[derive(Default)]
struct Peers {
    metas: Vec<Rc<PeerMeta>>,
    /// Request headers believed, by value: (the SPIFFE ID they were
    /// checked against, id).
    by_request_header: HashMap<Box<[u8]>, (Box<str>, PeerId)>,
    by_response_header: HashMap<Box<[u8]>, PeerId>,
    by_spiffe: HashMap<Box<str>, PeerId>,
}

impl Peers {
    fn add(&mut self, m: PeerMeta) -> PeerId {
        if self.metas.len() >= MAX_PEERS {
            return PeerId::UNKNOWN;
        }
        self.metas.push(Rc::new(m));
        PeerId(self.metas.len() as u32)
    }

    fn get(&self, id: PeerId) -> Option<&Rc<PeerMeta>> {
        (id.0 as usize)
            .checked_sub(1)
            .and_then(|i| self.metas.get(i))
    }
}

/// A shard's telemetry state. Not `Sync`.
pub struct ShardTelemetry {
    requests: ShardLabeled<RqKey, RqCells>,
    tcp: ShardLabeled<TcpKey, TcpCells>,
    peers: RefCell<Peers>,
    own: RefCell<Option<Own>>,
    log: access_log::ShardLog,
    shared: Arc<crate::shared::Shared>,
}

fn unknown_labels(n: usize) -> Vec<Box<str>> {
    vec![Box::from("unknown"); n]
}

impl ShardTelemetry {
    pub fn new(shared: Arc<crate::shared::Shared>) -> Self {
        let r = &shared.stats.istio;
        ShardTelemetry {
            requests: ShardLabeled::new(r.requests.clone(), MAX_LABEL_SETS),
            tcp: ShardLabeled::new(r.tcp.clone(), MAX_LABEL_SETS),
            peers: Default::default(),
            own: Default::default(),
            log: access_log::ShardLog::default(),
            shared,
        }
    }

    fn own(&self, snap: &Snapshot) -> (Rc<PeerMeta>, Rc<[u8]>) {
        if let Some(o) = &*self.own.borrow() {
            if o.version == snap.version {
                return (o.meta.clone(), o.header.clone());
            }
        }
        // The principal: the configured identity, else the certificate's.
        let cert = self.shared.identity.current();
        let principal = snap
            .workload
            .principal
            .as_deref()
            .or(cert.as_ref().map(|c| c.identity.as_str()));
        let meta = Rc::new(PeerMeta::own(&snap.workload, principal));
        let header: Rc<[u8]> = meta.encode().into_bytes().into();
        // Rebuilt on the next request while the certificate is not there.
        let version = if principal.is_some() {
            snap.version
        } else {
            u64::MAX
        };
        *self.own.borrow_mut() = Some(Own {
            version,
            meta: meta.clone(),
            header: header.clone(),
        });
        (meta, header)
    }

    /// The header value this proxy sends to peers (requests to ISTIO_MUTUAL
    /// clusters, responses to mTLS clients).
    pub fn own_header(&self, snap: &Snapshot) -> Rc<[u8]> {
        self.own(snap).1
    }

    /// The source of an inbound request: its `x-ringmesh-peer` value when
    /// the connection's verified identity vouches for it, else what the
    /// SPIFFE ID says, else unknown (plaintext).
    pub fn inbound_peer(&self, spiffe: Option<&str>, header: Option<&[u8]>) -> PeerId {
        let Some(spiffe) = spiffe else {
            return PeerId::UNKNOWN;
        };
        let mut peers = self.peers.borrow_mut();
        if let Some(h) = header {
            if let Some((id, p)) = peers.by_request_header.get(h) {
                if &**id == spiffe {
                    return *p;
                }
            }
            if let Some(m) = PeerMeta::trusted_from(h, spiffe) {
                let p = peers.add(m);
                if p != PeerId::UNKNOWN {
                    peers.by_request_header.insert(h.into(), (spiffe.into(), p));
                }
                return p;
            }
        }
        if let Some(p) = peers.by_spiffe.get(spiffe) {
            return *p;
        }
        let p = peers.add(PeerMeta::from_spiffe(spiffe));
        if p != PeerId::UNKNOWN {
            peers.by_spiffe.insert(spiffe.into(), p);
        }
        p
    }

    /// The destination of an outbound request, from the response's header
    /// (only from an ISTIO_MUTUAL cluster: the caller checks).
    pub fn outbound_peer(&self, header: Option<&[u8]>) -> PeerId {
        let Some(h) = header else {
            return PeerId::UNKNOWN;
        };
        let mut peers = self.peers.borrow_mut();
        if let Some(p) = peers.by_response_header.get(h) {
            return *p;
        }
        let Some(m) = PeerMeta::decode(h) else {
            return PeerId::UNKNOWN;
        };
        let p = peers.add(m);
        if p != PeerId::UNKNOWN {
            peers.by_response_header.insert(h.into(), p);
        }
        p
    }

    /// Record a finished request: Istio metrics, then (if configured and
    /// the filter accepts it) an access log line, built by `log`.
    pub fn record_request<'a>(
        &self,
        snap: &Snapshot,
        r: &RequestRecord<'_>,
        log: impl FnOnce() -> LogFields<'a>,
    ) {
        let key = RqKey {
            reporter: r.reporter,
            peer: r.peer,
            cluster: r.cluster.map_or(0, |c| c.id),
            code: r.response_code,
            grpc: r.grpc_status.unwrap_or(u16::MAX),
            flags: r.flags,
            protocol: r.protocol,
            security: r.security,
        };
        let us = r.duration.as_micros().min(u128::from(u64::MAX)) as u64;
        self.requests.with(
            key,
            || {
                self.labels(
                    snap,
                    r.reporter,
                    r.peer,
                    r.cluster,
                    Some(r),
                    r.protocol,
                    r.flags,
                    r.security,
                )
            },
            || unknown_labels(RQ_LABELS.len()),
            |c| {
                c.requests.inc();
                c.duration.record(&DURATION_BOUNDS_US, us, us);
                c.request_bytes
                    .record(&BYTES_BOUNDS, r.request_bytes, r.request_bytes);
                c.response_bytes
                    .record(&BYTES_BOUNDS, r.response_bytes, r.response_bytes);
            },
        );
        if let Some(cfg) = &snap.access_log {
            if cfg.wants(r.response_code, r.duration) {
                let fields = log();
                self.log.send(&self.shared, cfg, r, &fields);
            }
        }
    }

    fn tcp_key(
        reporter: Reporter,
        peer: PeerId,
        cluster: &Cluster,
        flags: ResponseFlags,
        security: Security,
    ) -> TcpKey {
        TcpKey {
            reporter,
            peer,
            cluster: cluster.id,
            flags,
            security,
        }
    }

    /// A TCP connection was proxied to `cluster`.
    pub fn tcp_opened(
        &self,
        snap: &Snapshot,
        reporter: Reporter,
        peer: PeerId,
        cluster: &Cluster,
        security: Security,
    ) {
        let key = Self::tcp_key(reporter, peer, cluster, ResponseFlags::NONE, security);
        self.tcp.with(
            key,
            || self.tcp_labels(snap, reporter, peer, cluster, ResponseFlags::NONE, security),
            || unknown_labels(TCP_LABELS.len()),
            |c| c.opened.inc(),
        );
    }

    /// A TCP connection opened by [`Self::tcp_opened`] closed, after
    /// `sent` bytes to the client and `received` from it.
    #[allow(clippy::too_many_arguments)]
    pub fn tcp_closed(
        &self,
        snap: &Snapshot,
        reporter: Reporter,
        peer: PeerId,
        cluster: &Cluster,
        security: Security,
        sent: u64,
        received: u64,
    ) {
        let key = Self::tcp_key(reporter, peer, cluster, ResponseFlags::NONE, security);
        self.tcp.with(
            key,
            || self.tcp_labels(snap, reporter, peer, cluster, ResponseFlags::NONE, security),
            || unknown_labels(TCP_LABELS.len()),
            |c| {
                c.closed.inc();
                c.sent.add(sent);
                c.received.add(received);
            },
        );
    }

    fn tcp_labels(
        &self,
        snap: &Snapshot,
        reporter: Reporter,
        peer: PeerId,
        cluster: &Cluster,
        flags: ResponseFlags,
        security: Security,
    ) -> Vec<Box<str>> {
        self.labels(
            snap,
            reporter,
            peer,
            Some(cluster),
            None,
            Protocol::Tcp,
            flags,
            security,
        )
    }

    /// Label values in [`RQ_LABELS`] order (without `response_code` and
    /// `grpc_response_status` when `rq` is `None`: [`TCP_LABELS`]).
    #[allow(clippy::too_many_arguments)]
    fn labels(
        &self,
        snap: &Snapshot,
        reporter: Reporter,
        peer: PeerId,
        cluster: Option<&Cluster>,
        rq: Option<&RequestRecord<'_>>,
        protocol: Protocol,
        flags: ResponseFlags,
        security: Security,
    ) -> Vec<Box<str>> {
        let own = self.own(snap).0;
        let unknown = Rc::new(PeerMeta::unknown());
        let other = self.peers.borrow().get(peer).cloned().unwrap_or(unknown);
        let (src, dst) = match reporter {
            Reporter::Destination => (other, own),
            Reporter::Source => (own, other),
        };
        let service = destination_service(cluster.map(|c| &*c.name), &dst);
        let service_name = service.split('.').next().unwrap_or("unknown").to_string();
        let service_ns = match service.split('.').nth(1) {
            Some(ns) if service.contains(".svc") => ns.to_string(),
            _ => dst.namespace.clone(),
        };
        let mut v: Vec<String> = vec![
            reporter.as_str().into(),
            src.workload.clone(),
            src.canonical_service.clone(),
            src.canonical_revision.clone(),
            src.namespace.clone(),
            src.principal.clone(),
            src.app.clone(),
            src.version.clone(),
            src.cluster.clone(),
            dst.workload.clone(),
            dst.namespace.clone(),
            dst.principal.clone(),
            dst.app.clone(),
            dst.version.clone(),
            service,
            dst.canonical_service.clone(),
            dst.canonical_revision.clone(),
            service_name,
            service_ns,
            dst.cluster.clone(),
            protocol.as_str().into(),
        ];
        if let Some(r) = rq {
            v.push(r.response_code.to_string());
            v.push(match r.grpc_status {
                Some(g) => g.to_string(),
                None => String::new(),
            });
        }
        v.push(flags.render());
        v.push(security.as_str().into());
        v.into_iter().map(Box::from).collect()
    }
}

/// `destination_service`: the host of an Istio outbound cluster name
/// (`outbound|PORT|SUBSET|HOST`); for inbound clusters
/// (`inbound|PORT||`), the destination's canonical service in its
/// namespace; another name as is.
fn destination_service(cluster: Option<&str>, dst: &PeerMeta) -> String {
    let Some(name) = cluster else {
        return "unknown".into();
    };
    let mut parts = name.split('|');
    match parts.next() {
        Some("outbound") => match parts.nth(2) {
            Some(host) if !host.is_empty() => host.to_string(),
            _ => "unknown".into(),
        },
        Some("inbound") if dst.canonical_service != "unknown" && dst.namespace != "unknown" => {
            format!(
                "{}.{}.svc.cluster.local",
                dst.canonical_service, dst.namespace
            )
        }
        Some("inbound") => "unknown".into(),
        _ => name.to_string(),
    }
}

/// Istio's label set for request metrics, in Istio's order.
pub const RQ_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// The TCP metrics' labels: the request labels without `response_code`
/// and `grpc_response_status`.
pub const TCP_LABELS: [&str; 23] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
];

fn zip<'a>(names: &'a [&'a str], values: &'a [Box<str>]) -> Vec<(&'a str, &'a str)> {
    names
        .iter()
        .copied()
        .zip(values.iter().map(|v| &**v))
        .collect()
}

/// Append the Istio families and the telemetry's own counters.
pub fn render(r: &Registries, e: &mut Exposition) {
    r.requests.for_each_set(|values, cells| {
        let labels = zip(&RQ_LABELS, values);
        e.counter(
            "istio_requests_total",
            "Requests, by Istio's standard labels.",
            &labels,
            cells.iter().map(|c| c.requests.get()).sum(),
        );
    });
    r.requests.for_each_set(|values, cells| {
        let labels = zip(&RQ_LABELS, values);
        let parts: Vec<_> = cells.iter().map(|c| &c.duration).collect();
        let (b, count, sum_us) = merge_fixed(&parts);
        e.histogram_fixed(
            "istio_request_duration_milliseconds",
            "Request duration (ms).",
            &labels,
            &DURATION_LE,
            &b,
            count,
            sum_us as f64 / 1000.0,
        );
    });
    for (name, help, response) in [
        (
            "istio_request_bytes",
            "Request size (head and body, bytes).",
            false,
        ),
        (
            "istio_response_bytes",
            "Response size (head and body, bytes).",
            true,
        ),
    ] {
        r.requests.for_each_set(|values, cells| {
            let labels = zip(&RQ_LABELS, values);
            let parts: Vec<&FixedHistogram<10>> = cells
                .iter()
                .map(|c| {
                    if response {
                        &c.response_bytes
                    } else {
                        &c.request_bytes
                    }
                })
                .collect();
            let (b, count, sum) = merge_fixed(&parts);
            e.histogram_fixed(name, help, &labels, &BYTES_LE, &b, count, sum as f64);
        });
    }
    type TcpPick = fn(&TcpCells) -> u64;
    let tcp: [(&str, &str, TcpPick); 4] = [
        (
            "istio_tcp_sent_bytes_total",
            "Bytes sent to the client on TCP connections.",
            |c| c.sent.get(),
        ),
        (
            "istio_tcp_received_bytes_total",
            "Bytes received from the client on TCP connections.",
            |c| c.received.get(),
        ),
        (
            "istio_tcp_connections_opened_total",
            "TCP connections opened.",
            |c| c.opened.get(),
        ),
        (
            "istio_tcp_connections_closed_total",
            "TCP connections closed.",
            |c| c.closed.get(),
        ),
    ];
    for (name, help, f) in tcp {
        r.tcp.for_each_set(|values, cells| {
            let labels = zip(&TCP_LABELS, values);
            e.counter(name, help, &labels, cells.iter().map(|c| f(c)).sum());
        });
    }
    e.counter(
        "ringmesh_metrics_label_overflow_total",
        "Metric updates folded into the `unknown` label set because a shard held the maximum number of label sets.",
        &[],
        r.requests.overflow.total() + r.tcp.overflow.total(),
    );
    r.access_log.render(e);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_flags() {
        assert_eq!(ResponseFlags::NONE.render(), "-");
        assert_eq!(
            ResponseFlags(ResponseFlags::UC.0 | ResponseFlags::DC.0).render(),
            "UC,DC"
        );
        let of = ResponseFlags::of_local_reply;
        assert_eq!(of(503, b"no healthy upstream\n"), ResponseFlags::UH);
        assert_eq!(of(503, b"upstream connect error\n"), ResponseFlags::UF);
        assert_eq!(
            of(
                503,
                b"upstream connect error or disconnect/reset before headers\n"
            ),
            ResponseFlags::UC
        );
        assert_eq!(of(404, b"route not found\n"), ResponseFlags::NR);
        assert_eq!(of(403, b"RBAC: access denied"), ResponseFlags::RBAC);
        assert_eq!(of(504, b"upstream request timeout\n"), ResponseFlags::UT);
        assert_eq!(of(431, b"x"), ResponseFlags::DPE);
    }

    #[test]
    fn destination_service_from_cluster_names() {
        let mut dst = PeerMeta::unknown();
        let svc = |c: Option<&str>, d: &PeerMeta| destination_service(c, d);
        assert_eq!(
            svc(
                Some("outbound|9080|v1|reviews.default.svc.cluster.local"),
                &dst
            ),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(svc(Some("outbound|9080||"), &dst), "unknown");
        assert_eq!(svc(Some("inbound|9080||"), &dst), "unknown");
        assert_eq!(svc(Some("static-name"), &dst), "static-name");
        assert_eq!(svc(None, &dst), "unknown");
        dst.canonical_service = "reviews".into();
        dst.namespace = "shop".into();
        assert_eq!(
            svc(Some("inbound|9080||"), &dst),
            "reviews.shop.svc.cluster.local"
        );
    }

    #[test]
    fn label_sets_match_istio_order() {
        assert_eq!(RQ_LABELS[0], "reporter");
        assert_eq!(RQ_LABELS[24], "connection_security_policy");
        let tcp: Vec<&str> = RQ_LABELS
            .iter()
            .copied()
            .filter(|l| *l != "response_code" && *l != "grpc_response_status")
            .collect();
        assert_eq!(tcp, TCP_LABELS);
    }
}
