//! `ringmesh`, the command line of Ringmesh.
//!
//! - `ringmesh analyze` validates Istio YAML the way `istioctl analyze`
//!   does: every file and directory given is loaded as one
//!   [`ringmesh_istio::Model`] (so references across files resolve), the
//!   model's own per-resource diagnostics (RM0001–RM0013) are joined by
//!   the mesh-level analyzers of [`analyze::mesh`] (RM0101+), and the
//!   result is printed as a table, compiler-style lines, JSON or YAML,
//!   with an exit status a CI job can gate on.
//! - `ringmesh proxy-status` asks the control plane (its
//!   `ringmesh.mesh.v1.MeshStatus` gRPC service) what every connected
//!   proxy accepted or rejected, like `istioctl proxy-status`
//!   ([`proxy_status`]).
//! - `ringmesh config-dump` prints a proxy's live configuration from its
//!   admin endpoint, filtered by type ([`config_dump`]).
//! - `ringmesh demo` runs a whole mesh on loopback: control plane, one
//!   sidecar per "pod", the sample application, traffic and a live view
//!   (`ringmesh-demo`).
//!
//! - `ringmesh tls-check` shows the effective mTLS per service port.
//! - `ringmesh inject -f` adds the sidecar to Kubernetes YAML offline,
//!   with the admission webhook's own code (`ringmesh-inject`).

#![forbid(unsafe_code)]

pub mod addr;
pub mod analyze;
pub mod config_dump;
pub mod inject;
pub mod proxy_status;
pub mod style;
pub mod tls_check;

use std::{io::Write, process::ExitCode};

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  # Validate a directory of Istio YAML, as one mesh
  ringmesh analyze deploy/istio/

  # Validate what is about to be applied, from a pipe
  kubectl kustomize overlays/prod | ringmesh analyze -

  # Machine-readable findings; fail on warnings too
  ringmesh analyze -o json --failure-threshold warning config/

  # Which proxies accepted their configuration (and which rejected it, why)
  ringmesh proxy-status
  ringmesh proxy-status reviews-v1

  # What the local proxy runs
  ringmesh config-dump --type listeners

  # Effective mTLS per service port; exit 1 on a conflict
  ringmesh tls-check --dir mesh/

  # Add the sidecar to a Deployment offline, as the admission webhook does
  ringmesh inject -f deployment.yaml --control-plane-address 10.96.0.20:15010";

/// Ringmesh's command line.
#[derive(Debug, Parser)]
#[command(
    name = "ringmesh",
    version,
    about = "Ringmesh's command line: check Istio configuration before it reaches the mesh, and \
             see what the proxies run",
    after_help = EXAMPLES,
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate Istio YAML (files, directories or stdin) like `istioctl analyze`
    #[command(
        long_about = analyze::LONG_ABOUT,
        after_help = analyze::EXAMPLES,
    )]
    Analyze(analyze::Args),
    /// Show what each proxy connected to the control plane accepted (SYNCED, STALE, NACKED)
    #[command(
        long_about = proxy_status::LONG_ABOUT,
        after_help = proxy_status::EXAMPLES,
    )]
    ProxyStatus(proxy_status::Args),
    /// Print a proxy's live configuration from its admin endpoint
    #[command(
        long_about = config_dump::LONG_ABOUT,
        after_help = config_dump::EXAMPLES,
    )]
    ConfigDump(config_dump::Args),
    /// Run a whole mesh on this machine: control plane, sidecars, sample app, traffic, live view
    #[command(
        long_about = ringmesh_demo::LONG_ABOUT,
        after_help = ringmesh_demo::EXAMPLES,
    )]
    Demo(ringmesh_demo::DemoArgs),
    /// Show the effective mTLS (server and client side) of every service port
    #[command(
        long_about = tls_check::LONG_ABOUT,
        after_help = tls_check::EXAMPLES,
    )]
    TlsCheck(tls_check::Args),
    /// Add the sidecar to Kubernetes YAML offline, as the admission webhook does
    #[command(
        long_about = inject::LONG_ABOUT,
        after_help = inject::EXAMPLES,
    )]
    Inject(inject::Args),
}

/// Run a parsed command line; the exit status is the command's.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Analyze(args) => analyze::main(&args),
        Command::ProxyStatus(args) => proxy_status::main(&args),
        Command::ConfigDump(args) => config_dump::main(&args),
        Command::TlsCheck(args) => tls_check::main(&args),
        Command::Inject(args) => inject::main(&args),
        // On the main thread: the children's parent-death signal is tied
        // to the thread that spawned them.
        Command::Demo(args) => ExitCode::from(u8::try_from(ringmesh_demo::run(args)).unwrap_or(1)),
    }
}

/// The exit status once the output is written: a closed pipe (`| head`)
/// is the reader's choice and keeps the status; another write error is 2.
pub(crate) fn finish(written: std::io::Result<()>, status: u8) -> ExitCode {
    match written.and_then(|()| std::io::stdout().flush()) {
        Ok(()) => ExitCode::from(status),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(status),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot write the output: {e}");
            ExitCode::from(2)
        }
    }
}
