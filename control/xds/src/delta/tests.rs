//! The Delta ADS state machine, request by request, without a network.

use std::{collections::BTreeMap, time::SystemTime};

use super::*;
use crate::{resource::Snapshot, status::SyncState, Resources};

fn lds() -> TypeUrl {
    TypeUrl::listener()
}
fn eds() -> TypeUrl {
    TypeUrl::endpoint()
}

fn res(t: &TypeUrl, name: &str, version: &str) -> Resource {
    Resource::new(
        name,
        version,
        prost_types::Any {
            type_url: t.to_string(),
            value: format!("{name}@{version}").into_bytes(),
        },
    )
}

fn snap(items: &[(&TypeUrl, &str, &str)]) -> Snapshot {
    let mut r = Resources::new();
    for (t, n, v) in items {
        r.insert(res(t, n, v));
    }
    Snapshot::new(r)
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

fn subscribe(t: &TypeUrl, names: &[&str]) -> DeltaRequest {
    DeltaRequest {
        type_url: t.clone(),
        subscribe: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn ack(t: &TypeUrl, nonce: &str) -> DeltaRequest {
    DeltaRequest {
        type_url: t.clone(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn nack(t: &TypeUrl, nonce: &str, message: &str) -> DeltaRequest {
    DeltaRequest {
        error: Some(ErrorDetail {
            code: 3,
            message: message.into(),
        }),
        ..ack(t, nonce)
    }
}

/// (name, version) of the resources carried.
fn carried(r: &DeltaResponse) -> Vec<(String, String)> {
    r.resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn wildcard_first_request_gets_everything_then_ack_is_recorded() {
    let s = snap(&[(&lds(), "a", "1"), (&lds(), "b", "1"), (&eds(), "x", "1")]);
    let mut d = DeltaStream::default();
    d.on_request(subscribe(&lds(), &[]), now());
    let r = d.respond(&lds(), &s, now()).expect("initial response");
    assert_eq!(carried(&r), pairs(&[("a", "1"), ("b", "1")]));
    assert!(r.removed.is_empty());
    assert_eq!(r.system_version, s.type_version(&lds()));
    // Nothing more until something changes.
    assert_eq!(d.respond(&lds(), &s, now()), None);
    // EDS was never asked for.
    assert_eq!(d.respond(&eds(), &s, now()), None);

    let st = &d.status()[&lds()];
    assert_eq!(st.state(), SyncState::Pending);
    assert!(st.subscription.wildcard);
    d.on_request(ack(&lds(), &r.nonce), now());
    let st = &d.status()[&lds()];
    assert_eq!(st.state(), SyncState::Synced);
    assert_eq!(st.acked.as_ref().unwrap().version, r.system_version);
    assert_eq!(st.resources, 2);
}

#[test]
fn explicit_star_is_a_wildcard_too() {
    let s = snap(&[(&lds(), "a", "1")]);
    let mut d = DeltaStream::default();
    d.on_request(subscribe(&lds(), &["*"]), now());
    let r = d.respond(&lds(), &s, now()).unwrap();
    assert_eq!(carried(&r), pairs(&[("a", "1")]));
}

#[test]
fn wildcard_on_an_empty_type_still_gets_an_answer() {
    // Envoy waits for the first LDS/CDS answer before it finishes
    // initialising: an empty set must be said.
    let s = snap(&[]);
    let mut d = DeltaStream::default();
    d.on_request(subscribe(&lds(), &[]), now());
    let r = d.respond(&lds(), &s, now()).expect("empty initial answer");
    assert!(r.resources.is_empty() && r.removed.is_empty());
    assert_eq!(d.respond(&lds(), &s, now()), None);
}

#[test]
fn named_subscription_gets_only_its_names_and_absent_names_once_as_removed() {
    let s = snap(&[(&eds(), "x", "1"), (&eds(), "y", "1")]);
    let mut d = DeltaStream::default();
    d.on_request(subscribe(&eds(), &["x", "nope"]), now());
    let r = d.respond(&eds(), &s, now()).unwrap();
    assert_eq!(carried(&r), pairs(&[("x", "1")]));
    assert_eq!(r.removed, vec!["nope".to_string()]);
    assert_eq!(d.respond(&eds(), &s, now()), None);

    // A new name later: only it.
    d.on_request(subscribe(&eds(), &["y"]), now());
    let r = d.respond(&eds(), &s, now()).unwrap();
    assert_eq!(carried(&r), pairs(&[("y", "1")]));
    assert!(r.removed.is_empty());

    // The absent one appears: sent without being asked again.
    let s2 = snap(&[
        (&eds(), "x", "1"),
        (&eds(), "y", "1"),
        (&eds(), "nope", "1"),
    ]);
    let r = d.respond(&eds(), &s2, now()).unwrap();
    assert_eq!(carried(&r), pairs(&[("nope", "1")]));
}

#[test]
fn changes_send_only_changed_resources_and_removals() {
    let s1 = snap(&[(&lds(), "a", "1"), (&lds(), "b", "1"), (&lds(), "c", "1")]);
    let mut d = DeltaStream::default();
    d.on_request(subscribe(&lds(), &[]), now());
    let r1 = d.respond(&lds(), &s1, now()).unwrap();
    d.on_request(ack(&lds(), &r1.nonce), now());

    let s2 = snap(&[(&lds(), "a", "1"), (&lds(), "b", "2"), (&lds(), "d", "1")]);
    let r2 = d.respond(&lds(), &s2, now()).unwrap();
    assert_eq!(carried(&r2), pairs(&[("b", "2"), ("d", "1")]));
    assert_eq!(r2.removed, vec!["c".to_string()]);
    assert_ne!(r2.nonce, r1.nonce);
    assert_eq!(d.respond(&lds(), &s2, now()), None);
}

#[test]
fn nack_keeps_the_rejected_version_from_being_offered_again() {
    let s1 = snap(&[(&lds(), "a", "1"), (&lds(), "b", "1")]);
    let mut d = DeltaStream::default();
    d.on_request(subscribe(&lds(), &[]), now());
    let r1 = d.respond(&lds(), &s1, now()).unwrap();
    d.on_request(ack(&lds(), &r1.nonce), now());

    let s2 = snap(&[(&lds(), "a", "2-bad"), (&lds(), "b", "1")]);
    let r2 = d.respond(&lds(), &s2, now()).unwrap();
    assert_eq!(carried(&r2), pairs(&[("a", "2-bad")]));
    d.on_request(
        nack(
            &lds(),
            &r2.nonce,
            "Error adding/updating listener(s) a: bad",
        ),
        now(),
    );

    let st = d.status()[&lds()].clone();
    assert_eq!(st.state(), SyncState::Nacked);
    let n = st.last_nack.unwrap();
    assert_eq!(n.nonce, r2.nonce);
    assert!(n.error.message.contains("listener(s) a"));
    assert_eq!(n.rejected, BTreeMap::from([("a".into(), "2-bad".into())]));
    assert_eq!(st.acked.unwrap().nonce, r1.nonce, "the last ACK stays");

    // Not resent: neither on the same snapshot nor when another
    // resource of the type changes.
    assert_eq!(d.respond(&lds(), &s2, now()), None);
    let s3 = snap(&[(&lds(), "a", "2-bad"), (&lds(), "b", "2")]);
    let r3 = d.respond(&lds(), &s3, now()).unwrap();
    assert_eq!(carried(&r3), pairs(&[("b", "2")]));
    d.on_request(ack(&lds(), &r3.nonce), now());
    assert_eq!(
        d.status()[&lds()].state(),
        SyncState::Nacked,
        "a is still rejected"
    );

    // A newer version is offered, and its ACK clears the rejection.
    let s4 = snap(&[(&lds(), "a", "3"), (&lds(), "b", "2")]);
    let r4 = d.respond(&lds(), &s4, now()).unwrap();
    assert_eq!(carried(&r4), pairs(&[("a", "3")]));
    d.on_request(ack(&lds(), &r4.nonce), now());
    let st = &d.status()[&lds()];
    assert_eq!(st.state(), SyncState::Synced);
    assert!(st.last_nack.is_some(), "history is kept");
}

#[test]
fn reconnect_with_initial_versions_sends_only_what_differs() {
    let s = snap(&[(&lds(), "a", "1"), (&lds(), "b", "2"), (&lds(), "new", "1")]);
    let mut d = DeltaStream::default();
    d.on_request(
        DeltaRequest {
            initial_versions: BTreeMap::from([
                ("a".into(), "1".into()),
                ("b".into(), "1".into()),
                ("gone".into(), "1".into()),
            ]),
            ..subscribe(&lds(), &[])
        },
        now(),
    );
    let r = d.respond(&lds(), &s, now()).unwrap();
    assert_eq!(carried(&r), pairs(&[("b", "2"), ("new", "1")]));
    assert_eq!(r.removed, vec!["gone".to_string()]);
}

#[test]
fn reconnect_that_holds_everything_gets_nothing() {
    let s = snap(&[(&lds(), "a", "1"), (&eds(), "x", "7")]);
    let mut d = DeltaStream::default();
    d.on_request(
        DeltaRequest {
            initial_versions: BTreeMap::from([("a".into(), "1".into())]),
            ..subscribe(&lds(), &[])
        },
        now(),
    );
    d.on_request(
        DeltaRequest {
            initial_versions: BTreeMap::from([("x".into(), "7".into())]),
            ..subscribe(&eds(), &["x"])
        },
        now(),
    );
    assert_eq!(d.respond(&lds(), &s, now()), None);
    assert_eq!(d.respond(&eds(), &s, now()), None);
    // In sync without a response.
    for t in [lds(), eds()] {
        let st = &d.status()[&t];
        assert_eq!(st.state(), SyncState::Synced);
        assert_eq!(st.sent, None);
        assert_eq!(st.acked.as_ref().unwrap().version, s.type_version(&t));
    }
}

#[test]
fn unsubscribe_forgets_so_resubscribe_resends() {
    let s = snap(&[(&eds(), "x", "1"), (&eds(), "y", "1")]);
    let mut d = DeltaStream::default();
    d.on_request(subscribe(&eds(), &["x", "y"]), now());
    d.respond(&eds(), &s, now()).unwrap();
    d.on_request(
        DeltaRequest {
            unsubscribe: vec!["x".into()],
            ..subscribe(&eds(), &[])
        },
        now(),
    );
    // Unsubscribing is not answered with a removal.
    assert_eq!(d.respond(&eds(), &s, now()), None);
    assert_eq!(d.status()[&eds()].subscription.names, vec!["y".to_string()]);
    d.on_request(subscribe(&eds(), &["x"]), now());
    let r = d.respond(&eds(), &s, now()).unwrap();
    assert_eq!(carried(&r), pairs(&[("x", "1")]));
}

#[test]
fn answers_to_unknown_nonces_change_nothing() {
    let s = snap(&[(&lds(), "a", "1")]);
    let mut d = DeltaStream::default();
    d.on_request(subscribe(&lds(), &[]), now());
    let r = d.respond(&lds(), &s, now()).unwrap();
    d.on_request(nack(&lds(), "999", "late"), now());
    let st = &d.status()[&lds()];
    assert_eq!(st.last_nack, None);
    assert_eq!(st.state(), SyncState::Pending);
    d.on_request(ack(&lds(), &r.nonce), now());
    assert_eq!(d.status()[&lds()].state(), SyncState::Synced);
}

#[test]
fn skipped_responses_are_settled_by_a_later_ack() {
    let mut d = DeltaStream::default();
    d.on_request(subscribe(&lds(), &[]), now());
    let r1 = d
        .respond(&lds(), &snap(&[(&lds(), "a", "1")]), now())
        .unwrap();
    let r2 = d
        .respond(&lds(), &snap(&[(&lds(), "a", "2")]), now())
        .unwrap();
    d.on_request(ack(&lds(), &r2.nonce), now());
    assert_eq!(d.status()[&lds()].state(), SyncState::Synced);
    // The older nonce is gone: a late answer to it is ignored.
    d.on_request(nack(&lds(), &r1.nonce, "late"), now());
    assert_eq!(d.status()[&lds()].last_nack, None);
}

/// What a client holds after applying `r` to `held`.
fn apply(held: &mut BTreeMap<String, String>, r: &DeltaResponse) {
    for name in &r.removed {
        held.remove(name);
    }
    for res in &r.resources {
        held.insert(res.name.clone(), res.version.clone());
    }
}

#[test]
fn published_changes_alone_take_the_ordered_pass_and_agree_with_a_fresh_stream() {
    // A wildcard type and a named one, through a series of publishes
    // with no subscription change in between (the path that compares the
    // published maps instead of a per-name record): after every step the
    // client holds what a fresh stream would be sent.
    let (l, e) = (lds(), eds());
    let steps: Vec<Vec<(&TypeUrl, &str, &str)>> = vec![
        vec![
            (&l, "a", "1"),
            (&l, "b", "1"),
            (&e, "x", "1"),
            (&e, "y", "1"),
        ],
        // Version change of one, the rest the same.
        vec![
            (&l, "a", "2"),
            (&l, "b", "1"),
            (&e, "x", "2"),
            (&e, "y", "1"),
        ],
        // Removals: wildcard drops `b`; explicit `y` is gone.
        vec![(&l, "a", "2"), (&e, "x", "2")],
        // Additions: wildcard gets `c`; `y` is back; `z` is not subscribed.
        vec![
            (&l, "a", "2"),
            (&l, "c", "1"),
            (&e, "x", "2"),
            (&e, "y", "3"),
            (&e, "z", "1"),
        ],
        // Nothing of ours changed.
        vec![
            (&l, "a", "2"),
            (&l, "c", "1"),
            (&e, "x", "2"),
            (&e, "y", "3"),
            (&e, "z", "2"),
        ],
    ];
    let mut d = DeltaStream::default();
    d.on_request(subscribe(&lds(), &[]), now());
    d.on_request(subscribe(&eds(), &["x", "y"]), now());
    let mut held_lds = BTreeMap::new();
    let mut held_eds = BTreeMap::new();
    for (i, items) in steps.iter().enumerate() {
        let s = snap(items);
        for (t, held) in [(lds(), &mut held_lds), (eds(), &mut held_eds)] {
            if let Some(r) = d.respond(&t, &s, now()) {
                apply(held, &r);
                d.on_request(ack(&t, &r.nonce), now());
                if i == 4 {
                    panic!("step 4 changed nothing of ours, yet sent {r:?}");
                }
            }
            // A fresh stream of the same subscription.
            let mut fresh = DeltaStream::default();
            let names: &[&str] = if t == lds() { &[] } else { &["x", "y"] };
            fresh.on_request(subscribe(&t, names), now());
            let mut want = BTreeMap::new();
            if let Some(r) = fresh.respond(&t, &s, now()) {
                apply(&mut want, &r);
            }
            assert_eq!(*held, want, "step {i}, {t}");
            assert_eq!(d.status()[&t].resources, want.len(), "step {i}, {t}");
        }
    }
    // The removal of an explicit name is said once, then not again.
    let s = snap(&[(&eds(), "x", "2")]);
    let r = d.respond(&eds(), &s, now()).unwrap();
    assert_eq!(r.removed, vec!["y".to_string()]);
    let s2 = snap(&[(&eds(), "x", "2"), (&lds(), "q", "1")]);
    assert_eq!(d.respond(&eds(), &s2, now()), None);
    // Unsubscribing drops silently; subscribing again sends it again.
    d.on_request(
        DeltaRequest {
            type_url: eds(),
            unsubscribe: vec!["x".into()],
            ..Default::default()
        },
        now(),
    );
    let r = d.respond(&eds(), &s2, now());
    assert!(r.is_none(), "{r:?}");
    d.on_request(subscribe(&eds(), &["x"]), now());
    let r = d.respond(&eds(), &s2, now()).unwrap();
    assert_eq!(carried(&r), pairs(&[("x", "2")]));
}

#[test]
fn a_big_answer_goes_out_in_parts_that_add_up() {
    let big = |name: &str, version: &str| {
        Resource::new(
            name,
            version,
            prost_types::Any {
                type_url: lds().to_string(),
                value: vec![b'x'; 10_000],
            },
        )
    };
    let mut r = Resources::new();
    for i in 0..10 {
        r.insert(big(&format!("l{i}"), "1"));
    }
    let s = Snapshot::new(r.clone());
    let mut d = DeltaStream::default();
    d.on_request(subscribe(&lds(), &[]), now());
    let mut held = BTreeMap::new();
    let mut parts = 0;
    while let Some(resp) = d.respond(&lds(), &s, now()) {
        parts += 1;
        assert!(
            resp.resources.len() <= 4,
            "part {parts} carries {}",
            resp.resources.len()
        );
        apply(&mut held, &resp);
        assert!(parts < 10, "never ends");
    }
    assert!(parts >= 3, "{parts} parts");
    assert_eq!(held.len(), 10);
    // A change of one resource afterwards is one small response.
    r.insert(big("l3", "2"));
    let s2 = Snapshot::new(r);
    let resp = d.respond(&lds(), &s2, now()).unwrap();
    assert_eq!(carried(&resp), pairs(&[("l3", "2")]));
    assert_eq!(d.respond(&lds(), &s2, now()), None);
}
