//! Sans-I/O, strict HTTP/1.1 codec for the proxy's hot path.
//!
//! Heads are parsed in place (`httparse`) into *offsets* into the caller's
//! read buffer, so the caller can keep its owned buffer (monoio rent-style
//! I/O moves buffers into the kernel) and no header map is allocated per
//! request: a [`RequestHead`] / [`ResponseHead`] is reused across requests on
//! a connection. Validation follows RFC 9112 strictly (see [`ParseError`]);
//! every rejection maps to the status the proxy must answer with, and a
//! rejected message is never forwarded.
//!
//! Bodies are not copied: [`ChunkedDecoder`] only *scans* chunked framing to
//! find where a message ends and to reject malformed framing, while the raw
//! bytes are forwarded unchanged.
#![forbid(unsafe_code)]

mod chunked;
mod fields;
mod head;
mod normalize;
mod rewrite;
mod syntax;
mod target;
#[cfg(test)]
mod tests;

pub use chunked::{ChunkError, ChunkedDecoder, MAX_CHUNK_LINE, MAX_TRAILER_BYTES};
pub use head::{
    parse_request, parse_response, BodyFraming, HeaderPos, Method, ParseError, ParseStatus,
    RequestHead, ResponseHead, Span, Version, STACK_HEADER_SLOTS,
};
pub use normalize::{normalize_path, EscapedSlashes, Normalized, PathError, PathNormalization};
pub use rewrite::{
    reason_phrase, write_downstream_response, write_local_response, write_upstream_request,
    write_upstream_request_to, ForwardInfo,
};

/// Limits applied while parsing a head. Defaults follow Envoy's
/// (`max_request_headers_kb: 60`, `max_headers_count: 100`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum bytes of the whole head (start line + headers + final CRLF).
    /// Exceeding it yields [`ParseError::HeadTooLarge`] (431) for requests.
    pub max_head_bytes: usize,
    /// Maximum number of header fields. Exceeding it yields
    /// [`ParseError::TooManyHeaders`] (431).
    pub max_headers: usize,
    /// Maximum request-target length; [`ParseError::UriTooLong`] (414).
    pub max_uri_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 60 * 1024,
            max_headers: 100,
            max_uri_len: 16 * 1024,
        }
    }
}
