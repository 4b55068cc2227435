//! Mesh-level analyzers: findings that only make sense across resources,
//! which the model's per-resource validation cannot make. Each is one
//! small function from the loaded [`Mesh`] to its [`Finding`]s, with its
//! own stable code (RM0101 on, after the model's RM0001–RM0013) listed in
//! [`ANALYZERS`].
//!
//! | code | severity | analyzer |
//! | --- | --- | --- |
//! | RM0101 | warning | a mesh VirtualService host that no ServiceEntry, Service or DestinationRule of the input names |
//! | RM0102 | error | two mesh VirtualServices for the same host, visible from a common namespace |
//! | RM0103 | warning | an HTTP route after a catch-all route of the same VirtualService: unreachable |
//! | RM0104 | info | an ALLOW AuthorizationPolicy without selector or rules: denies by default |
//! | RM0105 | warning | a namespace-wide PERMISSIVE/DISABLE PeerAuthentication under a mesh-wide STRICT one |
//! | RM0106 | info | a DestinationRule subset no VirtualService routes or mirrors to |
//!
//! Analyzers that report something *missing* (RM0101, RM0106) do not run
//! when the input has errors: the resource the model rejected may be the
//! very one they would find missing, and a cascade of follow-on findings
//! hides the real one.

mod conflicting_hosts;
mod deny_all;
mod host_not_found;
mod hosts;
mod mtls_downgrade;
mod shadowed_routes;
mod unused_subsets;

use ringmesh_istio::{Diagnostic, Model, Origin, ResourceRef, Severity, Spec};

use super::locate::{locate, Field};

pub(crate) use hosts::DEFAULT_ROOT_NAMESPACE;

/// What the analyzers look at.
#[derive(Debug)]
pub struct Mesh<'a> {
    pub model: &'a Model,
    /// Kubernetes Services in the input, as `(namespace, name)`. The model
    /// skips them (RM0013) but names them, which is all RM0101 needs.
    pub services: Vec<(String, String)>,
    /// Where mesh-wide policies live (`istio-system`).
    pub root_namespace: &'a str,
    /// The cluster domain short host names expand with (`cluster.local`).
    pub domain_suffix: &'a str,
}

impl<'a> Mesh<'a> {
    /// The mesh of a load: its model, and the Services its diagnostics name.
    pub fn new(
        model: &'a Model,
        diagnostics: &[Diagnostic],
        root_namespace: &'a str,
        domain_suffix: &'a str,
    ) -> Self {
        let services = diagnostics
            .iter()
            .filter_map(|d| d.resource.as_ref())
            .filter(|r| r.kind == "Service")
            .map(|r| (r.namespace.clone(), r.name.clone()))
            .collect();
        Self {
            model,
            services,
            root_namespace,
            domain_suffix,
        }
    }

    /// `host` as a fully qualified name, for a resource in `namespace`.
    pub(crate) fn fqdn(&self, host: &str, namespace: &str) -> String {
        hosts::fqdn(host, namespace, self.domain_suffix)
    }
}

/// One finding of an analyzer; the analyzer's entry in [`ANALYZERS`] gives
/// its code and severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub resource: ResourceRef,
    pub origin: Origin,
    pub field: Field,
    pub message: String,
}

impl Finding {
    pub(crate) fn new<T: Spec>(
        r: &ringmesh_istio::Resource<T>,
        field: Field,
        message: String,
    ) -> Self {
        Self {
            resource: r.reference(),
            origin: r.origin.clone(),
            field,
            message,
        }
    }
}

/// A mesh-level analyzer.
#[derive(Debug)]
pub struct Analyzer {
    pub code: &'static str,
    pub severity: Severity,
    /// A short name, for documentation.
    pub name: &'static str,
    /// One line: what it reports.
    pub summary: &'static str,
    /// Reports something missing, so skipped when the input has errors.
    pub needs_clean_input: bool,
    pub run: fn(&Mesh<'_>) -> Vec<Finding>,
}

/// Every mesh-level analyzer, in code order. A code never changes meaning;
/// new analyzers get new codes.
pub const ANALYZERS: &[Analyzer] = &[
    Analyzer {
        code: "RM0101",
        severity: Severity::Warning,
        name: "host-not-found",
        summary:
            "a VirtualService host (for sidecars) that no ServiceEntry, Kubernetes Service or \
                  DestinationRule of the analyzed input names",
        needs_clean_input: true,
        run: host_not_found::check,
    },
    Analyzer {
        code: "RM0102",
        severity: Severity::Error,
        name: "conflicting-virtual-services",
        summary: "two VirtualServices for sidecars claim the same host where both are visible; \
                  only one of them applies",
        needs_clean_input: false,
        run: conflicting_hosts::check,
    },
    Analyzer {
        code: "RM0103",
        severity: Severity::Warning,
        name: "shadowed-route",
        summary: "an HTTP route after a route that matches every request: it is never used",
        needs_clean_input: false,
        run: shadowed_routes::check,
    },
    Analyzer {
        code: "RM0104",
        severity: Severity::Info,
        name: "deny-all-policy",
        summary: "an ALLOW AuthorizationPolicy with no selector and no rules: every workload of \
                  its namespace (or of the mesh) denies requests no other ALLOW policy matches",
        needs_clean_input: false,
        run: deny_all::check,
    },
    Analyzer {
        code: "RM0105",
        severity: Severity::Warning,
        name: "mtls-downgrade",
        summary: "a namespace-wide PeerAuthentication PERMISSIVE or DISABLE while the mesh-wide \
                  one (root namespace) is STRICT: that namespace accepts plaintext",
        needs_clean_input: false,
        run: mtls_downgrade::check,
    },
    Analyzer {
        code: "RM0106",
        severity: Severity::Info,
        name: "unused-subset",
        summary: "a DestinationRule subset that no VirtualService routes or mirrors to",
        needs_clean_input: true,
        run: unused_subsets::check,
    },
];

/// Run every analyzer (those that look for something missing only when
/// `input_has_errors` is false) and turn the findings into diagnostics,
/// located with `text_of(file label)`.
pub fn analyze<'t>(
    mesh: &Mesh<'_>,
    input_has_errors: bool,
    text_of: impl Fn(&str) -> Option<&'t str>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for a in ANALYZERS {
        if a.needs_clean_input && input_has_errors {
            continue;
        }
        for f in (a.run)(mesh) {
            let at = text_of(&f.origin.file).and_then(|t| locate(t, f.origin.line, &f.field));
            out.push(Diagnostic {
                severity: a.severity,
                code: a.code,
                file: f.origin.file,
                resource: Some(f.resource),
                field: (!f.field.is_root()).then(|| f.field.to_string()),
                line: Some(at.map_or(f.origin.line, |p| p.0)),
                column: at.map(|p| p.1),
                message: f.message,
            });
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod test_util {
    use ringmesh_istio::{LoadResult, Loader};

    use super::*;

    /// Load `yaml` as `t.yaml`; it must load without errors.
    pub(crate) fn load(yaml: &str) -> LoadResult {
        let r = Loader::new().load_str(yaml, "t.yaml");
        assert!(!r.has_errors(), "{:?}", r.diagnostics);
        r
    }

    /// Run one analyzer over `yaml`; findings as `Kind ns/name field: message`.
    pub(crate) fn run(check: fn(&Mesh<'_>) -> Vec<Finding>, yaml: &str) -> Vec<String> {
        let r = load(yaml);
        let mesh = Mesh::new(&r.model, &r.diagnostics, "istio-system", "cluster.local");
        check(&mesh)
            .into_iter()
            .map(|f| format!("{} {}: {}", f.resource, f.field, f.message))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sequential_and_documented() {
        let docs = include_str!("mod.rs");
        for (i, a) in ANALYZERS.iter().enumerate() {
            assert_eq!(a.code, format!("RM{:04}", 101 + i));
            let row = format!("//! | {} | {} |", a.code, a.severity);
            assert!(docs.contains(&row), "mod.rs docs lack {row}");
        }
        let readme = include_str!("../../../README.md");
        for a in ANALYZERS {
            let row = format!("| {} | {} | `{}` |", a.code, a.severity, a.name);
            assert!(readme.contains(&row), "README.md lacks {row}");
        }
    }

    #[test]
    fn absence_analyzers_wait_for_clean_input() {
        let r = test_util::load(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\n\
             spec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {v: '1'}}\n",
        );
        let mesh = Mesh::new(&r.model, &r.diagnostics, "istio-system", "cluster.local");
        let text = |_: &str| None;
        let found: Vec<&str> = analyze(&mesh, false, text).iter().map(|d| d.code).collect();
        assert_eq!(found, ["RM0106"]);
        assert!(analyze(&mesh, true, text).is_empty());
    }

    #[test]
    fn findings_are_located_in_their_text() {
        let yaml =
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\n\
                    spec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {v: '1'}}\n";
        let r = test_util::load(yaml);
        let mesh = Mesh::new(&r.model, &r.diagnostics, "istio-system", "cluster.local");
        let d = analyze(&mesh, false, |_| Some(yaml));
        assert_eq!(
            d[0].to_string(),
            "t.yaml:7:5: info[RM0106] DestinationRule default/r: spec.subsets[0]: subset \"v1\" \
             is not used by any VirtualService in the analyzed resources"
        );
    }
}
