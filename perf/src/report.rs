//! Per-thread counters, their merge, and the two output formats.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use crate::args::BenchConfig;

/// Latencies are recorded in nanoseconds, 3 significant digits, up to 60 s.
pub const HIST_MAX_NS: u64 = 60_000_000_000;

/// Percentiles reported everywhere.
pub const PERCENTILES: [(f64, &str); 5] = [
    (50.0, "p50"),
    (90.0, "p90"),
    (99.0, "p99"),
    (99.9, "p99.9"),
    (99.99, "p99.99"),
];

/// Errors, by kind. Unlike latency samples, errors are counted over the
/// whole run, warm-up included, so that no failure goes unreported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Errors {
    /// TCP connect failed or timed out.
    pub connect: u64,
    /// No complete response within `--timeout` (open loop: also scheduled
    /// requests that could not be sent before the run ended).
    pub timeout: u64,
    /// A complete response with a status outside 200..=299.
    pub status: u64,
    /// The response could not be parsed.
    pub parse: u64,
    /// Read/write failure or the connection closed mid-response.
    pub io: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.status + self.parse + self.io
    }

    fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.status += o.status;
        self.parse += o.parse;
        self.io += o.io;
    }
}

/// What one load thread measured.
#[derive(Debug, Clone)]
pub struct Stats {
    pub hist: Histogram<u64>,
    /// Responses completed inside the measured window (any status).
    pub completed: u64,
    /// Of those, 2xx.
    pub ok: u64,
    pub errors: Errors,
    /// Requests written, whole run.
    pub sent: u64,
    /// TCP connections opened, whole run.
    pub connects: u64,
    /// Response bytes read inside the measured window (head + body).
    pub bytes: u64,
    /// Open loop: how late requests were written relative to their intended
    /// send time (timer accuracy plus waiting for an idle connection).
    pub send_lag: Histogram<u64>,
    /// Open loop: latency from the actual write of the request (service
    /// time, without the wait for the schedule or an idle connection).
    /// Diagnostic: `hist` (from the intended time) is the measurement.
    pub service: Histogram<u64>,
    /// When the last response of the measured window completed, as an
    /// offset from the start of the measured window.
    pub last_done: Duration,
    /// The thread's work ended before the deadline (request count reached).
    pub finished_early: bool,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            hist: Histogram::new_with_bounds(1, HIST_MAX_NS, 3)
                .expect("static histogram bounds are valid"),
            completed: 0,
            ok: 0,
            errors: Errors::default(),
            sent: 0,
            connects: 0,
            bytes: 0,
            send_lag: Histogram::new_with_bounds(1, HIST_MAX_NS, 2)
                .expect("static histogram bounds are valid"),
            service: Histogram::new_with_bounds(1, HIST_MAX_NS, 3)
                .expect("static histogram bounds are valid"),
            last_done: Duration::ZERO,
            finished_early: false,
        }
    }

    pub fn record_latency(&mut self, d: Duration) {
        let ns = (d.as_nanos() as u64).clamp(1, HIST_MAX_NS);
        // Cannot fail: the value is clamped into the histogram's range.
        let _ = self.hist.record(ns);
    }

    pub fn merge(&mut self, o: &Stats) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.hist.add(&o.hist);
        self.completed += o.completed;
        self.ok += o.ok;
        self.errors.add(&o.errors);
        self.sent += o.sent;
        self.connects += o.connects;
        self.bytes += o.bytes;
        let _ = self.send_lag.add(&o.send_lag);
        let _ = self.service.add(&o.service);
        self.last_done = self.last_done.max(o.last_done);
        self.finished_early &= o.finished_early;
    }

    pub fn record_send_lag(&mut self, d: Duration) {
        let _ = self
            .send_lag
            .record((d.as_nanos() as u64).clamp(1, HIST_MAX_NS));
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// The merged result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub stats: Stats,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// CPU time (user + system) the load generator used over the run.
    pub cpu: Duration,
    /// Wall time of the whole run (warm-up included), for the CPU share.
    pub wall: Duration,
}

impl Report {
    pub fn rps(&self) -> f64 {
        self.stats.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Open loop: (p50, p99, max) lag of sends behind schedule, µs.
    pub fn send_lag_us(&self) -> Option<(f64, f64, f64)> {
        let h = &self.stats.send_lag;
        (!h.is_empty()).then(|| {
            (
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                h.max() as f64 / 1000.0,
            )
        })
    }

    /// Latency quantile in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.stats.hist.value_at_quantile(q / 100.0) as f64 / 1000.0
    }

    pub fn to_json(&self, cfg: &BenchConfig) -> serde_json::Value {
        let h = &self.stats.hist;
        let mut lat = serde_json::Map::new();
        lat.insert("min".into(), json!(h.min() as f64 / 1000.0));
        lat.insert("mean".into(), json!(round2(h.mean() / 1000.0)));
        lat.insert("stdev".into(), json!(round2(h.stdev() / 1000.0)));
        lat.insert("max".into(), json!(h.max() as f64 / 1000.0));
        for (q, name) in PERCENTILES {
            lat.insert(name.into(), json!(self.quantile_us(q)));
        }
        let e = &self.stats.errors;
        json!({
            "tool": "ringmesh-bench",
            "url": cfg.url,
            "mode": if cfg.rate.is_some() { "open" } else { "closed" },
            "rate": cfg.rate,
            "threads": cfg.threads,
            "connections": cfg.connections,
            "duration_s": self.elapsed.as_secs_f64(),
            "warmup_s": cfg.warmup.as_secs_f64(),
            "requests": self.stats.completed,
            "ok": self.stats.ok,
            "sent": self.stats.sent,
            "connects": self.stats.connects,
            "rps": round2(self.rps()),
            "bytes": self.stats.bytes,
            "latency_us": lat,
            "errors": {
                "total": e.total(),
                "connect": e.connect,
                "timeout": e.timeout,
                "status": e.status,
                "parse": e.parse,
                "io": e.io,
            },
            "service_latency_us": (!self.stats.service.is_empty()).then(|| {
                let mut m = serde_json::Map::new();
                for (q, name) in PERCENTILES {
                    m.insert(name.into(), json!(self.stats.service.value_at_quantile(q / 100.0) as f64 / 1000.0));
                }
                m
            }),
            "send_lag_us": self.send_lag_us().map(|(p50, p99, max)| json!({"p50": p50, "p99": p99, "max": max})),
            "client_cpu_s": self.cpu.as_secs_f64(),
            "client_cpu_pct": round2(100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)),
        })
    }

    pub fn to_human(&self, cfg: &BenchConfig) -> String {
        use std::fmt::Write;
        let h = &self.stats.hist;
        let mut s = String::new();
        let mode = match cfg.rate {
            Some(r) => format!("open loop at {r} rps (latency from intended send time)"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            s,
            "ringmesh-bench {} — {mode}, {} thread(s), {} connection(s)",
            cfg.url, cfg.threads, cfg.connections
        );
        let _ = writeln!(
            s,
            "  requests   {} in {:.2}s = {:.1} rps ({} 2xx), {:.2} MB read, {} connects",
            self.stats.completed,
            self.elapsed.as_secs_f64(),
            self.rps(),
            self.stats.ok,
            self.stats.bytes as f64 / 1e6,
            self.stats.connects
        );
        let _ = writeln!(
            s,
            "  latency    min {:.1}  mean {:.1}  stdev {:.1}  max {:.1}  (µs)",
            h.min() as f64 / 1000.0,
            h.mean() / 1000.0,
            h.stdev() / 1000.0,
            h.max() as f64 / 1000.0
        );
        let _ = write!(s, "            ");
        for (q, name) in PERCENTILES {
            let _ = write!(s, "{name} {:.1}  ", self.quantile_us(q));
        }
        let _ = writeln!(s, "(µs)");
        let e = &self.stats.errors;
        let _ = writeln!(
            s,
            "  errors     {} (connect {}, timeout {}, status {}, parse {}, io {})",
            e.total(),
            e.connect,
            e.timeout,
            e.status,
            e.parse,
            e.io
        );
        if !self.stats.service.is_empty() {
            let _ = write!(s, "  service    ");
            for (q, name) in PERCENTILES {
                let _ = write!(
                    s,
                    "{name} {:.1}  ",
                    self.stats.service.value_at_quantile(q / 100.0) as f64 / 1000.0
                );
            }
            let _ = writeln!(s, "(µs, from the actual write)");
        }
        if let Some((p50, p99, max)) = self.send_lag_us() {
            let _ = writeln!(
                s,
                "  send lag   p50 {p50:.1}  p99 {p99:.1}  max {max:.1}  (µs behind the schedule)"
            );
        }
        let _ = writeln!(
            s,
            "  client cpu {:.2}s ({:.1}% of one core)",
            self.cpu.as_secs_f64(),
            100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
        );
        s
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// User + system CPU time of this process so far.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF
    // is always valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `ru` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
