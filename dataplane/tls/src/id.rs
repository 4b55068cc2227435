//! Mesh workload identities: SPIFFE IDs of the form
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! The SPIFFE ID specification allows any path; this mesh issues and
//! accepts only the Kubernetes-shaped one Istio uses, so that an
//! AuthorizationPolicy principal (`<td>/ns/<ns>/sa/<sa>`) maps to exactly
//! one identity. A certificate carrying another path shape is not a
//! workload of this mesh and is rejected.
//!
//! Parsing is strict ([`SpiffeId::parse`]): it is what certificates and
//! the wire go through. The character rules are those of the SPIFFE ID
//! specification — trust domain `[a-z0-9._-]` (at most 255 bytes), path
//! segments `[a-zA-Z0-9._-]`, not `.` or `..`, not empty, whole ID at most
//! 2048 bytes — so percent-encoding (`%2F`), userinfo (`@`), ports (`:`),
//! queries, fragments, empty segments (`//`), trailing slashes and
//! non-ASCII all fail: two IDs are the same identity exactly when their
//! strings are equal. The scheme and trust domain are case-insensitive in
//! URI terms but SPIFFE requires them lowercase; strict parsing rejects
//! uppercase there with its own error, and [`SpiffeId::parse_normalized`]
//! (for operator-typed input only, never for certificates) lowercases
//! them first. Path segments are case-sensitive and never changed.

use std::{fmt, str::FromStr};

/// Longest SPIFFE ID the specification asks implementations to support.
pub const MAX_ID_LEN: usize = 2048;
/// Longest trust domain name (the URI host limit).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME: &str = "spiffe://";

/// A mesh workload identity: trust domain, namespace and service account.
///
/// Always valid: every constructor checks the SPIFFE character rules, so
/// [`Display`](fmt::Display) yields a canonical SPIFFE ID and equality of
/// values is equality of identities.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

/// Why a string is not a mesh SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("SPIFFE ID is empty")]
    Empty,
    #[error("SPIFFE ID is {len} bytes long; at most {MAX_ID_LEN} are allowed")]
    TooLong { len: usize },
    #[error("SPIFFE ID must start with \"spiffe://\"")]
    WrongScheme,
    #[error(
        "the scheme and trust domain of a SPIFFE ID must be lowercase \
         (normalize operator input with SpiffeId::parse_normalized)"
    )]
    NotLowercase,
    #[error("SPIFFE ID has no trust domain")]
    MissingTrustDomain,
    #[error("trust domain is {len} bytes long; at most {MAX_TRUST_DOMAIN_LEN} are allowed")]
    TrustDomainTooLong { len: usize },
    #[error(
        "trust domain contains {found:?}; only lowercase letters, digits, '.', '-' and '_' \
         are allowed (no port, userinfo or percent-encoding)"
    )]
    BadTrustDomainChar { found: char },
    #[error("SPIFFE ID has an empty path segment (\"//\" or a trailing '/')")]
    EmptySegment,
    #[error("SPIFFE ID path segment {segment:?} is a dot segment")]
    DotSegment { segment: String },
    #[error(
        "SPIFFE ID path contains {found:?}; only letters, digits, '.', '-' and '_' are \
         allowed (no percent-encoding, query or fragment)"
    )]
    BadPathChar { found: char },
    #[error("SPIFFE ID path must be /ns/<namespace>/sa/<service-account>, found {path:?}")]
    NotWorkloadPath { path: String },
}

impl SpiffeId {
    /// Builds an identity from its parts, checking each.
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Result<Self, IdError> {
        let id = SpiffeId {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        };
        validate_trust_domain(&id.trust_domain)?;
        validate_segment(&id.namespace)?;
        validate_segment(&id.service_account)?;
        let len = id.uri_len();
        if len > MAX_ID_LEN {
            return Err(IdError::TooLong { len });
        }
        Ok(id)
    }

    /// Strict parse of `spiffe://td/ns/NS/sa/SA`: what certificates, CSRs
    /// and the wire go through. Nothing is normalized.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(IdError::TooLong { len: s.len() });
        }
        let rest = match s.strip_prefix(SCHEME) {
            Some(rest) => rest,
            None => {
                return Err(match s.get(..SCHEME.len()) {
                    Some(p) if p.eq_ignore_ascii_case(SCHEME) => IdError::NotLowercase,
                    _ => IdError::WrongScheme,
                })
            }
        };
        let (trust_domain, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        validate_trust_domain(trust_domain)?;
        // Check every segment's characters before the shape, so that
        // "/ns/a%2Fb/sa/c" reports the percent sign, not the shape.
        let segments: Vec<&str> = match path.strip_prefix('/') {
            Some(p) => p.split('/').collect(),
            None => Vec::new(),
        };
        for segment in &segments {
            validate_segment(segment)?;
        }
        match segments.as_slice() {
            ["ns", namespace, "sa", service_account] => Ok(SpiffeId {
                trust_domain: trust_domain.to_owned(),
                namespace: (*namespace).to_owned(),
                service_account: (*service_account).to_owned(),
            }),
            _ => Err(IdError::NotWorkloadPath {
                path: path.to_owned(),
            }),
        }
    }

    /// Parses operator-typed input: the scheme and trust domain are
    /// lowercased first (they are case-insensitive in URI terms and SPIFFE
    /// wants them lowercase); the path is left as it is. Never use this on
    /// a certificate: there, an uppercase trust domain is an invalid SVID.
    pub fn parse_normalized(s: &str) -> Result<Self, IdError> {
        let Some(scheme) = s.get(..SCHEME.len()) else {
            return Self::parse(s);
        };
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Self::parse(s);
        }
        let rest = &s[SCHEME.len()..];
        let host_end = rest.find('/').unwrap_or(rest.len());
        let mut normalized = String::with_capacity(s.len());
        normalized.push_str(SCHEME);
        normalized.push_str(&rest[..host_end].to_ascii_lowercase());
        normalized.push_str(&rest[host_end..]);
        Self::parse(&normalized)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The Istio principal form used by AuthorizationPolicy:
    /// `<td>/ns/<ns>/sa/<sa>` (the SPIFFE ID without its scheme).
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }

    fn uri_len(&self) -> usize {
        SCHEME.len()
            + self.trust_domain.len()
            + "/ns/".len()
            + self.namespace.len()
            + "/sa/".len()
            + self.service_account.len()
    }
}

/// Checks a trust domain name against the SPIFFE rules.
pub fn validate_trust_domain(td: &str) -> Result<(), IdError> {
    if td.is_empty() {
        return Err(IdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong { len: td.len() });
    }
    if let Some(found) = td
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        return Err(if found.is_ascii_uppercase() {
            IdError::NotLowercase
        } else {
            IdError::BadTrustDomainChar { found }
        });
    }
    Ok(())
}

fn validate_segment(segment: &str) -> Result<(), IdError> {
    if segment.is_empty() {
        return Err(IdError::EmptySegment);
    }
    if segment == "." || segment == ".." {
        return Err(IdError::DotSegment {
            segment: segment.to_owned(),
        });
    }
    if let Some(found) = segment
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_'))
    {
        return Err(IdError::BadPathChar { found });
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({self})")
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/bookinfo-reviews").unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "bookinfo-reviews");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
        );
        assert_eq!(
            id.principal(),
            "cluster.local/ns/default/sa/bookinfo-reviews"
        );
        assert_eq!(
            SpiffeId::new("cluster.local", "default", "bookinfo-reviews").unwrap(),
            id
        );
        // Path segments are case-sensitive and keep their case.
        let mixed = SpiffeId::parse("spiffe://td/ns/Prod/sa/Web_1.x").unwrap();
        assert_eq!(mixed.namespace(), "Prod");
        assert_ne!(
            mixed,
            SpiffeId::parse("spiffe://td/ns/prod/sa/Web_1.x").unwrap()
        );
    }

    #[test]
    fn rejects_malformed_ids_with_the_reason() {
        use IdError::*;
        let cases: &[(&str, IdError)] = &[
            ("", Empty),
            ("http://td/ns/a/sa/b", WrongScheme),
            ("spiffe:/td/ns/a/sa/b", WrongScheme),
            ("SPIFFE://td/ns/a/sa/b", NotLowercase),
            ("spiffe://Cluster.Local/ns/a/sa/b", NotLowercase),
            ("spiffe:///ns/a/sa/b", MissingTrustDomain),
            (
                "spiffe://td:443/ns/a/sa/b",
                BadTrustDomainChar { found: ':' },
            ),
            (
                "spiffe://user@td/ns/a/sa/b",
                BadTrustDomainChar { found: '@' },
            ),
            ("spiffe://t%64/ns/a/sa/b", BadTrustDomainChar { found: '%' }),
            ("spiffe://td/ns/a%2Fb/sa/c", BadPathChar { found: '%' }),
            ("spiffe://td/ns/a/sa/b?x=1", BadPathChar { found: '?' }),
            ("spiffe://td/ns/a/sa/b#frag", BadPathChar { found: '#' }),
            ("spiffe://td/ns/ä/sa/b", BadPathChar { found: 'ä' }),
            ("spiffe://td/ns//sa/b", EmptySegment),
            ("spiffe://td/ns/a/sa/b/", EmptySegment),
            ("spiffe://td//ns/a/sa/b", EmptySegment),
            (
                "spiffe://td/ns/../sa/b",
                DotSegment {
                    segment: "..".into(),
                },
            ),
            (
                "spiffe://td/ns/./sa/b",
                DotSegment {
                    segment: ".".into(),
                },
            ),
            ("spiffe://td", NotWorkloadPath { path: "".into() }),
            (
                "spiffe://td/ns/a/sa/b/extra",
                NotWorkloadPath {
                    path: "/ns/a/sa/b/extra".into(),
                },
            ),
            (
                "spiffe://td/sa/b/ns/a",
                NotWorkloadPath {
                    path: "/sa/b/ns/a".into(),
                },
            ),
            (
                "spiffe://td/NS/a/sa/b",
                NotWorkloadPath {
                    path: "/NS/a/sa/b".into(),
                },
            ),
            (
                "spiffe://td/ns/a",
                NotWorkloadPath {
                    path: "/ns/a".into(),
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                SpiffeId::parse(input).as_ref(),
                Err(want),
                "input {input:?}"
            );
        }
        let long_td = "a".repeat(256);
        assert_eq!(
            SpiffeId::parse(&format!("spiffe://{long_td}/ns/a/sa/b")),
            Err(TrustDomainTooLong { len: 256 })
        );
        let long_sa = "a".repeat(2048);
        assert!(matches!(
            SpiffeId::parse(&format!("spiffe://td/ns/a/sa/{long_sa}")),
            Err(TooLong { .. })
        ));
        assert!(matches!(
            SpiffeId::new("td", "a", long_sa),
            Err(TooLong { .. })
        ));
        assert_eq!(
            SpiffeId::new("td", "a/b", "c"),
            Err(BadPathChar { found: '/' })
        );
        assert_eq!(SpiffeId::new("TD", "a", "c"), Err(NotLowercase));
    }

    #[test]
    fn normalizes_scheme_and_trust_domain_only_when_asked() {
        let id = SpiffeId::parse_normalized("SPIFFE://Cluster.Local/ns/Default/sa/Web").unwrap();
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/Default/sa/Web");
        assert_eq!(
            SpiffeId::parse_normalized("spiffe://td/ns/a%2F/sa/b"),
            Err(IdError::BadPathChar { found: '%' })
        );
        assert_eq!(SpiffeId::parse_normalized("x"), Err(IdError::WrongScheme));
        assert_eq!(
            SpiffeId::parse_normalized("spiffé://td/ns/a/sa/b"),
            Err(IdError::WrongScheme)
        );
    }
}
