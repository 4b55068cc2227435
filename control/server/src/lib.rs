//! `ringmesh-control`: the control plane as one process. It wires the
//! pieces that live in their own crates — the registry
//! (`ringmesh-registry`, file mode), the translation of Istio resources
//! into Envoy xDS (`ringmesh-translate`) and the ADS server core
//! (`ringmesh-xds`) — and serves Delta and state-of-the-world ADS on one
//! gRPC port.
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
//! Restart safety: the registry loads the whole directory before the
//! gRPC port opens, and a scope is only ever published from a complete
//! state, so a proxy reconnecting to a restarted control plane is never
//! rolled back to a partial configuration.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use ringmesh_istio::{Diagnostic, Severity};
use ringmesh_registry::{FileOptions, FileRegistry, MeshState, Registry};
use ringmesh_translate::{translate, Options as TranslateOptions, ProxyNode};
use ringmesh_xds::{DebounceConfig, Debouncer, ScopeKey, XdsServer};
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Command-line flags.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "ringmesh-control",
    version,
    about = "The Ringmesh control plane: Istio resources in, delta xDS out.",
    after_help = "Examples:\n  ringmesh-control --config-dir mesh/\n  ringmesh-control --config-dir mesh/ --xds-address 0.0.0.0:15010\n\nThe directory holds registry objects (Service, Workload) and Istio resources as YAML;\nedits are picked up within a second. Point proxies (or Envoy, with\nads_config api_type DELTA_GRPC) at the xDS address. Logging: RUST_LOG (default info)."
)]
pub struct Args {
    /// Directory of YAML files: registry Services and Workloads and Istio resources.
    #[arg(long, value_name = "DIR")]
    pub config_dir: PathBuf,
    /// Address of the gRPC server (ADS, mesh status).
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
    /// Worker threads of the runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

fn duration(s: &str) -> Result<Duration, String> {
    ringmesh_istio::parse_duration(s)
}

/// Run until SIGTERM/SIGINT. Returns the process exit code.
pub async fn run(args: Args) -> i32 {
    let registry = match FileRegistry::start(
        args.config_dir.clone(),
        FileOptions {
            poll_interval: args.poll_interval,
            domain_suffix: args.domain_suffix.clone(),
            ..FileOptions::default()
        },
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot read the mesh configuration: {e}");
            return 1;
        }
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
        },
    };
    tokio::spawn(controller.run(registry.watch(), server.scope_requests()));

    // Printed on stdout for scripts and tests waiting for the port.
    println!("LISTENING {local}");
    info!(address = %local, dir = %args.config_dir.display(), "serving xDS");

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
        let mut state = states.borrow_and_update().clone();
        report(&state, &mut reported);
        loop {
            // New proxies first: they are waiting for their first answer.
            for scope in self.server.waiting_scopes() {
                if computed.get(&scope) != Some(&state.version) {
                    self.compute(&state, &scope, false);
                    computed.insert(scope, state.version.clone());
                }
            }
            tokio::select! {
                changed = states.changed() => {
                    if changed.is_err() {
                        warn!("the registry stopped; serving the last state");
                        // Keep answering new proxies from the last state.
                        while requests.changed().await.is_ok() {
                            for scope in self.server.waiting_scopes() {
                                self.compute(&state, &scope, false);
                            }
                        }
                        return;
                    }
                    state = states.borrow_and_update().clone();
                    report(&state, &mut reported);
                    let active = self.server.retain_active_scopes();
                    computed.retain(|k, _| active.contains(k));
                    for scope in active {
                        self.compute(&state, &scope, true);
                        computed.insert(scope, state.version.clone());
                    }
                    info!(version = %state.version, scopes = computed.len(), "mesh state changed");
                }
                changed = requests.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn compute(&self, state: &MeshState, scope: &ScopeKey, debounce: bool) {
        let Some(node) = ProxyNode::from_scope_key(scope) else {
            // Only scope keys made by `ProxyNode::scope_key` exist.
            error!(%scope, "unreadable scope key; not computing it");
            return;
        };
        let resources = translate(state, &node, &self.options);
        if debounce {
            self.debouncer.publish(scope.clone(), resources);
        } else {
            self.server.publish(scope.clone(), resources);
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
