//! `ringmesh-xds-load`: thousands of simulated Envoy sidecars on Delta
//! ADS against a running `ringmesh-control`, and a driver that changes
//! the control plane's registry and measures what each change costs.
//!
//! ```text
//!  generate ──▶ registry dir ──▶ ringmesh-control --config-dir (started by perf/xds-scale.sh)
//!                   ▲                        │ Delta ADS, one HTTP/2 connection per proxy
//!   driver: rewrite one file ─┐              ▼
//!   (temp + rename)           │   N proxy tasks (client) ── ProxyState (proxy): subscriptions,
//!                             │        │                    held name → version, ACKs
//!   Expectation (measure) ◀───┴── load assignments of watched clusters: converged at?
//!   counters per proxy ─▶ bytes, responses, pushes to unaffected proxies
//!   end: one fresh stream per scope (truth) ─▶ compare every proxy
//! ```
//!
//! Modules: [`proxy`] is the bookkeeping of one sidecar (pure, unit
//! tested), [`wire`] the only one that names the generated Envoy types,
//! [`catalog`] what all proxies share (interned names, derived route and
//! endpoint names), [`measure`] the convergence bookkeeping, [`mesh`] the
//! generated registry and its changes, [`client`] the stream task,
//! [`run`] the driver, [`procstat`] `/proc` sampling.

pub mod catalog;
pub mod client;
pub mod measure;
pub mod mesh;
pub mod procstat;
pub mod proxy;
pub mod run;
pub mod wire;

use std::fmt::Write as _;

use serde_json::Value;

/// The human table of a run's JSON report.
pub fn human(r: &Value) -> String {
    let mut out = String::new();
    let spec = &r["spec"];
    let _ = writeln!(
        out,
        "ringmesh-xds-load: {} proxies, {} services in {} namespaces ({} workloads each, \
         Sidecar egress scoping: {}, {} with VirtualService+DestinationRule, node IP: {})",
        spec["proxies"],
        spec["services"],
        spec["namespaces"],
        spec["workloads_per_service"],
        spec["sidecars"].as_str().unwrap_or("?"),
        spec["routed_services"],
        spec["node_ip"].as_str().unwrap_or("?"),
    );
    let sync = &r["sync"];
    let _ = writeln!(
        out,
        "initial sync: all {} proxies complete after {:.1} s ({:.1} MB, {:.0} KB per proxy; \
         per proxy LDS {} RDS {} CDS {} EDS {}); control plane CPU {} s",
        sync["proxies"],
        sync["all_complete_s"].as_f64().unwrap_or(0.0),
        sync["bytes_total"].as_f64().unwrap_or(0.0) / 1e6,
        sync["bytes_per_proxy"].as_f64().unwrap_or(0.0) / 1e3,
        sync["resources_per_proxy"]["LDS"],
        sync["resources_per_proxy"]["RDS"],
        sync["resources_per_proxy"]["CDS"],
        sync["resources_per_proxy"]["EDS"],
        num(&sync["control_plane"]["cpu_s"]),
    );
    let _ = writeln!(
        out,
        "\n| scenario | changes | affected proxies / change | convergence p50 / p99 / max (ms) | \
         per-change max p50 / p99 / max (ms) | bytes / change | bytes / affected proxy | \
         unaffected proxies pushed | no-op responses | CP CPU (s) |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (key, label) in [("single", "single endpoint change"), ("churn", "churn")] {
        let s = &r[key];
        if s.is_null() {
            continue;
        }
        let changes = if key == "single" {
            s["changes"].as_array().map_or(0, Vec::len).to_string()
        } else {
            format!("{} @ {}/s", s["changes"], num(&s["rate_per_s"]))
        };
        let per_affected = if key == "single" {
            &s["bytes_per_affected_proxy"]
        } else {
            &s["bytes_per_affected_proxy_change"]
        };
        let _ = writeln!(
            out,
            "| {label} | {changes} | {} | {} | {} | {} | {} | {} | {} | {} |",
            int(&s["affected_per_change"]),
            triple(&s["convergence"]),
            triple(&s["per_change_max"]),
            int(&s["bytes_per_change"]),
            int(per_affected),
            int(&s["unaffected_proxies_pushed"]),
            int(&s["noop_responses"]),
            num(&s["control_plane"]["cpu_s"]),
        );
    }
    let v = &r["verify"];
    if !v.is_null() {
        let _ = writeln!(
            out,
            "\nfinal check: {} — {} proxies compared with {} fresh streams, {} differ",
            if v["ok"].as_bool() == Some(true) {
                "OK"
            } else {
                "FAILED"
            },
            v["proxies_compared"],
            v["groups"],
            v["proxies_differing"],
        );
    }
    let cp = &r["control_plane"];
    if !cp.is_null() {
        let _ = writeln!(
            out,
            "control plane (pid {}): CPU {} s over the run, max RSS {} MiB (VmHWM), RSS at the \
             end {} MiB",
            cp["pid"],
            num(&cp["cpu_s"]),
            cp["max_rss_mib"],
            cp["rss_mib_end"]
        );
    }
    let t = &r["tool"];
    if !t.is_null() {
        let _ = writeln!(
            out,
            "load tool: CPU {} s, max RSS {} MiB",
            num(&t["cpu_s"]),
            t["max_rss_mib"]
        );
    }
    let _ = writeln!(
        out,
        "streams: {} disconnects, {} undecodable resources, {} proxies gave up",
        r["streams"]["disconnects"], r["streams"]["decode_errors"], r["streams"]["failed_proxies"]
    );
    for e in r["streams"]["last_errors"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  last error of {} proxies: {}",
            e["proxies"],
            e["error"].as_str().unwrap_or_default()
        );
    }
    if let Some(f) = r["failures"].as_array().filter(|f| !f.is_empty()) {
        let _ = writeln!(out, "\nFAILED:");
        for x in f {
            let _ = writeln!(out, "  - {}", x.as_str().unwrap_or_default());
        }
    } else {
        let _ = writeln!(out, "\nresult: OK");
    }
    out
}

fn num(v: &Value) -> String {
    v.as_f64().map_or_else(|| "–".into(), |x| format!("{x:.1}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_in_the_table() {
        assert_eq!(int(&json!(1234567.4)), "1,234,567");
        assert_eq!(int(&json!(999)), "999");
        assert_eq!(int(&json!(-1000)), "-1,000");
        assert_eq!(int(&Value::Null), "–");
        assert_eq!(num(&json!(2.26)), "2.3");
        assert_eq!(
            triple(&json!({"p50_ms": 1.4, "p99_ms": 20.6, "max_ms": 300})),
            "1 / 21 / 300"
        );
    }
}

/// A count or a rounded average, with thousands separators.
fn int(v: &Value) -> String {
    let Some(x) = v.as_f64() else {
        return "–".into();
    };
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn triple(s: &Value) -> String {
    let f = |k: &str| s[k].as_f64().map_or("–".into(), |x| format!("{x:.0}"));
    format!("{} / {} / {}", f("p50_ms"), f("p99_ms"), f("max_ms"))
}
