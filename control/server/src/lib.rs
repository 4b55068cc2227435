//! `ringmesh-control`: the control plane as one process. It wires the
//! pieces that live in their own crates — the registry
//! (`ringmesh-registry`, file mode), the translation of Istio resources
//! into Envoy xDS (`ringmesh-translate`) and the ADS server core
//! (`ringmesh-xds`) — and serves Delta and state-of-the-world ADS on one
//! gRPC port, beside the mesh status API and the CA's certificate
//! signing service (`ringmesh-ca`, `ringmesh.ca.v1.CertificateService`).
//!
//! ```text
//!  FileRegistry ──watch<MeshState>──▶ Controller ──translate(state, scope)──▶ Debouncer ──▶ XdsServer
//!                                        ▲                                                   │
//!                                        └────── scope_requests (a proxy of a new scope) ────┘
//! ```
//!
//! Scopes are computed on demand: a proxy's node (`ProxyNode`) decides its
//! scope, and the controller computes a scope when its first proxy
//! connects and again whenever the mesh state changes, for as long as any
//! proxy of it is connected. A first computation is published at once
//! (the proxy is waiting); recomputations after a change go through the
//! debouncer.
//!
//! The CA lives in `--data-dir` (generated root or plug-in `cacerts`,
//! plus the bootstrap-token key); its trust bundle goes into every
//! proxy's `ROOTCA` secret through the translation options.
//! `ringmesh-control token` mints the bootstrap tokens of file mode.
//!
//! Restart safety: the registry loads the whole directory before the
//! gRPC port opens, and a scope is only ever published from a complete
//! state, so a proxy reconnecting to a restarted control plane is never
//! rolled back to a partial configuration.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use ringmesh_ca::{ca_service, Authenticator, CaOptions, CaStore, ServiceOptions, TokenAuthority};
use ringmesh_istio::{Diagnostic, Severity};
use ringmesh_registry::{FileOptions, FileRegistry, MeshState, Registry};
use ringmesh_translate::{Options as TranslateOptions, ProxyNode, Translator};
use ringmesh_xds::{DebounceConfig, Debouncer, ScopeKey, XdsServer};
use tokio::sync::watch;
use tracing::{error, info, warn};

#[cfg(feature = "kubernetes")]
mod kube;
pub mod token;
pub mod webhook;

const AFTER_HELP: &str = "\
Examples:
  ringmesh-control --config-dir mesh/
  ringmesh-control --config-dir mesh/ --xds-address 0.0.0.0:15010 --data-dir /var/lib/ringmesh
  ringmesh-control token --data-dir /var/lib/ringmesh --namespace default --service-account reviews
  ringmesh-control --kubernetes                      # in a cluster: in-cluster service account
  ringmesh-control --kubernetes --kube-api http://127.0.0.1:8001   # behind `kubectl proxy`

The directory holds registry objects (Service, Workload) and Istio resources as YAML;
edits are picked up within a second. Point proxies (or Envoy, with
ads_config api_type DELTA_GRPC) at the xDS address; they get their certificates from
the CA on the same address with a bootstrap token (`ringmesh-control token`).
Logging: RUST_LOG (default info).";

/// The command line: serve (the default), or a subcommand.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "ringmesh-control",
    version,
    about = "The Ringmesh control plane: Istio resources in, delta xDS and workload certificates out.",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: Args,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Print a bootstrap token proving a workload identity to the CA (file mode)
    #[command(after_help = token::AFTER_HELP)]
    Token(token::TokenArgs),
}

/// Flags of the server.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Directory of YAML files: registry Services and Workloads and Istio resources.
    #[arg(long, value_name = "DIR", required_unless_present = "kubernetes")]
    pub config_dir: Option<PathBuf>,
    /// Read Services, EndpointSlices, Pods and the Istio resources from the Kubernetes
    /// API instead of a directory (the API server of --kube-api, else KUBECONFIG or the
    /// in-cluster service account); the CA then also accepts service-account tokens,
    /// checked with TokenReview.
    #[cfg(feature = "kubernetes")]
    #[arg(long, conflicts_with = "config_dir")]
    pub kubernetes: bool,
    /// Kubernetes API server URL (e.g. `http://127.0.0.1:8001` behind `kubectl proxy`).
    #[cfg(feature = "kubernetes")]
    #[arg(long, value_name = "URL", requires = "kubernetes")]
    pub kube_api: Option<String>,
    /// Audience a service-account token must be bound to for the CA (Kubernetes mode).
    #[cfg(feature = "kubernetes")]
    #[arg(long, default_value = "ringmesh-ca", value_name = "AUD")]
    pub token_audience: String,
    /// Address of the gRPC server (ADS, mesh status, certificate signing).
    #[arg(long, default_value = "127.0.0.1:15010", value_name = "IP:PORT")]
    pub xds_address: SocketAddr,
    /// How often the directory is checked for changes.
    #[arg(long, default_value = "250ms", value_parser = duration)]
    pub poll_interval: Duration,
    /// Publish once changes pause for this long.
    #[arg(long, default_value = "100ms", value_parser = duration)]
    pub debounce_quiet: Duration,
    /// ... but at the latest this long after the first change.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub debounce_max: Duration,
    /// Kubernetes cluster domain of service hostnames.
    #[arg(long, default_value = "cluster.local")]
    pub domain_suffix: String,
    /// SPIFFE trust domain of workload identities.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// The CA's directory: its root (generated on first start) or a plug-in CA in Istio's
    /// `cacerts` layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem), extra
    /// roots in trust-bundle.pem, and the bootstrap-token key.
    #[arg(long, default_value = "ringmesh-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Lifetime of a workload certificate when the proxy asks for none.
    #[arg(long, default_value = "24h", value_parser = duration)]
    pub cert_ttl: Duration,
    /// Longest lifetime ever issued; longer requests are capped.
    #[arg(long, default_value = "2160h", value_parser = duration)]
    pub max_cert_ttl: Duration,
    /// Worker threads of the runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// The sidecar-injection webhook (off by default).
    #[command(flatten, next_help_heading = "Sidecar injection webhook")]
    pub webhook: webhook::WebhookArgs,
}

fn duration(s: &str) -> Result<Duration, String> {
    ringmesh_istio::parse_duration(s)
}

/// The CA of `args`: its directory opened (a root generated on first
/// start), and the bootstrap-token key beside it.
pub fn open_ca(args: &Args) -> Result<(Arc<CaStore>, Arc<TokenAuthority>), String> {
    let mut options = CaOptions::new(args.trust_domain.clone());
    options.default_ttl = args.cert_ttl;
    options.max_ttl = args.max_cert_ttl;
    let dir = &args.data_dir;
    let store = CaStore::open(dir, options).map_err(|e| {
        format!(
            "cannot open the CA in {}: {e} (fix or remove the file, or choose another --data-dir)",
            dir.display()
        )
    })?;
    let tokens =
        TokenAuthority::open(dir).map_err(|e| format!("cannot open the token key: {e}"))?;
    Ok((Arc::new(store), Arc::new(tokens)))
}

/// Run until SIGTERM/SIGINT. Returns the process exit code.
pub async fn run(args: Args) -> i32 {
    let (ca, tokens) = match open_ca(&args) {
        Ok(ca) => ca,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    info!(
        mode = ?ca.mode(),
        dir = %args.data_dir.display(),
        trust_domain = ca.trust_domain(),
        roots = ca.trust_bundle().len(),
        "CA ready"
    );
    let authenticator: Arc<dyn Authenticator> = tokens.clone();
    #[cfg(feature = "kubernetes")]
    let (registry, authenticator, source): (Box<dyn Registry>, _, String) = if args.kubernetes {
        match kube::start(&args, tokens.clone()).await {
            Ok((registry, auth, source)) => (Box::new(registry), auth, source),
            Err(e) => {
                error!("{e}");
                return 1;
            }
        }
    } else {
        match file_registry(&args).await {
            Ok((registry, source)) => (Box::new(registry), authenticator, source),
            Err(code) => return code,
        }
    };
    #[cfg(not(feature = "kubernetes"))]
    let (registry, authenticator, source): (Box<dyn Registry>, _, String) =
        match file_registry(&args).await {
            Ok((registry, source)) => (Box::new(registry), authenticator, source),
            Err(code) => return code,
        };
    let listener = match tokio::net::TcpListener::bind(args.xds_address).await {
        Ok(l) => l,
        Err(e) => {
            error!(
                "cannot listen on {} for xDS: {e} (is another control plane running? choose \
                 another --xds-address)",
                args.xds_address
            );
            return 1;
        }
    };
    let local = listener.local_addr().unwrap_or(args.xds_address);
    // The injection webhook (off unless --webhook-address).
    match webhook::start(
        &args.webhook,
        ca.clone(),
        local,
        &args.trust_domain,
        &args.domain_suffix,
    )
    .await
    {
        Ok(Some(address)) => println!("WEBHOOK LISTENING {address}"),
        Ok(None) => {}
        Err(e) => {
            error!("{e}");
            return 1;
        }
    }

    let server = XdsServer::builder()
        .scope_by(|node| ProxyNode::from_node(node).scope_key())
        .build();
    let controller = Controller {
        server: server.clone(),
        debouncer: Debouncer::spawn(
            server.clone(),
            DebounceConfig {
                quiet: args.debounce_quiet,
                max_delay: args.debounce_max,
            },
        ),
        options: TranslateOptions {
            domain_suffix: args.domain_suffix.clone(),
            trust_domain: args.trust_domain.clone(),
            trust_bundle_pem: ca.trust_bundle().to_pem(),
        },
    };
    tokio::spawn(controller.run(registry.watch(), server.scope_requests()));

    // Printed on stdout for scripts and tests waiting for the port.
    println!("LISTENING {local}");
    info!(address = %local, registry = %source, "serving xDS and the CA");

    let shutdown = async {
        shutdown_signal().await;
        info!("shutting down");
    };
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(server.service());
    routes.add_service(
        ringmesh_xds::StatusService::new(server.clone())
            .with_control_plane(
                format!("ringmesh-control@{local}"),
                env!("CARGO_PKG_VERSION").to_string(),
            )
            .into_server(),
    );
    routes.add_service(ca_service(ca, authenticator, ServiceOptions::default()));
    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_nodelay(true)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async {
                shutdown.await;
                server.close_streams();
            },
        )
        .await;
    match result {
        Ok(()) => 0,
        Err(e) => {
            error!("gRPC server failed: {e}");
            1
        }
    }
}

/// The file-mode registry of `--config-dir`, and what to log as the source.
async fn file_registry(args: &Args) -> Result<(FileRegistry, String), i32> {
    let Some(config_dir) = args.config_dir.clone() else {
        error!("--config-dir is required");
        return Err(2);
    };
    let options = FileOptions {
        poll_interval: args.poll_interval,
        domain_suffix: args.domain_suffix.clone(),
        ..FileOptions::default()
    };
    match FileRegistry::start(config_dir.clone(), options).await {
        Ok(r) => Ok((r, config_dir.display().to_string())),
        Err(e) => {
            error!("cannot read the mesh configuration: {e}");
            Err(1)
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Keeps every active scope's published resources equal to the
/// translation of the current mesh state.
struct Controller {
    server: XdsServer,
    debouncer: Debouncer,
    options: TranslateOptions,
}

impl Controller {
    async fn run(
        self,
        mut states: watch::Receiver<Arc<MeshState>>,
        mut requests: watch::Receiver<u64>,
    ) {
        // Scope → the state version it was last computed from.
        let mut computed: BTreeMap<ScopeKey, String> = BTreeMap::new();
        let mut reported: Vec<Diagnostic> = Vec::new();
        let state = states.borrow_and_update().clone();
        report(&state, &mut reported);
        let mut translator = Translator::new(state, self.options.clone());
        loop {
            // New proxies first: they are waiting for their first answer.
            let version = translator.state().version.clone();
            let waiting: Vec<ScopeKey> = self
                .server
                .waiting_scopes()
                .into_iter()
                .filter(|scope| computed.get(scope) != Some(&version))
                .collect();
            if !waiting.is_empty() {
                for scope in &waiting {
                    computed.insert(scope.clone(), version.clone());
                }
                self.compute(&mut translator, waiting, false);
            }
            tokio::select! {
                changed = states.changed() => {
                    if changed.is_err() {
                        warn!("the registry stopped; serving the last state");
                        // Keep answering new proxies from the last state.
                        while requests.changed().await.is_ok() {
                            let waiting = self.server.waiting_scopes();
                            self.compute(&mut translator, waiting, false);
                        }
                        return;
                    }
                    let state = states.borrow_and_update().clone();
                    report(&state, &mut reported);
                    let started = std::time::Instant::now();
                    translator = translator.next(state);
                    let active = self.server.retain_active_scopes();
                    computed.clear();
                    for scope in &active {
                        computed.insert(scope.clone(), translator.state().version.clone());
                    }
                    let classes = self.compute(&mut translator, active, true);
                    info!(
                        version = %translator.state().version,
                        scopes = computed.len(),
                        classes,
                        took_ms = started.elapsed().as_millis() as u64,
                        "mesh state changed"
                    );
                }
                changed = requests.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Translate `scopes` against the translator's state: once per class
    /// of equivalent proxies ([`Translator::class_key`]), one shared
    /// snapshot per class. Returns the number of classes.
    fn compute(&self, translator: &mut Translator, scopes: Vec<ScopeKey>, debounce: bool) -> usize {
        // CPU-bound: let the runtime move other tasks off this worker.
        let work = || {
            let mut classes: BTreeMap<String, (ProxyNode, Vec<ScopeKey>)> = BTreeMap::new();
            for scope in scopes {
                let Some(node) = ProxyNode::from_scope_key(&scope) else {
                    // Only scope keys made by `ProxyNode::scope_key` exist.
                    error!(%scope, "unreadable scope key; not computing it");
                    continue;
                };
                classes
                    .entry(translator.class_key(&node))
                    .or_insert_with(|| (node, Vec::new()))
                    .1
                    .push(scope);
            }
            let n = classes.len();
            for (_, (node, scopes)) in classes {
                let resources = translator.translate(&node);
                if debounce {
                    self.debouncer.publish_group(scopes, resources);
                } else {
                    self.server.publish_group(&scopes, resources);
                }
            }
            n
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
            _ => work(),
        }
    }
}

/// Log the findings of a new state that were not in the previous one.
fn report(state: &MeshState, reported: &mut Vec<Diagnostic>) {
    for d in &state.diagnostics {
        if reported.contains(d) {
            continue;
        }
        match d.severity {
            Severity::Error => error!("{d}"),
            Severity::Warning => warn!("{d}"),
            Severity::Info => info!("{d}"),
        }
    }
    *reported = state.diagnostics.clone();
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn serving_is_the_default_and_token_a_subcommand() {
        let cli = Cli::try_parse_from(["ringmesh-control", "--config-dir", "mesh"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.config_dir, Some(PathBuf::from("mesh")));
        assert_eq!(cli.serve.data_dir, PathBuf::from("ringmesh-data"));
        assert_eq!(cli.serve.cert_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(cli.serve.max_cert_ttl, Duration::from_secs(90 * 24 * 3600));

        let cli = Cli::try_parse_from([
            "ringmesh-control",
            "token",
            "-n",
            "shop",
            "-s",
            "cart",
            "--ttl",
            "90m",
        ])
        .unwrap();
        let Some(Command::Token(t)) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(
            (t.namespace.as_str(), t.service_account.as_str(), t.ttl),
            ("shop", "cart", Duration::from_secs(5400))
        );
        // Serving needs the directory; the subcommand takes no server flags.
        assert!(Cli::try_parse_from(["ringmesh-control"]).is_err());
        assert!(Cli::try_parse_from([
            "ringmesh-control",
            "--config-dir",
            "mesh",
            "token",
            "-n",
            "a",
            "-s",
            "b"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["ringmesh-control", "token", "-n", "a"]).is_err());
    }

    #[test]
    fn the_ca_is_created_on_first_start_and_reopened_after() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let args = Cli::try_parse_from([
            "ringmesh-control",
            "--config-dir",
            "mesh",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .unwrap()
        .serve;
        let (first, _) = open_ca(&args).unwrap();
        assert_eq!(first.mode(), ringmesh_ca::CaMode::GeneratedRoot);
        assert!(data.join("token-key").exists());
        let (again, _) = open_ca(&args).unwrap();
        assert_eq!(again.mode(), ringmesh_ca::CaMode::LoadedRoot);
        assert_eq!(first.trust_bundle().to_pem(), again.trust_bundle().to_pem());
        // A damaged root is an error naming the file and what to do.
        std::fs::write(data.join("root-cert.pem"), "not a certificate").unwrap();
        let e = open_ca(&args).err().unwrap();
        assert!(
            e.starts_with(&format!("cannot open the CA in {}: ", data.display())),
            "{e}"
        );
        assert!(e.contains("root-cert.pem"), "{e}");
    }
}
