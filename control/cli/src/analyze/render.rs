//! A [`Report`] as text: a table grouped by file for people, one
//! compiler-style line per finding for editors and CI logs, or JSON/YAML
//! for programs (field names documented in the README and stable).

use std::fmt::Write as _;

use ringmesh_istio::{codes, Diagnostic, Severity};
use serde::Serialize;

use super::{mesh::ANALYZERS, report::Report};
use crate::style::{Style, BOLD, CYAN, DIM, GREEN, RED, YELLOW};

fn severity_sgr(s: Severity) -> &'static str {
    match s {
        Severity::Error => RED,
        Severity::Warning => YELLOW,
        Severity::Info => CYAN,
    }
}

/// `1 error, 2 warnings, 5 info` (non-zero counts only).
fn counts(report: &Report) -> String {
    let mut parts = Vec::new();
    for (s, one, many) in [
        (Severity::Error, "error", "errors"),
        (Severity::Warning, "warning", "warnings"),
        (Severity::Info, "info", "info"),
    ] {
        match report.count(s) {
            0 => {}
            1 => parts.push(format!("1 {one}")),
            n => parts.push(format!("{n} {many}")),
        }
    }
    parts.join(", ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The last line: `✔ No validation issues found when analyzing 24
/// resources in 11 files.` or `Error: 1 error, 5 info when analyzing ...`.
pub fn summary(report: &Report, style: Style) -> String {
    let scope = format!(
        "when analyzing {} in {}",
        plural(report.resources, "resource", "resources"),
        plural(report.files, "file", "files")
    );
    let suppressed = match report.suppressed {
        0 => String::new(),
        n => format!(" ({n} suppressed)"),
    };
    let worst = report.diagnostics.iter().map(|d| d.severity).min();
    match worst {
        None => style.paint(
            GREEN,
            &format!("✔ No validation issues found {scope}{suppressed}."),
        ),
        Some(s) => {
            let head = match s {
                Severity::Error => "Error",
                Severity::Warning => "Warning",
                Severity::Info => "Info",
            };
            format!(
                "{}: {} {scope}{suppressed}.",
                style.paint(severity_sgr(s), head),
                counts(report)
            )
        }
    }
}

/// One line per finding (`FILE:LINE:COL: severity[CODE] Kind ns/name:
/// field: message`, the model's own format), then the summary.
pub fn lines(report: &Report, style: Style) -> String {
    let mut out = String::new();
    for d in &report.diagnostics {
        if style.color {
            let plain = d.to_string();
            let tag = format!("{}[{}]", d.severity, d.code);
            let painted = style.paint(severity_sgr(d.severity), &tag);
            let _ = writeln!(out, "{}", plain.replacen(&tag, &painted, 1));
        } else {
            let _ = writeln!(out, "{d}");
        }
    }
    let _ = writeln!(out, "{}", summary(report, style));
    out
}

fn location(d: &Diagnostic) -> (String, String) {
    match (d.line, d.column) {
        (Some(l), Some(c)) => (l.to_string(), format!(":{c}")),
        (Some(l), None) => (l.to_string(), String::new()),
        (None, _) => ("-".into(), String::new()),
    }
}

/// A column wider than this does not widen the others; the long cell
/// pushes its own row's message instead.
const MAX_RESOURCE_WIDTH: usize = 48;

/// Findings grouped under their file, in aligned columns (line:column,
/// severity, code, resource, then `field: message`), then the summary.
pub fn table(report: &Report, style: Style) -> String {
    let rows: Vec<(&Diagnostic, (String, String), String)> = report
        .diagnostics
        .iter()
        .map(|d| {
            let resource = d.resource.as_ref().map_or("-".into(), ToString::to_string);
            (d, location(d), resource)
        })
        .collect();
    let line_w = rows.iter().map(|r| r.1 .0.len()).max().unwrap_or(0);
    let col_w = rows.iter().map(|r| r.1 .1.len()).max().unwrap_or(0);
    let res_w = rows
        .iter()
        .map(|r| r.2.chars().count())
        .filter(|&w| w <= MAX_RESOURCE_WIDTH)
        .max()
        .unwrap_or(0);
    let sev_w = rows
        .iter()
        .map(|r| r.0.severity.as_str().len())
        .max()
        .unwrap_or(0);

    let mut out = String::new();
    let mut file: Option<&str> = None;
    for (d, (line, col), resource) in &rows {
        if file != Some(d.file.as_str()) {
            if file.is_some() {
                out.push('\n');
            }
            let _ = writeln!(out, "{}", style.paint(BOLD, &d.file));
            file = Some(&d.file);
        }
        let at = format!("{line:>line_w$}{col:<col_w$}");
        let severity = format!("{:<sev_w$}", d.severity.as_str());
        let resource = format!("{resource:<res_w$}");
        let message = match &d.field {
            Some(f) => format!("{f}: {}", d.message),
            None => d.message.clone(),
        };
        let _ = writeln!(
            out,
            "  {}  {}  {}  {}  {message}",
            style.paint(DIM, &at),
            style.paint(severity_sgr(d.severity), &severity),
            d.code,
            resource
        );
    }
    if !rows.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{}", summary(report, style));
    out
}

#[derive(Serialize)]
struct Output<'a> {
    diagnostics: Vec<OutDiagnostic<'a>>,
    summary: Summary,
}

#[derive(Serialize)]
struct OutDiagnostic<'a> {
    severity: &'static str,
    code: &'static str,
    file: &'a str,
    line: Option<usize>,
    column: Option<usize>,
    resource: Option<OutResource<'a>>,
    field: Option<&'a str>,
    message: &'a str,
}

#[derive(Serialize)]
struct OutResource<'a> {
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct Summary {
    files: usize,
    resources: usize,
    errors: usize,
    warnings: usize,
    info: usize,
    suppressed: usize,
}

fn output(report: &Report) -> Output<'_> {
    Output {
        diagnostics: report
            .diagnostics
            .iter()
            .map(|d| OutDiagnostic {
                severity: d.severity.as_str(),
                code: d.code,
                file: &d.file,
                line: d.line,
                column: d.column,
                resource: d.resource.as_ref().map(|r| OutResource {
                    kind: &r.kind,
                    namespace: &r.namespace,
                    name: &r.name,
                }),
                field: d.field.as_deref(),
                message: &d.message,
            })
            .collect(),
        summary: Summary {
            files: report.files,
            resources: report.resources,
            errors: report.count(Severity::Error),
            warnings: report.count(Severity::Warning),
            info: report.count(Severity::Info),
            suppressed: report.suppressed,
        },
    }
}

pub fn json(report: &Report) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    let mut s = serde_json::to_string_pretty(&output(report)).unwrap_or_default();
    s.push('\n');
    s
}

pub fn yaml(report: &Report) -> String {
    serde_yaml_ng::to_string(&output(report)).unwrap_or_default()
}

/// `--explain`: every code, or one, with its severity and meaning.
pub fn explain(code: Option<&str>) -> Result<String, String> {
    let mut rows: Vec<(&str, Severity, &str, &str)> = codes::ALL
        .iter()
        .map(|(c, s, what)| (*c, *s, "resource", *what))
        .collect();
    rows.extend(
        ANALYZERS
            .iter()
            .map(|a| (a.code, a.severity, "mesh", a.summary)),
    );
    if let Some(code) = code {
        let want = code.to_ascii_uppercase();
        rows.retain(|r| r.0 == want);
        if rows.is_empty() {
            return Err(format!(
                "unknown code {code}; `ringmesh analyze --explain` lists them"
            ));
        }
    }
    let mut out = format!("{:<7} {:<8} {:<9} MEANING\n", "CODE", "SEVERITY", "CHECKS");
    for (c, s, scope, what) in rows {
        let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(out, "{c:<7} {:<8} {scope:<9} {what}", s.as_str());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
