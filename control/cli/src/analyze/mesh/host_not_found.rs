//! RM0101: a VirtualService host that nothing in the input defines.
//!
//! A host is known when a ServiceEntry host (wildcards included), a
//! Kubernetes Service, or a DestinationRule host of the input covers it.
//! The input is rarely the whole cluster, so this is a warning that says
//! so. Only VirtualServices for sidecars (`mesh`) are checked: the hosts of
//! a gateway-only VirtualService are external names, not services.
//! Wildcard hosts and IP addresses name no single service and are skipped.

use std::net::IpAddr;

use super::{hosts::host_matches, Field, Finding, Mesh};

pub(super) fn check(mesh: &Mesh<'_>) -> Vec<Finding> {
    let m = mesh.model;
    let mut known: Vec<String> = Vec::new();
    for se in &m.service_entries {
        known.extend(
            se.spec
                .hosts
                .iter()
                .map(|h| mesh.fqdn(h, &se.meta.namespace)),
        );
    }
    for (ns, name) in &mesh.services {
        known.push(mesh.fqdn(name, ns));
    }
    for dr in &m.destination_rules {
        known.push(mesh.fqdn(&dr.spec.host, &dr.meta.namespace));
    }

    let mut out = Vec::new();
    for vs in m
        .virtual_services
        .iter()
        .filter(|v| v.spec.applies_to_mesh())
    {
        for (i, host) in vs.spec.hosts.iter().enumerate() {
            if host.starts_with('*') || host.parse::<IpAddr>().is_ok() {
                continue;
            }
            let fq = mesh.fqdn(host, &vs.meta.namespace);
            if known.iter().any(|k| host_matches(k, &fq)) {
                continue;
            }
            let shown = if fq == host.as_str() {
                fq
            } else {
                format!("{host:?} ({fq})")
            };
            out.push(Finding::new(
                vs,
                Field::root().key("spec").key("hosts").index(i),
                format!(
                    "host {shown} not found in the analyzed resources (no ServiceEntry, Service \
                     or DestinationRule for it); it may be a Kubernetes Service not included"
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{super::test_util::run, *};

    const VS: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v}
spec:
  hosts: [ratings, api.example.com, payments.shop.svc.cluster.local, '*.wild.example', 10.0.0.1]
  http:
  - route:
    - destination: {host: ratings}
";

    #[test]
    fn reports_each_unknown_host() {
        assert_eq!(
            run(check, VS),
            [
                "VirtualService default/v spec.hosts[0]: host \"ratings\" \
                 (ratings.default.svc.cluster.local) not found in the analyzed resources (no \
                 ServiceEntry, Service or DestinationRule for it); it may be a Kubernetes Service \
                 not included",
                "VirtualService default/v spec.hosts[1]: host api.example.com not found in the \
                 analyzed resources (no ServiceEntry, Service or DestinationRule for it); it may \
                 be a Kubernetes Service not included",
                "VirtualService default/v spec.hosts[2]: host payments.shop.svc.cluster.local not \
                 found in the analyzed resources (no ServiceEntry, Service or DestinationRule for \
                 it); it may be a Kubernetes Service not included",
            ]
        );
    }

    #[test]
    fn service_entries_services_and_destination_rules_define_hosts() {
        let yaml = format!(
            "{VS}---
apiVersion: v1
kind: Service
metadata: {{name: ratings}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: e, namespace: other}}
spec:
  hosts: ['*.example.com']
  ports: [{{number: 443, name: https, protocol: TLS}}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: p, namespace: shop}}
spec:
  host: payments
"
        );
        assert_eq!(run(check, &yaml), Vec::<String>::new());
    }

    #[test]
    fn gateway_only_virtual_services_are_not_checked() {
        let yaml = VS.replace("  http:", "  gateways: [ingress]\n  http:");
        assert_eq!(run(check, &yaml), Vec::<String>::new());
    }
}
