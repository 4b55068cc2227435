use super::{resp_err, resp_ok};
use crate::{
    parse_response, BodyFraming, Limits, Method, ParseError, ParseStatus, ResponseHead, Version,
};

#[test]
fn content_length_response() {
    let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n";
    let h = resp_ok(buf, Method::Get);
    assert_eq!(h.status, 200);
    assert_eq!(h.version, Version::Http11);
    assert_eq!(h.framing, BodyFraming::ContentLength(5));
    assert!(!h.close);
    assert_eq!(h.headers.len(), 2);
    assert_eq!(h.headers[1].line.get(buf), b"Content-Type: text/plain\r\n");
    assert_eq!(h.head_len, buf.len());
}

#[test]
fn chunked_response() {
    let h = resp_ok(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        Method::Get,
    );
    assert_eq!(h.framing, BodyFraming::Chunked);
    assert!(h.headers[0].hop_by_hop);
    assert!(!h.close);
}

#[test]
fn until_close_response() {
    let h = resp_ok(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n", Method::Get);
    assert_eq!(h.framing, BodyFraming::UntilClose);
    assert!(h.close);
    let h = resp_ok(b"HTTP/1.0 200 OK\r\n\r\n", Method::Get);
    assert_eq!(h.framing, BodyFraming::UntilClose);
    assert!(h.close);
}

#[test]
fn bodiless_responses() {
    for (status, method) in [
        (100, Method::Get),
        (101, Method::Get),
        (103, Method::Get),
        (204, Method::Get),
        (304, Method::Get),
        (200, Method::Head),
        (404, Method::Head),
        (200, Method::Connect),
        (299, Method::Connect),
    ] {
        let buf = format!("HTTP/1.1 {status} X\r\nContent-Length: 10\r\n\r\n").into_bytes();
        let h = resp_ok(&buf, method);
        assert_eq!(h.framing, BodyFraming::None, "{status} {method:?}");
        assert!(!h.close, "{status} {method:?}");
        let buf = format!("HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
        assert_eq!(resp_ok(&buf, method).framing, BodyFraming::None);
        let buf = format!("HTTP/1.1 {status} X\r\n\r\n").into_bytes();
        assert_eq!(resp_ok(&buf, method).framing, BodyFraming::None);
    }
    // A refused CONNECT has a normal body.
    let h = resp_ok(
        b"HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n",
        Method::Connect,
    );
    assert_eq!(h.framing, BodyFraming::ContentLength(3));
}

#[test]
fn connection_close_and_keep_alive() {
    assert!(
        resp_ok(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            Method::Get
        )
        .close
    );
    assert!(resp_ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::Get).close);
    assert!(
        !resp_ok(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            Method::Get
        )
        .close
    );
    assert!(!resp_ok(b"HTTP/1.1 204 No Content\r\n\r\n", Method::Get).close);
}

#[test]
fn status_line_variants() {
    let h = resp_ok(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", Method::Get);
    assert_eq!(h.status, 200);
    let h = resp_ok(
        b"HTTP/1.1 599 Whatever You Like\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
    );
    assert_eq!(h.status, 599);
    let h = resp_ok(b"HTTP/1.1 999 \r\nContent-Length: 0\r\n\r\n", Method::Get);
    assert_eq!(h.status, 999);
    // Leading empty lines are tolerated.
    let h = resp_ok(
        b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
    );
    assert_eq!(h.status, 200);
}

#[test]
fn status_line_rejections() {
    for buf in [
        &b"HTTP/1.1 099 Low\r\n\r\n"[..],
        b"HTTP/1.1 000 Zero\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1  200 OK\r\n\r\n",
        b"HTTP/1.1 200 O\x01K\r\n\r\n",
        b"http/1.1 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
    ] {
        assert!(
            matches!(resp_err(buf), ParseError::BadRequest(_)),
            "{:?}",
            String::from_utf8_lossy(buf)
        );
    }
    assert_eq!(
        resp_err(b"HTTP/2 200 OK\r\n\r\n"),
        ParseError::VersionNotSupported
    );
    assert_eq!(
        resp_err(b"HTTP/2.0 200 OK\r\n\r\n"),
        ParseError::VersionNotSupported
    );
}

#[test]
fn framing_rejections() {
    let cases: [(&[u8], ParseError); 7] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            ParseError::BadRequest("both Content-Length and Transfer-Encoding"),
        ),
        (
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            ParseError::BadRequest("Transfer-Encoding in HTTP/1.0"),
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            ParseError::NotImplemented("unsupported transfer coding"),
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            ParseError::NotImplemented("unsupported transfer coding"),
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            ParseError::BadRequest("chunked applied more than once"),
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            ParseError::BadRequest("multiple Content-Length"),
        ),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: x\r\n\r\n",
            ParseError::BadRequest("invalid Content-Length"),
        ),
    ];
    for (buf, want) in cases {
        assert_eq!(resp_err(buf), want, "{:?}", String::from_utf8_lossy(buf));
    }
}

#[test]
fn line_syntax_rejections() {
    let cases: [(&[u8], &str); 4] = [
        (
            b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
            "bare LF in head",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n",
            "bare LF in head",
        ),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "obs-fold in head"),
        (
            b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
            "whitespace before colon",
        ),
    ];
    for (buf, reason) in cases {
        assert_eq!(
            resp_err(buf),
            ParseError::BadRequest(reason),
            "{:?}",
            String::from_utf8_lossy(buf)
        );
    }
    assert!(matches!(
        resp_err(b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n"),
        ParseError::BadRequest(_)
    ));
}

#[test]
fn host_is_not_special_in_responses() {
    let h = resp_ok(
        b"HTTP/1.1 200 OK\r\nHost: a\r\nHost: b c\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
    );
    assert_eq!(h.headers.len(), 3);
}

#[test]
fn hop_by_hop_and_nominations_in_responses() {
    let buf = b"HTTP/1.1 200 OK\r\nConnection: x-internal, content-length\r\nX-Internal: 1\r\nKeep-Alive: 5\r\n\
                Content-Length: 2\r\nProxy-Authenticate: Basic\r\nX-Public: 2\r\n\r\n";
    let h = resp_ok(buf, Method::Get);
    let marked: Vec<bool> = h.headers.iter().map(|f| f.hop_by_hop).collect();
    assert_eq!(marked, [true, true, true, false, true, false]);
    assert_eq!(h.framing, BodyFraming::ContentLength(2));
}

#[test]
fn partial_and_limits() {
    let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    let mut head = ResponseHead::default();
    for i in 0..buf.len() {
        assert_eq!(
            parse_response(&buf[..i], &Limits::default(), Method::Get, &mut head),
            Ok(ParseStatus::Partial)
        );
    }
    let small = Limits {
        max_head_bytes: 20,
        ..Limits::default()
    };
    assert_eq!(
        parse_response(buf, &small, Method::Get, &mut head),
        Err(ParseError::HeadTooLarge)
    );
    let few = Limits {
        max_headers: 0,
        ..Limits::default()
    };
    assert_eq!(
        parse_response(buf, &few, Method::Get, &mut head),
        Err(ParseError::TooManyHeaders)
    );
    // Pipelined body bytes after the head are not part of it.
    let mut with_body = buf.to_vec();
    with_body.extend_from_slice(b"helloHTTP/1.1 200 OK\r\n");
    assert_eq!(
        parse_response(&with_body, &Limits::default(), Method::Get, &mut head),
        Ok(ParseStatus::Complete(buf.len()))
    );
}
