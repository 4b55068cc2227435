//! `ringmesh demo`, run from the built binaries the way a newcomer runs
//! it: the control plane in file mode, one sidecar per pod on its own
//! 127.0.0.x, the sample application, traffic — then its JSON summary
//! checked against what the sample mesh configures, and every process it
//! started checked gone by PID.
//!
//! The CLI is `<target>/<profile>/ringmesh` (or `$RINGMESH_CLI_BIN`). `ringmesh-control`, `ringmesh-proxy` and
//! `ringmesh-demo-app` are built into the same directory first, since the
//! demo finds them next to itself.
//!
//! Pod addresses: 127.0.0.200-203 and 127.0.0.210-213 (the demo's default
//! block, 127.0.0.100, stays free for a person running it).

use std::{
    fs,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, OnceLock},
    thread,
    time::{Duration, Instant},
};

use ringmesh_e2e::{cargo_build, die_with_parent, send_signal, workspace_bin, TempDir};
use serde_json::Value;

/// The `ringmesh` binary, with the demo's other binaries beside it.
fn ringmesh_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        cargo_build(&[
            "-p",
            "ringmesh-control",
            "-p",
            "ringmesh-proxy",
            "-p",
            "ringmesh-demo",
        ]);
        workspace_bin("RINGMESH_CLI_BIN", "ringmesh-cli", "ringmesh")
    })
    .clone()
}

/// `ringmesh demo ARGS` with stdout and stderr piped; it dies with the
/// test.
fn spawn_demo(args: &[&str]) -> Child {
    let mut cmd = Command::new(ringmesh_bin());
    cmd.arg("demo")
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    cmd.spawn().expect("starting ringmesh demo")
}

/// Wait for the demo to exit (killing it after `timeout`): (exit code,
/// stdout, stderr).
fn finish(mut child: Child, timeout: Duration) -> (i32, String, String) {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = child.stderr.take().map(|mut e| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for the demo") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ringmesh demo still running after {timeout:?}; stderr:\n{}",
                err.map(|e| e.join().unwrap_or_default())
                    .unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err
        .map(|e| e.join().unwrap_or_default())
        .unwrap_or_default();
    let code = status
        .code()
        .unwrap_or_else(|| panic!("ringmesh demo died by a signal ({status}); stderr:\n{stderr}"));
    (code, stdout, stderr)
}

fn summary(stdout: &str, stderr: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| {
        panic!("the demo's stdout is not one JSON summary ({e}):\n{stdout}\nstderr:\n{stderr}")
    })
}

fn num(v: &Value, ptr: &str) -> f64 {
    v.pointer(ptr)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{ptr} missing from the summary:\n{v:#}"))
}

/// Every process the demo started is gone, and so is its temp dir.
fn assert_everything_stopped(s: &Value) {
    let procs = s["processes"].as_array().expect("processes");
    let names: Vec<&str> = procs.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(
        names.len(),
        9,
        "4 apps, the control plane and 4 sidecars: {names:?}"
    );
    for p in procs {
        let pid = p["pid"].as_u64().expect("pid");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{} (pid {pid}) outlived the demo",
            p["name"]
        );
        assert_eq!(p["died_early"], false, "{p}");
        assert_eq!(
            p["killed"], false,
            "stopped by SIGTERM within the grace period: {p}"
        );
    }
    assert_eq!(s["dir_removed"], true, "{}", s["dir"]);
    let dir = s["dir"].as_str().expect("dir");
    assert!(!Path::new(dir).exists(), "{dir} is left behind");
}

#[test]
fn twenty_seconds_of_the_demo_mesh() {
    let child = spawn_demo(&["--duration", "20s", "--json", "--base-ip", "127.0.0.200"]);
    let (code, stdout, stderr) = finish(child, Duration::from_secs(150));
    let s = summary(&stdout, &stderr);
    assert_eq!(
        (code, &s["ok"], &s["aborted"]),
        (0, &Value::Bool(true), &Value::Null),
        "{s:#}\nstderr:\n{stderr}"
    );

    // Every allowed request succeeded, end to end.
    assert_eq!(num(&s, "/failures"), 0.0, "errors: {:#}", s["errors"]);
    let requests = num(&s, "/requests");
    assert!(requests >= 800.0, "about 50 req/s for 20 s, got {requests}");

    // The canary: 90/10 between reviews v1 and v2, measured from the answers.
    let canary = &s["routes"]["canary"];
    assert!(num(canary, "/requests") >= 700.0, "{canary:#}");
    assert_eq!(num(canary, "/ok"), num(canary, "/requests"), "{canary:#}");
    let v2 = num(canary, "/v2_percent");
    assert!(
        (6.0..=14.0).contains(&v2),
        "reviews v2 got {v2}% of the canary route; the VirtualService says 10%: {canary:#}"
    );
    // v2 calls ratings, v1 does not.
    assert_eq!(num(canary, "/with_ratings"), num(canary, "/split/v2"));

    // The header route: every `end-user: jason` request saw v2 (and ratings).
    let jason = &s["routes"]["jason"];
    let n = num(jason, "/requests");
    assert!(n >= 70.0, "every 10th request is jason's: {jason:#}");
    assert_eq!(num(jason, "/ok"), n, "{jason:#}");
    assert_eq!(num(jason, "/split/v2"), n, "{jason:#}");
    assert!(jason["split"].get("v1").is_none(), "{jason:#}");
    assert_eq!(num(jason, "/with_ratings"), n);
    assert!(num(&s, "/latency_ms/p99") > 0.0);

    // The sidecars carried every hop, without a 5xx, and accepted every
    // configuration the control plane sent.
    let hops = s["hops"].as_array().expect("hops");
    let hop = |from: &str| {
        hops.iter()
            .find(|h| h["from"] == from)
            .unwrap_or_else(|| panic!("no hop from {from}: {hops:?}"))
    };
    assert!(num(hop("ingress"), "/requests") >= requests);
    assert!(num(hop("frontend"), "/requests") >= requests);
    assert!(num(hop("reviews"), "/requests") >= num(&s, "/split/v2"));
    for h in hops {
        assert_eq!(num(h, "/errors_5xx"), 0.0, "{h}");
    }
    for p in s["pods"].as_array().expect("pods") {
        assert!(num(p, "/xds_accepted") >= 1.0, "{p}");
        assert_eq!(num(p, "/xds_rejected"), 0.0, "a sidecar NACKed: {p}");
    }

    // Security: the sidecars got SVIDs from the control plane's CA and the
    // mesh hops are mutual TLS, as the destinations' sidecars report in
    // istio_requests_total{reporter="destination"}, naming the caller's
    // verified SPIFFE ID (frontend → reviews: .../sa/frontend).
    for from in ["frontend", "reviews"] {
        let h = hop(from);
        assert_eq!(h["security"], "mutual_tls", "{h:#}");
        let caller = format!("spiffe://cluster.local/ns/default/sa/{from} → ");
        let ids = h["peer_identities"].as_array().expect("peer_identities");
        assert!(
            !ids.is_empty()
                && ids
                    .iter()
                    .all(|i| i.as_str().unwrap_or("").starts_with(&caller)),
            "{h:#}"
        );
        assert!(
            h["expected"]
                .as_str()
                .unwrap_or("")
                .starts_with("mutual_tls"),
            "{h:#}"
        );
    }
    assert_eq!(hop("ingress")["security"], "plaintext");
    // Authorization: only the frontend may call reviews. The probe from
    // ratings' sidecar (mTLS, ratings' identity) gets 403 every time, and
    // the plaintext probes from outside are refused (STRICT).
    let a = &s["authorization"];
    assert_eq!(a["enforced"], true, "{a:#}");
    assert_eq!(a["sidecars_report_denials"], true, "{a:#}");
    let probes = a["probes"].as_array().expect("probes");
    assert_eq!(probes.len(), 3, "{a:#}");
    let mut forbidden = 0.0;
    for p in probes {
        let sent = num(p, "/sent");
        assert!(sent >= 10.0, "a probe a second: {p}");
        assert_eq!(p["enforced"], true, "{p}");
        assert_eq!(num(p, "/allowed"), 0.0, "{p}");
        if p["expect"] == "refused" {
            assert_eq!(num(p, "/refused"), sent, "STRICT refuses plaintext: {p}");
        } else {
            assert_eq!(num(p, "/forbidden"), sent, "403 every time: {p}");
            forbidden += sent;
        }
    }
    // The reviews sidecars counted those denials (scraped once more after
    // the probes stopped).
    assert!(
        num(a, "/denials_reported") >= forbidden,
        "denials reported {} < 403s seen {forbidden}: {a:#}",
        num(a, "/denials_reported")
    );

    assert_everything_stopped(&s);
}

#[test]
fn sigterm_stops_every_child_and_still_reports() {
    let mut child = spawn_demo(&["--json", "--base-ip", "127.0.0.210"]);
    // Progress goes to stderr with --json; wait for traffic to start.
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("end to end") {
                let _ = tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    if rx.recv_timeout(Duration::from_secs(90)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the demo did not come up; stderr:\n{}",
            reader.join().unwrap_or_default()
        );
    }
    thread::sleep(Duration::from_secs(4));
    send_signal(child.id(), libc::SIGTERM);
    let started = Instant::now();
    let (code, stdout, _) = finish(child, Duration::from_secs(30));
    let stderr = reader.join().unwrap_or_default();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopping took {:?}",
        started.elapsed()
    );
    let s = summary(&stdout, &stderr);
    assert_eq!(code, 0, "{s:#}\nstderr:\n{stderr}");
    assert!(num(&s, "/requests") > 50.0, "{s:#}");
    assert_eq!(num(&s, "/failures"), 0.0, "{:#}", s["errors"]);
    assert_everything_stopped(&s);
}

#[test]
fn missing_binaries_say_how_to_build_them() {
    let dir = TempDir::new("demo-alone");
    let lonely = dir.path().join("ringmesh");
    fs::copy(ringmesh_bin(), &lonely).expect("copying the CLI");
    let out = Command::new(&lonely)
        .args(["demo", "--duration", "1s", "--json"])
        .env("PATH", dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("running ringmesh demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    for needle in [
        "cannot find ringmesh-control, ringmesh-proxy, ringmesh-demo-app",
        "cargo build --release -p ringmesh-control -p ringmesh-proxy -p ringmesh-demo -p ringmesh-cli",
        "scripts/demo.sh",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
}
