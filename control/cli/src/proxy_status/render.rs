//! A `ListProxiesResponse` as text: the table (`istioctl proxy-status`
//! style), per-proxy details, and JSON/YAML with stable field names.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ringmesh_proto::mesh::v1::{
    ListProxiesResponse, ProxyStatus, SyncState, TypeStatus, XdsProtocol,
};
use serde_json::{json, Value};

use crate::{
    addr::HostPort,
    style::{Style, BOLD, DIM, GREEN, RED, YELLOW},
};

/// The type columns always shown, in the order Envoy warms them
/// (istioctl's order); any other type a listed proxy asked for gets a
/// column after these.
const FIXED_COLUMNS: [&str; 4] = ["CDS", "LDS", "EDS", "RDS"];

/// Versions in the table are cut to this many characters (like a short
/// git hash); details and JSON show them whole.
const SHORT_VERSION: usize = 8;

/// Rows by node id, then connection order.
pub fn sort(resp: &mut ListProxiesResponse) {
    resp.proxies
        .sort_by(|a, b| (&a.node_id, a.stream_id).cmp(&(&b.node_id, b.stream_id)));
}

/// `SYNCED`, `STALE`, `NACKED` or `NOT SENT`.
pub fn state_name(s: SyncState) -> &'static str {
    match s {
        SyncState::Synced => "SYNCED",
        SyncState::Stale => "STALE",
        SyncState::Nacked => "NACKED",
        SyncState::NotSent | SyncState::Unspecified => "NOT SENT",
    }
}

fn state_sgr(s: SyncState) -> &'static str {
    match s {
        SyncState::Synced => GREEN,
        SyncState::Stale => YELLOW,
        SyncState::Nacked => RED,
        SyncState::NotSent | SyncState::Unspecified => DIM,
    }
}

fn short(version: &str) -> &str {
    match version.char_indices().nth(SHORT_VERSION) {
        Some((i, _)) => &version[..i],
        None => version,
    }
}

fn find<'a>(p: &'a ProxyStatus, short_name: &str) -> Option<&'a TypeStatus> {
    p.types.iter().find(|t| t.short_name == short_name)
}

/// The type columns for these proxies: the fixed four, then any other
/// short name present, alphabetically.
fn columns(resp: &ListProxiesResponse) -> Vec<String> {
    let mut cols: Vec<String> = FIXED_COLUMNS.iter().map(|s| s.to_string()).collect();
    let mut extra: Vec<String> = resp
        .proxies
        .iter()
        .flat_map(|p| &p.types)
        .map(|t| t.short_name.clone())
        .filter(|s| !FIXED_COLUMNS.contains(&s.as_str()))
        .collect();
    extra.sort();
    extra.dedup();
    cols.extend(extra);
    cols
}

/// A table cell: the state, then the version the proxy runs (the one it
/// last accepted), if any.
fn cell(t: Option<&TypeStatus>) -> (String, SyncState) {
    let Some(t) = t else {
        return (
            state_name(SyncState::NotSent).to_owned(),
            SyncState::NotSent,
        );
    };
    let state = t.state();
    let mut text = state_name(state).to_owned();
    if let Some(a) = &t.acked {
        if !a.version.is_empty() {
            let _ = write!(text, " ({})", short(&a.version));
        }
    }
    (text, state)
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// One row per proxy stream: NAME, CLUSTER, a column per type, CONTROL
/// PLANE, VERSION (the proxy's user agent version). Columns are padded
/// to their widest cell and separated by three spaces; no trailing
/// blanks.
pub fn table(resp: &ListProxiesResponse, style: Style) -> String {
    if resp.proxies.is_empty() {
        return "No proxy is connected to the control plane.\n".to_owned();
    }
    let cols = columns(resp);
    let control_plane = resp
        .control_plane
        .as_ref()
        .map(|c| c.id.as_str())
        .unwrap_or("");
    let mut header: Vec<String> = vec!["NAME".into(), "CLUSTER".into()];
    header.extend(cols.iter().cloned());
    header.extend(["CONTROL PLANE".into(), "VERSION".into()]);

    // (text, colour) per cell.
    let mut rows: Vec<Vec<(String, Option<&'static str>)>> = Vec::new();
    for p in &resp.proxies {
        let mut row = vec![
            (p.node_id.clone(), None),
            (or_dash(&p.node_cluster).to_owned(), None),
        ];
        for c in &cols {
            let (text, state) = cell(find(p, c));
            row.push((text, Some(state_sgr(state))));
        }
        row.push((or_dash(control_plane).to_owned(), None));
        row.push((or_dash(&p.user_agent_version).to_owned(), None));
        rows.push(row);
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, (text, _)) in widths.iter_mut().zip(row) {
            *w = (*w).max(text.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<(String, Option<&'static str>)>| {
        let last = cells.len() - 1;
        let mut l = String::new();
        for (i, (text, sgr)) in cells.into_iter().enumerate() {
            let pad = widths[i] - text.chars().count();
            l.push_str(&match sgr {
                Some(sgr) => style.paint(sgr, &text),
                None => text,
            });
            if i != last {
                l.push_str(&" ".repeat(pad + 3));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(
        &mut out,
        header
            .into_iter()
            .map(|h| (h, style.color.then_some(BOLD)))
            .collect(),
    );
    for row in rows {
        line(&mut out, row);
    }
    out
}

fn to_system_time(ts: &prost_types::Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// `2024-05-01T12:00:03Z` (UTC, whole seconds).
pub fn rfc3339(ts: &prost_types::Timestamp) -> String {
    let secs = ts.seconds;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// `4s ago`, `3m12s ago`, `2h05m ago`, `3d ago`; `just now` under a
/// second (and for a clock slightly ahead of ours).
pub fn ago(ts: Option<&prost_types::Timestamp>, now: SystemTime) -> String {
    let Some(t) = ts.and_then(to_system_time) else {
        return "at an unknown time".to_owned();
    };
    let d = now.duration_since(t).unwrap_or_default().as_secs();
    match d {
        0 => "just now".to_owned(),
        1..=59 => format!("{d}s ago"),
        60..=3599 => format!("{}m{:02}s ago", d / 60, d % 60),
        3600..=86_399 => format!("{}h{:02}m ago", d / 3600, d % 3600 / 60),
        _ => format!("{}d ago", d / 86_400),
    }
}

fn protocol_name(p: XdsProtocol) -> &'static str {
    match p {
        XdsProtocol::Delta => "delta",
        XdsProtocol::Sotw => "sotw",
        XdsProtocol::Unspecified => "unknown",
    }
}

fn code_name(code: i32) -> String {
    format!("{:?}", tonic::Code::from_i32(code))
}

fn subscription_text(t: &TypeStatus) -> String {
    let Some(s) = &t.subscription else {
        return "nothing".to_owned();
    };
    match (s.wildcard, s.names.is_empty()) {
        (true, true) => "all (wildcard)".to_owned(),
        (true, false) => format!("all (wildcard) and {}", s.names.join(", ")),
        (false, true) => "nothing".to_owned(),
        (false, false) => s.names.join(", "),
    }
}

/// Types in column order (the fixed four first), then by short name.
fn ordered(p: &ProxyStatus) -> Vec<&TypeStatus> {
    let rank = |t: &TypeStatus| {
        FIXED_COLUMNS
            .iter()
            .position(|c| *c == t.short_name)
            .unwrap_or(FIXED_COLUMNS.len())
    };
    let mut v: Vec<&TypeStatus> = p.types.iter().collect();
    v.sort_by(|a, b| (rank(a), &a.short_name).cmp(&(rank(b), &b.short_name)));
    v
}

/// Everything about one proxy stream, for `proxy-status PROXY`:
///
/// ```text
/// sidecar~10.0.0.7~reviews-v1.default~default.svc.cluster.local
///   cluster reviews, scope reviews, delta xDS, stream 3, ringmesh 0.1.0
///   connected 2023-11-14T22:13:20Z (1m40s ago)
///   CDS   SYNCED     version 5f0c1a2b3c4d5e6f accepted 12s ago
///                    subscribed to all (wildcard); holds 2
///   LDS   NACKED     version 7a8b9c0d1e2f3a4b rejected 5s ago; runs no accepted version yet
///                    subscribed to all (wildcard); holds 0
///                    rejected http (version 11112222): Listener "http": ...
///                    error (InvalidArgument): Listener "http": ...
/// ```
pub fn details(
    p: &ProxyStatus,
    resp: &ListProxiesResponse,
    now: SystemTime,
    style: Style,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", style.paint(BOLD, &p.node_id));
    let agent = match (p.user_agent_name.as_str(), p.user_agent_version.as_str()) {
        ("", "") => "unknown agent".to_owned(),
        (n, "") => n.to_owned(),
        ("", v) => v.to_owned(),
        (n, v) => format!("{n} {v}"),
    };
    let _ = writeln!(
        out,
        "  cluster {}, scope {}, {} xDS, stream {}, {agent}",
        or_dash(&p.node_cluster),
        p.scope,
        protocol_name(p.protocol()),
        p.stream_id
    );
    let connected = p.connected_at.as_ref().map(rfc3339).unwrap_or_default();
    let _ = writeln!(
        out,
        "  connected {connected} ({})",
        ago(p.connected_at.as_ref(), now)
    );
    if p.waiting_for_first_publish {
        let _ = writeln!(
            out,
            "  {}",
            style.paint(
                YELLOW,
                "waiting: the control plane has no configuration for this proxy's scope yet"
            )
        );
    }
    if p.types.is_empty() {
        let _ = writeln!(out, "  (no resource type requested yet)");
    }
    let published = resp.published.get(&p.scope).map(|v| &v.versions);
    let types = ordered(p);
    let name_width = types
        .iter()
        .map(|t| t.short_name.chars().count())
        .max()
        .unwrap_or(3)
        .max(3);
    let indent = " ".repeat(2 + name_width + 3 + 8 + 3);
    for t in types {
        let state = t.state();
        let label = state_name(state);
        let mut lines: Vec<String> = Vec::new();
        let running = match &t.acked {
            Some(a) if !a.version.is_empty() => format!("runs version {}", a.version),
            _ => "runs no accepted version yet".to_owned(),
        };
        match state {
            SyncState::Synced => {
                let a = t.acked.as_ref();
                let version = a.map(|a| a.version.as_str()).unwrap_or("");
                let when = match a {
                    Some(a) if a.nonce.is_empty() => {
                        "held on connecting (nothing had to be sent)".to_owned()
                    }
                    _ => format!("accepted {}", ago(a.and_then(|a| a.at.as_ref()), now)),
                };
                lines.push(format!("version {version} {when}"));
            }
            SyncState::Stale => {
                let s = t.sent.as_ref();
                lines.push(format!(
                    "version {} sent {}, not answered yet; {running}",
                    s.map(|s| s.version.as_str()).unwrap_or(""),
                    ago(s.and_then(|s| s.at.as_ref()), now)
                ));
            }
            SyncState::Nacked => {
                let n = t.last_nack.as_ref();
                lines.push(format!(
                    "version {} rejected {}; {running}",
                    n.map(|n| n.version.as_str()).unwrap_or(""),
                    ago(n.and_then(|n| n.at.as_ref()), now)
                ));
            }
            SyncState::NotSent | SyncState::Unspecified => {
                lines.push("nothing sent yet".to_owned());
            }
        }
        lines.push(format!(
            "subscribed to {}; holds {}",
            subscription_text(t),
            t.resources
        ));
        // A wildcard subscriber is offered the whole published set: when
        // a newer set exists than the last one offered, it is on its way.
        // (Named subscribers may rightly stay on an older set version:
        // their resources did not change.)
        let last_offered = t
            .sent
            .as_ref()
            .map(|s| &s.version)
            .or(t.acked.as_ref().map(|a| &a.version));
        let wildcard = t.subscription.as_ref().is_some_and(|s| s.wildcard);
        if let (Some(published), Some(offered)) =
            (published.and_then(|p| p.get(&t.type_url)), last_offered)
        {
            if wildcard && published != offered {
                lines.push(format!(
                    "latest published version {published} (not sent yet)"
                ));
            }
        }
        if let Some(n) = &t.last_nack {
            let mut rejected: Vec<(&String, &String)> = t.rejected.iter().collect();
            rejected.sort();
            for (name, version) in rejected {
                let reason = n
                    .rejected
                    .get(name)
                    .map(|r| r.reason.as_str())
                    .filter(|r| !r.is_empty());
                lines.push(match reason {
                    Some(r) => format!("rejected {name} (version {version}): {r}"),
                    None => format!("rejected {name} (version {version})"),
                });
            }
            let head = if state == SyncState::Nacked {
                format!("error ({})", code_name(n.error_code))
            } else {
                format!(
                    "last rejection, version {} {} ({})",
                    n.version,
                    ago(n.at.as_ref(), now),
                    code_name(n.error_code)
                )
            };
            let mut msg = n.error_message.lines();
            let first = msg.next().unwrap_or("");
            lines.push(format!("{head}: {first}"));
            for more in msg {
                lines.push(format!("  {more}"));
            }
        }
        let label_cell = format!(
            "{}{}",
            style.paint(state_sgr(state), label),
            " ".repeat(8usize.saturating_sub(label.len()))
        );
        for (i, l) in lines.iter().enumerate() {
            if i == 0 {
                let _ = writeln!(out, "  {:<name_width$}   {label_cell}   {l}", t.short_name);
            } else {
                let _ = writeln!(out, "{indent}{l}");
            }
        }
    }
    out
}

fn ts_json(ts: Option<&prost_types::Timestamp>) -> Value {
    ts.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

fn type_json(t: &TypeStatus, published: Option<&String>) -> Value {
    let rejected: BTreeMap<&String, &String> = t.rejected.iter().collect();
    json!({
        "type_url": t.type_url,
        "state": state_name(t.state()),
        "subscription": t.subscription.as_ref().map(|s| json!({
            "wildcard": s.wildcard,
            "names": s.names,
        })),
        "sent": t.sent.as_ref().map(|s| json!({
            "version": s.version,
            "nonce": s.nonce,
            "at": ts_json(s.at.as_ref()),
            "resources": s.resources,
            "removed": s.removed,
        })),
        "acked": t.acked.as_ref().map(|a| json!({
            "version": a.version,
            "nonce": a.nonce,
            "at": ts_json(a.at.as_ref()),
        })),
        "last_nack": t.last_nack.as_ref().map(|n| {
            let rejected: BTreeMap<&String, Value> = n
                .rejected
                .iter()
                .map(|(k, r)| (k, json!({ "version": r.version, "reason": r.reason })))
                .collect();
            json!({
                "version": n.version,
                "nonce": n.nonce,
                "at": ts_json(n.at.as_ref()),
                "error": { "code": code_name(n.error_code), "message": n.error_message },
                "rejected": rejected,
            })
        }),
        "rejected": rejected,
        "resources": t.resources,
        "published_version": published,
    })
}

/// The whole answer as one JSON value. Types are keyed by their short
/// name (`LDS`, ...); a second type with the same short name is keyed by
/// its type URL.
pub fn to_json(resp: &ListProxiesResponse, control: &HostPort) -> Value {
    let proxies: Vec<Value> = resp
        .proxies
        .iter()
        .map(|p| {
            let published = resp.published.get(&p.scope).map(|v| &v.versions);
            let mut types = serde_json::Map::new();
            for t in ordered(p) {
                let key = if types.contains_key(&t.short_name) {
                    t.type_url.clone()
                } else {
                    t.short_name.clone()
                };
                types.insert(
                    key,
                    type_json(t, published.and_then(|v| v.get(&t.type_url))),
                );
            }
            json!({
                "node_id": p.node_id,
                "cluster": p.node_cluster,
                "scope": p.scope,
                "stream_id": p.stream_id,
                "protocol": protocol_name(p.protocol()),
                "user_agent": { "name": p.user_agent_name, "version": p.user_agent_version },
                "connected_at": ts_json(p.connected_at.as_ref()),
                "waiting_for_first_publish": p.waiting_for_first_publish,
                "types": types,
            })
        })
        .collect();
    let published: BTreeMap<&String, BTreeMap<&String, &String>> = resp
        .published
        .iter()
        .map(|(scope, v)| (scope, v.versions.iter().collect()))
        .collect();
    let cp = resp.control_plane.as_ref();
    json!({
        "control_plane": {
            "address": control.to_string(),
            "id": cp.map(|c| c.id.as_str()),
            "version": cp.map(|c| c.version.as_str()),
        },
        "proxies": proxies,
        "published": published,
    })
}

pub fn json(resp: &ListProxiesResponse, control: &HostPort) -> String {
    let mut s = serde_json::to_string_pretty(&to_json(resp, control)).unwrap_or_default();
    s.push('\n');
    s
}

pub fn yaml(resp: &ListProxiesResponse, control: &HostPort) -> String {
    serde_yaml_ng::to_string(&to_json(resp, control)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
