use super::*;

fn string(pattern: StringMatch, ignore_case: bool) -> CompiledString {
    CompiledString::compile(&StringMatcher {
        pattern,
        ignore_case,
    })
    .unwrap()
}

fn exact(s: &str) -> StringMatch {
    StringMatch::Exact(s.into())
}
fn prefix(s: &str) -> StringMatch {
    StringMatch::Prefix(s.into())
}
fn suffix(s: &str) -> StringMatch {
    StringMatch::Suffix(s.into())
}
fn contains(s: &str) -> StringMatch {
    StringMatch::Contains(s.into())
}
fn regex(s: &str) -> StringMatch {
    StringMatch::Regex(s.into())
}

#[test]
fn string_matchers_with_and_without_case() {
    let cases: &[(StringMatch, bool, &str, bool)] = &[
        (exact("Jason"), false, "Jason", true),
        (exact("Jason"), false, "jason", false),
        (exact("Jason"), true, "jASON", true),
        (exact(""), false, "", true),
        (exact(""), false, "x", false),
        (prefix("ab"), false, "abc", true),
        (prefix("ab"), false, "ab", true),
        (prefix("ab"), false, "a", false),
        (prefix("AB"), true, "abc", true),
        (suffix(".css"), false, "x.css", true),
        (suffix(".css"), false, "css", false),
        (suffix(".CSS"), true, "X.css", true),
        (contains("mid"), false, "amidst", true),
        (contains("mid"), false, "mi", false),
        (contains("MID"), false, "amidst", false),
        (contains("MID"), true, "aMiDst", true),
        (contains("MID"), true, "mi", false),
        (regex("v[0-9]+"), false, "v12", true),
        // Full match, as RE2's FullMatch: no partial hits.
        (regex("v[0-9]+"), false, "xv12", false),
        (regex("v[0-9]+"), false, "v12x", false),
        (regex("a|ab"), false, "ab", true),
        (regex("(?i)abc"), false, "ABC", true),
        (regex(""), false, "", true),
        (regex(""), false, "a", false),
    ];
    for (pattern, ic, value, want) in cases {
        let m = string(pattern.clone(), *ic);
        assert_eq!(
            m.matches(value.as_bytes()),
            *want,
            "{pattern:?} ignore_case={ic} on {value:?}"
        );
    }
}

#[test]
fn regex_anchors_cannot_be_escaped_by_the_pattern() {
    // Alternation, flags and an x-mode comment at the end stay inside the
    // anchors: the pattern is wrapped as a syntax tree, not as text.
    let alt = FullRegex::new("a|b").unwrap();
    assert!(alt.is_match(b"a") && alt.is_match(b"b"));
    assert!(!alt.is_match(b"ab"));
    let commented = FullRegex::new("(?x) a b  # trailing comment").unwrap();
    assert!(commented.is_match(b"ab"));
    assert!(!commented.is_match(b"abc"));
    // Anchors inside the pattern are fine too.
    assert!(FullRegex::new("^/x$").unwrap().is_match(b"/x"));
    // Byte haystacks that are not UTF-8 simply do not match `.`.
    assert!(!FullRegex::new(".").unwrap().is_match(&[0xff]));
}

#[test]
fn regex_errors_are_one_line_with_the_pattern() {
    assert_eq!(
        FullRegex::new("a(b").unwrap_err(),
        "invalid regex \"a(b\": unclosed group"
    );
    assert_eq!(
        FullRegex::new("[z-a]").unwrap_err(),
        "invalid regex \"[z-a]\": invalid character class range, the start must be <= the end"
    );
    let big = FullRegex::new(r"\w{1000}").unwrap_err();
    assert_eq!(
        big,
        "regex \"\\\\w{1000}\" is too large (its compiled form exceeds 256 KiB); simplify it"
    );
}

#[test]
fn string_compile_errors_name_the_field() {
    let err = |pattern: StringMatch, ignore_case: bool| {
        CompiledString::compile(&StringMatcher {
            pattern,
            ignore_case,
        })
        .unwrap_err()
    };
    assert_eq!(
        err(prefix(""), false),
        ("prefix".into(), "must not be empty".into())
    );
    assert_eq!(
        err(suffix(""), false),
        ("suffix".into(), "must not be empty".into())
    );
    assert_eq!(
        err(contains(""), true),
        ("contains".into(), "must not be empty".into())
    );
    assert_eq!(
        err(regex("x"), true),
        (
            "ignore_case".into(),
            "has no effect on a regex; write (?i) in the pattern instead".into()
        )
    );
    assert_eq!(err(regex("("), false).0, "regex");
}

#[test]
fn header_names() {
    assert_eq!(header_name(":Method"), Ok(HeaderName::Method));
    assert_eq!(header_name(":authority"), Ok(HeaderName::Authority));
    assert_eq!(header_name(":path"), Ok(HeaderName::Path));
    assert_eq!(header_name(":scheme"), Ok(HeaderName::Scheme));
    assert_eq!(
        header_name("End-User"),
        Ok(HeaderName::Regular((*b"end-user").into()))
    );
    assert_eq!(header_name(""), Err("must not be empty".into()));
    assert_eq!(
        header_name(":status"),
        Err(
            "unknown pseudo-header \":status\" (supported: :method, :authority, :path, :scheme)"
                .into()
        )
    );
    assert_eq!(
        header_name("x y"),
        Err("\"x y\" is not a header name (invalid character ' ')".into())
    );
    assert_eq!(
        header_name("Host"),
        Err("the Host header is matched as \":authority\" (as in Envoy); use that name".into())
    );
}

fn header(m: HeaderMatcher) -> CompiledHeader {
    CompiledHeader::compile(&m).unwrap()
}

/// Envoy's `HeaderUtility::matchHeaders` truth table for a header that is
/// present with value "v" and for one that is missing.
#[test]
fn header_presence_and_inversion_follow_envoy() {
    let present = [("x", "v")];
    let with = Request::new(b"h", b"/").with_headers(&present);
    let without = Request::new(b"h", b"/");
    // (matcher, matches when present, matches when missing)
    let cases: Vec<(HeaderMatcher, bool, bool)> = vec![
        (HeaderMatcher::present("x", true), true, false),
        (HeaderMatcher::present("x", true).inverted(), false, true),
        (HeaderMatcher::present("x", false), false, true),
        (HeaderMatcher::present("x", false).inverted(), true, false),
        (HeaderMatcher::new("x", exact("v")), true, false),
        (HeaderMatcher::new("x", exact("other")), false, false),
        // Inverted value rules never match a missing header.
        (
            HeaderMatcher::new("x", exact("other")).inverted(),
            true,
            false,
        ),
        (HeaderMatcher::new("x", exact("v")).inverted(), false, false),
        (
            HeaderMatcher {
                treat_missing_as_empty: true,
                ..HeaderMatcher::new("x", exact("other")).inverted()
            },
            true,
            true,
        ),
        (
            HeaderMatcher {
                treat_missing_as_empty: true,
                ..HeaderMatcher::new("x", exact(""))
            },
            false,
            true,
        ),
    ];
    for (m, when_present, when_missing) in cases {
        let c = header(m.clone());
        assert_eq!(c.matches(&with), when_present, "{m:?} with the header");
        assert_eq!(c.matches(&without), when_missing, "{m:?} without it");
    }
}

#[test]
fn header_names_are_case_insensitive_and_values_joined() {
    let lines = [
        ("Accept", "text/html"),
        ("x-Multi", "a"),
        ("other", "z"),
        ("X-MULTI", "b"),
    ];
    let req = Request::new(b"h", b"/").with_headers(&lines);
    assert!(header(HeaderMatcher::new("ACCEPT", exact("text/html"))).matches(&req));
    // Several lines of one header are matched as "a,b" (Envoy's join).
    assert!(header(HeaderMatcher::new("x-multi", exact("a,b"))).matches(&req));
    assert!(!header(HeaderMatcher::new("x-multi", exact("a"))).matches(&req));
    assert!(header(HeaderMatcher::new("x-multi", regex("a,.*"))).matches(&req));
    // A long joined value takes the heap path and still matches.
    let long = "v".repeat(JOIN_STACK);
    let lines = vec![("x-long", long.as_str()), ("x-long", long.as_str())];
    let req = Request::new(b"h", b"/").with_headers(&lines);
    assert!(header(HeaderMatcher::new(
        "x-long",
        exact(&format!("{long},{long}"))
    ))
    .matches(&req));
}

#[test]
fn pseudo_headers() {
    let get = Request::new(b"Example.com:8080", b"")
        .with_target(b"/a/b?x=1&y")
        .with_method(b"GET")
        .with_scheme(b"http");
    assert!(header(HeaderMatcher::new(":method", exact("GET"))).matches(&get));
    assert!(!header(HeaderMatcher::new(":method", exact("get"))).matches(&get));
    assert!(header(HeaderMatcher::new(":authority", exact("Example.com:8080"))).matches(&get));
    assert!(header(HeaderMatcher::new(":authority", suffix(":8080"))).matches(&get));
    // `:path` is the path with its query, as sent.
    assert!(header(HeaderMatcher::new(":path", exact("/a/b?x=1&y"))).matches(&get));
    assert!(header(HeaderMatcher::new(":path", regex("/a/.*y"))).matches(&get));
    assert!(header(HeaderMatcher::new(":scheme", exact("http"))).matches(&get));
    // Composed when the view has no contiguous slice.
    let mut split = get;
    split.path_and_query = None;
    assert!(header(HeaderMatcher::new(":path", exact("/a/b?x=1&y"))).matches(&split));
    split.query = None;
    assert!(header(HeaderMatcher::new(":path", exact("/a/b"))).matches(&split));
    // Unknown method and scheme are absent.
    let bare = Request::new(b"h", b"/");
    assert!(header(HeaderMatcher::present(":method", false)).matches(&bare));
    assert!(!header(HeaderMatcher::new(":scheme", prefix("h"))).matches(&bare));
}

#[test]
fn query_parameters_match_the_first_raw_value() {
    assert_eq!(first_query_value(b"a=1&b&c=&a=2", b"a"), Some(&b"1"[..]));
    assert_eq!(first_query_value(b"a=1&b&c=", b"b"), Some(&b""[..]));
    assert_eq!(first_query_value(b"a=1&b&c=", b"c"), Some(&b""[..]));
    assert_eq!(first_query_value(b"a=1&b&c=", b"d"), None);
    assert_eq!(first_query_value(b"x=a=b", b"x"), Some(&b"a=b"[..]));
    // Raw: neither names nor values are percent-decoded.
    assert_eq!(first_query_value(b"n%61me=v%20w", b"name"), None);
    assert_eq!(
        first_query_value(b"n%61me=v%20w", b"n%61me"),
        Some(&b"v%20w"[..])
    );

    let q = |rule: QueryMatch| {
        CompiledQuery::compile(&QueryParameterMatcher {
            name: "debug".into(),
            rule,
        })
        .unwrap()
    };
    let on = Request::new(b"h", b"").with_target(b"/p?debug=true&x=1");
    let empty = Request::new(b"h", b"").with_target(b"/p?debug");
    let off = Request::new(b"h", b"").with_target(b"/p?x=1");
    let none = Request::new(b"h", b"").with_target(b"/p");
    let value = |s: StringMatch| q(QueryMatch::Value(s.into()));
    assert!(value(exact("true")).matches(&on));
    assert!(!value(exact("true")).matches(&empty));
    assert!(value(exact("")).matches(&empty));
    assert!(!value(exact("")).matches(&off));
    assert!(value(regex("t.*")).matches(&on));
    assert!(q(QueryMatch::Present(true)).matches(&empty));
    assert!(!q(QueryMatch::Present(true)).matches(&off));
    assert!(!q(QueryMatch::Present(true)).matches(&none));
    assert!(q(QueryMatch::Present(false)).matches(&none));
    assert!(!q(QueryMatch::Present(false)).matches(&on));
    assert_eq!(
        CompiledQuery::compile(&QueryParameterMatcher::present("", true)).unwrap_err(),
        ("name".into(), "must not be empty".into())
    );
}
