//! Running `iptables-save` and `iptables-restore` (or the `ip6tables-`
//! ones). Whichever backend the system's alternatives select is used:
//! on Debian 12 and most current distributions that is `iptables-nft`
//! (nf_tables), which is also what this was tested with.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use crate::{
    restore::{self, Existing},
    rules::{self, Family, Rule},
    Config,
};

/// Running an iptables program failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(
        "cannot run `{program}`: {source} (install the `iptables` package; \
         ringmesh-init needs root or CAP_NET_ADMIN in the pod's network namespace)"
    )]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// `iptables-save -t nat` (or `ip6tables-save`): the current nat table.
pub fn save_nat(family: Family) -> Result<String, ExecError> {
    let program = family.save_program();
    let out = Command::new(program)
        .args(["-t", "nat"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ExecError::Spawn { program, source })?;
    if !out.status.success() {
        return Err(ExecError::Failed {
            program: format!("{program} -t nat"),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `iptables-restore --noflush` with `input` on its standard input: one
/// atomic transaction.
pub fn restore_noflush(family: Family, input: &str) -> Result<(), ExecError> {
    let program = family.restore_program();
    let mut child = Command::new(program)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ExecError::Spawn { program, source })?;
    // A failure to write shows up as the program's own error below.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| ExecError::Spawn { program, source })?;
    if !out.status.success() {
        return Err(ExecError::Failed {
            program: format!("{program} --noflush"),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// What [`install`] did.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The restore input that was applied.
    pub input: String,
    pub rules: Vec<Rule>,
    /// Rules `iptables-save` does not show exactly once afterwards (with
    /// the count seen). Empty when everything is in place; non-empty means
    /// the backend prints rules differently from us or something else
    /// changed the table at the same time.
    pub unverified: Vec<(String, usize)>,
}

/// Install (or re-install) the rules for `family`: read the table, apply
/// one transaction, read it again to verify.
pub fn install(cfg: &Config, family: Family) -> Result<Installed, ExecError> {
    let rules = rules::rules(cfg, family);
    let existing = Existing::parse(&save_nat(family)?);
    let input = restore::install(family, &rules, &existing);
    restore_noflush(family, &input)?;
    let unverified = restore::verify(&rules, &save_nat(family)?);
    Ok(Installed {
        input,
        rules,
        unverified,
    })
}

/// The restore input `cleanup` would apply now (`None`: nothing of ours
/// is installed).
pub fn cleanup_plan(family: Family) -> Result<Option<String>, ExecError> {
    Ok(restore::cleanup(
        family,
        &Existing::parse(&save_nat(family)?),
    ))
}

/// Remove our jumps and chains; returns the input applied, `None` when
/// there was nothing to remove.
pub fn cleanup(family: Family) -> Result<Option<String>, ExecError> {
    let plan = cleanup_plan(family)?;
    if let Some(input) = &plan {
        restore_noflush(family, input)?;
    }
    Ok(plan)
}
