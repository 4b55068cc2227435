//! The field section shared by requests and responses: offsets, the fields
//! the codec itself interprets, hop-by-hop marking and `Connection`
//! nominations.

use crate::{
    head::{HeaderPos, ParseError, Span},
    syntax::{
        is_parameters, is_token, is_valid_authority, parse_decimal_u64, token_len, ListElements,
    },
};

/// Upper bound on `Connection` options per message. Matching nominations is
/// O(options × fields); real clients send one to three options, and the
/// bound keeps a crafted head from buying quadratic work.
pub(crate) const MAX_CONNECTION_OPTIONS: usize = 32;

/// Field names the codec (or the rewriter) acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Upgrade,
    ProxyAuthorization,
    ProxyAuthenticate,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XRequestId,
}

impl Known {
    /// Always hop-by-hop (RFC 9110 §7.6.1), whatever `Connection` says.
    #[inline]
    pub(crate) fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Known::Connection
                | Known::KeepAlive
                | Known::ProxyConnection
                | Known::Te
                | Known::TransferEncoding
                | Known::Upgrade
                | Known::ProxyAuthorization
                | Known::ProxyAuthenticate
        )
    }

    /// Fields a `Connection` nomination must not remove: the writer forwards
    /// them verbatim and the framing / routing decision depends on them.
    #[inline]
    fn is_protected(self) -> bool {
        matches!(self, Known::Host | Known::ContentLength)
    }
}

/// Classify a field name (ASCII case-insensitive). Dispatches on the length
/// first so an unknown name usually costs one comparison of lengths.
#[inline]
pub(crate) fn classify(name: &[u8]) -> Known {
    let is = |lit: &[u8]| name.eq_ignore_ascii_case(lit);
    match name.len() {
        2 if is(b"te") => Known::Te,
        4 if is(b"host") => Known::Host,
        6 if is(b"expect") => Known::Expect,
        7 if is(b"upgrade") => Known::Upgrade,
        10 if is(b"connection") => Known::Connection,
        10 if is(b"keep-alive") => Known::KeepAlive,
        12 if is(b"x-request-id") => Known::XRequestId,
        14 if is(b"content-length") => Known::ContentLength,
        15 if is(b"x-forwarded-for") => Known::XForwardedFor,
        16 if is(b"proxy-connection") => Known::ProxyConnection,
        17 if is(b"transfer-encoding") => Known::TransferEncoding,
        17 if is(b"x-forwarded-proto") => Known::XForwardedProto,
        18 if is(b"proxy-authenticate") => Known::ProxyAuthenticate,
        19 if is(b"proxy-authorization") => Known::ProxyAuthorization,
        _ => Known::Other,
    }
}

/// The verdict on all `Transfer-Encoding` fields of a message, combined in
/// order as one list (RFC 9110 §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransferCoding {
    /// Exactly one coding, `chunked`.
    Chunked,
    /// Well-formed, but uses codings the proxy does not implement (501).
    Unsupported,
    /// Malformed or ambiguous framing (400).
    Bad(&'static str),
}

#[derive(Default)]
struct TeList {
    present: bool,
    elements: u32,
    chunked: u32,
    last_is_chunked: bool,
    other: bool,
    invalid: bool,
}

impl TeList {
    fn add_field(&mut self, value: &[u8]) {
        self.present = true;
        for elem in ListElements::new(value) {
            if elem.is_empty() {
                continue;
            }
            self.elements += 1;
            let n = token_len(elem);
            let (name, params) = elem.split_at(n);
            if name.is_empty() || !is_parameters(params) {
                self.invalid = true;
            } else if name.eq_ignore_ascii_case(b"chunked") {
                // `chunked` defines no parameters.
                if !params.is_empty() {
                    self.invalid = true;
                }
                self.chunked += 1;
                self.last_is_chunked = true;
            } else {
                self.other = true;
                self.last_is_chunked = false;
            }
        }
    }

    fn verdict(&self) -> Option<TransferCoding> {
        if !self.present {
            return None;
        }
        Some(if self.invalid {
            TransferCoding::Bad("invalid Transfer-Encoding")
        } else if self.elements == 0 {
            TransferCoding::Bad("empty Transfer-Encoding")
        } else if self.chunked > 1 {
            TransferCoding::Bad("chunked applied more than once")
        } else if self.chunked == 1 && !self.last_is_chunked {
            TransferCoding::Bad("chunked is not the final transfer coding")
        } else if self.other {
            TransferCoding::Unsupported
        } else {
            TransferCoding::Chunked
        })
    }
}

/// What the field section says about framing and the connection.
#[derive(Debug, Default)]
pub(crate) struct FieldSummary {
    /// Index of the (single) Host field. Requests only.
    pub host: Option<usize>,
    pub content_length: Option<u64>,
    pub transfer_coding: Option<TransferCoding>,
    pub conn_close: bool,
    pub conn_keep_alive: bool,
    pub expect_continue: bool,
    pub upgrade: bool,
    pub xff: Option<u16>,
    pub request_id: Option<u16>,
}

#[inline]
fn span(start: usize, end: usize) -> Span {
    // Callers bound every buffer offset by `head::MAX_SPAN`.
    Span {
        start: start as u32,
        end: end as u32,
    }
}

/// Offset of a sub-slice handed back by `httparse` within `buf`.
#[inline]
pub(crate) fn offset_in(buf: &[u8], sub: &[u8]) -> usize {
    sub.as_ptr() as usize - buf.as_ptr() as usize
}

/// Record the fields `httparse` found in `buf[..head_end]` into `out` and
/// check the ones the codec interprets. `head_end` is the end of the final
/// CRLF; the head has already been checked to contain no bare LF, so every
/// field line ends in CRLF and runs up to the next field's name.
pub(crate) fn scan_fields(
    buf: &[u8],
    raw: &[httparse::Header<'_>],
    head_end: usize,
    is_request: bool,
    out: &mut Vec<HeaderPos>,
) -> Result<FieldSummary, ParseError> {
    let mut sum = FieldSummary::default();
    let mut te = TeList::default();
    let mut conn_options = 0usize;
    out.reserve(raw.len());
    for (i, h) in raw.iter().enumerate() {
        let name = h.name.as_bytes();
        let ns = offset_in(buf, name);
        let vs = offset_in(buf, h.value);
        let line_end = match raw.get(i + 1) {
            Some(next) => offset_in(buf, next.name.as_bytes()),
            None => head_end - 2,
        };
        let kind = classify(name);
        match kind {
            Known::Host if is_request => {
                if sum.host.is_some() {
                    return Err(ParseError::BadRequest("duplicate Host"));
                }
                if !is_valid_authority(h.value, false) && !h.value.is_empty() {
                    return Err(ParseError::BadRequest("invalid Host"));
                }
                sum.host = Some(i);
            }
            Known::ContentLength => {
                if sum.content_length.is_some() {
                    return Err(ParseError::BadRequest("multiple Content-Length"));
                }
                match parse_decimal_u64(h.value) {
                    Some(v) => sum.content_length = Some(v),
                    None => return Err(ParseError::BadRequest("invalid Content-Length")),
                }
            }
            Known::TransferEncoding => te.add_field(h.value),
            Known::Connection => {
                for opt in ListElements::new(h.value) {
                    if opt.is_empty() {
                        continue;
                    }
                    if !is_token(opt) {
                        return Err(ParseError::BadRequest("invalid Connection"));
                    }
                    conn_options += 1;
                    if conn_options > MAX_CONNECTION_OPTIONS {
                        return Err(ParseError::BadRequest("too many Connection options"));
                    }
                    if opt.eq_ignore_ascii_case(b"close") {
                        sum.conn_close = true;
                    } else if opt.eq_ignore_ascii_case(b"keep-alive") {
                        sum.conn_keep_alive = true;
                    }
                }
            }
            Known::Expect
                if is_request
                    && ListElements::new(h.value)
                        .any(|e| e.eq_ignore_ascii_case(b"100-continue")) =>
            {
                sum.expect_continue = true;
            }
            Known::Upgrade => sum.upgrade = true,
            _ => {}
        }
        out.push(HeaderPos {
            name: span(ns, ns + name.len()),
            value: span(vs, vs + h.value.len()),
            line: span(ns, line_end),
            hop_by_hop: kind.is_hop_by_hop(),
        });
    }
    sum.transfer_coding = te.verdict();
    if conn_options > 0 {
        apply_nominations(buf, out);
    }
    for (i, h) in out.iter().enumerate() {
        if h.hop_by_hop {
            continue;
        }
        // `max_headers` bounds `i`; an index past u16 is simply not cached.
        let Ok(idx) = u16::try_from(i) else { break };
        match classify(h.name.get(buf)) {
            Known::XForwardedFor if sum.xff.is_none() => sum.xff = Some(idx),
            Known::XRequestId if sum.request_id.is_none() => sum.request_id = Some(idx),
            _ => {}
        }
    }
    Ok(sum)
}

/// Mark every field named by a `Connection` option as hop-by-hop, except
/// the protected ones (RFC 9110 §7.6.1 lets a proxy keep fields it needs;
/// `Connection: content-length` must never change framing).
fn apply_nominations(buf: &[u8], headers: &mut [HeaderPos]) {
    for ci in 0..headers.len() {
        let conn = headers[ci];
        if classify(conn.name.get(buf)) != Known::Connection {
            continue;
        }
        for opt in ListElements::new(conn.value.get(buf)) {
            if opt.is_empty() {
                continue;
            }
            for h in headers.iter_mut() {
                let name = h.name.get(buf);
                if !h.hop_by_hop
                    && name.len() == opt.len()
                    && name.eq_ignore_ascii_case(opt)
                    && !classify(name).is_protected()
                {
                    h.hop_by_hop = true;
                }
            }
        }
    }
}
