//! `PeerAuthentication`: whether a workload accepts plaintext, mTLS or
//! both. Without a selector it applies to its namespace; in the root
//! namespace (`istio-system`), to the whole mesh.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::common::{PolicySelector, PortKey};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PeerAuthentication {
    pub selector: Option<PolicySelector>,
    pub mtls: Option<PeerMtls>,
    /// Per-port overrides; only with a selector.
    pub port_level_mtls: BTreeMap<PortKey, PeerMtls>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PeerMtls {
    pub mode: MtlsMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the parent scope (namespace, then mesh).
    #[default]
    Unset,
    Disable,
    Permissive,
    Strict,
}
