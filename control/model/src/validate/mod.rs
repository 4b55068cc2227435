//! Semantic validation: the rules a typed spec must still satisfy (regexes
//! compile, weights sum to 100, CIDRs parse, ...). Validators collect every
//! finding rather than stopping at the first, each with the field path it
//! is about; the loader turns paths into lines and drops resources that
//! have errors.

mod destination_rule;
mod security;
mod service_entry;
mod sidecar;
mod virtual_service;

use std::{collections::BTreeMap, net::IpAddr};

pub(crate) use destination_rule::destination_rule;
pub(crate) use security::{authorization_policy, peer_authentication};
pub(crate) use service_entry::service_entry;
pub(crate) use sidecar::sidecar;
pub(crate) use virtual_service::virtual_service;

use crate::{
    diagnostic::{codes, Severity},
    duration::Duration,
    path::FieldPath,
    Destination,
};

/// One finding, relative to the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub(crate) severity: Severity,
    pub(crate) code: &'static str,
    pub(crate) path: FieldPath,
    pub(crate) message: String,
}

#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub(crate) issues: Vec<Issue>,
}

impl Ctx {
    pub(crate) fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        path: &FieldPath,
        message: impl Into<String>,
    ) {
        self.issues.push(Issue {
            severity,
            code,
            path: path.clone(),
            message: message.into(),
        });
    }

    /// A value breaks a rule: the resource is rejected.
    pub(crate) fn invalid(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.push(Severity::Error, codes::INVALID_VALUE, path, message);
    }

    /// Valid Istio we cannot honour and must not ignore: rejected.
    pub(crate) fn unsupported(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.push(Severity::Error, codes::UNSUPPORTED, path, message);
    }

    /// Accepted, not applied.
    pub(crate) fn ignored(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.push(Severity::Warning, codes::IGNORED_FIELD, path, message);
    }

    pub(crate) fn deprecated(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.push(Severity::Warning, codes::DEPRECATED, path, message);
    }
}

/// Names in "found a, b" lists.
fn list(names: &[&str]) -> String {
    names.join(", ")
}

/// The regex crate's message without its multi-line pattern excerpt:
/// `unclosed group`.
pub(crate) fn regex(cx: &mut Ctx, p: &FieldPath, pattern: &str) {
    // Envoy compiles RE2 with a program-size budget; a bounded size limit
    // keeps a pathological pattern from costing the control plane memory.
    if let Err(e) = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
    {
        let text = e.to_string();
        let reason = text
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .map(str::to_owned)
            .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "));
        cx.invalid(p, format!("invalid regex {pattern:?}: {reason}"));
    }
}

/// A DNS-1123 label: `reviews`, `v1`, `istio-system` (lower case, digits,
/// `-`, at most 63 characters, alphanumeric at both ends).
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (Kubernetes object names): labels joined by dots.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A host label as Istio accepts it (upper case allowed).
fn is_host_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A hostname: `reviews`, `reviews.default.svc.cluster.local`,
/// `api.example.com`; with `wildcard`, also `*` and `*.example.com`.
pub(crate) fn host_error(host: &str, wildcard: bool) -> Option<String> {
    if host.is_empty() {
        return Some("host must not be empty".into());
    }
    if host.len() > 255 {
        return Some(format!("host {host:?} is longer than 255 characters"));
    }
    let name = match host.strip_prefix('*') {
        Some(_) if !wildcard => {
            return Some(format!("host {host:?}: a wildcard is not allowed here"))
        }
        Some("") => return None,
        Some(rest) => rest.strip_prefix('.').unwrap_or(rest),
        None => host,
    };
    if name.parse::<IpAddr>().is_ok() {
        return None;
    }
    if name.split('.').all(is_host_label) {
        None
    } else {
        Some(format!(
            "invalid host {host:?} (expected a DNS name such as reviews, \
             reviews.default.svc.cluster.local or *.example.com)"
        ))
    }
}

pub(crate) fn host(cx: &mut Ctx, p: &FieldPath, host: &str, wildcard: bool) {
    if let Some(e) = host_error(host, wildcard) {
        cx.invalid(p, e);
    }
}

/// An IP address or a CIDR block.
pub(crate) fn ip_or_cidr_error(s: &str) -> Option<String> {
    let bad = || format!("invalid IP address or CIDR {s:?} (expected e.g. 10.0.0.1 or 10.0.0.0/8)");
    match s.split_once('/') {
        None => s.parse::<IpAddr>().err().map(|_| bad()),
        Some((ip, len)) => {
            let Ok(ip) = ip.parse::<IpAddr>() else {
                return Some(bad());
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            match len.parse::<u8>() {
                Ok(l) if l <= max && !len.starts_with('+') => None,
                _ => Some(format!(
                    "invalid CIDR {s:?}: the prefix length must be 0-{max}"
                )),
            }
        }
    }
}

pub(crate) fn ip_or_cidr(cx: &mut Ctx, p: &FieldPath, s: &str) {
    if let Some(e) = ip_or_cidr_error(s) {
        cx.invalid(p, e);
    }
}

pub(crate) fn ip_blocks(cx: &mut Ctx, p: &FieldPath, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        ip_or_cidr(cx, &p.index(i), v);
    }
}

pub(crate) fn port(cx: &mut Ctx, p: &FieldPath, number: u32) {
    if !(1..=65535).contains(&number) {
        cx.invalid(p, format!("port {number} is out of range 1-65535"));
    }
}

pub(crate) fn percent(cx: &mut Ctx, p: &FieldPath, value: f64) {
    if !(0.0..=100.0).contains(&value) {
        cx.invalid(
            p,
            format!("percentage must be between 0 and 100 (got {value})"),
        );
    }
}

/// `timeout`-like durations: 0 (disabled) or at least 1ms, in whole
/// milliseconds.
pub(crate) fn timeout(cx: &mut Ctx, p: &FieldPath, name: &str, d: Duration) {
    if !d.is_zero() && d.get() < std::time::Duration::from_millis(1) {
        cx.invalid(
            p,
            format!("{name} must be 0s (none) or at least 1ms (got {d})"),
        );
    } else {
        whole_ms(cx, p, name, d);
    }
}

/// Durations that must be positive: at least 1ms, in whole milliseconds.
pub(crate) fn min_1ms(cx: &mut Ctx, p: &FieldPath, name: &str, d: Duration) {
    if d.get() < std::time::Duration::from_millis(1) {
        cx.invalid(p, format!("{name} must be at least 1ms (got {d})"));
    } else {
        whole_ms(cx, p, name, d);
    }
}

/// Envoy and Istio count these durations in milliseconds.
fn whole_ms(cx: &mut Ctx, p: &FieldPath, name: &str, d: Duration) {
    if !d.get().subsec_nanos().is_multiple_of(1_000_000) {
        cx.invalid(
            p,
            format!("{name} must be a whole number of milliseconds (got {d})"),
        );
    }
}

pub(crate) fn non_negative(cx: &mut Ctx, p: &FieldPath, name: &str, v: Option<i64>) {
    if let Some(v) = v.filter(|v| *v < 0) {
        cx.invalid(p, format!("{name} must not be negative (got {v})"));
    }
}

/// `exportTo`: `.` (this namespace), `*` (all), `~` (none) or namespace
/// names; `*` cannot be combined with the others.
pub(crate) fn export_to(cx: &mut Ctx, p: &FieldPath, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        if !(v == "." || v == "*" || v == "~" || is_dns_label(v)) {
            cx.invalid(
                &p.index(i),
                format!("invalid exportTo value {v:?} (expected ., *, ~ or a namespace name)"),
            );
        }
    }
    if values.len() > 1 && values.iter().any(|v| v == "*") {
        cx.invalid(p, "* (all namespaces) cannot be combined with other values");
    }
}

/// Istio's protocol names, compared case-insensitively.
pub(crate) const PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "HTTP_PROXY",
    "MONGO",
    "MYSQL",
    "REDIS",
    "TCP",
    "TLS",
    "UDP",
];

pub(crate) fn protocol(cx: &mut Ctx, p: &FieldPath, proto: &str) {
    if !PROTOCOLS.iter().any(|k| k.eq_ignore_ascii_case(proto)) {
        cx.invalid(
            p,
            format!(
                "unknown protocol {proto:?} (expected one of {})",
                PROTOCOLS.join(", ")
            ),
        );
    }
}

/// Header names as Istio accepts them: letters, digits, `-` and `_`.
pub(crate) fn header_name(cx: &mut Ctx, p: &FieldPath, name: &str) {
    if name.is_empty() {
        cx.invalid(p, "header name must not be empty");
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        cx.invalid(
            p,
            format!("invalid header name {name:?} (letters, digits, - and _ only)"),
        );
    }
}

/// Kubernetes label syntax: `[prefix/]name` (name: at most 63 of
/// alphanumerics, `-`, `_`, `.`, alphanumeric at both ends; prefix: a DNS
/// subdomain) and values of the same form as a name, or empty.
fn label_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

pub(crate) fn labels(cx: &mut Ctx, p: &FieldPath, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        let key_ok = match k.split_once('/') {
            Some((prefix, name)) => is_dns_subdomain(prefix) && label_name_ok(name),
            None => label_name_ok(k),
        };
        if !key_ok {
            cx.invalid(&p.key(k.as_str()), format!("invalid label key {k:?}"));
        } else if !(v.is_empty() || label_name_ok(v)) {
            cx.invalid(&p.key(k.as_str()), format!("invalid label value {v:?}"));
        }
    }
}

/// A selector's labels, which must select something.
pub(crate) fn selector_labels(cx: &mut Ctx, p: &FieldPath, map: &BTreeMap<String, String>) {
    if map.is_empty() {
        cx.invalid(p, "at least one label is required");
    }
    labels(cx, p, map);
}

/// A route destination: a host (not `*`), an optional subset, a port.
pub(crate) fn destination(cx: &mut Ctx, p: &FieldPath, d: &Destination) {
    if d.host.is_empty() {
        cx.invalid(&p.key("host"), "host is required");
    } else if d.host == "*" {
        cx.invalid(&p.key("host"), "a destination host cannot be *");
    } else {
        host(cx, &p.key("host"), &d.host, true);
    }
    if let Some(subset) = &d.subset {
        if !is_dns_label(subset) {
            cx.invalid(
                &p.key("subset"),
                format!("invalid subset name {subset:?} (lower case letters, digits and -)"),
            );
        }
    }
    if let Some(ps) = d.port {
        port(cx, &p.key("port").key("number"), ps.number);
    }
}

/// Weights of a route's destinations: none negative and, with more than
/// one destination, summing to 100 (a single destination may omit it).
pub(crate) fn weights(cx: &mut Ctx, p: &FieldPath, weights: &[Option<i64>]) {
    let mut sum: i64 = 0;
    for (i, w) in weights.iter().enumerate() {
        match w {
            Some(w) if *w < 0 => cx.invalid(
                &p.index(i).key("weight"),
                format!("weight must not be negative (got {w})"),
            ),
            Some(w) => sum = sum.saturating_add(*w),
            None => {}
        }
    }
    if weights.len() > 1 && sum != 100 && weights.iter().all(|w| w.unwrap_or(0) >= 0) {
        cx.invalid(
            &p.index(weights.len() - 1).key("weight"),
            format!("weights sum to {sum}, not 100"),
        );
    }
}

/// `[namespace/]name` of a gateway, or `mesh`.
pub(crate) fn gateway(cx: &mut Ctx, p: &FieldPath, g: &str) {
    let ok = match g.split_once('/') {
        _ if g == "mesh" => true,
        Some((ns, name)) => is_dns_label(ns) && is_dns_subdomain(name),
        None => is_dns_subdomain(g),
    };
    if !ok {
        cx.invalid(
            p,
            format!("invalid gateway {g:?} (expected mesh or [namespace/]name)"),
        );
    }
}

pub(crate) fn non_empty_strings(cx: &mut Ctx, p: &FieldPath, what: &str, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        if v.is_empty() {
            cx.invalid(&p.index(i), format!("{what} must not be empty"));
        }
    }
}

#[cfg(test)]
mod tests;
