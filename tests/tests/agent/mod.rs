//! Shared by the tests that run real Envoys as sidecars of
//! `ringmesh-control` (`control_mtls.rs`, `control_authz.rs`,
//! `interop_mtls.rs`): the test plays each workload's agent, as
//! istio-agent does for Envoy — it mints a bootstrap token with
//! `ringmesh-control token`, makes a key and CSR, has the CSR signed by the
//! control plane's CA over gRPC and writes the certificate chain and key
//! where the node metadata (`TLS_SERVER_CERT_CHAIN`, `TLS_SERVER_KEY`)
//! says; the control plane serves them to Envoy as the SDS secret
//! `default`. Plus the Envoy admin reads and the mTLS client those tests
//! share. Included with `mod agent;`; each test uses part of it.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use ringmesh_e2e::{
    envoy::Envoy,
    mesh::{mint_token, node_id, pod_metadata},
    Client,
};
use ringmesh_tls::{
    client_config, generate_key_and_csr, CertifiedKeyResolver, SharedTrustBundle, SpiffeId, Svid,
    TrustBundle,
};
use serde_json::json;

pub const TRUST_DOMAIN: &str = "cluster.local";

/// What an agent obtained for one workload of namespace `default`: its
/// files (for its Envoy) and PEMs (for the test's own mTLS client).
pub struct Identity {
    pub id: SpiffeId,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub chain_pem: String,
    pub key_pem: String,
    pub bundle_pem: String,
}

/// Token, key + CSR, signed by the control plane's CA at `control` over
/// gRPC (token key in `data_dir`), files written into `dir`.
pub fn obtain_identity(control: SocketAddr, data_dir: &Path, dir: &Path, sa: &str) -> Identity {
    let id = SpiffeId::new(TRUST_DOMAIN, "default", sa).expect("identity");
    let token = mint_token(data_dir, "default", sa);
    let kc = generate_key_and_csr(&id).expect("key and CSR");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (chain, bundle) = rt
        .block_on(ringmesh_ca::request_certificate(
            &format!("http://{control}"),
            &token,
            &kc.csr_pem,
            Duration::from_secs(3600),
        ))
        .unwrap_or_else(|e| panic!("the CA refused {id}: {e}"));
    let chain_pem = chain.concat();
    let cert_file = dir.join(format!("{sa}-cert-chain.pem"));
    let key_file = dir.join(format!("{sa}-key.pem"));
    std::fs::write(&cert_file, &chain_pem).expect("writing the certificate chain");
    std::fs::write(&key_file, &kc.key_pem).expect("writing the key");
    Identity {
        id,
        cert_file,
        key_file,
        chain_pem,
        key_pem: kc.key_pem,
        bundle_pem: bundle.concat(),
    }
}

/// An Envoy sidecar (Delta ADS, no interception) for the pod `pod` of app
/// `app` at `ip`, its certificate files in the node metadata.
pub fn envoy_sidecar(
    control: SocketAddr,
    ip: &str,
    pod: &str,
    app: &str,
    identity: &Identity,
) -> Envoy {
    let mut metadata = pod_metadata(ip, pod, "default", json!({ "app": app }));
    metadata["TLS_SERVER_CERT_CHAIN"] = json!(identity.cert_file.display().to_string());
    metadata["TLS_SERVER_KEY"] = json!(identity.key_file.display().to_string());
    Envoy::start_node(
        json!({ "id": node_id(ip, pod, "default"), "cluster": app, "metadata": metadata }),
        "DELTA_GRPC",
        control,
    )
}

pub fn admin_get(admin: SocketAddr, path: &str) -> String {
    Client::connect(admin).get("localhost", path).text()
}

/// The sum of the Envoy stats (`/stats` text) whose names `matches`.
pub fn stat_sum(stats: &str, matches: impl Fn(&str) -> bool) -> u64 {
    stats
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| matches(k))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// The Envoy stat named exactly `name`.
pub fn stat(stats: &str, name: &str) -> u64 {
    stat_sum(stats, |k| k == name)
}

/// No update of any type rejected, and each of `accepted` (stat names such
/// as `listener_manager.lds.update_success`) at least once.
pub fn assert_all_acked(envoy: &Envoy, what: &str, accepted: &[&str]) {
    let stats = admin_get(envoy.admin(), "/stats");
    assert_eq!(
        stat_sum(&stats, |k| k.ends_with(".update_rejected")),
        0,
        "{what} rejected an update:\n{stats}\n{}",
        envoy.log()
    );
    for s in accepted {
        assert!(stat(&stats, s) >= 1, "{what}: no {s}:\n{stats}");
    }
}

/// `GET /` for `host` through the outbound proxy at `via`: (status,
/// x-backend), or (0, why).
pub fn call(via: SocketAddr, host: &str) -> (u16, String) {
    let Ok(mut c) = Client::try_connect(via, Duration::from_secs(2)) else {
        return (0, "connect failed".into());
    };
    c.set_read_timeout(Duration::from_secs(5));
    match c.request("GET", host, "/", &[], b"") {
        Ok(r) => (r.status, r.header("x-backend").unwrap_or("").to_string()),
        Err(e) => (0, format!("error: {e}")),
    }
}

/// A plaintext `GET /` for `host` straight to `addr`: `Some(status)` if
/// answered.
pub fn plaintext_status(addr: SocketAddr, host: &str) -> Option<u16> {
    let mut c = Client::try_connect(addr, Duration::from_secs(2)).ok()?;
    c.set_read_timeout(Duration::from_secs(3));
    c.request("GET", host, "/", &[], b"").ok().map(|r| r.status)
}

/// Plays a workload without a sidecar: `GET /` for `host` over an mTLS
/// connection straight to `addr` with `identity`'s certificate, the server
/// verified as `server_id` (SNI `server_name`). `Ok(status line)` if
/// answered, `Err` if the handshake failed or the connection was closed
/// without a response.
pub fn mtls_get(
    addr: SocketAddr,
    identity: &Identity,
    server_id: &SpiffeId,
    server_name: &str,
    host: &str,
) -> Result<String, String> {
    let provider = ringmesh_tls::config::provider();
    let svid = Svid::from_pem(
        identity.chain_pem.as_bytes(),
        identity.key_pem.as_bytes(),
        TRUST_DOMAIN,
        &provider,
    )
    .map_err(|e| format!("loading the SVID: {e}"))?;
    let bundle = TrustBundle::from_pem(identity.bundle_pem.as_bytes())
        .map_err(|e| format!("trust bundle: {e}"))?;
    let config = client_config(
        Arc::new(CertifiedKeyResolver::from_svid(&svid)),
        SharedTrustBundle::new(bundle),
        TRUST_DOMAIN,
        vec![server_id.clone()],
        &[b"http/1.1"],
    )
    .map_err(|e| format!("client config: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| format!("server name {server_name}: {e}"))?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("handshake or write: {e}"))?;
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    match text.lines().next() {
        Some(line) if !line.is_empty() => Ok(line.to_owned()),
        _ => Err("closed without a response".into()),
    }
}
