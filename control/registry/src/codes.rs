//! Diagnostic codes of the registry's own findings. They continue the Istio
//! loader's scheme (`RM00xx` for resources, `RM01xx` for `ringmesh
//! analyze`'s mesh-level findings) in a range of their own, `RM02xx`; the
//! registry also reports with the loader's `RM0001`, `RM0002` and `RM0009`
//! (bad YAML, not an object, unreadable file or directory).

use ringmesh_istio::Severity;

/// error: `registry.ringmesh.io` object with an unknown `kind` or
/// `apiVersion`; skipped.
pub const UNKNOWN_KIND: &str = "RM0201";
/// error: the object does not match the schema (unknown field, wrong type,
/// missing required field).
pub const SCHEMA: &str = "RM0202";
/// error: a value breaks a rule (a name that is not a DNS-1123 label, a port
/// out of range, an address that is not an IP, a weight out of range, ...).
pub const INVALID_VALUE: &str = "RM0203";
/// error: two ports of one Service share a name or a number.
pub const DUPLICATE_PORT: &str = "RM0204";
/// error: a second Service (or Workload) with the same namespace and name;
/// the first one (by file path, then position) is kept.
pub const DUPLICATE: &str = "RM0205";
/// warning: a resource that is gone from the files, or rejected, whose
/// file cannot be read or parsed: its last good version keeps serving.
pub const LAST_GOOD: &str = "RM0206";

/// Every code with its severity and a one-line description.
pub const ALL: &[(&str, Severity, &str)] = &[
    (
        UNKNOWN_KIND,
        Severity::Error,
        "unknown kind or apiVersion in registry.ringmesh.io; skipped",
    ),
    (
        SCHEMA,
        Severity::Error,
        "does not match the schema (unknown field, wrong type, missing field)",
    ),
    (
        INVALID_VALUE,
        Severity::Error,
        "a value breaks a validation rule",
    ),
    (
        DUPLICATE_PORT,
        Severity::Error,
        "two ports of a Service share a name or a number",
    ),
    (
        DUPLICATE,
        Severity::Error,
        "a Service or Workload with the same namespace and name was already loaded",
    ),
    (
        LAST_GOOD,
        Severity::Warning,
        "its file cannot be read or parsed; the last good version keeps serving",
    ),
];
