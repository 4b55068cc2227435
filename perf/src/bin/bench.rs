//! `ringmesh-bench`: see the crate docs (`ringmesh_perf`) and perf/README.md.
use std::process::ExitCode;

use clap::Parser;
use ringmesh_perf::{args::Cli, BenchConfig};

fn main() -> ExitCode {
    let cfg = match BenchConfig::try_from(Cli::parse()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("ringmesh-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match ringmesh_perf::run(cfg.clone()) {
        Ok(report) => {
            if cfg.json {
                println!("{}", report.to_json(&cfg));
            } else {
                print!("{}", report.to_human(&cfg));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringmesh-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
