//! The shard-per-core runtime.
//!
//! One shard per usable core: the affinity mask (`sched_getaffinity`) and
//! the cgroup v2 CPU quota (`cpu.max`) decide how many, `--concurrency`
//! overrides. Each shard is a thread pinned to its core running one monoio
//! runtime. The I/O driver is io_uring when the kernel lets us have it and
//! epoll otherwise: container runtimes' default seccomp profiles block
//! `io_uring_setup` (ENOSYS/EPERM), `kernel.io_uring_disabled` forbids it,
//! and a low memlock limit makes ring setup fail with ENOMEM on old kernels.
//! The proxy never fails to start because of that in `auto` mode: it says
//! which driver it runs on and why.
//!
//! Listeners are bound per shard with `SO_REUSEPORT`, so the kernel spreads
//! connections across shards and no accept lock or hand-off queue is shared.
#![deny(unsafe_op_in_unsafe_fn)]

use std::{fmt, future::Future, io, net::SocketAddr, str::FromStr, thread};

use tracing::{info, warn};

/// What the operator asked for (`--io-driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverChoice {
    #[default]
    Auto,
    Uring,
    Epoll,
}

impl FromStr for DriverChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DriverChoice::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(DriverChoice::Uring),
            "epoll" | "legacy" => Ok(DriverChoice::Epoll),
            other => Err(format!(
                "unknown io driver {other:?}: use auto, uring or epoll"
            )),
        }
    }
}

/// The driver a shard actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Epoll,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("--io-driver uring was requested but io_uring is unavailable: {0}; use --io-driver auto to fall back to epoll")]
    UringUnavailable(String),
    #[error("failed to start shard {shard}: {source}")]
    Shard {
        shard: usize,
        #[source]
        source: io::Error,
    },
}

/// Entries in each shard's submission queue.
const URING_ENTRIES: u32 = 1024;

/// Check whether io_uring can be used here, with the reason when not.
pub fn probe_uring() -> Result<(), String> {
    let ring = io_uring::IoUring::new(8).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) => format!("io_uring_setup returned ENOSYS (blocked by a seccomp profile or not built into the kernel): {e}"),
        Some(libc::EPERM) => format!("io_uring_setup returned EPERM (kernel.io_uring_disabled or a seccomp profile): {e}"),
        Some(libc::ENOMEM) => format!("io_uring_setup returned ENOMEM (RLIMIT_MEMLOCK too low on this kernel): {e}"),
        _ => format!("io_uring_setup failed: {e}"),
    })?;
    drop(ring);
    if !monoio::utils::detect_uring() {
        return Err("the kernel's io_uring lacks operations the proxy needs (probe failed)".into());
    }
    Ok(())
}

/// Decide the driver for every shard.
pub fn select_driver(choice: DriverChoice) -> Result<Driver, RuntimeError> {
    match choice {
        DriverChoice::Epoll => Ok(Driver::Epoll),
        DriverChoice::Uring => probe_uring()
            .map(|()| Driver::IoUring)
            .map_err(RuntimeError::UringUnavailable),
        DriverChoice::Auto => match probe_uring() {
            Ok(()) => Ok(Driver::IoUring),
            Err(reason) => {
                warn!(%reason, "io_uring unavailable, falling back to the epoll driver");
                Ok(Driver::Epoll)
            }
        },
    }
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set, and
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return (0..thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1))
            .collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE, the set's capacity.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// The cgroup v2 CPU quota in cores (`cpu.max` = `QUOTA PERIOD`), if any.
pub fn cgroup_cpu_quota() -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut consider = |path: &str| {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Some(q) = parse_cpu_max(&text) {
                best = Some(best.map_or(q, |b: f64| b.min(q)));
            }
        }
    };
    consider("/sys/fs/cgroup/cpu.max");
    if let Ok(cg) = std::fs::read_to_string("/proc/self/cgroup") {
        for line in cg.lines() {
            if let Some(rel) = line.strip_prefix("0::") {
                let rel = rel.trim();
                if !rel.is_empty() && rel != "/" {
                    consider(&format!("/sys/fs/cgroup{rel}/cpu.max"));
                }
            }
        }
    }
    best
}

fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    let period: f64 = it.next()?.parse().ok()?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    let q: f64 = quota.parse().ok()?;
    Some(q / period)
}

/// How many shards, and which CPU each is pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// `cpus[i]` is shard `i`'s CPU; `None` when not pinned (more shards
    /// than allowed CPUs were requested).
    pub cpus: Vec<Option<usize>>,
}

impl ShardPlan {
    /// Usable cores = allowed CPUs, capped by the cgroup quota (rounded up,
    /// at least one). `concurrency` overrides the count.
    pub fn detect(concurrency: Option<usize>) -> ShardPlan {
        Self::from_parts(&allowed_cpus(), cgroup_cpu_quota(), concurrency)
    }

    fn from_parts(allowed: &[usize], quota: Option<f64>, concurrency: Option<usize>) -> ShardPlan {
        let allowed: Vec<usize> = if allowed.is_empty() {
            vec![0]
        } else {
            allowed.to_vec()
        };
        let by_quota = quota
            .map(|q| (q.ceil() as usize).max(1))
            .unwrap_or(usize::MAX);
        let n = concurrency
            .unwrap_or_else(|| allowed.len().min(by_quota))
            .max(1);
        // Pin only when every shard gets a CPU of its own.
        let pin = n <= allowed.len();
        ShardPlan {
            cpus: (0..n).map(|i| pin.then(|| allowed[i])).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.cpus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cpus.is_empty()
    }
}

fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: see allowed_cpus; `cpu` < CPU_SETSIZE because it came from the
    // allowed set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Start shard `index` on its own thread: pin it, build its runtime on
/// `driver`, and run `main(driver)` to completion. If the io_uring runtime
/// cannot be built on this thread (e.g. memlock exhausted by earlier rings),
/// the shard falls back to epoll and says so; `main` learns the driver it got.
pub fn spawn_shard<F, Fut>(
    index: usize,
    cpu: Option<usize>,
    driver: Driver,
    main: F,
) -> Result<thread::JoinHandle<()>, RuntimeError>
where
    F: FnOnce(Driver) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    thread::Builder::new()
        .name(format!("shard-{index}"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                if let Err(e) = pin_current_thread(cpu) {
                    warn!(shard = index, cpu, error = %e, "could not pin shard to its CPU");
                }
            }
            if driver == Driver::IoUring {
                match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .with_entries(URING_ENTRIES)
                    .enable_timer()
                    .build()
                {
                    Ok(mut rt) => {
                        info!(shard = index, ?cpu, driver = "io_uring", "shard started");
                        rt.block_on(main(Driver::IoUring));
                        return;
                    }
                    Err(e) => warn!(shard = index, error = %e, "io_uring runtime failed to build; this shard uses epoll"),
                }
            }
            let mut rt = match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(shard = index, error = %e, "epoll runtime failed to build; shard not started");
                    return;
                }
            };
            info!(shard = index, ?cpu, driver = "epoll", "shard started");
            rt.block_on(main(Driver::Epoll));
        })
        .map_err(|source| RuntimeError::Shard { shard: index, source })
}

/// Bind a listening socket with `SO_REUSEPORT` (and `SO_REUSEADDR`) so every
/// shard can own one for the same address.
pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<monoio::net::TcpListener> {
    let std_listener = bind_reuseport_std(addr, backlog)?;
    monoio::net::TcpListener::from_std(std_listener)
}

/// The std form of [`bind_reuseport`], for tests and the control thread.
pub fn bind_reuseport_std(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_parsing() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("garbage"), None);
    }

    #[test]
    fn plan_respects_quota_and_override() {
        let p = ShardPlan::from_parts(&[0, 1, 2, 3], Some(1.5), None);
        assert_eq!(p.cpus, vec![Some(0), Some(1)]);
        let p = ShardPlan::from_parts(&[2, 5], None, None);
        assert_eq!(p.cpus, vec![Some(2), Some(5)]);
        let p = ShardPlan::from_parts(&[0, 1], None, Some(1));
        assert_eq!(p.cpus, vec![Some(0)]);
        // More shards than CPUs: none pinned.
        let p = ShardPlan::from_parts(&[0], None, Some(3));
        assert_eq!(p.cpus, vec![None, None, None]);
    }

    #[test]
    fn driver_choice_parses() {
        assert_eq!("uring".parse::<DriverChoice>(), Ok(DriverChoice::Uring));
        assert_eq!("epoll".parse::<DriverChoice>(), Ok(DriverChoice::Epoll));
        assert!("kqueue".parse::<DriverChoice>().is_err());
    }

    /// Both drivers really run I/O: accept and echo over a reuseport pair.
    #[test]
    fn both_drivers_serve_reuseport_listeners() {
        for driver in [Driver::IoUring, Driver::Epoll] {
            if driver == Driver::IoUring {
                probe_uring().expect(
                    "io_uring must be available on the test machine (kernel 6.x, no seccomp)",
                );
            }
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = probe.local_addr().unwrap();
            drop(probe);
            let (tx, rx) = std::sync::mpsc::channel();
            let h = spawn_shard(0, None, driver, move |got| async move {
                let a = bind_reuseport(addr, 16).unwrap();
                // A second socket on the same address must bind (SO_REUSEPORT).
                let _b = bind_reuseport(addr, 16).unwrap();
                tx.send(got).unwrap();
                let (mut s, _) = a.accept().await.unwrap();
                use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
                let (r, buf) = s.read(vec![0u8; 16]).await;
                let n = r.unwrap();
                let (r, _) = s.write_all(buf[..n].to_vec()).await;
                r.unwrap();
            })
            .unwrap();
            assert_eq!(rx.recv().unwrap(), driver);
            use std::io::{Read, Write};
            // Either socket may get the connection; retry until the accepting one does.
            let mut got = Vec::new();
            for _ in 0..50 {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(std::time::Duration::from_millis(200)))
                    .unwrap();
                c.write_all(b"ping").unwrap();
                let mut buf = [0u8; 4];
                if c.read_exact(&mut buf).is_ok() {
                    got = buf.to_vec();
                    break;
                }
            }
            assert_eq!(got, b"ping");
            h.join().unwrap();
        }
    }
}
