//! Routes with regex paths, header and query-parameter conditions, and
//! weighted destinations: configuration order is what decides.

use super::*;

fn hdr(name: &str, m: StringMatch) -> HeaderMatcher {
    HeaderMatcher::new(name, m)
}

fn ex(s: &str) -> StringMatch {
    StringMatch::Exact(s.into())
}

fn with_headers(mut r: Route, headers: Vec<HeaderMatcher>) -> Route {
    r.headers = headers;
    r
}

fn with_query(mut r: Route, q: Vec<QueryParameterMatcher>) -> Route {
    r.query_parameters = q;
    r
}

fn table(routes: Vec<Route>) -> RouteTable {
    RouteTable::build("t", vec![vhost("v", &["*"], routes)]).unwrap()
}

/// The name of the route chosen for `target` with `headers` (GET, http).
fn pick<'t, const N: usize>(
    t: &'t RouteTable,
    method: &str,
    target: &str,
    headers: &[(&str, &str); N],
) -> Option<&'t str> {
    let req = Request::new(b"host.test", b"")
        .with_target(target.as_bytes())
        .with_method(method.as_bytes())
        .with_scheme(b"http")
        .with_headers(headers);
    t.route_request(&req).map(|r| &*r.name)
}

#[test]
fn configuration_order_decides_between_mixed_routes() {
    let t = table(vec![
        route("exact-health", exact("/healthz")),
        with_headers(
            route("jason", prefix("/reviews")),
            vec![hdr("end-user", ex("jason"))],
        ),
        route("regex-v", PathMatch::Regex("/reviews/v[0-9]+".into())),
        route("reviews", prefix("/reviews")),
        with_headers(
            route("never-header", prefix("/reviews/")),
            vec![hdr("end-user", ex("jason"))],
        ),
        route("regex-late", PathMatch::Regex("/other/.*".into())),
        with_headers(
            route("late-cond", prefix("/")),
            vec![HeaderMatcher::present("x-late", true)],
        ),
        route("all", prefix("/")),
    ]);
    let none: [(&str, &str); 0] = [];
    let jason = [("End-User", "jason")];
    assert_eq!(pick(&t, "GET", "/healthz", &jason), Some("exact-health"));
    assert_eq!(pick(&t, "GET", "/reviews/1", &jason), Some("jason"));
    assert_eq!(pick(&t, "GET", "/reviews/1", &none), Some("reviews"));
    assert_eq!(pick(&t, "GET", "/reviews/v2", &none), Some("regex-v"));
    assert_eq!(
        pick(&t, "GET", "/reviews/v2", &jason),
        Some("jason"),
        "an earlier header route beats a later regex route"
    );
    assert_eq!(
        pick(&t, "GET", "/reviews/v2?x=1", &none),
        Some("regex-v"),
        "regexes match the path without the query"
    );
    assert_eq!(pick(&t, "GET", "/reviews/v2x", &none), Some("reviews"));
    // A regex or conditional route after a matching plain one never wins.
    assert_eq!(
        pick(&t, "GET", "/other/x", &[("x-late", "1")]),
        Some("regex-late")
    );
    assert_eq!(pick(&t, "GET", "/x", &[("x-late", "1")]), Some("late-cond"));
    assert_eq!(pick(&t, "GET", "/x", &none), Some("all"));
}

#[test]
fn routes_without_a_plain_fallback() {
    let t = table(vec![
        with_headers(route("v2", prefix("/")), vec![hdr("end-user", ex("jason"))]),
        route("v1-regex", PathMatch::Regex("/api/.*".into())),
        with_query(
            route("debug", exact("/q")),
            vec![QueryParameterMatcher::new("debug", ex("1"))],
        ),
    ]);
    let none: [(&str, &str); 0] = [];
    assert_eq!(
        pick(&t, "GET", "/anything", &[("end-user", "jason")]),
        Some("v2")
    );
    assert_eq!(pick(&t, "GET", "/api/x", &none), Some("v1-regex"));
    assert_eq!(pick(&t, "GET", "/q?debug=1", &none), Some("debug"));
    assert_eq!(pick(&t, "GET", "/q?debug=0", &none), None);
    assert_eq!(pick(&t, "GET", "/anything", &none), None);
}

#[test]
fn inverted_and_presence_conditions() {
    let t = table(vec![
        with_headers(
            route("not-jason", prefix("/")),
            vec![hdr("end-user", ex("jason")).inverted()],
        ),
        with_headers(
            route("no-user", prefix("/")),
            vec![HeaderMatcher::present("end-user", false)],
        ),
        route("rest", prefix("/")),
    ]);
    assert_eq!(
        pick(&t, "GET", "/", &[("end-user", "bob")]),
        Some("not-jason")
    );
    assert_eq!(pick(&t, "GET", "/", &[("end-user", "jason")]), Some("rest"));
    // Envoy: an inverted value rule does not match a missing header.
    assert_eq!(pick(&t, "GET", "/", &[("other", "x")]), Some("no-user"));
}

#[test]
fn method_authority_and_scheme_routes() {
    let t = table(vec![
        with_headers(route("post", prefix("/")), vec![hdr(":method", ex("POST"))]),
        with_headers(
            route("admin-host", prefix("/")),
            vec![hdr(":authority", StringMatch::Prefix("admin.".into()))],
        ),
        with_headers(
            route("https", prefix("/")),
            vec![hdr(":scheme", ex("https"))],
        ),
        route("rest", prefix("/")),
    ]);
    let none: [(&str, &str); 0] = [];
    assert_eq!(pick(&t, "POST", "/x", &none), Some("post"));
    assert_eq!(pick(&t, "GET", "/x", &none), Some("rest"));
    let req = Request::new(b"admin.example.com", b"/x").with_method(b"GET");
    assert_eq!(t.route_request(&req).map(|r| &*r.name), Some("admin-host"));
    let req = Request::new(b"h", b"/x").with_scheme(b"https");
    assert_eq!(t.route_request(&req).map(|r| &*r.name), Some("https"));
}

#[test]
fn multi_valued_headers_match_their_joined_value() {
    let t = table(vec![
        with_headers(route("both", prefix("/")), vec![hdr("x-tag", ex("a,b"))]),
        with_headers(route("one", prefix("/")), vec![hdr("x-tag", ex("a"))]),
    ]);
    assert_eq!(
        pick(&t, "GET", "/", &[("x-tag", "a"), ("X-Tag", "b")]),
        Some("both")
    );
    assert_eq!(pick(&t, "GET", "/", &[("x-tag", "a")]), Some("one"));
    assert_eq!(
        pick(&t, "GET", "/", &[("x-tag", "b"), ("x-tag", "a")]),
        None
    );
}

#[test]
fn several_conditions_must_all_hold() {
    let t = table(vec![
        with_query(
            with_headers(
                route("all", prefix("/api")),
                vec![hdr("x-a", ex("1")), hdr(":method", ex("PUT"))],
            ),
            vec![
                QueryParameterMatcher::present("q", true),
                QueryParameterMatcher::new("v", StringMatch::Regex("[0-9]+".into())),
            ],
        ),
        route("rest", prefix("/")),
    ]);
    let a = [("x-a", "1")];
    assert_eq!(pick(&t, "PUT", "/api?q&v=12", &a), Some("all"));
    assert_eq!(pick(&t, "GET", "/api?q&v=12", &a), Some("rest"));
    assert_eq!(pick(&t, "PUT", "/api?v=12", &a), Some("rest"));
    assert_eq!(pick(&t, "PUT", "/api?q&v=1x", &a), Some("rest"));
    assert_eq!(
        pick(&t, "PUT", "/api?q&v=12", &[("x-a", "2")]),
        Some("rest")
    );
    assert_eq!(pick(&t, "PUT", "/ap?q&v=12", &a), Some("rest"));
}

#[test]
fn case_insensitive_paths_keep_their_place_in_order() {
    let mut ci = route("ci-exact", exact("/Ratings"));
    ci.path_ignore_case = true;
    let mut ci_prefix = route("ci-prefix", prefix("/API/"));
    ci_prefix.path_ignore_case = true;
    let t = table(vec![
        route("cs", exact("/ratings")),
        ci,
        ci_prefix,
        route("api", prefix("/api/")),
        route("all", prefix("/")),
    ]);
    let none: [(&str, &str); 0] = [];
    assert_eq!(pick(&t, "GET", "/ratings", &none), Some("cs"));
    assert_eq!(pick(&t, "GET", "/RATINGS", &none), Some("ci-exact"));
    assert_eq!(pick(&t, "GET", "/RATINGS/x", &none), Some("all"));
    assert_eq!(pick(&t, "GET", "/api/x", &none), Some("ci-prefix"));
    assert_eq!(pick(&t, "GET", "/Api/x", &none), Some("ci-prefix"));
    assert_eq!(pick(&t, "GET", "/Ap/x", &none), Some("all"));
    let mut bad = route("r", PathMatch::Regex("/x".into()));
    bad.path_ignore_case = true;
    assert_eq!(
        errors(vec![vhost("v", &["*"], vec![bad])]),
        ["virtual_hosts[0].routes[0].match.ignore_case: applies only to prefix and exact paths; \
          write (?i) in the regex instead"]
    );
}

#[test]
fn a_request_without_a_path_matches_nothing() {
    // CONNECT has no path: not even a regex accepting "" routes it.
    let t = table(vec![
        route("empty", PathMatch::Regex(".*".into())),
        route("all", prefix("/")),
    ]);
    let connect = Request::new(b"h", b"").with_method(b"CONNECT");
    assert_eq!(t.route_request(&connect).map(|r| &*r.name), None);
    assert_eq!(t.route(b"h", b"/x").map(|r| &*r.name), Some("empty"));
}

#[test]
fn plain_lookup_apis_see_a_request_without_headers() {
    let t = table(vec![
        with_headers(
            route("absent", prefix("/")),
            vec![HeaderMatcher::present("x", false)],
        ),
        route("rest", prefix("/")),
    ]);
    assert_eq!(t.route(b"h", b"/").map(|r| &*r.name), Some("absent"));
    assert_eq!(t.route_in(0, b"/").map(|r| &*r.name), Some("absent"));
}

#[test]
fn many_nested_conditional_prefixes_spill_and_keep_order() {
    // 40 conditional prefixes, each one character longer, all on the walk
    // of the same path: more lists than fit on the stack.
    let mut routes = Vec::new();
    for i in 0..40 {
        let p = format!("/{}", "a".repeat(i));
        routes.push(with_headers(
            route(&format!("r{i}"), prefix(&p)),
            vec![hdr("x-n", ex(&i.to_string()))],
        ));
    }
    routes.push(route("rest", prefix("/")));
    let t = table(routes);
    let path = format!("/{}", "a".repeat(50));
    for i in [0, 15, 16, 17, 39] {
        let n = i.to_string();
        let lines = [("x-n", n.as_str())];
        let want = format!("r{i}");
        assert_eq!(pick(&t, "GET", &path, &lines), Some(want.as_str()));
    }
    assert_eq!(pick(&t, "GET", &path, &[("x-n", "40")]), Some("rest"));
}

#[test]
fn weighted_actions_pick_by_weight() {
    let split = WeightedClusters::new(vec![
        WeightedCluster {
            cluster: ClusterRef {
                name: "v1".into(),
                index: 0,
            },
            weight: 90,
        },
        WeightedCluster {
            cluster: ClusterRef {
                name: "v2".into(),
                index: 1,
            },
            weight: 10,
        },
    ])
    .unwrap();
    let mut r = route("canary", prefix("/"));
    r.action.destination = Destination::Weighted(split);
    let t = table(vec![r]);
    let route = t.route(b"h", b"/x").unwrap();
    let mut state = 0x1234_5678_u64;
    let mut v2 = 0;
    for _ in 0..10_000 {
        let c = route.action.pick(|| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        });
        if c.index == 1 {
            v2 += 1;
        }
    }
    assert!((800..=1_200).contains(&v2), "v2 picked {v2} times in 10000");
}

#[test]
fn condition_errors_name_their_fields() {
    let mut bad_q = route("q", prefix("/"));
    bad_q.query_parameters = vec![
        QueryParameterMatcher::present("", true),
        QueryParameterMatcher::new("x", StringMatch::Regex("(".into())),
    ];
    let errs = errors(vec![vhost(
        "v",
        &["*"],
        vec![
            route("r", PathMatch::Regex("/v[".into())),
            with_headers(
                route("h", prefix("/")),
                vec![
                    hdr("host", ex("x")),
                    hdr("x-a", StringMatch::Prefix("".into())),
                    HeaderMatcher {
                        rule: HeaderMatch::Value(StringMatcher {
                            pattern: StringMatch::Regex("a".into()),
                            ignore_case: true,
                        }),
                        ..HeaderMatcher::present(":status", true)
                    },
                ],
            ),
            bad_q,
            route("after", prefix("no-slash")),
        ],
    )]);
    assert_eq!(
        errs,
        [
            "virtual_hosts[0].routes[0].match.regex: invalid regex \"/v[\": unclosed character class",
            "virtual_hosts[0].routes[1].match.headers[0].name: the Host header is matched as \":authority\" (as in Envoy); use that name",
            "virtual_hosts[0].routes[1].match.headers[1].prefix: must not be empty",
            "virtual_hosts[0].routes[1].match.headers[2].name: unknown pseudo-header \":status\" (supported: :method, :authority, :path, :scheme)",
            "virtual_hosts[0].routes[2].match.query_parameters[0].name: must not be empty",
            "virtual_hosts[0].routes[2].match.query_parameters[1].regex: invalid regex \"(\": unclosed group",
            "virtual_hosts[0].routes[3].match.prefix: \"no-slash\" must start with \"/\"",
        ]
    );
}

#[test]
fn serializes_conditions_and_weighted_clusters() {
    let mut r = with_query(
        with_headers(
            route("r", PathMatch::Regex("/v[0-9]".into())),
            vec![
                HeaderMatcher {
                    treat_missing_as_empty: true,
                    rule: HeaderMatch::Value(StringMatcher {
                        pattern: StringMatch::Suffix("n".into()),
                        ignore_case: true,
                    }),
                    ..hdr("end-user", ex("")).inverted()
                },
                HeaderMatcher::present(":method", true),
            ],
        ),
        vec![QueryParameterMatcher::present("debug", false)],
    );
    r.action.destination = Destination::Weighted(
        WeightedClusters::new(vec![
            WeightedCluster {
                cluster: ClusterRef {
                    name: "a".into(),
                    index: 0,
                },
                weight: 3,
            },
            WeightedCluster {
                cluster: ClusterRef {
                    name: "b".into(),
                    index: 1,
                },
                weight: 1,
            },
        ])
        .unwrap(),
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "name": "r",
            "match": {
                "regex": "/v[0-9]",
                "headers": [
                    { "name": "end-user", "suffix": "n", "ignore_case": true, "invert": true, "treat_missing_as_empty": true },
                    { "name": ":method", "present": true }
                ],
                "query_parameters": [{ "name": "debug", "present": false }]
            },
            "weighted_clusters": [
                { "cluster": "a", "cluster_idx": 0, "weight": 3 },
                { "cluster": "b", "cluster_idx": 1, "weight": 1 }
            ],
            "timeout": "15s"
        })
    );
}

// ---- equivalence with a brute-force reference --------------------------------

/// A request of the random tests: one `x-v` header (or none), one `q`
/// parameter (or none).
#[derive(Debug)]
struct RefReq {
    path: String,
    x_v: Option<&'static str>,
    q: Option<&'static str>,
}

const VALUES: &[&str] = &["a", "b", "c"];

/// The conditions as specified (Envoy's truth table written out).
fn reference_conditions(r: &Route, req: &RefReq) -> bool {
    r.headers.iter().all(|h| {
        let rule_holds = |v: &str| match &h.rule {
            HeaderMatch::Present(p) => *p,
            HeaderMatch::Value(StringMatcher {
                pattern: StringMatch::Exact(e),
                ..
            }) => **e == *v,
            other => unreachable!("{other:?}"),
        };
        match req.x_v {
            Some(v) => rule_holds(v) != h.invert,
            None => match h.rule {
                // Absent: "present: P" holds when P is false; inverted
                // when P is true. Value rules fail either way.
                HeaderMatch::Present(p) => {
                    let asks_for_absence = !p;
                    asks_for_absence != h.invert
                }
                HeaderMatch::Value(_) => false,
            },
        }
    }) && r.query_parameters.iter().all(|q| match (&q.rule, req.q) {
        (QueryMatch::Present(p), v) => v.is_some() == *p,
        (
            QueryMatch::Value(StringMatcher {
                pattern: StringMatch::Exact(e),
                ..
            }),
            Some(v),
        ) => **e == *v,
        (QueryMatch::Value(_), None) => false,
        (other, _) => unreachable!("{other:?}"),
    })
}

fn random_conditional_route(rng: &mut Rng, name: String) -> Route {
    let p = random_path(rng);
    let path = match rng.below(10) {
        0..=2 => PathMatch::Exact(p.into()),
        3 => PathMatch::Regex(p.into()),
        4 => PathMatch::Regex(format!("{p}.*").into()),
        _ => PathMatch::Prefix(p.into()),
    };
    let mut r = route(&name, path);
    r.path_ignore_case = !matches!(r.path, PathMatch::Regex(_)) && rng.chance(15);
    if rng.chance(50) {
        for _ in 0..1 + rng.below(2) {
            let m = if rng.chance(30) {
                HeaderMatcher::present("X-V", rng.chance(50))
            } else {
                hdr("x-v", ex(rng.pick(VALUES)))
            };
            r.headers
                .push(if rng.chance(30) { m.inverted() } else { m });
        }
    }
    if rng.chance(30) {
        r.query_parameters.push(if rng.chance(40) {
            QueryParameterMatcher::present("q", rng.chance(50))
        } else {
            QueryParameterMatcher::new("q", ex(rng.pick(VALUES)))
        });
    }
    r
}

#[test]
fn mixed_tables_match_a_linear_scan_in_order() {
    let mut rng = Rng(0x00c0_ffee);
    for round in 0..300 {
        let routes: Vec<Route> = (0..rng.below(30))
            .map(|i| random_conditional_route(&mut rng, format!("r{i}")))
            .collect();
        let vhosts = vec![vhost("v", &["*"], routes)];
        let t = RouteTable::build("t", vhosts.clone())
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        for _ in 0..200 {
            let path = random_path(&mut rng);
            let req = RefReq {
                // Upper case exercises the case-insensitive routes.
                path: if rng.chance(20) {
                    path.to_uppercase()
                } else {
                    path
                },
                x_v: rng.chance(70).then(|| rng.pick(VALUES)),
                q: rng.chance(50).then(|| rng.pick(VALUES)),
            };
            let target = match req.q {
                Some(q) => format!("{}?z=1&q={q}", req.path),
                None => format!("{}?z=1", req.path),
            };
            let lines: Vec<(&str, &str)> = match req.x_v {
                Some(v) => vec![("accept", "*/*"), ("X-v", v)],
                None => vec![("accept", "*/*")],
            };
            let r = Request::new(b"h", b"")
                .with_target(target.as_bytes())
                .with_headers(&lines);
            let got = t.route_request(&r).map(|r| &*r.name);
            let want = vhosts[0]
                .routes
                .iter()
                .find(|r| {
                    let path_holds = if r.path_ignore_case {
                        let lower = |m: &PathMatch| match m {
                            PathMatch::Exact(p) => PathMatch::Exact(p.to_lowercase().into()),
                            PathMatch::Prefix(p) => PathMatch::Prefix(p.to_lowercase().into()),
                            PathMatch::Regex(_) => unreachable!(),
                        };
                        reference_path_match(&lower(&r.path), req.path.to_lowercase().as_bytes())
                    } else {
                        reference_path_match(&r.path, req.path.as_bytes())
                    };
                    path_holds && reference_conditions(r, &req)
                })
                .map(|r| &*r.name);
            assert_eq!(got, want, "{req:?} in {:#?}", vhosts[0].routes);
        }
    }
}
