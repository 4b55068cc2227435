//! Writing heads for forwarding: copy what is unchanged verbatim from the
//! original bytes, drop hop-by-hop fields, append the proxy's own fields.

use std::net::IpAddr;

use crate::{RequestHead, ResponseHead};

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
pub fn write_upstream_request(buf: &[u8], head: &RequestHead, info: &ForwardInfo<'_>, out: &mut Vec<u8>) {
    let _ = (buf, head, info, out);
    todo!("ringmesh-http1: write_upstream_request")
}

/// Write the downstream response head into `out` (appending): status line as
/// `HTTP/1.1 <code> <original reason>`, forwardable fields verbatim,
/// `transfer-encoding: chunked` when chunked, and `connection: close` when
/// `close` is set (the proxy will close the downstream connection after it).
pub fn write_downstream_response(buf: &[u8], head: &ResponseHead, close: bool, out: &mut Vec<u8>) {
    let _ = (buf, head, close, out);
    todo!("ringmesh-http1: write_downstream_response")
}

/// Write a complete locally generated response (errors, direct responses):
/// status line with the standard reason phrase, `content-length`,
/// `content-type: text/plain` when `body` is non-empty, `extra` fields,
/// `connection: close` when `close`, then `body`.
pub fn write_local_response(status: u16, body: &[u8], close: bool, extra: &[(&str, &[u8])], out: &mut Vec<u8>) {
    let _ = (status, body, close, extra, out);
    todo!("ringmesh-http1: write_local_response")
}
