//! The Kubernetes manifests (deploy/kubernetes): every object validates
//! against the Kubernetes schema (`kubernetes-validate --strict`, offline);
//! Istio resources validate against our CRDs' schemas
//! (`validate-crd-instances.py`, since kubernetes-validate knows only
//! built-in kinds), and that check does fail on bad ones; the control
//! plane's Deployment uses flags `ringmesh-control` really has; and the CA
//! Secret `make-ca.sh` writes, mounted the way kubelet mounts Secrets,
//! serves a webhook certificate that verifies with the caBundle it wrote.
//!
//! Needs `kubernetes-validate` and PyYAML in `$RINGMESH_K8S_TOOLS`
//! (default /opt/ringmesh-venv), curl and coreutils' base64; fails loudly
//! without them. checkov runs in scripts/test.sh (slow, whole directory).

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use ringmesh_e2e::{die_with_parent, mesh::control_bin, workspace_root, TempDir};
use serde_json::Value;

const KUBERNETES_VERSION: &str = "1.33.0";

fn k8s_dir() -> PathBuf {
    workspace_root().join("deploy/kubernetes")
}

fn tools() -> PathBuf {
    let root = std::env::var_os("RINGMESH_K8S_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/ringmesh-venv"));
    let bin = root.join("bin");
    assert!(
        bin.join("kubernetes-validate").exists()
            && Command::new(bin.join("python"))
                .args(["-c", "import yaml"])
                .status()
                .is_ok_and(|s| s.success()),
        "kubernetes-validate is missing from {}: `python3 -m venv {0} && {0}/bin/pip install \
         kubernetes-validate==1.37.0` (scripts/test.sh does) or set RINGMESH_K8S_TOOLS",
        root.display()
    );
    bin
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn base_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(k8s_dir().join("base"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap();
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            docs.push(String::new());
        } else {
            let last = docs.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.iter()
        .map(|d| {
            serde_yaml_ng::from_str::<Value>(d)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schema() {
    let files = base_files();
    // Every file of the base is in its kustomization, and the reverse.
    let kustomization = documents(&k8s_dir().join("base/kustomization.yaml"));
    let mut listed: Vec<&str> = kustomization[0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    listed.sort();
    let mut present: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    present.sort();
    assert_eq!(listed, present);

    let (ok, out) = run(Command::new(tools().join("kubernetes-validate"))
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(&files));
    assert!(ok, "{out}");
    let mut kinds = Vec::new();
    for f in &files {
        for d in documents(f) {
            let kind = d["kind"].as_str().unwrap().to_ascii_lowercase();
            let name = d["metadata"]["name"].as_str().unwrap();
            assert!(
                out.contains(&format!("passed for resource {kind}/{name} ")),
                "{kind}/{name} not validated:\n{out}"
            );
            kinds.push(kind);
        }
    }
    for kind in [
        "namespace",
        "deployment",
        "service",
        "serviceaccount",
        "clusterrole",
        "clusterrolebinding",
        "poddisruptionbudget",
        "networkpolicy",
        "customresourcedefinition",
        "mutatingwebhookconfiguration",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} in the manifests"
        );
    }
    // The six Istio kinds the control plane reads.
    let crds: Vec<String> = documents(&k8s_dir().join("base/crds.yaml"))
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        crds,
        [
            "virtualservices.networking.istio.io",
            "destinationrules.networking.istio.io",
            "serviceentries.networking.istio.io",
            "sidecars.networking.istio.io",
            "authorizationpolicies.security.istio.io",
            "peerauthentications.security.istio.io",
        ]
    );
}

#[test]
fn istio_resources_validate_against_our_crds_and_bad_ones_do_not() {
    let script = k8s_dir().join("validate-crd-instances.py");
    let crds = k8s_dir().join("base/crds.yaml");
    let samples: Vec<PathBuf> =
        fs::read_dir(workspace_root().join("control/model/testdata/bookinfo"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
    let (ok, out) = run(Command::new(tools().join("python"))
        .arg(&script)
        .arg(&crds)
        .args(&samples));
    assert!(ok, "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
    for kind in [
        "VirtualService",
        "DestinationRule",
        "ServiceEntry",
        "Sidecar",
        "AuthorizationPolicy",
        "PeerAuthentication",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok ") && l.contains(&format!(": {kind}/"))),
            "{kind}:\n{out}"
        );
    }

    let dir = TempDir::new("crd-instances");
    let bad = dir.path().join("bad.yaml");
    fs::write(
        &bad,
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\n\
         spec: {mtls: {mode: STRICTEST}}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: b}\n\
         spec: {host: reviews, subset: [v1]}\n---\n\
         apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {name: c}\n\
         spec: {hosts: [a.example], ports: [{number: 70000, name: http}]}\n",
    )
    .unwrap();
    let (ok, out) = run(Command::new(tools().join("python"))
        .arg(&script)
        .arg(&crds)
        .arg(&bad));
    assert!(!ok, "{out}");
    for problem in [
        "'STRICTEST' is not one of",
        "unknown field 'subset'",
        "70000 > 65535",
        "3 failed",
    ] {
        assert!(out.contains(problem), "{problem}:\n{out}");
    }
}

/// The Deployment's container args, `$(RINGMESH_CONTROL_SERVICE_HOST)`
/// expanded as kubelet would.
fn deployment_args() -> Vec<String> {
    let docs = documents(&k8s_dir().join("base/deployment.yaml"));
    docs[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .replace("$(RINGMESH_CONTROL_SERVICE_HOST)", "10.96.0.20")
        })
        .collect()
}

#[test]
fn the_deployment_uses_real_flags() {
    let args = deployment_args();
    assert!(args.iter().any(|a| a == "--webhook-address=0.0.0.0:15017"));
    // clap stops at --help only when everything before it parses.
    let (ok, out) = run(Command::new(control_bin()).args(&args).arg("--help"));
    assert!(
        ok,
        "ringmesh-control refuses the Deployment's args {args:?}:\n{out}"
    );
    let (ok, _) = run(Command::new(control_bin())
        .args(&args)
        .arg("--no-such-flag")
        .arg("--help"));
    assert!(!ok, "the check above cannot fail");
}

fn decode_base64(text: &str) -> Vec<u8> {
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("coreutils base64");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn the_ca_secret_from_make_ca_serves_a_webhook_the_ca_bundle_verifies() {
    let dir = TempDir::new("make-ca");
    let (ok, out) = run(Command::new(k8s_dir().join("make-ca.sh"))
        .arg(dir.path())
        .env("RINGMESH_CONTROL", control_bin()));
    assert!(ok, "{out}");
    let secret_file = dir.path().join("ca-secret.yaml");
    let (ok, out) = run(Command::new(tools().join("kubernetes-validate"))
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .arg(&secret_file));
    assert!(ok, "{out}");
    // Again: refused, the CA is kept.
    let before = fs::read(&secret_file).unwrap();
    let (ok, out) = run(Command::new(k8s_dir().join("make-ca.sh"))
        .arg(dir.path())
        .env("RINGMESH_CONTROL", control_bin()));
    assert!(!ok && out.contains("--force"), "{out}");
    assert_eq!(fs::read(&secret_file).unwrap(), before);

    // Mount the Secret as kubelet does: files in a timestamped directory,
    // `..data` pointing at it, each key a symlink through `..data`.
    let secret = &documents(&secret_file)[0];
    let data_dir = dir.path().join("ca-volume");
    let stamp = data_dir.join("..2026_11_24_08_00_00.000000001");
    fs::create_dir_all(&stamp).unwrap();
    std::os::unix::fs::symlink(stamp.file_name().unwrap(), data_dir.join("..data")).unwrap();
    for (key, value) in secret["data"].as_object().unwrap() {
        fs::write(stamp.join(key), decode_base64(value.as_str().unwrap())).unwrap();
        std::os::unix::fs::symlink(format!("..data/{key}"), data_dir.join(key)).unwrap();
    }
    let listing = |p: &Path| {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let files_before = listing(&data_dir);

    let patch = &documents(&dir.path().join("webhook-ca-bundle.yaml"))[0];
    let bundle = decode_base64(patch[0]["value"].as_str().unwrap());
    assert_eq!(patch[1]["value"], patch[0]["value"]);
    let bundle_file = dir.path().join("ca-bundle.pem");
    fs::write(&bundle_file, &bundle).unwrap();
    assert_eq!(bundle, fs::read(data_dir.join("root-cert.pem")).unwrap());

    fs::create_dir_all(dir.path().join("mesh")).unwrap();
    let log = dir.path().join("control.log");
    let mut cmd = Command::new(control_bin());
    cmd.arg("--config-dir")
        .arg(dir.path().join("mesh"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args([
            "--xds-address",
            "127.0.0.1:0",
            "--webhook-address",
            "127.0.0.1:0",
        ])
        .args(["--inject-control-plane-address", "10.96.0.20:15010"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).unwrap());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut port = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        if let Some(a) = line.strip_prefix("WEBHOOK LISTENING ") {
            port = a.rsplit(':').next().map(str::to_string);
            break;
        }
    }
    let result = (|| {
        let port = port.ok_or("no WEBHOOK LISTENING line")?;
        let host = "ringmesh-control.ringmesh-system.svc";
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&bundle_file)
            .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
            .arg(format!("https://{host}:{port}/healthz"))
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != "ok" {
            return Err(format!(
                "the webhook does not verify with the caBundle: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    let text = fs::read_to_string(&log).unwrap_or_default();
    if let Err(e) = result {
        panic!("{e}\n{text}");
    }
    assert!(
        text.contains("LoadedRoot"),
        "the Secret's root was not loaded:\n{text}"
    );
    assert_eq!(
        listing(&data_dir),
        files_before,
        "the control plane wrote into its Secret"
    );
}
