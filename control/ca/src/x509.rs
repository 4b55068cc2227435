//! Certificate inspection helpers shared by loading and signing: public
//! key classification, signature checks with an explicit allowlist (no
//! SHA-1, no DSA), and time conversions.

use std::time::{Duration, SystemTime};

use ring::signature::{self, VerificationAlgorithm};
use time::OffsetDateTime;
use x509_parser::{
    oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
        OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
        OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
    },
    time::ASN1Time,
    x509::{AlgorithmIdentifier, SubjectPublicKeyInfo},
};

/// The kinds of public key this CA deals with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    EcP256,
    EcP384,
    Rsa { bits: usize },
    Other,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::EcP256 => f.write_str("ECDSA P-256"),
            KeyKind::EcP384 => f.write_str("ECDSA P-384"),
            KeyKind::Rsa { bits } => write!(f, "RSA {bits}-bit"),
            KeyKind::Other => f.write_str("an unsupported key type"),
        }
    }
}

pub(crate) fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> KeyKind {
    let alg = &spki.algorithm;
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        match alg.parameters.as_ref().and_then(|p| p.as_oid().ok()) {
            Some(curve) if curve == OID_EC_P256 => KeyKind::EcP256,
            Some(curve) if curve == OID_NIST_EC_P384 => KeyKind::EcP384,
            _ => KeyKind::Other,
        }
    } else if alg.algorithm == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => KeyKind::Rsa {
                bits: modulus_bits(rsa.modulus),
            },
            _ => KeyKind::Other,
        }
    } else {
        KeyKind::Other
    }
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let start = modulus
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(modulus.len());
    match modulus.get(start) {
        Some(first) => (modulus.len() - start - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SigProblem {
    /// Algorithm (or algorithm/key combination) outside the allowlist.
    Unsupported(String),
    /// The signature does not match.
    Invalid,
}

impl std::fmt::Display for SigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigProblem::Unsupported(what) => write!(f, "unsupported signature algorithm: {what}"),
            SigProblem::Invalid => f.write_str("signature does not verify"),
        }
    }
}

/// Verifies `signature` over `signed` by the key in `signer`, for the
/// algorithms this CA accepts: ECDSA with SHA-256/384 on P-256/P-384 and
/// RSA PKCS#1 v1.5 with SHA-256/384/512 on 2048–8192-bit keys.
pub(crate) fn verify_signature(
    signer: &SubjectPublicKeyInfo<'_>,
    algorithm: &AlgorithmIdentifier<'_>,
    signature: &[u8],
    signed: &[u8],
) -> Result<(), SigProblem> {
    let kind = key_kind(signer);
    let oid = &algorithm.algorithm;
    let alg: &'static dyn VerificationAlgorithm = match kind {
        KeyKind::EcP256 if *oid == OID_SIG_ECDSA_WITH_SHA256 => &signature::ECDSA_P256_SHA256_ASN1,
        KeyKind::EcP256 if *oid == OID_SIG_ECDSA_WITH_SHA384 => &signature::ECDSA_P256_SHA384_ASN1,
        KeyKind::EcP384 if *oid == OID_SIG_ECDSA_WITH_SHA256 => &signature::ECDSA_P384_SHA256_ASN1,
        KeyKind::EcP384 if *oid == OID_SIG_ECDSA_WITH_SHA384 => &signature::ECDSA_P384_SHA384_ASN1,
        KeyKind::Rsa { .. } if *oid == OID_PKCS1_SHA256WITHRSA => {
            &signature::RSA_PKCS1_2048_8192_SHA256
        }
        KeyKind::Rsa { .. } if *oid == OID_PKCS1_SHA384WITHRSA => {
            &signature::RSA_PKCS1_2048_8192_SHA384
        }
        KeyKind::Rsa { .. } if *oid == OID_PKCS1_SHA512WITHRSA => {
            &signature::RSA_PKCS1_2048_8192_SHA512
        }
        _ => {
            return Err(SigProblem::Unsupported(format!(
                "{} with {kind} key",
                oid_name(oid)
            )))
        }
    };
    let key = signature::UnparsedPublicKey::new(alg, &signer.subject_public_key.data);
    key.verify(signed, signature)
        .map_err(|_| SigProblem::Invalid)
}

fn oid_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

pub(crate) fn asn1_to_system(t: ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// `t` as an `OffsetDateTime` truncated to whole seconds (certificate
/// times have no fractions).
pub(crate) fn to_offset(t: SystemTime) -> OffsetDateTime {
    let t = OffsetDateTime::from(t);
    t.replace_nanosecond(0).unwrap_or(t)
}

/// RFC 3339-ish rendering for messages.
pub(crate) fn fmt_time(t: SystemTime) -> String {
    let t = to_offset(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_counts_significant_bits() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0x00]), 9);
        assert_eq!(modulus_bits(&[0x00, 0x00]), 0);
        let mut m = vec![0u8; 257];
        m[1] = 0xc3;
        assert_eq!(modulus_bits(&m), 2048);
    }

    #[test]
    fn formats_times() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 365 + 3661);
        assert_eq!(fmt_time(t), "1971-01-01T01:01:01Z");
    }
}
