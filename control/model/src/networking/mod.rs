//! `networking.istio.io`: VirtualService, DestinationRule, ServiceEntry,
//! Sidecar. Field names are Istio's (camelCase in YAML); every struct
//! rejects unknown fields and defaults missing ones, so that a missing
//! required field is reported by validation with a clear reason.

pub mod destination_rule;
pub mod service_entry;
pub mod sidecar;
pub mod virtual_service;

use serde::{Deserialize, Serialize};

use crate::common::PortSelector;

/// Where traffic goes: a service host (short name, FQDN or ServiceEntry
/// host), an optional DestinationRule subset and an optional port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Destination {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}
