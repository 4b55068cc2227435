//! `AuthorizationPolicy`: who may call what. DENY policies are evaluated
//! first, then ALLOW; when any ALLOW policy applies to a workload and none
//! matches, the request is denied.

use serde::{Deserialize, Serialize};

use crate::common::PolicySelector;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuthorizationPolicy {
    pub selector: Option<PolicySelector>,
    /// Waypoint/gateway attachment; rejected as unsupported.
    pub target_ref: Option<serde_yaml_ng::Value>,
    /// Waypoint/gateway attachment; rejected as unsupported.
    pub target_refs: Vec<serde_yaml_ng::Value>,
    pub action: Action,
    /// Only with `action: CUSTOM`.
    pub provider: Option<ExtensionProvider>,
    /// OR-ed. No rules: an ALLOW policy matches nothing (deny all), a
    /// DENY policy denies nothing. `[{}]` matches everything.
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    #[default]
    Allow,
    Deny,
    Audit,
    /// External authorization (ext_authz); not supported yet.
    Custom,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ExtensionProvider {
    pub name: String,
}

/// All of `from`, `to` and `when` must match (each list is OR-ed inside).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Rule {
    pub from: Vec<RuleFrom>,
    pub to: Vec<RuleTo>,
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RuleFrom {
    pub source: Option<Source>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RuleTo {
    pub operation: Option<Operation>,
}

/// The peer. Fields are AND-ed; values inside a field are OR-ed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Source {
    /// Peer identities without `spiffe://`: `cluster.local/ns/default/sa/productpage`.
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    /// `iss/sub` of a validated JWT.
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    /// IPs or CIDRs of the peer connection.
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
    /// IPs or CIDRs of the original client (X-Forwarded-For, PROXY protocol).
    pub remote_ip_blocks: Vec<String>,
    pub not_remote_ip_blocks: Vec<String>,
    /// `namespace/name` service accounts.
    pub service_accounts: Vec<String>,
    pub not_service_accounts: Vec<String>,
}

impl Source {
    pub fn is_empty(&self) -> bool {
        *self == Source::default()
    }
}

/// The request. Fields are AND-ed; values inside a field are OR-ed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Operation {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    /// Port numbers as strings (`"8080"`), as in Istio.
    pub ports: Vec<String>,
    pub not_ports: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    /// Exact, `prefix*`, `*suffix`, `*`, or `{*}`/`{**}` templates.
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

impl Operation {
    pub fn is_empty(&self) -> bool {
        *self == Operation::default()
    }
}

/// `key: request.headers[x-user]`, `values: [...]`, `notValues: [...]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Condition {
    pub key: String,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}
