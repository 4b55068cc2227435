use std::{sync::Arc, time::Duration};

use super::*;
use crate::{domain::strip_port, reference::reference_vhost};

mod l7;

fn route(name: &str, path: PathMatch) -> Route {
    Route::new(
        name,
        path,
        RouteAction::cluster("c".into(), 0, Some(Duration::from_secs(15))),
    )
}

fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.into())
}

fn exact(p: &str) -> PathMatch {
    PathMatch::Exact(p.into())
}

fn vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|&d| d.into()).collect(),
        routes,
    }
}

fn catch_all(name: &str, domains: &[&str]) -> VirtualHost {
    vhost(name, domains, vec![route(name, prefix("/"))])
}

fn vhost_name<'a>(t: &'a RouteTable, authority: &str) -> Option<&'a str> {
    t.find_vhost(authority.as_bytes()).map(|v| &*v.name)
}

fn errors(vhosts: Vec<VirtualHost>) -> Vec<String> {
    RouteTable::build("t", vhosts)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

// ---- virtual host selection -------------------------------------------

#[test]
fn domain_precedence_follows_envoy() {
    let t = RouteTable::build(
        "t",
        vec![
            catch_all("default", &["*"]),
            catch_all("prefix_short", &["foo.*"]),
            catch_all("prefix_long", &["foo.bar.*"]),
            catch_all("suffix_short", &["*.com"]),
            catch_all("suffix_long", &["*.example.com"]),
            catch_all("suffix_dash", &["*-bar.example.com"]),
            catch_all("exact", &["www.example.com"]),
        ],
    )
    .unwrap();
    assert_eq!(vhost_name(&t, "www.example.com"), Some("exact"));
    assert_eq!(vhost_name(&t, "api.example.com"), Some("suffix_long"));
    assert_eq!(vhost_name(&t, "foo-bar.example.com"), Some("suffix_dash"));
    assert_eq!(vhost_name(&t, "other.com"), Some("suffix_short"));
    // Suffix wildcards beat prefix wildcards, whatever their lengths.
    assert_eq!(vhost_name(&t, "foo.bar.com"), Some("suffix_short"));
    assert_eq!(vhost_name(&t, "foo.bar.org"), Some("prefix_long"));
    assert_eq!(vhost_name(&t, "foo.org"), Some("prefix_short"));
    assert_eq!(vhost_name(&t, "unrelated.org"), Some("default"));
    assert_eq!(vhost_name(&t, ""), Some("default"));
    // A wildcard stands for at least one character.
    assert_eq!(vhost_name(&t, "example.com"), Some("suffix_short"));
    assert_eq!(vhost_name(&t, ".example.com"), Some("suffix_short"));
    assert_eq!(vhost_name(&t, "foo."), Some("default"));
    assert_eq!(vhost_name(&t, "foo.x"), Some("prefix_short"));
}

#[test]
fn domains_are_case_insensitive() {
    let t = RouteTable::build(
        "t",
        vec![
            catch_all("a", &["Example.COM"]),
            catch_all("b", &["*.Example.Org"]),
            catch_all("c", &["API.*"]),
        ],
    )
    .unwrap();
    assert_eq!(vhost_name(&t, "example.com"), Some("a"));
    assert_eq!(vhost_name(&t, "EXAMPLE.com"), Some("a"));
    assert_eq!(vhost_name(&t, "WWW.example.ORG"), Some("b"));
    assert_eq!(vhost_name(&t, "api.x"), Some("c"));
    assert_eq!(vhost_name(&t, "Api.X:8080"), Some("c"));
    assert_eq!(vhost_name(&t, "nope"), None);
    // The configured spelling is kept.
    assert_eq!(&*t.virtual_hosts()[0].domains[0], "Example.COM");
}

#[test]
fn long_mixed_case_authority_takes_the_heap_path() {
    let host = format!("{}.Example.com", "A".repeat(300));
    let t = RouteTable::build(
        "t",
        vec![catch_all("w", &["*.example.com"]), catch_all("d", &["*"])],
    )
    .unwrap();
    assert_eq!(vhost_name(&t, &host), Some("w"));
    assert_eq!(vhost_name(&t, &format!("{host}:80")), Some("w"));
    let exact = "a".repeat(255) + "B";
    let t = RouteTable::build("t", vec![catch_all("e", &[&exact])]).unwrap();
    assert_eq!(vhost_name(&t, &exact.to_ascii_uppercase()), Some("e"));
    assert_eq!(vhost_name(&t, &(exact.to_ascii_uppercase() + "C")), None);
}

#[test]
fn port_is_tried_first_then_stripped() {
    let t = RouteTable::build(
        "t",
        vec![
            catch_all("default", &["*"]),
            catch_all("plain", &["example.com"]),
            catch_all("with_port", &["example.com:8080"]),
            catch_all("wild", &["*.example.com"]),
            catch_all("any_9090", &["*:9090"]),
            catch_all("v6", &["[::1]"]),
            catch_all("v6_port", &["[::1]:81"]),
        ],
    )
    .unwrap();
    assert_eq!(vhost_name(&t, "example.com:8080"), Some("with_port"));
    // The port is not part of any domain: the host alone decides, even
    // though `*` would match the full authority.
    assert_eq!(vhost_name(&t, "example.com:80"), Some("plain"));
    assert_eq!(vhost_name(&t, "a.example.com:80"), Some("wild"));
    assert_eq!(vhost_name(&t, "other:9090"), Some("any_9090"));
    assert_eq!(vhost_name(&t, "other:80"), Some("default"));
    assert_eq!(vhost_name(&t, "[::1]"), Some("v6"));
    assert_eq!(vhost_name(&t, "[::1]:81"), Some("v6_port"));
    assert_eq!(vhost_name(&t, "[::1]:82"), Some("v6"));
    // Not a port: nothing to strip.
    assert_eq!(vhost_name(&t, "example.com:"), Some("default"));
    assert_eq!(vhost_name(&t, "example.com:abc"), Some("default"));
}

#[test]
fn strip_port_cases() {
    fn s(a: &str) -> Option<&str> {
        strip_port(a.as_bytes()).map(|h| std::str::from_utf8(h).unwrap())
    }
    assert_eq!(s("a:80"), Some("a"));
    assert_eq!(s("a"), None);
    assert_eq!(s("a:"), None);
    assert_eq!(s("a:8x"), None);
    assert_eq!(s("[::1]:80"), Some("[::1]"));
    assert_eq!(s("[::1]"), None);
    assert_eq!(s("::1"), None);
    assert_eq!(s(":80"), Some(""));
}

#[test]
fn no_virtual_hosts_matches_nothing() {
    let t = RouteTable::build("empty", vec![]).unwrap();
    assert!(t.find_vhost(b"example.com").is_none());
    assert!(t.route(b"example.com", b"/").is_none());
    assert!(t.route_in(0, b"/").is_none());
}

#[test]
fn only_default_skips_the_authority() {
    let t = RouteTable::build("t", vec![catch_all("d", &["*"])]).unwrap();
    assert_eq!(vhost_name(&t, "anything:1"), Some("d"));
    assert_eq!(t.find_vhost_index(b"\xff\xfe"), Some(0));
}

// ---- route selection -----------------------------------------------------

#[test]
fn first_matching_route_wins() {
    let t = RouteTable::build(
        "t",
        vec![vhost(
            "v",
            &["*"],
            vec![
                route("health", exact("/healthz")),
                route("api_v1", prefix("/api/v1")),
                route("api", prefix("/api")),
                route("shadowed", prefix("/api/v1/users")),
                route("exact_after_prefix", exact("/api")),
                route("root", prefix("/")),
                route("never", exact("/x")),
            ],
        )],
    )
    .unwrap();
    let r = |p: &str| t.route(b"h", p.as_bytes()).map(|r| &*r.name);
    assert_eq!(r("/healthz"), Some("health"));
    assert_eq!(r("/healthz/"), Some("root"));
    assert_eq!(r("/api/v1/users"), Some("api_v1"));
    assert_eq!(r("/api/v1"), Some("api_v1"));
    assert_eq!(r("/api/v2"), Some("api"));
    assert_eq!(r("/api"), Some("api"));
    assert_eq!(r("/apix"), Some("api"));
    assert_eq!(r("/x"), Some("root"));
    assert_eq!(r("/"), Some("root"));
    assert_eq!(r(""), None);
    assert_eq!(r("x"), None);
}

#[test]
fn paths_are_case_sensitive_and_exact_is_exact() {
    let t = RouteTable::build(
        "t",
        vec![vhost(
            "v",
            &["*"],
            vec![route("e", exact("/Foo")), route("p", prefix("/bar/"))],
        )],
    )
    .unwrap();
    let r = |p: &str| t.route(b"h", p.as_bytes()).map(|r| &*r.name);
    assert_eq!(r("/Foo"), Some("e"));
    assert_eq!(r("/foo"), None);
    assert_eq!(r("/Foo/"), None);
    assert_eq!(r("/Fo"), None);
    assert_eq!(r("/bar/"), Some("p"));
    assert_eq!(r("/bar/baz"), Some("p"));
    assert_eq!(r("/bar"), None);
    assert_eq!(r("/BAR/"), None);
}

#[test]
fn duplicate_paths_keep_the_first() {
    let t = RouteTable::build(
        "t",
        vec![vhost(
            "v",
            &["*"],
            vec![
                route("a", prefix("/a")),
                route("b", prefix("/a")),
                route("c", exact("/e")),
                route("d", exact("/e")),
            ],
        )],
    )
    .unwrap();
    assert_eq!(&*t.route(b"h", b"/a").unwrap().name, "a");
    assert_eq!(&*t.route(b"h", b"/e").unwrap().name, "c");
}

#[test]
fn route_in_by_index() {
    let t = RouteTable::build(
        "t",
        vec![
            vhost("a", &["a"], vec![route("ra", prefix("/"))]),
            vhost("b", &["b"], vec![route("rb", prefix("/"))]),
        ],
    )
    .unwrap();
    assert_eq!(t.find_vhost_index(b"B"), Some(1));
    assert_eq!(&*t.route_in(1, b"/").unwrap().name, "rb");
    assert!(t.route_in(2, b"/").is_none());
}

// ---- validation ------------------------------------------------------------

#[test]
fn rejects_bad_domains_with_paths() {
    let errs = errors(vec![
        catch_all(
            "a",
            &["example.com", "", "*.*.com", "foo.*.com", "a b", "*"],
        ),
        catch_all(
            "b",
            &[
                "EXAMPLE.com",
                "*",
                "x:0",
                "x:99999",
                "x:",
                "::1",
                "[::1",
                "a]",
                "[::1]x",
                "x:*",
            ],
        ),
        catch_all("c", &[]),
    ]);
    assert_eq!(
        errs,
        [
            "virtual_hosts[0].domains[1]: must not be empty",
            "virtual_hosts[0].domains[2]: at most one wildcard '*' is allowed",
            "virtual_hosts[0].domains[3]: a wildcard '*' must be the whole domain, its first character \
             (*.example.com) or its last (api.*)",
            "virtual_hosts[0].domains[4]: invalid character ' ' (allowed: letters, digits, '-', '.', '_', ':', \
             '[', ']' and one leading or trailing '*')",
            "virtual_hosts[1].domains[0]: duplicate domain \"EXAMPLE.com\" (first at virtual_hosts[0].domains[0])",
            "virtual_hosts[1].domains[1]: duplicate domain \"*\" (first at virtual_hosts[0].domains[5])",
            "virtual_hosts[1].domains[2]: invalid port \"0\" (expected 1-65535)",
            "virtual_hosts[1].domains[3]: invalid port \"99999\" (expected 1-65535)",
            "virtual_hosts[1].domains[4]: invalid port \"\" (expected 1-65535)",
            "virtual_hosts[1].domains[5]: IPv6 addresses must be in brackets ([::1]:8080)",
            "virtual_hosts[1].domains[6]: '[' without a closing ']'",
            "virtual_hosts[1].domains[7]: ']' without a leading '[' (IPv6 literals are written [::1])",
            "virtual_hosts[1].domains[8]: unexpected \"x\" after ']' (expected :PORT)",
            "virtual_hosts[2].domains: at least one domain is required",
        ]
    );
}

#[test]
fn rejects_duplicate_domain_in_same_vhost_and_bad_names() {
    let errs = errors(vec![
        catch_all("a", &["x", "X"]),
        catch_all("", &["y"]),
        catch_all("a", &["z"]),
        catch_all("b", &["a-*", "*-a", "*.a:8080"]),
    ]);
    assert_eq!(
        errs,
        [
            "virtual_hosts[0].domains[1]: duplicate domain \"X\" (first at virtual_hosts[0].domains[0])",
            "virtual_hosts[1].name: must not be empty",
            "virtual_hosts[2].name: duplicate virtual host name \"a\" (first at virtual_hosts[0])",
        ]
    );
}

#[test]
fn rejects_bad_paths() {
    let errs = errors(vec![vhost(
        "v",
        &["*"],
        vec![
            route("ok", prefix("/")),
            route("a", prefix("")),
            route("b", exact("api")),
            route("c", prefix("/a?b")),
            route("d", exact("/a#b")),
            route("e", prefix("/a b")),
            route("f", exact("/a\tb")),
        ],
    )]);
    assert_eq!(
        errs,
        [
            "virtual_hosts[0].routes[1].match.prefix: \"\" must start with \"/\"",
            "virtual_hosts[0].routes[2].match.exact: \"api\" must start with \"/\"",
            "virtual_hosts[0].routes[3].match.prefix: \"/a?b\" must not contain '?' or '#' (routes match the path \
             without the query)",
            "virtual_hosts[0].routes[4].match.exact: \"/a#b\" must not contain '?' or '#' (routes match the path \
             without the query)",
            "virtual_hosts[0].routes[5].match.prefix: \"/a b\" must not contain whitespace or control characters",
            "virtual_hosts[0].routes[6].match.exact: \"/a\\tb\" must not contain whitespace or control characters",
        ]
    );
}

// ---- debug, serialize, send/sync ------------------------------------------

#[test]
fn debug_and_serialize() {
    let mut r = route("", prefix("/"));
    r.action.timeout = None;
    let t = RouteTable::build(
        "main",
        vec![vhost(
            "v",
            &["a", "*.b", "c.*", "*"],
            vec![route("h", exact("/healthz")), r],
        )],
    )
    .unwrap();
    let dbg = format!("{t:?}");
    assert!(
        dbg.starts_with("RouteTable { name: \"main\", virtual_hosts: ["),
        "{dbg}"
    );
    assert!(
        dbg.contains(
            "exact_domains: 1, suffix_wildcards: 1, prefix_wildcards: 1, has_default: true"
        ),
        "{dbg}"
    );
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(
        json,
        r#"{"name":"main","virtual_hosts":[{"name":"v","domains":["a","*.b","c.*","*"],"routes":[{"name":"h","match":{"exact":"/healthz"},"cluster":"c","cluster_idx":0,"timeout":"15s"},{"match":{"prefix":"/"},"cluster":"c","cluster_idx":0,"timeout":"0s"}]}]}"#
    );
    let e = BuildError {
        field: String::new(),
        reason: "r".into(),
    };
    assert_eq!(e.to_string(), "r");
}

#[test]
fn duration_format() {
    use crate::ser::format_duration as f;
    assert_eq!(f(Duration::ZERO), "0s");
    assert_eq!(f(Duration::from_secs(15)), "15s");
    assert_eq!(f(Duration::from_secs(120)), "2m");
    assert_eq!(f(Duration::from_secs(7200)), "2h");
    assert_eq!(f(Duration::from_secs(90)), "90s");
    assert_eq!(f(Duration::from_millis(1500)), "1500ms");
    assert_eq!(f(Duration::from_millis(250)), "250ms");
    assert_eq!(f(Duration::from_nanos(1_000_000_500)), "1.0000005s");
}

#[test]
fn table_is_send_sync_and_shareable() {
    fn check<T: Send + Sync + 'static>(_: &T) {}
    let t = Arc::new(RouteTable::build("t", vec![catch_all("d", &["*"])]).unwrap());
    check(&t);
    let t2 = Arc::clone(&t);
    std::thread::spawn(move || assert!(t2.route(b"x", b"/").is_some()))
        .join()
        .unwrap();
}

// ---- equivalence with a brute-force reference ------------------------------

/// splitmix64: small, deterministic, good enough to drive a fuzzer.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn reference_route<'a>(
    vhosts: &'a [VirtualHost],
    authority: &[u8],
    path: &[u8],
) -> Option<&'a Route> {
    let v = reference_vhost(vhosts, authority)?;
    vhosts[v]
        .routes
        .iter()
        .find(|r| reference_path_match(&r.path, path))
}

/// Path matching as specified. Regexes are only the shapes the random
/// tables generate (no metacharacters but a trailing `.*`).
fn reference_path_match(m: &PathMatch, path: &[u8]) -> bool {
    match m {
        PathMatch::Exact(p) => p.as_bytes() == path,
        PathMatch::Prefix(p) => path.starts_with(p.as_bytes()),
        PathMatch::Regex(p) => match p.strip_suffix(".*") {
            Some(pre) => path.starts_with(pre.as_bytes()),
            None => p.as_bytes() == path,
        },
    }
}

const PATH_PIECES: &[&str] = &[
    "", "a", "b", "ab", "/", "/a", "/b", "/ab", "api", "/v1", "x/",
];
const LABELS: &[&str] = &["a", "b", "ab", "foo", "x-y", "com", "Example", "FOO"];
const PORTS: &[&str] = &["80", "8080", "9"];

fn random_path(rng: &mut Rng) -> String {
    let mut p = String::from("/");
    for _ in 0..rng.below(5) {
        p.push_str(rng.pick(PATH_PIECES));
    }
    p
}

fn random_host(rng: &mut Rng) -> String {
    let mut labels: Vec<&str> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        labels.push(rng.pick(LABELS));
    }
    labels.join(if rng.chance(80) { "." } else { "-" })
}

fn random_domain(rng: &mut Rng) -> String {
    let mut d = match rng.below(10) {
        0 => return "*".into(),
        1..=2 => format!(
            "*{}{}",
            if rng.chance(70) { "." } else { "-" },
            random_host(rng)
        ),
        3..=4 => format!(
            "{}{}*",
            random_host(rng),
            if rng.chance(70) { "." } else { "-" }
        ),
        5 => format!("*{}", random_host(rng)),
        _ => random_host(rng),
    };
    if rng.chance(20) && !d.ends_with('*') {
        d.push(':');
        d.push_str(rng.pick(PORTS));
    }
    d
}

fn random_authority(rng: &mut Rng) -> String {
    let mut a = random_host(rng);
    if rng.chance(10) {
        a.push('.');
        a.push_str(rng.pick(LABELS));
    }
    if rng.chance(40) {
        a.push(':');
        a.push_str(rng.pick(PORTS));
    }
    if rng.chance(5) {
        a.clear();
    }
    if rng.chance(50) {
        a = a.to_ascii_uppercase();
    }
    a
}

fn random_table(rng: &mut Rng, max_vhosts: usize, max_routes: usize) -> Vec<VirtualHost> {
    let mut seen = std::collections::HashSet::new();
    let mut vhosts = Vec::new();
    for v in 0..1 + rng.below(max_vhosts) {
        let mut domains = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let d = random_domain(rng);
            if seen.insert(d.to_ascii_lowercase()) {
                domains.push(d.into_boxed_str());
            }
        }
        if domains.is_empty() {
            continue;
        }
        let routes = (0..rng.below(max_routes + 1))
            .map(|r| {
                let p = random_path(rng);
                let m = if rng.chance(30) {
                    PathMatch::Exact(p.into())
                } else {
                    PathMatch::Prefix(p.into())
                };
                route(&format!("v{v}r{r}"), m)
            })
            .collect();
        vhosts.push(VirtualHost {
            name: format!("v{v}").into(),
            domains,
            routes,
        });
    }
    vhosts
}

#[test]
fn matches_reference_on_random_tables() {
    let mut rng = Rng(0x5eed_f00d);
    for _ in 0..400 {
        let vhosts = random_table(&mut rng, 6, 25);
        let table =
            RouteTable::build("t", vhosts.clone()).unwrap_or_else(|e| panic!("{e:?}\n{vhosts:#?}"));
        for _ in 0..100 {
            let authority = random_authority(&mut rng);
            let path = random_path(&mut rng);
            let got = table.find_vhost_index(authority.as_bytes());
            let want = reference_vhost(&vhosts, authority.as_bytes());
            assert_eq!(got, want, "authority {authority:?} in {vhosts:#?}");
            let got = table
                .route(authority.as_bytes(), path.as_bytes())
                .map(|r| &r.name);
            let want =
                reference_route(&vhosts, authority.as_bytes(), path.as_bytes()).map(|r| &r.name);
            assert_eq!(got, want, "{authority:?} {path:?} in {vhosts:#?}");
        }
    }
}

#[test]
fn matches_reference_with_a_thousand_routes() {
    let mut rng = Rng(42);
    for _ in 0..5 {
        let mut routes = Vec::new();
        for r in 0..1000 {
            // Realistic-looking, deeply shared prefixes.
            let mut p = format!("/svc{}/v{}", rng.below(20), rng.below(3));
            for _ in 0..rng.below(3) {
                p.push('/');
                p.push_str(rng.pick(PATH_PIECES));
            }
            let m = if rng.chance(40) {
                PathMatch::Exact(p.into())
            } else {
                PathMatch::Prefix(p.into())
            };
            routes.push(route(&format!("r{r}"), m));
        }
        let vhosts = vec![vhost("v", &["*"], routes)];
        let table = RouteTable::build("t", vhosts.clone()).unwrap();
        for _ in 0..5000 {
            let mut path = format!("/svc{}/v{}", rng.below(22), rng.below(4));
            for _ in 0..rng.below(4) {
                path.push('/');
                path.push_str(rng.pick(PATH_PIECES));
            }
            let got = table.route(b"h", path.as_bytes()).map(|r| &r.name);
            let want = reference_route(&vhosts, b"h", path.as_bytes()).map(|r| &r.name);
            assert_eq!(got, want, "{path:?}");
        }
    }
}

#[test]
fn insertion_splits_edges_in_any_order() {
    // Keys inserted long-to-short and diverging mid-edge.
    let keys = ["/abcdef", "/abcxyz", "/abc", "/ab", "/a", "/abcdeg", "/b"];
    for rot in 0..keys.len() {
        let mut ks = keys.to_vec();
        ks.rotate_left(rot);
        let vhosts = vec![vhost(
            "v",
            &["*"],
            ks.iter()
                .enumerate()
                .map(|(i, k)| route(&i.to_string(), prefix(k)))
                .collect(),
        )];
        let t = RouteTable::build("t", vhosts.clone()).unwrap();
        for p in [
            "/", "/a", "/ab", "/abc", "/abcd", "/abcdef", "/abcdefg", "/abcdeg", "/abcx",
            "/abcxyz1", "/b", "/c",
        ] {
            assert_eq!(
                t.route(b"h", p.as_bytes()).map(|r| &r.name),
                reference_route(&vhosts, b"h", p.as_bytes()).map(|r| &r.name),
                "{p} with {ks:?}"
            );
        }
    }
}
