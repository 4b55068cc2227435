//! Authority → virtual host, Envoy's order: exact domain, then the longest
//! suffix wildcard (`*.example.com`, `*-bar.example.com`), then the longest
//! prefix wildcard (`api.*`, `api-*`), then `*`.
//!
//! Keys are stored lowercased. Wildcards are grouped by the length of their
//! fixed part, longest first, so a lookup is one hash probe per distinct
//! length shorter than the host: the first hit is the longest match. A
//! wildcard stands for at least one character (`*.example.com` does not
//! match `example.com`), as in Envoy.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

/// FNV-1a: keys come from configuration, not from traffic, so a request
/// cannot grow a collision chain; probing with attacker-chosen hosts costs
/// at most the (fixed) longest probe sequence of the table.
#[derive(Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type Map<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<Fnv>>;

/// Wildcard domains whose fixed part has the same length.
#[derive(Clone, Debug)]
struct Group {
    len: usize,
    map: Map<u32>,
}

#[derive(Clone, Default)]
pub(crate) struct DomainIndex {
    exact: Map<u32>,
    /// Longest first.
    suffixes: Vec<Group>,
    /// Longest first.
    prefixes: Vec<Group>,
    default: Option<u32>,
}

/// What a validated, lowercased domain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DomainKind<'a> {
    Exact(&'a [u8]),
    /// `*` followed by this (non-empty).
    Suffix(&'a [u8]),
    /// This (non-empty) followed by `*`.
    Prefix(&'a [u8]),
    Any,
}

pub(crate) fn classify(lower: &[u8]) -> DomainKind<'_> {
    if lower == b"*" {
        DomainKind::Any
    } else if let Some(s) = lower.strip_prefix(b"*") {
        DomainKind::Suffix(s)
    } else if let Some(p) = lower.strip_suffix(b"*") {
        DomainKind::Prefix(p)
    } else {
        DomainKind::Exact(lower)
    }
}

impl DomainIndex {
    /// Insert a validated domain; the caller has rejected duplicates.
    pub(crate) fn insert(&mut self, kind: DomainKind<'_>, vhost: u32) {
        match kind {
            DomainKind::Exact(d) => {
                self.exact.entry(d.into()).or_insert(vhost);
            }
            DomainKind::Suffix(s) => insert_group(&mut self.suffixes, s, vhost),
            DomainKind::Prefix(p) => insert_group(&mut self.prefixes, p, vhost),
            DomainKind::Any => {
                self.default.get_or_insert(vhost);
            }
        }
    }

    /// Exact, then suffix, then prefix wildcards for one (lowercased) host
    /// string; the `*` default is the caller's last resort.
    #[inline]
    pub(crate) fn find_specific(&self, host: &[u8]) -> Option<u32> {
        if let Some(&v) = self.exact.get(host) {
            return Some(v);
        }
        for g in &self.suffixes {
            if g.len < host.len() {
                if let Some(&v) = g.map.get(&host[host.len() - g.len..]) {
                    return Some(v);
                }
            }
        }
        for g in &self.prefixes {
            if g.len < host.len() {
                if let Some(&v) = g.map.get(&host[..g.len]) {
                    return Some(v);
                }
            }
        }
        None
    }

    #[inline]
    pub(crate) fn default_vhost(&self) -> Option<u32> {
        self.default
    }

    /// Whether only `*` (or nothing) is configured: no need to look at the
    /// authority at all.
    #[inline]
    pub(crate) fn only_default(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty()
    }

    pub(crate) fn counts(&self) -> (usize, usize, usize, bool) {
        let sum = |gs: &[Group]| gs.iter().map(|g| g.map.len()).sum::<usize>();
        (
            self.exact.len(),
            sum(&self.suffixes),
            sum(&self.prefixes),
            self.default.is_some(),
        )
    }
}

fn insert_group(groups: &mut Vec<Group>, key: &[u8], vhost: u32) {
    let pos = match groups.binary_search_by(|g| key.len().cmp(&g.len)) {
        Ok(pos) => pos,
        Err(pos) => {
            groups.insert(
                pos,
                Group {
                    len: key.len(),
                    map: Map::default(),
                },
            );
            pos
        }
    };
    groups[pos].map.entry(key.into()).or_insert(vhost);
}

/// The host part of an authority whose last component is a port
/// (`host:8080`, `[::1]:8080`); `None` when there is no port to strip.
#[inline]
pub(crate) fn strip_port(authority: &[u8]) -> Option<&[u8]> {
    let colon = authority.iter().rposition(|&b| b == b':')?;
    let (host, port) = (&authority[..colon], &authority[colon + 1..]);
    if port.is_empty() || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // A bare IPv6 address (`::1`) has colons but no port; only a bracketed
    // one (`[::1]:80`) carries a port.
    if host.contains(&b':') && !(host.starts_with(b"[") && host.ends_with(b"]")) {
        return None;
    }
    Some(host)
}

/// Run `f` on the ASCII-lowercased `s` without allocating when possible:
/// already-lowercase input is used as is, up to [`STACK_LOWERCASE`] bytes
/// are lowercased on the stack, and only longer mixed-case input (longer
/// than any valid DNS name with a port) is copied to the heap.
#[inline]
pub(crate) fn with_lowercase<R>(s: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    if !s.iter().any(u8::is_ascii_uppercase) {
        return f(s);
    }
    if s.len() <= STACK_LOWERCASE {
        let mut buf = [0u8; STACK_LOWERCASE];
        let buf = &mut buf[..s.len()];
        buf.copy_from_slice(s);
        buf.make_ascii_lowercase();
        return f(buf);
    }
    f(&s.to_ascii_lowercase())
}

pub(crate) const STACK_LOWERCASE: usize = 256;
