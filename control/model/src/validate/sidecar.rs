use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use super::{destination_rule::connection_pool, *};
use crate::networking::sidecar::*;

pub(crate) fn sidecar(sc: &Sidecar, cx: &mut Ctx, p: &FieldPath) {
    if let Some(ws) = &sc.workload_selector {
        selector_labels(cx, &p.key("workloadSelector").key("labels"), &ws.labels);
    }

    let mut ingress_ports: HashMap<u32, usize> = HashMap::new();
    for (i, l) in sc.ingress.iter().enumerate() {
        let lp = p.key("ingress").index(i);
        match &l.port {
            None => cx.invalid(&lp.key("port"), "port is required"),
            Some(sp) => {
                sidecar_port(cx, &lp.key("port"), sp);
                if let Some(first) = ingress_ports.insert(sp.number, i) {
                    cx.invalid(
                        &lp.key("port").key("number"),
                        format!("duplicate port {} (also ingress[{first}])", sp.number),
                    );
                }
            }
        }
        if let Some(b) = &l.bind {
            bind(cx, &lp.key("bind"), b);
        }
        if let Some(ep) = &l.default_endpoint {
            default_endpoint(cx, &lp.key("defaultEndpoint"), ep);
        }
        if l.tls.is_some() {
            cx.ignored(&lp.key("tls"), "tls is accepted but not applied yet");
        }
        if let Some(cp) = &l.connection_pool {
            connection_pool(cx, &lp.key("connectionPool"), cp);
        }
    }

    let mut egress_ports: HashMap<u32, usize> = HashMap::new();
    let mut catch_all: Option<usize> = None;
    for (i, l) in sc.egress.iter().enumerate() {
        let lp = p.key("egress").index(i);
        match &l.port {
            None => {
                if let Some(first) = catch_all {
                    cx.invalid(
                        &lp,
                        format!(
                            "only one egress listener may omit the port (also egress[{first}])"
                        ),
                    );
                } else {
                    catch_all = Some(i);
                    if i + 1 != sc.egress.len() {
                        cx.invalid(
                            &lp,
                            "the egress listener without a port must be the last one",
                        );
                    }
                }
            }
            Some(sp) => {
                sidecar_port(cx, &lp.key("port"), sp);
                let key = sp.number;
                if let Some(first) = egress_ports.insert(key, i) {
                    if l.bind == sc.egress[first].bind {
                        cx.invalid(
                            &lp.key("port").key("number"),
                            format!("duplicate port {} (also egress[{first}])", sp.number),
                        );
                    }
                }
            }
        }
        if let Some(b) = &l.bind {
            bind(cx, &lp.key("bind"), b);
        }
        if l.hosts.is_empty() {
            cx.invalid(
                &lp.key("hosts"),
                "at least one host (namespace/dnsName) is required",
            );
        }
        for (j, h) in l.hosts.iter().enumerate() {
            egress_host(cx, &lp.key("hosts").index(j), h);
        }
    }

    if let Some(otp) = &sc.outbound_traffic_policy {
        let op = p.key("outboundTrafficPolicy");
        if let Some(d) = &otp.egress_proxy {
            if otp.mode() != OutboundMode::AllowAny {
                cx.invalid(
                    &op.key("egressProxy"),
                    "egressProxy requires mode ALLOW_ANY",
                );
            }
            destination(cx, &op.key("egressProxy"), d);
        }
    }
    if let Some(cp) = &sc.inbound_connection_pool {
        connection_pool(cx, &p.key("inboundConnectionPool"), cp);
    }
}

fn sidecar_port(cx: &mut Ctx, p: &FieldPath, sp: &SidecarPort) {
    port(cx, &p.key("number"), sp.number);
    if let Some(proto) = &sp.protocol {
        protocol(cx, &p.key("protocol"), proto);
    }
    if let Some(name) = sp.name.as_deref().filter(|n| !is_dns_label(n)) {
        cx.invalid(
            &p.key("name"),
            format!("invalid port name {name:?} (lower case letters, digits and -)"),
        );
    }
    if let Some(tp) = sp.target_port {
        port(cx, &p.key("targetPort"), tp);
    }
}

fn bind(cx: &mut Ctx, p: &FieldPath, b: &str) {
    if !(b.starts_with("unix://") || b.parse::<IpAddr>().is_ok()) {
        cx.invalid(
            p,
            format!("invalid bind {b:?} (expected an IP address or unix:///path)"),
        );
    }
}

fn default_endpoint(cx: &mut Ctx, p: &FieldPath, ep: &str) {
    if ep.starts_with("unix://") {
        return;
    }
    let ok = ep
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.port() != 0 && (a.ip().is_loopback() || a.ip().is_unspecified()));
    if !ok {
        cx.invalid(
            p,
            format!(
                "invalid defaultEndpoint {ep:?} (expected 127.0.0.1:PORT, 0.0.0.0:PORT, \
                 [::1]:PORT or unix:///path)"
            ),
        );
    }
}

/// `namespace/dnsName`, where namespace is `*`, `.`, `~` or a namespace
/// name, and dnsName is `*`, `*.suffix` or a hostname.
fn egress_host(cx: &mut Ctx, p: &FieldPath, h: &str) {
    const FORM: &str =
        "expected namespace/dnsName, e.g. istio-system/*, ./reviews.default.svc.cluster.local \
         or */*.example.com";
    let Some((ns, name)) = h.split_once('/') else {
        cx.invalid(p, format!("invalid egress host {h:?} ({FORM})"));
        return;
    };
    if !(ns == "*" || ns == "." || ns == "~" || is_dns_label(ns)) {
        cx.invalid(
            p,
            format!("invalid egress host {h:?}: bad namespace {ns:?} ({FORM})"),
        );
    } else if let Some(e) = host_error(name, true) {
        cx.invalid(p, format!("invalid egress host {h:?}: {e}"));
    }
}
