//! RM0104: an ALLOW AuthorizationPolicy that allows nothing.
//!
//! With no rules an ALLOW policy matches no request, and without a
//! selector it applies to every workload of its namespace (of the whole
//! mesh in the root namespace). Once an ALLOW policy applies to a
//! workload, requests that no ALLOW policy matches are denied: this is the
//! "allow-nothing" deny-by-default pattern. Often intended, hence info; a
//! reader should still know the namespace now denies by default.

use ringmesh_istio::security::authorization_policy::Action;

use super::{Field, Finding, Mesh};

pub(super) fn check(mesh: &Mesh<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for ap in &mesh.model.authorization_policies {
        let s = &ap.spec;
        let no_selector = s
            .selector
            .as_ref()
            .is_none_or(|s| s.match_labels.is_empty());
        let attached = s.target_ref.is_some() || !s.target_refs.is_empty();
        if s.action != Action::Allow || !s.rules.is_empty() || !no_selector || attached {
            continue;
        }
        let scope = if ap.meta.namespace == mesh.root_namespace {
            format!(
                "every workload of the mesh (root namespace {})",
                mesh.root_namespace
            )
        } else {
            format!("every workload in namespace {}", ap.meta.namespace)
        };
        out.push(Finding::new(
            ap,
            Field::root(),
            format!(
                "ALLOW policy with no rules and no selector: requests to {scope} are denied \
                 unless another ALLOW policy matches them"
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{super::test_util::run, *};

    fn ap(ns: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: p, namespace: {ns}}}\nspec: {spec}\n"
        )
    }

    #[test]
    fn allow_nothing_is_noted() {
        assert_eq!(
            run(check, &ap("shop", "{}")),
            ["AuthorizationPolicy shop/p : ALLOW policy with no rules and no selector: requests \
              to every workload in namespace shop are denied unless another ALLOW policy matches \
              them"]
        );
        assert_eq!(
            run(
                check,
                &ap(
                    "istio-system",
                    "{action: ALLOW, selector: {matchLabels: {}}}"
                )
            ),
            [
                "AuthorizationPolicy istio-system/p : ALLOW policy with no rules and no selector: \
              requests to every workload of the mesh (root namespace istio-system) are denied \
              unless another ALLOW policy matches them"
            ]
        );
    }

    #[test]
    fn rules_a_selector_or_deny_are_not_deny_all() {
        for spec in [
            "{rules: [{}]}",
            "{selector: {matchLabels: {app: a}}}",
            "{action: DENY}",
            "{action: AUDIT}",
        ] {
            assert_eq!(
                run(check, &ap("shop", spec)),
                Vec::<String>::new(),
                "{spec}"
            );
        }
    }
}
