//! The demo's children: finding the binaries, starting them so that
//! nothing outlives the demo, and stopping them by PID.
//!
//! Every child is started
//! - in a process group of its own, so a Ctrl-C on the terminal reaches
//!   only the demo, which then stops the children in order (load first,
//!   then SIGTERM to everyone, SIGKILL to whoever is still there after the
//!   grace period);
//! - with `PR_SET_PDEATHSIG = SIGKILL`, so a demo that crashes or is
//!   killed takes its children with it. The signal fires when the *thread*
//!   that spawned the child exits, so every child is spawned from the
//!   demo's main thread, which lives until the end.
//!
//! stdout and stderr go to a log file per child in the demo's directory;
//! a child that prints `LISTENING <addr>` first (the control plane, the
//! sample apps) has that line read, and the rest of its stdout copied to
//! its log.

use std::{
    env, fs,
    io::{self, BufRead, BufReader, Write},
    net::SocketAddr,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child as StdChild, ChildStdout, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use serde::Serialize;

/// The command that builds everything the demo runs.
pub const BUILD_HINT: &str =
    "cargo build --release -p ringmesh-control -p ringmesh-proxy -p ringmesh-demo -p ringmesh-cli";

/// The binaries the demo starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub control: PathBuf,
    pub proxy: PathBuf,
    pub app: PathBuf,
}

impl Binaries {
    /// Next to the running executable (the same cargo target directory;
    /// for an example or a test binary, also its parent directory), else
    /// on `PATH`.
    pub fn find() -> Result<Binaries, String> {
        let mut dirs = Vec::new();
        if let Ok(exe) = env::current_exe() {
            if let Some(dir) = exe.parent() {
                dirs.push(dir.to_path_buf());
                // `target/<profile>/examples/x` and `target/<profile>/deps/x`.
                if dir
                    .file_name()
                    .is_some_and(|n| n == "examples" || n == "deps")
                {
                    if let Some(up) = dir.parent() {
                        dirs.push(up.to_path_buf());
                    }
                }
            }
        }
        if let Some(path) = env::var_os("PATH") {
            dirs.extend(env::split_paths(&path));
        }
        let find = |name: &str| -> Option<PathBuf> {
            dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p))
        };
        let (control, proxy, app) = (
            find("ringmesh-control"),
            find("ringmesh-proxy"),
            find("ringmesh-demo-app"),
        );
        match (control, proxy, app) {
            (Some(control), Some(proxy), Some(app)) => Ok(Binaries {
                control,
                proxy,
                app,
            }),
            (c, p, a) => {
                let missing: Vec<&str> = [
                    (c.is_none(), "ringmesh-control"),
                    (p.is_none(), "ringmesh-proxy"),
                    (a.is_none(), "ringmesh-demo-app"),
                ]
                .into_iter()
                .filter_map(|(m, n)| m.then_some(n))
                .collect();
                let here = dirs
                    .first()
                    .map_or_else(|| "?".to_owned(), |d| d.display().to_string());
                Err(format!(
                    "cannot find {} next to this executable ({here}) or on PATH. Build them \
                     with:\n  {BUILD_HINT}\nor run `bash scripts/demo.sh`, which builds and \
                     starts the demo",
                    missing.join(", ")
                ))
            }
        }
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Set on SIGINT or SIGTERM.
pub fn stop_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

/// Sleep up to `d`, returning early (true) once `stop` is set.
pub fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// One running child.
pub struct Child {
    pub name: String,
    child: StdChild,
    pub log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `Some(status)` once it has exited (reaped).
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exited = Some(s);
            }
        }
        self.exited
    }
}

/// How a child ended, for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    pub name: String,
    pub pid: u32,
    /// `exited 0`, `signal 15 (SIGTERM)`, ...
    pub end: String,
    /// It had to be killed after the grace period.
    pub killed: bool,
    /// It had exited on its own before the demo stopped it.
    pub died_early: bool,
}

/// Every child of the demo; stopped when dropped.
#[derive(Default)]
pub struct Children {
    list: Vec<Child>,
}

impl Children {
    /// Start `cmd` as `name`, its output in `log`. With `listening`, wait
    /// (up to `timeout`) for its first stdout line `LISTENING <addr>`.
    pub fn spawn(
        &mut self,
        name: &str,
        mut cmd: Command,
        log: &Path,
        listening: Option<Duration>,
    ) -> Result<Option<SocketAddr>, String> {
        let file = fs::File::create(log)
            .map_err(|e| format!("creating the log {}: {e}", log.display()))?;
        let err_file = file
            .try_clone()
            .map_err(|e| format!("creating the log {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stderr(err_file);
        if listening.is_some() {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(file.try_clone().map_err(|e| e.to_string())?);
        }
        cmd.process_group(0);
        die_with_parent(&mut cmd);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {name} ({program}): {e}"))?;
        let stdout = child.stdout.take();
        self.list.push(Child {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            exited: None,
        });
        let (Some(timeout), Some(stdout)) = (listening, stdout) else {
            return Ok(None);
        };
        let line = first_line_then_copy(stdout, file, timeout);
        let addr = line
            .as_deref()
            .and_then(|l| l.trim().strip_prefix("LISTENING "))
            .and_then(|a| a.trim().parse().ok());
        match addr {
            Some(a) => Ok(Some(a)),
            None => {
                let c = self.list.last_mut().expect("just pushed");
                if line.as_deref() == Some("") {
                    // Its stdout closed: it is exiting; give it a moment.
                    let until = Instant::now() + Duration::from_secs(1);
                    while c.try_exited().is_none() && Instant::now() < until {
                        thread::sleep(Duration::from_millis(10));
                    }
                }
                let state = match c.try_exited() {
                    Some(s) => format!("exited ({})", describe(s)),
                    None => format!("did not print `LISTENING <addr>` within {timeout:?}"),
                };
                Err(format!(
                    "{name} {state}; its log ({}):\n{}",
                    c.log.display(),
                    c.log_tail(30)
                ))
            }
        }
    }

    pub fn get(&mut self, name: &str) -> Option<&mut Child> {
        self.list.iter_mut().find(|c| c.name == name)
    }

    /// (name, pid) of every child, in start order.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.list
            .iter()
            .map(|c| (c.name.clone(), c.pid()))
            .collect()
    }

    /// An error naming the first child that exited, with its log.
    pub fn check_alive(&mut self) -> Result<(), String> {
        for c in &mut self.list {
            if let Some(s) = c.try_exited() {
                return Err(format!(
                    "{} (pid {}) exited unexpectedly ({}); its log ({}):\n{}",
                    c.name,
                    c.pid(),
                    describe(s),
                    c.log.display(),
                    c.log_tail(30)
                ));
            }
        }
        Ok(())
    }

    /// SIGTERM to every child still running, wait up to `grace` for all
    /// of them, SIGKILL the rest; every child is reaped. Idempotent.
    pub fn stop_all(&mut self, grace: Duration) -> Vec<Stopped> {
        let mut died_early = Vec::with_capacity(self.list.len());
        for c in &mut self.list {
            let early = c.try_exited().is_some();
            died_early.push(early);
            if !early {
                signal(c.pid(), libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.list.iter_mut().any(|c| c.try_exited().is_none()) {
            thread::sleep(Duration::from_millis(20));
        }
        let mut out = Vec::with_capacity(self.list.len());
        for (c, early) in self.list.iter_mut().zip(died_early) {
            let mut killed = false;
            if c.try_exited().is_none() {
                killed = true;
                let _ = c.child.kill();
                if let Ok(s) = c.child.wait() {
                    c.exited = Some(s);
                }
            }
            out.push(Stopped {
                name: c.name.clone(),
                pid: c.pid(),
                end: c.exited.map_or_else(|| "unknown".to_owned(), describe),
                killed,
                died_early: early,
            });
        }
        out
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop_all(Duration::from_secs(3));
    }
}

fn describe(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited {c}"),
        (None, Some(sig)) => format!("signal {sig}{}", signal_name(sig)),
        _ => s.to_string(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        _ => "",
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions. The pid is a
    // child of ours that has not been reaped (callers check), so it cannot
    // have been reused by another process.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// `PR_SET_PDEATHSIG = SIGKILL` in the child, and a check that the parent
/// did not die before that took effect.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls prctl(2) and getppid(2), which are async-signal-safe, and
    // allocates nothing (the error path builds an io::Error from an errno
    // or a static kind, neither allocates).
    unsafe {
        cmd.pre_exec(move || {
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
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                // The demo died between fork and prctl.
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            Ok(())
        });
    }
}

/// Read the first line of `stdout` (within `timeout`), then keep copying
/// the rest into `log` on a thread of its own, so the child never blocks
/// on a full pipe.
fn first_line_then_copy(
    stdout: ChildStdout,
    mut log: fs::File,
    timeout: Duration,
) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name("child-stdout".into())
        .spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = log.write_all(line.as_bytes());
            let _ = tx.send(line);
            let _ = io::copy(&mut r, &mut log);
        });
    if spawned.is_err() {
        return None;
    }
    rx.recv_timeout(timeout).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = env::temp_dir().join(format!("ringmesh-demo-proc-{tag}-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn stop_all_terms_then_kills_and_reports() {
        let d = dir("stop");
        let mut children = Children::default();
        // Exits on SIGTERM.
        let mut polite = Command::new("sleep");
        polite.arg("30");
        children
            .spawn("polite", polite, &d.join("polite.log"), None)
            .unwrap();
        // Ignores SIGTERM: killed after the grace period.
        let mut stubborn = Command::new("sh");
        stubborn.args(["-c", "trap '' TERM; echo LISTENING 127.0.0.1:9; sleep 30"]);
        let addr = children
            .spawn(
                "stubborn",
                stubborn,
                &d.join("stubborn.log"),
                Some(Duration::from_secs(5)),
            )
            .unwrap();
        assert_eq!(addr, Some("127.0.0.1:9".parse().unwrap()));
        children.check_alive().unwrap();
        let pids = children.pids();
        let started = Instant::now();
        let stopped = children.stop_all(Duration::from_millis(500));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(stopped.len(), 2);
        assert_eq!(stopped[0].end, "signal 15 (SIGTERM)");
        assert!(!stopped[0].killed);
        assert!(stopped[1].killed, "{stopped:?}");
        for (_, pid) in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "pid {pid} still exists"
            );
        }
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn a_child_that_never_says_listening_is_an_error_with_its_log() {
        let d = dir("listening");
        let mut children = Children::default();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo oops >&2; exit 3"]);
        let err = children
            .spawn("bad", cmd, &d.join("bad.log"), Some(Duration::from_secs(5)))
            .unwrap_err();
        assert!(
            err.contains("bad exited (exited 3)") && err.contains("oops"),
            "{err}"
        );
        let _ = fs::remove_dir_all(d);
    }
}
