//! `ringmesh inject -f FILE`: sidecar injection offline, like `istioctl
//! kube-inject`. Every object with a pod template (Pod, Deployment,
//! StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job,
//! CronJob; `List` items) is injected exactly as the control plane's
//! admission webhook injects pods (`ringmesh-inject`); other documents are
//! copied byte for byte, and already-injected objects are left alone, so
//! running it twice changes nothing.
//!
//! Exit status: 0 on success (also when nothing was injected), 1 when the
//! input cannot be read or injected (bad YAML, a malformed object, an
//! unusable annotation), 2 on a usage error or when the output cannot be
//! written.

use std::{
    io::{Read, Write},
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
};

use ringmesh_inject::{inject_yaml, Decision, Settings};

pub(crate) const LONG_ABOUT: &str = "\
Inject the Ringmesh sidecar into Kubernetes YAML offline, like `istioctl
kube-inject`: the same result as the control plane's admission webhook.

Objects with a pod template (Pod, Deployment, StatefulSet, DaemonSet,
ReplicaSet, ReplicationController, Job, CronJob, and the items of a List)
get the init container ringmesh-init (interception rules, NET_ADMIN and
NET_RAW only) and the sidecar ringmesh-proxy — as a native sidecar (an
init container with restartPolicy Always, Kubernetes >= 1.29) unless
--native-sidecar false or the pod's annotation sidecar.istio.io/nativeSidecar
says otherwise. Pods opting out (sidecar.istio.io/inject: \"false\", as a
label or an annotation), hostNetwork pods and pods already injected are
left alone; every other document is copied unchanged, byte for byte, so
injecting the output again is a no-op.

The pod's traffic.sidecar.istio.io/* annotations (excludeOutboundPorts,
excludeInboundPorts, includeInboundPorts, excludeOutboundIPRanges,
includeOutboundIPRanges) become ringmesh-init's flags; a value it would
refuse is an error here. What happened to each object is printed on
stderr.

The proxy does not resolve host names: --control-plane-address is the
control plane Service's cluster IP and port (xDS and the CA).";

pub(crate) const EXAMPLES: &str = "\
Examples:
  # Inject a Deployment, print the result
  ringmesh inject -f deployment.yaml --control-plane-address 10.96.0.20:15010

  # Into a file; the control plane address from the cluster
  ringmesh inject -f app.yaml -o app-injected.yaml \\
      --control-plane-address \"$(kubectl -n ringmesh-system get svc ringmesh-control -o jsonpath='{.spec.clusterIP}'):15010\"

  # From a pipe, straight to the cluster
  kubectl kustomize overlays/prod | ringmesh inject -f - --control-plane-address 10.96.0.20:15010 | kubectl apply -f -

  # Classic layout (sidecar as a regular container) for clusters older than 1.29
  ringmesh inject -f deployment.yaml --native-sidecar false --control-plane-address 10.96.0.20:15010";

/// Exit status: input that cannot be read or injected.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the output cannot be written.
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// YAML file to inject (`-` for stdin); multi-document streams are fine.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: PathBuf,
    /// Write the result here instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Namespace of objects that name none (the proxy's identity and node id use it).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The control plane's IP:PORT as the pods reach it (ADS and the CA): the Service's
    /// cluster IP; the proxy does not resolve names.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:15010")]
    pub control_plane_address: SocketAddr,
    /// Image of the sidecar.
    #[arg(long, value_name = "IMAGE", default_value_t = Settings::default().proxy_image)]
    pub proxy_image: String,
    /// Image of the init container (ringmesh-init).
    #[arg(long, value_name = "IMAGE", default_value_t = Settings::default().init_image)]
    pub init_image: String,
    /// imagePullPolicy of the injected containers (Always, IfNotPresent, Never).
    #[arg(long, value_name = "POLICY")]
    pub image_pull_policy: Option<String>,
    /// SPIFFE trust domain of the workload identities.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Kubernetes cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub domain_suffix: String,
    /// Audience of the projected service-account token the proxy presents to the CA.
    #[arg(long, value_name = "AUD", default_value = "ringmesh-ca")]
    pub token_audience: String,
    /// Native sidecar (init container with restartPolicy Always); false: a regular
    /// container, first (clusters older than 1.29).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub native_sidecar: bool,
    /// Localhost seccomp profile of the proxy, relative to kubelet's seccomp directory
    /// (e.g. ringmesh/ringmesh-proxy.json, allowing io_uring); default RuntimeDefault.
    #[arg(long, value_name = "PATH")]
    pub seccomp_profile: Option<String>,
    /// Outbound ports never captured (comma-separated), in every injected pod.
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    pub exclude_outbound_ports: Vec<u16>,
    /// Inbound ports never captured besides the proxy's own, in every injected pod.
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    pub exclude_inbound_ports: Vec<u16>,
}

impl Args {
    fn settings(&self) -> Settings {
        Settings {
            proxy_image: self.proxy_image.clone(),
            init_image: self.init_image.clone(),
            image_pull_policy: self.image_pull_policy.clone(),
            control_plane_address: self.control_plane_address.to_string(),
            trust_domain: self.trust_domain.clone(),
            domain_suffix: self.domain_suffix.clone(),
            token_audience: self.token_audience.clone(),
            exclude_outbound_ports: self.exclude_outbound_ports.clone(),
            exclude_inbound_ports: self.exclude_inbound_ports.clone(),
            native_sidecar: self.native_sidecar,
            seccomp_localhost_profile: self.seccomp_profile.clone(),
            ..Settings::default()
        }
    }
}

pub fn main(args: &Args) -> ExitCode {
    let mut err = std::io::stderr().lock();
    let label = if args.filename.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        args.filename.display().to_string()
    };
    let mut bytes = Vec::new();
    let read = if args.filename.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(&args.filename).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    if let Err(e) = read {
        let _ = writeln!(err, "error: cannot read {label}: {e}");
        return ExitCode::from(EXIT_FAILED);
    }
    let Ok(text) = String::from_utf8(bytes) else {
        let _ = writeln!(err, "error: {label}: not UTF-8 text");
        return ExitCode::from(EXIT_FAILED);
    };
    let (out, reports) = match inject_yaml(&text, &args.namespace, &args.settings()) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: {label}: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut injected = 0;
    for report in &reports {
        for o in &report.objects {
            let _ = match &o.decision {
                Decision::Inject => {
                    injected += 1;
                    writeln!(
                        err,
                        "injected    {} (document {})",
                        o.object, report.document
                    )
                }
                Decision::Skip(why) => writeln!(
                    err,
                    "unchanged   {} (document {}): {why}",
                    o.object, report.document
                ),
            };
        }
    }
    if injected > 0 && args.control_plane_address.ip().is_loopback() {
        let _ = writeln!(
            err,
            "note: the proxies will look for the control plane at {} (the default); pass \
             --control-plane-address with the ringmesh-control Service's cluster IP",
            args.control_plane_address
        );
    }
    let written = match &args.output {
        Some(path) => std::fs::write(path, out.as_bytes()).map_err(|e| {
            let _ = writeln!(err, "error: cannot write {}: {e}", path.display());
            e
        }),
        None => std::io::stdout().lock().write_all(out.as_bytes()),
    };
    if args.output.is_some() && written.is_err() {
        return ExitCode::from(EXIT_ERROR);
    }
    crate::finish(written, 0)
}
