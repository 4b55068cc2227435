//! RM0105: a namespace that accepts plaintext in a STRICT mesh.
//!
//! A PeerAuthentication without a selector in the root namespace sets the
//! mesh-wide mTLS mode; one without a selector in another namespace
//! overrides it for that namespace. PERMISSIVE (or DISABLE) there under a
//! STRICT mesh lets plaintext in — right during a migration, a hole after
//! it. Workload-level (selector) and port-level overrides are deliberate
//! enough to stay quiet. With several mesh-wide policies Istio applies the
//! oldest; files have no age, so the first by name stands in for it.

use ringmesh_istio::security::peer_authentication::{MtlsMode, PeerAuthentication};

use super::{Field, Finding, Mesh};

fn mode(pa: &PeerAuthentication) -> MtlsMode {
    pa.mtls.as_ref().map_or(MtlsMode::Unset, |m| m.mode)
}

fn namespace_wide(pa: &PeerAuthentication) -> bool {
    pa.selector
        .as_ref()
        .is_none_or(|s| s.match_labels.is_empty())
}

pub(super) fn check(mesh: &Mesh<'_>) -> Vec<Finding> {
    let pas = &mesh.model.peer_authentications;
    let Some(root) = pas
        .iter()
        .find(|p| p.meta.namespace == mesh.root_namespace && namespace_wide(&p.spec))
        .filter(|p| mode(&p.spec) == MtlsMode::Strict)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for pa in pas {
        let weaker = match mode(&pa.spec) {
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Disable => "DISABLE",
            MtlsMode::Strict | MtlsMode::Unset => continue,
        };
        if pa.meta.namespace == mesh.root_namespace || !namespace_wide(&pa.spec) {
            continue;
        }
        out.push(Finding::new(
            pa,
            Field::root().key("spec").key("mtls").key("mode"),
            format!(
                "{weaker} lets namespace {} accept plaintext although the mesh-wide \
                 PeerAuthentication {}/{} is STRICT",
                pa.meta.namespace, root.meta.namespace, root.meta.name
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{super::test_util::run, *};

    fn pa(name: &str, ns: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
             metadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
        )
    }

    #[test]
    fn permissive_or_disabled_namespaces_under_a_strict_mesh() {
        let yaml = pa("default", "istio-system", "{mtls: {mode: STRICT}}")
            + &pa("default", "legacy", "{mtls: {mode: PERMISSIVE}}")
            + &pa("default", "old", "{mtls: {mode: DISABLE}}")
            + &pa("default", "new", "{mtls: {mode: STRICT}}")
            + &pa(
                "w",
                "shop",
                "{selector: {matchLabels: {app: a}}, mtls: {mode: PERMISSIVE}}",
            );
        assert_eq!(
            run(check, &yaml),
            [
                "PeerAuthentication legacy/default spec.mtls.mode: PERMISSIVE lets namespace \
                 legacy accept plaintext although the mesh-wide PeerAuthentication \
                 istio-system/default is STRICT",
                "PeerAuthentication old/default spec.mtls.mode: DISABLE lets namespace old accept \
                 plaintext although the mesh-wide PeerAuthentication istio-system/default is \
                 STRICT",
            ]
        );
    }

    #[test]
    fn quiet_without_a_strict_mesh_wide_policy() {
        let permissive = pa("default", "legacy", "{mtls: {mode: PERMISSIVE}}");
        assert_eq!(run(check, &permissive), Vec::<String>::new());
        let mesh_permissive =
            pa("default", "istio-system", "{mtls: {mode: PERMISSIVE}}") + &permissive;
        assert_eq!(run(check, &mesh_permissive), Vec::<String>::new());
        let workload_strict = pa(
            "default",
            "istio-system",
            "{selector: {matchLabels: {app: a}}, mtls: {mode: STRICT}}",
        ) + &permissive;
        assert_eq!(run(check, &workload_strict), Vec::<String>::new());
    }
}
