//! Lookups must not allocate: count allocations around them with a
//! wrapping global allocator. One test per binary, so no other thread
//! allocates while the counter is read.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use ringmesh_route::{
    HeaderMatcher, PathMatch, QueryParameterMatcher, Request, Route, RouteAction, RouteTable,
    StringMatch, VirtualHost,
};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// wrapper only bumps a counter, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` via `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn route(name: &str, path: PathMatch) -> Route {
    Route::new(
        name,
        path,
        RouteAction::cluster(Arc::from("c"), 0, Some(Duration::from_secs(1))),
    )
}

#[test]
fn lookups_do_not_allocate() {
    let mut routes: Vec<Route> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                route(
                    &format!("r{i}"),
                    PathMatch::Prefix(format!("/svc{i}/").into()),
                )
            } else {
                route(
                    &format!("r{i}"),
                    PathMatch::Exact(format!("/svc{i}").into()),
                )
            }
        })
        .collect();
    // Routes with conditions and regexes before the catch-all: matching
    // them reads the request in place too.
    let mut jason = route("jason", PathMatch::Prefix("/svc".into()));
    jason.headers = vec![
        HeaderMatcher::new("end-user", StringMatch::Exact("jason".into())),
        HeaderMatcher::new(":method", StringMatch::Regex("GET|HEAD".into())),
    ];
    routes.push(jason);
    let mut debug = route("debug", PathMatch::Regex("/dbg/[a-z]+".into()));
    debug.query_parameters = vec![QueryParameterMatcher::new(
        "trace",
        StringMatch::Prefix("on".into()),
    )];
    routes.push(debug);
    // A header sent on two lines is matched joined, on the stack.
    let mut tags = route("tags", PathMatch::Exact("/tags".into()));
    tags.headers = vec![HeaderMatcher::new(
        "x-tag",
        StringMatch::Exact("a,b".into()),
    )];
    routes.push(tags);
    routes.push(route("root", PathMatch::Prefix("/".into())));
    let vhosts = vec![
        VirtualHost {
            name: "api".into(),
            domains: vec!["api.example.com".into(), "*.api.example.com".into()],
            routes,
        },
        VirtualHost {
            name: "rest".into(),
            domains: vec!["*".into(), "web.*".into()],
            routes: vec![route("all", PathMatch::Prefix("/".into()))],
        },
    ];
    let table = RouteTable::build("t", vhosts).unwrap();
    let long_upper = format!("{}.API.EXAMPLE.COM", "X".repeat(100));
    let cases: &[(&[u8], &[u8], &str)] = &[
        (b"api.example.com", b"/svc998/x", "r998"),
        (b"API.Example.COM:8443", b"/svc999", "r999"),
        (b"a.b.api.example.com", b"/nope", "root"),
        (long_upper.as_bytes(), b"/svc2/", "r2"),
        (b"WEB.example.org", b"/", "all"),
        (b"other", b"/svc1", "all"),
    ];
    let lines = [
        ("Accept", "*/*"),
        ("X-Tag", "a"),
        ("End-User", "jason"),
        ("x-tag", "b"),
    ];
    // (method, target, expected route)
    let conditional: &[(&[u8], &[u8], &str)] = &[
        (b"GET", b"/svcX?a=1", "jason"),
        (b"POST", b"/svcX?a=1", "root"),
        (b"GET", b"/dbg/abc?x&trace=on1", "debug"),
        (b"GET", b"/dbg/ABC?trace=on", "root"),
        (b"GET", b"/tags", "tags"),
    ];
    let lookup = |method: &[u8], target: &[u8]| {
        let req = Request::new(b"api.example.com", b"")
            .with_target(target)
            .with_method(method)
            .with_headers(&lines);
        table.route_request(&req).map(|r| &*r.name)
    };
    // Warm up anything lazily initialised by the test harness itself, and
    // the regexes' per-thread scratch space.
    let _ = table.route(b"x", b"/");
    for (method, target, _) in conditional {
        let _ = lookup(method, target);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..100 {
        for (authority, path, want) in cases {
            let got = table.route(authority, path).map(|r| &*r.name);
            assert!(got == Some(*want));
        }
        for (method, target, want) in conditional {
            let got = lookup(method, target);
            assert!(got == Some(*want));
        }
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "route lookups allocated");
}
