//! The summary and the view, from known counters.

use std::net::Ipv4Addr;

use super::*;
use crate::{
    load::{Chain, ProbeStats},
    metrics::{Exposition, MeshScrape},
    view::{self, Style},
};

fn chain(v: &str) -> Result<Chain, String> {
    Ok(Chain {
        reviews_version: v.into(),
        ratings: v == "v2",
    })
}

fn probes(plan: &Plan) -> Vec<Probe> {
    vec![
        Probe {
            name: "ratings → reviews",
            target: plan.ratings().outbound(),
            host: "reviews:9080".into(),
            expect: Expect::Forbidden,
            policy: "AuthorizationPolicy".into(),
        },
        Probe {
            name: "outside → reviews",
            target: plan.reviews_v1().inbound(),
            host: "reviews:9080".into(),
            expect: Expect::Refused,
            policy: "STRICT".into(),
        },
    ]
}

/// 90 v1 + 10 v2 on the canary route, 10 jason (v2), one failure; the
/// probes all allowed; the frontend's sidecar has counted traffic.
fn today(elapsed_s: u64) -> Summary {
    let plan = Plan::new(Ipv4Addr::new(127, 0, 0, 100)).unwrap();
    let mut load = LoadStats::empty();
    for i in 0..100 {
        let v = if i % 10 == 0 { "v2" } else { "v1" };
        load.record_for_test(Route::Canary, chain(v), Duration::from_micros(1000 + i));
    }
    for _ in 0..10 {
        load.record_for_test(Route::Jason, chain("v2"), Duration::from_millis(2));
    }
    load.record_for_test(
        Route::Canary,
        Err("502 from frontend-v1: x".into()),
        Duration::ZERO,
    );
    let allowed = ProbeStats {
        sent: 5,
        allowed: 5,
        last: "200 from reviews-v1".into(),
        ..ProbeStats::default()
    };
    let scrape = MeshScrape {
        pods: vec![(
            "frontend-0".into(),
            Ok(Exposition::parse(
                "ringmesh_http_requests_total{listener=\"inbound_127.0.0.100_9080\",code_class=\"2xx\"} 111\n\
                 ringmesh_upstream_rq_completed_total{cluster=\"outbound|9080|v1|reviews.default.svc.cluster.local\",code_class=\"2xx\"} 90\n\
                 ringmesh_xds_updates_total{result=\"accepted\"} 2\n\
                 ringmesh_xds_updates_total{result=\"rejected\"} 0\n",
            )),
        )],
    };
    build(&Inputs {
        plan: &plan,
        apps: &[],
        control: "127.0.0.1:15010".parse().unwrap(),
        target_rps: 50,
        elapsed: Duration::from_secs(elapsed_s),
        load: &load,
        probes: &probes(&plan),
        probe_stats: &[allowed.clone(), allowed],
        scrape: &scrape,
        dir: "/tmp/x".into(),
    })
}

#[test]
fn the_summary_counts_what_was_measured() {
    let s = today(10);
    assert!(!s.ok, "one allowed request failed");
    assert_eq!((s.requests, s.failures), (111, 1));
    let canary = &s.routes["canary"];
    assert_eq!((canary.requests, canary.ok, canary.failures), (101, 100, 1));
    assert_eq!(canary.v2_percent, 10.0);
    assert_eq!(canary.with_ratings, 10);
    assert_eq!(s.routes["jason"].split.get("v1"), None);
    assert_eq!(s.split["v2"], 20);
    assert!(
        s.latency_ms.p50 >= 1.0 && s.latency_ms.p99 <= 2.1,
        "{:?}",
        s.latency_ms
    );
    assert_eq!(s.errors[0].error, "canary: 502 from frontend-v1: x");

    // Security: nothing reported, plaintext accepted → plaintext.
    assert_eq!(s.hops[0].security, "plaintext");
    assert_eq!(s.hops[1].security, "plaintext");
    assert!(
        s.hops[1].basis.contains("5 of 5 plaintext probes"),
        "{}",
        s.hops[1].basis
    );
    // No probe of ratings' sidecar in this set: not measured.
    assert_eq!(s.hops[2].security, "unknown");
    assert!(!s.authorization.enforced);
    assert_eq!(s.authorization.probes[0].enforced, Some(false));
    assert_eq!(s.pods[0].xds_accepted, Some(2.0));
    assert_eq!(s.pods[1].xds_accepted, None);
}

#[test]
fn rates_and_the_recent_split() {
    let a = today(10);
    let mut b = today(20);
    b.requests += 50;
    b.routes.get_mut("canary").unwrap().requests += 50;
    *b.routes
        .get_mut("canary")
        .unwrap()
        .split
        .get_mut("v2")
        .unwrap() += 50;
    let r = Rates::between(Some(&a), &b).with_split_since(Some(&a), &b);
    assert_eq!(r.total, 5.0);
    assert_eq!(r.routes["canary"], 5.0);
    assert_eq!(r.split["canary"]["v2"], 50);
    assert_eq!(r.split["canary"]["v1"], 0);
    assert_eq!(r.split_window_s, 10.0);
    let whole = Rates::between(None, &a);
    assert_eq!(whole.total, 11.1);
    assert!(whole.split.is_empty());
}

#[test]
fn the_view_is_honest_and_plain_without_colour() {
    let s = today(10);
    let plan = Plan::new(Ipv4Addr::new(127, 0, 0, 100)).unwrap();
    let text = view::render(&s, &Rates::between(None, &s), &plan, Style::PLAIN, true);
    assert!(!text.contains('\x1b'), "{text}");
    for needle in [
        "others: reviews v1 90% / v2 10%",
        "   90.0%   10.0%",
        "frontend → reviews",
        "plaintext",
        "not in the metrics yet (istio_requests_total); expected mutual_tls (PeerAuthentication STRICT)",
        "NOT ENFORCED YET (AuthorizationPolicy enforcement: authorization issue)",
        "NOT ENFORCED YET (STRICT mTLS is not applied to this sidecar)",
        "the sidecars report no denials",
        "1 × canary: 502 from frontend-v1: x",
        "curl -s -H 'end-user: jason' http://127.0.0.100:9080/",
        "curl -si -H 'Host: reviews:9080' http://127.0.0.103:15001/",
        "today it gets 200: not enforced yet",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    let coloured = view::render(&s, &Rates::default(), &plan, Style { color: true }, false);
    assert!(coloured.contains("\x1b[1m"));
    assert!(
        !coloured.contains("TRY"),
        "the final view has no curl commands"
    );
    let line = view::status_line(&s, &Rates::between(None, &s));
    assert!(line.contains("canary v1 90.0% v2 10.0%"), "{line}");
    assert!(line.contains("failed 1"), "{line}");
}
