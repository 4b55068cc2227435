//! The proxy's side of the signing API (feature `grpc-client`): send a CSR with
//! the bearer credential, get the SVID chain and trust bundle back as PEM.
//!
//! One call opens its own connection: a proxy asks once per half-life of
//! its certificate, so a pooled channel would mostly sit idle.

use std::time::Duration;

use ringmesh_proto::ca::v1::{
    certificate_service_client::CertificateServiceClient, CreateCertificateRequest,
};
use rustls_pki_types::{pem::PemObject, CertificateDer};
use tonic::{
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
    Code, Request,
};

/// The metadata key of the caller's credential.
const AUTHORIZATION: &str = "authorization";

/// Longest wait for the TCP + HTTP/2 connection to the CA.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the CA's answer once connected.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no certificate came back.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("CA endpoint {endpoint:?} is not usable: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error(
        "the credential cannot be sent as gRPC metadata: {reason} (check the token file or \
         the token the control plane issued)"
    )]
    Token { reason: &'static str },
    #[error("cannot connect to the CA at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("certificate request to {endpoint} failed with {code:?}: {message}")]
    Status {
        endpoint: String,
        code: Code,
        message: String,
    },
    #[error("the CA at {endpoint} answered with an unusable {field}: {reason}")]
    BadResponse {
        endpoint: String,
        field: &'static str,
        reason: String,
    },
}

impl ClientError {
    /// The gRPC status code, when the CA (or the transport under the
    /// call) answered with one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the same request may succeed later (after a backoff): the
    /// CA was unreachable, busy, rate-limited or failing. A refused
    /// credential or CSR, or a bad endpoint, needs a fix first.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::Status { code, .. } => matches!(
                code,
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::Internal
                    | Code::Unknown
                    | Code::Cancelled
            ),
            ClientError::Endpoint { .. }
            | ClientError::Token { .. }
            | ClientError::BadResponse { .. } => false,
        }
    }
}

/// Sends `csr_pem` to the CA at `endpoint` (`http://host:port`) with
/// `token` as `authorization: Bearer <token>`, asking for `validity`
/// (whole seconds, a fraction rounds up; zero: the CA's default; the CA
/// caps it). Returns the certificate chain (leaf first) and the trust
/// bundle, one PEM certificate per entry, each checked to be exactly one
/// well-formed PEM certificate. Whether the leaf is a usable SVID for the
/// caller's key is for the caller to check when loading it (e.g.
/// `ringmesh_tls::Svid::from_pem`).
///
/// The token travels in clear over `http://`; TLS to the control plane is
/// not supported yet, so `https://` endpoints are refused rather than
/// half-working.
pub async fn request_certificate(
    endpoint: &str,
    token: &str,
    csr_pem: &str,
    validity: Duration,
) -> Result<(Vec<String>, Vec<String>), ClientError> {
    let target = parse_endpoint(endpoint)?;
    let token = token.trim();
    if token.is_empty() {
        return Err(ClientError::Token {
            reason: "it is empty",
        });
    }
    // http accepts any byte >= 0x80 in a header value; a token is
    // visible ASCII, and anything else would be refused by the CA anyway.
    let not_ascii = || ClientError::Token {
        reason: "it contains characters other than visible ASCII",
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(not_ascii());
    }
    let mut auth: MetadataValue<_> = format!("Bearer {token}").parse().map_err(|_| not_ascii())?;
    // HPACK never-index: keep the credential out of compression tables.
    auth.set_sensitive(true);

    let channel: Channel = target.connect().await.map_err(|e| ClientError::Connect {
        endpoint: endpoint.to_owned(),
        reason: error_chain(&e),
    })?;
    let mut request = Request::new(CreateCertificateRequest {
        csr: csr_pem.to_owned(),
        validity_duration: validity_secs(validity),
    });
    request.metadata_mut().insert(AUTHORIZATION, auth);
    let response = CertificateServiceClient::new(channel)
        .create_certificate(request)
        .await
        .map_err(|status| ClientError::Status {
            endpoint: endpoint.to_owned(),
            code: status.code(),
            message: status.message().to_owned(),
        })?
        .into_inner();

    let bad = |field, reason| ClientError::BadResponse {
        endpoint: endpoint.to_owned(),
        field,
        reason,
    };
    check_certs(&response.cert_chain).map_err(|r| bad("cert_chain", r))?;
    check_certs(&response.trust_bundle).map_err(|r| bad("trust_bundle", r))?;
    Ok((response.cert_chain, response.trust_bundle))
}

fn parse_endpoint(endpoint: &str) -> Result<Endpoint, ClientError> {
    let err = |reason: String| ClientError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let target = Endpoint::from_shared(endpoint.trim().to_owned())
        .map_err(|e| err(format!("not a URL ({})", error_chain(&e))))?;
    match target.uri().scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(err(
                "https is not supported yet (no TLS to the control plane); use http://".into(),
            ))
        }
        Some(other) => return Err(err(format!("scheme {other:?} is not http"))),
        None => return Err(err("it has no scheme; write it as http://host:port".into())),
    }
    if target.uri().host().is_none_or(str::is_empty) {
        return Err(err("it has no host; write it as http://host:port".into()));
    }
    Ok(target
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT))
}

/// `validity` in whole seconds for the wire, rounding a fraction up so
/// that a non-zero request never turns into "the CA's default".
fn validity_secs(validity: Duration) -> i64 {
    let secs = validity
        .as_secs()
        .saturating_add(u64::from(validity.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Each entry must be exactly one PEM certificate, and there must be one.
fn check_certs(entries: &[String]) -> Result<(), String> {
    if entries.is_empty() {
        return Err("it is empty".into());
    }
    for (i, pem) in entries.iter().enumerate() {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("entry {}: {}", i + 1, ringmesh_tls::pem_error_text(&e)))?;
        if certs.len() != 1 {
            return Err(format!(
                "entry {} holds {} PEM certificates; exactly one is expected",
                i + 1,
                certs.len()
            ));
        }
    }
    Ok(())
}

/// An error with its sources: tonic's transport error alone says only
/// "transport error".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_http_urls_with_a_host() {
        assert!(parse_endpoint("http://127.0.0.1:15012").is_ok());
        assert!(parse_endpoint("http://ringmesh-control.istio-system:15012").is_ok());
        for (endpoint, needle) in [
            ("https://ca:15012", "https is not supported"),
            ("127.0.0.1:15012", "no scheme"),
            ("ftp://ca:21", "is not http"),
            ("http://", "not a URL"),
            ("", "not a URL"),
            ("http://exa mple", "not a URL"),
        ] {
            let e = parse_endpoint(endpoint).unwrap_err().to_string();
            assert!(e.contains(needle), "{endpoint:?}: {e}");
            assert!(e.contains(&format!("{endpoint:?}")), "{e}");
        }
    }

    #[test]
    fn validity_rounds_fractions_up_and_saturates() {
        assert_eq!(validity_secs(Duration::ZERO), 0);
        assert_eq!(validity_secs(Duration::from_millis(1)), 1);
        assert_eq!(validity_secs(Duration::from_millis(3_500)), 4);
        assert_eq!(validity_secs(Duration::from_secs(3_600)), 3_600);
        assert_eq!(validity_secs(Duration::MAX), i64::MAX);
    }

    #[test]
    fn response_entries_must_each_be_one_certificate() {
        let cert = ringmesh_tls::cert_to_pem(&[0x30, 0x03, 0x02, 0x01, 0x01]);
        assert_eq!(check_certs(std::slice::from_ref(&cert)), Ok(()));
        assert_eq!(check_certs(&[]), Err("it is empty".into()));
        let two = format!("{cert}{cert}");
        assert!(check_certs(&[cert.clone(), two])
            .unwrap_err()
            .starts_with("entry 2 holds 2 PEM certificates"));
        assert!(check_certs(&["garbage".into()])
            .unwrap_err()
            .starts_with("entry 1 holds 0"));
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_before_connecting() {
        // Port 1 on loopback: nothing listens; the token check comes first.
        for (token, needle) in [
            ("  ", "it is empty"),
            ("tok\u{e9}n", "visible ASCII"),
            ("tok en", "visible ASCII"),
            ("tok\nen", "visible ASCII"),
        ] {
            let e = request_certificate("http://127.0.0.1:1", token, "csr", Duration::ZERO)
                .await
                .unwrap_err();
            assert!(matches!(e, ClientError::Token { .. }), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
            assert!(!e.is_retryable());
        }
    }
}
