//! `ringmesh_route::RouteTable`: tables built from fuzzer-structured
//! configuration (a few virtual hosts with wildcard / port / IPv6 domains;
//! routes with prefix, exact and regex paths, case-insensitive paths, header
//! and query-parameter matchers of every kind, weighted clusters), then
//! fuzzed requests matched against them.
//!
//! Checks: nothing panics; a configuration the rules forbid (a path not
//! starting with `/` or holding `?`, `#`, whitespace or controls, a regex
//! the `regex` crate rejects, `ignore_case` with a regex, an empty or
//! duplicate virtual host name, no domains, a duplicate domain, a bad
//! header name, `host`, an unknown pseudo-header, an empty pattern or query
//! parameter name) comes back as `Err` with a field and a reason; a weighted
//! split is rejected exactly when it is empty, sums to 0 or overflows `u32`.
//! For an accepted table, every request gets the virtual host and route a
//! naive linear scan over the configuration picks (Envoy's semantics
//! written out plainly: domains by exact / longest suffix / longest prefix /
//! `*`, port stripping; the first route whose path and every condition
//! holds), and a weighted split draws the cluster a linear walk over the
//! weights gives.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::{
    arbitrary::{Result, Unstructured},
    fuzz_target,
};
use ringmesh_route::{
    ClusterRef, Destination, HeaderMatch, HeaderMatcher, HeaderSource, PathMatch, QueryMatch,
    QueryParameterMatcher, Request, Route, RouteAction, RouteTable, StringMatch, StringMatcher,
    VirtualHost, WeightedCluster, WeightedClusters,
};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});

// ---- pools: realistic pieces, so that matches are likely -------------------------

const DOMAINS: &[&str] = &[
    "*",
    "example.com",
    "Example.COM",
    "*.example.com",
    "*-bar.example.com",
    "api.*",
    "api-*",
    "example.com:8080",
    "example.com:*",
    "*:8080",
    "a.b",
    "[::1]",
    "[::1]:8080",
    "127.0.0.1",
    "reviews.default.svc.cluster.local",
    "reviews",
    // Invalid ones.
    "",
    "*.*",
    "a*b",
    "::1",
    "[::1",
    "ex ample.com",
    "example.com:0",
    "example.com:99999",
];

const AUTHORITIES: &[&str] = &[
    "example.com",
    "EXAMPLE.com",
    "example.com:8080",
    "example.com:80",
    "www.example.com",
    "x-bar.example.com",
    "api.v1",
    "api-x",
    "api",
    "a.b",
    "a.b:1",
    "[::1]",
    "[::1]:8080",
    "::1",
    "127.0.0.1:9080",
    "reviews.default.svc.cluster.local",
    "reviews:9080",
    "",
    ":",
    "x:8080",
];

const PATHS: &[&str] = &[
    "/",
    "/a",
    "/ab",
    "/abc",
    "/api",
    "/api/",
    "/api/v1",
    "/API/v1",
    "/v1",
    "/v2",
    "/a/b",
    "/static/",
    "/reviews/1",
    // Invalid ones.
    "",
    "a",
    "/?",
    "/#x",
    "/ a",
    "/\t",
];

const REGEXES: &[&str] = &[
    "/a.*",
    "/api/v[0-9]+",
    "(?i)/API/.*",
    "/[a-z]*",
    "/(a|ab)(c|bcd)(d*)",
    ".*",
    "/reviews/\\d+",
    "(?s).*",
    "/\\p{L}+",
    "(?x) / a # a comment",
    "/a|/b",
    "",
    "^/a$",
    // Invalid or too large ones.
    "(",
    "[",
    "/a{100000}",
    "\\",
    "(?P<x>a)(?P<x>b)",
];

const HEADER_NAMES: &[&str] = &[
    "x-v",
    "X-V",
    "user-agent",
    "content-type",
    ":method",
    ":authority",
    ":path",
    ":scheme",
    // Invalid ones.
    "host",
    ":status",
    "bad name",
    "",
];

const VALUES: &[&str] = &[
    "",
    "a",
    "b",
    "A",
    "ab",
    "abc",
    "GET",
    "POST",
    "get",
    "http",
    "https",
    "example.com",
    "/a",
    "/api/v1?q=1",
    "text/html",
    "Mozilla/5.0",
    "1",
];

const QUERY_NAMES: &[&str] = &["q", "Q", "a", "debug", "x%20y", ""];

const METHODS: &[&str] = &["", "GET", "POST", "HEAD", "get"];

const SCHEMES: &[&str] = &["", "http", "https"];

const TARGETS: &[&str] = &[
    "/",
    "/a",
    "/ab",
    "/abc",
    "/api",
    "/api/v1",
    "/API/V1",
    "/v1",
    "/a/b",
    "/reviews/12",
    "/static/x.css",
    "/a?q=1",
    "/api/v1?q=a&debug",
    "/?q",
    "/a?q=&q=b",
    "/a?Q=1&q=2",
    "?q=1",
    "",
    "/ab?x%20y=1",
];

/// A pool entry, or (rarely) a short fuzzer-made string.
fn pick(u: &mut Unstructured<'_>, pool: &[&str]) -> Result<String> {
    if u.ratio(1, 8)? {
        let s: &str = u.arbitrary()?;
        Ok(s.chars().take(24).collect())
    } else {
        Ok((*u.choose(pool)?).to_owned())
    }
}

// ---- configuration ----------------------------------------------------------------

fn string_matcher(u: &mut Unstructured<'_>) -> Result<StringMatcher> {
    let pattern = match u.int_in_range(0..=4)? {
        0 => StringMatch::Exact(pick(u, VALUES)?.into()),
        1 => StringMatch::Prefix(pick(u, VALUES)?.into()),
        2 => StringMatch::Suffix(pick(u, VALUES)?.into()),
        3 => StringMatch::Contains(pick(u, VALUES)?.into()),
        _ => StringMatch::Regex(pick(u, REGEXES)?.into()),
    };
    Ok(StringMatcher {
        pattern,
        ignore_case: u.ratio(1, 4)?,
    })
}

fn route(u: &mut Unstructured<'_>, name: String, clusters: &mut u32) -> Result<Route> {
    let path = match u.int_in_range(0..=5)? {
        0 | 1 => PathMatch::Prefix(pick(u, PATHS)?.into()),
        2 | 3 => PathMatch::Exact(pick(u, PATHS)?.into()),
        _ => PathMatch::Regex(pick(u, REGEXES)?.into()),
    };
    let path_ignore_case = u.ratio(1, 5)?;
    let mut headers = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let rule = if u.ratio(1, 3)? {
            HeaderMatch::Present(u.arbitrary()?)
        } else {
            HeaderMatch::Value(string_matcher(u)?)
        };
        headers.push(HeaderMatcher {
            name: pick(u, HEADER_NAMES)?.into(),
            rule,
            invert: u.ratio(1, 4)?,
            treat_missing_as_empty: u.ratio(1, 4)?,
        });
    }
    let mut query_parameters = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let rule = if u.ratio(1, 3)? {
            QueryMatch::Present(u.arbitrary()?)
        } else {
            QueryMatch::Value(string_matcher(u)?)
        };
        query_parameters.push(QueryParameterMatcher {
            name: pick(u, QUERY_NAMES)?.into(),
            rule,
        });
    }
    let mut cluster = |name: &str| {
        *clusters += 1;
        ClusterRef {
            name: name.into(),
            index: *clusters - 1,
        }
    };
    let destination = if u.ratio(1, 3)? {
        let mut split = Vec::new();
        for k in 0..u.int_in_range(0..=4)? {
            let weight = match u.int_in_range(0..=3)? {
                0 => 0,
                1 => u32::MAX,
                2 => u.int_in_range(1..=100)?,
                _ => u.arbitrary()?,
            };
            split.push(WeightedCluster {
                cluster: cluster(&format!("{name}-w{k}")),
                weight,
            });
        }
        let sum: u64 = split.iter().map(|c| u64::from(c.weight)).sum();
        let should_fail = split.is_empty() || sum == 0 || sum > u64::from(u32::MAX);
        match WeightedClusters::new(split) {
            Ok(w) => {
                assert!(!should_fail, "accepted a weighted split summing to {sum}");
                assert_eq!(w.total_weight(), sum);
                Destination::Weighted(w)
            }
            Err(reason) => {
                assert!(should_fail, "rejected a valid weighted split: {reason}");
                assert!(!reason.is_empty());
                Destination::Cluster(cluster(&name))
            }
        }
    } else {
        Destination::Cluster(cluster(&name))
    };
    Ok(Route {
        name: name.into(),
        path,
        path_ignore_case,
        headers,
        query_parameters,
        action: RouteAction {
            destination,
            timeout: None,
            retry: None,
        },
    })
}

fn table(u: &mut Unstructured<'_>) -> Result<Vec<VirtualHost>> {
    let mut vhosts = Vec::new();
    let mut clusters = 0;
    for v in 0..u.int_in_range(1..=4)? {
        let name = match u.int_in_range(0..=15)? {
            0 => String::new(),
            1 => "v0".to_owned(),
            _ => format!("v{v}"),
        };
        let mut domains = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            domains.push(pick(u, DOMAINS)?.into_boxed_str());
        }
        if domains.is_empty() && u.ratio(7, 8)? {
            domains.push("*".into());
        }
        let mut routes = Vec::new();
        for r in 0..u.int_in_range(0..=8)? {
            routes.push(route(u, format!("v{v}r{r}"), &mut clusters)?);
        }
        vhosts.push(VirtualHost {
            name: name.into(),
            domains,
            routes,
        });
    }
    Ok(vhosts)
}

// ---- requests -----------------------------------------------------------------------

struct Lines(Vec<(String, String)>);

impl HeaderSource for Lines {
    fn header_count(&self) -> usize {
        self.0.len()
    }
    fn header_at(&self, i: usize) -> (&[u8], &[u8]) {
        (self.0[i].0.as_bytes(), self.0[i].1.as_bytes())
    }
}

#[derive(Debug)]
struct Req {
    method: String,
    scheme: String,
    authority: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn arbitrary(u: &mut Unstructured<'_>) -> Result<Req> {
        let mut headers = Vec::new();
        for _ in 0..u.int_in_range(0..=4)? {
            headers.push((pick(u, HEADER_NAMES)?, pick(u, VALUES)?));
        }
        Ok(Req {
            method: pick(u, METHODS)?,
            scheme: pick(u, SCHEMES)?,
            authority: pick(u, AUTHORITIES)?,
            target: pick(u, TARGETS)?,
            headers,
        })
    }

    fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

// ---- the run --------------------------------------------------------------------------

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let vhosts = table(u)?;
    let forbidden = forbidden(&vhosts);
    let built = RouteTable::build("fuzz", vhosts.clone());
    let table = match built {
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(!e.reason.is_empty(), "{e:?}");
            }
            return Ok(());
        }
        Ok(t) => t,
    };
    if let Some(why) = forbidden {
        panic!("accepted a table that must be rejected ({why}): {vhosts:#?}");
    }
    assert_eq!(table.virtual_hosts(), &vhosts[..]);
    let Some(regexes) = Regexes::compile(&vhosts) else {
        return Ok(()); // a pattern the textual reference cannot wrap
    };

    for _ in 0..u.int_in_range(1..=8)? {
        let req = Req::arbitrary(u)?;
        let lines = Lines(req.headers.clone());
        let request = Request::new(req.authority.as_bytes(), b"")
            .with_target(req.target.as_bytes())
            .with_method(req.method.as_bytes())
            .with_scheme(req.scheme.as_bytes())
            .with_headers(&lines);

        let want_vhost = ringmesh_route::reference::reference_vhost(&vhosts, req.authority.as_bytes());
        assert_eq!(
            table.find_vhost_index(req.authority.as_bytes()),
            want_vhost,
            "virtual host for {:?} in {vhosts:#?}",
            req.authority
        );
        let want = want_vhost.and_then(|v| {
            vhosts[v]
                .routes
                .iter()
                .position(|r| reference_route_holds(r, &req, &regexes))
                .map(|r| (v, r))
        });
        let got = table.route_request(&request).map(|r| {
            let v = want_vhost.expect("a route without a virtual host");
            let i = table.virtual_hosts()[v]
                .routes
                .iter()
                .position(|x| std::ptr::eq(x, r))
                .expect("the route is one of its virtual host's");
            (v, i)
        });
        assert_eq!(got, want, "route for {req:#?} in {vhosts:#?}");

        if let Some((v, r)) = want {
            let random: u64 = u.arbitrary()?;
            let action = &table.virtual_hosts()[v].routes[r].action;
            let picked = action.pick(|| random);
            assert_eq!(
                picked,
                reference_pick(&action.destination, random),
                "weighted pick for {random}"
            );
        }
    }
    Ok(())
}

// ---- the reference ----------------------------------------------------------------------

/// The first rule of the documented ones that `vhosts` breaks, if any.
fn forbidden(vhosts: &[VirtualHost]) -> Option<String> {
    let mut names = HashMap::new();
    let mut domains = HashMap::new();
    for (v, vh) in vhosts.iter().enumerate() {
        if vh.name.is_empty() {
            return Some(format!("virtual host {v} has no name"));
        }
        if names.insert(vh.name.clone(), v).is_some() {
            return Some(format!("duplicate virtual host name {:?}", vh.name));
        }
        if vh.domains.is_empty() {
            return Some(format!("virtual host {v} has no domains"));
        }
        for d in &vh.domains {
            if domains.insert(d.to_ascii_lowercase(), v).is_some() {
                return Some(format!("duplicate domain {d:?}"));
            }
            if d.is_empty() || d.matches('*').count() > 1 {
                return Some(format!("bad domain {d:?}"));
            }
        }
        for r in &vh.routes {
            match &r.path {
                PathMatch::Prefix(p) | PathMatch::Exact(p) => {
                    if !p.starts_with('/')
                        || p.contains(['?', '#'])
                        || p.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        return Some(format!("bad path {p:?}"));
                    }
                }
                PathMatch::Regex(p) => {
                    if r.path_ignore_case {
                        return Some("ignore_case on a regex path".into());
                    }
                    if reference_regex(p).is_err() {
                        return Some(format!("bad regex {p:?}"));
                    }
                }
            }
            for h in &r.headers {
                let lower = h.name.to_ascii_lowercase();
                let pseudo = [":method", ":authority", ":path", ":scheme"].contains(&&*lower);
                let token = !lower.is_empty()
                    && lower
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !(pseudo || token) || lower == "host" {
                    return Some(format!("bad header name {:?}", h.name));
                }
                if let HeaderMatch::Value(m) = &h.rule {
                    if let Some(why) = bad_string_matcher(m) {
                        return Some(why);
                    }
                }
            }
            for q in &r.query_parameters {
                if q.name.is_empty() {
                    return Some("empty query parameter name".into());
                }
                if let QueryMatch::Value(m) = &q.rule {
                    if let Some(why) = bad_string_matcher(m) {
                        return Some(why);
                    }
                }
            }
        }
    }
    None
}

fn bad_string_matcher(m: &StringMatcher) -> Option<String> {
    match &m.pattern {
        StringMatch::Prefix(p) | StringMatch::Suffix(p) | StringMatch::Contains(p)
            if p.is_empty() =>
        {
            Some("empty prefix / suffix / contains".into())
        }
        StringMatch::Regex(p) if m.ignore_case => Some(format!("ignore_case on regex {p:?}")),
        StringMatch::Regex(p) if reference_regex(p).is_err() => Some(format!("bad regex {p:?}")),
        _ => None,
    }
}

/// Four times the table's own bound on a regex's compiled size: whatever the
/// table accepts fits, whatever does not fit here the table rejects too,
/// and hostile repetitions (`a{100000}`) fail fast instead of compiling up
/// to the crate's default 10 MiB.
const REFERENCE_SIZE_LIMIT: usize = 4 * ringmesh_route::matcher::REGEX_SIZE_LIMIT;

/// `pattern` as the `regex` crate reads it (unanchored, Unicode, UTF-8: the
/// syntax the table accepts).
fn reference_regex(pattern: &str) -> std::result::Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REFERENCE_SIZE_LIMIT)
        .build()
}

/// Every regex of the table, compiled by the `regex` crate as a full match.
struct Regexes(HashMap<Box<str>, regex::bytes::Regex>);

impl Regexes {
    /// `None` when a pattern accepted on its own cannot be wrapped in
    /// `\A(?:...)\z` as text: an `(?x)` comment running to the end of the
    /// pattern swallows the closing parenthesis (the table wraps the parsed
    /// syntax tree, so it has no such problem).
    fn compile(vhosts: &[VirtualHost]) -> Option<Regexes> {
        let mut out = HashMap::new();
        let patterns = vhosts.iter().flat_map(|vh| &vh.routes).flat_map(|r| {
            let path = match &r.path {
                PathMatch::Regex(p) => Some(p),
                _ => None,
            };
            let values = r
                .headers
                .iter()
                .filter_map(|h| match &h.rule {
                    HeaderMatch::Value(m) => Some(&m.pattern),
                    HeaderMatch::Present(_) => None,
                })
                .chain(r.query_parameters.iter().filter_map(|q| match &q.rule {
                    QueryMatch::Value(m) => Some(&m.pattern),
                    QueryMatch::Present(_) => None,
                }))
                .filter_map(|p| match p {
                    StringMatch::Regex(p) => Some(p),
                    _ => None,
                });
            path.into_iter().chain(values)
        });
        for p in patterns {
            reference_regex(p).unwrap_or_else(|e| {
                panic!("the table accepted {p:?}, which the regex crate rejects: {e}")
            });
            let full = regex::bytes::RegexBuilder::new(&format!("\\A(?:{p})\\z"))
                .size_limit(REFERENCE_SIZE_LIMIT)
                .build()
                .ok()?;
            out.insert(p.clone(), full);
        }
        Some(Regexes(out))
    }

    fn full_match(&self, pattern: &str, value: &[u8]) -> bool {
        self.0[pattern].is_match(value)
    }
}

fn reference_route_holds(r: &Route, req: &Req, regexes: &Regexes) -> bool {
    let path = req.path();
    // A request without a path (CONNECT, or `?q` alone) matches no route.
    if path.is_empty() {
        return false;
    }
    let path_holds = match &r.path {
        PathMatch::Regex(p) => regexes.full_match(p, path.as_bytes()),
        PathMatch::Prefix(p) if r.path_ignore_case => path
            .to_ascii_lowercase()
            .starts_with(&p.to_ascii_lowercase()),
        PathMatch::Exact(p) if r.path_ignore_case => path.eq_ignore_ascii_case(p),
        PathMatch::Prefix(p) => path.starts_with(&**p),
        PathMatch::Exact(p) => path == &**p,
    };
    path_holds
        && r.headers.iter().all(|h| header_holds(h, req, regexes))
        && r.query_parameters
            .iter()
            .all(|q| query_holds(q, req, regexes))
}

/// The value of header `name` in `req`: pseudo-headers from the request
/// line; a header sent on several lines as its values joined with `,`.
fn header_value(req: &Req, name: &str) -> Option<String> {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    match name.to_ascii_lowercase().as_str() {
        ":method" => non_empty(&req.method),
        ":scheme" => non_empty(&req.scheme),
        ":authority" => Some(req.authority.clone()),
        ":path" => Some(req.target.clone()),
        lower => {
            let values: Vec<&str> = req
                .headers
                .iter()
                .filter(|(n, _)| n.to_ascii_lowercase() == lower)
                .map(|(_, v)| v.as_str())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        }
    }
}

fn value_holds(m: &StringMatcher, value: &str, regexes: &Regexes) -> bool {
    let fold = |s: &str| {
        if m.ignore_case {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        }
    };
    let v = fold(value);
    match &m.pattern {
        StringMatch::Exact(p) => v == fold(p),
        StringMatch::Prefix(p) => v.starts_with(&fold(p)),
        StringMatch::Suffix(p) => v.ends_with(&fold(p)),
        StringMatch::Contains(p) => v.contains(&fold(p)),
        StringMatch::Regex(p) => regexes.full_match(p, value.as_bytes()),
    }
}

/// Envoy's `HeaderMatcher`: a missing header satisfies only `present:
/// false` (inverted: only `present: true`), unless it is treated as empty;
/// otherwise the rule's result, inverted if asked.
fn header_holds(h: &HeaderMatcher, req: &Req, regexes: &Regexes) -> bool {
    let value = header_value(req, &h.name).or_else(|| h.treat_missing_as_empty.then(String::new));
    match (value, &h.rule) {
        (None, HeaderMatch::Present(wants_present)) => {
            if h.invert {
                *wants_present
            } else {
                !*wants_present
            }
        }
        (None, HeaderMatch::Value(_)) => false,
        (Some(_), HeaderMatch::Present(wants_present)) => *wants_present != h.invert,
        (Some(v), HeaderMatch::Value(m)) => value_holds(m, &v, regexes) != h.invert,
    }
}

/// Envoy's `QueryParameterMatcher`: the first parameter with that raw name
/// (`a=1&b&c=` gives b and c the empty value).
fn query_holds(q: &QueryParameterMatcher, req: &Req, regexes: &Regexes) -> bool {
    let found = req.query().and_then(|query| {
        query.split('&').find_map(|param| {
            let (k, v) = param.split_once('=').unwrap_or((param, ""));
            (k == &*q.name).then_some(v)
        })
    });
    match &q.rule {
        QueryMatch::Present(p) => found.is_some() == *p,
        QueryMatch::Value(m) => found.is_some_and(|v| value_holds(m, v, regexes)),
    }
}

/// `random` scaled onto `[0, total)`, then the cluster whose share of the
/// weights that point falls in.
fn reference_pick(d: &Destination, random: u64) -> &ClusterRef {
    match d {
        Destination::Cluster(c) => c,
        Destination::Weighted(w) => {
            let total: u64 = w.clusters().iter().map(|c| u64::from(c.weight)).sum();
            let point = ((u128::from(random) * u128::from(total)) >> 64) as u64;
            let mut end = 0;
            for c in w.clusters() {
                end += u64::from(c.weight);
                if point < end {
                    return &c.cluster;
                }
            }
            unreachable!("the point {point} lies below the total {total}")
        }
    }
}
