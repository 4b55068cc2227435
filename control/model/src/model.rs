//! [`Model`]: every valid resource, and the cross-resource checks.

use std::collections::BTreeSet;

use crate::{
    diagnostic::{codes, Diagnostic, ResourceRef, Severity},
    meta::Resource,
    path::FieldPath,
    validate::Issue,
    AuthorizationPolicy, Destination, DestinationRule, PeerAuthentication, ServiceEntry, Sidecar,
    VirtualService,
};

/// The default Kubernetes cluster domain.
pub const DEFAULT_DOMAIN_SUFFIX: &str = "cluster.local";

/// The valid resources, each list sorted by (namespace, name) — unique
/// within a kind — so that the same input always gives the same model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    pub virtual_services: Vec<Resource<VirtualService>>,
    pub destination_rules: Vec<Resource<DestinationRule>>,
    pub service_entries: Vec<Resource<ServiceEntry>>,
    pub sidecars: Vec<Resource<Sidecar>>,
    pub peer_authentications: Vec<Resource<PeerAuthentication>>,
    pub authorization_policies: Vec<Resource<AuthorizationPolicy>>,
}

impl Model {
    /// Number of resources of all kinds.
    pub fn len(&self) -> usize {
        self.virtual_services.len()
            + self.destination_rules.len()
            + self.service_entries.len()
            + self.sidecars.len()
            + self.peer_authentications.len()
            + self.authorization_policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn sort(&mut self) {
        fn by_name<T>(v: &mut [Resource<T>]) {
            v.sort_by(|a, b| {
                (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name))
            });
        }
        by_name(&mut self.virtual_services);
        by_name(&mut self.destination_rules);
        by_name(&mut self.service_entries);
        by_name(&mut self.sidecars);
        by_name(&mut self.peer_authentications);
        by_name(&mut self.authorization_policies);
    }

    /// Check references between resources, with the default cluster domain
    /// (`cluster.local`): every subset a VirtualService routes or mirrors to
    /// is defined by a DestinationRule for that host visible from the
    /// VirtualService's namespace, and every `delegate` names a loaded
    /// delegate VirtualService. Errors are about the referring resource;
    /// their line is the resource's own (the loaders, which still have the
    /// text, point at the field instead and drop the resource).
    pub fn validate_references(&self) -> Vec<Diagnostic> {
        self.reference_issues(DEFAULT_DOMAIN_SUFFIX)
            .into_iter()
            .map(|(r, origin, issue)| Diagnostic {
                severity: issue.severity,
                code: issue.code,
                file: origin.file.clone(),
                resource: Some(r),
                field: Some(issue.path.to_string()),
                line: Some(origin.line),
                column: None,
                message: issue.message,
            })
            .collect()
    }

    pub(crate) fn reference_issues(
        &self,
        domain_suffix: &str,
    ) -> Vec<(ResourceRef, &crate::Origin, Issue)> {
        let mut out = Vec::new();
        for vs in &self.virtual_services {
            let ns = vs.meta.namespace.as_str();
            let mut issue = |path: FieldPath, message: String| {
                out.push((
                    vs.reference(),
                    &vs.origin,
                    Issue {
                        severity: Severity::Error,
                        code: codes::REFERENCE_NOT_FOUND,
                        path,
                        message,
                    },
                ));
            };
            let spec = FieldPath::root().key("spec");
            for (path, dest) in destinations(&vs.spec, &spec) {
                if let Some(message) = self.subset_problem(dest, ns, domain_suffix) {
                    issue(path.key("subset"), message);
                }
            }
            for (i, route) in vs.spec.http.iter().enumerate() {
                let Some(d) = &route.delegate else { continue };
                let target_ns = d.namespace.as_deref().unwrap_or(ns);
                let path = spec.key("http").index(i).key("delegate");
                match self
                    .virtual_services
                    .iter()
                    .find(|v| v.meta.name == d.name && v.meta.namespace == target_ns)
                {
                    None => issue(
                        path,
                        format!(
                            "delegate VirtualService {target_ns}/{} is not defined",
                            d.name
                        ),
                    ),
                    Some(v) if !v.spec.hosts.is_empty() => issue(
                        path,
                        format!(
                            "VirtualService {target_ns}/{} has hosts, so it cannot be a delegate",
                            d.name
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        out
    }

    /// Why `dest.subset` (if any) is not defined for a client in `ns`.
    fn subset_problem(&self, dest: &Destination, ns: &str, suffix: &str) -> Option<String> {
        let subset = dest.subset.as_deref()?;
        let host = fqdn(&dest.host, ns, suffix);
        let rules: Vec<&Resource<DestinationRule>> = self
            .destination_rules
            .iter()
            .filter(|dr| exported_to(&dr.spec.export_to, &dr.meta.namespace, ns))
            .filter(|dr| host_matches(&fqdn(&dr.spec.host, &dr.meta.namespace, suffix), &host))
            .collect();
        if rules.iter().any(|dr| dr.spec.subset(subset).is_some()) {
            return None;
        }
        if rules.is_empty() {
            return Some(format!(
                "subset {subset:?} is not defined: no DestinationRule for host {host} is \
                 visible from namespace {ns}"
            ));
        }
        let defined: Vec<String> = rules
            .iter()
            .map(|dr| {
                let names: BTreeSet<&str> =
                    dr.spec.subsets.iter().map(|s| s.name.as_str()).collect();
                let names: Vec<&str> = names.into_iter().collect();
                format!(
                    "DestinationRule {}/{} defines {}",
                    dr.meta.namespace,
                    dr.meta.name,
                    if names.is_empty() {
                        "no subsets".to_owned()
                    } else {
                        names.join(", ")
                    }
                )
            })
            .collect();
        Some(format!(
            "subset {subset:?} is not defined by any DestinationRule for host {host} ({})",
            defined.join("; ")
        ))
    }
}

/// Every destination of a VirtualService with its path.
fn destinations<'a>(vs: &'a VirtualService, spec: &FieldPath) -> Vec<(FieldPath, &'a Destination)> {
    let mut out = Vec::new();
    for (i, r) in vs.http.iter().enumerate() {
        let rp = spec.key("http").index(i);
        for (j, d) in r.route.iter().enumerate() {
            out.push((rp.key("route").index(j).key("destination"), &d.destination));
        }
        if let Some(m) = &r.mirror {
            out.push((rp.key("mirror"), m));
        }
        for (j, m) in r.mirrors.iter().enumerate() {
            out.push((
                rp.key("mirrors").index(j).key("destination"),
                &m.destination,
            ));
        }
    }
    for (field, routes) in [
        (
            "tcp",
            vs.tcp.iter().map(|r| &r.route[..]).collect::<Vec<_>>(),
        ),
        (
            "tls",
            vs.tls.iter().map(|r| &r.route[..]).collect::<Vec<_>>(),
        ),
    ] {
        for (i, route) in routes.into_iter().enumerate() {
            for (j, d) in route.iter().enumerate() {
                out.push((
                    spec.key(field)
                        .index(i)
                        .key("route")
                        .index(j)
                        .key("destination"),
                    &d.destination,
                ));
            }
        }
    }
    out
}

/// Istio's short-name rule: a host without dots is a Kubernetes service in
/// the resource's namespace; anything else is taken as written.
pub(crate) fn fqdn(host: &str, ns: &str, suffix: &str) -> String {
    if host.contains('.') || host.starts_with('*') {
        host.to_ascii_lowercase()
    } else {
        format!("{host}.{ns}.svc.{suffix}").to_ascii_lowercase()
    }
}

/// Does the (possibly wildcard) `pattern` cover `host`?
pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern == host,
    }
}

/// Is a resource of `owner_ns` with this `exportTo` visible from `ns`?
/// Empty means everywhere (Istio's default).
pub(crate) fn exported_to(export_to: &[String], owner_ns: &str, ns: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == ns || (e == "." && owner_ns == ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            fqdn("reviews", "bookinfo", "cluster.local"),
            "reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(
            fqdn("api.example.com", "x", "cluster.local"),
            "api.example.com"
        );
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(host_matches("*", "x"));
        assert!(exported_to(&[], "a", "b"));
        assert!(exported_to(&[".".into()], "a", "a"));
        assert!(!exported_to(&[".".into()], "a", "b"));
        assert!(exported_to(&["b".into()], "a", "b"));
        assert!(!exported_to(&["~".into()], "a", "a"));
    }
}
