//! CaStore::sign: the issued certificate inspected field by field, and
//! CSRs that ask for more than the proven identity.

mod support;

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use ringmesh_ca::{CaOptions, CaStore, Dropped, Identity, SignError, TtlCap};
use support::{CaSpec, PlugIn, DAY, TD};
use x509_parser::{
    certificate::X509Certificate,
    extensions::{GeneralName, ParsedExtension},
    oid_registry::{OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_SUBJECT_ALT_NAME},
    prelude::FromDer,
};

fn ca(dir: &Path) -> CaStore {
    CaStore::open(dir, CaOptions::new(TD)).unwrap()
}

fn id(ns: &str, sa: &str) -> Identity {
    Identity::new(TD, ns, sa).unwrap()
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn issued_leaf_has_exactly_the_svid_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ca(tmp.path());
    let proven = id("default", "reviews");
    let csr = ringmesh_tls::generate_key_and_csr(&proven).unwrap();
    let before = SystemTime::now();
    let issued = ca
        .sign(&csr.csr_pem, &proven, Duration::from_secs(3600))
        .unwrap();
    let after = SystemTime::now();

    assert_eq!(issued.identity, proven);
    assert!(issued.dropped.is_empty(), "{:?}", issued.dropped);
    assert_eq!(issued.ttl_capped, None);
    assert_eq!(
        issued.chain.len(),
        1,
        "a self-signed root signs leaves directly"
    );
    assert_eq!(
        issued.cert_chain_pem.matches("BEGIN CERTIFICATE").count(),
        1
    );
    assert_eq!(issued.trust_bundle_pem, ca.trust_bundle().to_pem());

    let (rest, leaf) = X509Certificate::from_der(issued.leaf()).unwrap();
    assert!(rest.is_empty());
    let (_, root) = X509Certificate::from_der(ca.signing_cert()).unwrap();

    // Subject empty, issuer the root, signature by the root.
    assert_eq!(leaf.subject().iter().count(), 0);
    assert_eq!(leaf.issuer().as_raw(), root.subject().as_raw());
    leaf.verify_signature(Some(root.public_key())).unwrap();
    assert_eq!(leaf.public_key().raw, {
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&csr.csr_der)
                .unwrap();
        req.certification_request_info.subject_pki.raw
    });

    // Exactly one SAN, a URI, critical because the subject is empty.
    let sans: Vec<_> = leaf
        .extensions()
        .iter()
        .filter(|e| e.oid == OID_X509_EXT_SUBJECT_ALT_NAME)
        .collect();
    assert_eq!(sans.len(), 1);
    assert!(sans[0].critical);
    let ParsedExtension::SubjectAlternativeName(san) = sans[0].parsed_extension() else {
        panic!("SAN does not parse")
    };
    assert_eq!(
        san.general_names,
        vec![GeneralName::URI(
            "spiffe://cluster.local/ns/default/sa/reviews"
        )]
    );

    // CA:false, critical.
    let bc = leaf.basic_constraints().unwrap().unwrap();
    assert!(bc.critical);
    assert!(!bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, None);

    // KU digitalSignature + keyEncipherment only.
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment());
    assert_eq!(ku.flags.count_ones(), 2);

    // EKU serverAuth + clientAuth only.
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!eku.any && !eku.code_signing && !eku.email_protection && eku.other.is_empty());

    // AKI = root's SKI.
    let ski = root
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    let aki = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(aki, ski);

    // Validity: one minute of skew allowance, then the TTL.
    let nb = leaf.validity().not_before.timestamp();
    let na = leaf.validity().not_after.timestamp();
    assert!(
        nb >= unix(before) - 61 && nb <= unix(after) - 59,
        "notBefore {nb}"
    );
    assert_eq!(na - nb, 3600 + 60);
    assert_eq!(unix(issued.not_before), nb);
    assert_eq!(unix(issued.not_after), na);

    // A random positive serial of 128 bits (16 or 17 DER bytes).
    let serial = leaf.raw_serial();
    assert!((15..=17).contains(&serial.len()), "{serial:?}");
    assert!(serial[0] < 0x80, "positive");
    let raw_hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        raw_hex.trim_start_matches('0'),
        issued.serial_hex.trim_start_matches('0')
    );
    let other = ca
        .sign(&csr.csr_pem, &proven, Duration::from_secs(3600))
        .unwrap();
    assert_ne!(other.serial_hex, issued.serial_hex);

    // And it is a valid SVID both ways.
    let bundle = ringmesh_tls::SharedTrustBundle::new(ca.trust_bundle().clone());
    for role in [ringmesh_tls::Role::Server, ringmesh_tls::Role::Client] {
        let peer = ringmesh_tls::verify_svid(
            issued.leaf(),
            &[],
            &bundle,
            TD,
            role,
            rustls_pki_types::UnixTime::now(),
            &ringmesh_tls::provider(),
        )
        .unwrap();
        assert_eq!(peer, proven);
    }
}

/// A CSR asking for everything an attacker would want.
fn greedy_csr(key: &KeyPair) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "admin");
    params.subject_alt_names = vec![
        SanType::URI(
            "spiffe://cluster.local/ns/istio-system/sa/admin"
                .try_into()
                .unwrap(),
        ),
        SanType::DnsName("evil.example".try_into().unwrap()),
        SanType::IpAddress("10.0.0.1".parse().unwrap()),
    ];
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(3));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::CodeSigning,
    ];
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 99999, 1],
        vec![0x05, 0x00],
    )];
    params.serialize_request(key).unwrap().pem().unwrap()
}

#[test]
fn greedy_csr_gets_only_the_proven_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ca(tmp.path());
    let key = KeyPair::generate().unwrap();
    let proven = id("default", "sleep");
    let issued = ca
        .sign(&greedy_csr(&key), &proven, Duration::from_secs(600))
        .unwrap();

    let (_, leaf) = X509Certificate::from_der(issued.leaf()).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        san.general_names,
        vec![GeneralName::URI(
            "spiffe://cluster.local/ns/default/sa/sleep"
        )]
    );
    assert_eq!(leaf.subject().iter().count(), 0);
    assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
    assert!(!leaf.key_usage().unwrap().unwrap().value.key_cert_sign());
    assert!(
        !leaf
            .extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .code_signing
    );
    let oids: Vec<String> = leaf
        .extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .collect();
    assert!(
        !oids.contains(&"1.3.6.1.4.1.99999.1".to_owned()),
        "{oids:?}"
    );
    assert_eq!(
        leaf.extensions()
            .iter()
            .filter(|e| e.oid == OID_X509_EXT_BASIC_CONSTRAINTS)
            .count(),
        1
    );
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );

    let dropped: Vec<String> = issued.dropped.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        dropped,
        // In the CSR's extension order (rcgen writes key usage first).
        vec![
            "subject CN=admin",
            "extension keyUsage (keyCertSign)",
            "SAN URI:spiffe://cluster.local/ns/istio-system/sa/admin",
            "SAN DNS:evil.example",
            "SAN IP:10.0.0.1",
            "extension extendedKeyUsage (codeSigning)",
            "extension basicConstraints (cA=true, pathLen=3)",
            "extension 1.3.6.1.4.1.99999.1",
        ],
    );
    // What the signing API refuses outright: unproven SANs and CA
    // authority; the rest is only dropped.
    let claims: Vec<String> = issued
        .dropped
        .iter()
        .filter(|d| d.claims_unproven())
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        claims,
        vec![
            "extension keyUsage (keyCertSign)",
            "SAN URI:spiffe://cluster.local/ns/istio-system/sa/admin",
            "SAN DNS:evil.example",
            "SAN IP:10.0.0.1",
            "extension basicConstraints (cA=true, pathLen=3)",
        ],
    );
}

#[test]
fn csr_for_the_proven_identity_drops_nothing_and_ca_false_is_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ca(tmp.path());
    let key = KeyPair::generate().unwrap();
    let proven = id("default", "web");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(proven.to_string().try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let issued = ca.sign(&csr, &proven, Duration::from_secs(600)).unwrap();
    assert_eq!(issued.dropped, Vec::<Dropped>::new());
}

#[test]
fn csr_with_a_broken_signature_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ca(tmp.path());
    let proven = id("default", "web");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::DnsName("aaaa.example".try_into().unwrap())];
    let csr = params.serialize_request(&key).unwrap();
    let der = csr.der().to_vec();

    // Altered content under the original signature.
    let at = der.windows(4).position(|w| w == b"aaaa").unwrap();
    let mut altered = der.clone();
    altered[at..at + 4].copy_from_slice(b"bbbb");
    let err = ca
        .sign_der(&altered, &proven, Duration::from_secs(600))
        .unwrap_err();
    assert!(matches!(err, SignError::CsrSignature(_)), "{err}");
    assert!(
        err.to_string().contains("does not hold the private key"),
        "{err}"
    );

    // Altered signature: flip a bit inside the ECDSA r value.
    let mut flipped = der.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0x01;
    let err = ca
        .sign_der(&flipped, &proven, Duration::from_secs(600))
        .unwrap_err();
    assert!(matches!(err, SignError::CsrSignature(_)), "{err}");

    // Someone else's key in the request with this signature: swap the
    // public key of another CSR in.
    let other = KeyPair::generate().unwrap();
    let spliced = {
        let mine = key.public_key_raw();
        let at = der.windows(mine.len()).position(|w| w == mine).unwrap();
        let mut d = der.clone();
        d[at..at + mine.len()].copy_from_slice(other.public_key_raw());
        d
    };
    let err = ca
        .sign_der(&spliced, &proven, Duration::from_secs(600))
        .unwrap_err();
    assert!(matches!(err, SignError::CsrSignature(_)), "{err}");

    // The untouched request signs fine.
    ca.sign_der(&der, &proven, Duration::from_secs(600))
        .unwrap();
}

#[test]
fn weak_or_unsupported_csr_keys_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ca(tmp.path());
    let proven = id("default", "web");
    for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
        let key = KeyPair::generate_for(alg).unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let err = ca
            .sign(&csr, &proven, Duration::from_secs(600))
            .unwrap_err();
        assert!(matches!(err, SignError::UnsupportedKey { .. }), "{err}");
    }

    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let read = |name: &str| std::fs::read_to_string(data.join(name)).unwrap();
    // RSA 2048 with SHA-256 (openssl-made): accepted.
    let issued = ca
        .sign(&read("csr-rsa2048.pem"), &proven, Duration::from_secs(600))
        .unwrap();
    let (_, leaf) = X509Certificate::from_der(issued.leaf()).unwrap();
    assert_eq!(
        leaf.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION
    );
    // RSA 1024: too small.
    let err = ca
        .sign(&read("csr-rsa1024.pem"), &proven, Duration::from_secs(600))
        .unwrap_err();
    assert!(
        matches!(&err, SignError::UnsupportedKey { key } if key.contains("1024")),
        "{err}"
    );
    // SHA-1 signature: refused.
    let err = ca
        .sign(
            &read("csr-rsa2048-sha1.pem"),
            &proven,
            Duration::from_secs(600),
        )
        .unwrap_err();
    assert!(
        matches!(&err, SignError::CsrSignature(m) if m.contains("unsupported signature algorithm")),
        "{err}"
    );
}

#[test]
fn bad_requests_are_rejected_with_their_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ca(tmp.path());
    let proven = id("default", "web");
    let csr = ringmesh_tls::generate_key_and_csr(&proven).unwrap();

    let foreign = Identity::new("other.domain", "default", "web").unwrap();
    assert!(matches!(
        ca.sign(&csr.csr_pem, &foreign, Duration::from_secs(600)),
        Err(SignError::WrongTrustDomain { .. })
    ));
    assert!(matches!(
        ca.sign(&csr.csr_pem, &proven, Duration::ZERO),
        Err(SignError::ZeroTtl)
    ));
    assert!(matches!(
        ca.sign("not pem", &proven, Duration::from_secs(600)),
        Err(SignError::CsrPem(_))
    ));
    assert!(matches!(
        ca.sign_der(b"\x30\x03\x02\x01\x00", &proven, Duration::from_secs(600)),
        Err(SignError::CsrDer(_))
    ));
    let mut trailing = csr.csr_der.to_vec();
    trailing.push(0);
    assert!(matches!(
        ca.sign_der(&trailing, &proven, Duration::from_secs(600)),
        Err(SignError::CsrDer(_))
    ));
}

#[test]
fn ttl_is_capped_by_the_maximum_and_by_the_signing_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_store = ca(tmp.path());
    let proven = id("default", "web");
    let csr = ringmesh_tls::generate_key_and_csr(&proven).unwrap();
    let issued = ca_store.sign(&csr.csr_pem, &proven, 200 * DAY).unwrap();
    assert_eq!(issued.ttl_capped, Some(TtlCap::MaxTtl));
    let life = unix(issued.not_after) - unix(issued.not_before);
    assert_eq!(life, 90 * 86_400 + 60);

    // A plug-in intermediate that expires in two hours caps a 24 h TTL.
    let tmp = tempfile::tempdir().unwrap();
    let mut plugin = PlugIn::new();
    let now = SystemTime::now();
    plugin.intermediate = CaSpec::ca("Short")
        .valid(now - DAY, now + Duration::from_secs(7200))
        .build(Some(&plugin.root));
    plugin.write(tmp.path());
    let short = CaStore::open(tmp.path(), CaOptions::new(TD)).unwrap();
    let issued = short.sign(&csr.csr_pem, &proven, DAY).unwrap();
    assert_eq!(issued.ttl_capped, Some(TtlCap::SigningChain));
    assert_eq!(unix(issued.not_after), unix(short.chain_not_after()));
    let (_, ca_cert) = X509Certificate::from_der(short.signing_cert()).unwrap();
    assert_eq!(
        unix(issued.not_after),
        ca_cert.validity().not_after.timestamp()
    );
    assert_eq!(issued.chain.len(), 2);
    assert_eq!(
        issued.chain[1].as_ref(),
        plugin.intermediate.cert.der().as_ref()
    );

    // Huge requests do not overflow.
    let issued = ca_store.sign(&csr.csr_pem, &proven, Duration::MAX).unwrap();
    assert_eq!(issued.ttl_capped, Some(TtlCap::MaxTtl));
}

/// `SEQUENCE { info, ecdsa-with-SHA256, BIT STRING signature }`, signed by
/// `key` over `info` whatever `info` holds.
fn signed_request(key: &KeyPair, info: &[u8]) -> Vec<u8> {
    use rcgen::SigningKey;
    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match value.len() {
            n @ 0..=0x7f => out.push(n as u8),
            n @ 0x80..=0xff => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(value);
        out
    }
    const ECDSA_WITH_SHA256: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
    ];
    let mut bits = vec![0];
    bits.extend(key.sign(info).unwrap());
    let mut body = info.to_vec();
    body.extend_from_slice(ECDSA_WITH_SHA256);
    body.extend(tlv(0x03, &bits));
    tlv(0x30, &body)
}

/// Found by the `csr_sign` fuzz target
/// (`fuzz/regressions/csr_sign/spki-oid-wrong-tag`): a request whose
/// subjectPublicKeyInfo is not DER — the algorithm OID under tag 0 instead
/// of 6, which x509-parser reads anyway — was signed, and the leaf carried
/// a re-encoded key info instead of the requested bytes.
#[test]
fn regression_key_info_that_is_not_der_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ca(tmp.path());
    let proven = id("default", "reviews");
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let der = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    // The CertificationRequestInfo: the first element of the outer SEQUENCE.
    let (_, request) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
    let info = request.certification_request_info.raw.to_vec();

    // Re-signed as it is, the request is fine.
    let ok = ca.sign_der(
        &signed_request(&key, &info),
        &proven,
        Duration::from_secs(3600),
    );
    assert!(ok.is_ok(), "{:?}", ok.err());

    // idEcPublicKey (1.2.840.10045.2.1) under tag 0.
    const EC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let at = info
        .windows(EC_KEY_OID.len())
        .position(|w| w == EC_KEY_OID)
        .unwrap();
    let mut bad = info.clone();
    bad[at] = 0x00;
    let err = ca
        .sign_der(
            &signed_request(&key, &bad),
            &proven,
            Duration::from_secs(3600),
        )
        .unwrap_err();
    assert!(matches!(err, SignError::CsrDer(_)), "{err}");
    assert!(err.to_string().contains("not in DER"), "{err}");
}
