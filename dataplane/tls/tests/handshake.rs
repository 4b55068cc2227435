//! Real rustls handshakes in memory between the mesh configs: what is
//! accepted, what is rejected and why, versions, ALPN, resumption and
//! live rotation of the SVID and the bundle.

mod support;

use std::{sync::Arc, time::SystemTime};

use rcgen::{BasicConstraints, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, SanType};
use ringmesh_tls::{
    client_config, peer_identity, server_config, svid_error, SpiffeClientVerifier,
    SpiffeServerVerifier, SvidError, ALPN_HTTP11, DEFAULT_ALPN,
};
use rustls::{
    pki_types::ServerName, CertificateError, ClientConnection, HandshakeKind, ProtocolVersion,
    ServerConnection,
};
use support::*;

fn server(
    mesh: &Mesh,
    resolver: Arc<ringmesh_tls::CertifiedKeyResolver>,
) -> Arc<rustls::ServerConfig> {
    server_config(resolver, mesh.bundle.clone(), TD, DEFAULT_ALPN).unwrap()
}

fn client(
    mesh: &Mesh,
    resolver: Arc<ringmesh_tls::CertifiedKeyResolver>,
    allowed: Vec<ringmesh_tls::SpiffeId>,
) -> Arc<rustls::ClientConfig> {
    client_config(resolver, mesh.bundle.clone(), TD, allowed, DEFAULT_ALPN).unwrap()
}

/// The rejecting side and its SPIFFE-level reason.
fn svid_rejection(
    result: Result<(ClientConnection, ServerConnection), (Side, rustls::Error)>,
) -> (Side, SvidError) {
    match result {
        Ok(_) => panic!("handshake succeeded"),
        Err((side, err)) => match svid_error(&err) {
            Some(e) => (side, e.clone()),
            None => panic!("{side:?} failed without an SVID error: {err:?}"),
        },
    }
}

fn cert_rejection(
    result: Result<(ClientConnection, ServerConnection), (Side, rustls::Error)>,
) -> (Side, CertificateError) {
    match result {
        Ok(_) => panic!("handshake succeeded"),
        Err((side, rustls::Error::InvalidCertificate(e))) => (side, e),
        Err((side, other)) => panic!("{side:?} failed with {other:?}"),
    }
}

#[test]
fn mutual_tls_succeeds_and_exposes_both_peer_ids() {
    let mesh = Mesh::new();
    let server_id = id("bookinfo", "reviews");
    let client_id = id("bookinfo", "productpage");
    let s_cfg = server(&mesh, mesh.resolver(&server_id));
    let c_cfg = client(&mesh, mesh.resolver(&client_id), vec![server_id.clone()]);
    let (mut c, mut s) = connect(&c_cfg, &s_cfg).unwrap();

    assert_eq!(peer_identity(&s), Some(client_id));
    assert_eq!(peer_identity(&c), Some(server_id));
    assert_eq!(c.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(s.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(
        send(&mut c, &mut s, b"GET / HTTP/1.1\r\n\r\n"),
        b"GET / HTTP/1.1\r\n\r\n"
    );
    assert_eq!(
        send(&mut s, &mut c, b"HTTP/1.1 200 OK\r\n\r\n"),
        b"HTTP/1.1 200 OK\r\n\r\n"
    );
}

#[test]
fn empty_allowed_set_accepts_any_workload_of_the_trust_domain() {
    let mesh = Mesh::new();
    let s_cfg = server(&mesh, mesh.resolver(&id("a", "anything")));
    let c_cfg = client(&mesh, mesh.resolver(&id("b", "caller")), vec![]);
    let (c, _) = connect(&c_cfg, &s_cfg).unwrap();
    assert_eq!(peer_identity(&c), Some(id("a", "anything")));
}

#[test]
fn server_not_in_the_allowed_set_is_rejected() {
    let mesh = Mesh::new();
    let s_cfg = server(&mesh, mesh.resolver(&id("default", "impostor")));
    let c_cfg = client(
        &mesh,
        mesh.resolver(&id("default", "caller")),
        vec![id("default", "reviews"), id("default", "reviews-v2")],
    );
    let (side, err) = svid_rejection(connect(&c_cfg, &s_cfg));
    assert_eq!(side, Side::Client);
    match err {
        SvidError::NotAllowed { peer, allowed } => {
            assert_eq!(peer, id("default", "impostor"));
            assert!(allowed.contains("sa/reviews-v2"), "{allowed}");
        }
        other => panic!("{other}"),
    }
}

/// A bad certificate presented by the client (checked by the server's
/// client verifier) and by the server (checked by the client's server
/// verifier) fails on the verifying side with `check`.
fn rejected_both_ways(
    mesh: &Mesh,
    params: &rcgen::CertificateParams,
    check: impl Fn(Side, &rustls::Error),
) {
    let bad = mesh.raw_resolver(params);
    // As the client certificate.
    let s_cfg = server(mesh, mesh.resolver(&id("default", "server")));
    let c_cfg = client(mesh, bad.clone(), vec![]);
    match connect(&c_cfg, &s_cfg) {
        Ok(_) => panic!("server accepted the client certificate"),
        Err((side, err)) => {
            assert_eq!(side, Side::Server, "{err:?}");
            check(side, &err);
        }
    }
    // As the server certificate.
    let s_cfg = server(mesh, bad);
    let c_cfg = client(mesh, mesh.resolver(&id("default", "client")), vec![]);
    match connect(&c_cfg, &s_cfg) {
        Ok(_) => panic!("client accepted the server certificate"),
        Err((side, err)) => {
            assert_eq!(side, Side::Client, "{err:?}");
            check(side, &err);
        }
    }
}

fn expect_svid(want: fn(&SvidError) -> bool) -> impl Fn(Side, &rustls::Error) {
    move |side, err| {
        let e = svid_error(err).unwrap_or_else(|| panic!("{side:?}: {err:?}"));
        assert!(want(e), "{side:?}: {e}");
    }
}

#[test]
fn leaf_with_ca_true_is_rejected() {
    let mesh = Mesh::new();
    let mut p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/ca");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    rejected_both_ways(&mesh, &p, expect_svid(|e| matches!(e, SvidError::LeafIsCa)));
}

#[test]
fn two_uri_sans_are_rejected() {
    let mesh = Mesh::new();
    let mut p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/one");
    p.subject_alt_names.push(SanType::URI(
        "spiffe://cluster.local/ns/default/sa/two"
            .try_into()
            .unwrap(),
    ));
    rejected_both_ways(
        &mesh,
        &p,
        expect_svid(|e| matches!(e, SvidError::MultipleUriSans { count: 2 })),
    );
}

#[test]
fn no_uri_san_is_rejected() {
    let mesh = Mesh::new();
    let mut p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/x");
    p.subject_alt_names = vec![SanType::DnsName("reviews.default.svc".try_into().unwrap())];
    rejected_both_ways(&mesh, &p, expect_svid(|e| matches!(e, SvidError::NoUriSan)));
}

#[test]
fn dns_sans_beside_the_uri_san_are_allowed() {
    let mesh = Mesh::new();
    let mut p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/web");
    p.subject_alt_names
        .push(SanType::DnsName("web.default.svc".try_into().unwrap()));
    let s_cfg = server(&mesh, mesh.raw_resolver(&p));
    let c_cfg = client(
        &mesh,
        mesh.resolver(&id("default", "client")),
        vec![id("default", "web")],
    );
    let (c, _) = connect(&c_cfg, &s_cfg).unwrap();
    assert_eq!(peer_identity(&c), Some(id("default", "web")));
}

#[test]
fn wrong_trust_domain_is_rejected() {
    let mesh = Mesh::new();
    let p = mesh.leaf_params("spiffe://other.domain/ns/default/sa/web");
    rejected_both_ways(
        &mesh,
        &p,
        expect_svid(
            |e| matches!(e, SvidError::WrongTrustDomain { found, .. } if found == "other.domain"),
        ),
    );
}

#[test]
fn non_workload_spiffe_paths_are_rejected() {
    let mesh = Mesh::new();
    let p = mesh.leaf_params("spiffe://cluster.local/payments/web");
    rejected_both_ways(
        &mesh,
        &p,
        expect_svid(|e| matches!(e, SvidError::BadSpiffeId { .. })),
    );
    let p = mesh.leaf_params("spiffe://cluster.local/ns/a%2Fb/sa/web");
    rejected_both_ways(
        &mesh,
        &p,
        expect_svid(|e| matches!(e, SvidError::BadSpiffeId { .. })),
    );
}

#[test]
fn server_auth_only_client_certificate_is_rejected() {
    let mesh = Mesh::new();
    let mut p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/web");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let s_cfg = server(&mesh, mesh.resolver(&id("default", "server")));
    let c_cfg = client(&mesh, mesh.raw_resolver(&p), vec![]);
    let (side, err) = svid_rejection(connect(&c_cfg, &s_cfg));
    assert_eq!(side, Side::Server);
    assert!(
        matches!(
            err,
            SvidError::MissingEku {
                required: "clientAuth"
            }
        ),
        "{err}"
    );

    // The same certificate is a fine server certificate.
    let s_cfg = server(&mesh, mesh.raw_resolver(&p));
    let c_cfg = client(&mesh, mesh.resolver(&id("default", "client")), vec![]);
    connect(&c_cfg, &s_cfg).unwrap();

    // And a client-auth-only certificate is no server certificate.
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let s_cfg = server(&mesh, mesh.raw_resolver(&p));
    let (side, err) = svid_rejection(connect(&c_cfg, &s_cfg));
    assert_eq!(side, Side::Client);
    assert!(
        matches!(
            err,
            SvidError::MissingEku {
                required: "serverAuth"
            }
        ),
        "{err}"
    );
}

#[test]
fn missing_eku_and_ca_key_usage_are_rejected() {
    let mesh = Mesh::new();
    let mut p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/web");
    p.extended_key_usages = vec![];
    rejected_both_ways(
        &mesh,
        &p,
        expect_svid(|e| matches!(e, SvidError::MissingEku { .. })),
    );

    let mut p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/web");
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    rejected_both_ways(
        &mesh,
        &p,
        expect_svid(|e| matches!(e, SvidError::BadKeyUsage { .. })),
    );

    let mut p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/web");
    p.key_usages = vec![];
    rejected_both_ways(
        &mesh,
        &p,
        expect_svid(|e| matches!(e, SvidError::BadKeyUsage { .. })),
    );
}

#[test]
fn expired_and_not_yet_valid_certificates_are_rejected() {
    let mesh = Mesh::new();
    let now = SystemTime::now();
    let mut p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/web");
    p.not_before = (now - 3 * HOUR).into();
    p.not_after = (now - HOUR).into();
    rejected_both_ways(&mesh, &p, |_, err| {
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ),
            "{err:?}"
        )
    });

    let mut p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/web");
    p.not_before = (now + HOUR).into();
    p.not_after = (now + 3 * HOUR).into();
    rejected_both_ways(&mesh, &p, |_, err| {
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })
            ),
            "{err:?}"
        )
    });
}

#[test]
fn certificate_from_an_unknown_ca_is_rejected() {
    let mesh = Mesh::new();
    let (params, key, _) = self_signed_root("Stranger Root");
    let stranger = Issuer::from_params(&params, &key);
    let p = mesh.leaf_params("spiffe://cluster.local/ns/default/sa/web");
    let bad = raw_resolver_signed_by(&p, &stranger);
    let s_cfg = server(&mesh, mesh.resolver(&id("default", "server")));
    let c_cfg = client(&mesh, bad, vec![]);
    let (side, err) = cert_rejection(connect(&c_cfg, &s_cfg));
    assert_eq!(side, Side::Server);
    assert_eq!(err, CertificateError::UnknownIssuer);
}

#[test]
fn tls12_only_peers_are_accepted() {
    let mesh = Mesh::new();
    let provider = ringmesh_tls::provider();
    // A TLS 1.2-only client with the mesh verifier against the mesh server.
    let c12 = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(
            mesh.bundle.clone(),
            TD,
            vec![],
            provider.clone(),
        )))
        .with_client_cert_resolver(mesh.resolver(&id("legacy", "client")));
    let s_cfg = server(&mesh, mesh.resolver(&id("default", "server")));
    let (mut c, mut s) = connect(&Arc::new(c12), &s_cfg).unwrap();
    assert_eq!(s.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(peer_identity(&s), Some(id("legacy", "client")));
    assert_eq!(peer_identity(&c), Some(id("default", "server")));
    assert_eq!(send(&mut c, &mut s, b"ping"), b"ping");

    // A TLS 1.2-only server against the mesh client.
    let s12 = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(
            mesh.bundle.clone(),
            TD,
            provider,
        )))
        .with_cert_resolver(mesh.resolver(&id("legacy", "server")));
    let c_cfg = client(&mesh, mesh.resolver(&id("default", "client")), vec![]);
    let (c, s) = connect(&c_cfg, &Arc::new(s12)).unwrap();
    assert_eq!(c.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(peer_identity(&c), Some(id("legacy", "server")));
    assert_eq!(peer_identity(&s), Some(id("default", "client")));
}

/// A TLS 1.1 ClientHello: legacy_version 3.2, no supported_versions
/// extension, ECDHE-ECDSA-AES128-SHA and ECDHE-RSA-AES128-SHA, with or
/// without a signature_algorithms extension (TLS 1.1 clients normally
/// send none; with one, rustls gets as far as the version check).
fn tls11_client_hello(with_sigalgs: bool) -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x09, 0xc0, 0x13]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    if with_sigalgs {
        // extensions: signature_algorithms = [ecdsa_secp256r1_sha256]
        body.extend_from_slice(&[0x00, 0x08, 0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03]);
    }
    let mut handshake = vec![0x01, 0x00, 0x00, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn tls11_client_hello_is_refused() {
    let mesh = Mesh::new();
    let s_cfg = server(&mesh, mesh.resolver(&id("default", "server")));
    for with_sigalgs in [true, false] {
        let mut s = ServerConnection::new(s_cfg.clone()).unwrap();
        s.read_tls(&mut &tls11_client_hello(with_sigalgs)[..])
            .unwrap();
        let err = s.process_new_packets().unwrap_err();
        if with_sigalgs {
            assert!(
                matches!(
                    err,
                    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
                ),
                "{err:?}"
            );
        } else {
            assert!(matches!(err, rustls::Error::PeerIncompatible(_)), "{err:?}");
        }
        // The server answers with a fatal alert and nothing else.
        let mut out = Vec::new();
        s.write_tls(&mut out).unwrap();
        assert_eq!(out[0], 0x15, "alert record: {out:02x?}");
        assert_eq!(out.len(), 7, "one alert record: {out:02x?}");
        if with_sigalgs {
            assert_eq!(&out[5..], &[2, 70], "fatal protocol_version: {out:02x?}");
        }
    }
}

#[test]
fn alpn_falls_back_to_http11() {
    let mesh = Mesh::new();
    let s_cfg = server(&mesh, mesh.resolver(&id("default", "server")));
    let c_cfg = client_config(
        mesh.resolver(&id("default", "client")),
        mesh.bundle.clone(),
        TD,
        vec![],
        &[ALPN_HTTP11],
    )
    .unwrap();
    let (c, _) = connect(&c_cfg, &s_cfg).unwrap();
    assert_eq!(c.alpn_protocol(), Some(ALPN_HTTP11));
}

#[test]
fn sessions_resume_and_still_expose_the_peer_identity() {
    let mesh = Mesh::new();
    let s_cfg = server(&mesh, mesh.resolver(&id("default", "server")));
    let c_cfg = client(
        &mesh,
        mesh.resolver(&id("default", "client")),
        vec![id("default", "server")],
    );
    let (mut c1, mut s1) = connect(&c_cfg, &s_cfg).unwrap();
    // TLS 1.3 tickets arrive after the handshake; let the client read them.
    assert_eq!(send(&mut c1, &mut s1, b"x"), b"x");
    assert_eq!(send(&mut s1, &mut c1, b"y"), b"y");
    let (c2, s2) = connect(&c_cfg, &s_cfg).unwrap();
    assert_eq!(c2.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(peer_identity(&c2), Some(id("default", "server")));
    assert_eq!(peer_identity(&s2), Some(id("default", "client")));
}

#[test]
fn rotated_svid_is_presented_on_the_next_handshake_while_old_connections_keep_working() {
    let mesh = Mesh::new();
    let server_id = id("default", "server");
    let first = mesh.svid(&server_id);
    let resolver = Arc::new(ringmesh_tls::CertifiedKeyResolver::from_svid(&first));
    let s_cfg = server(&mesh, resolver.clone());
    let client_resolver = mesh.resolver(&id("default", "client"));
    let c_cfg = client(&mesh, client_resolver.clone(), vec![server_id.clone()]);
    let (mut old_c, mut old_s) = connect(&c_cfg, &s_cfg).unwrap();
    assert_eq!(leaf_of(&old_c), first.certified_key.cert[0]);

    // Rotate both SVIDs under the live configs.
    let second = mesh.svid(&server_id);
    assert_ne!(second.certified_key.cert[0], first.certified_key.cert[0]);
    resolver.store(second.certified_key.clone());
    let client_second = mesh.svid(&id("default", "client"));
    client_resolver.store(client_second.certified_key.clone());

    // A full handshake (a client config with an empty session cache)
    // sees the new server certificate; the server sees the new client one.
    let fresh = client(&mesh, client_resolver.clone(), vec![server_id.clone()]);
    let (new_c, new_s) = connect(&fresh, &s_cfg).unwrap();
    assert_eq!(new_c.handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(leaf_of(&new_c), second.certified_key.cert[0]);
    assert_eq!(leaf_of(&new_s), client_second.certified_key.cert[0]);

    // The connection established before the rotation still carries data.
    assert_eq!(send(&mut old_c, &mut old_s, b"still here"), b"still here");
    assert_eq!(send(&mut old_s, &mut old_c, b"and back"), b"and back");
}

#[test]
fn trust_bundle_swap_applies_to_the_next_handshake() {
    let mesh = Mesh::new();
    let s_cfg = server(&mesh, mesh.resolver(&id("default", "server")));
    let c_cfg = client(&mesh, mesh.resolver(&id("default", "client")), vec![]);
    connect(&c_cfg, &s_cfg).unwrap();

    // Replace the bundle with an unrelated root: nothing verifies.
    let original = mesh.bundle.load_full();
    let (_, _, stranger_pem) = self_signed_root("Stranger Root");
    mesh.bundle
        .store(ringmesh_tls::TrustBundle::from_pem(stranger_pem.as_bytes()).unwrap());
    let fresh = client(&mesh, mesh.resolver(&id("default", "client")), vec![]);
    let (side, err) = cert_rejection(connect(&fresh, &s_cfg));
    assert_eq!((side, err), (Side::Client, CertificateError::UnknownIssuer));

    // Old and new roots together (a rotation in progress): verifies again.
    let mut both = (*original).clone();
    both.extend_pem(stranger_pem.as_bytes()).unwrap();
    mesh.bundle.store(both);
    let fresh = client(&mesh, mesh.resolver(&id("default", "client")), vec![]);
    connect(&fresh, &s_cfg).unwrap();
}

#[test]
fn configs_reject_bad_parameters() {
    let mesh = Mesh::new();
    let r = mesh.resolver(&id("default", "x"));
    assert!(matches!(
        server_config(r.clone(), mesh.bundle.clone(), "Bad TD", DEFAULT_ALPN),
        Err(ringmesh_tls::ConfigError::TrustDomain(_))
    ));
    assert!(matches!(
        client_config(
            r.clone(),
            mesh.bundle.clone(),
            TD,
            vec![ringmesh_tls::SpiffeId::new("elsewhere", "a", "b").unwrap()],
            DEFAULT_ALPN
        ),
        Err(ringmesh_tls::ConfigError::ForeignAllowedId { .. })
    ));
    assert!(matches!(
        client_config(r, mesh.bundle.clone(), TD, vec![], &[b""]),
        Err(ringmesh_tls::ConfigError::BadAlpn { index: 0 })
    ));
    let _ = ServerName::try_from("x").unwrap();
}
