//! Command line and the validated run configuration.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    time::Duration,
};

use clap::Parser;

/// Hard cap on a run started with `--requests` and no `--duration`, so that
/// every run is bounded in time as well as in count.
pub const MAX_UNBOUNDED_RUN: Duration = Duration::from_secs(600);

/// HTTP/1.1 load generator: closed loop (default) or open loop at a constant
/// rate with coordinated-omission correction (`--rate`).
#[derive(Debug, Parser)]
#[command(name = "ringmesh-bench", version)]
pub struct Cli {
    /// Target URL, `http://HOST:PORT/PATH` (`https://` with the `tls`
    /// cargo feature).
    pub url: String,
    /// Connections, in total over all threads.
    #[arg(short = 'c', long, default_value_t = 50)]
    pub connections: usize,
    /// Load threads, each with its own current-thread runtime.
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Measured duration (after `--warmup`), e.g. `10s`, `500ms`, `1m`.
    /// Default 10s; with `--requests` and no duration, the run is capped at
    /// 10 minutes.
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many requests have been sent (warm-up included).
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Open loop: requests per second in total, latency measured from each
    /// request's intended send time. Without it: closed loop.
    #[arg(short = 'r', long)]
    pub rate: Option<f64>,
    /// Load applied but not measured before the measured window.
    #[arg(short = 'w', long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// Open loop: wake this much before each intended send time and spin
    /// (yielding to the runtime) for the rest, trading client CPU for
    /// schedule accuracy; `0s` relies on the timer alone.
    #[arg(long, value_parser = parse_duration, default_value = "100us")]
    pub spin: Duration,
    /// Per-request timeout (write of the request to end of the response).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// TCP connect timeout.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub connect_timeout: Duration,
    /// Request method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body (sent with `Content-Length`).
    #[arg(long)]
    pub body: Option<String>,
    /// https: trust the CA certificates in this PEM file.
    #[arg(long)]
    pub cacert: Option<std::path::PathBuf>,
    /// https: do not verify the server certificate (handshake signatures
    /// are still checked).
    #[arg(long)]
    pub insecure: bool,
    /// Print the result as one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// `https://`: the connection is TLS.
    pub tls: bool,
    /// Host without port or brackets (the TLS server name).
    pub host: String,
    /// `host[:port]` as written in the URL (the `Host` header).
    pub authority: String,
    /// Path and query (`/` if the URL had none).
    pub path: String,
}

impl Target {
    /// Parse `http[s]://host[:port][/path]`. The host is resolved once,
    /// here.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = match url.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "unsupported scheme `{scheme}` (http:// or https://)"
                ))
            }
            None => {
                return Err(format!(
                    "`{url}` is not a URL; expected http://HOST:PORT/PATH"
                ))
            }
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let default_port = if tls { 443 } else { 80 };
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
            None => authority.split(':').next().unwrap_or_default().to_string(),
        };
        let with_port = if authority.starts_with('[') {
            // [v6]:port or [v6]
            if authority.ends_with(']') {
                format!("{authority}:{default_port}")
            } else {
                authority.to_string()
            }
        } else if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:{default_port}")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{authority}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{authority}` resolved to no address"))?;
        Ok(Target {
            addr,
            tls,
            host,
            authority: authority.to_string(),
            path,
        })
    }
}

/// The validated configuration of one run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub target: Target,
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    /// Measured window length.
    pub duration: Duration,
    /// True when the duration was given (or defaulted) rather than the cap
    /// applied to a count-bounded run.
    pub duration_given: bool,
    pub requests: Option<u64>,
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub spin: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// The complete request, built once and written verbatim every time.
    pub request: Vec<u8>,
    /// The request method is HEAD (responses then carry no body).
    pub head_method: bool,
    pub cacert: Option<std::path::PathBuf>,
    pub insecure: bool,
    pub json: bool,
}

impl TryFrom<Cli> for BenchConfig {
    type Error = String;

    fn try_from(cli: Cli) -> Result<Self, String> {
        let target = Target::parse(&cli.url)?;
        if cli.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if cli.connections < cli.threads {
            return Err(format!(
                "--connections ({}) must be at least --threads ({}): each thread needs a connection",
                cli.connections, cli.threads
            ));
        }
        if let Some(rate) = cli.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("--rate must be a positive number, got {rate}"));
            }
        }
        if cli.requests == Some(0) {
            return Err("--requests must be at least 1".into());
        }
        let (duration, duration_given) = match (cli.duration, cli.requests) {
            (Some(d), _) => (d, true),
            (None, Some(_)) => (MAX_UNBOUNDED_RUN, false),
            (None, None) => (Duration::from_secs(10), true),
        };
        if duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        let method = cli.method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(format!("--method `{}` is not a method token", cli.method));
        }
        let mut request = Vec::with_capacity(256);
        request.extend_from_slice(format!("{method} {} HTTP/1.1\r\n", target.path).as_bytes());
        let mut has_host = false;
        for h in &cli.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| format!("header `{h}` is not `Name: value`"))?;
            let name = name.trim();
            if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == b':' || b >= 0x7f) {
                return Err(format!("header `{h}` has an invalid name"));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(format!("header `{h}` has a line break in its value"));
            }
            has_host |= name.eq_ignore_ascii_case("host");
            request.extend_from_slice(format!("{name}: {}\r\n", value.trim()).as_bytes());
        }
        if !has_host {
            request.extend_from_slice(format!("Host: {}\r\n", target.authority).as_bytes());
        }
        if let Some(body) = &cli.body {
            request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            request.extend_from_slice(body.as_bytes());
        } else {
            request.extend_from_slice(b"\r\n");
        }
        Ok(BenchConfig {
            target,
            url: cli.url,
            connections: cli.connections,
            threads: cli.threads,
            duration,
            duration_given,
            requests: cli.requests,
            rate: cli.rate,
            warmup: cli.warmup,
            spin: cli.spin,
            timeout: cli.timeout,
            connect_timeout: cli.connect_timeout,
            request,
            head_method: method == "HEAD",
            cacert: cli.cacert,
            insecure: cli.insecure,
            json: cli.json,
        })
    }
}

/// `250ms`, `10s`, `1.5s`, `2m`, `100us`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 10s, 1m)"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use us, ms, s, m, h)"
            ))
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Result<BenchConfig, String> {
        let mut v = vec!["ringmesh-bench"];
        v.extend_from_slice(args);
        BenchConfig::try_from(Cli::try_parse_from(v).map_err(|e| e.to_string())?)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:8080/a/b?c=d").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path, "/a/b?c=d");
        let t = Target::parse("http://127.0.0.1:9").unwrap();
        assert_eq!(t.path, "/");
        let t = Target::parse("http://127.0.0.1:9?x").unwrap();
        assert_eq!(t.path, "/?x");
        let t = Target::parse("http://[::1]:81/").unwrap();
        assert_eq!(t.addr, "[::1]:81".parse().unwrap());
        assert_eq!(Target::parse("http://127.0.0.1").unwrap().addr.port(), 80);
        let t = Target::parse("https://localhost/x").unwrap();
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.addr.port()), ("localhost", 443));
        assert_eq!(Target::parse("http://[::1]:81/").unwrap().host, "::1");
        assert!(Target::parse("ftp://127.0.0.1/").is_err());
        assert!(Target::parse("127.0.0.1:80").is_err());
    }

    #[test]
    fn request_bytes() {
        let c = cfg(&["-H", "x-a: 1", "http://127.0.0.1:8080/p"]).unwrap();
        assert_eq!(
            c.request,
            b"GET /p HTTP/1.1\r\nx-a: 1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
        let c = cfg(&[
            "-m",
            "post",
            "--body",
            "hi",
            "-H",
            "host: h",
            "http://127.0.0.1:1/",
        ])
        .unwrap();
        assert_eq!(
            c.request,
            b"POST / HTTP/1.1\r\nhost: h\r\nContent-Length: 2\r\n\r\nhi"
        );
        assert!(!c.head_method);
        assert!(
            cfg(&["-m", "HEAD", "http://127.0.0.1:1/"])
                .unwrap()
                .head_method
        );
    }

    #[test]
    fn bounds() {
        let c = cfg(&["http://127.0.0.1:1/"]).unwrap();
        assert_eq!(c.duration, Duration::from_secs(10));
        let c = cfg(&["-n", "100", "http://127.0.0.1:1/"]).unwrap();
        assert_eq!(c.duration, MAX_UNBOUNDED_RUN);
        assert!(!c.duration_given);
        assert!(cfg(&["-c", "1", "-t", "2", "http://127.0.0.1:1/"]).is_err());
        assert!(cfg(&["-r", "0", "http://127.0.0.1:1/"]).is_err());
        assert!(cfg(&["-H", "bad", "http://127.0.0.1:1/"]).is_err());
    }
}
