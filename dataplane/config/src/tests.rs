use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use super::*;
use crate::compile::{parse_listen_addr, parse_upstream_addr};

mod l7;
mod tls;

/// The example from the `model` module documentation, verbatim.
const DOC_EXAMPLE: &str = r#"
admin: { address: 127.0.0.1:15000 }
listeners:
  - name: http
    address: 127.0.0.1:8080
    protocol: http          # http | tcp
    route_config: main      # http only
  - name: db
    address: 127.0.0.1:5433
    protocol: tcp
    cluster: db             # tcp only
route_configs:
  - name: main
    virtual_hosts:
      - name: web
        domains: ["example.com", "*.example.com", "*"]
        routes:
          - match: { prefix: "/" }       # or { exact: "/healthz" }
            cluster: web
            timeout: 15s                 # optional; "0s" disables
clusters:
  - name: web
    connect_timeout: 1s
    lb_policy: round_robin
    endpoints:
      - address: 127.0.0.1:9000
        weight: 1
  - name: db
    endpoints:
      - address: 127.0.0.1:5432
limits:                      # all optional, defaults shown
  max_request_headers_kb: 60
  max_request_headers_count: 100
  max_uri_length: 16384
  request_headers_timeout: 10s
  idle_timeout: 60s
  drain_timeout: 5s
  max_connections_per_shard: 16384
"#;

/// The one cluster of a route (panics on a weighted split).
fn single(r: &ringmesh_route::Route) -> &ringmesh_route::ClusterRef {
    match &r.action.destination {
        ringmesh_route::Destination::Cluster(c) => c,
        other => panic!("not a single cluster: {other:?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `load_str` labelled `proxy.yaml`, errors as displayed to an operator.
fn load_errors(text: &str) -> Vec<String> {
    match load_str(text, Some(Path::new("proxy.yaml"))) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// `compile` errors (no file, no lines) as `field: reason`.
fn compile_errors(text: &str) -> Vec<String> {
    let cfg = parse_yaml(text, None).unwrap();
    compile(&cfg, 0)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

// ---- happy paths -----------------------------------------------------------

#[test]
fn documented_example_compiles() {
    let snap = load_str(DOC_EXAMPLE, None).unwrap();
    assert_eq!(snap.version, fnv1a64(DOC_EXAMPLE.as_bytes()));
    assert_eq!(snap.admin, Some(addr("127.0.0.1:15000")));
    assert_eq!(snap.limits, ProxyLimits::default());
    assert_eq!(snap.source.listeners.len(), 2);
    assert_eq!(*snap.source, parse_yaml(DOC_EXAMPLE, None).unwrap());

    assert_eq!(snap.clusters.len(), 2);
    let web = &snap.clusters[0];
    assert_eq!(&*web.name, "web");
    assert_eq!(web.id, fnv1a64(b"web"));
    assert_eq!(web.connect_timeout, Duration::from_secs(1));
    assert_eq!(web.lb_policy, LbPolicy::RoundRobin);
    assert_eq!(
        &*web.endpoints,
        &[Endpoint {
            address: addr("127.0.0.1:9000"),
            weight: 1
        }]
    );
    assert_eq!(snap.cluster_by_name.get("web"), Some(&0));
    assert_eq!(snap.cluster_by_name.get("db"), Some(&1));

    assert_eq!(snap.listeners.len(), 2);
    let http = &snap.listeners[0];
    assert_eq!(
        (&*http.name, http.address),
        ("http", addr("127.0.0.1:8080"))
    );
    let ListenerKind::Http { routes } = &http.kind else {
        panic!("{:?}", http.kind)
    };
    assert_eq!(&*routes.name, "main");
    let r = routes.route(b"API.example.com:8080", b"/anything").unwrap();
    assert_eq!((&*single(r).name, single(r).index), ("web", 0));
    assert_eq!(r.action.timeout, Some(Duration::from_secs(15)));
    assert_eq!(&*r.name, "");
    // The route shares the cluster's name rather than copying it.
    assert!(Arc::ptr_eq(&single(r).name, &web.name));

    let db = &snap.listeners[1];
    let ListenerKind::Tcp {
        cluster,
        cluster_idx,
    } = &db.kind
    else {
        panic!("{:?}", db.kind)
    };
    assert_eq!((&**cluster, *cluster_idx), ("db", 1));
}

#[test]
fn defaults_and_disabled_timeout() {
    let snap = load_str(
        r#"
listeners:
  - { name: l, address: "[::1]:0", protocol: http, route_config: rc }
  - { name: l2, address: "127.0.0.1:0", protocol: http, route_config: rc }
route_configs:
  - name: rc
    virtual_hosts:
      - name: v
        domains: ["*"]
        routes:
          - { name: off, match: { exact: /stream }, cluster: c, timeout: 0s }
          - { name: long, match: { prefix: /slow }, cluster: c, timeout: 1.5m }
          - { name: dflt, match: { prefix: / }, cluster: c }
clusters:
  - { name: c, connect_timeout: 250ms }
limits: { drain_timeout: 0s, max_request_headers_kb: 8 }
"#,
        None,
    )
    .unwrap();
    let ListenerKind::Http { routes } = &snap.listeners[0].kind else {
        panic!()
    };
    let t = |p: &[u8]| routes.route(b"h", p).unwrap().action.timeout;
    assert_eq!(t(b"/stream"), None);
    assert_eq!(t(b"/slow/x"), Some(Duration::from_secs(90)));
    assert_eq!(t(b"/x"), Some(Duration::from_secs(15)));
    // Both listeners share one compiled table.
    let ListenerKind::Http { routes: other } = &snap.listeners[1].kind else {
        panic!()
    };
    assert!(Arc::ptr_eq(routes, other));
    // An empty cluster is valid: it answers 503 at run time.
    assert!(snap.clusters[0].endpoints.is_empty());
    assert_eq!(snap.clusters[0].connect_timeout, Duration::from_millis(250));
    assert_eq!(snap.admin, None);
    assert_eq!(snap.limits.drain_timeout, Duration::ZERO);
    assert_eq!(snap.limits.http1.max_head_bytes, 8 * 1024);
    assert_eq!(snap.limits.http1.max_headers, 100);
}

#[test]
fn version_is_a_hash_of_the_bytes() {
    let a = load_str(DOC_EXAMPLE, None).unwrap().version;
    let b = load_str(&format!("{DOC_EXAMPLE}\n# comment\n"), None)
        .unwrap()
        .version;
    assert_ne!(a, b);
    assert_eq!(a, load_str(DOC_EXAMPLE, None).unwrap().version);
    // FNV-1a 64 reference values.
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn snapshot_serializes_like_the_file() {
    let snap = load_str(DOC_EXAMPLE, None).unwrap();
    let v = serde_json::to_value(&snap).unwrap();
    assert_eq!(v["version"], format!("{:016x}", snap.version));
    assert_eq!(v["admin"], "127.0.0.1:15000");
    assert_eq!(v["listeners"][0]["protocol"], "http");
    assert_eq!(v["listeners"][0]["address"], "127.0.0.1:8080");
    assert_eq!(
        v["listeners"][0]["routes"]["virtual_hosts"][0]["routes"][0]["timeout"],
        "15s"
    );
    assert_eq!(
        v["listeners"][0]["routes"]["virtual_hosts"][0]["routes"][0]["match"]["prefix"],
        "/"
    );
    assert_eq!(v["listeners"][1]["protocol"], "tcp");
    assert_eq!(v["listeners"][1]["cluster"], "db");
    assert_eq!(v["listeners"][1]["cluster_idx"], 1);
    assert_eq!(v["clusters"][0]["connect_timeout"], "1s");
    assert_eq!(v["clusters"][0]["lb_policy"], "round_robin");
    assert_eq!(
        v["clusters"][0]["endpoints"][0]["address"],
        "127.0.0.1:9000"
    );
    assert_eq!(
        v["limits"],
        serde_json::json!({
            "max_request_headers_kb": 60, "max_request_headers_count": 100, "max_uri_length": 16384,
            "request_headers_timeout": "10s", "idle_timeout": "1m", "drain_timeout": "5s",
            "max_connections_per_shard": 16384, "tls_handshake_timeout": "10s"
        })
    );
    assert!(v.get("source").is_none());
    // The model round-trips through YAML.
    let yaml = serde_yaml_ng::to_string(&*snap.source).unwrap();
    assert_eq!(parse_yaml(&yaml, None).unwrap(), *snap.source);
}

// ---- parse errors ------------------------------------------------------------

#[test]
fn unknown_fields_name_the_field_the_expected_ones_and_the_line() {
    let text = "\
listeners:
  - name: a
    address: 127.0.0.1:1
    protocol: http
    route_cofig: main
";
    assert_eq!(
        load_errors(text),
        ["proxy.yaml:5:5: listeners[0].route_cofig: unknown field `route_cofig`, expected one of `name`, \
          `address`, `protocol`, `route_config`, `cluster`, `original_dst`, `tls`, `rbac`, \
          `path_normalization`"]
    );
    assert_eq!(
        load_errors("admin: { address: 127.0.0.1:1 }\nlistener: []\n"),
        ["proxy.yaml:2:1: listener: unknown field `listener`, expected one of `admin`, `listeners`, \
          `route_configs`, `clusters`, `limits`, `xds`, `identity`, `workload`, `access_log`"]
    );
    let text = "\
route_configs:
  - name: main
    virtual_hosts:
      - name: v
        domains: [\"*\"]
        routes:
          - match: { prefix: /, regx: x }
            cluster: c
";
    assert_eq!(
        load_errors(text),
        ["proxy.yaml:7:33: route_configs[0].virtual_hosts[0].routes[0].match.regx: unknown field `regx`, \
          expected one of `prefix`, `exact`, `regex`, `ignore_case`, `headers`, `query_parameters`"]
    );
    assert_eq!(
        load_errors("limits:\n  idle: 1s\n"),
        ["proxy.yaml:2:3: limits.idle: unknown field `idle`, expected one of `max_request_headers_kb`, \
          `max_request_headers_count`, `max_uri_length`, `request_headers_timeout`, `idle_timeout`, \
          `drain_timeout`, `max_connections_per_shard`, `max_request_body_bytes`, `tls_handshake_timeout`"]
    );
}

#[test]
fn type_and_syntax_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "listeners:\n  - { name: a, address: 127.0.0.1:1, protocol: udp }\n",
            "proxy.yaml:2:48: listeners[0].protocol: unknown variant `udp`, expected `http` or `tcp`",
        ),
        ("listeners:\n  - name: a\n", "proxy.yaml:2:5: listeners[0]: missing field `address`"),
        (
            "clusters:\n  - name: c\n    endpoints:\n      - { address: 127.0.0.1:1, weight: -1 }\n",
            "proxy.yaml:4:41: clusters[0].endpoints[0].weight: invalid type: integer `-1`, expected u32",
        ),
        (
            "clusters:\n  - { name: c, connect_timeout: 5 }\n",
            "proxy.yaml:2:33: clusters[0].connect_timeout: invalid duration 5: missing unit \
             (expected e.g. 250ms, 15s, 1m, 1h)",
        ),
        (
            "limits: { idle_timeout: -3 }\n",
            "proxy.yaml:1:25: limits.idle_timeout: invalid duration -3: must not be negative",
        ),
        (
            "limits: { idle_timeout: true }\n",
            "proxy.yaml:1:25: limits.idle_timeout: invalid type: boolean `true`, expected a duration string \
             such as 250ms, 15s, 1m or 1h",
        ),
        (
            "listeners: [\n",
            "proxy.yaml:2:1: listeners: did not find expected node content, while parsing a flow node",
        ),
        ("- a\n", "proxy.yaml:1:1: invalid type: sequence, expected struct ProxyConfig"),
        ("limits: ~\n", "proxy.yaml:1:9: limits: invalid type: unit value, expected struct LimitsSpec"),
        (
            "clusters: []\nclusters: []\n",
            "proxy.yaml:1:1: duplicate field `clusters`",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(load_errors(text), [*want], "{text}");
    }
}

#[test]
fn empty_configuration_is_rejected() {
    for text in ["", "\n# nothing\n", "{}", "listeners: []\n"] {
        assert_eq!(
            load_errors(text),
            ["proxy.yaml: the configuration is empty (expected admin, listeners, route_configs, clusters or limits)"]
        );
    }
}

// ---- compile errors ------------------------------------------------------------

#[test]
fn every_rejection_is_reported_with_file_line_and_field() {
    let text = r#"admin: { address: "localhost:15000" }
listeners:
  - name: web
    address: 127.0.0.1:8080
    protocol: http
  - name: web
    address: 127.0.0.1:8080
    protocol: http
    route_config: missing
    cluster: c
  - name: ""
    address: "127.0.0.1"
    protocol: tcp
    route_config: main
  - name: t
    address: 10.0.0.1:99999
    protocol: tcp
    cluster: nope
  - name: t2
    address: 10.0.0.1:9
    protocol: tcp
route_configs:
  - name: main
    virtual_hosts:
      - name: v
        domains: ["example.com", "*.*.com"]
        routes:
          - match: {}
            cluster: c
          - match: { prefix: /a, exact: /a }
            cluster: c
          - match: { prefix: api }
            cluster: x
            timeout: "1.5"
          - match: { exact: /e }
            cluster: c
            timeout: soon
      - name: v
        domains: ["EXAMPLE.com"]
        routes: []
  - name: main
    virtual_hosts: []
  - name: ""
    virtual_hosts: []
clusters:
  - name: c
    connect_timeout: 0s
    endpoints:
      - address: 127.0.0.1:9000
      - address: 127.0.0.1:9000
        weight: 0
      - address: "svc.local:80"
      - address: 0.0.0.0:80
      - address: 127.0.0.1:0
  - name: c
    connect_timeout: -1s
  - name: ""
  - name: big
    endpoints:
      - { address: 127.0.0.2:1, weight: 4294967295 }
      - { address: 127.0.0.3:1, weight: 1 }
limits:
  max_request_headers_kb: 0
  max_request_headers_count: 10001
  max_uri_length: 8
  max_connections_per_shard: 0
  request_headers_timeout: 0s
  idle_timeout: 1x
  drain_timeout: 1h30m
"#;
    let want = [
        r#"proxy.yaml:1:19: admin.address: "localhost:15000" is a host name; use IP:PORT (host names are not resolved), e.g. 127.0.0.1:15000"#,
        r#"proxy.yaml:3:5: listeners[0].route_config: required for an http listener"#,
        r#"proxy.yaml:6:11: listeners[1].name: duplicate listener name "web" (first at listeners[0])"#,
        r#"proxy.yaml:7:14: listeners[1].address: 127.0.0.1:8080 is already used by listeners[0]"#,
        r#"proxy.yaml:10:14: listeners[1].cluster: not allowed on an http listener (it routes with route_config)"#,
        r#"proxy.yaml:9:19: listeners[1].route_config: unknown route config "missing""#,
        r#"proxy.yaml:11:11: listeners[2].name: must not be empty"#,
        r#"proxy.yaml:12:14: listeners[2].address: "127.0.0.1" has no port (expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)"#,
        r#"proxy.yaml:14:19: listeners[2].route_config: not allowed on a tcp listener (it forwards to cluster)"#,
        r#"proxy.yaml:11:5: listeners[2].cluster: required for a tcp listener"#,
        r#"proxy.yaml:16:14: listeners[3].address: "10.0.0.1:99999" has an invalid port "99999" (expected 0-65535)"#,
        r#"proxy.yaml:18:14: listeners[3].cluster: unknown cluster "nope""#,
        r#"proxy.yaml:19:5: listeners[4].cluster: required for a tcp listener"#,
        r#"proxy.yaml:26:34: route_configs[0].virtual_hosts[0].domains[1]: at most one wildcard '*' is allowed"#,
        r#"proxy.yaml:28:20: route_configs[0].virtual_hosts[0].routes[0].match: one of prefix, exact or regex is required"#,
        r#"proxy.yaml:30:20: route_configs[0].virtual_hosts[0].routes[1].match: only one of prefix, exact and regex may be given (got prefix and exact)"#,
        r#"proxy.yaml:32:30: route_configs[0].virtual_hosts[0].routes[2].match.prefix: "api" must start with "/""#,
        r#"proxy.yaml:33:22: route_configs[0].virtual_hosts[0].routes[2].cluster: unknown cluster "x""#,
        r#"proxy.yaml:34:22: route_configs[0].virtual_hosts[0].routes[2].timeout: invalid duration "1.5": missing unit (expected e.g. 250ms, 15s, 1m, 1h)"#,
        r#"proxy.yaml:37:22: route_configs[0].virtual_hosts[0].routes[3].timeout: invalid duration "soon" (expected a number and a unit: 250ms, 15s, 1m, 1h, 1.5s)"#,
        r#"proxy.yaml:38:15: route_configs[0].virtual_hosts[1].name: duplicate virtual host name "v" (first at virtual_hosts[0])"#,
        r#"proxy.yaml:39:19: route_configs[0].virtual_hosts[1].domains[0]: duplicate domain "EXAMPLE.com" (first at virtual_hosts[0].domains[0])"#,
        r#"proxy.yaml:41:11: route_configs[1].name: duplicate route config name "main" (first at route_configs[0])"#,
        r#"proxy.yaml:43:11: route_configs[2].name: must not be empty"#,
        r#"proxy.yaml:47:22: clusters[0].connect_timeout: must be greater than 0s"#,
        r#"proxy.yaml:50:18: clusters[0].endpoints[1].address: duplicate endpoint 127.0.0.1:9000 (first at clusters[0].endpoints[0])"#,
        r#"proxy.yaml:51:17: clusters[0].endpoints[1].weight: must be at least 1"#,
        r#"proxy.yaml:52:18: clusters[0].endpoints[2].address: "svc.local:80" is a host name; use IP:PORT (host names are not resolved), e.g. 127.0.0.1:80"#,
        r#"proxy.yaml:53:18: clusters[0].endpoints[3].address: "0.0.0.0:80": 0.0.0.0 cannot be connected to; use the endpoint's own address"#,
        r#"proxy.yaml:54:18: clusters[0].endpoints[4].address: "127.0.0.1:0": port 0 cannot be connected to"#,
        r#"proxy.yaml:55:11: clusters[1].name: duplicate cluster name "c" (first at clusters[0])"#,
        r#"proxy.yaml:56:22: clusters[1].connect_timeout: invalid duration "-1s": must not be negative"#,
        r#"proxy.yaml:57:11: clusters[2].name: must not be empty"#,
        r#"proxy.yaml:60:7: clusters[3].endpoints: the sum of the weights must not exceed 4294967295"#,
        r#"proxy.yaml:63:27: limits.max_request_headers_kb: must be between 1 and 8192, got 0"#,
        r#"proxy.yaml:64:30: limits.max_request_headers_count: must be between 1 and 10000, got 10001"#,
        r#"proxy.yaml:65:19: limits.max_uri_length: must be between 16 and 1048576, got 8"#,
        r#"proxy.yaml:66:30: limits.max_connections_per_shard: must be between 1 and 1000000, got 0"#,
        r#"proxy.yaml:67:28: limits.request_headers_timeout: must be greater than 0s"#,
        r#"proxy.yaml:68:17: limits.idle_timeout: invalid duration "1x" (expected a number and a unit: 250ms, 15s, 1m, 1h, 1.5s)"#,
        r#"proxy.yaml:69:18: limits.drain_timeout: invalid duration "1h30m" (expected a number and a unit: 250ms, 15s, 1m, 1h, 1.5s)"#,
    ];
    let got = load_errors(text);
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert_eq!(g, w, "error #{i}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn compile_without_a_file_reports_field_and_reason_only() {
    assert_eq!(
        compile_errors(
            "listeners:\n  - { name: a, address: 127.0.0.1:1, protocol: tcp, cluster: x }\n"
        ),
        [r#"listeners[0].cluster: unknown cluster "x""#]
    );
    assert_eq!(
        compile_errors(
            "route_configs:\n  - name: r\n    virtual_hosts:\n      - { name: v, domains: [a], routes: \
             [{ match: { prefix: / }, cluster: x }] }\n"
        ),
        [r#"route_configs[0].virtual_hosts[0].routes[0].cluster: unknown cluster "x""#]
    );
    // Listener addresses may not collide with the admin address either.
    assert_eq!(
        compile_errors(
            "admin: { address: 127.0.0.1:15000 }\nlisteners:\n  - { name: a, address: 127.0.0.1:15000, \
             protocol: tcp, cluster: c }\nclusters: [{ name: c }]\n"
        ),
        ["listeners[0].address: 127.0.0.1:15000 is already used by admin.address"]
    );
}

#[test]
fn addresses() {
    assert_eq!(parse_listen_addr("127.0.0.1:80"), Ok(addr("127.0.0.1:80")));
    assert_eq!(parse_listen_addr("[::1]:0"), Ok(addr("[::1]:0")));
    assert_eq!(
        parse_listen_addr("0.0.0.0:15001"),
        Ok(addr("0.0.0.0:15001"))
    );
    let err = |s: &str| parse_listen_addr(s).unwrap_err();
    assert_eq!(
        err(""),
        "must not be empty (expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)"
    );
    assert_eq!(
        err("::1"),
        "\"::1\" has no port (expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)"
    );
    assert_eq!(
        err("[::1]"),
        "\"[::1]\" has no port (expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)"
    );
    // A valid IPv6 address on its own: the port needs brackets.
    assert_eq!(
        err("::1:80"),
        "\"::1:80\" has no port (expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)"
    );
    assert_eq!(
        err("1.2.3.4:"),
        "\"1.2.3.4:\" has an invalid port \"\" (expected 0-65535)"
    );
    assert_eq!(
        err("1.2.3.4:http"),
        "\"1.2.3.4:http\" has an invalid port \"http\" (expected 0-65535)"
    );
    assert_eq!(
        err("localhost:80"),
        "\"localhost:80\" is a host name; use IP:PORT (host names are not resolved), e.g. 127.0.0.1:80"
    );
    assert_eq!(
        err("a b"),
        "\"a b\" is not an IP:PORT address (e.g. 127.0.0.1:8080 or [::1]:8080)"
    );
    assert_eq!(parse_upstream_addr("[::1]:8080"), Ok(addr("[::1]:8080")));
    assert_eq!(
        parse_upstream_addr("[::]:1").unwrap_err(),
        "\"[::]:1\": :: cannot be connected to; use the endpoint's own address"
    );
}

#[test]
fn durations() {
    let ok = |s: &str| parse_duration(s).unwrap();
    assert_eq!(ok("0s"), Duration::ZERO);
    assert_eq!(ok("250ms"), Duration::from_millis(250));
    assert_eq!(ok("15s"), Duration::from_secs(15));
    assert_eq!(ok("1m"), Duration::from_secs(60));
    assert_eq!(ok("1h"), Duration::from_secs(3600));
    assert_eq!(ok("1.5s"), Duration::from_millis(1500));
    assert_eq!(ok("0.25m"), Duration::from_secs(15));
    assert_eq!(ok("1.5ms"), Duration::from_micros(1500));
    assert_eq!(ok("0.0000000019s"), Duration::from_nanos(1));
    assert_eq!(ok("007s"), Duration::from_secs(7));
    let err = |s: &str| parse_duration(s).unwrap_err();
    let generic = |s: &str| {
        format!("invalid duration {s:?} (expected a number and a unit: 250ms, 15s, 1m, 1h, 1.5s)")
    };
    for bad in [
        "", "s", "1.s", ".5s", "1..5s", "1.2.3s", "1 s", " 1s", "1S", "1d", "1us", "1sec", "1h30m",
        "+1s",
    ] {
        assert_eq!(err(bad), generic(bad), "{bad}");
    }
    assert_eq!(err("-1s"), "invalid duration \"-1s\": must not be negative");
    assert_eq!(
        err("10"),
        "invalid duration \"10\": missing unit (expected e.g. 250ms, 15s, 1m, 1h)"
    );
    assert_eq!(
        err("99999999999999999999s"),
        "invalid duration \"99999999999999999999s\": too large"
    );
    assert_eq!(err("6000000h"), "invalid duration \"6000000h\": too large");
    for d in [0, 1, 999, 1000, 1500, 60_000, 90_000, 3_600_000, 5_400_000] {
        let d = Duration::from_millis(d);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
    let d = Duration::from_nanos(1_000_000_500);
    assert_eq!(parse_duration(&format_duration(d)), Ok(d));
}

#[test]
fn error_display_omits_unknown_parts() {
    let e = |file: Option<&str>, line, field: Option<&str>| {
        ConfigError {
            file: file.map(PathBuf::from),
            line,
            field: field.map(String::from),
            reason: "bad".into(),
        }
        .to_string()
    };
    assert_eq!(
        e(Some("f.yaml"), Some((3, 7)), Some("a.b")),
        "f.yaml:3:7: a.b: bad"
    );
    assert_eq!(e(Some("f.yaml"), None, Some("a.b")), "f.yaml: a.b: bad");
    assert_eq!(e(Some("f.yaml"), None, None), "f.yaml: bad");
    assert_eq!(e(None, Some((1, 2)), Some("a")), "1:2: a: bad");
    assert_eq!(e(None, None, Some("a")), "a: bad");
    assert_eq!(e(None, None, None), "bad");
    let all = ConfigErrors(vec![
        ConfigError {
            file: None,
            line: None,
            field: None,
            reason: "one".into(),
        },
        ConfigError {
            file: None,
            line: None,
            field: None,
            reason: "two".into(),
        },
    ]);
    assert_eq!(all.to_string(), "one\ntwo");
}

// ---- files -------------------------------------------------------------------

#[test]
fn load_file_reports_io_and_encoding_errors() {
    let missing = Path::new("/nonexistent/ringmesh/proxy.yaml");
    let err = load_file(missing).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "/nonexistent/ringmesh/proxy.yaml: cannot read the configuration file: No such file"
        ),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("ringmesh-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("latin1.yaml");
    std::fs::write(&bad, b"admin: { address: \"caf\xe9\" }\n").unwrap();
    assert_eq!(
        load_file(&bad).unwrap_err().to_string(),
        format!(
            "{}: not valid UTF-8 (first bad byte at offset 22)",
            bad.display()
        )
    );

    let good = dir.join("proxy.yaml");
    std::fs::write(&good, DOC_EXAMPLE).unwrap();
    let snap = load_file(&good).unwrap();
    assert_eq!(snap.version, fnv1a64(DOC_EXAMPLE.as_bytes()));

    let broken = dir.join("broken.yaml");
    std::fs::write(&broken, DOC_EXAMPLE.replace("cluster: db ", "cluster: dbx")).unwrap();
    assert_eq!(
        load_file(&broken).unwrap_err().to_string(),
        format!(
            "{}:11:14: listeners[1].cluster: unknown cluster \"dbx\"",
            broken.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_example_file_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            loaded += 1;
        }
    }
    assert!(loaded >= 1, "no example in {}", dir.display());
}

#[test]
fn config_reference_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CONFIG.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc
        .find("```yaml\n")
        .expect("a yaml block in docs/CONFIG.md")
        + "```yaml\n".len();
    let len = doc[start..].find("```").unwrap();
    let snap = load_str(&doc[start..start + len], Some(&path)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snap.listeners.len(), 2);
    let ListenerKind::Http { routes } = &snap.listeners[0].kind else {
        panic!()
    };
    let r = routes.route(b"Example.com:8080", b"/events/1").unwrap();
    assert_eq!((&*r.name, r.action.timeout), ("stream", None));
    assert_eq!(&*routes.find_vhost(b"other:80").unwrap().name, "fallback");
    assert_eq!(snap.clusters[0].endpoints[1].weight, 1);
}

#[test]
fn proxy_example_is_what_the_docs_say() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/proxy.yaml");
    let snap = load_file(&path).unwrap();
    assert_eq!(snap.admin, Some(addr("127.0.0.1:15000")));
    let http = snap
        .listeners
        .iter()
        .find(|l| l.address == addr("127.0.0.1:15080"))
        .unwrap();
    let ListenerKind::Http { routes } = &http.kind else {
        panic!()
    };
    let r = routes.route(b"localhost:15080", b"/").unwrap();
    assert_eq!(&*single(r).name, "backend");
    let backend = &snap.clusters[single(r).index as usize];
    assert_eq!(
        &*backend.endpoints,
        &[Endpoint {
            address: addr("127.0.0.1:18080"),
            weight: 1
        }]
    );
    let tcp = snap
        .listeners
        .iter()
        .find(|l| l.address == addr("127.0.0.1:15090"))
        .unwrap();
    let ListenerKind::Tcp { cluster_idx, .. } = &tcp.kind else {
        panic!()
    };
    assert_eq!(
        snap.clusters[*cluster_idx as usize].endpoints[0].address,
        addr("127.0.0.1:18080")
    );
}

// ---- a big, realistic configuration ---------------------------------------------

/// 40 services, each with its own virtual host (exact, wildcard and port
/// domains) and 25 routes, plus a catch-all: 1,000+ routes in all.
fn big_config() -> String {
    let mut y = String::from(
        "admin: { address: 127.0.0.1:15000 }\nlisteners:\n  - name: outbound\n    address: 0.0.0.0:15001\n    \
         protocol: http\n    route_config: outbound\n  - name: inbound\n    address: 0.0.0.0:15006\n    \
         protocol: http\n    route_config: inbound\n  - name: postgres\n    address: 127.0.0.1:5432\n    \
         protocol: tcp\n    cluster: svc0\nroute_configs:\n  - name: outbound\n    virtual_hosts:\n",
    );
    for s in 0..40 {
        y += &format!(
            "      - name: svc{s}\n        domains: [\"svc{s}\", \"svc{s}:80\", \"svc{s}.default.svc.cluster.local\", \
             \"*.svc{s}.example.com\"]\n        routes:\n"
        );
        for r in 0..24 {
            let (kind, timeout) = if r % 3 == 0 {
                ("exact", "0s")
            } else {
                ("prefix", "30s")
            };
            y += &format!(
                "          - name: svc{s}-r{r}\n            match: {{ {kind}: \"/api/v{}/res{r}\" }}\n            \
                 cluster: svc{}\n            timeout: {timeout}\n",
                r % 3,
                (s + r) % 40
            );
        }
        y += &format!("          - match: {{ prefix: / }}\n            cluster: svc{s}\n");
    }
    y += "      - name: passthrough\n        domains: [\"*\"]\n        routes:\n          - match: { prefix: / }\n            cluster: passthrough\n";
    y += "  - name: inbound\n    virtual_hosts:\n      - name: local\n        domains: [\"*\"]\n        routes:\n          - match: { prefix: / }\n            cluster: local\n            timeout: 0s\n";
    y += "clusters:\n";
    for s in 0..40 {
        y += &format!("  - name: svc{s}\n    connect_timeout: 500ms\n    endpoints:\n");
        for e in 0..3 {
            y += &format!(
                "      - address: 10.{s}.0.{}:8080\n        weight: {}\n",
                e + 1,
                e + 1
            );
        }
    }
    y += "  - name: passthrough\n  - name: local\n    endpoints: [{ address: 127.0.0.1:8080 }]\n";
    y += "limits:\n  max_request_headers_kb: 96\n  idle_timeout: 5m\n";
    y
}

#[test]
fn big_realistic_config() {
    let text = big_config();
    let snap = load_str(&text, Some(Path::new("big.yaml"))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snap.clusters.len(), 42);
    assert_eq!(snap.listeners.len(), 3);
    let ListenerKind::Http { routes } = &snap.listeners[0].kind else {
        panic!()
    };
    assert_eq!(routes.virtual_hosts().len(), 41);
    assert_eq!(
        routes
            .virtual_hosts()
            .iter()
            .map(|v| v.routes.len())
            .sum::<usize>(),
        40 * 25 + 1
    );

    let r = routes
        .route(b"svc7.default.svc.cluster.local", b"/api/v1/res4/items")
        .unwrap();
    assert_eq!((&*r.name, &*single(r).name), ("svc7-r4", "svc11"));
    assert_eq!(snap.clusters[single(r).index as usize].name, single(r).name);
    assert_eq!(r.action.timeout, Some(Duration::from_secs(30)));
    // Exact routes match only exactly; then the catch-all of the vhost.
    let r = routes.route(b"SVC7:80", b"/api/v0/res3").unwrap();
    assert_eq!((&*r.name, r.action.timeout), ("svc7-r3", None));
    let r = routes.route(b"svc7:80", b"/api/v0/res3/x").unwrap();
    assert_eq!(&*single(r).name, "svc7");
    let r = routes.route(b"a.svc39.example.com:443", b"/").unwrap();
    assert_eq!(&*single(r).name, "svc39");
    let r = routes.route(b"unknown.example.org", b"/x").unwrap();
    assert_eq!(&*single(r).name, "passthrough");
    assert_eq!(snap.limits.http1.max_head_bytes, 96 * 1024);
    assert_eq!(snap.limits.idle_timeout, Duration::from_secs(300));

    // Break three things far apart: all three are reported with lines.
    let broken = text
        .replacen("cluster: svc5\n", "cluster: svc5x\n", 1)
        .replacen("10.3.0.2:8080", "10.3.0.2", 1)
        .replace("idle_timeout: 5m", "idle_timeout: 5");
    let errs: Vec<String> = load_str(&broken, Some(Path::new("big.yaml")))
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("big.yaml:"), "{errs:#?}");
    assert!(errs[0].ends_with(
        "limits.idle_timeout: invalid duration 5: missing unit (expected e.g. 250ms, 15s, 1m, 1h)"
    ));
    let broken = broken.replace("idle_timeout: 5\n", "idle_timeout: 5s\n");
    let errs: Vec<String> = load_str(&broken, Some(Path::new("big.yaml")))
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    let line_of = |needle: &str| broken.lines().position(|l| l.ends_with(needle)).unwrap() + 1;
    assert_eq!(
        errs,
        [
            format!(
                "big.yaml:{}:22: route_configs[0].virtual_hosts[0].routes[5].cluster: unknown cluster \"svc5x\"",
                line_of("cluster: svc5x")
            ),
            format!(
                "big.yaml:{}:18: clusters[3].endpoints[1].address: \"10.3.0.2\" has no port (expected IP:PORT, \
                 e.g. 127.0.0.1:8080 or [::1]:8080)",
                line_of("address: 10.3.0.2")
            ),
        ]
    );
}

#[test]
fn original_dst_listeners_and_clusters() {
    let text = "\
listeners:
  - name: outbound
    address: 127.0.0.1:15001
    protocol: tcp
    cluster: passthrough
    original_dst: true
clusters:
  - name: passthrough
    type: original_dst
";
    let snap = load_str(text, None).unwrap();
    assert!(snap.listeners[0].original_dst);
    assert_eq!(snap.clusters[0].kind, crate::ClusterKind::OriginalDst);
    assert!(snap.clusters[0].endpoints.is_empty());

    let bad = "\
clusters:
  - name: passthrough
    type: original_dst
    endpoints: [{ address: 127.0.0.1:1 }]
";
    assert_eq!(
        compile_errors(bad),
        ["clusters[0].endpoints: an original_dst cluster takes its endpoint from each connection; remove the endpoints"]
    );
}

#[test]
fn xds_section_is_validated() {
    let ok = "xds: { address: 127.0.0.1:15010, node_id: sidecar~1 }\n";
    let snap = load_str(ok, None).unwrap();
    assert_eq!(snap.source.xds.as_ref().unwrap().node_id, "sidecar~1");
    let errs = compile_errors("xds: { address: not-an-address, node_id: \" \" }\n");
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("xds.address: "), "{errs:?}");
    assert_eq!(errs[1], "xds.node_id: must not be empty");
}
