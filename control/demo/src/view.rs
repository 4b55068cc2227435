//! The terminal view: the full screen redrawn every second on a
//! terminal, one status line per second otherwise, and the final
//! summary. Colour only on a terminal and never with `NO_COLOR`
//! (<https://no-color.org>).

use std::{fmt::Write as _, io::IsTerminal};

use crate::{
    load::Expect,
    mesh::{Plan, CANARY_HEADER},
    summary::{Rates, Summary},
};

/// Whether to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub const PLAIN: Style = Style { color: false };

    pub fn for_stdout() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: !no_color && std::io::stdout().is_terminal(),
        }
    }

    fn paint(self, sgr: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn bold(self, t: &str) -> String {
        self.paint("1", t)
    }
    fn dim(self, t: &str) -> String {
        self.paint("2", t)
    }
    fn good(self, t: &str) -> String {
        self.paint("32", t)
    }
    fn warn(self, t: &str) -> String {
        self.paint("33", t)
    }
    fn bad(self, t: &str) -> String {
        self.paint("1;31", t)
    }
}

/// `text` padded to `width` columns (by characters; the view uses no
/// wide characters), then painted: padding first keeps the columns
/// aligned whatever the escape sequences.
fn pad(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n >= width {
        text.to_owned()
    } else {
        format!("{text}{}", " ".repeat(width - n))
    }
}

fn rpad(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n >= width {
        text.to_owned()
    } else {
        format!("{}{text}", " ".repeat(width - n))
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}ms")
    } else if v >= 10.0 {
        format!("{v:.1}ms")
    } else {
        format!("{v:.2}ms")
    }
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / of as f64)
    }
}

/// The whole view. `rates` are the last interval's (live) or the run's
/// averages (final).
pub fn render(s: &Summary, rates: &Rates, plan: &Plan, style: Style, live: bool) -> String {
    let mut o = String::new();
    let first = plan
        .pods
        .first()
        .map_or_else(String::new, |p| p.ip.to_string());
    let _ = writeln!(
        o,
        "{}  {} pods on {}-{}, control plane {}, up {:.0}s",
        style.bold("ringmesh demo"),
        plan.pods.len(),
        first,
        plan.last_ip().octets()[3],
        s.control_plane,
        s.duration_s
    );
    let _ = writeln!(o);

    // Traffic per route, measured from the answers.
    let _ = writeln!(
        o,
        "{}",
        style.bold(&format!(
            "TRAFFIC  {} req/s into frontend {} (as an ingress would), answers checked end to end",
            s.target_rps,
            plan.frontend().inbound()
        ))
    );
    let over = if rates.split.is_empty() {
        "the whole run".to_owned()
    } else {
        format!("the last {:.0}s", rates.split_window_s)
    };
    let _ = writeln!(
        o,
        "  {}",
        style.dim(&format!(
            "v1/v2: which reviews answered, over {over}; latency since the start"
        ))
    );
    let _ = writeln!(
        o,
        "  {}{}{}{}{}{}{}{}",
        pad("ROUTE", 34),
        rpad("REQ/S", 7),
        rpad("TOTAL", 8),
        rpad("v1", 8),
        rpad("v2", 8),
        rpad("p50", 9),
        rpad("p99", 9),
        rpad("FAILED", 8)
    );
    for (name, r) in &s.routes {
        let failed = rpad(&r.failures.to_string(), 8);
        // The recent split when there is one (live), else the whole run's.
        let split = rates.split.get(name).unwrap_or(&r.split);
        let answered: u64 = split.values().sum();
        let _ = writeln!(
            o,
            "  {}{}{}{}{}{}{}{}",
            pad(&r.description, 34),
            rpad(
                &format!("{:.1}", rates.routes.get(name).copied().unwrap_or(0.0)),
                7
            ),
            rpad(&r.requests.to_string(), 8),
            rpad(&pct(*split.get("v1").unwrap_or(&0), answered), 8),
            rpad(&pct(*split.get("v2").unwrap_or(&0), answered), 8),
            rpad(&ms(r.latency_ms.p50), 9),
            rpad(&ms(r.latency_ms.p99), 9),
            if r.failures == 0 {
                style.good(&failed)
            } else {
                style.bad(&failed)
            }
        );
    }
    let _ = writeln!(o);

    // Hops, as the sidecars report them.
    let _ = writeln!(o, "{}", style.bold("HOPS  as the sidecars report them"));
    let _ = writeln!(
        o,
        "  {}{}{}  {}PEER IDENTITY",
        pad("HOP", 22),
        rpad("REQ/S", 7),
        rpad("5XX", 6),
        pad("SECURITY", 12),
    );
    for (k, h) in s.hops.iter().enumerate() {
        let sec = pad(&h.security, 12);
        let sec = match h.security.as_str() {
            "mutual_tls" => style.good(&sec),
            _ if h.from == "ingress" => sec,
            _ => style.warn(&sec),
        };
        let identity = if !h.peer_identities.is_empty() {
            h.peer_identities.join(", ")
        } else if h.from == "ingress" {
            style.dim("- (caller outside the mesh)")
        } else {
            style.dim(&format!(
                "not in the metrics yet (istio_requests_total); expected {}",
                h.expected
            ))
        };
        let _ = writeln!(
            o,
            "  {}{}{}  {}{}",
            pad(&format!("{} → {}", h.from, h.to), 22),
            rpad(
                &format!("{:.1}", rates.hops.get(k).copied().unwrap_or(0.0)),
                7
            ),
            rpad(&format!("{:.0}", h.errors_5xx), 6),
            sec,
            identity
        );
    }
    if s.hops
        .iter()
        .any(|h| h.from != "ingress" && h.security != "mutual_tls")
    {
        let _ = writeln!(
            o,
            "  {}",
            style.dim(
                "a hop between sidecars is not mutual TLS although PeerAuthentication says STRICT: \
                 the hops above are what is really on the wire."
            )
        );
    }
    let _ = writeln!(o);

    // Authorization.
    let a = &s.authorization;
    let _ = writeln!(o, "{}", style.bold("AUTHORIZATION"));
    let _ = writeln!(o, "  {}", a.peer_authentication);
    let _ = writeln!(o, "  {}", a.authorization_policy);
    let _ = writeln!(
        o,
        "  {}{}{}{}{}  RESULT",
        pad("PROBE (should be denied)", 28),
        pad("EXPECTED", 10),
        rpad("SENT", 6),
        rpad("DENIED", 8),
        rpad("ALLOWED", 9),
    );
    for p in &a.probes {
        let denied = p.stats.forbidden + p.stats.refused;
        let result = match p.enforced {
            Some(true) => style.good("enforced"),
            Some(false) if p.stats.allowed > 0 => style.warn(&format!(
                "NOT ENFORCED YET ({})",
                match p.expect {
                    Expect::Forbidden => "AuthorizationPolicy enforcement: authorization issue",
                    Expect::Refused => "STRICT mTLS is not applied to this sidecar",
                }
            )),
            Some(false) => style.warn(&format!("unexpected: {}", p.stats.last)),
            None => style.dim("not tried yet"),
        };
        let _ = writeln!(
            o,
            "  {}{}{}{}{}  {}",
            pad(p.name, 28),
            pad(
                match p.expect {
                    Expect::Forbidden => "403",
                    Expect::Refused => "refused",
                },
                10
            ),
            rpad(&p.stats.sent.to_string(), 6),
            rpad(&denied.to_string(), 8),
            rpad(&p.stats.allowed.to_string(), 9),
            result
        );
    }
    let reported = if a.sidecars_report_denials {
        format!("{:.0}", a.denials_reported)
    } else {
        format!(
            "{:.0} {}",
            a.denials_reported,
            style.dim("(the sidecars report no denials)")
        )
    };
    let _ = writeln!(o, "  denials reported by the sidecars: {reported}");
    let _ = writeln!(o);

    if !s.errors.is_empty() {
        let _ = writeln!(o, "{}", style.bad("ERRORS"));
        for e in &s.errors {
            let _ = writeln!(o, "  {} × {}", e.count, e.error);
        }
        let _ = writeln!(o);
    }
    let nacks: Vec<String> = s
        .pods
        .iter()
        .filter(|p| p.xds_rejected.is_some_and(|n| n > 0.0))
        .map(|p| format!("{} ({:.0})", p.name, p.xds_rejected.unwrap_or(0.0)))
        .collect();
    if !nacks.is_empty() {
        let _ = writeln!(
            o,
            "{} {}",
            style.warn("xDS configurations rejected (NACKed) by:"),
            nacks.join(", ")
        );
        let _ = writeln!(o);
    }
    if live {
        o.push_str(&try_these(s, plan, style));
    }
    o
}

/// The commands to try while it runs.
pub fn try_these(s: &Summary, plan: &Plan, style: Style) -> String {
    let mut o = String::new();
    let (h, v) = CANARY_HEADER;
    let front = plan.frontend().inbound();
    let reviews = plan.reviews_v1().inbound();
    let ratings_out = plan.ratings().outbound();
    let enforced = |name: &str| {
        s.authorization
            .probes
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.enforced)
    };
    let today = |name: &str| match enforced(name) {
        Some(true) => "denied, as it should be",
        Some(false) => "today it gets 200: not enforced yet",
        None => "not tried yet",
    };
    let _ = writeln!(o, "{}", style.bold("TRY"));
    let _ = writeln!(
        o,
        "  curl -s http://{front}/                          {}",
        style.dim("# the 90/10 canary")
    );
    let _ = writeln!(
        o,
        "  curl -s -H '{h}: {v}' http://{front}/      {}",
        style.dim("# the header route: always reviews v2")
    );
    let _ = writeln!(
        o,
        "  curl -si -H 'Host: reviews:9080' http://{ratings_out}/   {}",
        style.dim(&format!(
            "# ratings calling reviews: the AuthorizationPolicy denies it (403); {}",
            today("ratings → reviews")
        ))
    );
    let _ = writeln!(
        o,
        "  curl -si http://{reviews}/                        {}",
        style.dim(&format!(
            "# outside the frontend, straight to reviews' sidecar: STRICT refuses it; {}",
            today("outside → reviews")
        ))
    );
    let _ = writeln!(
        o,
        "  {}",
        style.dim(&format!(
            "edit {}/mesh/reviews-routing.yaml to move the split live; logs in {}/logs; Ctrl-C stops \
             everything",
            s.dir, s.dir
        ))
    );
    o
}

/// One line per second when stdout is not a terminal.
pub fn status_line(s: &Summary, rates: &Rates) -> String {
    let route = |name: &str| {
        s.routes.get(name).map_or_else(String::new, |r| {
            format!(
                "{name} v1 {} v2 {}",
                pct(*r.split.get("v1").unwrap_or(&0), r.ok),
                pct(*r.split.get("v2").unwrap_or(&0), r.ok)
            )
        })
    };
    format!(
        "[{:>5.0}s] {:.1} req/s  {}  {}  p50 {} p99 {}  failed {}  denied {}/{} probes",
        s.duration_s,
        rates.total,
        route("canary"),
        route("jason"),
        ms(s.latency_ms.p50),
        ms(s.latency_ms.p99),
        s.failures,
        s.authorization
            .probes
            .iter()
            .map(|p| p.stats.forbidden + p.stats.refused)
            .sum::<u64>(),
        s.authorization
            .probes
            .iter()
            .map(|p| p.stats.sent)
            .sum::<u64>(),
    )
}

/// Clear the terminal and move home, before a redraw.
pub const CLEAR: &str = "\x1b[H\x1b[2J";
