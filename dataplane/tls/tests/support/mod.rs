//! A mesh in memory: a CA (ringmesh-ca over a root made here, so tests can
//! also sign bad certificates with rcgen), SVIDs, and rustls connections
//! pumped through buffers.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    ops::DerefMut,
    sync::Arc,
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use ringmesh_ca::{CaOptions, CaStore};
use ringmesh_tls::{
    generate_key_and_csr, CertifiedKeyResolver, SharedTrustBundle, SpiffeId, Svid, TrustBundle,
};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
    sign::CertifiedKey,
    ClientConnection, ConnectionCommon, ServerConnection,
};

pub const TD: &str = "cluster.local";
pub const HOUR: Duration = Duration::from_secs(3600);

pub fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new(TD, ns, sa).unwrap()
}

pub struct Mesh {
    _dir: tempfile::TempDir,
    pub ca: CaStore,
    root_params: CertificateParams,
    root_key: KeyPair,
    pub bundle: SharedTrustBundle,
}

impl Mesh {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (root_params, root_key, root_pem) = self_signed_root("Test Mesh Root");
        std::fs::write(dir.path().join("root-cert.pem"), root_pem).unwrap();
        std::fs::write(dir.path().join("root-key.pem"), root_key.serialize_pem()).unwrap();
        let ca = CaStore::open(dir.path(), CaOptions::new(TD)).unwrap();
        let bundle = SharedTrustBundle::new(ca.trust_bundle().clone());
        Mesh {
            _dir: dir,
            ca,
            root_params,
            root_key,
            bundle,
        }
    }

    /// An SVID for `id` the way a proxy gets one: key + CSR here, signed
    /// by the CA.
    pub fn svid(&self, id: &SpiffeId) -> Svid {
        let req = generate_key_and_csr(id).unwrap();
        let issued = self.ca.sign(&req.csr_pem, id, HOUR).unwrap();
        Svid::from_pem(
            issued.cert_chain_pem.as_bytes(),
            req.key_pem.as_bytes(),
            TD,
            &ringmesh_tls::provider(),
        )
        .unwrap()
    }

    pub fn resolver(&self, id: &SpiffeId) -> Arc<CertifiedKeyResolver> {
        Arc::new(CertifiedKeyResolver::from_svid(&self.svid(id)))
    }

    /// Leaf parameters as the CA would issue them for `id`; tests mutate
    /// them into bad certificates.
    pub fn leaf_params(&self, uri: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
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

    /// The mesh root as an rcgen issuer, for certificates the CA would
    /// never sign.
    pub fn root_issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.root_params, &self.root_key)
    }

    /// A resolver presenting a certificate made from `params`, signed by
    /// the mesh root — no SVID checks on the way.
    pub fn raw_resolver(&self, params: &CertificateParams) -> Arc<CertifiedKeyResolver> {
        raw_resolver_signed_by(params, &self.root_issuer())
    }
}

pub fn raw_resolver_signed_by(
    params: &CertificateParams,
    issuer: &Issuer<'_, &KeyPair>,
) -> Arc<CertifiedKeyResolver> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let certified = CertifiedKey::from_der(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        &ringmesh_tls::provider(),
    )
    .unwrap();
    Arc::new(CertifiedKeyResolver::new(Arc::new(certified)))
}

pub fn self_signed_root(cn: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    params.not_before = (now - 24 * HOUR).into();
    params.not_after = (now + 24 * 365 * HOUR).into();
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

pub fn bundle_of(pem: &str) -> SharedTrustBundle {
    SharedTrustBundle::new(TrustBundle::from_pem(pem.as_bytes()).unwrap())
}

/// Which side's `process_new_packets` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

pub fn connect(
    client: &Arc<rustls::ClientConfig>,
    server: &Arc<rustls::ServerConfig>,
) -> Result<(ClientConnection, ServerConnection), (Side, rustls::Error)> {
    let name = ServerName::try_from("reviews.default.svc.cluster.local").unwrap();
    let mut c = ClientConnection::new(client.clone(), name).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    handshake(&mut c, &mut s)?;
    Ok((c, s))
}

/// Moves every pending TLS byte from `from` to `to` and lets `to`
/// process them; returns how many bytes moved.
pub fn transfer<A, B, DA, DB>(from: &mut A, to: &mut B) -> Result<usize, rustls::Error>
where
    A: DerefMut<Target = ConnectionCommon<DA>>,
    B: DerefMut<Target = ConnectionCommon<DB>>,
{
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets()?;
    }
    Ok(buf.len())
}

/// Pumps both directions until neither side has anything to say; the
/// first error wins, after its alert has been delivered to the peer.
pub fn handshake(
    c: &mut ClientConnection,
    s: &mut ServerConnection,
) -> Result<(), (Side, rustls::Error)> {
    for _ in 0..20 {
        let sent_c = match transfer(c, s) {
            Ok(n) => n,
            Err(e) => {
                let _ = transfer(s, c);
                return Err((Side::Server, e));
            }
        };
        let sent_s = match transfer(s, c) {
            Ok(n) => n,
            Err(e) => {
                let _ = transfer(c, s);
                return Err((Side::Client, e));
            }
        };
        if sent_c == 0 && sent_s == 0 && !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not settle in 20 rounds");
}

/// Sends `msg` from `from` to `to` over the established session and
/// returns what `to` read.
pub fn send<A, B, DA, DB>(from: &mut A, to: &mut B, msg: &[u8]) -> Vec<u8>
where
    A: DerefMut<Target = ConnectionCommon<DA>>,
    B: DerefMut<Target = ConnectionCommon<DB>>,
{
    from.writer().write_all(msg).unwrap();
    transfer(from, to).unwrap();
    let mut out = vec![0u8; msg.len()];
    to.reader().read_exact(&mut out).unwrap();
    out
}

pub fn leaf_of(conn: &rustls::CommonState) -> CertificateDer<'static> {
    conn.peer_certificates().unwrap()[0].clone()
}
