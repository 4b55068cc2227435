//! Mutual TLS between two ringmesh-proxy sidecars, with certificates from
//! the mesh CA (`ringmesh-ca`), as real processes on loopback:
//!
//! - an outbound sidecar (ISTIO_MUTUAL cluster) → a recording TCP relay →
//!   an inbound sidecar (STRICT listener) → the testbed: traffic flows,
//!   and the relay proves that nothing but TLS records crossed the wire;
//! - STRICT refuses plaintext; PERMISSIVE serves TLS and plaintext on one
//!   port (HTTP and TCP listeners, including a client that stays silent);
//! - every bad certificate is refused, presented by a client to the
//!   inbound sidecar or by a server to the outbound sidecar: a CA leaf, the
//!   wrong trust domain, expired, an unknown CA, the wrong identity;
//! - rotation: certificate files swapped under a running proxy, and the
//!   CA flow (bootstrap tokens, the signing service, a 20 s TTL) renewing
//!   every ~10 s under continuous traffic with zero failed requests.

// The relay's records and the traffic threads' failures are shared with
// mutexes: test threads, not a data path.
#![allow(clippy::disallowed_types)]

use std::{
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use ringmesh_ca::{ca_service, CaOptions, CaStore, ServiceOptions, TokenAuthority};
use ringmesh_e2e::{
    echo_header, on_both_drivers, show, wait_for, Backend, Client, Driver, Proxy, TempDir,
};
use ringmesh_tls::{generate_key_and_csr, SpiffeId};
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme,
};
use serde_json::{json, Value};

const TD: &str = "cluster.local";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const SNI: &str = "reviews.default.svc.cluster.local";
const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A mesh CA over a root made here (so the tests can also sign what the CA
/// never would), and files for the proxies.
struct Pki {
    dir: TempDir,
    ca: Arc<CaStore>,
    root_params: CertificateParams,
    root_key: KeyPair,
}

fn self_signed_root(cn: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.distinguished_name.push(DnType::OrganizationName, TD);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    params.not_before = (now - HOUR).into();
    params.not_after = (now + 24 * HOUR).into();
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("mtls-pki");
        let ca_dir = dir.path().join("ca");
        std::fs::create_dir_all(&ca_dir).unwrap();
        let (root_params, root_key, root_pem) = self_signed_root("Test Mesh Root");
        std::fs::write(ca_dir.join("root-cert.pem"), root_pem).unwrap();
        std::fs::write(ca_dir.join("root-key.pem"), root_key.serialize_pem()).unwrap();
        let ca = Arc::new(CaStore::open(&ca_dir, CaOptions::new(TD)).unwrap());
        Pki {
            dir,
            ca,
            root_params,
            root_key,
        }
    }

    fn bundle_path(&self) -> PathBuf {
        self.dir.path().join("ca").join("root-cert.pem")
    }

    /// An SVID for `default/<sa>` the way a proxy gets one: key + CSR
    /// here, signed by the CA. `(chain PEM, key PEM, serial hex)`.
    fn issue(&self, sa: &str, ttl: Duration) -> (String, String) {
        let id = SpiffeId::new(TD, "default", sa).unwrap();
        let req = generate_key_and_csr(&id).unwrap();
        let issued = self.ca.sign(&req.csr_pem, &id, ttl).unwrap();
        (issued.cert_chain_pem, req.key_pem)
    }

    /// Write an SVID for `sa` as `<name>-cert.pem` / `<name>-key.pem`.
    fn write_svid(&self, name: &str, sa: &str) -> (PathBuf, PathBuf) {
        let (chain, key) = self.issue(sa, HOUR);
        let c = self.dir.path().join(format!("{name}-cert.pem"));
        let k = self.dir.path().join(format!("{name}-key.pem"));
        // Written beside and renamed over, as a secret mount does.
        for (path, text) in [(&c, chain), (&k, key)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        (c, k)
    }

    /// The `identity` section of a proxy holding an SVID for `sa`, from files.
    fn identity(&self, sa: &str) -> Value {
        let (c, k) = self.write_svid(sa, sa);
        json!({
            "namespace": "default",
            "service_account": sa,
            "cert_chain": c.display().to_string(),
            "private_key": k.display().to_string(),
            "trust_bundle": self.bundle_path().display().to_string(),
        })
    }

    /// Leaf parameters as the CA issues them, for `uri`.
    fn leaf_params(uri: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = SystemTime::now();
        params.not_before = (now - HOUR).into();
        params.not_after = (now + HOUR).into();
        params
    }

    /// A certificate the CA would never issue, signed by the mesh root
    /// (or by `other` root): `(cert PEM, key PEM)`.
    fn forge(
        &self,
        params: &CertificateParams,
        other: Option<&(CertificateParams, KeyPair)>,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = match other {
            Some((p, k)) => params.signed_by(&key, &Issuer::from_params(p, k)),
            None => params.signed_by(
                &key,
                &Issuer::from_params(&self.root_params, &self.root_key),
            ),
        }
        .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The bad certificates every side must refuse, by name.
    fn bad_certificates(&self) -> Vec<(&'static str, (String, String))> {
        let me = "spiffe://cluster.local/ns/default/sa/productpage";
        let mut ca_leaf = Self::leaf_params(me);
        ca_leaf.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_leaf.key_usages.push(KeyUsagePurpose::KeyCertSign);
        let wrong_td = Self::leaf_params("spiffe://evil.example/ns/default/sa/productpage");
        let mut expired = Self::leaf_params(me);
        let now = SystemTime::now();
        expired.not_before = (now - 2 * HOUR).into();
        expired.not_after = (now - HOUR).into();
        let (p, k, _) = self_signed_root("Some Other Root");
        vec![
            ("ca-leaf", self.forge(&ca_leaf, None)),
            ("wrong-trust-domain", self.forge(&wrong_td, None)),
            ("expired", self.forge(&expired, None)),
            (
                "unknown-ca",
                self.forge(&Self::leaf_params(me), Some(&(p, k))),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------
// A raw TLS client and server (the test's own rustls)
// ---------------------------------------------------------------------------

/// Accepts any server certificate: the tests about *client* certificates
/// must reach the proxy's verifier whatever the proxy presents.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_chain(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn pem_key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// A client presenting `(chain, key)`.
fn client_config(cert: &(String, String)) -> Arc<rustls::ClientConfig> {
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_client_auth_cert(pem_chain(&cert.0), pem_key(&cert.1))
        .unwrap();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// What a TLS exchange gave: the bytes received before the end (or the
/// error), the error if any, and the server's leaf certificate.
struct TlsExchange {
    received: Vec<u8>,
    error: Option<io::Error>,
    server_leaf: Option<Vec<u8>>,
}

impl TlsExchange {
    fn is_http_ok(&self) -> bool {
        self.received.starts_with(b"HTTP/1.1 200 ")
    }
}

/// Connect to `addr` with TLS, send `request`, read until the end.
fn tls_exchange(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, request: &[u8]) -> TlsExchange {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = ServerName::try_from(SNI).unwrap();
    let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut out = TlsExchange {
        received: Vec::new(),
        error: None,
        server_leaf: None,
    };
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            out.error = Some(e);
            return out;
        }
    }
    out.server_leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    if let Err(e) = tls.write_all(request).and_then(|()| tls.flush()) {
        out.error = Some(e);
        return out;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.received.extend_from_slice(&buf[..n]),
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    out
}

const GET_CLOSE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n";

/// A TLS server presenting `cert` (no client certificate asked), answering
/// each request with `200 ok` and closing: stands in for a sidecar whose
/// certificate the outbound proxy must judge.
fn tls_server(cert: (String, String)) -> SocketAddr {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pem_chain(&cert.0), pem_key(&cert.1))
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut tcp) = s else { continue };
            let cfg = cfg.clone();
            thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(mut conn) = rustls::ServerConnection::new(cfg) else {
                    return;
                };
                let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
                let mut head = Vec::new();
                let mut b = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------
// A recording relay between the sidecars
// ---------------------------------------------------------------------------

/// A TCP relay that records every byte in each direction: the wire
/// between the two sidecars.
struct Relay {
    addr: SocketAddr,
    to_server: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
    connections: Arc<AtomicU64>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = Relay {
            addr: l.local_addr().unwrap(),
            to_server: Default::default(),
            to_client: Default::default(),
            connections: Default::default(),
        };
        let (up, down, n) = (
            relay.to_server.clone(),
            relay.to_client.clone(),
            relay.connections.clone(),
        );
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(client) = s else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                n.fetch_add(1, Ordering::Relaxed);
                let copy = |mut from: TcpStream, mut to: TcpStream, rec: Arc<Mutex<Vec<u8>>>| {
                    thread::spawn(move || {
                        let mut b = [0u8; 16 * 1024];
                        loop {
                            match from.read(&mut b) {
                                Ok(0) | Err(_) => break,
                                Ok(k) => {
                                    rec.lock().unwrap().extend_from_slice(&b[..k]);
                                    if to.write_all(&b[..k]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                };
                copy(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    up.clone(),
                );
                copy(server, client, down.clone());
            }
        });
        relay
    }

    fn recorded(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.to_server.lock().unwrap().clone(),
            self.to_client.lock().unwrap().clone(),
        )
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------------
// Proxy configurations
// ---------------------------------------------------------------------------

fn route_all(name: &str, cluster: &str) -> Value {
    json!({ "name": name, "virtual_hosts": [{ "name": "all", "domains": ["*"],
            "routes": [{ "match": { "prefix": "/" }, "cluster": cluster }] }] })
}

fn mutual(endpoint: SocketAddr, sans: &[&str]) -> Value {
    json!({ "endpoints": [{ "address": endpoint.to_string() }],
            "tls": { "mode": "ISTIO_MUTUAL", "subject_alt_names": sans, "sni": SNI } })
}

/// The inbound sidecar of `reviews`: its HTTP listener in `mode`, to the
/// backend.
fn inbound_config(identity: Value, mode: &str, backend: SocketAddr) -> Value {
    json!({
        "identity": identity,
        "listeners": [
            { "name": "inbound", "address": "auto", "protocol": "http",
              "route_config": "local", "tls": { "mode": mode } },
            { "name": "inbound-tcp", "address": "auto", "protocol": "tcp",
              "cluster": "app", "tls": { "mode": mode } },
        ],
        "route_configs": [route_all("local", "app")],
        "clusters": [{ "name": "app", "endpoints": [{ "address": backend.to_string() }] }],
    })
}

/// The outbound sidecar of `productpage`: HTTP and TCP listeners to
/// `reviews` over mTLS.
fn outbound_config(identity: Value, http_to: SocketAddr, tcp_to: SocketAddr) -> Value {
    let mut reviews = mutual(http_to, &[REVIEWS]);
    reviews["name"] = json!("reviews");
    let mut tcp = mutual(tcp_to, &[REVIEWS]);
    tcp["name"] = json!("reviews-tcp");
    json!({
        "identity": identity,
        "listeners": [
            { "name": "outbound", "address": "auto", "protocol": "http", "route_config": "out" },
            { "name": "outbound-tcp", "address": "auto", "protocol": "tcp", "cluster": "reviews-tcp" },
        ],
        "route_configs": [route_all("out", "reviews")],
        "clusters": [reviews, tcp],
    })
}

fn metric(p: &Proxy, name: &str, labels: &[(&str, &str)]) -> f64 {
    p.metrics().get_or_zero(name, labels)
}

/// One HTTP request on a fresh connection with `Connection: close`.
fn get_once(addr: SocketAddr, path: &str) -> io::Result<ringmesh_e2e::Response> {
    let mut c = Client::try_connect(addr, Duration::from_secs(5))?;
    c.request("GET", "reviews", path, &[("connection", "close")], b"")
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

on_both_drivers!(
    mtls_between_sidecars,
    strict_refuses_plaintext_and_bad_client_certificates,
    bad_server_certificates_are_refused,
    permissive_serves_tls_and_plaintext,
);

fn mtls_between_sidecars(driver: Driver) {
    let pki = Pki::new();
    let backend = Backend::start("reviews-app");
    let inbound = Proxy::start(
        driver,
        inbound_config(pki.identity("reviews"), "STRICT", backend.addr()),
    );
    let relay = Relay::start(inbound.addr("inbound"));
    let tcp_relay = Relay::start(inbound.addr("inbound-tcp"));
    let outbound = Proxy::start(
        driver,
        outbound_config(pki.identity("productpage"), relay.addr, tcp_relay.addr),
    );

    // HTTP, keep-alive: every request through one pooled mTLS connection.
    let mut c = Client::connect(outbound.addr("outbound"));
    for i in 0..5 {
        let r = c
            .request(
                "POST",
                "secret-host.example",
                &format!("/echo?token=mtls-secret-path-{i}"),
                &[("x-secret-header", "hush-hush")],
                b"body-secret-payload",
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let echo = r.json();
        assert_eq!(echo["path"], "/echo");
        assert_eq!(echo["body_len"], 19);
        // The inbound sidecar received the request over TLS.
        assert_eq!(echo_header(&echo, "x-forwarded-proto"), ["https"]);
        assert_eq!(echo_header(&echo, "x-secret-header"), ["hush-hush"]);
    }
    assert_eq!(
        relay.connections.load(Ordering::Relaxed),
        1,
        "one pooled connection"
    );
    // Two requests at once need a second connection: it resumes the
    // session of the first.
    let addr = outbound.addr("outbound");
    let slow: Vec<_> = (0..2)
        .map(|_| thread::spawn(move || get_once(addr, "/delay/300").map(|r| r.status)))
        .collect();
    for t in slow {
        assert_eq!(t.join().unwrap().unwrap(), 200);
    }
    // TCP through both sidecars (the L4 path on split TLS halves).
    let r = get_once(outbound.addr("outbound-tcp"), "/echo?tcp-secret-path").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        echo_header(&r.json(), "x-secret-header"),
        Vec::<String>::new()
    );

    // On the wire: TLS records only, none of the request or response.
    for (what, rec) in [("http", &relay), ("tcp", &tcp_relay)] {
        let (up, down) = rec.recorded();
        assert!(
            up.len() > 500 && down.len() > 500,
            "{what}: too little traffic"
        );
        assert!(up.starts_with(&[0x16, 0x03]), "{what}: {}", show(&up));
        assert!(down.starts_with(&[0x16, 0x03]), "{what}: {}", show(&down));
        for secret in [
            "mtls-secret-path",
            "tcp-secret-path",
            "secret-host",
            "hush-hush",
            "body-secret-payload",
            "GET ",
            "HTTP/1.1",
        ] {
            assert!(
                !contains(&up, secret),
                "{what}: {secret:?} crossed the wire in clear"
            );
        }
        for secret in ["reviews-app", "x-backend", "HTTP/1.1", "hush-hush"] {
            assert!(
                !contains(&down, secret),
                "{what}: {secret:?} came back in clear"
            );
        }
    }

    // Metrics on both sides.
    let tls_ok = |p: &Proxy, l: &str| {
        metric(
            p,
            "ringmesh_tls_handshakes_total",
            &[("listener", l), ("result", "success")],
        )
    };
    assert!(tls_ok(&inbound, "inbound") >= 2.0);
    assert!(tls_ok(&inbound, "inbound-tcp") >= 1.0);
    assert!(
        metric(
            &inbound,
            "ringmesh_downstream_cx_security_total",
            &[("listener", "inbound"), ("security", "mtls")]
        ) >= 2.0
    );
    assert_eq!(
        metric(
            &inbound,
            "ringmesh_downstream_cx_security_total",
            &[("security", "plaintext")]
        ),
        0.0
    );
    let up = |r: &str| {
        metric(
            &outbound,
            "ringmesh_upstream_tls_handshakes_total",
            &[("cluster", "reviews"), ("result", r)],
        )
    };
    assert_eq!((up("success") >= 2.0, up("failure")), (true, 0.0));
    assert!(
        metric(
            &outbound,
            "ringmesh_upstream_cx_pool_reuse_total",
            &[("cluster", "reviews")]
        ) >= 4.0
    );
    assert!(
        metric(
            &outbound,
            "ringmesh_upstream_tls_resumed_total",
            &[("cluster", "reviews")]
        ) >= 1.0,
        "{}",
        outbound.metrics().text
    );
    assert!(
        metric(
            &inbound,
            "ringmesh_identity_cert_expiry_timestamp_seconds",
            &[]
        ) > 1e9
    );
    assert_eq!(
        metric(
            &inbound,
            "ringmesh_identity_renewals_total",
            &[("result", "success")]
        ),
        1.0
    );
    // The admin interface shows the certificate in service.
    let certs = inbound.admin_get("/certs").json();
    assert_eq!(certs["certificate"]["identity"], REVIEWS);
    assert_eq!(certs["certificate"]["source"], "files");
    assert_eq!(certs["certificate"]["trust_bundle_roots"], 1);
}

fn strict_refuses_plaintext_and_bad_client_certificates(driver: Driver) {
    let pki = Pki::new();
    let backend = Backend::start_recording("reviews-app");
    let mut config = inbound_config(pki.identity("reviews"), "STRICT", backend.addr());
    config["limits"] = json!({ "tls_handshake_timeout": "500ms" });
    let inbound = Proxy::start(driver, config);
    let listener = inbound.addr("inbound");
    // Requests that reached the backend, from its record of every byte.
    let requests = || {
        let rec = backend.recorded();
        rec.windows(9).filter(|w| w == b"GET /echo").count()
    };

    // Plaintext: closed without an answer, counted.
    let mut c = Client::connect(listener);
    c.send(b"GET /echo HTTP/1.1\r\nHost: reviews\r\n\r\n")
        .unwrap();
    let (bytes, closed) = c.read_until_close(Duration::from_secs(5));
    assert!(closed && bytes.is_empty(), "{}", show(&bytes));
    inbound.wait_metric(
        "ringmesh_downstream_cx_plaintext_refused_total",
        &[("listener", "inbound")],
        1.0,
    );

    // A handshake that stalls after its first bytes is cut at the timeout.
    let mut c = Client::connect(listener);
    c.send(&[0x16, 0x03, 0x01, 0x02]).unwrap();
    let started = Instant::now();
    let (_, closed) = c.read_until_close(Duration::from_secs(5));
    assert!(closed && started.elapsed() < Duration::from_secs(3));
    inbound.wait_metric(
        "ringmesh_tls_handshakes_total",
        &[("listener", "inbound"), ("result", "timeout")],
        1.0,
    );

    // A valid SVID gets through: the client below is sound.
    let good = tls_exchange(
        listener,
        client_config(&pki.issue("productpage", HOUR)),
        GET_CLOSE,
    );
    assert!(
        good.is_http_ok(),
        "{:?} {}",
        good.error,
        show(&good.received)
    );
    assert_eq!(
        ringmesh_tls::check_svid_leaf(
            good.server_leaf.as_deref().unwrap(),
            ringmesh_tls::Role::Server,
            TD
        )
        .unwrap()
        .to_string(),
        REVIEWS
    );
    assert_eq!(requests(), 1);

    // Each bad certificate is refused: no answer, a failed handshake.
    let bad = pki.bad_certificates();
    for (i, (what, cert)) in bad.iter().enumerate() {
        let x = tls_exchange(listener, client_config(cert), GET_CLOSE);
        assert!(
            !x.received.starts_with(b"HTTP/"),
            "{what}: answered: {}",
            show(&x.received)
        );
        assert!(x.error.is_some(), "{what}: no error");
        inbound.wait_metric(
            "ringmesh_tls_handshakes_total",
            &[("listener", "inbound"), ("result", "failure")],
            (i + 1) as f64,
        );
    }
    assert_eq!(requests(), 1, "nothing bad reached the backend");
    assert!(
        inbound.log().contains("TLS handshake refused"),
        "{}",
        inbound.log()
    );
}

fn bad_server_certificates_are_refused(driver: Driver) {
    let pki = Pki::new();
    let mut servers: Vec<(String, SocketAddr)> = pki
        .bad_certificates()
        .into_iter()
        .map(|(what, cert)| (what.to_string(), tls_server(cert)))
        .collect();
    // A real SVID, but not the identity this cluster expects.
    servers.push((
        "wrong-identity".into(),
        tls_server(pki.issue("ratings", HOUR)),
    ));
    // And the control: the identity expected.
    servers.push(("good".into(), tls_server(pki.issue("reviews", HOUR))));

    let clusters: Vec<Value> = servers
        .iter()
        .map(|(name, addr)| {
            let mut c = mutual(*addr, &[REVIEWS]);
            c["name"] = json!(name);
            c
        })
        .collect();
    let vhosts: Vec<Value> = servers
        .iter()
        .map(|(name, _)| {
            json!({ "name": name, "domains": [name],
                    "routes": [{ "match": { "prefix": "/" }, "cluster": name }] })
        })
        .collect();
    let outbound = Proxy::start(
        driver,
        json!({
            "identity": pki.identity("productpage"),
            "listeners": [{ "name": "outbound", "address": "auto", "protocol": "http", "route_config": "out" }],
            "route_configs": [{ "name": "out", "virtual_hosts": vhosts }],
            "clusters": clusters,
        }),
    );
    for (name, _) in &servers {
        let mut c = Client::connect(outbound.addr("outbound"));
        let r = c.get(name, "/");
        let fails = metric(
            &outbound,
            "ringmesh_upstream_tls_handshakes_total",
            &[("cluster", name), ("result", "failure")],
        );
        if name == "good" {
            assert_eq!((r.status, r.text().as_str(), fails), (200, "ok", 0.0));
        } else {
            assert_eq!(r.status, 503, "{name}: {}", r.text());
            assert_eq!(
                r.text(),
                "upstream connect error (TLS handshake failed)\n",
                "{name}"
            );
            assert!(fails >= 1.0, "{name}");
        }
    }
}

fn permissive_serves_tls_and_plaintext(driver: Driver) {
    let pki = Pki::new();
    let backend = Backend::start("reviews-app");
    let inbound = Proxy::start(
        driver,
        inbound_config(pki.identity("reviews"), "PERMISSIVE", backend.addr()),
    );
    let outbound = Proxy::start(
        driver,
        outbound_config(
            pki.identity("productpage"),
            inbound.addr("inbound"),
            inbound.addr("inbound-tcp"),
        ),
    );
    // mTLS from the sidecar, HTTP and TCP.
    let r = get_once(outbound.addr("outbound"), "/echo").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(echo_header(&r.json(), "x-forwarded-proto"), ["https"]);
    assert_eq!(
        get_once(outbound.addr("outbound-tcp"), "/").unwrap().status,
        200
    );
    // Plaintext on the same ports.
    let r = get_once(inbound.addr("inbound"), "/echo").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(echo_header(&r.json(), "x-forwarded-proto"), ["http"]);
    assert_eq!(
        get_once(inbound.addr("inbound-tcp"), "/").unwrap().status,
        200
    );
    // A TCP client that waits before speaking (as for a server-first
    // protocol) is taken for plaintext, and loses nothing.
    let mut c = Client::connect(inbound.addr("inbound-tcp"));
    thread::sleep(Duration::from_millis(400));
    let r = c
        .request("GET", "reviews", "/echo", &[("connection", "close")], b"")
        .unwrap();
    assert_eq!(r.status, 200);

    let sec = |l: &str, s: &str| {
        metric(
            &inbound,
            "ringmesh_downstream_cx_security_total",
            &[("listener", l), ("security", s)],
        )
    };
    assert_eq!(
        (sec("inbound", "mtls"), sec("inbound", "plaintext")),
        (1.0, 1.0)
    );
    assert_eq!(
        (sec("inbound-tcp", "mtls"), sec("inbound-tcp", "plaintext")),
        (1.0, 2.0)
    );
    // A valid SVID straight from a client works too, a bad one does not.
    let good = tls_exchange(
        inbound.addr("inbound"),
        client_config(&pki.issue("x", HOUR)),
        GET_CLOSE,
    );
    assert!(good.is_http_ok());
    let (_, expired) = pki.bad_certificates().swap_remove(2);
    let bad = tls_exchange(inbound.addr("inbound"), client_config(&expired), GET_CLOSE);
    assert!(!bad.received.starts_with(b"HTTP/"));
}

/// Rotation by files: the certificate files are replaced under a running
/// proxy; the new certificate is served from the next handshake, the
/// connection already open keeps working.
#[test]
fn certificate_files_rotate_live() {
    let pki = Pki::new();
    let backend = Backend::start("reviews-app");
    let mut inbound = Proxy::start(
        Driver::Uring,
        inbound_config(pki.identity("reviews"), "STRICT", backend.addr()),
    );
    let outbound = Proxy::start(
        Driver::Epoll,
        outbound_config(
            pki.identity("productpage"),
            inbound.addr("inbound"),
            inbound.addr("inbound-tcp"),
        ),
    );
    let serial = |p: &Proxy| {
        p.admin_get("/certs").json()["certificate"]["serial"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = serial(&inbound);
    let mut kept = Client::connect(outbound.addr("outbound"));
    assert_eq!(kept.get("reviews", "/").status, 200);

    pki.write_svid("reviews", "reviews");
    inbound.signal(libc::SIGHUP);
    let after = wait_for(
        Duration::from_secs(10),
        "the new certificate in service",
        || {
            let s = serial(&inbound);
            (s != before).then_some(s)
        },
    );
    let served = tls_exchange(
        inbound.addr("inbound"),
        client_config(&pki.issue("productpage", HOUR)),
        GET_CLOSE,
    );
    assert!(served.is_http_ok());
    assert_eq!(
        ringmesh_tls::serial_hex(served.server_leaf.as_deref().unwrap()).unwrap(),
        after
    );
    // The pooled connection made before the rotation still carries traffic.
    for _ in 0..3 {
        assert_eq!(kept.get("reviews", "/").status, 200);
    }
    assert_eq!(
        metric(
            &outbound,
            "ringmesh_upstream_cx_total",
            &[("cluster", "reviews")]
        ),
        1.0
    );
    // A broken file is refused and the current certificate keeps serving.
    std::fs::write(pki.dir.path().join("reviews-cert.pem"), "not a certificate").unwrap();
    inbound.wait_metric(
        "ringmesh_identity_renewals_total",
        &[("result", "failure")],
        1.0,
    );
    assert_eq!(serial(&inbound), after);
    assert_eq!(
        get_once(outbound.addr("outbound-tcp"), "/").unwrap().status,
        200
    );
}

// ---------------------------------------------------------------------------
// Rotation with the CA
// ---------------------------------------------------------------------------

/// The CA's signing service, served in-process on loopback.
struct CaServer {
    addr: SocketAddr,
    tokens: Arc<TokenAuthority>,
}

impl CaServer {
    fn start(pki: &Pki) -> CaServer {
        let tokens = Arc::new(TokenAuthority::open(pki.dir.path().join("ca")).unwrap());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let store = pki.ca.clone();
        let auth = tokens.clone();
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                let options = ServiceOptions {
                    rate_limit: None,
                    ..Default::default()
                };
                tonic::transport::Server::builder()
                    .add_service(ca_service(store, auth, options))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
                    .await
                    .unwrap();
            });
        });
        CaServer { addr, tokens }
    }

    /// The `identity` section of a proxy fetching `sa`'s certificate with a
    /// bootstrap token, valid `ttl`.
    fn identity(&self, dir: &Path, sa: &str, ttl: &str) -> Value {
        let id = SpiffeId::new(TD, "default", sa).unwrap();
        let token = dir.join(format!("{sa}.token"));
        std::fs::write(&token, self.tokens.issue(&id, HOUR)).unwrap();
        json!({
            "namespace": "default",
            "service_account": sa,
            "ca_address": self.addr.to_string(),
            "token_file": token.display().to_string(),
            "ttl": ttl,
        })
    }
}

#[test]
fn rotation_with_the_ca_under_continuous_traffic() {
    let pki = Pki::new();
    let ca = CaServer::start(&pki);
    let backend = Backend::start("reviews-app");
    // One sidecar per driver: both are exercised by the same traffic.
    let inbound = Proxy::start(
        Driver::Uring,
        inbound_config(
            ca.identity(pki.dir.path(), "reviews", "20s"),
            "STRICT",
            backend.addr(),
        ),
    );
    let outbound = Proxy::start(
        Driver::Epoll,
        outbound_config(
            ca.identity(pki.dir.path(), "productpage", "20s"),
            inbound.addr("inbound"),
            inbound.addr("inbound-tcp"),
        ),
    );
    let client_cert = pki.issue("tester", HOUR);
    let first_served = tls_exchange(
        inbound.addr("inbound"),
        client_config(&client_cert),
        GET_CLOSE,
    );
    assert!(first_served.is_http_ok());
    let first_serial =
        ringmesh_tls::serial_hex(first_served.server_leaf.as_deref().unwrap()).unwrap();

    // Continuous traffic: HTTP keep-alive (one pooled mTLS connection) and
    // a new TCP connection — a new mTLS handshake — per request.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = [outbound.addr("outbound"), outbound.addr("outbound-tcp")]
        .into_iter()
        .enumerate()
        .map(|(i, addr)| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            thread::spawn(move || {
                let mut keep: Option<Client> = None;
                while !stop.load(Ordering::Relaxed) {
                    let r = if i == 0 {
                        let c = keep.get_or_insert_with(|| Client::connect(addr));
                        c.request("GET", "reviews", "/", &[], b"")
                    } else {
                        get_once(addr, "/")
                    };
                    match r {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failed
                            .lock()
                            .unwrap()
                            .push(format!("{}: {}", r.status, r.text())),
                        Err(e) => {
                            failed.lock().unwrap().push(e.to_string());
                            keep = None;
                        }
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();

    // Watch both proxies' certificates for four distinct serials (three
    // renewals), then a bit more.
    let mut serials: [Vec<String>; 2] = Default::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while serials.iter().any(|s| s.len() < 4) {
        assert!(
            Instant::now() < deadline,
            "fewer than 3 renewals in 60 s: {serials:?}\ninbound:\n{}",
            inbound.log()
        );
        for (k, p) in [&inbound, &outbound].into_iter().enumerate() {
            let c = p.admin_get("/certs").json();
            let s = c["certificate"]["serial"].as_str().unwrap_or("").to_owned();
            if !s.is_empty() && !serials[k].contains(&s) {
                serials[k].push(s);
            }
        }
        thread::sleep(Duration::from_millis(250));
    }
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(
        ok.load(Ordering::Relaxed) > 200,
        "{} requests",
        ok.load(Ordering::Relaxed)
    );

    // A new handshake now sees the newest certificate.
    let last = tls_exchange(
        inbound.addr("inbound"),
        client_config(&client_cert),
        GET_CLOSE,
    );
    assert!(last.is_http_ok());
    let last_serial = ringmesh_tls::serial_hex(last.server_leaf.as_deref().unwrap()).unwrap();
    assert_ne!(last_serial, first_serial);
    assert!(
        serials[0].contains(&last_serial),
        "{last_serial} not in {:?}",
        serials[0]
    );
    for p in [&inbound, &outbound] {
        assert!(
            metric(
                p,
                "ringmesh_identity_renewals_total",
                &[("result", "success")]
            ) >= 4.0
        );
        assert_eq!(
            metric(
                p,
                "ringmesh_identity_renewals_total",
                &[("result", "failure")]
            ),
            0.0
        );
        let certs = p.admin_get("/certs").json();
        assert_eq!(certs["certificate"]["source"], "ca");
        assert!(certs["expires_in_seconds"].as_u64().unwrap() <= 20);
    }
}

// ---------------------------------------------------------------------------
// The trust bundle from the control plane (SDS over ADS)
// ---------------------------------------------------------------------------

mod sds {
    use std::net::SocketAddr;

    use envoy_types::pb::{
        envoy::{
            config::{core::v3 as core, listener::v3::Listener},
            extensions::transport_sockets::tls::v3::{
                common_tls_context::ValidationContextType, secret, CertificateValidationContext,
                CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
            },
        },
        google::protobuf::{Any, BoolValue},
    };
    use prost::{Message, Name};
    use ringmesh_xds::{
        content_version,
        testing::{eds_cluster, http_listener, load_assignment, route_to_cluster},
        Resource, Resources,
    };

    fn ads() -> core::ConfigSource {
        core::ConfigSource {
            config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
                Default::default(),
            )),
            ..Default::default()
        }
    }

    /// `ringmesh_xds::testing::http_listener` with Istio's STRICT transport
    /// socket: SDS `default` and `ROOTCA`, client certificates required.
    pub fn strict_listener(name: &str, addr: SocketAddr) -> Resource {
        let plain = http_listener(name, addr, "local");
        let mut l = Listener::decode(plain.body.value.as_slice()).unwrap();
        let sds = |n: &str| SdsSecretConfig {
            name: n.into(),
            sds_config: Some(ads()),
        };
        let ctx = DownstreamTlsContext {
            require_client_certificate: Some(BoolValue { value: true }),
            common_tls_context: Some(CommonTlsContext {
                tls_certificate_sds_secret_configs: vec![sds("default")],
                validation_context_type: Some(
                    ValidationContextType::ValidationContextSdsSecretConfig(sds("ROOTCA")),
                ),
                alpn_protocols: vec!["h2".into(), "http/1.1".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        l.filter_chains[0].transport_socket = Some(core::TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(core::transport_socket::ConfigType::TypedConfig(Any {
                type_url: DownstreamTlsContext::type_url(),
                value: ctx.encode_to_vec(),
            })),
        });
        Resource::from_message(name, format!("strict-{}", plain.version), &l)
    }

    /// The `ROOTCA` secret holding `pem`.
    pub fn root_ca(pem: &str) -> Resource {
        let s = Secret {
            name: "ROOTCA".into(),
            r#type: Some(secret::Type::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(core::DataSource {
                        specifier: Some(core::data_source::Specifier::InlineBytes(
                            pem.as_bytes().to_vec(),
                        )),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )),
        };
        Resource::from_message("ROOTCA", content_version(pem.as_bytes()), &s)
    }

    pub fn inbound(listen: SocketAddr, app: SocketAddr) -> Resources {
        Resources::new()
            .with(strict_listener("inbound", listen))
            .with(route_to_cluster("local", "app"))
            .with(eds_cluster("app"))
            .with(load_assignment("app", &[app]))
    }
}

/// The inbound sidecar trusts its own CA's root (from its identity) and,
/// once the control plane sends it in `ROOTCA`, another CA's root: a root
/// rotation staged from the control plane. Removing it withdraws the trust.
#[test]
fn trust_bundle_from_the_control_plane_is_merged() {
    use ringmesh_xds::{testing::ServerThread, ScopeKey, XdsServer};

    let old = Pki::new();
    let new = Pki::new();
    let backend = Backend::start("reviews-app");
    let listen = SocketAddr::from(([127, 0, 0, 1], ringmesh_e2e::free_port()));
    let server = XdsServer::default();
    let scope = ScopeKey::default();
    server.publish(scope.clone(), sds::inbound(listen, backend.addr()));
    let xds = ServerThread::start(server.clone());
    let inbound = Proxy::start(
        Driver::Uring,
        json!({
            "identity": old.identity("reviews"),
            "xds": { "address": xds.addr().to_string(), "node_id": "sidecar~127.0.0.1~reviews.default~default.svc.cluster.local" },
        }),
    );
    // The client's certificate comes from the new CA.
    let new_cert = new.issue("productpage", HOUR);
    let client = client_config(&new_cert);
    let refused = tls_exchange(listen, client.clone(), GET_CLOSE);
    assert!(
        !refused.received.starts_with(b"HTTP/"),
        "{}",
        show(&refused.received)
    );

    let new_root = std::fs::read_to_string(new.bundle_path()).unwrap();
    server.publish(
        scope.clone(),
        sds::inbound(listen, backend.addr()).with(sds::root_ca(&new_root)),
    );
    wait_for(Duration::from_secs(10), "the new root trusted", || {
        tls_exchange(listen, client.clone(), GET_CLOSE)
            .is_http_ok()
            .then_some(())
    });
    assert_eq!(
        inbound.admin_get("/certs").json()["certificate"]["trust_bundle_roots"],
        2
    );
    // Certificates of the old CA still pass: the roots are merged.
    let old_client = client_config(&old.issue("productpage", HOUR));
    assert!(tls_exchange(listen, old_client, GET_CLOSE).is_http_ok());

    server.publish(scope, sds::inbound(listen, backend.addr()));
    // A fresh client each time: a resumed session would skip verification
    // (see ringmesh_tls::config on root removal).
    wait_for(Duration::from_secs(10), "the new root withdrawn", || {
        (!tls_exchange(listen, client_config(&new_cert), GET_CLOSE).is_http_ok()).then_some(())
    });
}
