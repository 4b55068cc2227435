//! Kubernetes mode: the registry over the API server, and the CA's
//! authenticator that accepts service-account tokens (TokenReview) beside
//! the control plane's own bootstrap tokens.

use std::{sync::Arc, time::Duration};

use ringmesh_ca::{AuthError, Authenticator, Identity, TokenAuthority};
use ringmesh_kube::{review_token, KubeOptions, KubeRegistry, ReviewError};

use crate::Args;

/// How long one TokenReview may take before the signing request is
/// answered UNAVAILABLE (the proxy retries with backoff).
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// Start the Kubernetes registry (returns once everything was listed)
/// and the authenticator; the third value names the source for the log.
pub(crate) async fn start(
    args: &Args,
    tokens: Arc<TokenAuthority>,
) -> Result<(KubeRegistry, Arc<dyn Authenticator>, String), String> {
    let client = ringmesh_kube::client(args.kube_api.as_deref())
        .await
        .map_err(|e| format!("cannot reach Kubernetes: {e} (set --kube-api or KUBECONFIG)"))?;
    let source = args
        .kube_api
        .clone()
        .unwrap_or_else(|| "kubernetes (inferred)".to_owned());
    let options = KubeOptions {
        domain_suffix: args.domain_suffix.clone(),
        ..KubeOptions::default()
    };
    let registry = KubeRegistry::start(client.clone(), options)
        .await
        .map_err(|e| format!("cannot read the mesh from Kubernetes: {e}"))?;
    let auth = KubeAuthenticator {
        tokens,
        client,
        audience: args.token_audience.clone(),
        trust_domain: args.trust_domain.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    Ok((registry, Arc::new(auth), source))
}

/// Bootstrap tokens first (checked locally); anything else is asked of
/// the API server as a service-account token bound to our audience.
struct KubeAuthenticator {
    tokens: Arc<TokenAuthority>,
    client: ringmesh_kube::Client,
    audience: String,
    trust_domain: String,
    /// The CA calls `authenticate` on a blocking thread; the review runs
    /// on the server's runtime.
    runtime: tokio::runtime::Handle,
}

impl Authenticator for KubeAuthenticator {
    fn authenticate(&self, bearer: &str) -> Result<Identity, AuthError> {
        if let Ok(identity) = self.tokens.verify(bearer) {
            return Ok(identity);
        }
        let review = self.runtime.block_on(async {
            tokio::time::timeout(
                REVIEW_TIMEOUT,
                review_token(&self.client, bearer, &self.audience),
            )
            .await
        });
        match review {
            Err(_) => Err(AuthError::Unavailable {
                reason: format!("TokenReview took longer than {REVIEW_TIMEOUT:?}"),
            }),
            Ok(Err(ReviewError::Api(reason))) => Err(AuthError::Unavailable { reason }),
            Ok(Err(e)) => Err(AuthError::Rejected {
                reason: e.to_string(),
            }),
            Ok(Ok(who)) => Identity::new(
                self.trust_domain.clone(),
                who.namespace,
                who.service_account,
            )
            .map_err(|e| AuthError::Rejected {
                reason: format!("service account is not a valid SPIFFE identity: {e}"),
            }),
        }
    }
}
