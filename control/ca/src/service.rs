//! The `ringmesh.ca.v1.CertificateService` gRPC service (feature `grpc`):
//! a CSR in, the X.509 SVID chain and the trust bundle out, for the
//! identity the caller's bearer credential proves. Add [`ca_service`] to
//! the control plane's tonic server:
//!
//! ```no_run
//! # async fn f(store: std::sync::Arc<ringmesh_ca::CaStore>, data_dir: &std::path::Path,
//! #            l: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ringmesh_ca::{ca_service, ServiceOptions, TokenAuthority};
//!
//! let tokens = Arc::new(TokenAuthority::open(data_dir)?);
//! tonic::transport::Server::builder()
//!     .add_service(ca_service(store, tokens, ServiceOptions::default()))
//!     .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! One request, in order: the bearer token is taken from the
//! `authorization` metadata and authenticated; the arguments are checked;
//! the caller's identity is charged one request against its rate limit;
//! the CSR is signed for the authenticated identity (never one the CSR
//! names); under [`CsrPolicy::Strict`] a CSR that claimed more than the
//! credential proves is refused and its certificate discarded unsent.
//! Authentication and signing run on tokio's blocking pool: signing is
//! CPU work (an RSA-8192 CSR takes milliseconds to verify) and an
//! [`Authenticator`] may block on a remote check.
//!
//! Status codes (as `proto/ringmesh/ca/v1/ca.proto` documents them):
//!
//! | code | when |
//! | --- | --- |
//! | UNAUTHENTICATED | no `authorization: Bearer <token>`, or the credential is rejected (malformed, forged, expired, other key) |
//! | UNAVAILABLE | the authenticator cannot check credentials right now (retry) |
//! | PERMISSION_DENIED | the CSR claims another SPIFFE ID, an extra SAN or CA authority (strict policy), or the credential's identity is outside this CA's trust domain |
//! | INVALID_ARGUMENT | the CSR is not a valid, self-signed PKCS#10 PEM with an accepted key, or `validity_duration` is negative |
//! | RESOURCE_EXHAUSTED | the identity exceeded its rate limit; the message says when to retry |
//! | INTERNAL | the CA cannot sign (expired signing chain, certificate building failed); details only in the CA's log |
//!
//! Every issuance is logged at info (identity, serial, not-after, what
//! the CSR asked for and did not get); every refusal at warn. Tokens are
//! never logged.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    net::SocketAddr,
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use ringmesh_proto::ca::v1::{
    certificate_service_server::{CertificateService, CertificateServiceServer},
    CreateCertificateRequest, CreateCertificateResponse,
};
use tonic::{metadata::MetadataMap, Code, Request, Response, Status};

use crate::{
    sign::{IssuedCert, SignError, TtlCap},
    token::{AuthError, Authenticator},
    x509::fmt_time,
    CaStore, Dropped, Identity,
};

/// The metadata key of the caller's credential.
pub const AUTHORIZATION: &str = "authorization";

/// What to send, for UNAUTHENTICATED answers.
const SEND_HINT: &str = "send gRPC metadata `authorization: Bearer <token>` with a bootstrap \
                         token issued by the control plane (`ringmesh-control token`) or, in \
                         Kubernetes, the pod's service-account token";

/// Largest CSR accepted, in bytes of PEM. An RSA-8192 CSR is about 2.5 KiB.
pub const DEFAULT_MAX_CSR_BYTES: usize = 64 * 1024;

/// At most `max` certificate requests per identity in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: NonZeroU32,
    pub per: Duration,
}

impl RateLimit {
    /// `max` requests per `per`.
    pub fn new(max: NonZeroU32, per: Duration) -> Self {
        RateLimit { max, per }
    }
}

impl Default for RateLimit {
    /// 10 per minute: a proxy asks once per half-life of its certificate
    /// (12 h by default), plus retries and restarts.
    fn default() -> Self {
        RateLimit {
            max: NonZeroU32::MIN.saturating_add(9),
            per: Duration::from_secs(60),
        }
    }
}

/// What to do with a CSR that claims more than the credential proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsrPolicy {
    /// Refuse with PERMISSION_DENIED a CSR asking for a SAN other than the
    /// proven identity (another SPIFFE ID, a DNS name, an IP) or for CA
    /// authority (`cA=true`, keyCertSign, cRLSign), as `ca.proto`
    /// documents. Other requested items (a subject, extra EKUs or key
    /// usages, unknown extensions) are dropped and logged.
    #[default]
    Strict,
    /// Sign every valid CSR for the proven identity and drop (and log)
    /// whatever else it asked for.
    DropUnproven,
}

/// Policy of the signing service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOptions {
    /// Per-identity bound on requests, so a leaked credential cannot mint
    /// certificates without limit; `None` disables it. Every request that
    /// passes authentication counts, signed or not.
    pub rate_limit: Option<RateLimit>,
    pub csr_policy: CsrPolicy,
    /// Longer CSRs are refused with INVALID_ARGUMENT before parsing.
    pub max_csr_bytes: usize,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            rate_limit: Some(RateLimit::default()),
            csr_policy: CsrPolicy::default(),
            max_csr_bytes: DEFAULT_MAX_CSR_BYTES,
        }
    }
}

/// The `CertificateService` implementation over one [`CaStore`] and one
/// [`Authenticator`]. Cheap to clone; clones share the rate limiter.
#[derive(Clone)]
pub struct CaService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<CaStore>,
    auth: Arc<dyn Authenticator>,
    options: ServiceOptions,
    limiter: Limiter,
}

impl fmt::Debug for CaService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaService")
            .field("store", &self.inner.store)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// The signing service over `store`, authenticating callers with `auth`,
/// ready to add to a tonic server.
pub fn ca_service(
    store: Arc<CaStore>,
    auth: Arc<dyn Authenticator>,
    options: ServiceOptions,
) -> CertificateServiceServer<CaService> {
    CaService::new(store, auth, options).into_server()
}

impl CaService {
    pub fn new(store: Arc<CaStore>, auth: Arc<dyn Authenticator>, options: ServiceOptions) -> Self {
        let limiter = Limiter::new(options.rate_limit, Instant::now());
        CaService {
            inner: Arc::new(Inner {
                store,
                auth,
                options,
                limiter,
            }),
        }
    }

    /// The tonic service.
    pub fn into_server(self) -> CertificateServiceServer<Self> {
        CertificateServiceServer::new(self)
    }
}

/// A request the service does not grant: the status to answer and, for
/// the log, who asked.
#[derive(Debug)]
struct Refusal {
    code: Code,
    message: String,
    identity: Option<Identity>,
}

impl Refusal {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            identity: None,
        }
    }

    fn of(mut self, identity: &Identity) -> Self {
        self.identity = Some(identity.clone());
        self
    }
}

/// The bearer token of `metadata`'s single `authorization` value.
fn bearer_token(metadata: &MetadataMap) -> Result<&str, Refusal> {
    let mut values = metadata.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Refusal::new(
            Code::Unauthenticated,
            format!("missing credential: {SEND_HINT}"),
        ));
    };
    let malformed = |what: &str| {
        Refusal::new(
            Code::Unauthenticated,
            format!("malformed `authorization` metadata ({what}): {SEND_HINT}"),
        )
    };
    if values.next().is_some() {
        return Err(malformed("more than one value"));
    }
    let value = value.to_str().map_err(|_| malformed("not visible ASCII"))?;
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Err(malformed("expected `Bearer <token>`"));
    };
    // Auth schemes are case-insensitive (RFC 9110 §11.1).
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed("the scheme is not `Bearer`"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(malformed("the token is empty"));
    }
    Ok(token)
}

impl Inner {
    /// Authenticate, check, charge the rate limit, sign. Blocking.
    fn issue(
        &self,
        bearer: &str,
        csr: &str,
        validity_secs: i64,
        now: Instant,
    ) -> Result<IssuedCert, Refusal> {
        let identity = self.auth.authenticate(bearer).map_err(|e| match e {
            AuthError::Unavailable { .. } => Refusal::new(Code::Unavailable, e.to_string()),
            AuthError::Token(_) | AuthError::Rejected { .. } => {
                Refusal::new(Code::Unauthenticated, e.to_string())
            }
        })?;
        let invalid = |message: String| Refusal::new(Code::InvalidArgument, message).of(&identity);

        let ttl = match u64::try_from(validity_secs) {
            Ok(0) => self.store.options().default_ttl,
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => {
                return Err(invalid(format!(
                    "validity_duration is {validity_secs}; it must be a number of seconds \
                     >= 0 (0: the CA's default of {}s)",
                    self.store.options().default_ttl.as_secs()
                )))
            }
        };
        if csr.trim().is_empty() {
            return Err(invalid(
                "csr is empty; send a PEM PKCS#10 request (-----BEGIN CERTIFICATE \
                 REQUEST-----)"
                    .into(),
            ));
        }
        if csr.len() > self.options.max_csr_bytes {
            return Err(invalid(format!(
                "csr is {} bytes; at most {} are accepted",
                csr.len(),
                self.options.max_csr_bytes
            )));
        }

        if let Err(retry_in) = self.limiter.admit(&identity, now) {
            let limit = self.options.rate_limit.unwrap_or_default();
            return Err(Refusal::new(
                Code::ResourceExhausted,
                format!(
                    "{identity} made {} certificate requests in the last {}s, the limit; \
                     retry in {}s",
                    limit.max,
                    limit.per.as_secs(),
                    retry_in.as_secs() + u64::from(retry_in.subsec_nanos() > 0)
                ),
            )
            .of(&identity));
        }

        let issued = self
            .store
            .sign(csr, &identity, ttl)
            .map_err(|e| sign_refusal(e).of(&identity))?;

        if self.options.csr_policy == CsrPolicy::Strict {
            let claims: Vec<String> = issued
                .dropped
                .iter()
                .filter(|d| d.claims_unproven())
                .map(Dropped::to_string)
                .collect();
            if !claims.is_empty() {
                // The signed certificate is discarded here, never sent.
                return Err(Refusal::new(
                    Code::PermissionDenied,
                    format!(
                        "the CSR asks for {} which the credential does not prove (it proves \
                         {identity}); send a CSR whose only SAN is {identity}, or none",
                        claims.join(", ")
                    ),
                )
                .of(&identity));
            }
        }
        Ok(issued)
    }
}

/// The status for a signing failure. Store-side failures are INTERNAL
/// with a generic message: their details go to the CA's log only.
fn sign_refusal(e: SignError) -> Refusal {
    match e {
        SignError::WrongTrustDomain { .. } => Refusal::new(Code::PermissionDenied, e.to_string()),
        SignError::ZeroTtl
        | SignError::CsrPem(_)
        | SignError::CsrDer(_)
        | SignError::UnsupportedKey { .. }
        | SignError::CsrSignature(_) => Refusal::new(Code::InvalidArgument, e.to_string()),
        SignError::ChainExpired { .. } | SignError::Build(_) => {
            tracing::error!(error = %e, "the CA cannot sign certificates");
            Refusal::new(
                Code::Internal,
                "the CA cannot sign certificates right now; the reason is in the control \
                 plane's log",
            )
        }
    }
}

fn peer_text(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
}

#[tonic::async_trait]
impl CertificateService for CaService {
    async fn create_certificate(
        &self,
        request: Request<CreateCertificateRequest>,
    ) -> Result<Response<CreateCertificateResponse>, Status> {
        let peer = request.remote_addr();
        let bearer = match bearer_token(request.metadata()) {
            Ok(token) => token.to_owned(),
            Err(refusal) => return Err(refuse(peer, refusal)),
        };
        let CreateCertificateRequest {
            csr,
            validity_duration,
        } = request.into_inner();

        let inner = self.inner.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            inner.issue(&bearer, &csr, validity_duration, Instant::now())
        })
        .await;
        let issued = match outcome {
            Ok(Ok(issued)) => issued,
            Ok(Err(refusal)) => return Err(refuse(peer, refusal)),
            Err(join) => {
                tracing::error!(peer = %peer_text(peer), error = %join, "certificate signing task failed");
                return Err(Status::internal(
                    "the CA failed while signing; the reason is in the control plane's log",
                ));
            }
        };

        let dropped: Vec<String> = issued.dropped.iter().map(Dropped::to_string).collect();
        tracing::info!(
            identity = %issued.identity,
            serial = %issued.serial_hex,
            not_after = %fmt_time(issued.not_after),
            ttl_capped = match issued.ttl_capped {
                None => "no",
                Some(TtlCap::MaxTtl) => "max_ttl",
                Some(TtlCap::SigningChain) => "signing_chain",
            },
            dropped = %dropped.join("; "),
            peer = %peer_text(peer),
            "issued workload certificate"
        );
        Ok(Response::new(CreateCertificateResponse {
            cert_chain: issued
                .chain
                .iter()
                .map(|c| ringmesh_tls::cert_to_pem(c))
                .collect(),
            trust_bundle: self
                .inner
                .store
                .trust_bundle()
                .certs()
                .iter()
                .map(|c| ringmesh_tls::cert_to_pem(c))
                .collect(),
        }))
    }
}

/// Log `refusal` and turn it into the answer.
fn refuse(peer: Option<SocketAddr>, refusal: Refusal) -> Status {
    let identity = refusal
        .identity
        .as_ref()
        .map_or_else(|| "unauthenticated".to_owned(), Identity::to_string);
    tracing::warn!(
        peer = %peer_text(peer),
        identity = %identity,
        code = ?refusal.code,
        reason = %refusal.message,
        "refused certificate request"
    );
    Status::new(refusal.code, refusal.message)
}

/// A sliding-window log per identity: the instants of its requests within
/// the last window. Memory is bounded by `max` instants per identity that
/// asked within a window; identities idle for a whole window are swept
/// out at most once per window. Only authenticated identities get an
/// entry, so unauthenticated callers cannot grow the table.
struct Limiter {
    limit: Option<RateLimit>,
    table: Mutex<Table>,
}

struct Table {
    requests: HashMap<Identity, VecDeque<Instant>>,
    last_sweep: Instant,
}

impl Limiter {
    fn new(limit: Option<RateLimit>, now: Instant) -> Self {
        Limiter {
            limit,
            table: Mutex::new(Table {
                requests: HashMap::new(),
                last_sweep: now,
            }),
        }
    }

    /// Records a request of `identity` at `now`, or says how long until it
    /// would be admitted.
    fn admit(&self, identity: &Identity, now: Instant) -> Result<(), Duration> {
        let Some(RateLimit { max, per }) = self.limit else {
            return Ok(());
        };
        let in_window = |t: &Instant| now.saturating_duration_since(*t) < per;
        let mut table = self.table.lock();
        if now.saturating_duration_since(table.last_sweep) >= per {
            table
                .requests
                .retain(|_, times| times.back().is_some_and(in_window));
            table.last_sweep = now;
        }
        let times = table.requests.entry(identity.clone()).or_default();
        while times.front().is_some_and(|t| !in_window(t)) {
            times.pop_front();
        }
        if times.len() >= max.get() as usize {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(per.saturating_sub(now.saturating_duration_since(oldest)));
        }
        times.push_back(now);
        Ok(())
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().requests.len()
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    fn id(sa: &str) -> Identity {
        Identity::new("cluster.local", "default", sa).unwrap()
    }

    fn limiter(max: u32, per_secs: u64, now: Instant) -> Limiter {
        Limiter::new(
            Some(RateLimit::new(
                NonZeroU32::new(max).unwrap(),
                Duration::from_secs(per_secs),
            )),
            now,
        )
    }

    #[test]
    fn limiter_admits_max_per_window_and_slides() {
        let t0 = Instant::now();
        let l = limiter(3, 60, t0);
        let a = id("a");
        for i in 0..3 {
            assert_eq!(l.admit(&a, t0 + Duration::from_secs(i * 10)), Ok(()));
        }
        // The oldest request (t0) leaves the window at t0 + 60 s.
        assert_eq!(
            l.admit(&a, t0 + Duration::from_secs(45)),
            Err(Duration::from_secs(15))
        );
        // Refused requests are not recorded: still the same wait.
        assert_eq!(
            l.admit(&a, t0 + Duration::from_secs(50)),
            Err(Duration::from_secs(10))
        );
        // Another identity has its own budget.
        assert_eq!(l.admit(&id("b"), t0 + Duration::from_secs(50)), Ok(()));
        assert_eq!(l.admit(&a, t0 + Duration::from_secs(60)), Ok(()));
        // t0+10 and t0+20 are still in the window, plus t0+60.
        assert_eq!(
            l.admit(&a, t0 + Duration::from_secs(61)),
            Err(Duration::from_secs(9))
        );
    }

    #[test]
    fn limiter_forgets_idle_identities() {
        let t0 = Instant::now();
        let l = limiter(2, 60, t0);
        for i in 0..50 {
            l.admit(&id(&format!("sa{i}")), t0).unwrap();
        }
        assert_eq!(l.tracked(), 50);
        l.admit(&id("late"), t0 + Duration::from_secs(120)).unwrap();
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn no_limit_admits_everything() {
        let l = Limiter::new(None, Instant::now());
        for _ in 0..1000 {
            l.admit(&id("a"), Instant::now()).unwrap();
        }
    }

    fn metadata(values: &[&str]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for v in values {
            m.append(AUTHORIZATION, MetadataValue::try_from(*v).unwrap());
        }
        m
    }

    #[test]
    fn bearer_token_is_taken_from_one_bearer_value() {
        assert_eq!(
            bearer_token(&metadata(&["Bearer abc.def"])).unwrap(),
            "abc.def"
        );
        assert_eq!(bearer_token(&metadata(&["bearer  abc "])).unwrap(), "abc");
        for (values, needle) in [
            (&[][..], "missing credential"),
            (&["Basic dXNlcg=="][..], "not `Bearer`"),
            (&["Bearer"][..], "expected `Bearer <token>`"),
            (&["Bearer   "][..], "expected `Bearer <token>`"),
            (&["abc.def"][..], "expected `Bearer <token>`"),
            (&["Bearer a", "Bearer b"][..], "more than one value"),
        ] {
            let r = bearer_token(&metadata(values)).unwrap_err();
            assert_eq!(r.code, Code::Unauthenticated, "{values:?}");
            assert!(r.message.contains(needle), "{values:?}: {}", r.message);
            assert!(r.message.contains("authorization: Bearer <token>"));
        }
    }
}
