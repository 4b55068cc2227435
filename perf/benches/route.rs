//! Route matching over 1,000 routes (`ringmesh-route`): first-match order
//! kept, so the interesting cases are an early hit, a late hit, a late
//! prefix hit and a miss that falls through to the catch-all.
use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ringmesh_route::{PathMatch, Route, RouteAction, RouteTable, VirtualHost};

const ROUTES: usize = 1_000;

/// 10 virtual hosts; the last one has 1,000 routes: 500 exact paths, then
/// 499 prefixes, then a catch-all `/`.
fn vhosts() -> Vec<VirtualHost> {
    let action = |i: usize| {
        RouteAction::cluster(
            Arc::from(format!("svc-{}", i % 50)),
            (i % 50) as u32,
            Some(Duration::from_secs(15)),
        )
    };
    let mut routes = Vec::with_capacity(ROUTES);
    for i in 0..ROUTES / 2 {
        routes.push(Route::new(
            &format!("exact-{i}"),
            PathMatch::Exact(format!("/api/v1/service-{i}/items").into()),
            action(i),
        ));
    }
    for i in 0..ROUTES / 2 - 1 {
        routes.push(Route::new(
            &format!("prefix-{i}"),
            PathMatch::Prefix(format!("/static/bundle-{i}/").into()),
            action(i),
        ));
    }
    routes.push(Route::new(
        "default",
        PathMatch::Prefix("/".into()),
        action(0),
    ));
    let mut v: Vec<VirtualHost> = (0..9)
        .map(|i| VirtualHost {
            name: Arc::from(format!("other-{i}")),
            domains: vec![
                format!("other-{i}.example.com").into(),
                format!("*.other-{i}.example.org").into(),
            ],
            routes: vec![Route::new("all", PathMatch::Prefix("/".into()), action(i))],
        })
        .collect();
    v.push(VirtualHost {
        name: Arc::from("shop"),
        domains: vec![
            "shop.example.com".into(),
            "*.shop.example.com".into(),
            "*".into(),
        ],
        routes,
    });
    v
}

fn bench(c: &mut Criterion) {
    let table = RouteTable::build("main", vhosts()).expect("benchmark routes are valid");
    let mut g = c.benchmark_group("route/1000");
    let cases: [(&str, &[u8], &[u8], &str); 5] = [
        (
            "exact-first",
            b"shop.example.com",
            b"/api/v1/service-0/items",
            "exact-0",
        ),
        (
            "exact-last",
            b"shop.example.com",
            b"/api/v1/service-499/items",
            "exact-499",
        ),
        (
            "prefix-last",
            b"shop.example.com:8080",
            b"/static/bundle-498/app.js",
            "prefix-498",
        ),
        (
            "fallthrough",
            b"www.shop.example.com",
            b"/nothing/matches/here",
            "default",
        ),
        ("other-vhost", b"a.other-3.example.org", b"/x", "all"),
    ];
    for (name, authority, path, want) in cases {
        let got = table.route(authority, path).map(|r| &*r.name);
        assert_eq!(got, Some(want), "{name}: wrong route");
        g.bench_function(name, |b| {
            b.iter(|| black_box(table.route(black_box(authority), black_box(path))))
        });
    }
    g.bench_function("build", |b| {
        b.iter_batched(
            vhosts,
            |v| black_box(RouteTable::build("main", v)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
