//! Signing CSRs into X.509 SVIDs for identities the caller proved.
//!
//! The CSR contributes exactly one thing: its public key, after its
//! self-signature proves the requester holds the private key. Everything
//! else in the certificate is the CA's decision — the SAN is the proven
//! identity, never a requested one — and whatever the CSR asked for that
//! was not granted is listed in [`IssuedCert::dropped`] for the log.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    PublicKeyData, SanType,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, CertificateSigningRequestDer};
use x509_parser::{
    certification_request::X509CertificationRequest,
    cri_attributes::ParsedCriAttribute,
    extensions::{GeneralName, ParsedExtension, X509Extension},
    oid_registry::{OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE},
    prelude::FromDer,
};

use crate::{
    store::{chain_pem, random_serial, CaStore},
    x509::{fmt_time, key_kind, to_offset, verify_signature, KeyKind, SigProblem},
    Identity,
};

/// Allowance for clocks behind the CA's: certificates start this long
/// before they are signed.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Key usage names in [`Dropped::Extension`] details.
const KEY_CERT_SIGN: &str = "keyCertSign";
const CRL_SIGN: &str = "cRLSign";

/// Longest RSA key accepted (ring verifies up to 8192 bits).
const MAX_RSA_BITS: usize = 8192;

/// A signed workload certificate and what goes with it.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The identity in the certificate's only SAN.
    pub identity: Identity,
    /// Leaf first, then the intermediates up to (not including) the root.
    pub chain: Vec<CertificateDer<'static>>,
    /// [`IssuedCert::chain`] as PEM.
    pub cert_chain_pem: String,
    /// The roots the peer's chain must lead to, as PEM.
    pub trust_bundle_pem: String,
    /// Lowercase hex of the serial number.
    pub serial_hex: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Why the validity is shorter than requested, if it is.
    pub ttl_capped: Option<TtlCap>,
    /// What the CSR requested and did not get.
    pub dropped: Vec<Dropped>,
}

impl IssuedCert {
    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
}

/// What shortened a certificate's validity below the requested TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlCap {
    /// The configured maximum TTL.
    MaxTtl,
    /// The expiry of the signing certificate, an intermediate or the root.
    SigningChain,
}

/// A requested item that is not in the issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// The requested subject (issued certificates have an empty subject).
    Subject(String),
    /// A requested SAN other than the proven identity's URI.
    San(String),
    /// A requested extension, or the part of one, that was not granted.
    Extension { name: String, detail: String },
    /// A CSR attribute other than the extension request.
    Attribute(String),
}

impl Dropped {
    /// Whether this item claims something only a proof could grant: a SAN
    /// other than the proven identity (another SPIFFE ID, a DNS name, an
    /// IP) or CA authority (`cA=true`, keyCertSign, cRLSign). The signing
    /// API refuses such CSRs with PERMISSION_DENIED by default (see
    /// `ca.proto`); a requested subject, extra EKUs or key usages such as
    /// nonRepudiation and unknown extensions are only dropped.
    pub fn claims_unproven(&self) -> bool {
        match self {
            Dropped::San(_) => true,
            Dropped::Extension { name, detail } => {
                if *name == oid_name(&OID_X509_EXT_BASIC_CONSTRAINTS) {
                    // Only `cA=true` is ever reported for basicConstraints.
                    true
                } else if *name == oid_name(&OID_X509_EXT_KEY_USAGE) {
                    detail
                        .split(", ")
                        .any(|u| u == KEY_CERT_SIGN || u == CRL_SIGN)
                } else {
                    false
                }
            }
            Dropped::Subject(_) | Dropped::Attribute(_) => false,
        }
    }
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::Subject(s) => write!(f, "subject {s}"),
            Dropped::San(s) => write!(f, "SAN {s}"),
            Dropped::Extension { name, detail } if detail.is_empty() => {
                write!(f, "extension {name}")
            }
            Dropped::Extension { name, detail } => write!(f, "extension {name} ({detail})"),
            Dropped::Attribute(a) => write!(f, "attribute {a}"),
        }
    }
}

/// Why a CSR was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the proven identity {proven} is not in this CA's trust domain {ca:?}")]
    WrongTrustDomain { proven: Identity, ca: String },
    #[error("requested TTL must be greater than zero")]
    ZeroTtl,
    #[error("CSR is not valid PEM: {0}")]
    CsrPem(String),
    #[error("CSR is not a valid DER PKCS#10 request: {0}")]
    CsrDer(String),
    #[error("CSR key is {key}; ECDSA P-256 or RSA of 2048 to 8192 bits is required")]
    UnsupportedKey { key: String },
    #[error("CSR signature is invalid: {0}")]
    CsrSignature(String),
    #[error(
        "the signing chain expired at {not_after}; load a renewed CA (restart with new files)"
    )]
    ChainExpired { not_after: String },
    #[error("building the certificate failed: {0}")]
    Build(rcgen::Error),
}

impl CaStore {
    /// Signs a PEM CSR for `proven` (the identity the caller
    /// authenticated as) valid for `ttl`, capped by the configured
    /// maximum and by the signing chain's expiry.
    pub fn sign(
        &self,
        csr_pem: &str,
        proven: &Identity,
        ttl: Duration,
    ) -> Result<IssuedCert, SignError> {
        let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
            .map_err(|e| SignError::CsrPem(ringmesh_tls::pem_error_text(&e)))?;
        self.sign_der(der.as_ref(), proven, ttl)
    }

    /// [`CaStore::sign`] for a DER CSR.
    pub fn sign_der(
        &self,
        csr_der: &[u8],
        proven: &Identity,
        ttl: Duration,
    ) -> Result<IssuedCert, SignError> {
        self.sign_der_at(csr_der, proven, ttl, SystemTime::now())
    }

    fn sign_der_at(
        &self,
        csr_der: &[u8],
        proven: &Identity,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<IssuedCert, SignError> {
        if proven.trust_domain() != self.options.trust_domain {
            return Err(SignError::WrongTrustDomain {
                proven: proven.clone(),
                ca: self.options.trust_domain.clone(),
            });
        }
        if ttl.is_zero() {
            return Err(SignError::ZeroTtl);
        }
        let (rest, csr) = X509CertificationRequest::from_der(csr_der)
            .map_err(|e| SignError::CsrDer(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SignError::CsrDer("trailing bytes after the request".into()));
        }
        let info = &csr.certification_request_info;
        let spki = &info.subject_pki;
        match key_kind(spki) {
            KeyKind::EcP256 => {}
            KeyKind::Rsa { bits } if (2048..=MAX_RSA_BITS).contains(&bits) => {}
            other => {
                return Err(SignError::UnsupportedKey {
                    key: other.to_string(),
                })
            }
        }
        verify_signature(
            spki,
            &csr.signature_algorithm,
            &csr.signature_value.data,
            info.raw,
        )
        .map_err(|p| match p {
            SigProblem::Invalid => SignError::CsrSignature(
                "it does not verify with the request's own public key (tampered request, \
                     or the requester does not hold the private key)"
                    .into(),
            ),
            other => SignError::CsrSignature(other.to_string()),
        })?;

        let dropped = dropped_items(&csr, proven);

        let requested_end = now.checked_add(ttl);
        let max_end = now.checked_add(self.options.max_ttl);
        let mut not_after = requested_end.unwrap_or(self.chain_not_after);
        let mut ttl_capped = None;
        if let Some(max_end) = max_end {
            if max_end < not_after {
                not_after = max_end;
                ttl_capped = Some(TtlCap::MaxTtl);
            }
        }
        if self.chain_not_after < not_after {
            not_after = self.chain_not_after;
            ttl_capped = Some(TtlCap::SigningChain);
        }
        if not_after <= now {
            return Err(SignError::ChainExpired {
                not_after: fmt_time(self.chain_not_after),
            });
        }
        let not_before = now - CLOCK_SKEW;

        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki.raw).map_err(|e| {
            SignError::UnsupportedKey {
                key: format!("not encodable ({e})"),
            }
        })?;
        // The leaf carries exactly the requested key info. x509-parser reads
        // some encodings that are not DER (an algorithm OID under the wrong
        // tag); re-encoding those would certify bytes nobody asked for.
        if public_key.subject_public_key_info() != spki.raw {
            return Err(SignError::CsrDer(
                "the subjectPublicKeyInfo is not in DER".into(),
            ));
        }
        let serial = random_serial().map_err(SignError::Build)?;
        let serial_hex = serial
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();

        let mut params = CertificateParams::default();
        // Istio leaves the subject empty; rcgen then marks the SAN critical
        // (RFC 5280 §4.1.2.6).
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(
            proven.to_string().try_into().map_err(SignError::Build)?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_offset(not_before);
        params.not_after = to_offset(not_after);
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(SignError::Build)?;

        let mut chain = Vec::with_capacity(1 + self.intermediates.len());
        chain.push(cert.der().clone());
        chain.extend(self.intermediates.iter().cloned());
        Ok(IssuedCert {
            identity: proven.clone(),
            cert_chain_pem: chain_pem(&chain),
            chain,
            trust_bundle_pem: self.bundle.to_pem(),
            serial_hex,
            not_before: SystemTime::from(to_offset(not_before)),
            not_after: SystemTime::from(to_offset(not_after)),
            ttl_capped,
            dropped,
        })
    }
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(s) => format!("DNS:{s}"),
        GeneralName::URI(s) => format!("URI:{s}"),
        GeneralName::RFC822Name(s) => format!("email:{s}"),
        GeneralName::IPAddress(b) => match b.len() {
            4 => {
                let a: [u8; 4] = [b[0], b[1], b[2], b[3]];
                format!("IP:{}", std::net::Ipv4Addr::from(a))
            }
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                format!("IP:{}", std::net::Ipv6Addr::from(a))
            }
            _ => format!("IP:{b:02x?}"),
        },
        other => other.to_string(),
    }
}

fn oid_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

/// Everything the CSR requested beyond what is issued.
fn dropped_items(csr: &X509CertificationRequest<'_>, proven: &Identity) -> Vec<Dropped> {
    let info = &csr.certification_request_info;
    let mut dropped = Vec::new();
    if info.subject.iter().next().is_some() {
        dropped.push(Dropped::Subject(info.subject.to_string()));
    }
    let proven_uri = proven.to_string();
    for attr in info.attributes() {
        match attr.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(req) => {
                for ext in &req.extensions {
                    dropped_from_extension(ext, &proven_uri, &mut dropped);
                }
            }
            ParsedCriAttribute::ChallengePassword(_) => {
                dropped.push(Dropped::Attribute("challengePassword".into()))
            }
            ParsedCriAttribute::UnsupportedAttribute => {
                dropped.push(Dropped::Attribute(oid_name(&attr.oid)))
            }
        }
    }
    dropped
}

fn dropped_from_extension(ext: &X509Extension<'_>, proven_uri: &str, out: &mut Vec<Dropped>) {
    let ext_dropped = |detail: String| Dropped::Extension {
        name: oid_name(&ext.oid),
        detail,
    };
    match ext.parsed_extension() {
        ParsedExtension::SubjectAlternativeName(san) => {
            for name in &san.general_names {
                if !matches!(name, GeneralName::URI(u) if *u == proven_uri) {
                    out.push(Dropped::San(general_name(name)));
                }
            }
        }
        ParsedExtension::BasicConstraints(bc) => {
            if bc.ca {
                let detail = match bc.path_len_constraint {
                    Some(n) => format!("cA=true, pathLen={n}"),
                    None => "cA=true".to_owned(),
                };
                out.push(ext_dropped(detail));
            }
        }
        ParsedExtension::KeyUsage(ku) => {
            let extra: Vec<&str> = [
                (ku.non_repudiation(), "nonRepudiation"),
                (ku.data_encipherment(), "dataEncipherment"),
                (ku.key_agreement(), "keyAgreement"),
                (ku.key_cert_sign(), KEY_CERT_SIGN),
                (ku.crl_sign(), CRL_SIGN),
                (ku.encipher_only(), "encipherOnly"),
                (ku.decipher_only(), "decipherOnly"),
            ]
            .into_iter()
            .filter(|(set, _)| *set)
            .map(|(_, name)| name)
            .collect();
            if !extra.is_empty() {
                out.push(ext_dropped(extra.join(", ")));
            }
        }
        ParsedExtension::ExtendedKeyUsage(eku) => {
            let mut extra: Vec<String> = [
                (eku.any, "anyExtendedKeyUsage"),
                (eku.code_signing, "codeSigning"),
                (eku.email_protection, "emailProtection"),
                (eku.time_stamping, "timeStamping"),
                (eku.ocsp_signing, "OCSPSigning"),
            ]
            .into_iter()
            .filter(|(set, _)| *set)
            .map(|(_, name)| name.to_owned())
            .collect();
            extra.extend(eku.other.iter().map(oid_name));
            if !extra.is_empty() {
                out.push(ext_dropped(extra.join(", ")));
            }
        }
        _ => out.push(ext_dropped(String::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_items_read_well_in_logs() {
        assert_eq!(
            Dropped::San("DNS:evil.example".into()).to_string(),
            "SAN DNS:evil.example"
        );
        assert_eq!(
            Dropped::Extension {
                name: "basicConstraints".into(),
                detail: "cA=true".into()
            }
            .to_string(),
            "extension basicConstraints (cA=true)"
        );
        assert_eq!(
            Dropped::Extension {
                name: "1.2.3.4".into(),
                detail: String::new()
            }
            .to_string(),
            "extension 1.2.3.4"
        );
        assert_eq!(Dropped::Subject("CN=x".into()).to_string(), "subject CN=x");
    }
}
