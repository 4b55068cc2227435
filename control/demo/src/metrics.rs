//! What the sidecars report: each pod's `/stats/prometheus`, read once a
//! second, boiled down to per-hop traffic, per-hop security and
//! authorization denials.
//!
//! The series read (one place, so the proxy and the demo stay in step):
//!
//! | series | labels used | gives |
//! | --- | --- | --- |
//! | `ringmesh_http_requests_total` | `listener` = `inbound_<ip>_9080`, `code_class` | requests into a pod (the ingress hop) |
//! | `ringmesh_upstream_rq_completed_total` | `cluster` = `outbound\|9080\|<subset>\|<host>`, `code_class` | requests a pod's sidecar sent to a service (the mesh hops) |
//! | `ringmesh_xds_updates_total` | `result` (`accepted`, `rejected`) | configurations taken from / NACKed to the control plane |
//! | `ringmesh_downstream_cx_security_total` | `listener` = `inbound_<ip>_9080`, `security` (`mtls`, `plaintext`) | connections a destination's sidecar accepted, by transport security |
//! | `ringmesh_downstream_cx_plaintext_refused_total` | `listener` | plaintext connections a STRICT listener refused |
//! | `ringmesh_rbac_denied_total` | (any) | requests a sidecar's RBAC filters (AuthorizationPolicy) refused with 403 |
//! | `istio_requests_total` | `reporter="destination"`, `source_workload`, `source_app`, `source_principal`, `destination_workload`, `connection_security_policy`, `response_code` | the peer identity (verified SPIFFE ID → the workload it called) and mTLS of each request, and denials (403) — Istio's standard metric |
//!
//! A hop's identity and security come from the destinations'
//! `istio_requests_total{reporter="destination"}`; only from sidecars that
//! do not export it (older builds) does the demo fall back to what the
//! destination's inbound listener counted: mTLS and plaintext connections.

use std::{net::SocketAddr, time::Duration};

use serde::Serialize;

use crate::{
    http::Client,
    mesh::{Plan, Pod, SERVICE_PORT},
};

pub const INBOUND_REQUESTS: &str = "ringmesh_http_requests_total";
pub const UPSTREAM_REQUESTS: &str = "ringmesh_upstream_rq_completed_total";
pub const XDS_UPDATES: &str = "ringmesh_xds_updates_total";
pub const ISTIO_REQUESTS: &str = "istio_requests_total";
pub const RBAC_DENIED: &str = "ringmesh_rbac_denied_total";
pub const CX_SECURITY: &str = "ringmesh_downstream_cx_security_total";
pub const CX_PLAINTEXT_REFUSED: &str = "ringmesh_downstream_cx_plaintext_refused_total";

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed Prometheus text exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Lenient: lines that are not `name{labels} value` are skipped.
    pub fn parse(text: &str) -> Exposition {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(parse_line)
            .collect();
        Exposition { samples }
    }

    /// Sum of the samples called `name` that `keep` accepts.
    pub fn sum(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && keep(s))
            .fold(0.0, |acc, s| acc + s.value)
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse::<f64>().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()? {
                    (_, 'n') => value.push('\n'),
                    (_, c) => value.push(c),
                },
                (i, '"') => break i + 1,
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim().trim_start_matches(',').trim().to_owned(), value));
        rest = after[end..].trim_start_matches(',').trim();
    }
    Some(out)
}

/// `GET /stats/prometheus` on a sidecar's admin address.
pub fn scrape(admin: SocketAddr) -> Result<Exposition, String> {
    let mut c = Client::new(admin, Duration::from_secs(2));
    let r = c
        .get("admin", "/stats/prometheus", &[("connection", "close")])
        .map_err(|e| format!("{admin}/stats/prometheus: {e}"))?;
    if r.status != 200 {
        return Err(format!("{admin}/stats/prometheus answered {}", r.status));
    }
    Ok(Exposition::parse(&r.text()))
}

/// A hop of the sample application's call graph.
#[derive(Debug, Clone)]
pub struct Hop {
    /// `ingress`, `frontend`, `reviews`.
    pub from: &'static str,
    /// The service called.
    pub to: &'static str,
}

/// The hops, in call order.
pub const HOPS: [Hop; 3] = [
    Hop {
        from: "ingress",
        to: "frontend",
    },
    Hop {
        from: "frontend",
        to: "reviews",
    },
    Hop {
        from: "reviews",
        to: "ratings",
    },
];

/// A hop as the sidecars report it, cumulative since they started.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HopCounts {
    pub from: &'static str,
    pub to: &'static str,
    pub requests: f64,
    pub errors_5xx: f64,
    /// (connection_security_policy, source_principal) → requests, from
    /// the destination's `istio_requests_total`; empty while the sidecar
    /// does not report it.
    pub peers: Vec<PeerCount>,
    /// Connections the destination sidecars' inbound listeners accepted,
    /// by transport security (`ringmesh_downstream_cx_security_total`),
    /// and plaintext connections they refused (STRICT). Per destination,
    /// from any caller.
    pub inbound_mtls: f64,
    pub inbound_plaintext: f64,
    pub inbound_plaintext_refused: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PeerCount {
    pub security_policy: String,
    /// The caller's verified SPIFFE ID (`unknown` for plaintext callers).
    pub principal: String,
    /// The workload it reached (`destination_workload`).
    pub destination_workload: String,
    pub requests: f64,
}

/// One scrape of every sidecar.
#[derive(Debug, Clone, Default)]
pub struct MeshScrape {
    /// Per pod, in plan order: the exposition or why it could not be read.
    pub pods: Vec<(String, Result<Exposition, String>)>,
}

impl MeshScrape {
    pub fn take(plan: &Plan) -> MeshScrape {
        MeshScrape {
            pods: plan
                .pods
                .iter()
                .map(|p| (p.name.to_owned(), scrape(p.admin())))
                .collect(),
        }
    }

    fn of<'a>(&'a self, pod: &Pod) -> Option<&'a Exposition> {
        self.pods
            .iter()
            .find(|(n, _)| n == pod.name)
            .and_then(|(_, r)| r.as_ref().ok())
    }

    /// Whether any sidecar reports Istio's standard request metric (with
    /// peer identities).
    pub fn reports_identities(&self) -> bool {
        self.pods
            .iter()
            .any(|(_, r)| r.as_ref().is_ok_and(|e| e.has(ISTIO_REQUESTS)))
    }

    /// Requests the sidecars refused by policy: the destinations' 403s in
    /// `istio_requests_total` once the sidecars export it, their RBAC
    /// denials (`ringmesh_rbac_denied_total`) until then. The sample apps
    /// never answer 403 themselves.
    pub fn denials(&self) -> f64 {
        let pods = || self.pods.iter().filter_map(|(_, r)| r.as_ref().ok());
        if self.reports_identities() {
            pods()
                .map(|e| {
                    e.sum(ISTIO_REQUESTS, |s| {
                        s.label("reporter") == Some("destination")
                            && s.label("response_code") == Some("403")
                    })
                })
                .fold(0.0, |acc, n| acc + n)
        } else {
            pods()
                .map(|e| e.sum(RBAC_DENIED, |_| true))
                .fold(0.0, |acc, n| acc + n)
        }
    }

    /// Whether any sidecar reports authorization denials at all.
    pub fn reports_denials(&self) -> bool {
        self.reports_identities()
            || self
                .pods
                .iter()
                .any(|(_, r)| r.as_ref().is_ok_and(|e| e.has(RBAC_DENIED)))
    }

    /// xDS configurations (accepted, rejected) per pod.
    pub fn xds(&self, pod: &Pod) -> Option<(f64, f64)> {
        let e = self.of(pod)?;
        let by = |r: &str| e.sum(XDS_UPDATES, |s| s.label("result") == Some(r));
        Some((by("accepted"), by("rejected")))
    }

    pub fn hops(&self, plan: &Plan) -> Vec<HopCounts> {
        HOPS.iter().map(|h| self.hop(plan, h)).collect()
    }

    fn hop(&self, plan: &Plan, hop: &Hop) -> HopCounts {
        let dests: Vec<&Pod> = plan.pods.iter().filter(|p| p.app == hop.to).collect();
        let (mut requests, mut errors_5xx) = (0.0, 0.0);
        if hop.from == "ingress" {
            // Into the destination pods, from anyone: their inbound listeners.
            for p in &dests {
                let Some(e) = self.of(p) else { continue };
                let listener = format!("inbound_{}_{SERVICE_PORT}", p.ip);
                requests += e.sum(INBOUND_REQUESTS, |s| s.label("listener") == Some(&listener));
                errors_5xx += e.sum(INBOUND_REQUESTS, |s| {
                    s.label("listener") == Some(&listener) && s.label("code_class") == Some("5xx")
                });
            }
        } else {
            // What the callers' sidecars sent to the service (any subset).
            let suffix = format!("|{}.{}.svc.cluster.local", hop.to, crate::mesh::NAMESPACE);
            let prefix = format!("outbound|{SERVICE_PORT}|");
            let to_service = |s: &Sample| {
                s.label("cluster")
                    .is_some_and(|c| c.starts_with(&prefix) && c.ends_with(&suffix))
            };
            for p in plan.pods.iter().filter(|p| p.app == hop.from) {
                let Some(e) = self.of(p) else { continue };
                requests += e.sum(UPSTREAM_REQUESTS, to_service);
                errors_5xx += e.sum(UPSTREAM_REQUESTS, |s| {
                    to_service(s) && s.label("code_class") == Some("5xx")
                });
            }
        }
        // Transport security as the destinations' inbound listeners saw it.
        let (mut inbound_mtls, mut inbound_plaintext, mut inbound_plaintext_refused) =
            (0.0, 0.0, 0.0);
        for p in &dests {
            let Some(e) = self.of(p) else { continue };
            let listener = format!("inbound_{}_{SERVICE_PORT}", p.ip);
            let on = |s: &Sample| s.label("listener") == Some(&listener);
            inbound_mtls += e.sum(CX_SECURITY, |s| {
                on(s) && s.label("security") == Some("mtls")
            });
            inbound_plaintext += e.sum(CX_SECURITY, |s| {
                on(s) && s.label("security") == Some("plaintext")
            });
            inbound_plaintext_refused += e.sum(CX_PLAINTEXT_REFUSED, on);
        }
        // Identities as the destinations saw them.
        let mut peers: Vec<PeerCount> = Vec::new();
        for p in &dests {
            let Some(e) = self.of(p) else { continue };
            for s in e.samples.iter().filter(|s| {
                s.name == ISTIO_REQUESTS
                    && s.label("reporter") == Some("destination")
                    && from_matches(s, hop.from)
            }) {
                let policy = s.label("connection_security_policy").unwrap_or("unknown");
                let principal = s.label("source_principal").unwrap_or("unknown");
                let workload = s.label("destination_workload").unwrap_or("unknown");
                match peers.iter_mut().find(|c| {
                    c.security_policy == policy
                        && c.principal == principal
                        && c.destination_workload == workload
                }) {
                    Some(c) => c.requests += s.value,
                    None => peers.push(PeerCount {
                        security_policy: policy.to_owned(),
                        principal: principal.to_owned(),
                        destination_workload: workload.to_owned(),
                        requests: s.value,
                    }),
                }
            }
        }
        HopCounts {
            from: hop.from,
            to: hop.to,
            requests,
            errors_5xx,
            peers,
            inbound_mtls,
            inbound_plaintext,
            inbound_plaintext_refused,
        }
    }
}

/// Whether an `istio_requests_total` sample came from `from` (an app
/// name; `ingress` is anything outside the mesh).
fn from_matches(s: &Sample, from: &str) -> bool {
    let workload = s.label("source_workload").unwrap_or("unknown");
    let app = s.label("source_app").unwrap_or("unknown");
    let principal = s.label("source_principal").unwrap_or("unknown");
    if from == "ingress" {
        return workload == "unknown" && principal == "unknown";
    }
    app == from
        || workload.starts_with(&format!("{from}-"))
        || workload == from
        || principal.ends_with(&format!("/sa/{from}"))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const FRONTEND: &str = r#"# HELP ringmesh_http_requests_total HTTP requests completed, by status class.
# TYPE ringmesh_http_requests_total counter
ringmesh_http_requests_total{listener="inbound_127.0.0.100_9080",code_class="2xx"} 120
ringmesh_http_requests_total{listener="inbound_127.0.0.100_9080",code_class="5xx"} 3
ringmesh_http_requests_total{listener="virtualOutbound",code_class="2xx"} 117
ringmesh_upstream_rq_completed_total{cluster="outbound|9080|v1|reviews.default.svc.cluster.local",code_class="2xx"} 100
ringmesh_upstream_rq_completed_total{cluster="outbound|9080|v2|reviews.default.svc.cluster.local",code_class="2xx"} 17
ringmesh_upstream_rq_completed_total{cluster="outbound|9080|v2|reviews.default.svc.cluster.local",code_class="5xx"} 1
ringmesh_upstream_rq_completed_total{cluster="inbound|9080||",code_class="2xx"} 120
ringmesh_xds_updates_total{result="accepted"} 4
ringmesh_xds_updates_total{result="rejected"} 1
"#;

    const REVIEWS_V2: &str = r#"
ringmesh_upstream_rq_completed_total{cluster="outbound|9080||ratings.default.svc.cluster.local",code_class="2xx"} 17
ringmesh_downstream_cx_security_total{listener="inbound_127.0.0.102_9080",security="mtls"} 3
ringmesh_downstream_cx_security_total{listener="inbound_127.0.0.102_9080",security="plaintext"} 0
ringmesh_downstream_cx_plaintext_refused_total{listener="inbound_127.0.0.102_9080"} 7
ringmesh_rbac_denied_total{listener="inbound_127.0.0.102_9080"} 4
istio_requests_total{reporter="destination",source_workload="frontend-0",source_principal="spiffe://cluster.local/ns/default/sa/frontend",destination_workload="reviews-v2-0",connection_security_policy="mutual_tls",response_code="200"} 17
istio_requests_total{reporter="destination",source_workload="ratings-0",source_principal="spiffe://cluster.local/ns/default/sa/ratings",connection_security_policy="mutual_tls",response_code="403"} 5
istio_requests_total{reporter="source",source_workload="reviews-v2-0",response_code="200"} 17
"#;

    #[test]
    fn exposition_parsing() {
        let e =
            Exposition::parse("a 1\nb{x=\"1\",y=\"q\\\"z\"} 2.5\n# c 3\nbroken{x=\"1\" 4\nd{} 5\n");
        assert_eq!(e.samples.len(), 3, "{e:?}");
        assert_eq!(e.samples[1].label("y"), Some("q\"z"));
        assert_eq!(e.sum("b", |s| s.label("x") == Some("1")), 2.5);
        assert_eq!(e.sum("d", |_| true), 5.0);
    }

    fn scrape_of(texts: &[(&str, &str)]) -> MeshScrape {
        MeshScrape {
            pods: texts
                .iter()
                .map(|(n, t)| (n.to_string(), Ok(Exposition::parse(t))))
                .collect(),
        }
    }

    #[test]
    fn hops_today_count_traffic_and_report_no_identity() {
        let plan = Plan::new(Ipv4Addr::new(127, 0, 0, 100)).unwrap();
        let m = scrape_of(&[("frontend-0", FRONTEND)]);
        let hops = m.hops(&plan);
        assert_eq!((hops[0].requests, hops[0].errors_5xx), (123.0, 3.0));
        assert_eq!((hops[1].requests, hops[1].errors_5xx), (118.0, 1.0));
        assert_eq!(hops[2].requests, 0.0);
        assert!(hops.iter().all(|h| h.peers.is_empty()));
        assert!(!m.reports_identities());
        assert_eq!(m.denials(), 0.0);
        assert!(!m.reports_denials());
        assert_eq!(m.xds(plan.frontend()), Some((4.0, 1.0)));
        assert_eq!(m.xds(plan.ratings()), None);
    }

    #[test]
    fn identities_and_denials_are_picked_up_once_reported() {
        let plan = Plan::new(Ipv4Addr::new(127, 0, 0, 100)).unwrap();
        let m = scrape_of(&[("frontend-0", FRONTEND), ("reviews-v2-0", REVIEWS_V2)]);
        assert!(m.reports_identities());
        assert_eq!(m.denials(), 5.0);
        let hops = m.hops(&plan);
        assert_eq!(
            hops[1].peers,
            vec![PeerCount {
                security_policy: "mutual_tls".into(),
                principal: "spiffe://cluster.local/ns/default/sa/frontend".into(),
                destination_workload: "reviews-v2-0".into(),
                requests: 17.0
            }]
        );
        assert_eq!(hops[2].requests, 17.0);
        assert_eq!(
            (
                hops[1].inbound_mtls,
                hops[1].inbound_plaintext,
                hops[1].inbound_plaintext_refused
            ),
            (3.0, 0.0, 7.0)
        );
    }
}
