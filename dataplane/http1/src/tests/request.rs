use super::{get_with, req_err, req_err_with, req_ok};
use crate::{
    parse_request, BodyFraming, Limits, Method, ParseError, ParseStatus, RequestHead, Version,
    STACK_HEADER_SLOTS,
};

fn bad(buf: &[u8]) -> &'static str {
    match req_err(buf) {
        ParseError::BadRequest(r) => r,
        other => panic!(
            "expected 400, got {other:?} for {:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

fn status(buf: &[u8]) -> u16 {
    req_err(buf).status()
}

// ---------------------------------------------------------------- basics

#[test]
fn simple_get() {
    let buf = b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.method, Method::Get);
    assert_eq!(h.method_span.get(buf), b"GET");
    assert_eq!(h.target.get(buf), b"/a/b?x=1&y");
    assert_eq!(h.path.get(buf), b"/a/b");
    assert_eq!(h.query.get(buf), b"x=1&y");
    assert_eq!(h.version, Version::Http11);
    assert_eq!(h.authority.get(buf), b"example.com");
    assert_eq!(h.framing, BodyFraming::None);
    assert!(!h.close && !h.expect_continue && !h.upgrade);
    assert_eq!(h.headers.len(), 2);
    assert_eq!(h.headers[0].name.get(buf), b"Host");
    assert_eq!(h.headers[0].value.get(buf), b"example.com");
    assert_eq!(h.headers[0].line.get(buf), b"Host: example.com\r\n");
    assert_eq!(h.headers[1].line.get(buf), b"Accept: */*\r\n");
    assert_eq!(h.header(buf, "accept"), Some(&b"*/*"[..]));
    assert_eq!(h.header(buf, "missing"), None);
}

#[test]
fn value_ows_trimmed_and_empty_values() {
    let buf = b"GET / HTTP/1.1\r\nHost:example.com\r\nX-A: \t v w \t\r\nX-B:\r\nX-C:   \r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.headers[0].value.get(buf), b"example.com");
    assert_eq!(h.headers[1].value.get(buf), b"v w");
    assert_eq!(h.headers[1].line.get(buf), b"X-A: \t v w \t\r\n");
    assert_eq!(h.headers[2].value.get(buf), b"");
    assert_eq!(h.headers[2].line.get(buf), b"X-B:\r\n");
    assert_eq!(h.headers[3].value.get(buf), b"");
    assert_eq!(h.headers[3].line.get(buf), b"X-C:   \r\n");
}

#[test]
fn no_query_gives_empty_query() {
    let buf = b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.path.get(buf), b"/p");
    assert!(h.query.is_empty());
    let buf = b"GET /p? HTTP/1.1\r\nHost: h\r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.path.get(buf), b"/p");
    assert!(h.query.is_empty());
}

#[test]
fn every_prefix_is_partial() {
    let buf =
        b"POST /upload?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\nX-Y: z\r\n\r\n";
    let mut head = RequestHead::default();
    for i in 0..buf.len() {
        assert_eq!(
            parse_request(&buf[..i], &Limits::default(), &mut head),
            Ok(ParseStatus::Partial),
            "prefix {i}"
        );
    }
    assert_eq!(
        parse_request(buf, &Limits::default(), &mut head),
        Ok(ParseStatus::Complete(buf.len()))
    );
    assert_eq!(head.framing, BodyFraming::ContentLength(3));
}

#[test]
fn leading_empty_lines_are_skipped() {
    let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.method_span.get(buf), b"GET");
    assert_eq!(h.head_len, buf.len());
}

#[test]
fn pipelined_requests() {
    let first = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
    let second = b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    let third = b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let mut buf = first.to_vec();
    buf.extend_from_slice(b"hello");
    buf.extend_from_slice(second);
    buf.extend_from_slice(third);
    let limits = Limits::default();
    let mut head = RequestHead::default();

    let mut at = 0;
    assert_eq!(
        parse_request(&buf[at..], &limits, &mut head),
        Ok(ParseStatus::Complete(first.len()))
    );
    assert_eq!(head.path.get(&buf[at..]), b"/a");
    assert_eq!(head.framing, BodyFraming::ContentLength(5));
    at += first.len() + 5;

    assert_eq!(
        parse_request(&buf[at..], &limits, &mut head),
        Ok(ParseStatus::Complete(second.len()))
    );
    assert_eq!(head.path.get(&buf[at..]), b"/b");
    assert_eq!(head.framing, BodyFraming::None);
    assert!(!head.close);
    at += second.len();

    assert_eq!(
        parse_request(&buf[at..], &limits, &mut head),
        Ok(ParseStatus::Complete(third.len()))
    );
    assert_eq!(head.path.get(&buf[at..]), b"/c");
    assert!(head.close);
}

#[test]
fn head_is_reset_and_header_vec_reused() {
    let limits = Limits::default();
    let mut head = RequestHead::default();
    let big =
        get_with("A: 1\r\nB: 2\r\nC: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n");
    assert!(parse_request(&big, &limits, &mut head).is_ok());
    assert_eq!(head.framing, BodyFraming::Chunked);
    let cap = head.headers.capacity();
    let ptr = head.headers.as_ptr();
    let small = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(parse_request(small, &limits, &mut head).is_ok());
    assert_eq!(head.headers.len(), 1);
    assert_eq!(head.headers.capacity(), cap);
    assert_eq!(head.headers.as_ptr(), ptr);
    assert_eq!(head.framing, BodyFraming::None);
    assert!(!head.close);
    // A failed parse leaves no stale state behind either.
    assert!(parse_request(b"GET / HTTP/1.1\r\n\r\n", &limits, &mut head).is_err());
    assert!(parse_request(b"GET /", &limits, &mut head).is_ok());
    assert!(head.headers.is_empty());
}

#[test]
fn methods() {
    for (text, m) in [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("OPTIONS", Method::Options),
        ("TRACE", Method::Trace),
        ("PATCH", Method::Patch),
        ("PURGE", Method::Other),
        ("get", Method::Other),
        ("M-SEARCH", Method::Other),
    ] {
        let buf = format!("{text} / HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes();
        let h = req_ok(&buf);
        assert_eq!(h.method, m, "{text}");
        assert_eq!(h.method_span.get(&buf), text.as_bytes());
    }
    assert!(Method::Put.is_idempotent() && !Method::Post.is_idempotent());
}

#[test]
fn bad_request_lines() {
    for buf in [
        &b"G(ET / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTX/1.1\r\nHost: h\r\n\r\n",
        b"GET / http/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\rHost: h\r\n\r\n",
    ] {
        assert_eq!(status(buf), 400, "{:?}", String::from_utf8_lossy(buf));
    }
}

#[test]
fn unsupported_versions_are_505() {
    for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
        let buf = format!("GET / {v}\r\nHost: h\r\n\r\n").into_bytes();
        assert_eq!(req_err(&buf), ParseError::VersionNotSupported, "{v}");
        assert_eq!(req_err(&buf).status(), 505);
    }
}

// ------------------------------------------------------ line-level syntax

#[test]
fn bare_lf_is_rejected_everywhere() {
    for buf in [
        &b"GET / HTTP/1.1\nHost: h\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: h\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: y\nZ: w\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\n\n",
        b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        assert_eq!(
            bad(buf),
            "bare LF in head",
            "{:?}",
            String::from_utf8_lossy(buf)
        );
    }
}

#[test]
fn bare_cr_is_rejected() {
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n"), 400);
}

#[test]
fn obs_fold_is_rejected() {
    assert_eq!(
        bad(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"),
        "obs-fold in head"
    );
    assert_eq!(
        bad(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n"),
        "obs-fold in head"
    );
    assert_eq!(
        bad(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
        "obs-fold in head"
    );
}

#[test]
fn whitespace_before_colon_is_rejected() {
    assert_eq!(
        bad(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
        "whitespace before colon"
    );
    assert_eq!(
        bad(b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding\t: chunked\r\n\r\n"),
        "whitespace before colon"
    );
}

#[test]
fn empty_and_invalid_names_are_rejected() {
    assert_eq!(
        bad(b"GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"),
        "empty header name"
    );
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\nX(y): v\r\n\r\n"), 400);
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: v\r\n\r\n"),
        400
    );
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"), 400);
}

#[test]
fn ctl_in_values_rejected_obs_text_and_htab_allowed() {
    for ctl in [0u8, 1, 0x0b, 0x0c, 0x1f, 0x7f] {
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX: a".to_vec();
        buf.push(ctl);
        buf.extend_from_slice(b"b\r\n\r\n");
        assert_eq!(status(&buf), 400, "byte {ctl:#x}");
    }
    let buf = b"GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\tand \xff\r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.headers[1].value.get(buf), b"caf\xc3\xa9\tand \xff");
}

// ------------------------------------------------------------------ Host

#[test]
fn host_rules() {
    assert_eq!(bad(b"GET / HTTP/1.1\r\n\r\n"), "missing Host");
    assert_eq!(
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        "duplicate Host"
    );
    assert_eq!(
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
        "duplicate Host"
    );
    for host in [
        "a b", "a@b", "a/b", "a?b", "a#b", "h:99999", "h:8o", "h:1:2", ":80", "[::1", "[]", "a,b",
        "%zz", "a%2",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
        assert_eq!(bad(&buf), "invalid Host", "{host}");
    }
    for host in [
        "example.com",
        "EXAMPLE.com:8080",
        "10.0.0.1",
        "[::1]:443",
        "[fe80::1%25eth0]",
        "a_b-c~d",
        "h:",
        "a%20b",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
        let h = req_ok(&buf);
        assert_eq!(h.authority.get(&buf), host.as_bytes());
    }
    // An empty Host is valid (RFC 9112 §3.2) and gives an empty authority.
    let h = req_ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n");
    assert!(h.authority.is_empty());
}

#[test]
fn http10_without_host_is_accepted() {
    let buf = b"GET /x HTTP/1.0\r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.version, Version::Http10);
    assert!(h.authority.is_empty());
    assert!(h.close);
}

// ---------------------------------------------------------------- targets

#[test]
fn absolute_form() {
    let buf = b"GET http://example.com:8080/a/b?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.authority.get(buf), b"example.com:8080");
    assert_eq!(h.path.get(buf), b"/a/b");
    assert_eq!(h.query.get(buf), b"q=1");

    // Empty path reads as "/".
    let buf = b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.path.get(buf), b"/");
    assert!(h.query.is_empty());
    let buf = b"GET HTTPS://Example.com?x HTTP/1.1\r\nHost: example.COM:443\r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.path.get(buf), b"/");
    assert_eq!(h.query.get(buf), b"x");
    assert_eq!(h.authority.get(buf), b"Example.com");

    // The target's authority takes precedence (HTTP/1.0 may omit Host).
    let buf = b"GET http://a.example/ HTTP/1.0\r\n\r\n";
    assert_eq!(req_ok(buf).authority.get(buf), b"a.example");
}

#[test]
fn absolute_form_rejections() {
    assert_eq!(
        bad(b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n"),
        "Host does not match the request-target authority"
    );
    assert_eq!(
        status(b"GET http://a.example:81/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"GET https://a.example:80/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        400
    );
    assert_eq!(
        bad(b"GET http://a.example/ HTTP/1.1\r\n\r\n"),
        "missing Host"
    );
    assert_eq!(
        bad(b"GET http://user:pw@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        "userinfo in request-target"
    );
    assert_eq!(status(b"GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET ftp://h/p HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET http:/h/p HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET h/p HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(
        status(b"GET http://h/p#frag HTTP/1.1\r\nHost: h\r\n\r\n"),
        400
    );
}

#[test]
fn origin_form_rejections() {
    assert_eq!(
        bad(b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n"),
        "invalid request-target"
    );
    assert_eq!(
        bad(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"),
        "invalid request-target"
    );
    // Unescaped but harmless characters real clients send are accepted.
    let buf = b"GET /a|b?x[]={\"y\"}^`\\ HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(req_ok(buf).query.get(buf), b"x[]={\"y\"}^`\\");
}

#[test]
fn authority_form_only_for_connect() {
    let buf = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.method, Method::Connect);
    assert_eq!(h.authority.get(buf), b"example.com:443");
    assert!(h.path.is_empty() && h.query.is_empty());
    assert_eq!(h.framing, BodyFraming::None);

    assert_eq!(
        status(b"CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        400
    );
    assert_eq!(status(b"CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(
        status(b"CONNECT http://h:443/ HTTP/1.1\r\nHost: h\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"GET example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        400
    );
    assert_eq!(
        bad(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n"),
        "CONNECT with content"
    );
    assert_eq!(
        bad(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "CONNECT with content"
    );
    let h = req_ok(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.framing, BodyFraming::None);
}

#[test]
fn asterisk_form_only_for_options() {
    let buf = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
    let h = req_ok(buf);
    assert_eq!(h.path.get(buf), b"*");
    assert!(h.query.is_empty());
    assert_eq!(
        bad(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
        "asterisk-form is only allowed with OPTIONS"
    );
    assert_eq!(status(b"OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

// ----------------------------------------------------------------- limits

#[test]
fn uri_too_long() {
    let limits = Limits {
        max_uri_len: 32,
        ..Limits::default()
    };
    let ok = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(31));
    let mut head = RequestHead::default();
    assert!(matches!(
        parse_request(ok.as_bytes(), &limits, &mut head),
        Ok(ParseStatus::Complete(_))
    ));
    let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(32));
    assert_eq!(
        req_err_with(long.as_bytes(), &limits),
        ParseError::UriTooLong
    );
    assert_eq!(ParseError::UriTooLong.status(), 414);
    // Detected before the request line is complete.
    let partial = format!("GET /{}", "a".repeat(40));
    assert_eq!(
        req_err_with(partial.as_bytes(), &limits),
        ParseError::UriTooLong
    );
    // ... but not while it is still within the limit.
    let partial = format!("GET /{}", "a".repeat(20));
    assert_eq!(
        parse_request(partial.as_bytes(), &limits, &mut head),
        Ok(ParseStatus::Partial)
    );
    // A long target with an invalid byte further on is still 414.
    let bad = format!("GET /{}\x01 HTTP/1.1\r\n", "a".repeat(40));
    assert_eq!(
        req_err_with(bad.as_bytes(), &limits),
        ParseError::UriTooLong
    );
}

#[test]
fn head_too_large() {
    let buf = get_with("X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    let mut head = RequestHead::default();
    let exact = Limits {
        max_head_bytes: buf.len(),
        ..Limits::default()
    };
    assert_eq!(
        parse_request(&buf, &exact, &mut head),
        Ok(ParseStatus::Complete(buf.len()))
    );
    let small = Limits {
        max_head_bytes: buf.len() - 1,
        ..Limits::default()
    };
    assert_eq!(req_err_with(&buf, &small), ParseError::HeadTooLarge);
    assert_eq!(ParseError::HeadTooLarge.status(), 431);
    // Partial heads are refused once they reach the limit...
    assert_eq!(
        req_err_with(&buf[..buf.len() - 1], &small),
        ParseError::HeadTooLarge
    );
    // ...and accepted below it.
    assert_eq!(
        parse_request(&buf[..buf.len() - 2], &small, &mut head),
        Ok(ParseStatus::Partial)
    );
    // A complete head followed by a large body is fine.
    let mut with_body = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n".to_vec();
    with_body.resize(with_body.len() + 100_000, b'x');
    assert!(matches!(
        parse_request(&with_body, &Limits::default(), &mut head),
        Ok(ParseStatus::Complete(_))
    ));
}

#[test]
fn too_many_headers() {
    let limits = Limits {
        max_headers: 3,
        ..Limits::default()
    };
    let mut head = RequestHead::default();
    let three = get_with("A: 1\r\nB: 2\r\n");
    assert!(parse_request(&three, &limits, &mut head).is_ok());
    let four = get_with("A: 1\r\nB: 2\r\nC: 3\r\n");
    assert_eq!(req_err_with(&four, &limits), ParseError::TooManyHeaders);
    assert_eq!(ParseError::TooManyHeaders.status(), 431);
}

#[test]
fn more_headers_than_stack_slots() {
    let n = STACK_HEADER_SLOTS + 20;
    let fields: String = (0..n).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let buf = get_with(&fields);
    let limits = Limits {
        max_headers: n + 1,
        ..Limits::default()
    };
    let mut head = RequestHead::default();
    assert_eq!(
        parse_request(&buf, &limits, &mut head),
        Ok(ParseStatus::Complete(buf.len()))
    );
    assert_eq!(head.headers.len(), n + 1);
    assert_eq!(
        head.headers[n].value.get(&buf),
        format!("{}", n - 1).as_bytes()
    );
    let limits = Limits {
        max_headers: n,
        ..Limits::default()
    };
    assert_eq!(req_err_with(&buf, &limits), ParseError::TooManyHeaders);
}

// -------------------------------------------------------- Content-Length

#[test]
fn content_length() {
    let h = req_ok(&get_with("Content-Length: 42\r\n"));
    assert_eq!(h.framing, BodyFraming::ContentLength(42));
    assert_eq!(
        req_ok(&get_with("content-length: 007\r\n")).framing,
        BodyFraming::ContentLength(7)
    );
    assert_eq!(
        req_ok(&get_with("Content-Length: 0\r\n")).framing,
        BodyFraming::ContentLength(0)
    );
    let max = req_ok(&get_with("Content-Length: 18446744073709551615\r\n"));
    assert_eq!(max.framing, BodyFraming::ContentLength(u64::MAX));
}

#[test]
fn content_length_rejections() {
    for v in [
        "",
        "abc",
        "+5",
        "-5",
        "5 5",
        "5,5",
        "5, 5",
        "0x10",
        "1e3",
        "5.0",
        "18446744073709551616",
        "99999999999999999999999",
    ] {
        let buf = get_with(&format!("Content-Length: {v}\r\n"));
        assert_eq!(bad(&buf), "invalid Content-Length", "{v:?}");
    }
    assert_eq!(
        bad(&get_with("Content-Length: 5\r\nContent-Length: 5\r\n")),
        "multiple Content-Length"
    );
    assert_eq!(
        bad(&get_with("Content-Length: 5\r\ncontent-length: 6\r\n")),
        "multiple Content-Length"
    );
}

// ----------------------------------------------------- Transfer-Encoding

#[test]
fn chunked_accepted() {
    for v in [
        "chunked",
        "Chunked",
        "CHUNKED",
        "chunked ",
        ",chunked",
        "chunked,",
        " , chunked , ",
    ] {
        let h = req_ok(&get_with(&format!("Transfer-Encoding: {v}\r\n")));
        assert_eq!(h.framing, BodyFraming::Chunked, "{v:?}");
        assert!(h.headers[1].hop_by_hop);
    }
}

#[test]
fn transfer_codings_not_implemented() {
    for v in [
        "gzip, chunked",
        "identity",
        "gzip",
        "chunk",
        "deflate,chunked",
        "x-custom;p=1, chunked",
    ] {
        let e = req_err(&get_with(&format!("Transfer-Encoding: {v}\r\n")));
        assert!(matches!(e, ParseError::NotImplemented(_)), "{v:?}: {e:?}");
        assert_eq!(e.status(), 501);
    }
    // Several fields form one list.
    let e = req_err(&get_with(
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    ));
    assert_eq!(e.status(), 501);
}

#[test]
fn transfer_encoding_rejections() {
    let cases = [
        ("chunked, chunked", "chunked applied more than once"),
        ("chunked,chunked", "chunked applied more than once"),
        ("chunked, gzip", "chunked is not the final transfer coding"),
        ("", "empty Transfer-Encoding"),
        (",", "empty Transfer-Encoding"),
        (" , ,", "empty Transfer-Encoding"),
        ("chunked;q=1", "invalid Transfer-Encoding"),
        ("gzip chunked", "invalid Transfer-Encoding"),
        ("\"chunked\"", "invalid Transfer-Encoding"),
        ("gzip;q=\"a,chunked\"", "invalid Transfer-Encoding"),
        ("chunked\x0c", "?"),
    ];
    for (v, reason) in cases {
        let buf = get_with(&format!("Transfer-Encoding: {v}\r\n"));
        let e = req_err(&buf);
        assert_eq!(e.status(), 400, "{v:?}: {e:?}");
        if reason != "?" {
            assert_eq!(e, ParseError::BadRequest(reason), "{v:?}");
        }
    }
    let e = req_err(&get_with(
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ));
    assert_eq!(e, ParseError::BadRequest("chunked applied more than once"));
    let e = req_err(&get_with(
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
    ));
    assert_eq!(
        e,
        ParseError::BadRequest("chunked is not the final transfer coding")
    );
}

#[test]
fn both_content_length_and_transfer_encoding() {
    for fields in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n",
        "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    ] {
        assert_eq!(
            bad(&get_with(fields)),
            "both Content-Length and Transfer-Encoding",
            "{fields:?}"
        );
    }
}

#[test]
fn transfer_encoding_in_http10() {
    let buf = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(bad(buf), "Transfer-Encoding in HTTP/1.0");
    let buf = b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(bad(buf), "Transfer-Encoding in HTTP/1.0");
}

// ------------------------------------------------- connection management

#[test]
fn close_and_keep_alive() {
    let cases: [(&[u8], bool); 8] = [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", false),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            true,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
            true,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false),
        (
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nConnection: close\r\n\r\n",
            true,
        ),
        (b"GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n", true),
    ];
    for (buf, close) in cases {
        assert_eq!(
            req_ok(buf).close,
            close,
            "{:?}",
            String::from_utf8_lossy(buf)
        );
    }
}

#[test]
fn connection_option_syntax() {
    assert_eq!(bad(&get_with("Connection: a/b\r\n")), "invalid Connection");
    assert_eq!(
        bad(&get_with("Connection: close keep-alive\r\n")),
        "invalid Connection"
    );
    let many: Vec<String> = (0..33).map(|i| format!("x{i}")).collect();
    assert_eq!(
        bad(&get_with(&format!("Connection: {}\r\n", many.join(",")))),
        "too many Connection options"
    );
    let h = req_ok(&get_with(&format!(
        "Connection: {}\r\n",
        many[..32].join(",")
    )));
    assert!(!h.close);
    // Empty list elements are allowed.
    assert!(req_ok(&get_with("Connection: , close,\r\n")).close);
}

#[test]
fn expect_continue() {
    assert!(req_ok(&get_with("Expect: 100-continue\r\nContent-Length: 1\r\n")).expect_continue);
    assert!(req_ok(&get_with("expect: 100-Continue\r\n")).expect_continue);
    // Unknown expectations are ignored, not rejected.
    assert!(!req_ok(&get_with("Expect: something-else\r\n")).expect_continue);
    // RFC 9110 §10.1.1: ignored in HTTP/1.0.
    assert!(
        !req_ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
}

#[test]
fn upgrade_flag() {
    let h = req_ok(&get_with("Connection: Upgrade\r\nUpgrade: websocket\r\n"));
    assert!(h.upgrade);
    assert!(h.headers[1].hop_by_hop && h.headers[2].hop_by_hop);
    assert!(!req_ok(&get_with("")).upgrade);
}

// ------------------------------------------------------------ hop-by-hop

#[test]
fn static_hop_by_hop_fields() {
    let buf = get_with(
        "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
         Transfer-Encoding: chunked\r\nUpgrade: h2c\r\nProxy-Authorization: Basic eA==\r\n\
         Proxy-Authenticate: Basic\r\nX-Keep: 1\r\n",
    );
    let h = req_ok(&buf);
    let marked: Vec<bool> = h.headers.iter().map(|f| f.hop_by_hop).collect();
    assert_eq!(
        marked,
        [false, true, true, true, true, true, true, true, true, false]
    );
}

#[test]
fn connection_nominations() {
    let buf =
        get_with("Connection: X-Secret, x-other\r\nX-Secret: 1\r\nX-Other: 2\r\nX-Keep: 3\r\n");
    let h = req_ok(&buf);
    let marked: Vec<(&[u8], bool)> = h
        .headers
        .iter()
        .map(|f| (f.name.get(&buf), f.hop_by_hop))
        .collect();
    assert_eq!(
        marked,
        [
            (&b"Host"[..], false),
            (b"Connection", true),
            (b"X-Secret", true),
            (b"X-Other", true),
            (b"X-Keep", false)
        ]
    );
    // Nominations span several Connection fields.
    let buf = get_with("X-A: 1\r\nConnection: close\r\nConnection: x-a\r\n");
    let h = req_ok(&buf);
    assert!(h.headers[1].hop_by_hop && h.close);
}

#[test]
fn nominations_never_touch_host_or_content_length() {
    let buf = get_with("Connection: content-length, host, Host\r\nContent-Length: 3\r\n");
    let h = req_ok(&buf);
    assert_eq!(h.framing, BodyFraming::ContentLength(3));
    assert!(!h.headers[0].hop_by_hop, "Host");
    assert!(!h.headers[2].hop_by_hop, "Content-Length");
    assert_eq!(h.authority.get(&buf), b"example.com");
}

#[test]
fn xff_and_request_id_indices() {
    let buf = get_with("X-Forwarded-For: 1.1.1.1\r\nX-Request-Id: abc\r\n");
    let h = req_ok(&buf);
    assert_eq!(h.xff, Some(1));
    assert_eq!(h.request_id, Some(2));
    // Nominated by Connection: not forwardable, so not reported.
    let buf = get_with("Connection: x-forwarded-for, X-Request-ID\r\nX-Forwarded-For: 1.1.1.1\r\nX-Request-Id: abc\r\n");
    let h = req_ok(&buf);
    assert_eq!(h.xff, None);
    assert_eq!(h.request_id, None);
    assert!(h.headers[2].hop_by_hop && h.headers[3].hop_by_hop);
}

#[test]
fn error_status_mapping() {
    assert_eq!(ParseError::BadRequest("x").status(), 400);
    assert_eq!(ParseError::NotImplemented("x").status(), 501);
    assert_eq!(ParseError::VersionNotSupported.status(), 505);
    assert_eq!(
        ParseError::BadRequest("bare LF in head").reason(),
        "bare LF in head"
    );
    assert_eq!(ParseError::UriTooLong.to_string(), "URI too long");
}

#[test]
fn smuggling_classics() {
    // CL.TE / TE.CL and their obfuscations never parse into a forwardable
    // head with a framing other than the one a strict next hop would see.
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\nTransfer-encoding: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4 \r\n\r\n12345",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent_Length: 4\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nX: y\r\nTransfer-Encoding: \x0bchunked\r\n\r\n",
    ];
    let mut head = RequestHead::default();
    for (i, buf) in cases.iter().enumerate() {
        match parse_request(buf, &Limits::default(), &mut head) {
            Err(_) => {}
            // `Content-Length: 4 ` is trimmed OWS: legitimately CL 4.
            Ok(ParseStatus::Complete(_)) if i == 6 => {
                assert_eq!(head.framing, BodyFraming::ContentLength(4))
            }
            other => panic!("case {i}: {other:?}"),
        }
    }
}

// ------------------------------------------ regressions found by fuzzing

/// fuzz/regressions/http1_request/connect-host-mismatch: a CONNECT whose
/// Host named another port was accepted, so the proxy would tunnel to one
/// authority while the forwarded head named another.
#[test]
fn regression_connect_host_mismatch() {
    let buf = include_bytes!("../../../../fuzz/regressions/http1_request/connect-host-mismatch");
    assert_eq!(bad(buf), "Host does not match the request-target authority");
    assert_eq!(
        req_ok(b"CONNECT db.internal:5431 HTTP/1.1\r\nHost: DB.internal:5431\r\n\r\n").method,
        Method::Connect
    );
    assert_eq!(
        req_ok(b"CONNECT db.internal:5431 HTTP/1.1\r\nHost: db.internal\r\n\r\n").method,
        Method::Connect
    );
    assert_eq!(
        req_ok(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]\r\n\r\n").method,
        Method::Connect
    );
    assert_eq!(
        status(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::2]\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"CONNECT a:443 HTTP/1.1\r\nHost: b:443\r\n\r\n"),
        400
    );
}
