//! The proxy's configuration, from source to [`Snapshot`].
//!
//! Every configuration source — the static YAML file today, xDS resources
//! later — is first expressed as the neutral [`model::ProxyConfig`] and then
//! goes through the single [`compile`] step, so validation and the compiled
//! form are the same whichever way configuration arrives. A [`Snapshot`] is
//! immutable; the proxy publishes it through `arc-swap` and a request keeps
//! the `Arc<Snapshot>` it started with until it finishes.
#![forbid(unsafe_code)]

pub mod authz;
mod compile;
mod duration;
mod locate;
pub mod model;
pub mod resilience;
mod snapshot;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use compile::valid_meta_value;
pub use duration::{format_duration, parse_duration};
pub use resilience::{CircuitBreakers, LbPolicy, OutlierDetection};
pub use snapshot::{
    AccessLogConfig, Cluster, ClusterKind, DownstreamTls, Endpoint, IdentityConfig, IdentitySource,
    Listener, ListenerKind, ProxyLimits, Snapshot, UpstreamProtocol, UpstreamTls, WorkloadInfo,
};

/// One reason a configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when the configuration came from one.
    pub file: Option<PathBuf>,
    /// 1-based line and column, when the YAML parser knows them.
    pub line: Option<(usize, usize)>,
    /// Field path, e.g. `clusters[2].endpoints[0].address`.
    pub field: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    /// `FILE:LINE:COL: FIELD: REASON`, omitting the parts that are unknown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut located = false;
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            located = true;
        }
        if let Some((line, col)) = self.line {
            if located {
                f.write_str(":")?;
            }
            write!(f, "{line}:{col}")?;
            located = true;
        }
        if located {
            f.write_str(": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// All the reasons a configuration was rejected (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Parse YAML text (`deny_unknown_fields` throughout) into the model.
/// `file` is only used to label errors.
///
/// YAML stops at the first error, so this reports one: with its line and
/// column, the field path (`listeners[0].protocol`) and serde's reason (an
/// unknown field lists the expected ones). A document with nothing in it
/// (empty, only comments, `{}`) is rejected too: reloading a file caught
/// half-written must not replace a working configuration with nothing.
pub fn parse_yaml(text: &str, file: Option<&Path>) -> Result<model::ProxyConfig, ConfigErrors> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let cfg: model::ProxyConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = inner.location().map(|l| (l.line(), l.column()));
        let reason = yaml_reason(&inner.to_string(), &path, at);
        ConfigErrors(vec![ConfigError {
            file: file.map(Path::to_path_buf),
            line: match at {
                Some(at) => Some(locate::within_text(text, at)),
                // The one error the parser does not locate (serde_yaml_ng
                // does not expose its kind, only its text).
                None if reason.contains("more than one document") => locate::second_document(text),
                None => None,
            },
            field: (path != "." && !path.is_empty()).then_some(path),
            reason,
        }])
    })?;
    if cfg == model::ProxyConfig::default() {
        return Err(ConfigErrors(vec![ConfigError {
            file: file.map(Path::to_path_buf),
            line: None,
            field: None,
            reason: "the configuration is empty (expected admin, listeners, route_configs, clusters or limits)"
                .into(),
        }]));
    }
    Ok(cfg)
}

/// serde_yaml_ng's message without what we report separately: its own
/// path prefix (`listeners[0]: `) and the ` at line L column C` suffix.
fn yaml_reason(message: &str, path: &str, line: Option<(usize, usize)>) -> String {
    let mut msg = message.to_owned();
    if let Some((l, c)) = line {
        if let Some(at) = msg.find(&format!(" at line {l} column {c}")) {
            msg.replace_range(at..at + format!(" at line {l} column {c}").len(), "");
        }
    }
    if let Some((head, rest)) = msg.split_once(": ") {
        if !head.is_empty() && !head.contains(' ') && path.starts_with(head) {
            return rest.to_owned();
        }
    }
    msg
}

/// Validate and compile a model into a snapshot. `version` is stamped into
/// the snapshot (the caller derives it from the source state, e.g. a hash
/// of the file contents or the xDS versions). Collects every error it can
/// rather than stopping at the first.
pub fn compile(cfg: &model::ProxyConfig, version: u64) -> Result<Snapshot, ConfigErrors> {
    compile::compile(cfg, version).map_err(ConfigErrors)
}

/// Read, parse and compile a file; errors carry the file name. The version
/// is a stable hash (FNV-1a 64) of the file bytes.
pub fn load_file(path: &Path) -> Result<Snapshot, ConfigErrors> {
    let fail = |reason: String| {
        ConfigErrors(vec![ConfigError {
            file: Some(path.to_path_buf()),
            line: None,
            field: None,
            reason,
        }])
    };
    let bytes = std::fs::read(path)
        .map_err(|e| fail(format!("cannot read the configuration file: {e}")))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        fail(format!(
            "not valid UTF-8 (first bad byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    load_str(text, Some(path))
}

/// Parse and compile YAML text, as [`load_file`] does after reading: the
/// version is the FNV-1a 64 hash of `text`, and errors found while
/// compiling are given the line and column of their field (or of its
/// nearest enclosing entry when the field is missing). `file` only labels
/// errors.
pub fn load_str(text: &str, file: Option<&Path>) -> Result<Snapshot, ConfigErrors> {
    let cfg = parse_yaml(text, file)?;
    compile::compile(&cfg, fnv1a64(text.as_bytes())).map_err(|mut errors| {
        // Locating re-parses the text once per error; a file with thousands
        // of errors gets lines for the first ones only.
        for (i, e) in errors.iter_mut().enumerate() {
            e.file = file.map(Path::to_path_buf);
            if i < MAX_LOCATED_ERRORS {
                e.line = e.field.as_deref().and_then(|f| locate::locate(text, f));
            }
        }
        ConfigErrors(errors)
    })
}

const MAX_LOCATED_ERRORS: usize = 200;

/// FNV-1a 64: configuration versions and cluster ids. Stable across runs
/// and platforms (unlike `std`'s hasher), and cheap.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
