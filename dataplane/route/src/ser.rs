//! `Serialize` for the live configuration dump: the same shape and field
//! names as the YAML route configuration, so a dump reads like the input.

use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use crate::{PathMatch, Route, RouteTable, VirtualHost};

impl Serialize for RouteTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("RouteTable", 2)?;
        st.serialize_field("name", &*self.name)?;
        st.serialize_field("virtual_hosts", &self.vhosts)?;
        st.end()
    }
}

impl Serialize for VirtualHost {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("VirtualHost", 3)?;
        st.serialize_field("name", &*self.name)?;
        st.serialize_field("domains", &self.domains)?;
        st.serialize_field("routes", &self.routes)?;
        st.end()
    }
}

impl Serialize for PathMatch {
    /// `{prefix: "/"}` or `{exact: "/healthz"}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self {
            PathMatch::Prefix(p) => m.serialize_entry("prefix", &**p)?,
            PathMatch::Exact(p) => m.serialize_entry("exact", &**p)?,
        }
        m.end()
    }
}

impl Serialize for Route {
    /// `name` is omitted when empty; `timeout` is a duration string, `0s`
    /// when disabled (as in the configuration file).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if !self.name.is_empty() {
            m.serialize_entry("name", &*self.name)?;
        }
        m.serialize_entry("match", &self.path)?;
        m.serialize_entry("cluster", &*self.action.cluster)?;
        m.serialize_entry("cluster_idx", &self.action.cluster_idx)?;
        m.serialize_entry(
            "timeout",
            &format_duration(self.action.timeout.unwrap_or_default()),
        )?;
        m.end()
    }
}

/// The text form of durations in dumps and messages: the shortest of `1h`,
/// `2m`, `15s`, `250ms`, `1.0000005s` that is exact (what the configuration
/// file accepts).
pub fn format_duration(d: Duration) -> String {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        if secs != 0 && secs % 3600 == 0 {
            format!("{}h", secs / 3600)
        } else if secs != 0 && secs % 60 == 0 {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        }
    } else if nanos % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        let frac = format!("{nanos:09}");
        format!("{secs}.{}s", frac.trim_end_matches('0'))
    }
}
