//! The interception rules, as data.
//!
//! Everything lives in the `nat` table, in four chains of our own hooked
//! into the built-in `PREROUTING` (traffic arriving from the network) and
//! `OUTPUT` (traffic the pod's processes open):
//!
//! ```text
//! PREROUTING -p tcp ─▶ RINGMESH_INBOUND ──(captured port)──▶ RINGMESH_IN_REDIRECT ─▶ REDIRECT :15006
//! OUTPUT     -p tcp ─▶ RINGMESH_OUTPUT  ──(captured dest)──▶ RINGMESH_REDIRECT    ─▶ REDIRECT :15001
//!                                        └─(proxy → own pod IP on lo)─▶ RINGMESH_IN_REDIRECT
//! ```
//!
//! The rules are built from a [`Config`] by [`rules`]; [`Rule`]'s
//! `Display` renders one exactly as `iptables-save` prints it (same option
//! order, same spelling), so what we install can be verified line by line
//! against what the kernel reports. Each rule carries the reason it
//! exists; the rendered `iptables-restore` input shows it as a comment.

use std::{fmt, net::IpAddr};

use crate::{
    cidr::Cidr,
    config::{Config, Selection},
};

/// The nat table of IPv4 (`iptables`) or IPv6 (`ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// `127.0.0.1/32` or `::1/128`.
    pub fn localhost(self) -> Cidr {
        Cidr::host(match self {
            Family::V4 => IpAddr::from([127, 0, 0, 1]),
            Family::V6 => IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1u16]),
        })
    }

    /// The source address a sidecar binds when it forwards inbound traffic
    /// to the application at the pod's own IP (Envoy's inbound passthrough
    /// uses `127.0.0.6` / `::6`): such connections must not be captured
    /// again, or they would loop back into the inbound listener.
    pub fn passthrough_source(self) -> Cidr {
        Cidr::host(match self {
            Family::V4 => IpAddr::from([127, 0, 0, 6]),
            Family::V6 => IpAddr::from([0, 0, 0, 0, 0, 0, 0, 6u16]),
        })
    }

    pub fn contains(self, cidr: &Cidr) -> bool {
        cidr.is_ipv4() == (self == Family::V4)
    }

    /// `iptables-restore` or `ip6tables-restore`.
    pub fn restore_program(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    /// `iptables-save` or `ip6tables-save`.
    pub fn save_program(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// Every chain name we own starts with this; anything starting with it is
/// ours to flush and delete (also chains an older version left behind).
pub const CHAIN_PREFIX: &str = "RINGMESH_";

/// The chains the rules use: two built-in hooks and our four.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    Prerouting,
    Output,
    /// Inbound TCP: which destination ports are captured.
    Inbound,
    /// Redirect to the inbound capture port.
    InRedirect,
    /// Outbound TCP: which connections are captured.
    Outbound,
    /// Redirect to the outbound capture port.
    Redirect,
}

impl Chain {
    /// Our chains, in the order they are declared.
    pub const OURS: [Chain; 4] = [
        Chain::Inbound,
        Chain::InRedirect,
        Chain::Outbound,
        Chain::Redirect,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Chain::Prerouting => "PREROUTING",
            Chain::Output => "OUTPUT",
            Chain::Inbound => "RINGMESH_INBOUND",
            Chain::InRedirect => "RINGMESH_IN_REDIRECT",
            Chain::Outbound => "RINGMESH_OUTPUT",
            Chain::Redirect => "RINGMESH_REDIRECT",
        }
    }

    pub fn is_builtin(self) -> bool {
        matches!(self, Chain::Prerouting | Chain::Output)
    }
}

/// Match on the socket owner (`-m owner`) of locally generated packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Uid { id: u32, negated: bool },
    Gid { id: u32, negated: bool },
}

/// What a matching packet does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Leave this chain: not captured (by this chain).
    Return,
    Jump(Chain),
    /// Rewrite the destination to this port on the local host (the
    /// original destination stays readable through `SO_ORIGINAL_DST`).
    Redirect(u16),
}

/// One rule: where it goes, what it matches, what it does, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: Chain,
    pub source: Option<Cidr>,
    /// The destination and whether the match is negated (`! -d`).
    pub destination: Option<(Cidr, bool)>,
    pub out_interface: Option<&'static str>,
    /// `-p tcp` (every rule here is about TCP except the returns that
    /// apply to any protocol reaching our chains, which only TCP does).
    pub tcp: bool,
    pub dport: Option<u16>,
    pub owner: Option<Owner>,
    pub target: Target,
    /// Shown as a comment in the `iptables-restore` input.
    pub why: &'static str,
}

impl Rule {
    fn new(chain: Chain, target: Target, why: &'static str) -> Rule {
        Rule {
            chain,
            source: None,
            destination: None,
            out_interface: None,
            tcp: false,
            dport: None,
            owner: None,
            target,
            why,
        }
    }
    fn tcp(mut self) -> Rule {
        self.tcp = true;
        self
    }
    fn dport(mut self, port: u16) -> Rule {
        self.tcp = true;
        self.dport = Some(port);
        self
    }
    fn source(mut self, c: Cidr) -> Rule {
        self.source = Some(c);
        self
    }
    fn to(mut self, c: Cidr) -> Rule {
        self.destination = Some((c, false));
        self
    }
    fn not_to(mut self, c: Cidr) -> Rule {
        self.destination = Some((c, true));
        self
    }
    fn out_lo(mut self) -> Rule {
        self.out_interface = Some("lo");
        self
    }
    fn owner(mut self, o: Owner) -> Rule {
        self.owner = Some(o);
        self
    }

    /// The rule's options after the chain name, in `iptables-save` order:
    /// addresses, interface, protocol, then matches, then the target.
    pub fn spec(&self) -> String {
        self.to_string()
    }

    /// `-A CHAIN SPEC`, as `iptables-save` prints it.
    pub fn append_line(&self) -> String {
        format!("-A {} {}", self.chain.name(), self)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(s) = &self.source {
            parts.push(format!("-s {s}"));
        }
        if let Some((d, negated)) = &self.destination {
            parts.push(format!("{}-d {d}", if *negated { "! " } else { "" }));
        }
        if let Some(o) = self.out_interface {
            parts.push(format!("-o {o}"));
        }
        if self.tcp {
            parts.push("-p tcp".into());
        }
        if let Some(p) = self.dport {
            parts.push(format!("-m tcp --dport {p}"));
        }
        match self.owner {
            Some(Owner::Uid { id, negated }) => parts.push(format!(
                "-m owner {}--uid-owner {id}",
                if negated { "! " } else { "" }
            )),
            Some(Owner::Gid { id, negated }) => parts.push(format!(
                "-m owner {}--gid-owner {id}",
                if negated { "! " } else { "" }
            )),
            None => {}
        }
        match self.target {
            Target::Return => parts.push("-j RETURN".into()),
            Target::Jump(c) => parts.push(format!("-j {}", c.name())),
            Target::Redirect(p) => parts.push(format!("-j REDIRECT --to-ports {p}")),
        }
        f.write_str(&parts.join(" "))
    }
}

/// The rules for one address family, in order: our chains' contents
/// first, the jumps from the built-in chains last (so that at no point of
/// the transaction a jump leads to a half-filled chain — `iptables-restore`
/// applies everything at once anyway, but the order also reads best).
pub fn rules(cfg: &Config, family: Family) -> Vec<Rule> {
    let mut r = Vec::new();
    inbound(cfg, &mut r);
    outbound(cfg, family, &mut r);
    r.push(
        Rule::new(
            Chain::Prerouting,
            Target::Jump(Chain::Inbound),
            "every TCP packet arriving from the network is considered for inbound capture",
        )
        .tcp(),
    );
    r.push(
        Rule::new(
            Chain::Output,
            Target::Jump(Chain::Outbound),
            "every TCP packet a local process sends is considered for outbound capture",
        )
        .tcp(),
    );
    r
}

fn inbound(cfg: &Config, r: &mut Vec<Rule>) {
    match &cfg.include_inbound_ports {
        Selection::All => {
            for &p in &cfg.exclude_inbound_ports {
                r.push(
                    Rule::new(
                        Chain::Inbound,
                        Target::Return,
                        "excluded inbound port: delivered to the listening process directly",
                    )
                    .dport(p),
                );
            }
            r.push(
                Rule::new(
                    Chain::Inbound,
                    Target::Jump(Chain::InRedirect),
                    "every other inbound TCP port is captured",
                )
                .tcp(),
            );
        }
        Selection::Only(ports) => {
            for &p in ports
                .iter()
                .filter(|p| !cfg.exclude_inbound_ports.contains(p))
            {
                r.push(
                    Rule::new(
                        Chain::Inbound,
                        Target::Jump(Chain::InRedirect),
                        "included inbound port: captured",
                    )
                    .dport(p),
                );
            }
        }
    }
    r.push(
        Rule::new(
            Chain::InRedirect,
            Target::Redirect(cfg.inbound_port),
            "to the proxy's inbound listener; SO_ORIGINAL_DST keeps the port the client asked for",
        )
        .tcp(),
    );
}

fn outbound(cfg: &Config, family: Family, r: &mut Vec<Rule>) {
    let out = Chain::Outbound;
    let lo = family.localhost();
    for &p in &cfg.exclude_outbound_ports {
        r.push(
            Rule::new(
                out,
                Target::Return,
                "excluded outbound port: never captured, not even on loopback",
            )
            .dport(p),
        );
    }
    r.push(
        Rule::new(
            out,
            Target::Return,
            "the proxy's inbound passthrough to the app at the pod IP binds this source: already handled",
        )
        .source(family.passthrough_source())
        .out_lo(),
    );
    // The proxy UID's and GID's rules come in the same three steps.
    //
    // A connection to the pod's own (non-localhost) address travels over
    // `lo`. Loopback packets do not pass the nat PREROUTING hook as a new
    // connection (conntrack has already seen them in OUTPUT), so inbound
    // capture would never see them; the decision is made here instead:
    //  1. the proxy connecting to the pod's own address over lo (an app
    //     called a service whose chosen endpoint is this very pod: app →
    //     outbound sidecar → pod IP) goes to the INBOUND listener, so the
    //     inbound side (mTLS, authorization, metrics) applies to it as it
    //     would for a call from another pod;
    //  2. anything else on lo not from the proxy (the app talking to itself
    //     on localhost or its own pod IP) is left alone;
    //  3. every other connection of the proxy is its own upstream traffic
    //     and must not be captured (that would loop forever).
    let owners = [
        (
            Owner::Uid {
                id: cfg.proxy_uid,
                negated: false,
            },
            Owner::Uid {
                id: cfg.proxy_uid,
                negated: true,
            },
            [
                "the proxy (by UID) calling the pod's own IP over lo: through the inbound listener",
                "anything else on lo not of the proxy's UID (the app talking to itself): not captured",
                "the proxy's own connections (by UID): never captured",
            ],
        ),
        (
            Owner::Gid {
                id: cfg.proxy_gid,
                negated: false,
            },
            Owner::Gid {
                id: cfg.proxy_gid,
                negated: true,
            },
            [
                "the same by GID: the proxy's group calling the pod's own IP over lo: inbound listener",
                "anything else on lo not of the proxy's GID: not captured",
                "the proxy's own connections (by GID): never captured",
            ],
        ),
    ];
    for (is_proxy, not_proxy, [to_inbound, app_lo, own]) in owners {
        r.push(
            Rule::new(out, Target::Jump(Chain::InRedirect), to_inbound)
                .not_to(lo)
                .out_lo()
                .owner(is_proxy),
        );
        r.push(
            Rule::new(out, Target::Return, app_lo)
                .out_lo()
                .owner(not_proxy),
        );
        r.push(Rule::new(out, Target::Return, own).owner(is_proxy));
    }
    r.push(Rule::new(out, Target::Return, "localhost is never captured").to(lo));
    for c in cfg
        .exclude_outbound_cidrs
        .iter()
        .filter(|c| family.contains(c))
    {
        r.push(
            Rule::new(
                out,
                Target::Return,
                "excluded outbound network: not captured",
            )
            .to(*c),
        );
    }
    match &cfg.include_outbound_cidrs {
        Selection::All => r.push(Rule::new(
            out,
            Target::Jump(Chain::Redirect),
            "every other outbound TCP connection is captured",
        )),
        Selection::Only(cidrs) => {
            for c in cidrs.iter().filter(|c| family.contains(c)) {
                r.push(
                    Rule::new(
                        out,
                        Target::Jump(Chain::Redirect),
                        "included outbound network: captured",
                    )
                    .to(*c),
                );
            }
        }
    }
    r.push(
        Rule::new(
            Chain::Redirect,
            Target::Redirect(cfg.outbound_port),
            "to the proxy's outbound listener; SO_ORIGINAL_DST keeps the destination the app asked for",
        )
        .tcp(),
    );
}
