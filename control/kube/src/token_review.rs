//! Service-account tokens checked by the API server (TokenReview): how the
//! CA authenticates a workload's certificate request in Kubernetes mode.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::{api::PostParams, Api, Client};

/// The identity a token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedIdentity {
    pub namespace: String,
    pub service_account: String,
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("token review request failed: {0}")]
    Api(String),
    #[error("token not authenticated: {0}")]
    Rejected(String),
    #[error("token is for {0:?}, not a service account")]
    NotServiceAccount(String),
    #[error("token audiences {got:?} do not include {want:?}")]
    Audience { got: Vec<String>, want: String },
}

/// Ask the API server who `token` belongs to. Only service-account tokens
/// (`system:serviceaccount:<ns>:<sa>`) bound to `audience` are accepted.
pub async fn review_token(
    client: &Client,
    token: &str,
    audience: &str,
) -> Result<ReviewedIdentity, ReviewError> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: Some(vec![audience.to_owned()]),
        },
        ..TokenReview::default()
    };
    let api: Api<TokenReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| ReviewError::Api(e.to_string()))?;
    let status = answer.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        return Err(ReviewError::Rejected(
            status
                .error
                .unwrap_or_else(|| "not authenticated".to_owned()),
        ));
    }
    // The server echoes the audiences the token is valid for; an empty
    // answer means the API server's own audience, which is not ours.
    let audiences = status.audiences.unwrap_or_default();
    if !audiences.iter().any(|a| a == audience) {
        return Err(ReviewError::Audience {
            got: audiences,
            want: audience.to_owned(),
        });
    }
    let username = status.user.and_then(|u| u.username).unwrap_or_default();
    parse_service_account(&username).ok_or(ReviewError::NotServiceAccount(username))
}

/// `system:serviceaccount:<ns>:<sa>` → the identity.
pub(crate) fn parse_service_account(username: &str) -> Option<ReviewedIdentity> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (ns, sa) = rest.split_once(':')?;
    (!ns.is_empty() && !sa.is_empty() && !sa.contains(':')).then(|| ReviewedIdentity {
        namespace: ns.to_owned(),
        service_account: sa.to_owned(),
    })
}
