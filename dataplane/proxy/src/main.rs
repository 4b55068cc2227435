//! `ringmesh-proxy` binary: flags, logging, then [`ringmesh_proxy::run`].

use std::path::PathBuf;

use clap::Parser;
use ringmesh_runtime::DriverChoice;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Ringmesh sidecar proxy.
#[derive(Parser, Debug)]
#[command(
    name = "ringmesh-proxy",
    version,
    about,
    after_help = "Example:\n  ringmesh-proxy --config examples/proxy.yaml\n\nThe configuration reloads on SIGHUP or when the file changes; SIGTERM drains and exits.\nLogging: RUST_LOG (default info)."
)]
struct Args {
    /// Configuration file (YAML; see docs/CONFIG.md).
    #[arg(short, long)]
    config: PathBuf,
    /// Number of shards (default: usable cores from the affinity mask and cgroup CPU quota).
    #[arg(long)]
    concurrency: Option<usize>,
    /// I/O driver: auto (io_uring, falling back to epoll), uring, or epoll.
    #[arg(long, default_value = "auto")]
    io_driver: DriverChoice,
}

fn main() {
    let args = Args::parse();
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
    let code = ringmesh_proxy::run(ringmesh_proxy::Options {
        config: args.config,
        concurrency: args.concurrency,
        io_driver: args.io_driver,
    });
    // Shards run until the process exits; drain has already finished.
    std::process::exit(code);
}
