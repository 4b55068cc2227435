//! The demo's traffic: a bounded load loop into the frontend, as an
//! ingress caller would (plain HTTP to the frontend pod's sidecar), and
//! the probes that try what the security policy forbids.
//!
//! - **Load**: a fixed total rate spread over a few keep-alive
//!   connections; every `jason_every`-th request carries `end-user:
//!   jason`. Each answer is checked end to end (frontend → reviews →
//!   ratings for v2) and counted per VirtualService route; the split per
//!   version is what the answers say, not what the configuration says.
//!   Latency goes into an HDR histogram per route.
//! - **Probes**: once a second, calls that the mesh's policy says must
//!   not get through — `ratings → reviews` through ratings' sidecar (the
//!   AuthorizationPolicy allows only the frontend: expect 403) and a
//!   plaintext call from outside straight to a reviews sidecar (STRICT
//!   mTLS: expect the connection refused). What actually happens is
//!   counted, so the view shows whether the policy is enforced.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use crate::{
    http::{Client, Response},
    mesh::CANARY_HEADER,
};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Distinct error messages kept for the report.
const MAX_ERRORS: usize = 10;

/// The VirtualService route a request takes (decided by what it sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// No `end-user` header: the 90/10 split.
    Canary,
    /// `end-user: jason`: always v2.
    Jason,
}

impl Route {
    pub const ALL: [Route; 2] = [Route::Canary, Route::Jason];

    pub fn name(self) -> &'static str {
        match self {
            Route::Canary => "canary",
            Route::Jason => "jason",
        }
    }
}

/// Counters of one route.
#[derive(Clone)]
pub struct RouteStats {
    pub sent: u64,
    /// 200 with a complete chain of answers.
    pub ok: u64,
    /// Anything else: an error status, a broken chain, no answer.
    pub failed: u64,
    /// Successful answers per reviews version.
    pub by_version: BTreeMap<String, u64>,
    /// Answered by reviews v2, whose answer includes ratings'.
    pub with_ratings: u64,
    /// Latency of successful requests, µs.
    pub latency: Histogram<u64>,
}

impl RouteStats {
    fn new() -> RouteStats {
        RouteStats {
            sent: 0,
            ok: 0,
            failed: 0,
            by_version: BTreeMap::new(),
            with_ratings: 0,
            latency: new_histogram(),
        }
    }

    pub fn version(&self, v: &str) -> u64 {
        self.by_version.get(v).copied().unwrap_or(0)
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// Everything the load loop measured so far.
#[derive(Clone)]
pub struct LoadStats {
    pub started: Instant,
    pub routes: BTreeMap<Route, RouteStats>,
    /// (message, count), first seen first.
    pub errors: Vec<(String, u64)>,
}

impl LoadStats {
    /// Nothing measured yet.
    pub fn empty() -> LoadStats {
        LoadStats {
            started: Instant::now(),
            routes: Route::ALL.iter().map(|r| (*r, RouteStats::new())).collect(),
            errors: Vec::new(),
        }
    }

    pub fn route(&self, r: Route) -> &RouteStats {
        &self.routes[&r]
    }

    fn record(&mut self, done: Done) {
        let rs = self
            .routes
            .entry(done.route)
            .or_insert_with(RouteStats::new);
        rs.sent += 1;
        match done.verdict {
            Ok(chain) => {
                rs.ok += 1;
                *rs.by_version.entry(chain.reviews_version).or_default() += 1;
                rs.with_ratings += u64::from(chain.ratings);
                let us = u64::try_from(done.elapsed.as_micros()).unwrap_or(u64::MAX);
                rs.latency.saturating_record(us.max(1));
            }
            Err(why) => {
                rs.failed += 1;
                self.error(format!("{}: {why}", done.route.name()));
            }
        }
    }

    /// Count one request as the load loop would (for tests of what is
    /// built on the counters).
    #[cfg(test)]
    pub(crate) fn record_for_test(
        &mut self,
        route: Route,
        verdict: Result<Chain, String>,
        elapsed: Duration,
    ) {
        self.record(Done {
            route,
            verdict,
            elapsed,
        });
    }

    fn error(&mut self, msg: String) {
        if let Some(e) = self.errors.iter_mut().find(|(m, _)| *m == msg) {
            e.1 += 1;
        } else if self.errors.len() < MAX_ERRORS {
            self.errors.push((msg, 1));
        }
    }

    pub fn sent(&self) -> u64 {
        self.routes.values().map(|r| r.sent).sum()
    }
    pub fn failed(&self) -> u64 {
        self.routes.values().map(|r| r.failed).sum()
    }
}

/// What one answer from the frontend says about the path it took.
#[derive(Debug, PartialEq, Eq)]
pub struct Chain {
    pub reviews_version: String,
    pub ratings: bool,
}

/// Check a frontend answer end to end: `Err(why)` unless it is a 200
/// from the frontend with reviews' answer inside (and ratings' inside
/// that, for a reviews that calls ratings).
pub fn check_answer(r: &Response) -> Result<Chain, String> {
    let body: Value = serde_json::from_slice(&r.body).map_err(|_| {
        format!(
            "{} {}",
            r.status,
            r.text().trim().chars().take(120).collect::<String>()
        )
    })?;
    if r.status != 200 {
        let why = body["error"].as_str().unwrap_or("");
        return Err(format!("{} from {}: {why}", r.status, who(&body)));
    }
    let reviews = &body["downstream"];
    if body["name"] != "frontend" || reviews["name"] != "reviews" {
        return Err(format!(
            "200 but not frontend → reviews: {}",
            body.to_string().chars().take(160).collect::<String>()
        ));
    }
    let version = reviews["version"].as_str().unwrap_or("?").to_owned();
    let ratings = reviews["downstream"]["name"] == "ratings";
    Ok(Chain {
        reviews_version: version,
        ratings,
    })
}

fn who(body: &Value) -> String {
    match (body["name"].as_str(), body["version"].as_str()) {
        (Some(n), Some(v)) => format!("{n}-{v}"),
        (Some(n), None) => n.to_owned(),
        _ => "the proxy".to_owned(),
    }
}

/// How the load loop runs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The frontend pod's inbound address (its sidecar).
    pub target: SocketAddr,
    /// Requests per second, in total.
    pub rps: u32,
    /// Every n-th request carries `end-user: jason`.
    pub jason_every: u64,
    /// Keep-alive connections (one thread each).
    pub connections: usize,
}

/// One finished request, sent by a worker to whoever owns the stats.
struct Done {
    route: Route,
    verdict: Result<Chain, String>,
    elapsed: Duration,
}

/// The running load loop. Workers send each outcome over a channel; the
/// owner folds them into [`LoadStats`] when it looks (no shared locks).
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    done: mpsc::Receiver<Done>,
    stats: LoadStats,
}

impl Load {
    pub fn start(cfg: LoadConfig) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, done) = mpsc::channel();
        let seq = Arc::new(AtomicU64::new(0));
        let connections = cfg.connections.max(1);
        // Each connection sends every `connections / rps` seconds, the
        // connections staggered evenly.
        let interval = Duration::from_secs_f64(connections as f64 / f64::from(cfg.rps.max(1)));
        let threads = (0..connections)
            .filter_map(|i| {
                let (stop, tx, seq, cfg) = (stop.clone(), tx.clone(), seq.clone(), cfg.clone());
                let offset = interval.mul_f64(i as f64 / connections as f64);
                thread::Builder::new()
                    .name(format!("load-{i}"))
                    .spawn(move || worker(&cfg, interval, offset, &stop, &tx, &seq))
                    .ok()
            })
            .collect();
        Load {
            stop,
            threads,
            done,
            stats: LoadStats::empty(),
        }
    }

    /// Everything measured so far.
    pub fn stats(&mut self) -> &LoadStats {
        while let Ok(d) = self.done.try_recv() {
            self.stats.record(d);
        }
        &self.stats
    }

    /// Stop sending, wait for the requests in flight, return the totals.
    pub fn stop(mut self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        self.stats();
        self.stats
    }
}

fn worker(
    cfg: &LoadConfig,
    interval: Duration,
    offset: Duration,
    stop: &AtomicBool,
    done: &mpsc::Sender<Done>,
    seq: &AtomicU64,
) {
    let mut client = Client::new(cfg.target, REQUEST_TIMEOUT);
    let host = cfg.target.to_string();
    let mut next = Instant::now() + offset;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if next > now {
            thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        // Open loop at a fixed rate; after a stall, do not burst to catch up.
        next = if now - next > Duration::from_secs(1) {
            now + interval
        } else {
            next + interval
        };
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let route = if cfg.jason_every > 0 && n % cfg.jason_every == cfg.jason_every - 1 {
            Route::Jason
        } else {
            Route::Canary
        };
        let headers: &[(&str, &str)] = match route {
            Route::Jason => &[CANARY_HEADER],
            Route::Canary => &[],
        };
        let started = Instant::now();
        let result = client.get(&host, "/", headers);
        let elapsed = started.elapsed();
        let verdict = match result {
            Ok(r) => check_answer(&r),
            Err(e) => Err(e.to_string()),
        };
        let d = Done {
            route,
            verdict,
            elapsed,
        };
        if done.send(d).is_err() {
            return; // nobody is counting any more
        }
    }
}

/// Send requests until one plain and one `end-user: jason` request make
/// it end to end (the control plane has configured every sidecar), or
/// `timeout` passes; `stop` cancels.
pub fn warm_up(target: SocketAddr, timeout: Duration, stop: &AtomicBool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut client = Client::new(target, REQUEST_TIMEOUT);
    let host = target.to_string();
    let mut last = String::from("no answer yet");
    let (mut plain, mut jason) = (false, false);
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        if !plain {
            match client.get(&host, "/", &[]).map_err(|e| e.to_string()) {
                Ok(r) => match check_answer(&r) {
                    Ok(_) => plain = true,
                    Err(e) => last = e,
                },
                Err(e) => last = e,
            }
        }
        if !jason {
            match client.get(&host, "/", &[CANARY_HEADER]) {
                Ok(r) => match check_answer(&r) {
                    Ok(c) if c.reviews_version == "v2" && c.ratings => jason = true,
                    Ok(c) => last = format!("jason's request answered by reviews {c:?}"),
                    Err(e) => last = e,
                },
                Err(e) => last = e.to_string(),
            }
        }
        if plain && jason {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "requests through the mesh did not succeed within {timeout:?}; last: {last}"
    ))
}

/// What a probe's policy says should happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// `403` from the destination's sidecar (AuthorizationPolicy).
    Forbidden,
    /// The plaintext connection refused or reset (STRICT mTLS).
    Refused,
}

/// A call the mesh's policy forbids.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `ratings → reviews`.
    pub name: &'static str,
    /// Where it is sent and with which Host.
    pub target: SocketAddr,
    pub host: String,
    pub expect: Expect,
    /// The policy that forbids it, for the view.
    pub policy: String,
}

/// What the probes saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeStats {
    pub sent: u64,
    /// 2xx: the call got through.
    pub allowed: u64,
    /// 403.
    pub forbidden: u64,
    /// Connection refused or reset before an answer.
    pub refused: u64,
    /// Anything else (another status, a timeout).
    pub other: u64,
    /// The last outcome, e.g. `200 from reviews-v1`.
    pub last: String,
}

impl ProbeStats {
    /// Denied the way the policy says, every time it was tried.
    pub fn enforced(&self, expect: Expect) -> Option<bool> {
        if self.sent == 0 {
            return None;
        }
        let denied = match expect {
            Expect::Forbidden => self.forbidden,
            Expect::Refused => self.refused,
        };
        Some(self.allowed == 0 && denied > 0)
    }
}

/// The probes, run once a second on one thread, which sends each
/// outcome (by probe index) to the owner.
pub struct Probes {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    outcomes: mpsc::Receiver<(usize, Outcome)>,
    specs: Vec<Probe>,
    stats: Vec<ProbeStats>,
}

impl Probes {
    pub fn start(specs: Vec<Probe>, every: Duration) -> Probes {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, outcomes) = mpsc::channel();
        let thread = {
            let (stop, specs) = (stop.clone(), specs.clone());
            thread::Builder::new()
                .name("probes".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        for (i, p) in specs.iter().enumerate() {
                            if tx.send((i, probe_once(p))).is_err() {
                                return;
                            }
                        }
                        crate::process::sleep_unless(&stop, every);
                    }
                })
                .ok()
        };
        Probes {
            stop,
            thread,
            outcomes,
            stats: vec![ProbeStats::default(); specs.len()],
            specs,
        }
    }

    /// The probes and what each saw so far.
    pub fn stats(&mut self) -> (&[Probe], &[ProbeStats]) {
        while let Ok((i, o)) = self.outcomes.try_recv() {
            if let Some(s) = self.stats.get_mut(i) {
                s.record(o);
            }
        }
        (&self.specs, &self.stats)
    }

    pub fn stop(mut self) -> (Vec<Probe>, Vec<ProbeStats>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats();
        (self.specs, self.stats)
    }
}

/// The outcome of one probe call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Status(u16, String),
    Refused(String),
    Error(String),
}

impl ProbeStats {
    fn record(&mut self, o: Outcome) {
        self.sent += 1;
        self.last = match &o {
            Outcome::Status(s, who) => format!("{s} from {who}"),
            Outcome::Refused(why) => format!("refused ({why})"),
            Outcome::Error(why) => why.clone(),
        };
        match o {
            Outcome::Status(200..=299, _) => self.allowed += 1,
            Outcome::Status(403, _) => self.forbidden += 1,
            Outcome::Refused(_) => self.refused += 1,
            Outcome::Status(..) | Outcome::Error(_) => self.other += 1,
        }
    }
}

fn probe_once(p: &Probe) -> Outcome {
    // A fresh connection every time: a refusal shows at connect or on the
    // first exchange.
    let mut c = Client::new(p.target, REQUEST_TIMEOUT);
    match c.get(&p.host, "/", &[("connection", "close")]) {
        Ok(r) => {
            let who = r
                .header("x-backend")
                .map_or_else(|| "the sidecar".to_owned(), str::to_owned);
            Outcome::Status(r.status, who)
        }
        Err(e) if e.refused() => Outcome::Refused(e.to_string()),
        Err(e) => Outcome::Error(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
            close: false,
        }
    }

    #[test]
    fn answers_are_checked_end_to_end() {
        let ok = response(
            200,
            r#"{"name":"frontend","version":"v1","downstream":{"name":"reviews","version":"v2","downstream":{"name":"ratings","version":"v1"}}}"#,
        );
        assert_eq!(
            check_answer(&ok),
            Ok(Chain {
                reviews_version: "v2".into(),
                ratings: true
            })
        );
        let v1 = response(
            200,
            r#"{"name":"frontend","version":"v1","downstream":{"name":"reviews","version":"v1"}}"#,
        );
        assert_eq!(check_answer(&v1).unwrap().reviews_version, "v1");

        let broken = response(
            502,
            r#"{"name":"frontend","version":"v1","error":"reviews:9080 via 127.0.0.100:15001 answered 503: no healthy upstream"}"#,
        );
        let e = check_answer(&broken).unwrap_err();
        assert!(e.starts_with("502 from frontend-v1: reviews:9080"), "{e}");
        let proxy = response(404, "no route");
        assert_eq!(check_answer(&proxy).unwrap_err(), "404 no route");
        let wrong = response(200, r#"{"name":"ratings"}"#);
        assert!(check_answer(&wrong).is_err());
    }

    #[test]
    fn probe_outcomes_decide_enforcement() {
        let mut s = ProbeStats::default();
        assert_eq!(s.enforced(Expect::Forbidden), None);
        s.record(Outcome::Status(200, "reviews-v1".into()));
        assert_eq!(s.enforced(Expect::Forbidden), Some(false));
        assert_eq!(s.last, "200 from reviews-v1");
        let mut s = ProbeStats::default();
        s.record(Outcome::Status(403, "the sidecar".into()));
        s.record(Outcome::Status(403, "the sidecar".into()));
        assert_eq!(s.enforced(Expect::Forbidden), Some(true));
        assert_eq!(s.enforced(Expect::Refused), Some(false));
        let mut s = ProbeStats::default();
        s.record(Outcome::Refused("connection reset".into()));
        assert_eq!(s.enforced(Expect::Refused), Some(true));
        assert_eq!((s.sent, s.refused, s.other), (1, 1, 0));
    }
}
