//! Loading CA private keys from PEM. ring (and so rcgen on ring) only
//! reads PKCS#8, but operators' plug-in CA keys are often PKCS#1
//! (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) as openssl writes them;
//! those are wrapped into PKCS#8 here — a pure re-encoding, the key
//! material is unchanged.

use rcgen::KeyPair;
use rustls_pki_types::{pem::PemObject, PrivateKeyDer};

/// AlgorithmIdentifier { rsaEncryption, NULL }.
const ALG_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// AlgorithmIdentifier { id-ecPublicKey, prime256v1 }.
const ALG_EC_P256: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// AlgorithmIdentifier { id-ecPublicKey, secp384r1 }.
const ALG_EC_P384: &[u8] = &[
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
    0x00, 0x22,
];

/// One DER TLV with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// PrivateKeyInfo { version 0, algorithm, privateKey OCTET STRING }.
fn wrap_pkcs8(algorithm: &[u8], private_key: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(algorithm);
    body.extend_from_slice(&tlv(0x04, private_key));
    tlv(0x30, &body)
}

/// Parses the first private key block of `pem` into a signing key pair.
/// The error says what was found and what to do about it.
pub(crate) fn load_key_pair(pem: &[u8]) -> Result<KeyPair, String> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no unencrypted private key found (expected a PRIVATE KEY, EC PRIVATE KEY or \
             RSA PRIVATE KEY block; encrypted keys are not supported)"
                .to_owned()
        }
        other => format!("malformed PEM: {}", ringmesh_tls::pem_error_text(&other)),
    })?;
    let attempt = |der: Vec<u8>| KeyPair::try_from(der.as_slice()).ok();
    let pair = match &key {
        PrivateKeyDer::Pkcs8(k) => attempt(k.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Pkcs1(k) => attempt(wrap_pkcs8(ALG_RSA, k.secret_pkcs1_der())),
        PrivateKeyDer::Sec1(k) => attempt(wrap_pkcs8(ALG_EC_P256, k.secret_sec1_der()))
            .or_else(|| attempt(wrap_pkcs8(ALG_EC_P384, k.secret_sec1_der()))),
        _ => None,
    };
    pair.ok_or_else(|| {
        "the private key is not a valid ECDSA P-256/P-384, RSA or Ed25519 key (an EC key \
         needs its public key embedded, as openssl writes it)"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_use_the_long_form() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }

    #[test]
    fn reads_sec1_keys_by_wrapping_them() {
        // A P-256 PKCS#8 key from rcgen holds the SEC1 structure inside its
        // OCTET STRING; unwrap it, PEM it as SEC1 and load that.
        let original = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pkcs8 = original.serialize_der();
        // SEQUENCE(3 bytes of header) { INTEGER 0 (3), AlgorithmIdentifier
        // (21), OCTET STRING { ECPrivateKey } } with short lengths inside.
        assert_eq!(&pkcs8[3..6], &[0x02, 0x01, 0x00]);
        assert_eq!(&pkcs8[6..27], ALG_EC_P256);
        assert_eq!(pkcs8[27], 0x04);
        let sec1 = &pkcs8[29..];
        assert_eq!(sec1.len(), pkcs8[28] as usize);
        let pem = crate::pem_block("EC PRIVATE KEY", sec1);
        let loaded = load_key_pair(pem.as_bytes()).unwrap();
        assert_eq!(loaded.public_key_raw(), original.public_key_raw());
    }

    #[test]
    fn explains_missing_and_broken_keys() {
        let err = load_key_pair(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(err.contains("no unencrypted private key"), "{err}");
        let garbage = crate::pem_block("PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
        let err = load_key_pair(garbage.as_bytes()).unwrap_err();
        assert!(err.contains("not a valid"), "{err}");
    }
}
