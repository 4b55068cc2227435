//! `ringmesh-init` in real network namespaces: the rules it installs, that
//! they intercept what they should (seen through `SO_ORIGINAL_DST`, with
//! `ringmesh_iptables::original_dst`), that they leave alone what they
//! should, idempotence and `--cleanup`.
//!
//! Each test builds its own world: a "pod" namespace and, where traffic
//! leaves the pod, a "peer" namespace joined to it by a veth pair
//! (pod 10.99.0.1/24 — peer 10.99.0.2/24 and 10.99.0.3/24). No packet
//! leaves these namespaces. Listeners are the `original-dst-echo` example
//! of `ringmesh-iptables`: each answers a connection with one line naming
//! itself and the connection's original destination; clients are the same
//! program run as a chosen UID/GID (`setpriv`), since the owner match is
//! what separates the app from the proxy.
//!
//! Needs root, `ip` (iproute2), `iptables` (iptables-nft) and `setpriv`
//! (util-linux); without them every test fails saying what to install.

use std::{
    collections::HashMap,
    env, fs,
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc, OnceLock,
    },
    thread,
    time::Duration,
};

use ringmesh_e2e::profile_dir;

const APP: (u32, u32) = (1000, 1000);
const PROXY: (u32, u32) = (1337, 1337);
const ROOT: (u32, u32) = (0, 0);

// ---------------------------------------------------------------------------
// Prerequisites and binaries
// ---------------------------------------------------------------------------

fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|paths| {
        env::split_paths(&paths).any(|d| {
            fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Fail (never skip) when this machine cannot run the tests.
fn require() {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the network-namespace tests need root (network namespaces, iptables); \
         run `sudo -E cargo test -p ringmesh-e2e --test netns`"
    );
    for (program, package) in [
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("iptables-restore", "iptables"),
        ("iptables-save", "iptables"),
        ("ip6tables-save", "iptables"),
        ("setpriv", "util-linux"),
    ] {
        assert!(
            on_path(program),
            "`{program}` is not installed: the network-namespace tests need it \
             (`apt-get install -y {package}`)"
        );
    }
}

struct Bins {
    init: PathBuf,
    echo: PathBuf,
}

/// `ringmesh-init` and the `original-dst-echo` example, built once per test
/// binary into this profile's directory (so they are never stale).
fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        require();
        ringmesh_e2e::cargo_build(&[
            "-p",
            "ringmesh-iptables",
            "--bin",
            "ringmesh-init",
            "--example",
            "original-dst-echo",
        ]);
        let dir = profile_dir();
        let bins = Bins {
            init: dir.join("ringmesh-init"),
            echo: dir.join("examples").join("original-dst-echo"),
        };
        assert!(bins.init.exists() && bins.echo.exists());
        bins
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn check(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) {
    check(Command::new("ip").args(args));
}

// ---------------------------------------------------------------------------
// Namespaces, listeners, clients
// ---------------------------------------------------------------------------

/// A named network namespace with loopback up, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        // Prerequisites first (and the binaries built), so a machine
        // without them fails with what to install.
        bins();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let ns = Netns {
            name: format!(
                "rm-{}-{}-{tag}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ),
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NAME program args...`
    fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    fn init(&self, args: &[&str]) -> String {
        check(self.exec(&bins().init).args(args))
    }

    fn nat(&self, program: &str) -> String {
        check(self.exec(program).args(["-t", "nat"]))
    }

    /// `iptables-save -t nat` without comments and counters' noise.
    fn nat_rules(&self, program: &str) -> Vec<String> {
        self.nat(program)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(String::from)
            .collect()
    }

    /// A listener in this namespace (`original-dst-echo --listen`).
    fn listen(&self, addr: &str, name: &str) -> Server {
        let mut child = self
            .exec(&bins().echo)
            .args(["--listen", addr, "--name", name, "--for-secs", "90"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning original-dst-echo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // Keep draining after the first line, so the listener never
            // writes into a closed pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let server = Server { child };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.starts_with("LISTENING ") => server,
            other => panic!("listener {name} on {addr} in {}: {other:?}", self.name),
        }
    }

    /// Connect from this namespace as `(uid, gid)` and return the line the
    /// listener answered, parsed; `Err` with the client's error if the
    /// connection failed.
    fn connect(&self, who: (u32, u32), addr: &str) -> Result<Answer, String> {
        let out = run(self
            .exec("setpriv")
            .args([
                &format!("--reuid={}", who.0),
                &format!("--regid={}", who.1),
                "--clear-groups",
            ])
            .arg(&bins().echo)
            .args(["--connect", addr, "--timeout-ms", "1500"]));
        if out.status.success() {
            Ok(Answer::parse(&String::from_utf8_lossy(&out.stdout)))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// [`Netns::connect`] that must succeed.
    fn ask(&self, who: (u32, u32), addr: &str) -> Answer {
        self.connect(who, addr).unwrap_or_else(|e| {
            panic!(
                "uid {} gid {} in {} could not reach {addr}: {e}\n{}",
                who.0,
                who.1,
                self.name,
                self.nat("iptables-save")
            )
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A listener process, killed on drop.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name=N local=A peer=P original_dst=D`
#[derive(Debug)]
struct Answer {
    fields: HashMap<String, String>,
    line: String,
}

impl Answer {
    fn parse(line: &str) -> Answer {
        let fields = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Answer {
            fields,
            line: line.trim().to_string(),
        }
    }
    fn get(&self, key: &str) -> &str {
        self.fields.get(key).map_or("", String::as_str)
    }
    /// Answered by the capture listener `name`, and the connection's
    /// original destination was `original_dst`.
    fn captured(&self, name: &str, original_dst: &str, what: &str) {
        assert_eq!(
            (self.get("name"), self.get("original_dst")),
            (name, original_dst),
            "{what}: answered `{}`",
            self.line
        );
    }

    /// Answered by listener `name` directly: no NAT happened (conntrack
    /// has no entry, or its original destination is the listener itself).
    fn direct(&self, name: &str, what: &str) {
        let dst = self.get("original_dst");
        assert!(
            self.get("name") == name && (dst == "none" || dst == self.get("local")),
            "{what}: answered `{}`",
            self.line
        );
    }
}

/// A pod namespace (eth0 10.99.0.1/24) and a peer namespace (eth0
/// 10.99.0.2/24 and 10.99.0.3/24) joined by a veth pair.
struct Topology {
    pod: Netns,
    peer: Netns,
}

fn topology(tag: &str) -> Topology {
    let pod = Netns::new(&format!("{tag}-pod"));
    let peer = Netns::new(&format!("{tag}-peer"));
    ip(&[
        "-n", &pod.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
        &peer.name,
    ]);
    ip(&[
        "-n",
        &pod.name,
        "addr",
        "add",
        "10.99.0.1/24",
        "dev",
        "eth0",
    ]);
    ip(&["-n", &pod.name, "link", "set", "eth0", "up"]);
    ip(&[
        "-n",
        &peer.name,
        "addr",
        "add",
        "10.99.0.2/24",
        "dev",
        "eth0",
    ]);
    ip(&[
        "-n",
        &peer.name,
        "addr",
        "add",
        "10.99.0.3/24",
        "dev",
        "eth0",
    ]);
    ip(&["-n", &peer.name, "link", "set", "eth0", "up"]);
    Topology { pod, peer }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// The installed table holds exactly the rules `--dry-run` shows, once,
/// however often init runs; other rules survive; `--cleanup` removes ours
/// and only ours, and is itself safe to repeat.
#[test]
fn rules_installed_once_and_cleaned_up() {
    let ns = Netns::new("rules");
    // Someone else's rule in the same table and chain.
    check(ns.exec("iptables").args([
        "-t", "nat", "-A", "OUTPUT", "-p", "udp", "-m", "udp", "--dport", "53", "-j", "RETURN",
    ]));
    let foreign = "-A OUTPUT -p udp -m udp --dport 53 -j RETURN";

    let dry = check(Command::new(&bins().init).args(["--dry-run", "--ipv6"]));
    let (v4, v6) = dry.split_at(dry.find("# ringmesh-init: IPv6").expect("IPv6 part"));
    let expected = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("-A "))
            .map(String::from)
            .collect()
    };
    let (want4, want6) = (expected(v4), expected(v6));
    assert_eq!(want4.len(), 17, "{v4}");

    let assert_installed = |program: &str, want: &[String]| {
        let have = ns.nat_rules(program);
        for chain in [
            "RINGMESH_INBOUND",
            "RINGMESH_IN_REDIRECT",
            "RINGMESH_OUTPUT",
            "RINGMESH_REDIRECT",
        ] {
            assert!(
                have.contains(&format!(":{chain} - [0:0]")),
                "{program}: chain {chain} missing:\n{}",
                have.join("\n")
            );
        }
        for rule in want {
            let n = have.iter().filter(|l| *l == rule).count();
            assert_eq!(
                n,
                1,
                "{program}: `{rule}` found {n} times:\n{}",
                have.join("\n")
            );
        }
        let ours = have.iter().filter(|l| l.contains("RINGMESH_")).count();
        assert_eq!(
            ours,
            want.len() + 4,
            "{program}: rules of ours that --dry-run does not show:\n{}",
            have.join("\n")
        );
        have
    };

    let out = ns.init(&["--ipv6"]);
    assert!(out.contains("*nat"), "init prints what it applied:\n{out}");
    let first = assert_installed("iptables-save", &want4);
    assert_installed("ip6tables-save", &want6);
    // Again, twice: the same table, one copy of each rule.
    ns.init(&["--ipv6"]);
    ns.init(&["--ipv6"]);
    assert_eq!(assert_installed("iptables-save", &want4), first);
    assert_installed("ip6tables-save", &want6);
    assert!(first.iter().any(|l| l == foreign), "{}", first.join("\n"));

    // A re-run with other settings replaces the rules, it does not add.
    ns.init(&["--include-inbound-ports", "8080"]);
    let changed = ns.nat_rules("iptables-save");
    assert!(changed.contains(
        &"-A RINGMESH_INBOUND -p tcp -m tcp --dport 8080 -j RINGMESH_IN_REDIRECT".to_string()
    ));
    assert!(!changed
        .iter()
        .any(|l| l == "-A RINGMESH_INBOUND -p tcp -j RINGMESH_IN_REDIRECT"));

    ns.init(&["--cleanup", "--ipv6"]);
    for program in ["iptables-save", "ip6tables-save"] {
        let after = ns.nat(program);
        assert!(
            !after.contains("RINGMESH"),
            "{program} after --cleanup:\n{after}"
        );
    }
    assert!(ns.nat_rules("iptables-save").iter().any(|l| l == foreign));
    // Nothing left to remove: still a success.
    ns.init(&["--cleanup", "--ipv6"]);
}

/// The app's outbound TCP reaches the outbound capture port with its
/// original destination; the proxy's (by UID or GID), excluded ports and
/// excluded networks go straight out; after `--cleanup` everything does.
#[test]
fn outbound_capture() {
    let t = topology("out");
    let _outbound = t.pod.listen("0.0.0.0:15001", "outbound");
    let _peer = t.peer.listen("0.0.0.0:8080", "peer-8080");
    let _peer_excluded = t.peer.listen("0.0.0.0:8081", "peer-8081");
    t.pod.init(&[
        "--exclude-outbound-ports",
        "8081",
        "--exclude-outbound-cidrs",
        "10.99.0.3/32",
    ]);

    let a = t.pod.ask(APP, "10.99.0.2:8080");
    a.captured(
        "outbound",
        "10.99.0.2:8080",
        "app → 10.99.0.2:8080 is captured",
    );
    assert_eq!(a.get("local"), "127.0.0.1:15001", "{}", a.line);

    t.pod
        .ask(PROXY, "10.99.0.2:8080")
        .direct("peer-8080", "the proxy's UID and GID are never captured");
    t.pod
        .ask((1000, 1337), "10.99.0.2:8080")
        .direct("peer-8080", "the proxy's GID alone is never captured");
    t.pod
        .ask((1337, 1000), "10.99.0.2:8080")
        .direct("peer-8080", "the proxy's UID alone is never captured");
    t.pod
        .ask(APP, "10.99.0.2:8081")
        .direct("peer-8081", "an excluded outbound port is not captured");
    t.pod
        .ask(APP, "10.99.0.3:8080")
        .direct("peer-8080", "an excluded outbound network is not captured");

    t.pod.init(&["--cleanup"]);
    t.pod
        .ask(APP, "10.99.0.2:8080")
        .direct("peer-8080", "after --cleanup nothing is captured");
}

/// Inbound TCP to any port but the excluded ones reaches the inbound
/// capture port; on loopback, the proxy calling its own pod IP goes through
/// inbound capture while localhost and the app's own calls are left alone.
#[test]
fn inbound_capture_and_loopback() {
    let t = topology("in");
    let _inbound = t.pod.listen("0.0.0.0:15006", "inbound");
    let _outbound = t.pod.listen("0.0.0.0:15001", "outbound");
    let _health = t.pod.listen("0.0.0.0:15020", "pod-15020");
    t.pod.init(&[]);

    // From the network.
    let a = t.peer.ask(ROOT, "10.99.0.1:8080");
    a.captured("inbound", "10.99.0.1:8080", "peer → pod:8080 is captured");
    assert_eq!(a.get("local"), "10.99.0.1:15006", "{}", a.line);
    assert!(a.get("peer").starts_with("10.99.0.2:"), "{}", a.line);
    t.peer.ask(ROOT, "10.99.0.1:15020").direct(
        "pod-15020",
        "an excluded inbound port (15020) is delivered directly",
    );

    // On loopback, inside the pod.
    let a = t.pod.ask(PROXY, "10.99.0.1:8080");
    a.captured(
        "inbound",
        "10.99.0.1:8080",
        "the proxy calling its own pod IP goes through inbound capture",
    );
    t.pod
        .ask(PROXY, "127.0.0.1:15020")
        .direct("pod-15020", "the proxy calling localhost is not captured");
    t.pod.ask(APP, "10.99.0.1:15020").direct(
        "pod-15020",
        "the app calling its own pod IP is not captured",
    );
    t.pod
        .ask(APP, "127.0.0.1:15020")
        .direct("pod-15020", "the app calling localhost is not captured");
}

/// The whole outbound path: `ringmesh-init` captures the app's connection,
/// ringmesh-proxy (running as the proxy UID, so its own upstream connection
/// is not captured again) recovers the original destination with
/// `SO_ORIGINAL_DST` and forwards to it through an `original_dst` cluster.
/// The peer sees the connection come from the pod with no NAT of its own,
/// and the proxy's metrics count it on the capture listener.
#[test]
fn proxy_forwards_captured_connections_to_their_original_destination() {
    let t = topology("proxy");
    let _peer = t.peer.listen("0.0.0.0:8080", "peer-8080");
    t.pod.init(&[]);

    // World-readable config for the proxy's UID.
    let dir = std::env::temp_dir().join(format!("ringmesh-netns-proxy-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create the config dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod the config dir");
    let config = dir.join("proxy.yaml");
    fs::write(
        &config,
        "admin: { address: 127.0.0.1:15000 }\n\
         listeners:\n\
         \x20 - { name: outbound, address: 0.0.0.0:15001, protocol: tcp, cluster: passthrough, original_dst: true }\n\
         clusters:\n\
         \x20 - { name: passthrough, type: original_dst }\n",
    )
    .expect("write the proxy config");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).expect("chmod the config");

    let proxy = t
        .pod
        .exec("setpriv")
        .args([
            &format!("--reuid={}", PROXY.0),
            &format!("--regid={}", PROXY.1),
            "--clear-groups",
        ])
        .arg(ringmesh_e2e::proxy_bin())
        .args(["--concurrency", "1", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning ringmesh-proxy in the pod namespace");
    let _proxy = Server { child: proxy };
    let metrics = || {
        let out = run(t
            .pod
            .exec("curl")
            .args(["-fsS", "http://127.0.0.1:15000/stats/prometheus"]));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut ready = false;
    for _ in 0..100 {
        let out = run(t
            .pod
            .exec("curl")
            .args(["-fsS", "http://127.0.0.1:15000/ready"]));
        if out.status.success() {
            ready = true;
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(ready, "the proxy in the pod namespace never became ready");

    for i in 0..3 {
        let a = t.pod.ask(APP, "10.99.0.2:8080");
        // Answered by the real peer, reached from the pod's address with no
        // NAT on the peer's side: the proxy connected to the original
        // destination.
        a.direct("peer-8080", &format!("captured connection {i} forwarded"));
        assert!(
            a.get("peer").starts_with("10.99.0.1:"),
            "the peer should see the pod's address: {}",
            a.line
        );
    }
    let text = metrics().expect("proxy metrics");
    assert!(
        text.contains("ringmesh_downstream_cx_total{listener=\"outbound\"} 3\n"),
        "the proxy did not count 3 captured connections:\n{text}"
    );
    assert!(
        text.contains("ringmesh_upstream_cx_total{cluster=\"passthrough\"} 3\n"),
        "the proxy did not open 3 upstream connections:\n{text}"
    );
    let _ = fs::remove_dir_all(&dir);
}
