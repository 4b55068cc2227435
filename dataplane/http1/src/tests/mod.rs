//! Unit tests of the codec, by concern. Shared helpers live here.

mod chunked;
mod request;
mod response;
mod rewrite;

use crate::{
    parse_request, parse_response, Limits, Method, ParseError, ParseStatus, RequestHead,
    ResponseHead,
};

/// Parse a complete request that must be accepted and must end exactly at
/// the end of `buf`.
fn req_ok(buf: &[u8]) -> RequestHead {
    let mut head = RequestHead::default();
    match parse_request(buf, &Limits::default(), &mut head) {
        Ok(ParseStatus::Complete(n)) => {
            assert_eq!(
                n,
                buf.len(),
                "head length of {:?}",
                String::from_utf8_lossy(buf)
            );
            assert_eq!(head.head_len, n);
        }
        other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
    }
    head
}

/// Parse a request that must be rejected, returning the error.
fn req_err(buf: &[u8]) -> ParseError {
    req_err_with(buf, &Limits::default())
}

fn req_err_with(buf: &[u8], limits: &Limits) -> ParseError {
    let mut head = RequestHead::default();
    match parse_request(buf, limits, &mut head) {
        Err(e) => e,
        other => panic!(
            "expected an error, got {:?} for {:?}",
            other,
            String::from_utf8_lossy(buf)
        ),
    }
}

fn resp_ok(buf: &[u8], method: Method) -> ResponseHead {
    let mut head = ResponseHead::default();
    match parse_response(buf, &Limits::default(), method, &mut head) {
        Ok(ParseStatus::Complete(n)) => assert_eq!(n, buf.len()),
        other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
    }
    head
}

fn resp_err(buf: &[u8]) -> ParseError {
    let mut head = ResponseHead::default();
    match parse_response(buf, &Limits::default(), Method::Get, &mut head) {
        Err(e) => e,
        other => panic!(
            "expected an error, got {:?} for {:?}",
            other,
            String::from_utf8_lossy(buf)
        ),
    }
}

/// `GET / HTTP/1.1` with a Host and the given extra field lines.
fn get_with(fields: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: example.com\r\n{fields}\r\n").into_bytes()
}
