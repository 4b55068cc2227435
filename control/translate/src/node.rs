//! [`ProxyNode`]: what the configuration of a connecting proxy depends
//! on, read leniently from Envoy's `Node` (Istio's conventions), and its
//! canonical, reversible scope key.

use std::{collections::BTreeMap, net::IpAddr};

use ringmesh_xds::{NodeInfo, ScopeKey};
use serde_json::Value;

/// How traffic reaches the proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interception {
    /// iptables `REDIRECT` (Istio's default): outbound traffic is captured
    /// on 15001 and inbound on 15006.
    #[default]
    Redirect,
    /// No interception (`INTERCEPTION_MODE: NONE`): the proxy binds real
    /// addresses — an HTTP proxy port for outbound traffic and the
    /// workload's ports for inbound.
    None,
}

impl Interception {
    fn as_str(self) -> &'static str {
        match self {
            Interception::Redirect => "REDIRECT",
            Interception::None => "NONE",
        }
    }
}

/// Where a proxy's own certificate (its SVID) comes from: whether it can
/// take part in opportunistic mTLS (PERMISSIVE's TLS chain, auto mTLS),
/// and whether the control plane serves its `default` secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentitySource {
    /// None known: the proxy gets plaintext wherever Istio's rules leave
    /// a choice (STRICT and explicit ISTIO_MUTUAL still ask for mTLS).
    #[default]
    None,
    /// The proxy makes its own key and has it signed by the CA
    /// (`ringmesh-proxy`); it needs no `default` secret.
    Csr,
    /// The certificate chain and key are files the proxy reads (Envoy,
    /// written by an agent); the `default` secret points at them.
    Files { cert_chain: String, key: String },
}

/// Node metadata: the path of the workload's certificate chain (PEM),
/// Istio's name for a sidecar's mounted certificate.
pub const META_CERT_CHAIN: &str = "TLS_SERVER_CERT_CHAIN";
/// Node metadata: the path of the workload's private key (PEM).
pub const META_KEY: &str = "TLS_SERVER_KEY";
/// Node metadata: `csr` — the proxy obtains its SVID itself through the
/// CA's signing service.
pub const META_IDENTITY: &str = "RINGMESH_IDENTITY";

/// The facts about a connecting proxy that its configuration depends on —
/// and nothing else, so proxies with equal `ProxyNode` share one scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyNode {
    pub namespace: String,
    /// The workload's address (the first of `INSTANCE_IPS`, else the IP in
    /// the node id). Required by [`Interception::None`].
    pub ip: Option<IpAddr>,
    /// The workload's labels (`LABELS`); when empty, the registry
    /// workload with [`ProxyNode::ip`] supplies them at translate time.
    pub labels: BTreeMap<String, String>,
    pub workload_name: String,
    /// When empty, taken from the registry workload at translate time.
    pub service_account: String,
    pub interception: Interception,
    pub identity: IdentitySource,
}

impl ProxyNode {
    /// Lenient (never fails): Istio's node id
    /// `sidecar~IP~POD.NS~NS.svc.cluster.local` and the metadata keys
    /// `NAMESPACE`, `LABELS` (an object), `INSTANCE_IPS` (comma list),
    /// `INTERCEPTION_MODE` (`REDIRECT` default, `NONE`), `WORKLOAD_NAME`,
    /// `SERVICE_ACCOUNT`, and the identity source: `TLS_SERVER_CERT_CHAIN`
    /// plus `TLS_SERVER_KEY` (file paths, both non-empty) or
    /// `RINGMESH_IDENTITY: csr`. Metadata wins over the id; a namespace found
    /// nowhere is `default`. Labels and service account missing here are
    /// looked up from the registry workload with that IP at translate
    /// time.
    pub fn from_node(node: &NodeInfo) -> ProxyNode {
        let meta = &node.metadata;
        let text = |key: &str| -> Option<String> {
            match meta.get(key)? {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                _ => None,
            }
        };
        let mut parts = node.id.split('~');
        let _kind = parts.next();
        let id_ip = parts.next().and_then(|s| s.parse::<IpAddr>().ok());
        let pod_ns = parts.next().and_then(|s| s.rsplit_once('.')).map(|x| x.1);
        let domain_ns = parts
            .next()
            .and_then(|s| s.split('.').next())
            .filter(|s| !s.is_empty());
        let namespace = text("NAMESPACE")
            .or_else(|| domain_ns.map(str::to_owned))
            .or_else(|| pod_ns.filter(|s| !s.is_empty()).map(str::to_owned))
            .unwrap_or_else(|| "default".to_owned());
        let instance_ip = text("INSTANCE_IPS")
            .and_then(|s| s.split(',').find_map(|ip| ip.trim().parse::<IpAddr>().ok()));
        let labels = match meta.get("LABELS") {
            Some(Value::Object(map)) => map
                .iter()
                .filter_map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    Some((k.clone(), v))
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let interception = match text("INTERCEPTION_MODE") {
            Some(m) if m.eq_ignore_ascii_case("NONE") => Interception::None,
            _ => Interception::Redirect,
        };
        let identity = match (text(META_CERT_CHAIN), text(META_KEY)) {
            (Some(cert_chain), Some(key)) => IdentitySource::Files { cert_chain, key },
            _ if text(META_IDENTITY).is_some_and(|v| v.eq_ignore_ascii_case("csr")) => {
                IdentitySource::Csr
            }
            _ => IdentitySource::None,
        };
        ProxyNode {
            namespace,
            ip: instance_ip.or(id_ip),
            labels,
            workload_name: text("WORKLOAD_NAME").unwrap_or_default(),
            service_account: text("SERVICE_ACCOUNT").unwrap_or_default(),
            interception,
            identity,
        }
    }

    /// The canonical scope key: every field, in a fixed order, each value
    /// percent-encoded, e.g.
    /// `ns=bookinfo;ip=10.0.0.5;mode=REDIRECT;wl=reviews-v1;sa=bookinfo-reviews;labels=app:reviews,version:v1`,
    /// then `;id=csr` or `;id=files,CERT,KEY` for a proxy with an
    /// identity. Equal nodes give equal keys and [`ProxyNode::from_scope_key`]
    /// reverses it.
    pub fn scope_key(&self) -> ScopeKey {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{}:{}", escape(k), escape(v)))
            .collect();
        let identity = match &self.identity {
            IdentitySource::None => String::new(),
            IdentitySource::Csr => ";id=csr".to_owned(),
            IdentitySource::Files { cert_chain, key } => {
                format!(";id=files,{},{}", escape(cert_chain), escape(key))
            }
        };
        ScopeKey::new(format!(
            "ns={};ip={};mode={};wl={};sa={};labels={}{identity}",
            escape(&self.namespace),
            self.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            self.interception.as_str(),
            escape(&self.workload_name),
            escape(&self.service_account),
            labels.join(","),
        ))
    }

    /// Parse a key made by [`ProxyNode::scope_key`]; `None` for anything
    /// else.
    pub fn from_scope_key(key: &ScopeKey) -> Option<ProxyNode> {
        let mut fields = key.as_str().split(';');
        let mut field = |name: &str| -> Option<&str> {
            let (k, v) = fields.next()?.split_once('=')?;
            (k == name).then_some(v)
        };
        let namespace = unescape(field("ns")?)?;
        let ip = match field("ip")? {
            "" => None,
            s => Some(s.parse().ok()?),
        };
        let interception = match field("mode")? {
            "REDIRECT" => Interception::Redirect,
            "NONE" => Interception::None,
            _ => return None,
        };
        let workload_name = unescape(field("wl")?)?;
        let service_account = unescape(field("sa")?)?;
        let mut labels = BTreeMap::new();
        let raw = field("labels")?;
        if !raw.is_empty() {
            for pair in raw.split(',') {
                let (k, v) = pair.split_once(':')?;
                labels.insert(unescape(k)?, unescape(v)?);
            }
        }
        let identity = match fields.next() {
            None => IdentitySource::None,
            Some(f) => match f
                .strip_prefix("id=")?
                .split(',')
                .collect::<Vec<_>>()
                .as_slice()
            {
                ["csr"] => IdentitySource::Csr,
                ["files", cert, key] => IdentitySource::Files {
                    cert_chain: unescape(cert)?,
                    key: unescape(key)?,
                },
                _ => return None,
            },
        };
        if fields.next().is_some() {
            return None;
        }
        let node = ProxyNode {
            namespace,
            ip,
            labels,
            workload_name,
            service_account,
            interception,
            identity,
        };
        // Only the canonical spelling is a key (no aliases).
        (node.scope_key() == *key).then_some(node)
    }
}

/// Percent-encode everything but `[A-Za-z0-9._/-]` so the separators
/// (`;`, `=`, `,`, `:`) never appear inside a value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
