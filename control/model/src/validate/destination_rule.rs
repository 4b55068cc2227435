use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::networking::destination_rule::*;

/// Envoy's largest Maglev table.
const MAGLEV_MAX: u64 = 5_000_011;

pub(crate) fn destination_rule(dr: &DestinationRule, cx: &mut Ctx, p: &FieldPath) {
    if dr.host.is_empty() {
        cx.invalid(&p.key("host"), "host is required");
    } else {
        host(cx, &p.key("host"), &dr.host, true);
    }
    if let Some(tp) = &dr.traffic_policy {
        traffic_policy(cx, &p.key("trafficPolicy"), tp);
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, s) in dr.subsets.iter().enumerate() {
        let sp = p.key("subsets").index(i);
        if s.name.is_empty() {
            cx.invalid(&sp.key("name"), "name is required");
        } else if !is_dns_label(&s.name) {
            cx.invalid(
                &sp.key("name"),
                format!(
                    "invalid subset name {:?} (lower case letters, digits and -)",
                    s.name
                ),
            );
        } else if let Some(first) = seen.insert(&s.name, i) {
            cx.invalid(
                &sp.key("name"),
                format!("duplicate subset name {:?} (also subsets[{first}])", s.name),
            );
        }
        if s.labels.is_empty() {
            cx.invalid(
                &sp.key("labels"),
                "labels are required: a subset is the endpoints carrying these labels",
            );
        }
        labels(cx, &sp.key("labels"), &s.labels);
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(cx, &sp.key("trafficPolicy"), tp);
        }
    }
    export_to(cx, &p.key("exportTo"), &dr.export_to);
    if let Some(sel) = &dr.workload_selector {
        selector_labels(
            cx,
            &p.key("workloadSelector").key("matchLabels"),
            &sel.match_labels,
        );
    }
}

pub(crate) fn traffic_policy(cx: &mut Ctx, p: &FieldPath, tp: &TrafficPolicy) {
    if let Some(lb) = &tp.load_balancer {
        load_balancer(cx, &p.key("loadBalancer"), lb);
    }
    if let Some(cp) = &tp.connection_pool {
        connection_pool(cx, &p.key("connectionPool"), cp);
    }
    if let Some(od) = &tp.outlier_detection {
        outlier_detection(cx, &p.key("outlierDetection"), od);
    }
    if let Some(tls) = &tp.tls {
        client_tls(cx, &p.key("tls"), tls);
    }
    let mut ports: HashMap<u32, usize> = HashMap::new();
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let pp = p.key("portLevelSettings").index(i);
        match pl.port {
            None => cx.invalid(&pp.key("port"), "port is required"),
            Some(ps) => {
                port(cx, &pp.key("port").key("number"), ps.number);
                if let Some(first) = ports.insert(ps.number, i) {
                    cx.invalid(
                        &pp.key("port").key("number"),
                        format!(
                            "duplicate port {} (also portLevelSettings[{first}])",
                            ps.number
                        ),
                    );
                }
            }
        }
        if let Some(lb) = &pl.load_balancer {
            load_balancer(cx, &pp.key("loadBalancer"), lb);
        }
        if let Some(cp) = &pl.connection_pool {
            connection_pool(cx, &pp.key("connectionPool"), cp);
        }
        if let Some(od) = &pl.outlier_detection {
            outlier_detection(cx, &pp.key("outlierDetection"), od);
        }
        if let Some(tls) = &pl.tls {
            client_tls(cx, &pp.key("tls"), tls);
        }
    }
    for (field, set) in [
        ("tunnel", tp.tunnel.is_some()),
        ("proxyProtocol", tp.proxy_protocol.is_some()),
        ("retryBudget", tp.retry_budget.is_some()),
    ] {
        if set {
            cx.ignored(
                &p.key(field),
                format!("{field} is accepted but not applied yet"),
            );
        }
    }
}

fn load_balancer(cx: &mut Ctx, p: &FieldPath, lb: &LoadBalancerSettings) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        cx.invalid(p, "set only one of simple or consistentHash");
    }
    if lb.simple == Some(SimpleLb::LeastConn) {
        cx.deprecated(
            &p.key("simple"),
            "LEAST_CONN is deprecated; use LEAST_REQUEST",
        );
    }
    if let Some(ch) = &lb.consistent_hash {
        let cp = p.key("consistentHash");
        let keys = ch.keys();
        match keys.len() {
            0 => cx.invalid(
                &cp,
                "set one hash key: httpHeaderName, httpCookie, useSourceIp or \
                 httpQueryParameterName",
            ),
            1 => {}
            _ => cx.invalid(
                &cp,
                format!("set only one hash key (found {})", list(&keys)),
            ),
        }
        if let Some(h) = &ch.http_header_name {
            header_name(cx, &cp.key("httpHeaderName"), h);
        }
        if let Some(c) = &ch.http_cookie {
            if c.name.is_empty() {
                cx.invalid(&cp.key("httpCookie").key("name"), "name is required");
            }
        }
        if let Some(q) = &ch.http_query_parameter_name {
            if q.is_empty() {
                cx.invalid(&cp.key("httpQueryParameterName"), "must not be empty");
            }
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            cx.invalid(&cp, "set only one of ringHash or maglev");
        }
        if ch.minimum_ring_size.is_some() {
            if ch.ring_hash.is_some() || ch.maglev.is_some() {
                cx.invalid(
                    &cp.key("minimumRingSize"),
                    "minimumRingSize cannot be combined with ringHash or maglev",
                );
            } else {
                cx.deprecated(
                    &cp.key("minimumRingSize"),
                    "minimumRingSize is deprecated; use ringHash: {minimumRingSize: N}",
                );
            }
        }
        if let Some(size) = ch.maglev.as_ref().and_then(|m| m.table_size) {
            let tp = cp.key("maglev").key("tableSize");
            if size > MAGLEV_MAX {
                cx.invalid(
                    &tp,
                    format!("tableSize must be at most {MAGLEV_MAX} (got {size})"),
                );
            } else if !is_prime(size) {
                cx.invalid(
                    &tp,
                    format!("tableSize must be a prime number, e.g. 65537 (got {size})"),
                );
            }
        }
    }
    if let Some(l) = &lb.locality_lb_setting {
        locality(cx, &p.key("localityLbSetting"), l);
    }
    if lb.warmup.is_some() {
        cx.ignored(&p.key("warmup"), "warmup is accepted but not applied yet");
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn locality(cx: &mut Ctx, p: &FieldPath, l: &LocalityLbSetting) {
    if !l.distribute.is_empty() && !l.failover.is_empty() {
        cx.invalid(p, "set only one of distribute or failover");
    }
    for (i, d) in l.distribute.iter().enumerate() {
        let dp = p.key("distribute").index(i);
        if d.from.is_empty() {
            cx.invalid(&dp.key("from"), "from is required");
        }
        for (locality, w) in &d.to {
            if *w == 0 || *w > 100 {
                cx.invalid(
                    &dp.key("to").key(locality.as_str()),
                    format!("a locality weight must be 1-100 (got {w})"),
                );
            }
        }
        if d.to.is_empty() {
            cx.invalid(&dp.key("to"), "to is required");
        } else {
            let sum: u64 = d.to.values().map(|w| u64::from(*w)).sum();
            if sum != 100 {
                cx.invalid(&dp.key("to"), format!("weights sum to {sum}, not 100"));
            }
        }
        locality_names(cx, &dp.key("to"), &d.to);
    }
    for (i, f) in l.failover.iter().enumerate() {
        let fp = p.key("failover").index(i);
        if f.from.is_empty() {
            cx.invalid(&fp.key("from"), "from is required");
        }
        if f.to.is_empty() {
            cx.invalid(&fp.key("to"), "to is required");
        }
        if !f.from.is_empty() && f.from == f.to {
            cx.invalid(&fp, "failover from and to must be different regions");
        }
        if f.to.contains('*') {
            cx.invalid(&fp.key("to"), "a failover region cannot be a wildcard");
        }
    }
    non_empty_strings(
        cx,
        &p.key("failoverPriority"),
        "a label",
        &l.failover_priority,
    );
}

/// `region[/zone[/subzone]]`; one `*`, at the end, stands for the rest.
fn locality_names(cx: &mut Ctx, p: &FieldPath, to: &BTreeMap<String, u32>) {
    for name in to.keys() {
        let stars = name.matches('*').count();
        if name.split('/').count() > 3
            || name.split('/').any(str::is_empty)
            || stars > 1
            || (stars == 1 && !name.ends_with('*'))
        {
            cx.invalid(
                &p.key(name.as_str()),
                format!("invalid locality {name:?} (expected region/zone/subzone)"),
            );
        }
    }
}

pub(super) fn connection_pool(cx: &mut Ctx, p: &FieldPath, cp: &ConnectionPoolSettings) {
    if let Some(tcp) = &cp.tcp {
        let tp = p.key("tcp");
        non_negative(
            cx,
            &tp.key("maxConnections"),
            "maxConnections",
            tcp.max_connections,
        );
        if let Some(t) = tcp.connect_timeout {
            min_1ms(cx, &tp.key("connectTimeout"), "connectTimeout", t);
        }
        if let Some(t) = tcp.max_connection_duration {
            min_1ms(
                cx,
                &tp.key("maxConnectionDuration"),
                "maxConnectionDuration",
                t,
            );
        }
        if let Some(t) = tcp.idle_timeout {
            timeout(cx, &tp.key("idleTimeout"), "idleTimeout", t);
        }
        if let Some(ka) = &tcp.tcp_keepalive {
            let kp = tp.key("tcpKeepalive");
            if let Some(t) = ka.time {
                min_1ms(cx, &kp.key("time"), "time", t);
            }
            if let Some(t) = ka.interval {
                min_1ms(cx, &kp.key("interval"), "interval", t);
            }
        }
    }
    if let Some(http) = &cp.http {
        let hp = p.key("http");
        for (field, v) in [
            ("http1MaxPendingRequests", http.http1_max_pending_requests),
            ("http2MaxRequests", http.http2_max_requests),
            ("maxRequestsPerConnection", http.max_requests_per_connection),
            ("maxRetries", http.max_retries),
            ("maxConcurrentStreams", http.max_concurrent_streams),
        ] {
            non_negative(cx, &hp.key(field), field, v);
        }
        if let Some(t) = http.idle_timeout {
            timeout(cx, &hp.key("idleTimeout"), "idleTimeout", t);
        }
    }
}

fn outlier_detection(cx: &mut Ctx, p: &FieldPath, od: &OutlierDetection) {
    for (field, v) in [
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ] {
        if let Some(v) = v {
            if !(0..=100).contains(&v) {
                cx.invalid(
                    &p.key(field),
                    format!("{field} must be between 0 and 100 (got {v})"),
                );
            }
        }
    }
    if let Some(t) = od.interval {
        min_1ms(cx, &p.key("interval"), "interval", t);
    }
    if let Some(t) = od.base_ejection_time {
        min_1ms(cx, &p.key("baseEjectionTime"), "baseEjectionTime", t);
    }
    if let Some(v) = od.consecutive_errors {
        cx.deprecated(
            &p.key("consecutiveErrors"),
            "consecutiveErrors is deprecated; use consecutive5xxErrors",
        );
        non_negative(
            cx,
            &p.key("consecutiveErrors"),
            "consecutiveErrors",
            Some(v),
        );
    }
}

fn client_tls(cx: &mut Ctx, p: &FieldPath, tls: &ClientTlsSettings) {
    match tls.mode {
        TlsMode::Mutual => {
            if tls.credential_name.is_none()
                && (tls.client_certificate.is_none() || tls.private_key.is_none())
            {
                cx.invalid(
                    p,
                    "mode MUTUAL requires clientCertificate and privateKey, or credentialName",
                );
            }
        }
        TlsMode::IstioMutual => {
            let set: Vec<&str> = [
                ("clientCertificate", tls.client_certificate.is_some()),
                ("privateKey", tls.private_key.is_some()),
                ("caCertificates", tls.ca_certificates.is_some()),
                ("credentialName", tls.credential_name.is_some()),
            ]
            .into_iter()
            .filter_map(|(n, s)| s.then_some(n))
            .collect();
            if !set.is_empty() {
                cx.invalid(
                    p,
                    format!(
                        "mode ISTIO_MUTUAL uses the mesh's own certificates; remove {}",
                        list(&set)
                    ),
                );
            }
        }
        TlsMode::Disable | TlsMode::Simple => {}
    }
    non_empty_strings(
        cx,
        &p.key("subjectAltNames"),
        "a subject alt name",
        &tls.subject_alt_names,
    );
}
