//! `ringmesh-control` binary: flags, logging, then the server
//! ([`ringmesh_control::run`]) or a subcommand.

use clap::Parser;
use ringmesh_control::{Cli, Command};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let code = match cli.command {
        Some(Command::Token(args)) => ringmesh_control::token::main(&args),
        None => {
            // Two worker threads by default: ADS streams, translation and
            // signing are light; the machine's cores belong to the proxies.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cli.serve.threads)
                .thread_name("control")
                .enable_all()
                .build()
                .expect("building the tokio runtime");
            runtime.block_on(ringmesh_control::run(cli.serve))
        }
    };
    std::process::exit(code);
}
