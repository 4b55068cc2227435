//! `iptables-restore` input, and reading back `iptables-save` output.
//!
//! Installing is one `iptables-restore --noflush` transaction: declaring a
//! chain (`:RINGMESH_OUTPUT - [0:0]`) creates it or, if it exists, flushes
//! it, so our chains are rebuilt from scratch; the jumps from the built-in
//! chains are deleted (`-D`) for every copy the current table already has
//! and appended once. Running the installer twice therefore leaves exactly
//! one copy of everything, and a failure anywhere leaves the table as it
//! was (the transaction is all or nothing). Other tables and other chains
//! are not touched (`--noflush`).

use std::fmt::Write as _;

use crate::rules::{Chain, Family, Rule, CHAIN_PREFIX};

/// What the current `nat` table holds that concerns us, read from
/// `iptables-save -t nat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    /// Chains whose name starts with `RINGMESH_`.
    pub chains: Vec<String>,
    /// Rules in other chains that jump to one of ours, as printed
    /// (`-A PREROUTING -p tcp -j RINGMESH_INBOUND`), one entry per copy.
    pub jumps: Vec<String>,
}

impl Existing {
    /// Parse the `*nat` section of `iptables-save` output.
    pub fn parse(save_output: &str) -> Existing {
        let mut out = Existing::default();
        let mut in_nat = false;
        for line in save_output.lines().map(str::trim) {
            if let Some(table) = line.strip_prefix('*') {
                in_nat = table == "nat";
                continue;
            }
            if !in_nat {
                continue;
            }
            if line == "COMMIT" {
                in_nat = false;
            } else if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap_or("");
                if name.starts_with(CHAIN_PREFIX) {
                    out.chains.push(name.to_string());
                }
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let chain = rest.split_whitespace().next().unwrap_or("");
                if !chain.starts_with(CHAIN_PREFIX) && jump_target(rest).is_some_and(is_ours) {
                    out.jumps.push(line.to_string());
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.jumps.is_empty()
    }
}

fn is_ours(chain: &str) -> bool {
    chain.starts_with(CHAIN_PREFIX)
}

/// The `-j TARGET` of a rule's text.
fn jump_target(rule: &str) -> Option<&str> {
    let mut words = rule.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-j" || w == "--jump" {
            return words.next();
        }
    }
    None
}

/// `-A CHAIN ...` → `-D CHAIN ...`.
fn delete_line(append: &str) -> String {
    format!("-D {}", append.trim_start_matches("-A "))
}

/// The `iptables-restore --noflush` input that installs `rules`, given
/// what the table already holds (`Existing::default()` for a clean table,
/// as `--dry-run` shows it).
pub fn install(family: Family, rules: &[Rule], existing: &Existing) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# ringmesh-init: {family} nat rules (iptables-restore --noflush input)"
    );
    out.push_str("*nat\n");
    out.push_str("# our chains: created, or flushed if they exist\n");
    for c in Chain::OURS {
        let _ = writeln!(out, ":{} - [0:0]", c.name());
    }
    let stale_chains: Vec<&String> = existing
        .chains
        .iter()
        .filter(|name| !Chain::OURS.iter().any(|c| c.name() == name.as_str()))
        .collect();
    if !existing.jumps.is_empty() || !stale_chains.is_empty() {
        out.push_str("# what an earlier run left: removed, so that one copy remains\n");
    }
    for j in &existing.jumps {
        let _ = writeln!(out, "{}", delete_line(j));
    }
    for c in &stale_chains {
        let _ = writeln!(out, "-F {c}");
    }
    for c in &stale_chains {
        let _ = writeln!(out, "-X {c}");
    }
    for r in rules {
        let _ = writeln!(out, "# {}", r.why);
        let _ = writeln!(out, "{}", r.append_line());
    }
    out.push_str("COMMIT\n");
    out
}

/// The `iptables-restore --noflush` input that removes everything of ours
/// (jumps first, then every chain's rules, then the chains, since a chain
/// can only be deleted when nothing refers to it); `None` if there is
/// nothing to remove.
pub fn cleanup(family: Family, existing: &Existing) -> Option<String> {
    if existing.is_empty() {
        return None;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# ringmesh-init --cleanup: {family} nat rules (iptables-restore --noflush input)"
    );
    out.push_str("*nat\n");
    for j in &existing.jumps {
        let _ = writeln!(out, "{}", delete_line(j));
    }
    for c in &existing.chains {
        let _ = writeln!(out, "-F {c}");
    }
    for c in &existing.chains {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// Rules of `expected` that the table does not hold exactly once
/// (`save_output` is `iptables-save -t nat` after installing), with the
/// number of copies found.
pub fn verify(expected: &[Rule], save_output: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = save_output.lines().map(str::trim).collect();
    expected
        .iter()
        .map(Rule::append_line)
        .filter_map(|want| {
            let n = lines.iter().filter(|l| **l == want).count();
            (n != 1).then_some((want, n))
        })
        .collect()
}
