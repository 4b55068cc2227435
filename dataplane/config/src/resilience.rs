//! A cluster's resilience settings: load-balancing policy, circuit-breaker
//! thresholds and outlier detection — as written (`*Spec`, the YAML model
//! and what the xDS client produces from Envoy's Cluster) and compiled.
//!
//! ```yaml
//! clusters:
//! - name: reviews
//!   lb_policy: least_request      # round_robin | least_request | random | ring_hash | maglev
//!   circuit_breakers: {max_connections: 100, max_pending_requests: 50, max_requests: 200, max_retries: 3}
//!   outlier_detection:
//!     consecutive_5xx: 5          # eject after this many 5xx (or gateway errors) in a row
//!     consecutive_gateway_failure: 3   # 502/503/504 and connect failures only
//!     interval: 10s               # how often ejections are re-evaluated (Envoy's sweep)
//!     base_ejection_time: 30s     # × the number of times the endpoint was ejected
//!     max_ejection_time: 300s
//!     max_ejection_percent: 10    # at least one endpoint may always be ejected
//!   healthy_panic_threshold: 50   # below this % of usable endpoints, ejections are ignored
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{compile::Errors, duration::parse_duration};

/// How a cluster picks an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicySpec {
    #[default]
    RoundRobin,
    /// Power of two choices over the endpoints' requests in flight.
    LeastRequest,
    Random,
    /// Consistent hashing on a ring (the route's hash policy gives the
    /// key; without one, a random key).
    RingHash,
    /// Consistent hashing with a Maglev lookup table.
    Maglev,
}

/// Circuit-breaker thresholds (Envoy's `DEFAULT` priority). Unset means
/// unlimited (Istio's reading: an absent connection-pool setting is no
/// limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakersSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Retries in flight may be at most this percentage of the requests
    /// in flight (default 20)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget_percent: Option<u32>,
    /// ... or this many, whichever is more (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_retry_concurrency: Option<u32>,
}

/// Passive health checking of endpoints by their answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetectionSpec {
    /// Consecutive 5xx answers (gateway errors included) that eject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx: Option<u32>,
    /// Consecutive gateway errors (502, 503, 504, connect failures, resets)
    /// that eject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_failure: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
}

/// How a cluster picks an endpoint (compiled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
    Maglev,
}

impl LbPolicy {
    /// Whether the policy hashes a request key.
    pub fn is_consistent_hash(self) -> bool {
        matches!(self, LbPolicy::RingHash | LbPolicy::Maglev)
    }
}

/// Circuit-breaker thresholds; `u32::MAX` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CircuitBreakers {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
    /// The retry budget: retries in flight ≤ max(this % of requests in
    /// flight, `min_retry_concurrency`). On by default (20 %, 3), as
    /// Linkerd does: retries can never multiply an overload.
    pub retry_budget_percent: u32,
    pub min_retry_concurrency: u32,
}

pub const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;
pub const DEFAULT_MIN_RETRY_CONCURRENCY: u32 = 3;

impl Default for CircuitBreakers {
    fn default() -> Self {
        CircuitBreakers {
            max_connections: u32::MAX,
            max_pending_requests: u32::MAX,
            max_requests: u32::MAX,
            max_retries: u32::MAX,
            retry_budget_percent: DEFAULT_RETRY_BUDGET_PERCENT,
            min_retry_concurrency: DEFAULT_MIN_RETRY_CONCURRENCY,
        }
    }
}

/// Outlier detection (compiled). A threshold of `None` does not eject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutlierDetection {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_failure: Option<u32>,
    #[serde(serialize_with = "crate::snapshot::duration_str")]
    pub interval: Duration,
    #[serde(serialize_with = "crate::snapshot::duration_str")]
    pub base_ejection_time: Duration,
    #[serde(serialize_with = "crate::snapshot::duration_str")]
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

/// Envoy's defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;
pub const DEFAULT_PANIC_THRESHOLD: u32 = 50;

pub(crate) fn lb_policy(spec: LbPolicySpec) -> LbPolicy {
    match spec {
        LbPolicySpec::RoundRobin => LbPolicy::RoundRobin,
        LbPolicySpec::LeastRequest => LbPolicy::LeastRequest,
        LbPolicySpec::Random => LbPolicy::Random,
        LbPolicySpec::RingHash => LbPolicy::RingHash,
        LbPolicySpec::Maglev => LbPolicy::Maglev,
    }
}

pub(crate) fn circuit_breakers(spec: Option<&CircuitBreakersSpec>) -> CircuitBreakers {
    let Some(s) = spec else {
        return CircuitBreakers::default();
    };
    let or_max = |v: Option<u32>| v.unwrap_or(u32::MAX);
    CircuitBreakers {
        max_connections: or_max(s.max_connections),
        max_pending_requests: or_max(s.max_pending_requests),
        max_requests: or_max(s.max_requests),
        max_retries: or_max(s.max_retries),
        retry_budget_percent: s
            .retry_budget_percent
            .unwrap_or(DEFAULT_RETRY_BUDGET_PERCENT)
            .min(100),
        min_retry_concurrency: s
            .min_retry_concurrency
            .unwrap_or(DEFAULT_MIN_RETRY_CONCURRENCY),
    }
}

pub(crate) fn outlier_detection(
    spec: Option<&OutlierDetectionSpec>,
    at: &str,
    errs: &mut Errors,
) -> Option<OutlierDetection> {
    let s = spec?;
    let mut dur = |field: &str, v: &Option<String>, default: Duration| match v.as_deref() {
        None => default,
        Some(text) => match parse_duration(text) {
            Ok(d) if d.is_zero() => {
                errs.add(format!("{at}.{field}"), "must be greater than 0s");
                default
            }
            Ok(d) => d,
            Err(reason) => {
                errs.add(format!("{at}.{field}"), reason);
                default
            }
        },
    };
    let interval = dur("interval", &s.interval, DEFAULT_INTERVAL);
    let base_ejection_time = dur(
        "base_ejection_time",
        &s.base_ejection_time,
        DEFAULT_BASE_EJECTION,
    );
    let max_ejection_time = dur(
        "max_ejection_time",
        &s.max_ejection_time,
        DEFAULT_MAX_EJECTION.max(base_ejection_time),
    );
    let max_ejection_percent = s
        .max_ejection_percent
        .unwrap_or(DEFAULT_MAX_EJECTION_PERCENT);
    if max_ejection_percent > 100 {
        errs.add(format!("{at}.max_ejection_percent"), "must be at most 100");
    }
    for (field, v) in [
        ("consecutive_5xx", s.consecutive_5xx),
        ("consecutive_gateway_failure", s.consecutive_gateway_failure),
    ] {
        if v == Some(0) {
            errs.add(
                format!("{at}.{field}"),
                "must be at least 1 (leave it out to not eject on it)",
            );
        }
    }
    Some(OutlierDetection {
        consecutive_5xx: s.consecutive_5xx.filter(|v| *v > 0),
        consecutive_gateway_failure: s.consecutive_gateway_failure.filter(|v| *v > 0),
        interval,
        base_ejection_time,
        max_ejection_time,
        max_ejection_percent: max_ejection_percent.min(100),
    })
}

pub(crate) fn panic_threshold(v: Option<u32>, at: &str, errs: &mut Errors) -> u32 {
    match v {
        None => DEFAULT_PANIC_THRESHOLD,
        Some(p) if p > 100 => {
            errs.add(
                format!("{at}.healthy_panic_threshold"),
                "must be at most 100",
            );
            DEFAULT_PANIC_THRESHOLD
        }
        Some(p) => p,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cluster_yaml(extra: &str) -> String {
        format!(
            "clusters:\n- name: c\n  endpoints: [{{address: 127.0.0.1:1}}, {{address: 127.0.0.1:2}}]\n{extra}"
        )
    }

    #[test]
    fn settings_compile_with_defaults() {
        let snap = crate::load_str(
            &cluster_yaml(
                "  lb_policy: ring_hash\n  circuit_breakers: {max_requests: 2}\n  \
                 outlier_detection: {consecutive_5xx: 3, base_ejection_time: 2s}\n",
            ),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = &snap.clusters[0];
        assert_eq!(c.lb_policy, LbPolicy::RingHash);
        assert_eq!(c.circuit_breakers.max_requests, 2);
        assert_eq!(c.circuit_breakers.max_connections, u32::MAX);
        let od = c.outlier_detection.unwrap();
        assert_eq!(od.consecutive_5xx, Some(3));
        assert_eq!(od.consecutive_gateway_failure, None);
        assert_eq!(od.base_ejection_time, Duration::from_secs(2));
        assert_eq!(od.interval, DEFAULT_INTERVAL);
        assert_eq!(od.max_ejection_percent, DEFAULT_MAX_EJECTION_PERCENT);
        assert_eq!(c.healthy_panic_threshold, DEFAULT_PANIC_THRESHOLD);

        let plain = crate::load_str(&cluster_yaml(""), None).unwrap();
        assert_eq!(plain.clusters[0].lb_policy, LbPolicy::RoundRobin);
        assert!(plain.clusters[0].outlier_detection.is_none());
    }

    #[test]
    fn bad_settings_name_their_field() {
        let cases = [
            (
                "  outlier_detection: {max_ejection_percent: 101}\n",
                "clusters[0].outlier_detection.max_ejection_percent",
            ),
            (
                "  outlier_detection: {consecutive_5xx: 0}\n",
                "clusters[0].outlier_detection.consecutive_5xx",
            ),
            (
                "  outlier_detection: {interval: 0s}\n",
                "clusters[0].outlier_detection.interval",
            ),
            (
                "  healthy_panic_threshold: 120\n",
                "clusters[0].healthy_panic_threshold",
            ),
        ];
        for (extra, field) in cases {
            let err = crate::load_str(&cluster_yaml(extra), None)
                .expect_err(extra)
                .to_string();
            assert!(err.contains(field), "{extra}: {err}");
        }
        let err = crate::load_str(&cluster_yaml("  lb_policy: fastest\n"), None)
            .expect_err("unknown policy")
            .to_string();
        assert!(
            err.contains("lb_policy") || err.contains("fastest"),
            "{err}"
        );
    }
}
