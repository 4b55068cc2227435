//! Plain reference implementations of the matching specification, for
//! differential tests: the route crate's unit tests and the `route_match`
//! fuzz target compare the compiled tables against them. Built for tests
//! and with the `reference` feature; never on the request path.

use crate::VirtualHost;

/// Envoy's virtual host selection, written as plainly as possible: exact
/// domain, then the longest suffix wildcard (`*` stands for at least one
/// character), then the longest prefix wildcard, each first on the whole
/// authority and then on it without a valid port; `*` last. The index of
/// the virtual host, or `None`.
pub fn reference_vhost(vhosts: &[VirtualHost], authority: &[u8]) -> Option<usize> {
    let lower = authority.to_ascii_lowercase();
    let specific = |host: &[u8]| -> Option<usize> {
        let all = || {
            vhosts
                .iter()
                .enumerate()
                .flat_map(|(i, v)| v.domains.iter().map(move |d| (i, d.to_ascii_lowercase())))
        };
        if let Some((i, _)) = all().find(|(_, d)| d.as_bytes() == host) {
            return Some(i);
        }
        let suffix = all()
            .filter(|(_, d)| d.len() > 1 && d.starts_with('*'))
            .filter(|(_, d)| d.len() - 1 < host.len() && host.ends_with(&d.as_bytes()[1..]))
            .max_by_key(|(_, d)| d.len());
        if let Some((i, _)) = suffix {
            return Some(i);
        }
        all()
            .filter(|(_, d)| d.len() > 1 && d.ends_with('*') && !d.starts_with('*'))
            .filter(|(_, d)| {
                d.len() - 1 < host.len() && host.starts_with(&d.as_bytes()[..d.len() - 1])
            })
            .max_by_key(|(_, d)| d.len())
            .map(|(i, _)| i)
    };
    if let Some(i) = specific(&lower) {
        return Some(i);
    }
    if let Some(colon) = lower.iter().rposition(|&b| b == b':') {
        let (host, port) = (&lower[..colon], &lower[colon + 1..]);
        let bracketed = host.starts_with(b"[") && host.ends_with(b"]");
        if !port.is_empty()
            && port.iter().all(u8::is_ascii_digit)
            && (!host.contains(&b':') || bracketed)
        {
            if let Some(i) = specific(host) {
                return Some(i);
            }
        }
    }
    vhosts
        .iter()
        .position(|v| v.domains.iter().any(|d| &**d == "*"))
}
