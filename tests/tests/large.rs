//! Large bodies are streamed, not buffered: 1 GiB up to `/sink` and 1 GiB
//! down from `/bytes/N` (plus chunked variants), checksummed end to end,
//! while the proxy's RSS is sampled from `/proc/PID/status`.
//!
//! The bound: RSS may grow at most [`RSS_GROWTH_LIMIT_KIB`] over the
//! baseline taken after a warm-up request. Buffering a body would grow it by
//! hundreds of MiB; the design target is a few MiB, so 32 MiB proves
//! streaming without being sensitive to allocator behaviour.
//!
//! The transfers in this file run one at a time (a process-wide lock), so
//! each gets the machine's two cores and its timing means something.

// Test-harness threads, not the proxy's data path that the lint protects:
// one lock serialises the transfers of this file.
#![allow(clippy::disallowed_types)]

use std::{
    io::Write,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    thread,
    time::{Duration, Instant},
};

use ringmesh_e2e::{
    on_both_drivers, pattern, rss_kib, show, simple_http_config, Backend, Client, Driver, Proxy,
};

const GIB: u64 = 1 << 30;
const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;
/// Fail rather than hang; the target is well under 30 s on loopback.
const TRANSFER_LIMIT: Duration = Duration::from_secs(60);

static SERIAL: Mutex<()> = Mutex::new(());

fn crc_of_pattern(len: u64) -> u32 {
    static CACHE: OnceLock<Mutex<Vec<(u64, u32)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    if let Some(&(_, c)) = cache.lock().unwrap().iter().find(|(l, _)| *l == len) {
        return c;
    }
    let c = pattern::crc32(len);
    cache.lock().unwrap().push((len, c));
    c
}

/// Samples a process's RSS every 20 ms until dropped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    handle: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (Arc::clone(&stop), Arc::clone(&max));
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    m.fetch_max(kib, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler {
            stop,
            max,
            handle: Some(handle),
        }
    }
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

struct Run {
    _guard: std::sync::MutexGuard<'static, ()>,
    _backend: Backend,
    proxy: Proxy,
    baseline_kib: u64,
}

fn prepare(driver: Driver) -> Run {
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let backend = Backend::start("big");
    let proxy = Proxy::start(driver, simple_http_config(&[backend.addr()]));
    // Warm up: one request each way touches the buffers and the pool.
    let mut c = Client::connect(proxy.addr("http"));
    assert_eq!(
        c.request("POST", "svc", "/sink", &[], &[7u8; 100_000])
            .unwrap()
            .status,
        200
    );
    assert_eq!(c.get("svc", "/bytes/100000").status, 200);
    drop(c);
    thread::sleep(Duration::from_millis(100));
    let baseline_kib = proxy.rss_kib().expect("reading the proxy's VmRSS");
    Run {
        _guard: guard,
        _backend: backend,
        proxy,
        baseline_kib,
    }
}

fn check_rss(run: &Run, max_kib: u64, what: &str) {
    let growth = max_kib.saturating_sub(run.baseline_kib);
    eprintln!(
        "{what}: proxy RSS baseline {} KiB, max {max_kib} KiB, growth {growth} KiB",
        run.baseline_kib
    );
    assert!(
        growth < RSS_GROWTH_LIMIT_KIB,
        "{what}: proxy RSS grew by {growth} KiB (baseline {} KiB, max {max_kib} KiB): the body is being buffered",
        run.baseline_kib
    );
}

fn upload(driver: Driver, len: u64, chunked: bool) {
    let run = prepare(driver);
    let mut c = Client::connect(run.proxy.addr("http"));
    c.set_read_timeout(TRANSFER_LIMIT);
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {len}")
    };
    c.send(format!("POST /sink HTTP/1.1\r\nHost: svc\r\n{framing}\r\n\r\n").as_bytes())
        .unwrap();
    let mut w = c.stream().try_clone().unwrap();
    let sampler = RssSampler::start(run.proxy.pid());
    let t = Instant::now();
    let writer = thread::spawn(move || -> std::io::Result<()> {
        let mut res = Ok(());
        pattern::for_each_slice(len, |b| {
            if res.is_ok() {
                res = if chunked {
                    w.write_all(format!("{:x}\r\n", b.len()).as_bytes())
                        .and_then(|_| w.write_all(b))
                        .and_then(|_| w.write_all(b"\r\n"))
                } else {
                    w.write_all(b)
                };
            }
        });
        res?;
        if chunked {
            w.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    });
    let r = c.read_response();
    let took = t.elapsed();
    let max = sampler.finish();
    let wrote = writer.join().unwrap();
    let r =
        r.unwrap_or_else(|e| panic!("no response to the {len}-byte upload after {took:?}: {e}"));
    wrote.unwrap_or_else(|e| panic!("writing the upload failed: {e}"));
    assert_eq!(r.status, 200, "{}", show(&r.raw_head));
    let v = r.json();
    eprintln!(
        "upload {len} bytes (chunked: {chunked}) in {took:?}: {:.0} MiB/s",
        len as f64 / 1048576.0 / took.as_secs_f64()
    );
    assert_eq!(
        v["bytes"], len,
        "the backend received a different byte count"
    );
    assert_eq!(
        v["crc32"],
        crc_of_pattern(len),
        "the body was corrupted on the way"
    );
    assert!(took < TRANSFER_LIMIT, "upload took {took:?}");
    check_rss(&run, max, "upload");
}

fn download(driver: Driver, len: u64, chunked: bool) {
    let run = prepare(driver);
    let mut c = Client::connect(run.proxy.addr("http"));
    c.set_read_timeout(TRANSFER_LIMIT);
    let q = if chunked { "?chunked=1" } else { "" };
    c.send(format!("GET /bytes/{len}{q} HTTP/1.1\r\nHost: svc\r\n\r\n").as_bytes())
        .unwrap();
    let sampler = RssSampler::start(run.proxy.pid());
    let t = Instant::now();
    let mut crc = crc32fast::Hasher::new();
    let r = c.read_response_streaming(false, &mut |b| crc.update(b));
    let took = t.elapsed();
    let max = sampler.finish();
    let r = r.unwrap_or_else(|e| panic!("download of {len} bytes failed after {took:?}: {e}"));
    eprintln!(
        "download {len} bytes (chunked: {chunked}) in {took:?}: {:.0} MiB/s",
        len as f64 / 1048576.0 / took.as_secs_f64()
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body_len, len);
    assert_eq!(
        crc.finalize(),
        crc_of_pattern(len),
        "the body was corrupted on the way"
    );
    assert!(took < TRANSFER_LIMIT, "download took {took:?}");
    check_rss(&run, max, "download");
    // The connection is still usable after a gigabyte.
    assert_eq!(c.get("svc", "/").status, 200);
}

fn upload_1gib_content_length(driver: Driver) {
    upload(driver, GIB, false);
}

fn download_1gib_content_length(driver: Driver) {
    download(driver, GIB, false);
}

fn upload_256mib_chunked(driver: Driver) {
    upload(driver, 256 << 20, true);
}

fn download_256mib_chunked(driver: Driver) {
    download(driver, 256 << 20, true);
}

on_both_drivers!(
    upload_1gib_content_length,
    download_1gib_content_length,
    upload_256mib_chunked,
    download_256mib_chunked,
);
