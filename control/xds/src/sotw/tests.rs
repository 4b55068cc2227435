//! The state-of-the-world ADS state machine, without a network.

use std::time::SystemTime;

use super::*;
use crate::{resource::Snapshot, status::SyncState, Resources};

fn cds() -> TypeUrl {
    TypeUrl::cluster()
}
fn rds() -> TypeUrl {
    TypeUrl::route()
}

fn snap(items: &[(&TypeUrl, &str, &str)]) -> Snapshot {
    let mut r = Resources::new();
    for (t, n, v) in items {
        r.insert(Resource::new(
            *n,
            *v,
            prost_types::Any {
                type_url: t.to_string(),
                value: vec![],
            },
        ));
    }
    Snapshot::new(r)
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

fn req(t: &TypeUrl, names: &[&str], version: &str, nonce: &str) -> SotwRequest {
    SotwRequest {
        type_url: t.clone(),
        version_info: version.into(),
        names: names.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        error: None,
    }
}

fn names(r: &SotwResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn wildcard_gets_the_whole_set_and_ack_is_recorded() {
    let s = snap(&[(&cds(), "a", "1"), (&cds(), "b", "1")]);
    let mut st = SotwStream::default();
    st.on_request(req(&cds(), &[], "", ""), now());
    let r = st.respond(&cds(), &s, now()).unwrap();
    assert_eq!(names(&r), ["a", "b"]);
    assert_eq!(r.version_info, s.type_version(&cds()));
    assert_eq!(st.respond(&cds(), &s, now()), None);
    st.on_request(req(&cds(), &[], &r.version_info, &r.nonce), now());
    let t = &st.status()[&cds()];
    assert_eq!(t.state(), SyncState::Synced);
    assert_eq!(t.acked.as_ref().unwrap().version, r.version_info);

    // A change sends the whole set again.
    let s2 = snap(&[(&cds(), "a", "1"), (&cds(), "b", "2"), (&cds(), "c", "1")]);
    let r2 = st.respond(&cds(), &s2, now()).unwrap();
    assert_eq!(names(&r2), ["a", "b", "c"]);
}

#[test]
fn empty_wildcard_type_is_answered() {
    let mut st = SotwStream::default();
    st.on_request(req(&cds(), &[], "", ""), now());
    let r = st.respond(&cds(), &snap(&[]), now()).unwrap();
    assert!(r.resources.is_empty());
}

#[test]
fn named_types_get_their_names_and_new_names_are_answered() {
    let s = snap(&[(&rds(), "r1", "1"), (&rds(), "r2", "1")]);
    let mut st = SotwStream::default();
    st.on_request(req(&rds(), &["r1"], "", ""), now());
    let r = st.respond(&rds(), &s, now()).unwrap();
    assert_eq!(names(&r), ["r1"]);
    // Asking for one more (that does not exist): answered anyway.
    st.on_request(
        req(&rds(), &["r1", "missing"], &r.version_info, &r.nonce),
        now(),
    );
    let r2 = st.respond(&rds(), &s, now()).expect("answered");
    assert_eq!(names(&r2), ["r1"]);
    // Dropping a name: the smaller set.
    st.on_request(req(&rds(), &["r2"], &r2.version_info, &r2.nonce), now());
    let r3 = st.respond(&rds(), &s, now()).unwrap();
    assert_eq!(names(&r3), ["r2"]);
}

#[test]
fn nack_is_recorded_and_the_same_set_not_resent() {
    let s1 = snap(&[(&cds(), "a", "1")]);
    let mut st = SotwStream::default();
    st.on_request(req(&cds(), &[], "", ""), now());
    let r1 = st.respond(&cds(), &s1, now()).unwrap();
    st.on_request(req(&cds(), &[], &r1.version_info, &r1.nonce), now());

    let s2 = snap(&[(&cds(), "a", "2")]);
    let r2 = st.respond(&cds(), &s2, now()).unwrap();
    let mut n = req(&cds(), &[], &r1.version_info, &r2.nonce);
    n.error = Some(ErrorDetail {
        code: 13,
        message: "bad cluster".into(),
    });
    st.on_request(n, now());
    let t = st.status()[&cds()].clone();
    assert_eq!(t.state(), SyncState::Nacked);
    let nack = t.last_nack.unwrap();
    assert_eq!(nack.version, r2.version_info);
    assert_eq!(nack.error.message, "bad cluster");
    assert_eq!(t.acked.unwrap().version, r1.version_info);
    assert_eq!(st.respond(&cds(), &s2, now()), None);

    let s3 = snap(&[(&cds(), "a", "3")]);
    let r3 = st.respond(&cds(), &s3, now()).unwrap();
    st.on_request(req(&cds(), &[], &r3.version_info, &r3.nonce), now());
    assert_eq!(st.status()[&cds()].state(), SyncState::Synced);
}

#[test]
fn stale_nonces_are_ignored() {
    let mut st = SotwStream::default();
    st.on_request(req(&rds(), &["r1"], "", ""), now());
    let r1 = st
        .respond(&rds(), &snap(&[(&rds(), "r1", "1")]), now())
        .unwrap();
    let r2 = st
        .respond(&rds(), &snap(&[(&rds(), "r1", "2")]), now())
        .unwrap();
    // An answer to r1 arriving after r2 was sent, with other names.
    st.on_request(req(&rds(), &["other"], &r1.version_info, &r1.nonce), now());
    let t = &st.status()[&rds()];
    assert_eq!(t.acked, None);
    assert_eq!(t.subscription.names, ["r1"]);
    st.on_request(req(&rds(), &["r1"], &r2.version_info, &r2.nonce), now());
    assert_eq!(st.status()[&rds()].state(), SyncState::Synced);
}

#[test]
fn leaving_legacy_wildcard() {
    let s = snap(&[(&rds(), "r1", "1"), (&rds(), "r2", "1")]);
    let mut st = SotwStream::default();
    st.on_request(req(&rds(), &[], "", ""), now());
    let r = st.respond(&rds(), &s, now()).unwrap();
    assert_eq!(names(&r), ["r1", "r2"]);
    st.on_request(req(&rds(), &["r2"], &r.version_info, &r.nonce), now());
    let r = st.respond(&rds(), &s, now()).unwrap();
    assert_eq!(names(&r), ["r2"]);
    // Now an empty list means "nothing", not "everything".
    st.on_request(req(&rds(), &[], &r.version_info, &r.nonce), now());
    let r = st.respond(&rds(), &s, now()).unwrap();
    assert!(r.resources.is_empty());
}
