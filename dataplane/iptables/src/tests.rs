//! Rule generation and rendering, against exact expected text.

use crate::{
    cidr::Cidr,
    config::{self, Config, ConfigError, Selection},
    restore::{self, Existing},
    rules::{rules, Family},
};

/// The `-A` lines only (what `iptables-save` shows back).
fn appends(cfg: &Config, family: Family) -> String {
    rules(cfg, family)
        .iter()
        .map(|r| r.append_line() + "\n")
        .collect()
}

#[test]
fn default_install_text() {
    let text = restore::install(
        Family::V4,
        &rules(&Config::default(), Family::V4),
        &Existing::default(),
    );
    let expected = "\
# ringmesh-init: IPv4 nat rules (iptables-restore --noflush input)
*nat
# our chains: created, or flushed if they exist
:RINGMESH_INBOUND - [0:0]
:RINGMESH_IN_REDIRECT - [0:0]
:RINGMESH_OUTPUT - [0:0]
:RINGMESH_REDIRECT - [0:0]
# excluded inbound port: delivered to the listening process directly
-A RINGMESH_INBOUND -p tcp -m tcp --dport 15000 -j RETURN
# excluded inbound port: delivered to the listening process directly
-A RINGMESH_INBOUND -p tcp -m tcp --dport 15020 -j RETURN
# excluded inbound port: delivered to the listening process directly
-A RINGMESH_INBOUND -p tcp -m tcp --dport 15021 -j RETURN
# every other inbound TCP port is captured
-A RINGMESH_INBOUND -p tcp -j RINGMESH_IN_REDIRECT
# to the proxy's inbound listener; SO_ORIGINAL_DST keeps the port the client asked for
-A RINGMESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
# the proxy's inbound passthrough to the app at the pod IP binds this source: already handled
-A RINGMESH_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
# the proxy (by UID) calling the pod's own IP over lo: through the inbound listener
-A RINGMESH_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j RINGMESH_IN_REDIRECT
# anything else on lo not of the proxy's UID (the app talking to itself): not captured
-A RINGMESH_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
# the proxy's own connections (by UID): never captured
-A RINGMESH_OUTPUT -m owner --uid-owner 1337 -j RETURN
# the same by GID: the proxy's group calling the pod's own IP over lo: inbound listener
-A RINGMESH_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j RINGMESH_IN_REDIRECT
# anything else on lo not of the proxy's GID: not captured
-A RINGMESH_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
# the proxy's own connections (by GID): never captured
-A RINGMESH_OUTPUT -m owner --gid-owner 1337 -j RETURN
# localhost is never captured
-A RINGMESH_OUTPUT -d 127.0.0.1/32 -j RETURN
# every other outbound TCP connection is captured
-A RINGMESH_OUTPUT -j RINGMESH_REDIRECT
# to the proxy's outbound listener; SO_ORIGINAL_DST keeps the destination the app asked for
-A RINGMESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001
# every TCP packet arriving from the network is considered for inbound capture
-A PREROUTING -p tcp -j RINGMESH_INBOUND
# every TCP packet a local process sends is considered for outbound capture
-A OUTPUT -p tcp -j RINGMESH_OUTPUT
COMMIT
";
    assert_eq!(text, expected, "\n{text}");
}

fn custom() -> Config {
    Config {
        proxy_uid: 101,
        proxy_gid: 102,
        outbound_port: 16001,
        inbound_port: 16006,
        include_inbound_ports: Selection::Only(vec![8080, 9090]),
        exclude_inbound_ports: vec![],
        exclude_outbound_ports: vec![3306, 5432],
        exclude_outbound_cidrs: config::parse_cidrs("169.254.169.254,10.1.2.3/16,fd00:1::5/64")
            .unwrap(),
        include_outbound_cidrs: Selection::Only(
            config::parse_cidrs("10.0.0.0/8,172.16.0.0/12,fd00::/8").unwrap(),
        ),
    }
}

#[test]
fn custom_ipv4_rules() {
    let expected = "\
-A RINGMESH_INBOUND -p tcp -m tcp --dport 8080 -j RINGMESH_IN_REDIRECT
-A RINGMESH_INBOUND -p tcp -m tcp --dport 9090 -j RINGMESH_IN_REDIRECT
-A RINGMESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006
-A RINGMESH_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN
-A RINGMESH_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN
-A RINGMESH_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A RINGMESH_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 101 -j RINGMESH_IN_REDIRECT
-A RINGMESH_OUTPUT -o lo -m owner ! --uid-owner 101 -j RETURN
-A RINGMESH_OUTPUT -m owner --uid-owner 101 -j RETURN
-A RINGMESH_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 102 -j RINGMESH_IN_REDIRECT
-A RINGMESH_OUTPUT -o lo -m owner ! --gid-owner 102 -j RETURN
-A RINGMESH_OUTPUT -m owner --gid-owner 102 -j RETURN
-A RINGMESH_OUTPUT -d 127.0.0.1/32 -j RETURN
-A RINGMESH_OUTPUT -d 169.254.169.254/32 -j RETURN
-A RINGMESH_OUTPUT -d 10.1.0.0/16 -j RETURN
-A RINGMESH_OUTPUT -d 10.0.0.0/8 -j RINGMESH_REDIRECT
-A RINGMESH_OUTPUT -d 172.16.0.0/12 -j RINGMESH_REDIRECT
-A RINGMESH_REDIRECT -p tcp -j REDIRECT --to-ports 16001
-A PREROUTING -p tcp -j RINGMESH_INBOUND
-A OUTPUT -p tcp -j RINGMESH_OUTPUT
";
    let got = appends(&custom(), Family::V4);
    assert_eq!(got, expected, "\n{got}");
}

#[test]
fn custom_ipv6_rules() {
    let expected = "\
-A RINGMESH_INBOUND -p tcp -m tcp --dport 8080 -j RINGMESH_IN_REDIRECT
-A RINGMESH_INBOUND -p tcp -m tcp --dport 9090 -j RINGMESH_IN_REDIRECT
-A RINGMESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006
-A RINGMESH_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN
-A RINGMESH_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN
-A RINGMESH_OUTPUT -s ::6/128 -o lo -j RETURN
-A RINGMESH_OUTPUT ! -d ::1/128 -o lo -m owner --uid-owner 101 -j RINGMESH_IN_REDIRECT
-A RINGMESH_OUTPUT -o lo -m owner ! --uid-owner 101 -j RETURN
-A RINGMESH_OUTPUT -m owner --uid-owner 101 -j RETURN
-A RINGMESH_OUTPUT ! -d ::1/128 -o lo -m owner --gid-owner 102 -j RINGMESH_IN_REDIRECT
-A RINGMESH_OUTPUT -o lo -m owner ! --gid-owner 102 -j RETURN
-A RINGMESH_OUTPUT -m owner --gid-owner 102 -j RETURN
-A RINGMESH_OUTPUT -d ::1/128 -j RETURN
-A RINGMESH_OUTPUT -d fd00:1::/64 -j RETURN
-A RINGMESH_OUTPUT -d fd00::/8 -j RINGMESH_REDIRECT
-A RINGMESH_REDIRECT -p tcp -j REDIRECT --to-ports 16001
-A PREROUTING -p tcp -j RINGMESH_INBOUND
-A OUTPUT -p tcp -j RINGMESH_OUTPUT
";
    let got = appends(&custom(), Family::V6);
    assert_eq!(got, expected, "\n{got}");
}

#[test]
fn excluded_inbound_ports_win_over_included_ones() {
    let cfg = Config {
        include_inbound_ports: Selection::Only(vec![8080, 15020]),
        ..Config::default()
    };
    let got = appends(&cfg, Family::V4);
    assert!(
        got.starts_with(
            "-A RINGMESH_INBOUND -p tcp -m tcp --dport 8080 -j RINGMESH_IN_REDIRECT\n\
             -A RINGMESH_IN_REDIRECT"
        ),
        "{got}"
    );
}

#[test]
fn nothing_included_captures_nothing() {
    let cfg = Config {
        include_inbound_ports: Selection::Only(vec![]),
        include_outbound_cidrs: Selection::Only(config::parse_cidrs("fd00::/8").unwrap()),
        ..Config::default()
    };
    let got = appends(&cfg, Family::V4);
    // No rule jumps to RINGMESH_REDIRECT (the only outbound network is
    // IPv6) and RINGMESH_INBOUND is empty.
    assert!(!got.contains("-j RINGMESH_REDIRECT"), "{got}");
    assert!(!got.contains("-A RINGMESH_INBOUND"), "{got}");
    // The chains and jumps still exist, so --cleanup and re-runs behave
    // the same whatever the settings.
    assert!(
        got.contains("-A PREROUTING -p tcp -j RINGMESH_INBOUND\n"),
        "{got}"
    );
}

/// `iptables-save -t nat` of a table where ringmesh-init ran twice by an
/// old version (duplicate jumps, a chain we no longer use) next to
/// someone else's rules.
const SAVED: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables) on Mon Nov 23 22:41:36 2026
*filter
:INPUT ACCEPT [0:0]
-A INPUT -j RINGMESH_FILTER
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:RINGMESH_INBOUND - [0:0]
:RINGMESH_OLD - [0:0]
:RINGMESH_OUTPUT - [0:0]
-A PREROUTING -p tcp -j RINGMESH_INBOUND
-A PREROUTING -p tcp -j RINGMESH_INBOUND
-A PREROUTING -j DOCKER
-A OUTPUT -p tcp -j RINGMESH_OUTPUT
-A POSTROUTING -o lo -j RINGMESH_OLD
-A RINGMESH_INBOUND -p tcp -j RINGMESH_OLD
-A RINGMESH_OLD -p tcp -j REDIRECT --to-ports 15006
COMMIT
# Completed on Mon Nov 23 22:41:36 2026
";

#[test]
fn parse_existing() {
    let e = Existing::parse(SAVED);
    assert_eq!(
        e.chains,
        ["RINGMESH_INBOUND", "RINGMESH_OLD", "RINGMESH_OUTPUT"]
    );
    assert_eq!(
        e.jumps,
        [
            "-A PREROUTING -p tcp -j RINGMESH_INBOUND",
            "-A PREROUTING -p tcp -j RINGMESH_INBOUND",
            "-A OUTPUT -p tcp -j RINGMESH_OUTPUT",
            "-A POSTROUTING -o lo -j RINGMESH_OLD",
        ]
    );
    assert!(Existing::parse("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n").is_empty());
}

#[test]
fn reinstall_removes_what_is_there() {
    let cfg = Config {
        include_inbound_ports: Selection::Only(vec![8080]),
        ..Config::default()
    };
    let text = restore::install(
        Family::V4,
        &rules(&cfg, Family::V4),
        &Existing::parse(SAVED),
    );
    let head: String = text
        .lines()
        .take_while(|l| !l.starts_with("-A"))
        .filter(|l| !l.starts_with("# ringmesh") && !l.starts_with("# our"))
        .map(|l| format!("{l}\n"))
        .collect();
    let expected = "\
*nat
:RINGMESH_INBOUND - [0:0]
:RINGMESH_IN_REDIRECT - [0:0]
:RINGMESH_OUTPUT - [0:0]
:RINGMESH_REDIRECT - [0:0]
# what an earlier run left: removed, so that one copy remains
-D PREROUTING -p tcp -j RINGMESH_INBOUND
-D PREROUTING -p tcp -j RINGMESH_INBOUND
-D OUTPUT -p tcp -j RINGMESH_OUTPUT
-D POSTROUTING -o lo -j RINGMESH_OLD
-F RINGMESH_OLD
-X RINGMESH_OLD
# included inbound port: captured
";
    assert_eq!(head, expected, "\n{text}");
    assert!(
        text.ends_with("-A OUTPUT -p tcp -j RINGMESH_OUTPUT\nCOMMIT\n"),
        "{text}"
    );
}

#[test]
fn cleanup_text() {
    let text = restore::cleanup(Family::V6, &Existing::parse(SAVED)).unwrap();
    let expected = "\
# ringmesh-init --cleanup: IPv6 nat rules (iptables-restore --noflush input)
*nat
-D PREROUTING -p tcp -j RINGMESH_INBOUND
-D PREROUTING -p tcp -j RINGMESH_INBOUND
-D OUTPUT -p tcp -j RINGMESH_OUTPUT
-D POSTROUTING -o lo -j RINGMESH_OLD
-F RINGMESH_INBOUND
-F RINGMESH_OLD
-F RINGMESH_OUTPUT
-X RINGMESH_INBOUND
-X RINGMESH_OLD
-X RINGMESH_OUTPUT
COMMIT
";
    assert_eq!(text, expected, "\n{text}");
    assert_eq!(restore::cleanup(Family::V4, &Existing::default()), None);
}

#[test]
fn verify_finds_missing_and_duplicated_rules() {
    let cfg = Config::default();
    let expected = rules(&cfg, Family::V4);
    let mut saved = String::from("*nat\n");
    for r in &expected {
        saved.push_str(&r.append_line());
        saved.push('\n');
    }
    saved.push_str("COMMIT\n");
    assert!(restore::verify(&expected, &saved).is_empty());

    let twice = saved.replace(
        "-A OUTPUT -p tcp -j RINGMESH_OUTPUT\n",
        "-A OUTPUT -p tcp -j RINGMESH_OUTPUT\n-A OUTPUT -p tcp -j RINGMESH_OUTPUT\n",
    );
    assert_eq!(
        restore::verify(&expected, &twice),
        [("-A OUTPUT -p tcp -j RINGMESH_OUTPUT".to_string(), 2)]
    );
    let missing = saved.replace(
        "-A RINGMESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n",
        "",
    );
    assert_eq!(
        restore::verify(&expected, &missing),
        [(
            "-A RINGMESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001".to_string(),
            0
        )]
    );
}

#[test]
fn cidrs_are_canonical() {
    let cases = [
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("10.1.2.3", "10.1.2.3/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("192.168.7.255/31", "192.168.7.254/31"),
        ("fd00:1:2::5/64", "fd00:1:2::/64"),
        ("::1", "::1/128"),
        ("::/0", "::/0"),
    ];
    for (input, canonical) in cases {
        let c: Cidr = input.parse().unwrap();
        assert_eq!(c.to_string(), canonical, "{input}");
    }
    for bad in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0/8",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "host",
        "",
    ] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad:?} accepted");
    }
    let e = "10.0.0.0/33".parse::<Cidr>().unwrap_err().to_string();
    assert_eq!(
        e,
        "\"10.0.0.0/33\" is not an IP network (prefix length too long for the address); \
         expected e.g. 10.0.0.0/8, 192.168.1.7 or fd00::/8"
    );
}

#[test]
fn ports_and_selections() {
    assert_eq!(
        config::parse_ports("15020, 15021,15020,").unwrap(),
        [15020, 15021]
    );
    assert_eq!(config::parse_ports("").unwrap(), Vec::<u16>::new());
    for bad in ["0", "65536", "-1", "80a", "+80"] {
        assert_eq!(
            config::parse_ports(bad),
            Err(ConfigError::Port { input: bad.into() }),
            "{bad:?}"
        );
    }
    assert_eq!(
        config::parse_selection(" * ", config::parse_port).unwrap(),
        Selection::All
    );
    assert_eq!(
        config::parse_selection("80,443", config::parse_port).unwrap(),
        Selection::Only(vec![80, 443])
    );
    assert_eq!(Selection::Only(vec![80, 443]).to_string(), "80,443");
    assert_eq!(Selection::<u16>::All.to_string(), "*");
}

#[test]
fn validation() {
    assert_eq!(Config::default().validate(), Ok(()));
    let same = Config {
        inbound_port: 15001,
        ..Config::default()
    };
    assert_eq!(same.validate(), Err(ConfigError::SamePorts(15001)));
}
