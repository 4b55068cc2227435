//! Loading SVIDs, generating keys and CSRs, and trust bundle operations.

mod support;

use std::time::Duration;

use ringmesh_tls::{
    generate_key_and_csr, BundleError, Svid, SvidError, SvidLoadError, TrustBundle,
};
use support::*;
use x509_parser::{
    certification_request::X509CertificationRequest, extensions::GeneralName, prelude::FromDer,
};

#[test]
fn svid_loads_with_its_identity_and_refresh_time() {
    let mesh = Mesh::new();
    let svid = mesh.svid(&id("default", "web"));
    assert_eq!(svid.id, id("default", "web"));
    let life = svid.not_after.duration_since(svid.not_before).unwrap();
    assert_eq!(life, HOUR + Duration::from_secs(60));
    assert_eq!(svid.refresh_at(), svid.not_before + life / 2);
    assert_eq!(svid.certified_key.cert.len(), 1);
}

#[test]
fn svid_load_errors_say_what_is_wrong() {
    let mesh = Mesh::new();
    let provider = ringmesh_tls::provider();
    let me = id("default", "web");
    let req = generate_key_and_csr(&me).unwrap();
    let issued = mesh.ca.sign(&req.csr_pem, &me, HOUR).unwrap();
    let chain = issued.cert_chain_pem.as_bytes();

    let other = generate_key_and_csr(&me).unwrap();
    let err = Svid::from_pem(chain, other.key_pem.as_bytes(), TD, &provider).unwrap_err();
    assert!(matches!(err, SvidLoadError::KeyMismatch), "{err}");

    let err = Svid::from_pem(b"", req.key_pem.as_bytes(), TD, &provider).unwrap_err();
    assert!(matches!(err, SvidLoadError::NoCertificate), "{err}");

    let err = Svid::from_pem(chain, b"no key here", TD, &provider).unwrap_err();
    assert!(matches!(err, SvidLoadError::KeyPem(_)), "{err}");

    let err = Svid::from_pem(chain, req.key_pem.as_bytes(), "other.domain", &provider).unwrap_err();
    assert!(
        matches!(
            err,
            SvidLoadError::NotAnSvid(SvidError::WrongTrustDomain { .. })
        ),
        "{err}"
    );

    // The CA's own certificate is no SVID.
    let root_pem = ringmesh_tls::cert_to_pem(mesh.ca.signing_cert());
    let err =
        Svid::from_pem(root_pem.as_bytes(), req.key_pem.as_bytes(), TD, &provider).unwrap_err();
    assert!(
        matches!(err, SvidLoadError::NotAnSvid(SvidError::LeafIsCa)),
        "{err}"
    );

    // A server-only certificate cannot be a sidecar's SVID.
    let mut p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/web");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &mesh.root_issuer()).unwrap();
    let err = Svid::from_pem(
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        TD,
        &provider,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            SvidLoadError::NotAnSvid(SvidError::MissingEku {
                required: "clientAuth"
            })
        ),
        "{err}"
    );
}

#[test]
fn generated_csr_asks_for_the_identity_with_a_fresh_p256_key() {
    let me = id("prod", "checkout");
    let a = generate_key_and_csr(&me).unwrap();
    let b = generate_key_and_csr(&me).unwrap();
    assert_ne!(a.key_der.secret_pkcs8_der(), b.key_der.secret_pkcs8_der());
    assert!(a.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(a.csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    assert!(
        !format!("{a:?}").contains(&a.key_pem),
        "Debug must not print the key"
    );

    let (rest, csr) = X509CertificationRequest::from_der(&a.csr_der).unwrap();
    assert!(rest.is_empty());
    let info = &csr.certification_request_info;
    assert_eq!(info.subject.iter().count(), 0);
    assert_eq!(
        info.subject_pki
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap(),
        x509_parser::oid_registry::OID_EC_P256
    );
    let sans: Vec<_> = csr
        .requested_extensions()
        .unwrap()
        .filter_map(|e| match e {
            x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) => {
                Some(san.general_names.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        sans,
        vec![vec![GeneralName::URI(
            "spiffe://cluster.local/ns/prod/sa/checkout"
        )]]
    );
    // rustls can use the key.
    ringmesh_tls::provider()
        .key_provider
        .load_private_key(a.private_key())
        .unwrap();
}

#[test]
fn trust_bundle_add_remove_and_pem_round_trip() {
    let (_, _, a_pem) = self_signed_root("Root A");
    let (_, _, b_pem) = self_signed_root("Root B");
    let mut bundle = TrustBundle::from_pem(a_pem.as_bytes()).unwrap();
    assert_eq!(bundle.len(), 1);
    assert_eq!(bundle.extend_pem(b_pem.as_bytes()).unwrap(), 1);
    assert_eq!(
        bundle
            .extend_pem(format!("{a_pem}{b_pem}").as_bytes())
            .unwrap(),
        0
    );
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle.anchors().len(), 2);

    let round = TrustBundle::from_pem(bundle.to_pem().as_bytes()).unwrap();
    assert_eq!(round.certs(), bundle.certs());

    let a_der = bundle.certs()[0].clone();
    assert!(bundle.contains(&a_der));
    assert!(bundle.remove(&a_der));
    assert!(!bundle.remove(&a_der));
    assert!(!bundle.contains(&a_der));
    assert_eq!(bundle.len(), 1);
    assert_eq!(bundle.anchors().len(), 1);
    assert!(bundle.add(a_der.clone()).unwrap());
    assert!(!bundle.add(a_der).unwrap());

    assert!(matches!(
        TrustBundle::from_pem(b"nothing"),
        Err(BundleError::Empty)
    ));
    assert!(matches!(
        TrustBundle::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
        Err(BundleError::Pem(_))
    ));
    let junk = ringmesh_tls::cert_to_pem(&[0x30, 0x03, 0x02, 0x01, 0x00]);
    assert!(matches!(
        TrustBundle::from_pem(format!("{a_pem}{junk}").as_bytes()),
        Err(BundleError::BadRoot { index: 1, .. })
    ));
    // A failed extend leaves the bundle as it was.
    let before = bundle.certs().to_vec();
    assert!(bundle
        .extend_pem(format!("{b_pem}{junk}").as_bytes())
        .is_err());
    assert_eq!(bundle.certs(), &before[..]);
}

#[test]
fn serial_is_the_leaf_serial_in_hex() {
    let mesh = Mesh::new();
    let me = id("default", "web");
    let req = generate_key_and_csr(&me).unwrap();
    let issued = mesh.ca.sign(&req.csr_pem, &me, HOUR).unwrap();
    let svid = Svid::from_pem(
        issued.cert_chain_pem.as_bytes(),
        req.key_pem.as_bytes(),
        TD,
        &ringmesh_tls::provider(),
    )
    .unwrap();
    // The CA's rendering may keep leading zero bytes; ours drops them.
    assert_eq!(
        svid.serial_hex(),
        issued.serial_hex.trim_start_matches("00")
    );
    assert_eq!(
        ringmesh_tls::serial_hex(issued.leaf()).as_deref(),
        Some(svid.serial_hex().as_str())
    );
    assert_eq!(ringmesh_tls::serial_hex(b"not a certificate"), None);
}
