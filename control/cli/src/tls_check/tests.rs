//! `tls-check` over a mesh directory written here: every server and
//! client combination, exact table lines, JSON, filters.

use std::path::Path;

use super::*;

/// A Service with one port and the workloads behind it (`name`,
/// `sidecar`), all labelled `app: <service>`.
fn service(ns: &str, name: &str, ports: &[(&str, u16)], workloads: &[(&str, bool)]) -> String {
    let ports: Vec<String> = ports
        .iter()
        .map(|(n, p)| format!("{{name: {n}, port: {p}}}"))
        .collect();
    let mut out = format!(
        "---\napiVersion: registry.ringmesh.io/v1\nkind: Service\n\
         metadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  ports: [{}]\n  selector: {{app: {name}}}\n",
        ports.join(", ")
    );
    for (i, (w, sidecar)) in workloads.iter().enumerate() {
        out.push_str(&format!(
            "---\napiVersion: registry.ringmesh.io/v1\nkind: Workload\n\
             metadata: {{name: {w}, namespace: {ns}, labels: {{app: {name}}}}}\n\
             spec: {{address: 10.0.{}.{}, serviceAccount: {name}, sidecar: {sidecar}}}\n",
            ns.len(),
            name.len() * 10 + i,
        ));
    }
    out
}

fn istio(kind: &str, ns: &str, name: &str, spec: &str) -> String {
    let api = if kind == "PeerAuthentication" {
        "security.istio.io/v1"
    } else {
        "networking.istio.io/v1"
    };
    format!(
        "---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {spec}\n"
    )
}

/// The test mesh: a STRICT mesh with a DISABLE namespace, a port-level
/// override, sidecar-less and mixed services, explicit DestinationRules.
fn mesh() -> String {
    [
        istio(
            "PeerAuthentication",
            "istio-system",
            "default",
            "{mtls: {mode: STRICT}}",
        ),
        istio(
            "PeerAuthentication",
            "old",
            "default",
            "{mtls: {mode: DISABLE}}",
        ),
        istio(
            "PeerAuthentication",
            "default",
            "reviews",
            "{selector: {matchLabels: {app: reviews}}, portLevelMtls: {9443: {mode: PERMISSIVE}}}",
        ),
        istio(
            "DestinationRule",
            "default",
            "reviews",
            "{host: reviews, trafficPolicy: {tls: {mode: DISABLE}}}",
        ),
        istio(
            "DestinationRule",
            "default",
            "details",
            "{host: details, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}",
        ),
        service(
            "default",
            "ratings",
            &[("http", 9080)],
            &[("ratings-0", true)],
        ),
        service(
            "default",
            "legacy",
            &[("http", 8080)],
            &[("legacy-0", false)],
        ),
        service(
            "default",
            "reviews",
            &[("http", 9080), ("tcp", 9443)],
            &[("reviews-v1", true)],
        ),
        service(
            "default",
            "mixed",
            &[("http", 80)],
            &[("mixed-a", true), ("mixed-b", false)],
        ),
        service(
            "default",
            "details",
            &[("http", 9080)],
            &[("details-0", false)],
        ),
        service("old", "web", &[("http", 80)], &[("web-0", true)]),
        service("default", "empty", &[("http", 80)], &[]),
    ]
    .concat()
}

fn load(dir: &Path, yaml: &str) -> MeshState {
    std::fs::write(dir.join("mesh.yaml"), yaml).unwrap();
    let state = ringmesh_registry::load_state(dir, &FileOptions::default(), None);
    assert!(
        state.diagnostics.iter().all(|d| !d.is_error()),
        "{:?}",
        state.diagnostics
    );
    state
}

fn rows(filter: Option<&str>, from: Option<&str>) -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let state = load(dir.path(), &mesh());
    let filter: Option<ServiceFilter> = filter.map(|f| f.parse().unwrap());
    check(&state, &Options::default(), filter.as_ref(), from)
}

#[test]
fn the_table_shows_each_ports_effective_mode_and_conflicts() {
    let text = render::table(&rows(None, None), Style::PLAIN);
    let expected = "\
HOST                                PORT   SERVER       CLIENT                STATUS     AUTHN POLICY                              DESTINATION RULE
details.default.svc.cluster.local   9080   DISABLE      ISTIO_MUTUAL          CONFLICT   no sidecar                                default/details
empty.default.svc.cluster.local     80     STRICT       DISABLE (auto)        OK         istio-system/default (mesh)               -
legacy.default.svc.cluster.local    8080   DISABLE      DISABLE (auto)        OK         no sidecar                                -
mixed.default.svc.cluster.local     80     MIXED        DISABLE (auto)        CONFLICT   istio-system/default (mesh), no sidecar   -
ratings.default.svc.cluster.local   9080   STRICT       ISTIO_MUTUAL (auto)   OK         istio-system/default (mesh)               -
reviews.default.svc.cluster.local   9080   STRICT       DISABLE               CONFLICT   istio-system/default (mesh)               default/reviews
reviews.default.svc.cluster.local   9443   PERMISSIVE   DISABLE               OK         default/reviews (port)                    default/reviews
web.old.svc.cluster.local           80     DISABLE      DISABLE (auto)        OK         old/default (namespace)                   -

CONFLICT details.default.svc.cluster.local:9080: clients send mTLS (ISTIO_MUTUAL) (DestinationRule default/details) but workload details-0 accepts plaintext only (no sidecar)
CONFLICT mixed.default.svc.cluster.local:80: clients send plaintext (auto mTLS: an endpoint has no sidecar) but workload mixed-a requires mTLS (STRICT, istio-system/default (mesh))
CONFLICT reviews.default.svc.cluster.local:9080: clients send plaintext (DestinationRule default/reviews) but workload reviews-v1 requires mTLS (STRICT, istio-system/default (mesh))
";
    assert_eq!(text, expected, "\n{text}");
    // An explicit rule applies to workloads yet to come.
    let dir = tempfile::tempdir().unwrap();
    let state = load(
        dir.path(),
        &(mesh()
            + &istio(
                "DestinationRule",
                "default",
                "empty",
                "{host: empty, trafficPolicy: {tls: {mode: SIMPLE}}}",
            )),
    );
    let filter: ServiceFilter = "empty".parse().unwrap();
    let r = &check(&state, &Options::default(), Some(&filter), None)[0];
    assert_eq!(
        r.conflicts,
        ["clients send TLS without a client certificate (SIMPLE) (DestinationRule default/empty) \
          but a workload of the service (none is ready) requires mTLS (STRICT, \
          istio-system/default (mesh))"]
    );
}

#[test]
fn filters_by_service_and_port() {
    let hosts = |f: &str| -> Vec<String> {
        rows(Some(f), None)
            .iter()
            .map(|r| format!("{}:{}", r.host, r.port))
            .collect()
    };
    assert_eq!(
        hosts("reviews"),
        [
            "reviews.default.svc.cluster.local:9080",
            "reviews.default.svc.cluster.local:9443"
        ]
    );
    assert_eq!(
        hosts("reviews.default:9443"),
        ["reviews.default.svc.cluster.local:9443"]
    );
    assert_eq!(
        hosts("WEB.old.svc.cluster.local"),
        ["web.old.svc.cluster.local:80"]
    );
    // A prefix of a name is not the name.
    assert!(hosts("rev").is_empty());
    assert!(hosts("reviews:1").is_empty());
    for bad in ["", ":80", "reviews:http", "reviews:0", "reviews:70000"] {
        assert!(bad.parse::<ServiceFilter>().is_err(), "{bad}");
    }
}

#[test]
fn the_client_side_follows_the_clients_namespace() {
    // From `old`, default/reviews' DISABLE rule still applies (the
    // service's namespace), but a rule in `old` would win.
    let r = &rows(Some("reviews:9080"), Some("old"))[0];
    assert_eq!(r.client_namespace, "old");
    assert_eq!(r.client_mode(), "DISABLE");
    let dir = tempfile::tempdir().unwrap();
    let state = load(
        dir.path(),
        &(mesh()
            + &istio(
                "DestinationRule",
                "old",
                "reviews-mtls",
                "{host: reviews.default.svc.cluster.local, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}",
            )),
    );
    let filter: ServiceFilter = "reviews:9080".parse().unwrap();
    let r = &check(&state, &Options::default(), Some(&filter), Some("old"))[0];
    assert_eq!(
        (r.client_mode().as_str(), r.status()),
        ("ISTIO_MUTUAL", "OK")
    );
    assert_eq!(
        r.client.as_ref().unwrap().destination_rule.as_deref(),
        Some("old/reviews-mtls")
    );
}

#[test]
fn json_has_every_workloads_decision() {
    let v: serde_json::Value =
        serde_json::from_str(&render::json(&rows(Some("mixed"), None))).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "host": "mixed.default.svc.cluster.local",
            "namespace": "default",
            "port": 80,
            "server": {"mode": "MIXED", "workloads": [
                {"workload": "mixed-a", "target_port": 80, "sidecar": true,
                 "policy_mode": "STRICT", "mode": "STRICT",
                 "policy": {"namespace": "istio-system", "name": "default", "level": "mesh"}},
                {"workload": "mixed-b", "target_port": 80, "sidecar": false,
                 "policy_mode": "STRICT", "mode": "DISABLE",
                 "policy": {"namespace": "istio-system", "name": "default", "level": "mesh"}},
            ]},
            "client": {"namespace": "default", "mode": "DISABLE", "auto": true,
                       "auto_reason": "an endpoint has no sidecar", "destination_rule": null},
            "status": "CONFLICT",
            "conflicts": ["clients send plaintext (auto mTLS: an endpoint has no sidecar) but \
                           workload mixed-a requires mTLS (STRICT, istio-system/default (mesh))"],
        }])
    );
}
