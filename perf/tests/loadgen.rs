//! The load generator against a scripted in-process HTTP/1.1 server: counts
//! and error kinds must come out exact. Every run is bounded by a request
//! count or a sub-second duration.
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    thread,
    time::Duration,
};

use clap::Parser;
use ringmesh_perf::{args::Cli, BenchConfig, Report};

/// Serves each connection on its own thread until the client closes it.
/// The response depends on the request path.
fn server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            // Responses are written in 7-byte pieces: without NODELAY, Nagle
            // and delayed ACKs would make every response take 40 ms.
            let _ = conn.set_nodelay(true);
            thread::spawn(move || serve(conn));
        }
    });
    format!("http://{addr}")
}

fn serve(mut conn: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 4);
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let (resp, close): (&[u8], bool) = match path.as_str() {
            "/ok" => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
            // Body split over several writes below.
            "/chunked" => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n", false),
            "/close" => (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close", true),
            "/500" => (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nerr", false),
            "/garbage" => (b"SPDY/9 what\r\n\r\n", true),
            "/truncated" => (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", true),
            "/slow" => {
                thread::sleep(Duration::from_millis(300));
                (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false)
            }
            _ => (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false),
        };
        for part in resp.chunks(7) {
            if conn.write_all(part).is_err() {
                return;
            }
        }
        if close {
            return;
        }
    }
}

fn run(args: &[&str]) -> Report {
    let mut v = vec!["ringmesh-bench"];
    v.extend_from_slice(args);
    let cfg = BenchConfig::try_from(Cli::try_parse_from(v).unwrap()).unwrap();
    ringmesh_perf::run(cfg).unwrap()
}

#[test]
fn closed_loop_counts_exactly() {
    let base = server();
    let r = run(&["-c", "4", "-n", "200", &format!("{base}/ok")]);
    assert_eq!(r.stats.completed, 200);
    assert_eq!(r.stats.ok, 200);
    assert_eq!(r.stats.sent, 200);
    assert_eq!(r.stats.errors.total(), 0);
    assert_eq!(r.stats.connects, 4);
    assert_eq!(r.stats.hist.len(), 200);
}

#[test]
fn chunked_and_close_delimited_bodies() {
    let base = server();
    let r = run(&["-c", "2", "-n", "50", &format!("{base}/chunked")]);
    assert_eq!(
        (r.stats.completed, r.stats.ok, r.stats.errors.total()),
        (50, 50, 0)
    );
    assert_eq!(r.stats.connects, 2, "chunked responses keep the connection");
    let r = run(&["-c", "2", "-n", "20", &format!("{base}/close")]);
    assert_eq!(
        (r.stats.completed, r.stats.ok, r.stats.errors.total()),
        (20, 20, 0)
    );
    assert_eq!(
        r.stats.connects, 20,
        "one connection per close-delimited response"
    );
}

#[test]
fn errors_by_kind() {
    let base = server();
    let r = run(&["-c", "1", "-n", "10", &format!("{base}/500")]);
    assert_eq!(
        (r.stats.completed, r.stats.ok, r.stats.errors.status),
        (10, 0, 10)
    );
    let r = run(&["-c", "1", "-n", "5", &format!("{base}/garbage")]);
    assert_eq!(
        (
            r.stats.completed,
            r.stats.errors.parse,
            r.stats.errors.total()
        ),
        (0, 5, 5)
    );
    let r = run(&["-c", "1", "-n", "5", &format!("{base}/truncated")]);
    assert_eq!(
        (r.stats.completed, r.stats.errors.io, r.stats.errors.total()),
        (0, 5, 5)
    );
    let r = run(&[
        "-c",
        "1",
        "-n",
        "2",
        "--timeout",
        "100ms",
        &format!("{base}/slow"),
    ]);
    assert_eq!((r.stats.completed, r.stats.errors.timeout), (0, 2));
}

#[test]
fn connect_errors() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = run(&[
        "-c",
        "2",
        "-d",
        "200ms",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!(r.stats.completed, 0);
    assert!(r.stats.errors.connect >= 2, "{:?}", r.stats.errors);
    assert_eq!(r.stats.errors.total(), r.stats.errors.connect);
    // A count-bounded run against a dead target ends: each failed connect
    // uses up a request.
    let r = run(&["-c", "2", "-n", "5", &format!("http://127.0.0.1:{port}/")]);
    assert_eq!(r.stats.completed, 0);
    assert_eq!(
        r.stats.errors.connect,
        2 + 5,
        "2 initial connects, then one per request"
    );
}

#[test]
fn open_loop_sends_at_the_rate() {
    let base = server();
    let r = run(&[
        "-c",
        "4",
        "-r",
        "400",
        "-d",
        "500ms",
        "-w",
        "100ms",
        &format!("{base}/ok"),
    ]);
    // 400 rps over a 0.5 s window: 200 scheduled requests, all answered.
    assert_eq!(r.stats.completed, 200, "{:?}", r.stats.errors);
    assert_eq!(r.stats.errors.total(), 0);
    assert_eq!(
        r.stats.sent, 240,
        "warm-up requests are sent but not measured"
    );
    assert!(r.send_lag_us().is_some());
}

#[test]
fn open_loop_counts_late_requests_as_timeouts() {
    let base = server();
    // One connection, 300 ms per answer, 20 requests scheduled over 200 ms:
    // the schedule cannot be kept; what was not answered by the end of the
    // grace period counts as timed out, nothing is silently dropped.
    let r = run(&[
        "-c",
        "1",
        "-r",
        "100",
        "-d",
        "200ms",
        "--timeout",
        "400ms",
        &format!("{base}/slow"),
    ]);
    assert_eq!(
        r.stats.completed + r.stats.errors.timeout,
        20,
        "{:?} completed {}",
        r.stats.errors,
        r.stats.completed
    );
    assert!(r.stats.errors.timeout > 0);
    // Latency runs from the intended send time, so queueing shows.
    assert!(r.quantile_us(99.0) > 300_000.0);
}
