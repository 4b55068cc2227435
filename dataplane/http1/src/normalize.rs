//! Request path normalization before routing and authorization (Envoy's
//! HCM `normalize_path`, `merge_slashes` and
//! `path_with_escaped_slashes_action`).
//!
//! Rules match the path the proxy *forwards*, so every spelling of a path
//! that an upstream would take for the same resource must normalize to the
//! same bytes, or a rule can be bypassed (Istio's path-normalization CVEs).
//! With `normalize` on, in this order:
//! 1. escaped slashes (`%2F`, `%5C`, any hex case) are handled by the
//!    configured [`EscapedSlashes`] action (kept, rejected, or decoded);
//! 2. percent-encoded unreserved characters (`ALPHA DIGIT - . _ ~`) are
//!    decoded (`%2e` → `.`, `%41` → `A`); other escapes are kept with
//!    upper-case hex; a `%` not followed by two hex digits is rejected;
//! 3. backslashes become slashes (as browsers and Envoy's URL
//!    canonicalizer treat them);
//! 4. with `merge_slashes`, runs of `/` become one;
//! 5. `.` and `..` segments are resolved (RFC 3986 §5.2.4); `..` never
//!    climbs above the root.
//!
//! Fragments never get here (the codec rejects `#` in a request-target)
//! and the query is not touched. Only origin-form paths (starting with
//! `/`) are normalized; `*` is left alone.
//!
//! Nothing is allocated when the path is already normal (the common case):
//! one scan decides, and only a path that needs work is rewritten into the
//! caller's reusable buffer.

/// What to do with `%2F` / `%5C` in a path (Envoy's
/// `path_with_escaped_slashes_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// Forward them as they are (hex upper-cased); rules see `%2F`.
    Keep,
    /// Answer 400: the safest choice and this proxy's default.
    #[default]
    Reject,
    /// Decode them into `/` and `\` (then normalized), and forward that.
    UnescapeAndForward,
    /// Decode them and redirect the client (307) to the result.
    UnescapeAndRedirect,
}

impl EscapedSlashes {
    pub fn as_str(self) -> &'static str {
        match self {
            EscapedSlashes::Keep => "keep",
            EscapedSlashes::Reject => "reject",
            EscapedSlashes::UnescapeAndForward => "unescape_and_forward",
            EscapedSlashes::UnescapeAndRedirect => "unescape_and_redirect",
        }
    }
}

/// How a listener normalizes request paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathNormalization {
    /// Decode unreserved escapes, backslashes to slashes, resolve dot
    /// segments (Envoy's `normalize_path`).
    pub normalize: bool,
    /// Merge runs of slashes (Envoy's `merge_slashes`).
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

impl PathNormalization {
    /// The default: Istio's `MERGE_SLASHES` (normalize + merge slashes),
    /// and escaped slashes rejected.
    pub const SAFE: PathNormalization = PathNormalization {
        normalize: true,
        merge_slashes: true,
        escaped_slashes: EscapedSlashes::Reject,
    };
    /// Nothing changed (paths forwarded and matched as sent).
    pub const OFF: PathNormalization = PathNormalization {
        normalize: false,
        merge_slashes: false,
        escaped_slashes: EscapedSlashes::Keep,
    };
}

impl Default for PathNormalization {
    fn default() -> Self {
        PathNormalization::SAFE
    }
}

/// The outcome of [`normalize_path`] for a path that is not rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalized {
    /// Already normal: use the path as received.
    Unchanged,
    /// The normal form is in the output buffer: match and forward it.
    Rewritten,
    /// [`EscapedSlashes::UnescapeAndRedirect`] decoded an escaped slash:
    /// redirect the client to the path in the output buffer.
    Redirect,
}

/// Why a path was rejected (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` or `%5C` with [`EscapedSlashes::Reject`].
    EscapedSlash,
}

impl PathError {
    pub fn reason(self) -> &'static str {
        match self {
            PathError::BadEscape => "invalid percent-encoding in path",
            PathError::EscapedSlash => "escaped slash (%2F or %5C) in path",
        }
    }
}

#[inline]
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[inline]
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `path` may need rewriting under `opts` (false: it is already
/// normal). Conservative: true may still end in [`Normalized::Unchanged`].
fn needs_work(path: &[u8], opts: &PathNormalization) -> bool {
    let mut prev = 0u8;
    let n = path.len();
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'%' => return true,
            b'\\' if opts.normalize => return true,
            b'/' if opts.merge_slashes && prev == b'/' => return true,
            b'.' if opts.normalize && prev == b'/' => {
                // "/." or "/.." as a whole segment.
                let next = path.get(i + 1).copied();
                let dot_dot = next == Some(b'.');
                let after = if dot_dot { i + 2 } else { i + 1 };
                if after == n || path[after] == b'/' {
                    return true;
                }
            }
            _ => {}
        }
        prev = b;
    }
    false
}

/// Normalize `path` (without query) under `opts`. On
/// [`Normalized::Rewritten`] / [`Normalized::Redirect`], `out` (cleared
/// first) holds the new path.
pub fn normalize_path(
    path: &[u8],
    opts: &PathNormalization,
    out: &mut Vec<u8>,
) -> Result<Normalized, PathError> {
    if path.first() != Some(&b'/') || !needs_work(path, opts) {
        return Ok(Normalized::Unchanged);
    }
    out.clear();
    out.reserve(path.len());
    let mut decoded_slash = false;
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                path.get(i + 1).copied().and_then(hex),
                path.get(i + 2).copied().and_then(hex),
            ) else {
                if opts.normalize {
                    return Err(PathError::BadEscape);
                }
                out.push(b);
                i += 1;
                continue;
            };
            let v = hi << 4 | lo;
            if v == b'/' || v == b'\\' {
                match opts.escaped_slashes {
                    EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                    EscapedSlashes::Keep => push_escape(out, v),
                    EscapedSlashes::UnescapeAndForward | EscapedSlashes::UnescapeAndRedirect => {
                        decoded_slash = true;
                        out.push(if opts.normalize { b'/' } else { v });
                    }
                }
            } else if opts.normalize && is_unreserved(v) {
                out.push(v);
            } else if opts.normalize {
                push_escape(out, v);
            } else {
                out.extend_from_slice(&path[i..i + 3]);
            }
            i += 3;
            continue;
        }
        out.push(if b == b'\\' && opts.normalize {
            b'/'
        } else {
            b
        });
        i += 1;
    }
    if opts.merge_slashes {
        merge_slashes(out);
    }
    if opts.normalize {
        remove_dot_segments(out);
    }
    if decoded_slash && opts.escaped_slashes == EscapedSlashes::UnescapeAndRedirect {
        return Ok(Normalized::Redirect);
    }
    Ok(if out[..] == *path {
        Normalized::Unchanged
    } else {
        Normalized::Rewritten
    })
}

fn push_escape(out: &mut Vec<u8>, v: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(v >> 4)], HEX[usize::from(v & 15)]]);
}

fn merge_slashes(buf: &mut Vec<u8>) {
    let mut w = 0;
    for r in 0..buf.len() {
        let b = buf[r];
        if b == b'/' && w > 0 && buf[w - 1] == b'/' {
            continue;
        }
        buf[w] = b;
        w += 1;
    }
    buf.truncate(w);
}

/// RFC 3986 §5.2.4 on an absolute path, in place. Empty segments are kept
/// (merging is a separate option).
fn remove_dot_segments(buf: &mut Vec<u8>) {
    let n = buf.len();
    let mut w = 0; // buf[..w] is the output
    let mut r = 0; // buf[r] == b'/' at the top of the loop
    while r < n {
        let start = r + 1;
        let end = memchr::memchr(b'/', &buf[start..]).map_or(n, |k| start + k);
        let last = end == n;
        match &buf[start..end] {
            b"." => {
                if last {
                    put(buf, &mut w, b'/');
                }
            }
            b".." => {
                w = buf[..w].iter().rposition(|&b| b == b'/').unwrap_or(0);
                if last {
                    put(buf, &mut w, b'/');
                }
            }
            _ => {
                buf.copy_within(r..end, w);
                w += end - r;
            }
        }
        r = end;
    }
    if w == 0 {
        put(buf, &mut w, b'/');
    }
    buf.truncate(w);
}

fn put(buf: &mut Vec<u8>, w: &mut usize, b: u8) {
    if *w < buf.len() {
        buf[*w] = b;
    } else {
        buf.push(b);
    }
    *w += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str, opts: PathNormalization) -> Result<String, PathError> {
        let mut out = Vec::new();
        Ok(match normalize_path(p.as_bytes(), &opts, &mut out)? {
            Normalized::Unchanged => p.to_owned(),
            Normalized::Rewritten => String::from_utf8(out).unwrap(),
            Normalized::Redirect => format!("redirect:{}", String::from_utf8(out).unwrap()),
        })
    }

    #[test]
    fn every_spelling_of_a_path_becomes_one() {
        let safe = |p| norm(p, PathNormalization::SAFE).unwrap();
        for spelling in [
            "/api/v1/charge",
            "//api/v1/charge",
            "/api//v1///charge",
            "/api/v1/./charge",
            "/./api/v1/charge",
            "/api/v2/../v1/charge",
            "/api/v1/x/../charge",
            "/../api/v1/charge",
            "/../../api/v1/charge",
            "/api/v1/%2e/charge",
            "/api/v2/%2E%2E/v1/charge",
            "/api/v2/.%2e/v1/charge",
            "/%61pi/v1/ch%61rge",
            "/api\\v1\\charge",
            "/api/v1\\..\\v1/charge",
        ] {
            assert_eq!(safe(spelling), "/api/v1/charge", "{spelling}");
        }
        assert_eq!(safe("/api/v1/charge/."), "/api/v1/charge/");
        assert_eq!(safe("/a/b/.."), "/a/");
        assert_eq!(safe("/.."), "/");
        assert_eq!(safe("/"), "/");
        assert_eq!(safe("/a/.b/..c/...d"), "/a/.b/..c/...d");
        assert_eq!(safe("/a;x=1/./b"), "/a;x=1/b");
        // Reserved and other escapes stay escaped, hex upper-cased.
        assert_eq!(safe("/a%3fb%2a%20"), "/a%3Fb%2A%20");
        assert_eq!(safe("*"), "*");
    }

    #[test]
    fn escaped_slashes_follow_the_action() {
        let with = |a| PathNormalization {
            escaped_slashes: a,
            ..PathNormalization::SAFE
        };
        assert_eq!(
            norm("/api%2Fv1/charge", PathNormalization::SAFE),
            Err(PathError::EscapedSlash)
        );
        assert_eq!(
            norm("/api%5cv1/charge", PathNormalization::SAFE),
            Err(PathError::EscapedSlash)
        );
        assert_eq!(
            norm("/api%2fv1/charge", with(EscapedSlashes::Keep)).unwrap(),
            "/api%2Fv1/charge"
        );
        assert_eq!(
            norm(
                "/api%2fv1%5C..%5Cv1/charge",
                with(EscapedSlashes::UnescapeAndForward)
            )
            .unwrap(),
            "/api/v1/charge"
        );
        assert_eq!(
            norm(
                "/api%2Fv1/charge",
                with(EscapedSlashes::UnescapeAndRedirect)
            )
            .unwrap(),
            "redirect:/api/v1/charge"
        );
        assert_eq!(
            norm("/a%zz", PathNormalization::SAFE),
            Err(PathError::BadEscape)
        );
        assert_eq!(
            norm("/a%4", PathNormalization::SAFE),
            Err(PathError::BadEscape)
        );
    }

    #[test]
    fn off_and_partial_options() {
        let off = PathNormalization::OFF;
        for p in ["//a/./b/../c", "/a%2Fb", "/a\\b", "/a%zz"] {
            assert_eq!(norm(p, off).unwrap(), p);
        }
        let merge_only = PathNormalization {
            merge_slashes: true,
            ..off
        };
        assert_eq!(norm("//a//./b", merge_only).unwrap(), "/a/./b");
        let base = PathNormalization {
            merge_slashes: false,
            ..PathNormalization::SAFE
        };
        assert_eq!(norm("//a/./b/../c", base).unwrap(), "//a/c");
    }

    #[test]
    fn normal_paths_take_the_fast_path() {
        for p in ["/", "/a/b.c/d", "/a/.well-known/x", "/a..b/c.", "/v1/x?y"] {
            assert!(!needs_work(p.as_bytes(), &PathNormalization::SAFE), "{p}");
        }
        for p in ["/a/.", "/a/..", "/./a", "//a", "/a%20", "/a\\b"] {
            assert!(needs_work(p.as_bytes(), &PathNormalization::SAFE), "{p}");
        }
    }
}
