//! Protocol inference, and each rule of the format with its exact message.

use super::*;

/// Wrap `spec` (indented by two) in a Service named `s`.
fn service(spec: &str) -> String {
    format!(
        "apiVersion: registry.ringmesh.io/v1\nkind: Service\nmetadata: {{name: s}}\nspec:\n{spec}"
    )
}

fn workload(spec: &str) -> String {
    format!(
        "apiVersion: registry.ringmesh.io/v1\nkind: Workload\nmetadata: {{name: w}}\nspec:\n{spec}"
    )
}

#[test]
fn protocols_from_port_names_as_istio_infers_them() {
    let cases = [
        ("http", Protocol::Http),
        ("http-web", Protocol::Http),
        ("HTTP-Web", Protocol::Http),
        ("http2", Protocol::Http2),
        ("http2-api", Protocol::Http2),
        ("grpc", Protocol::Grpc),
        ("grpc-api", Protocol::Grpc),
        ("grpc-web", Protocol::Http),
        ("grpc-web-ui", Protocol::Http),
        ("https", Protocol::Https),
        ("https-admin", Protocol::Https),
        ("tls-db", Protocol::Tls),
        ("tcp", Protocol::Tcp),
        ("tcp-mongo", Protocol::Tcp),
        // No known prefix: TCP.
        ("httpfoo", Protocol::Tcp),
        ("mongo", Protocol::Tcp),
        ("web", Protocol::Tcp),
        ("", Protocol::Tcp),
    ];
    for (name, want) in cases {
        assert_eq!(Protocol::from_port_name(name), want, "{name:?}");
    }
    assert_eq!(Protocol::from_name("grpc"), Some(Protocol::Grpc));
    assert_eq!(Protocol::from_name("Http2"), Some(Protocol::Http2));
    assert_eq!(Protocol::from_name("HTTP_PROXY"), None);
    for p in Protocol::ALL {
        assert_eq!(Protocol::from_name(p.as_str()), Some(p));
        assert_eq!(p.to_string(), p.as_str());
    }
}

#[test]
fn protocols_in_services() {
    let (state, shown) = load_one(&service(
        "  ports:
  - {name: http-web, port: 80}
  - {name: grpc, port: 81}
  - {name: db, port: 82}
  - {name: http-but-tcp, port: 83, protocol: tcp}
  - {name: admin, port: 84, protocol: Https}
  - {name: grpc-web, port: 85}
",
    ));
    assert_eq!(shown, Vec::<String>::new());
    let protocols: Vec<Protocol> = state.services[0].ports.iter().map(|p| p.protocol).collect();
    assert_eq!(
        protocols,
        [
            Protocol::Http,
            Protocol::Grpc,
            Protocol::Tcp,
            Protocol::Tcp,
            Protocol::Https,
            Protocol::Http
        ]
    );
}

/// Each case: the file, and every diagnostic it gets. Every case is
/// rejected whole.
#[test]
fn every_rule_with_its_message() {
    const DNS: &str = "a DNS-1123 label is at most 63 lower case letters, digits and '-', \
                       starting and ending with a letter or digit";
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {name: Reviews_1, namespace: Default}
spec:
  ports:
  - {name: HTTP, port: 0, targetPort: 70000, protocol: HTPP}
  - {name: http, port: 9080}
  - {name: http, port: 9080}
  - {name: web, port: -1}
  exportTo: [\"*\", \"x_y\"]
"
            .into(),
            vec![
                format!(
                    "mesh.yaml:3:18: error[RM0203] Service Default/Reviews_1: metadata.name: \
                     invalid name \"Reviews_1\": {DNS}"
                ),
                format!(
                    "mesh.yaml:3:40: error[RM0203] Service Default/Reviews_1: metadata.namespace: \
                     invalid namespace \"Default\": {DNS}"
                ),
                format!(
                    "mesh.yaml:6:12: error[RM0203] Service Default/Reviews_1: spec.ports[0].name: \
                     invalid port name \"HTTP\": {DNS}"
                ),
                "mesh.yaml:6:24: error[RM0203] Service Default/Reviews_1: spec.ports[0].port: \
                 port 0 is out of range (1-65535)"
                    .into(),
                "mesh.yaml:6:39: error[RM0203] Service Default/Reviews_1: \
                 spec.ports[0].targetPort: targetPort 70000 is out of range (1-65535)"
                    .into(),
                "mesh.yaml:6:56: error[RM0203] Service Default/Reviews_1: spec.ports[0].protocol: \
                 unknown protocol \"HTPP\" (expected one of HTTP, HTTP2, GRPC, HTTPS, TLS, TCP)"
                    .into(),
                "mesh.yaml:8:12: error[RM0204] Service Default/Reviews_1: spec.ports[2].name: \
                 duplicate port name \"http\" (also spec.ports[1])"
                    .into(),
                "mesh.yaml:8:24: error[RM0204] Service Default/Reviews_1: spec.ports[2].port: \
                 duplicate port 9080 (also spec.ports[1])"
                    .into(),
                "mesh.yaml:9:23: error[RM0203] Service Default/Reviews_1: spec.ports[3].port: \
                 port -1 is out of range (1-65535)"
                    .into(),
                "mesh.yaml:10:19: error[RM0203] Service Default/Reviews_1: spec.exportTo[1]: \
                 invalid exportTo entry \"x_y\": expected \"*\", \".\" or a namespace name"
                    .into(),
            ],
        ),
        (
            service("  ports: []\n"),
            vec![
                "mesh.yaml:5:10: error[RM0203] Service default/s: spec.ports: \
                  a Service needs at least one port"
                    .into(),
            ],
        ),
        (
            service("  ports:\n  - {name: http, port: 9080}\n  selectr: {app: x}\n"),
            vec![
                "mesh.yaml:7:12: error[RM0202] Service default/s: spec.selectr: \
                  unknown field `selectr`, expected one of `ports`, `selector`, `exportTo`"
                    .into(),
            ],
        ),
        (
            service("  ports:\n  - {name: http, port: \"9080\"}\n"),
            vec![
                "mesh.yaml:6:24: error[RM0202] Service default/s: spec.ports[0].port: \
                  invalid type: string \"9080\", expected i64"
                    .into(),
            ],
        ),
        (
            service("  ports:\n  - {port: 9080}\n"),
            vec![
                "mesh.yaml:6:5: error[RM0202] Service default/s: spec.ports[0]: \
                  missing field `name`"
                    .into(),
            ],
        ),
        (
            "apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {name: s, namepsace: x}
spec:
  ports:
  - {name: http, port: 9080}
"
            .into(),
            vec![
                "mesh.yaml:3:32: error[RM0202] Service default/s: metadata.namepsace: \
                  unknown field `namepsace`, expected one of `name`, `namespace`, `labels`, \
                  `annotations`"
                    .into(),
            ],
        ),
        (
            "apiVersion: registry.ringmesh.io/v1\nkind: Service\nmetadata: {name: s}\n".into(),
            vec!["mesh.yaml:1:1: error[RM0202] Service default/s: missing field `spec`".into()],
        ),
        (
            workload(
                "  address: 300.1.1.1
  serviceAccount: Bad_SA
  locality: a//b
  weight: 129
  ports: {http: 0, Bad: 80}
",
            ),
            vec![
                "mesh.yaml:5:12: error[RM0203] Workload default/w: spec.address: \
                 invalid address \"300.1.1.1\": not an IPv4 or IPv6 address"
                    .into(),
                "mesh.yaml:6:19: error[RM0203] Workload default/w: spec.serviceAccount: \
                 invalid serviceAccount \"Bad_SA\": lower case letters, digits, '-' and '.', \
                 at most 253"
                    .into(),
                "mesh.yaml:7:13: error[RM0203] Workload default/w: spec.locality: \
                 invalid locality \"a//b\": expected region, region/zone or \
                 region/zone/subzone, each part non-empty and without spaces"
                    .into(),
                "mesh.yaml:8:11: error[RM0203] Workload default/w: spec.weight: \
                 weight 129 is out of range (1-128)"
                    .into(),
                "mesh.yaml:9:17: error[RM0203] Workload default/w: spec.ports.http: \
                 port 0 is out of range (1-65535)"
                    .into(),
                format!(
                    "mesh.yaml:9:25: error[RM0203] Workload default/w: spec.ports.Bad: \
                     invalid port name \"Bad\": {DNS}"
                ),
            ],
        ),
        (
            workload("  address: 0.0.0.0\n  locality: a/b/c/d\n  weight: 0\n"),
            vec![
                "mesh.yaml:5:12: error[RM0203] Workload default/w: spec.address: \
                 address 0.0.0.0 cannot receive traffic: give the workload's own unicast \
                 address"
                    .into(),
                "mesh.yaml:6:13: error[RM0203] Workload default/w: spec.locality: \
                 invalid locality \"a/b/c/d\": expected region, region/zone or \
                 region/zone/subzone, each part non-empty and without spaces"
                    .into(),
                "mesh.yaml:7:11: error[RM0203] Workload default/w: spec.weight: \
                 weight 0 is out of range (1-128)"
                    .into(),
            ],
        ),
        (
            workload("  address: ff02::1\n"),
            vec![
                "mesh.yaml:5:12: error[RM0203] Workload default/w: spec.address: \
                  address ff02::1 cannot receive traffic: give the workload's own unicast \
                  address"
                    .into(),
            ],
        ),
        (
            workload("  serviceAccount: x\n"),
            vec![
                "mesh.yaml:5:3: error[RM0202] Workload default/w: spec: missing field `address`"
                    .into(),
            ],
        ),
        (
            "apiVersion: registry.ringmesh.io/v2
kind: Workload
metadata: {name: w}
spec: {address: 1.2.3.4}
---
apiVersion: registry.ringmesh.io/v1
kind: Endpoint
metadata: {name: w}
spec: {address: 1.2.3.4}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
spec: {address: 1.2.3.4}
"
            .into(),
            vec![
                "mesh.yaml:1:13: error[RM0201] Workload default/w: apiVersion: unknown \
                 apiVersion \"registry.ringmesh.io/v2\" for Workload (expected \
                 registry.ringmesh.io/v1)"
                    .into(),
                "mesh.yaml:7:7: error[RM0201] Endpoint default/w: kind: unknown kind \
                 \"Endpoint\" in registry.ringmesh.io/v1 (expected Service or Workload)"
                    .into(),
                "mesh.yaml:11:1: error[RM0202] Workload default/<unnamed>: missing field \
                 `metadata`"
                    .into(),
            ],
        ),
    ];
    for (text, want) in cases {
        let (state, shown) = load_one(&text);
        assert_eq!(shown, want, "for\n{text}");
        assert!(
            state.services.is_empty() && state.workloads.is_empty(),
            "{text}"
        );
    }
}

#[test]
fn duplicates_keep_the_first() {
    let dir = TempDir::new("dup");
    dir.write(
        "a.yaml",
        &workload("  address: 10.0.0.1\n").replace("name: w", "name: w, namespace: prod"),
    );
    dir.write(
        "b/c.yaml",
        &format!(
            "{}---\n{}---\n{}",
            workload("  address: 10.0.0.2\n").replace("name: w", "name: w, namespace: prod"),
            // Same name in another namespace, and a Service of the same
            // name: different resources.
            workload("  address: 10.0.0.3\n"),
            service("  ports: [{name: http, port: 80}]\n").replace("name: s", "name: w"),
        ),
    );
    let state = load(&dir);
    assert_eq!(
        shown(&state, dir.path()),
        [
            "b/c.yaml:3:18: error[RM0205] Workload prod/w: metadata.name: already defined at \
             a.yaml:1; this definition is ignored"
        ]
    );
    assert_eq!(workload_names(&state), ["default/w", "prod/w"]);
    assert_eq!(state.workloads[1].address.to_string(), "10.0.0.1");
    assert_eq!(service_names(&state), ["default/w"]);
}

#[test]
fn registry_objects_and_istio_findings_together() {
    // One document is broken YAML: the loader says so once, and the rest
    // of the file loads. A document without `kind` is reported once too.
    let (state, shown) = load_one(
        "\
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {name: a}
spec: {address: 10.0.0.1}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {name: b
spec: {address: 10.0.0.2}
---
apiVersion: registry.ringmesh.io/v1
metadata: {name: c}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: 50
    - destination: {host: ratings}
      weight: 40
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {name: d}
spec: {address: 10.0.0.4}
",
    );
    assert_eq!(
        shown,
        [
            "mesh.yaml:9:5: error[RM0001] invalid YAML, document skipped: did not find \
             expected ',' or '}', while parsing a flow mapping at line 8 column 11",
            "mesh.yaml:11:1: error[RM0002] kind: kind is required (a string), as in every \
             Kubernetes object",
            "mesh.yaml:24:15: error[RM0003] VirtualService default/bad: spec.http[0].route[1].weight: \
             weights sum to 90, not 100",
        ]
    );
    assert_eq!(workload_names(&state), ["default/a", "default/d"]);
    assert!(state.istio.is_empty());
}

#[test]
fn kubernetes_lists_of_registry_objects_report_positions_in_the_file() {
    let (state, shown) = load_one(
        "\
apiVersion: v1
kind: List
items:
- apiVersion: registry.ringmesh.io/v1
  kind: Workload
  metadata: {name: good}
  spec: {address: 10.0.0.1}
- apiVersion: registry.ringmesh.io/v1
  kind: Workload
  metadata: {name: bad}
  spec: {address: 10.0.0.x}
",
    );
    assert_eq!(
        shown,
        [
            "mesh.yaml:11:19: error[RM0203] Workload default/bad: spec.address: invalid \
          address \"10.0.0.x\": not an IPv4 or IPv6 address"
        ]
    );
    assert_eq!(workload_names(&state), ["default/good"]);
}

#[test]
fn unreadable_input_is_reported() {
    let dir = TempDir::new("unreadable");
    dir.write("ok.yaml", &workload("  address: 10.0.0.1\n"));
    std::fs::write(dir.path().join("latin1.yaml"), b"name: caf\xe9\n").unwrap();
    let state = load(&dir);
    assert_eq!(
        shown(&state, dir.path()),
        ["latin1.yaml: error[RM0009] not valid UTF-8 (first bad byte at offset 9)"]
    );
    assert_eq!(workload_names(&state), ["default/w"]);

    let missing = dir.path().join("nope");
    let state = load_state(&missing, &FileOptions::default(), None);
    assert_eq!(
        state.diagnostics[0].to_string(),
        format!(
            "{}: error[RM0009] the registry directory cannot be read (No such file or \
             directory (os error 2)); nothing is loaded",
            missing.display()
        )
    );
    assert!(state.services.is_empty() && state.workloads.is_empty());
}
