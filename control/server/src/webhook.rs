//! The sidecar-injection admission webhook: HTTPS, `POST /inject`,
//! AdmissionReview v1 in, AdmissionReview v1 out with a base64 JSON Patch
//! (`ringmesh-inject` computes it). Off unless `--webhook-address` is set.
//!
//! Serving certificate: issued at start by the control plane's own CA for
//! `--webhook-dns-name` (default `ringmesh-control.ringmesh-system.svc`,
//! the name the API server calls), renewed in place half-way through its
//! life; the MutatingWebhookConfiguration's `caBundle` is the CA's root
//! (`root-cert.pem`). `--webhook-cert`/`--webhook-key` load a provided
//! pair instead (e.g. from cert-manager; read once at start).
//!
//! Answers, and how they meet the configuration's `failurePolicy: Fail`
//! (as Istio's injector):
//!
//! | request | answer |
//! | --- | --- |
//! | not `POST /inject` | 404 / 405 |
//! | body not JSON, not an AdmissionReview v1, no `request.uid`, too large | HTTP 400 / 413 with the reason: the API server applies the failure policy (with `Fail` the pod is refused and the error shows our message) |
//! | not a Pod CREATE | `allowed: true`, no patch |
//! | pod skipped (opt-out, hostNetwork, already injected, ...) | `allowed: true`, no patch |
//! | pod injected | `allowed: true`, `patchType: JSONPatch`, `patch` |
//! | pod with an unusable annotation or malformed spec | `allowed: false`, code 400, the reason (the user fixes the annotation; a silently un-meshed pod would be worse) |
//!
//! `GET /healthz` answers 200 (readiness probe). The server never panics
//! on input; each connection is bounded in time and body size, and the
//! number of connections is bounded.

use std::{convert::Infallible, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use ringmesh_ca::CaStore;
use ringmesh_inject::{Decision, Resources, Settings};
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

/// Largest AdmissionReview accepted (a pod is at most ~1.5 MiB in etcd).
const MAX_BODY: usize = 4 << 20;
/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 256;
/// TLS handshake and request-head deadline.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of a CA-issued serving certificate (renewed at half).
const SERVING_CERT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The webhook's flags (part of `ringmesh-control`'s).
#[derive(clap::Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Serve the sidecar-injection webhook (HTTPS, POST /inject) here, e.g. 0.0.0.0:15017.
    /// Off when not given.
    #[arg(long, value_name = "IP:PORT")]
    pub webhook_address: Option<SocketAddr>,
    /// DNS name in the webhook's serving certificate (repeatable); the API server calls
    /// `<service>.<namespace>.svc`.
    #[arg(
        long,
        value_name = "NAME",
        default_values_t = ["ringmesh-control.ringmesh-system.svc".to_string()]
    )]
    pub webhook_dns_name: Vec<String>,
    /// PEM certificate chain to serve instead of one issued by the mesh CA (with --webhook-key).
    #[arg(long, value_name = "FILE", requires = "webhook_key")]
    pub webhook_cert: Option<PathBuf>,
    /// PEM private key of --webhook-cert.
    #[arg(long, value_name = "FILE", requires = "webhook_cert")]
    pub webhook_key: Option<PathBuf>,
    /// Image of the injected sidecar.
    #[arg(long, value_name = "IMAGE", default_value_t = Settings::default().proxy_image)]
    pub inject_proxy_image: String,
    /// Image of the injected init container (ringmesh-init).
    #[arg(long, value_name = "IMAGE", default_value_t = Settings::default().init_image)]
    pub inject_init_image: String,
    /// imagePullPolicy of the injected containers (Always, IfNotPresent, Never).
    #[arg(long, value_name = "POLICY")]
    pub inject_image_pull_policy: Option<String>,
    /// The control plane's IP:PORT as injected proxies reach it (xDS and the CA); the proxy
    /// does not resolve names: use the Service's cluster IP. Default: --xds-address when it
    /// is not a wildcard.
    #[arg(long, value_name = "IP:PORT")]
    pub inject_control_plane_address: Option<SocketAddr>,
    /// Audience of the service-account token projected into injected pods for the CA.
    #[arg(long, value_name = "AUD", default_value = "ringmesh-ca")]
    pub inject_token_audience: String,
    /// Inject the proxy as a native sidecar (init container with restartPolicy Always,
    /// Kubernetes >= 1.29); `false`: a regular container, first. Pods override it with
    /// the annotation sidecar.istio.io/nativeSidecar.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub inject_native_sidecar: bool,
    /// Localhost seccomp profile of the proxy (relative to kubelet's seccomp directory,
    /// e.g. ringmesh/ringmesh-proxy.json, which allows io_uring); default RuntimeDefault.
    #[arg(long, value_name = "PATH")]
    pub inject_seccomp_profile: Option<String>,
    /// Outbound ports never captured in any injected pod (comma-separated).
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    pub inject_exclude_outbound_ports: Vec<u16>,
    /// Inbound ports never captured in any injected pod, besides the proxy's own.
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    pub inject_exclude_inbound_ports: Vec<u16>,
    /// CPU request of the injected proxy.
    #[arg(long, value_name = "QUANTITY", default_value = "100m")]
    pub inject_proxy_cpu: String,
    /// Memory request of the injected proxy.
    #[arg(long, value_name = "QUANTITY", default_value = "128Mi")]
    pub inject_proxy_memory: String,
    /// CPU limit of the injected proxy (empty: none).
    #[arg(long, value_name = "QUANTITY", default_value = "2")]
    pub inject_proxy_cpu_limit: String,
    /// Memory limit of the injected proxy (empty: none).
    #[arg(long, value_name = "QUANTITY", default_value = "1Gi")]
    pub inject_proxy_memory_limit: String,
}

impl WebhookArgs {
    /// The injection settings these flags describe.
    pub fn settings(
        &self,
        xds_address: SocketAddr,
        trust_domain: &str,
        domain_suffix: &str,
    ) -> Result<Settings, String> {
        let control = match self.inject_control_plane_address {
            Some(a) => a,
            None if !xds_address.ip().is_unspecified() => xds_address,
            None => {
                return Err(format!(
                    "--xds-address {xds_address} is a wildcard: give the address injected \
                     proxies reach the control plane at with --inject-control-plane-address \
                     (in Kubernetes the Service's cluster IP, e.g. \
                     $(RINGMESH_CONTROL_SERVICE_HOST):15010)"
                ))
            }
        };
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let defaults = Settings::default();
        let settings = Settings {
            proxy_image: self.inject_proxy_image.clone(),
            init_image: self.inject_init_image.clone(),
            image_pull_policy: self.inject_image_pull_policy.clone(),
            control_plane_address: control.to_string(),
            trust_domain: trust_domain.to_string(),
            domain_suffix: domain_suffix.to_string(),
            token_audience: self.inject_token_audience.clone(),
            exclude_outbound_ports: self.inject_exclude_outbound_ports.clone(),
            exclude_inbound_ports: self.inject_exclude_inbound_ports.clone(),
            native_sidecar: self.inject_native_sidecar,
            seccomp_localhost_profile: self.inject_seccomp_profile.clone(),
            ipv6: false,
            proxy_resources: Resources {
                cpu_request: self.inject_proxy_cpu.clone(),
                memory_request: self.inject_proxy_memory.clone(),
                cpu_limit: opt(&self.inject_proxy_cpu_limit),
                memory_limit: opt(&self.inject_proxy_memory_limit),
            },
            init_resources: defaults.init_resources,
        };
        settings.validate().map_err(|e| e.to_string())?;
        Ok(settings)
    }
}

/// The certificate served, swappable for renewal.
#[derive(Debug)]
struct CertSlot(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, String> {
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| format!("the serving key does not fit the certificate: {e}"))
}

fn issue(ca: &CaStore, names: &[String]) -> Result<(Arc<CertifiedKey>, Duration), String> {
    let cert = ca
        .issue_serving_cert(names, SERVING_CERT_TTL)
        .map_err(|e| format!("cannot issue the webhook's serving certificate: {e}"))?;
    let life = cert
        .not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Ok((certified_key(cert.chain, cert.key)?, life))
}

fn load_files(cert: &PathBuf, key: &PathBuf) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    certified_key(chain, key)
}

struct State {
    settings: Settings,
}

/// Binds and spawns the webhook server when `--webhook-address` is set;
/// returns the bound address (printed by the caller for scripts).
pub async fn start(
    args: &WebhookArgs,
    ca: Arc<CaStore>,
    xds_address: SocketAddr,
    trust_domain: &str,
    domain_suffix: &str,
) -> Result<Option<SocketAddr>, String> {
    let Some(address) = args.webhook_address else {
        return Ok(None);
    };
    let settings = args.settings(xds_address, trust_domain, domain_suffix)?;
    let slot = match (&args.webhook_cert, &args.webhook_key) {
        (Some(cert), Some(key)) => Arc::new(CertSlot(ArcSwap::new(load_files(cert, key)?))),
        _ => {
            let names = args.webhook_dns_name.clone();
            let (key, life) = issue(&ca, &names)?;
            let slot = Arc::new(CertSlot(ArcSwap::new(key)));
            tokio::spawn(renew(slot.clone(), ca, names, life));
            slot
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS configuration: {e}"))?
    .with_no_client_auth()
    .with_cert_resolver(slot);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        format!(
            "cannot listen on {address} for the webhook: {e} (choose another --webhook-address)"
        )
    })?;
    let local = listener.local_addr().unwrap_or(address);
    info!(address = %local, control_plane = %settings.control_plane_address, "serving the injection webhook");
    let state = Arc::new(State { settings });
    tokio::spawn(serve(listener, acceptor, state));
    Ok(Some(local))
}

async fn renew(slot: Arc<CertSlot>, ca: Arc<CaStore>, names: Vec<String>, mut life: Duration) {
    loop {
        tokio::time::sleep((life / 2).max(Duration::from_secs(60))).await;
        match issue(&ca, &names) {
            Ok((key, l)) => {
                life = l;
                slot.0.store(key);
                info!("webhook serving certificate renewed");
            }
            Err(e) => {
                warn!("{e}; retrying in a minute");
                life = Duration::from_secs(120);
            }
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("webhook accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(IO_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(%peer, "webhook TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(IO_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                debug!(%peer, "webhook connection ended: {e}");
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut body: String = body.into();
    body.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_response(v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok"),
        (&Method::POST, "/inject") => {}
        (_, "/inject") => return text(StatusCode::METHOD_NOT_ALLOWED, "use POST /inject"),
        (_, path) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("no {path} here; POST /inject"),
            )
        }
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the AdmissionReview is larger than {MAX_BODY} bytes"),
            )
        }
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("reading the body failed: {e}"),
            )
        }
    };
    match review(&state.settings, &body) {
        Ok(v) => json_response(&v),
        Err(problem) => {
            warn!("webhook: bad request: {problem}");
            text(StatusCode::BAD_REQUEST, problem)
        }
    }
}

/// The AdmissionReview answering `body`, or why the body is not one.
pub fn review(settings: &Settings, body: &[u8]) -> Result<Value, String> {
    if body.is_empty() {
        return Err("empty body: expected an AdmissionReview (admission.k8s.io/v1)".into());
    }
    let review: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if review["kind"] != "AdmissionReview" || review["apiVersion"] != "admission.k8s.io/v1" {
        return Err(format!(
            "expected kind AdmissionReview, apiVersion admission.k8s.io/v1; got kind {}, \
             apiVersion {} (set admissionReviewVersions: [v1])",
            review["kind"], review["apiVersion"]
        ));
    }
    let request = &review["request"];
    let uid = request["uid"]
        .as_str()
        .filter(|u| !u.is_empty())
        .ok_or("request.uid is missing")?;
    let mut response = json!({"uid": uid, "allowed": true});
    let kind = &request["kind"];
    let is_pod = kind["kind"] == "Pod" && kind["group"].as_str().unwrap_or("").is_empty();
    let operation = request["operation"].as_str().unwrap_or("");
    let namespace = request["namespace"]
        .as_str()
        .or_else(|| request["object"]["metadata"]["namespace"].as_str())
        .unwrap_or("default");
    let who = request["object"]["metadata"]["name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| request["object"]["metadata"]["generateName"].as_str())
        .unwrap_or("?");
    if !is_pod || operation != "CREATE" {
        debug!(uid, %kind, operation, "not a pod creation; allowed unchanged");
    } else {
        match ringmesh_inject::inject_pod(&request["object"], namespace, settings) {
            Ok((Decision::Inject, patch)) => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(serde_json::to_vec(&patch).unwrap_or_default());
                response["patchType"] = "JSONPatch".into();
                response["patch"] = encoded.into();
                info!(
                    uid,
                    namespace,
                    pod = who,
                    operations = patch.len(),
                    "injected"
                );
            }
            Ok((Decision::Skip(reason), _)) => {
                info!(uid, namespace, pod = who, %reason, "not injected");
                if reason.contains("neither true nor false") {
                    response["warnings"] = json!([format!("ringmesh: not injected: {reason}")]);
                }
            }
            Err(e) => {
                warn!(uid, namespace, pod = who, "injection refused: {e}");
                response["allowed"] = false.into();
                response["status"] = json!({
                    "code": 400,
                    "reason": "BadRequest",
                    "message": format!("ringmesh sidecar injection: {e}"),
                });
            }
        }
    }
    Ok(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            control_plane_address: "10.0.0.1:15010".into(),
            ..Settings::default()
        }
    }

    #[test]
    fn reviews_answer_every_input_without_panicking() {
        let s = settings();
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1beta1\"}",
            b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\"}",
            b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":7}}",
        ] {
            assert!(review(&s, bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let r = review(
            &s,
            br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1",
                 "request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},
                 "operation":"CREATE","namespace":"shop","object":{"spec":{}}}}"#,
        )
        .unwrap();
        assert_eq!(r["response"]["allowed"], false);
        assert_eq!(r["response"]["uid"], "u1");
        assert!(r["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.containers"));
        let r = review(
            &s,
            br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1",
                 "request":{"uid":"u2","kind":{"group":"apps","version":"v1","kind":"Deployment"},
                 "operation":"CREATE","namespace":"shop","object":{}}}"#,
        )
        .unwrap();
        assert_eq!(r["response"], json!({"uid": "u2", "allowed": true}));
    }

    #[test]
    fn flags_make_settings() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            w: WebhookArgs,
        }
        let t = T::try_parse_from([
            "t",
            "--webhook-address",
            "0.0.0.0:15017",
            "--inject-native-sidecar",
            "false",
            "--inject-exclude-outbound-ports",
            "5432,6379",
        ])
        .unwrap();
        let wildcard: SocketAddr = "0.0.0.0:15010".parse().unwrap();
        assert!(t
            .w
            .settings(wildcard, "cluster.local", "cluster.local")
            .unwrap_err()
            .contains("--inject-control-plane-address"));
        let s =
            t.w.settings(
                "10.1.2.3:15010".parse().unwrap(),
                "cluster.local",
                "cluster.local",
            )
            .unwrap();
        assert_eq!(s.control_plane_address, "10.1.2.3:15010");
        assert!(!s.native_sidecar);
        assert_eq!(s.exclude_outbound_ports, [5432, 6379]);
        assert_eq!(
            t.w.webhook_dns_name,
            ["ringmesh-control.ringmesh-system.svc"]
        );
    }
}
