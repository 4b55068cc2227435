//! The proxy's own metrics: cells per shard (see `ringmesh-metrics`),
//! rendered as Prometheus text by the admin thread.

use std::{cell::RefCell, collections::HashMap, rc::Rc, sync::Arc};

use ringmesh_metrics::{
    prometheus::Exposition, Counter, Gauge, LocalHistogram, PublishedHistogram, Registry,
    SharedCounter,
};

/// Status codes the proxy answers locally, counted by code.
pub const LOCAL_REPLY_CODES: &[u16] = &[
    400, 403, 404, 408, 413, 414, 417, 429, 431, 500, 501, 502, 503, 504, 505,
];

#[derive(Default)]
pub struct ListenerCells {
    pub cx_total: Counter,
    pub cx_active: Gauge,
    pub cx_overflow: Counter,
    /// Requests by status class (index 0 = 1xx .. 4 = 5xx).
    pub rq_by_class: [Counter; 5],
    pub rx_bytes: Counter,
    pub tx_bytes: Counter,
    pub latency: Arc<PublishedHistogram>,
    /// Connections by security: mutual TLS, or plaintext.
    pub cx_mtls: Counter,
    pub cx_plaintext: Counter,
    /// Plaintext connections closed by a STRICT listener.
    pub cx_plaintext_refused: Counter,
    /// Inbound TLS handshakes by result.
    pub tls_handshake_ok: Counter,
    pub tls_handshake_fail: Counter,
    pub tls_handshake_timeout: Counter,
    /// RBAC verdicts (requests on HTTP listeners, connections on TCP
    /// ones), counted only where the listener has RBAC filters.
    pub rbac_allowed: Counter,
    pub rbac_denied: Counter,
    /// Shadow rules that would have allowed / denied.
    pub rbac_shadow_allowed: Counter,
    pub rbac_shadow_denied: Counter,
    /// A LOG (Istio AUDIT) policy matched.
    pub rbac_logged: Counter,
    /// Requests answered 400 because of their path (escaped slashes,
    /// invalid percent-encoding).
    pub rq_path_rejected: Counter,
}

/// Count an RBAC verdict and log denials (debug) and audits (info).
pub fn record_verdict(
    ls: &ListenerStats,
    listener: &str,
    v: &ringmesh_config::authz::Verdict<'_>,
    peer: std::net::SocketAddr,
    principal: Option<&str>,
    request: Option<&ringmesh_route::Request<'_>>,
) {
    let c = &ls.cells;
    if v.shadow_denied > 0 {
        c.rbac_shadow_denied.add(u64::from(v.shadow_denied));
    }
    if v.shadow_allowed > 0 {
        c.rbac_shadow_allowed.add(u64::from(v.shadow_allowed));
    }
    // Only read (UTF-8 checked) when something is logged.
    let method = || request.map(|r| String::from_utf8_lossy(r.method));
    let path = || request.map(|r| String::from_utf8_lossy(r.path));
    if let Some((filter, policy)) = v.logged {
        c.rbac_logged.inc();
        tracing::info!(
            target: "ringmesh::rbac",
            listener,
            filter,
            policy,
            %peer,
            principal,
            method = method().as_deref(),
            path = path().as_deref(),
            denied = v.denied.is_some(),
            "rbac audit"
        );
    }
    match v.denied {
        Some((filter, policy)) => {
            c.rbac_denied.inc();
            tracing::debug!(
                target: "ringmesh::rbac",
                listener,
                filter,
                policy,
                %peer,
                principal,
                method = method().as_deref(),
                path = path().as_deref(),
                "rbac denied"
            );
        }
        None => c.rbac_allowed.inc(),
    }
}

#[derive(Default)]
pub struct ClusterCells {
    pub cx_total: Counter,
    pub cx_active: Gauge,
    pub cx_connect_fail: Counter,
    pub cx_pool_reuse: Counter,
    pub rq_total: Counter,
    pub rq_timeout: Counter,
    pub rq_by_class: [Counter; 5],
    /// Outbound TLS handshakes by result, and how many resumed a session.
    pub tls_handshake_ok: Counter,
    pub tls_handshake_fail: Counter,
    pub tls_resumed: Counter,
}

#[derive(Default)]
pub struct ShardCells {
    pub local_replies: [Counter; LOCAL_REPLY_CODES.len()],
}

/// Process-wide metrics (shared registries, control-thread counters).
#[derive(Default)]
pub struct Stats {
    pub listeners: Registry<ListenerCells>,
    pub clusters: Registry<ClusterCells>,
    pub shards: Registry<ShardCells>,
    pub reload_success: SharedCounter,
    pub reload_failure: SharedCounter,
    pub xds_accepted: SharedCounter,
    pub xds_rejected: SharedCounter,
    /// Certificate fetches / reloads by result (control thread only).
    pub identity_renew_ok: SharedCounter,
    pub identity_renew_fail: SharedCounter,
    /// NotAfter of the certificate served, in Unix seconds (0: none yet);
    /// written by the control thread only.
    pub identity_expiry: Gauge,
    /// Istio's standard metrics and the access log queue.
    pub istio: crate::telemetry::Registries,
}

/// A shard's cache of its own cells, so the registry lock is taken only
/// the first time a shard meets a listener or cluster.
pub struct ShardStats {
    shard: usize,
    shared: Arc<crate::shared::Shared>,
    listeners: RefCell<HashMap<Arc<str>, Rc<ListenerStats>>>,
    clusters: RefCell<HashMap<u64, Arc<ClusterCells>>>,
    pub cells: Arc<ShardCells>,
    /// Istio metrics and access logs (see [`crate::telemetry`]).
    pub telemetry: crate::telemetry::ShardTelemetry,
}

pub struct ListenerStats {
    pub cells: Arc<ListenerCells>,
    pub latency: LocalHistogram,
}

impl ShardStats {
    pub fn new(shard: usize, shared: Arc<crate::shared::Shared>) -> Self {
        let cells = shared
            .stats
            .shards
            .register(&Arc::from(format!("{shard}")), shard);
        ShardStats {
            shard,
            telemetry: crate::telemetry::ShardTelemetry::new(shared.clone()),
            shared,
            listeners: Default::default(),
            clusters: Default::default(),
            cells,
        }
    }

    pub fn listener(&self, name: &Arc<str>) -> Rc<ListenerStats> {
        if let Some(s) = self.listeners.borrow().get(name) {
            return s.clone();
        }
        let cells = self.shared.stats.listeners.register(name, self.shard);
        let s = Rc::new(ListenerStats {
            latency: LocalHistogram::new(cells.latency.clone()),
            cells,
        });
        self.listeners.borrow_mut().insert(name.clone(), s.clone());
        s
    }

    pub fn cluster(&self, id: u64, name: &Arc<str>) -> Arc<ClusterCells> {
        if let Some(s) = self.clusters.borrow().get(&id) {
            return s.clone();
        }
        let cells = self.shared.stats.clusters.register(name, self.shard);
        self.clusters.borrow_mut().insert(id, cells.clone());
        cells
    }

    pub fn local_reply(&self, code: u16) {
        if let Some(i) = LOCAL_REPLY_CODES.iter().position(|&c| c == code) {
            self.cells.local_replies[i].inc();
        }
    }

    /// Publish latency histograms for the admin thread (called on a timer).
    pub fn publish(&self) {
        for l in self.listeners.borrow().values() {
            l.latency.publish();
        }
    }
}

#[inline]
pub fn class_index(status: u16) -> usize {
    (status / 100).clamp(1, 5) as usize - 1
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn sum<T>(cells: &[&T], f: impl Fn(&T) -> u64) -> u64 {
    cells.iter().map(|c| f(c)).sum()
}

fn sum_i<T>(cells: &[&T], f: impl Fn(&T) -> i64) -> i64 {
    cells.iter().map(|c| f(c)).sum()
}

/// Render the whole exposition.
pub fn render(shared: &crate::shared::Shared) -> String {
    let st = &shared.stats;
    let mut e = Exposition::new();
    let snap = shared.snapshot.load();
    for (i, d) in shared.drivers.iter().enumerate() {
        if let Some(d) = d.get() {
            let shard = i.to_string();
            e.gauge(
                "ringmesh_io_driver",
                "I/O driver each shard runs on (1 = in use).",
                &[("driver", d.as_str()), ("shard", &shard)],
                1,
            );
        }
    }
    e.gauge(
        "ringmesh_shards",
        "Number of shards (one runtime per core).",
        &[],
        shared.shards as i64,
    );
    e.gauge(
        "ringmesh_config_version",
        "Version (content hash, low 53 bits) of the live configuration.",
        &[],
        (snap.version & ((1 << 53) - 1)) as i64,
    );
    e.counter(
        "ringmesh_config_reloads_total",
        "Configuration reloads by result.",
        &[("result", "success")],
        st.reload_success.get(),
    );
    e.counter(
        "ringmesh_config_reloads_total",
        "Configuration reloads by result.",
        &[("result", "failure")],
        st.reload_failure.get(),
    );
    for (result, n) in [
        ("accepted", st.xds_accepted.get()),
        ("rejected", st.xds_rejected.get()),
    ] {
        e.counter(
            "ringmesh_xds_updates_total",
            "Configurations received from the control plane, by result (rejected = NACKed).",
            &[("result", result)],
            n,
        );
    }
    if shared.identity.configured {
        e.gauge(
            "ringmesh_identity_cert_expiry_timestamp_seconds",
            "NotAfter of this proxy's certificate (Unix seconds; 0 until the first one).",
            &[],
            st.identity_expiry.get(),
        );
        let expiry = st.identity_expiry.get();
        if expiry > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            e.gauge(
                "ringmesh_cert_expiry_seconds",
                "Seconds until this proxy's certificate expires (negative: expired).",
                &[],
                expiry - now,
            );
        }
        for (result, n) in [
            ("success", st.identity_renew_ok.get()),
            ("failure", st.identity_renew_fail.get()),
        ] {
            e.counter(
                "ringmesh_identity_renewals_total",
                "Certificate fetches from the CA (or reloads from files), by result.",
                &[("result", result)],
                n,
            );
        }
    }
    e.gauge(
        "ringmesh_draining",
        "1 while the proxy drains before exit.",
        &[],
        shared.is_draining() as i64,
    );

    macro_rules! per_key {
        ($reg:expr, $label:literal, $metric:literal, $kind:ident, $help:literal, $f:expr) => {
            $reg.for_each_key(|k, cells| {
                e.$kind($metric, $help, &[($label, k)], $f(cells));
            });
        };
    }
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_downstream_cx_total",
        counter,
        "Downstream connections accepted.",
        |c: &[&ListenerCells]| sum(c, |x| x.cx_total.get())
    );
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_downstream_cx_active",
        gauge,
        "Downstream connections open.",
        |c: &[&ListenerCells]| sum_i(c, |x| x.cx_active.get())
    );
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_downstream_cx_overflow_total",
        counter,
        "Downstream connections refused by max_connections_per_shard.",
        |c: &[&ListenerCells]| sum(c, |x| x.cx_overflow.get())
    );
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_downstream_rx_bytes_total",
        counter,
        "Bytes received from downstream.",
        |c: &[&ListenerCells]| sum(c, |x| x.rx_bytes.get())
    );
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_downstream_tx_bytes_total",
        counter,
        "Bytes sent to downstream.",
        |c: &[&ListenerCells]| sum(c, |x| x.tx_bytes.get())
    );
    st.listeners.for_each_key(|k, cells| {
        for (security, n) in [
            ("mtls", sum(cells, |x| x.cx_mtls.get())),
            ("plaintext", sum(cells, |x| x.cx_plaintext.get())),
        ] {
            e.counter(
                "ringmesh_downstream_cx_security_total",
                "Downstream connections served, by transport security.",
                &[("listener", k), ("security", security)],
                n,
            );
        }
        let results = [
            ("success", sum(cells, |x| x.tls_handshake_ok.get())),
            ("failure", sum(cells, |x| x.tls_handshake_fail.get())),
            ("timeout", sum(cells, |x| x.tls_handshake_timeout.get())),
        ];
        // Plaintext-only listeners have no handshakes to show.
        let tls = snap
            .listeners
            .iter()
            .any(|l| &*l.name == k && l.tls != ringmesh_config::DownstreamTls::Disable);
        if !tls && results.iter().all(|(_, n)| *n == 0) {
            return;
        }
        for (result, n) in results {
            e.counter(
                "ringmesh_tls_handshakes_total",
                "Inbound TLS handshakes, by result.",
                &[("listener", k), ("result", result)],
                n,
            );
        }
    });
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_downstream_cx_plaintext_refused_total",
        counter,
        "Plaintext connections closed by a STRICT (mTLS-only) listener.",
        |c: &[&ListenerCells]| sum(c, |x| x.cx_plaintext_refused.get())
    );
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_rbac_allowed_total",
        counter,
        "Requests (HTTP) or connections (TCP) allowed by the listener's RBAC filters.",
        |c: &[&ListenerCells]| sum(c, |x| x.rbac_allowed.get())
    );
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_rbac_denied_total",
        counter,
        "Requests answered 403 / connections closed by the listener's RBAC filters.",
        |c: &[&ListenerCells]| sum(c, |x| x.rbac_denied.get())
    );
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_rbac_shadow_allowed_total",
        counter,
        "Shadow RBAC rules that would have allowed.",
        |c: &[&ListenerCells]| sum(c, |x| x.rbac_shadow_allowed.get())
    );
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_rbac_shadow_denied_total",
        counter,
        "Shadow RBAC rules that would have denied (not enforced).",
        |c: &[&ListenerCells]| sum(c, |x| x.rbac_shadow_denied.get())
    );
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_rbac_logged_total",
        counter,
        "Requests or connections matched by an RBAC LOG (Istio AUDIT) policy.",
        |c: &[&ListenerCells]| sum(c, |x| x.rbac_logged.get())
    );
    per_key!(
        st.listeners,
        "listener",
        "ringmesh_http_path_rejected_total",
        counter,
        "Requests answered 400 for their path (escaped slashes, invalid percent-encoding).",
        |c: &[&ListenerCells]| sum(c, |x| x.rq_path_rejected.get())
    );
    st.listeners.for_each_key(|k, cells| {
        for (i, class) in CLASSES.iter().enumerate() {
            e.counter(
                "ringmesh_http_requests_total",
                "HTTP requests completed, by status class.",
                &[("listener", k), ("code_class", class)],
                sum(cells, |x| x.rq_by_class[i].get()),
            );
        }
    });
    st.listeners.for_each_key(|k, cells| {
        let (h, sum_us) = ringmesh_metrics::histogram_merge(cells.iter().map(|c| &*c.latency));
        e.histogram_ms("ringmesh_http_request_duration_milliseconds", "Downstream request duration (first byte of the head to the last byte of the response).", &[("listener", k)], &h, sum_us);
    });
    per_key!(
        st.clusters,
        "cluster",
        "ringmesh_upstream_cx_total",
        counter,
        "Upstream connections opened.",
        |c: &[&ClusterCells]| sum(c, |x| x.cx_total.get())
    );
    per_key!(
        st.clusters,
        "cluster",
        "ringmesh_upstream_cx_active",
        gauge,
        "Upstream connections open (in use or pooled).",
        |c: &[&ClusterCells]| sum_i(c, |x| x.cx_active.get())
    );
    per_key!(
        st.clusters,
        "cluster",
        "ringmesh_upstream_cx_connect_fail_total",
        counter,
        "Upstream connection attempts that failed or timed out.",
        |c: &[&ClusterCells]| sum(c, |x| x.cx_connect_fail.get())
    );
    per_key!(
        st.clusters,
        "cluster",
        "ringmesh_upstream_cx_pool_reuse_total",
        counter,
        "Requests sent on a pooled (reused) upstream connection.",
        |c: &[&ClusterCells]| sum(c, |x| x.cx_pool_reuse.get())
    );
    per_key!(
        st.clusters,
        "cluster",
        "ringmesh_upstream_rq_total",
        counter,
        "Requests sent upstream.",
        |c: &[&ClusterCells]| sum(c, |x| x.rq_total.get())
    );
    per_key!(
        st.clusters,
        "cluster",
        "ringmesh_upstream_rq_timeout_total",
        counter,
        "Requests that hit the route timeout.",
        |c: &[&ClusterCells]| sum(c, |x| x.rq_timeout.get())
    );
    st.clusters.for_each_key(|k, cells| {
        let results = [
            ("success", sum(cells, |x| x.tls_handshake_ok.get())),
            ("failure", sum(cells, |x| x.tls_handshake_fail.get())),
        ];
        // Plaintext clusters have no handshakes to show.
        let tls = snap
            .cluster_by_name
            .get(k)
            .is_some_and(|&i| snap.clusters[i as usize].tls.is_some());
        if !tls && results.iter().all(|(_, n)| *n == 0) {
            return;
        }
        for (result, n) in results {
            e.counter(
                "ringmesh_upstream_tls_handshakes_total",
                "Outbound (ISTIO_MUTUAL) TLS handshakes, by result.",
                &[("cluster", k), ("result", result)],
                n,
            );
        }
        e.counter(
            "ringmesh_upstream_tls_resumed_total",
            "Outbound TLS handshakes that resumed a session.",
            &[("cluster", k)],
            sum(cells, |x| x.tls_resumed.get()),
        );
    });
    st.clusters.for_each_key(|k, cells| {
        for (i, class) in CLASSES.iter().enumerate() {
            e.counter(
                "ringmesh_upstream_rq_completed_total",
                "Upstream responses, by status class.",
                &[("cluster", k), ("code_class", class)],
                sum(cells, |x| x.rq_by_class[i].get()),
            );
        }
    });
    let mut totals = [0u64; LOCAL_REPLY_CODES.len()];
    st.shards.for_each_key(|_, cells| {
        for c in cells {
            for (t, v) in totals.iter_mut().zip(c.local_replies.iter()) {
                *t += v.get();
            }
        }
    });
    for (code, v) in LOCAL_REPLY_CODES.iter().zip(totals) {
        e.counter(
            "ringmesh_http_local_replies_total",
            "Responses generated by the proxy itself, by status code.",
            &[("code", &code.to_string())],
            v,
        );
    }
    crate::telemetry::render(&st.istio, &mut e);
    crate::resilience::render(&mut e);
    e.finish()
}
