//! A route's retry policy (Envoy's `RetryPolicy`, Istio's `retries`).

use std::time::Duration;

/// What may be retried, as a bit set of Envoy's `retry_on` conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// Any 5xx response, a reset, a connect failure, a per-try timeout.
    pub const FIVE_XX: RetryOn = RetryOn(1);
    /// 502, 503, 504, a reset, a connect failure, a per-try timeout.
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    /// The upstream reset or closed before a response head.
    pub const RESET: RetryOn = RetryOn(1 << 2);
    /// The connection (or its TLS handshake) could not be made.
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 3);
    /// 409.
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 4);
    /// An h2 stream refused by the upstream (REFUSED_STREAM).
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 5);
    /// The statuses in `retriable_status_codes`.
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 6);
    /// gRPC statuses in a response's headers (trailers-only responses).
    pub const GRPC_CANCELLED: RetryOn = RetryOn(1 << 7);
    pub const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 8);
    pub const GRPC_INTERNAL: RetryOn = RetryOn(1 << 9);
    pub const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 10);
    pub const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 11);

    const NAMES: [(&'static str, RetryOn); 12] = [
        ("5xx", Self::FIVE_XX),
        ("gateway-error", Self::GATEWAY_ERROR),
        ("reset", Self::RESET),
        ("connect-failure", Self::CONNECT_FAILURE),
        ("retriable-4xx", Self::RETRIABLE_4XX),
        ("refused-stream", Self::REFUSED_STREAM),
        ("retriable-status-codes", Self::RETRIABLE_STATUS_CODES),
        ("cancelled", Self::GRPC_CANCELLED),
        ("deadline-exceeded", Self::GRPC_DEADLINE_EXCEEDED),
        ("internal", Self::GRPC_INTERNAL),
        ("resource-exhausted", Self::GRPC_RESOURCE_EXHAUSTED),
        ("unavailable", Self::GRPC_UNAVAILABLE),
    ];

    pub fn has(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }

    /// Parse Envoy's comma-separated `retry_on` (spaces allowed). Unknown
    /// conditions are an error naming them.
    pub fn parse(s: &str) -> Result<RetryOn, String> {
        let mut out = RetryOn::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match Self::NAMES.iter().find(|(n, _)| *n == part) {
                Some((_, v)) => out.0 |= v.0,
                None => {
                    let known: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "unknown retry condition {part:?} (supported: {})",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The names of the set conditions, in Envoy's spelling.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(_, v)| self.has(*v))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// Why an attempt failed, for [`RetryPolicy::retriable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A response with this status (and, for gRPC, this `grpc-status`).
    Status(u16, Option<u32>),
    /// Reset or closed before a response head.
    Reset,
    /// Connect or TLS handshake failure: nothing was sent.
    ConnectFailure,
    /// The per-try timeout fired.
    PerTryTimeout,
    /// The h2 upstream refused the stream: nothing was processed.
    RefusedStream,
}

impl Failure {
    /// Whether the upstream cannot have processed the request (safe to
    /// retry even a non-idempotent one).
    pub fn nothing_sent(self) -> bool {
        matches!(self, Failure::ConnectFailure | Failure::RefusedStream)
    }
}

/// A route's retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub retry_on: RetryOn,
    /// Retries after the first attempt (Envoy's default: 1).
    pub num_retries: u32,
    /// Deadline of each attempt; `None`: only the route timeout.
    pub per_try_timeout: Option<Duration>,
    pub retriable_status_codes: Box<[u16]>,
    /// Jittered exponential backoff between attempts (Envoy's defaults
    /// 25 ms and 10 × base).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Retry requests whose method is not idempotent (POST, PATCH) also
    /// after they may have reached the upstream. Off by default: only a
    /// connect failure or a refused stream retries them.
    pub retry_non_idempotent: bool,
}

impl RetryPolicy {
    pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

    /// Whether `failure` may be retried under this policy (the budget and
    /// the request's replayability are the caller's to check).
    pub fn retriable(&self, failure: Failure) -> bool {
        let on = self.retry_on;
        match failure {
            Failure::ConnectFailure => {
                on.has(RetryOn::CONNECT_FAILURE)
                    || on.has(RetryOn::FIVE_XX)
                    || on.has(RetryOn::GATEWAY_ERROR)
            }
            Failure::Reset => {
                on.has(RetryOn::RESET) || on.has(RetryOn::FIVE_XX) || on.has(RetryOn::GATEWAY_ERROR)
            }
            Failure::PerTryTimeout => on.has(RetryOn::FIVE_XX) || on.has(RetryOn::GATEWAY_ERROR),
            Failure::RefusedStream => on.has(RetryOn::REFUSED_STREAM),
            Failure::Status(s, grpc) => {
                (on.has(RetryOn::FIVE_XX) && s >= 500)
                    || (on.has(RetryOn::GATEWAY_ERROR) && matches!(s, 502..=504))
                    || (on.has(RetryOn::RETRIABLE_4XX) && s == 409)
                    || (on.has(RetryOn::RETRIABLE_STATUS_CODES)
                        && self.retriable_status_codes.contains(&s))
                    || grpc.is_some_and(|g| {
                        (on.has(RetryOn::GRPC_CANCELLED) && g == 1)
                            || (on.has(RetryOn::GRPC_DEADLINE_EXCEEDED) && g == 4)
                            || (on.has(RetryOn::GRPC_RESOURCE_EXHAUSTED) && g == 8)
                            || (on.has(RetryOn::GRPC_INTERNAL) && g == 13)
                            || (on.has(RetryOn::GRPC_UNAVAILABLE) && g == 14)
                    })
            }
        }
    }

    /// The pause before retry number `n` (1-based): full jitter over
    /// `(2^n - 1) × base`, capped at `backoff_max`. `random` is uniform.
    pub fn backoff(&self, n: u32, random: u64) -> Duration {
        let base = self.backoff_base.as_micros().max(1) as u64;
        let factor = (1u64 << n.min(16)) - 1;
        let ceiling = base
            .saturating_mul(factor)
            .min(self.backoff_max.as_micros() as u64)
            .max(1);
        Duration::from_micros(random % (ceiling + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: &str) -> RetryPolicy {
        RetryPolicy {
            retry_on: RetryOn::parse(on).unwrap(),
            num_retries: 2,
            per_try_timeout: None,
            retriable_status_codes: vec![418].into(),
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            retry_non_idempotent: false,
        }
    }

    #[test]
    fn conditions() {
        let p = policy("gateway-error");
        assert!(p.retriable(Failure::Status(503, None)));
        assert!(!p.retriable(Failure::Status(500, None)));
        assert!(p.retriable(Failure::Reset));
        assert!(p.retriable(Failure::PerTryTimeout));
        assert!(!p.retriable(Failure::RefusedStream));
        let p = policy("connect-failure, retriable-status-codes, unavailable");
        assert!(p.retriable(Failure::ConnectFailure));
        assert!(p.retriable(Failure::Status(418, None)));
        assert!(!p.retriable(Failure::Status(503, None)));
        assert!(p.retriable(Failure::Status(200, Some(14))));
        assert!(!p.retriable(Failure::Reset));
        assert!(RetryOn::parse("5xx,bogus")
            .unwrap_err()
            .contains("\"bogus\""));
        assert_eq!(
            RetryOn::parse("reset,5xx").unwrap().names(),
            vec!["5xx", "reset"]
        );
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let p = policy("5xx");
        for n in 1..10 {
            for r in [0, 1, 12345, u64::MAX] {
                assert!(p.backoff(n, r) <= Duration::from_millis(250));
            }
        }
        assert!(p.backoff(1, u64::MAX) <= Duration::from_millis(25));
    }
}
