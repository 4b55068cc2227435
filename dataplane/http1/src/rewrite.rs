//! Writing heads for forwarding: copy what is unchanged verbatim from the
//! original bytes, drop hop-by-hop fields, append the proxy's own fields.

use std::net::IpAddr;

use crate::{
    fields::{classify, Known},
    BodyFraming, Method, RequestHead, ResponseHead, Version,
};

/// What the proxy adds to a request it forwards upstream.
#[derive(Debug, Clone, Copy)]
pub struct ForwardInfo<'a> {
    /// Appended to `x-forwarded-for` (merged into one field with any
    /// forwardable values the client sent).
    pub client_ip: IpAddr,
    /// `x-forwarded-proto` value (set, replacing the client's): "http"/"https".
    pub proto: &'a str,
    /// When `Some`, written as `x-request-id` (the caller generates it only
    /// when the request had none; an existing one is forwarded verbatim).
    pub request_id: Option<&'a [u8]>,
    /// Drop `Expect: 100-continue` (the proxy answered 100 itself).
    pub strip_expect: bool,
    /// Extra fields appended verbatim (name, value). Names are trusted
    /// (configuration), values must already be valid field values.
    pub extra_headers: &'a [(&'a str, &'a [u8])],
}

/// Write the upstream request head into `out` (appending).
///
/// Start line: `METHOD SP origin-form SP HTTP/1.1` (absolute-form targets are
/// reduced to path + query, with the authority written as `host` if the
/// client sent no Host). Fields: every forwardable field line verbatim in
/// order, except `x-forwarded-for` (merged and rewritten),
/// `x-forwarded-proto` (replaced) and `expect` when `strip_expect`;
/// `transfer-encoding: chunked` when the framing is chunked. Content-Length
/// and Host can never be removed by a `Connection` nomination.
///
/// Details: the proxy's own fields follow the forwarded ones, in this order:
/// `host` (only when the client sent none; its value is the authority, empty
/// if there is none, as RFC 9112 §3.2 requires), `x-forwarded-for`,
/// `x-forwarded-proto`, `x-request-id`, `transfer-encoding`, then
/// `extra_headers`. When `info.request_id` is `Some`, any `x-request-id` the
/// client sent is replaced rather than duplicated. No `connection` field is
/// written: the upstream request is HTTP/1.1 and keeps the pooled
/// connection alive by default. `expect` is also dropped from HTTP/1.0
/// requests (RFC 9110 §10.1.1: their 100-continue is ignored; forwarded as
/// HTTP/1.1 it would invite a 1xx the client cannot read).
pub fn write_upstream_request(
    buf: &[u8],
    head: &RequestHead,
    info: &ForwardInfo<'_>,
    out: &mut Vec<u8>,
) {
    write_upstream_request_to(buf, head, info, None, out)
}

/// [`write_upstream_request`] with the request-target replaced by
/// `target` (origin-form `path[?query]`) when it is `Some`: the
/// normalized path is what goes upstream, as in Envoy.
pub fn write_upstream_request_to(
    buf: &[u8],
    head: &RequestHead,
    info: &ForwardInfo<'_>,
    target: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(head.method_span.get(buf));
    out.push(b' ');
    match target {
        Some(t) => out.extend_from_slice(t),
        None => write_origin_target(buf, head, out),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_host = false;
    for h in &head.headers {
        if h.hop_by_hop {
            continue;
        }
        match classify(h.name.get(buf)) {
            Known::Host => has_host = true,
            Known::XForwardedFor | Known::XForwardedProto => continue,
            // RFC 9110 §10.1.1: an HTTP/1.0 client's 100-continue is ignored,
            // so it must not reach the upstream as part of a 1.1 request.
            Known::Expect if info.strip_expect || head.version == Version::Http10 => continue,
            Known::XRequestId if info.request_id.is_some() => continue,
            _ => {}
        }
        out.extend_from_slice(h.line.get(buf));
    }
    if !has_host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(head.authority.get(buf));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(first) = head.xff {
        for h in head.headers.iter().skip(usize::from(first)) {
            if h.hop_by_hop || classify(h.name.get(buf)) != Known::XForwardedFor {
                continue;
            }
            let value = h.value.get(buf);
            if !value.is_empty() {
                out.extend_from_slice(value);
                out.extend_from_slice(b", ");
            }
        }
    }
    write_ip(info.client_ip, out);
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(info.proto.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(id) = info.request_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(id);
        out.extend_from_slice(b"\r\n");
    }
    if head.framing == BodyFraming::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    write_extra(info.extra_headers, out);
    out.extend_from_slice(b"\r\n");
}

/// The request-target in origin-form (authority-form for CONNECT, `*` for
/// asterisk-form).
fn write_origin_target(buf: &[u8], head: &RequestHead, out: &mut Vec<u8>) {
    let target = head.target.get(buf);
    if head.method == Method::Connect || matches!(target.first(), Some(b'/' | b'*')) {
        out.extend_from_slice(target);
        return;
    }
    // Absolute-form: everything after the authority, "/" if the path is empty.
    let (auth, t) = (head.authority, head.target);
    if auth.start > t.start && auth.end <= t.end {
        let rest = &buf[auth.end as usize..t.end as usize];
        if !rest.starts_with(b"/") {
            out.push(b'/');
        }
        out.extend_from_slice(rest);
        return;
    }
    // A head not produced by `parse_request`: rebuild from path and query.
    let path = head.path.get(buf);
    if path.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(path);
    if !head.query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(head.query.get(buf));
    }
}

/// Write the downstream response head into `out` (appending): status line as
/// `HTTP/1.1 <code> <original reason>`, forwardable fields verbatim,
/// `transfer-encoding: chunked` when chunked, and `connection: close` when
/// `close` is set (the proxy will close the downstream connection after it).
///
/// `connection: close` is also written for `UntilClose` framing, whose end
/// the client can only learn from the close.
pub fn write_downstream_response(buf: &[u8], head: &ResponseHead, close: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_status_code(head.status, out);
    out.push(b' ');
    out.extend_from_slice(original_reason(buf, head.head_len));
    out.extend_from_slice(b"\r\n");
    for h in &head.headers {
        if !h.hop_by_hop {
            out.extend_from_slice(h.line.get(buf));
        }
    }
    if head.framing == BodyFraming::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close || head.framing == BodyFraming::UntilClose {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The reason-phrase of the status line at the start of `buf[..head_len]`
/// (after any empty lines), or empty.
fn original_reason(buf: &[u8], head_len: usize) -> &[u8] {
    let head = &buf[..head_len.min(buf.len())];
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let line = &head[start..];
    let line = &line[..memchr::memchr(b'\r', line).unwrap_or(line.len())];
    // "HTTP/1.1 200 " is 13 bytes; the reason is optional.
    line.get(13..).unwrap_or_default()
}

/// Write a complete locally generated response (errors, direct responses):
/// status line with the standard reason phrase, `content-length`,
/// `content-type: text/plain` when `body` is non-empty, `extra` fields,
/// `connection: close` when `close`, then `body`.
///
/// A status outside 100–999 is written as 500. 1xx, 204 and 304 responses
/// carry neither `content-length` nor a body (RFC 9110 §8.6, §15.3.5).
pub fn write_local_response(
    status: u16,
    body: &[u8],
    close: bool,
    extra: &[(&str, &[u8])],
    out: &mut Vec<u8>,
) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let bodiless = status < 200 || status == 204 || status == 304;
    out.extend_from_slice(b"HTTP/1.1 ");
    write_status_code(status, out);
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(b"content-length: ");
        write_decimal(body.len() as u64, out);
        out.extend_from_slice(b"\r\n");
        if !body.is_empty() {
            out.extend_from_slice(b"content-type: text/plain\r\n");
        }
    }
    write_extra(extra, out);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(body);
    }
}

/// The standard reason phrase (RFC 9110 §15, plus 429/431 from RFC 6585),
/// or the status class's name for codes without one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Unknown",
        },
    }
}

fn write_extra(extra: &[(&str, &[u8])], out: &mut Vec<u8>) {
    for (name, value) in extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Three digits; callers keep `status` within 100–999 (a parsed status
/// always is), anything else is written as 500.
fn write_status_code(status: u16, out: &mut Vec<u8>) {
    let s = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    out.extend_from_slice(&[
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
}

fn write_decimal(mut v: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn write_ip(ip: IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                write_decimal(u64::from(octet), out);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail; it only grows `out`.
            let _ = write!(out, "{v6}");
        }
    }
}
