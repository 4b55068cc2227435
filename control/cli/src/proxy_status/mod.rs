//! `ringmesh proxy-status [PROXY]`: what every proxy connected to the
//! control plane accepted, like `istioctl proxy-status`.
//!
//! One `ListProxies` call to the control plane's `ringmesh.mesh.v1.
//! MeshStatus` service (served next to ADS, port 15010 by default), then
//! [`render`] prints a table (one row per ADS stream, one column per
//! resource type), and with PROXY the details of each matching proxy: per
//! type what was sent, accepted or rejected, and the proxy's error text.
//!
//! Exit status: 0 when no listed proxy has a NACKED type; 1 when one has,
//! or PROXY matches no connected proxy; 2 on a usage error, when the
//! control plane cannot be reached or answers with an error, or when
//! stdout cannot be written.

pub mod render;

use std::{
    fmt,
    io::Write,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use clap::ValueEnum;
use ringmesh_proto::mesh::v1::{
    mesh_status_client::MeshStatusClient, ListProxiesRequest, ListProxiesResponse, SyncState,
};
use tonic::{transport::Endpoint, Code};

use crate::{addr::HostPort, style::Style};

/// Exit status: a proxy rejected configuration, or PROXY matched none.
pub const EXIT_PROBLEM: u8 = 1;
/// Exit status: usage error, control plane unreachable or failing, or
/// stdout failing.
pub const EXIT_ERROR: u8 = 2;

/// Where `ringmesh-control` serves ADS and MeshStatus unless told.
pub const DEFAULT_CONTROL: &str = "127.0.0.1:15010";

pub(crate) const LONG_ABOUT: &str = "\
Show what every proxy connected to the control plane has accepted, like
`istioctl proxy-status`.

Asks ringmesh-control (its MeshStatus gRPC service, on the ADS port) for
every connected proxy and prints one row per proxy: its node id, cluster, and
for each resource type (CDS, LDS, EDS, RDS, and any other type a proxy asked
for) one of

  SYNCED    the proxy accepted the latest configuration sent
  STALE     configuration was sent and the proxy has not answered yet
  NACKED    the proxy rejected configuration; it keeps running the version
            it accepted before (see the details with PROXY)
  NOT SENT  nothing was sent yet (for instance, the proxy's configuration
            has not been computed yet)

followed by the version the proxy runs, abbreviated to 8 characters. With
PROXY (any part of a node id), only the matching proxies, each followed by
its details: per type the versions sent, accepted and rejected, when, what
it subscribed to, and the error text of its last rejection. Colour only on a
terminal, and never with NO_COLOR set.

Exit status: 0 when no listed proxy rejected configuration, 1 when one did
(or PROXY matches no connected proxy), 2 on a usage error or when the
control plane cannot be reached.";

pub(crate) const EXAMPLES: &str = "\
Examples:
  # Every proxy connected to the local control plane
  ringmesh proxy-status

  # One proxy (any part of its node id), with per-type details and errors
  ringmesh proxy-status reviews-v1

  # Another control plane; JSON for scripts
  ringmesh proxy-status --control 10.0.0.2:15010 -o json

  # In a script: fail when any proxy rejected its configuration
  ringmesh proxy-status >/dev/null || echo \"a proxy NACKed (or the control plane is down)\"";

/// How the status is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One row per proxy, one column per type (with PROXY: details too)
    Table,
    /// Everything the control plane said, as JSON
    Json,
    /// The same as YAML
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only proxies whose node id contains this text; shows their details
    #[arg(value_name = "PROXY")]
    pub proxy: Option<String>,

    /// The control plane's gRPC address (its ADS port)
    #[arg(long, default_value = DEFAULT_CONTROL, value_name = "HOST:PORT")]
    pub control: HostPort,

    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub output: Format,

    /// Give up on the control plane after this many seconds
    #[arg(long, default_value_t = 5, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

/// Why the status could not be read. Each message says what to check.
#[derive(Debug)]
pub enum FetchError {
    /// No connection (refused, unresolvable, timed out).
    Unreachable { control: HostPort, cause: String },
    /// Connected, but no answer in time.
    Timeout { control: HostPort, after: Duration },
    /// Something answers gRPC there, but not MeshStatus.
    NotRingmesh { control: HostPort },
    /// MeshStatus answered with an error.
    Rpc {
        control: HostPort,
        code: Code,
        message: String,
    },
    /// The async runtime could not start.
    Runtime(std::io::Error),
}

fn check_hint(control: &HostPort) -> String {
    format!(
        "Is ringmesh-control running, and is {control} its gRPC (ADS) address? Pass another \
         with --control HOST:PORT (default {DEFAULT_CONTROL})."
    )
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Unreachable { control, cause } => write!(
                f,
                "cannot reach the control plane at {control}: {cause}\n{}",
                check_hint(control)
            ),
            FetchError::Timeout { control, after } => write!(
                f,
                "no answer from the control plane at {control} within {}s\n{}",
                after.as_secs(),
                check_hint(control)
            ),
            FetchError::NotRingmesh { control } => write!(
                f,
                "{control} answers gRPC but does not serve ringmesh.mesh.v1.MeshStatus: it is not \
                 ringmesh-control (or an older one).\n{}",
                check_hint(control)
            ),
            FetchError::Rpc {
                control,
                code,
                message,
            } => write!(
                f,
                "the control plane at {control} failed to list its proxies: {code:?}: {message}\n{}",
                check_hint(control)
            ),
            FetchError::Runtime(e) => write!(f, "cannot start the async runtime: {e}"),
        }
    }
}

/// The innermost cause of an error: for a refused connection, the OS
/// error rather than tonic's "transport error".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn status_error(control: &HostPort, status: tonic::Status, timeout: Duration) -> FetchError {
    match status.code() {
        Code::Unimplemented => FetchError::NotRingmesh {
            control: control.clone(),
        },
        // tonic's own deadline (Endpoint::timeout).
        Code::Cancelled if status.message().contains("Timeout") => FetchError::Timeout {
            control: control.clone(),
            after: timeout,
        },
        Code::Unavailable | Code::Unknown | Code::Internal
            if std::error::Error::source(&status).is_some() =>
        {
            FetchError::Unreachable {
                control: control.clone(),
                cause: root_cause(&status),
            }
        }
        code => FetchError::Rpc {
            control: control.clone(),
            code,
            message: status.message().to_owned(),
        },
    }
}

/// One `ListProxies` call to `control`, filtered by node id substring.
pub fn fetch(
    control: &HostPort,
    node_id_contains: &str,
    timeout: Duration,
) -> Result<ListProxiesResponse, FetchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(FetchError::Runtime)?;
    let call = async {
        let endpoint = Endpoint::from_shared(format!("http://{control}"))
            .map_err(|e| FetchError::Unreachable {
                control: control.clone(),
                cause: e.to_string(),
            })?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| FetchError::Unreachable {
                control: control.clone(),
                cause: root_cause(&e),
            })?;
        MeshStatusClient::new(channel)
            .list_proxies(ListProxiesRequest {
                node_id_contains: node_id_contains.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| status_error(control, s, timeout))
    };
    rt.block_on(async {
        // A bound on the whole exchange, whatever stage hangs.
        tokio::time::timeout(timeout + Duration::from_secs(1), call)
            .await
            .unwrap_or_else(|_| {
                Err(FetchError::Timeout {
                    control: control.clone(),
                    after: timeout,
                })
            })
    })
}

/// Whether any proxy in `resp` currently runs with rejected configuration.
pub fn any_nacked(resp: &ListProxiesResponse) -> bool {
    resp.proxies
        .iter()
        .flat_map(|p| &p.types)
        .any(|t| t.state() == SyncState::Nacked)
}

/// The `proxy-status` command, start to finish.
pub fn main(args: &Args) -> ExitCode {
    let style = Style::for_stdout();
    let filter = args.proxy.as_deref().unwrap_or("");
    let mut resp = match fetch(&args.control, filter, Duration::from_secs(args.timeout)) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    render::sort(&mut resp);
    let text = match args.output {
        // Nothing matched PROXY: only the error below.
        Format::Table if args.proxy.is_some() && resp.proxies.is_empty() => String::new(),
        Format::Table => {
            let mut t = render::table(&resp, style);
            if args.proxy.is_some() {
                let now = SystemTime::now();
                for p in &resp.proxies {
                    t.push('\n');
                    t.push_str(&render::details(p, &resp, now, style));
                }
            }
            t
        }
        Format::Json => render::json(&resp, &args.control),
        Format::Yaml => render::yaml(&resp, &args.control),
    };
    let mut status = if any_nacked(&resp) { EXIT_PROBLEM } else { 0 };
    if let Some(p) = &args.proxy {
        if resp.proxies.is_empty() {
            let _ = writeln!(
                std::io::stderr(),
                "error: no proxy connected to {} has a node id containing {p:?}; \
                 `ringmesh proxy-status --control {}` lists them all",
                args.control,
                args.control
            );
            status = EXIT_PROBLEM;
        }
    }
    crate::finish(std::io::stdout().write_all(text.as_bytes()), status)
}
