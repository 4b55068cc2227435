//! Byte-level grammar shared by the head parser and the chunked scanner
//! (RFC 9110 §5.6): tokens, OWS, list elements, parameters, quoted strings.

/// `tchar` (RFC 9110 §5.6.2) as a lookup table.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

#[inline]
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

#[inline]
pub(crate) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `field-vchar` plus SP/HTAB: what may appear inside a field value
/// (VCHAR / obs-text / SP / HTAB; no CTL, no DEL).
#[inline]
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// `qdtext` (RFC 9110 §5.6.4).
#[inline]
pub(crate) fn is_qdtext(b: u8) -> bool {
    b == b'\t'
        || b == b' '
        || b == 0x21
        || (0x23..=0x5b).contains(&b)
        || (0x5d..=0x7e).contains(&b)
        || b >= 0x80
}

/// The byte after a backslash in a `quoted-pair`: HTAB / SP / VCHAR / obs-text.
#[inline]
pub(crate) fn is_quoted_pair_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Elements of a comma-separated list field value (RFC 9110 §5.6.1), each
/// trimmed of OWS. Empty elements are yielded too (callers skip them, as
/// the list syntax requires). Commas inside quoted strings are not special:
/// every caller rejects elements with an unterminated quoted string, so a
/// quoted comma can only turn a value into an error, never into a
/// different valid value.
pub(crate) struct ListElements<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> ListElements<'a> {
    pub(crate) fn new(value: &'a [u8]) -> Self {
        ListElements { rest: Some(value) }
    }
}

impl<'a> Iterator for ListElements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr::memchr(b',', rest) {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(trim_ows(&rest[..i]))
            }
            None => {
                self.rest = None;
                Some(trim_ows(rest))
            }
        }
    }
}

/// Length of the token at the start of `s`.
#[inline]
pub(crate) fn token_len(s: &[u8]) -> usize {
    s.iter().position(|&b| !is_tchar(b)).unwrap_or(s.len())
}

#[inline]
fn skip_ows(s: &[u8]) -> &[u8] {
    let n = s.iter().position(|&b| !is_ows(b)).unwrap_or(s.len());
    &s[n..]
}

/// Length of the complete `quoted-string` at the start of `s` (which starts
/// with `"`), or `None` if it is malformed or unterminated.
pub(crate) fn quoted_string_len(s: &[u8]) -> Option<usize> {
    debug_assert_eq!(s.first(), Some(&b'"'));
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' => {
                if !is_quoted_pair_byte(*s.get(i + 1)?) {
                    return None;
                }
                i += 2;
            }
            b if is_qdtext(b) => i += 1,
            _ => return None,
        }
    }
    None
}

/// Whether `s` is exactly `*( OWS ";" OWS token BWS "=" BWS ( token /
/// quoted-string ) )` — the parameters after a transfer coding.
pub(crate) fn is_parameters(mut s: &[u8]) -> bool {
    loop {
        s = skip_ows(s);
        let Some((&b';', rest)) = s.split_first() else {
            return s.is_empty();
        };
        s = skip_ows(rest);
        let n = token_len(s);
        if n == 0 {
            return false;
        }
        s = skip_ows(&s[n..]);
        let Some((&b'=', rest)) = s.split_first() else {
            return false;
        };
        s = skip_ows(rest);
        let n = if s.first() == Some(&b'"') {
            quoted_string_len(s).unwrap_or(0)
        } else {
            token_len(s)
        };
        if n == 0 {
            return false;
        }
        s = &s[n..];
    }
}

#[inline]
pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict `1*DIGIT` into a u64 (no sign, no whitespace, no overflow).
pub(crate) fn parse_decimal_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// `uri-host [ ":" port ]` as allowed in `Host` and in the authority of a
/// request-target (RFC 9110 §7.2, RFC 3986 §3.2.2), without userinfo.
///
/// Stricter than RFC 3986 on purpose: a reg-name may only hold unreserved
/// characters and percent-encodings (no sub-delims such as `,` `;` `=`),
/// because the authority selects a route and downstream systems disagree on
/// how to read exotic host names. The port, when present, must be ≤ 65535.
pub(crate) fn is_valid_authority(a: &[u8], require_port: bool) -> bool {
    let (host_ok, rest) = if a.first() == Some(&b'[') {
        let Some(close) = memchr::memchr(b']', a) else {
            return false;
        };
        let inner = &a[1..close];
        let ok = !inner.is_empty()
            && inner.iter().all(|&b| {
                b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'-' | b'_' | b'~' | b'%')
            });
        (ok, &a[close + 1..])
    } else {
        let end = memchr::memchr(b':', a).unwrap_or(a.len());
        (is_reg_name(&a[..end]), &a[end..])
    };
    if !host_ok {
        return false;
    }
    match rest.split_first() {
        None => !require_port,
        Some((b':', port)) => {
            if port.is_empty() {
                return !require_port;
            }
            port.len() <= 5 && parse_decimal_u64(port).is_some_and(|p| p <= 65535)
        }
        Some(_) => false,
    }
}

fn is_reg_name(h: &[u8]) -> bool {
    if h.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < h.len() {
        let b = h[i];
        if b == b'%' {
            if i + 2 >= h.len() {
                return false;
            }
            if hex_val(h[i + 1]).is_none() || hex_val(h[i + 2]).is_none() {
                return false;
            }
            i += 3;
        } else if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            i += 1;
        } else {
            return false;
        }
    }
    true
}
