//! `parse_response` on arbitrary bytes. The first byte picks the request
//! method the response answers (`H` HEAD, `C` CONNECT, `P` POST, anything
//! else GET); the rest is the response. A parsed head must satisfy the
//! codec's invariants and `write_downstream_response` output must re-parse
//! with the same status and framing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmesh_http1::{
    parse_response, write_downstream_response, BodyFraming, Limits, Method, ParseStatus,
    ResponseHead,
};

const SMALL: Limits = Limits {
    max_head_bytes: 256,
    max_headers: 8,
    max_uri_len: 64,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let method = match selector {
        b'H' => Method::Head,
        b'C' => Method::Connect,
        b'P' => Method::Post,
        _ => Method::Get,
    };
    check(input, &Limits::default(), method);
    check(input, &SMALL, method);
});

fn check(data: &[u8], limits: &Limits, method: Method) {
    let mut head = ResponseHead::default();
    let n = match parse_response(data, limits, method, &mut head) {
        Ok(ParseStatus::Partial) => {
            assert!(data.len() < limits.max_head_bytes);
            return;
        }
        Err(e) => {
            assert!(!e.reason().is_empty());
            return;
        }
        Ok(ParseStatus::Complete(n)) => n,
    };
    assert!(n <= data.len() && n <= limits.max_head_bytes && n == head.head_len);
    let h = &data[..n];
    assert!(h.ends_with(b"\r\n\r\n"));
    for (i, &b) in h.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && h[i - 1] == b'\r', "bare LF accepted at {i}");
        }
    }
    assert!((100..=999).contains(&head.status));
    assert!(head.headers.len() <= limits.max_headers);
    for f in &head.headers {
        let value = f.value.get(data);
        assert!(
            value
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80),
            "CTL in value"
        );
        assert!(f.line.get(data).ends_with(b"\r\n"));
    }
    let bodiless = head.status < 200
        || head.status == 204
        || head.status == 304
        || method == Method::Head
        || (method == Method::Connect && (200..300).contains(&head.status));
    if bodiless {
        assert_eq!(head.framing, BodyFraming::None);
    }
    if head.framing == BodyFraming::UntilClose {
        assert!(head.close);
    }

    let mut again = ResponseHead::default();
    assert_eq!(
        parse_response(h, limits, method, &mut again),
        Ok(ParseStatus::Complete(n))
    );
    assert_eq!(again.headers, head.headers);
    assert_eq!(
        parse_response(&h[..n - 1], limits, method, &mut again),
        Ok(ParseStatus::Partial)
    );

    for close in [false, true] {
        let mut out = Vec::new();
        write_downstream_response(data, &head, close, &mut out);
        let roomy = Limits {
            max_head_bytes: out.len() + 1,
            max_headers: head.headers.len() + 4,
            ..Limits::default()
        };
        let mut re = ResponseHead::default();
        match parse_response(&out, &roomy, method, &mut re) {
            Ok(ParseStatus::Complete(m)) => assert_eq!(m, out.len()),
            other => panic!(
                "rewritten response does not re-parse: {other:?}\n{}",
                String::from_utf8_lossy(&out)
            ),
        }
        assert_eq!(re.status, head.status);
        assert_eq!(re.framing, head.framing);
        assert_eq!(re.close, close || head.framing == BodyFraming::UntilClose);
        assert!(re.headers.iter().all(|f| !f.hop_by_hop
            || f.name.get(&out).eq_ignore_ascii_case(b"transfer-encoding")
            || f.name.get(&out).eq_ignore_ascii_case(b"connection")));
    }
}
