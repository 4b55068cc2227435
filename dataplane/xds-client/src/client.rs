//! The Delta ADS client loop: one `DeltaAggregatedResources` stream at a
//! time, reconnecting with jittered exponential backoff.
//!
//! Per response: removals and adds are applied to a *candidate* copy of
//! the held state (a resource that does not convert is left out, keeping
//! its last good version), route configurations, load assignments and SDS
//! trust bundles no longer referenced are dropped, the whole state is translated and handed
//! to `on_update` (which compiles and publishes). Only when `on_update`
//! accepts does the candidate become the held state; then the response is
//! ACKed, or NACKed with the per-resource errors when some were rejected.
//! When `on_update` refuses, nothing of the response is held and the NACK
//! carries every message. The held state survives reconnects (it is sent
//! as `initial_resource_versions`), so a control-plane outage or restart
//! never clears or rolls back the proxy's configuration.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    time::Duration,
};

use ringmesh_config::model::ProxyConfig;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::{
    translate::{ResourceType, XdsState},
    wire::{AdsStream, DeltaRequest, DeltaResponse},
};

/// Who the proxy is, as the control plane sees it (Envoy's `Node`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeIdentity {
    pub id: String,
    /// The service cluster (ringmesh-xds scopes by it by default).
    pub cluster: String,
    /// The node's `metadata` Struct: Istio's `NAMESPACE`, `LABELS` (an
    /// object), `INSTANCE_IPS`, ... Numbers are sent as doubles, as
    /// `google.protobuf.Value` holds them.
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Reconnection and connection timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// First reconnect delay; doubled after each failed attempt.
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// TCP connect timeout to the control plane.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Run the client forever with [`ClientOptions::default`]; see
/// [`run_with`].
pub async fn run<F>(
    endpoint: String,
    node: NodeIdentity,
    base: ProxyConfig,
    on_update: F,
) -> Infallible
where
    F: FnMut(ProxyConfig, u64) -> Result<(), Vec<String>>,
{
    run_with(endpoint, node, base, on_update, ClientOptions::default()).await
}

/// Run the Delta ADS client against `endpoint` (`http://IP:PORT`) until
/// the future is dropped (it is cancel-safe: drop it to stop).
///
/// `on_update(config, version)` gets the bootstrap `base` merged with
/// every held xDS resource, each time that set changes; `version` is a
/// stable hash of the held (type, name, version) set. It must compile
/// and publish the configuration, or return the reasons it cannot — they
/// become the NACK's `error_detail`, and the previous configuration stays.
pub async fn run_with<F>(
    endpoint: String,
    node: NodeIdentity,
    base: ProxyConfig,
    on_update: F,
    options: ClientOptions,
) -> Infallible
where
    F: FnMut(ProxyConfig, u64) -> Result<(), Vec<String>>,
{
    let mut engine = Engine::new(base, on_update);
    let mut backoff = Backoff::new(options.backoff_initial, options.backoff_max);
    loop {
        let got_response = session(&endpoint, &node, &mut engine, &options).await;
        if got_response {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        debug!(?delay, %endpoint, "reconnecting to the control plane");
        tokio::time::sleep(delay).await;
    }
}

/// One stream, until it fails. Returns whether any response arrived.
async fn session<F>(
    endpoint: &str,
    node: &NodeIdentity,
    engine: &mut Engine<F>,
    options: &ClientOptions,
) -> bool
where
    F: FnMut(ProxyConfig, u64) -> Result<(), Vec<String>>,
{
    let (tx, rx) = mpsc::unbounded_channel();
    for r in engine.initial_requests(node) {
        // The receiver is alive: it is in `rx`.
        let _ = tx.send(r);
    }
    let mut stream = match AdsStream::open(endpoint, options.connect_timeout, rx).await {
        Ok(s) => s,
        Err(e) => {
            warn!(%endpoint, "xDS: {e}; the last good configuration keeps serving");
            return false;
        }
    };
    info!(%endpoint, "xDS stream open");
    let mut got_response = false;
    loop {
        match stream.next().await {
            Ok(Some(resp)) => {
                got_response = true;
                for r in engine.on_response(resp) {
                    if tx.send(r).is_err() {
                        return got_response;
                    }
                }
            }
            Ok(None) => {
                warn!(%endpoint, "xDS stream ended by the server; the last good configuration keeps serving");
                return got_response;
            }
            Err(e) => {
                warn!(%endpoint, "xDS: {e}; the last good configuration keeps serving");
                return got_response;
            }
        }
    }
}

/// The protocol state that outlives streams, without I/O.
pub(crate) struct Engine<F> {
    state: XdsState,
    base: ProxyConfig,
    on_update: F,
    /// Version of the last configuration `on_update` accepted.
    delivered: Option<u64>,
    /// Names subscribed on the current stream (RDS, EDS).
    subscribed: BTreeMap<ResourceType, BTreeSet<String>>,
}

impl<F> Engine<F>
where
    F: FnMut(ProxyConfig, u64) -> Result<(), Vec<String>>,
{
    pub(crate) fn new(base: ProxyConfig, on_update: F) -> Self {
        Engine {
            state: XdsState::new(base.identity.is_some()),
            base,
            on_update,
            delivered: None,
            subscribed: BTreeMap::new(),
        }
    }

    /// The first requests of a stream: wildcard CDS and LDS, named EDS
    /// and RDS for what the held state references, each with the
    /// versions held (so a reconnect is not sent what it already has).
    pub(crate) fn initial_requests(&mut self, node: &NodeIdentity) -> Vec<DeltaRequest> {
        self.subscribed.clear();
        let mut out = Vec::new();
        for t in ResourceType::ALL {
            let named = matches!(
                t,
                ResourceType::RouteConfiguration
                    | ResourceType::ClusterLoadAssignment
                    | ResourceType::Secret
            );
            let subscribe: Vec<String> = if named {
                let wanted = self.state.wanted(t);
                if wanted.is_empty() {
                    continue;
                }
                self.subscribed.insert(t, wanted.clone());
                wanted.into_iter().collect()
            } else {
                Vec::new() // wildcard
            };
            out.push(DeltaRequest {
                type_url: t.type_url(),
                subscribe,
                initial_versions: self.state.versions(t),
                node: Some(node.clone()),
                ..Default::default()
            });
        }
        out
    }

    /// Apply a response; returns the ACK/NACK and any subscription changes.
    pub(crate) fn on_response(&mut self, resp: DeltaResponse) -> Vec<DeltaRequest> {
        let Some(t) = ResourceType::from_type_url(&resp.type_url) else {
            return vec![DeltaRequest {
                type_url: resp.type_url.clone(),
                response_nonce: resp.nonce,
                error: Some(format!("unsupported resource type {}", resp.type_url)),
                ..Default::default()
            }];
        };
        let mut candidate = self.state.clone();
        for name in &resp.removed {
            candidate.remove(t, name);
        }
        let mut errors = Vec::new();
        for r in &resp.resources {
            let Some((type_url, bytes)) = &r.body else {
                continue;
            };
            if let Err(e) = candidate.apply(t, &r.name, &r.version, type_url, bytes) {
                warn!("xDS: rejected {e}");
                errors.push(e.to_string());
            }
        }
        candidate.retain_wanted();
        let version = candidate.version();
        if self.delivered != Some(version) {
            let cfg = candidate.to_proxy_config(&self.base);
            match (self.on_update)(cfg, version) {
                Ok(()) => {
                    self.delivered = Some(version);
                    self.state = candidate;
                }
                Err(reasons) => {
                    warn!(type_url = %resp.type_url, "xDS: the configuration was refused: {}", reasons.join("; "));
                    errors.extend(reasons);
                }
            }
        } else {
            self.state = candidate;
        }
        let mut out = vec![DeltaRequest {
            type_url: resp.type_url,
            response_nonce: resp.nonce,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            ..Default::default()
        }];
        out.extend(self.subscription_changes());
        out
    }

    /// Subscribe to newly referenced RDS/EDS/SDS names, unsubscribe from
    /// those no longer referenced.
    fn subscription_changes(&mut self) -> Vec<DeltaRequest> {
        let mut out = Vec::new();
        for t in [
            ResourceType::ClusterLoadAssignment,
            ResourceType::RouteConfiguration,
            ResourceType::Secret,
        ] {
            let wanted = self.state.wanted(t);
            let current = self.subscribed.entry(t).or_default();
            let subscribe: Vec<String> = wanted.difference(current).cloned().collect();
            let unsubscribe: Vec<String> = current.difference(&wanted).cloned().collect();
            if subscribe.is_empty() && unsubscribe.is_empty() {
                continue;
            }
            *current = wanted;
            out.push(DeltaRequest {
                type_url: t.type_url(),
                subscribe,
                unsubscribe,
                ..Default::default()
            });
        }
        out
    }
}

/// Exponential backoff with jitter: each delay is drawn from
/// [d/2, d], d doubling from `initial` up to `max`.
struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    rng: u64,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(std::process::id()).rotate_left(32);
        Backoff {
            initial,
            max,
            current: initial,
            rng: seed | 1,
        }
    }

    fn reset(&mut self) {
        self.current = self.initial;
    }

    fn next_delay(&mut self) -> Duration {
        // xorshift64: jitter only, no need for quality randomness.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let d = self.current;
        let half = d / 2;
        let jitter = Duration::from_nanos(self.rng % (half.as_nanos() as u64).max(1));
        self.current = (self.current * 2).min(self.max);
        half + jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut nominal = Duration::from_millis(100);
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(
                d >= nominal / 2 && d <= nominal,
                "{d:?} not in [{:?}, {nominal:?}]",
                nominal / 2
            );
            nominal = (nominal * 2).min(Duration::from_secs(10));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
