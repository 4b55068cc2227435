//! `ringmesh analyze`, the real binary: exact output lines and exit
//! statuses on the model's corpus (`control/model/testdata`: Bookinfo, and
//! one defect per file in `broken/`) and on the CLI's mesh-level corpus
//! (`control/cli/testdata`: one case per analyzer), JSON parsed back,
//! stdin, flags, usage errors, and colour on a real terminal (a pty) with
//! and without `NO_COLOR`.
//!
//! The binary is `<target>/<profile>/ringmesh`, or `$RINGMESH_CLI_BIN`;
//! unless that is set, `cargo build -p ringmesh-cli` runs once per test
//! binary so a stale build is never tested.

use std::{
    fs::File,
    io::{Read, Write},
    os::fd::{FromRawFd, OwnedFd},
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

use ringmesh_e2e::{workspace_bin, workspace_root, TempDir};
use serde_json::Value;

fn ringmesh_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("RINGMESH_CLI_BIN", "ringmesh-cli", "ringmesh"))
        .clone()
}

/// `ringmesh ARGS` from the workspace root, stdout piped, no `NO_COLOR`.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(ringmesh_bin());
    cmd.current_dir(workspace_root())
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    cmd
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

fn finished(out: Output) -> Run {
    Run {
        code: out.status.code().expect("ringmesh exited by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn analyze(args: &[&str]) -> Run {
    let mut all = vec!["analyze"];
    all.extend_from_slice(args);
    finished(command(&all).output().expect("running ringmesh"))
}

fn analyze_stdin(args: &[&str], input: &str) -> Run {
    let mut all = vec!["analyze"];
    all.extend_from_slice(args);
    let mut child = command(&all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running ringmesh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing stdin");
    finished(child.wait_with_output().expect("waiting for ringmesh"))
}

const BOOKINFO: &str = "control/model/testdata/bookinfo";
const BROKEN: &str = "control/model/testdata/broken";
const MESH: &str = "control/cli/testdata/mesh";

/// The model's own notes on Bookinfo, then the mesh analyzers': its
/// allow-nothing policy, the PERMISSIVE legacy namespace, and the subsets
/// only DestinationRules name.
const BOOKINFO_LINES: &[&str] = &[
    "control/model/testdata/bookinfo/authorization-policy.yaml:3:1: info[RM0104] \
     AuthorizationPolicy default/allow-nothing: ALLOW policy with no rules and no selector: \
     requests to every workload in namespace default are denied unless another ALLOW policy \
     matches them",
    "control/model/testdata/bookinfo/bookinfo-gateway.yaml:3:1: warning[RM0012] Gateway \
     default/bookinfo-gateway: networking.istio.io/v1 Gateway is not supported yet; skipped",
    "control/model/testdata/bookinfo/bookinfo-gateway.yaml:123:7: warning[RM0010] VirtualService \
     default/productpage: spec.http[3].corsPolicy: corsPolicy is accepted but not applied: CORS \
     is not implemented yet",
    "control/model/testdata/bookinfo/bookinfo-services.yaml:3:1: info[RM0013] Service \
     default/reviews: v1 Service is not an Istio resource; skipped",
    "control/model/testdata/bookinfo/bookinfo-services.yaml:17:1: info[RM0013] ServiceAccount \
     default/bookinfo-reviews: v1 ServiceAccount is not an Istio resource; skipped",
    "control/model/testdata/bookinfo/bookinfo-services.yaml:24:1: info[RM0013] Deployment \
     default/reviews-v3: apps/v1 Deployment is not an Istio resource; skipped",
    "control/model/testdata/bookinfo/destination-rule-all-mtls.yaml:97:5: info[RM0106] \
     DestinationRule default/ratings: spec.subsets[1]: subset \"v2\" is not used by any \
     VirtualService in the analyzed resources",
    "control/model/testdata/bookinfo/destination-rule-all-mtls.yaml:100:5: info[RM0106] \
     DestinationRule default/ratings: spec.subsets[2]: subset \"v2-mysql\" is not used by any \
     VirtualService in the analyzed resources",
    "control/model/testdata/bookinfo/destination-rule-all-mtls.yaml:103:5: info[RM0106] \
     DestinationRule default/ratings: spec.subsets[3]: subset \"v2-mysql-vm\" is not used by \
     any VirtualService in the analyzed resources",
    "control/model/testdata/bookinfo/destination-rule-all-mtls.yaml:132:5: info[RM0106] \
     DestinationRule default/details: spec.subsets[1]: subset \"v2\" is not used by any \
     VirtualService in the analyzed resources",
    "control/model/testdata/bookinfo/peer-authentication.yaml:19:11: warning[RM0105] \
     PeerAuthentication legacy/default: spec.mtls.mode: PERMISSIVE lets namespace legacy accept \
     plaintext although the mesh-wide PeerAuthentication istio-system/default is STRICT",
    "Warning: 3 warnings, 8 info when analyzing 24 resources in 11 files.",
];

#[test]
fn bookinfo_has_only_its_expected_notes_and_passes() {
    let r = analyze(&[BOOKINFO]);
    assert_eq!(r.lines(), BOOKINFO_LINES, "stderr: {}", r.stderr);
    assert_eq!(r.code, 0);
    assert_eq!(r.stderr, "");
    assert!(!r.stdout.contains('\x1b'), "no colour into a pipe");
}

/// Each broken file alone: its one error (the model's exact message), no
/// follow-on findings from the mesh analyzers, status 1.
const BROKEN_LINES: &[(&str, &str, usize)] = &[
    (
        "bad-cidr.yaml",
        "control/model/testdata/broken/bad-cidr.yaml:14:31: error[RM0003] AuthorizationPolicy \
         foo/ingress-allowlist: spec.rules[0].from[0].source.ipBlocks[1]: invalid CIDR \
         \"5.6.7.0/33\": the prefix length must be 0-32",
        2,
    ),
    (
        "bad-duration.yaml",
        "control/model/testdata/broken/bad-duration.yaml:11:25: error[RM0004] DestinationRule \
         default/reviews: spec.trafficPolicy.outlierDetection.baseEjectionTime: invalid duration \
         \"3min\": unknown unit \"min\" (e.g. 100ms, 1.5s, 10m, 1h)",
        2,
    ),
    (
        "custom-action.yaml",
        "control/model/testdata/broken/custom-action.yaml:10:11: error[RM0005] AuthorizationPolicy \
         foo/ext-authz: spec.action: CUSTOM authorization (ext_authz) is not supported yet",
        2,
    ),
    (
        "invalid-regex.yaml",
        "control/model/testdata/broken/invalid-regex.yaml:11:16: error[RM0003] VirtualService \
         default/productpage: spec.http[0].match[0].uri.regex: invalid regex \
         \"^/api/(v1|v2/products\": unclosed group",
        2,
    ),
    (
        "malformed-yaml.yaml",
        "control/model/testdata/broken/malformed-yaml.yaml:25:6: error[RM0001] invalid YAML, \
         document skipped: did not find expected key, while parsing a block mapping at line 21 \
         column 5",
        2,
    ),
    (
        "missing-subset.yaml",
        "control/model/testdata/broken/missing-subset.yaml:30:17: error[RM0006] VirtualService \
         default/reviews: spec.http[0].route[1].destination.subset: subset \"v4\" is not defined \
         by any DestinationRule for host reviews.default.svc.cluster.local (DestinationRule \
         default/reviews defines v1, v2)",
        3,
    ),
    (
        "unknown-field.yaml",
        "control/model/testdata/broken/unknown-field.yaml:13:7: error[RM0004] VirtualService \
         default/reviews: spec.http[0].route[0].weigth: unknown field `weigth`, expected one of \
         `destination`, `weight`, `headers`",
        2,
    ),
    (
        "weights-not-100.yaml",
        "control/model/testdata/broken/weights-not-100.yaml:17:15: error[RM0003] VirtualService \
         default/reviews: spec.http[0].route[1].weight: weights sum to 90, not 100",
        2,
    ),
];

#[test]
fn each_broken_file_has_exactly_its_error_and_fails() {
    let mut files: Vec<String> = std::fs::read_dir(workspace_root().join(BROKEN))
        .expect("reading the broken corpus")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    let tested: Vec<&str> = BROKEN_LINES.iter().map(|b| b.0).collect();
    assert_eq!(
        files, tested,
        "every broken file has its expected line here"
    );
    for (file, line, resources) in BROKEN_LINES {
        let r = analyze(&[&format!("{BROKEN}/{file}")]);
        let summary = format!("Error: 1 error when analyzing {resources} resources in 1 file.");
        assert_eq!(r.lines(), [*line, summary.as_str()], "{file}");
        assert_eq!(r.code, 1, "{file}");
    }
}

/// Each mesh case alone: its analyzer's finding, and status 1 only for the
/// error (RM0102).
#[test]
fn each_mesh_analyzer_case() {
    let cases: &[(&str, &[&str], i32)] = &[
        (
            "conflicting-virtual-services.yaml",
            &[
                "control/cli/testdata/mesh/conflicting-virtual-services.yaml:3:1: info[RM0013] \
                 Service store/cart: v1 Service is not an Istio resource; skipped",
                "control/cli/testdata/mesh/conflicting-virtual-services.yaml:35:5: error[RM0102] \
                 VirtualService store/cart-timeouts: spec.hosts[0]: host \
                 cart.store.svc.cluster.local is also routed by VirtualService store/cart-retries \
                 (control/cli/testdata/mesh/conflicting-virtual-services.yaml:13); sidecars apply \
                 only one VirtualService per host, so the other's routes are ignored: merge them, \
                 or split them with delegate VirtualServices",
                "Error: 1 error, 1 info when analyzing 2 resources in 1 file.",
            ],
            1,
        ),
        (
            "deny-all-policy.yaml",
            &[
                "control/cli/testdata/mesh/deny-all-policy.yaml:2:1: info[RM0104] \
                 AuthorizationPolicy bank/allow-nothing: ALLOW policy with no rules and no \
                 selector: requests to every workload in namespace bank are denied unless another \
                 ALLOW policy matches them",
                "Info: 1 info when analyzing 2 resources in 1 file.",
            ],
            0,
        ),
        (
            "host-not-found.yaml",
            &[
                "control/cli/testdata/mesh/host-not-found.yaml:10:5: warning[RM0101] \
                 VirtualService shop/payments: spec.hosts[0]: host \"payments\" \
                 (payments.shop.svc.cluster.local) not found in the analyzed resources (no \
                 ServiceEntry, Service or DestinationRule for it); it may be a Kubernetes Service \
                 not included",
                "Warning: 1 warning when analyzing 2 resources in 1 file.",
            ],
            0,
        ),
        (
            "mtls-downgrade.yaml",
            &[
                "control/cli/testdata/mesh/mtls-downgrade.yaml:19:11: warning[RM0105] \
                 PeerAuthentication batch/default: spec.mtls.mode: PERMISSIVE lets namespace \
                 batch accept plaintext although the mesh-wide PeerAuthentication \
                 istio-system/default is STRICT",
                "Warning: 1 warning when analyzing 3 resources in 1 file.",
            ],
            0,
        ),
        (
            "shadowed-route.yaml",
            &[
                "control/cli/testdata/mesh/shadowed-route.yaml:2:1: info[RM0013] Service \
                 books/catalog: v1 Service is not an Istio resource; skipped",
                "control/cli/testdata/mesh/shadowed-route.yaml:21:5: warning[RM0103] \
                 VirtualService books/catalog: spec.http[1]: unreachable route: spec.http[0] \
                 (\"default\") before it matches every request; move the catch-all last or give \
                 it a match",
                "Warning: 1 warning, 1 info when analyzing 1 resource in 1 file.",
            ],
            0,
        ),
        (
            "unused-subset.yaml",
            &[
                "control/cli/testdata/mesh/unused-subset.yaml:10:5: info[RM0106] DestinationRule \
                 web/search: spec.subsets[0]: subset \"v1\" is not used by any VirtualService in \
                 the analyzed resources",
                "Info: 1 info when analyzing 2 resources in 1 file.",
            ],
            0,
        ),
    ];
    let mut files: Vec<String> = std::fs::read_dir(workspace_root().join(MESH))
        .expect("reading the mesh corpus")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    let tested: Vec<&str> = cases.iter().map(|c| c.0).collect();
    assert_eq!(files, tested, "every mesh case has its expected lines here");
    for (file, lines, code) in cases {
        let r = analyze(&[&format!("{MESH}/{file}")]);
        assert_eq!(r.lines(), *lines, "{file}");
        assert_eq!(r.code, *code, "{file}");
    }
}

#[test]
fn a_clean_input_says_so() {
    let r = analyze(&["control/cli/testdata/clean.yaml"]);
    assert_eq!(
        r.lines(),
        ["✔ No validation issues found when analyzing 2 resources in 1 file."]
    );
    assert_eq!(r.code, 0);
}

#[test]
fn files_given_separately_load_as_one_mesh() {
    let canary = format!("{BOOKINFO}/virtual-service-reviews-canary.yaml");
    let rules = format!("{BOOKINFO}/destination-rule-all-mtls.yaml");
    // Alone, the VirtualService's subsets are defined nowhere.
    let alone = analyze(&[&canary]);
    assert_eq!(alone.code, 1);
    assert!(alone.stdout.contains("error[RM0006]"), "{}", alone.stdout);
    // With the rules, they resolve; what is left is the unused subsets.
    let both = analyze(&[&canary, &rules]);
    assert_eq!(both.code, 0, "{}", both.stdout);
    assert!(!both.stdout.contains("RM0006"), "{}", both.stdout);
    assert_eq!(
        both.stdout.lines().last(),
        Some("Info: 7 info when analyzing 5 resources in 2 files.")
    );
}

#[test]
fn stdin_is_one_more_input() {
    let text = std::fs::read_to_string(workspace_root().join(BROKEN).join("weights-not-100.yaml"))
        .expect("reading a broken file");
    let r = analyze_stdin(&["-"], &text);
    assert_eq!(
        r.lines(),
        [
            "<stdin>:17:15: error[RM0003] VirtualService default/reviews: \
             spec.http[0].route[1].weight: weights sum to 90, not 100",
            "Error: 1 error when analyzing 2 resources in 1 file.",
        ]
    );
    assert_eq!(r.code, 1);
    // `-n` places resources that name no namespace.
    let r = analyze_stdin(
        &["-n", "prod", "-", "control/cli/testdata/clean.yaml"],
        &text,
    );
    assert!(
        r.stdout
            .starts_with("<stdin>:17:15: error[RM0003] VirtualService prod/reviews: "),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .ends_with("when analyzing 4 resources in 2 files.\n"));
}

#[test]
fn json_output_parses_with_stable_fields() {
    let r = analyze(&["-o", "json", BOOKINFO]);
    assert_eq!(r.code, 0);
    let v: Value = serde_json::from_str(&r.stdout).expect("-o json is JSON");
    let diags = v["diagnostics"].as_array().expect("diagnostics array");
    assert_eq!(diags.len(), BOOKINFO_LINES.len() - 1);
    assert_eq!(
        diags[10],
        serde_json::json!({
            "severity": "warning",
            "code": "RM0105",
            "file": "control/model/testdata/bookinfo/peer-authentication.yaml",
            "line": 19,
            "column": 11,
            "resource": {"kind": "PeerAuthentication", "namespace": "legacy", "name": "default"},
            "field": "spec.mtls.mode",
            "message": "PERMISSIVE lets namespace legacy accept plaintext although the mesh-wide \
                        PeerAuthentication istio-system/default is STRICT",
        })
    );
    assert_eq!(diags[0]["field"], Value::Null);
    assert_eq!(
        v["summary"],
        serde_json::json!({
            "files": 11, "resources": 24, "errors": 0, "warnings": 3, "info": 8, "suppressed": 0
        })
    );
    // A finding about no resource and no line.
    let dir = TempDir::new("cli-json");
    std::fs::write(dir.path().join("bad.yaml"), [0xff_u8, 0xfe]).expect("writing");
    let r = analyze(&["-o", "json", &dir.path().display().to_string()]);
    assert_eq!(r.code, 1);
    let v: Value = serde_json::from_str(&r.stdout).expect("-o json is JSON");
    let d = &v["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["line"].is_null()),
        (Some("RM0009"), true)
    );
    assert_eq!(d["resource"], Value::Null);
    assert_eq!(
        d["message"].as_str(),
        Some("not valid UTF-8 (first bad byte at offset 0)")
    );
}

#[test]
fn failure_threshold_and_suppress_decide_the_status() {
    assert_eq!(analyze(&["--failure-threshold", "error", BOOKINFO]).code, 0);
    assert_eq!(
        analyze(&["--failure-threshold", "warning", BOOKINFO]).code,
        1
    );
    let deny_all = format!("{MESH}/deny-all-policy.yaml");
    assert_eq!(
        analyze(&["--failure-threshold", "warning", &deny_all]).code,
        0
    );
    assert_eq!(analyze(&["--failure-threshold", "info", &deny_all]).code, 1);

    let r = analyze(&[
        "--failure-threshold",
        "warning",
        "--suppress",
        "RM0105=PeerAuthentication legacy/default",
        "--suppress",
        "RM0010=*",
        "--suppress",
        "rm0012=Gateway/default/bookinfo-gateway",
        BOOKINFO,
    ]);
    assert_eq!(
        r.stdout.lines().last(),
        Some("Info: 8 info when analyzing 24 resources in 11 files (3 suppressed).")
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn usage_errors_exit_2() {
    let r = analyze(&["control/cli/testdata/no-such-dir"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr
            .starts_with("error: cannot read control/cli/testdata/no-such-dir: "),
        "{}",
        r.stderr
    );
    let r = analyze(&["--suppress", "RM9999=*", BOOKINFO]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown code RM9999"), "{}", r.stderr);
    assert_eq!(analyze(&["-o", "xml", BOOKINFO]).code, 2);
    assert_eq!(analyze(&[]).code, 2, "PATH is required");
    let r = analyze(&["--explain", "RM0999"]);
    assert_eq!(r.code, 2);
}

#[test]
fn help_lists_only_what_exists() {
    let r = finished(command(&["--help"]).output().expect("running ringmesh"));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("\n  analyze  "), "{}", r.stdout);
    // proxy-status and config-dump: tests/tests/cli_status.rs; demo:
    // tests/tests/demo.rs; tls-check: tests/tests/control_mtls.rs.
    assert!(r.stdout.contains("\n  demo  "), "{}", r.stdout);
    assert!(r.stdout.contains("\n  tls-check  "), "{}", r.stdout);
    // inject: tests/tests/inject.rs (without -f it is a usage error).
    assert!(r.stdout.contains("\n  inject  "), "{}", r.stdout);
    assert_eq!(
        finished(command(&["inject"]).output().expect("running ringmesh")).code,
        2
    );
    let r = analyze(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Examples:"), "{}", r.stdout);
    assert!(r.stdout.contains("--failure-threshold"), "{}", r.stdout);
    let r = analyze(&["--explain"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("\nRM0106  info     mesh      "),
        "{}",
        r.stdout
    );
}

// ---------------------------------------------------------------------------
// A real terminal: colour, unless NO_COLOR
// ---------------------------------------------------------------------------

/// Run `ringmesh ARGS` with stdout on a new pseudo-terminal; what it wrote,
/// with the terminal's `\r\n` turned back into `\n`.
fn on_terminal(args: &[&str], no_color: Option<&str>) -> (i32, String) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes the two descriptors it opens into the two
    // valid pointers; name, termios and winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned
    // by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = command(args);
    cmd.stdout(Stdio::from(slave)).stderr(Stdio::piped());
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let mut child = cmd.spawn().expect("running ringmesh on a pty");
    // The parent's copy of the slave end went with `cmd`: once the child
    // exits, reading the master ends (EIO) instead of blocking.
    drop(cmd);
    let mut out = Vec::new();
    let mut master = File::from(master);
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the pty: {e}"),
        }
    }
    let status = child.wait().expect("waiting for ringmesh");
    let text = String::from_utf8(out).expect("terminal output is UTF-8");
    (
        status.code().expect("exit code"),
        text.replace("\r\n", "\n"),
    )
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_terminal_gets_a_coloured_table_unless_no_color() {
    let mesh_case = format!("{MESH}/mtls-downgrade.yaml");
    let piped = analyze(&["-o", "table", &mesh_case]);
    assert_eq!(
        piped.stdout,
        "\
control/cli/testdata/mesh/mtls-downgrade.yaml
  19:11  warning  RM0105  PeerAuthentication batch/default  spec.mtls.mode: PERMISSIVE lets \
namespace batch accept plaintext although the mesh-wide PeerAuthentication istio-system/default \
is STRICT

Warning: 1 warning when analyzing 3 resources in 1 file.
"
    );

    // A terminal: the table by default, in colour.
    let (code, coloured) = on_terminal(&["analyze", &mesh_case], None);
    assert_eq!(code, 0);
    assert!(coloured.contains("\x1b[33mwarning\x1b[0m"), "{coloured:?}");
    assert!(
        coloured.contains("\x1b[33mWarning\x1b[0m: 1 warning"),
        "{coloured:?}"
    );
    assert_eq!(strip_ansi(&coloured), piped.stdout);

    // NO_COLOR (any non-empty value): the same table, no escape at all.
    let (code, plain) = on_terminal(&["analyze", &mesh_case], Some("1"));
    assert_eq!(code, 0);
    assert_eq!(plain, piped.stdout);
    // An empty NO_COLOR does not count (no-color.org).
    let (_, empty) = on_terminal(&["analyze", &mesh_case], Some(""));
    assert!(empty.contains('\x1b'), "{empty:?}");

    // Other formats stay plain on a terminal too, with NO_COLOR.
    let (_, lines) = on_terminal(&["analyze", "-o", "line", &mesh_case], Some("1"));
    assert!(!lines.contains('\x1b'), "{lines:?}");
    assert!(
        lines.starts_with("control/cli/testdata/mesh/mtls-downgrade.yaml:19:11: warning[RM0105]")
    );
}

#[test]
fn registry_objects_are_checked_as_the_control_plane_loads_them() {
    let good = "\
apiVersion: registry.ringmesh.io/v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
  selector: {app: reviews}
---
apiVersion: registry.ringmesh.io/v1
kind: Workload
metadata: {name: reviews-v1-0, namespace: default, labels: {app: reviews}}
spec:
  address: 10.0.0.7
";
    // Valid registry objects are neither errors nor "not an Istio resource".
    let r = analyze_stdin(&["-"], good);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(!r.stdout.contains("RM0013"), "{}", r.stdout);

    let bad = good.replace("10.0.0.7", "10.0.0.300");
    let r = analyze_stdin(&["-"], &bad);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(
        r.lines()[0],
        "<stdin>:12:12: error[RM0203] Workload default/reviews-v1-0: spec.address: \
         invalid address \"10.0.0.300\": not an IPv4 or IPv6 address"
    );
}
