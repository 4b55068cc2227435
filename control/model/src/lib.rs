//! Istio's configuration as Ringmesh reads it: `VirtualService`,
//! `DestinationRule`, `ServiceEntry` and `Sidecar` (`networking.istio.io`
//! `v1`, `v1beta1`, `v1alpha3`), `PeerAuthentication` and
//! `AuthorizationPolicy` (`security.istio.io` `v1`, `v1beta1`), parsed from
//! the Kubernetes YAML people already keep in their repositories into
//! typed structs, and validated.
//!
//! [`load_dir`], [`load_file`] and [`load_str`] (or a configured
//! [`Loader`]) return a [`LoadResult`]: the [`Model`] of every valid
//! resource, and a [`Diagnostic`] for every finding — file, line and
//! column, resource, field path, reason and a stable code ([`codes`]):
//!
//! ```
//! let text = "\
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata:
//!   name: reviews
//! spec:
//!   hosts:
//!   - reviews
//!   http:
//!   - route:
//!     - destination:
//!         host: reviews
//!       weight: 80
//!     - destination:
//!         host: reviews-canary
//!       weight: 10
//! ";
//! let result = ringmesh_istio::load_str(text, "reviews.yaml");
//! assert_eq!(
//!     result.diagnostics[0].to_string(),
//!     "reviews.yaml:15:15: error[RM0003] VirtualService default/reviews: \
//!      spec.http[0].route[1].weight: weights sum to 90, not 100",
//! );
//! assert!(result.model.virtual_services.is_empty());
//! ```
//!
//! One bad resource never takes the others down: a malformed YAML document
//! loses only itself, a resource that fails validation is left out of the
//! model, and objects that are not Istio's (a `Deployment` in the same
//! file) are skipped with an info diagnostic. The checks run in three
//! layers: the schema (unknown fields, types, enum values and durations,
//! as serde reports them), per-resource rules (regexes, weights, CIDRs,
//! ...), and references between resources ([`Model::validate_references`]).
//!
//! | code | severity | meaning |
//! | --- | --- | --- |
//! | RM0001 | error | not valid YAML; the document is skipped |
//! | RM0002 | error | not a Kubernetes object (apiVersion, kind, metadata) |
//! | RM0003 | error | a value breaks a validation rule |
//! | RM0004 | error | does not match the schema (unknown field, wrong type, bad enum value or duration) |
//! | RM0005 | error | an Istio feature Ringmesh does not implement (`action: CUSTOM`) |
//! | RM0006 | error | refers to something no loaded resource defines (a subset) |
//! | RM0007 | error | duplicate kind/namespace/name; the first is kept |
//! | RM0008 | error | unknown apiVersion for a supported kind |
//! | RM0009 | error | the file or directory cannot be read |
//! | RM0010 | warning | accepted but not applied (`corsPolicy`) |
//! | RM0011 | warning | deprecated field, still applied |
//! | RM0012 | warning | Istio kind not supported yet (`Gateway`); skipped |
//! | RM0013 | info | not an Istio resource; skipped |
#![forbid(unsafe_code)]

pub mod common;
pub mod diagnostic;
mod duration;
mod loader;
mod locate;
mod meta;
mod model;
pub mod networking;
mod path;
pub mod security;
#[cfg(test)]
mod tests;
mod validate;

pub use common::{Percent, PolicySelector, PortKey, PortSelector, StringMatch, WorkloadSelector};
pub use diagnostic::{codes, Diagnostic, ResourceRef, Severity};
pub use duration::{parse_duration, Duration};
pub use loader::{load_dir, load_file, load_str, LoadResult, Loader};
pub use locate::{locate_in_document, PathStep};
pub use meta::{Kind, Meta, Origin, Resource, NETWORKING_GROUP, SECURITY_GROUP};
pub use model::{Model, DEFAULT_DOMAIN_SUFFIX};
pub use networking::{
    destination_rule::DestinationRule, service_entry::ServiceEntry, sidecar::Sidecar,
    virtual_service::VirtualService, Destination,
};
pub use security::{
    authorization_policy::AuthorizationPolicy, peer_authentication::PeerAuthentication,
};

/// A spec type of one of the supported kinds.
pub trait Spec: Sized {
    const KIND: Kind;
}

/// What the loader needs of each kind; kept private so that adding a
/// check never changes the public API.
pub(crate) trait Load: Spec + serde::de::DeserializeOwned + Default {
    fn validate(&self, cx: &mut validate::Ctx, p: &path::FieldPath);
    fn resources(model: &mut Model) -> &mut Vec<Resource<Self>>;
}

macro_rules! kinds {
    ($($ty:ty => $kind:ident, $validate:path, $field:ident;)*) => {$(
        impl Spec for $ty {
            const KIND: Kind = Kind::$kind;
        }

        impl Load for $ty {
            fn validate(&self, cx: &mut validate::Ctx, p: &path::FieldPath) {
                $validate(self, cx, p)
            }

            fn resources(model: &mut Model) -> &mut Vec<Resource<Self>> {
                &mut model.$field
            }
        }
    )*};
}

kinds! {
    VirtualService => VirtualService, validate::virtual_service, virtual_services;
    DestinationRule => DestinationRule, validate::destination_rule, destination_rules;
    ServiceEntry => ServiceEntry, validate::service_entry, service_entries;
    Sidecar => Sidecar, validate::sidecar, sidecars;
    PeerAuthentication => PeerAuthentication, validate::peer_authentication, peer_authentications;
    AuthorizationPolicy => AuthorizationPolicy, validate::authorization_policy, authorization_policies;
}
