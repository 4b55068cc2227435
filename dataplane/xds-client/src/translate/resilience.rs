//! A Cluster's circuit breakers, outlier detection and panic threshold.
//!
//! - `circuit_breakers.thresholds`: the `DEFAULT` priority's
//!   `max_connections`, `max_pending_requests`, `max_requests`,
//!   `max_retries` (Envoy's default for an absent value is 1024, which we
//!   keep; Istio writes `u32::MAX` for its unset settings). `HIGH`
//!   priority thresholds are accepted and unused (routes have no priority
//!   here).
//! - `outlier_detection`: consecutive 5xx and consecutive gateway failure
//!   with their `enforcing_*` percentages read as on (> 0) or off (Envoy's
//!   defaults: 5xx on, gateway failure off), `interval`,
//!   `base_ejection_time`, `max_ejection_time`, `max_ejection_percent`.
//!   Success-rate and failure-percentage ejection are not implemented;
//!   Envoy only applies them with enough hosts and request volume, and
//!   their settings are accepted and unused.
//! - `common_lb_config.healthy_panic_threshold`.

use ringmesh_config::model::{CircuitBreakersSpec, OutlierDetectionSpec};

use super::{duration, reject, Reject};
use crate::wire::pb;

/// Envoy's circuit-breaker default for an unset threshold.
const ENVOY_DEFAULT_LIMIT: u32 = 1024;
/// Envoy's default consecutive-error threshold.
const ENVOY_DEFAULT_CONSECUTIVE: u32 = 5;

type Parts = (
    Option<CircuitBreakersSpec>,
    Option<OutlierDetectionSpec>,
    Option<u32>,
);

pub(super) fn cluster(c: &pb::envoy::config::cluster::v3::Cluster) -> Result<Parts, Reject> {
    use pb::envoy::config::core::v3::RoutingPriority;
    let breakers = c.circuit_breakers.as_ref().and_then(|cb| {
        cb.thresholds
            .iter()
            .find(|t| t.priority == RoutingPriority::Default as i32)
            .map(|t| {
                let v = |x: &Option<pb::google::protobuf::UInt32Value>| {
                    Some(x.as_ref().map_or(ENVOY_DEFAULT_LIMIT, |x| x.value))
                };
                let budget = t.retry_budget.as_ref();
                CircuitBreakersSpec {
                    max_connections: v(&t.max_connections),
                    max_pending_requests: v(&t.max_pending_requests),
                    max_requests: v(&t.max_requests),
                    max_retries: v(&t.max_retries),
                    retry_budget_percent: budget
                        .and_then(|b| b.budget_percent.as_ref())
                        .map(|p| p.value.clamp(0.0, 100.0).round() as u32),
                    min_retry_concurrency: budget
                        .and_then(|b| b.min_retry_concurrency.as_ref())
                        .map(|m| m.value),
                }
            })
    });
    let outlier = match &c.outlier_detection {
        None => None,
        Some(od) => Some(outlier(od)?),
    };
    let panic = match c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.healthy_panic_threshold.as_ref())
    {
        None => None,
        Some(p) if !(0.0..=100.0).contains(&p.value) => {
            return reject(
                "common_lb_config.healthy_panic_threshold",
                "must be a percentage from 0 to 100",
            )
        }
        Some(p) => Some(p.value.round() as u32),
    };
    Ok((breakers, outlier, panic))
}

fn outlier(
    od: &pb::envoy::config::cluster::v3::OutlierDetection,
) -> Result<OutlierDetectionSpec, Reject> {
    let value = |x: &Option<pb::google::protobuf::UInt32Value>| x.as_ref().map(|x| x.value);
    let enforced = |threshold: Option<u32>, enforcing: Option<u32>, default_on: bool| {
        let on = enforcing.map_or(default_on, |e| e > 0);
        on.then(|| threshold.unwrap_or(ENVOY_DEFAULT_CONSECUTIVE))
            .filter(|t| *t > 0)
    };
    let dur = |field: &str, d: &Option<pb::google::protobuf::Duration>| {
        d.as_ref()
            .map(|d| duration(&format!("outlier_detection.{field}"), d))
            .transpose()
    };
    let max_ejection_percent = value(&od.max_ejection_percent);
    if max_ejection_percent.is_some_and(|p| p > 100) {
        return reject(
            "outlier_detection.max_ejection_percent",
            "must be at most 100",
        );
    }
    Ok(OutlierDetectionSpec {
        consecutive_5xx: enforced(
            value(&od.consecutive_5xx),
            value(&od.enforcing_consecutive_5xx),
            true,
        ),
        consecutive_gateway_failure: enforced(
            value(&od.consecutive_gateway_failure),
            value(&od.enforcing_consecutive_gateway_failure),
            false,
        ),
        interval: dur("interval", &od.interval)?,
        base_ejection_time: dur("base_ejection_time", &od.base_ejection_time)?,
        max_ejection_time: dur("max_ejection_time", &od.max_ejection_time)?,
        max_ejection_percent,
    })
}
