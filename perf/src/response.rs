//! Sans-I/O reader for one HTTP/1.1 response: finds where the response
//! ends (head via `httparse`, then a `Content-Length`, `chunked` or
//! close-delimited body) without storing the body.

/// Largest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// Why a response could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// `httparse` rejected the head.
    Head(httparse::Error),
    /// Head larger than [`MAX_HEAD`].
    HeadTooLarge,
    /// Missing, non-numeric or conflicting `Content-Length`.
    BadContentLength,
    /// A transfer coding other than a final `chunked`.
    BadTransferEncoding,
    /// Malformed chunked framing.
    BadChunk,
    /// The connection ended before the response did.
    UnexpectedEof,
}

impl ResponseError {
    /// The error kind it is counted under: `io` for a truncated response,
    /// `parse` for everything else.
    pub fn is_io(&self) -> bool {
        matches!(self, ResponseError::UnexpectedEof)
    }
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseError::Head(e) => write!(f, "bad response head: {e}"),
            ResponseError::HeadTooLarge => write!(f, "response head over {MAX_HEAD} bytes"),
            ResponseError::BadContentLength => write!(f, "bad content-length"),
            ResponseError::BadTransferEncoding => write!(f, "unsupported transfer-encoding"),
            ResponseError::BadChunk => write!(f, "malformed chunked body"),
            ResponseError::UnexpectedEof => {
                write!(f, "connection closed before the response ended")
            }
        }
    }
}

/// Whether the response is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    NeedMore,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    Chunked(ChunkState),
    UntilClose,
    Done,
}

/// Reads one response at a time; [`ResponseReader::reset`] before the next.
#[derive(Debug, Clone)]
pub struct ResponseReader {
    state: State,
    head_method: bool,
    /// Status of the final (non-1xx) response, once its head is parsed.
    pub status: u16,
    /// The server will close the connection after this response.
    pub close: bool,
    /// Body bytes seen (framing bytes of chunked bodies included).
    pub body_bytes: u64,
}

impl ResponseReader {
    /// `head_method`: the request was HEAD, so the response has no body
    /// whatever its headers say.
    pub fn new(head_method: bool) -> Self {
        ResponseReader {
            state: State::Head,
            head_method,
            status: 0,
            close: false,
            body_bytes: 0,
        }
    }

    pub fn reset(&mut self) {
        *self = ResponseReader::new(self.head_method);
    }

    /// Feed the bytes received so far that are not yet consumed. Returns how
    /// many were consumed and whether the response is complete. While the
    /// head is incomplete nothing is consumed: call again with the same
    /// bytes plus what arrives next.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, Progress), ResponseError> {
        let mut pos = 0;
        loop {
            match &mut self.state {
                State::Head => match self.parse_head(&buf[pos..])? {
                    Some(n) => pos += n,
                    None => return Ok((pos, Progress::NeedMore)),
                },
                State::Length(rem) => {
                    let take = (*rem).min((buf.len() - pos) as u64);
                    *rem -= take;
                    pos += take as usize;
                    self.body_bytes += take;
                    if *rem == 0 {
                        self.state = State::Done;
                    } else {
                        return Ok((pos, Progress::NeedMore));
                    }
                }
                State::Chunked(cs) => {
                    let n = cs.scan(&buf[pos..])?;
                    pos += n;
                    self.body_bytes += n as u64;
                    if *cs == ChunkState::Done {
                        self.state = State::Done;
                    } else {
                        return Ok((pos, Progress::NeedMore));
                    }
                }
                State::UntilClose => {
                    self.body_bytes += (buf.len() - pos) as u64;
                    return Ok((buf.len(), Progress::NeedMore));
                }
                State::Done => return Ok((pos, Progress::Done)),
            }
        }
    }

    /// The peer closed the connection. A close-delimited body ends here;
    /// anywhere else it is an error.
    pub fn eof(&mut self) -> Result<(), ResponseError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(ResponseError::UnexpectedEof),
        }
    }

    /// Parse a head at the start of `buf`; `Some(len)` when complete (the
    /// state then moves to the body, or back to `Head` after a 1xx).
    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<usize>, ResponseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(ResponseError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(ResponseError::Head(e)),
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            // Interim response (100 Continue, 103 Early Hints): the final
            // one follows.
            return Ok(Some(n));
        }
        self.status = status;
        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        let mut close = resp.version == Some(0);
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value)
                    .map_err(|_| ResponseError::BadContentLength)?
                    .trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ResponseError::BadContentLength);
                }
                let v: u64 = v.parse().map_err(|_| ResponseError::BadContentLength)?;
                if content_length.is_some_and(|c| c != v) {
                    return Err(ResponseError::BadContentLength);
                }
                content_length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
                if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else {
                    return Err(ResponseError::BadTransferEncoding);
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                        close = false;
                    }
                }
            }
        }
        self.close = close;
        self.state = if self.head_method || status == 204 || status == 304 {
            State::Done
        } else if chunked {
            State::Chunked(ChunkState::Size {
                value: 0,
                digits: 0,
            })
        } else if let Some(len) = content_length {
            if len == 0 {
                State::Done
            } else {
                State::Length(len)
            }
        } else {
            self.close = true;
            State::UntilClose
        };
        Ok(Some(n))
    }
}

/// Position in chunked framing (RFC 9112 §7.1), scanned byte by byte except
/// for chunk data, which is skipped in bulk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size {
        value: u64,
        digits: u8,
    },
    /// Chunk extension: ignored up to CR.
    Ext {
        value: u64,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// Start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    EndLf,
    Done,
}

impl ChunkState {
    /// Consume framing from `buf`; returns bytes consumed (stops at `Done`).
    fn scan(&mut self, buf: &[u8]) -> Result<usize, ResponseError> {
        let mut i = 0;
        while i < buf.len() {
            if let ChunkState::Data(rem) = self {
                let take = (*rem).min((buf.len() - i) as u64);
                *rem -= take;
                i += take as usize;
                if *rem == 0 {
                    *self = ChunkState::DataCr;
                }
                continue;
            }
            let b = buf[i];
            i += 1;
            *self = match *self {
                ChunkState::Size { value, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 15 {
                            return Err(ResponseError::BadChunk);
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        ChunkState::Size {
                            value: value * 16 + d,
                            digits: digits + 1,
                        }
                    }
                    b';' | b' ' | b'\t' if digits > 0 => ChunkState::Ext { value },
                    b'\r' if digits > 0 => ChunkState::SizeLf { value },
                    _ => return Err(ResponseError::BadChunk),
                },
                ChunkState::Ext { value } => match b {
                    b'\r' => ChunkState::SizeLf { value },
                    b'\n' => return Err(ResponseError::BadChunk),
                    _ => ChunkState::Ext { value },
                },
                ChunkState::SizeLf { value } => match b {
                    b'\n' if value == 0 => ChunkState::TrailerStart,
                    b'\n' => ChunkState::Data(value),
                    _ => return Err(ResponseError::BadChunk),
                },
                ChunkState::DataCr => match b {
                    b'\r' => ChunkState::DataLf,
                    _ => return Err(ResponseError::BadChunk),
                },
                ChunkState::DataLf => match b {
                    b'\n' => ChunkState::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(ResponseError::BadChunk),
                },
                ChunkState::TrailerStart => match b {
                    b'\r' => ChunkState::EndLf,
                    b'\n' => return Err(ResponseError::BadChunk),
                    _ => ChunkState::TrailerLine,
                },
                ChunkState::TrailerLine => match b {
                    b'\n' => ChunkState::TrailerStart,
                    _ => ChunkState::TrailerLine,
                },
                ChunkState::EndLf => match b {
                    b'\n' => {
                        *self = ChunkState::Done;
                        return Ok(i);
                    }
                    _ => return Err(ResponseError::BadChunk),
                },
                ChunkState::Data(_) | ChunkState::Done => unreachable!("handled above"),
            };
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` split at every possible point (and byte by byte) and
    /// check the reader finds the same end each time.
    fn read_all_splits(
        input: &[u8],
        head_method: bool,
    ) -> Result<(usize, ResponseReader), ResponseError> {
        let mut result = None;
        for split in 0..=input.len() {
            for chunks in [
                vec![&input[..split], &input[split..]],
                input.chunks(1).collect::<Vec<_>>(),
            ] {
                let mut r = ResponseReader::new(head_method);
                let mut pending: Vec<u8> = Vec::new();
                let mut consumed_total = 0;
                let mut done = false;
                for c in chunks {
                    pending.extend_from_slice(c);
                    let (n, p) = r.feed(&pending)?;
                    consumed_total += n;
                    pending.drain(..n);
                    if p == Progress::Done {
                        done = true;
                        break;
                    }
                }
                if !done {
                    r.eof()?;
                    consumed_total += pending.len();
                }
                if let Some((n, _)) = &result {
                    assert_eq!(*n, consumed_total, "split at {split}");
                }
                result = Some((consumed_total, r));
            }
        }
        Ok(result.unwrap())
    }

    #[test]
    fn content_length() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        let (n, r) = read_all_splits(&resp[..], false).unwrap();
        // Stops at the end of the body even when more bytes follow.
        assert!(n == resp.len() - 5 || n == resp.len());
        let mut r2 = ResponseReader::new(false);
        assert_eq!(r2.feed(resp).unwrap(), (resp.len() - 5, Progress::Done));
        assert_eq!(r.status, 200);
        assert!(!r.close);
        assert_eq!(r2.body_bytes, 5);
    }

    #[test]
    fn chunked_with_extension_and_trailer() {
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n";
        let mut r = ResponseReader::new(false);
        assert_eq!(r.feed(resp).unwrap(), (resp.len(), Progress::Done));
        let (n, r) = read_all_splits(resp, false).unwrap();
        assert_eq!(n, resp.len());
        assert_eq!(r.status, 200);
    }

    #[test]
    fn chunked_errors() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert!(
                ResponseReader::new(false).feed(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn close_delimited_and_http10() {
        let resp = b"HTTP/1.0 200 OK\r\n\r\nbody until close";
        let (n, r) = read_all_splits(resp, false).unwrap();
        assert_eq!(n, resp.len());
        assert!(r.close);
        let mut r = ResponseReader::new(false);
        r.feed(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert!(!r.close);
        let mut r = ResponseReader::new(false);
        r.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert!(r.close);
    }

    #[test]
    fn bodiless() {
        let mut r = ResponseReader::new(true);
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n";
        assert_eq!(r.feed(resp).unwrap(), (resp.len(), Progress::Done));
        for resp in [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        ] {
            assert_eq!(
                ResponseReader::new(false).feed(resp).unwrap(),
                (resp.len(), Progress::Done)
            );
        }
    }

    #[test]
    fn interim_then_final() {
        let resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 2\r\n\r\nno";
        let (n, r) = read_all_splits(resp, false).unwrap();
        assert_eq!(n, resp.len());
        assert_eq!(r.status, 503);
    }

    #[test]
    fn head_errors() {
        assert!(matches!(
            ResponseReader::new(false).feed(b"HTTP/1.1 OK\r\n\r\n"),
            Err(ResponseError::Head(_))
        ));
        assert_eq!(
            ResponseReader::new(false)
                .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(ResponseError::BadContentLength)
        );
        assert_eq!(
            ResponseReader::new(false).feed(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Err(ResponseError::BadContentLength)
        );
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(
            ResponseReader::new(false).feed(&big),
            Err(ResponseError::HeadTooLarge)
        );
        let mut r = ResponseReader::new(false);
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        assert_eq!(r.eof(), Err(ResponseError::UnexpectedEof));
    }
}
