use serde_json::{json, Value};

use crate::*;

fn settings() -> Settings {
    Settings {
        control_plane_address: "10.96.0.20:15010".into(),
        ..Settings::default()
    }
}

fn pod(extra_meta: Value, extra_spec: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]}
    });
    merge(&mut p["metadata"], extra_meta);
    merge(&mut p["spec"], extra_spec);
    p
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

fn injected(p: &Value) -> Value {
    let mut p = p.clone();
    let ctx = PodContext::from_template(&p, "default", None);
    inject_pod_spec(&mut p, &ctx, &settings()).unwrap();
    p
}

fn names_of(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().map(|c| c["name"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

#[test]
fn native_layout_puts_init_then_proxy_before_the_pods_own_init_containers() {
    let p = injected(&pod(
        json!({}),
        json!({"initContainers": [{"name": "migrate", "image": "busybox"}]}),
    ));
    assert_eq!(
        names_of(&p["spec"]["initContainers"]),
        ["ringmesh-init", "ringmesh-proxy", "migrate"]
    );
    assert_eq!(names_of(&p["spec"]["containers"]), ["app"]);
    let proxy = &p["spec"]["initContainers"][1];
    assert_eq!(proxy["restartPolicy"], "Always");
    let sc = &proxy["securityContext"];
    assert_eq!(sc["runAsUser"], 1337);
    assert_eq!(sc["runAsGroup"], 1337);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(proxy["startupProbe"]["httpGet"]["port"], 15021);
    assert_eq!(proxy["readinessProbe"]["httpGet"]["path"], "/ready");
    let init = &p["spec"]["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"],
        json!({"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]})
    );
    assert_eq!(init["securityContext"]["runAsUser"], 0);
    assert_eq!(init["securityContext"]["privileged"], false);
    assert_eq!(
        names_of(&p["spec"]["volumes"]),
        ["ringmesh-bootstrap", "ringmesh-token", "ringmesh-work"]
    );
    assert_eq!(
        p["spec"]["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "ringmesh-ca"
    );
    let status: Value = serde_json::from_str(
        p["metadata"]["annotations"][names::STATUS_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(status["layout"], "native");
    assert_eq!(
        p["metadata"]["labels"]["security.istio.io/tlsMode"],
        "istio"
    );
    assert_eq!(
        p["metadata"]["annotations"][names::DEFAULT_CONTAINER],
        "app"
    );
}

#[test]
fn classic_layout_puts_the_proxy_first_among_containers() {
    let p = injected(&pod(
        json!({"annotations": {"sidecar.istio.io/nativeSidecar": "false"}}),
        json!({}),
    ));
    assert_eq!(names_of(&p["spec"]["initContainers"]), ["ringmesh-init"]);
    assert_eq!(
        names_of(&p["spec"]["containers"]),
        ["ringmesh-proxy", "app"]
    );
    assert!(p["spec"]["containers"][0].get("restartPolicy").is_none());
    // A bad value is an error naming the annotation.
    let mut bad = pod(
        json!({"annotations": {"sidecar.istio.io/nativeSidecar": "maybe"}}),
        json!({}),
    );
    let ctx = PodContext::from_template(&bad, "default", None);
    let e = inject_pod_spec(&mut bad, &ctx, &settings()).unwrap_err();
    assert!(
        e.to_string().contains("sidecar.istio.io/nativeSidecar"),
        "{e}"
    );
}

#[test]
fn decisions_follow_istio() {
    let d = |meta: Value, spec: Value| decide(&pod(meta, spec), "shop", true);
    assert_eq!(d(json!({}), json!({})), Decision::Inject);
    assert!(matches!(
        d(
            json!({"annotations": {"sidecar.istio.io/inject": "false"}}),
            json!({})
        ),
        Decision::Skip(_)
    ));
    assert!(matches!(
        d(
            json!({"labels": {"sidecar.istio.io/inject": "false"}}),
            json!({})
        ),
        Decision::Skip(_)
    ));
    // The label wins over the annotation.
    assert_eq!(
        d(
            json!({"labels": {"sidecar.istio.io/inject": "true"},
                   "annotations": {"sidecar.istio.io/inject": "false"}}),
            json!({})
        ),
        Decision::Inject
    );
    assert!(
        matches!(d(json!({}), json!({"hostNetwork": true})), Decision::Skip(r) if r.contains("hostNetwork"))
    );
    assert!(matches!(
        decide(&pod(json!({}), json!({})), "kube-system", true),
        Decision::Skip(_)
    ));
    // Off by default: only an explicit opt-in injects.
    assert!(matches!(
        decide(&pod(json!({}), json!({})), "shop", false),
        Decision::Skip(_)
    ));
    assert_eq!(
        decide(
            &pod(
                json!({"annotations": {"sidecar.istio.io/inject": "true"}}),
                json!({})
            ),
            "shop",
            false
        ),
        Decision::Inject
    );
    // Never twice: by annotation, or by our containers.
    let once = injected(&pod(json!({}), json!({})));
    assert!(matches!(decide(&once, "shop", true), Decision::Skip(r) if r.contains("already")));
    let hand = pod(
        json!({}),
        json!({"containers": [{"name": "ringmesh-proxy", "image": "x"}]}),
    );
    assert!(matches!(decide(&hand, "shop", true), Decision::Skip(r) if r.contains("already")));
}

#[test]
fn interception_annotations_become_ringmesh_init_flags() {
    let p = injected(&pod(
        json!({"annotations": {
            "traffic.sidecar.istio.io/excludeOutboundPorts": "5432, 6379",
            "traffic.sidecar.istio.io/excludeInboundPorts": "9090",
            "traffic.sidecar.istio.io/includeInboundPorts": "8080,9090",
            "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32,10.0.0.0/8",
        }}),
        json!({}),
    ));
    let args: Vec<&str> = p["spec"]["initContainers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "--proxy-uid=1337",
            "--proxy-gid=1337",
            "--outbound-port=15001",
            "--inbound-port=15006",
            "--include-inbound-ports=8080,9090",
            "--exclude-inbound-ports=15000,15020,15021,9090",
            "--exclude-outbound-ports=5432,6379",
            "--exclude-outbound-cidrs=169.254.169.254/32,10.0.0.0/8",
        ]
    );
    for (key, value) in [
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "http"),
        ("traffic.sidecar.istio.io/excludeInboundPorts", "70000"),
        (
            "traffic.sidecar.istio.io/excludeOutboundIPRanges",
            "10.0.0.0/33",
        ),
        ("sidecar.istio.io/proxyCPU", "lots"),
    ] {
        let mut bad = pod(json!({"annotations": {key: value}}), json!({}));
        let ctx = PodContext::from_template(&bad, "default", None);
        let e = inject_pod_spec(&mut bad, &ctx, &settings()).unwrap_err();
        assert!(
            matches!(&e, InjectError::Annotation { key: k, .. } if k == key),
            "{e}"
        );
    }
}

#[test]
fn the_bootstrap_loads_in_the_proxy_and_names_the_workload() {
    let mut p = pod(
        json!({"name": null, "generateName": "reviews-v1-5d8f7c9b6-",
               "labels": {"app": "reviews", "pod-template-hash": "5d8f7c9b6"},
               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "name": "reviews-v1-5d8f7c9b6", "uid": "u", "controller": true}]}),
        json!({"serviceAccountName": "bookinfo-reviews"}),
    );
    p["metadata"].as_object_mut().unwrap().remove("name");
    let ctx = PodContext::from_template(&p, "default", None);
    assert_eq!(ctx.workload, "reviews-v1");
    assert_eq!(ctx.pod_name, "reviews-v1-5d8f7c9b6-***");
    assert_eq!(ctx.namespace, "shop");
    let text = bootstrap_yaml(&p, &ctx, &settings());
    let cfg = ringmesh_config::parse_yaml(&text, None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    ringmesh_config::compile(&cfg, 1).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let v: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(v["xds"]["address"], "10.96.0.20:15010");
    assert_eq!(v["xds"]["metadata"]["SERVICE_ACCOUNT"], "bookinfo-reviews");
    assert_eq!(v["xds"]["metadata"]["LABELS"]["app"], "reviews");
    assert_eq!(v["identity"]["ca_address"], "10.96.0.20:15010");
    assert_eq!(
        v["identity"]["token_file"],
        "/var/run/secrets/ringmesh/ringmesh-token"
    );
}

#[test]
fn webhook_patch_is_the_difference() {
    let p = pod(json!({}), json!({}));
    let (d, ops) = inject_pod(&p, "shop", &settings()).unwrap();
    assert_eq!(d, Decision::Inject);
    let paths: Vec<&str> = ops.iter().map(|o| o["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"/spec/initContainers"), "{paths:?}");
    assert!(paths.contains(&"/metadata/annotations"), "{paths:?}");
    let (d, ops) = inject_pod(
        &pod(
            json!({"annotations": {"sidecar.istio.io/inject": "false"}}),
            json!({}),
        ),
        "shop",
        &settings(),
    )
    .unwrap();
    assert!(matches!(d, Decision::Skip(_)));
    assert!(ops.is_empty());
    assert!(inject_pod(&json!("pod"), "shop", &settings()).is_err());
    assert!(inject_pod(&json!({"spec": {}}), "shop", &settings()).is_err());
}

#[test]
fn settings_are_checked() {
    let mut s = settings();
    s.control_plane_address = "ringmesh-control.ringmesh-system.svc:15010".into();
    assert!(s.validate().unwrap_err().to_string().contains("IP:PORT"));
    let mut s = settings();
    s.trust_domain = "Cluster.Local".into();
    assert!(s.validate().is_err());
    let mut s = settings();
    s.image_pull_policy = Some("Sometimes".into());
    assert!(s.validate().is_err());
}

const MULTI: &str = "\
# a comment before the first document
apiVersion: v1
kind: Service
metadata:
  name: web   # kept byte for byte
spec:
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: jobs}
spec:
  schedule: '@daily'
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: {sidecar.istio.io/inject: 'false'}
        spec:
          restartPolicy: OnFailure
          containers: [{name: r, image: busybox}]
";

#[test]
fn multi_document_yaml_is_injected_and_the_rest_passed_through() {
    let (out, reports) = inject_yaml(MULTI, "default", &settings()).unwrap();
    assert!(out.starts_with(
        "# a comment before the first document\napiVersion: v1\nkind: Service\nmetadata:\n  name: web   # kept byte for byte\n"
    ));
    assert_eq!(reports.len(), 3);
    assert!(matches!(reports[0].objects[0].decision, Decision::Skip(_)));
    assert_eq!(reports[1].objects[0].decision, Decision::Inject);
    assert_eq!(reports[1].objects[0].object, "Deployment/web");
    assert!(matches!(reports[2].objects[0].decision, Decision::Skip(_)));
    // The CronJob document is unchanged text.
    assert!(out.ends_with(&MULTI[MULTI.find("---\napiVersion: batch/v1").unwrap()..]));
    let docs: Vec<Value> = out
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    let template = &docs[1]["spec"]["template"];
    assert_eq!(
        names_of(&template["spec"]["initContainers"]),
        ["ringmesh-init", "ringmesh-proxy"]
    );
    let boot: Value = serde_yaml_ng::from_str(
        template["metadata"]["annotations"][names::BOOTSTRAP_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        boot["xds"]["node_id"],
        "sidecar~0.0.0.0~web-***.default~default.svc.cluster.local"
    );
    // Again: nothing changes.
    let (again, reports) = inject_yaml(&out, "default", &settings()).unwrap();
    assert_eq!(again, out);
    assert!(reports
        .iter()
        .all(|r| r.objects.iter().all(|o| o.decision != Decision::Inject)));
}

#[test]
fn bad_yaml_and_malformed_objects_are_errors() {
    let e = inject_yaml("a: [\n", "default", &settings()).unwrap_err();
    assert!(e.to_string().starts_with("document 1:"), "{e}");
    let e = inject_yaml(
        "kind: Deployment\nmetadata: {name: x}\nspec: {}\n",
        "default",
        &settings(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("spec.template is missing"), "{e}");
    let e = inject_yaml(
        "kind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n",
        "default",
        &settings(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("spec.containers"), "{e}");
}
