//! `SpiffeId::parse` (strict: certificates, CSRs, the wire) and
//! `SpiffeId::parse_normalized` (operator input) on arbitrary strings.
//!
//! Checks: never panics; acceptance agrees with an independent reading of
//! the rules (`spiffe://TD/ns/NS/sa/SA`, trust domain `[a-z0-9._-]{1,255}`,
//! segments `[a-zA-Z0-9._-]+` other than `.`/`..`, at most 2048 bytes); an
//! accepted ID formats back to exactly the input, re-parses equal, is the
//! same value as `SpiffeId::new` of its parts and `FromStr`; the normalized
//! parse agrees with the strict one on strict input and otherwise differs
//! from the input only by ASCII case in the scheme and trust domain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmesh_tls::SpiffeId;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    check(s);
});

fn check(s: &str) {
    let strict = SpiffeId::parse(s);
    assert_eq!(
        strict.is_ok(),
        reference_accepts(s),
        "parse({s:?}) = {strict:?} disagrees with the reference"
    );
    match &strict {
        Ok(id) => {
            let text = id.to_string();
            assert_eq!(text, s, "an accepted ID must format back to its input");
            assert_eq!(SpiffeId::parse(&text).as_ref(), Ok(id));
            assert_eq!(s.parse::<SpiffeId>().as_ref(), Ok(id));
            let rebuilt = SpiffeId::new(id.trust_domain(), id.namespace(), id.service_account());
            assert_eq!(rebuilt.as_ref(), Ok(id));
            assert_eq!(
                Some(id.principal().as_str()),
                s.strip_prefix("spiffe://"),
                "the principal is the ID without its scheme"
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    let normalized = SpiffeId::parse_normalized(s);
    if let Ok(id) = &strict {
        assert_eq!(
            normalized.as_ref(),
            Ok(id),
            "normalizing a strict ID changes nothing"
        );
    }
    match &normalized {
        Ok(id) => {
            let text = id.to_string();
            assert_eq!(SpiffeId::parse(&text).as_ref(), Ok(id));
            // Only the scheme and the trust domain may have been lowercased.
            assert_eq!(text.len(), s.len());
            let host_end = "spiffe://".len() + id.trust_domain().len();
            assert!(text[..host_end].eq_ignore_ascii_case(&s[..host_end]));
            assert_eq!(text[host_end..], s[host_end..], "the path is never changed");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The accepted language, written out without the crate's code.
fn reference_accepts(s: &str) -> bool {
    if s.len() > 2048 {
        return false;
    }
    let Some(rest) = s.strip_prefix("spiffe://") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let [td, "ns", ns, "sa", sa] = parts.as_slice() else {
        return false;
    };
    let td_ok = !td.is_empty()
        && td.len() <= 255
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let segment_ok = |seg: &str| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    td_ok && segment_ok(ns) && segment_ok(sa)
}
