use std::time::{Duration, UNIX_EPOCH};

use prost_types::Timestamp;
use ringmesh_proto::mesh::v1::{
    Acked, ControlPlane, Nack, PublishedVersions, Rejection, Sent, Subscription,
};

use super::*;

const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const T0: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

fn ts(s: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: s,
        nanos: 0,
    })
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((T0 + 100) as u64)
}

fn wildcard() -> Option<Subscription> {
    Some(Subscription {
        wildcard: true,
        names: vec![],
    })
}

fn synced(url: &str, short: &str, version: &str, at: i64) -> TypeStatus {
    TypeStatus {
        type_url: url.into(),
        short_name: short.into(),
        state: SyncState::Synced as i32,
        subscription: wildcard(),
        sent: Some(Sent {
            version: version.into(),
            nonce: "1".into(),
            at: ts(at),
            resources: 2,
            removed: 0,
        }),
        acked: Some(Acked {
            version: version.into(),
            nonce: "1".into(),
            at: ts(at),
        }),
        resources: 2,
        ..Default::default()
    }
}

fn nacked_lds() -> TypeStatus {
    TypeStatus {
        type_url: LDS.into(),
        short_name: "LDS".into(),
        state: SyncState::Nacked as i32,
        subscription: wildcard(),
        sent: Some(Sent {
            version: "7a8b9c0d1e2f3a4b".into(),
            nonce: "2".into(),
            at: ts(T0 + 95),
            resources: 1,
            removed: 0,
        }),
        last_nack: Some(Nack {
            version: "7a8b9c0d1e2f3a4b".into(),
            nonce: "2".into(),
            at: ts(T0 + 95),
            error_code: 3,
            error_message: "Listener \"http\": filter_chains[0]: unsupported filter".into(),
            rejected: [(
                "http".to_string(),
                Rejection {
                    version: "11112222".into(),
                    reason: "Listener \"http\": filter_chains[0]: unsupported filter".into(),
                },
            )]
            .into(),
        }),
        rejected: [("http".to_string(), "11112222".to_string())].into(),
        ..Default::default()
    }
}

fn response() -> ListProxiesResponse {
    let a = ProxyStatus {
        stream_id: 3,
        node_id: "sidecar~10.0.0.7~reviews-v1.default~default.svc.cluster.local".into(),
        node_cluster: "reviews".into(),
        scope: "reviews".into(),
        user_agent_name: "ringmesh".into(),
        user_agent_version: "0.1.0".into(),
        protocol: XdsProtocol::Delta as i32,
        connected_at: ts(T0),
        types: vec![
            nacked_lds(),
            synced(CDS, "CDS", "5f0c1a2b3c4d5e6f", T0 + 88),
            TypeStatus {
                type_url: RDS.into(),
                short_name: "RDS".into(),
                state: SyncState::Stale as i32,
                subscription: Some(Subscription {
                    wildcard: false,
                    names: vec!["local_route".into()],
                }),
                sent: Some(Sent {
                    version: "9999888877776666".into(),
                    nonce: "4".into(),
                    at: ts(T0 + 99),
                    resources: 1,
                    removed: 0,
                }),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let b = ProxyStatus {
        stream_id: 1,
        node_id: "sidecar~10.0.0.5~a.default~default.svc.cluster.local".into(),
        node_cluster: String::new(),
        scope: "default".into(),
        protocol: XdsProtocol::Sotw as i32,
        connected_at: ts(T0 - 4000),
        types: vec![synced(CDS, "CDS", "0123", T0 - 3999)],
        ..Default::default()
    };
    let mut r = ListProxiesResponse {
        proxies: vec![a, b],
        published: [(
            "reviews".to_string(),
            PublishedVersions {
                versions: [
                    (CDS.to_string(), "5f0c1a2b3c4d5e6f".to_string()),
                    (LDS.to_string(), "7a8b9c0d1e2f3a4b".to_string()),
                ]
                .into(),
            },
        )]
        .into(),
        control_plane: Some(ControlPlane {
            id: "cp-0".into(),
            version: "0.1.0".into(),
        }),
    };
    sort(&mut r);
    r
}

#[test]
fn table_lines_are_exact() {
    let out = table(&response(), Style::PLAIN);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "NAME                                                            CLUSTER   CDS                 LDS        EDS        RDS        CONTROL PLANE   VERSION",
            "sidecar~10.0.0.5~a.default~default.svc.cluster.local            -         SYNCED (0123)       NOT SENT   NOT SENT   NOT SENT   cp-0            -",
            "sidecar~10.0.0.7~reviews-v1.default~default.svc.cluster.local   reviews   SYNCED (5f0c1a2b)   NACKED     NOT SENT   STALE      cp-0            0.1.0",
        ]
    );
}

#[test]
fn extra_types_get_a_column() {
    let mut r = response();
    r.proxies[0]
        .types
        .push(synced("type.googleapis.com/x.v1.Thing", "Thing", "v1", T0));
    let out = table(&r, Style::PLAIN);
    let header = out.lines().next().unwrap();
    assert!(
        header.contains("RDS        Thing         CONTROL PLANE"),
        "{header}"
    );
}

#[test]
fn colour_marks_states() {
    let out = table(&response(), Style { color: true });
    assert!(out.contains("\x1b[32mSYNCED (0123)\x1b[0m"), "{out}");
    assert!(out.contains("\x1b[1;31mNACKED\x1b[0m"), "{out}");
    assert!(out.contains("\x1b[33mSTALE\x1b[0m"), "{out}");
    assert!(out.contains("\x1b[1mNAME\x1b[0m"), "{out}");
}

#[test]
fn empty() {
    let r = ListProxiesResponse::default();
    assert_eq!(
        table(&r, Style::PLAIN),
        "No proxy is connected to the control plane.\n"
    );
}

#[test]
fn details_lines_are_exact() {
    let r = response();
    let out = details(&r.proxies[1], &r, now(), Style::PLAIN);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "sidecar~10.0.0.7~reviews-v1.default~default.svc.cluster.local",
            "  cluster reviews, scope reviews, delta xDS, stream 3, ringmesh 0.1.0",
            "  connected 2023-11-14T22:13:20Z (1m40s ago)",
            "  CDS   SYNCED     version 5f0c1a2b3c4d5e6f accepted 12s ago",
            "                   subscribed to all (wildcard); holds 2",
            "  LDS   NACKED     version 7a8b9c0d1e2f3a4b rejected 5s ago; runs no accepted version yet",
            "                   subscribed to all (wildcard); holds 0",
            "                   rejected http (version 11112222): Listener \"http\": filter_chains[0]: unsupported filter",
            "                   error (InvalidArgument): Listener \"http\": filter_chains[0]: unsupported filter",
            "  RDS   STALE      version 9999888877776666 sent 1s ago, not answered yet; runs no accepted version yet",
            "                   subscribed to local_route; holds 0",
        ]
    );
}

#[test]
fn details_show_a_newer_published_set_and_history() {
    let mut r = response();
    let p = &mut r.proxies[1];
    // CDS: accepted an older set than the published one, after a NACK.
    let cds = p.types.iter_mut().find(|t| t.short_name == "CDS").unwrap();
    cds.acked.as_mut().unwrap().version = "0000aaaa".into();
    cds.sent.as_mut().unwrap().version = "0000aaaa".into();
    cds.last_nack = Some(Nack {
        version: "bad1".into(),
        at: ts(T0 + 50),
        error_code: 3,
        error_message: "line one\nline two".into(),
        ..Default::default()
    });
    let out = details(&r.proxies[1], &r, now(), Style::PLAIN);
    assert!(
        out.contains(
            "  CDS   SYNCED     version 0000aaaa accepted 12s ago\n\
             \x20                  subscribed to all (wildcard); holds 2\n\
             \x20                  latest published version 5f0c1a2b3c4d5e6f (not sent yet)\n\
             \x20                  last rejection, version bad1 50s ago (InvalidArgument): line one\n\
             \x20                    line two\n"
        ),
        "{out}"
    );
}

#[test]
fn waiting_proxy_details() {
    let p = ProxyStatus {
        node_id: "n".into(),
        scope: "s".into(),
        waiting_for_first_publish: true,
        connected_at: ts(T0 + 99),
        ..Default::default()
    };
    let r = ListProxiesResponse::default();
    assert_eq!(
        details(&p, &r, now(), Style::PLAIN),
        "n\n  cluster -, scope s, unknown xDS, stream 0, unknown agent\n  connected \
         2023-11-14T22:14:59Z (1s ago)\n  waiting: the control plane has no configuration for \
         this proxy's scope yet\n  (no resource type requested yet)\n"
    );
}

#[test]
fn json_has_stable_fields() {
    let r = response();
    let addr: HostPort = "127.0.0.1:15010".parse().unwrap();
    let v: Value = serde_json::from_str(&json(&r, &addr)).unwrap();
    assert_eq!(v["control_plane"]["address"], "127.0.0.1:15010");
    assert_eq!(v["control_plane"]["id"], "cp-0");
    let p = &v["proxies"][1];
    assert_eq!(p["node_id"], r.proxies[1].node_id.as_str());
    assert_eq!(p["protocol"], "delta");
    assert_eq!(p["connected_at"], "2023-11-14T22:13:20Z");
    assert_eq!(p["types"]["LDS"]["state"], "NACKED");
    assert_eq!(
        p["types"]["LDS"]["last_nack"]["error"]["code"],
        "InvalidArgument"
    );
    assert_eq!(
        p["types"]["LDS"]["last_nack"]["rejected"]["http"]["version"],
        "11112222"
    );
    assert_eq!(p["types"]["LDS"]["rejected"]["http"], "11112222");
    assert_eq!(p["types"]["CDS"]["published_version"], "5f0c1a2b3c4d5e6f");
    assert_eq!(p["types"]["RDS"]["acked"], Value::Null);
    assert_eq!(p["types"]["RDS"]["subscription"]["names"][0], "local_route");
    assert_eq!(v["published"]["reviews"][LDS], "7a8b9c0d1e2f3a4b");
    // YAML is the same document.
    let y: Value = serde_yaml_ng::from_str(&yaml(&r, &addr)).unwrap();
    assert_eq!(y, v);
}

#[test]
fn times() {
    assert_eq!(rfc3339(&ts(0).unwrap()), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(&ts(951_782_400).unwrap()), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(&ts(-1).unwrap()), "1969-12-31T23:59:59Z");
    let at = |s: i64| ago(ts(T0 + 100 - s).as_ref(), now());
    assert_eq!(at(0), "just now");
    assert_eq!(at(-30), "just now");
    assert_eq!(at(59), "59s ago");
    assert_eq!(at(61), "1m01s ago");
    assert_eq!(at(3 * 3600 + 5 * 60), "3h05m ago");
    assert_eq!(at(3 * 86_400), "3d ago");
    assert_eq!(ago(None, now()), "at an unknown time");
    assert_eq!(
        ago(
            Some(&Timestamp {
                seconds: i64::MIN,
                nanos: 0
            }),
            now()
        ),
        "at an unknown time"
    );
}

#[test]
fn versions_are_cut_by_characters() {
    assert_eq!(short("0123456789"), "01234567");
    assert_eq!(short("é1234567890"), "é1234567");
    assert_eq!(short("abc"), "abc");
}
