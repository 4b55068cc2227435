//! The demo's results as one value: what the live view draws every
//! second and what `--json` prints at the end. Built only from
//! measurements — the load loop's answers, the probes' outcomes and the
//! sidecars' metrics — never from what the configuration says should
//! happen.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{
    load::{self, Expect, LoadStats, Probe, ProbeStats, Route},
    mesh::{self, Plan},
    metrics::{HopCounts, MeshScrape},
    process::Stopped,
};

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        // Recorded in µs; reported in ms with µs precision.
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean().round() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteSummary {
    /// What the route is, e.g. `no end-user header: reviews v1 90 / v2 10`.
    pub description: String,
    pub requests: u64,
    pub ok: u64,
    pub failures: u64,
    /// Successful answers per reviews version.
    pub split: BTreeMap<String, u64>,
    /// Share of successful answers from reviews v2, in percent.
    pub v2_percent: f64,
    /// Answers whose reviews called ratings.
    pub with_ratings: u64,
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct HopSummary {
    pub from: &'static str,
    pub to: &'static str,
    /// Requests the sidecars carried on this hop since they started.
    pub requests: f64,
    pub errors_5xx: f64,
    /// `mutual_tls`, `plaintext` or `unknown`: what is on the wire.
    pub security: String,
    /// Peer identities the destination's sidecar verified, as
    /// `<caller SPIFFE ID> → <destination workload>`.
    pub peer_identities: Vec<String>,
    /// What the mesh's configuration asks for.
    pub expected: &'static str,
    /// How `security` was established.
    pub basis: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeSummary {
    pub name: &'static str,
    pub target: SocketAddr,
    pub host: String,
    pub expect: Expect,
    pub policy: String,
    #[serde(flatten)]
    pub stats: ProbeStats,
    /// Denied as the policy says, every time (`null` before the first try).
    pub enforced: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthzSummary {
    pub peer_authentication: String,
    pub authorization_policy: String,
    /// Every probe was denied as its policy says.
    pub enforced: bool,
    /// 403s reported by the destinations' sidecars (`istio_requests_total`).
    pub denials_reported: f64,
    /// Whether the sidecars report denials at all (RBAC counters or
    /// `istio_requests_total`).
    pub sidecars_report_denials: bool,
    /// Whether the sidecars report identities and denials at all.
    pub sidecars_report_identities: bool,
    pub probes: Vec<ProbeSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PodSummary {
    pub name: &'static str,
    pub app: &'static str,
    pub version: &'static str,
    pub ip: String,
    pub app_address: Option<SocketAddr>,
    /// xDS configurations the sidecar accepted / rejected (NACKed).
    pub xds_accepted: Option<f64>,
    pub xds_rejected: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub error: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// No allowed request failed (and the mesh stayed up).
    pub ok: bool,
    pub duration_s: f64,
    pub target_rps: u32,
    pub requests: u64,
    pub failures: u64,
    /// Successful answers per reviews version, all routes.
    pub split: BTreeMap<String, u64>,
    pub routes: BTreeMap<&'static str, RouteSummary>,
    pub latency_ms: Percentiles,
    pub hops: Vec<HopSummary>,
    pub authorization: AuthzSummary,
    pub errors: Vec<ErrorCount>,
    pub pods: Vec<PodSummary>,
    pub control_plane: SocketAddr,
    /// Why the demo stopped early, if it did.
    pub aborted: Option<String>,
    /// Every child, how it ended (filled once they are stopped).
    pub processes: Vec<Stopped>,
    /// Where the mesh files and logs were; `dir_removed` once deleted.
    pub dir: String,
    pub dir_removed: bool,
}

/// What the summary is built from.
pub struct Inputs<'a> {
    pub plan: &'a Plan,
    pub apps: &'a [(&'static str, SocketAddr)],
    pub control: SocketAddr,
    pub target_rps: u32,
    pub elapsed: Duration,
    pub load: &'a LoadStats,
    pub probes: &'a [Probe],
    pub probe_stats: &'a [ProbeStats],
    pub scrape: &'a MeshScrape,
    pub dir: String,
}

fn route_description(r: Route) -> String {
    let (h, v) = mesh::CANARY_HEADER;
    match r {
        Route::Canary => format!(
            "others: reviews v1 {}% / v2 {}%",
            mesh::CANARY_V1_WEIGHT,
            mesh::CANARY_V2_WEIGHT
        ),
        Route::Jason => format!("{h}: {v} → reviews v2"),
    }
}

pub fn build(i: &Inputs<'_>) -> Summary {
    let mut routes = BTreeMap::new();
    let mut all = load::new_histogram();
    let mut split: BTreeMap<String, u64> = BTreeMap::new();
    for (route, rs) in &i.load.routes {
        let _ = all.add(&rs.latency);
        for (v, n) in &rs.by_version {
            *split.entry(v.clone()).or_default() += n;
        }
        let v2_percent = if rs.ok == 0 {
            0.0
        } else {
            (rs.version("v2") as f64 * 1000.0 / rs.ok as f64).round() / 10.0
        };
        routes.insert(
            route.name(),
            RouteSummary {
                description: route_description(*route),
                requests: rs.sent,
                ok: rs.ok,
                failures: rs.failed,
                split: rs.by_version.clone(),
                v2_percent,
                with_ratings: rs.with_ratings,
                latency_ms: Percentiles::of(&rs.latency),
            },
        );
    }
    let probes: Vec<ProbeSummary> = i
        .probes
        .iter()
        .zip(i.probe_stats)
        .map(|(p, s)| ProbeSummary {
            name: p.name,
            target: p.target,
            host: p.host.clone(),
            expect: p.expect,
            policy: p.policy.clone(),
            stats: s.clone(),
            enforced: s.enforced(p.expect),
        })
        .collect();
    let hops = i
        .scrape
        .hops(i.plan)
        .into_iter()
        .map(|h| hop_summary(h, &probes))
        .collect();
    let failures = i.load.failed();
    Summary {
        ok: failures == 0,
        duration_s: (i.elapsed.as_secs_f64() * 10.0).round() / 10.0,
        target_rps: i.target_rps,
        requests: i.load.sent(),
        failures,
        split,
        routes,
        latency_ms: Percentiles::of(&all),
        hops,
        authorization: AuthzSummary {
            peer_authentication: format!(
                "istio-system/{}: STRICT (mesh-wide); {}/{}: PERMISSIVE for the frontend (the \
                 mesh's entry)",
                mesh::PEER_AUTHN,
                mesh::NAMESPACE,
                mesh::FRONTEND_PEER_AUTHN
            ),
            authorization_policy: format!(
                "{}/{}: only {} may call reviews",
                mesh::NAMESPACE,
                mesh::AUTHZ_POLICY,
                i.plan.frontend().principal()
            ),
            enforced: !probes.is_empty() && probes.iter().all(|p| p.enforced == Some(true)),
            denials_reported: i.scrape.denials(),
            sidecars_report_denials: i.scrape.reports_denials(),
            sidecars_report_identities: i.scrape.reports_identities(),
            probes,
        },
        errors: i
            .load
            .errors
            .iter()
            .map(|(e, n)| ErrorCount {
                error: e.clone(),
                count: *n,
            })
            .collect(),
        pods: i
            .plan
            .pods
            .iter()
            .map(|p| {
                let xds = i.scrape.xds(p);
                PodSummary {
                    name: p.name,
                    app: p.app,
                    version: p.version,
                    ip: p.ip.to_string(),
                    app_address: i.apps.iter().find(|(n, _)| *n == p.name).map(|x| x.1),
                    xds_accepted: xds.map(|x| x.0),
                    xds_rejected: xds.map(|x| x.1),
                }
            })
            .collect(),
        control_plane: i.control,
        aborted: None,
        processes: Vec::new(),
        dir: i.dir.clone(),
        dir_removed: false,
    }
}

fn hop_summary(h: HopCounts, probes: &[ProbeSummary]) -> HopSummary {
    let expected = if h.from == "ingress" {
        "plaintext (the caller is outside the mesh)"
    } else {
        "mutual_tls (PeerAuthentication STRICT)"
    };
    let (security, peer_identities, basis) = if !h.peers.is_empty() {
        let mut policies: Vec<String> = h
            .peers
            .iter()
            .map(|p| match p.security_policy.as_str() {
                "none" => "plaintext".to_owned(),
                other => other.to_owned(),
            })
            .collect();
        policies.sort();
        policies.dedup();
        let mut ids: Vec<String> = h
            .peers
            .iter()
            .filter(|p| p.principal != "unknown")
            .map(|p| format!("{} → {}", p.principal, p.destination_workload))
            .collect();
        ids.sort();
        ids.dedup();
        (
            policies.join("+"),
            ids,
            format!(
                "istio_requests_total{{reporter=\"destination\"}} of the {} sidecars \
                 (source_principal → destination_workload, connection_security_policy)",
                h.to
            ),
        )
    } else if h.from == "ingress" {
        (
            "plaintext".to_owned(),
            Vec::new(),
            "the demo's load generator sends plain HTTP from outside the mesh".to_owned(),
        )
    } else if h.inbound_mtls > 0.0 || h.inbound_plaintext > 0.0 {
        // No identity reported: what the destinations' inbound listeners
        // counted, connection by connection.
        let security = match (h.inbound_mtls > 0.0, h.inbound_plaintext > 0.0) {
            (true, false) => "mutual_tls",
            (false, true) => "plaintext",
            _ => "mutual_tls+plaintext",
        };
        let refused = if h.inbound_plaintext_refused > 0.0 {
            format!(
                ", and refused {} plaintext connection(s)",
                h.inbound_plaintext_refused
            )
        } else {
            String::new()
        };
        (
            security.to_owned(),
            Vec::new(),
            format!(
                "the {} sidecars accepted {} mTLS and {} plaintext connection(s){refused} \
                 (ringmesh_downstream_cx_security_total); peer identities are not in the \
                 metrics yet (istio_requests_total)",
                h.to, h.inbound_mtls, h.inbound_plaintext
            ),
        )
    } else {
        // Nothing reported: what can be measured is whether the
        // destination answers plaintext callers.
        let plaintext_probe = probes
            .iter()
            .find(|p| p.expect == Expect::Refused && p.name.ends_with(&format!("→ {}", h.to)));
        match plaintext_probe {
            Some(p) if p.stats.allowed > 0 => (
                "plaintext".to_owned(),
                Vec::new(),
                format!(
                    "the sidecars report no peer identity (no istio_requests_total) and the {} sidecar \
                     answers plaintext callers ({} of {} plaintext probes got through)",
                    h.to, p.stats.allowed, p.stats.sent
                ),
            ),
            Some(p) if p.stats.refused > 0 => (
                "unknown".to_owned(),
                Vec::new(),
                format!(
                    "the {} sidecar refuses plaintext, but the sidecars report no peer identity \
                     (no istio_requests_total)",
                    h.to
                ),
            ),
            _ => (
                "unknown".to_owned(),
                Vec::new(),
                "not measured yet".to_owned(),
            ),
        }
    };
    HopSummary {
        from: h.from,
        to: h.to,
        requests: h.requests,
        errors_5xx: h.errors_5xx,
        security,
        peer_identities,
        expected,
        basis,
    }
}

/// Per-second rates between two summaries, and the recent split.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    pub total: f64,
    pub routes: BTreeMap<&'static str, f64>,
    pub hops: Vec<f64>,
    /// Per route, successful answers per reviews version over a recent
    /// window ([`Rates::with_split_since`]); empty: the whole run's.
    pub split: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// The window's length, seconds.
    pub split_window_s: f64,
}

impl Rates {
    /// The split per route since `older` (so a live edit of the weights
    /// shows within seconds rather than being averaged over the run).
    pub fn with_split_since(mut self, older: Option<&Summary>, cur: &Summary) -> Rates {
        let Some(older) = older else { return self };
        self.split_window_s = cur.duration_s - older.duration_s;
        self.split = cur
            .routes
            .iter()
            .map(|(name, r)| {
                let before = older.routes.get(name).map(|o| &o.split);
                let recent = r
                    .split
                    .iter()
                    .map(|(v, n)| {
                        let b = before.and_then(|b| b.get(v)).copied().unwrap_or(0);
                        (v.clone(), n.saturating_sub(b))
                    })
                    .collect();
                (*name, recent)
            })
            .collect();
        self
    }

    /// Rates over the interval from `prev` to `cur`; with no `prev`,
    /// averages since the start.
    pub fn between(prev: Option<&Summary>, cur: &Summary) -> Rates {
        let dt = match prev {
            Some(p) => cur.duration_s - p.duration_s,
            None => cur.duration_s,
        };
        if dt <= 0.0 {
            return Rates::default();
        }
        let per = |now: f64, before: f64| ((now - before).max(0.0) / dt * 10.0).round() / 10.0;
        Rates {
            total: per(cur.requests as f64, prev.map_or(0.0, |p| p.requests as f64)),
            routes: cur
                .routes
                .iter()
                .map(|(name, r)| {
                    let before = prev
                        .and_then(|p| p.routes.get(name))
                        .map_or(0.0, |r| r.requests as f64);
                    (*name, per(r.requests as f64, before))
                })
                .collect(),
            hops: cur
                .hops
                .iter()
                .enumerate()
                .map(|(k, h)| {
                    let before = prev.and_then(|p| p.hops.get(k)).map_or(0.0, |h| h.requests);
                    per(h.requests, before)
                })
                .collect(),
            ..Rates::default()
        }
    }
}

#[cfg(test)]
mod tests;
