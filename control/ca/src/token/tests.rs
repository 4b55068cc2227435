use std::{
    os::unix::fs::PermissionsExt,
    time::{Duration, SystemTime},
};

use super::*;

fn id() -> Identity {
    Identity::new("cluster.local", "default", "reviews").unwrap()
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

#[test]
fn valid_token_proves_its_identity_until_expiry() {
    let auth = TokenAuthority::from_key(&[7; 32]);
    let token = auth.issue_at(&id(), Duration::from_secs(600), t0());
    assert!(!token.contains('='), "base64url without padding: {token}");
    assert_eq!(auth.verify_at(&token, t0()), Ok(id()));
    assert_eq!(
        auth.verify_at(&token, t0() + Duration::from_secs(599)),
        Ok(id())
    );
    assert_eq!(
        auth.verify_at(&token, t0() + Duration::from_secs(600)),
        Err(TokenError::Expired { ago_secs: 0 })
    );
    assert_eq!(
        auth.verify_at(&token, t0() + Duration::from_secs(700)),
        Err(TokenError::Expired { ago_secs: 100 })
    );
    // Real clock: a fresh token verifies through the trait.
    let live = auth.issue(&id(), Duration::from_secs(60));
    assert_eq!(auth.authenticate(&live).unwrap(), id());
}

#[test]
fn tampered_tokens_are_forged() {
    let auth = TokenAuthority::from_key(&[7; 32]);
    let token = auth.issue_at(&id(), Duration::from_secs(600), t0());
    let (payload_b64, tag_b64) = token.split_once('.').unwrap();

    // Another identity with the original tag.
    let mut payload = URL_SAFE_NO_PAD.decode(payload_b64).unwrap();
    let other = b"spiffe://cluster.local/ns/default/sa/admin";
    payload.truncate(HEADER_LEN);
    payload.extend_from_slice(other);
    let swapped = format!("{}.{tag_b64}", URL_SAFE_NO_PAD.encode(&payload));
    assert_eq!(auth.verify_at(&swapped, t0()), Err(TokenError::Forged));

    // A later expiry.
    let mut payload = URL_SAFE_NO_PAD.decode(payload_b64).unwrap();
    payload[1] = 0xff;
    let extended = format!("{}.{tag_b64}", URL_SAFE_NO_PAD.encode(&payload));
    assert_eq!(auth.verify_at(&extended, t0()), Err(TokenError::Forged));

    // One bit of the tag.
    let mut tag = URL_SAFE_NO_PAD.decode(tag_b64).unwrap();
    tag[31] ^= 1;
    let flipped = format!("{payload_b64}.{}", URL_SAFE_NO_PAD.encode(&tag));
    assert_eq!(auth.verify_at(&flipped, t0()), Err(TokenError::Forged));
}

#[test]
fn tokens_from_another_key_are_forged() {
    let issuer = TokenAuthority::from_key(&[7; 32]);
    let verifier = TokenAuthority::from_key(&[8; 32]);
    let token = issuer.issue_at(&id(), Duration::from_secs(600), t0());
    assert_eq!(verifier.verify_at(&token, t0()), Err(TokenError::Forged));
    assert!(matches!(
        verifier.authenticate(&token),
        Err(AuthError::Token(TokenError::Forged))
    ));
}

#[test]
fn truncated_and_malformed_tokens_are_told_apart() {
    let auth = TokenAuthority::from_key(&[7; 32]);
    let token = auth.issue_at(&id(), Duration::from_secs(600), t0());
    let (payload_b64, _) = token.split_once('.').unwrap();
    assert_eq!(
        auth.verify_at(&token[..token.len() - 8], t0()),
        Err(TokenError::Truncated)
    );
    assert_eq!(
        auth.verify_at(payload_b64, t0()),
        Err(TokenError::Truncated)
    );
    assert_eq!(
        auth.verify_at(&format!("{payload_b64}."), t0()),
        Err(TokenError::Truncated)
    );
    assert_eq!(auth.verify_at("", t0()), Err(TokenError::Malformed));
    assert_eq!(
        auth.verify_at(&format!("{payload_b64}.{}", "$".repeat(43)), t0()),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        auth.verify_at(&format!("{}.{}", "*".repeat(20), "A".repeat(43)), t0()),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        auth.verify_at(&"A".repeat(5000), t0()),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        auth.verify_at(&format!("{token}AAAA"), t0()),
        Err(TokenError::Malformed)
    );
}

#[test]
fn authentic_payloads_are_still_checked() {
    // A token minted with the right key but a future version or a bad
    // identity (only possible for a holder of the key) is still refused.
    let key = [9u8; 32];
    let auth = TokenAuthority::from_key(&key);
    let hkey = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let mint = |payload: &[u8]| {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(hmac::sign(&hkey, payload).as_ref())
        )
    };
    let far = u64::MAX.to_be_bytes();
    let mut v2 = vec![2u8];
    v2.extend_from_slice(&far);
    v2.extend_from_slice(b"spiffe://cluster.local/ns/a/sa/b");
    assert_eq!(
        auth.verify_at(&mint(&v2), t0()),
        Err(TokenError::UnsupportedVersion(2))
    );
    let mut bad = vec![1u8];
    bad.extend_from_slice(&far);
    bad.extend_from_slice(b"spiffe://cluster.local/ns/a/sa/b/c");
    assert_eq!(
        auth.verify_at(&mint(&bad), t0()),
        Err(TokenError::BadIdentity)
    );
}

#[test]
fn key_is_generated_once_private_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let first = TokenAuthority::open(dir.path()).unwrap();
    let path = dir.path().join(TOKEN_KEY);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read(&path).unwrap().len(), TOKEN_KEY_LEN);
    let token = first.issue(&id(), Duration::from_secs(60));
    let second = TokenAuthority::open(dir.path()).unwrap();
    assert_eq!(second.verify(&token), Ok(id()));

    std::fs::write(&path, b"short").unwrap();
    let err = TokenAuthority::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, TokenKeyError::BadLength { len: 5, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("token-key"), "{err}");
}
