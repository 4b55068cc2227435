//! An Envoy `Cluster` and a `ClusterLoadAssignment` from the control plane
//! (CDS + EDS). Input: a 2-byte little-endian length, that many bytes of
//! Cluster, the rest a ClusterLoadAssignment. Both are decoded as protobufs
//! and converted by the proxy's xDS client; an accepted cluster is held
//! (with the assignment, under the EDS service name it asks for) behind a
//! TCP listener and compiled.
//!
//! Checks: never panics; rejections name the resource and give a reason;
//! the same bytes under another type URL are rejected; an accepted cluster
//! keeps its name, an EDS cluster wants exactly its service's assignment;
//! an accepted assignment has only non-zero weights; when the whole
//! configuration compiles, the cluster is there and an EDS cluster has
//! exactly the assignment's endpoints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmesh_config::model::ProxyConfig;
use ringmesh_fuzz::xds::{compile_held, convert_checked, tcp_listener};
use ringmesh_xds_client::{Converted, ResourceType, XdsState};

const NAME: &str = "fuzz-cluster";

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (cluster_bytes, cla_bytes) = rest.split_at(split);

    let endpoints = match convert_checked(ResourceType::ClusterLoadAssignment, NAME, cla_bytes) {
        Some(Converted::Endpoints(eps)) => {
            assert!(eps.iter().all(|e| e.weight >= 1), "{eps:?}");
            Some(eps)
        }
        Some(other) => panic!("a ClusterLoadAssignment converted into {other:?}"),
        None => None,
    };

    let t = ResourceType::Cluster;
    let Some(converted) = convert_checked(t, NAME, cluster_bytes) else {
        return;
    };
    let Converted::Cluster(c) = &converted else {
        panic!("a Cluster converted into {converted:?}");
    };
    assert_eq!(c.spec.name, NAME);

    let mut xds = XdsState::default();
    xds.insert(t, NAME, "1", converted.clone());
    let wanted = xds.wanted(ResourceType::ClusterLoadAssignment);
    match &c.eds_service {
        Some(service) => {
            assert!(wanted.len() == 1 && wanted.contains(service), "{wanted:?}");
            if let Some(eps) = &endpoints {
                xds.insert(
                    ResourceType::ClusterLoadAssignment,
                    service,
                    "1",
                    Converted::Endpoints(eps.clone()),
                );
            }
        }
        None => assert!(wanted.is_empty(), "{wanted:?}"),
    }
    let base = ProxyConfig {
        listeners: vec![tcp_listener(NAME)],
        ..ProxyConfig::default()
    };
    let Some(snapshot) = compile_held(&xds, &base) else {
        return;
    };
    let compiled = snapshot
        .clusters
        .iter()
        .find(|k| &*k.name == NAME)
        .expect("the held cluster is compiled");
    if let (Some(_), Some(eps)) = (&c.eds_service, &endpoints) {
        assert_eq!(compiled.endpoints.len(), eps.len(), "EDS endpoints lost");
    }
});
