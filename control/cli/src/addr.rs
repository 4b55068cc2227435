//! `HOST:PORT` arguments (`--control`, `--admin`), checked when parsed so
//! a typo is a usage error, not a connection failure.

use std::{fmt, str::FromStr};

/// A host (name, IPv4, or bracketed IPv6) and a port. `http://` in front
/// and a trailing `/` are accepted and dropped, so an address copied from
/// a URL works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// As written, brackets included for IPv6 (`[::1]`).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.starts_with("https://") {
            return Err(format!(
                "{s}: TLS is not supported here yet; give HOST:PORT of the plaintext endpoint"
            ));
        }
        let rest = s.strip_prefix("http://").unwrap_or(s);
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!("{s}: expected HOST:PORT, without a path"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (inner, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s}: missing `]` after the IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| format!("{s}: missing :PORT after [{inner}]"))?;
            (format!("[{inner}]"), port)
        } else {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{s}: missing :PORT (expected HOST:PORT)"))?;
            if host.contains(':') {
                return Err(format!(
                    "{s}: write an IPv6 address in brackets, e.g. [::1]:15010"
                ));
            }
            (host.to_owned(), port)
        };
        if host.is_empty() || host == "[]" {
            return Err(format!("{s}: missing host (expected HOST:PORT)"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s}: port {port:?} is not a number from 1 to 65535"))?;
        Ok(HostPort { host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        s.parse::<HostPort>().unwrap().to_string()
    }

    #[test]
    fn accepts_host_port_forms() {
        assert_eq!(ok("127.0.0.1:15010"), "127.0.0.1:15010");
        assert_eq!(
            ok("http://istiod.istio-system:15010/"),
            "istiod.istio-system:15010"
        );
        assert_eq!(ok("[::1]:15000"), "[::1]:15000");
        assert_eq!(ok(" localhost:1 "), "localhost:1");
    }

    #[test]
    fn rejects_with_the_reason() {
        let err = |s: &str| s.parse::<HostPort>().unwrap_err();
        assert!(err("127.0.0.1").contains("missing :PORT"));
        assert!(err("::1:15010").contains("brackets"));
        assert!(err("[::1]").contains("missing :PORT"));
        assert!(err("host:0").contains("1 to 65535"));
        assert!(err("host:http").contains("1 to 65535"));
        assert!(err(":15010").contains("missing host"));
        assert!(err("https://cp:15012").contains("TLS"));
        assert!(err("http://cp:15010/debug").contains("without a path"));
    }
}
