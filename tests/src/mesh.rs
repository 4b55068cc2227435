//! A mesh on loopback: `ringmesh-control` reading a directory of registry
//! objects and Istio resources, serving xDS to proxies (ours or Envoy)
//! that each play one "pod" on its own `127.0.0.x` address.

use std::{
    ffi::OsString,
    fs,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, OnceLock},
    thread,
    time::Duration,
};

use serde_json::{json, Value};

use crate::{die_with_parent, workspace_bin, TempDir};

/// The control-plane binary; built once per test binary (or
/// `$RINGMESH_CONTROL_BIN`).
pub fn control_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        workspace_bin(
            "RINGMESH_CONTROL_BIN",
            "ringmesh-control",
            "ringmesh-control",
        )
    })
    .clone()
}

/// A running `ringmesh-control`, killed by PID on drop.
pub struct ControlPlane {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl ControlPlane {
    /// Serve the mesh in `config_dir` on a free loopback port.
    pub fn start(config_dir: &Path) -> ControlPlane {
        Self::start_on(config_dir, "127.0.0.1:0".parse().expect("address"))
    }

    /// Serve the mesh in `config_dir` on `addr` (a restart reuses the
    /// address its proxies know), with a CA of its own in a temporary
    /// data directory. Returns once the port is open.
    pub fn start_on(config_dir: &Path, addr: SocketAddr) -> ControlPlane {
        Self::start_with_data(config_dir, addr, None)
    }

    /// As [`ControlPlane::start_on`], with the CA (root and token key) in
    /// `data_dir` when given: tests that mint tokens or sign certificates
    /// themselves open the same directory.
    pub fn start_with_data(
        config_dir: &Path,
        addr: SocketAddr,
        data_dir: Option<&Path>,
    ) -> ControlPlane {
        let mut source = vec![OsString::from("--config-dir"), config_dir.into()];
        // Tests change files and wait for the effect: poll briskly.
        source.extend(["--poll-interval".into(), "100ms".into()]);
        Self::spawn(&source, addr, data_dir)
    }

    /// Serve the mesh a Kubernetes API server at `api` holds
    /// (`--kubernetes --kube-api API`), CA data in `data_dir` when given.
    pub fn start_kubernetes(api: &str, data_dir: Option<&Path>) -> ControlPlane {
        let source = ["--kubernetes", "--kube-api", api].map(OsString::from);
        Self::spawn(&source, "127.0.0.1:0".parse().expect("address"), data_dir)
    }

    fn spawn(source: &[OsString], addr: SocketAddr, data_dir: Option<&Path>) -> ControlPlane {
        let dir = TempDir::new("control");
        let log = dir.path().join("control.log");
        let data = data_dir.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        let mut cmd = Command::new(control_bin());
        cmd.args(source)
            .arg("--data-dir")
            .arg(&data)
            .args(["--xds-address", &addr.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("RINGMESH_CONTROL_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("creating the control-plane log"));
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", control_bin().display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(addr) = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|a| a.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ringmesh-control did not print `LISTENING <addr>` (got {line:?}); its log:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        };
        ControlPlane {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, no goodbye: what a crash or an evicted pod looks like.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Panics with the log if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("ringmesh-control exited with {status}:\n{}", self.log());
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- ringmesh-control log ---\n{}", self.log());
        }
    }
}

/// Istio's node id for a sidecar: `sidecar~IP~POD.NS~NS.svc.cluster.local`.
pub fn node_id(ip: &str, pod: &str, namespace: &str) -> String {
    format!("sidecar~{ip}~{pod}.{namespace}~{namespace}.svc.cluster.local")
}

/// The `xds` section of a ringmesh-proxy bootstrap for a pod at `ip` with
/// no iptables (`INTERCEPTION_MODE: NONE`): the control plane binds its
/// listeners on `ip` (outbound HTTP proxy on `ip:15001`, inbound on
/// `ip:<target port>`).
pub fn pod_xds(control: SocketAddr, ip: &str, pod: &str, namespace: &str, labels: Value) -> Value {
    json!({
        "address": control.to_string(),
        "node_id": node_id(ip, pod, namespace),
        "node_cluster": pod,
        "metadata": pod_metadata(ip, pod, namespace, labels),
    })
}

/// Istio's node metadata keys for such a pod.
pub fn pod_metadata(ip: &str, pod: &str, namespace: &str, labels: Value) -> Value {
    json!({
        "NAMESPACE": namespace,
        "INSTANCE_IPS": ip,
        "INTERCEPTION_MODE": "NONE",
        "WORKLOAD_NAME": pod,
        "LABELS": labels,
    })
}

/// Write `text` to `dir/name` atomically (temp file + rename), as editors
/// and `kubectl`-style tools do, so the control plane never reads half a
/// file.
pub fn write_atomic(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, text).expect("writing a mesh file");
    fs::rename(&tmp, dir.join(name)).expect("renaming a mesh file into place");
}

/// A bootstrap token for `spiffe://cluster.local/ns/NAMESPACE/sa/SA`,
/// minted by `ringmesh-control token` with the token key in `data_dir`
/// (the control plane's `--data-dir`).
pub fn mint_token(data_dir: &Path, namespace: &str, service_account: &str) -> String {
    let out = Command::new(control_bin())
        .arg("token")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--namespace",
            namespace,
            "--service-account",
            service_account,
        ])
        .args(["--ttl", "1h"])
        .stdin(Stdio::null())
        .output()
        .expect("running ringmesh-control token");
    assert!(
        out.status.success(),
        "ringmesh-control token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("the token is UTF-8");
    let token = token.trim();
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{token:?}"
    );
    token.to_owned()
}
