//! RM0106: DestinationRule subsets that no VirtualService uses.
//!
//! A subset is used when a VirtualService routes or mirrors to it: the
//! destination's host (expanded in the VirtualService's namespace) is
//! covered by the rule's host, the rule is visible from that namespace,
//! and the subset name matches. Traffic can reach an unused subset only
//! through a VirtualService outside the input, so this is information — a
//! leftover after a rollout, or a route that was meant to be written.

use ringmesh_istio::{Destination, VirtualService};

use super::{
    hosts::{exported_to, host_matches},
    Field, Finding, Mesh,
};

/// Every destination a VirtualService sends traffic or mirrors to.
fn destinations(vs: &VirtualService) -> impl Iterator<Item = &Destination> {
    let http = vs.http.iter().flat_map(|r| {
        r.route
            .iter()
            .map(|d| &d.destination)
            .chain(r.mirror.iter())
            .chain(r.mirrors.iter().map(|m| &m.destination))
    });
    let tcp = vs
        .tcp
        .iter()
        .flat_map(|r| r.route.iter().map(|d| &d.destination));
    let tls = vs
        .tls
        .iter()
        .flat_map(|r| r.route.iter().map(|d| &d.destination));
    http.chain(tcp).chain(tls)
}

pub(super) fn check(mesh: &Mesh<'_>) -> Vec<Finding> {
    let m = mesh.model;
    // (namespace the destination is resolved in, fqdn, subset)
    let used: Vec<(&str, String, &str)> = m
        .virtual_services
        .iter()
        .flat_map(|vs| {
            let ns = vs.meta.namespace.as_str();
            destinations(&vs.spec).filter_map(move |d| {
                let subset = d.subset.as_deref()?;
                Some((ns, mesh.fqdn(&d.host, ns), subset))
            })
        })
        .collect();
    let mut out = Vec::new();
    for dr in &m.destination_rules {
        let pattern = mesh.fqdn(&dr.spec.host, &dr.meta.namespace);
        for (i, subset) in dr.spec.subsets.iter().enumerate() {
            let is_used = used.iter().any(|(ns, host, name)| {
                *name == subset.name
                    && host_matches(&pattern, host)
                    && exported_to(&dr.spec.export_to, &dr.meta.namespace, ns)
            });
            if !is_used {
                out.push(Finding::new(
                    dr,
                    Field::root().key("spec").key("subsets").index(i),
                    format!(
                        "subset {:?} is not used by any VirtualService in the analyzed resources",
                        subset.name
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{super::test_util::run, *};

    const DR: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: prod}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
  - {name: v4, labels: {version: v4}}
";

    #[test]
    fn subsets_nothing_routes_or_mirrors_to() {
        let yaml = format!(
            "{DR}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: prod}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews, subset: v1}}}}]
    mirror: {{host: reviews.prod.svc.cluster.local, subset: v3}}
"
        );
        assert_eq!(
            run(check, &yaml),
            [
                "DestinationRule prod/reviews spec.subsets[1]: subset \"v2\" is not used by any \
                 VirtualService in the analyzed resources",
                "DestinationRule prod/reviews spec.subsets[3]: subset \"v4\" is not used by any \
                 VirtualService in the analyzed resources",
            ]
        );
    }

    #[test]
    fn tcp_and_tls_routes_use_subsets_too() {
        let yaml = format!(
            "{DR}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: r, namespace: test}}
spec:
  hosts: [reviews, reviews.prod.svc.cluster.local]
  tcp:
  - route: [{{destination: {{host: reviews.prod.svc.cluster.local, subset: v1}}}}]
  tls:
  - match: [{{sniHosts: [reviews.prod.svc.cluster.local]}}]
    route: [{{destination: {{host: reviews.prod.svc.cluster.local, subset: v2}}}}]
"
        );
        let found = run(check, &yaml);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].contains("\"v3\""), "{found:#?}");
        assert!(found[1].contains("\"v4\""), "{found:#?}");
    }
}
