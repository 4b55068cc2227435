//! The Kubernetes envelope: documents, lists, kinds, versions, metadata,
//! files and directories.

use super::*;

fn shown_str(text: &str) -> Vec<String> {
    shown(&load_str(text, "t.yaml"))
}

const VS: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
";

#[test]
fn namespace_defaults_to_default_or_the_loaders() {
    let r = load_str(VS, "t.yaml");
    assert_eq!(r.model.virtual_services[0].meta.namespace, "default");
    let r = Loader::new()
        .default_namespace("bookinfo")
        .load_str(VS, "t.yaml");
    assert_eq!(r.model.virtual_services[0].meta.namespace, "bookinfo");
    let with_ns = VS.replace("  name: reviews\n", "  name: reviews\n  namespace: prod\n");
    let r = Loader::new()
        .default_namespace("bookinfo")
        .load_str(&with_ns, "t.yaml");
    assert_eq!(r.model.virtual_services[0].meta.namespace, "prod");
}

#[test]
fn api_versions() {
    for v in ["v1", "v1beta1", "v1alpha3"] {
        let text = VS.replace(
            "networking.istio.io/v1",
            &format!("networking.istio.io/{v}"),
        );
        let r = load_str(&text, "t.yaml");
        assert!(r.diagnostics.is_empty(), "{v}: {:?}", shown(&r));
        assert_eq!(r.model.virtual_services.len(), 1);
    }
    assert_eq!(
        shown_str(&VS.replace("networking.istio.io/v1", "networking.istio.io/v2")),
        [
            "t.yaml:1:13: error[RM0008] VirtualService default/reviews: apiVersion: unknown \
          apiVersion \"networking.istio.io/v2\" for VirtualService (expected \
          networking.istio.io/ with one of v1, v1beta1, v1alpha3)"
        ]
    );
    assert_eq!(
        shown_str(&VS.replace("networking.istio.io/v1", "security.istio.io/v1")),
        [
            "t.yaml:1:13: error[RM0008] VirtualService default/reviews: apiVersion: unknown \
          apiVersion \"security.istio.io/v1\" for VirtualService (expected \
          networking.istio.io/ with one of v1, v1beta1, v1alpha3)"
        ]
    );
    // Someone else's VirtualService CRD is not ours to judge.
    assert_eq!(
        shown_str(&VS.replace("networking.istio.io/v1", "example.com/v1")),
        [
            "t.yaml:1:1: info[RM0013] VirtualService default/reviews: example.com/v1 \
          VirtualService is not an Istio resource; skipped"
        ]
    );
}

#[test]
fn status_is_ignored_and_other_top_level_fields_are_not() {
    let with_status = format!("{VS}status:\n  validationMessages: []\n  observedGeneration: 4\n");
    assert!(shown_str(&with_status).is_empty());
    assert_eq!(
        shown_str(&VS.replace("spec:", "specs:")),
        [
            "t.yaml:5:1: error[RM0004] VirtualService default/reviews: specs: unknown field \
          `specs`, expected one of `apiVersion`, `kind`, `metadata`, `spec`, `status`"
        ]
    );
}

#[test]
fn metadata() {
    let typo = VS.replace("  name: reviews\n", "  name: reviews\n  namepsace: prod\n");
    let found = shown_str(&typo);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with(
            "t.yaml:5:3: error[RM0004] VirtualService default/reviews: metadata.namepsace: \
             unknown field `namepsace`, expected one of `name`, `namespace`, `labels`"
        ),
        "{found:?}"
    );
    assert_eq!(
        shown_str(&VS.replace("  name: reviews\n", "  labels: {app: reviews}\n")),
        [
            "t.yaml:4:3: error[RM0004] VirtualService default/<unnamed>: metadata: missing field \
          `name`"
        ]
    );
    assert_eq!(
        shown_str(&VS.replace("name: reviews", "name: Reviews_v1")),
        [
            "t.yaml:4:9: error[RM0003] VirtualService default/Reviews_v1: metadata.name: invalid \
          name \"Reviews_v1\" (lower case letters, digits, - and ., at most 253)"
        ]
    );
    let full = VS.replace(
        "  name: reviews\n",
        "  name: reviews\n  namespace: default\n  labels:\n    app: reviews\n  annotations:\n    \
         note: x\n  resourceVersion: \"12\"\n  generation: 2\n  uid: abc\n  creationTimestamp: \
         \"2024-01-01T00:00:00Z\"\n  finalizers: [a]\n",
    );
    let r = load_str(&full, "t.yaml");
    assert!(r.diagnostics.is_empty(), "{:?}", shown(&r));
    let meta = &r.model.virtual_services[0].meta;
    assert_eq!(meta.labels["app"], "reviews");
    assert_eq!(meta.annotations["note"], "x");
    assert_eq!(meta.resource_version.as_deref(), Some("12"));
    assert_eq!(meta.generation, Some(2));
    assert_eq!(meta.uid.as_deref(), Some("abc"));
}

#[test]
fn not_objects() {
    assert_eq!(
        shown_str("- a\n- b\n"),
        [
            "t.yaml:1:1: error[RM0002] expected a Kubernetes object (a mapping with apiVersion, \
          kind and metadata), found a sequence"
        ]
    );
    assert_eq!(
        shown_str("apiVersion: v1\nmetadata: {name: x}\n"),
        [
            "t.yaml:1:1: error[RM0002] kind: kind is required (a string), as in every Kubernetes \
          object"
        ]
    );
    assert_eq!(
        shown_str("kind: Sidecar\nmetadata: {name: x}\n"),
        [
            "t.yaml:1:1: error[RM0002] apiVersion: apiVersion is required (a string), as in every \
          Kubernetes object"
        ]
    );
    // Empty documents and comments are nothing, not errors.
    assert!(shown_str("").is_empty());
    assert!(shown_str("# just a comment\n---\n---\n# another\n").is_empty());
}

#[test]
fn empty_spec_is_the_default_spec() {
    let text = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  \
                name: default\n  namespace: istio-system\nspec:\n";
    let r = load_str(text, "t.yaml");
    assert!(r.diagnostics.is_empty(), "{:?}", shown(&r));
    assert_eq!(
        r.model.peer_authentications[0].spec,
        PeerAuthentication::default()
    );
    let r = load_str(&text.replace("spec:\n", ""), "t.yaml");
    assert_eq!(r.model.peer_authentications.len(), 1);
}

#[test]
fn json_documents() {
    let json = r#"{
  "apiVersion": "networking.istio.io/v1",
  "kind": "DestinationRule",
  "metadata": {"name": "reviews", "namespace": "default"},
  "spec": {
    "host": "reviews",
    "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
    "trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": "0.5s"}}}
  }
}"#;
    let r = load_str(json, "t.json");
    assert!(r.diagnostics.is_empty(), "{:?}", shown(&r));
    let dr = &r.model.destination_rules[0];
    let pool = dr
        .spec
        .traffic_policy
        .as_ref()
        .unwrap()
        .connection_pool
        .as_ref()
        .unwrap();
    assert_eq!(
        pool.tcp
            .as_ref()
            .unwrap()
            .connect_timeout
            .unwrap()
            .to_string(),
        "500ms"
    );
    assert_eq!(
        shown_str(&json.replace("\"host\"", "\"hots\"")),
        [
            "t.yaml:6:5: error[RM0004] DestinationRule default/reviews: spec.hots: unknown field \
          `hots`, expected one of `host`, `trafficPolicy`, `subsets`, `exportTo`, \
          `workloadSelector`"
        ]
    );
}

#[test]
fn list_items_are_loaded_and_located_one_by_one() {
    let list = "\
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata: {name: a}
  spec:
    hosts: [a]
    http:
    - route:
      - destination: {host: a}
        weight: -1
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: b}
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata: {name: c}
  spec:
    hosts: [c]
    http:
    - route:
      - destination: {host: c}
";
    let r = load_str(list, "t.yaml");
    assert_eq!(
        shown(&r),
        [
            "t.yaml:12:17: error[RM0003] VirtualService default/a: \
             spec.http[0].route[0].weight: weight must not be negative (got -1)",
            "t.yaml:13:3: info[RM0013] ConfigMap default/b: v1 ConfigMap is not an Istio \
             resource; skipped",
        ]
    );
    assert_eq!(names(&r.model.virtual_services), ["default/c"]);
    assert_eq!(r.model.virtual_services[0].origin.line, 16);

    // The same list in flow style cannot be cut into items textually; the
    // positions are found in the whole list instead.
    let flow = "{apiVersion: v1, kind: List, items: [\n  {apiVersion: networking.istio.io/v1, \
                kind: Sidecar, metadata: {name: x},\n   spec: {egress: [{hosts: [bad]}]}}]}\n";
    assert_eq!(
        shown_str(flow),
        [
            "t.yaml:3:29: error[RM0003] Sidecar default/x: spec.egress[0].hosts[0]: invalid \
          egress host \"bad\" (expected namespace/dnsName, e.g. istio-system/*, \
          ./reviews.default.svc.cluster.local or */*.example.com)"
        ]
    );

    // A long flow-style list: items re-serialized, positions the list's.
    let mut items = Vec::new();
    for i in 0..100 {
        let hosts = if i == 42 { "[bad]" } else { "[./*]" };
        items.push(format!(
            "{{apiVersion: networking.istio.io/v1, kind: Sidecar, metadata: {{name: s{i}}}, \
             spec: {{egress: [{{hosts: {hosts}}}]}}}}"
        ));
    }
    let long = format!(
        "apiVersion: v1\nkind: List\nitems: [\n{}]\n",
        items.join(",\n")
    );
    let r = load_str(&long, "t.yaml");
    assert_eq!(r.model.sidecars.len(), 99);
    assert_eq!(
        shown(&r),
        [
            "t.yaml:1:1: error[RM0003] Sidecar default/s42: spec.egress[0].hosts[0]: invalid \
          egress host \"bad\" (expected namespace/dnsName, e.g. istio-system/*, \
          ./reviews.default.svc.cluster.local or */*.example.com)"
        ]
    );
}

#[test]
fn big_block_lists_load_in_linear_time() {
    let mut text = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..2000 {
        text.push_str(&format!(
            "- apiVersion: networking.istio.io/v1\n  kind: DestinationRule\n  metadata:\n    \
             name: dr{i}\n  spec:\n    host: svc{i}\n    subsets:\n    - name: v1\n      \
             labels: {{version: v1}}\n"
        ));
    }
    let started = std::time::Instant::now();
    let r = load_str(&text, "t.yaml");
    assert_eq!(r.model.destination_rules.len(), 2000);
    assert!(r.diagnostics.is_empty());
    let last = r
        .model
        .destination_rules
        .iter()
        .find(|d| d.meta.name == "dr1999")
        .unwrap();
    assert_eq!(last.origin.line, 4 + 1999 * 9);
    // Quadratic behaviour would take minutes here.
    assert!(
        started.elapsed() < StdDuration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn duplicates_keep_the_first() {
    let text = format!(
        "{VS}---\n{}",
        VS.replace("hosts: [reviews]", "hosts: [reviews2]")
    );
    let r = load_str(&text, "t.yaml");
    assert_eq!(
        shown(&r),
        [
            "t.yaml:14:9: error[RM0007] VirtualService default/reviews: metadata.name: already \
          defined at t.yaml:1; this definition is ignored"
        ]
    );
    assert_eq!(r.model.virtual_services[0].spec.hosts, ["reviews"]);
}

#[test]
fn istio_kinds_we_do_not_support_are_warned_about() {
    let text = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  \
                name: jwt\nspec: {}\n---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\n\
                metadata:\n  name: mesh-default\n  namespace: istio-system\n";
    assert_eq!(
        shown_str(text),
        [
            "t.yaml:1:1: warning[RM0012] RequestAuthentication default/jwt: \
             security.istio.io/v1 RequestAuthentication is not supported yet; skipped",
            "t.yaml:7:1: warning[RM0012] Telemetry istio-system/mesh-default: \
             telemetry.istio.io/v1 Telemetry is not supported yet; skipped",
        ]
    );
}

#[test]
fn yaml_features_and_line_endings() {
    // Anchors and aliases, quoted port keys (as kubectl prints them), CRLF.
    let text = "apiVersion: security.istio.io/v1\r\nkind: PeerAuthentication\r\nmetadata:\r\n  \
                name: p\r\nspec:\r\n  selector:\r\n    matchLabels: &labels\r\n      app: a\r\n  \
                portLevelMtls:\r\n    \"8080\": {mode: DISABLE}\r\n    9090: {mode: STRICTER}\r\n";
    assert_eq!(
        shown_str(text),
        ["t.yaml:11:18: error[RM0004] PeerAuthentication default/p: \
          spec.portLevelMtls.9090.mode: unknown variant `STRICTER`, expected one of `UNSET`, \
          `DISABLE`, `PERMISSIVE`, `STRICT`"]
    );
    let ok = text.replace("STRICTER", "STRICT");
    let r = load_str(&ok, "t.yaml");
    assert!(r.diagnostics.is_empty(), "{:?}", shown(&r));
    let pa = &r.model.peer_authentications[0].spec;
    assert_eq!(
        pa.port_level_mtls.keys().map(|k| k.0).collect::<Vec<_>>(),
        [8080, 9090]
    );

    let aliases = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  \
                   name: r\nspec:\n  host: r\n  subsets:\n  - name: v1\n    labels: &v1 \
                   {version: v1}\n  - name: v1-copy\n    labels: *v1\n";
    let r = load_str(aliases, "t.yaml");
    assert!(r.diagnostics.is_empty(), "{:?}", shown(&r));
    assert_eq!(
        r.model.destination_rules[0].spec.subsets[1].labels["version"],
        "v1"
    );
}

#[test]
fn references_across_namespaces_and_hosts() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  exportTo: [.]
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: external, namespace: egress}
spec:
  host: \"*.example.com\"
  subsets:
  - {name: eu, labels: {region: eu}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: same-ns, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: api.example.com, subset: eu}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other-ns, namespace: frontend}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  tcp:
  - route:
    - destination: {host: reviews.bookinfo.svc.cluster.local, subset: v1}
";
    let r = load_str(text, "t.yaml");
    assert_eq!(
        shown(&r),
        [
            "t.yaml:35:71: error[RM0006] VirtualService frontend/other-ns: \
          spec.tcp[0].route[0].destination.subset: subset \"v1\" is not defined: no \
          DestinationRule for host reviews.bookinfo.svc.cluster.local is visible from \
          namespace frontend"
        ]
    );
    assert_eq!(names(&r.model.virtual_services), ["bookinfo/same-ns"]);
}

#[test]
fn delegates() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [shop.example.com]
  gateways: [shop-gateway]
  http:
  - match: [{uri: {prefix: /cart}}]
    delegate: {name: cart, namespace: cart}
  - match: [{uri: {prefix: /pay}}]
    delegate: {name: pay}
  - delegate: {name: catalog}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: cart}
spec:
  http:
  - route:
    - destination: {host: cart}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog}
spec:
  hosts: [catalog]
  http:
  - route:
    - destination: {host: catalog}
";
    let r = load_str(text, "t.yaml");
    assert_eq!(
        shown(&r),
        [
            "t.yaml:11:15: error[RM0006] VirtualService default/root: spec.http[1].delegate: \
             delegate VirtualService default/pay is not defined",
            "t.yaml:12:15: error[RM0006] VirtualService default/root: spec.http[2].delegate: \
             VirtualService default/catalog has hosts, so it cannot be a delegate",
        ]
    );
    assert_eq!(
        names(&r.model.virtual_services),
        ["cart/cart", "default/catalog"]
    );
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringmesh-istio-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn files_and_directories() {
    let dir = scratch_dir("dir");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("..data")).unwrap();
    std::fs::write(dir.join("sub/vs.yaml"), VS).unwrap();
    std::fs::write(dir.join("..data/vs.yaml"), VS).unwrap(); // ConfigMap mount internals
    std::fs::write(dir.join(".hidden.yaml"), "not: [valid").unwrap();
    std::fs::write(dir.join("README.md"), "# not YAML").unwrap();
    std::fs::write(dir.join("bad.yml"), [0x61, 0x3a, 0x20, 0xff, 0x0a]).unwrap();
    let r = load_dir(&dir);
    let label = dir.display().to_string();
    let shown: Vec<String> = r
        .diagnostics
        .iter()
        .map(|d| d.to_string().replace(&label, "DIR"))
        .collect();
    assert_eq!(
        shown,
        ["DIR/bad.yml: error[RM0009] not valid UTF-8 (first bad byte at offset 3)"]
    );
    assert_eq!(names(&r.model.virtual_services), ["default/reviews"]);
    assert!(r.model.virtual_services[0]
        .origin
        .file
        .ends_with("sub/vs.yaml"));

    let file = load_file(dir.join("sub/vs.yaml"));
    assert!(file.diagnostics.is_empty());
    assert_eq!(file.model.virtual_services.len(), 1);
    assert_eq!(load_dir(dir.join("sub/vs.yaml")).model, file.model);

    let missing = load_file(dir.join("nope.yaml"));
    assert_eq!(missing.diagnostics.len(), 1);
    assert_eq!(missing.diagnostics[0].code, codes::IO);
    assert!(missing.diagnostics[0]
        .message
        .starts_with("cannot read the file: "));
    let missing = load_dir(dir.join("nope"));
    assert_eq!(missing.diagnostics[0].code, codes::IO);
    assert!(missing.diagnostics[0]
        .message
        .starts_with("cannot read the directory: "));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn yaml_that_is_not_quite_right() {
    let dup = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: a\nspec:\n  \
               egress:\n  - hosts: [./*]\n    hosts: [x/*]\n";
    assert_eq!(
        shown_str(dup),
        [
            "t.yaml:7:5: error[RM0001] invalid YAML, document skipped: duplicate entry with key \
          \"hosts\""
        ]
    );
    let tab = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n\tname: a\n";
    assert_eq!(
        shown_str(tab),
        [
            "t.yaml:4:1: error[RM0001] invalid YAML, document skipped: found character that \
          cannot start any token, while scanning for the next token"
        ]
    );
    // Unquoted numbers where Kubernetes prints strings are read as text.
    let rv = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: a\n  \
              resourceVersion: 123\nspec:\n  egress:\n  - hosts: [./*]\n";
    let r = load_str(rv, "t.yaml");
    assert!(r.diagnostics.is_empty(), "{:?}", shown(&r));
    assert_eq!(
        r.model.sidecars[0].meta.resource_version.as_deref(),
        Some("123")
    );
}

#[test]
fn istio_spellings() {
    // Istio's CRD spells the deprecated field `mirror_percent`; its docs
    // write header values as bare YAML booleans.
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\n\
                spec:\n  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    \
                mirror: {host: b}\n    mirror_percent: 5\n    headers: {request: {set: {test: \
                true, n: 2}}}\n";
    let r = load_str(text, "t.yaml");
    assert_eq!(
        shown(&r),
        [
            "t.yaml:7:5: warning[RM0011] VirtualService default/a: spec.http[0].mirrorPercent: \
          mirrorPercent is deprecated; use mirrorPercentage: {value: N}"
        ]
    );
    let route = &r.model.virtual_services[0].spec.http[0];
    assert_eq!(route.effective_mirror_percentage(), 5.0);
    let set = &route
        .headers
        .as_ref()
        .unwrap()
        .request
        .as_ref()
        .unwrap()
        .set;
    assert_eq!((set["test"].as_str(), set["n"].as_str()), ("true", "2"));
    // A float would not come back as written: refused.
    assert_eq!(
        shown_str(&text.replace("n: 2", "n: 1.0")),
        ["t.yaml:10:46: error[RM0004] VirtualService default/a: \
          spec.http[0].headers.request.set.n: invalid type: floating point `1.0`, expected a \
          string"]
    );
}
