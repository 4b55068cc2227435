//! The signing service (feature `grpc`) on a real tonic server on
//! loopback, called through the generated client and through
//! `request_certificate`: who gets a certificate, for which identity, for
//! how long, and which status code everyone else gets.

mod support;

use std::{
    collections::HashSet,
    net::SocketAddr,
    num::NonZeroU32,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType, PKCS_ECDSA_P256_SHA256,
};
use ringmesh_ca::{
    ca_service, request_certificate, AuthError, Authenticator, CaOptions, CaStore, ClientError,
    CsrPolicy, Identity, RateLimit, ServiceOptions, TokenAuthority,
};
use ringmesh_proto::ca::v1::{
    certificate_service_client::CertificateServiceClient, CreateCertificateRequest,
    CreateCertificateResponse,
};
use ringmesh_tls::{
    generate_key_and_csr, provider, verify_svid, Role, SharedTrustBundle, TrustBundle,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, UnixTime};
use support::{CaSpec, PlugIn, TD};
use tonic::{Code, Status};
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

const HOUR: Duration = Duration::from_secs(3600);

fn id(ns: &str, sa: &str) -> Identity {
    Identity::new(TD, ns, sa).unwrap()
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A CA data directory, its store and token authority, served on
/// loopback.
struct Ca {
    _dir: tempfile::TempDir,
    tokens: Arc<TokenAuthority>,
    addr: SocketAddr,
}

impl Ca {
    async fn start(options: CaOptions, service: ServiceOptions) -> Ca {
        Self::start_with(|_| {}, options, service).await
    }

    /// `prepare` writes files into the data directory before the CA opens.
    async fn start_with(
        prepare: impl FnOnce(&Path),
        options: CaOptions,
        service: ServiceOptions,
    ) -> Ca {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let store = Arc::new(CaStore::open(dir.path(), options).unwrap());
        let tokens = Arc::new(TokenAuthority::open(dir.path()).unwrap());
        let addr = serve(store, tokens.clone(), service).await;
        Ca {
            _dir: dir,
            tokens,
            addr,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn token(&self, identity: &Identity) -> String {
        self.tokens.issue(identity, HOUR)
    }
}

async fn serve(
    store: Arc<CaStore>,
    auth: Arc<dyn Authenticator>,
    service: ServiceOptions,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tonic::transport::Server::builder().add_service(ca_service(store, auth, service));
    tokio::spawn(async move {
        router
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap()
    });
    addr
}

/// One CreateCertificate call with `authorization` set to `auth` (as
/// is), through the generated client.
async fn call(
    addr: SocketAddr,
    auth: Option<&str>,
    csr: &str,
    validity_secs: i64,
) -> Result<CreateCertificateResponse, Status> {
    let mut client = CertificateServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connecting to the CA");
    let mut request = tonic::Request::new(CreateCertificateRequest {
        csr: csr.to_owned(),
        validity_duration: validity_secs,
    });
    if let Some(auth) = auth {
        request
            .metadata_mut()
            .insert("authorization", auth.parse().unwrap());
    }
    client
        .create_certificate(request)
        .await
        .map(|r| r.into_inner())
}

async fn call_as(
    ca: &Ca,
    token: &str,
    csr: &str,
    validity_secs: i64,
) -> Result<CreateCertificateResponse, Status> {
    call(
        ca.addr,
        Some(&format!("Bearer {token}")),
        csr,
        validity_secs,
    )
    .await
}

#[track_caller]
fn assert_status(result: Result<CreateCertificateResponse, Status>, code: Code, needle: &str) {
    match result {
        Ok(_) => panic!("expected {code:?}, got a certificate"),
        Err(status) => {
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(
                status.message().contains(needle),
                "{:?} does not contain {needle:?}",
                status.message()
            );
        }
    }
}

fn der_certs(pems: &[String]) -> Vec<CertificateDer<'static>> {
    pems.iter()
        .map(|p| CertificateDer::from_pem_slice(p.as_bytes()).unwrap())
        .collect()
}

/// The identity the chain proves when verified against the bundle, in
/// both roles (a sidecar presents one SVID as server and as client).
fn verified_identity(chain: &[String], bundle: &[String]) -> Identity {
    let chain = der_certs(chain);
    let bundle = SharedTrustBundle::new(TrustBundle::from_pem(bundle.concat().as_bytes()).unwrap());
    let [role_a, role_b] = [Role::Server, Role::Client].map(|role| {
        verify_svid(
            &chain[0],
            &chain[1..],
            &bundle,
            TD,
            role,
            UnixTime::now(),
            &provider(),
        )
        .unwrap()
    });
    assert_eq!(role_a, role_b);
    role_a
}

/// The leaf's URI SANs and its validity in Unix seconds.
fn leaf_facts(chain: &[String]) -> (Vec<String>, i64, i64) {
    let der = der_certs(chain);
    let (_, leaf) = X509Certificate::from_der(&der[0]).unwrap();
    let sans = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => u.to_string(),
            other => panic!("unexpected SAN {other}"),
        })
        .collect();
    (
        sans,
        leaf.validity().not_before.timestamp(),
        leaf.validity().not_after.timestamp(),
    )
}

/// A CSR signed by a fresh key with the given SAN URIs and CA flag.
fn custom_csr(uris: &[&str], ca: bool, cn: Option<&str>) -> String {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().unwrap()))
        .collect();
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[tokio::test]
async fn valid_token_and_csr_get_an_svid_that_verifies_against_the_bundle() {
    let ca = Ca::start(CaOptions::new(TD), ServiceOptions::default()).await;
    let proven = id("default", "reviews");
    let csr = generate_key_and_csr(&proven).unwrap();

    // Through the generated client, the CA's default TTL (24 h).
    let before = unix(SystemTime::now());
    let response = call_as(&ca, &ca.token(&proven), &csr.csr_pem, 0)
        .await
        .unwrap();
    let after = unix(SystemTime::now());
    assert_eq!(
        response.cert_chain.len(),
        1,
        "a self-signed root: leaf only"
    );
    assert_eq!(response.trust_bundle.len(), 1);
    assert_eq!(
        verified_identity(&response.cert_chain, &response.trust_bundle),
        proven
    );
    let (sans, not_before, not_after) = leaf_facts(&response.cert_chain);
    assert_eq!(sans, vec![proven.to_string()]);
    assert!(not_before <= before - 59, "clock-skew allowance");
    assert!((before + 86_400..=after + 86_400).contains(&not_after));

    // The chain loads as the proxy's SVID with the proxy's key.
    let svid = ringmesh_tls::Svid::from_pem(
        response.cert_chain.concat().as_bytes(),
        csr.key_pem.as_bytes(),
        TD,
        &provider(),
    )
    .unwrap();
    assert_eq!(svid.id, proven);

    // Through the proxy's helper.
    let (chain, bundle) = request_certificate(
        &ca.endpoint(),
        &ca.token(&proven),
        &csr.csr_pem,
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    assert_eq!(verified_identity(&chain, &bundle), proven);
    let (_, _, not_after) = leaf_facts(&chain);
    assert!((before + 600..=unix(SystemTime::now()) + 600).contains(&not_after));
}

#[tokio::test]
async fn plug_in_ca_chain_carries_the_intermediate_and_verifies_to_its_root() {
    let plug_in = PlugIn::new();
    let ca = Ca::start_with(
        |dir| plug_in.write(dir),
        CaOptions::new(TD),
        ServiceOptions::default(),
    )
    .await;
    let proven = id("shop", "cart");
    let csr = generate_key_and_csr(&proven).unwrap();
    let response = call_as(&ca, &ca.token(&proven), &csr.csr_pem, 0)
        .await
        .unwrap();
    assert_eq!(response.cert_chain.len(), 2);
    assert_eq!(
        der_certs(&response.cert_chain[1..])[0].as_ref(),
        plug_in.intermediate.cert.der().as_ref()
    );
    assert_eq!(
        der_certs(&response.trust_bundle),
        vec![plug_in.root.cert.der().clone()]
    );
    assert_eq!(
        verified_identity(&response.cert_chain, &response.trust_bundle),
        proven
    );
}

#[tokio::test]
async fn csr_claiming_more_than_the_token_proves_is_refused_by_default() {
    let ca = Ca::start(CaOptions::new(TD), ServiceOptions::default()).await;
    let proven = id("default", "sleep");
    let token = ca.token(&proven);

    // Another identity: refused, naming what was asked and what is proven.
    let admin = "spiffe://cluster.local/ns/istio-system/sa/admin";
    let result = call_as(&ca, &token, &custom_csr(&[admin], false, None), 0).await;
    assert_status(result, Code::PermissionDenied, &format!("SAN URI:{admin}"));
    let result = call_as(&ca, &token, &custom_csr(&[admin], false, None), 0).await;
    assert_status(result, Code::PermissionDenied, &format!("proves {proven}"));
    // The proven identity plus another.
    let mine = proven.to_string();
    let result = call_as(
        &ca,
        &token,
        &custom_csr(&[mine.as_str(), admin], false, None),
        0,
    )
    .await;
    assert_status(result, Code::PermissionDenied, admin);
    // A CA certificate.
    let result = call_as(&ca, &token, &custom_csr(&[], true, None), 0).await;
    assert_status(result, Code::PermissionDenied, "cA=true");

    // A subject only is dropped, not refused; no SAN at all is fine.
    let ok = call_as(&ca, &token, &custom_csr(&[], false, Some("sleep")), 0)
        .await
        .unwrap();
    assert_eq!(verified_identity(&ok.cert_chain, &ok.trust_bundle), proven);
}

#[tokio::test]
async fn csr_for_another_identity_under_drop_policy_gets_the_token_identity_only() {
    let ca = Ca::start(
        CaOptions::new(TD),
        ServiceOptions {
            csr_policy: CsrPolicy::DropUnproven,
            ..ServiceOptions::default()
        },
    )
    .await;
    let proven = id("default", "sleep");
    // What a compromised workload would send: another identity's CSR.
    let other = generate_key_and_csr(&id("istio-system", "admin")).unwrap();
    let response = call_as(&ca, &ca.token(&proven), &other.csr_pem, 0)
        .await
        .unwrap();
    let (sans, _, _) = leaf_facts(&response.cert_chain);
    assert_eq!(sans, vec![proven.to_string()]);
    assert_eq!(
        verified_identity(&response.cert_chain, &response.trust_bundle),
        proven
    );

    let ca_csr = custom_csr(&[], true, None);
    let response = call_as(&ca, &ca.token(&proven), &ca_csr, 0).await.unwrap();
    let der = der_certs(&response.cert_chain);
    let (_, leaf) = X509Certificate::from_der(&der[0]).unwrap();
    assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
}

#[tokio::test]
async fn missing_or_bad_credentials_are_unauthenticated() {
    let ca = Ca::start(CaOptions::new(TD), ServiceOptions::default()).await;
    let proven = id("default", "reviews");
    let csr = generate_key_and_csr(&proven).unwrap().csr_pem;
    let hint = "authorization: Bearer <token>";

    assert_status(
        call(ca.addr, None, &csr, 0).await,
        Code::Unauthenticated,
        "missing credential",
    );
    assert_status(
        call(ca.addr, None, &csr, 0).await,
        Code::Unauthenticated,
        hint,
    );
    let token = ca.token(&proven);
    assert_status(
        call(ca.addr, Some(&token), &csr, 0).await,
        Code::Unauthenticated,
        "expected `Bearer <token>`",
    );
    assert_status(
        call(ca.addr, Some(&format!("Basic {token}")), &csr, 0).await,
        Code::Unauthenticated,
        hint,
    );
    assert_status(
        call_as(&ca, "garbage", &csr, 0).await,
        Code::Unauthenticated,
        "bootstrap token rejected",
    );
    let expired = ca
        .tokens
        .issue_at(&proven, HOUR, SystemTime::now() - 2 * HOUR);
    assert_status(
        call_as(&ca, &expired, &csr, 0).await,
        Code::Unauthenticated,
        "expired",
    );
    let other_key = TokenAuthority::from_key(&[7u8; 32]).issue(&proven, HOUR);
    assert_status(
        call_as(&ca, &other_key, &csr, 0).await,
        Code::Unauthenticated,
        "does not verify",
    );
    // A valid token with one character changed.
    let mut tampered = token.into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_status(
        call_as(&ca, &tampered, &csr, 0).await,
        Code::Unauthenticated,
        "token",
    );
}

#[tokio::test]
async fn identity_outside_the_trust_domain_is_permission_denied() {
    let ca = Ca::start(CaOptions::new(TD), ServiceOptions::default()).await;
    let foreign = Identity::new("other.example", "default", "reviews").unwrap();
    let csr = generate_key_and_csr(&foreign).unwrap().csr_pem;
    assert_status(
        call_as(&ca, &ca.token(&foreign), &csr, 0).await,
        Code::PermissionDenied,
        "not in this CA's trust domain",
    );
}

#[tokio::test]
async fn broken_csrs_and_arguments_are_invalid_argument() {
    let ca = Ca::start(CaOptions::new(TD), ServiceOptions::default()).await;
    let proven = id("default", "reviews");
    let token = ca.token(&proven);
    let good = generate_key_and_csr(&proven).unwrap();

    assert_status(
        call_as(&ca, &token, "", 0).await,
        Code::InvalidArgument,
        "csr is empty",
    );
    assert_status(
        call_as(&ca, &token, "hello", 0).await,
        Code::InvalidArgument,
        "CSR is not valid PEM",
    );
    let not_der =
        "-----BEGIN CERTIFICATE REQUEST-----\nAAECAw==\n-----END CERTIFICATE REQUEST-----\n";
    assert_status(
        call_as(&ca, &token, not_der, 0).await,
        Code::InvalidArgument,
        "not a valid DER PKCS#10",
    );
    // A valid request whose signature no longer matches its contents.
    let mut der = good.csr_der.as_ref().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let tampered = ringmesh_tls::cert_to_pem(&der).replace("CERTIFICATE", "CERTIFICATE REQUEST");
    assert_status(
        call_as(&ca, &token, &tampered, 0).await,
        Code::InvalidArgument,
        "CSR signature is invalid",
    );
    assert_status(
        call_as(&ca, &token, &good.csr_pem, -5).await,
        Code::InvalidArgument,
        "validity_duration is -5",
    );
    let huge = format!("{}{}", good.csr_pem, " ".repeat(70 * 1024));
    assert_status(
        call_as(&ca, &token, &huge, 0).await,
        Code::InvalidArgument,
        "at most 65536 are accepted",
    );
    // The same token and CSR still work.
    call_as(&ca, &token, &good.csr_pem, 0).await.unwrap();
}

#[tokio::test]
async fn requested_validity_is_capped_by_the_maximum() {
    let options = CaOptions {
        default_ttl: HOUR,
        max_ttl: 2 * HOUR,
        ..CaOptions::new(TD)
    };
    let ca = Ca::start(options, ServiceOptions::default()).await;
    let proven = id("default", "reviews");
    let token = ca.token(&proven);
    for (requested, expected) in [
        (10 * 3600, 2 * 3600),
        (600, 600),
        (0, 3600),
        (i64::MAX, 2 * 3600),
    ] {
        let csr = generate_key_and_csr(&proven).unwrap().csr_pem;
        let before = unix(SystemTime::now());
        let response = call_as(&ca, &token, &csr, requested).await.unwrap();
        let after = unix(SystemTime::now());
        let (_, _, not_after) = leaf_facts(&response.cert_chain);
        assert!(
            (before + expected..=after + expected).contains(&not_after),
            "requested {requested}s: not_after {not_after}, expected {expected}s after {before}"
        );
    }
}

#[tokio::test]
async fn rate_limit_answers_resource_exhausted_per_identity() {
    let ca = Ca::start(
        CaOptions::new(TD),
        ServiceOptions {
            rate_limit: Some(RateLimit::new(
                NonZeroU32::new(3).unwrap(),
                Duration::from_secs(60),
            )),
            ..ServiceOptions::default()
        },
    )
    .await;
    let leaked = id("default", "reviews");
    let token = ca.token(&leaked);
    let csr = generate_key_and_csr(&leaked).unwrap().csr_pem;
    // Unauthenticated requests do not spend the identity's budget.
    for _ in 0..5 {
        assert_status(
            call_as(&ca, "garbage", &csr, 0).await,
            Code::Unauthenticated,
            "",
        );
    }
    for _ in 0..3 {
        call_as(&ca, &token, &csr, 0).await.unwrap();
    }
    let result = call_as(&ca, &token, &csr, 0).await;
    assert_status(result, Code::ResourceExhausted, "retry in");
    // A fresh token for the same identity does not reset the budget.
    let again = call_as(&ca, &ca.token(&leaked), &csr, 0).await;
    assert_status(again, Code::ResourceExhausted, &leaked.to_string());

    // The client helper says the refusal is worth retrying later.
    let e = request_certificate(&ca.endpoint(), &token, &csr, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::ResourceExhausted), "{e}");
    assert!(e.is_retryable());

    // Other identities are not affected.
    let other = id("default", "ratings");
    let csr = generate_key_and_csr(&other).unwrap().csr_pem;
    call_as(&ca, &ca.token(&other), &csr, 0).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_requests_all_succeed_with_distinct_serials() {
    let ca = Ca::start(
        CaOptions::new(TD),
        ServiceOptions {
            rate_limit: Some(RateLimit::new(
                NonZeroU32::new(20).unwrap(),
                Duration::from_secs(60),
            )),
            ..ServiceOptions::default()
        },
    )
    .await;
    let proven = id("default", "reviews");
    let token = ca.token(&proven);
    let endpoint = ca.endpoint();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (endpoint, token, proven) = (endpoint.clone(), token.clone(), proven.clone());
            tokio::spawn(async move {
                let csr = generate_key_and_csr(&proven).unwrap();
                request_certificate(&endpoint, &token, &csr.csr_pem, Duration::ZERO)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut serials = HashSet::new();
    for task in tasks {
        let (chain, bundle) = task.await.unwrap();
        assert_eq!(verified_identity(&chain, &bundle), proven);
        let der = der_certs(&chain);
        let (_, leaf) = X509Certificate::from_der(&der[0]).unwrap();
        serials.insert(leaf.raw_serial().to_vec());
    }
    assert_eq!(serials.len(), 20);
    // The twenty-first is over the limit.
    let csr = generate_key_and_csr(&proven).unwrap().csr_pem;
    assert_status(
        call_as(&ca, &token, &csr, 0).await,
        Code::ResourceExhausted,
        "",
    );
}

/// An authenticator whose backend is down (a TokenReview that cannot
/// reach the API server).
struct Down;

impl Authenticator for Down {
    fn authenticate(&self, _: &str) -> Result<Identity, AuthError> {
        Err(AuthError::Unavailable {
            reason: "kube-apiserver unreachable".into(),
        })
    }
}

#[tokio::test]
async fn authenticator_outage_is_unavailable_and_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CaStore::open(dir.path(), CaOptions::new(TD)).unwrap());
    let addr = serve(store, Arc::new(Down), ServiceOptions::default()).await;
    let csr = generate_key_and_csr(&id("default", "a")).unwrap().csr_pem;
    let e = request_certificate(&format!("http://{addr}"), "tok", &csr, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::Unavailable), "{e}");
    assert!(e.to_string().contains("kube-apiserver unreachable"), "{e}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn expired_signing_chain_is_internal_without_details() {
    // An intermediate valid for two more seconds: the CA opens, then
    // cannot sign.
    let root = CaSpec::ca("Plug-in Root").build(None);
    let now = SystemTime::now();
    let intermediate = CaSpec::ca("Short Intermediate")
        .valid(now - HOUR, now + Duration::from_secs(2))
        .build(Some(&root));
    let plug_in = PlugIn { root, intermediate };
    let ca = Ca::start_with(
        |dir| plug_in.write(dir),
        CaOptions::new(TD),
        ServiceOptions::default(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let proven = id("default", "a");
    let csr = generate_key_and_csr(&proven).unwrap().csr_pem;
    let status = call_as(&ca, &ca.token(&proven), &csr, 0).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(
        status.message(),
        "the CA cannot sign certificates right now; the reason is in the control plane's log"
    );
}

#[tokio::test]
async fn client_errors_say_what_failed() {
    let ca = Ca::start(CaOptions::new(TD), ServiceOptions::default()).await;
    let proven = id("default", "a");
    let csr = generate_key_and_csr(&proven).unwrap().csr_pem;

    let e = request_certificate(&ca.endpoint(), "garbage", &csr, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::Unauthenticated), "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains(&ca.endpoint()), "{e}");

    // Nothing listens on a port whose listener was closed.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let e = request_certificate(&format!("http://{closed}"), "t", &csr, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    assert!(e.is_retryable());
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");

    let e = request_certificate("https://ca:15012", "t", &csr, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Endpoint { .. }), "{e}");
}
