//! Proof of identity for the signing API. [`Authenticator`] is what the
//! signing service asks "who is this bearer?"; [`TokenAuthority`] is the
//! file-mode implementation (bootstrap tokens minted by the operator or
//! the control plane). A Kubernetes TokenReview authenticator will be a
//! second implementation.
//!
//! Token format: `base64url(payload) "." base64url(tag)` without padding,
//! where payload = version (1 byte, 1) ‖ expiry (u64 big-endian Unix
//! seconds) ‖ SPIFFE ID (UTF-8), and tag = HMAC-SHA256(key, payload). The
//! tag is checked (in constant time, by ring) before anything in the
//! payload is interpreted.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use ring::{hmac, rand::SecureRandom};

use crate::{fsutil, Identity};

/// The key file of a [`TokenAuthority`] in the data directory (mode 0600).
pub const TOKEN_KEY: &str = "token-key";
/// Bytes of the HMAC key.
pub const TOKEN_KEY_LEN: usize = 32;
const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = 1 + 8;
/// Unpadded base64 length of the tag.
const TAG_B64_LEN: usize = (TAG_LEN * 4).div_ceil(3);
/// Unpadded base64 length of the shortest payload (header + 1 byte).
const MIN_PAYLOAD_B64_LEN: usize = ((HEADER_LEN + 1) * 4).div_ceil(3);
/// Longer input is not a token of ours; refuse before decoding.
const MAX_TOKEN_LEN: usize = 4096;

/// Authenticates the bearer credential of a signing request.
pub trait Authenticator: Send + Sync {
    /// The identity the credential proves.
    fn authenticate(&self, bearer: &str) -> Result<Identity, AuthError>;
}

/// Why a bearer credential was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A bootstrap token was rejected.
    #[error("bootstrap token rejected: {0}")]
    Token(#[from] TokenError),
    /// The credential was checked and refused (e.g. TokenReview said
    /// unauthenticated, or the identity is not allowed to request SVIDs).
    #[error("credential rejected: {reason}")]
    Rejected { reason: String },
    /// The credential could not be checked now (e.g. the Kubernetes API is
    /// unreachable); the caller may retry.
    #[error("cannot authenticate now: {reason}")]
    Unavailable { reason: String },
}

/// Why a bootstrap token was rejected. Forgery and a wrong key are the
/// same error on purpose: the verifier cannot and should not tell them
/// apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a bootstrap token (expected base64url \"payload.tag\")")]
    Malformed,
    #[error("token is truncated")]
    Truncated,
    #[error("token signature does not verify (forged, altered, or issued with another key)")]
    Forged,
    #[error("token format version {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("token expired {ago_secs}s ago")]
    Expired { ago_secs: u64 },
    #[error("token names an invalid identity")]
    BadIdentity,
}

/// Mints and checks bootstrap tokens with a 32-byte HMAC-SHA256 key.
pub struct TokenAuthority {
    key: hmac::Key,
    path: Option<PathBuf>,
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("path", &self.path)
            .field("key", &"[elided]")
            .finish()
    }
}

/// Why the token key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    #[error("{}: cannot access the token key: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: token key must be exactly {TOKEN_KEY_LEN} bytes, found {len} (delete it to \
         generate a new one; outstanding tokens will stop working)",
        path.display()
    )]
    BadLength { path: PathBuf, len: usize },
    #[error("no secure randomness available to generate a token key")]
    Random,
}

impl TokenAuthority {
    /// Loads `dir/token-key`, generating it (32 random bytes, mode 0600,
    /// written atomically) on first use.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, TokenKeyError> {
        let dir = dir.as_ref();
        let path = dir.join(TOKEN_KEY);
        let io = |source| TokenKeyError::Io {
            path: path.clone(),
            source,
        };
        let bytes = match fsutil::read_optional(&path).map_err(io)? {
            Some(bytes) => bytes,
            None => {
                let mut bytes = vec![0u8; TOKEN_KEY_LEN];
                ring::rand::SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| TokenKeyError::Random)?;
                fsutil::ensure_private_dir(dir).map_err(io)?;
                fsutil::write_atomic(&path, &bytes, 0o600).map_err(io)?;
                bytes
            }
        };
        let Ok(key) = <[u8; TOKEN_KEY_LEN]>::try_from(bytes.as_slice()) else {
            return Err(TokenKeyError::BadLength {
                path,
                len: bytes.len(),
            });
        };
        if fsutil::readable_by_others(&path) {
            tracing::warn!(path = %path.display(), "token key is readable by group or others; chmod 600 it");
        }
        let mut authority = Self::from_key(&key);
        authority.path = Some(path);
        Ok(authority)
    }

    /// An authority over a key held in memory.
    pub fn from_key(key: &[u8; TOKEN_KEY_LEN]) -> Self {
        TokenAuthority {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            path: None,
        }
    }

    /// A token proving `identity` until now + `ttl`.
    pub fn issue(&self, identity: &Identity, ttl: Duration) -> String {
        self.issue_at(identity, ttl, SystemTime::now())
    }

    /// [`TokenAuthority::issue`] with an explicit clock.
    pub fn issue_at(&self, identity: &Identity, ttl: Duration, now: SystemTime) -> String {
        let expiry = unix_secs(now).saturating_add(ttl.as_secs());
        let id = identity.to_string();
        let mut payload = Vec::with_capacity(HEADER_LEN + id.len());
        payload.push(VERSION);
        payload.extend_from_slice(&expiry.to_be_bytes());
        payload.extend_from_slice(id.as_bytes());
        let tag = hmac::sign(&self.key, &payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The identity `token` proves, if it is authentic and unexpired.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        self.verify_at(token, SystemTime::now())
    }

    /// [`TokenAuthority::verify`] with an explicit clock.
    pub fn verify_at(&self, token: &str, now: SystemTime) -> Result<Identity, TokenError> {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let Some((payload_b64, tag_b64)) = token.split_once('.') else {
            return Err(TokenError::Truncated);
        };
        // Judge lengths on the text: a cut base64 string may not even
        // decode, and it is still a truncated token.
        if tag_b64.len() < TAG_B64_LEN || payload_b64.len() < MIN_PAYLOAD_B64_LEN {
            return Err(TokenError::Truncated);
        }
        if tag_b64.len() > TAG_B64_LEN {
            return Err(TokenError::Malformed);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| TokenError::Malformed)?;
        if tag.len() != TAG_LEN || payload.len() <= HEADER_LEN {
            return Err(TokenError::Malformed);
        }
        hmac::verify(&self.key, &payload, &tag).map_err(|_| TokenError::Forged)?;

        // Authentic from here on: the payload is ours.
        if payload[0] != VERSION {
            return Err(TokenError::UnsupportedVersion(payload[0]));
        }
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&payload[1..HEADER_LEN]);
        let expiry = u64::from_be_bytes(expiry);
        let now = unix_secs(now);
        if now >= expiry {
            return Err(TokenError::Expired {
                ago_secs: now - expiry,
            });
        }
        let id =
            std::str::from_utf8(&payload[HEADER_LEN..]).map_err(|_| TokenError::BadIdentity)?;
        Identity::parse(id).map_err(|_| TokenError::BadIdentity)
    }
}

impl Authenticator for TokenAuthority {
    fn authenticate(&self, bearer: &str) -> Result<Identity, AuthError> {
        Ok(self.verify(bearer)?)
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
