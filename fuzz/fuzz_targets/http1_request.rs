//! `parse_request` on arbitrary bytes, with the default limits and with small
//! ones. A head that parses must satisfy the codec's invariants, must be the
//! same head when the bytes after it change, and must survive a round trip:
//! `write_upstream_request` output re-parses as a valid request with the same
//! method, path, query, framing and authority.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use ringmesh_http1::{
    parse_request, write_upstream_request, BodyFraming, ForwardInfo, Limits, Method, ParseStatus,
    RequestHead, Version,
};

const SMALL: Limits = Limits {
    max_head_bytes: 256,
    max_headers: 8,
    max_uri_len: 64,
};

fuzz_target!(|data: &[u8]| {
    check(data, &Limits::default());
    check(data, &SMALL);
});

fn check(data: &[u8], limits: &Limits) {
    let mut head = RequestHead::default();
    let n = match parse_request(data, limits, &mut head) {
        Ok(ParseStatus::Partial) => {
            assert!(
                data.len() < limits.max_head_bytes,
                "Partial past the head limit"
            );
            return;
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 414 | 431 | 501 | 505));
            assert!(!e.reason().is_empty());
            return;
        }
        Ok(ParseStatus::Complete(n)) => n,
    };
    assert!(n <= data.len() && n <= limits.max_head_bytes);
    assert_eq!(n, head.head_len);
    let h = &data[..n];
    assert!(h.ends_with(b"\r\n\r\n"));
    for (i, &b) in h.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && h[i - 1] == b'\r', "bare LF accepted at {i}");
        }
    }
    for s in [
        head.method_span,
        head.target,
        head.path,
        head.query,
        head.authority,
    ] {
        assert!(s.start <= s.end && s.end as usize <= n);
    }
    assert!(head.target.get(data).len() <= limits.max_uri_len);
    assert!(head.headers.len() <= limits.max_headers);
    assert!(head.method_span.get(data).iter().all(|&b| is_tchar(b)));
    let mut hosts = 0;
    let mut cls = 0;
    let mut tes = 0;
    for f in &head.headers {
        let name = f.name.get(data);
        let value = f.value.get(data);
        let line = f.line.get(data);
        assert!(!name.is_empty() && name.iter().all(|&b| is_tchar(b)));
        assert!(
            value
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80),
            "CTL in value"
        );
        assert!(line.starts_with(name) && line.ends_with(b"\r\n") && line[name.len()] == b':');
        assert!(f.value.start >= f.name.end && f.value.end <= f.line.end);
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            cls += 1;
            assert!(!f.hop_by_hop);
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            tes += 1;
            assert!(f.hop_by_hop);
        }
    }
    assert!(hosts <= 1);
    if head.version == Version::Http11 {
        assert_eq!(hosts, 1);
    }
    match head.framing {
        BodyFraming::Chunked => assert!(cls == 0 && tes > 0 && head.version == Version::Http11),
        BodyFraming::ContentLength(_) => assert!(cls == 1 && tes == 0),
        BodyFraming::None => assert!(tes == 0),
        BodyFraming::UntilClose => panic!("UntilClose for a request"),
    }

    // The head does not depend on what follows it, and is incomplete without
    // its last byte.
    let mut again = RequestHead::default();
    assert_eq!(
        parse_request(h, limits, &mut again),
        Ok(ParseStatus::Complete(n))
    );
    assert_eq!(again.headers, head.headers);
    assert_eq!(again.framing, head.framing);
    assert_eq!(
        parse_request(&h[..n - 1], limits, &mut again),
        Ok(ParseStatus::Partial)
    );

    roundtrip(data, &head);
}

fn roundtrip(data: &[u8], head: &RequestHead) {
    let selector = data.len();
    let ip = if selector.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
    } else {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7))
    };
    let info = ForwardInfo {
        client_ip: ip,
        proto: if selector.is_multiple_of(3) {
            "https"
        } else {
            "http"
        },
        request_id: if selector.is_multiple_of(5) {
            Some(b"0123-abcd")
        } else {
            None
        },
        strip_expect: selector.is_multiple_of(7),
        extra_headers: &[("x-ringmesh-fuzz", b"1")],
    };
    let mut out = Vec::new();
    write_upstream_request(data, head, &info, &mut out);

    let roomy = Limits {
        max_head_bytes: out.len() + 1,
        max_headers: head.headers.len() + 8,
        max_uri_len: usize::MAX,
    };
    let mut re = RequestHead::default();
    match parse_request(&out, &roomy, &mut re) {
        Ok(ParseStatus::Complete(n)) => assert_eq!(n, out.len()),
        other => panic!(
            "rewritten request does not re-parse: {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    }
    assert_eq!(re.method, head.method);
    assert_eq!(re.method_span.get(&out), head.method_span.get(data));
    assert_eq!(re.path.get(&out), head.path.get(data));
    assert_eq!(re.query.get(&out), head.query.get(data));
    assert_eq!(re.framing, head.framing);
    assert_eq!(re.version, Version::Http11);
    assert!(!re.close, "no connection field is forwarded");
    assert!(!re.upgrade, "Upgrade is hop-by-hop");
    // Only the proxy's own `transfer-encoding` may be hop-by-hop.
    let te_written = head.framing == BodyFraming::Chunked;
    for f in &re.headers {
        let own_te = te_written && f.name.get(&out) == b"transfer-encoding";
        assert!(!f.hop_by_hop || own_te, "forwarded a hop-by-hop field");
    }
    // CONNECT's target is forwarded verbatim and stays the authority; an
    // absolute-form target becomes origin-form, so the forwarded Host (or
    // the one the writer adds) becomes the authority.
    let host = head
        .headers
        .iter()
        .find(|f| f.name.get(data).eq_ignore_ascii_case(b"host"));
    match host {
        Some(host) if head.method != Method::Connect => {
            assert_eq!(re.authority.get(&out), host.value.get(data))
        }
        _ => assert_eq!(re.authority.get(&out), head.authority.get(data)),
    }
    if !info.strip_expect {
        assert_eq!(re.expect_continue, head.expect_continue);
    }
    let xff = re
        .xff
        .map(|i| re.headers[usize::from(i)].value.get(&out))
        .expect("x-forwarded-for");
    let ip_text = ip.to_string();
    assert!(xff.ends_with(ip_text.as_bytes()));
    let xffs = re
        .headers
        .iter()
        .filter(|f| f.name.get(&out).eq_ignore_ascii_case(b"x-forwarded-for"))
        .count();
    assert_eq!(xffs, 1);
    let is_id = |f: &&ringmesh_http1::HeaderPos, buf: &[u8]| {
        f.name.get(buf).eq_ignore_ascii_case(b"x-request-id")
    };
    let ids = re.headers.iter().filter(|f| is_id(f, &out)).count();
    if info.request_id.is_some() {
        assert_eq!(ids, 1, "request id replaced, not duplicated");
    } else {
        let sent = head
            .headers
            .iter()
            .filter(|f| !f.hop_by_hop && is_id(f, data))
            .count();
        assert_eq!(ids, sent);
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
