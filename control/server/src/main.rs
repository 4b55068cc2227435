//! `ringmesh-control` binary: flags, logging, runtime, then
//! [`ringmesh_control::run`].

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = ringmesh_control::Args::parse();
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
    // Two worker threads: ADS streams and translation are light; the
    // machine's cores belong to the proxies.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .thread_name("control")
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let code = runtime.block_on(ringmesh_control::run(args));
    std::process::exit(code);
}
