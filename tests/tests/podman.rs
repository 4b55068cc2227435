//! The container image under podman (runc): the `FROM scratch` image that
//! `deploy/build-image.sh` builds, run the way a user would run it.
//!
//! - default seccomp profile: io_uring is blocked (ENOSYS), the proxy says
//!   so, runs on epoll and serves traffic;
//! - `deploy/seccomp/ringmesh-proxy.json`: the proxy runs on io_uring;
//! - a `podman pod` (own network namespace, like a Kubernetes pod): an app
//!   container and the sidecar share the pod's loopback, and the app is
//!   reached through the sidecar.
//!
//! Needs root and podman + runc (`apt-get install -y podman runc`); without
//! them every test fails saying so. The images are built once per run
//! (tagged `:e2e-<pid>`, removed when the test binary exits); containers
//! and pods are named `ringmesh-e2e-<pid>-...` and removed by their guards,
//! also when a test fails. Leftovers of a run that was killed are removed
//! by the next run.

use std::{
    env,
    fs::{self, File},
    io,
    net::SocketAddr,
    os::{fd::AsRawFd, unix::fs::PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    thread,
    time::Duration,
};

use ringmesh_e2e::{
    free_port, simple_http_config, to_yaml, wait_for, workspace_root, Backend, Client, Metrics,
    Response, TempDir,
};
use serde_json::json;

const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];
const FALLBACK_LOG: &str = "io_uring unavailable, falling back to the epoll driver";

// ---------------------------------------------------------------------------
// podman
// ---------------------------------------------------------------------------

fn prefix() -> String {
    format!("ringmesh-e2e-{}", std::process::id())
}

/// A `containers.conf` for this run. Its only setting: default ulimits
/// within this machine's hard limits. `podman run` gets `--ulimit` flags,
/// but a pod's infra container can only get them from here (podman 4.3's
/// `pod create` has no `--ulimit`), and podman's built-in default
/// (nofile=1048576) is above the hard limit here, so runc fails with
/// "error setting rlimit type 7: operation not permitted".
fn containers_conf() -> PathBuf {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    CONF.get_or_init(|| {
        let path = env::temp_dir().join(format!("{}-containers.conf", prefix()));
        fs::write(
            &path,
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n",
        )
        .expect("writing containers.conf");
        path
    })
    .clone()
}

fn podman_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", containers_conf()).args(args);
    cmd
}

fn podman_output(args: &[&str]) -> Output {
    podman_cmd(args)
        .output()
        .unwrap_or_else(|e| panic!("running podman {args:?}: {e}"))
}

/// Run podman, panic with its stderr on failure, return stdout.
fn podman(args: &[&str]) -> String {
    let out = podman_output(args);
    assert!(
        out.status.success(),
        "podman {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|paths| {
        env::split_paths(&paths).any(|d| {
            fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Fail (never skip) when this machine cannot run the tests.
fn require_podman() {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the podman tests need root (rootful podman with host networking and pods); \
         run `sudo -E cargo test -p ringmesh-e2e --test podman`"
    );
    for program in ["podman", "runc"] {
        assert!(
            on_path(program),
            "`{program}` is not installed: the podman tests need it \
             (`apt-get install -y podman runc`)"
        );
    }
}

/// The images of this run.
struct Images {
    proxy: String,
    testbed: String,
}

/// Build both images once per test binary (the first test to get here
/// builds, the others wait), and arrange for them to be removed when the
/// test binary exits.
fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        require_podman();
        remove_leftovers();
        let pid = std::process::id();
        let images = Images {
            proxy: format!("localhost/ringmesh-proxy:e2e-{pid}"),
            testbed: format!("localhost/ringmesh-testbed:e2e-{pid}"),
        };
        // SAFETY: atexit(3) only records the function pointer; the
        // function is `extern "C"`, takes nothing and never unwinds.
        unsafe { libc::atexit(remove_images_at_exit) };
        let script = workspace_root().join("deploy/build-image.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["--tag", &images.proxy, "--testbed-tag", &images.testbed])
            .current_dir(workspace_root())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "deploy/build-image.sh failed ({}):\n{log}",
            out.status
        );
        eprintln!(
            "{}",
            log.lines()
                .filter(|l| l.contains("KiB"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        images
    })
}

extern "C" fn remove_images_at_exit() {
    let pid = std::process::id();
    let _ = Command::new("podman")
        .args([
            "rmi",
            "--force",
            "--ignore",
            &format!("localhost/ringmesh-proxy:e2e-{pid}"),
            &format!("localhost/ringmesh-testbed:e2e-{pid}"),
        ])
        .output();
    let _ = fs::remove_file(env::temp_dir().join(format!("ringmesh-e2e-{pid}-containers.conf")));
}

/// The PID in a name `ringmesh-e2e-<pid>-...` or a tag `e2e-<pid>`, if that
/// process is gone.
fn dead_owner(name: &str) -> bool {
    let digits: String = name
        .split("e2e-")
        .nth(1)
        .unwrap_or("")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    !digits.is_empty() && !Path::new(&format!("/proc/{digits}")).exists()
}

/// Remove pods, containers and images of earlier runs that were killed
/// before their guards could.
fn remove_leftovers() {
    let list = |args: &[&str]| -> Vec<String> {
        let out = podman_output(args);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|n| n.starts_with("ringmesh-e2e-") || n.contains(":e2e-"))
            .map(String::from)
            .collect()
    };
    for pod in list(&["pod", "ps", "--format", "{{.Name}}"]) {
        if dead_owner(&pod) {
            let _ = podman_output(&["pod", "rm", "--force", "--time", "0", &pod]);
        }
    }
    for c in list(&["ps", "--all", "--format", "{{.Names}}"]) {
        if dead_owner(&c) {
            let _ = podman_output(&["rm", "--force", "--time", "0", &c]);
        }
    }
    for image in list(&["images", "--format", "{{.Repository}}:{{.Tag}}"]) {
        if dead_owner(&image) {
            let _ = podman_output(&["rmi", "--force", "--ignore", &image]);
        }
    }
}

/// A container, removed (killed at once) on drop; its log is printed if
/// the test is failing.
struct Container {
    name: String,
}

impl Container {
    /// `podman run -d --name ringmesh-e2e-<pid>-<tag> --runtime runc
    /// --ulimit ... OPTIONS IMAGE ARGS`.
    fn run(tag: &str, options: &[&str], image: &str, args: &[&str]) -> Container {
        // Guard first, so a failed start is cleaned up too.
        let c = Container {
            name: format!("{}-{tag}", prefix()),
        };
        let mut all = vec!["run", "--detach", "--name", &c.name, "--runtime", "runc"];
        all.extend(ULIMITS);
        all.extend(options);
        all.push(image);
        all.extend(args);
        podman(&all);
        c
    }

    fn logs(&self) -> String {
        let out = podman_output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn running(&self) -> bool {
        podman(&["inspect", "--format", "{{.State.Running}}", &self.name]) == "true"
    }

    /// The container's main process as seen from the host.
    fn host_pid(&self) -> u32 {
        podman(&["inspect", "--format", "{{.State.Pid}}", &self.name])
            .parse()
            .expect("a PID")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- container {} log ---\n{}", self.name, self.logs());
        }
        let _ = podman_output(&["rm", "--force", "--time", "0", &self.name]);
    }
}

/// A pod with its own network namespace (`--network none`: loopback only,
/// nothing published), removed with its containers on drop.
struct Pod {
    name: String,
}

impl Pod {
    fn create(tag: &str) -> Pod {
        let pod = Pod {
            name: format!("{}-{tag}", prefix()),
        };
        podman(&[
            "--runtime",
            "runc",
            "pod",
            "create",
            "--name",
            &pod.name,
            "--network",
            "none",
        ]);
        pod
    }

    /// The pod's network namespace (that of its infra container).
    fn netns(&self) -> File {
        let infra = podman(&[
            "pod",
            "inspect",
            "--format",
            "{{.InfraContainerID}}",
            &self.name,
        ]);
        let pid = podman(&["inspect", "--format", "{{.State.Pid}}", &infra]);
        File::open(format!("/proc/{pid}/ns/net"))
            .unwrap_or_else(|e| panic!("opening the pod's network namespace (pid {pid}): {e}"))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = podman_output(&["pod", "rm", "--force", "--time", "0", &self.name]);
    }
}

/// Run `f` on a thread that has joined `netns` (or the test's own network
/// namespace for `None`). setns(CLONE_NEWNET) changes only the calling
/// thread's namespace, so the rest of the test is unaffected, and sockets
/// `f` opens belong to that namespace.
fn within<T: Send>(netns: Option<&File>, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        s.spawn(|| {
            if let Some(ns) = netns {
                // SAFETY: `ns` is an open /proc/PID/ns/net file for the
                // duration of the call; setns(2) only switches this
                // thread's network namespace, and this thread ends when
                // `f` returns.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

fn get(addr: SocketAddr, host: &str, path: &str) -> io::Result<Response> {
    let mut c = Client::try_connect(addr, Duration::from_secs(2))?;
    c.request("GET", host, path, &[("Connection", "close")], b"")
}

/// Wait for the proxy's `/ready`, failing early (with its log) if the
/// container exits.
fn wait_ready(proxy: &Container, netns: Option<&File>, admin: SocketAddr) {
    wait_for(
        Duration::from_secs(20),
        "the proxy's /ready to answer 200",
        || {
            assert!(
                proxy.running(),
                "the proxy container exited:\n{}",
                proxy.logs()
            );
            within(netns, || get(admin, "admin", "/ready"))
                .ok()
                .filter(|r| r.status == 200)
        },
    );
}

fn metrics(netns: Option<&File>, admin: SocketAddr) -> Metrics {
    let r = within(netns, || get(admin, "admin", "/stats/prometheus"))
        .unwrap_or_else(|e| panic!("GET /stats/prometheus: {e}"));
    assert_eq!(r.status, 200, "{}", r.status_line);
    Metrics::parse(&r.text())
}

fn io_driver_lines(m: &Metrics) -> String {
    m.text
        .lines()
        .filter(|l| l.starts_with("ringmesh_io_driver"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A directory holding `proxy.yaml`, readable by the proxy's UID 1337,
/// to mount over the image's /etc/ringmesh.
fn config_dir(config: &serde_json::Value) -> TempDir {
    let dir = TempDir::new("podman-config");
    let file = dir.path().join("proxy.yaml");
    fs::write(&file, to_yaml(config)).expect("writing proxy.yaml");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    dir
}

fn mount(dir: &TempDir) -> String {
    format!("{}:/etc/ringmesh:ro", dir.path().display())
}

fn seccomp_profile() -> String {
    let p = workspace_root().join("deploy/seccomp/ringmesh-proxy.json");
    assert!(
        p.exists(),
        "{} is missing: run deploy/seccomp/generate.sh",
        p.display()
    );
    format!("seccomp={}", p.display())
}

/// The host-network proxy of tests 1 and 2: an HTTP listener on a free
/// loopback port routing to a testbed on the host, started with the
/// image's default command (its config mounted at /etc/ringmesh).
struct HostProxy {
    container: Container,
    listener: SocketAddr,
    admin: SocketAddr,
    backend: Backend,
    _config: TempDir,
}

fn start_host_proxy(tag: &str, extra: &[&str]) -> HostProxy {
    let images = images();
    let backend = Backend::start("host-backend");
    let listener = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut config = simple_http_config(&[backend.addr()]);
    config["admin"] = json!({ "address": admin.to_string() });
    config["listeners"][0]["address"] = json!(listener.to_string());
    let dir = config_dir(&config);
    let volume = mount(&dir);
    let mut options = vec!["--network", "host", "--read-only", "--volume", &volume];
    options.extend(extra);
    let container = Container::run(tag, &options, &images.proxy, &[]);
    wait_ready(&container, None, admin);
    HostProxy {
        container,
        listener,
        admin,
        backend,
        _config: dir,
    }
}

impl HostProxy {
    /// A few requests through the proxy reach the host's backend.
    fn assert_serves(&self) {
        for i in 0..5 {
            let r = get(self.listener, "example.com", &format!("/echo?i={i}"))
                .unwrap_or_else(|e| panic!("request {i} through the container: {e}"));
            assert_eq!(r.status, 200, "{}\n{}", r.status_line, r.text());
            assert_eq!(r.header("x-backend"), Some(self.backend.name()));
            assert_eq!(r.json()["target"], format!("/echo?i={i}"));
        }
    }

    /// The proxy process runs as 1337:1337, as the image says.
    fn assert_runs_as_1337(&self) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.container.host_pid()))
            .expect("reading the proxy's /proc status");
        for field in ["Uid:", "Gid:"] {
            let line = status
                .lines()
                .find(|l| l.starts_with(field))
                .unwrap_or_default();
            let ids: Vec<&str> = line.split_whitespace().skip(1).collect();
            assert_eq!(ids, ["1337"; 4], "{line}");
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// podman's default seccomp profile answers io_uring_setup with ENOSYS: the
/// proxy must say so, run on epoll, and serve.
#[test]
fn default_seccomp_falls_back_to_epoll() {
    let p = start_host_proxy("epoll", &[]);
    let logs = p.container.logs();
    let line = logs
        .lines()
        .find(|l| l.contains(FALLBACK_LOG))
        .unwrap_or_else(|| panic!("no {FALLBACK_LOG:?} line in the log:\n{logs}"));
    assert!(
        line.contains("ENOSYS"),
        "the fallback reason is not ENOSYS: {line}"
    );
    let m = metrics(None, p.admin);
    assert!(
        m.get_or_zero("ringmesh_io_driver", &[("driver", "epoll")]) >= 1.0
            && m.get_or_zero("ringmesh_io_driver", &[("driver", "io_uring")]) == 0.0,
        "expected every shard on epoll:\n{}",
        io_driver_lines(&m)
    );
    p.assert_serves();
    p.assert_runs_as_1337();
}

/// With deploy/seccomp/ringmesh-proxy.json the same image runs on io_uring.
#[test]
fn seccomp_profile_enables_io_uring() {
    let profile = seccomp_profile();
    let p = start_host_proxy("uring", &["--security-opt", &profile]);
    let m = metrics(None, p.admin);
    assert!(
        m.get_or_zero("ringmesh_io_driver", &[("driver", "io_uring")]) >= 1.0
            && m.get_or_zero("ringmesh_io_driver", &[("driver", "epoll")]) == 0.0,
        "expected every shard on io_uring:\n{}\nlog:\n{}",
        io_driver_lines(&m),
        p.container.logs()
    );
    let logs = p.container.logs();
    assert!(!logs.contains(FALLBACK_LOG), "{logs}");
    p.assert_serves();
    p.assert_runs_as_1337();
}

/// A pod: the app (ringmesh-testbed, its own static image, default seccomp)
/// and the sidecar (io_uring profile) share the pod's network namespace;
/// the app listens on the pod's loopback only and is reached through the
/// sidecar from inside the pod.
#[test]
fn pod_app_reached_through_sidecar() {
    let images = images();
    let pod = Pod::create("pod");
    let app_addr = SocketAddr::from(([127, 0, 0, 1], 8080));
    let listener = SocketAddr::from(([127, 0, 0, 1], 15080));
    let admin = SocketAddr::from(([127, 0, 0, 1], 15000));
    let mut config = simple_http_config(&[app_addr]);
    config["admin"] = json!({ "address": admin.to_string() });
    config["listeners"][0]["address"] = json!(listener.to_string());
    let dir = config_dir(&config);

    let app = Container::run(
        "pod-app",
        &["--pod", &pod.name, "--read-only"],
        &images.testbed,
        &["--listen", &app_addr.to_string(), "--name", "app"],
    );
    let volume = mount(&dir);
    let profile = seccomp_profile();
    let sidecar = Container::run(
        "pod-sidecar",
        &[
            "--pod",
            &pod.name,
            "--read-only",
            "--volume",
            &volume,
            "--security-opt",
            &profile,
        ],
        &images.proxy,
        &[],
    );
    let netns = pod.netns();
    wait_ready(&sidecar, Some(&netns), admin);
    assert!(app.running(), "the app container exited:\n{}", app.logs());

    let answers = within(Some(&netns), || {
        (0..5)
            .map(|i| get(listener, "app.default.svc", &format!("/echo?i={i}")))
            .collect::<Vec<_>>()
    });
    for (i, r) in answers.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("request {i} through the sidecar: {e}"));
        assert_eq!(r.status, 200, "{}\n{}", r.status_line, r.text());
        assert_eq!(r.header("x-backend"), Some("app"));
        let echo = r.json();
        assert_eq!(echo["target"], format!("/echo?i={i}"));
        // The sidecar added its forwarding headers: it really was in the path.
        assert!(
            ringmesh_e2e::echo_header(&echo, "x-forwarded-for")
                .iter()
                .any(|v| v.contains("127.0.0.1")),
            "{echo}"
        );
    }

    let m = metrics(Some(&netns), admin);
    assert!(
        m.get_or_zero("ringmesh_io_driver", &[("driver", "io_uring")]) >= 1.0,
        "the sidecar should run on io_uring with its profile:\n{}",
        io_driver_lines(&m)
    );
    // The app is not on the host's loopback: the pod has its own.
    let host_side = get(app_addr, "app", "/");
    assert!(
        host_side
            .as_ref()
            .map_or(true, |r| r.header("x-backend") != Some("app")),
        "the pod's app answered on the host's loopback"
    );
}
