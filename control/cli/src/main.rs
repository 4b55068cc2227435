//! The `ringmesh` binary: parse the command line, run the command, exit
//! with its status (clap exits with 2 on a usage error).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ringmesh_cli::run(ringmesh_cli::Cli::parse())
}
