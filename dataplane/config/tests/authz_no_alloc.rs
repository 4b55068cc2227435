//! Authorization on the hot path allocates nothing: normalizing a path
//! (already normal, or rewritten into a reused buffer) and evaluating a
//! listener's RBAC chain — the shape istiod generates: AUDIT, DENY,
//! ALLOW with nested rules, headers, paths, principals and CIDRs.
//!
//! A counting global allocator lives in this separate test binary because
//! the library itself forbids `unsafe`.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use ringmesh_config::authz::AuthzInput;
use ringmesh_http1::{normalize_path, Normalized, PathNormalization};
use ringmesh_route::Request;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: delegates every call to `System` unchanged; the only addition is a
// const-initialised thread-local counter, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

const CONFIG: &str = r#"
listeners:
  - name: in
    address: 127.0.0.1:8080
    protocol: http
    route_config: main
    rbac:
      - rules:
          action: LOG
          policies:
            audit: { permissions: [ { url_path: { prefix: /api/ } } ], principals: [ { any: true } ] }
      - rules:
          action: DENY
          policies:
            deny-net:
              permissions: [ { any: true } ]
              principals: [ { remote_ip: 192.0.2.0/24 } ]
            deny-admin:
              permissions: [ { or_rules: { rules: [ { url_path: { prefix: /admin } }, { header: { name: x-debug, present: true } } ] } } ]
              principals: [ { not_id: { authenticated: { principal_name: { suffix: /sa/ops } } } } ]
      - rules:
          action: ALLOW
          policies:
            charge:
              permissions:
                - and_rules:
                    rules:
                      - header: { name: ":method", exact: POST }
                      - url_path: { exact: /api/v1/charge }
                      - header: { name: ":authority", exact: payments, ignore_case: true }
                      - destination_port: 8080
              principals:
                - or_ids:
                    ids:
                      - authenticated: { principal_name: { exact: "spiffe://cluster.local/ns/default/sa/frontend" } }
                      - authenticated: { principal_name: { regex: "spiffe://cluster.local/ns/billing/.*" } }
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: { prefix: "/" }
            cluster: backend
clusters:
  - name: backend
    endpoints: [{ address: "127.0.0.1:9000" }]
"#;

#[test]
fn normalizing_and_authorizing_allocate_nothing() {
    let snap = ringmesh_config::load_str(CONFIG, None).unwrap_or_else(|e| panic!("{e}"));
    let chain = &snap.listeners[0].rbac;
    let headers = [("user-agent", "load/1.0"), ("accept", "*/*")];
    let opts = PathNormalization::SAFE;
    let mut scratch = Vec::with_capacity(256);
    let mut allowed = 0;
    let mut denied = 0;
    // The first round warms up what is made once per thread (the regex
    // engine's match cache); the second is counted.
    let mut round = |count: bool| {
        for (path, principal) in [
            (
                "/api/v1/charge",
                "spiffe://cluster.local/ns/default/sa/frontend",
            ),
            (
                "/api//v1/./charge",
                "spiffe://cluster.local/ns/billing/sa/x",
            ),
            (
                "/api/v1/charge",
                "spiffe://cluster.local/ns/default/sa/intruder",
            ),
            (
                "/admin/%2e%2e/api/v1/charge",
                "spiffe://cluster.local/ns/default/sa/frontend",
            ),
        ] {
            for _ in 0..100 {
                let normal = match normalize_path(path.as_bytes(), &opts, &mut scratch) {
                    Ok(Normalized::Unchanged) => path.as_bytes(),
                    Ok(_) => &scratch[..],
                    Err(e) => panic!("{e:?}"),
                };
                let req = Request::new(b"Payments", normal)
                    .with_method(b"POST")
                    .with_headers(&headers);
                let v = chain.evaluate(&AuthzInput {
                    request: Some(&req),
                    peer: "10.1.2.3".parse().unwrap(),
                    destination: "127.0.0.1:8080".parse().unwrap(),
                    principal: Some(principal),
                    sni: None,
                });
                if !count {
                } else if v.denied.is_some() {
                    denied += 1;
                } else {
                    allowed += 1;
                }
            }
        }
    };
    round(false);
    let n = allocations_during(|| round(true));
    assert_eq!((allowed, denied), (300, 100));
    assert_eq!(n, 0, "allocations while normalizing and authorizing");
}
