use std::{collections::HashMap, net::IpAddr};

use super::*;
use crate::networking::service_entry::*;

pub(crate) fn service_entry(se: &ServiceEntry, cx: &mut Ctx, p: &FieldPath) {
    let resolution = se.resolution();
    if se.hosts.is_empty() {
        cx.invalid(&p.key("hosts"), "at least one host is required");
    }
    for (i, h) in se.hosts.iter().enumerate() {
        let hp = p.key("hosts").index(i);
        if h == "*" {
            cx.invalid(&hp, "the host * is not allowed in a ServiceEntry");
        } else {
            host(cx, &hp, h, true);
        }
    }
    ip_blocks(cx, &p.key("addresses"), &se.addresses);
    if !matches!(resolution, Resolution::None | Resolution::Static) {
        if let Some(i) = se.addresses.iter().position(|a| a.contains('/')) {
            cx.invalid(
                &p.key("addresses").index(i),
                "CIDR addresses are allowed only with resolution NONE or STATIC",
            );
        }
    }

    let mut numbers: HashMap<u32, usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, sp) in se.ports.iter().enumerate() {
        let pp = p.key("ports").index(i);
        port(cx, &pp.key("number"), sp.number);
        if let Some(first) = numbers.insert(sp.number, i) {
            cx.invalid(
                &pp.key("number"),
                format!("duplicate port {} (also ports[{first}])", sp.number),
            );
        }
        match sp.name.as_deref() {
            None | Some("") => cx.invalid(&pp.key("name"), "name is required"),
            Some(name) => {
                if !is_dns_label(name) {
                    cx.invalid(
                        &pp.key("name"),
                        format!("invalid port name {name:?} (lower case letters, digits and -)"),
                    );
                }
                if let Some(first) = names.insert(name, i) {
                    cx.invalid(
                        &pp.key("name"),
                        format!("duplicate port name {name:?} (also ports[{first}])"),
                    );
                }
            }
        }
        // No protocol means "detect it", as in Istio.
        if let Some(proto) = sp.protocol.as_deref().filter(|p| !p.is_empty()) {
            protocol(cx, &pp.key("protocol"), proto);
        }
        if let Some(tp) = sp.target_port {
            port(cx, &pp.key("targetPort"), tp);
        }
    }

    if !se.endpoints.is_empty() && se.workload_selector.is_some() {
        cx.invalid(p, "set only one of endpoints or workloadSelector");
    }
    if let Some(ws) = &se.workload_selector {
        selector_labels(cx, &p.key("workloadSelector").key("labels"), &ws.labels);
    }
    match resolution {
        Resolution::None if !se.endpoints.is_empty() => cx.invalid(
            &p.key("endpoints"),
            "endpoints are not allowed with resolution NONE (traffic goes to the address the \
             caller dialed)",
        ),
        Resolution::Static if se.endpoints.is_empty() && se.workload_selector.is_none() => cx
            .invalid(
                &p.key("endpoints"),
                "resolution STATIC requires endpoints with IP addresses (or a workloadSelector)",
            ),
        Resolution::Dns | Resolution::DnsRoundRobin if se.endpoints.is_empty() => {
            for (i, h) in se.hosts.iter().enumerate() {
                if h.starts_with('*') && h != "*" {
                    cx.invalid(
                        &p.key("hosts").index(i),
                        format!(
                            "resolution DNS without endpoints resolves the hosts themselves, so \
                             {h:?} cannot be a wildcard"
                        ),
                    );
                }
            }
        }
        Resolution::DnsRoundRobin if se.endpoints.len() > 1 => cx.invalid(
            &p.key("endpoints"),
            "resolution DNS_ROUND_ROBIN allows at most one endpoint",
        ),
        _ => {}
    }

    // Plain TCP carries no host name (HTTP has the authority, TLS the
    // SNI), so several hosts on one TCP port could not be told apart.
    if resolution != Resolution::None && se.hosts.len() > 1 {
        let opaque = se.ports.iter().position(|sp| {
            let proto = sp.protocol.as_deref().unwrap_or("").to_ascii_uppercase();
            !matches!(
                proto.as_str(),
                "HTTP" | "HTTP2" | "HTTP_PROXY" | "GRPC" | "GRPC-WEB" | "HTTPS" | "TLS"
            )
        });
        if let Some(i) = opaque {
            cx.invalid(
                &p.key("ports").index(i).key("protocol"),
                "several hosts need HTTP or TLS ports to be told apart (or resolution NONE)",
            );
        }
    }
    let unix_endpoints = se
        .endpoints
        .iter()
        .filter(|ep| {
            ep.address
                .as_deref()
                .is_some_and(|a| a.starts_with("unix://"))
        })
        .count();
    if unix_endpoints > 0 && se.ports.len() != 1 {
        cx.invalid(
            &p.key("ports"),
            "unix:// endpoints need exactly one service port",
        );
    }

    for (i, ep) in se.endpoints.iter().enumerate() {
        let ep_path = p.key("endpoints").index(i);
        let ap = ep_path.key("address");
        match ep.address.as_deref() {
            None | Some("") => cx.invalid(&ap, "address is required"),
            Some(addr) if addr.starts_with("unix://") => {
                if !addr["unix://".len()..].starts_with('/') {
                    cx.invalid(&ap, "a unix:// address needs an absolute path");
                }
                if !ep.ports.is_empty() {
                    cx.invalid(&ep_path.key("ports"), "a unix:// endpoint has no ports");
                }
            }
            Some(addr) => match resolution {
                Resolution::Static if addr.parse::<IpAddr>().is_err() => cx.invalid(
                    &ap,
                    format!(
                        "resolution STATIC requires an IP address, got {addr:?} (use resolution \
                         DNS for hostnames)"
                    ),
                ),
                _ => host(cx, &ap, addr, false),
            },
        }
        for (name, n) in &ep.ports {
            let pp = ep_path.key("ports").key(name.as_str());
            if !names.contains_key(name.as_str()) {
                let mut known: Vec<&str> = names.keys().copied().collect();
                known.sort_unstable();
                cx.invalid(
                    &pp,
                    format!(
                        "{name:?} is not the name of one of the ServiceEntry's ports ({})",
                        list(&known)
                    ),
                );
            }
            port(cx, &pp, *n);
        }
        labels(cx, &ep_path.key("labels"), &ep.labels);
        if let Some(loc) = &ep.locality {
            if loc.split('/').count() > 3 || loc.split('/').any(str::is_empty) {
                cx.invalid(
                    &ep_path.key("locality"),
                    format!("invalid locality {loc:?} (expected region/zone/subzone)"),
                );
            }
        }
    }
    export_to(cx, &p.key("exportTo"), &se.export_to);
    non_empty_strings(
        cx,
        &p.key("subjectAltNames"),
        "a subject alt name",
        &se.subject_alt_names,
    );
}
