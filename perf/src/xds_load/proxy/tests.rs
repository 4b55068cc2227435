use super::*;
use crate::xds_load::wire::fixtures::{assignment, eds_cluster, listener, static_cluster};

fn res(name: &str, version: &str, body: Vec<u8>) -> RawResource {
    RawResource {
        name: name.into(),
        version: version.into(),
        body: Some(body),
    }
}

fn resp(kind: Kind, nonce: &str, resources: Vec<RawResource>, removed: &[&str]) -> Response {
    Response {
        kind: Some(kind),
        type_url: crate::xds_load::wire::type_url(kind),
        nonce: nonce.into(),
        resources,
        removed: removed.iter().map(|s| s.to_string()).collect(),
    }
}

/// The names of `syms`, sorted (requests list symbols in interning
/// order, which the server does not care about).
fn names(c: &Catalog, syms: &[Sym]) -> Vec<String> {
    let mut v: Vec<String> = syms.iter().map(|s| c.resolve(*s).to_string()).collect();
    v.sort();
    v
}

fn none(_: Sym) -> bool {
    false
}

fn ack(kind: Kind, nonce: &str) -> Request {
    Request {
        kind,
        nonce: Some(nonce.into()),
        ..Request::default()
    }
}

/// A proxy that holds two EDS clusters, a static one, their endpoints,
/// one listener and its route: complete.
fn synced(c: &Catalog) -> ProxyState {
    let mut p = ProxyState::new(1000);
    p.open_stream();
    let a = p
        .on_response(
            resp(
                Kind::Cluster,
                "1",
                vec![
                    res("outbound|80||a", "a1", eds_cluster("outbound|80||a", "")),
                    res("outbound|80||b", "b1", eds_cluster("outbound|80||b", "")),
                    res("Passthrough", "p1", static_cluster("Passthrough")),
                ],
                &[],
            ),
            c,
            &none,
        )
        .unwrap();
    assert_eq!(a.requests.len(), 2);
    p.on_response(
        resp(
            Kind::Endpoint,
            "2",
            vec![
                res("outbound|80||a", "ea1", assignment("a", &["10.0.0.1"])),
                res("outbound|80||b", "eb1", assignment("b", &["10.0.0.2"])),
            ],
            &[],
        ),
        c,
        &none,
    )
    .unwrap();
    p.on_response(
        resp(
            Kind::Listener,
            "3",
            vec![res("0.0.0.0_80", "l1", listener("0.0.0.0_80", &["80"]))],
            &[],
        ),
        c,
        &none,
    )
    .unwrap();
    p.on_response(
        resp(Kind::Route, "4", vec![res("80", "r1", vec![])], &[]),
        c,
        &none,
    )
    .unwrap();
    assert!(p.is_complete());
    p
}

#[test]
fn a_new_stream_opens_cds_then_lds_wildcard() {
    let mut p = ProxyState::new(10);
    let reqs = p.open_stream();
    let kinds: Vec<Kind> = reqs.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [Kind::Cluster, Kind::Listener]);
    assert!(reqs
        .iter()
        .all(|r| r.subscribe.is_empty() && r.nonce.is_none() && r.initial_versions.is_empty()));
    assert!(!p.is_complete());
}

#[test]
fn clusters_are_followed_to_their_endpoints_before_the_ack() {
    let c = Catalog::new(1000);
    let mut p = ProxyState::new(1000);
    p.open_stream();
    let a = p
        .on_response(
            resp(
                Kind::Cluster,
                "7",
                vec![
                    res("outbound|80||b", "1", eds_cluster("outbound|80||b", "")),
                    res(
                        "outbound|80||a",
                        "1",
                        eds_cluster("outbound|80||a", "eds-a"),
                    ),
                    res("Passthrough", "1", static_cluster("Passthrough")),
                ],
                &[],
            ),
            &c,
            &none,
        )
        .unwrap();
    assert_eq!(a.changed, 3);
    assert!(!a.noop());
    assert_eq!(a.requests.len(), 2);
    let follow = &a.requests[0];
    assert_eq!(follow.kind, Kind::Endpoint);
    assert_eq!(names(&c, &follow.subscribe), ["eds-a", "outbound|80||b"]);
    assert!(follow.unsubscribe.is_empty() && follow.nonce.is_none());
    assert_eq!(a.requests[1], ack(Kind::Cluster, "7"));
    // Endpoints not answered yet, LDS not answered: incomplete.
    assert!(!p.is_complete());
}

#[test]
fn listeners_are_followed_to_their_routes_and_completion_needs_every_type() {
    let c = Catalog::new(1000);
    let p = synced(&c);
    let route = c.lookup("80").unwrap();
    assert!(p.is_subscribed(Kind::Route, route));
    assert_eq!(p.held(Kind::Route).len(), 1);
    assert_eq!(p.held(Kind::Endpoint).len(), 2);
    assert_eq!(p.resource_count(), 7);
}

#[test]
fn a_resent_version_is_redundant_and_changes_no_subscription() {
    let c = Catalog::new(1000);
    let mut p = synced(&c);
    let a = p
        .on_response(
            resp(
                Kind::Cluster,
                "9",
                vec![res(
                    "outbound|80||a",
                    "a1",
                    eds_cluster("outbound|80||a", ""),
                )],
                &["never-held"],
            ),
            &c,
            &none,
        )
        .unwrap();
    assert!(a.noop());
    assert_eq!(a.redundant, 2);
    assert_eq!(a.requests, [ack(Kind::Cluster, "9")]);
}

#[test]
fn a_removed_cluster_unsubscribes_and_drops_its_endpoints() {
    let c = Catalog::new(1000);
    let mut p = synced(&c);
    let a = p
        .on_response(
            resp(Kind::Cluster, "10", vec![], &["outbound|80||b"]),
            &c,
            &none,
        )
        .unwrap();
    assert_eq!(a.changed, 1);
    assert_eq!(a.requests.len(), 2);
    assert_eq!(names(&c, &a.requests[0].unsubscribe), ["outbound|80||b"]);
    assert!(a.requests[0].subscribe.is_empty());
    let b = c.lookup("outbound|80||b").unwrap();
    assert!(!p.held(Kind::Endpoint).contains_key(&b));
    assert!(!p.is_subscribed(Kind::Endpoint, b));
    assert!(p.is_complete());
}

#[test]
fn a_changed_cluster_that_stops_being_eds_is_unsubscribed() {
    let c = Catalog::new(1000);
    let mut p = synced(&c);
    let a = p
        .on_response(
            resp(
                Kind::Cluster,
                "11",
                vec![res(
                    "outbound|80||a",
                    "a2",
                    static_cluster("outbound|80||a"),
                )],
                &[],
            ),
            &c,
            &none,
        )
        .unwrap();
    assert_eq!(names(&c, &a.requests[0].unsubscribe), ["outbound|80||a"]);
}

#[test]
fn a_subscribed_name_declared_absent_still_completes() {
    let c = Catalog::new(1000);
    let mut p = synced(&c);
    // The listener now names a second route the server does not have.
    let a = p
        .on_response(
            resp(
                Kind::Listener,
                "12",
                vec![res(
                    "0.0.0.0_80",
                    "l2",
                    listener("0.0.0.0_80", &["80", "81"]),
                )],
                &[],
            ),
            &c,
            &none,
        )
        .unwrap();
    assert_eq!(names(&c, &a.requests[0].subscribe), ["81"]);
    assert!(!p.is_complete());
    p.on_response(resp(Kind::Route, "13", vec![], &["81"]), &c, &none)
        .unwrap();
    assert!(p.is_complete());
}

#[test]
fn a_reconnect_reports_what_is_held_and_subscribed() {
    let c = Catalog::new(1000);
    let mut p = synced(&c);
    let reqs = p.open_stream();
    let kinds: Vec<Kind> = reqs.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [Kind::Cluster, Kind::Endpoint, Kind::Listener, Kind::Route]
    );
    assert_eq!(reqs[0].initial_versions.len(), 3);
    assert!(reqs[0].subscribe.is_empty());
    assert_eq!(
        names(&c, &reqs[1].subscribe),
        ["outbound|80||a", "outbound|80||b"]
    );
    assert_eq!(reqs[1].initial_versions.len(), 2);
    assert_eq!(names(&c, &reqs[3].subscribe), ["80"]);
    // Nothing answered on the new stream yet, but it holds everything it
    // subscribes to: complete (the server owes a client in sync nothing).
    assert!(p.is_complete());
    // A fresh proxy is not.
    assert!(!ProxyState::new(100).is_complete());
}

#[test]
fn unsolicited_named_resources_are_not_held() {
    let c = Catalog::new(1000);
    let mut p = synced(&c);
    let a = p
        .on_response(
            resp(
                Kind::Endpoint,
                "14",
                vec![res("outbound|80||zzz", "1", assignment("z", &[]))],
                &[],
            ),
            &c,
            &none,
        )
        .unwrap();
    assert_eq!(a.unsolicited, 1);
    assert!(a.noop());
    assert_eq!(p.held(Kind::Endpoint).len(), 2);
}

#[test]
fn watched_assignments_carry_their_addresses() {
    let c = Catalog::new(1000);
    let mut p = synced(&c);
    let a_name = c.lookup("outbound|80||a").unwrap();
    let watched = move |s: Sym| s == a_name;
    let a = p
        .on_response(
            resp(
                Kind::Endpoint,
                "15",
                vec![res(
                    "outbound|80||a",
                    "ea2",
                    assignment("a", &["10.0.0.9", "10.0.0.1"]),
                )],
                &[],
            ),
            &c,
            &watched,
        )
        .unwrap();
    assert_eq!(a.changed, 1);
    assert_eq!(a.watched.len(), 1);
    assert_eq!(a.watched[0].0, a_name);
    let ips: Vec<String> = a.watched[0].1.iter().map(ToString::to_string).collect();
    assert_eq!(ips, ["10.0.0.1", "10.0.0.9"]);
}

#[test]
fn undecodable_bodies_are_reported_and_not_held() {
    let c = Catalog::new(1000);
    let mut p = ProxyState::new(1000);
    p.open_stream();
    let a = p
        .on_response(
            resp(
                Kind::Cluster,
                "1",
                vec![res("bad", "1", vec![0xff, 0xff, 0xff])],
                &[],
            ),
            &c,
            &none,
        )
        .unwrap();
    assert_eq!(a.decode_errors.len(), 1, "{:?}", a.decode_errors);
    assert!(p.held(Kind::Cluster).is_empty());
    // Still ACKed (this tool NACKs nothing).
    assert_eq!(a.requests, [ack(Kind::Cluster, "1")]);
}

#[test]
fn memory_per_proxy_is_bounded() {
    let c = Catalog::new(1000);
    let mut p = ProxyState::new(2);
    p.open_stream();
    let many = (0..3)
        .map(|i| res(&format!("c{i}"), "1", static_cluster("c")))
        .collect();
    let err = p
        .on_response(resp(Kind::Cluster, "1", many, &[]), &c, &none)
        .unwrap_err();
    assert!(err.contains("--max-resources"), "{err}");
    let other = Response {
        kind: None,
        ..resp(Kind::Cluster, "2", vec![], &[])
    };
    assert!(p.on_response(other, &c, &none).is_err());
}

#[test]
fn a_different_body_under_the_same_version_is_caught() {
    let c = Catalog::new(1000);
    let mut p = synced(&c);
    assert_eq!(c.version_reuse(), 0);
    p.on_response(
        resp(
            Kind::Cluster,
            "16",
            vec![res("outbound|80||a", "a1", static_cluster("changed"))],
            &[],
        ),
        &c,
        &none,
    )
    .unwrap();
    assert_eq!(c.version_reuse(), 1);
}

#[test]
fn compare_reports_missing_stale_and_extra_per_type() {
    let c = Catalog::new(1000);
    let truth = synced(&c);
    let mut p = synced(&c);
    assert!(compare(&p, &truth).is_empty());
    p.on_response(
        resp(
            Kind::Endpoint,
            "20",
            vec![res("outbound|80||a", "ea9", assignment("a", &[]))],
            &["outbound|80||b"],
        ),
        &c,
        &none,
    )
    .unwrap();
    p.on_response(
        resp(
            Kind::Listener,
            "21",
            vec![res("extra", "x", listener("extra", &[]))],
            &[],
        ),
        &c,
        &none,
    )
    .unwrap();
    let sym = |s: &str| c.lookup(s).unwrap();
    let mut got = compare(&p, &truth);
    got.sort_by_key(|m| format!("{m:?}"));
    let mut want = vec![
        Mismatch::Stale {
            kind: Kind::Endpoint,
            name: sym("outbound|80||a"),
            held: sym("ea9"),
            truth: sym("ea1"),
        },
        Mismatch::Missing {
            kind: Kind::Endpoint,
            name: sym("outbound|80||b"),
        },
        Mismatch::Extra {
            kind: Kind::Listener,
            name: sym("extra"),
        },
    ];
    want.sort_by_key(|m| format!("{m:?}"));
    assert_eq!(got, want);
}
