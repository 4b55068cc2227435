//! What to intercept: the proxy's identity and ports, and which inbound
//! ports and outbound destinations are captured. The defaults are Istio's
//! conventions (and `ringmesh-proxy`'s ports).

use std::{fmt, str::FromStr};

use crate::cidr::{Cidr, CidrError};

/// The proxy's UID and GID (Istio's convention).
pub const PROXY_ID: u32 = 1337;
/// Where captured outbound connections are redirected.
pub const OUTBOUND_PORT: u16 = 15001;
/// Where captured inbound connections are redirected.
pub const INBOUND_PORT: u16 = 15006;
/// Inbound ports never captured by default: the proxy's own admin (15000),
/// merged metrics (15020) and health (15021) ports, which kubelet and
/// Prometheus reach directly.
pub const DEFAULT_EXCLUDED_INBOUND_PORTS: [u16; 3] = [15000, 15020, 15021];

/// Everything, or exactly these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection<T> {
    /// `*`
    All,
    /// A list (may be empty: nothing is selected).
    Only(Vec<T>),
}

impl<T: fmt::Display> fmt::Display for Selection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selection::All => f.write_str("*"),
            Selection::Only(items) => write_list(f, items),
        }
    }
}

fn write_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// The interception settings (`ringmesh-init`'s flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Connections opened by this UID (the proxy's) are never captured
    /// outbound, or the proxy would capture its own upstream connections.
    pub proxy_uid: u32,
    /// Same, by GID.
    pub proxy_gid: u32,
    /// The proxy's outbound capture port.
    pub outbound_port: u16,
    /// The proxy's inbound capture port.
    pub inbound_port: u16,
    /// Destination ports of inbound TCP that are captured.
    pub include_inbound_ports: Selection<u16>,
    /// These destination ports are never captured, also when a list of
    /// included ports names them (exclusion wins, as for outbound).
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound TCP to these destination ports is never captured.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound TCP to these networks is never captured.
    pub exclude_outbound_cidrs: Vec<Cidr>,
    /// Outbound TCP to these networks is captured (after the exclusions).
    pub include_outbound_cidrs: Selection<Cidr>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            proxy_uid: PROXY_ID,
            proxy_gid: PROXY_ID,
            outbound_port: OUTBOUND_PORT,
            inbound_port: INBOUND_PORT,
            include_inbound_ports: Selection::All,
            exclude_inbound_ports: DEFAULT_EXCLUDED_INBOUND_PORTS.to_vec(),
            exclude_outbound_ports: Vec::new(),
            exclude_outbound_cidrs: Vec::new(),
            include_outbound_cidrs: Selection::All,
        }
    }
}

/// An invalid setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{input:?} is not a port (expected a number from 1 to 65535)")]
    Port { input: String },
    #[error(transparent)]
    Cidr(#[from] CidrError),
    #[error("the outbound and inbound capture ports are both {0}: the proxy needs one of each")]
    SamePorts(u16),
}

impl Config {
    /// Check the settings that parse but cannot work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.outbound_port == self.inbound_port {
            return Err(ConfigError::SamePorts(self.outbound_port));
        }
        Ok(())
    }
}

/// A port, 1–65535.
pub fn parse_port(s: &str) -> Result<u16, ConfigError> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::Port { input: s.into() });
    }
    match t.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ConfigError::Port { input: s.into() }),
    }
}

/// A comma-separated list (empty string: empty list), duplicates dropped,
/// order kept.
pub fn parse_list<T: PartialEq>(
    s: &str,
    item: impl Fn(&str) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let v = item(part)?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// `*` or a list.
pub fn parse_selection<T: PartialEq>(
    s: &str,
    item: impl Fn(&str) -> Result<T, ConfigError>,
) -> Result<Selection<T>, ConfigError> {
    if s.trim() == "*" {
        Ok(Selection::All)
    } else {
        parse_list(s, item).map(Selection::Only)
    }
}

/// A list of ports, e.g. `15020,15021`.
pub fn parse_ports(s: &str) -> Result<Vec<u16>, ConfigError> {
    parse_list(s, parse_port)
}

/// A list of networks, e.g. `10.0.0.0/8,fd00::/8`.
pub fn parse_cidrs(s: &str) -> Result<Vec<Cidr>, ConfigError> {
    parse_list(s, |p| Cidr::from_str(p).map_err(ConfigError::from))
}
