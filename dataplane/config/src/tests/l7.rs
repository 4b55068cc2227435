//! Routes with regex paths, header and query-parameter conditions and
//! weighted clusters; the node metadata of `xds`.

use ringmesh_route::{Destination, Request};

use super::*;

const L7: &str = r#"
listeners:
  - { name: http, address: 127.0.0.1:8080, protocol: http, route_config: main }
route_configs:
  - name: main
    virtual_hosts:
      - name: reviews
        domains: ["*"]
        routes:
          - name: jason
            match:
              prefix: /
              headers:
                - { name: End-User, exact: jason }
            cluster: v2
          - name: numbered
            match: { regex: "/reviews/[0-9]+" }
            cluster: v3
          - name: debug-post
            match:
              prefix: /
              headers:
                - { name: ":method", exact: POST }
                - { name: x-trace, present: false }
              query_parameters:
                - { name: debug, regex: "on|1" }
            cluster: v3
          - name: not-beta
            match:
              prefix: /beta
              headers:
                - { name: x-beta, prefix: "Y", ignore_case: true, invert: true }
            cluster: v1
          - name: any-case
            match: { exact: /Ratings, ignore_case: true }
            cluster: v2
          - name: canary
            match: { prefix: / }
            weighted_clusters:
              - { cluster: v1, weight: 90 }
              - { cluster: v2, weight: 10 }
              - { cluster: v3, weight: 0 }
clusters:
  - { name: v1, endpoints: [{ address: 127.0.0.1:9001 }] }
  - { name: v2, endpoints: [{ address: 127.0.0.1:9002 }] }
  - { name: v3, endpoints: [{ address: 127.0.0.1:9003 }] }
"#;

fn l7_table() -> (Snapshot, Arc<ringmesh_route::RouteTable>) {
    let snap = load_str(L7, None).unwrap_or_else(|e| panic!("{e}"));
    let ListenerKind::Http { routes } = &snap.listeners[0].kind else {
        panic!()
    };
    let routes = Arc::clone(routes);
    (snap, routes)
}

#[test]
fn conditions_and_splits_compile_and_route() {
    let (snap, t) = l7_table();
    let pick = |method: &str, target: &str, headers: &[(&str, &str)]| {
        let headers = headers.to_vec();
        let req = Request::new(b"reviews", b"")
            .with_target(target.as_bytes())
            .with_method(method.as_bytes())
            .with_headers(&headers);
        t.route_request(&req).map(|r| r.name.to_string())
    };
    let name = |s: &str| Some(s.to_string());
    assert_eq!(pick("GET", "/x", &[("end-user", "jason")]), name("jason"));
    assert_eq!(pick("GET", "/reviews/12", &[]), name("numbered"));
    assert_eq!(pick("GET", "/reviews/12/x", &[]), name("canary"));
    assert_eq!(pick("POST", "/x?debug=on", &[]), name("debug-post"));
    assert_eq!(
        pick("POST", "/x?debug=on", &[("x-trace", "1")]),
        name("canary")
    );
    assert_eq!(pick("POST", "/x?debug=off", &[]), name("canary"));
    assert_eq!(pick("GET", "/beta", &[("x-beta", "no")]), name("not-beta"));
    assert_eq!(pick("GET", "/beta", &[("x-beta", "yes")]), name("canary"));
    assert_eq!(pick("GET", "/beta", &[]), name("canary"));
    assert_eq!(pick("GET", "/RATINGS", &[]), name("any-case"));
    assert_eq!(pick("GET", "/ratings?x", &[]), name("any-case"));

    let canary = t.route(b"reviews", b"/other").unwrap();
    assert_eq!(&*canary.name, "canary");
    let Destination::Weighted(split) = &canary.action.destination else {
        panic!("{:?}", canary.action)
    };
    let got: Vec<(&str, u32, u32)> = split
        .clusters()
        .iter()
        .map(|w| (&*w.cluster.name, w.cluster.index, w.weight))
        .collect();
    assert_eq!(got, [("v1", 0, 90), ("v2", 1, 10), ("v3", 2, 0)]);
    // The split shares the clusters' names.
    assert!(Arc::ptr_eq(
        &split.clusters()[1].cluster.name,
        &snap.clusters[1].name
    ));

    // The dump shows the same shapes as the file.
    let v = serde_json::to_value(&snap).unwrap();
    let routes = &v["listeners"][0]["routes"]["virtual_hosts"][0]["routes"];
    assert_eq!(
        routes[3]["match"],
        serde_json::json!({
            "prefix": "/beta",
            "headers": [{ "name": "x-beta", "prefix": "Y", "ignore_case": true, "invert": true }]
        })
    );
    assert_eq!(
        routes[4]["match"],
        serde_json::json!({ "exact": "/Ratings", "ignore_case": true })
    );
    assert_eq!(
        routes[5]["weighted_clusters"][1],
        serde_json::json!({ "cluster": "v2", "cluster_idx": 1, "weight": 10 })
    );
    // And the model round-trips through YAML.
    let yaml = serde_yaml_ng::to_string(&*snap.source).unwrap();
    assert_eq!(parse_yaml(&yaml, None).unwrap(), *snap.source);
}

#[test]
fn route_errors_have_file_line_and_field() {
    let text = r#"route_configs:
  - name: main
    virtual_hosts:
      - name: v
        domains: ["*"]
        routes:
          - match: { regex: "/v[" }
            cluster: a
          - match: { prefix: /, regex: "/x" }
            cluster: a
            weighted_clusters: [{ cluster: a, weight: 1 }]
          - match: { prefix: / }
          - match: { prefix: / }
            weighted_clusters:
              - { cluster: a, weight: 0 }
              - { cluster: b, weight: 0 }
          - match: { prefix: / }
            weighted_clusters:
              - { cluster: nope, weight: 1 }
          - match: { prefix: / }
            weighted_clusters: []
          - match:
              prefix: /
              headers:
                - { name: x-a }
                - { name: x-b, exact: "1", present: true }
                - { name: host, exact: example.com }
                - { name: x-c, present: true, ignore_case: true }
                - { name: x-d, regex: "(", invert: true }
                - { name: x-e, regex: "e", ignore_case: true }
              query_parameters:
                - { name: "", present: true }
                - { name: q, suffix: "" }
            cluster: a
clusters:
  - { name: a }
  - { name: b }
"#;
    let want = [
        r#"proxy.yaml:7:29: route_configs[0].virtual_hosts[0].routes[0].match.regex: invalid regex "/v[": unclosed character class"#,
        r#"proxy.yaml:9:20: route_configs[0].virtual_hosts[0].routes[1].match: only one of prefix, exact and regex may be given (got prefix and regex)"#,
        r#"proxy.yaml:11:32: route_configs[0].virtual_hosts[0].routes[1].weighted_clusters: cluster and weighted_clusters are mutually exclusive"#,
        r#"proxy.yaml:12:13: route_configs[0].virtual_hosts[0].routes[2]: one of cluster or weighted_clusters is required"#,
        r#"proxy.yaml:15:15: route_configs[0].virtual_hosts[0].routes[3].weighted_clusters: the weights must add up to more than 0"#,
        r#"proxy.yaml:19:28: route_configs[0].virtual_hosts[0].routes[4].weighted_clusters[0].cluster: unknown cluster "nope""#,
        r#"proxy.yaml:21:32: route_configs[0].virtual_hosts[0].routes[5].weighted_clusters: must not be empty"#,
        r#"proxy.yaml:25:19: route_configs[0].virtual_hosts[0].routes[6].match.headers[0]: one of exact, prefix, suffix, contains, regex or present is required"#,
        r#"proxy.yaml:26:19: route_configs[0].virtual_hosts[0].routes[6].match.headers[1]: only one of exact, prefix, suffix, contains, regex and present may be given (got exact and present)"#,
        r#"proxy.yaml:27:27: route_configs[0].virtual_hosts[0].routes[6].match.headers[2].name: the Host header is matched as ":authority" (as in Envoy); use that name"#,
        r#"proxy.yaml:28:60: route_configs[0].virtual_hosts[0].routes[6].match.headers[3].ignore_case: applies only to exact, prefix, suffix and contains"#,
        r#"proxy.yaml:29:39: route_configs[0].virtual_hosts[0].routes[6].match.headers[4].regex: invalid regex "(": unclosed group"#,
        r#"proxy.yaml:30:57: route_configs[0].virtual_hosts[0].routes[6].match.headers[5].ignore_case: has no effect on a regex; write (?i) in the pattern instead"#,
        r#"proxy.yaml:32:27: route_configs[0].virtual_hosts[0].routes[6].match.query_parameters[0].name: must not be empty"#,
        r#"proxy.yaml:33:38: route_configs[0].virtual_hosts[0].routes[6].match.query_parameters[1].suffix: must not be empty"#,
    ];
    let got = load_errors(text);
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert_eq!(g, w, "error #{i}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn weights_are_non_negative_32_bit_integers() {
    let route = |weights: &str| {
        format!(
            "route_configs:\n  - name: m\n    virtual_hosts:\n      - name: v\n        domains: [\"*\"]\n        \
             routes:\n          - match: {{ prefix: / }}\n            weighted_clusters: {weights}\n\
             clusters:\n  - {{ name: a }}\n  - {{ name: b }}\n"
        )
    };
    assert_eq!(
        load_errors(&route("[{ cluster: a, weight: -1 }]")),
        ["proxy.yaml:8:55: route_configs[0].virtual_hosts[0].routes[0].weighted_clusters[0].weight: \
          invalid type: integer `-1`, expected u32"]
    );
    assert_eq!(
        load_errors(&route(
            "[{ cluster: a, weight: 4294967295 }, { cluster: b, weight: 1 }]"
        )),
        [
            "proxy.yaml:8:32: route_configs[0].virtual_hosts[0].routes[0].weighted_clusters: \
          the sum of the weights must not exceed 4294967295"
        ]
    );
    load_str(
        &route("[{ cluster: a, weight: 4294967294 }, { cluster: b, weight: 1 }]"),
        None,
    )
    .unwrap();
}

#[test]
fn xds_metadata_takes_strings_and_structured_values() {
    let text = r#"
xds:
  address: 127.0.0.1:15010
  node_id: sidecar~10.0.0.5~reviews-v1.default~default.svc.cluster.local
  metadata:
    NAMESPACE: default
    INTERCEPTION_MODE: REDIRECT
    INSTANCE_IPS: 10.0.0.5,fd00::5
    LABELS: { app: reviews, version: v1 }
    PORT: 9080
"#;
    let snap = load_str(text, None).unwrap();
    let x = snap.source.xds.as_ref().unwrap();
    assert_eq!(
        serde_json::to_value(&x.metadata).unwrap(),
        serde_json::json!({
            "NAMESPACE": "default",
            "INTERCEPTION_MODE": "REDIRECT",
            "INSTANCE_IPS": "10.0.0.5,fd00::5",
            "LABELS": { "app": "reviews", "version": "v1" },
            "PORT": 9080
        })
    );
    assert_eq!(
        compile_errors("xds: { address: 127.0.0.1:1, node_id: n, metadata: { \"\": x } }\n"),
        ["xds.metadata: keys must not be empty"]
    );
}

/// The `routes:` example of `docs/CONFIG.md`, placed in a virtual host.
#[test]
fn config_reference_routes_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CONFIG.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc
        .find("```yaml\nroutes:\n")
        .expect("a `routes:` yaml block in docs/CONFIG.md")
        + "```yaml\n".len();
    let len = doc[start..].find("```").unwrap();
    let routes: String = doc[start..start + len]
        .lines()
        .map(|l| format!("        {l}\n"))
        .collect();
    let text = format!(
        "listeners:\n  - {{ name: http, address: 127.0.0.1:8080, protocol: http, route_config: main }}\n\
         route_configs:\n  - name: main\n    virtual_hosts:\n      - name: reviews\n        domains: [\"*\"]\n\
         {routes}clusters:\n  - {{ name: reviews-v1 }}\n  - {{ name: reviews-v2 }}\n  - {{ name: reviews-v3 }}\n"
    );
    let snap = load_str(&text, Some(&path)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let ListenerKind::Http { routes } = &snap.listeners[0].kind else {
        panic!()
    };
    let lines = [("end-user", "jason")];
    let req = Request::new(b"reviews", b"/x").with_headers(&lines);
    assert_eq!(routes.route_request(&req).map(|r| &*r.name), Some("jason"));
    let req = Request::new(b"reviews", b"")
        .with_target(b"/ratings/7")
        .with_method(b"GET");
    assert_eq!(
        routes.route_request(&req).map(|r| &*r.name),
        Some("ratings-by-id")
    );
    let req = Request::new(b"reviews", b"")
        .with_target(b"/ratings/7?debug")
        .with_method(b"GET");
    assert_eq!(routes.route_request(&req).map(|r| &*r.name), Some("canary"));
}

#[test]
fn path_ignore_case_is_for_prefix_and_exact() {
    let text = "route_configs:\n  - name: m\n    virtual_hosts:\n      - name: v\n        domains: [\"*\"]\n        \
                routes:\n          - match: { regex: /x, ignore_case: true }\n            cluster: a\n\
                clusters:\n  - { name: a }\n";
    assert_eq!(
        load_errors(text),
        ["proxy.yaml:7:46: route_configs[0].virtual_hosts[0].routes[0].match.ignore_case: applies only to \
          prefix and exact paths; write (?i) in the regex instead"]
    );
}
