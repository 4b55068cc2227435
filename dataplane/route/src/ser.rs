//! `Serialize` for the live configuration dump: the same shape and field
//! names as the YAML route configuration, so a dump reads like the input.

use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use crate::{
    Destination, HeaderMatch, HeaderMatcher, PathMatch, QueryMatch, QueryParameterMatcher, Route,
    RouteTable, StringMatcher, VirtualHost, WeightedCluster,
};

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

/// `{prefix: "/"}`, `{exact: "/healthz"}` or `{regex: "/v[0-9]+/.*"}`,
/// plus `headers` and `query_parameters` when there are any.
struct MatchSer<'a>(&'a Route);

impl Serialize for MatchSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        match &r.path {
            PathMatch::Prefix(p) => m.serialize_entry("prefix", &**p)?,
            PathMatch::Exact(p) => m.serialize_entry("exact", &**p)?,
            PathMatch::Regex(p) => m.serialize_entry("regex", &**p)?,
        }
        if r.path_ignore_case {
            m.serialize_entry("ignore_case", &true)?;
        }
        if !r.headers.is_empty() {
            m.serialize_entry("headers", &r.headers)?;
        }
        if !r.query_parameters.is_empty() {
            m.serialize_entry("query_parameters", &r.query_parameters)?;
        }
        m.end()
    }
}

impl Serialize for PathMatch {
    /// `{prefix: "/"}`, `{exact: "/healthz"}` or `{regex: "..."}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self {
            PathMatch::Prefix(p) => m.serialize_entry("prefix", &**p)?,
            PathMatch::Exact(p) => m.serialize_entry("exact", &**p)?,
            PathMatch::Regex(p) => m.serialize_entry("regex", &**p)?,
        }
        m.end()
    }
}

/// The pattern as `KEY: VALUE` plus `ignore_case: true` when set.
fn string_entries<M: SerializeMap>(m: &mut M, sm: &StringMatcher) -> Result<(), M::Error> {
    let (key, value) = sm.pattern.key_and_value();
    m.serialize_entry(key, value)?;
    if sm.ignore_case {
        m.serialize_entry("ignore_case", &true)?;
    }
    Ok(())
}

impl Serialize for HeaderMatcher {
    /// `{name, exact|prefix|suffix|contains|regex|present, ...}`, the
    /// flags only when set.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", &*self.name)?;
        match &self.rule {
            HeaderMatch::Present(p) => m.serialize_entry("present", p)?,
            HeaderMatch::Value(sm) => string_entries(&mut m, sm)?,
        }
        if self.invert {
            m.serialize_entry("invert", &true)?;
        }
        if self.treat_missing_as_empty {
            m.serialize_entry("treat_missing_as_empty", &true)?;
        }
        m.end()
    }
}

impl Serialize for QueryParameterMatcher {
    /// `{name, exact|prefix|suffix|contains|regex|present, ...}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", &*self.name)?;
        match &self.rule {
            QueryMatch::Present(p) => m.serialize_entry("present", p)?,
            QueryMatch::Value(sm) => string_entries(&mut m, sm)?,
        }
        m.end()
    }
}

impl Serialize for WeightedCluster {
    /// `{cluster, cluster_idx, weight}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("WeightedCluster", 3)?;
        st.serialize_field("cluster", &*self.cluster.name)?;
        st.serialize_field("cluster_idx", &self.cluster.index)?;
        st.serialize_field("weight", &self.weight)?;
        st.end()
    }
}

impl Serialize for Route {
    /// `name` is omitted when empty; `cluster` + `cluster_idx`, or
    /// `weighted_clusters`; `timeout` is a duration string, `0s` when
    /// disabled (as in the configuration file).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if !self.name.is_empty() {
            m.serialize_entry("name", &*self.name)?;
        }
        m.serialize_entry("match", &MatchSer(self))?;
        match &self.action.destination {
            Destination::Cluster(c) => {
                m.serialize_entry("cluster", &*c.name)?;
                m.serialize_entry("cluster_idx", &c.index)?;
            }
            Destination::Weighted(w) => m.serialize_entry("weighted_clusters", w.clusters())?,
        }
        m.serialize_entry(
            "timeout",
            &format_duration(self.action.timeout.unwrap_or_default()),
        )?;
        if let Some(r) = &self.action.retry {
            m.serialize_entry("retry_policy", &RetrySer(r))?;
        }
        m.end()
    }
}

/// A retry policy as the configuration file writes it.
struct RetrySer<'a>(&'a crate::RetryPolicy);

impl Serialize for RetrySer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("retry_on", &r.retry_on.names().join(","))?;
        m.serialize_entry("num_retries", &r.num_retries)?;
        if let Some(t) = r.per_try_timeout {
            m.serialize_entry("per_try_timeout", &format_duration(t))?;
        }
        if !r.retriable_status_codes.is_empty() {
            m.serialize_entry("retriable_status_codes", &*r.retriable_status_codes)?;
        }
        m.serialize_entry("backoff_base", &format_duration(r.backoff_base))?;
        m.serialize_entry("backoff_max", &format_duration(r.backoff_max))?;
        m.serialize_entry("retry_non_idempotent", &r.retry_non_idempotent)?;
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
