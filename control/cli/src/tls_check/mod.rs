//! `ringmesh tls-check [SERVICE[:PORT]]`: the effective mutual TLS of
//! every service port, like `istioctl authn tls-check`.
//!
//! The mesh directory is loaded as ringmesh-control loads it
//! (`ringmesh_registry::load_state`), then for each registry service port:
//!
//! - **server**: each workload's mode on its target port, with the
//!   PeerAuthentication precedence the translation itself uses
//!   ([`ringmesh_translate::server_mode`]); a workload without a sidecar
//!   accepts plaintext only;
//! - **client**: what a client proxy (with a workload identity) in the
//!   service's namespace, or `--from`, originates
//!   ([`ringmesh_translate::client_tls`]: the DestinationRule's `tls`, else
//!   auto mTLS);
//! - **status**: CONFLICT when a client sends plaintext (or non-mesh TLS)
//!   to a STRICT workload, or mTLS to one that cannot take it.
//!
//! Exit status: 0 when every listed port is OK, 1 on a CONFLICT, 2 on a
//! usage error, a directory that cannot be read, a SERVICE that matches
//! nothing, or stdout failing.

pub mod render;
#[cfg(test)]
mod tests;

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::ValueEnum;
use ringmesh_registry::{FileOptions, MeshState};
use ringmesh_translate::{
    client_tls, server_mode, ClientMode, ClientTls, Options, ServerMode, ServerMtls,
};

use crate::style::Style;

/// Exit status: a CONFLICT.
pub const EXIT_CONFLICT: u8 = 1;
/// Exit status: usage error, unreadable directory, nothing matched,
/// stdout failing.
pub const EXIT_ERROR: u8 = 2;

pub(crate) const LONG_ABOUT: &str = "\
Show the effective mutual TLS of every service port, like `istioctl authn
tls-check`, computed from the mesh directory exactly as ringmesh-control
translates it.

For each service port (HOST, PORT):

  SERVER  the PeerAuthentication mode of its workloads on their target port
          (STRICT, PERMISSIVE or DISABLE; MIXED when they differ). The most
          specific policy that sets a mode wins: port level, workload
          selector, namespace, then mesh-wide (root namespace istio-system);
          none means PERMISSIVE. A workload without a sidecar is DISABLE.
  CLIENT  what a client proxy with a workload identity sends: the
          DestinationRule's tls mode, or auto mTLS — ISTIO_MUTUAL (auto)
          when every ready workload has a sidecar that accepts mTLS,
          DISABLE (auto) otherwise. Clients are in the service's own
          namespace unless --from names another (DestinationRules are
          chosen from the client's namespace first).
  STATUS  OK, or CONFLICT when clients send plaintext (or non-mesh TLS) to
          a STRICT workload, or mTLS to a workload that cannot take it; the
          reason follows the table.

AUTHN POLICY and DESTINATION RULE name the resources that decided.

Exit status: 0 when every listed port is OK, 1 on a CONFLICT, 2 on a usage
error, a directory that cannot be read, or a SERVICE that matches nothing.";

pub(crate) const EXAMPLES: &str = "\
Examples:
  # Every service port of the mesh directory ringmesh-control serves
  ringmesh tls-check --dir mesh/

  # One service (its short name, name.namespace or the full host), one port
  ringmesh tls-check --dir mesh/ reviews.bookinfo:9080

  # As clients in another namespace see it; JSON for scripts
  ringmesh tls-check --dir mesh/ --from frontend -o json

  # In CI: fail when any client would be refused
  ringmesh tls-check --dir mesh/ >/dev/null || echo \"mTLS conflict\"";

/// How the result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One row per service port, conflicts explained below
    Table,
    /// Every workload's mode and every decision, as JSON
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this service (short name, name.namespace or full host), and port
    #[arg(value_name = "SERVICE[:PORT]")]
    pub service: Option<ServiceFilter>,

    /// The mesh directory (registry Services and Workloads, Istio resources)
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Judge the client side from this namespace (default: each service's own)
    #[arg(long, value_name = "NAMESPACE")]
    pub from: Option<String>,

    /// Cluster domain of service hosts
    #[arg(long, default_value = ringmesh_istio::DEFAULT_DOMAIN_SUFFIX, value_name = "SUFFIX")]
    pub domain_suffix: String,

    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub output: Format,
}

/// `SERVICE[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFilter {
    pub service: String,
    pub port: Option<u16>,
}

impl std::str::FromStr for ServiceFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (service, port) = match s.rsplit_once(':') {
            Some((name, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{s}: {port:?} is not a port number (1-65535)"))?;
                (name, Some(port))
            }
            None => (s, None),
        };
        if service.is_empty() {
            return Err(format!(
                "{s}: give a service name (reviews, reviews.bookinfo or its full host)"
            ));
        }
        Ok(ServiceFilter {
            service: service.to_ascii_lowercase(),
            port,
        })
    }
}

impl ServiceFilter {
    /// `reviews`, `reviews.bookinfo` and the full host all match
    /// `reviews.bookinfo.svc.cluster.local`.
    fn matches_host(&self, host: &str) -> bool {
        host == self.service
            || host
                .strip_prefix(self.service.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    }
}

/// One workload's side of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSide {
    /// `None`: the service has no ready workload; the mode is what one
    /// with the selector's labels would get.
    pub workload: Option<String>,
    pub target_port: u16,
    pub sidecar: bool,
    pub mtls: ServerMtls,
}

impl ServerSide {
    /// What the workload accepts: its policy's mode, or plaintext only
    /// without a sidecar.
    pub fn effective(&self) -> ServerMode {
        if self.sidecar {
            self.mtls.mode
        } else {
            ServerMode::Disable
        }
    }

    fn who(&self) -> String {
        match &self.workload {
            Some(w) => format!("workload {w}"),
            None => "a workload of the service (none is ready)".to_owned(),
        }
    }

    /// Why it has its mode: the policy, the default, or no sidecar.
    pub fn decided_by(&self) -> String {
        if !self.sidecar {
            return "no sidecar".to_owned();
        }
        match &self.mtls.policy {
            Some(p) => p.to_string(),
            None => "default".to_owned(),
        }
    }
}

/// One service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub host: String,
    pub namespace: String,
    pub port: u16,
    /// Ready workloads by name; one entry without a name when none.
    pub server: Vec<ServerSide>,
    /// The namespace the client side was judged from.
    pub client_namespace: String,
    /// `None` when the service port is not visible from there.
    pub client: Option<ClientTls>,
    /// Each conflict, said in a sentence.
    pub conflicts: Vec<String>,
}

impl Row {
    /// The SERVER cell: the one mode, or MIXED.
    pub fn server_mode(&self) -> String {
        let mut modes: Vec<ServerMode> = self.server.iter().map(ServerSide::effective).collect();
        modes.sort();
        modes.dedup();
        match modes.as_slice() {
            [one] => one.as_str().to_owned(),
            _ => "MIXED".to_owned(),
        }
    }

    /// The CLIENT cell: `ISTIO_MUTUAL`, `DISABLE (auto)`, ….
    pub fn client_mode(&self) -> String {
        match &self.client {
            None => "not visible".to_owned(),
            Some(c) if c.auto.is_some() => format!("{} (auto)", c.mode),
            Some(c) => c.mode.to_string(),
        }
    }

    pub fn status(&self) -> &'static str {
        if self.conflicts.is_empty() {
            "OK"
        } else {
            "CONFLICT"
        }
    }
}

/// What a client mode sends, in words.
fn sends(mode: ClientMode) -> &'static str {
    match mode {
        ClientMode::Disable => "plaintext",
        ClientMode::Simple => "TLS without a client certificate (SIMPLE)",
        ClientMode::Mutual => "TLS with a non-mesh certificate (MUTUAL)",
        ClientMode::IstioMutual => "mTLS (ISTIO_MUTUAL)",
    }
}

fn client_source(c: &ClientTls) -> String {
    match (c.auto, &c.destination_rule) {
        (Some(reason), _) => format!("auto mTLS: {}", reason.describe()),
        (None, Some(dr)) => format!("DestinationRule {dr}"),
        (None, None) => "DestinationRule".to_owned(),
    }
}

fn conflicts(server: &[ServerSide], client: Option<&ClientTls>) -> Vec<String> {
    let Some(c) = client else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in server {
        if s.workload.is_none() && c.auto.is_some() {
            // No endpoint yet: auto mTLS decides once there is one.
            continue;
        }
        let problem = match (s.effective(), c.mode) {
            (ServerMode::Strict, m) if m != ClientMode::IstioMutual => format!(
                "clients send {} ({}) but {} requires mTLS (STRICT, {})",
                sends(m),
                client_source(c),
                s.who(),
                s.decided_by()
            ),
            (ServerMode::Disable, ClientMode::IstioMutual) => format!(
                "clients send {} ({}) but {} accepts plaintext only ({})",
                sends(c.mode),
                client_source(c),
                s.who(),
                if s.sidecar {
                    format!("DISABLE, {}", s.decided_by())
                } else {
                    "no sidecar".to_owned()
                }
            ),
            _ => continue,
        };
        out.push(problem);
    }
    out
}

/// Every registry service port (matching `filter`), sorted by host and
/// port.
pub fn check(
    state: &MeshState,
    opts: &Options,
    filter: Option<&ServiceFilter>,
    from: Option<&str>,
) -> Vec<Row> {
    let mut services: Vec<_> = state.services.iter().collect();
    services.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    let pas = &state.istio.peer_authentications;
    let mut rows = Vec::new();
    for svc in services {
        if filter.is_some_and(|f| !f.matches_host(&svc.hostname)) {
            continue;
        }
        let mut ports = svc.ports.clone();
        ports.sort_by_key(|p| p.port);
        for port in &ports {
            if filter.and_then(|f| f.port).is_some_and(|p| p != port.port) {
                continue;
            }
            let mut workloads: Vec<_> = state.endpoints_of(svc).collect();
            workloads.sort_by(|a, b| a.name.cmp(&b.name));
            let mut server: Vec<ServerSide> = workloads
                .iter()
                .map(|w| {
                    let target_port = w.target_port(port);
                    ServerSide {
                        workload: Some(w.name.clone()),
                        target_port,
                        sidecar: w.has_sidecar,
                        mtls: server_mode(pas, &w.namespace, &w.labels, target_port),
                    }
                })
                .collect();
            if server.is_empty() {
                server.push(ServerSide {
                    workload: None,
                    target_port: port.target_port,
                    sidecar: true,
                    mtls: server_mode(pas, &svc.namespace, &svc.selector, port.target_port),
                });
            }
            let client_namespace = from.unwrap_or(&svc.namespace).to_owned();
            let client = client_tls(state, opts, &client_namespace, &svc.hostname, port.port);
            let conflicts = conflicts(&server, client.as_ref());
            rows.push(Row {
                host: svc.hostname.clone(),
                namespace: svc.namespace.clone(),
                port: port.port,
                server,
                client_namespace,
                client,
                conflicts,
            });
        }
    }
    rows
}

/// The `tls-check` command, start to finish.
pub fn main(args: &Args) -> ExitCode {
    let err = |msg: String| {
        let _ = writeln!(std::io::stderr(), "error: {msg}");
        ExitCode::from(EXIT_ERROR)
    };
    match std::fs::metadata(&args.dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return err(format!(
                "{} is not a directory; give --dir the mesh directory ringmesh-control serves \
                 (--config-dir)",
                args.dir.display()
            ))
        }
        Err(e) => return err(format!("cannot read {}: {e}", args.dir.display())),
    }
    let options = FileOptions {
        domain_suffix: args.domain_suffix.clone(),
        ..FileOptions::default()
    };
    let state = ringmesh_registry::load_state(&args.dir, &options, None);
    let errors = state.diagnostics.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "warning: {errors} error(s) in {}: the resources concerned are left out, as \
             ringmesh-control leaves them out; `ringmesh analyze {}` shows them",
            args.dir.display(),
            args.dir.display()
        );
    }
    let opts = Options {
        domain_suffix: args.domain_suffix.clone(),
        ..Options::default()
    };
    let rows = check(&state, &opts, args.service.as_ref(), args.from.as_deref());
    if rows.is_empty() {
        return err(match &args.service {
            Some(f) => format!(
                "no service port matches {}{}; `ringmesh tls-check --dir {}` lists them all",
                f.service,
                f.port.map(|p| format!(":{p}")).unwrap_or_default(),
                args.dir.display()
            ),
            None => format!(
                "{} defines no registry Service; nothing to check",
                args.dir.display()
            ),
        });
    }
    let text = match args.output {
        Format::Table => render::table(&rows, Style::for_stdout()),
        Format::Json => render::json(&rows),
    };
    let status = if rows.iter().any(|r| !r.conflicts.is_empty()) {
        EXIT_CONFLICT
    } else {
        0
    };
    crate::finish(std::io::stdout().write_all(text.as_bytes()), status)
}
