//! The hot path promises no allocation in steady state: once a
//! `RequestHead`/`ResponseHead` and the output buffer have grown to size,
//! parsing, scanning chunked bodies and writing heads allocate nothing.
//!
//! A counting global allocator lives in this separate test binary because
//! the library itself forbids `unsafe`.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ringmesh_http1::{
    parse_request, parse_response, write_downstream_response, write_local_response,
    write_upstream_request, ChunkedDecoder, ForwardInfo, Limits, Method, ParseStatus, RequestHead,
    ResponseHead,
};

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

#[test]
fn steady_state_request_path_does_not_allocate() {
    let req: &[u8] = b"POST http://svc.ns:8080/api/v1/items?limit=10 HTTP/1.1\r\nHost: svc.ns:8080\r\n\
        User-Agent: load/1.0\r\nAccept: application/json\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
        X-Forwarded-For: 1.2.3.4\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
    let body: &[u8] = b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n";
    let resp: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
        Connection: keep-alive\r\n\r\n";
    let limits = Limits::default();
    let mut rh = RequestHead::default();
    let mut sh = ResponseHead::default();
    let mut out = Vec::with_capacity(4096);
    let extra: &[(&str, &[u8])] = &[("x-ringmesh-cluster", b"svc")];

    let round = |rh: &mut RequestHead, sh: &mut ResponseHead, out: &mut Vec<u8>, ip: IpAddr| {
        out.clear();
        assert_eq!(
            parse_request(req, &limits, rh),
            Ok(ParseStatus::Complete(req.len()))
        );
        let info = ForwardInfo {
            client_ip: ip,
            proto: "http",
            request_id: Some(b"id-1"),
            strip_expect: true,
            extra_headers: extra,
        };
        write_upstream_request(req, rh, &info, out);
        let mut dec = ChunkedDecoder::new();
        assert_eq!(dec.scan(body), Ok(body.len()));
        assert!(dec.is_done());
        assert_eq!(
            parse_response(resp, &limits, Method::Post, sh),
            Ok(ParseStatus::Complete(resp.len()))
        );
        write_downstream_response(resp, sh, false, out);
        write_local_response(503, b"no healthy upstream", true, extra, out);
        // Partial and rejected heads take the same allocation-free path.
        assert_eq!(
            parse_request(&req[..40], &limits, rh),
            Ok(ParseStatus::Partial)
        );
        assert!(parse_request(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", &limits, rh).is_err());
    };
    // The counter itself works.
    assert_eq!(
        allocations_during(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(8)))),
        1
    );
    // Warm up: the header Vecs grow once.
    round(
        &mut rh,
        &mut sh,
        &mut out,
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    );
    for ip in [
        IpAddr::V4(Ipv4Addr::new(192, 168, 100, 200)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let n = allocations_during(|| round(&mut rh, &mut sh, &mut out, ip));
        assert_eq!(n, 0, "allocations in steady state for {ip}");
    }
}
