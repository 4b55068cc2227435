//! Request conditions beyond the path — Envoy's `HeaderMatcher`,
//! `QueryParameterMatcher` and `StringMatcher` — compiled once per table,
//! and the borrowed [`Request`] view they read.
//!
//! Semantics follow Envoy (`HeaderUtility::matchHeaders`,
//! `ConfigUtility::QueryParameterMatcher::matches`):
//! - Header names compare ASCII case-insensitively. `:method`,
//!   `:authority` (the Host), `:path` (path and query as sent) and
//!   `:scheme` read the request line / authority. Several lines of the
//!   same header are matched as one value, joined with `,`.
//! - A missing header matches only `present: false` (and, inverted,
//!   `present: true`); every other rule fails on a missing header, inverted
//!   or not, unless `treat_missing_as_empty` makes it the empty value.
//! - A query parameter is found by its raw (not percent-decoded) name, and
//!   its first value is matched raw. `present: P` holds when the
//!   parameter's presence is `P`; a value rule needs the parameter.
//! - Regexes must match the whole value (RE2 `FullMatch`), are compiled
//!   once and are bounded in size ([`REGEX_SIZE_LIMIT`]).
//!
//! Nothing here allocates while matching, except when the values of a
//! header sent on several lines, or a `:path` that has to be composed
//! (absolute-form with an implicit path), join into more than
//! [`JOIN_STACK`] bytes.

use regex_automata::meta;
use regex_syntax::hir::{Hir, Look};

/// Largest compiled form (Thompson NFA) of one regex, in bytes. Envoy
/// bounds RE2 program sizes the same way: a route table cannot carry a
/// regex that costs unbounded memory or matching time.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Joined multi-line header values up to this size stay on the stack.
pub const JOIN_STACK: usize = 512;

// ---- the request view ----------------------------------------------------------

/// The header lines of a request, in the order received. Implemented by
/// the proxy over its parsed head (offsets into the read buffer) so that
/// matching reads the bytes where they are.
pub trait HeaderSource {
    /// Number of header lines.
    fn header_count(&self) -> usize;
    /// Name and value (surrounding whitespace trimmed) of line `i`
    /// (`i < header_count()`).
    fn header_at(&self, i: usize) -> (&[u8], &[u8]);
}

/// No headers at all.
pub struct NoHeaders;

impl HeaderSource for NoHeaders {
    fn header_count(&self) -> usize {
        0
    }
    fn header_at(&self, _: usize) -> (&[u8], &[u8]) {
        (b"", b"")
    }
}

impl<const N: usize> HeaderSource for [(&str, &str); N] {
    fn header_count(&self) -> usize {
        N
    }
    fn header_at(&self, i: usize) -> (&[u8], &[u8]) {
        (self[i].0.as_bytes(), self[i].1.as_bytes())
    }
}

impl HeaderSource for Vec<(&str, &str)> {
    fn header_count(&self) -> usize {
        self.len()
    }
    fn header_at(&self, i: usize) -> (&[u8], &[u8]) {
        (self[i].0.as_bytes(), self[i].1.as_bytes())
    }
}

/// What a route match reads of a request. Cheap to build (a few slices).
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The method token as sent; empty when unknown (then `:method` is
    /// absent).
    pub method: &'a [u8],
    /// `http` or `https`; empty when unknown (then `:scheme` is absent).
    pub scheme: &'a [u8],
    /// The Host (or absolute-form authority), as sent: virtual host
    /// selection and `:authority`.
    pub authority: &'a [u8],
    /// The path without the query: what path matches read.
    pub path: &'a [u8],
    /// The query after `?` (possibly empty); `None` without a `?`.
    pub query: Option<&'a [u8]>,
    /// `path?query` exactly as sent, when it is one contiguous slice
    /// (`:path`); `None` makes `:path` be composed from `path` and `query`.
    pub path_and_query: Option<&'a [u8]>,
    pub headers: &'a dyn HeaderSource,
}

impl<'a> Request<'a> {
    /// A request with only an authority and a path: no method, scheme,
    /// query or header lines.
    pub fn new(authority: &'a [u8], path: &'a [u8]) -> Request<'a> {
        Request {
            method: b"",
            scheme: b"",
            authority,
            path,
            query: None,
            path_and_query: None,
            headers: &NoHeaders,
        }
    }

    /// Split `target` (`/path?query`) into path and query.
    pub fn with_target(mut self, target: &'a [u8]) -> Request<'a> {
        match memchr::memchr(b'?', target) {
            Some(q) => {
                self.path = &target[..q];
                self.query = Some(&target[q + 1..]);
            }
            None => {
                self.path = target;
                self.query = None;
            }
        }
        self.path_and_query = Some(target);
        self
    }

    pub fn with_method(mut self, method: &'a [u8]) -> Request<'a> {
        self.method = method;
        self
    }

    pub fn with_scheme(mut self, scheme: &'a [u8]) -> Request<'a> {
        self.scheme = scheme;
        self
    }

    pub fn with_headers(mut self, headers: &'a dyn HeaderSource) -> Request<'a> {
        self.headers = headers;
        self
    }
}

// ---- configuration ---------------------------------------------------------------

/// How a value is compared (Envoy's `StringMatcher`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    Exact(Box<str>),
    /// Non-empty.
    Prefix(Box<str>),
    /// Non-empty.
    Suffix(Box<str>),
    /// Non-empty.
    Contains(Box<str>),
    /// Must match the whole value.
    Regex(Box<str>),
}

impl StringMatch {
    /// The configuration key (`exact`, `prefix`, ...) and the pattern.
    pub fn key_and_value(&self) -> (&'static str, &str) {
        match self {
            StringMatch::Exact(s) => ("exact", s),
            StringMatch::Prefix(s) => ("prefix", s),
            StringMatch::Suffix(s) => ("suffix", s),
            StringMatch::Contains(s) => ("contains", s),
            StringMatch::Regex(s) => ("regex", s),
        }
    }
}

/// A [`StringMatch`] plus Envoy's `ignore_case` (ASCII; not allowed with
/// a regex, whose own `(?i)` says it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringMatcher {
    pub pattern: StringMatch,
    pub ignore_case: bool,
}

impl From<StringMatch> for StringMatcher {
    fn from(pattern: StringMatch) -> Self {
        StringMatcher {
            pattern,
            ignore_case: false,
        }
    }
}

/// What a header matcher asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    /// The header is present (`true`) or absent (`false`).
    Present(bool),
    Value(StringMatcher),
}

/// One header condition (Envoy's `HeaderMatcher`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatcher {
    /// Case-insensitive; `:method`, `:authority`, `:path`, `:scheme` are
    /// the pseudo-headers. `host` is rejected: the Host is `:authority`.
    pub name: Box<str>,
    pub rule: HeaderMatch,
    /// Negate the result (a missing header still fails a value rule).
    pub invert: bool,
    /// Match a missing header as the empty value.
    pub treat_missing_as_empty: bool,
}

impl HeaderMatcher {
    /// `name` must match `pattern`.
    pub fn new(name: &str, pattern: StringMatch) -> HeaderMatcher {
        HeaderMatcher {
            name: name.into(),
            rule: HeaderMatch::Value(pattern.into()),
            invert: false,
            treat_missing_as_empty: false,
        }
    }

    /// `name` must be present (`true`) or absent (`false`).
    pub fn present(name: &str, present: bool) -> HeaderMatcher {
        HeaderMatcher {
            name: name.into(),
            rule: HeaderMatch::Present(present),
            invert: false,
            treat_missing_as_empty: false,
        }
    }

    pub fn inverted(mut self) -> HeaderMatcher {
        self.invert = !self.invert;
        self
    }
}

/// What a query-parameter matcher asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryMatch {
    /// The parameter is present (`true`) or absent (`false`).
    Present(bool),
    /// The parameter is present and its first value matches.
    Value(StringMatcher),
}

/// One query-parameter condition (Envoy's `QueryParameterMatcher`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParameterMatcher {
    /// Compared exactly with the raw (still percent-encoded) name.
    pub name: Box<str>,
    pub rule: QueryMatch,
}

impl QueryParameterMatcher {
    pub fn new(name: &str, pattern: StringMatch) -> QueryParameterMatcher {
        QueryParameterMatcher {
            name: name.into(),
            rule: QueryMatch::Value(pattern.into()),
        }
    }

    pub fn present(name: &str, present: bool) -> QueryParameterMatcher {
        QueryParameterMatcher {
            name: name.into(),
            rule: QueryMatch::Present(present),
        }
    }
}

// ---- compiled forms ----------------------------------------------------------------

/// Whether `pattern` compiles as a route regex (syntax and size), with the
/// reason it does not. For translators that want to reject a resource
/// before it reaches [`crate::RouteTable::build`].
pub fn check_regex(pattern: &str) -> Result<(), String> {
    FullRegex::new(pattern).map(|_| ())
}

/// A field (relative to the matcher) and the reason it was rejected.
pub type Invalid = (String, String);

/// A regex that must match the whole input (Envoy's `safe_regex`, RE2's
/// `FullMatch`): the parsed pattern is wrapped in start/end anchors as a
/// syntax tree, so no pattern text (flags, comments) can escape them.
#[derive(Clone, Debug)]
pub(crate) struct FullRegex(meta::Regex);

impl FullRegex {
    pub(crate) fn new(pattern: &str) -> Result<FullRegex, String> {
        let hir = regex_syntax::ParserBuilder::new()
            .build()
            .parse(pattern)
            .map_err(|e| format!("invalid regex {pattern:?}: {}", syntax_reason(&e)))?;
        let anchored = Hir::concat(vec![Hir::look(Look::Start), hir, Hir::look(Look::End)]);
        let re = meta::Builder::new()
            .configure(meta::Config::new().nfa_size_limit(Some(REGEX_SIZE_LIMIT)))
            .build_from_hir(&anchored)
            .map_err(|e| match e.size_limit() {
                Some(limit) => format!(
                    "regex {pattern:?} is too large (its compiled form exceeds {} KiB); simplify it",
                    limit / 1024
                ),
                None => format!("invalid regex {pattern:?}: {e}"),
            })?;
        Ok(FullRegex(re))
    }

    #[inline]
    pub(crate) fn is_match(&self, s: &[u8]) -> bool {
        self.0.is_match(s)
    }
}

/// regex-syntax's one-line reason (its `Display` draws a multi-line
/// diagram of the pattern).
fn syntax_reason(e: &regex_syntax::Error) -> String {
    match e {
        regex_syntax::Error::Parse(a) => a.kind().to_string(),
        regex_syntax::Error::Translate(h) => h.kind().to_string(),
        other => other
            .to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned(),
    }
}

#[derive(Clone, Debug)]
enum Pattern {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    // Boxed: a finder is ~300 bytes, the other patterns 16.
    Contains(Box<memchr::memmem::Finder<'static>>),
    Regex(FullRegex),
}

/// A compiled [`StringMatcher`]. With `ignore_case`, patterns are stored
/// lowercased and compared ASCII case-insensitively.
#[derive(Clone, Debug)]
pub struct CompiledString {
    pattern: Pattern,
    ignore_case: bool,
}

impl CompiledString {
    /// Errors name the field relative to the matcher (`exact`, `regex`,
    /// `ignore_case`, ...).
    pub fn compile(m: &StringMatcher) -> Result<CompiledString, Invalid> {
        let (key, value) = m.pattern.key_and_value();
        let bytes = |s: &str| -> Box<[u8]> {
            if m.ignore_case {
                s.to_ascii_lowercase().into_bytes().into()
            } else {
                s.as_bytes().into()
            }
        };
        if value.is_empty() && matches!(key, "prefix" | "suffix" | "contains") {
            return Err((key.into(), "must not be empty".into()));
        }
        let pattern = match &m.pattern {
            StringMatch::Exact(s) => Pattern::Exact(bytes(s)),
            StringMatch::Prefix(s) => Pattern::Prefix(bytes(s)),
            StringMatch::Suffix(s) => Pattern::Suffix(bytes(s)),
            StringMatch::Contains(s) => Pattern::Contains(Box::new(
                memchr::memmem::Finder::new(&bytes(s)).into_owned(),
            )),
            StringMatch::Regex(s) => {
                if m.ignore_case {
                    return Err((
                        "ignore_case".into(),
                        "has no effect on a regex; write (?i) in the pattern instead".into(),
                    ));
                }
                Pattern::Regex(FullRegex::new(s).map_err(|r| (key.to_owned(), r))?)
            }
        };
        Ok(CompiledString {
            pattern,
            ignore_case: m.ignore_case,
        })
    }

    #[inline]
    pub fn matches(&self, v: &[u8]) -> bool {
        let ic = self.ignore_case;
        let eq = |a: &[u8], b: &[u8]| {
            if ic {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match &self.pattern {
            Pattern::Exact(p) => eq(v, p),
            Pattern::Prefix(p) => v.len() >= p.len() && eq(&v[..p.len()], p),
            Pattern::Suffix(p) => v.len() >= p.len() && eq(&v[v.len() - p.len()..], p),
            Pattern::Contains(f) => {
                if ic {
                    let n = f.needle();
                    v.len() >= n.len() && v.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
                } else {
                    f.find(v).is_some()
                }
            }
            Pattern::Regex(r) => r.is_match(v),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HeaderName {
    Method,
    Authority,
    Path,
    Scheme,
    /// Lowercase.
    Regular(Box<[u8]>),
}

const PSEUDO_HEADERS: &str = ":method, :authority, :path, :scheme";

fn header_name(name: &str) -> Result<HeaderName, String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    let lower = name.to_ascii_lowercase();
    if let Some(pseudo) = lower.strip_prefix(':') {
        return match pseudo {
            "method" => Ok(HeaderName::Method),
            "authority" => Ok(HeaderName::Authority),
            "path" => Ok(HeaderName::Path),
            "scheme" => Ok(HeaderName::Scheme),
            _ => Err(format!(
                "unknown pseudo-header {name:?} (supported: {PSEUDO_HEADERS})"
            )),
        };
    }
    if let Some(c) = lower.chars().find(|&c| !is_token_char(c)) {
        return Err(format!(
            "{name:?} is not a header name (invalid character {c:?})"
        ));
    }
    if lower == "host" {
        return Err(
            "the Host header is matched as \":authority\" (as in Envoy); use that name".into(),
        );
    }
    Ok(HeaderName::Regular(lower.into_bytes().into()))
}

/// RFC 9110 `tchar`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[derive(Clone, Debug)]
enum Rule {
    Present(bool),
    Value(CompiledString),
}

#[derive(Clone, Debug)]
pub struct CompiledHeader {
    name: HeaderName,
    rule: Rule,
    invert: bool,
    treat_missing_as_empty: bool,
}

impl CompiledHeader {
    pub fn compile(m: &HeaderMatcher) -> Result<CompiledHeader, Invalid> {
        let name = header_name(&m.name).map_err(|r| ("name".to_owned(), r))?;
        let rule = match &m.rule {
            HeaderMatch::Present(p) => Rule::Present(*p),
            HeaderMatch::Value(s) => Rule::Value(CompiledString::compile(s)?),
        };
        Ok(CompiledHeader {
            name,
            rule,
            invert: m.invert,
            treat_missing_as_empty: m.treat_missing_as_empty,
        })
    }

    #[inline]
    pub fn matches(&self, req: &Request<'_>) -> bool {
        with_header_value(req, &self.name, |value| {
            let value = match value {
                Some(v) => v,
                None if self.treat_missing_as_empty => b"",
                // Envoy: a missing header satisfies only a presence rule
                // that asks for absence (or, inverted, for presence).
                None => {
                    return match self.rule {
                        Rule::Present(p) => p == self.invert,
                        Rule::Value(_) => false,
                    }
                }
            };
            let matched = match &self.rule {
                Rule::Present(p) => *p,
                Rule::Value(s) => s.matches(value),
            };
            matched != self.invert
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledQuery {
    name: Box<[u8]>,
    rule: Rule,
}

impl CompiledQuery {
    pub(crate) fn compile(m: &QueryParameterMatcher) -> Result<CompiledQuery, Invalid> {
        if m.name.is_empty() {
            return Err(("name".into(), "must not be empty".into()));
        }
        let rule = match &m.rule {
            QueryMatch::Present(p) => Rule::Present(*p),
            QueryMatch::Value(s) => Rule::Value(CompiledString::compile(s)?),
        };
        Ok(CompiledQuery {
            name: m.name.as_bytes().into(),
            rule,
        })
    }

    #[inline]
    pub(crate) fn matches(&self, req: &Request<'_>) -> bool {
        let found = req.query.and_then(|q| first_query_value(q, &self.name));
        match &self.rule {
            Rule::Present(p) => found.is_some() == *p,
            Rule::Value(s) => found.is_some_and(|v| s.matches(v)),
        }
    }
}

/// The raw value of the first parameter named `name` (`a=1&b&c=` gives
/// `a` → `1`, `b` → empty, `c` → empty).
pub(crate) fn first_query_value<'q>(query: &'q [u8], name: &[u8]) -> Option<&'q [u8]> {
    query.split(|&b| b == b'&').find_map(|param| {
        let (k, v) = match memchr::memchr(b'=', param) {
            Some(eq) => (&param[..eq], &param[eq + 1..]),
            None => (param, &b""[..]),
        };
        (k == name).then_some(v)
    })
}

/// Header and query conditions of one route; all must hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct Conditions {
    pub headers: Box<[CompiledHeader]>,
    pub query: Box<[CompiledQuery]>,
}

impl Conditions {
    pub(crate) fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.query.is_empty()
    }

    /// Envoy's order: headers, then query parameters.
    #[inline]
    pub(crate) fn hold(&self, req: &Request<'_>) -> bool {
        self.headers.iter().all(|h| h.matches(req)) && self.query.iter().all(|q| q.matches(req))
    }
}

/// Run `f` on the value of header `name` in `req` (`None`: absent).
fn with_header_value<R>(
    req: &Request<'_>,
    name: &HeaderName,
    f: impl FnOnce(Option<&[u8]>) -> R,
) -> R {
    fn non_empty(v: &[u8]) -> Option<&[u8]> {
        (!v.is_empty()).then_some(v)
    }
    match name {
        HeaderName::Method => f(non_empty(req.method)),
        HeaderName::Scheme => f(non_empty(req.scheme)),
        HeaderName::Authority => f(Some(req.authority)),
        HeaderName::Path => match (req.path_and_query, req.query) {
            (Some(pq), _) => f(Some(pq)),
            (None, None) => f(Some(req.path)),
            (None, Some(q)) => with_joined([req.path, b"?", q].into_iter(), b"", f),
        },
        HeaderName::Regular(n) => {
            let h = req.headers;
            let named = |i: usize| {
                let (hn, hv) = h.header_at(i);
                hn.eq_ignore_ascii_case(n).then_some(hv)
            };
            let lines = (0..h.header_count()).filter_map(named);
            let mut probe = lines.clone();
            let Some(first) = probe.next() else {
                return f(None);
            };
            if probe.next().is_none() {
                return f(Some(first));
            }
            // Rare: the same header on several lines. Envoy matches the
            // values joined with ",".
            with_joined(lines, b",", f)
        }
    }
}

/// Run `f` on `parts` joined with `sep`, on the stack when at most
/// [`JOIN_STACK`] bytes long.
fn with_joined<'p, R>(
    parts: impl Iterator<Item = &'p [u8]> + Clone,
    sep: &[u8],
    f: impl FnOnce(Option<&[u8]>) -> R,
) -> R {
    let (count, bytes) = parts
        .clone()
        .fold((0usize, 0usize), |(n, len), p| (n + 1, len + p.len()));
    let len = bytes + sep.len() * count.saturating_sub(1);
    let mut stack = [0u8; JOIN_STACK];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= JOIN_STACK {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let mut at = 0;
    for (i, p) in parts.enumerate() {
        if i > 0 {
            buf[at..at + sep.len()].copy_from_slice(sep);
            at += sep.len();
        }
        buf[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    f(Some(buf))
}

#[cfg(test)]
mod tests;
