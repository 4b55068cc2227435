//! An Envoy `RouteConfiguration` from the control plane (RDS): arbitrary
//! bytes decoded as the protobuf and converted by the proxy's xDS client,
//! then, if accepted, compiled behind an HTTP listener that uses it (every
//! cluster it names is added empty, as the client does for clusters it does
//! not hold) and a few requests routed through the compiled table: each
//! domain and each route's own path.
//!
//! Checks: never panics; a rejection names the resource and gives a
//! reason; the same bytes under another type URL are rejected; an accepted
//! configuration keeps its name and every route names a cluster or a
//! non-empty weighted split; a compiled snapshot serializes; routing
//! through it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmesh_config::{model::ProxyConfig, ListenerKind};
use ringmesh_fuzz::xds::{compile_held, convert_checked, http_listener};
use ringmesh_xds_client::{Converted, ResourceType, XdsState};

const NAME: &str = "fuzz-route";

fuzz_target!(|data: &[u8]| {
    let t = ResourceType::RouteConfiguration;
    let Some(converted) = convert_checked(t, NAME, data) else {
        return;
    };
    let Converted::Route(rc) = &converted else {
        panic!("a RouteConfiguration converted into {converted:?}");
    };
    assert_eq!(rc.name, NAME);
    for r in rc.virtual_hosts.iter().flat_map(|vh| &vh.routes) {
        match (&r.cluster, &r.weighted_clusters) {
            (Some(c), None) => assert!(!c.is_empty()),
            (None, Some(w)) => assert!(!w.is_empty()),
            _ => panic!("a route needs a cluster xor weighted clusters: {r:?}"),
        }
    }

    let mut xds = XdsState::default();
    xds.insert(t, NAME, "1", converted.clone());
    let base = ProxyConfig {
        listeners: vec![http_listener(NAME)],
        ..ProxyConfig::default()
    };
    let Some(snapshot) = compile_held(&xds, &base) else {
        return;
    };
    let ListenerKind::Http { routes } = &snapshot.listeners[0].kind else {
        panic!(
            "the HTTP listener compiled into {:?}",
            snapshot.listeners[0]
        );
    };
    let paths: Vec<&str> = rc
        .virtual_hosts
        .iter()
        .flat_map(|vh| &vh.routes)
        .filter_map(|r| r.matcher.prefix.as_deref().or(r.matcher.exact.as_deref()))
        .chain(["/", "/a"])
        .take(16)
        .collect();
    let domains = rc
        .virtual_hosts
        .iter()
        .flat_map(|vh| &vh.domains)
        .map(|d| d.replace('*', "x"))
        .take(8);
    for domain in domains {
        for path in &paths {
            if let Some(route) = routes.route(domain.as_bytes(), path.as_bytes()) {
                let cluster = route.action.pick(|| 0x9e37_79b9_7f4a_7c15);
                assert!((cluster.index as usize) < snapshot.clusters.len());
            }
        }
    }
});
