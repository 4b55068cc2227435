//! `ringmesh-xds-load`: simulated Delta ADS sidecars against
//! `ringmesh-control`; see `ringmesh_perf::xds_load` and perf/README.md.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use ringmesh_perf::{
    parse_duration,
    xds_load::{
        human,
        mesh::{Mesh, MeshSpec, Sidecars},
        run::{self, RunOptions, Scenario, TruthGroup},
    },
};

#[derive(Parser, Debug)]
#[command(
    name = "ringmesh-xds-load",
    about = "Thousands of simulated Envoy sidecars on Delta ADS against ringmesh-control: \
             convergence, bytes and pushes per registry change",
    after_help = "Examples:\n  \
      ringmesh-xds-load generate --dir /tmp/mesh --proxies 10000 --services 1000\n  \
      ringmesh-control --config-dir /tmp/mesh --poll-interval 50ms &\n  \
      ringmesh-xds-load run --dir /tmp/mesh --xds 127.0.0.1:15010 --control-pid $! --json out.json\n\n\
      perf/xds-scale.sh does all of it (build, control plane, run, table)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write the registry directory of a generated mesh.
    Generate(GenerateArgs),
    /// Connect the proxies to a control plane serving that directory and measure.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// The registry directory (empty, missing, or generated before).
    #[arg(long)]
    dir: PathBuf,
    /// Simulated sidecars (each the pod of a generated workload).
    #[arg(long, default_value_t = 200)]
    proxies: usize,
    #[arg(long, default_value_t = 50)]
    services: usize,
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Pods per service; 0: just enough for the proxies.
    #[arg(long, default_value_t = 0)]
    workloads_per_service: usize,
    /// Endpoints per service without a proxy (churn removes these).
    #[arg(long, default_value_t = 2)]
    extra_endpoints: usize,
    /// Services with a VirtualService and a DestinationRule.
    #[arg(long, default_value_t = 10)]
    routed_services: usize,
    /// Namespaces whose Sidecar limits egress to their own services: all, half (even ones), none.
    #[arg(long, default_value = "half", value_parser = Sidecars::parse)]
    sidecars: Sidecars,
    /// `pod`: each node carries its pod IP (node id, INSTANCE_IPS), as Kubernetes sidecars do.
    /// `none`: no IP, so pods of one workload share the control plane's scope (a what-if that
    /// measures what per-pod scopes cost).
    #[arg(long, default_value = "pod", value_parser = ["pod", "none"])]
    node_ip: String,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The generated registry directory the control plane serves.
    #[arg(long)]
    dir: PathBuf,
    /// The control plane's gRPC address.
    #[arg(long, default_value = "127.0.0.1:15010")]
    xds: String,
    /// The control plane's PID, for its CPU and memory from /proc.
    #[arg(long)]
    control_pid: Option<u32>,
    /// The control plane's log (RUST_LOG=info), to time when it saw each change.
    #[arg(long)]
    control_log: Option<PathBuf>,
    /// Scenarios in order, comma-separated: single, churn.
    #[arg(long, default_value = "single,churn", value_delimiter = ',', value_parser = Scenario::parse)]
    scenario: Vec<Scenario>,
    /// Changes of the single scenario (add and remove alternate).
    #[arg(long, default_value_t = 6)]
    single_changes: usize,
    /// Endpoint changes per second during churn.
    #[arg(long, default_value_t = 50.0)]
    churn_rate: f64,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    churn_duration: Duration,
    /// New streams per second while connecting.
    #[arg(long, default_value_t = 500.0)]
    connect_rate: f64,
    /// Quiet time after a change converged, in which any further push is counted against it.
    #[arg(long, default_value = "1500ms", value_parser = parse_duration)]
    settle: Duration,
    /// Give up on the initial sync after this long.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    sync_timeout: Duration,
    /// A change that has not reached every affected proxy after this long is a failure.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    converge_timeout: Duration,
    /// The whole run ends (and fails) after this long.
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    max_run: Duration,
    /// Resources one proxy may hold (memory bound per stream).
    #[arg(long, default_value_t = 100_000)]
    max_resources: usize,
    /// Distinct names and versions all proxies together may see.
    #[arg(long, default_value_t = 20_000_000)]
    max_names: usize,
    /// Largest response accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_message: usize,
    /// Final check: one fresh stream per distinct node (exact) or per workload.
    #[arg(long, default_value = "exact", value_parser = TruthGroup::parse)]
    truth_group: TruthGroup,
    /// Fresh streams of the final check open at once.
    #[arg(long, default_value_t = 64)]
    truth_concurrency: usize,
    /// Seed of churn's service choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Write the JSON report here (it is also printed with --json-stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    json_stdout: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Generate(a) => generate(a),
        Command::Run(a) => run_cmd(a),
    }
}

fn generate(a: GenerateArgs) -> ExitCode {
    let spec = MeshSpec {
        proxies: a.proxies,
        services: a.services,
        namespaces: a.namespaces,
        workloads_per_service: a.workloads_per_service,
        extra_endpoints: a.extra_endpoints,
        routed_services: a.routed_services,
        sidecars: a.sidecars,
        node_ip: a.node_ip == "pod",
    }
    .validated();
    let result = spec.and_then(|spec| Mesh::new(spec, &a.dir).generate());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmesh-xds-load generate: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_cmd(a: RunArgs) -> ExitCode {
    let opts = RunOptions {
        dir: a.dir,
        xds: a.xds,
        control_pid: a.control_pid,
        control_log: a.control_log,
        scenarios: a.scenario,
        single_changes: a.single_changes,
        churn_rate: a.churn_rate,
        churn_duration: a.churn_duration,
        connect_rate: a.connect_rate,
        settle: a.settle,
        sync_timeout: a.sync_timeout,
        converge_timeout: a.converge_timeout,
        max_resources: a.max_resources,
        max_names: a.max_names,
        max_message: a.max_message,
        truth_group: a.truth_group,
        truth_concurrency: a.truth_concurrency,
        seed: a.seed,
        progress: !a.quiet,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringmesh-xds-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let max_run = a.max_run;
    let result = runtime.block_on(async move {
        match tokio::time::timeout(max_run, run::run(opts)).await {
            Ok(r) => r,
            Err(_) => Err(format!("the run took longer than --max-run {max_run:?}")),
        }
    });
    // Proxy tasks still running are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ringmesh-xds-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = format!("{:#}", outcome.report);
    if let Some(path) = &a.json {
        if let Err(e) = std::fs::write(path, format!("{json}\n")) {
            eprintln!("ringmesh-xds-load: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if a.json_stdout {
        println!("{json}");
    } else {
        print!("{}", human(&outcome.report));
    }
    if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
