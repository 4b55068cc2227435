use std::collections::BTreeMap;

use super::*;
use crate::{common::StringMatch, networking::virtual_service::*};

/// Envoy's `x-envoy-retry-on` / `x-envoy-retry-grpc-on` conditions.
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

pub(crate) const GRPC_STATUS: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

pub(crate) fn virtual_service(vs: &VirtualService, cx: &mut Ctx, p: &FieldPath) {
    let hosts = p.key("hosts");
    for (i, h) in vs.hosts.iter().enumerate() {
        host(cx, &hosts.index(i), h, true);
        if h == "*" && vs.applies_to_mesh() {
            cx.invalid(
                &hosts.index(i),
                "the wildcard host * is not allowed for a VirtualService bound to the mesh \
                 gateway (name the hosts, or bind it to a gateway)",
            );
        }
    }
    // Two hosts where one covers the other would route the same requests
    // twice (Istio rejects this too).
    for i in 0..vs.hosts.len() {
        for j in i + 1..vs.hosts.len() {
            let (a, b) = (&vs.hosts[i], &vs.hosts[j]);
            if host_error(a, true).is_none() && host_error(b, true).is_none() && hosts_overlap(a, b)
            {
                cx.invalid(
                    &hosts.index(j),
                    format!("duplicate host: {b:?} overlaps {a:?} (hosts[{i}])"),
                );
            }
        }
    }
    if vs.hosts.is_empty() {
        // Istio's convention: no hosts makes this a delegate, reachable only
        // through another VirtualService's `delegate`.
        if !vs.gateways.is_empty() {
            cx.invalid(
                &p.key("gateways"),
                "a delegate VirtualService (one without hosts) must not set gateways",
            );
        }
        for (field, empty) in [("tcp", vs.tcp.is_empty()), ("tls", vs.tls.is_empty())] {
            if !empty {
                cx.invalid(
                    &p.key(field),
                    "a delegate VirtualService (one without hosts) supports http routes only",
                );
            }
        }
    }
    for (i, g) in vs.gateways.iter().enumerate() {
        gateway(cx, &p.key("gateways").index(i), g);
    }
    export_to(cx, &p.key("exportTo"), &vs.export_to);
    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
        cx.invalid(p, "at least one http, tcp or tls route is required");
    }
    let bound_to_gateway = vs.gateways.iter().any(|g| g != "mesh");
    for (i, r) in vs.http.iter().enumerate() {
        let rp = p.key("http").index(i);
        http_route(cx, &rp, r);
        if r.delegate.is_some() {
            if vs.hosts.is_empty() {
                cx.invalid(
                    &rp.key("delegate"),
                    "a delegate VirtualService cannot delegate again (one level only)",
                );
            } else if !bound_to_gateway {
                cx.invalid(
                    &rp.key("delegate"),
                    "delegate is only supported in a VirtualService bound to a gateway",
                );
            }
        }
    }
    for (i, r) in vs.tcp.iter().enumerate() {
        let rp = p.key("tcp").index(i);
        for (j, m) in r.matches.iter().enumerate() {
            let mp = rp.key("match").index(j);
            ip_blocks(cx, &mp.key("destinationSubnets"), &m.destination_subnets);
            if let Some(n) = m.port {
                port(cx, &mp.key("port"), n);
            }
            if let Some(s) = &m.source_subnet {
                ip_or_cidr(cx, &mp.key("sourceSubnet"), s);
            }
            labels(cx, &mp.key("sourceLabels"), &m.source_labels);
            for (k, g) in m.gateways.iter().enumerate() {
                gateway(cx, &mp.key("gateways").index(k), g);
            }
        }
        l4_route(cx, &rp.key("route"), &r.route);
    }
    for (i, r) in vs.tls.iter().enumerate() {
        let rp = p.key("tls").index(i);
        if r.matches.is_empty() {
            cx.invalid(
                &rp.key("match"),
                "a tls route needs at least one match with sniHosts",
            );
        }
        for (j, m) in r.matches.iter().enumerate() {
            let mp = rp.key("match").index(j);
            if m.sni_hosts.is_empty() {
                cx.invalid(&mp.key("sniHosts"), "sniHosts is required");
            }
            for (k, h) in m.sni_hosts.iter().enumerate() {
                let hp = mp.key("sniHosts").index(k);
                if let Some(e) = host_error(h, true) {
                    cx.invalid(&hp, e);
                } else if !vs.hosts.iter().any(|vh| host_within(h, vh)) {
                    cx.invalid(
                        &hp,
                        format!(
                            "SNI host {h:?} is not within any of the VirtualService's hosts ({})",
                            vs.hosts.join(", ")
                        ),
                    );
                }
            }
            ip_blocks(cx, &mp.key("destinationSubnets"), &m.destination_subnets);
            if let Some(n) = m.port {
                port(cx, &mp.key("port"), n);
            }
            labels(cx, &mp.key("sourceLabels"), &m.source_labels);
            for (k, g) in m.gateways.iter().enumerate() {
                gateway(cx, &mp.key("gateways").index(k), g);
            }
        }
        l4_route(cx, &rp.key("route"), &r.route);
    }
}

fn l4_route(cx: &mut Ctx, p: &FieldPath, route: &[RouteDestination]) {
    if route.is_empty() {
        cx.invalid(p, "at least one route destination is required");
    }
    for (i, d) in route.iter().enumerate() {
        destination(cx, &p.index(i).key("destination"), &d.destination);
    }
    weights(cx, p, &route.iter().map(|d| d.weight).collect::<Vec<_>>());
}

fn http_route(cx: &mut Ctx, p: &FieldPath, r: &HttpRoute) {
    for (j, m) in r.matches.iter().enumerate() {
        http_match(cx, &p.key("match").index(j), m);
    }

    let actions: Vec<&str> = [
        ("route", !r.route.is_empty()),
        ("redirect", r.redirect.is_some()),
        ("directResponse", r.direct_response.is_some()),
        ("delegate", r.delegate.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    match actions.len() {
        0 => cx.invalid(p, "set one of route, redirect, directResponse or delegate"),
        1 => {}
        _ => cx.invalid(
            p,
            format!(
                "set only one of route, redirect, directResponse or delegate (found {})",
                list(&actions)
            ),
        ),
    }
    // A redirect or direct response never reaches an upstream, so there is
    // no path to rewrite and no upstream fault to inject (Istio rejects the
    // combinations too).
    if r.redirect.is_some() || r.direct_response.is_some() {
        let what = if r.redirect.is_some() {
            "redirect"
        } else {
            "directResponse"
        };
        if r.rewrite.is_some() {
            cx.invalid(
                &p.key("rewrite"),
                format!("rewrite cannot be combined with {what}"),
            );
        }
        if r.fault.is_some() && r.redirect.is_some() {
            cx.invalid(&p.key("fault"), "fault cannot be combined with redirect");
        }
    }

    let rp = p.key("route");
    for (k, d) in r.route.iter().enumerate() {
        destination(cx, &rp.index(k).key("destination"), &d.destination);
        if let Some(h) = &d.headers {
            headers(cx, &rp.index(k).key("headers"), h);
        }
    }
    weights(
        cx,
        &rp,
        &r.route.iter().map(|d| d.weight).collect::<Vec<_>>(),
    );

    if let Some(rd) = &r.redirect {
        let rdp = p.key("redirect");
        if let Some(code) = rd.redirect_code.filter(|c| !(300..=399).contains(c)) {
            cx.invalid(
                &rdp.key("redirectCode"),
                format!("redirectCode must be a 3xx status (got {code})"),
            );
        }
        if rd.uri.is_none()
            && rd.authority.is_none()
            && rd.scheme.is_none()
            && rd.port.is_none()
            && rd.derive_port.is_none()
        {
            cx.invalid(
                &rdp,
                "set at least one of uri, authority, scheme, port or derivePort",
            );
        }
        if let Some(n) = rd.port {
            port(cx, &rdp.key("port"), n);
            if rd.derive_port.is_some() {
                cx.invalid(&rdp, "set only one of port or derivePort");
            }
        }
        if let Some(a) = &rd.authority {
            if a.is_empty() {
                cx.invalid(&rdp.key("authority"), "authority must not be empty");
            }
        }
        if let Some(s) = &rd.scheme {
            if s.is_empty() {
                cx.invalid(&rdp.key("scheme"), "scheme must not be empty");
            }
        }
    }
    if let Some(dr) = &r.direct_response {
        let dp = p.key("directResponse");
        if !(200..=599).contains(&dr.status) {
            cx.invalid(
                &dp.key("status"),
                format!("status must be in the range 200-599 (got {})", dr.status),
            );
        }
        if let Some(body) = &dr.body {
            if body.string.is_some() && body.bytes.is_some() {
                cx.invalid(&dp.key("body"), "set only one of string or bytes");
            }
        }
    }
    if let Some(d) = &r.delegate {
        let dp = p.key("delegate");
        if !is_dns_subdomain(&d.name) {
            cx.invalid(
                &dp.key("name"),
                "name of the delegate VirtualService is required",
            );
        }
        if let Some(ns) = d.namespace.as_deref().filter(|ns| !is_dns_label(ns)) {
            cx.invalid(&dp.key("namespace"), format!("invalid namespace {ns:?}"));
        }
    }
    if let Some(rw) = &r.rewrite {
        let rwp = p.key("rewrite");
        if let Some(rr) = &rw.uri_regex_rewrite {
            if rw.uri.is_some() {
                cx.invalid(&rwp, "set only one of uri or uriRegexRewrite");
            }
            let rrp = rwp.key("uriRegexRewrite");
            if rr.pattern.is_empty() {
                cx.invalid(&rrp.key("match"), "match is required");
            } else {
                regex(cx, &rrp.key("match"), &rr.pattern);
            }
        }
        if rw.uri.is_none() && rw.authority.is_none() && rw.uri_regex_rewrite.is_none() {
            cx.invalid(&rwp, "set uri, authority or uriRegexRewrite");
        }
    }
    if let Some(t) = r.timeout {
        timeout(cx, &p.key("timeout"), "timeout", t);
    }
    if let Some(rt) = &r.retries {
        let rtp = p.key("retries");
        non_negative(cx, &rtp.key("attempts"), "attempts", rt.attempts);
        if rt.attempts.unwrap_or(0) == 0
            && (rt.per_try_timeout.is_some()
                || rt.retry_on.is_some()
                || rt.retry_remote_localities.is_some()
                || rt.backoff.is_some())
        {
            cx.ignored(
                &rtp.key("attempts"),
                "attempts is 0 (or unset), which disables retries; the other retry settings \
                 have no effect",
            );
        }
        if let Some(t) = rt.per_try_timeout {
            min_1ms(cx, &rtp.key("perTryTimeout"), "perTryTimeout", t);
        }
        if let Some(t) = rt.backoff {
            min_1ms(cx, &rtp.key("backoff"), "backoff", t);
        }
        if let Some(on) = &rt.retry_on {
            for cond in on.split(',').map(str::trim) {
                let status = cond.parse::<u16>().is_ok_and(|s| (100..=599).contains(&s));
                if !status && !RETRY_ON.contains(&cond) {
                    cx.invalid(
                        &rtp.key("retryOn"),
                        format!(
                            "unknown retry condition {cond:?} (expected Envoy conditions such as \
                             5xx, gateway-error, connect-failure, refused-stream, retriable-4xx, \
                             unavailable, or an HTTP status code)"
                        ),
                    );
                }
            }
        }
    }
    if let Some(f) = &r.fault {
        fault(cx, &p.key("fault"), f);
    }
    if let Some(m) = &r.mirror {
        destination(cx, &p.key("mirror"), m);
        if !r.mirrors.is_empty() {
            cx.invalid(p, "set only one of mirror or mirrors");
        }
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        let mp = p.key("mirrors").index(i);
        destination(cx, &mp.key("destination"), &m.destination);
        if let Some(pc) = m.percentage {
            percent(cx, &mp.key("percentage").key("value"), pc.value);
        }
    }
    if let Some(pc) = r.mirror_percentage {
        percent(cx, &p.key("mirrorPercentage").key("value"), pc.value);
    }
    if let Some(pc) = r.mirror_percent {
        cx.deprecated(
            &p.key("mirrorPercent"),
            "mirrorPercent is deprecated; use mirrorPercentage: {value: N}",
        );
        percent(cx, &p.key("mirrorPercent"), f64::from(pc));
    }
    if (r.mirror_percentage.is_some() || r.mirror_percent.is_some()) && r.mirror.is_none() {
        cx.ignored(
            &p.key("mirrorPercentage"),
            "mirrorPercentage has no effect without mirror",
        );
    }
    if r.cors_policy.is_some() {
        cx.ignored(
            &p.key("corsPolicy"),
            "corsPolicy is accepted but not applied: CORS is not implemented yet",
        );
    }
    if let Some(h) = &r.headers {
        headers(cx, &p.key("headers"), h);
    }
}

fn string_match(cx: &mut Ctx, p: &FieldPath, m: &StringMatch, present_ok: bool) {
    match m {
        StringMatch::Regex(re) => regex(cx, &p.key("regex"), re),
        StringMatch::Present if !present_ok => cx.invalid(p, "set one of exact, prefix or regex"),
        _ => {}
    }
}

fn header_matches(cx: &mut Ctx, p: &FieldPath, map: &BTreeMap<String, StringMatch>) {
    for (name, m) in map {
        let hp = p.key(name.as_str());
        // JWT claim routing (`@request.auth.claims.group`) is Istio's too.
        if !name.starts_with("@request.auth.claims.") {
            header_name(cx, &hp, name);
        }
        string_match(cx, &hp, m, true);
    }
}

fn http_match(cx: &mut Ctx, p: &FieldPath, m: &HttpMatchRequest) {
    for (field, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            string_match(cx, &p.key(field), sm, false);
        }
    }
    header_matches(cx, &p.key("headers"), &m.headers);
    header_matches(cx, &p.key("withoutHeaders"), &m.without_headers);
    for (name, sm) in &m.query_params {
        let qp = p.key("queryParams").key(name.as_str());
        if name.is_empty() {
            cx.invalid(&qp, "query parameter name must not be empty");
        }
        string_match(cx, &qp, sm, true);
    }
    if let Some(n) = m.port {
        port(cx, &p.key("port"), n);
    }
    labels(cx, &p.key("sourceLabels"), &m.source_labels);
    for (i, g) in m.gateways.iter().enumerate() {
        gateway(cx, &p.key("gateways").index(i), g);
    }
    if let Some(ns) = m.source_namespace.as_deref().filter(|ns| !is_dns_label(ns)) {
        cx.invalid(
            &p.key("sourceNamespace"),
            format!("invalid namespace {ns:?}"),
        );
    }
}

fn fault(cx: &mut Ctx, p: &FieldPath, f: &HttpFaultInjection) {
    if f.delay.is_none() && f.abort.is_none() {
        cx.invalid(p, "set delay, abort or both");
    }
    if let Some(d) = &f.delay {
        let dp = p.key("delay");
        if d.exponential_delay.is_some() {
            cx.unsupported(
                &dp.key("exponentialDelay"),
                "exponentialDelay is not supported (Istio does not implement it either)",
            );
        }
        match d.fixed_delay {
            Some(t) => min_1ms(cx, &dp.key("fixedDelay"), "fixedDelay", t),
            None if d.exponential_delay.is_none() => {
                cx.invalid(&dp.key("fixedDelay"), "fixedDelay is required")
            }
            None => {}
        }
        fault_share(cx, &dp, d.percentage, d.percent);
    }
    if let Some(a) = &f.abort {
        let ap = p.key("abort");
        let kinds: Vec<&str> = [
            ("httpStatus", a.http_status.is_some()),
            ("grpcStatus", a.grpc_status.is_some()),
            ("http2Error", a.http2_error.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect();
        match kinds.len() {
            0 => cx.invalid(&ap, "set one of httpStatus, grpcStatus or http2Error"),
            1 => {}
            _ => cx.invalid(
                &ap,
                format!(
                    "set only one of httpStatus, grpcStatus or http2Error (found {})",
                    list(&kinds)
                ),
            ),
        }
        if let Some(s) = a.http_status {
            if !(200..=599).contains(&s) {
                cx.invalid(
                    &ap.key("httpStatus"),
                    format!("httpStatus must be in the range 200-599 (got {s})"),
                );
            }
        }
        if let Some(s) = &a.grpc_status {
            if !GRPC_STATUS.contains(&s.as_str()) {
                cx.invalid(
                    &ap.key("grpcStatus"),
                    format!("unknown gRPC status {s:?} (expected e.g. UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED)"),
                );
            }
        }
        if a.http2_error.is_some() {
            cx.unsupported(
                &ap.key("http2Error"),
                "http2Error is not supported (Istio does not implement it either)",
            );
        }
        fault_share(cx, &ap, a.percentage, a.percent);
    }
}

fn fault_share(
    cx: &mut Ctx,
    p: &FieldPath,
    percentage: Option<crate::common::Percent>,
    legacy: Option<i64>,
) {
    if let Some(pc) = percentage {
        percent(cx, &p.key("percentage").key("value"), pc.value);
    }
    if let Some(pc) = legacy {
        cx.deprecated(
            &p.key("percent"),
            "percent is deprecated; use percentage: {value: N}",
        );
        percent(cx, &p.key("percent"), pc as f64);
        if percentage.is_some() {
            cx.invalid(p, "set only one of percentage or percent");
        }
    }
}

fn headers(cx: &mut Ctx, p: &FieldPath, h: &Headers) {
    for (field, ops) in [("request", &h.request), ("response", &h.response)] {
        let Some(ops) = ops else { continue };
        let op = p.key(field);
        for (kind, map) in [("set", &ops.set), ("add", &ops.add)] {
            for name in map.keys() {
                header_name(cx, &op.key(kind).key(name.as_str()), name);
            }
        }
        for (i, name) in ops.remove.iter().enumerate() {
            header_name(cx, &op.key("remove").index(i), name);
        }
    }
}

/// Could `a` and `b` (each a host or `*`-prefixed wildcard) name the same
/// host?
fn hosts_overlap(a: &str, b: &str) -> bool {
    host_within(a, b) || host_within(b, a)
}

/// Is every name matched by `inner` also matched by `outer`?
/// (`api.example.com` and `*.example.com` are within `*.example.com`;
/// everything is within `*`.)
pub(crate) fn host_within(inner: &str, outer: &str) -> bool {
    let (inner, outer) = (inner.to_ascii_lowercase(), outer.to_ascii_lowercase());
    match outer.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => match inner.strip_prefix('*') {
            Some(inner_suffix) => inner_suffix.ends_with(suffix),
            None => inner.ends_with(suffix) && inner.len() > suffix.len(),
        },
        None => inner == outer,
    }
}
