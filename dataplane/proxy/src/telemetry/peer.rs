//! Peer metadata exchange (what Istio does with `x-envoy-peer-metadata`).
//!
//! A request a sidecar sends to an ISTIO_MUTUAL cluster carries
//! `x-ringmesh-peer` with its own workload's metadata; the destination's
//! sidecar answers with its own in the response. The value is a compact
//! `key=value` list separated by `;`:
//!
//! ```text
//! id=spiffe://cluster.local/ns/shop/sa/web;w=web-v1;ns=shop;app=web;ver=v1;cs=web;cr=v1;cl=kind
//! ```
//!
//! Keys: `id` (SPIFFE ID), `w` (workload), `ns` (namespace), `app`, `ver`
//! (version), `cs` / `cr` (canonical service / revision), `cl` (cluster).
//! Unknown keys are ignored (newer senders); a value outside the allowed
//! characters makes the whole header invalid.
//!
//! Trust: the destination believes a request's header only on an mTLS
//! connection whose verified SPIFFE ID is exactly the header's `id` (and
//! whose namespace is the header's `ns`); otherwise it ignores it and
//! describes the source from the SPIFFE ID alone (or not at all, on
//! plaintext). The source believes a response's header only from an
//! ISTIO_MUTUAL cluster (whose certificate it verified). The header is
//! removed before a request reaches the application and before a response
//! reaches the client, whatever the connection.

use ringmesh_config::{valid_meta_value, WorkloadInfo};

/// The header's name (lowercase).
pub const PEER_HEADER: &str = "x-ringmesh-peer";
/// Longest value accepted.
const MAX_LEN: usize = 1024;

/// What a peer says (or is known) about itself. `"unknown"` where nothing
/// says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMeta {
    pub principal: String,
    pub workload: String,
    pub namespace: String,
    pub app: String,
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub cluster: String,
}

impl PeerMeta {
    pub fn unknown() -> PeerMeta {
        let u = || "unknown".to_string();
        PeerMeta {
            principal: u(),
            workload: u(),
            namespace: u(),
            app: u(),
            version: u(),
            canonical_service: u(),
            canonical_revision: u(),
            cluster: u(),
        }
    }

    /// A peer known only by its verified SPIFFE ID.
    pub fn from_spiffe(id: &str) -> PeerMeta {
        let mut m = PeerMeta::unknown();
        m.principal = id.to_string();
        if let Ok(s) = ringmesh_tls::SpiffeId::parse(id) {
            m.namespace = s.namespace().to_string();
        }
        m
    }

    /// This proxy's own metadata.
    pub fn own(w: &WorkloadInfo, principal: Option<&str>) -> PeerMeta {
        PeerMeta {
            principal: principal.unwrap_or("unknown").to_string(),
            workload: w.name.clone(),
            namespace: w.namespace.clone(),
            app: w.app.clone(),
            version: w.version.clone(),
            canonical_service: w.canonical_service.clone(),
            canonical_revision: w.canonical_revision.clone(),
            cluster: w.cluster.clone(),
        }
    }

    /// The header value.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(160);
        let mut field = |k: &str, v: &str| {
            if v == "unknown" {
                return;
            }
            if !out.is_empty() {
                out.push(';');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        };
        field("id", &self.principal);
        field("w", &self.workload);
        field("ns", &self.namespace);
        field("app", &self.app);
        field("ver", &self.version);
        field("cs", &self.canonical_service);
        field("cr", &self.canonical_revision);
        field("cl", &self.cluster);
        out
    }

    /// Parse a header value; `None` when malformed.
    pub fn decode(value: &[u8]) -> Option<PeerMeta> {
        if value.len() > MAX_LEN {
            return None;
        }
        let text = std::str::from_utf8(value).ok()?.trim();
        let mut m = PeerMeta::unknown();
        for part in text.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=')?;
            if k == "id" {
                let id = ringmesh_tls::SpiffeId::parse(v).ok()?;
                m.principal = id.to_string();
                continue;
            }
            if !valid_meta_value(v) {
                return None;
            }
            let slot = match k {
                "w" => &mut m.workload,
                "ns" => &mut m.namespace,
                "app" => &mut m.app,
                "ver" => &mut m.version,
                "cs" => &mut m.canonical_service,
                "cr" => &mut m.canonical_revision,
                "cl" => &mut m.cluster,
                _ => continue,
            };
            *slot = v.to_string();
        }
        Some(m)
    }

    /// A request header's metadata, believed only if `spiffe` (the verified
    /// peer of an mTLS connection) is its `id` and holds its namespace.
    pub fn trusted_from(value: &[u8], spiffe: &str) -> Option<PeerMeta> {
        let m = PeerMeta::decode(value)?;
        if m.principal != spiffe {
            return None;
        }
        let id = ringmesh_tls::SpiffeId::parse(spiffe).ok()?;
        if m.namespace != id.namespace() {
            return None;
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> PeerMeta {
        PeerMeta {
            principal: "spiffe://cluster.local/ns/shop/sa/web".into(),
            workload: "web-v1".into(),
            namespace: "shop".into(),
            app: "web".into(),
            version: "v1".into(),
            canonical_service: "web".into(),
            canonical_revision: "v1".into(),
            cluster: "kind".into(),
        }
    }

    #[test]
    fn round_trip() {
        let m = meta();
        let h = m.encode();
        assert_eq!(
            h,
            "id=spiffe://cluster.local/ns/shop/sa/web;w=web-v1;ns=shop;app=web;ver=v1;cs=web;cr=v1;cl=kind"
        );
        assert_eq!(PeerMeta::decode(h.as_bytes()), Some(m));
    }

    #[test]
    fn trust_requires_the_connection_identity() {
        let h = meta().encode();
        let id = "spiffe://cluster.local/ns/shop/sa/web";
        assert!(PeerMeta::trusted_from(h.as_bytes(), id).is_some());
        assert!(
            PeerMeta::trusted_from(h.as_bytes(), "spiffe://cluster.local/ns/shop/sa/other")
                .is_none()
        );
        // The namespace must be the identity's.
        let mut m = meta();
        m.namespace = "other".into();
        assert!(PeerMeta::trusted_from(m.encode().as_bytes(), id).is_none());
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            &b"w=a b"[..],
            b"w=\"x\"",
            b"id=http://x",
            b"noequals",
            b"w=\xff",
            b"app=a,b",
        ] {
            assert_eq!(
                PeerMeta::decode(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(PeerMeta::decode(&vec![b'a'; 2000]).is_none());
        // Unknown keys are ignored.
        assert_eq!(PeerMeta::decode(b"zz=1;w=x").unwrap().workload, "x");
    }
}
