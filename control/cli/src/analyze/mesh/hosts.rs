//! Istio's host-name rules, as the analyzers need them.

/// Where Istio keeps mesh-wide policies unless told otherwise.
pub(crate) const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// Istio's short-name rule: a host without dots is a Kubernetes Service in
/// the resource's namespace; anything else (FQDN, wildcard) is as written.
pub(crate) fn fqdn(host: &str, namespace: &str, suffix: &str) -> String {
    if host.contains('.') || host.starts_with('*') {
        host.to_ascii_lowercase()
    } else {
        format!("{host}.{namespace}.svc.{suffix}").to_ascii_lowercase()
    }
}

/// Does the (possibly wildcard, `*.example.com` or `*`) `pattern` cover
/// the fully qualified `host`?
pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// The namespaces an `exportTo` list makes a resource of `owner` visible
/// in: `None` for all of them (empty list, or `*`).
fn visible_in(export_to: &[String], owner: &str) -> Option<Vec<String>> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return None;
    }
    Some(
        export_to
            .iter()
            .filter(|e| *e != "~")
            .map(|e| if e == "." { owner } else { e.as_str() }.to_owned())
            .collect(),
    )
}

/// Is a resource of `owner` with this `exportTo` visible from `namespace`?
pub(crate) fn exported_to(export_to: &[String], owner: &str, namespace: &str) -> bool {
    visible_in(export_to, owner).is_none_or(|ns| ns.iter().any(|n| n == namespace))
}

/// Is there a namespace that sees both resources?
pub(crate) fn visible_together(a: (&[String], &str), b: (&[String], &str)) -> bool {
    match (visible_in(a.0, a.1), visible_in(b.0, b.1)) {
        (None, None) => true,
        (None, Some(only)) | (Some(only), None) => !only.is_empty(),
        (Some(x), Some(y)) => x.iter().any(|n| y.contains(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn names() {
        assert_eq!(
            fqdn("Reviews", "bookinfo", "cluster.local"),
            "reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(fqdn("api.example.com", "x", "c"), "api.example.com");
        assert_eq!(fqdn("*", "x", "c"), "*");
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(host_matches("*", "anything"));
        assert!(host_matches("a.b", "a.b"));
    }

    #[test]
    fn export_to() {
        assert!(exported_to(&[], "a", "b"));
        assert!(exported_to(&list(&["*"]), "a", "b"));
        assert!(exported_to(&list(&["."]), "a", "a"));
        assert!(!exported_to(&list(&["."]), "a", "b"));
        assert!(!exported_to(&list(&["~"]), "a", "a"));
        assert!(visible_together((&[], "a"), (&[], "b")));
        assert!(visible_together((&list(&["."]), "a"), (&[], "b")));
        assert!(!visible_together((&list(&["~"]), "a"), (&[], "b")));
        assert!(!visible_together(
            (&list(&["."]), "a"),
            (&list(&["."]), "b")
        ));
        assert!(visible_together((&list(&["."]), "a"), (&list(&["a"]), "b")));
    }
}
