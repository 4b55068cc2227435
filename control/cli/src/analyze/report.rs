//! Every diagnostic of a run, sorted, with `--suppress` applied, and the
//! counts the summary and the exit status are made of.

use std::{collections::BTreeSet, fmt, str::FromStr};

use ringmesh_istio::{codes, Diagnostic, Kind, Model, Severity};

use super::mesh::ANALYZERS;

/// Is `code` one `ringmesh analyze` can report?
pub fn is_known_code(code: &str) -> bool {
    codes::ALL.iter().any(|(c, _, _)| *c == code) || ANALYZERS.iter().any(|a| a.code == code)
}

/// `--suppress CODE=RESOURCE`: hide findings with that code about that
/// resource. RESOURCE is written as shown (`VirtualService default/reviews`,
/// or `VirtualService/default/reviews` to spare the quotes); `*` matches
/// any run of characters in either part, and a RESOURCE of `*` also
/// matches findings about no resource (a file that cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    code: String,
    resource: String,
}

impl FromStr for Suppression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some((code, resource)) = s.split_once('=') else {
            return Err(
                "expected CODE=RESOURCE, e.g. 'RM0106=DestinationRule default/reviews'".into(),
            );
        };
        let code = code.trim().to_ascii_uppercase();
        if !code.contains('*') && !is_known_code(&code) {
            return Err(format!(
                "unknown code {code} (`ringmesh analyze --explain` lists them)"
            ));
        }
        let mut resource = resource.trim().to_owned();
        if !resource.contains(' ') && resource.matches('/').count() == 2 {
            resource = resource.replacen('/', " ", 1);
        }
        if resource.is_empty() {
            return Err("RESOURCE is empty; use * for every resource".into());
        }
        Ok(Self { code, resource })
    }
}

impl fmt::Display for Suppression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.code, self.resource)
    }
}

impl Suppression {
    pub fn matches(&self, d: &Diagnostic) -> bool {
        if !glob(&self.code, d.code) {
            return false;
        }
        match &d.resource {
            Some(r) => glob(&self.resource, &r.to_string()),
            None => self.resource == "*",
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut text) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or_default();
    for part in parts {
        match text.find(part) {
            Some(i) => text = &text[i + part.len()..],
            None => return false,
        }
    }
    text.len() >= last.len() && text.ends_with(last)
}

/// What a run found, ready to print.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Sorted by file, line, column, then severity and code.
    pub diagnostics: Vec<Diagnostic>,
    /// Findings hidden by `--suppress`.
    pub suppressed: usize,
    /// Files read (stdin counts as one).
    pub files: usize,
    /// Istio resources found: loaded, or rejected with a diagnostic.
    pub resources: usize,
}

impl Report {
    pub fn new(
        mut diagnostics: Vec<Diagnostic>,
        model: &Model,
        files: usize,
        suppress: &[Suppression],
    ) -> Self {
        let resources = count_resources(model, &diagnostics);
        diagnostics.sort_by(|a, b| {
            (
                &a.file,
                a.line,
                a.column,
                a.severity,
                a.code,
                &a.resource,
                &a.field,
                &a.message,
            )
                .cmp(&(
                    &b.file,
                    b.line,
                    b.column,
                    b.severity,
                    b.code,
                    &b.resource,
                    &b.field,
                    &b.message,
                ))
        });
        let before = diagnostics.len();
        diagnostics.retain(|d| !suppress.iter().any(|s| s.matches(d)));
        Self {
            suppressed: before - diagnostics.len(),
            diagnostics,
            files,
            resources,
        }
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }

    /// Is there a finding at `threshold` or worse?
    pub fn fails(&self, threshold: Severity) -> bool {
        self.diagnostics.iter().any(|d| d.severity <= threshold)
    }
}

/// Distinct Istio resources: the model's, and those only named by a
/// diagnostic because they were rejected.
fn count_resources(model: &Model, diagnostics: &[Diagnostic]) -> usize {
    fn names<T: ringmesh_istio::Spec>(
        v: &[ringmesh_istio::Resource<T>],
    ) -> impl Iterator<Item = (String, String, String)> + '_ {
        v.iter().map(|r| {
            let r = r.reference();
            (r.kind, r.namespace, r.name)
        })
    }
    let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
    seen.extend(names(&model.virtual_services));
    seen.extend(names(&model.destination_rules));
    seen.extend(names(&model.service_entries));
    seen.extend(names(&model.sidecars));
    seen.extend(names(&model.peer_authentications));
    seen.extend(names(&model.authorization_policies));
    seen.extend(
        diagnostics
            .iter()
            .filter_map(|d| d.resource.as_ref())
            .filter(|r| Kind::ALL.iter().any(|k| k.as_str() == r.kind))
            .map(|r| (r.kind.clone(), r.namespace.clone(), r.name.clone())),
    );
    seen.len()
}

#[cfg(test)]
mod tests {
    use ringmesh_istio::ResourceRef;

    use super::*;

    fn diag(
        code: &'static str,
        severity: Severity,
        line: usize,
        resource: Option<&str>,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            code,
            file: "f.yaml".into(),
            resource: resource.map(|r| {
                let (kind, rest) = r.split_once(' ').unwrap();
                let (namespace, name) = rest.split_once('/').unwrap();
                ResourceRef {
                    kind: kind.into(),
                    namespace: namespace.into(),
                    name: name.into(),
                }
            }),
            field: None,
            line: Some(line),
            column: None,
            message: String::new(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("a*", "abc"));
        assert!(glob("*c", "abc"));
        assert!(glob("a*c", "abc"));
        assert!(glob("a*b*c", "a-b-c"));
        assert!(!glob("a*b*c", "a-c"));
        assert!(!glob("ab*b", "ab"));
        assert!(glob("abc", "abc"));
        assert!(!glob("abc", "abcd"));
    }

    #[test]
    fn parses_and_matches_suppressions() {
        let s: Suppression = "rm0106=DestinationRule/default/reviews".parse().unwrap();
        assert_eq!(s.to_string(), "RM0106=DestinationRule default/reviews");
        let d = diag(
            "RM0106",
            Severity::Info,
            1,
            Some("DestinationRule default/reviews"),
        );
        assert!(s.matches(&d));
        let any_ns: Suppression = "RM0106=DestinationRule */rev*".parse().unwrap();
        assert!(any_ns.matches(&d));
        let other: Suppression = "RM0101=*".parse().unwrap();
        assert!(!other.matches(&d));
        assert!(other.matches(&diag("RM0101", Severity::Warning, 1, None)));
        assert!(!s.matches(&diag("RM0106", Severity::Info, 1, None)));
        assert_eq!(
            "RM9999=x".parse::<Suppression>().unwrap_err(),
            "unknown code RM9999 (`ringmesh analyze --explain` lists them)"
        );
        assert!("RM0106".parse::<Suppression>().is_err());
        assert!("RM0106=".parse::<Suppression>().is_err());
    }

    #[test]
    fn sorts_suppresses_counts_and_decides() {
        let diags = vec![
            diag(
                "RM0106",
                Severity::Info,
                9,
                Some("DestinationRule default/r"),
            ),
            diag(
                "RM0105",
                Severity::Warning,
                3,
                Some("PeerAuthentication legacy/default"),
            ),
            diag("RM0013", Severity::Info, 1, Some("Service default/r")),
        ];
        let suppress = ["RM0013=*".parse().unwrap()];
        let r = Report::new(diags, &Model::default(), 1, &suppress);
        let lines: Vec<usize> = r.diagnostics.iter().filter_map(|d| d.line).collect();
        assert_eq!(lines, [3, 9]);
        assert_eq!(r.suppressed, 1);
        assert_eq!(r.resources, 2, "the Service is not an Istio resource");
        assert_eq!(
            (r.count(Severity::Warning), r.count(Severity::Info)),
            (1, 1)
        );
        assert!(!r.fails(Severity::Error));
        assert!(r.fails(Severity::Warning));
        assert!(r.fails(Severity::Info));
    }
}
