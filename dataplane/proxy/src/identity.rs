//! This proxy's mesh identity, on the control thread: obtaining the SVID
//! (from the mesh CA, or from files), renewing it, and publishing it with
//! the trust bundle into the TLS configurations every shard uses.
//!
//! - **CA** (`ca_address`): a fresh ECDSA P-256 key and a CSR are made
//!   here for every certificate (the key never leaves the process), sent
//!   with the bootstrap token read from `token_file` (again each time, so
//!   a rotated token is picked up). The certificate is renewed half-way
//!   between its receipt and its expiry, less up to a tenth of that span of
//!   jitter; a failure is retried with exponential backoff while the
//!   current certificate keeps serving.
//! - **Files** (`cert_chain`, `private_key`, `trust_bundle`): read at
//!   start and whenever their contents change (polled, and on SIGHUP), so
//!   a rotation is a file swap.
//!
//! Whatever the source, a certificate is published only if it is an SVID
//! of the expected identity that verifies against the trust bundle. The
//! trust bundle published is the union of the source's roots and the
//! control plane's (SDS `ROOTCA`), so a root rotation can be staged from
//! either side.
//!
//! Publishing swaps the certificate in the shared
//! [`CertifiedKeyResolver`] and the roots in the [`SharedTrustBundle`]:
//! the next handshake on any shard uses them, established connections are
//! not touched.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::{ArcSwap, ArcSwapOption};
use ringmesh_config::{IdentityConfig, IdentitySource};
use ringmesh_tls::{
    generate_key_and_csr, CertifiedKeyResolver, Role, SharedTrustBundle, SpiffeId, Svid,
    TrustBundle,
};
use rustls::{pki_types::UnixTime, ServerConfig};
use serde::Serialize;
use tokio::sync::Notify;

use crate::shared::Shared;

/// How often certificate files are checked for changes.
const FILES_POLL: Duration = Duration::from_millis(500);
/// First retry delay after a failed certificate request; doubled up to
/// [`RETRY_MAX`].
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Never renew sooner than this after a success.
const MIN_RENEW_DELAY: Duration = Duration::from_secs(1);

/// The TLS configurations built around this proxy's certificate. Created
/// with the first certificate and kept for the life of the process; later
/// certificates and bundles are swapped inside.
pub struct MeshTls {
    pub trust_domain: String,
    pub resolver: Arc<CertifiedKeyResolver>,
    pub bundle: SharedTrustBundle,
    /// Inbound HTTP listeners (ALPN `h2`, `http/1.1`).
    pub server_http: Arc<ServerConfig>,
    /// Inbound TCP listeners (no ALPN).
    pub server_tcp: Arc<ServerConfig>,
}

/// The certificate being served, for `/certs` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct SvidInfo {
    pub identity: String,
    pub serial: String,
    /// Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
    pub chain_len: usize,
    /// `ca` or `files`.
    pub source: &'static str,
    /// Roots in the published trust bundle.
    pub trust_bundle_roots: usize,
}

/// Identity state shared with the shards (through [`Shared`]).
pub struct IdentityState {
    /// The bootstrap has an `identity` section: `/ready` waits for the
    /// first certificate.
    pub configured: bool,
    tls: OnceLock<Arc<MeshTls>>,
    /// Roots from the identity's source (CA answer, `trust_bundle` file).
    own_roots: ArcSwap<TrustBundle>,
    /// Roots from the control plane (SDS validation contexts).
    sds_roots: ArcSwap<TrustBundle>,
    current: ArcSwapOption<SvidInfo>,
}

impl IdentityState {
    pub fn new(configured: bool) -> IdentityState {
        IdentityState {
            configured,
            tls: OnceLock::new(),
            own_roots: ArcSwap::from_pointee(TrustBundle::new()),
            sds_roots: ArcSwap::from_pointee(TrustBundle::new()),
            current: ArcSwapOption::empty(),
        }
    }

    /// The TLS configurations, once the first certificate is in.
    #[inline]
    pub fn mesh(&self) -> Option<&Arc<MeshTls>> {
        self.tls.get()
    }

    /// Ready as far as identity goes: none configured, or a certificate.
    pub fn is_ready(&self) -> bool {
        !self.configured || self.tls.get().is_some()
    }

    /// The certificate being served.
    pub fn current(&self) -> Option<Arc<SvidInfo>> {
        self.current.load_full()
    }

    /// Replace the control plane's roots (from a newly applied snapshot).
    pub fn set_sds_roots(&self, roots: Arc<TrustBundle>) {
        let same = {
            let cur = self.sds_roots.load();
            cur.certs() == roots.certs()
        };
        if same {
            return;
        }
        tracing::info!(
            roots = roots.len(),
            "trust bundle from the control plane updated"
        );
        self.sds_roots.store(roots);
        if let Some(tls) = self.tls.get() {
            let union = self.union();
            tls.bundle.store(union);
        }
        self.refresh_info();
    }

    fn union(&self) -> TrustBundle {
        let own = self.own_roots.load();
        let sds = self.sds_roots.load();
        let mut all = (**own).clone();
        for c in sds.certs() {
            // Every root here was already accepted once.
            let _ = all.add(c.clone());
        }
        all
    }

    fn refresh_info(&self) {
        if let Some(cur) = self.current.load_full() {
            let mut info = (*cur).clone();
            info.trust_bundle_roots = self.tls.get().map_or(0, |t| t.bundle.load().len());
            self.current.store(Some(Arc::new(info)));
        }
    }

    /// Publish a verified SVID and its source's roots.
    fn publish(
        &self,
        svid: &Svid,
        own_roots: TrustBundle,
        trust_domain: &str,
        source: &'static str,
    ) -> Result<(), String> {
        self.own_roots.store(Arc::new(own_roots));
        let union = self.union();
        let roots = union.len();
        match self.tls.get() {
            Some(tls) => {
                tls.bundle.store(union);
                tls.resolver.store_svid(svid);
            }
            None => {
                let resolver = Arc::new(CertifiedKeyResolver::from_svid(svid));
                let bundle = SharedTrustBundle::new(union);
                let server = |alpn: &[&[u8]]| {
                    ringmesh_tls::server_config(
                        resolver.clone(),
                        bundle.clone(),
                        trust_domain,
                        alpn,
                    )
                    .map_err(|e| format!("cannot build the TLS server configuration: {e}"))
                };
                let tls = MeshTls {
                    trust_domain: trust_domain.to_owned(),
                    // h2 first: HTTP/2 clients (and sidecars) get it.
                    server_http: server(&[ringmesh_tls::ALPN_H2, ringmesh_tls::ALPN_HTTP11])?,
                    server_tcp: server(&[])?,
                    resolver,
                    bundle,
                };
                let _ = self.tls.set(Arc::new(tls));
            }
        }
        self.current.store(Some(Arc::new(SvidInfo {
            identity: svid.id.to_string(),
            serial: svid.serial_hex(),
            not_before: unix(svid.not_before),
            not_after: unix(svid.not_after),
            chain_len: svid.certified_key.cert.len(),
            source,
            trust_bundle_roots: roots,
        })));
        Ok(())
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Keep this proxy's certificate current, forever. `base_dir` resolves
/// relative paths (the configuration file's directory); `reload` is
/// notified on SIGHUP.
pub async fn run(
    shared: Arc<Shared>,
    cfg: Arc<IdentityConfig>,
    base_dir: PathBuf,
    reload: Arc<Notify>,
) {
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        }
    };
    let extra_bundle = cfg.trust_bundle.as_deref().map(resolve);
    match &cfg.source {
        IdentitySource::Files {
            cert_chain,
            private_key,
        } => {
            let files = Files {
                chain: resolve(cert_chain),
                key: resolve(private_key),
                bundle: extra_bundle,
            };
            run_files(&shared, &cfg, files, &reload).await
        }
        IdentitySource::Ca {
            address,
            token_file,
            ttl,
        } => {
            let ca = Ca {
                endpoint: format!("http://{address}"),
                token_file: resolve(token_file),
                ttl: ttl.unwrap_or(Duration::ZERO),
                bundle: extra_bundle,
            };
            run_ca(&shared, &cfg, ca).await
        }
    }
}

struct Files {
    chain: PathBuf,
    key: PathBuf,
    bundle: Option<PathBuf>,
}

/// The three files' contents: chain, key, bundle.
type FileContents = (Vec<u8>, Vec<u8>, Vec<u8>);

impl Files {
    fn read(&self) -> Result<FileContents, String> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let bundle = match &self.bundle {
            Some(p) => read(p)?,
            None => Vec::new(),
        };
        Ok((read(&self.chain)?, read(&self.key)?, bundle))
    }
}

async fn run_files(shared: &Shared, cfg: &IdentityConfig, files: Files, reload: &Notify) {
    let mut last: Option<u64> = None;
    loop {
        match files.read() {
            Ok((chain, key, bundle)) => {
                let mut all = chain.clone();
                all.push(0);
                all.extend_from_slice(&key);
                all.push(0);
                all.extend_from_slice(&bundle);
                let hash = ringmesh_config::fnv1a64(&all);
                if last != Some(hash) {
                    last = Some(hash);
                    let roots = TrustBundle::from_pem(&bundle).map_err(|e| {
                        format!(
                            "{}: {e}",
                            files.bundle.as_deref().unwrap_or(Path::new("")).display()
                        )
                    });
                    match roots.and_then(|r| load_checked(shared, cfg, &chain, &key, r)) {
                        Ok((svid, roots)) => {
                            accept(shared, cfg, &svid, roots, "files");
                        }
                        Err(e) => {
                            shared.stats.identity_renew_fail.inc();
                            tracing::error!(
                                cert_chain = %files.chain.display(),
                                private_key = %files.key.display(),
                                "identity files rejected: {e}; {}",
                                keeping(shared)
                            );
                        }
                    }
                }
            }
            Err(e) => {
                // Reported once per change of state, not every poll.
                if last != Some(0) {
                    last = Some(0);
                    shared.stats.identity_renew_fail.inc();
                    tracing::error!("identity files: {e}; {}", keeping(shared));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(FILES_POLL) => {}
            _ = reload.notified() => last = None,
        }
    }
}

fn keeping(shared: &Shared) -> &'static str {
    if shared.identity.mesh().is_some() {
        "the current certificate keeps serving"
    } else {
        "no certificate yet: mTLS listeners refuse connections and ISTIO_MUTUAL clusters answer 503"
    }
}

/// Load an SVID and check it: an SVID of `cfg`'s trust domain (and
/// identity, when configured) that chains to `roots` plus the control
/// plane's roots now.
fn load_checked(
    shared: &Shared,
    cfg: &IdentityConfig,
    chain_pem: &[u8],
    key_pem: &[u8],
    roots: TrustBundle,
) -> Result<(Svid, TrustBundle), String> {
    let provider = ringmesh_tls::provider();
    let svid = Svid::from_pem(chain_pem, key_pem, &cfg.trust_domain, &provider)
        .map_err(|e| e.to_string())?;
    if let Some(want) = &cfg.id {
        if svid.id != *want {
            return Err(format!(
                "the certificate is for {}, but this proxy's identity is {want}",
                svid.id
            ));
        }
    }
    let mut all = roots.clone();
    for c in shared.identity.sds_roots.load().certs() {
        let _ = all.add(c.clone());
    }
    let certs = &svid.certified_key.cert;
    let bundle = SharedTrustBundle::new(all);
    ringmesh_tls::verify_svid(
        &certs[0],
        &certs[1..],
        &bundle,
        &cfg.trust_domain,
        Role::Server,
        UnixTime::now(),
        &provider,
    )
    .map_err(|e| match ringmesh_tls::svid_error(&e) {
        Some(svid) => format!("the certificate does not verify against the trust bundle: {svid}"),
        None => format!("the certificate does not verify against the trust bundle: {e}"),
    })?;
    Ok((svid, roots))
}

fn accept(
    shared: &Shared,
    cfg: &IdentityConfig,
    svid: &Svid,
    roots: TrustBundle,
    source: &'static str,
) {
    match shared
        .identity
        .publish(svid, roots, &cfg.trust_domain, source)
    {
        Ok(()) => {
            shared.stats.identity_renew_ok.inc();
            shared
                .stats
                .identity_expiry
                .set(unix(svid.not_after) as i64);
            tracing::info!(
                identity = %svid.id,
                serial = %svid.serial_hex(),
                not_after = unix(svid.not_after),
                source,
                "certificate in service"
            );
        }
        Err(e) => {
            shared.stats.identity_renew_fail.inc();
            tracing::error!("{e}");
        }
    }
}

struct Ca {
    endpoint: String,
    token_file: PathBuf,
    ttl: Duration,
    bundle: Option<PathBuf>,
}

async fn run_ca(shared: &Shared, cfg: &IdentityConfig, ca: Ca) {
    let Some(id) = cfg.id.clone() else {
        // The configuration compiler requires it with a CA.
        tracing::error!("identity: no namespace/service_account to ask the CA for");
        return;
    };
    let mut rng = Jitter::new();
    let mut retry = RETRY_INITIAL;
    loop {
        match fetch(shared, cfg, &ca, &id).await {
            Ok((svid, roots)) => {
                accept(shared, cfg, &svid, roots, "ca");
                retry = RETRY_INITIAL;
                let delay = renew_delay(SystemTime::now(), svid.not_after, &mut rng);
                tracing::debug!(?delay, "next certificate renewal");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                shared.stats.identity_renew_fail.inc();
                tracing::warn!(
                    ca = %ca.endpoint,
                    identity = %id,
                    retry_in = ?retry,
                    "certificate request failed: {e}; {}",
                    keeping(shared)
                );
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// One certificate from the CA: new key, CSR, request, checks.
async fn fetch(
    shared: &Shared,
    cfg: &IdentityConfig,
    ca: &Ca,
    id: &SpiffeId,
) -> Result<(Svid, TrustBundle), String> {
    let token = std::fs::read_to_string(&ca.token_file).map_err(|e| {
        format!(
            "cannot read the token file {}: {e}",
            ca.token_file.display()
        )
    })?;
    let req =
        generate_key_and_csr(id).map_err(|e| format!("cannot generate a key and CSR: {e}"))?;
    let (chain, bundle) =
        ringmesh_ca::request_certificate(&ca.endpoint, &token, &req.csr_pem, ca.ttl)
            .await
            .map_err(|e| e.to_string())?;
    let mut roots = TrustBundle::from_pem(bundle.concat().as_bytes())
        .map_err(|e| format!("the CA's trust bundle: {e}"))?;
    if let Some(p) = &ca.bundle {
        let extra = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        roots
            .extend_pem(&extra)
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    load_checked(
        shared,
        cfg,
        chain.concat().as_bytes(),
        req.key_pem.as_bytes(),
        roots,
    )
}

/// When to renew a certificate received `now` that expires at
/// `not_after`: half-way, less up to a tenth of the remaining time, so
/// proxies started together spread their requests.
fn renew_delay(now: SystemTime, not_after: SystemTime, rng: &mut Jitter) -> Duration {
    let remaining = not_after.duration_since(now).unwrap_or(Duration::ZERO);
    let half = remaining / 2;
    let spread = (remaining / 10).as_millis() as u64;
    let jitter = Duration::from_millis(if spread == 0 { 0 } else { rng.next() % spread });
    half.saturating_sub(jitter).max(MIN_RENEW_DELAY)
}

/// xorshift64 for jitter only.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(29);
        Jitter(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_half_life_with_bounded_jitter() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut rng = Jitter::new();
        for _ in 0..1000 {
            let d = renew_delay(now, now + Duration::from_secs(20), &mut rng);
            assert!(
                d > Duration::from_secs(8) && d <= Duration::from_secs(10),
                "{d:?}"
            );
            let d = renew_delay(now, now + Duration::from_secs(24 * 3600), &mut rng);
            assert!(
                d > Duration::from_secs(12 * 3600 - 24 * 360 - 1)
                    && d <= Duration::from_secs(12 * 3600),
                "{d:?}"
            );
        }
        // Expired or about to: retry soon, never in a tight loop.
        assert_eq!(renew_delay(now, now, &mut rng), MIN_RENEW_DELAY);
        assert_eq!(
            renew_delay(now, now - Duration::from_secs(5), &mut rng),
            MIN_RENEW_DELAY
        );
    }
}
