//! Test support for the end-to-end suite: start the real `ringmesh-proxy`
//! and `ringmesh-testbed` processes on loopback, talk raw HTTP/1.1 to them,
//! read the admin endpoints and metrics.
//!
//! - [`Backend`] runs `ringmesh-testbed` on `127.0.0.1:0`, optionally
//!   recording every byte it receives.
//! - [`Proxy`] writes a configuration (a `serde_json::Value` rendered as
//!   YAML; listener addresses `"auto"` get free loopback ports) into a temp
//!   directory, starts the proxy with an explicit `--io-driver`, and waits
//!   for `/ready`.
//! - [`Client`] sends exact bytes and parses responses (Content-Length,
//!   chunked with trailers, close-delimited, interim 1xx) with timeouts.
//!
//! Children are killed by PID when their guard drops, and additionally get
//! `PR_SET_PDEATHSIG`, so a test binary killed mid-run leaves no orphans.
//! A consequence: create a `Proxy`/`Backend` on the thread that owns it for
//! the whole test (the signal fires when the *spawning thread* exits).
//!
//! Binaries: the proxy is `<target>/<profile>/ringmesh-proxy`, or
//! `$RINGMESH_PROXY_BIN`. Unless that variable is set, the suite runs
//! `cargo build -p ringmesh-proxy` once per test binary so it never tests a
//! stale proxy. A missing or broken binary fails the tests loudly.

use std::{
    collections::HashMap,
    env,
    fmt::Write as _,
    fs,
    io::{self, BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, OnceLock,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

pub mod envoy;
pub mod mesh;

/// The deterministic byte stream `/bytes/N` serves and large uploads send:
/// byte `i` is `i % 251` (a prime period, so it never lines up with buffer
/// or chunk sizes and a dropped or repeated slice changes the checksum).
pub mod pattern {
    use std::sync::OnceLock;

    const PERIOD: usize = 251;
    /// A whole number of periods, just under 64 KiB.
    const BLOCK_LEN: usize = PERIOD * 261;

    /// Byte `i` of the stream.
    pub fn byte(i: u64) -> u8 {
        (i % PERIOD as u64) as u8
    }

    /// A block starting at stream position 0; since its length is a whole
    /// number of periods, `block()[block_offset(pos)..]` continues the
    /// stream at `pos`.
    pub fn block() -> &'static [u8] {
        static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
        BLOCK.get_or_init(|| (0..BLOCK_LEN as u64).map(byte).collect())
    }

    /// Where in [`block`] stream position `pos` is found.
    pub fn block_offset(pos: u64) -> usize {
        (pos % PERIOD as u64) as usize
    }

    /// Visit the first `len` bytes of the stream in slices of at most
    /// [`block`]'s length.
    pub fn for_each_slice(len: u64, mut f: impl FnMut(&[u8])) {
        let block = block();
        let mut pos = 0u64;
        while pos < len {
            let off = block_offset(pos);
            let n = (block.len() - off).min(usize::try_from(len - pos).unwrap_or(usize::MAX));
            f(&block[off..off + n]);
            pos += n as u64;
        }
    }

    /// CRC-32 of the first `len` bytes of the stream.
    pub fn crc32(len: u64) -> u32 {
        let mut h = crc32fast::Hasher::new();
        for_each_slice(len, |s| h.update(s));
        h.finalize()
    }
}

/// The I/O driver a proxy under test is asked to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Uring,
    Epoll,
}

impl Driver {
    /// The `--io-driver` argument.
    pub fn arg(self) -> &'static str {
        match self {
            Driver::Uring => "uring",
            Driver::Epoll => "epoll",
        }
    }
    /// The `driver` label of `ringmesh_io_driver`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Driver::Uring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Generate, for each `fn NAME(driver: Driver)` named, a module `NAME` with
/// two tests, `uring` and `epoll`, so every proxy test runs on both drivers
/// (`cargo test NAME::epoll` runs one).
#[macro_export]
macro_rules! on_both_drivers {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn uring() {
                    super::$name($crate::Driver::Uring)
                }
                #[test]
                fn epoll() {
                    super::$name($crate::Driver::Epoll)
                }
            }
        )+
    };
}

// ---------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------

/// `<target>/<profile>`: the directory holding this package's binaries,
/// derived from the running test executable (`<target>/<profile>/deps/..`).
pub fn profile_dir() -> PathBuf {
    let exe = env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test executable has a parent directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// The workspace root (this package lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `ringmesh-testbed` binary built alongside the running test.
pub fn testbed_bin() -> PathBuf {
    if let Some(p) = env::var_os("RINGMESH_TESTBED_BIN") {
        return PathBuf::from(p);
    }
    let p = profile_dir().join("ringmesh-testbed");
    assert!(
        p.exists(),
        "{} is missing: run the suite with `cargo test -p ringmesh-e2e` (cargo builds the testbed \
         binary before the tests) or set RINGMESH_TESTBED_BIN",
        p.display()
    );
    p
}

/// Build workspace targets into this test binary's profile directory (so
/// they are never stale), e.g. `["-p", "ringmesh-proxy", "--bin",
/// "ringmesh-proxy"]`; panics with cargo's output if the build fails.
pub fn cargo_build(what: &[&str]) {
    let dir = profile_dir();
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root()).arg("build").args(what);
    // The test process carries the variables cargo sets for *this* crate
    // (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...). Build scripts such as
    // ring's rerun when those change, so inheriting them would rebuild
    // ring and everything above it here, and again at the next top-level
    // `cargo build`: a minute per binary each way.
    for (key, _) in env::vars_os() {
        if let Some(k) = key.to_str() {
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .iter()
            .any(|p| k.starts_with(p))
            {
                cmd.env_remove(&key);
            }
        }
    }
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    if let Some(target) = dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running `cargo build {}`: {e}", what.join(" ")));
    assert!(
        out.status.success(),
        "`cargo build {}` failed; the end-to-end tests need it:\n{}",
        what.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A workspace binary for the tests: `$env_var` if set, else built once
/// per test binary with [`cargo_build`].
pub fn workspace_bin(env_var: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(p) = env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "{env_var}={} does not exist", p.display());
        return p;
    }
    cargo_build(&["-p", package, "--bin", bin]);
    let p = profile_dir().join(bin);
    assert!(
        p.exists(),
        "{} missing after a successful build",
        p.display()
    );
    p
}

/// The proxy under test; built once per test binary (see the crate docs).
pub fn proxy_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("RINGMESH_PROXY_BIN", "ringmesh-proxy", "ringmesh-proxy"))
        .clone()
}

// ---------------------------------------------------------------------------
// Processes, ports, temp dirs
// ---------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop unless the test
/// is failing (then its path is printed, for the logs inside).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = env::temp_dir().join(format!(
            "ringmesh-e2e-{tag}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A loopback port for a proxy listener or admin address. The proxy binds
/// one socket per shard with `SO_REUSEPORT`, so it cannot be handed port 0.
///
/// Ports come from just below the kernel's ephemeral range, so the
/// thousands of outgoing connections the suite makes (whose local ports
/// are ephemeral) can never occupy one between our check and the proxy's
/// bind; and they are handed out in sequence, so no port is returned twice
/// by one test process (binding port 0 twice in a row can return the same
/// port). Each is checked to be bindable now.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok())
        })
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(12_000).max(1024);
    let span = ephemeral_low.saturating_sub(low);
    if span >= 1000 {
        let start = (std::process::id() % 97) * 101 % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
            let port = (low + (start + n) % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// `127.0.0.1:<port>` where nothing listens: connections are refused.
pub fn refused_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls prctl(2), which is async-signal-safe, and touches no memory of
    // the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Send `sig` to `pid`.
pub fn send_signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own
    // child, which we have not reaped yet, so it cannot have been reused.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
}

/// Poll `f` every 20 ms until it returns `Some`, or panic after `timeout`
/// saying what did not happen.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// Backend
// ---------------------------------------------------------------------------

/// A running `ringmesh-testbed`.
pub struct Backend {
    child: Child,
    addr: SocketAddr,
    name: String,
    record: Option<PathBuf>,
    log: PathBuf,
    _dir: TempDir,
}

impl Backend {
    /// A backend answering with body `name`, not recording.
    pub fn start(name: &str) -> Backend {
        Self::spawn(name, "127.0.0.1:0", false)
    }

    /// A backend answering with body `name`, listening on `listen`
    /// (`IP:PORT`, port 0 for any), e.g. a "pod" address `127.0.0.7:0`.
    pub fn start_on(name: &str, listen: &str) -> Backend {
        Self::spawn(name, listen, false)
    }

    /// A backend that appends every byte it receives to its record file
    /// (read it with [`Backend::recorded`]).
    pub fn start_recording(name: &str) -> Backend {
        Self::spawn(name, "127.0.0.1:0", true)
    }

    fn spawn(name: &str, listen: &str, record: bool) -> Backend {
        let dir = TempDir::new(&format!("backend-{name}"));
        let log = dir.path().join("testbed.log");
        let record = record.then(|| dir.path().join("record.bin"));
        let mut cmd = Command::new(testbed_bin());
        cmd.args(["--listen", listen, "--name", name]);
        if let Some(r) = &record {
            cmd.arg("--record").arg(r);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("creating the testbed log"));
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", testbed_bin().display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("ringmesh-testbed {name} did not print LISTENING within 10 s");
            }
        };
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                panic!("ringmesh-testbed {name} printed {line:?} instead of `LISTENING <addr>`")
            });
        Backend {
            child,
            addr,
            name: name.to_string(),
            record,
            log,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the backend has received so far.
    pub fn recorded(&self) -> Vec<u8> {
        let path = self
            .record
            .as_ref()
            .expect("recorded() needs Backend::start_recording");
        fs::read(path).unwrap_or_default()
    }

    /// Empty the record file (the backend appends with O_APPEND, so later
    /// writes land at the new end).
    pub fn clear_record(&self) {
        let path = self
            .record
            .as_ref()
            .expect("clear_record() needs Backend::start_recording");
        fs::write(path, b"").expect("truncate the record file");
    }

    /// `/_testbed/stats` asked directly (not through the proxy):
    /// `connections`, `active`, `requests`; the stats request itself counts.
    pub fn stats(&self) -> Value {
        let mut c = Client::connect(self.addr);
        c.get("testbed", "/_testbed/stats").json()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = self.log();
            if !log.is_empty() {
                eprintln!("--- testbed {} log ---\n{}", self.name, tail(&log, 40));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Proxy
// ---------------------------------------------------------------------------

/// How to start a proxy.
#[derive(Debug, Clone)]
pub struct ProxyOpts {
    pub driver: Driver,
    /// `--concurrency` (shards). The suite uses 1 unless a test is about
    /// several shards: this machine has two cores.
    pub concurrency: u32,
    /// `RUST_LOG` for the proxy unless the environment sets one.
    pub rust_log: String,
    /// Overrides the `--io-driver` value (e.g. `auto`); `driver` otherwise.
    pub driver_arg: Option<String>,
}

impl ProxyOpts {
    pub fn new(driver: Driver) -> ProxyOpts {
        ProxyOpts {
            driver,
            concurrency: 1,
            rust_log: "info".into(),
            driver_arg: None,
        }
    }
}

/// A running `ringmesh-proxy`, killed on drop.
pub struct Proxy {
    child: Child,
    dir: TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    admin: SocketAddr,
    listeners: HashMap<String, SocketAddr>,
    /// Set once the test asked it to exit (SIGTERM): then its death is not
    /// a failure.
    exit_expected: bool,
    exited: Option<ExitStatus>,
}

impl Proxy {
    /// Start with [`ProxyOpts::new`] defaults and wait for `/ready`.
    pub fn start(driver: Driver, config: Value) -> Proxy {
        Self::start_with(ProxyOpts::new(driver), config)
    }

    /// Start with explicit options. `config` is the YAML model as JSON;
    /// `admin` is filled in when absent, and listener addresses `"auto"` get
    /// free ports.
    pub fn start_with(opts: ProxyOpts, config: Value) -> Proxy {
        // A port picked for us can still be taken by someone else before
        // the proxy binds it: then pick new ones and try again.
        let mut attempt = 1;
        loop {
            match Self::try_start(&opts, config.clone()) {
                Ok(proxy) => {
                    if opts.driver_arg.is_none() {
                        proxy.assert_driver(opts.driver);
                    }
                    return proxy;
                }
                Err(failed) => {
                    let (mut proxy, why) = *failed;
                    let log = proxy.log();
                    let port_taken = log.contains("in use") || log.contains("AddrInUse");
                    proxy.exit_expected = true;
                    if port_taken && attempt < 3 {
                        attempt += 1;
                        continue;
                    }
                    panic!(
                        "{why}\nconfig:\n{}\nlog:\n{}",
                        fs::read_to_string(&proxy.config_path).unwrap_or_default(),
                        tail(&log, 60)
                    );
                }
            }
        }
    }

    fn try_start(opts: &ProxyOpts, mut config: Value) -> Result<Proxy, Box<(Proxy, String)>> {
        let bin = proxy_bin();
        let dir = TempDir::new("proxy");
        let admin = match config.pointer("/admin/address").and_then(Value::as_str) {
            Some(a) => a.parse().expect("admin.address is IP:PORT"),
            None => {
                let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
                config["admin"] = serde_json::json!({ "address": a.to_string() });
                a
            }
        };
        let mut listeners = HashMap::new();
        if let Some(ls) = config.get_mut("listeners").and_then(Value::as_array_mut) {
            for l in ls {
                let name = l["name"].as_str().expect("listener name").to_string();
                if l["address"] == "auto" {
                    l["address"] = Value::String(format!("127.0.0.1:{}", free_port()));
                }
                let addr = l["address"]
                    .as_str()
                    .expect("listener address")
                    .parse()
                    .expect("listener IP:PORT");
                listeners.insert(name, addr);
            }
        }
        let config_path = dir.path().join("ringmesh.yaml");
        fs::write(&config_path, to_yaml(&config)).expect("writing the proxy config");
        let log_path = dir.path().join("proxy.log");
        let log = fs::File::create(&log_path).expect("creating the proxy log");
        let mut cmd = Command::new(&bin);
        cmd.arg("--config")
            .arg(&config_path)
            .args(["--concurrency", &opts.concurrency.to_string()])
            .args([
                "--io-driver",
                opts.driver_arg.as_deref().unwrap_or(opts.driver.arg()),
            ])
            .env(
                "RUST_LOG",
                env::var("RUST_LOG").unwrap_or_else(|_| opts.rust_log.clone()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let mut proxy = Proxy {
            child,
            dir,
            config_path,
            log_path,
            admin,
            listeners,
            exit_expected: false,
            exited: None,
        };
        match proxy.wait_ready(Duration::from_secs(15)) {
            Ok(()) => Ok(proxy),
            Err(why) => Err(Box::new((proxy, why))),
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Err(format!(
                    "ringmesh-proxy exited with {status} before becoming ready"
                ));
            }
            if let Ok(r) = self.try_admin_get("/ready") {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if self.log().contains("in use") {
                return Err("ringmesh-proxy cannot bind a port".into());
            }
            if Instant::now() >= deadline {
                return Err(format!("ringmesh-proxy not ready within {timeout:?}"));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Every test states the driver it runs on; a proxy that silently fell
    /// back to the other one would make half the suite a duplicate of the
    /// other half, so that fails here, loudly.
    fn assert_driver(&self, driver: Driver) {
        let m = self.metrics();
        let on = m.get_or_zero("ringmesh_io_driver", &[("driver", driver.metric_label())]);
        assert!(
            on >= 1.0,
            "asked for --io-driver {} but ringmesh_io_driver does not show {:?} in use (is io_uring \
             blocked here, e.g. by a container's seccomp profile?):\n{}\nlog:\n{}",
            driver.arg(),
            driver.metric_label(),
            m.text.lines().filter(|l| l.starts_with("ringmesh_io_driver")).collect::<Vec<_>>().join("\n"),
            tail(&self.log(), 20)
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address of the listener called `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .listeners
            .get(name)
            .unwrap_or_else(|| panic!("no listener {name:?} in the config"))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// GET on the admin address, one connection per call.
    pub fn try_admin_get(&self, path: &str) -> io::Result<Response> {
        let mut c = Client::try_connect(self.admin, Duration::from_secs(2))?;
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        )?;
        c.read_response()
    }

    pub fn admin_get(&self, path: &str) -> Response {
        self.try_admin_get(path)
            .unwrap_or_else(|e| panic!("admin GET {path}: {e}\nlog:\n{}", tail(&self.log(), 40)))
    }

    pub fn metrics(&self) -> Metrics {
        let r = self.admin_get("/stats/prometheus");
        assert_eq!(
            r.status, 200,
            "/stats/prometheus answered {}",
            r.status_line
        );
        Metrics::parse(&r.text())
    }

    /// Wait (up to 3 s: counters are read from the shards asynchronously)
    /// until the metric sums to `expected`; panic with the last value and
    /// the matching lines otherwise.
    pub fn wait_metric(&self, name: &str, labels: &[(&str, &str)], expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let m = self.metrics();
            let got = m.get(name, labels);
            if got == Some(expected) {
                return;
            }
            if Instant::now() >= deadline {
                let lines: Vec<&str> = m.text.lines().filter(|l| l.starts_with(name)).collect();
                panic!(
                    "{name}{labels:?}: expected {expected}, got {got:?}\n{}",
                    lines.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&mut self, sig: libc::c_int) {
        if sig == libc::SIGTERM || sig == libc::SIGINT || sig == libc::SIGKILL {
            self.exit_expected = true;
        }
        send_signal(self.pid(), sig);
    }

    /// Replace the configuration file atomically (write + rename), keeping
    /// the admin and listener addresses this proxy already has (listeners
    /// are matched by name; `"auto"` addresses are filled the same way).
    ///
    /// A listener name this proxy has not had before gets a new port, and
    /// [`Proxy::addr`] knows it from then on.
    pub fn rewrite_config(&mut self, mut config: Value) {
        config["admin"] = serde_json::json!({ "address": self.admin.to_string() });
        if let Some(ls) = config.get_mut("listeners").and_then(Value::as_array_mut) {
            for l in ls {
                let name = l["name"].as_str().expect("listener name").to_string();
                if l["address"] == "auto" {
                    let addr = *self
                        .listeners
                        .entry(name)
                        .or_insert_with(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
                    l["address"] = Value::String(addr.to_string());
                }
            }
        }
        self.write_config_text(&to_yaml(&config));
    }

    /// Replace the configuration file with exactly `text` (write + rename).
    pub fn write_config_text(&self, text: &str) {
        let tmp = self.dir.path().join("ringmesh.yaml.tmp");
        fs::write(&tmp, text).expect("writing the new config");
        fs::rename(&tmp, &self.config_path).expect("renaming the new config into place");
    }

    /// The current configuration file.
    pub fn config_text(&self) -> String {
        fs::read_to_string(&self.config_path).unwrap_or_default()
    }

    /// Wait up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return self.exited;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exited = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// Panic (with the log) if the proxy died.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.exited = Some(status);
            self.exit_expected = true;
            panic!(
                "ringmesh-proxy died unexpectedly ({status})\nlog:\n{}",
                tail(&self.log(), 60)
            );
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let died = match self.exited {
            Some(s) => Some(s),
            None => self.child.try_wait().ok().flatten(),
        };
        if died.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- ringmesh-proxy log (last 60 lines) ---\n{}",
                tail(&self.log(), 60)
            );
        } else if let (Some(status), false) = (died, self.exit_expected) {
            panic!(
                "ringmesh-proxy died during the test ({status})\nlog:\n{}",
                tail(&self.log(), 60)
            );
        }
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A one-shot-per-connection raw upstream on 127.0.0.1:0: for each
/// connection it reads until the end of a request head, writes `reply`
/// verbatim and closes. For upstreams that misbehave in ways the testbed
/// will not.
pub fn raw_upstream(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a raw upstream");
    let addr = listener.local_addr().expect("local_addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while memchr::memmem::find(&head, b"\r\n\r\n").is_none() {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(reply);
                let _ = s.shutdown(Shutdown::Write);
                // Drain until the proxy closes, so our close is not a reset.
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------
// Configuration rendering
// ---------------------------------------------------------------------------

/// Render a JSON value as block-style YAML (strings double-quoted, so any
/// content is safe). Block style keeps one field per line, so the proxy's
/// error messages can point at a line.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(_) | Value::Array(_) => yaml_block(value, 0, &mut out),
        scalar => {
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
    out
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(o) if !o.is_empty())
}

fn yaml_block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if is_block(v) {
                    let _ = writeln!(out, "{pad}{k}:");
                    yaml_block(v, indent + 2, out);
                } else {
                    let _ = writeln!(out, "{pad}{k}: {}", yaml_scalar(v));
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_block(item) {
                    // Render the item one level deeper, then put its first
                    // line after the dash.
                    let mut inner = String::new();
                    yaml_block(item, indent + 2, &mut inner);
                    let inner = inner.replacen(&format!("{pad}  "), &format!("{pad}- "), 1);
                    out.push_str(&inner);
                } else {
                    let _ = writeln!(out, "{pad}- {}", yaml_scalar(item));
                }
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{}", yaml_scalar(scalar));
        }
    }
}

/// The smallest useful configuration: one HTTP listener `http` routing
/// everything (any host, prefix `/`) to cluster `web` with `endpoints`.
pub fn simple_http_config(endpoints: &[SocketAddr]) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|a| serde_json::json!({ "address": a.to_string() }))
        .collect();
    serde_json::json!({
        "listeners": [
            { "name": "http", "address": "auto", "protocol": "http", "route_config": "main" }
        ],
        "route_configs": [{
            "name": "main",
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [{ "match": { "prefix": "/" }, "cluster": "web" }]
            }]
        }],
        "clusters": [
            { "name": "web", "connect_timeout": "1s", "lb_policy": "round_robin", "endpoints": eps }
        ]
    })
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 client
// ---------------------------------------------------------------------------

/// A parsed response.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// The status line without CRLF, e.g. `HTTP/1.1 400 Bad Request`.
    pub status_line: String,
    pub status: u16,
    /// In order, as received (names as sent).
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked); empty when streamed to a sink.
    pub body: Vec<u8>,
    /// Body length as received (also when streamed).
    pub body_len: u64,
    pub chunked: bool,
    pub trailers: Vec<(String, String)>,
    /// The head exactly as received.
    pub raw_head: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Every value of header `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// A `Connection` header lists `close`.
    pub fn has_connection_close(&self) -> bool {
        self.headers_named("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}\n{:?}",
                self.status_line,
                self.text()
            )
        })
    }
}

/// A client connection that sends exact bytes and reads responses.
pub struct Client {
    stream: TcpStream,
    /// Received but not yet consumed.
    buf: Vec<u8>,
}

impl Client {
    /// Connect or panic (5 s connect timeout, 10 s read timeout).
    pub fn connect(addr: SocketAddr) -> Client {
        Self::try_connect(addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream
            .set_read_timeout(Some(d))
            .expect("set_read_timeout");
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// Read more bytes into the buffer; `Ok(0)` at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        let n = loop {
            match self.stream.read(&mut tmp) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    fn fill_or_eof(&mut self, what: &str) -> io::Result<()> {
        if self.fill()? == 0 {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed while reading {what}; had {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            ))
        } else {
            Ok(())
        }
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(p) = memchr::memmem::find(&self.buf, b"\r\n") {
                let line = self.buf[..p].to_vec();
                self.buf.drain(..p + 2);
                return Ok(line);
            }
            self.fill_or_eof("a chunked body line")?;
        }
    }

    /// Read one response (possibly an interim 1xx) to a non-HEAD request.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let mut body = Vec::new();
        let mut r = self.read_response_streaming(false, &mut |b| body.extend_from_slice(b))?;
        r.body = body;
        Ok(r)
    }

    /// Read responses until a final (non-1xx) one.
    pub fn read_final_response(&mut self) -> io::Result<Response> {
        loop {
            let r = self.read_response()?;
            if !(100..200).contains(&r.status) {
                return Ok(r);
            }
        }
    }

    /// Read one response, handing body bytes to `sink` instead of keeping
    /// them. `head_request`: the request was HEAD (no body follows).
    pub fn read_response_streaming(
        &mut self,
        head_request: bool,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Response> {
        let head_len = loop {
            if let Some(p) = memchr::memmem::find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            self.fill_or_eof("a response head")?;
        };
        let raw_head: Vec<u8> = self.buf.drain(..head_len).collect();
        let text = String::from_utf8_lossy(&raw_head).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("").to_string();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {status_line:?}"),
                )
            })?;
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (n, v) = line.split_once(':').ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad header line {line:?}"),
                )
            })?;
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut r = Response {
            status_line,
            status,
            headers,
            raw_head,
            ..Response::default()
        };
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(r);
        }
        let te = r.header("transfer-encoding").map(str::to_ascii_lowercase);
        if te
            .as_deref()
            .is_some_and(|t| t.trim_end().ends_with("chunked"))
        {
            r.chunked = true;
            loop {
                let line = self.read_line()?;
                let line = String::from_utf8_lossy(&line).into_owned();
                let size_text = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk size line {line:?}"),
                    )
                })?;
                if size == 0 {
                    break;
                }
                self.read_exact_to(size, &mut r.body_len, sink)?;
                if !self.read_line()?.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "chunk data not followed by CRLF",
                    ));
                }
            }
            loop {
                let line = self.read_line()?;
                if line.is_empty() {
                    break;
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                if let Some((n, v)) = line.split_once(':') {
                    r.trailers.push((n.to_string(), v.trim().to_string()));
                }
            }
        } else if let Some(cl) = r.header("content-length") {
            let len: u64 = cl.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad content-length {cl:?}"),
                )
            })?;
            self.read_exact_to(len, &mut r.body_len, sink)?;
        } else {
            // Delimited by close.
            loop {
                if !self.buf.is_empty() {
                    r.body_len += self.buf.len() as u64;
                    sink(&self.buf);
                    self.buf.clear();
                }
                if self.fill()? == 0 {
                    break;
                }
            }
        }
        Ok(r)
    }

    fn read_exact_to(
        &mut self,
        mut left: u64,
        count: &mut u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<()> {
        while left > 0 {
            if self.buf.is_empty() {
                self.fill_or_eof("a response body")?;
            }
            let n = self
                .buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            sink(&self.buf[..n]);
            self.buf.drain(..n);
            left -= n as u64;
            *count += n as u64;
        }
        Ok(())
    }

    /// Send a request with a Content-Length body (if any) and read the
    /// final response. `headers` are written verbatim after `Host`.
    pub fn request(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (n, v) in headers {
            let _ = write!(req, "{n}: {v}\r\n");
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            let _ = write!(req, "Content-Length: {}\r\n", body.len());
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes)?;
        if method == "HEAD" {
            self.read_response_streaming(true, &mut |_| {})
        } else {
            self.read_final_response()
        }
    }

    /// `GET path` with `Host: host`; panics on I/O errors.
    pub fn get(&mut self, host: &str, path: &str) -> Response {
        self.request("GET", host, path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
    }

    /// Read until the peer closes or `timeout` passes. Returns the bytes
    /// (including any still buffered) and whether the peer closed (EOF or
    /// reset) rather than timing out.
    pub fn read_until_close(&mut self, timeout: Duration) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (std::mem::take(&mut self.buf), false);
            }
            self.set_read_timeout(left.max(Duration::from_millis(1)));
            match self.fill() {
                Ok(0) => return (std::mem::take(&mut self.buf), true),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return (std::mem::take(&mut self.buf), true),
            }
        }
    }
}

/// The headers an `/echo` answer reports, in order.
pub fn echo_headers(echo: &Value) -> Vec<(String, String)> {
    echo["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("not an /echo answer: {echo}"))
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap_or("").to_string(),
                p[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Every value of header `name` (case-insensitive) in an `/echo` answer.
pub fn echo_header(echo: &Value, name: &str) -> Vec<String> {
    echo_headers(echo)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// Bytes as readable text for assertion messages (escapes, truncated).
pub fn show(bytes: &[u8]) -> String {
    let limit = 300;
    let mut s: String = bytes
        .iter()
        .take(limit)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > limit {
        let _ = write!(s, "... ({} bytes)", bytes.len());
    }
    s
}

// ---------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------

/// One sample of the exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A parsed `/stats/prometheus` answer.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Metrics {
            text: text.to_string(),
            samples,
        }
    }

    /// Sum of the samples of `name` whose labels include every pair in
    /// `labels`; `None` if no sample matches.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for s in self.samples.iter().filter(|s| s.name == name) {
            if labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            {
                *found.get_or_insert(0.0) += s.value;
            }
        }
        found
    }

    /// Like [`Metrics::get`], treating a missing series as 0.
    pub fn get_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((k, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(match e {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((k.trim().trim_start_matches(',').trim().to_string(), value));
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_block_continues_the_stream() {
        let mut all = Vec::new();
        pattern::for_each_slice(200_000, |s| all.extend_from_slice(s));
        assert_eq!(all.len(), 200_000);
        assert!(all
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern::byte(i as u64)));
        assert_eq!(pattern::crc32(200_000), crc32fast::hash(&all));
    }

    #[test]
    fn yaml_rendering() {
        let v = serde_json::json!({
            "admin": { "address": "127.0.0.1:1" },
            "empty": [],
            "listeners": [{ "name": "http", "protocol": "http" }],
            "vh": [{ "domains": ["a", "*.b"], "routes": [{ "match": { "prefix": "/" } }] }]
        });
        let y = to_yaml(&v);
        let expected = "admin:\n  address: \"127.0.0.1:1\"\nempty: []\nlisteners:\n  - name: \"http\"\n    \
                        protocol: \"http\"\nvh:\n  - domains:\n      - \"a\"\n      - \"*.b\"\n    routes:\n      \
                        - match:\n          prefix: \"/\"\n";
        assert_eq!(y, expected, "\n{y}");
    }

    #[test]
    fn metrics_parsing() {
        let m = Metrics::parse(
            "# TYPE x counter\nringmesh_shards 2\nreq{listener=\"a\",code_class=\"2xx\"} 3\n\
             req{listener=\"b\",code_class=\"2xx\"} 4\nesc{v=\"a\\\"b\"} 1\n",
        );
        assert_eq!(m.get("ringmesh_shards", &[]), Some(2.0));
        assert_eq!(m.get("req", &[("code_class", "2xx")]), Some(7.0));
        assert_eq!(m.get("req", &[("listener", "b")]), Some(4.0));
        assert_eq!(m.get("req", &[("listener", "c")]), None);
        assert_eq!(m.get("esc", &[("v", "a\"b")]), Some(1.0));
    }
}
