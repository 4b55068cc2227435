//! L7 routing through the real proxy, as an Istio VirtualService would ask
//! for it: a route by header (`end-user: jason` → v2), by regex path, by
//! method and by query parameter, and a 90/10 weighted split, each answered
//! by real backends that name themselves (`x-backend`).

use ringmesh_e2e::{on_both_drivers, Backend, Client, Driver, Proxy};
use serde_json::{json, Value};

struct Setup {
    _v1: Backend,
    _v2: Backend,
    proxy: Proxy,
}

fn config(v1: &Backend, v2: &Backend) -> Value {
    json!({
        "listeners": [{ "name": "http", "address": "auto", "protocol": "http", "route_config": "main" }],
        "route_configs": [{
            "name": "main",
            "virtual_hosts": [
                {
                    "name": "reviews",
                    "domains": ["reviews.test"],
                    "routes": [
                        {
                            "name": "jason",
                            "match": { "prefix": "/", "headers": [{ "name": "end-user", "exact": "jason" }] },
                            "cluster": "v2"
                        },
                        {
                            "name": "numbered",
                            "match": { "regex": "/reviews/[0-9]+" },
                            "cluster": "v2"
                        },
                        {
                            "name": "post",
                            "match": { "prefix": "/", "headers": [{ "name": ":method", "exact": "POST" }] },
                            "cluster": "v2"
                        },
                        {
                            "name": "debug",
                            "match": { "prefix": "/", "query_parameters": [{ "name": "debug", "exact": "1" }] },
                            "cluster": "v2"
                        },
                        { "name": "default", "match": { "prefix": "/" }, "cluster": "v1" }
                    ]
                },
                {
                    "name": "canary",
                    "domains": ["canary.test"],
                    "routes": [{
                        "match": { "prefix": "/" },
                        "weighted_clusters": [
                            { "cluster": "v1", "weight": 90 },
                            { "cluster": "v2", "weight": 10 }
                        ]
                    }]
                }
            ]
        }],
        "clusters": [
            { "name": "v1", "endpoints": [{ "address": v1.addr().to_string() }] },
            { "name": "v2", "endpoints": [{ "address": v2.addr().to_string() }] }
        ]
    })
}

fn setup(driver: Driver) -> Setup {
    let v1 = Backend::start("v1");
    let v2 = Backend::start("v2");
    let proxy = Proxy::start(driver, config(&v1, &v2));
    Setup {
        _v1: v1,
        _v2: v2,
        proxy,
    }
}

/// The backend that answered `method target` on `host` with `headers`
/// (each request on a connection of its own).
fn answered_by(
    s: &Setup,
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut c = Client::connect(s.proxy.addr("http"));
    let body: &[u8] = if method == "POST" { b"payload" } else { b"" };
    let r = c
        .request(method, host, target, headers, body)
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
    assert_eq!(r.status, 200, "{method} {target}: {}", r.status_line);
    r.header("x-backend").unwrap_or("-").to_string()
}

fn header_route(driver: Driver) {
    let s = setup(driver);
    let get =
        |headers: &[(&str, &str)]| answered_by(&s, "GET", "reviews.test", "/productpage", headers);
    assert_eq!(get(&[("end-user", "jason")]), "v2");
    assert_eq!(
        get(&[("End-User", "jason")]),
        "v2",
        "header names are case-insensitive"
    );
    assert_eq!(
        get(&[("end-user", "Jason")]),
        "v1",
        "values are case-sensitive"
    );
    assert_eq!(get(&[("end-user", "bob")]), "v1");
    assert_eq!(get(&[]), "v1");
    assert_eq!(
        get(&[("end-user", "jason"), ("end-user", "bob")]),
        "v1",
        "several lines are matched joined (\"jason,bob\"), as in Envoy"
    );
}

fn regex_path_route(driver: Driver) {
    let s = setup(driver);
    let get = |target: &str| answered_by(&s, "GET", "reviews.test", target, &[]);
    assert_eq!(get("/reviews/12"), "v2");
    assert_eq!(
        get("/reviews/12?page=3"),
        "v2",
        "the query is not part of the path"
    );
    assert_eq!(
        get("/reviews/12/ratings"),
        "v1",
        "the regex must match the whole path"
    );
    assert_eq!(get("/reviews/abc"), "v1");
    assert_eq!(get("/x/reviews/12"), "v1");
}

fn method_match(driver: Driver) {
    let s = setup(driver);
    assert_eq!(
        answered_by(&s, "POST", "reviews.test", "/ratings", &[]),
        "v2"
    );
    assert_eq!(
        answered_by(&s, "GET", "reviews.test", "/ratings", &[]),
        "v1"
    );
    assert_eq!(
        answered_by(&s, "PUT", "reviews.test", "/ratings", &[]),
        "v1"
    );
}

fn query_param_match(driver: Driver) {
    let s = setup(driver);
    let get = |target: &str| answered_by(&s, "GET", "reviews.test", target, &[]);
    assert_eq!(get("/p?debug=1"), "v2");
    assert_eq!(get("/p?a=b&debug=1"), "v2");
    assert_eq!(get("/p?debug=10"), "v1");
    assert_eq!(get("/p?debug"), "v1");
    assert_eq!(
        get("/p?debug=0&debug=1"),
        "v1",
        "only the first value counts"
    );
    assert_eq!(get("/p"), "v1");
}

/// 2,000 requests on keep-alive connections: v2 gets 10% ± 3 points, and
/// the per-cluster metrics count the cluster each request was sent to.
fn weighted_split(driver: Driver) {
    let s = setup(driver);
    const N: usize = 2_000;
    let (mut v1, mut v2) = (0usize, 0usize);
    let mut c = Client::connect(s.proxy.addr("http"));
    for i in 0..N {
        // A fresh connection now and then: picks are per request, not per
        // connection.
        if i % 500 == 499 {
            c = Client::connect(s.proxy.addr("http"));
        }
        let r = c.get("canary.test", &format!("/item/{i}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.status_line);
        match r.header("x-backend") {
            Some("v1") => v1 += 1,
            Some("v2") => v2 += 1,
            other => panic!("request {i} answered by {other:?}"),
        }
    }
    let share = v2 as f64 * 100.0 / N as f64;
    assert!(
        (7.0..=13.0).contains(&share),
        "v2 got {v2} of {N} requests ({share:.1}%), expected 10% ± 3"
    );
    s.proxy.wait_metric(
        "ringmesh_upstream_rq_total",
        &[("cluster", "v1")],
        v1 as f64,
    );
    s.proxy.wait_metric(
        "ringmesh_upstream_rq_total",
        &[("cluster", "v2")],
        v2 as f64,
    );
}

on_both_drivers!(
    header_route,
    regex_path_route,
    method_match,
    query_param_match,
    weighted_split
);
