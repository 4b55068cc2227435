//! `ringmesh-control token`: a bootstrap token for one workload identity,
//! signed with the token key of the control plane's data directory (file
//! mode's proof of identity for the CA's signing service).

use std::{io::Write, path::PathBuf, time::Duration};

use ringmesh_ca::{Identity, TokenAuthority};

pub const AFTER_HELP: &str = "\
Examples:
  ringmesh-control token --namespace default --service-account reviews
  ringmesh-control token --data-dir /var/lib/ringmesh -n shop -s cart --ttl 1h

Prints the token on stdout. Give it to the workload's proxy, which sends it as
`authorization: Bearer <token>` to the CA with its certificate request; the CA signs
only spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>. Use the --data-dir
the control plane serves from: tokens are checked with the key kept there (created
on first use). There is no revocation short of deleting that key, which invalidates
every token: keep the TTL short.";

/// Flags of `token`.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// The control plane's data directory (holds `token-key`).
    #[arg(long, default_value = "ringmesh-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The workload's namespace.
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// The workload's service account.
    #[arg(long, short = 's')]
    pub service_account: String,
    /// SPIFFE trust domain (the control plane's --trust-domain).
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// How long the token proves the identity.
    #[arg(long, default_value = "24h", value_parser = crate::duration)]
    pub ttl: Duration,
}

/// Mint and print the token. Returns the exit code.
pub fn main(args: &TokenArgs) -> i32 {
    match mint(args) {
        Ok(token) => {
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{token}").and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: cannot write the token: {e}");
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// The token for `args`' identity.
pub fn mint(args: &TokenArgs) -> Result<String, String> {
    if args.ttl.is_zero() {
        return Err("--ttl must be more than 0".into());
    }
    let identity = Identity::new(&args.trust_domain, &args.namespace, &args.service_account)
        .map_err(|e| {
            format!(
                "spiffe://{}/ns/{}/sa/{} is not a valid identity: {e}",
                args.trust_domain, args.namespace, args.service_account
            )
        })?;
    let authority = TokenAuthority::open(&args.data_dir).map_err(|e| {
        format!(
            "cannot open the token key in {}: {e}",
            args.data_dir.display()
        )
    })?;
    Ok(authority.issue(&identity, args.ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &std::path::Path, ns: &str, sa: &str, ttl: Duration) -> TokenArgs {
        TokenArgs {
            data_dir: dir.to_owned(),
            namespace: ns.into(),
            service_account: sa.into(),
            trust_domain: "cluster.local".into(),
            ttl,
        }
    }

    #[test]
    fn a_minted_token_proves_its_identity_to_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let token = mint(&args(dir.path(), "shop", "cart", Duration::from_secs(60))).unwrap();
        let authority = TokenAuthority::open(dir.path()).unwrap();
        assert_eq!(
            authority.verify(&token).unwrap().to_string(),
            "spiffe://cluster.local/ns/shop/sa/cart"
        );
        // Another directory has another key.
        let other = tempfile::tempdir().unwrap();
        assert!(TokenAuthority::open(other.path())
            .unwrap()
            .verify(&token)
            .is_err());
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let e = mint(&args(dir.path(), "Bad NS", "cart", Duration::from_secs(60))).unwrap_err();
        assert!(
            e.starts_with("spiffe://cluster.local/ns/Bad NS/sa/cart is not a valid identity"),
            "{e}"
        );
        let e = mint(&args(dir.path(), "shop", "cart", Duration::ZERO)).unwrap_err();
        assert_eq!(e, "--ttl must be more than 0");
    }
}
