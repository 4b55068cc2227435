//! The load threads: connections, the closed and open loops, the schedule.
//!
//! Each thread owns a current-thread tokio runtime and a `LocalSet`; all
//! per-thread state is in one `Rc<Shared>` (no locks, no atomics on the
//! request path). The threads meet once, after connecting and before the
//! start, so that connection set-up is never measured.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    io,
    rc::Rc,
    sync::{mpsc, Arc, Barrier},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
    task::LocalSet,
};

use crate::{
    args::BenchConfig,
    pacer::Pacer,
    report::{process_cpu, Report, Stats, HIST_MAX_NS},
    response::{Progress, ResponseError, ResponseReader, MAX_HEAD},
    tls::{Connector, Stream},
};

/// Pause after a failed connect, so a refused port does not turn into a
/// busy loop of connect errors.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
const INITIAL_BUF: usize = 16 * 1024;

/// Run the benchmark described by `cfg` and return the merged result.
pub fn run(cfg: BenchConfig) -> io::Result<Report> {
    let connector = Connector::new(&cfg).map_err(io::Error::other)?;
    let cfg = Arc::new(cfg);
    let barrier = Arc::new(Barrier::new(cfg.threads + 1));
    let mut handles = Vec::with_capacity(cfg.threads);
    let mut starts = Vec::with_capacity(cfg.threads);
    for idx in 0..cfg.threads {
        let (tx, rx) = mpsc::channel::<Instant>();
        starts.push(tx);
        let cfg = cfg.clone();
        let barrier = barrier.clone();
        let connector = connector.clone();
        let h = std::thread::Builder::new()
            .name(format!("bench-{idx}"))
            .spawn(move || thread_main(&cfg, connector, idx, &barrier, rx))?;
        handles.push(h);
    }
    barrier.wait();
    // A small lead so every thread is waiting on its schedule when it starts.
    let start = Instant::now() + Duration::from_millis(1);
    let cpu0 = process_cpu();
    for tx in &starts {
        // A thread that died already reports its error through join below.
        let _ = tx.send(start);
    }
    let mut merged = Stats::new();
    merged.finished_early = true;
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(stats)) => merged.merge(&stats),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some(io::Error::other("a load thread panicked"))),
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let wall = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    let elapsed = if merged.finished_early && merged.last_done > Duration::ZERO {
        merged.last_done.min(cfg.duration)
    } else {
        cfg.duration
    };
    Ok(Report {
        stats: merged,
        elapsed,
        cpu,
        wall,
    })
}

fn thread_main(
    cfg: &Arc<BenchConfig>,
    connector: Connector,
    idx: usize,
    barrier: &Barrier,
    start_rx: mpsc::Receiver<Instant>,
) -> io::Result<Stats> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            // Still meet the others at the barrier, or they wait forever.
            barrier.wait();
            return Err(e);
        }
    };
    let local = LocalSet::new();
    let n_conns = share(cfg.connections as u64, cfg.threads, idx) as usize;
    let mut stats = Stats::new();
    let conns: Vec<Option<Conn>> = local.block_on(&rt, async {
        let mut v = Vec::with_capacity(n_conns);
        for _ in 0..n_conns {
            let conn = connect(cfg, &connector).await;
            match conn {
                Some(_) => stats.connects += 1,
                None => stats.errors.connect += 1,
            }
            v.push(conn);
        }
        v
    });
    barrier.wait();
    let start = start_rx
        .recv()
        .map_err(|_| io::Error::other("the main thread went away"))?;
    let measure_start = start + cfg.warmup;
    let deadline = measure_start + cfg.duration;
    let shared = Rc::new(Shared {
        cfg: cfg.clone(),
        connector,
        stats: RefCell::new(stats),
        start,
        measure_start,
        deadline,
        remaining: Cell::new(
            cfg.requests
                .map_or(u64::MAX, |n| share(n, cfg.threads, idx)),
        ),
        queue: RefCell::new(VecDeque::new()),
        ticket_ready: Notify::new(),
        pacer_done: Cell::new(false),
        inflight: Cell::new(0),
        live_workers: Cell::new(0),
        all_done: Notify::new(),
    });
    local.block_on(&rt, drive(shared.clone(), conns, idx));
    drop(local);
    let stats = shared.stats.replace(Stats::new());
    Ok(stats)
}

/// Thread `idx`'s part of `total`, spread as evenly as possible.
fn share(total: u64, threads: usize, idx: usize) -> u64 {
    let t = threads as u64;
    total / t + u64::from((idx as u64) < total % t)
}

struct Shared {
    cfg: Arc<BenchConfig>,
    connector: Connector,
    stats: RefCell<Stats>,
    start: Instant,
    /// Start of the measured window (`start + warmup`).
    measure_start: Instant,
    /// End of the measured window; no request is started after it.
    deadline: Instant,
    /// Requests this thread may still send.
    remaining: Cell<u64>,
    /// Open loop: intended send times that are due and not yet taken.
    queue: RefCell<VecDeque<Instant>>,
    ticket_ready: Notify,
    pacer_done: Cell<bool>,
    /// Requests written and not yet finished.
    inflight: Cell<u64>,
    live_workers: Cell<usize>,
    all_done: Notify,
}

impl Shared {
    /// Reconnect during the run. The stats are borrowed only after the
    /// await: other tasks run meanwhile and borrow them too.
    async fn connect(&self) -> Option<Conn> {
        let conn = connect(&self.cfg, &self.connector).await;
        let mut st = self.stats.borrow_mut();
        match conn {
            Some(_) => st.connects += 1,
            None => st.errors.connect += 1,
        }
        conn
    }

    /// Take one request from the count budget.
    fn claim(&self) -> bool {
        let r = self.remaining.get();
        if r == 0 {
            return false;
        }
        self.remaining.set(r - 1);
        true
    }

    /// Account for one exchange. `since` is where its latency starts (the
    /// write, or the intended send time in open loop); `in_window` says
    /// whether it belongs to the measured window.
    fn finish(
        &self,
        res: Result<Result<Outcome, ExchangeError>, tokio::time::error::Elapsed>,
        since: Instant,
        in_window: bool,
        conn: &mut Option<Conn>,
    ) {
        let done = Instant::now();
        let mut st = self.stats.borrow_mut();
        match res {
            Ok(Ok(out)) => {
                let ok = (200..300).contains(&out.status);
                if !ok {
                    st.errors.status += 1;
                }
                if in_window {
                    st.completed += 1;
                    st.ok += u64::from(ok);
                    st.bytes += out.bytes;
                    st.record_latency(done.saturating_duration_since(since));
                    st.last_done = st
                        .last_done
                        .max(done.saturating_duration_since(self.measure_start));
                }
                if out.close {
                    *conn = None;
                }
            }
            Ok(Err(ExchangeError::Io(_))) => {
                st.errors.io += 1;
                *conn = None;
            }
            Ok(Err(ExchangeError::Response(e))) => {
                if e.is_io() {
                    st.errors.io += 1;
                } else {
                    st.errors.parse += 1;
                }
                *conn = None;
            }
            Err(_elapsed) => {
                st.errors.timeout += 1;
                *conn = None;
            }
        }
    }
}

async fn drive(sh: Rc<Shared>, conns: Vec<Option<Conn>>, idx: usize) {
    let open = sh.cfg.rate.is_some();
    match Pacer::new() {
        Ok(p) if p.sleep_until(sh.start, Duration::ZERO).await.is_ok() => {}
        _ => tokio::time::sleep_until(sh.start.into()).await,
    }
    sh.live_workers.set(conns.len());
    for conn in conns {
        let sh = sh.clone();
        tokio::task::spawn_local(async move {
            // Counts the worker out even if it panics, so that a bug shows
            // as an error instead of a run that hangs until its deadline.
            let _guard = WorkerGuard(sh.clone());
            if open {
                open_worker(&sh, conn).await;
            } else {
                closed_worker(&sh, conn).await;
            }
        });
    }
    if let Some(rate) = sh.cfg.rate {
        let sh = sh.clone();
        tokio::task::spawn_local(async move { pace(&sh, rate, idx).await });
    }
    // Closed loop: stop at the deadline, abandoning requests in flight (as
    // wrk does). Open loop: every scheduled request gets up to `timeout` to
    // finish, so slow answers at the end are not dropped from the tail.
    let hard_end = if open {
        sh.deadline + sh.cfg.timeout
    } else {
        sh.deadline
    };
    let finished = tokio::time::timeout_at(hard_end.into(), sh.all_done.notified())
        .await
        .is_ok();
    let mut st = sh.stats.borrow_mut();
    st.finished_early = finished && Instant::now() < sh.deadline;
    if open && !finished {
        // Scheduled but never answered in time: late requests are failures,
        // not omissions.
        st.errors.timeout += sh.queue.borrow().len() as u64 + sh.inflight.get();
    }
}

struct WorkerGuard(Rc<Shared>);

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let live = self.0.live_workers.get() - 1;
        self.0.live_workers.set(live);
        if live == 0 {
            self.0.all_done.notify_one();
        }
    }
}

async fn closed_worker(sh: &Shared, mut conn: Option<Conn>) {
    loop {
        if Instant::now() >= sh.deadline || !sh.claim() {
            return;
        }
        if conn.is_none() {
            conn = sh.connect().await;
        }
        let Some(c) = conn.as_mut() else {
            // The request is lost to the connect error (counted), so that a
            // count-bounded run against a dead target still ends.
            tokio::time::sleep(CONNECT_BACKOFF).await;
            continue;
        };
        let sent = Instant::now();
        sh.stats.borrow_mut().sent += 1;
        let res = tokio::time::timeout(sh.cfg.timeout, c.exchange(&sh.cfg.request)).await;
        let done = Instant::now();
        let in_window = done >= sh.measure_start && done <= sh.deadline;
        sh.finish(res, sent, in_window, &mut conn);
    }
}

async fn open_worker(sh: &Shared, mut conn: Option<Conn>) {
    loop {
        let intended = loop {
            if let Some(t) = sh.queue.borrow_mut().pop_front() {
                break Some(t);
            }
            if sh.pacer_done.get() {
                break None;
            }
            sh.ticket_ready.notified().await;
        };
        let Some(intended) = intended else { return };
        if conn.is_none() {
            conn = sh.connect().await;
        }
        let Some(c) = conn.as_mut() else {
            // The scheduled request is lost to the connect error (counted).
            tokio::time::sleep(CONNECT_BACKOFF).await;
            continue;
        };
        let sent = Instant::now();
        {
            let mut st = sh.stats.borrow_mut();
            st.sent += 1;
            if intended >= sh.measure_start {
                st.record_send_lag(sent.saturating_duration_since(intended));
            }
        }
        sh.inflight.set(sh.inflight.get() + 1);
        let res = tokio::time::timeout(sh.cfg.timeout, c.exchange(&sh.cfg.request)).await;
        sh.inflight.set(sh.inflight.get() - 1);
        if intended >= sh.measure_start && matches!(res, Ok(Ok(_))) {
            let ns = (sent.elapsed().as_nanos() as u64).clamp(1, HIST_MAX_NS);
            let _ = sh.stats.borrow_mut().service.record(ns);
        }
        sh.finish(res, intended, intended >= sh.measure_start, &mut conn);
    }
}

/// Open loop: make each intended send time available when it is due.
/// Thread `idx` of T takes every T-th slot of the global schedule, so the
/// threads together send at `rate`, evenly interleaved.
async fn pace(sh: &Shared, rate: f64, idx: usize) {
    let interval_ns = 1e9 * sh.cfg.threads as f64 / rate;
    let offset_ns = 1e9 * idx as f64 / rate;
    let pacer = Pacer::new().ok();
    for k in 0u64.. {
        let t = sh.start + Duration::from_nanos((offset_ns + k as f64 * interval_ns) as u64);
        if t >= sh.deadline || !sh.claim() {
            break;
        }
        match &pacer {
            Some(p) => {
                if p.sleep_until(t, sh.cfg.spin).await.is_err() {
                    tokio::time::sleep_until(t.into()).await;
                }
            }
            None => tokio::time::sleep_until(t.into()).await,
        }
        sh.queue.borrow_mut().push_back(t);
        sh.ticket_ready.notify_one();
    }
    sh.pacer_done.set(true);
    sh.ticket_ready.notify_waiters();
}

/// Connect (and, for https, handshake) within the connect timeout.
async fn connect(cfg: &BenchConfig, connector: &Connector) -> Option<Conn> {
    let res = tokio::time::timeout(cfg.connect_timeout, async {
        let tcp = TcpStream::connect(cfg.target.addr).await?;
        // Requests go out in one write; without NODELAY a body-carrying
        // request split by the kernel could wait on Nagle.
        let _ = tcp.set_nodelay(true);
        connector.wrap(tcp).await
    })
    .await;
    match res {
        Ok(Ok(stream)) => Some(Conn {
            stream,
            buf: vec![0; INITIAL_BUF],
            start: 0,
            end: 0,
            reader: ResponseReader::new(cfg.head_method),
        }),
        Ok(Err(_)) | Err(_) => None,
    }
}

enum ExchangeError {
    Io(#[allow(dead_code)] io::Error),
    Response(ResponseError),
}

struct Outcome {
    status: u16,
    close: bool,
    bytes: u64,
}

/// One keep-alive connection and its read buffer; `buf[start..end]` holds
/// received bytes not yet consumed.
struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    reader: ResponseReader,
}

impl Conn {
    /// Write the request and read one complete response.
    async fn exchange(&mut self, request: &[u8]) -> Result<Outcome, ExchangeError> {
        self.reader.reset();
        self.stream
            .write_all(request)
            .await
            .map_err(ExchangeError::Io)?;
        if self.stream.needs_flush() {
            self.stream.flush().await.map_err(ExchangeError::Io)?;
        }
        let mut bytes = 0u64;
        loop {
            if self.start < self.end {
                let (n, progress) = self
                    .reader
                    .feed(&self.buf[self.start..self.end])
                    .map_err(ExchangeError::Response)?;
                self.start += n;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                if progress == Progress::Done {
                    return Ok(Outcome {
                        status: self.reader.status,
                        close: self.reader.close,
                        bytes,
                    });
                }
            }
            if self.end == self.buf.len() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    // Only an incomplete head stays in the buffer; the reader
                    // fails it at MAX_HEAD, so growth stops there.
                    let len = (self.buf.len() * 2).min(MAX_HEAD + 1);
                    self.buf.resize(len, 0);
                }
            }
            let n = self
                .stream
                .read(&mut self.buf[self.end..])
                .await
                .map_err(ExchangeError::Io)?;
            if n == 0 {
                self.reader.eof().map_err(ExchangeError::Response)?;
                return Ok(Outcome {
                    status: self.reader.status,
                    close: true,
                    bytes,
                });
            }
            bytes += n as u64;
            self.end += n;
        }
    }
}
