//! CaStore: root generation and reload, plug-in CAs and every broken file.

mod support;

use std::{os::unix::fs::PermissionsExt, path::Path, time::SystemTime};

use ringmesh_ca::{CaError, CaMode, CaOptions, CaStore, FileProblem, Identity};
use support::{CaSpec, PlugIn, DAY, TD};
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

fn open(dir: &Path) -> Result<CaStore, CaError> {
    CaStore::open(dir, CaOptions::new(TD))
}

/// The file name and problem of a `CaError::File`.
fn file_problem(err: CaError) -> (String, FileProblem) {
    match err {
        CaError::File { path, problem } => (
            path.file_name().unwrap().to_string_lossy().into_owned(),
            problem,
        ),
        other => panic!("expected a file error, got {other}"),
    }
}

#[test]
fn generates_a_root_on_first_start_and_reloads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let first = open(&dir).unwrap();
    assert_eq!(first.mode(), CaMode::GeneratedRoot);
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let key_mode = std::fs::metadata(dir.join("root-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    let root = first.signing_cert().clone();
    let (_, cert) = X509Certificate::from_der(&root).unwrap();
    assert_eq!(
        cert.subject().to_string(),
        format!("CN=Ringmesh Root CA, O={TD}")
    );
    assert_eq!(cert.issuer().as_raw(), cert.subject().as_raw());
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical);
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(1));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(life, 3650 * 86_400 + 60);
    assert!(
        cert.public_key().algorithm.algorithm
            == x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    cert.verify_signature(None).expect("self-signed");
    assert_eq!(first.trust_bundle().certs(), std::slice::from_ref(&root));

    let second = open(&dir).unwrap();
    assert_eq!(second.mode(), CaMode::LoadedRoot);
    assert_eq!(second.signing_cert(), &root);
    assert_eq!(second.chain_not_after(), first.chain_not_after());

    // The reloaded key signs: a leaf from the second start verifies
    // against the first start's bundle.
    let id = Identity::new(TD, "default", "web").unwrap();
    let csr = ringmesh_tls::generate_key_and_csr(&id).unwrap();
    let issued = second
        .sign(&csr.csr_pem, &id, std::time::Duration::from_secs(3600))
        .unwrap();
    let bundle = ringmesh_tls::SharedTrustBundle::new(first.trust_bundle().clone());
    let verified = ringmesh_tls::verify_svid(
        issued.leaf(),
        &issued.chain[1..],
        &bundle,
        TD,
        ringmesh_tls::Role::Client,
        rustls_pki_types::UnixTime::now(),
        &ringmesh_tls::provider(),
    )
    .unwrap();
    assert_eq!(verified, id);
}

#[test]
fn key_without_certificate_is_an_error_not_a_new_root() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path()).unwrap();
    std::fs::remove_file(tmp.path().join("root-cert.pem")).unwrap();
    let err = open(tmp.path()).unwrap_err();
    let message = err.to_string();
    let (file, problem) = file_problem(err);
    assert_eq!(file, "root-cert.pem");
    assert!(matches!(problem, FileProblem::Missing { .. }), "{problem}");
    assert!(message.contains("delete root-key.pem"), "{message}");
    assert!(tmp.path().join("root-key.pem").exists());
}

#[test]
fn broken_self_signed_root_files_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path()).unwrap();
    let cert_path = tmp.path().join("root-cert.pem");
    let key_path = tmp.path().join("root-key.pem");
    let good_key = std::fs::read(&key_path).unwrap();

    // A key that is not the root's.
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&key_path, other.serialize_pem()).unwrap();
    let (file, problem) = file_problem(open(tmp.path()).unwrap_err());
    assert_eq!(file, "root-key.pem");
    assert!(
        matches!(
            problem,
            FileProblem::KeyMismatch {
                cert_file: "root-cert.pem"
            }
        ),
        "{problem}"
    );
    std::fs::write(&key_path, &good_key).unwrap();

    // Two certificates where one root is expected.
    let root_pem = std::fs::read_to_string(&cert_path).unwrap();
    std::fs::write(&cert_path, format!("{root_pem}{root_pem}")).unwrap();
    let (file, problem) = file_problem(open(tmp.path()).unwrap_err());
    assert_eq!(file, "root-cert.pem");
    assert!(
        matches!(problem, FileProblem::NotOneCertificate { count: 2 }),
        "{problem}"
    );

    // A CA certificate for the right key that is not self-signed.
    let parent = CaSpec::ca("Someone Else").build(None);
    let key = rcgen::KeyPair::from_pem(std::str::from_utf8(&good_key).unwrap()).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let not_self = params.signed_by(&key, &parent.issuer()).unwrap();
    std::fs::write(&cert_path, not_self.pem()).unwrap();
    let (file, problem) = file_problem(open(tmp.path()).unwrap_err());
    assert_eq!(file, "root-cert.pem");
    assert!(
        matches!(problem, FileProblem::NotSelfSigned { .. }),
        "{problem}"
    );

    // Not PEM at all.
    std::fs::write(&cert_path, "hello").unwrap();
    let (_, problem) = file_problem(open(tmp.path()).unwrap_err());
    assert!(matches!(problem, FileProblem::NoCertificate), "{problem}");

    // A key file without a key.
    std::fs::write(&cert_path, root_pem).unwrap();
    std::fs::write(
        &key_path,
        "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let (file, problem) = file_problem(open(tmp.path()).unwrap_err());
    assert_eq!(file, "root-key.pem");
    assert!(matches!(problem, FileProblem::BadKey(_)), "{problem}");
}

#[test]
fn extra_roots_from_trust_bundle_pem_are_appended() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open(tmp.path()).unwrap();
    let next_root = CaSpec::ca("Next Root").build(None);
    std::fs::write(tmp.path().join("trust-bundle.pem"), next_root.pem()).unwrap();
    let ca2 = open(tmp.path()).unwrap();
    assert_eq!(ca2.trust_bundle().len(), 2);
    assert_eq!(&ca2.trust_bundle().certs()[0], ca.signing_cert());
    assert_eq!(
        ca2.trust_bundle().certs()[1].as_ref(),
        next_root.cert.der().as_ref()
    );
    let pem = ca2.trust_bundle().to_pem();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);

    std::fs::write(
        tmp.path().join("trust-bundle.pem"),
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (file, _) = file_problem(open(tmp.path()).unwrap_err());
    assert_eq!(file, "trust-bundle.pem");
}

#[test]
fn loads_a_plug_in_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = PlugIn::new();
    plugin.write(tmp.path());
    let ca = open(tmp.path()).unwrap();
    assert_eq!(ca.mode(), CaMode::PlugIn);
    assert_eq!(
        ca.signing_cert().as_ref(),
        plugin.intermediate.cert.der().as_ref()
    );
    assert_eq!(ca.trust_bundle().certs().len(), 1);
    assert_eq!(
        ca.trust_bundle().certs()[0].as_ref(),
        plugin.root.cert.der().as_ref()
    );

    // cert-chain.pem is optional; without it the chain is ca-cert alone.
    std::fs::remove_file(tmp.path().join("cert-chain.pem")).unwrap();
    assert_eq!(open(tmp.path()).unwrap().mode(), CaMode::PlugIn);
}

#[test]
fn plug_in_with_a_deeper_chain_links_through_cert_chain_pem() {
    let tmp = tempfile::tempdir().unwrap();
    let root = CaSpec::ca("Root").build(None);
    let mid = CaSpec::ca("Mid").build(Some(&root));
    let issuing = CaSpec::ca("Issuing").build(Some(&mid));
    std::fs::write(tmp.path().join("ca-cert.pem"), issuing.pem()).unwrap();
    std::fs::write(tmp.path().join("ca-key.pem"), issuing.key_pem()).unwrap();
    std::fs::write(tmp.path().join("root-cert.pem"), root.pem()).unwrap();
    // Without the middle certificate the chain cannot reach the root.
    let (file, problem) = file_problem(open(tmp.path()).unwrap_err());
    assert_eq!(file, "ca-cert.pem");
    assert!(
        matches!(problem, FileProblem::ChainBroken { number: 1, .. }),
        "{problem}"
    );
    assert!(problem.to_string().contains("CN=Mid"), "{problem}");

    std::fs::write(
        tmp.path().join("cert-chain.pem"),
        format!("{}{}{}", issuing.pem(), mid.pem(), root.pem()),
    )
    .unwrap();
    let ca = open(tmp.path()).unwrap();
    let id = Identity::new(TD, "ns1", "sa1").unwrap();
    let csr = ringmesh_tls::generate_key_and_csr(&id).unwrap();
    let issued = ca
        .sign(&csr.csr_pem, &id, std::time::Duration::from_secs(600))
        .unwrap();
    assert_eq!(issued.chain.len(), 3, "leaf, issuing, mid");
    assert_eq!(issued.chain[1].as_ref(), issuing.cert.der().as_ref());
    assert_eq!(issued.chain[2].as_ref(), mid.cert.der().as_ref());
    let bundle = ringmesh_tls::SharedTrustBundle::new(ca.trust_bundle().clone());
    ringmesh_tls::verify_svid(
        issued.leaf(),
        &issued.chain[1..],
        &bundle,
        TD,
        ringmesh_tls::Role::Server,
        rustls_pki_types::UnixTime::now(),
        &ringmesh_tls::provider(),
    )
    .unwrap();

    // An expired middle certificate is reported in cert-chain.pem.
    let now = SystemTime::now();
    let old_mid = CaSpec::ca("Mid")
        .valid(now - 20 * DAY, now - DAY)
        .build(Some(&root));
    std::fs::write(
        tmp.path().join("cert-chain.pem"),
        format!("{}{}", issuing.pem(), old_mid.pem()),
    )
    .unwrap();
    let (file, problem) = file_problem(open(tmp.path()).unwrap_err());
    assert_eq!(file, "cert-chain.pem");
    assert!(
        matches!(problem, FileProblem::Expired { number: 2, .. }),
        "{problem}"
    );
}

/// Damages a written plug-in CA.
type Breaker = Box<dyn Fn(&Path, &PlugIn)>;

#[test]
fn every_broken_plug_in_file_is_named() {
    let now = SystemTime::now();
    struct Case {
        name: &'static str,
        breaks: Breaker,
        file: &'static str,
        check: fn(&FileProblem) -> bool,
    }
    let cases = vec![
        Case {
            name: "missing key",
            breaks: Box::new(|d, _| std::fs::remove_file(d.join("ca-key.pem")).unwrap()),
            file: "ca-key.pem",
            check: |p| matches!(p, FileProblem::Missing { .. }),
        },
        Case {
            name: "missing ca-cert",
            breaks: Box::new(|d, _| std::fs::remove_file(d.join("ca-cert.pem")).unwrap()),
            file: "ca-cert.pem",
            check: |p| matches!(p, FileProblem::Missing { .. }),
        },
        Case {
            name: "missing root",
            breaks: Box::new(|d, _| std::fs::remove_file(d.join("root-cert.pem")).unwrap()),
            file: "root-cert.pem",
            check: |p| matches!(p, FileProblem::Missing { .. }),
        },
        Case {
            name: "key of another certificate",
            breaks: Box::new(|d, p| {
                std::fs::write(d.join("ca-key.pem"), p.root.key_pem()).unwrap()
            }),
            file: "ca-key.pem",
            check: |p| {
                matches!(
                    p,
                    FileProblem::KeyMismatch {
                        cert_file: "ca-cert.pem"
                    }
                )
            },
        },
        Case {
            name: "garbage key",
            breaks: Box::new(|d, _| std::fs::write(d.join("ca-key.pem"), "not a key").unwrap()),
            file: "ca-key.pem",
            check: |p| matches!(p, FileProblem::BadKey(m) if m.contains("no unencrypted private key")),
        },
        Case {
            name: "ca-cert is a leaf",
            breaks: Box::new(|d, p| {
                let leaf = CaSpec::ca("Leaf").not_ca().build(Some(&p.root));
                std::fs::write(d.join("ca-cert.pem"), leaf.pem()).unwrap();
                std::fs::write(d.join("ca-key.pem"), leaf.key_pem()).unwrap();
            }),
            file: "ca-cert.pem",
            check: |p| matches!(p, FileProblem::NotCa { number: 1, reason, .. } if reason.contains("cA=false")),
        },
        Case {
            name: "ca-cert lacks keyCertSign",
            breaks: Box::new(|d, p| {
                let mut spec = CaSpec::ca("No Sign");
                spec.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
                let ca = spec.build(Some(&p.root));
                std::fs::write(d.join("ca-cert.pem"), ca.pem()).unwrap();
                std::fs::write(d.join("ca-key.pem"), ca.key_pem()).unwrap();
            }),
            file: "ca-cert.pem",
            check: |p| matches!(p, FileProblem::NotCa { reason, .. } if reason.contains("keyCertSign")),
        },
        Case {
            name: "expired ca-cert",
            breaks: Box::new(move |d, p| {
                let ca = CaSpec::ca("Old")
                    .valid(now - 30 * DAY, now - DAY)
                    .build(Some(&p.root));
                std::fs::write(d.join("ca-cert.pem"), ca.pem()).unwrap();
                std::fs::write(d.join("ca-key.pem"), ca.key_pem()).unwrap();
            }),
            file: "ca-cert.pem",
            check: |p| matches!(p, FileProblem::Expired { number: 1, .. }),
        },
        Case {
            name: "ca-cert not yet valid",
            breaks: Box::new(move |d, p| {
                let ca = CaSpec::ca("Future")
                    .valid(now + DAY, now + 30 * DAY)
                    .build(Some(&p.root));
                std::fs::write(d.join("ca-cert.pem"), ca.pem()).unwrap();
                std::fs::write(d.join("ca-key.pem"), ca.key_pem()).unwrap();
            }),
            file: "ca-cert.pem",
            check: |p| matches!(p, FileProblem::NotYetValid { number: 1, .. }),
        },
        Case {
            name: "expired root",
            breaks: Box::new(move |d, p| {
                // Same key and name as the real root, so the chain links.
                let mut params = p.root.params.clone();
                params.not_before = (now - 30 * DAY).into();
                params.not_after = (now - DAY).into();
                let old = params.self_signed(&p.root.key).unwrap();
                std::fs::write(d.join("root-cert.pem"), old.pem()).unwrap();
                std::fs::write(d.join("cert-chain.pem"), p.intermediate.pem()).unwrap();
            }),
            file: "root-cert.pem",
            check: |p| matches!(p, FileProblem::Expired { number: 1, .. }),
        },
        Case {
            name: "cert-chain.pem ends in a root missing from root-cert.pem",
            breaks: Box::new(|d, _| {
                let stranger = CaSpec::ca("Stranger").build(None);
                std::fs::write(d.join("root-cert.pem"), stranger.pem()).unwrap();
            }),
            file: "cert-chain.pem",
            check: |p| matches!(p, FileProblem::UnlistedRoot { number: 2, subject } if subject.contains("Plug-in Root")),
        },
        Case {
            name: "root that did not sign the chain",
            breaks: Box::new(|d, _| {
                let stranger = CaSpec::ca("Stranger").build(None);
                std::fs::write(d.join("root-cert.pem"), stranger.pem()).unwrap();
                std::fs::remove_file(d.join("cert-chain.pem")).unwrap();
            }),
            file: "ca-cert.pem",
            check: |p| matches!(p, FileProblem::ChainBroken { number: 1, issuer, .. } if issuer.contains("Stranger")),
        },
        Case {
            name: "root with the right name but another key",
            breaks: Box::new(|d, p| {
                let impostor_key = rcgen::KeyPair::generate().unwrap();
                let impostor = p.root.params.self_signed(&impostor_key).unwrap();
                std::fs::write(d.join("root-cert.pem"), impostor.pem()).unwrap();
                std::fs::write(d.join("cert-chain.pem"), p.intermediate.pem()).unwrap();
            }),
            file: "ca-cert.pem",
            check: |p| matches!(p, FileProblem::ChainBroken { reason, .. } if reason.contains("signature does not verify")),
        },
        Case {
            name: "two certificates in ca-cert.pem",
            breaks: Box::new(|d, p| {
                std::fs::write(
                    d.join("ca-cert.pem"),
                    format!("{}{}", p.intermediate.pem(), p.root.pem()),
                )
                .unwrap();
            }),
            file: "ca-cert.pem",
            check: |p| matches!(p, FileProblem::NotOneCertificate { count: 2 }),
        },
        Case {
            name: "corrupt DER in cert-chain.pem",
            breaks: Box::new(|d, p| {
                let bad = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
                std::fs::write(
                    d.join("cert-chain.pem"),
                    format!("{}{bad}", p.intermediate.pem()),
                )
                .unwrap();
            }),
            file: "cert-chain.pem",
            check: |p| matches!(p, FileProblem::BadCertificate { number: 2, .. }),
        },
        Case {
            name: "unterminated PEM in root-cert.pem",
            breaks: Box::new(|d, _| {
                std::fs::write(
                    d.join("root-cert.pem"),
                    "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n",
                )
                .unwrap();
            }),
            file: "root-cert.pem",
            check: |p| matches!(p, FileProblem::Pem(_)),
        },
    ];
    for case in cases {
        let tmp = tempfile::tempdir().unwrap();
        let plugin = PlugIn::new();
        plugin.write(tmp.path());
        (case.breaks)(tmp.path(), &plugin);
        let err = open(tmp.path()).expect_err(case.name);
        let message = err.to_string();
        eprintln!("{}: {message}", case.name);
        let (file, problem) = file_problem(err);
        assert_eq!(file, case.file, "{}: {message}", case.name);
        assert!(
            (case.check)(&problem),
            "{}: unexpected {message}",
            case.name
        );
        assert!(message.contains(case.file), "{}: {message}", case.name);
    }
}

#[test]
fn openssl_plug_in_with_pkcs1_rsa_key_loads_and_signs() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let tmp = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("openssl-ca-cert.pem", "ca-cert.pem"),
        ("openssl-ca-key.pem", "ca-key.pem"),
        ("openssl-root-cert.pem", "root-cert.pem"),
        ("openssl-cert-chain.pem", "cert-chain.pem"),
    ] {
        std::fs::copy(data.join(from), tmp.path().join(to)).unwrap();
    }
    let key_pem = std::fs::read_to_string(tmp.path().join("ca-key.pem")).unwrap();
    assert!(key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let ca = open(tmp.path()).unwrap();
    assert_eq!(ca.mode(), CaMode::PlugIn);

    let id = Identity::new(TD, "default", "productpage").unwrap();
    let csr = ringmesh_tls::generate_key_and_csr(&id).unwrap();
    let issued = ca
        .sign(&csr.csr_pem, &id, std::time::Duration::from_secs(600))
        .unwrap();
    let (_, leaf) = X509Certificate::from_der(issued.leaf()).unwrap();
    assert_eq!(
        leaf.signature_algorithm.algorithm,
        x509_parser::oid_registry::OID_PKCS1_SHA256WITHRSA
    );
    let bundle = ringmesh_tls::SharedTrustBundle::new(ca.trust_bundle().clone());
    let peer = ringmesh_tls::verify_svid(
        issued.leaf(),
        &issued.chain[1..],
        &bundle,
        TD,
        ringmesh_tls::Role::Client,
        rustls_pki_types::UnixTime::now(),
        &ringmesh_tls::provider(),
    )
    .unwrap();
    assert_eq!(peer, id);
}

#[test]
fn invalid_options_are_rejected_before_touching_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("never");
    let err = CaStore::open(&dir, CaOptions::new("Bad Domain")).unwrap_err();
    assert!(matches!(err, CaError::Config(_)), "{err}");
    let mut options = CaOptions::new(TD);
    options.default_ttl = options.max_ttl * 2;
    assert!(matches!(
        CaStore::open(&dir, options).unwrap_err(),
        CaError::Config(_)
    ));
    assert!(!dir.exists());
}

#[test]
fn ca_store_can_be_shared_across_threads() {
    fn check<T: Send + Sync>() {}
    check::<CaStore>();
}
