//! RM0102: two VirtualServices for sidecars claiming the same host.
//!
//! For sidecars Istio applies one VirtualService per host (the oldest), so
//! the routes of the others are silently ignored; `istioctl analyze` calls
//! this IST0109. Hosts are compared fully qualified, and only when some
//! namespace sees both resources (`exportTo`). Gateway VirtualServices are
//! left out: Istio merges those. The finding is on the later resource (by
//! namespace, then name), naming the first one.

use super::{hosts::visible_together, Field, Finding, Mesh};

pub(super) fn check(mesh: &Mesh<'_>) -> Vec<Finding> {
    let vss: Vec<_> = mesh
        .model
        .virtual_services
        .iter()
        .filter(|v| v.spec.applies_to_mesh())
        .collect();
    let hosts_of = |i: usize| -> Vec<String> {
        let v = vss[i];
        v.spec
            .hosts
            .iter()
            .map(|h| mesh.fqdn(h, &v.meta.namespace))
            .collect()
    };
    let mut out = Vec::new();
    for (b, vs) in vss.iter().enumerate() {
        for (j, host) in hosts_of(b).iter().enumerate() {
            let first = (0..b).find(|&a| {
                let other = vss[a];
                hosts_of(a).contains(host)
                    && visible_together(
                        (&other.spec.export_to, &other.meta.namespace),
                        (&vs.spec.export_to, &vs.meta.namespace),
                    )
            });
            let Some(a) = first else { continue };
            let other = vss[a];
            out.push(Finding::new(
                vs,
                Field::root().key("spec").key("hosts").index(j),
                format!(
                    "host {host} is also routed by VirtualService {}/{} ({}); sidecars apply only \
                     one VirtualService per host, so the other's routes are ignored: merge them, \
                     or split them with delegate VirtualServices",
                    other.meta.namespace, other.meta.name, other.origin
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{super::test_util::run, *};

    fn vs(name: &str, ns: &str, extra: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {{name: {name}, namespace: {ns}}}\nspec:\n\
             \x20 hosts: [reviews.prod.svc.cluster.local]\n{extra}\
             \x20 http:\n  - route:\n    - destination: {{host: reviews.prod.svc.cluster.local}}\n"
        )
    }

    #[test]
    fn same_host_twice_is_a_conflict_on_the_later_resource() {
        let yaml = vs("a", "prod", "") + &vs("b", "prod", "  exportTo: ['*']\n");
        assert_eq!(
            run(check, &yaml),
            [
                "VirtualService prod/b spec.hosts[0]: host reviews.prod.svc.cluster.local is also \
              routed by VirtualService prod/a (t.yaml:2); sidecars apply only one VirtualService \
              per host, so the other's routes are ignored: merge them, or split them with \
              delegate VirtualServices"
            ]
        );
        // The short name is the same host.
        let short = vs("a", "prod", "")
            + &vs("b", "prod", "").replace(
                "hosts: [reviews.prod.svc.cluster.local]",
                "hosts: [reviews]",
            );
        assert_eq!(run(check, &short).len(), 1);
    }

    #[test]
    fn no_conflict_when_no_namespace_sees_both_or_on_gateways() {
        let private =
            vs("a", "one", "  exportTo: ['.']\n") + &vs("b", "two", "  exportTo: ['.']\n");
        assert_eq!(run(check, &private), Vec::<String>::new());
        let gateway = vs("a", "prod", "") + &vs("b", "prod", "  gateways: [ingress]\n");
        assert_eq!(run(check, &gateway), Vec::<String>::new());
        let other_host = vs("a", "prod", "")
            + &vs("b", "prod", "").replace(
                "hosts: [reviews.prod.svc.cluster.local]",
                "hosts: [ratings]",
            );
        assert_eq!(run(check, &other_host), Vec::<String>::new());
    }
}
