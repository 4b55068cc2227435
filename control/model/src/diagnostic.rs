//! What the loader reports: one [`Diagnostic`] per finding, with a stable
//! code from [`codes`].

use std::fmt;

/// How bad a finding is. Only errors drop a resource (or a document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The resource (or document) is rejected and is not in the model.
    Error,
    /// The resource is loaded, but something in it is ignored or deprecated.
    Warning,
    /// Nothing is wrong; e.g. a Deployment in the same file was skipped.
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource named in a diagnostic: `VirtualService default/reviews`.
/// `kind` is a string because skipped kinds (a `Deployment`) are named too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One finding about the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable code, one of [`codes`]; tools and tests match on it.
    pub code: &'static str,
    /// The file label (the path for files, the caller's label for text).
    pub file: String,
    /// The resource concerned, when the document got far enough to name one.
    pub resource: Option<ResourceRef>,
    /// Field path inside the resource, e.g. `spec.http[0].route[1].weight`.
    pub field: Option<String>,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    pub message: String,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: error[RM0003] VirtualService default/reviews:
    /// spec.http[0].route[1].weight: weights sum to 90, not 100`, leaving
    /// out the parts that are unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}[{}] ", self.severity, self.code)?;
        if let Some(r) = &self.resource {
            write!(f, "{r}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Stable diagnostic codes, in the spirit of `istioctl analyze`'s
/// `IST0101`. A code never changes meaning; new findings get new codes.
pub mod codes {
    /// error: the document is not valid YAML; it is skipped (the other
    /// documents of the file still load).
    pub const YAML_SYNTAX: &str = "RM0001";
    /// error: the document is not a Kubernetes object (not a mapping, or no
    /// `apiVersion`/`kind`).
    pub const NOT_AN_OBJECT: &str = "RM0002";
    /// error: a value breaks a rule (a regex that does not compile, weights
    /// that do not sum to 100, a bad CIDR, ...).
    pub const INVALID_VALUE: &str = "RM0003";
    /// error: the resource does not match the schema (unknown field, wrong
    /// type, unknown enum value, bad duration, missing `metadata.name`).
    pub const SCHEMA: &str = "RM0004";
    /// error: valid Istio, but a feature Ringmesh does not implement and
    /// cannot safely ignore (e.g. `action: CUSTOM`).
    pub const UNSUPPORTED: &str = "RM0005";
    /// error: a reference to something no loaded resource defines (a
    /// VirtualService naming a subset no DestinationRule defines).
    pub const REFERENCE_NOT_FOUND: &str = "RM0006";
    /// error: a second resource with the same kind, namespace and name; the
    /// first one (by file path, then position) is kept.
    pub const DUPLICATE: &str = "RM0007";
    /// error: a supported kind with an `apiVersion` we do not know.
    pub const UNKNOWN_API_VERSION: &str = "RM0008";
    /// error: a file or directory could not be read, or is not UTF-8.
    pub const IO: &str = "RM0009";
    /// warning: a field Ringmesh accepts but does not apply (e.g.
    /// `corsPolicy`); the rest of the resource is loaded.
    pub const IGNORED_FIELD: &str = "RM0010";
    /// warning: a deprecated field that is still applied (e.g. `percent`).
    pub const DEPRECATED: &str = "RM0011";
    /// warning: an Istio kind Ringmesh does not support yet (e.g. `Gateway`);
    /// skipped.
    pub const UNSUPPORTED_KIND: &str = "RM0012";
    /// info: a non-Istio object (a `Deployment`, a `Service`); skipped.
    pub const SKIPPED_KIND: &str = "RM0013";

    /// Every code with its severity and a one-line description, for
    /// `ringmesh analyze --explain` and the documentation.
    pub const ALL: &[(&str, super::Severity, &str)] = &[
        (
            YAML_SYNTAX,
            super::Severity::Error,
            "not valid YAML; the document is skipped",
        ),
        (
            NOT_AN_OBJECT,
            super::Severity::Error,
            "not a Kubernetes object (apiVersion, kind, metadata)",
        ),
        (
            INVALID_VALUE,
            super::Severity::Error,
            "a value breaks a validation rule",
        ),
        (
            SCHEMA,
            super::Severity::Error,
            "does not match the schema (unknown field, wrong type, bad enum value or duration)",
        ),
        (
            UNSUPPORTED,
            super::Severity::Error,
            "an Istio feature Ringmesh does not implement",
        ),
        (
            REFERENCE_NOT_FOUND,
            super::Severity::Error,
            "refers to something no loaded resource defines",
        ),
        (
            DUPLICATE,
            super::Severity::Error,
            "a resource with the same kind, namespace and name was already loaded",
        ),
        (
            UNKNOWN_API_VERSION,
            super::Severity::Error,
            "unknown apiVersion for a supported kind",
        ),
        (
            IO,
            super::Severity::Error,
            "the file or directory cannot be read",
        ),
        (
            IGNORED_FIELD,
            super::Severity::Warning,
            "accepted but not applied",
        ),
        (
            DEPRECATED,
            super::Severity::Warning,
            "deprecated field, still applied",
        ),
        (
            UNSUPPORTED_KIND,
            super::Severity::Warning,
            "Istio kind not supported yet; skipped",
        ),
        (
            SKIPPED_KIND,
            super::Severity::Info,
            "not an Istio resource; skipped",
        ),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_parts() {
        let mut d = Diagnostic {
            severity: Severity::Error,
            code: codes::INVALID_VALUE,
            file: "reviews.yaml".into(),
            resource: Some(ResourceRef {
                kind: "VirtualService".into(),
                namespace: "default".into(),
                name: "reviews".into(),
            }),
            field: Some("spec.http[0].route[1].weight".into()),
            line: Some(12),
            column: Some(17),
            message: "weights sum to 90, not 100".into(),
        };
        assert_eq!(
            d.to_string(),
            "reviews.yaml:12:17: error[RM0003] VirtualService default/reviews: \
             spec.http[0].route[1].weight: weights sum to 90, not 100"
        );
        d.line = None;
        d.resource = None;
        d.field = None;
        assert_eq!(
            d.to_string(),
            "reviews.yaml: error[RM0003] weights sum to 90, not 100"
        );
    }

    #[test]
    fn the_crate_docs_list_every_code() {
        let docs = include_str!("lib.rs");
        for (code, severity, _) in codes::ALL {
            let row = format!("//! | {code} | {severity} |");
            assert!(docs.contains(&row), "lib.rs docs lack {row}");
        }
    }

    #[test]
    fn codes_are_unique_and_sequential() {
        for (i, (code, _, _)) in codes::ALL.iter().enumerate() {
            assert_eq!(*code, format!("RM{:04}", i + 1));
        }
    }
}
