use ringmesh_istio::ResourceRef;

use super::*;

/// A diagnostic at `file:line:column` (0 for unknown).
fn diag(at: (&str, usize, usize), severity: Severity, code: &'static str) -> Diagnostic {
    Diagnostic {
        severity,
        code,
        file: at.0.into(),
        resource: None,
        field: None,
        line: (at.1 > 0).then_some(at.1),
        column: (at.2 > 0).then_some(at.2),
        message: String::new(),
    }
}

fn about(mut d: Diagnostic, kind: &str, ns: &str, name: &str, message: &str) -> Diagnostic {
    d.resource = Some(ResourceRef {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
    });
    d.message = message.into();
    d
}

fn sample() -> Report {
    let mut unread = diag(("a.yaml", 0, 0), Severity::Error, "RM0009");
    unread.message = "cannot read".into();
    let mut shadowed = about(
        diag(("b.yaml", 7, 5), Severity::Warning, "RM0103"),
        "VirtualService",
        "default",
        "reviews",
        "unreachable",
    );
    shadowed.field = Some("spec.http[1]".into());
    let deny_all = about(
        diag(("b.yaml", 120, 0), Severity::Info, "RM0104"),
        "AuthorizationPolicy",
        "default",
        "allow-nothing",
        "deny by default",
    );
    Report {
        diagnostics: vec![unread, shadowed, deny_all],
        suppressed: 2,
        files: 2,
        resources: 1,
    }
}

#[test]
fn table_groups_by_file_and_aligns() {
    assert_eq!(
        table(&sample(), Style::PLAIN),
        "\
a.yaml
    -    error    RM0009  -                                          cannot read

b.yaml
    7:5  warning  RM0103  VirtualService default/reviews             spec.http[1]: unreachable
  120    info     RM0104  AuthorizationPolicy default/allow-nothing  deny by default

Error: 1 error, 1 warning, 1 info when analyzing 1 resource in 2 files (2 suppressed).
"
    );
}

#[test]
fn lines_are_the_models_format() {
    assert_eq!(
        lines(&sample(), Style::PLAIN),
        "\
a.yaml: error[RM0009] cannot read
b.yaml:7:5: warning[RM0103] VirtualService default/reviews: spec.http[1]: unreachable
b.yaml:120: info[RM0104] AuthorizationPolicy default/allow-nothing: deny by default
Error: 1 error, 1 warning, 1 info when analyzing 1 resource in 2 files (2 suppressed).
"
    );
    let coloured = lines(&sample(), Style { color: true });
    assert!(coloured.contains("b.yaml:7:5: \x1b[33mwarning[RM0103]\x1b[0m VirtualService"));
}

#[test]
fn summaries() {
    let clean = Report {
        files: 3,
        resources: 12,
        ..Report::default()
    };
    assert_eq!(
        summary(&clean, Style::PLAIN),
        "✔ No validation issues found when analyzing 12 resources in 3 files."
    );
    assert_eq!(
        summary(&clean, Style { color: true }),
        "\x1b[32m✔ No validation issues found when analyzing 12 resources in 3 files.\x1b[0m"
    );
    let mut info = sample();
    info.diagnostics.drain(..2);
    info.suppressed = 0;
    assert_eq!(
        summary(&info, Style::PLAIN),
        "Info: 1 info when analyzing 1 resource in 2 files."
    );
}

#[test]
fn json_has_stable_field_names() {
    let v: serde_json::Value = serde_json::from_str(&json(&sample())).unwrap();
    assert_eq!(
        v["diagnostics"][1],
        serde_json::json!({
            "severity": "warning",
            "code": "RM0103",
            "file": "b.yaml",
            "line": 7,
            "column": 5,
            "resource": {"kind": "VirtualService", "namespace": "default", "name": "reviews"},
            "field": "spec.http[1]",
            "message": "unreachable",
        })
    );
    assert_eq!(v["diagnostics"][0]["resource"], serde_json::Value::Null);
    assert_eq!(
        v["summary"],
        serde_json::json!({
            "files": 2, "resources": 1, "errors": 1, "warnings": 1, "info": 1, "suppressed": 2
        })
    );
    let y: serde_json::Value = serde_yaml_ng::from_str(&yaml(&sample())).unwrap();
    assert_eq!(y, v);
}

#[test]
fn explains_codes() {
    let all = explain(None).unwrap();
    assert!(
        all.starts_with("CODE    SEVERITY CHECKS    MEANING\n"),
        "{all}"
    );
    assert!(all.contains("\nRM0001  error    resource  not valid YAML; the document is skipped\n"));
    assert_eq!(all.lines().count(), 1 + codes::ALL.len() + ANALYZERS.len());
    let one = explain(Some("rm0103")).unwrap();
    assert_eq!(one.lines().count(), 2);
    assert!(
        one.contains("RM0103  warning  mesh      an HTTP route after"),
        "{one}"
    );
    assert!(explain(Some("RM0999")).is_err());
}
