//! An Envoy `Listener` from the control plane: arbitrary bytes decoded as
//! the protobuf (prost) and converted by the proxy's xDS client
//! (`ringmesh_xds_client::translate::convert`), then, if accepted, held and
//! compiled like the proxy does (`XdsState::to_proxy_config` +
//! `ringmesh_config::compile`). An RDS listener gets a catch-all route
//! configuration of the name it asks for, so it does not stay warming.
//!
//! Checks: never panics; a rejection names the resource and gives a
//! reason; the same bytes under another type URL are rejected; an accepted
//! listener keeps its name, is HTTP with a route configuration (inline xor
//! RDS) or TCP with a cluster, and is warming exactly until its RDS route
//! configuration arrives; a compiled snapshot serializes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmesh_config::model::{
    ListenerProtocol, ProxyConfig, RouteConfigSpec, RouteMatchSpec, RouteSpec, VirtualHostSpec,
};
use ringmesh_fuzz::xds::{compile_held, convert_checked};
use ringmesh_xds_client::{translate::inline_route_name, Converted, ResourceType, XdsState};

const NAME: &str = "fuzz-listener";

fuzz_target!(|data: &[u8]| {
    let t = ResourceType::Listener;
    let Some(converted) = convert_checked(t, NAME, data) else {
        return;
    };
    let Converted::Listener(l) = &converted else {
        panic!("a Listener converted into {converted:?}");
    };
    assert_eq!(l.spec.name, NAME);
    match l.spec.protocol {
        ListenerProtocol::Http => {
            assert!(l.spec.cluster.is_none(), "{l:?}");
            let route = l
                .spec
                .route_config
                .as_deref()
                .expect("an HTTP listener's route");
            match (&l.inline_route, &l.rds) {
                (Some(inline), None) => {
                    assert_eq!(route, inline_route_name(NAME));
                    assert_eq!(inline.name, route);
                }
                (None, Some(rds)) => assert_eq!(route, rds),
                _ => panic!("an HTTP listener needs an inline route xor RDS: {l:?}"),
            }
        }
        ListenerProtocol::Tcp => {
            assert!(l.spec.route_config.is_none() && l.inline_route.is_none() && l.rds.is_none());
            assert!(
                l.spec.cluster.as_deref().is_some_and(|c| !c.is_empty()),
                "{l:?}"
            );
        }
    }

    let mut xds = XdsState::default();
    xds.insert(t, NAME, "1", converted.clone());
    if let Some(rds) = &l.rds {
        assert_eq!(xds.warming_listeners(), [NAME]);
        assert!(xds.wanted(ResourceType::RouteConfiguration).contains(rds));
        xds.insert(
            ResourceType::RouteConfiguration,
            rds,
            "1",
            Converted::Route(catch_all(rds)),
        );
    }
    assert!(xds.warming_listeners().is_empty());
    compile_held(&xds, &ProxyConfig::default());
});

fn catch_all(name: &str) -> RouteConfigSpec {
    RouteConfigSpec {
        name: name.into(),
        virtual_hosts: vec![VirtualHostSpec {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![RouteSpec {
                name: None,
                matcher: RouteMatchSpec {
                    prefix: Some("/".into()),
                    ..RouteMatchSpec::default()
                },
                cluster: Some("fuzz-backend".into()),
                weighted_clusters: None,
                timeout: None,
                retry_policy: None,
            }],
        }],
    }
}
