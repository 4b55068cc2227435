//! Snapshot compile (`ringmesh-config::compile`) for a large static
//! configuration: 1,000 routes over 10 virtual hosts, 100 clusters of 3
//! endpoints, 4 listeners. Parsing the YAML is measured apart.
use std::{fmt::Write, hint::black_box};

use criterion::{criterion_group, criterion_main, Criterion};

fn yaml() -> String {
    let mut s = String::from("admin: { address: 127.0.0.1:15000 }\nlisteners:\n");
    for i in 0..4 {
        let _ = writeln!(
            s,
            "  - {{ name: http-{i}, address: 127.0.0.1:{}, protocol: http, route_config: main }}",
            15100 + i
        );
    }
    s.push_str("route_configs:\n  - name: main\n    virtual_hosts:\n");
    for v in 0..10 {
        let domains = if v == 9 {
            "\"*\"".to_string()
        } else {
            format!("\"svc-{v}.example.com\", \"*.svc-{v}.example.org\"")
        };
        let _ = writeln!(
            s,
            "      - name: vh-{v}\n        domains: [{domains}]\n        routes:"
        );
        for r in 0..100 {
            let m = if r % 2 == 0 {
                format!("exact: \"/api/{r}/items\"")
            } else {
                format!("prefix: \"/p{r}/\"")
            };
            let _ = writeln!(
                s,
                "          - {{ match: {{ {m} }}, cluster: c{}, timeout: 5s }}",
                (v * 100 + r) % 100
            );
        }
    }
    s.push_str("clusters:\n");
    for c in 0..100 {
        let _ = writeln!(s, "  - name: c{c}\n    connect_timeout: 1s\n    endpoints:");
        for e in 0..3 {
            let _ = writeln!(s, "      - {{ address: 127.0.{}.{}:8080 }}", c, e + 1);
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = yaml();
    let model = ringmesh_config::parse_yaml(&text, None).expect("benchmark config parses");
    ringmesh_config::compile(&model, 1).expect("benchmark config compiles");
    let mut g = c.benchmark_group("config/1000-routes-100-clusters");
    g.bench_function("parse_yaml", |b| {
        b.iter(|| black_box(ringmesh_config::parse_yaml(black_box(&text), None)))
    });
    g.bench_function("compile", |b| {
        b.iter(|| black_box(ringmesh_config::compile(black_box(&model), 1)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
