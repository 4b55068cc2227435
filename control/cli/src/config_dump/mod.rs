//! `ringmesh config-dump`: a proxy's live configuration, from its admin
//! endpoint's `/config_dump`, pretty-printed and filtered by type.
//!
//! Two dump shapes are understood:
//! - ringmesh-proxy's: `{"version": "...", "config": {"listeners": [...],
//!   "route_configs": [...], "clusters": [{..., "endpoints": [...]}],
//!   ...}}` — the configuration the proxy runs, in its own model (static
//!   file and xDS alike);
//! - Envoy's: `{"configs": [{"@type": "...ListenersConfigDump", ...},
//!   ...]}` (endpoints only with `?include_eds`, which is asked for when
//!   `--type endpoints`).
//!
//! Exit status: 0 when the dump was printed; 2 on a usage error, when
//! the admin endpoint cannot be reached or answers something else than a
//! configuration dump, or when stdout cannot be written.

pub mod http;

use std::{io::Write, process::ExitCode, time::Duration};

use clap::ValueEnum;
use serde_json::{json, Map, Value};

use crate::addr::HostPort;

/// Exit status: nothing could be printed.
pub const EXIT_ERROR: u8 = 2;

/// Istio's (and ringmesh-proxy's default) admin address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:15000";

pub(crate) const LONG_ABOUT: &str = "\
Print a proxy's live configuration, read from its admin endpoint
(GET /config_dump), as JSON or YAML.

--type picks one part: listeners, routes, clusters (without their endpoints)
or endpoints (per cluster); all (the default) prints the whole dump. Works
with ringmesh-proxy and with Envoy (whose endpoints are fetched with
?include_eds). The admin endpoint listens on loopback by default: run this
where the proxy runs (in its pod, or after a port-forward).

Exit status: 0 when the dump was printed, 2 when it could not be (a usage
error, the admin endpoint unreachable, or an answer that is not a
configuration dump).";

pub(crate) const EXAMPLES: &str = "\
Examples:
  # Everything the local proxy runs
  ringmesh config-dump

  # Only the listeners of a proxy whose admin listens on 127.0.0.1:15100
  ringmesh config-dump --admin 127.0.0.1:15100 --type listeners

  # Endpoints as YAML
  ringmesh config-dump --type endpoints -o yaml

  # The names of the clusters, with jq
  ringmesh config-dump --type clusters | jq -r '.clusters[].name'";

/// Which part of the configuration to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DumpType {
    /// Listeners
    Listeners,
    /// Route configurations
    Routes,
    /// Clusters, without their endpoints
    Clusters,
    /// Endpoints, per cluster
    Endpoints,
    /// The whole dump
    All,
}

/// How the dump is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The proxy's admin address (`admin.address` in its configuration)
    #[arg(long, default_value = DEFAULT_ADMIN, value_name = "HOST:PORT")]
    pub admin: HostPort,

    /// Which part of the configuration to print
    #[arg(short = 't', long = "type", value_enum, default_value_t = DumpType::All, value_name = "TYPE")]
    pub dump_type: DumpType,

    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Json, value_name = "FORMAT")]
    pub output: Format,

    /// Give up on the admin endpoint after this many seconds
    #[arg(long, default_value_t = 5, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

fn check_hint(admin: &HostPort) -> String {
    format!(
        "Is the proxy running, and is {admin} its admin address (admin.address in its \
         configuration; Envoy's --admin-address)? Pass another with --admin HOST:PORT (default \
         {DEFAULT_ADMIN})."
    )
}

/// GET the dump and parse it as JSON. The error says what to check.
pub fn fetch(admin: &HostPort, dump_type: DumpType, timeout: Duration) -> Result<Value, String> {
    // Envoy leaves endpoints out unless asked; ringmesh-proxy ignores
    // the query.
    let path = if dump_type == DumpType::Endpoints {
        "/config_dump?include_eds"
    } else {
        "/config_dump"
    };
    let resp = http::get(admin, path, timeout).map_err(|e| {
        format!(
            "cannot read {path} from the admin endpoint {admin}: {e}\n{}",
            check_hint(admin)
        )
    })?;
    if resp.status != 200 {
        let body = String::from_utf8_lossy(&resp.body);
        let first = body.lines().next().unwrap_or("").trim();
        return Err(format!(
            "{admin} answered {} {} to GET {path}{}\n{}",
            resp.status,
            resp.reason,
            if first.is_empty() {
                String::new()
            } else {
                format!(" ({first})")
            },
            check_hint(admin)
        ));
    }
    serde_json::from_slice(&resp.body).map_err(|e| {
        format!(
            "{admin} answered GET {path} with something that is not JSON ({}: {e}); it is not a \
             proxy's admin endpoint.\n{}",
            if resp.content_type.is_empty() {
                "no content-type"
            } else {
                &resp.content_type
            },
            check_hint(admin)
        )
    })
}

/// The Envoy `ConfigDump` `@type` suffix holding each part.
fn envoy_dump_type(t: DumpType) -> Option<&'static str> {
    match t {
        DumpType::Listeners => Some(".ListenersConfigDump"),
        DumpType::Routes => Some(".RoutesConfigDump"),
        DumpType::Clusters => Some(".ClustersConfigDump"),
        DumpType::Endpoints => Some(".EndpointsConfigDump"),
        DumpType::All => None,
    }
}

/// The part of `dump` that `t` names. ringmesh-proxy's dump gives
/// `{"version", "<part>": [...]}`; Envoy's `{"configs": [<part's dump>]}`.
pub fn select(dump: Value, t: DumpType) -> Result<Value, String> {
    if t == DumpType::All {
        return Ok(dump);
    }
    if let Some(configs) = dump.get("configs").and_then(Value::as_array) {
        let suffix = envoy_dump_type(t).unwrap_or_default();
        let picked: Vec<Value> = configs
            .iter()
            .filter(|c| {
                c.get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|ty| ty.ends_with(suffix))
            })
            .cloned()
            .collect();
        return Ok(json!({ "configs": picked }));
    }
    let Some(Value::Object(config)) = dump.get("config").cloned() else {
        return Err(
            "the dump has neither ringmesh-proxy's `config` object nor Envoy's `configs` list, \
             so its parts cannot be picked out; --type all prints it whole"
                .to_owned(),
        );
    };
    let version = dump.get("version").cloned().unwrap_or(Value::Null);
    let list = |key: &str| config.get(key).cloned().unwrap_or_else(|| json!([]));
    let mut out = Map::new();
    out.insert("version".into(), version);
    match t {
        DumpType::Listeners => {
            out.insert("listeners".into(), list("listeners"));
        }
        DumpType::Routes => {
            out.insert("route_configs".into(), list("route_configs"));
        }
        DumpType::Clusters => {
            let mut clusters = list("clusters");
            if let Some(cs) = clusters.as_array_mut() {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("endpoints");
                }
            }
            out.insert("clusters".into(), clusters);
        }
        DumpType::Endpoints => {
            let per_cluster: Vec<Value> = list("clusters")
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            json!({
                                "cluster": c.get("name").cloned().unwrap_or(Value::Null),
                                "endpoints": c.get("endpoints").cloned().unwrap_or_else(|| json!([])),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.insert("endpoints".into(), Value::Array(per_cluster));
        }
        DumpType::All => return Ok(dump),
    }
    Ok(Value::Object(out))
}

/// `value` as pretty JSON or YAML, newline-terminated.
pub fn render(value: &Value, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Yaml => serde_yaml_ng::to_string(value).unwrap_or_default(),
    }
}

/// The `config-dump` command, start to finish.
pub fn main(args: &Args) -> ExitCode {
    let result = fetch(
        &args.admin,
        args.dump_type,
        Duration::from_secs(args.timeout),
    )
    .and_then(|dump| select(dump, args.dump_type));
    match result {
        Ok(v) => crate::finish(
            std::io::stdout().write_all(render(&v, args.output).as_bytes()),
            0,
        ),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ringmesh_dump() -> Value {
        json!({
            "version": "00000000000000ab",
            "config": {
                "admin": { "address": "127.0.0.1:15000" },
                "listeners": [{ "name": "http", "address": "127.0.0.1:8080", "protocol": "http", "route_config": "r" }],
                "route_configs": [{ "name": "r", "virtual_hosts": [] }],
                "clusters": [
                    { "name": "b", "type": "static", "lb_policy": "round_robin",
                      "endpoints": [{ "address": "127.0.0.1:9000", "weight": 1 }] },
                    { "name": "passthrough", "type": "original_dst", "lb_policy": "round_robin", "endpoints": [] }
                ],
                "limits": {}
            }
        })
    }

    #[test]
    fn ringmesh_parts() {
        let d = ringmesh_dump();
        assert_eq!(select(d.clone(), DumpType::All).unwrap(), d);
        assert_eq!(
            select(d.clone(), DumpType::Listeners).unwrap(),
            json!({ "version": "00000000000000ab", "listeners": d["config"]["listeners"] })
        );
        assert_eq!(
            select(d.clone(), DumpType::Routes).unwrap(),
            json!({ "version": "00000000000000ab", "route_configs": d["config"]["route_configs"] })
        );
        assert_eq!(
            select(d.clone(), DumpType::Clusters).unwrap(),
            json!({ "version": "00000000000000ab", "clusters": [
                { "name": "b", "type": "static", "lb_policy": "round_robin" },
                { "name": "passthrough", "type": "original_dst", "lb_policy": "round_robin" }
            ]})
        );
        assert_eq!(
            select(d, DumpType::Endpoints).unwrap(),
            json!({ "version": "00000000000000ab", "endpoints": [
                { "cluster": "b", "endpoints": [{ "address": "127.0.0.1:9000", "weight": 1 }] },
                { "cluster": "passthrough", "endpoints": [] }
            ]})
        );
    }

    #[test]
    fn envoy_parts() {
        let d = json!({ "configs": [
            { "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump" },
            { "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "static_clusters": [] },
            { "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [] }
        ]});
        assert_eq!(
            select(d.clone(), DumpType::Listeners).unwrap(),
            json!({ "configs": [{ "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [] }] })
        );
        assert_eq!(
            select(d, DumpType::Endpoints).unwrap(),
            json!({ "configs": [] })
        );
    }

    #[test]
    fn unknown_shapes_are_explained() {
        let e = select(json!({ "hello": 1 }), DumpType::Clusters).unwrap_err();
        assert!(e.contains("--type all"), "{e}");
        assert_eq!(
            select(json!({ "hello": 1 }), DumpType::All).unwrap(),
            json!({ "hello": 1 })
        );
    }

    #[test]
    fn yaml_and_json() {
        let v = json!({ "listeners": [{ "name": "http" }] });
        assert_eq!(render(&v, Format::Yaml), "listeners:\n- name: http\n");
        assert_eq!(
            render(&v, Format::Json),
            "{\n  \"listeners\": [\n    {\n      \"name\": \"http\"\n    }\n  ]\n}\n"
        );
    }
}
