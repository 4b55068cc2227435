//! `ringmesh`, the command line of Ringmesh. Today it has one command,
//! `ringmesh analyze`, which validates Istio YAML the way `istioctl
//! analyze` does: every file and directory given is loaded as one
//! [`ringmesh_istio::Model`] (so references across files resolve), the
//! model's own per-resource diagnostics (RM0001–RM0013) are joined by the
//! mesh-level analyzers of [`analyze::mesh`] (RM0101+), and the result is
//! printed as a table, compiler-style lines, JSON or YAML, with an exit
//! status a CI job can gate on. The other commands of the design (`demo`,
//! `proxy-status`, `config-dump`, `tls-check`, `inject`) come later; they
//! are left out of the binary rather than stubbed.
#![forbid(unsafe_code)]

pub mod analyze;
pub mod style;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  # Validate a directory of Istio YAML, as one mesh
  ringmesh analyze deploy/istio/

  # Validate what is about to be applied, from a pipe
  kubectl kustomize overlays/prod | ringmesh analyze -

  # Machine-readable findings; fail on warnings too
  ringmesh analyze -o json --failure-threshold warning config/";

/// Ringmesh's command line.
#[derive(Debug, Parser)]
#[command(
    name = "ringmesh",
    version,
    about = "Ringmesh's command line: check Istio configuration before it reaches the mesh",
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
}

/// Run a parsed command line; the exit status is the command's.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Analyze(args) => analyze::main(&args),
    }
}
