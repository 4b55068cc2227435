//! HTTP/1 head parse and upstream rewrite (`ringmesh-http1`), per request,
//! on a minimal request (what load generators send) and a browser-like one.
use std::{hint::black_box, net::IpAddr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringmesh_http1::{
    parse_request, write_upstream_request, ForwardInfo, Limits, ParseStatus, RequestHead,
};

const SMALL: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:15001\r\n\r\n";

const BROWSER: &[u8] = b"GET /api/v1/catalog/items?page=2&sort=price HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://shop.example.com/catalog\r\n\
Connection: keep-alive\r\n\
Cookie: session=4f9c2a7e1b3d4c5e6f708192a3b4c5d6; theme=dark; consent=1\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
X-Forwarded-For: 203.0.113.7\r\n\
X-Request-Id: 9b2f6a0c-3d4e-4f5a-8b6c-7d8e9f0a1b2c\r\n\
traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
\r\n";

fn parse(buf: &[u8], head: &mut RequestHead) {
    match parse_request(buf, &Limits::default(), head) {
        Ok(ParseStatus::Complete(_)) => {}
        other => panic!("benchmark request did not parse: {other:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let info = ForwardInfo {
        client_ip: IpAddr::from([10, 0, 0, 7]),
        proto: "http",
        request_id: None,
        strip_expect: false,
        extra_headers: &[],
    };
    for (name, req) in [("small", SMALL), ("browser", BROWSER)] {
        let mut g = c.benchmark_group(format!("http1/{name}"));
        g.throughput(Throughput::Bytes(req.len() as u64));
        let mut head = RequestHead::default();
        g.bench_function("parse_request", |b| {
            b.iter(|| {
                parse(black_box(req), &mut head);
                black_box(head.head_len)
            })
        });
        parse(req, &mut head);
        let mut out = Vec::with_capacity(4096);
        g.bench_function("write_upstream_request", |b| {
            b.iter(|| {
                out.clear();
                write_upstream_request(black_box(req), &head, &info, &mut out);
                black_box(out.len())
            })
        });
        let mut head2 = RequestHead::default();
        g.bench_function("parse+rewrite", |b| {
            b.iter(|| {
                parse(black_box(req), &mut head2);
                out.clear();
                write_upstream_request(req, &head2, &info, &mut out);
                black_box(out.len())
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
