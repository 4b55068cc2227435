//! `tls-check` rows as text: an aligned table with the conflicts
//! explained below it, or JSON with every workload's decision.

use serde_json::{json, Value};

use super::Row;
use crate::style::{Style, BOLD, GREEN, RED};

/// The columns, in order.
pub const HEADER: [&str; 7] = [
    "HOST",
    "PORT",
    "SERVER",
    "CLIENT",
    "STATUS",
    "AUTHN POLICY",
    "DESTINATION RULE",
];

/// The distinct deciders of a row's server side, in workload order.
fn authn_policies(row: &Row) -> String {
    let mut seen: Vec<String> = Vec::new();
    for s in &row.server {
        let d = s.decided_by();
        if !seen.contains(&d) {
            seen.push(d);
        }
    }
    seen.join(", ")
}

fn destination_rule(row: &Row) -> String {
    row.client
        .as_ref()
        .and_then(|c| c.destination_rule.clone())
        .unwrap_or_else(|| "-".to_owned())
}

/// The table, then one line per conflict: `HOST:PORT: reason`.
pub fn table(rows: &[Row], style: Style) -> String {
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                r.port.to_string(),
                r.server_mode(),
                r.client_mode(),
                r.status().to_owned(),
                authn_policies(r),
                destination_rule(r),
            ]
        })
        .collect();
    let mut widths: [usize; 7] = HEADER.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[String; 7], paint: &dyn Fn(usize, &str) -> String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            l.push_str(&paint(i, c));
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    let mut out = String::new();
    line(&mut out, &HEADER.map(str::to_owned), &|_, c| {
        style.paint(BOLD, c)
    });
    for row in &cells {
        line(&mut out, row, &|i, c| match (i, c) {
            (4, "OK") => style.paint(GREEN, c),
            (4, _) => style.paint(RED, c),
            _ => c.to_owned(),
        });
    }
    let conflicts: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.conflicts
                .iter()
                .map(move |c| format!("{}:{}: {c}", r.host, r.port))
        })
        .collect();
    if !conflicts.is_empty() {
        out.push('\n');
        for c in conflicts {
            out.push_str(&style.paint(RED, "CONFLICT"));
            out.push(' ');
            out.push_str(&c);
            out.push('\n');
        }
    }
    out
}

/// Every row with its per-workload decisions, as a JSON array (pretty,
/// newline-terminated).
pub fn json(rows: &[Row]) -> String {
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let workloads: Vec<Value> = r
                .server
                .iter()
                .map(|s| {
                    json!({
                        "workload": s.workload,
                        "target_port": s.target_port,
                        "sidecar": s.sidecar,
                        "policy_mode": s.mtls.mode.as_str(),
                        "mode": s.effective().as_str(),
                        "policy": s.mtls.policy.as_ref().map(|p| json!({
                            "namespace": p.namespace,
                            "name": p.name,
                            "level": p.level.as_str(),
                        })),
                    })
                })
                .collect();
            let client = r.client.as_ref().map(|c| {
                json!({
                    "namespace": r.client_namespace,
                    "mode": c.mode.as_str(),
                    "auto": c.auto.is_some(),
                    "auto_reason": c.auto.map(|a| a.describe()),
                    "destination_rule": c.destination_rule,
                })
            });
            json!({
                "host": r.host,
                "namespace": r.namespace,
                "port": r.port,
                "server": { "mode": r.server_mode(), "workloads": workloads },
                "client": client,
                "status": r.status(),
                "conflicts": r.conflicts,
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".to_owned());
    text.push('\n');
    text
}
