//! Serving certificates for the control plane's own HTTPS endpoints (the
//! admission webhook): DNS names, not SPIFFE identities, so they are never
//! made from a workload's CSR. The key is generated here and only handed
//! to the caller; the certificate chains to the mesh root, whose PEM is
//! the webhook configuration's `caBundle`.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{
    sign::{SignError, CLOCK_SKEW},
    store::{chain_pem, random_serial, CaStore},
    x509::{fmt_time, to_offset},
};

/// A TLS server certificate and its key.
pub struct ServingCert {
    /// Leaf first, then the CA's intermediates (empty for a self-signed
    /// root).
    pub chain: Vec<CertificateDer<'static>>,
    pub cert_chain_pem: String,
    pub key: PrivateKeyDer<'static>,
    pub not_after: SystemTime,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("chain", &self.chain.len())
            .field("not_after", &fmt_time(self.not_after))
            .finish_non_exhaustive()
    }
}

impl CaStore {
    /// Issues a server certificate (EKU serverAuth, ECDSA P-256 key made
    /// here) for `dns_names` (the first is also the subject CN), valid for
    /// `ttl` capped by the signing chain's expiry. Not for workloads:
    /// their certificates come from [`CaStore::sign`].
    pub fn issue_serving_cert(
        &self,
        dns_names: &[String],
        ttl: Duration,
    ) -> Result<ServingCert, SignError> {
        let now = SystemTime::now();
        if ttl.is_zero() {
            return Err(SignError::ZeroTtl);
        }
        let mut not_after = now.checked_add(ttl).unwrap_or(self.chain_not_after);
        if self.chain_not_after < not_after {
            not_after = self.chain_not_after;
        }
        if not_after <= now {
            return Err(SignError::ChainExpired {
                not_after: fmt_time(self.chain_not_after),
            });
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(SignError::Build)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(first) = dns_names.first() {
            dn.push(DnType::CommonName, first.as_str());
        }
        params.distinguished_name = dn;
        params.subject_alt_names = dns_names
            .iter()
            .map(|n| {
                n.clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(SignError::Build)
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(random_serial().map_err(SignError::Build)?);
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_offset(now - CLOCK_SKEW);
        params.not_after = to_offset(not_after);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(SignError::Build)?;
        let mut chain = Vec::with_capacity(1 + self.intermediates.len());
        chain.push(cert.der().clone());
        chain.extend(self.intermediates.iter().cloned());
        Ok(ServingCert {
            cert_chain_pem: chain_pem(&chain),
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_after: SystemTime::from(to_offset(not_after)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CaOptions;

    #[test]
    fn serving_certificates_name_the_service_and_chain_to_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaStore::open(dir.path(), CaOptions::new("cluster.local")).unwrap();
        let names = vec![
            "ringmesh-control.ringmesh-system.svc".to_string(),
            "ringmesh-control.ringmesh-system.svc.cluster.local".to_string(),
        ];
        let cert = ca
            .issue_serving_cert(&names, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(cert.chain.len(), 1);
        let (_, x) = x509_parser::parse_x509_certificate(&cert.chain[0]).unwrap();
        let sans: Vec<String> = x
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|g| g.to_string())
            .collect();
        assert_eq!(
            sans,
            [
                "DNSName(ringmesh-control.ringmesh-system.svc)",
                "DNSName(ringmesh-control.ringmesh-system.svc.cluster.local)"
            ]
        );
        assert!(!x.is_ca());
        let root = x509_parser::parse_x509_certificate(ca.signing_cert())
            .unwrap()
            .1;
        assert_eq!(x.issuer(), root.subject());
        x.verify_signature(Some(root.public_key())).unwrap();
        assert!(matches!(
            ca.issue_serving_cert(&names, Duration::ZERO),
            Err(SignError::ZeroTtl)
        ));
    }
}
