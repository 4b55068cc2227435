//! JSON-lines access log, written off the request path.
//!
//! A shard formats the line and offers it to a bounded queue
//! (`try_send`, never waiting); one writer thread, started with the first
//! line, drains the queue into the configured file. When the queue is full
//! (a slow disk, a pipe nobody reads) the line is dropped and counted in
//! `ringmesh_access_log_dropped_total`: a request never waits for its log.

use std::{
    cell::{OnceCell, RefCell},
    fmt::Write as _,
    io::Write as _,
    path::PathBuf,
    sync::{
        mpsc::{sync_channel, Receiver, SyncSender, TrySendError},
        Arc, OnceLock,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ringmesh_config::AccessLogConfig;
use ringmesh_metrics::{prometheus::Exposition, Counter, ShardCounters, SharedCounter};

use super::{LogFields, RequestRecord};

struct Line {
    path: Arc<PathBuf>,
    text: String,
}

/// Process-wide: the queue and the writer's counters.
#[derive(Default)]
pub struct Sink {
    tx: OnceLock<SyncSender<Line>>,
    written: Arc<SharedCounter>,
    write_errors: Arc<SharedCounter>,
    dropped: ShardCounters,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

impl Sink {
    fn sender(&self, queue: usize) -> SyncSender<Line> {
        self.tx
            .get_or_init(|| {
                let (tx, rx) = sync_channel(queue);
                let written = self.written.clone();
                let errors = self.write_errors.clone();
                let spawned = std::thread::Builder::new()
                    .name("access-log".into())
                    .spawn(move || writer(rx, &written, &errors));
                if let Err(e) = spawned {
                    // The receiver is gone with the closure: every send
                    // fails and is counted as a drop.
                    tracing::error!(error = %e, "cannot start the access log writer");
                }
                tx
            })
            .clone()
    }

    pub fn render(&self, e: &mut Exposition) {
        e.counter(
            "ringmesh_access_log_written_total",
            "Access log lines written.",
            &[],
            self.written.get(),
        );
        e.counter(
            "ringmesh_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind (queue full).",
            &[],
            self.dropped.total(),
        );
        e.counter(
            "ringmesh_access_log_write_errors_total",
            "Access log lines lost to open or write errors.",
            &[],
            self.write_errors.get(),
        );
    }
}

fn open(path: &std::path::Path) -> std::io::Result<Box<dyn std::io::Write>> {
    if path == std::path::Path::new("/dev/stdout") {
        return Ok(Box::new(std::io::stdout()));
    }
    if path == std::path::Path::new("/dev/stderr") {
        return Ok(Box::new(std::io::stderr()));
    }
    // Opening a FIFO blocks until a reader comes: fine here, the shards
    // keep queueing (and dropping) meanwhile.
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(Box::new(std::io::BufWriter::with_capacity(64 * 1024, f)))
}

fn writer(rx: Receiver<Line>, written: &SharedCounter, errors: &SharedCounter) {
    let mut out: Option<(Arc<PathBuf>, Box<dyn std::io::Write>)> = None;
    let mut first = rx.recv().ok();
    while let Some(line) = first.take() {
        let mut next = Some(line);
        while let Some(line) = next.take() {
            if out.as_ref().is_none_or(|(p, _)| **p != *line.path) {
                if let Some((_, mut w)) = out.take() {
                    let _ = w.flush();
                }
                match open(&line.path) {
                    Ok(w) => out = Some((line.path.clone(), w)),
                    Err(e) => {
                        errors.inc();
                        tracing::warn!(path = %line.path.display(), error = %e, "cannot open the access log");
                    }
                }
            }
            if let Some((_, w)) = &mut out {
                match w.write_all(line.text.as_bytes()) {
                    Ok(()) => written.inc(),
                    Err(_) => {
                        errors.inc();
                        out = None;
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        // The queue is empty: make what was written visible.
        if let Some((_, w)) = &mut out {
            if w.flush().is_err() {
                errors.inc();
                out = None;
            }
        }
        first = rx.recv().ok();
    }
}

/// A shard's end of the queue.
#[derive(Default)]
pub struct ShardLog {
    tx: RefCell<Option<SyncSender<Line>>>,
    dropped: OnceCell<Arc<Counter>>,
    path: RefCell<Option<(Arc<AccessLogConfig>, Arc<PathBuf>)>>,
}

impl ShardLog {
    pub(super) fn send(
        &self,
        shared: &crate::shared::Shared,
        cfg: &Arc<AccessLogConfig>,
        r: &RequestRecord<'_>,
        f: &LogFields<'_>,
    ) {
        let sink = &shared.stats.istio.access_log;
        let path = {
            let mut p = self.path.borrow_mut();
            match &*p {
                Some((c, path)) if Arc::ptr_eq(c, cfg) => path.clone(),
                _ => {
                    let path = Arc::new(cfg.path.clone());
                    *p = Some((cfg.clone(), path.clone()));
                    path
                }
            }
        };
        let text = format_line(SystemTime::now(), r, f);
        let mut tx = self.tx.borrow_mut();
        let tx = tx.get_or_insert_with(|| sink.sender(cfg.queue_lines));
        match tx.try_send(Line { path, text }) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.get_or_init(|| sink.dropped.register()).inc();
            }
        }
    }
}

/// One JSON line (with its newline).
pub fn format_line(now: SystemTime, r: &RequestRecord<'_>, f: &LogFields<'_>) -> String {
    let start = now.checked_sub(r.duration).unwrap_or(now);
    let mut o = String::with_capacity(512);
    o.push_str("{\"start_time\":\"");
    rfc3339(start, &mut o);
    o.push('"');
    let bytes = |o: &mut String, k: &str, v: Option<&[u8]>| {
        let _ = write!(o, ",\"{k}\":");
        match v {
            Some(v) => json_str(&String::from_utf8_lossy(v), o),
            None => o.push_str("null"),
        }
    };
    bytes(&mut o, "method", Some(f.method));
    bytes(&mut o, "path", Some(f.path));
    o.push_str(",\"protocol\":");
    json_str(f.protocol, &mut o);
    bytes(&mut o, "authority", Some(f.authority));
    let _ = write!(
        o,
        ",\"response_code\":{},\"response_flags\":",
        r.response_code
    );
    json_str(&r.flags.render(), &mut o);
    let _ = write!(o, ",\"duration_ms\":{}", r.duration.as_millis());
    o.push_str(",\"upstream_cluster\":");
    match r.cluster {
        Some(c) => json_str(&c.name, &mut o),
        None => o.push_str("null"),
    }
    o.push_str(",\"upstream_host\":");
    match f.upstream_host {
        Some(a) => json_str(&a.to_string(), &mut o),
        None => o.push_str("null"),
    }
    let _ = write!(
        o,
        ",\"bytes_received\":{},\"bytes_sent\":{}",
        r.request_bytes, r.response_bytes
    );
    o.push_str(",\"downstream_peer_principal\":");
    match f.downstream_principal {
        Some(p) => json_str(p, &mut o),
        None => o.push_str("null"),
    }
    bytes(&mut o, "x_request_id", f.request_id);
    o.push_str(",\"trace_id\":");
    match f.traceparent.and_then(trace_id) {
        Some(t) => json_str(t, &mut o),
        None => o.push_str("null"),
    }
    bytes(&mut o, "user_agent", f.user_agent);
    o.push_str(",\"reporter\":");
    json_str(r.reporter.as_str(), &mut o);
    o.push_str("}\n");
    o
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
fn trace_id(tp: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(tp).ok()?.trim();
    let mut parts = s.split('-');
    let _version = parts.next().filter(|v| v.len() == 2)?;
    let id = parts.next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "0".repeat(32))
        .then_some(id)
}

fn json_str(s: &str, o: &mut String) {
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn rfc3339(t: SystemTime, o: &mut String) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        o,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{PeerId, Protocol, Reporter, ResponseFlags, Security};

    #[test]
    fn dates() {
        let mut s = String::new();
        rfc3339(
            UNIX_EPOCH + Duration::from_millis(1_795_480_744_123),
            &mut s,
        );
        assert_eq!(s, "2026-11-24T00:39:04.123Z");
        s.clear();
        rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400), &mut s);
        assert_eq!(s, "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn line_is_json() {
        let r = RequestRecord {
            reporter: Reporter::Destination,
            peer: PeerId::UNKNOWN,
            cluster: None,
            protocol: Protocol::Http,
            response_code: 503,
            grpc_status: None,
            flags: ResponseFlags::UH,
            request_bytes: 10,
            response_bytes: 20,
            duration: Duration::from_millis(7),
            security: Security::MutualTls,
        };
        let f = LogFields {
            method: b"GET",
            path: b"/a\"b",
            protocol: "HTTP/1.1",
            authority: b"h",
            user_agent: Some(b"curl/8\x01"),
            traceparent: Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ..Default::default()
        };
        let line = format_line(UNIX_EPOCH + Duration::from_secs(10), &r, &f);
        assert!(line.ends_with("}\n"));
        assert!(
            line.starts_with("{\"start_time\":\"1970-01-01T00:00:09.993Z\""),
            "{line}"
        );
        assert!(line.contains("\"path\":\"/a\\\"b\""), "{line}");
        assert!(line.contains("\"user_agent\":\"curl/8\\u0001\""), "{line}");
        assert!(
            line.contains("\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\""),
            "{line}"
        );
        assert!(line.contains("\"response_flags\":\"UH\""), "{line}");
        assert!(line.contains("\"upstream_cluster\":null"), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["response_code"], 503);
        assert_eq!(v["bytes_sent"], 20);
    }
}
