//! `ringmesh-testbed`: the HTTP/1.1 backend the end-to-end suite (and the
//! perf harness) proxies to.
//!
//! ```text
//! ringmesh-testbed --listen 127.0.0.1:0 [--record FILE] [--name NAME]
//! ```
//!
//! Prints `LISTENING <addr>` on stdout once bound. One thread per
//! connection, keep-alive, Content-Length and chunked bodies, pipelining.
//! With `--record`, every byte read from every connection is appended to
//! FILE exactly as received (in order per connection; a request's bytes are
//! written in one append once it is complete, so concurrent connections do
//! not interleave inside a request), including bytes this server could not
//! parse: a test can prove that a malformed request never reached it.
//!
//! The parser here is deliberately lenient and independent of the proxy's
//! codec: the backend's job is to observe what the proxy forwards, not to
//! second-guess it.
//!
//! Endpoints (the query string is ignored unless stated):
//! - `/echo` (any method): JSON with name, method, target, path, version,
//!   headers (in order, as sent), body_len, body_crc32, trailers.
//! - `/bytes/N`: N bytes of [`ringmesh_e2e::pattern`]; chunked if
//!   `?chunked=1`.
//! - `/sink` (any method): reads the body streaming and answers
//!   `{"bytes":N,"crc32":C}`.
//! - `/delay/MS`: waits MS milliseconds, then 200 with the name.
//! - `/status/CODE`: answers CODE.
//! - `/close`: answers with `connection: close`, then closes.
//! - `/close-after/MS`: answers normally (keep-alive, nothing announced),
//!   then closes the connection MS milliseconds later without reading:
//!   a server-side idle close that a connection pool must survive.
//! - `/chunked`: a chunked response with trailers.
//! - `/hop`: a response carrying hop-by-hop and Connection-nominated fields.
//! - `/until-close`: a response delimited by closing the connection.
//! - `/_testbed/stats`: `{"connections":N,"active":N,"requests":N}`.
//! - anything else: 200 with the name as body.
//!
//! Every response carries `x-backend: NAME`.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use ringmesh_e2e::pattern;

/// Read buffer size; also the largest body slice handed to a sink.
const READ_BUF: usize = 64 * 1024;
/// A head larger than this is answered with 431 and the connection closed.
const MAX_HEAD: usize = 1024 * 1024;
/// Recorded bytes are flushed at least this often even inside one request.
const RECORD_FLUSH: usize = 1024 * 1024;

struct Args {
    listen: String,
    record: Option<PathBuf>,
    name: String,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut record = None;
    let mut name = "testbed".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--listen" => listen = Some(value("--listen")?),
            "--record" => record = Some(PathBuf::from(value("--record")?)),
            "--name" => name = value("--name")?,
            "-h" | "--help" => {
                return Err(
                    "usage: ringmesh-testbed --listen ADDR [--record FILE] [--name NAME]".into(),
                )
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen ADDR is required (e.g. 127.0.0.1:0)")?,
        record,
        name,
    })
}

struct Shared {
    name: String,
    /// Opened with O_APPEND: each flush is one `write_all` of a whole
    /// pending buffer, so no lock is needed to keep requests contiguous.
    record: Option<File>,
    connections: AtomicU64,
    active: AtomicU64,
    requests: AtomicU64,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ringmesh-testbed: {e}");
            return ExitCode::from(2);
        }
    };
    let record = match &args.record {
        Some(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "ringmesh-testbed: cannot open record file {}: {e}",
                    path.display()
                );
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    let listener = match bind(&args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ringmesh-testbed: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    let addr = listener
        .local_addr()
        .expect("local_addr of a bound listener");
    {
        let mut out = io::stdout().lock();
        // The parent waits for exactly this line.
        let _ = writeln!(out, "LISTENING {addr}");
        let _ = out.flush();
    }
    let shared = Arc::new(Shared {
        name: args.name,
        record,
        connections: AtomicU64::new(0),
        active: AtomicU64::new(0),
        requests: AtomicU64::new(0),
    });
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            // EMFILE and friends: back off instead of spinning.
            Err(_) => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        shared.active.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut conn = Conn::new(stream, &shared);
                let _ = conn.serve();
                conn.flush_record();
                shared.active.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            eprintln!("ringmesh-testbed: cannot spawn a connection thread");
        }
    }
    ExitCode::SUCCESS
}

/// Bind with a deep accept queue: std's 128 overflows when a proxy opens
/// hundreds of upstream connections at once, and a dropped SYN costs the
/// proxy a one-second retransmit (seen as connect timeouts, 503).
fn bind(addr: &str) -> io::Result<TcpListener> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr:?}: {e}")))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Why serving a connection stopped.
enum Stop {
    /// The peer closed (or a read/write failed): nothing more to say.
    Eof,
    /// The request cannot be served; answer with this status, then close.
    Reject(u16, &'static str),
}

impl From<io::Error> for Stop {
    fn from(_: io::Error) -> Self {
        Stop::Eof
    }
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    framing: Framing,
    close: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

struct Conn<'a> {
    stream: TcpStream,
    shared: &'a Shared,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes read but not yet appended to the record file.
    pending_record: Vec<u8>,
}

impl<'a> Conn<'a> {
    fn new(stream: TcpStream, shared: &'a Shared) -> Self {
        Conn {
            stream,
            shared,
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
            pending_record: Vec::new(),
        }
    }

    fn flush_record(&mut self) {
        if let Some(mut file) = self.shared.record.as_ref() {
            if !self.pending_record.is_empty() {
                // One append write (on local filesystems a regular-file
                // write of this size is not split), so concurrent
                // connections never interleave inside one flush.
                let _ = file.write_all(&self.pending_record);
                self.pending_record.clear();
            }
        }
    }

    /// Write to the peer. The record is flushed first, so a client that has
    /// seen a response can rely on the request being in the record file.
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.flush_record();
        self.stream.write_all(data)
    }

    /// Read more bytes into the buffer (compacting or growing it first).
    /// `Ok(0)` is end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let len = self.buf.len() * 2;
                self.buf.resize(len, 0);
            }
        }
        let n = loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if self.shared.record.is_some() {
            self.pending_record
                .extend_from_slice(&self.buf[self.end..self.end + n]);
            if self.pending_record.len() >= RECORD_FLUSH {
                self.flush_record();
            }
        }
        self.end += n;
        Ok(n)
    }

    fn fill_or_eof(&mut self) -> Result<(), Stop> {
        if self.fill()? == 0 {
            Err(Stop::Eof)
        } else {
            Ok(())
        }
    }

    fn serve(&mut self) -> io::Result<()> {
        loop {
            match self.one_request() {
                Ok(true) => continue,
                Ok(false) | Err(Stop::Eof) => return Ok(()),
                Err(Stop::Reject(code, why)) => {
                    let body = format!("ringmesh-testbed: {why}\n");
                    let head = format!(
                        "HTTP/1.1 {code} {}\r\nx-backend: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        reason(code),
                        self.shared.name,
                        body.len()
                    );
                    self.send(head.as_bytes())?;
                    self.send(body.as_bytes())?;
                    // Drain what the peer still sends so the close is not a
                    // reset that could destroy the response in flight.
                    let _ = self.stream.shutdown(Shutdown::Write);
                    let _ = self
                        .stream
                        .set_read_timeout(Some(Duration::from_millis(500)));
                    while matches!(self.fill(), Ok(n) if n > 0) {
                        self.start = self.end;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Serve one request. `Ok(true)`: keep the connection.
    fn one_request(&mut self) -> Result<bool, Stop> {
        let head_len = loop {
            if let Some(pos) = find(&self.buf[self.start..self.end], b"\r\n\r\n") {
                break pos + 4;
            }
            if self.end - self.start > MAX_HEAD {
                return Err(Stop::Reject(431, "head too large"));
            }
            self.fill_or_eof()?;
        };
        let req = parse_head(&self.buf[self.start..self.start + head_len])?;
        self.start += head_len;
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        let keep = self.route(&req)?;
        self.flush_record();
        Ok(keep && !req.close)
    }

    /// Read the whole body, handing each slice to `sink`; returns trailers.
    fn read_body(
        &mut self,
        framing: &Framing,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<Vec<(String, String)>, Stop> {
        match *framing {
            Framing::None => Ok(Vec::new()),
            Framing::Length(mut left) => {
                while left > 0 {
                    if self.start == self.end {
                        self.fill_or_eof()?;
                    }
                    let n =
                        (self.end - self.start).min(usize::try_from(left).unwrap_or(usize::MAX));
                    sink(&self.buf[self.start..self.start + n]);
                    self.start += n;
                    left -= n as u64;
                }
                Ok(Vec::new())
            }
            Framing::Chunked => self.read_chunked(sink),
        }
    }

    /// One CRLF-terminated line (without the CRLF).
    fn read_line(&mut self) -> Result<String, Stop> {
        loop {
            if let Some(pos) = find(&self.buf[self.start..self.end], b"\r\n") {
                let line =
                    String::from_utf8_lossy(&self.buf[self.start..self.start + pos]).into_owned();
                self.start += pos + 2;
                return Ok(line);
            }
            if self.end - self.start > MAX_HEAD {
                return Err(Stop::Reject(400, "line too long"));
            }
            self.fill_or_eof()?;
        }
    }

    fn read_chunked(&mut self, sink: &mut dyn FnMut(&[u8])) -> Result<Vec<(String, String)>, Stop> {
        loop {
            let line = self.read_line()?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let mut left = u64::from_str_radix(size_text, 16)
                .map_err(|_| Stop::Reject(400, "bad chunk size"))?;
            if left == 0 {
                break;
            }
            while left > 0 {
                if self.start == self.end {
                    self.fill_or_eof()?;
                }
                let n = (self.end - self.start).min(usize::try_from(left).unwrap_or(usize::MAX));
                sink(&self.buf[self.start..self.start + n]);
                self.start += n;
                left -= n as u64;
            }
            if !self.read_line()?.is_empty() {
                return Err(Stop::Reject(400, "chunk data not followed by CRLF"));
            }
        }
        let mut trailers = Vec::new();
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                return Ok(trailers);
            }
            if let Some((n, v)) = line.split_once(':') {
                trailers.push((n.to_string(), v.trim().to_string()));
            }
        }
    }

    fn discard_body(&mut self, req: &Request) -> Result<(), Stop> {
        self.read_body(&req.framing, &mut |_| {})?;
        Ok(())
    }

    fn route(&mut self, req: &Request) -> Result<bool, Stop> {
        let path = req.path().to_string();
        let name = self.shared.name.clone();
        let head_only = req.method == "HEAD";
        if path == "/echo" {
            let mut len = 0u64;
            let mut crc = crc32fast::Hasher::new();
            let trailers = self.read_body(&req.framing, &mut |b| {
                len += b.len() as u64;
                crc.update(b);
            })?;
            let body = echo_json(&name, req, len, crc.finalize(), &trailers);
            self.respond(
                200,
                &[("content-type", "application/json")],
                body.as_bytes(),
                head_only,
            )?;
            return Ok(true);
        }
        if path == "/sink" {
            let mut len = 0u64;
            let mut crc = crc32fast::Hasher::new();
            self.read_body(&req.framing, &mut |b| {
                len += b.len() as u64;
                crc.update(b);
            })?;
            let body = format!("{{\"bytes\":{len},\"crc32\":{}}}", crc.finalize());
            self.respond(
                200,
                &[("content-type", "application/json")],
                body.as_bytes(),
                head_only,
            )?;
            return Ok(true);
        }
        self.discard_body(req)?;
        if let Some(n) = path.strip_prefix("/bytes/") {
            let n: u64 = n
                .parse()
                .map_err(|_| Stop::Reject(400, "/bytes/N needs a number"))?;
            let chunked = req.query().split('&').any(|kv| kv == "chunked=1");
            self.send_bytes(n, chunked, head_only)?;
            return Ok(true);
        }
        if let Some(ms) = path.strip_prefix("/delay/") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| Stop::Reject(400, "/delay/MS needs a number"))?;
            thread::sleep(Duration::from_millis(ms));
            self.respond(200, &[], name.as_bytes(), head_only)?;
            return Ok(true);
        }
        if let Some(code) = path.strip_prefix("/status/") {
            let code: u16 = match code.parse() {
                Ok(c) if (200..600).contains(&c) => c,
                _ => return Err(Stop::Reject(400, "/status/CODE needs a code in 200..=599")),
            };
            let body: &[u8] = if code == 204 || code == 304 {
                b""
            } else {
                name.as_bytes()
            };
            self.respond(code, &[], body, head_only)?;
            return Ok(true);
        }
        if let Some(ms) = path.strip_prefix("/close-after/") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| Stop::Reject(400, "/close-after/MS needs a number"))?;
            self.respond(200, &[], name.as_bytes(), head_only)?;
            thread::sleep(Duration::from_millis(ms));
            return Ok(false);
        }
        match path.as_str() {
            "/close" => {
                self.respond(200, &[("connection", "close")], name.as_bytes(), head_only)?;
                Ok(false)
            }
            "/chunked" => {
                self.send_chunked_with_trailers(head_only)?;
                Ok(true)
            }
            "/hop" => {
                self.respond(
                    200,
                    &[
                        ("connection", "x-internal, keep-alive"),
                        ("keep-alive", "timeout=30"),
                        ("x-internal", "secret"),
                        ("x-public", "yes"),
                    ],
                    name.as_bytes(),
                    head_only,
                )?;
                Ok(true)
            }
            "/until-close" => {
                let head =
                    format!("HTTP/1.1 200 OK\r\nx-backend: {name}\r\nconnection: close\r\n\r\n");
                self.send(head.as_bytes())?;
                if !head_only {
                    self.send(b"body delimited by close")?;
                }
                Ok(false)
            }
            "/_testbed/stats" => {
                let body = format!(
                    "{{\"connections\":{},\"active\":{},\"requests\":{}}}",
                    self.shared.connections.load(Ordering::Relaxed),
                    self.shared.active.load(Ordering::Relaxed),
                    self.shared.requests.load(Ordering::Relaxed)
                );
                self.respond(
                    200,
                    &[("content-type", "application/json")],
                    body.as_bytes(),
                    head_only,
                )?;
                Ok(true)
            }
            _ => {
                self.respond(200, &[], name.as_bytes(), head_only)?;
                Ok(true)
            }
        }
    }

    fn respond(
        &mut self,
        code: u16,
        extra: &[(&str, &str)],
        body: &[u8],
        head_only: bool,
    ) -> io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {code} {}\r\nx-backend: {}\r\n",
            reason(code),
            self.shared.name
        );
        for (n, v) in extra {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if code != 204 && code != 304 {
            out.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(body);
        }
        self.send(&bytes)
    }

    fn send_bytes(&mut self, n: u64, chunked: bool, head_only: bool) -> io::Result<()> {
        let framing = if chunked {
            "transfer-encoding: chunked".to_string()
        } else {
            format!("content-length: {n}")
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nx-backend: {}\r\ncontent-type: application/octet-stream\r\n{framing}\r\n\r\n",
            self.shared.name
        );
        self.send(head.as_bytes())?;
        if head_only {
            return Ok(());
        }
        let block = pattern::block();
        let mut sent = 0u64;
        while sent < n {
            let offset = pattern::block_offset(sent);
            let len = (block.len() - offset).min(usize::try_from(n - sent).unwrap_or(usize::MAX));
            let data = &block[offset..offset + len];
            if chunked {
                self.send(format!("{len:x}\r\n").as_bytes())?;
                self.send(data)?;
                self.send(b"\r\n")?;
            } else {
                self.send(data)?;
            }
            sent += len as u64;
        }
        if chunked {
            self.send(b"0\r\n\r\n")?;
        }
        Ok(())
    }

    fn send_chunked_with_trailers(&mut self, head_only: bool) -> io::Result<()> {
        let parts: [&[u8]; 3] = [b"hello ", b"chunked ", b"world"];
        let mut crc = crc32fast::Hasher::new();
        for p in parts {
            crc.update(p);
        }
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nx-backend: {}\r\ntrailer: x-checksum, x-trailer-a\r\ntransfer-encoding: chunked\r\n\r\n",
            self.shared.name
        )
        .into_bytes();
        if !head_only {
            for (i, p) in parts.iter().enumerate() {
                // One chunk carries an extension, which the proxy must pass
                // or drop but never choke on.
                let ext = if i == 1 { ";ext=1" } else { "" };
                out.extend_from_slice(format!("{:x}{ext}\r\n", p.len()).as_bytes());
                out.extend_from_slice(p);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(
                format!(
                    "0\r\nx-checksum: {}\r\nx-trailer-a: 1\r\n\r\n",
                    crc.finalize()
                )
                .as_bytes(),
            );
        }
        self.send(&out)
    }
}

fn parse_head(head: &[u8]) -> Result<Request, Stop> {
    // Lenient: obs-text (bytes over 0x7f) is legal in field values.
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or("");
    let mut parts = start.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => return Err(Stop::Reject(400, "bad request line")),
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (n, v) = line
            .split_once(':')
            .ok_or(Stop::Reject(400, "header line without colon"))?;
        headers.push((n.to_string(), v.trim_matches([' ', '\t']).to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
        framing: Framing::None,
        close: version == "HTTP/1.0",
    };
    if let Some(c) = req.header("connection").map(str::to_string) {
        for token in c.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("close") {
                req.close = true;
            } else if token.eq_ignore_ascii_case("keep-alive") {
                req.close = false;
            }
        }
    }
    let te_chunked = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .next_back()
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    req.framing = if te_chunked {
        Framing::Chunked
    } else if let Some(cl) = req.header("content-length") {
        Framing::Length(
            cl.trim()
                .parse()
                .map_err(|_| Stop::Reject(400, "bad content-length"))?,
        )
    } else {
        Framing::None
    };
    Ok(req)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_pairs(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(n, v)| format!("[{},{}]", json_str(n), json_str(v)))
        .collect();
    format!("[{}]", items.join(","))
}

fn echo_json(
    name: &str,
    req: &Request,
    body_len: u64,
    crc: u32,
    trailers: &[(String, String)],
) -> String {
    format!(
        "{{\"name\":{},\"method\":{},\"target\":{},\"path\":{},\"version\":{},\"headers\":{},\"body_len\":{body_len},\"body_crc32\":{crc},\"trailers\":{}}}",
        json_str(name),
        json_str(&req.method),
        json_str(&req.target),
        json_str(req.path()),
        json_str(&req.version),
        json_pairs(&req.headers),
        json_pairs(trailers),
    )
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
