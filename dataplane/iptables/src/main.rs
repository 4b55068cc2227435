//! `ringmesh-init`: install (or remove) the interception rules in the
//! current network namespace. Runs once per pod before the application and
//! the proxy start (an init container), as root or with CAP_NET_ADMIN.

use std::process::ExitCode;

use clap::Parser;
use ringmesh_iptables::{
    config::{self, Config, Selection},
    exec, restore, rules, Cidr, Family,
};

/// Redirect the pod's TCP traffic to ringmesh-proxy (nat table, chains
/// RINGMESH_INBOUND, RINGMESH_IN_REDIRECT, RINGMESH_OUTPUT, RINGMESH_REDIRECT).
#[derive(Parser, Debug)]
#[command(
    name = "ringmesh-init",
    version,
    about,
    after_help = "Lists are comma-separated; '*' means all; an empty string means none.\n\
Applied with one `iptables-restore --noflush` transaction per address family; running it again\n\
replaces the rules (one copy remains). See dataplane/iptables/README.md for every rule."
)]
struct Args {
    /// UID the proxy runs as; its own connections are never captured.
    #[arg(long, default_value_t = config::PROXY_ID)]
    proxy_uid: u32,
    /// GID the proxy runs as; its own connections are never captured.
    #[arg(long, default_value_t = config::PROXY_ID)]
    proxy_gid: u32,
    /// Port the proxy's outbound capture listener binds.
    #[arg(long, default_value_t = config::OUTBOUND_PORT, value_parser = port)]
    outbound_port: u16,
    /// Port the proxy's inbound capture listener binds.
    #[arg(long, default_value_t = config::INBOUND_PORT, value_parser = port)]
    inbound_port: u16,
    /// Inbound destination ports to capture: '*' or a list.
    #[arg(long, default_value = "*", value_parser = port_selection)]
    include_inbound_ports: Selection<u16>,
    /// Inbound ports never captured (default: the proxy's admin, metrics and health ports).
    #[arg(long, default_value = "15000,15020,15021", value_parser = ports)]
    exclude_inbound_ports: PortList,
    /// Outbound destination ports never captured.
    #[arg(long, default_value = "", value_parser = ports)]
    exclude_outbound_ports: PortList,
    /// Outbound destination networks never captured (e.g. 169.254.169.254/32).
    #[arg(long, default_value = "", value_parser = cidrs)]
    exclude_outbound_cidrs: CidrList,
    /// Outbound destination networks captured: '*' or a list (after the exclusions).
    #[arg(long, default_value = "*", value_parser = cidr_selection)]
    include_outbound_cidrs: Selection<Cidr>,
    /// Also install the IPv6 rules (ip6tables-restore).
    #[arg(long)]
    ipv6: bool,
    /// Print the iptables-restore input instead of applying it. With
    /// --cleanup, print what would be removed (reads the current table).
    #[arg(long)]
    dry_run: bool,
    /// Remove our jumps and chains instead of installing them.
    #[arg(long)]
    cleanup: bool,
}

// clap needs distinct types for values that are lists.
#[derive(Debug, Clone)]
struct PortList(Vec<u16>);
#[derive(Debug, Clone)]
struct CidrList(Vec<Cidr>);

fn port(s: &str) -> Result<u16, String> {
    config::parse_port(s).map_err(|e| e.to_string())
}
fn ports(s: &str) -> Result<PortList, String> {
    config::parse_ports(s)
        .map(PortList)
        .map_err(|e| e.to_string())
}
fn port_selection(s: &str) -> Result<Selection<u16>, String> {
    config::parse_selection(s, config::parse_port).map_err(|e| e.to_string())
}
fn cidrs(s: &str) -> Result<CidrList, String> {
    config::parse_cidrs(s)
        .map(CidrList)
        .map_err(|e| e.to_string())
}
fn cidr_selection(s: &str) -> Result<Selection<Cidr>, String> {
    config::parse_selection(s, |p| p.parse::<Cidr>().map_err(Into::into)).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = Config {
        proxy_uid: args.proxy_uid,
        proxy_gid: args.proxy_gid,
        outbound_port: args.outbound_port,
        inbound_port: args.inbound_port,
        include_inbound_ports: args.include_inbound_ports,
        exclude_inbound_ports: args.exclude_inbound_ports.0,
        exclude_outbound_ports: args.exclude_outbound_ports.0,
        exclude_outbound_cidrs: args.exclude_outbound_cidrs.0,
        include_outbound_cidrs: args.include_outbound_cidrs,
    };
    if let Err(e) = cfg.validate() {
        eprintln!("ringmesh-init: {e}");
        return ExitCode::from(2);
    }
    let families: &[Family] = if args.ipv6 {
        &[Family::V4, Family::V6]
    } else {
        &[Family::V4]
    };
    for &family in families {
        let result = match (args.cleanup, args.dry_run) {
            (false, true) => {
                let rules = rules::rules(&cfg, family);
                print!(
                    "{}",
                    restore::install(family, &rules, &restore::Existing::default())
                );
                Ok(())
            }
            (false, false) => install(&cfg, family),
            (true, true) => exec::cleanup_plan(family).map(|plan| match plan {
                Some(input) => print!("{input}"),
                None => println!("# ringmesh-init --cleanup: no {family} rules of ours installed"),
            }),
            (true, false) => exec::cleanup(family).map(|done| match done {
                Some(input) => {
                    print!("{input}");
                    eprintln!("ringmesh-init: {family} interception rules removed");
                }
                None => eprintln!("ringmesh-init: no {family} interception rules to remove"),
            }),
        };
        if let Err(e) = result {
            eprintln!("ringmesh-init: {family}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn install(cfg: &Config, family: Family) -> Result<(), exec::ExecError> {
    let done = exec::install(cfg, family)?;
    print!("{}", done.input);
    if done.unverified.is_empty() {
        eprintln!(
            "ringmesh-init: {family} interception installed: {} rules in table nat; \
             outbound TCP -> :{}, inbound TCP -> :{}, uid {} / gid {} exempt",
            done.rules.len(),
            cfg.outbound_port,
            cfg.inbound_port,
            cfg.proxy_uid,
            cfg.proxy_gid
        );
    } else {
        // The transaction succeeded, so the rules are in; a mismatch means
        // iptables-save spells them differently (another iptables version)
        // or something else edited the table at the same time. Say so
        // rather than fail the pod.
        eprintln!(
            "ringmesh-init: warning: {family} rules applied, but iptables-save does not show \
             these exactly once:"
        );
        for (rule, n) in &done.unverified {
            eprintln!("  {rule}   (found {n} times)");
        }
    }
    Ok(())
}
