use super::*;
use crate::security::{authorization_policy::*, peer_authentication::*};

pub(crate) fn peer_authentication(pa: &PeerAuthentication, cx: &mut Ctx, p: &FieldPath) {
    let sp = p.key("selector").key("matchLabels");
    if let Some(sel) = &pa.selector {
        labels(cx, &sp, &sel.match_labels);
    }
    if !pa.port_level_mtls.is_empty() {
        let has_selector = pa
            .selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty());
        if !has_selector {
            cx.invalid(
                &p.key("portLevelMtls"),
                "portLevelMtls requires a workload selector (as in Istio): ports are a property \
                 of a workload, not of a namespace",
            );
        }
    }
    for key in pa.port_level_mtls.keys() {
        port(cx, &p.key("portLevelMtls").key(key.to_string()), key.0);
    }
}

/// The attributes `when` may test, as Istio defines them. `[...]` keys
/// carry a name: `request.headers[x-user]`, `request.auth.claims[groups]`.
const CONDITION_KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

const INDEXED_KEYS: &[&str] = &["request.headers", "request.auth.claims"];

fn condition_key_ok(key: &str) -> bool {
    if CONDITION_KEYS.contains(&key) || key.starts_with("experimental.envoy.filters.") {
        return true;
    }
    let Some((base, rest)) = key.split_once('[') else {
        return false;
    };
    if !INDEXED_KEYS.contains(&base) || !rest.ends_with(']') {
        return false;
    }
    // `request.auth.claims[a][b]` reaches into nested claims.
    let inner = &rest[..rest.len() - 1];
    !inner.is_empty()
        && inner
            .split("][")
            .all(|part| !part.is_empty() && !part.contains(['[', ']']))
        && (base == "request.auth.claims" || !inner.contains("]["))
}

pub(crate) fn authorization_policy(ap: &AuthorizationPolicy, cx: &mut Ctx, p: &FieldPath) {
    if let Some(sel) = &ap.selector {
        labels(cx, &p.key("selector").key("matchLabels"), &sel.match_labels);
    }
    for (field, set) in [
        ("targetRef", ap.target_ref.is_some()),
        ("targetRefs", !ap.target_refs.is_empty()),
    ] {
        if set {
            cx.unsupported(
                &p.key(field),
                format!(
                    "{field} (attaching a policy to a gateway or waypoint) is not supported yet; \
                     use selector"
                ),
            );
        }
    }
    if ap.action == Action::Custom {
        cx.unsupported(
            &p.key("action"),
            "CUSTOM authorization (ext_authz) is not supported yet",
        );
    } else if ap.provider.is_some() {
        cx.invalid(
            &p.key("provider"),
            "provider is only allowed with action CUSTOM",
        );
    }
    if ap.action == Action::Deny && ap.rules.is_empty() {
        cx.ignored(
            &p.key("rules"),
            "a DENY policy without rules matches nothing, so it denies nothing",
        );
    }
    for (i, rule) in ap.rules.iter().enumerate() {
        let rp = p.key("rules").index(i);
        for (j, from) in rule.from.iter().enumerate() {
            let fp = rp.key("from").index(j);
            match &from.source {
                None => cx.invalid(&fp.key("source"), "source is required"),
                Some(s) if s.is_empty() => {
                    cx.invalid(&fp.key("source"), "source must set at least one field")
                }
                Some(s) => source(cx, &fp.key("source"), s),
            }
        }
        for (j, to) in rule.to.iter().enumerate() {
            let tp = rp.key("to").index(j);
            match &to.operation {
                None => cx.invalid(&tp.key("operation"), "operation is required"),
                Some(o) if o.is_empty() => cx.invalid(
                    &tp.key("operation"),
                    "operation must set at least one field",
                ),
                Some(o) => operation(cx, &tp.key("operation"), o),
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            condition(cx, &rp.key("when").index(j), c);
        }
    }
}

fn source(cx: &mut Ctx, p: &FieldPath, s: &Source) {
    for (field, values) in [
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
    ] {
        if !values.is_empty() {
            cx.ignored(
                &p.key(field),
                format!(
                    "{field} needs JWT authentication (RequestAuthentication), which Ringmesh \
                     does not do yet: an ALLOW or AUDIT rule using it never matches, a DENY rule \
                     is applied without it (it denies more)"
                ),
            );
        }
    }
    for (field, values) in [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
    ] {
        non_empty_strings(cx, &p.key(field), "a value", values);
    }
    for (field, values) in [
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ] {
        ip_blocks(cx, &p.key(field), values);
    }
    for (field, values) in [
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
    ] {
        for (i, v) in values.iter().enumerate() {
            let ok = v
                .split_once('/')
                .is_some_and(|(ns, sa)| is_dns_label(ns) && is_dns_subdomain(sa));
            if !v.is_empty() && !ok {
                cx.invalid(
                    &p.key(field).index(i),
                    format!("invalid service account {v:?} (expected namespace/name)"),
                );
            }
        }
    }
}

fn operation(cx: &mut Ctx, p: &FieldPath, o: &Operation) {
    for (field, values) in [
        ("hosts", &o.hosts),
        ("notHosts", &o.not_hosts),
        ("methods", &o.methods),
        ("notMethods", &o.not_methods),
    ] {
        non_empty_strings(cx, &p.key(field), "a value", values);
    }
    for (field, values) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
        for (i, v) in values.iter().enumerate() {
            if v.parse::<u16>().is_err() {
                cx.invalid(
                    &p.key(field).index(i),
                    format!("invalid port {v:?} (expected a number 0-65535)"),
                );
            }
        }
    }
    for (field, values) in [("paths", &o.paths), ("notPaths", &o.not_paths)] {
        for (i, v) in values.iter().enumerate() {
            if let Some(e) = path_error(v) {
                cx.invalid(&p.key(field).index(i), e);
            }
        }
    }
}

/// Paths: exact, `prefix*`, `*suffix`, `*`, or templates with `{*}` (one
/// segment) and `{**}` (the rest).
fn path_error(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("a path must not be empty".into());
    }
    if path.contains('{') {
        let ok = path.starts_with('/')
            && path
                .split('/')
                .all(|seg| !(seg.contains(['{', '}', '*']) && seg != "{*}" && seg != "{**}"));
        if !ok {
            return Some(format!(
                "invalid path template {path:?} ({{*}} and {{**}} must each be a whole segment)"
            ));
        }
        // Envoy's URI templates (and Istio): `{**}` only as the last operator.
        if path
            .find("{**}")
            .is_some_and(|i| path[i + 4..].contains('{'))
        {
            return Some(format!(
                "invalid path template {path:?} ({{**}} must be the last operator)"
            ));
        }
        return None;
    }
    let trimmed = path.strip_prefix('*').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('*').unwrap_or(trimmed);
    let both_ends = path.len() > 1 && path.starts_with('*') && path.ends_with('*');
    if trimmed.contains('*') || both_ends {
        return Some(format!(
            "invalid path {path:?}: * is allowed only as a prefix or a suffix (or use the {{*}} \
             and {{**}} templates)"
        ));
    }
    None
}

fn condition(cx: &mut Ctx, p: &FieldPath, c: &Condition) {
    if c.key.is_empty() {
        cx.invalid(&p.key("key"), "key is required");
        return;
    }
    if !condition_key_ok(&c.key) {
        cx.invalid(
            &p.key("key"),
            format!(
                "unknown condition key {:?} (supported: request.headers[NAME], source.ip, \
                 remote.ip, source.namespace, source.principal, request.auth.principal, \
                 request.auth.audiences, request.auth.presenter, request.auth.claims[NAME], \
                 destination.ip, destination.port, connection.sni)",
                c.key
            ),
        );
        return;
    }
    if c.values.is_empty() && c.not_values.is_empty() {
        cx.invalid(p, "set values or notValues");
    }
    if c.key.starts_with("request.auth.") || c.key.starts_with("experimental.") {
        cx.ignored(
            &p.key("key"),
            format!(
                "{} is not evaluated by Ringmesh yet (no JWT authentication, no experimental \
                 attributes): an ALLOW or AUDIT rule using it never matches, a DENY rule is \
                 applied without it (it denies more)",
                c.key
            ),
        );
    }
    for (field, values) in [("values", &c.values), ("notValues", &c.not_values)] {
        match c.key.as_str() {
            "source.ip" | "remote.ip" | "destination.ip" => ip_blocks(cx, &p.key(field), values),
            "destination.port" => {
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<u16>().is_err() {
                        cx.invalid(
                            &p.key(field).index(i),
                            format!("invalid port {v:?} (expected a number 0-65535)"),
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_keys() {
        for ok in [
            "request.headers[x-user]",
            "request.auth.claims[groups]",
            "request.auth.claims[nested][key]",
            "source.ip",
            "experimental.envoy.filters.network.mysql_proxy[db.table]",
        ] {
            assert!(condition_key_ok(ok), "{ok}");
        }
        for bad in [
            "request.header[x]",
            "request.headers[]",
            "request.headers[a][b]",
            "request.headers[x",
            "source.ips",
        ] {
            assert!(!condition_key_ok(bad), "{bad}");
        }
    }

    #[test]
    fn paths() {
        for ok in [
            "/api",
            "/api/*",
            "*/info",
            "*",
            "/a/{*}/b",
            "/a/{**}",
            "/a/{*}/{**}",
        ] {
            assert_eq!(path_error(ok), None, "{ok}");
        }
        for bad in ["", "/a*b", "*a*", "/a/{x}", "/a/b{*}", "/a/{**}/{*}"] {
            assert!(path_error(bad).is_some(), "{bad}");
        }
    }
}
