//! Test CAs built with rcgen, written in the data-directory layouts.
#![allow(dead_code)]

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

pub const TD: &str = "cluster.local";
pub const DAY: Duration = Duration::from_secs(86_400);

pub struct TestCa {
    pub cert: Certificate,
    pub params: CertificateParams,
    pub key: KeyPair,
}

impl TestCa {
    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

pub struct CaSpec<'a> {
    pub cn: &'a str,
    pub is_ca: bool,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub key_usages: Vec<KeyUsagePurpose>,
}

impl<'a> CaSpec<'a> {
    pub fn ca(cn: &'a str) -> Self {
        let now = SystemTime::now();
        CaSpec {
            cn,
            is_ca: true,
            not_before: now - DAY,
            not_after: now + 3650 * DAY,
            key_usages: vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
        }
    }

    pub fn valid(mut self, not_before: SystemTime, not_after: SystemTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    pub fn not_ca(mut self) -> Self {
        self.is_ca = false;
        self.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self
    }

    pub fn build(self, parent: Option<&TestCa>) -> TestCa {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, self.cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Test");
        params.is_ca = if self.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = self.key_usages;
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
        params.use_authority_key_identifier_extension = parent.is_some();
        let cert = match parent {
            Some(parent) => params.signed_by(&key, &parent.issuer()).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        TestCa { cert, params, key }
    }
}

/// A root and an intermediate signed by it, in Istio's `cacerts` layout.
pub struct PlugIn {
    pub root: TestCa,
    pub intermediate: TestCa,
}

impl PlugIn {
    pub fn new() -> Self {
        let root = CaSpec::ca("Plug-in Root").build(None);
        let intermediate = CaSpec::ca("Plug-in Intermediate").build(Some(&root));
        PlugIn { root, intermediate }
    }

    pub fn write(&self, dir: &Path) {
        std::fs::write(dir.join("ca-cert.pem"), self.intermediate.pem()).unwrap();
        std::fs::write(dir.join("ca-key.pem"), self.intermediate.key_pem()).unwrap();
        std::fs::write(dir.join("root-cert.pem"), self.root.pem()).unwrap();
        std::fs::write(
            dir.join("cert-chain.pem"),
            format!("{}{}", self.intermediate.pem(), self.root.pem()),
        )
        .unwrap();
    }
}
