//! Request-target forms (RFC 9112 §3.2).

use crate::{
    head::{Method, ParseError, Span},
    syntax::is_valid_authority,
};

/// The parts of a request-target, as spans into the head's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TargetParts {
    pub path: Span,
    pub query: Span,
    /// Authority carried by the target itself (absolute-form, authority-form).
    pub authority: Option<Span>,
    /// `https` scheme in absolute-form (for default-port comparison).
    pub https: bool,
}

/// Bytes allowed in a path or query as forwarded: visible ASCII except `#`.
/// `httparse` already limits the target to VCHAR and obs-text; obs-text (a
/// non-ASCII target) and a fragment are rejected here. The other characters
/// RFC 3986 does not allow unescaped (`"<>\^`{|}`) are accepted, as every
/// mainstream server does, because they cannot change where the request
/// line ends.
#[inline]
fn is_target_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'#'
}

#[inline]
fn sp(start: usize, end: usize) -> Span {
    Span {
        start: start as u32,
        end: end as u32,
    }
}

/// Split `buf[off..off+len]` (path and query, after any authority) at `?`.
fn split_path_query(buf: &[u8], start: usize, end: usize) -> Result<(Span, Span), ParseError> {
    let bytes = &buf[start..end];
    if !bytes.iter().all(|&b| is_target_byte(b)) {
        return Err(ParseError::BadRequest("invalid request-target"));
    }
    Ok(match memchr::memchr(b'?', bytes) {
        Some(q) => (sp(start, start + q), sp(start + q + 1, end)),
        None => (sp(start, end), sp(end, end)),
    })
}

/// Classify and split the request-target `target` of a request with
/// `method`. CONNECT takes authority-form only; `*` only with OPTIONS;
/// absolute-form only with an `http`/`https` scheme, a non-empty authority
/// and no userinfo.
pub(crate) fn parse_target(
    buf: &[u8],
    target: Span,
    method: Method,
) -> Result<TargetParts, ParseError> {
    let (ts, te) = (target.start as usize, target.end as usize);
    let t = &buf[ts..te];
    if method == Method::Connect {
        if !is_valid_authority(t, true) {
            return Err(ParseError::BadRequest(
                "CONNECT requires an authority-form target",
            ));
        }
        let end = sp(te, te);
        return Ok(TargetParts {
            path: end,
            query: end,
            authority: Some(target),
            https: false,
        });
    }
    match t.first() {
        Some(b'/') => {
            let (path, query) = split_path_query(buf, ts, te)?;
            Ok(TargetParts {
                path,
                query,
                authority: None,
                https: false,
            })
        }
        Some(b'*') if t.len() == 1 => {
            if method != Method::Options {
                return Err(ParseError::BadRequest(
                    "asterisk-form is only allowed with OPTIONS",
                ));
            }
            Ok(TargetParts {
                path: target,
                query: sp(te, te),
                authority: None,
                https: false,
            })
        }
        _ => parse_absolute(buf, ts, te),
    }
}

fn parse_absolute(buf: &[u8], ts: usize, te: usize) -> Result<TargetParts, ParseError> {
    let t = &buf[ts..te];
    let (scheme_len, https) = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        (4, false)
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        (5, true)
    } else {
        return Err(ParseError::BadRequest("invalid request-target"));
    };
    let auth_start = ts + scheme_len + 3;
    let rest = &buf[auth_start..te];
    let auth_len = memchr::memchr2(b'/', b'?', rest).unwrap_or(rest.len());
    let auth_end = auth_start + auth_len;
    let authority = &buf[auth_start..auth_end];
    if memchr::memchr(b'@', authority).is_some() {
        return Err(ParseError::BadRequest("userinfo in request-target"));
    }
    if authority.is_empty() || !is_valid_authority(authority, false) {
        return Err(ParseError::BadRequest(
            "invalid authority in request-target",
        ));
    }
    let (mut path, query) = split_path_query(buf, auth_end, te)?;
    if path.is_empty() {
        // An empty path means "/" (RFC 9110 §4.2.1). Point the span at the
        // second slash of "://" so `path.get(buf)` still reads "/" without
        // the head owning any bytes of its own.
        let slash = ts + scheme_len + 2;
        path = sp(slash, slash + 1);
    }
    Ok(TargetParts {
        path,
        query,
        authority: Some(sp(auth_start, auth_end)),
        https,
    })
}

/// Compare an absolute-form authority with the Host field value, ignoring
/// ASCII case and the scheme's default port (`host` == `host:80` for http).
pub(crate) fn same_authority(a: &[u8], b: &[u8], https: bool) -> bool {
    let default_port: &[u8] = if https { b":443" } else { b":80" };
    let strip = |s: &'_ [u8]| -> usize {
        if s.len() > default_port.len() && s.ends_with(default_port) {
            s.len() - default_port.len()
        } else if s.ends_with(b":") {
            s.len() - 1
        } else {
            s.len()
        }
    };
    let (a, b) = (&a[..strip(a)], &b[..strip(b)]);
    a.eq_ignore_ascii_case(b)
}

/// Split `host[:port]` (host possibly an IP-literal) at the port's colon.
fn split_port(a: &[u8]) -> (&[u8], Option<&[u8]>) {
    let host_end = if a.first() == Some(&b'[') {
        memchr::memchr(b']', a).map_or(a.len(), |i| i + 1)
    } else {
        0
    };
    match memchr::memchr(b':', &a[host_end..]) {
        Some(i) => (&a[..host_end + i], Some(&a[host_end + i + 1..])),
        None => (a, None),
    }
}

/// CONNECT's authority-form target against the Host field: equal ignoring
/// ASCII case, or Host naming the same host without a port.
pub(crate) fn connect_host_matches(target: &[u8], host: &[u8]) -> bool {
    if target.eq_ignore_ascii_case(host) {
        return true;
    }
    let (target_host, _) = split_port(target);
    matches!(split_port(host), (h, None) if h.eq_ignore_ascii_case(target_host))
}
