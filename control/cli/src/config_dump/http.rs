//! Just enough HTTP/1.1 to GET a proxy admin page: one request per
//! connection (`connection: close`), a body framed by `content-length`,
//! chunked encoding or the end of the connection, a size cap, and a
//! deadline for the whole exchange. Blocking `std` I/O; no TLS.

use std::{
    fmt,
    io::{self, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::{Duration, Instant},
};

use crate::addr::HostPort;

/// Bodies larger than this are refused (Envoy's full dump of a large mesh
/// is tens of MiB; this leaves room without letting a wrong address feed
/// us forever).
pub const MAX_BODY: usize = 256 * 1024 * 1024;

/// An answer: status, `content-type` (lower-cased) and the decoded body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Why the GET failed, with what to check.
#[derive(Debug)]
pub enum HttpError {
    Resolve(String),
    Connect(io::Error),
    Io(io::Error),
    Timeout,
    /// Not an HTTP/1.x answer (another protocol, garbage, or a cut-off
    /// head).
    Malformed(String),
    TooLarge,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Resolve(e) => write!(f, "cannot resolve the address: {e}"),
            HttpError::Connect(e) => write!(f, "cannot connect: {e}"),
            HttpError::Io(e) => write!(f, "the connection failed: {e}"),
            HttpError::Timeout => f.write_str("no complete answer in time"),
            HttpError::Malformed(why) => write!(f, "the answer is not HTTP/1.1: {why}"),
            HttpError::TooLarge => write!(f, "the answer is larger than {} MiB", MAX_BODY >> 20),
        }
    }
}

fn io_error(e: io::Error) -> HttpError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HttpError::Timeout,
        _ => HttpError::Io(e),
    }
}

/// GET `path` from `addr` within `timeout`.
pub fn get(addr: &HostPort, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    let deadline = Instant::now() + timeout;
    let host = addr.host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<_> = (host, addr.port)
        .to_socket_addrs()
        .map_err(|e| HttpError::Resolve(e.to_string()))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Timeout);
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = match (stream, last) {
        (Some(s), _) => s,
        (None, Some(e)) if e.kind() == io::ErrorKind::TimedOut => return Err(HttpError::Timeout),
        (None, Some(e)) => return Err(HttpError::Connect(e)),
        (None, None) => return Err(HttpError::Resolve("no address found".into())),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: application/json\r\n\
         user-agent: ringmesh-cli/{}\r\nconnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    set_timeouts(&stream, deadline)?;
    stream.write_all(request.as_bytes()).map_err(io_error)?;

    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // Read the head.
    let (status, reason, content_type, framing, head_len) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.unwrap_or(0);
                let reason = resp.reason.unwrap_or("").to_owned();
                let mut content_type = String::new();
                let mut framing = Framing::Close;
                for h in resp.headers.iter() {
                    let value = String::from_utf8_lossy(h.value).trim().to_ascii_lowercase();
                    if h.name.eq_ignore_ascii_case("content-type") {
                        content_type = value;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        if value.rsplit(',').next().map(str::trim) == Some("chunked") {
                            framing = Framing::Chunked;
                        }
                    } else if h.name.eq_ignore_ascii_case("content-length")
                        && framing == Framing::Close
                    {
                        let len = value.parse::<usize>().map_err(|_| {
                            HttpError::Malformed(format!("content-length {value:?}"))
                        })?;
                        framing = Framing::Length(len);
                    }
                }
                break (status, reason, content_type, framing, n);
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > 64 * 1024 {
                    return Err(HttpError::Malformed("a response head over 64 KiB".into()));
                }
            }
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        }
        set_timeouts(&stream, deadline)?;
        let n = stream.read(&mut chunk).map_err(io_error)?;
        if n == 0 {
            return Err(HttpError::Malformed(if buf.is_empty() {
                "the connection closed without an answer".into()
            } else {
                "the connection closed inside the response head".into()
            }));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    buf.drain(..head_len);
    // Read the body.
    loop {
        match framing {
            Framing::Length(len) if buf.len() >= len => {
                buf.truncate(len);
                break;
            }
            Framing::Length(len) if len > MAX_BODY => return Err(HttpError::TooLarge),
            // The last chunk and the trailers end with an empty line;
            // decode only then, not after every read.
            Framing::Chunked if buf.ends_with(b"\r\n\r\n") => {
                if let Some(body) = dechunk(&buf)? {
                    buf = body;
                    break;
                }
            }
            _ => {}
        }
        if buf.len() > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        set_timeouts(&stream, deadline)?;
        let n = stream.read(&mut chunk).map_err(io_error)?;
        if n == 0 {
            match framing {
                Framing::Close => break,
                Framing::Length(len) => {
                    return Err(HttpError::Malformed(format!(
                        "the connection closed after {} of {len} body bytes",
                        buf.len()
                    )))
                }
                Framing::Chunked => {
                    // A malformed chunk says so; otherwise it was cut.
                    dechunk(&buf)?;
                    return Err(HttpError::Malformed(
                        "the connection closed inside the chunked body".into(),
                    ));
                }
            }
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Response {
        status,
        reason,
        content_type,
        body: buf,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

fn set_timeouts(s: &TcpStream, deadline: Instant) -> Result<(), HttpError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(HttpError::Timeout);
    }
    s.set_read_timeout(Some(left)).map_err(HttpError::Io)?;
    s.set_write_timeout(Some(left)).map_err(HttpError::Io)
}

/// The body of a complete chunked encoding in `buf`, or `None` when more
/// bytes are needed. Trailers are skipped.
fn dechunk(buf: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = find_crlf(&buf[pos..]) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..pos + eol])
            .map_err(|_| HttpError::Malformed("a chunk size line is not text".into()))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size {size_text:?}")))?;
        pos += eol + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(eol) = find_crlf(&buf[pos..]) else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some(body));
                }
            }
        }
        if size > MAX_BODY || body.len() + size > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(HttpError::Malformed(
                "a chunk does not end with CRLF".into(),
            ));
        }
        pos += size + 2;
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, thread};

    use super::*;

    /// A one-shot server writing `answer` (in pieces) after reading the
    /// request head; returns its address and the request it read.
    fn serve(answer: Vec<Vec<u8>>) -> (HostPort, thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&b[..n]);
            }
            for piece in answer {
                s.write_all(&piece).unwrap();
                s.flush().unwrap();
                thread::sleep(Duration::from_millis(5));
            }
            String::from_utf8(req).unwrap()
        });
        (
            HostPort {
                host: "127.0.0.1".into(),
                port,
            },
            t,
        )
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn content_length_in_pieces() {
        let (addr, t) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Type: Application/JSON\r\ncontent-len".to_vec(),
            b"gth: 7\r\n\r\n{\"a\"".to_vec(),
            b":1}trailing garbage".to_vec(),
        ]);
        let r = get(&addr, "/config_dump", T).unwrap();
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.body, b"{\"a\":1}");
        let req = t.join().unwrap();
        assert!(
            req.starts_with("GET /config_dump HTTP/1.1\r\nhost: 127.0.0.1:"),
            "{req}"
        );
        assert!(req.contains("connection: close\r\n"));
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let (addr, _t) = serve(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n".to_vec(),
            b"3\r\nefg\r\n0\r\nx-trailer: 1\r\n\r\n".to_vec(),
        ]);
        assert_eq!(get(&addr, "/", T).unwrap().body, b"abcdefg");
    }

    #[test]
    fn close_delimited() {
        let (addr, _t) = serve(vec![b"HTTP/1.0 404 Not Found\r\n\r\nnot found\n".to_vec()]);
        let r = get(&addr, "/", T).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"not found\n"[..]));
    }

    #[test]
    fn failures_say_what_happened() {
        let (addr, _t) = serve(vec![b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()]);
        assert!(matches!(get(&addr, "/", T), Err(HttpError::Malformed(_))));

        let (addr, _t) = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec()
        ]);
        let e = get(&addr, "/", T).unwrap_err().to_string();
        assert!(e.contains("closed after 3 of 10 body bytes"), "{e}");

        let (addr, _t) = serve(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        ]);
        let e = get(&addr, "/", T).unwrap_err().to_string();
        assert!(e.contains("chunk size \"zz\""), "{e}");

        let (addr, _t) = serve(vec![]);
        let e = get(&addr, "/", T).unwrap_err().to_string();
        assert!(e.contains("closed without an answer"), "{e}");

        // Nothing listens: refused.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = HostPort {
            host: "127.0.0.1".into(),
            port,
        };
        assert!(matches!(get(&addr, "/", T), Err(HttpError::Connect(_))));
    }

    #[test]
    fn silence_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = HostPort {
            host: "127.0.0.1".into(),
            port: l.local_addr().unwrap().port(),
        };
        // Accepted by the kernel (backlog), never answered.
        let e = get(&addr, "/", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, HttpError::Timeout), "{e:?}");
        drop(l);
    }
}
