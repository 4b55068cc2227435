//! The CA's signing material on disk: a self-signed root generated on
//! first start (or loaded on later starts), or an operator's plug-in CA
//! laid out as Istio's `cacerts` secret.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ringmesh_tls::{id::validate_trust_domain, TrustBundle};
use rustls_pki_types::{pem::PemObject, CertificateDer};
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

use crate::{
    fsutil,
    keys::load_key_pair,
    x509::{asn1_to_system, fmt_time, key_kind, to_offset, verify_signature, KeyKind},
};

/// Self-signed mode: the root certificate (also the trust bundle).
pub const ROOT_CERT: &str = "root-cert.pem";
/// Self-signed mode: the root's private key (mode 0600).
pub const ROOT_KEY: &str = "root-key.pem";
/// Plug-in mode: the CA certificate that signs workload certificates.
pub const CA_CERT: &str = "ca-cert.pem";
/// Plug-in mode: its private key.
pub const CA_KEY: &str = "ca-key.pem";
/// Plug-in mode: the chain from `ca-cert.pem` up to the root; it may start
/// with `ca-cert.pem` itself and end with the root (both are skipped).
pub const CERT_CHAIN: &str = "cert-chain.pem";
/// Extra roots appended to the trust bundle (root rotation), optional.
pub const TRUST_BUNDLE: &str = "trust-bundle.pem";

/// Longest validity of a generated root.
const MAX_ROOT_VALIDITY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Common name of a generated root.
pub const ROOT_COMMON_NAME: &str = "Ringmesh Root CA";

/// Validity periods and identity of the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaOptions {
    /// The SPIFFE trust domain; every issued certificate is for it.
    pub trust_domain: String,
    /// TTL the signing service uses when a caller asks for none (24 h, as
    /// Istio).
    pub default_ttl: Duration,
    /// Longest TTL ever issued; longer requests are capped (90 days, as
    /// Istio's maximum workload certificate TTL).
    pub max_ttl: Duration,
    /// Validity of a generated root (10 years).
    pub root_validity: Duration,
}

impl CaOptions {
    pub fn new(trust_domain: impl Into<String>) -> Self {
        CaOptions {
            trust_domain: trust_domain.into(),
            default_ttl: Duration::from_secs(24 * 3600),
            max_ttl: Duration::from_secs(90 * 24 * 3600),
            root_validity: Duration::from_secs(3650 * 24 * 3600),
        }
    }
}

/// Where the signing key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaMode {
    /// No CA material existed: a root was generated and written.
    GeneratedRoot,
    /// `root-cert.pem` + `root-key.pem` written by an earlier start.
    LoadedRoot,
    /// `ca-cert.pem` + `ca-key.pem` + `root-cert.pem` (+ `cert-chain.pem`).
    PlugIn,
}

/// A CA start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file of the data directory is missing, unreadable or wrong.
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: FileProblem },
    #[error("CA configuration: {0}")]
    Config(String),
    #[error("generating the root CA failed: {0}")]
    Generate(rcgen::Error),
}

/// What is wrong with a file. Certificate numbers count from 1 in file
/// order.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error("file is missing ({hint})")]
    Missing { hint: &'static str },
    #[error("cannot access the file: {0}")]
    Io(std::io::Error),
    #[error("malformed PEM: {0}")]
    Pem(String),
    #[error("contains no CERTIFICATE block")]
    NoCertificate,
    #[error("holds {count} certificates; exactly one is expected")]
    NotOneCertificate { count: usize },
    #[error("certificate {number} is not valid DER X.509: {reason}")]
    BadCertificate { number: usize, reason: String },
    #[error("{0}")]
    BadKey(String),
    #[error("private key does not match the public key of the certificate in {cert_file}")]
    KeyMismatch { cert_file: &'static str },
    #[error("certificate {number} ({subject}) is not a CA certificate: {reason}")]
    NotCa {
        number: usize,
        subject: String,
        reason: &'static str,
    },
    #[error("certificate {number} ({subject}) expired at {not_after}")]
    Expired {
        number: usize,
        subject: String,
        not_after: String,
    },
    #[error("certificate {number} ({subject}) is not valid before {not_before}")]
    NotYetValid {
        number: usize,
        subject: String,
        not_before: String,
    },
    #[error(
        "certificate {number} ({subject}) has {key}; CA keys must be ECDSA P-256/P-384 or RSA \
         with at least 2048 bits"
    )]
    UnsupportedKey {
        number: usize,
        subject: String,
        key: String,
    },
    #[error("certificate {number} ({subject}) is not self-signed: {reason}")]
    NotSelfSigned {
        number: usize,
        subject: String,
        reason: String,
    },
    #[error(
        "certificate {number} ({subject}) is a self-signed root that root-cert.pem does not \
         contain; add it there or remove it from this file"
    )]
    UnlistedRoot { number: usize, subject: String },
    #[error("certificate {number} ({subject}) is not issued by {issuer}: {reason}")]
    ChainBroken {
        number: usize,
        subject: String,
        issuer: String,
        reason: String,
    },
}

fn file_err(path: &Path, problem: FileProblem) -> CaError {
    CaError::File {
        path: path.to_owned(),
        problem,
    }
}

/// The CA: signing key and certificate, the intermediates that follow a
/// leaf in its chain, and the trust bundle. Immutable once opened, so it
/// can be shared (`Arc`) by concurrent signing requests.
pub struct CaStore {
    pub(crate) options: CaOptions,
    pub(crate) mode: CaMode,
    pub(crate) dir: PathBuf,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    pub(crate) signing_cert: CertificateDer<'static>,
    /// Certificates after the leaf in an issued chain: empty for a
    /// self-signed root; `ca-cert.pem` then the intermediates of
    /// `cert-chain.pem` in plug-in mode.
    pub(crate) intermediates: Vec<CertificateDer<'static>>,
    pub(crate) bundle: TrustBundle,
    /// The earliest expiry among the signing certificate, the
    /// intermediates and the root they chain to: no leaf outlives it.
    pub(crate) chain_not_after: SystemTime,
}

impl fmt::Debug for CaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaStore")
            .field("trust_domain", &self.options.trust_domain)
            .field("mode", &self.mode)
            .field("dir", &self.dir)
            .field("intermediates", &self.intermediates.len())
            .field("bundle", &self.bundle)
            .finish_non_exhaustive()
    }
}

/// Facts about one CA certificate, checked on load.
struct CaCertFacts {
    not_after: SystemTime,
}

impl CaStore {
    /// Opens the CA in `dir` (created with mode 0700 if missing):
    ///
    /// 1. `ca-cert.pem` or `ca-key.pem` present → plug-in mode; `ca-cert.pem`,
    ///    `ca-key.pem` and `root-cert.pem` are required, `cert-chain.pem`
    ///    is optional.
    /// 2. else `root-cert.pem` and `root-key.pem` → the self-signed root of
    ///    an earlier start.
    /// 3. else neither → generate an ECDSA P-256 root and write both
    ///    (key first, each atomically; the key with mode 0600).
    ///
    /// Then `trust-bundle.pem`, if present, is appended to the bundle.
    /// Everything is validated: the signing certificate is an unexpired CA
    /// whose key matches `*-key.pem`, the chain links up to a root by
    /// issuer name and signature; the error names the file and the problem.
    pub fn open(dir: impl AsRef<Path>, options: CaOptions) -> Result<Self, CaError> {
        Self::open_at(dir.as_ref(), options, SystemTime::now())
    }

    fn open_at(dir: &Path, options: CaOptions, now: SystemTime) -> Result<Self, CaError> {
        validate_trust_domain(&options.trust_domain).map_err(|e| {
            CaError::Config(format!(
                "trust domain {:?} is invalid: {e}",
                options.trust_domain
            ))
        })?;
        if options.default_ttl.is_zero() || options.max_ttl.is_zero() {
            return Err(CaError::Config(
                "default_ttl and max_ttl must be greater than zero".into(),
            ));
        }
        // Certificate times end at year 9999; a century is plenty.
        if options.root_validity.is_zero() || options.root_validity > MAX_ROOT_VALIDITY {
            return Err(CaError::Config(format!(
                "root_validity must be between 1s and {} days",
                MAX_ROOT_VALIDITY.as_secs() / 86_400
            )));
        }
        if options.default_ttl > options.max_ttl {
            return Err(CaError::Config(format!(
                "default_ttl ({}s) exceeds max_ttl ({}s)",
                options.default_ttl.as_secs(),
                options.max_ttl.as_secs()
            )));
        }
        fsutil::ensure_private_dir(dir).map_err(|e| file_err(dir, FileProblem::Io(e)))?;

        let exists = |name: &str| dir.join(name).exists();
        let mut store = if exists(CA_CERT) || exists(CA_KEY) {
            Self::load_plugin(dir, options, now)?
        } else if exists(ROOT_CERT) || exists(ROOT_KEY) {
            Self::load_root(dir, options, now, CaMode::LoadedRoot)?
        } else {
            generate_root(dir, &options, now)?;
            Self::load_root(dir, options, now, CaMode::GeneratedRoot)?
        };

        let extra_path = dir.join(TRUST_BUNDLE);
        if let Some(pem) = fsutil::read_optional(&extra_path)
            .map_err(|e| file_err(&extra_path, FileProblem::Io(e)))?
        {
            let extra = parse_certs(&extra_path, &pem)?;
            for (i, cert) in extra.into_iter().enumerate() {
                store.bundle.add(cert).map_err(|reason| {
                    file_err(
                        &extra_path,
                        FileProblem::BadCertificate {
                            number: i + 1,
                            reason,
                        },
                    )
                })?;
            }
        }
        Ok(store)
    }

    fn load_root(
        dir: &Path,
        options: CaOptions,
        now: SystemTime,
        mode: CaMode,
    ) -> Result<Self, CaError> {
        let cert_path = dir.join(ROOT_CERT);
        let key_path = dir.join(ROOT_KEY);
        // An interrupted first start writes the key before the certificate;
        // never generate over a key that may be in use elsewhere.
        let certs = read_certs(
            &cert_path,
            "root-key.pem exists without it: restore the certificate, or delete \
             root-key.pem to generate a new root (all workload certificates will change)",
        )?;
        let [root] = <[CertificateDer<'static>; 1]>::try_from(certs).map_err(|certs| {
            file_err(
                &cert_path,
                FileProblem::NotOneCertificate { count: certs.len() },
            )
        })?;
        let key = read_key(&key_path, "root-cert.pem exists without its key")?;
        let facts = check_ca_cert(&cert_path, 1, &root, now)?;
        check_key_matches(&key_path, ROOT_CERT, &key, &root)?;
        check_self_signed(&cert_path, &root)?;
        let issuer = Issuer::from_ca_cert_der(&root, key).map_err(CaError::Generate)?;
        let bundle = TrustBundle::from_der([root.clone()]).map_err(|e| {
            file_err(
                &cert_path,
                FileProblem::BadCertificate {
                    number: 1,
                    reason: e.to_string(),
                },
            )
        })?;
        Ok(CaStore {
            options,
            mode,
            dir: dir.to_owned(),
            issuer,
            signing_cert: root,
            intermediates: Vec::new(),
            bundle,
            chain_not_after: facts.not_after,
        })
    }

    fn load_plugin(dir: &Path, options: CaOptions, now: SystemTime) -> Result<Self, CaError> {
        let ca_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let root_path = dir.join(ROOT_CERT);
        let chain_path = dir.join(CERT_CHAIN);

        let ca_certs = read_certs(&ca_path, "a plug-in CA needs ca-cert.pem with ca-key.pem")?;
        let [ca_cert] = <[CertificateDer<'static>; 1]>::try_from(ca_certs).map_err(|certs| {
            file_err(
                &ca_path,
                FileProblem::NotOneCertificate { count: certs.len() },
            )
        })?;
        let key = read_key(&key_path, "a plug-in CA needs ca-key.pem with ca-cert.pem")?;
        let ca_facts = check_ca_cert(&ca_path, 1, &ca_cert, now)?;
        check_key_matches(&key_path, CA_CERT, &key, &ca_cert)?;

        let roots = read_certs(
            &root_path,
            "a plug-in CA needs the root certificate(s) its chain leads to",
        )?;
        let chain_file = match fsutil::read_optional(&chain_path)
            .map_err(|e| file_err(&chain_path, FileProblem::Io(e)))?
        {
            Some(pem) => parse_certs(&chain_path, &pem)?,
            None => Vec::new(),
        };

        // Intermediates between ca-cert and the root: cert-chain.pem minus
        // ca-cert itself and minus any root (roots travel in the bundle).
        let mut intermediates = Vec::new();
        for (i, cert) in chain_file.iter().enumerate() {
            if *cert == ca_cert || roots.contains(cert) {
                continue;
            }
            if parse(cert).is_some_and(|c| c.issuer().as_raw() == c.subject().as_raw()) {
                return Err(file_err(
                    &chain_path,
                    FileProblem::UnlistedRoot {
                        number: i + 1,
                        subject: subject_of(cert),
                    },
                ));
            }
            check_ca_cert(&chain_path, i + 1, cert, now)?;
            intermediates.push((i + 1, cert.clone()));
        }

        // Walk up: ca-cert → intermediates in order → one of the roots.
        let mut not_after = ca_facts.not_after;
        let mut child: (&Path, usize, &CertificateDer<'static>) = (&ca_path, 1, &ca_cert);
        for (number, cert) in &intermediates {
            issued_by(child, cert, &chain_path, *number)?;
            not_after = not_after.min(cert_not_after(cert));
            child = (&chain_path, *number, cert);
        }
        let anchor = roots
            .iter()
            .enumerate()
            .find(|(_, root)| issued_by(child, root, &root_path, 0).is_ok());
        let Some((root_index, root)) = anchor else {
            // Report against the first root for a concrete reason.
            if let Some(first) = roots.first() {
                issued_by(child, first, &root_path, 1)?;
            }
            return Err(file_err(
                child.0,
                FileProblem::ChainBroken {
                    number: child.1,
                    subject: subject_of(child.2),
                    issuer: "any certificate of root-cert.pem".into(),
                    reason: "no root matches".into(),
                },
            ));
        };
        let root_facts = check_ca_cert(&root_path, root_index + 1, root, now)?;
        not_after = not_after.min(root_facts.not_after);

        let issuer = Issuer::from_ca_cert_der(&ca_cert, key).map_err(CaError::Generate)?;
        let bundle = TrustBundle::from_der(roots.iter().cloned()).map_err(|e| {
            file_err(
                &root_path,
                FileProblem::BadCertificate {
                    number: 1,
                    reason: e.to_string(),
                },
            )
        })?;
        let mut chain = vec![ca_cert.clone()];
        chain.extend(intermediates.into_iter().map(|(_, c)| c));
        Ok(CaStore {
            options,
            mode: CaMode::PlugIn,
            dir: dir.to_owned(),
            issuer,
            signing_cert: ca_cert,
            intermediates: chain,
            bundle,
            chain_not_after: not_after,
        })
    }

    pub fn mode(&self) -> CaMode {
        self.mode
    }

    pub fn options(&self) -> &CaOptions {
        &self.options
    }

    pub fn trust_domain(&self) -> &str {
        &self.options.trust_domain
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The roots workloads trust: the CA's root(s) plus `trust-bundle.pem`.
    pub fn trust_bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// The certificate whose key signs workload certificates (the root in
    /// self-signed mode, `ca-cert.pem` in plug-in mode).
    pub fn signing_cert(&self) -> &CertificateDer<'static> {
        &self.signing_cert
    }

    /// When the signing chain expires; issued certificates never outlive it.
    pub fn chain_not_after(&self) -> SystemTime {
        self.chain_not_after
    }
}

fn generate_root(dir: &Path, options: &CaOptions, now: SystemTime) -> Result<(), CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Generate)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ROOT_COMMON_NAME);
    dn.push(DnType::OrganizationName, options.trust_domain.as_str());
    params.distinguished_name = dn;
    // pathLen 1: the root signs workload certificates directly today and
    // may later sign one level of intermediates (per cluster or per CA
    // replica) — but those intermediates cannot mint further CAs.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial().map_err(CaError::Generate)?);
    params.not_before = to_offset(now - Duration::from_secs(60));
    let not_after = now
        .checked_add(options.root_validity)
        .ok_or_else(|| CaError::Config("root_validity is too long".into()))?;
    params.not_after = to_offset(not_after);
    let cert = params.self_signed(&key).map_err(CaError::Generate)?;

    let key_path = dir.join(ROOT_KEY);
    let cert_path = dir.join(ROOT_CERT);
    fsutil::write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)
        .map_err(|e| file_err(&key_path, FileProblem::Io(e)))?;
    fsutil::write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)
        .map_err(|e| file_err(&cert_path, FileProblem::Io(e)))?;
    tracing::info!(
        dir = %dir.display(),
        trust_domain = %options.trust_domain,
        "generated a new self-signed root CA"
    );
    Ok(())
}

/// 128 random bits as a positive serial number.
pub(crate) fn random_serial() -> Result<SerialNumber, rcgen::Error> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let mut bytes = [0u8; 16];
    loop {
        rng.fill(&mut bytes)
            .map_err(|_| rcgen::Error::RingUnspecified)?;
        // Zero is not a positive serial; 2^-128 odds, but checking is free.
        if bytes.iter().any(|b| *b != 0) {
            return Ok(SerialNumber::from_slice(&bytes));
        }
    }
}

fn read_certs(
    path: &Path,
    missing_hint: &'static str,
) -> Result<Vec<CertificateDer<'static>>, CaError> {
    match fsutil::read_optional(path).map_err(|e| file_err(path, FileProblem::Io(e)))? {
        Some(pem) => parse_certs(path, &pem),
        None => Err(file_err(path, FileProblem::Missing { hint: missing_hint })),
    }
}

/// Every CERTIFICATE block of `pem`, each checked to be DER X.509.
fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, FileProblem::Pem(ringmesh_tls::pem_error_text(&e))))?;
    if certs.is_empty() {
        return Err(file_err(path, FileProblem::NoCertificate));
    }
    for (i, cert) in certs.iter().enumerate() {
        match X509Certificate::from_der(cert) {
            Ok(([], _)) => {}
            Ok(_) => {
                return Err(file_err(
                    path,
                    FileProblem::BadCertificate {
                        number: i + 1,
                        reason: "trailing bytes after the certificate".into(),
                    },
                ))
            }
            Err(e) => {
                return Err(file_err(
                    path,
                    FileProblem::BadCertificate {
                        number: i + 1,
                        reason: e.to_string(),
                    },
                ))
            }
        }
    }
    Ok(certs)
}

fn read_key(path: &Path, missing_hint: &'static str) -> Result<KeyPair, CaError> {
    let pem = fsutil::read_optional(path)
        .map_err(|e| file_err(path, FileProblem::Io(e)))?
        .ok_or_else(|| file_err(path, FileProblem::Missing { hint: missing_hint }))?;
    if fsutil::readable_by_others(path) {
        tracing::warn!(
            path = %path.display(),
            "CA private key is readable by group or others; chmod 600 it"
        );
    }
    load_key_pair(&pem).map_err(|reason| file_err(path, FileProblem::BadKey(reason)))
}

/// Parses a certificate already checked by [`parse_certs`].
fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    X509Certificate::from_der(der).ok().map(|(_, c)| c)
}

fn subject_of(der: &[u8]) -> String {
    parse(der)
        .map(|c| {
            let s = c.subject().to_string();
            if s.is_empty() {
                "empty subject".to_owned()
            } else {
                s
            }
        })
        .unwrap_or_else(|| "unparseable".to_owned())
}

fn cert_not_after(der: &[u8]) -> SystemTime {
    parse(der)
        .map(|c| asn1_to_system(c.validity().not_after))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A usable CA certificate: basicConstraints cA, keyCertSign when key
/// usage is present, a supported key, valid at `now`.
fn check_ca_cert(
    path: &Path,
    number: usize,
    der: &[u8],
    now: SystemTime,
) -> Result<CaCertFacts, CaError> {
    let cert = parse(der).ok_or_else(|| {
        file_err(
            path,
            FileProblem::BadCertificate {
                number,
                reason: "unparseable".into(),
            },
        )
    })?;
    let subject = subject_of(der);
    let not_ca = |reason| {
        file_err(
            path,
            FileProblem::NotCa {
                number,
                subject: subject.clone(),
                reason,
            },
        )
    };
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(Some(_)) => return Err(not_ca("basicConstraints has cA=false")),
        Ok(None) => return Err(not_ca("it has no basicConstraints extension")),
        Err(_) => return Err(not_ca("its basicConstraints extension is malformed")),
    }
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => {
            return Err(not_ca("its key usage lacks keyCertSign"))
        }
        Ok(_) => {}
        Err(_) => return Err(not_ca("its key usage extension is malformed")),
    }
    match key_kind(cert.public_key()) {
        KeyKind::EcP256 | KeyKind::EcP384 => {}
        KeyKind::Rsa { bits } if bits >= 2048 => {}
        other => {
            return Err(file_err(
                path,
                FileProblem::UnsupportedKey {
                    number,
                    subject,
                    key: other.to_string(),
                },
            ))
        }
    }
    let not_before = asn1_to_system(cert.validity().not_before);
    let not_after = asn1_to_system(cert.validity().not_after);
    if now >= not_after {
        return Err(file_err(
            path,
            FileProblem::Expired {
                number,
                subject,
                not_after: fmt_time(not_after),
            },
        ));
    }
    if now < not_before {
        return Err(file_err(
            path,
            FileProblem::NotYetValid {
                number,
                subject,
                not_before: fmt_time(not_before),
            },
        ));
    }
    Ok(CaCertFacts { not_after })
}

fn check_key_matches(
    key_path: &Path,
    cert_file: &'static str,
    key: &KeyPair,
    cert: &[u8],
) -> Result<(), CaError> {
    let matches = parse(cert)
        .is_some_and(|c| c.public_key().subject_public_key.data.as_ref() == key.public_key_raw());
    if matches {
        Ok(())
    } else {
        Err(file_err(key_path, FileProblem::KeyMismatch { cert_file }))
    }
}

fn check_self_signed(path: &Path, der: &[u8]) -> Result<(), CaError> {
    let cert = parse(der).ok_or_else(|| {
        file_err(
            path,
            FileProblem::BadCertificate {
                number: 1,
                reason: "unparseable".into(),
            },
        )
    })?;
    let reason = if cert.issuer().as_raw() != cert.subject().as_raw() {
        Some("its issuer differs from its subject".to_owned())
    } else {
        verify_signature(
            cert.public_key(),
            &cert.signature_algorithm,
            &cert.signature_value.data,
            cert.tbs_certificate.as_ref(),
        )
        .err()
        .map(|p| p.to_string())
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(file_err(
            path,
            FileProblem::NotSelfSigned {
                number: 1,
                subject: subject_of(der),
                reason,
            },
        )),
    }
}

/// Whether `child` (file, certificate number, DER) was issued by `parent`:
/// issuer name equals the parent's subject and the signature verifies with
/// the parent's key. The error is reported against the child's file.
fn issued_by(
    child: (&Path, usize, &CertificateDer<'static>),
    parent: &[u8],
    parent_path: &Path,
    parent_number: usize,
) -> Result<(), CaError> {
    let (child_path, child_number, child_der) = child;
    let broken = |reason: String| {
        let file = parent_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let issuer = if parent_number == 0 {
            format!("{} ({file})", subject_of(parent))
        } else {
            format!(
                "{} (certificate {parent_number} of {file})",
                subject_of(parent)
            )
        };
        file_err(
            child_path,
            FileProblem::ChainBroken {
                number: child_number,
                subject: subject_of(child_der),
                issuer,
                reason,
            },
        )
    };
    let (Some(child_cert), Some(parent_cert)) = (parse(child_der), parse(parent)) else {
        return Err(broken("unparseable certificate".into()));
    };
    if child_cert.issuer().as_raw() != parent_cert.subject().as_raw() {
        return Err(broken(format!("its issuer is {}", child_cert.issuer())));
    }
    verify_signature(
        parent_cert.public_key(),
        &child_cert.signature_algorithm,
        &child_cert.signature_value.data,
        child_cert.tbs_certificate.as_ref(),
    )
    .map_err(|p| broken(p.to_string()))
}

/// PEM of a chain of DER certificates.
pub(crate) fn chain_pem<'a>(
    certs: impl IntoIterator<Item = &'a CertificateDer<'static>>,
) -> String {
    certs
        .into_iter()
        .map(|c| ringmesh_tls::cert_to_pem(c))
        .collect()
}
