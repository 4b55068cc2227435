//! Just enough blocking HTTP/1.1 for the demo: a keep-alive client (the
//! load generator, the probes, the admin scrapes and the sample app's
//! downstream calls) and the server side of the sample app. Heads are
//! parsed with `httparse`; bodies are framed by `Content-Length`, chunked
//! encoding or the end of the connection. Everything is bounded (head
//! size, body size, time), and nothing a peer sends can panic.

use std::{
    fmt,
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// Largest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted (the demo's answers are a few hundred bytes).
const MAX_BODY: usize = 1024 * 1024;
const MAX_HEADERS: usize = 64;

/// A response as received.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The peer said `Connection: close` (or spoke HTTP/1.0): the
    /// connection cannot carry another request.
    pub close: bool,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request as received by a server.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The client asked to close after this exchange.
    pub close: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why an exchange failed; [`Failure::retriable`] tells whether the
/// request can be sent again on a fresh connection without the peer
/// having seen it processed.
#[derive(Debug)]
pub enum Failure {
    Connect(io::Error),
    /// Writing the request failed.
    Send(io::Error),
    /// The peer closed or reset before a single byte of a response.
    NoResponse(io::Error),
    /// The response started but broke off, or timed out.
    Broken(io::Error),
    /// The response is not valid HTTP/1.1.
    Invalid(String),
}

impl Failure {
    /// A request that never reached a peer, or that a reused keep-alive
    /// connection lost before any answer (the peer closed it while idle),
    /// may be sent again.
    pub fn retriable(&self) -> bool {
        matches!(self, Failure::Send(_) | Failure::NoResponse(_))
    }

    /// The connection was refused or reset before any answer: what a
    /// listener that refuses plaintext looks like to a plaintext client.
    pub fn refused(&self) -> bool {
        match self {
            Failure::Connect(e) => e.kind() == io::ErrorKind::ConnectionRefused,
            Failure::Send(_) | Failure::NoResponse(_) => true,
            Failure::Broken(_) | Failure::Invalid(_) => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Send(e) => write!(f, "sending the request: {e}"),
            Failure::NoResponse(e) => write!(f, "no response: {e}"),
            Failure::Broken(e) => write!(f, "reading the response: {e}"),
            Failure::Invalid(why) => write!(f, "invalid response: {why}"),
        }
    }
}

/// One keep-alive connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Requests completed on it: a failure on a used connection may be
    /// the peer's idle close, a failure on a fresh one is not.
    used: u64,
}

/// A client for one address: keeps one connection alive, opens a new one
/// when it is gone, and sends a request again once when a reused
/// connection turns out to have been closed by the peer while idle.
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<Conn>,
}

impl Client {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Client {
        Client {
            addr,
            timeout,
            conn: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET path` with `Host: host` and `headers`.
    pub fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, Failure> {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (n, v) in headers {
            head.push_str(n);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let reused = self.conn.as_ref().is_some_and(|c| c.used > 0);
        match self.exchange(head.as_bytes()) {
            Err(f) if reused && f.retriable() => {
                self.conn = None;
                self.exchange(head.as_bytes())
            }
            other => other,
        }
    }

    fn exchange(&mut self, request: &[u8]) -> Result<Response, Failure> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, self.timeout)
                    .map_err(Failure::Connect)?;
                let _ = stream.set_nodelay(true);
                Conn {
                    stream,
                    buf: Vec::new(),
                    used: 0,
                }
            }
        };
        let mut conn = conn;
        conn.stream
            .set_write_timeout(Some(self.timeout))
            .map_err(Failure::Send)?;
        conn.stream.write_all(request).map_err(Failure::Send)?;
        let deadline = Instant::now() + self.timeout;
        let response = read_response(&mut conn.stream, &mut conn.buf, deadline)?;
        conn.used += 1;
        if !response.close {
            self.conn = Some(conn);
        }
        Ok(response)
    }
}

/// Read more bytes into `buf` before `deadline`; 0 means the peer closed.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
    }
    stream.set_read_timeout(Some(left))?;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
            }
            Err(e) => return Err(e),
        }
    }
}

struct Head {
    status_or_method: HeadStart,
    headers: Vec<(String, String)>,
    /// HTTP/1.0 (minor version 0).
    http10: bool,
    len: usize,
}

enum HeadStart {
    Status(u16),
    Request { method: String, path: String },
}

fn owned_headers(hs: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    hs.iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect()
}

fn parse_response_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut hs);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(Head {
            status_or_method: HeadStart::Status(r.code.unwrap_or(0)),
            headers: owned_headers(r.headers),
            http10: r.version == Some(0),
            len,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_request_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut hs);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(Head {
            status_or_method: HeadStart::Request {
                method: r.method.unwrap_or("").to_owned(),
                path: r.path.unwrap_or("").to_owned(),
            },
            headers: owned_headers(r.headers),
            http10: r.version == Some(0),
            len,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn wants_close(headers: &[(String, String)], http10: bool) -> bool {
    let conn = header(headers, "connection").map(str::to_ascii_lowercase);
    match conn {
        Some(c) if c.split(',').any(|t| t.trim() == "close") => true,
        Some(c) if c.split(',').any(|t| t.trim() == "keep-alive") => false,
        _ => http10,
    }
}

/// Read one response from `stream`; `buf` keeps bytes that arrived past
/// its end (there should be none: requests are not pipelined).
fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Response, Failure> {
    let head = loop {
        if !buf.is_empty() {
            match parse_response_head(buf) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(why) => return Err(Failure::Invalid(why)),
            }
            if buf.len() > MAX_HEAD {
                return Err(Failure::Invalid(format!(
                    "response head larger than {MAX_HEAD} bytes"
                )));
            }
        }
        let started = !buf.is_empty();
        match fill(stream, buf, deadline) {
            Ok(0) if started => {
                return Err(Failure::Broken(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in the middle of the response head",
                )))
            }
            Ok(0) => {
                return Err(Failure::NoResponse(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                )))
            }
            Ok(_) => {}
            Err(e) if !started && e.kind() != io::ErrorKind::TimedOut => {
                return Err(Failure::NoResponse(e))
            }
            Err(e) => return Err(Failure::Broken(e)),
        }
    };
    let HeadStart::Status(status) = head.status_or_method else {
        return Err(Failure::Invalid("not a response".into()));
    };
    buf.drain(..head.len);
    let mut close = wants_close(&head.headers, head.http10);
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        Vec::new()
    } else {
        match body_framing(&head.headers).map_err(Failure::Invalid)? {
            Framing::Length(n) => read_exact_body(stream, buf, n, deadline)?,
            Framing::Chunked => read_chunked(stream, buf, deadline)?,
            Framing::Close => {
                close = true;
                loop {
                    if buf.len() > MAX_BODY {
                        return Err(Failure::Invalid("body too large".into()));
                    }
                    match fill(stream, buf, deadline) {
                        Ok(0) => break std::mem::take(buf),
                        Ok(_) => {}
                        Err(e) => return Err(Failure::Broken(e)),
                    }
                }
            }
        }
    };
    Ok(Response {
        status,
        headers: head.headers,
        body,
        close,
    })
}

enum Framing {
    Length(usize),
    Chunked,
    Close,
}

fn body_framing(headers: &[(String, String)]) -> Result<Framing, String> {
    if let Some(te) = header(headers, "transfer-encoding") {
        if te.to_ascii_lowercase().trim().ends_with("chunked") {
            return Ok(Framing::Chunked);
        }
        return Ok(Framing::Close);
    }
    match header(headers, "content-length") {
        Some(cl) => {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| format!("bad content-length {cl:?}"))?;
            if n > MAX_BODY {
                return Err(format!("body of {n} bytes is larger than {MAX_BODY}"));
            }
            Ok(Framing::Length(n))
        }
        None => Ok(Framing::Close),
    }
}

fn read_exact_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    n: usize,
    deadline: Instant,
) -> Result<Vec<u8>, Failure> {
    while buf.len() < n {
        match fill(stream, buf, deadline) {
            Ok(0) => {
                return Err(Failure::Broken(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in the middle of the body",
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(Failure::Broken(e)),
        }
    }
    Ok(buf.drain(..n).collect())
}

fn read_chunked(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    let line = |stream: &mut TcpStream, buf: &mut Vec<u8>| -> Result<String, Failure> {
        loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&buf[..i]).into_owned();
                buf.drain(..i + 2);
                return Ok(l);
            }
            if buf.len() > MAX_HEAD {
                return Err(Failure::Invalid("chunk line too long".into()));
            }
            match fill(stream, buf, deadline) {
                Ok(0) => {
                    return Err(Failure::Broken(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed in the middle of a chunked body",
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(Failure::Broken(e)),
            }
        }
    };
    loop {
        let size_line = line(stream, buf)?;
        let hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| Failure::Invalid(format!("bad chunk size {hex:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !line(stream, buf)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(Failure::Invalid("body too large".into()));
        }
        let chunk = read_exact_body(stream, buf, size + 2, deadline)?;
        body.extend_from_slice(&chunk[..size]);
    }
}

/// The server side of one connection: read requests, write responses.
pub struct ServerConn {
    stream: TcpStream,
    buf: Vec<u8>,
    idle_timeout: Duration,
}

impl ServerConn {
    pub fn new(stream: TcpStream, idle_timeout: Duration) -> ServerConn {
        let _ = stream.set_nodelay(true);
        ServerConn {
            stream,
            buf: Vec::new(),
            idle_timeout,
        }
    }

    /// The next request, `Ok(None)` when the client closed between
    /// requests (or stayed idle past the idle timeout). A request body
    /// (the demo's clients send none) is read and discarded.
    pub fn next_request(&mut self) -> Result<Option<Request>, String> {
        let deadline = Instant::now() + self.idle_timeout;
        let head = loop {
            if !self.buf.is_empty() {
                if let Some(h) = parse_request_head(&self.buf)? {
                    break h;
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(format!("request head larger than {MAX_HEAD} bytes"));
                }
            }
            match fill(&mut self.stream, &mut self.buf, deadline) {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Err("closed in the middle of a request head".into()),
                Ok(_) => {}
                Err(_) if self.buf.is_empty() => return Ok(None),
                Err(e) => return Err(e.to_string()),
            }
        };
        let HeadStart::Request { method, path } = head.status_or_method else {
            return Err("not a request".into());
        };
        self.buf.drain(..head.len);
        let close = wants_close(&head.headers, head.http10);
        // Requests carry a body only with Content-Length or chunked framing
        // (never "until close").
        let body_deadline = Instant::now() + self.idle_timeout;
        match body_framing(&head.headers)? {
            Framing::Length(n) => {
                read_exact_body(&mut self.stream, &mut self.buf, n, body_deadline)
                    .map_err(|e| e.to_string())?;
            }
            Framing::Chunked => {
                read_chunked(&mut self.stream, &mut self.buf, body_deadline)
                    .map_err(|e| e.to_string())?;
            }
            Framing::Close => {}
        }
        Ok(Some(Request {
            method,
            path,
            headers: head.headers,
            close,
        }))
    }

    /// Write a complete response with a `Content-Length` body (only the
    /// head, with the body's length, when `head_only`: the answer to HEAD).
    pub fn respond(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        close: bool,
        head_only: bool,
    ) -> io::Result<()> {
        let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (n, v) in headers {
            out.push_str(n);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str(&format!("content-length: {}\r\n", body.len()));
        if close {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(body);
        }
        self.stream.set_write_timeout(Some(self.idle_timeout))?;
        self.stream.write_all(&bytes)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, thread};

    use super::*;

    /// A one-connection server answering each request with `answers[i]`
    /// (raw bytes), then closing.
    fn raw_server(answers: Vec<&'static [u8]>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut conn = ServerConn::new(s, Duration::from_secs(5));
            for a in answers {
                if conn.next_request().unwrap().is_none() {
                    return;
                }
                conn.stream.write_all(a).unwrap();
            }
        });
        addr
    }

    #[test]
    fn content_length_chunked_and_close_delimited_bodies() {
        let addr = raw_server(vec![
            b"HTTP/1.1 200 OK\r\nX-Backend: a\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\n\r\ngone",
        ]);
        let mut c = Client::new(addr, Duration::from_secs(5));
        let r = c.get("h", "/", &[]).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        assert_eq!(r.header("x-backend"), Some("a"));
        let r = c.get("h", "/", &[("end-user", "jason")]).unwrap();
        assert_eq!(
            (r.status, r.text().as_str(), r.close),
            (200, "abcde", false)
        );
        let r = c.get("h", "/", &[]).unwrap();
        assert_eq!((r.status, r.text().as_str(), r.close), (404, "gone", true));
    }

    #[test]
    fn a_reused_connection_closed_while_idle_is_retried_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            // First connection: one answer, then close without a word.
            let (s, _) = l.accept().unwrap();
            let mut conn = ServerConn::new(s, Duration::from_secs(5));
            conn.next_request().unwrap().unwrap();
            conn.respond(200, &[], b"one", false, false).unwrap();
            conn.next_request().unwrap().unwrap();
            drop(conn);
            // Second connection: answers.
            let (s, _) = l.accept().unwrap();
            let mut conn = ServerConn::new(s, Duration::from_secs(5));
            conn.next_request().unwrap().unwrap();
            conn.respond(200, &[], b"two", false, false).unwrap();
        });
        let mut c = Client::new(addr, Duration::from_secs(5));
        assert_eq!(c.get("h", "/", &[]).unwrap().text(), "one");
        assert_eq!(c.get("h", "/", &[]).unwrap().text(), "two");
    }

    #[test]
    fn garbage_and_refusals_are_errors_not_panics() {
        let addr = raw_server(vec![b"SSH-2.0-OpenSSH\r\n\r\n"]);
        let mut c = Client::new(addr, Duration::from_secs(5));
        assert!(matches!(c.get("h", "/", &[]), Err(Failure::Invalid(_))));

        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut c = Client::new(free, Duration::from_secs(1));
        let e = c.get("h", "/", &[]).unwrap_err();
        assert!(e.refused(), "{e}");
    }
}
