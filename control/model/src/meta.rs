//! The Kubernetes envelope: kinds and API versions, object metadata, and
//! [`Resource`], a validated spec with its metadata and origin.

use std::{collections::BTreeMap, fmt};

use serde::{de::IgnoredAny, Deserialize};

use crate::diagnostic::ResourceRef;

/// The kinds this crate models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    VirtualService,
    DestinationRule,
    ServiceEntry,
    Sidecar,
    PeerAuthentication,
    AuthorizationPolicy,
}

pub const NETWORKING_GROUP: &str = "networking.istio.io";
pub const SECURITY_GROUP: &str = "security.istio.io";

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::Sidecar,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Kind::PeerAuthentication | Kind::AuthorizationPolicy => SECURITY_GROUP,
            _ => NETWORKING_GROUP,
        }
    }

    /// Accepted versions, newest first. They share one schema: Istio
    /// serves the same resource under each.
    pub fn versions(self) -> &'static [&'static str] {
        match self.group() {
            SECURITY_GROUP => &["v1", "v1beta1"],
            _ => &["v1", "v1beta1", "v1alpha3"],
        }
    }

    /// The kind with this group (`networking.istio.io`) and name.
    pub fn find(group: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a resource was read: the file label and the 1-based line its
/// object starts on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The metadata a resource keeps (the rest of Kubernetes' `ObjectMeta`
/// is accepted and dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// As written, e.g. `networking.istio.io/v1beta1`.
    pub api_version: String,
    pub name: String,
    /// As written, or the loader's default namespace.
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub resource_version: Option<String>,
    pub generation: Option<i64>,
    pub uid: Option<String>,
}

/// A validated resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource<T> {
    pub meta: Meta,
    pub spec: T,
    pub origin: Origin,
}

impl<T: crate::Spec> Resource<T> {
    pub fn kind(&self) -> Kind {
        T::KIND
    }

    /// `Kind namespace/name`, as diagnostics name it.
    pub fn reference(&self) -> ResourceRef {
        ResourceRef {
            kind: T::KIND.as_str().to_owned(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }
}

/// A supported object as written: the envelope around a spec. `status`
/// (written by controllers) is accepted and ignored; any other top-level
/// field is an error, as a typo such as `specs:` must not silently load
/// an empty spec.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Object<T> {
    #[allow(dead_code)]
    pub(crate) api_version: String,
    #[allow(dead_code)]
    pub(crate) kind: String,
    pub(crate) metadata: ObjectMeta,
    #[serde(default)]
    pub(crate) spec: Option<T>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) status: Option<IgnoredAny>,
}

/// Kubernetes' `ObjectMeta`. Every field it defines is accepted (what
/// `kubectl get -o yaml` prints must load); anything else is a typo —
/// `namepsace:` must not silently land in the default namespace.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct ObjectMeta {
    pub(crate) name: String,
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(crate) annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(crate) resource_version: Option<String>,
    #[serde(default)]
    pub(crate) generation: Option<i64>,
    #[serde(default)]
    pub(crate) uid: Option<String>,
    #[serde(default)]
    generate_name: Option<IgnoredAny>,
    #[serde(default)]
    self_link: Option<IgnoredAny>,
    #[serde(default)]
    creation_timestamp: Option<IgnoredAny>,
    #[serde(default)]
    deletion_timestamp: Option<IgnoredAny>,
    #[serde(default)]
    deletion_grace_period_seconds: Option<IgnoredAny>,
    #[serde(default)]
    owner_references: Option<IgnoredAny>,
    #[serde(default)]
    finalizers: Option<IgnoredAny>,
    #[serde(default)]
    managed_fields: Option<IgnoredAny>,
    #[serde(default)]
    cluster_name: Option<IgnoredAny>,
}
