//! Sidecar injection end to end: the real `ringmesh-control` with its
//! admission webhook on (`--webhook-address`), real AdmissionReview v1
//! payloads (tests/fixtures/inject/*.json, shaped as the API server sends
//! them) POSTed over HTTPS by curl trusting only the control plane's CA
//! root and checking the DNS name; the JSON Patch is applied by an
//! independent implementation (Python's `jsonpatch`) and the patched pod
//! validated against the Kubernetes schema (`kubernetes-validate
//! --strict`); the init container's arguments are parsed by the real
//! `ringmesh-init --dry-run`. Then `ringmesh inject -f` on YAML.
//!
//! Needs curl, and `kubernetes-validate` + `jsonpatch` in the Python
//! environment of `$RINGMESH_K8S_TOOLS` (default `/opt/ringmesh-venv`,
//! which scripts/test.sh creates); fails loudly without them.

use std::{
    ffi::OsStr,
    fs,
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, OnceLock},
    thread,
    time::Duration,
};

use ringmesh_e2e::{die_with_parent, mesh::control_bin, workspace_bin, workspace_root, TempDir};
use serde_json::{json, Value};

/// The Kubernetes version the manifests and patched pods are validated
/// against (native sidecars are GA since 1.33).
const KUBERNETES_VERSION: &str = "1.33.0";
/// The name the API server calls (and the certificate must carry).
const WEBHOOK_HOST: &str = "ringmesh-control.ringmesh-system.svc";
/// What injected proxies are told the control plane is.
const CONTROL_PLANE: &str = "10.96.0.20:15010";

fn fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures/inject")
}

/// `bin/` of the Python environment with kubernetes-validate and jsonpatch.
fn tools() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::var_os("RINGMESH_K8S_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/opt/ringmesh-venv"));
        let bin = root.join("bin");
        let ok = Command::new(bin.join("python"))
            .args(["-c", "import jsonpatch, kubernetes_validate"])
            .status()
            .is_ok_and(|s| s.success())
            && bin.join("kubernetes-validate").exists();
        assert!(
            ok,
            "kubernetes-validate and jsonpatch are missing from {}: create it with \
             `python3 -m venv {0} && {0}/bin/pip install kubernetes-validate==1.37.0 \
             jsonpatch==1.33` (scripts/test.sh does) or point RINGMESH_K8S_TOOLS at one",
            root.display()
        );
        bin
    })
    .clone()
}

fn curl_available() {
    assert!(
        Command::new("curl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "curl is missing: apt-get install curl"
    );
}

/// `kubernetes-validate --strict` on `file`; panics with its output.
fn validate(file: &Path) {
    let out = Command::new(tools().join("kubernetes-validate"))
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .arg(file)
        .output()
        .expect("running kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("passed"),
        "{} does not validate against Kubernetes {KUBERNETES_VERSION}:\n{text}\n{}",
        file.display(),
        fs::read_to_string(file).unwrap_or_default()
    );
}

fn cli_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("RINGMESH_CLI_BIN", "ringmesh-cli", "ringmesh"))
        .clone()
}

fn init_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("RINGMESH_INIT_BIN", "ringmesh-iptables", "ringmesh-init"))
        .clone()
}

/// `ringmesh-init --dry-run ARGS`: the rules it would install (it parses
/// every flag exactly as in the pod).
fn init_dry_run(args: &[String]) -> String {
    let out = Command::new(init_bin())
        .arg("--dry-run")
        .args(args)
        .output()
        .expect("running ringmesh-init");
    assert!(
        out.status.success(),
        "ringmesh-init refuses the injected arguments {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 rules")
}

/// A `ringmesh-control` with the webhook on; killed by PID on drop.
struct Webhook {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Webhook {
    fn start(extra: &[&str]) -> Webhook {
        let dir = TempDir::new("inject");
        fs::create_dir_all(dir.path().join("mesh")).unwrap();
        let mut cmd = Command::new(control_bin());
        cmd.arg("--config-dir")
            .arg(dir.path().join("mesh"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--xds-address", "127.0.0.1:0"])
            .args(["--webhook-address", "127.0.0.1:0"])
            .args(["--inject-control-plane-address", CONTROL_PLANE])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.path().join("control.log")).unwrap());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("spawning ringmesh-control");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut port = None;
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
            if let Some(a) = line.strip_prefix("WEBHOOK LISTENING ") {
                port = a.parse::<SocketAddr>().ok().map(|a| a.port());
            }
            if line.starts_with("LISTENING ") {
                break;
            }
        }
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ringmesh-control did not print `WEBHOOK LISTENING <addr>`:\n{}",
                fs::read_to_string(dir.path().join("control.log")).unwrap_or_default()
            );
        };
        Webhook { child, port, dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("data/root-cert.pem")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("control.log")).unwrap_or_default()
    }

    /// curl `method path` with `body`, trusting only `ca`, calling the
    /// webhook by `host`. Returns (HTTP status, body); status 0 when curl
    /// itself failed (TLS verification, connection).
    fn request_as(
        &self,
        host: &str,
        ca: &Path,
        method: &str,
        path: &str,
        body: Option<&Path>,
    ) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "-X", method])
            .arg("--cacert")
            .arg(ca)
            .arg("--resolve")
            .arg(format!("{host}:{}:127.0.0.1", self.port))
            .args(["-w", "\n%{http_code}"]);
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(format!("@{}", body.display()));
        }
        let out = cmd
            .arg(format!("https://{host}:{}{path}", self.port))
            .output()
            .expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        if !out.status.success() {
            return (0, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn post(&self, body: &Path) -> (u16, String) {
        self.request_as(WEBHOOK_HOST, &self.root(), "POST", "/inject", Some(body))
    }

    /// POST an AdmissionReview fixture; the answer must be a 200
    /// AdmissionReview v1 for the same uid.
    fn review(&self, fixture: &Path) -> Value {
        let (code, body) = self.post(fixture);
        assert_eq!(code, 200, "{}: {body}\n{}", fixture.display(), self.log());
        let answer: Value = serde_json::from_str(&body).expect("JSON answer");
        let sent: Value = serde_json::from_str(&fs::read_to_string(fixture).unwrap()).unwrap();
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(
            answer["response"]["uid"], sent["request"]["uid"],
            "{answer}"
        );
        answer
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- ringmesh-control log ---\n{}", self.log());
        }
    }
}

/// The pod of an AdmissionReview fixture.
fn fixture_pod(fixture: &Path) -> Value {
    let v: Value = serde_json::from_str(&fs::read_to_string(fixture).unwrap()).unwrap();
    v["request"]["object"].clone()
}

/// Apply a base64 JSON Patch to `pod` with Python's jsonpatch (strict
/// RFC 6902: a path that does not exist fails).
fn apply_patch(dir: &Path, pod: &Value, patch_b64: &str) -> Value {
    let pod_file = dir.join("pod-in.json");
    fs::write(&pod_file, pod.to_string()).unwrap();
    let mut child = Command::new(tools().join("python"))
        .args([
            "-c",
            "import base64, json, sys, jsonpatch\n\
             pod = json.load(open(sys.argv[1]))\n\
             patch = json.loads(base64.b64decode(sys.stdin.read(), validate=True))\n\
             print(json.dumps(jsonpatch.JsonPatch(patch).apply(pod)))",
        ])
        .arg(&pod_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(patch_b64.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the patch does not apply:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("patched pod JSON")
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| {
            l.iter()
                .map(|c| c["name"].as_str().unwrap_or("?"))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|l| l.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The checks every injected pod passes; returns the bootstrap (parsed).
fn check_injected(dir: &Path, name: &str, pod: &Value, native: bool) -> Value {
    let file = dir.join(format!("{name}.json"));
    // kubernetes-validate identifies objects by name; a pod created with
    // generateName gets its name after admission, as the API server will
    // name it (prefix + 5 characters).
    let mut named = pod.clone();
    if named["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        let prefix = pod["metadata"]["generateName"].as_str().unwrap_or("pod-");
        named["metadata"]["name"] = format!("{prefix}x7k2p").into();
    }
    fs::write(&file, serde_json::to_string_pretty(&named).unwrap()).unwrap();
    validate(&file);

    let spec = &pod["spec"];
    let inits = &spec["initContainers"];
    assert_eq!(inits[0]["name"], "ringmesh-init");
    let init = &inits[0];
    assert_eq!(
        init["securityContext"]["capabilities"],
        json!({"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]})
    );
    assert_eq!(init["securityContext"]["privileged"], false);
    let proxy = if native {
        assert_eq!(inits[1]["name"], "ringmesh-proxy");
        assert_eq!(inits[1]["restartPolicy"], "Always");
        &inits[1]
    } else {
        assert_eq!(spec["containers"][0]["name"], "ringmesh-proxy");
        assert!(names(inits).iter().all(|n| *n != "ringmesh-proxy"));
        &spec["containers"][0]
    };
    let sc = &proxy["securityContext"];
    for (k, v) in [
        ("runAsUser", json!(1337)),
        ("runAsGroup", json!(1337)),
        ("runAsNonRoot", json!(true)),
        ("readOnlyRootFilesystem", json!(true)),
        ("allowPrivilegeEscalation", json!(false)),
        ("capabilities", json!({"drop": ["ALL"]})),
    ] {
        assert_eq!(sc[k], v, "proxy securityContext.{k}");
    }
    assert_eq!(proxy["startupProbe"]["httpGet"]["port"], 15021);
    assert_eq!(proxy["readinessProbe"]["httpGet"]["path"], "/ready");
    let env = names(&proxy["env"]);
    for e in [
        "POD_NAME",
        "POD_NAMESPACE",
        "SERVICE_ACCOUNT",
        "INSTANCE_IP",
    ] {
        assert!(env.contains(&e), "{env:?}");
    }
    let volumes = names(&spec["volumes"]);
    for v in ["ringmesh-bootstrap", "ringmesh-token", "ringmesh-work"] {
        assert!(volumes.contains(&v), "{volumes:?}");
    }
    let rules = init_dry_run(&strings(&init["args"]));
    assert!(rules.contains("RINGMESH_OUTPUT"), "{rules}");
    let annotations = &pod["metadata"]["annotations"];
    let status: Value =
        serde_json::from_str(annotations["sidecar.ringmesh.io/status"].as_str().unwrap()).unwrap();
    assert_eq!(status["layout"], if native { "native" } else { "classic" });
    let bootstrap: Value = serde_json_from_yaml(
        annotations["sidecar.ringmesh.io/bootstrap"]
            .as_str()
            .expect("bootstrap annotation"),
    );
    assert_eq!(bootstrap["xds"]["address"], CONTROL_PLANE);
    assert_eq!(bootstrap["identity"]["ca_address"], CONTROL_PLANE);
    bootstrap
}

fn serde_json_from_yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

#[test]
fn webhook_injects_real_admission_reviews_into_valid_pods() {
    curl_available();
    tools();
    let hook = Webhook::start(&[]);
    let work = TempDir::new("inject-out");
    let f = fixtures();

    // A Deployment's pod: named later (generateName), owned by a ReplicaSet.
    let answer = hook.review(&f.join("deployment-pod.json"));
    let r = &answer["response"];
    assert_eq!(r["allowed"], true, "{answer}");
    assert_eq!(r["patchType"], "JSONPatch");
    let pod = apply_patch(
        work.path(),
        &fixture_pod(&f.join("deployment-pod.json")),
        r["patch"].as_str().unwrap(),
    );
    assert_eq!(names(&pod["spec"]["containers"]), ["reviews"]);
    let boot = check_injected(work.path(), "deployment-pod", &pod, true);
    assert_eq!(boot["xds"]["metadata"]["WORKLOAD_NAME"], "reviews-v1");
    assert_eq!(
        boot["xds"]["metadata"]["SERVICE_ACCOUNT"],
        "bookinfo-reviews"
    );
    assert_eq!(boot["xds"]["metadata"]["NAMESPACE"], "bookinfo");
    assert_eq!(
        boot["xds"]["node_id"],
        "sidecar~0.0.0.0~reviews-v1-7d9f8c6b5d-***.bookinfo~bookinfo.svc.cluster.local"
    );
    let args = strings(&pod["spec"]["initContainers"][0]["args"]);
    assert!(
        args.contains(&"--exclude-outbound-ports=5432".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--exclude-outbound-cidrs=169.254.169.254/32".to_string()),
        "{args:?}"
    );
    let rules = init_dry_run(&args);
    assert!(
        rules.contains("5432") && rules.contains("169.254.169.254/32"),
        "{rules}"
    );

    // A bare pod.
    let answer = hook.review(&f.join("bare-pod.json"));
    let pod = apply_patch(
        work.path(),
        &fixture_pod(&f.join("bare-pod.json")),
        answer["response"]["patch"].as_str().expect("a patch"),
    );
    check_injected(work.path(), "bare-pod", &pod, true);
    assert_eq!(
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "curl"
    );

    // Existing init containers run after ours (the proxy is ready first).
    let answer = hook.review(&f.join("init-containers.json"));
    let pod = apply_patch(
        work.path(),
        &fixture_pod(&f.join("init-containers.json")),
        answer["response"]["patch"].as_str().expect("a patch"),
    );
    check_injected(work.path(), "init-containers", &pod, true);
    assert_eq!(
        names(&pod["spec"]["initContainers"]),
        ["ringmesh-init", "ringmesh-proxy", "wait-for-db"]
    );

    // Left alone: opted out, already injected, host network.
    for fixture in ["opt-out.json", "already-injected.json", "host-network.json"] {
        let answer = hook.review(&f.join(fixture));
        assert_eq!(
            answer["response"],
            json!({"uid": answer["response"]["uid"], "allowed": true}),
            "{fixture}"
        );
    }
    let log = hook.log();
    assert!(log.contains("already injected"), "{log}");
    assert!(log.contains("hostNetwork"), "{log}");
}

#[test]
fn classic_layout_for_old_clusters_also_validates() {
    curl_available();
    let hook = Webhook::start(&["--inject-native-sidecar", "false"]);
    let work = TempDir::new("inject-classic");
    let f = fixtures().join("init-containers.json");
    let answer = hook.review(&f);
    let pod = apply_patch(
        work.path(),
        &fixture_pod(&f),
        answer["response"]["patch"].as_str().expect("a patch"),
    );
    check_injected(work.path(), "classic", &pod, false);
    assert_eq!(
        names(&pod["spec"]["containers"]),
        ["ringmesh-proxy", "curl"]
    );
    assert_eq!(
        names(&pod["spec"]["initContainers"]),
        ["ringmesh-init", "wait-for-db"]
    );
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    curl_available();
    let hook = Webhook::start(&[]);
    let work = TempDir::new("inject-bad");
    let f = fixtures();

    let (code, body) = hook.post(&f.join("malformed.json"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not JSON"), "{body}");

    let v1beta1 = work.path().join("v1beta1.json");
    let mut review: Value =
        serde_json::from_str(&fs::read_to_string(f.join("bare-pod.json")).unwrap()).unwrap();
    review["apiVersion"] = "admission.k8s.io/v1beta1".into();
    fs::write(&v1beta1, review.to_string()).unwrap();
    let (code, body) = hook.post(&v1beta1);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("admissionReviewVersions"), "{body}");

    // A pod whose interception annotation ringmesh-init would refuse is
    // denied, with the reason.
    let bad_annotation = work.path().join("bad-annotation.json");
    review["apiVersion"] = "admission.k8s.io/v1".into();
    review["request"]["object"]["metadata"]["annotations"] =
        json!({"traffic.sidecar.istio.io/excludeOutboundPorts": "postgres"});
    fs::write(&bad_annotation, review.to_string()).unwrap();
    let answer = hook.review(&bad_annotation);
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert_eq!(answer["response"]["status"]["code"], 400);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("traffic.sidecar.istio.io/excludeOutboundPorts")
            && message.contains("postgres"),
        "{message}"
    );

    // Over the 4 MiB limit: refused without reading it all into a pod.
    let huge = work.path().join("huge.json");
    let mut big = String::from("{\"kind\":\"AdmissionReview\",\"pad\":\"");
    big.push_str(&"x".repeat(5 << 20));
    big.push_str("\"}");
    fs::write(&huge, big).unwrap();
    let (code, body) = hook.post(&huge);
    assert_eq!(code, 413, "{body}");

    let (code, _) = hook.request_as(WEBHOOK_HOST, &hook.root(), "GET", "/inject", None);
    assert_eq!(code, 405);
    let (code, _) = hook.request_as(WEBHOOK_HOST, &hook.root(), "GET", "/mutate", None);
    assert_eq!(code, 404);
    let (code, body) = hook.request_as(WEBHOOK_HOST, &hook.root(), "GET", "/healthz", None);
    assert_eq!((code, body.trim()), (200, "ok"));

    // The certificate is the CA's, for the Service's DNS name only.
    let (code, err) = hook.request_as(
        "ringmesh-control.other.svc",
        &hook.root(),
        "GET",
        "/healthz",
        None,
    );
    assert_eq!(code, 0, "a wrong name must fail verification");
    assert!(!err.is_empty());
    let other = TempDir::new("inject-other-ca");
    let other_root = other.path().join("root.pem");
    fs::write(
        &other_root,
        rcgen::generate_simple_self_signed(vec![WEBHOOK_HOST.to_string()])
            .unwrap()
            .cert
            .pem(),
    )
    .unwrap();
    let (code, _) = hook.request_as(WEBHOOK_HOST, &other_root, "GET", "/healthz", None);
    assert_eq!(code, 0, "another CA must fail verification");

    // Still serving after all that.
    let answer = hook.review(&f.join("bare-pod.json"));
    assert!(answer["response"]["patch"].is_string());
}

fn inject_cli(args: &[&OsStr], stdin: Option<&[u8]>) -> (bool, String, String) {
    let mut child = Command::new(cli_bin())
        .arg("inject")
        .args(args)
        .args(["--control-plane-address", CONTROL_PLANE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running ringmesh inject");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ringmesh_inject_offline_is_valid_and_idempotent() {
    tools();
    let work = TempDir::new("inject-cli");
    let f = fixtures();
    let deployment = f.join("deployment.yaml");

    let out_file = work.path().join("deployment-injected.yaml");
    let (ok, stdout, stderr) = inject_cli(
        &[
            OsStr::new("-f"),
            deployment.as_os_str(),
            OsStr::new("-o"),
            out_file.as_os_str(),
        ],
        None,
    );
    assert!(ok, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("injected    Deployment/reviews-v1"),
        "{stderr}"
    );
    validate(&out_file);
    let injected = fs::read_to_string(&out_file).unwrap();
    let doc: Value = serde_json_from_yaml(&injected);
    let template = &doc["spec"]["template"];
    let mut as_pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": template["metadata"], "spec": template["spec"],
    });
    as_pod["metadata"]["generateName"] = "reviews-v1-5d8f7c9b6-".into();
    let boot = check_injected(work.path(), "cli-template", &as_pod, true);
    assert_eq!(boot["xds"]["metadata"]["WORKLOAD_NAME"], "reviews-v1");
    assert_eq!(boot["identity"]["service_account"], "bookinfo-reviews");
    let args = strings(&template["spec"]["initContainers"][0]["args"]);
    assert!(
        args.contains(&"--include-inbound-ports=9080".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--exclude-outbound-ports=5432,6379".to_string()),
        "{args:?}"
    );

    // stdin gives the same, and injecting the output again changes nothing.
    let (ok, from_stdin, stderr) = inject_cli(
        &[OsStr::new("-f"), OsStr::new("-")],
        Some(&fs::read(&deployment).unwrap()),
    );
    assert!(ok, "{stderr}");
    assert_eq!(from_stdin, injected);
    let (ok, again, stderr) = inject_cli(
        &[OsStr::new("-f"), OsStr::new("-")],
        Some(injected.as_bytes()),
    );
    assert!(ok, "{stderr}");
    assert_eq!(again, injected, "second injection changed the output");
    assert!(stderr.contains("already injected"), "{stderr}");

    // Multi-document: the Service and the opted-out StatefulSet pass
    // through byte for byte; the Deployment and the CronJob are injected.
    let multi = fs::read_to_string(f.join("multi.yaml")).unwrap();
    let (ok, out, stderr) = inject_cli(&[OsStr::new("-f"), f.join("multi.yaml").as_os_str()], None);
    assert!(ok, "{stderr}");
    let service_doc = &multi[..multi.find("\n---\n").unwrap() + 1];
    assert!(out.starts_with(service_doc), "the Service changed:\n{out}");
    let sts_start = multi.find("kind: StatefulSet").unwrap();
    let sts_doc = &multi[multi[..sts_start].rfind("---\n").unwrap()
        ..multi.find("---\napiVersion: batch/v1").unwrap()];
    assert!(out.contains(sts_doc), "the StatefulSet changed:\n{out}");
    for line in [
        "unchanged   Service/ratings (document 1)",
        "injected    Deployment/ratings-v1 (document 2)",
        "unchanged   StatefulSet/mongodb (document 3)",
        "injected    CronJob/ratings-report (document 4)",
    ] {
        assert!(stderr.contains(line), "{line}\n{stderr}");
    }
    let multi_out = work.path().join("multi-injected.yaml");
    fs::write(&multi_out, &out).unwrap();
    validate(&multi_out);
    let (ok, again, _) = inject_cli(&[OsStr::new("-f"), multi_out.as_os_str()], None);
    assert!(ok);
    assert_eq!(again, out, "second injection changed the output");

    // Errors: unreadable file, bad YAML, an annotation ringmesh-init refuses.
    let (ok, _, stderr) = inject_cli(
        &[
            OsStr::new("-f"),
            work.path().join("missing.yaml").as_os_str(),
        ],
        None,
    );
    assert!(!ok && stderr.contains("cannot read"), "{stderr}");
    let (ok, _, stderr) = inject_cli(
        &[OsStr::new("-f"), OsStr::new("-")],
        Some(b"kind: Pod\nspec: [\n"),
    );
    assert!(!ok && stderr.contains("document 1"), "{stderr}");
    let bad = fs::read_to_string(&deployment)
        .unwrap()
        .replace("\"5432,6379\"", "\"5432,redis\"");
    let (ok, _, stderr) = inject_cli(&[OsStr::new("-f"), OsStr::new("-")], Some(bad.as_bytes()));
    assert!(
        !ok && stderr.contains("traffic.sidecar.istio.io/excludeOutboundPorts"),
        "{stderr}"
    );
}

/// The injected bootstrap's health listener with the real proxy: kubelet's
/// `GET /ready` reaches the admin server through it, nothing else of the
/// admin API does. (Addresses moved to loopback ports and the `xds` and
/// `identity` sections left out: without a cluster there is no control
/// plane at the injected address, and the proxy would wait for it.)
#[test]
fn the_injected_health_listener_forwards_only_ready() {
    curl_available();
    let work = TempDir::new("inject-proxy");
    let (ok, out, stderr) = inject_cli(
        &[
            OsStr::new("-f"),
            fixtures().join("deployment.yaml").as_os_str(),
        ],
        None,
    );
    assert!(ok, "{stderr}");
    let doc = serde_json_from_yaml(&out);
    let text = doc["spec"]["template"]["metadata"]["annotations"]["sidecar.ringmesh.io/bootstrap"]
        .as_str()
        .expect("bootstrap annotation")
        .to_string();
    let mut boot = serde_json_from_yaml(&text);
    assert_eq!(boot["admin"]["address"], "127.0.0.1:15000");
    assert_eq!(boot["listeners"][0]["address"], "0.0.0.0:15021");
    assert_eq!(
        boot["clusters"][0]["endpoints"][0]["address"],
        "127.0.0.1:15000"
    );
    let (admin, health) = (ringmesh_e2e::free_port(), ringmesh_e2e::free_port());
    boot["admin"]["address"] = format!("127.0.0.1:{admin}").into();
    boot["listeners"][0]["address"] = format!("127.0.0.1:{health}").into();
    boot["clusters"][0]["endpoints"][0]["address"] = format!("127.0.0.1:{admin}").into();
    let obj = boot.as_object_mut().unwrap();
    obj.remove("xds");
    obj.remove("identity");
    let config = work.path().join("proxy.yaml");
    fs::write(&config, serde_yaml_ng::to_string(&boot).unwrap()).unwrap();

    let log = work.path().join("proxy.log");
    let mut cmd = Command::new(ringmesh_e2e::proxy_bin());
    cmd.arg("--config")
        .arg(&config)
        .args(["--concurrency", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap());
    die_with_parent(&mut cmd);
    let mut proxy = cmd.spawn().expect("spawning ringmesh-proxy");
    let get = |path: &str| -> u16 {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg(format!("http://127.0.0.1:{health}{path}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let result = std::panic::catch_unwind(|| {
        ringmesh_e2e::wait_for(
            Duration::from_secs(20),
            "the health listener to answer",
            || (get("/ready") == 200).then_some(()),
        );
        for path in ["/stats/prometheus", "/config_dump", "/quitquitquit", "/"] {
            assert_eq!(
                get(path),
                404,
                "{path} must not be reachable on the health port"
            );
        }
    });
    let _ = proxy.kill();
    let _ = proxy.wait();
    if let Err(e) = result {
        eprintln!("{}", fs::read_to_string(&log).unwrap_or_default());
        std::panic::resume_unwind(e);
    }
}
