//! The mesh CA signing certificate requests (`ringmesh_ca::CaStore`), with
//! a CA created once per process (`CaStore::open` on a fresh temporary
//! directory, removed again once the material is loaded).
//!
//! Input: a mode byte, a TTL/identity byte, then the request:
//! - mode 0: the request as DER (`sign_der`);
//! - mode 1: the request as PEM text (`sign`);
//! - mode 2: a `CertificationRequestInfo` (DER) that the target signs with a
//!   fixed test key and wraps into a request, so that fuzzed subjects, SANs,
//!   extensions and attributes get past the self-signature check and reach
//!   the policy (`dropped`) and issuance code.
//!
//! Checks: never panics; an identity of another trust domain is always
//! refused; a zero TTL is refused; when a certificate is issued: it
//! certifies the request's own public key, has an empty subject, exactly one
//! SAN — the URI of the proven identity (never a requested one) — is not a
//! CA, lies within the signing chain's validity, and verifies as an
//! X.509-SVID of the proven identity (server and client) against the CA's
//! trust bundle.
#![no_main]

use std::{
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use libfuzzer_sys::fuzz_target;
use rcgen::{KeyPair, SigningKey};
use ringmesh_ca::{CaOptions, CaStore, Identity, IssuedCert, SignError};
use ringmesh_tls::{verify_svid, Role, SharedTrustBundle};
use rustls_pki_types::{pem::PemObject, CertificateSigningRequestDer, UnixTime};
use x509_parser::{
    certification_request::X509CertificationRequest,
    extensions::{GeneralName, ParsedExtension},
    prelude::FromDer,
};

const TRUST_DOMAIN: &str = "fuzz.test";

/// A fixed ECDSA P-256 test key (PKCS#8), so that mode-2 seeds carry its
/// public key in their `subjectPKInfo`. Test material, not a secret.
const REQUEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoFdB6V+Qz0L86j6x
PoMet3IK/easuYZ1ujBpQE0bQquhRANCAAQU8z4Fef1qaj6XezjpjZNgSn/tA5Eb
3mw2oGMegAgSIfH6lbPKZ6OQcj27IA0PpYdbWs0JWiNQNF2qAMumhkGq
-----END PRIVATE KEY-----
";

struct Fixture {
    ca: CaStore,
    key: KeyPair,
    proven: Identity,
    stranger: Identity,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = temp_dir();
        let ca = CaStore::open(&dir, CaOptions::new(TRUST_DOMAIN)).expect("the test CA opens");
        // Signing needs only what was loaded; leave no files behind.
        let _ = std::fs::remove_dir_all(&dir);
        Fixture {
            ca,
            key: KeyPair::from_pem(REQUEST_KEY_PEM).expect("the fixed test key loads"),
            proven: Identity::new(TRUST_DOMAIN, "default", "fuzz").expect("a valid identity"),
            stranger: Identity::new("other.test", "default", "fuzz").expect("a valid identity"),
        }
    })
}

fn temp_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("ringmesh-fuzz-ca-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

const TTLS: [Duration; 6] = [
    Duration::from_secs(3600),
    Duration::from_secs(24 * 3600),
    Duration::from_secs(1),
    Duration::from_secs(365 * 24 * 3600),
    Duration::from_secs(u64::MAX),
    Duration::ZERO,
];

fuzz_target!(|data: &[u8]| {
    let [mode, knobs, request @ ..] = data else {
        return;
    };
    let f = fixture();
    let ttl = TTLS[usize::from(knobs & 0x7f) % TTLS.len()];
    let identity = if knobs & 0x80 != 0 {
        &f.stranger
    } else {
        &f.proven
    };
    let (der, result) = match mode % 3 {
        0 => (request.to_vec(), f.ca.sign_der(request, identity, ttl)),
        1 => {
            let Ok(pem) = std::str::from_utf8(request) else {
                return;
            };
            // The DER inside, when there is one, for the checks below.
            let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
                .map(|d| d.as_ref().to_vec())
                .unwrap_or_default();
            (der, f.ca.sign(pem, identity, ttl))
        }
        _ => {
            let der = self_signed_request(&f.key, request);
            let result = f.ca.sign_der(&der, identity, ttl);
            (der, result)
        }
    };
    match result {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if identity == &f.stranger && !der.is_empty() {
                // The request is read before the identity is checked, so
                // only a well-formed one must fail for that reason.
                if X509CertificationRequest::from_der(&der).is_ok_and(|(rest, _)| rest.is_empty()) {
                    assert!(matches!(e, SignError::WrongTrustDomain { .. }), "{e}");
                }
            }
        }
        Ok(issued) => {
            assert!(identity == &f.proven, "issued for another trust domain");
            assert!(!ttl.is_zero(), "issued with a zero TTL");
            check_issued(f, &issued, &der);
        }
    }
});

fn check_issued(f: &Fixture, issued: &IssuedCert, request_der: &[u8]) {
    assert_eq!(issued.identity, f.proven);
    assert_eq!(issued.chain.first(), Some(issued.leaf()));
    assert!(issued.not_before < issued.not_after);
    assert!(issued.not_after <= f.ca.chain_not_after());

    let (rest, csr) =
        X509CertificationRequest::from_der(request_der).expect("the signed request parses");
    assert!(rest.is_empty());
    let (rest, leaf) = x509_parser::parse_x509_certificate(issued.leaf()).expect("the leaf parses");
    assert!(rest.is_empty());
    assert_eq!(
        leaf.public_key().raw,
        csr.certification_request_info.subject_pki.raw,
        "the leaf must certify the requester's key"
    );
    assert_eq!(
        leaf.subject().iter().count(),
        0,
        "the subject must be empty"
    );
    assert!(!leaf.is_ca());

    let mut sans = Vec::new();
    for ext in leaf.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            sans.extend(san.general_names.iter().map(|n| format!("{n:?}")));
            for name in &san.general_names {
                if let GeneralName::URI(uri) = name {
                    assert_eq!(
                        *uri,
                        f.proven.to_string(),
                        "the SAN must be the proven identity"
                    );
                }
            }
        }
    }
    assert_eq!(sans.len(), 1, "exactly one SAN, found {sans:?}");

    let bundle = SharedTrustBundle::new(f.ca.trust_bundle().clone());
    let provider = ringmesh_tls::provider();
    let now = UnixTime::now();
    for role in [Role::Server, Role::Client] {
        let verified = verify_svid(
            issued.leaf(),
            &issued.chain[1..],
            &bundle,
            TRUST_DOMAIN,
            role,
            now,
            &provider,
        );
        assert_eq!(
            verified.ok().as_ref(),
            Some(&f.proven),
            "{role:?} SVID check"
        );
    }
}

/// `SEQUENCE { info, AlgorithmIdentifier ecdsa-with-SHA256, BIT STRING
/// signature }`: a PKCS#10 request whose signature over the (fuzzed) info
/// bytes verifies with the fixed key.
fn self_signed_request(key: &KeyPair, info: &[u8]) -> Vec<u8> {
    // ecdsa-with-SHA256, 1.2.840.10045.4.3.2, without parameters.
    const ALG: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
    ];
    let signature = key.sign(info).expect("ECDSA signing");
    let mut bits = vec![0u8]; // no unused bits
    bits.extend_from_slice(&signature);
    let mut body = info.to_vec();
    body.extend_from_slice(ALG);
    body.extend(der_tlv(0x03, &bits));
    der_tlv(0x30, &body)
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}
