//! `ringmesh proxy-status` and `ringmesh config-dump`, the real binary
//! against real servers:
//!
//! - proxy-status: an in-test control plane (`ringmesh-xds`'s ADS server
//!   and its `MeshStatus` service on one port) with a real
//!   `ringmesh-proxy` connected to it by Delta ADS; the table while every
//!   type is SYNCED, then after the proxy NACKs an unsupported listener
//!   (exit status 1, the error text in the details), JSON, a filter that
//!   matches nothing, an unreachable control plane and a gRPC server that
//!   is not ringmesh-control.
//! - config-dump: a statically configured `ringmesh-proxy`'s admin
//!   endpoint, every `--type`, YAML, and what happens at a wrong address.
//!
//! The CLI binary is `<target>/<profile>/ringmesh`, or `$RINGMESH_CLI_BIN`;
//! unless that is set, `cargo build -p ringmesh-cli` runs once per test
//! binary.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
    thread,
    time::Duration,
};

use ringmesh_e2e::{
    free_port, refused_addr, wait_for, workspace_bin, workspace_root, Backend, Driver, Proxy,
};
use ringmesh_xds::{
    testing::{
        broken_listener, eds_cluster, http_listener, load_assignment, route_to_cluster,
        ServerThread,
    },
    Resources, StatusService, StreamStatus, SyncState, TypeUrl, XdsServer,
};
use serde_json::{json, Value};
use tokio::sync::oneshot;

const NODE: &str = "sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local";
const CONTROL_PLANE_ID: &str = "e2e-control-0";

fn ringmesh_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("RINGMESH_CLI_BIN", "ringmesh-cli", "ringmesh"))
        .clone()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// `ringmesh ARGS`, stdout piped (so never coloured).
fn ringmesh(args: &[&str]) -> Run {
    let out = Command::new(ringmesh_bin())
        .current_dir(workspace_root())
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("running ringmesh");
    Run {
        code: out.status.code().expect("ringmesh exited by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

// ---------------------------------------------------------------------------
// A control plane: ADS + MeshStatus on one port
// ---------------------------------------------------------------------------

/// `server`'s ADS and MeshStatus services on one loopback port, from a
/// thread with its own runtime (as `ringmesh-control` serves them).
/// Stops on drop.
struct ControlPlane {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ControlPlane {
    fn start(server: XdsServer) -> ControlPlane {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding loopback");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local_addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let status = StatusService::new(server.clone())
                    .with_control_plane(CONTROL_PLANE_ID, "0.1.0")
                    .into_server();
                let serve = tonic::transport::Server::builder()
                    .add_service(server.service())
                    .add_service(status)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
                tokio::select! {
                    r = serve => r.expect("serving ADS and MeshStatus"),
                    _ = stopped => {}
                }
            });
        });
        ControlPlane {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn resources(listener: SocketAddr, backend: &Backend, broken: bool) -> Resources {
    let l = if broken {
        broken_listener("http", listener)
    } else {
        http_listener("http", listener, "local_route")
    };
    Resources::new()
        .with(l)
        .with(route_to_cluster("local_route", "backend"))
        .with(eds_cluster("backend"))
        .with(load_assignment("backend", &[backend.addr()]))
}

fn stream_of(server: &XdsServer) -> Option<StreamStatus> {
    server.status().into_iter().find(|s| s.node.id == NODE)
}

/// A table column: its header and the type it shows.
type Column = (&'static str, fn() -> TypeUrl);

const TYPES: [Column; 4] = [
    ("CDS", TypeUrl::cluster),
    ("LDS", TypeUrl::listener),
    ("EDS", TypeUrl::endpoint),
    ("RDS", TypeUrl::route),
];

/// The table cell the CLI should print for `t` in `s`.
fn expected_cell(s: &StreamStatus, t: &TypeUrl) -> String {
    let Some(ts) = s.types.get(t) else {
        return "NOT SENT".into();
    };
    let mut cell = ts.state().to_string();
    if let Some(a) = &ts.acked {
        cell.push_str(&format!(" ({})", &a.version[..8.min(a.version.len())]));
    }
    cell
}

/// Rows padded to their widest cell, three spaces apart, no trailing
/// blanks: the table as it must be printed.
fn aligned(rows: &[Vec<String>]) -> Vec<String> {
    let mut widths = vec![0; rows[0].len()];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("   ")
                .trim_end()
                .to_owned()
        })
        .collect()
}

fn expected_table(s: &StreamStatus) -> Vec<String> {
    let mut header: Vec<String> = vec!["NAME".into(), "CLUSTER".into()];
    header.extend(TYPES.iter().map(|(n, _)| n.to_string()));
    header.extend(["CONTROL PLANE".into(), "VERSION".into()]);
    let mut row = vec![NODE.to_string(), "app".to_string()];
    row.extend(TYPES.iter().map(|(_, t)| expected_cell(s, &t())));
    row.extend([
        CONTROL_PLANE_ID.to_string(),
        s.node.user_agent_version.clone(),
    ]);
    aligned(&[header, row])
}

#[test]
fn proxy_status_against_a_real_proxy() {
    let backend = Backend::start("b1");
    let listener = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let server = XdsServer::default();
    server.publish("default", resources(listener, &backend, false));
    let cp = ControlPlane::start(server.clone());
    let control = cp.addr.to_string();

    let proxy = Proxy::start(
        Driver::Epoll,
        json!({ "xds": { "address": control, "node_id": NODE, "node_cluster": "app" } }),
    );
    let synced = wait_for(Duration::from_secs(10), "every type SYNCED", || {
        let s = stream_of(&server)?;
        TYPES
            .iter()
            .all(|(_, t)| {
                s.types
                    .get(&t())
                    .is_some_and(|ts| ts.state() == SyncState::Synced)
            })
            .then_some(s)
    });
    assert_eq!(synced.node.user_agent_version, env!("CARGO_PKG_VERSION"));

    // All in sync: the table, exit status 0.
    let run = ringmesh(&["proxy-status", "--control", &control]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(run.lines(), expected_table(&synced));
    assert!(run.lines()[1].contains("SYNCED ("), "{}", run.stdout);
    assert!(!run.stdout.contains('\x1b'), "no colour into a pipe");

    // config-dump shows what came over xDS.
    let admin = proxy.admin_addr().to_string();
    let run = ringmesh(&["config-dump", "--admin", &admin, "--type", "listeners"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(v["listeners"][0]["name"], "http");
    assert_eq!(v["listeners"][0]["address"], listener.to_string());

    // The proxy rejects an unsupported listener: NACKED, exit status 1.
    server.publish("default", resources(listener, &backend, true));
    let nacked = wait_for(Duration::from_secs(10), "the LDS NACK", || {
        let s = stream_of(&server)?;
        (s.types[&TypeUrl::listener()].state() == SyncState::Nacked).then_some(s)
    });
    let run = ringmesh(&["proxy-status", "--control", &control]);
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    assert_eq!(run.lines(), expected_table(&nacked));
    let lds_acked = &synced.types[&TypeUrl::listener()]
        .acked
        .as_ref()
        .unwrap()
        .version;
    assert!(
        run.lines()[1].contains(&format!("NACKED ({})", &lds_acked[..8])),
        "NACKED, still running the version accepted before: {}",
        run.stdout
    );

    // With a proxy: the table, then its details with the error text.
    let lds = &nacked.types[&TypeUrl::listener()];
    let nack = lds.last_nack.as_ref().unwrap();
    let run = ringmesh(&["proxy-status", "--control", &control, "reviews-v1"]);
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    let lines = run.lines();
    assert_eq!(lines[..2], expected_table(&nacked)[..]);
    assert_eq!(lines[2], "");
    assert_eq!(lines[3], NODE);
    assert_eq!(
        lines[4],
        format!(
            "  cluster app, scope default, delta xDS, stream {}, {} {}",
            nacked.stream_id, nacked.node.user_agent_name, nacked.node.user_agent_version
        )
    );
    let rejected_version = &lds.rejected["http"];
    let head = format!("  LDS   NACKED     version {} rejected ", nack.version);
    let lds_line = lines
        .iter()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no line starting with {head:?}:\n{}", run.stdout));
    assert!(
        lds_line.ends_with(&format!("; runs version {lds_acked}")),
        "{lds_line}"
    );
    let indent = " ".repeat(19);
    let reason_line = format!(
        "{indent}rejected http (version {rejected_version}): {}",
        ringmesh_xds::reason_for(&nack.error.message, "http")
    );
    assert!(
        lines.contains(&reason_line.as_str()),
        "{reason_line}\n{}",
        run.stdout
    );
    assert!(
        nack.error.message.contains("Listener \"http\""),
        "the proxy names the listener: {}",
        nack.error.message
    );
    let error_line = format!(
        "{indent}error (InvalidArgument): {}",
        nack.error.message.lines().next().unwrap()
    );
    assert!(
        lines.contains(&error_line.as_str()),
        "{error_line}\n{}",
        run.stdout
    );

    // JSON: the same facts, machine-readable.
    let run = ringmesh(&["proxy-status", "--control", &control, "-o", "json"]);
    assert_eq!(run.code, 1);
    let v: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(v["control_plane"]["id"], CONTROL_PLANE_ID);
    let p = &v["proxies"][0];
    assert_eq!(p["node_id"], NODE);
    assert_eq!(p["types"]["LDS"]["state"], "NACKED");
    assert_eq!(
        p["types"]["LDS"]["last_nack"]["error"]["message"],
        nack.error.message.as_str()
    );
    assert_eq!(p["types"]["CDS"]["state"], "SYNCED");
    let published: BTreeMap<String, String> =
        serde_json::from_value(v["published"]["default"].clone()).unwrap();
    assert_eq!(
        published[TypeUrl::listener().as_str()],
        server.published_versions(&"default".into()).unwrap()[&TypeUrl::listener()]
    );

    // A filter that matches nothing: exit 1 and why.
    let run = ringmesh(&["proxy-status", "--control", &control, "ratings-v9"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("no proxy connected to") && run.stderr.contains("\"ratings-v9\""),
        "{}",
        run.stderr
    );

    // Fixed again: SYNCED, exit 0.
    server.publish("default", resources(listener, &backend, false));
    wait_for(Duration::from_secs(10), "SYNCED again", || {
        stream_of(&server)?.synced().then_some(())
    });
    let run = ringmesh(&["proxy-status", "--control", &control]);
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[test]
fn proxy_status_says_what_to_check() {
    // Nothing listens.
    let addr = refused_addr().to_string();
    let run = ringmesh(&["proxy-status", "--control", &addr]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot reach the control plane at {addr}: "
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Is ringmesh-control running, and is")
            && run.stderr.contains("--control HOST:PORT"),
        "{}",
        run.stderr
    );

    // A gRPC server without MeshStatus (ADS only).
    let ads_only = ServerThread::start(XdsServer::default());
    let run = ringmesh(&["proxy-status", "--control", &ads_only.addr().to_string()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("does not serve ringmesh.mesh.v1.MeshStatus"),
        "{}",
        run.stderr
    );

    // An empty control plane.
    let cp = ControlPlane::start(XdsServer::default());
    let run = ringmesh(&["proxy-status", "--control", &cp.addr.to_string()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "No proxy is connected to the control plane.\n");

    // Usage errors are clap's: exit 2.
    let run = ringmesh(&["proxy-status", "--control", "no-port"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("missing :PORT"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------
// config-dump
// ---------------------------------------------------------------------------

#[test]
fn config_dump_of_a_static_proxy() {
    let backend = Backend::start("web1");
    let mut config = ringmesh_e2e::simple_http_config(&[backend.addr()]);
    config["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "tcp", "address": "auto", "protocol": "tcp", "cluster": "web" }));
    let proxy = Proxy::start(Driver::Epoll, config);
    let admin = proxy.admin_addr().to_string();
    let dump = |args: &[&str]| -> Value {
        let mut all = vec!["config-dump", "--admin", &admin];
        all.extend_from_slice(args);
        let run = ringmesh(&all);
        assert_eq!(run.code, 0, "ringmesh {all:?}: {}", run.stderr);
        if args.contains(&"yaml") {
            serde_yaml_ng::from_str(&run.stdout).expect("YAML")
        } else {
            serde_json::from_str(&run.stdout).expect("JSON")
        }
    };

    let listeners = dump(&["--type", "listeners"]);
    assert_eq!(
        listeners["listeners"],
        json!([
            { "name": "http", "address": proxy.addr("http").to_string(), "protocol": "http", "route_config": "main" },
            { "name": "tcp", "address": proxy.addr("tcp").to_string(), "protocol": "tcp", "cluster": "web" }
        ])
    );
    assert!(listeners["version"].is_string());
    assert_eq!(listeners.as_object().unwrap().len(), 2, "{listeners}");

    let clusters = dump(&["--type", "clusters"]);
    let c = &clusters["clusters"][0];
    assert_eq!(c["name"], "web");
    assert_eq!(c["connect_timeout"], "1s");
    assert!(
        c.get("endpoints").is_none(),
        "endpoints have their own type: {c}"
    );

    let endpoints = dump(&["-t", "endpoints", "-o", "yaml"]);
    assert_eq!(
        endpoints["endpoints"],
        json!([{ "cluster": "web", "endpoints": [{ "address": backend.addr().to_string(), "weight": 1 }] }])
    );

    let routes = dump(&["--type", "routes"]);
    assert_eq!(routes["route_configs"][0]["name"], "main");
    assert_eq!(
        routes["route_configs"][0]["virtual_hosts"][0]["routes"][0]["cluster"],
        "web"
    );

    // The whole dump is the admin endpoint's, pretty-printed.
    let all = dump(&[]);
    assert_eq!(all, proxy.admin_get("/config_dump").json());
    assert_eq!(all["config"]["listeners"], listeners["listeners"]);

    // A listener is not the admin endpoint: the backend behind it answers
    // something that is not a dump.
    let run = ringmesh(&["config-dump", "--admin", &proxy.addr("http").to_string()]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("answered GET /config_dump with something that is not JSON"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--admin HOST:PORT"), "{}", run.stderr);
}

#[test]
fn config_dump_says_what_to_check() {
    let addr = refused_addr().to_string();
    let run = ringmesh(&["config-dump", "--admin", &addr]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot read /config_dump from the admin endpoint {addr}: cannot connect: "
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "Is the proxy running, and is {addr} its admin address"
        )),
        "{}",
        run.stderr
    );

    // Not an admin endpoint: an HTTP server answering plain text.
    let backend = Backend::start("not-admin");
    let run = ringmesh(&[
        "config-dump",
        "--admin",
        &backend.addr().to_string(),
        "--type",
        "clusters",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with(&format!(
            "error: {} answered GET /config_dump with something that is not JSON",
            backend.addr()
        )),
        "{}",
        run.stderr
    );

    let run = ringmesh(&["config-dump", "--type", "secrets"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("invalid value 'secrets'"),
        "{}",
        run.stderr
    );
}

#[test]
fn help_has_examples() {
    for cmd in ["proxy-status", "config-dump"] {
        let run = ringmesh(&[cmd, "--help"]);
        assert_eq!(run.code, 0);
        assert!(run.stdout.contains("Examples:"), "{cmd}: {}", run.stdout);
        assert!(
            run.stdout.contains(&format!("ringmesh {cmd}")),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("Exit status:"), "{}", run.stdout);
    }
    let run = ringmesh(&["--help"]);
    assert!(run.stdout.contains("proxy-status") && run.stdout.contains("config-dump"));
}
