//! `ringmesh demo`: a whole mesh on loopback, brought up by one command.
//!
//! It writes a bookinfo-like sample mesh ([`mesh`]) into a directory,
//! starts `ringmesh-control` on it in file mode, one `ringmesh-proxy` per
//! pod on its own `127.0.0.x` address, and the sample application
//! (`ringmesh-demo-app`, [`app`]) behind them ([`process`]); waits for
//! every sidecar's `/ready` and for a request to make it end to end; then
//! drives traffic into the frontend and probes what the security policy
//! forbids ([`load`]), reads every sidecar's metrics ([`metrics`]) and
//! shows the results live ([`view`]) until Ctrl-C / SIGTERM or
//! `--duration`. On the way out it stops the load, then every child by
//! PID (SIGTERM, a grace period, SIGKILL), removes its temporary
//! directory, and prints the [`summary`] (as JSON with `--json`).
//!
//! ```text
//! demo ──load──▶ frontend sidecar ─▶ frontend app ─▶ (its sidecar) ─▶ reviews v1 | v2 sidecar ─▶ app
//!      ──probes─▶ what the policy forbids                              v2 app ─▶ (its sidecar) ─▶ ratings
//!      ──scrape─▶ every sidecar's /stats/prometheus
//! ```
//!
//! Exit status: 0 when no allowed request failed; 1 when one did, or the
//! mesh could not start or lost a process; the message says what to do.

pub mod app;
pub mod http;
pub mod load;
pub mod mesh;
pub mod metrics;
pub mod process;
pub mod summary;
pub mod view;

use std::{
    collections::VecDeque,
    fs,
    io::Write,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::{
    load::{Expect, Load, LoadConfig, Probe, Probes},
    mesh::Plan,
    metrics::MeshScrape,
    process::{sleep_unless, Binaries, Children},
    summary::{Inputs, Rates, Summary},
    view::Style,
};

/// Examples shown by `ringmesh demo --help`.
pub const EXAMPLES: &str = "\
Examples:
  # Build everything and bring the demo up (the README's first command)
  bash scripts/demo.sh

  # The same, with the binaries already built
  ringmesh demo

  # For scripts and tests: 20 seconds, then a JSON summary; exit 1 if an allowed request failed
  ringmesh demo --duration 20s --json

  # Keep the mesh's files and logs, on another address block
  ringmesh demo --dir /tmp/mesh --base-ip 127.0.0.200";

/// What `ringmesh demo --help` says.
pub const LONG_ABOUT: &str = "\
Run a whole mesh on this machine: ringmesh-control in file mode, a bookinfo-like sample \
application (frontend → reviews v1/v2 → ratings), one ringmesh-proxy sidecar per pod on its own \
127.0.0.x address, and traffic — with a live view of requests per route, the canary split, \
latency, the security of each hop and authorization denials.

The sample mesh routes reviews 90/10 between v1 and v2 (`end-user: jason` always gets v2), asks \
for STRICT mutual TLS (the frontend, the mesh's entry, is PERMISSIVE) and lets only the frontend \
call reviews. Every sidecar generates its key, gets its SPIFFE certificate from the control \
plane's CA with a bootstrap token, speaks mTLS to the others, and enforces the \
AuthorizationPolicy on its inbound side (403 for a caller the policy does not allow). The view \
shows what is measured: the security of each hop from the sidecars' connection counters, and \
probes that try what the policies forbid.

Needs ringmesh-control, ringmesh-proxy and ringmesh-demo-app next to this executable or on PATH \
(`bash scripts/demo.sh` builds them). Ctrl-C stops every process the demo started.";

/// `ringmesh demo`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Stop after this long (e.g. 20s, 2m) and print a summary; default: run until Ctrl-C.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// No live view: print one JSON summary on stdout at the end (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write the mesh files (DIR/mesh), sidecar bootstraps and logs here, and keep them; default:
    /// a temporary directory, removed at the end.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The first of the four consecutive loopback addresses the pods use.
    #[arg(long, default_value = "127.0.0.100", value_name = "IP")]
    pub base_ip: Ipv4Addr,
    /// Requests per second sent into the frontend (every 10th with `end-user: jason`).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub rps: u32,
}

/// `20s`, `1.5m`, `500ms`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} has no unit; write e.g. 20s, 2m or 500ms"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 20s, 2m or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?}; use ms, s, m or h (e.g. 20s)"
            ))
        }
    };
    if !(secs > 0.0 && secs <= 7.0 * 24.0 * 3600.0) {
        return Err(format!("{s:?}: must be more than 0 and at most a week"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// How long the sidecars get to drain after SIGTERM before SIGKILL
/// (their bootstrap sets `drain_timeout: 2s`).
const STOP_GRACE: Duration = Duration::from_secs(4);
/// Start-up limits.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(20);
/// The live view's split is over this many seconds.
const SPLIT_WINDOW: usize = 10;
/// Every n-th request carries `end-user: jason`.
const JASON_EVERY: u64 = 10;

/// Run the demo; returns the exit status.
///
/// Call it on the process's main thread: children get
/// `PR_SET_PDEATHSIG`, which fires when the thread that spawned them
/// exits.
pub fn run(args: DemoArgs) -> i32 {
    let stop = match process::stop_flag() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot install the SIGINT/SIGTERM handler: {e}");
            return 1;
        }
    };
    let mut demo = match Demo::prepare(&args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let outcome = demo.run(&args, &stop);
    let summary = demo.finish(outcome);
    let style = if args.json {
        Style::PLAIN
    } else {
        Style::for_stdout()
    };
    let mut out = std::io::stdout().lock();
    let printed = if args.json {
        serde_json::to_string_pretty(&summary)
            .map_err(std::io::Error::other)
            .and_then(|j| writeln!(out, "{j}"))
    } else {
        writeln!(out, "{}", final_text(&summary, &demo.plan, style))
    };
    let _ = printed.and_then(|()| out.flush());
    if let Some(why) = &summary.aborted {
        eprintln!("error: {why}");
    }
    i32::from(!summary.ok)
}

/// Where the demo keeps its files.
struct Workdir {
    path: PathBuf,
    /// A temporary directory of ours: removed at the end.
    temporary: bool,
}

struct Demo {
    plan: Plan,
    bins: Binaries,
    dir: Workdir,
    children: Children,
    apps: Vec<(&'static str, SocketAddr)>,
    control: SocketAddr,
    /// The last summary drawn (for rates), and the final one.
    last: Option<Summary>,
    /// The summaries of the last [`SPLIT_WINDOW`] seconds, oldest first
    /// (for the live split).
    history: VecDeque<Summary>,
    started: Instant,
}

/// How the run ended.
enum Outcome {
    /// Ctrl-C, SIGTERM or the duration.
    Stopped,
    /// Something broke; the mesh may be partly up.
    Failed(String),
}

impl Demo {
    fn prepare(args: &DemoArgs) -> Result<Demo, String> {
        let bins = Binaries::find()?;
        let plan = Plan::new(args.base_ip)?;
        plan.check_free()?;
        let dir = match &args.dir {
            Some(d) => Workdir {
                path: d.clone(),
                temporary: false,
            },
            None => {
                let p = std::env::temp_dir().join(format!("ringmesh-demo-{}", std::process::id()));
                Workdir {
                    path: p,
                    temporary: true,
                }
            }
        };
        for sub in ["mesh", "proxies", "logs"] {
            let p = dir.path.join(sub);
            fs::create_dir_all(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
        }
        Ok(Demo {
            plan,
            bins,
            dir,
            children: Children::default(),
            apps: Vec::new(),
            control: SocketAddr::from(([127, 0, 0, 1], 0)),
            last: None,
            history: VecDeque::new(),
            started: Instant::now(),
        })
    }

    fn progress(&self, args: &DemoArgs, msg: &str) {
        if args.json {
            eprintln!("demo: {msg}");
        } else {
            say(msg);
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path.join("logs").join(format!("{name}.log"))
    }

    /// Start everything, wait until the mesh answers, then run the load
    /// and the view until stopped.
    fn run(&mut self, args: &DemoArgs, stop: &AtomicBool) -> Outcome {
        match self.start(args, stop) {
            Ok(true) => {}
            Ok(false) => return Outcome::Stopped,
            Err(e) => return Outcome::Failed(e),
        }
        self.traffic(args, stop)
    }

    /// `Ok(false)` when stopped during start-up.
    fn start(&mut self, args: &DemoArgs, stop: &AtomicBool) -> Result<bool, String> {
        self.progress(
            args,
            &format!(
                "starting the sample apps (files and logs in {})",
                self.dir.path.display()
            ),
        );
        for pod in self.plan.pods.clone() {
            let mut cmd = Command::new(&self.bins.app);
            cmd.args(["--name", pod.app, "--version", pod.version])
                .args(["--listen", "127.0.0.1:0"]);
            if let Some(callee) = pod.calls {
                cmd.args(["--call", &format!("{callee}:{}", mesh::SERVICE_PORT)])
                    .args(["--via", &pod.outbound().to_string()]);
            }
            let name = format!("app {}", pod.name);
            let addr = self
                .children
                .spawn(
                    &name,
                    cmd,
                    &self.log(&format!("app-{}", pod.name)),
                    Some(LISTEN_TIMEOUT),
                )?
                .ok_or_else(|| format!("{name} did not report its address"))?;
            self.apps.push((pod.name, addr));
        }

        let mesh_dir = self.dir.path.join("mesh");
        for (name, text) in mesh::control_files(&self.plan, &self.apps) {
            write_atomic(&mesh_dir, name, &text)?;
        }
        self.progress(args, "starting ringmesh-control");
        let mut cmd = Command::new(&self.bins.control);
        // The CA's root and token key live with the rest of the demo's
        // files, so nothing lands in the working directory.
        let ca_dir = self.dir.path.join("ca");
        cmd.arg("--config-dir")
            .arg(&mesh_dir)
            .arg("--data-dir")
            .arg(&ca_dir)
            .args(["--xds-address", "127.0.0.1:0"])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        self.control = self
            .children
            .spawn(
                "ringmesh-control",
                cmd,
                &self.log("control"),
                Some(LISTEN_TIMEOUT),
            )?
            .ok_or("ringmesh-control did not report its address")?;

        self.progress(
            args,
            &format!(
                "starting {} sidecars on {}-{}",
                self.plan.pods.len(),
                self.plan.frontend().ip,
                self.plan.last_ip()
            ),
        );
        let proxies_dir = self.dir.path.join("proxies");
        for pod in self.plan.pods.clone() {
            // Each sidecar proves its service account to the CA with a
            // bootstrap token, then asks for its SVID with a CSR of a key
            // that never leaves it.
            let token = self.mint_token(&ca_dir, &pod)?;
            let token_file = proxies_dir.join(format!("{}.token", pod.name));
            write_atomic(&proxies_dir, &format!("{}.token", pod.name), &token)?;
            let file = format!("{}.yaml", pod.name);
            write_atomic(
                &proxies_dir,
                &file,
                &mesh::proxy_bootstrap(&pod, self.control, &token_file),
            )?;
            let mut cmd = Command::new(&self.bins.proxy);
            cmd.arg("--config")
                .arg(proxies_dir.join(&file))
                .args(["--concurrency", "1"])
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                );
            self.children.spawn(
                &format!("sidecar {}", pod.name),
                cmd,
                &self.log(&format!("sidecar-{}", pod.name)),
                None,
            )?;
        }
        if !self.wait_ready(stop)? {
            return Ok(false);
        }
        self.progress(
            args,
            "all sidecars ready; waiting for a request to make it end to end",
        );
        match load::warm_up(self.plan.frontend().inbound(), WARM_UP_TIMEOUT, stop) {
            Ok(()) => Ok(!stop.load(Ordering::Relaxed)),
            Err(_) if stop.load(Ordering::Relaxed) => Ok(false),
            Err(e) => {
                self.children.check_alive()?;
                Err(format!(
                    "{e}. The logs are in {} (they are kept)",
                    self.dir.path.join("logs").display()
                ))
            }
        }
    }

    /// Every sidecar answers `/ready` with 200. `Ok(false)` when stopped.
    /// A bootstrap token for `pod`'s service account, minted by
    /// `ringmesh-control token` from the CA's own data directory.
    fn mint_token(&self, ca_dir: &std::path::Path, pod: &mesh::Pod) -> Result<String, String> {
        let out = Command::new(&self.bins.control)
            .arg("token")
            .arg("--data-dir")
            .arg(ca_dir)
            .args(["--namespace", mesh::NAMESPACE, "--service-account", pod.app])
            .output()
            .map_err(|e| format!("running ringmesh-control token: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ringmesh-control token failed for {}: {}",
                pod.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if token.is_empty() {
            return Err(format!(
                "ringmesh-control token printed nothing for {}",
                pod.name
            ));
        }
        Ok(token)
    }

    fn wait_ready(&mut self, stop: &AtomicBool) -> Result<bool, String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pending: Vec<mesh::Pod> = self.plan.pods.clone();
        while !pending.is_empty() {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            self.children.check_alive()?;
            pending.retain(|p| {
                let mut c = http::Client::new(p.admin(), Duration::from_secs(1));
                !matches!(c.get("admin", "/ready", &[("connection", "close")]), Ok(r) if r.status == 200)
            });
            if pending.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let names: Vec<&str> = pending.iter().map(|p| p.name).collect();
                let tail = self
                    .children
                    .get(&format!("sidecar {}", pending[0].name))
                    .map(|c| c.log_tail(20))
                    .unwrap_or_default();
                return Err(format!(
                    "sidecars not ready after {READY_TIMEOUT:?}: {}. Last lines of {}'s log:\n{tail}",
                    names.join(", "),
                    pending[0].name
                ));
            }
            sleep_unless(stop, Duration::from_millis(100));
        }
        Ok(true)
    }

    fn probes(&self) -> Vec<Probe> {
        let p = &self.plan;
        let reviews_host = p.reviews_v1().service_authority();
        vec![
            Probe {
                name: "ratings → reviews",
                target: p.ratings().outbound(),
                host: reviews_host.clone(),
                expect: Expect::Forbidden,
                policy: format!(
                    "AuthorizationPolicy {}/{}",
                    mesh::NAMESPACE,
                    mesh::AUTHZ_POLICY
                ),
            },
            Probe {
                name: "outside → reviews",
                target: p.reviews_v1().inbound(),
                host: reviews_host,
                expect: Expect::Refused,
                policy: "PeerAuthentication STRICT".to_owned(),
            },
            Probe {
                name: "outside → ratings",
                target: p.ratings().inbound(),
                host: p.ratings().service_authority(),
                expect: Expect::Refused,
                policy: "PeerAuthentication STRICT".to_owned(),
            },
        ]
    }

    /// The load, the probes and the view, until stopped.
    fn traffic(&mut self, args: &DemoArgs, stop: &AtomicBool) -> Outcome {
        let mut load = Load::start(LoadConfig {
            target: self.plan.frontend().inbound(),
            rps: args.rps,
            jason_every: JASON_EVERY,
            connections: 4,
        });
        let mut probes = Probes::start(self.probes(), Duration::from_secs(1));
        self.started = Instant::now();
        let style = Style::for_stdout();
        let tty = !args.json && std::io::IsTerminal::is_terminal(&std::io::stdout());
        if !args.json && !tty {
            let (specs, probe_stats) = probes.stats();
            let s = self.summary(
                load.stats(),
                specs,
                probe_stats,
                &MeshScrape::default(),
                args,
            );
            say(&view::try_these(&s, &self.plan, Style::PLAIN));
        }
        let deadline = args.duration.map(|d| self.started + d);
        let outcome = loop {
            let until_next = Duration::from_secs(1);
            let until_end = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let stopped = sleep_unless(stop, until_end.map_or(until_next, |e| e.min(until_next)));
            if stopped || deadline.is_some_and(|d| Instant::now() >= d) {
                break Outcome::Stopped;
            }
            if let Err(e) = self.children.check_alive() {
                break Outcome::Failed(e);
            }
            let scrape = MeshScrape::take(&self.plan);
            let (specs, probe_stats) = probes.stats();
            let s = self.summary(load.stats(), specs, probe_stats, &scrape, args);
            let rates =
                Rates::between(self.last.as_ref(), &s).with_split_since(self.history.front(), &s);
            if tty {
                let mut out = std::io::stdout().lock();
                let _ = write!(
                    out,
                    "{}{}",
                    view::CLEAR,
                    view::render(&s, &rates, &self.plan, style, true)
                );
                let _ = out.flush();
            } else if !args.json {
                say(&view::status_line(&s, &rates));
            }
            if self.history.len() >= SPLIT_WINDOW {
                self.history.pop_front();
            }
            self.history.push_back(s.clone());
            self.last = Some(s);
        };
        let stats = load.stop();
        let (specs, probe_stats) = probes.stop();
        let scrape = MeshScrape::take(&self.plan);
        self.last = Some(self.summary(&stats, &specs, &probe_stats, &scrape, args));
        outcome
    }

    fn summary(
        &self,
        stats: &load::LoadStats,
        probes: &[Probe],
        probe_stats: &[load::ProbeStats],
        scrape: &MeshScrape,
        args: &DemoArgs,
    ) -> Summary {
        summary::build(&Inputs {
            plan: &self.plan,
            apps: &self.apps,
            control: self.control,
            target_rps: args.rps,
            elapsed: self.started.elapsed(),
            load: stats,
            probes,
            probe_stats,
            scrape,
            dir: self.dir.path.display().to_string(),
        })
    }

    /// Stop every child, remove the temporary directory, and return the
    /// final summary.
    fn finish(&mut self, outcome: Outcome) -> Summary {
        let processes = self.children.stop_all(STOP_GRACE);
        let mut s = self.last.take().unwrap_or_else(|| {
            summary::build(&Inputs {
                plan: &self.plan,
                apps: &self.apps,
                control: self.control,
                target_rps: 0,
                elapsed: Duration::ZERO,
                load: &load::LoadStats::empty(),
                probes: &[],
                probe_stats: &[],
                scrape: &MeshScrape::default(),
                dir: self.dir.path.display().to_string(),
            })
        });
        s.processes = processes;
        if let Outcome::Failed(why) = outcome {
            s.ok = false;
            s.aborted = Some(why);
        }
        // Keep the logs of a failed run; they are what explains it.
        if self.dir.temporary && s.aborted.is_none() {
            s.dir_removed = fs::remove_dir_all(&self.dir.path).is_ok();
        }
        s
    }
}

/// The summary printed at the end without `--json`.
fn final_text(s: &Summary, plan: &Plan, style: Style) -> String {
    let rates = Rates::between(None, s);
    // Before traffic started there is nothing to show but the processes.
    let mut o = if s.requests > 0 {
        view::render(s, &rates, plan, style, false)
    } else {
        String::new()
    };
    o.push_str("STOPPED\n");
    for p in &s.processes {
        o.push_str(&format!(
            "  {:<24} pid {:<8} {}{}\n",
            p.name,
            p.pid,
            p.end,
            if p.killed {
                " (killed after the grace period)"
            } else if p.died_early {
                " (had exited on its own)"
            } else {
                ""
            }
        ));
    }
    if s.dir_removed {
        o.push_str(&format!("  removed {}\n", s.dir));
    } else {
        o.push_str(&format!("  files and logs kept in {}\n", s.dir));
    }
    if s.requests > 0 {
        o.push_str(&format!(
            "{} requests, {} failed{}",
            s.requests,
            s.failures,
            if s.failures == 0 {
                ""
            } else {
                " (see ERRORS above)"
            }
        ));
    }
    o.trim_end().to_owned()
}

/// A line on stdout. A reader that went away (`ringmesh demo | head`) is
/// not a reason to stop the mesh uncleanly, so write errors are ignored
/// (`println!` would panic).
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.trim_end()).and_then(|()| out.flush());
}

/// Write `dir/name` atomically (temp file + rename), so the control plane
/// never reads half a file.
fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    fs::write(&tmp, text)
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        use clap::{CommandFactory, Parser};

        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            demo: DemoArgs,
        }
        Cli::command().debug_assert();
        let c = Cli::parse_from([
            "demo",
            "--duration",
            "20s",
            "--json",
            "--base-ip",
            "127.0.0.200",
        ]);
        assert_eq!(c.demo.duration, Some(Duration::from_secs(20)));
        assert!(c.demo.json);
        assert_eq!(c.demo.rps, 50);
        assert!(Cli::try_parse_from(["demo", "--rps", "0"]).is_err());
        assert!(Cli::try_parse_from(["demo", "--base-ip", "localhost"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("20").unwrap_err().contains("no unit"));
        assert!(parse_duration("2d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("x1s").is_err());
    }
}
