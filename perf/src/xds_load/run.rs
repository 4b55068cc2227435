//! The driver: connect the simulated proxies, wait for the initial sync,
//! make the scenario's changes to the registry and measure each one,
//! then check every proxy against a fresh stream of its scope.

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime},
};

use serde_json::{json, Value};
use tokio::{sync::watch, task::JoinSet};

use crate::xds_load::{
    catalog::Catalog,
    client::{self, Counters, Env, Proxy},
    measure::{ms, Expectation, Summary, Watches},
    mesh::{Change, Mesh, Sidecars},
    procstat::{self, ProcSample},
    proxy::{compare, Kind, Mismatch},
};

/// Which registry changes to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// One endpoint change at a time, each measured on its own.
    Single,
    /// Endpoint changes at a fixed rate for a while.
    Churn,
}

impl Scenario {
    pub fn parse(s: &str) -> Result<Scenario, String> {
        match s {
            "single" => Ok(Scenario::Single),
            "churn" => Ok(Scenario::Churn),
            _ => Err(format!("--scenario {s:?}: expected single or churn")),
        }
    }
}

/// How proxies are grouped for the final check: one fresh stream per
/// group, its result compared with every member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TruthGroup {
    /// Every distinct node (id and metadata): one stream per proxy when
    /// every pod has its own IP, as in Kubernetes.
    Exact,
    /// Nodes equal but for their IP and pod name (the same workload):
    /// cheaper, and a check that pods of one workload are served alike.
    Workload,
}

impl TruthGroup {
    pub fn parse(s: &str) -> Result<TruthGroup, String> {
        match s {
            "exact" => Ok(TruthGroup::Exact),
            "workload" => Ok(TruthGroup::Workload),
            _ => Err(format!("--truth-group {s:?}: expected exact or workload")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub dir: PathBuf,
    /// `IP:PORT` of the control plane's gRPC port.
    pub xds: String,
    pub control_pid: Option<u32>,
    pub control_log: Option<PathBuf>,
    pub scenarios: Vec<Scenario>,
    pub single_changes: usize,
    pub churn_rate: f64,
    pub churn_duration: Duration,
    pub connect_rate: f64,
    pub settle: Duration,
    pub sync_timeout: Duration,
    pub converge_timeout: Duration,
    pub max_resources: usize,
    pub max_names: usize,
    pub max_message: usize,
    pub truth_group: TruthGroup,
    pub truth_concurrency: usize,
    pub seed: u64,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// The run's outcome: the JSON report and whether every check passed.
pub struct Outcome {
    pub report: Value,
    pub ok: bool,
}

struct Ctx {
    opts: RunOptions,
    env: Arc<Env>,
    proxies: Vec<Arc<Proxy>>,
    failures: Vec<String>,
}

impl Ctx {
    fn cp(&self) -> Option<ProcSample> {
        self.opts
            .control_pid
            .and_then(|pid| procstat::sample(&pid.to_string()).ok())
    }

    fn counters(&self) -> Vec<Counters> {
        self.proxies.iter().map(|p| p.stats.counters()).collect()
    }

    fn note(&self, msg: impl AsRef<str>) {
        if self.opts.progress {
            eprintln!("ringmesh-xds-load: {}", msg.as_ref());
        }
    }

    fn catalog(&self) -> &Catalog {
        &self.env.catalog
    }

    /// Proxies subscribed to `cluster`'s endpoints now.
    fn affected(&self, cluster: &str) -> HashSet<u32> {
        let Some(sym) = self.catalog().lookup(cluster) else {
            return HashSet::new();
        };
        self.proxies
            .iter()
            .filter(|p| p.state().is_subscribed(Kind::Endpoint, sym))
            .map(|p| p.index)
            .collect()
    }

    fn control_log_times(&self, since: SystemTime) -> Vec<SystemTime> {
        let Some(path) = &self.opts.control_log else {
            return Vec::new();
        };
        std::fs::read_to_string(path)
            .map(|log| procstat::log_times(&log, "mesh state changed", since))
            .unwrap_or_default()
    }
}

/// Run everything `opts` asks for against the control plane.
pub async fn run(opts: RunOptions) -> Result<Outcome, String> {
    let mut mesh = Mesh::open(&opts.dir)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let env = Arc::new(Env {
        catalog: Arc::new(Catalog::new(opts.max_names)),
        watches: Arc::new(Watches::default()),
        url: format!("http://{}", opts.xds),
        connect_timeout: Duration::from_secs(10),
        max_message: opts.max_message,
        stop: stop_rx,
    });
    let proxies: Vec<Arc<Proxy>> = mesh
        .proxies
        .iter()
        .enumerate()
        .map(|(i, def)| {
            let idx = u32::try_from(i).map_err(|_| "too many proxies".to_owned())?;
            Ok(Arc::new(Proxy::new(idx, def.clone(), opts.max_resources)))
        })
        .collect::<Result<_, String>>()?;
    let mut ctx = Ctx {
        opts: opts.clone(),
        env: env.clone(),
        proxies,
        failures: Vec::new(),
    };
    let started = SystemTime::now();
    let cp_start = ctx.cp();
    if opts.control_pid.is_some() && cp_start.is_none() {
        return Err(format!(
            "cannot read /proc/{} of the control plane (--control-pid)",
            opts.control_pid.unwrap_or_default()
        ));
    }
    let tool_start = procstat::sample("self").ok();

    let mut tasks = JoinSet::new();
    let sync = sync_phase(&mut ctx, &mut tasks).await;
    let mut report = json!({
        "date_unix": started.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "spec": mesh.spec.to_json(),
        "options": options_json(&opts),
        "sync": sync,
    });
    let synced = ctx.failures.is_empty();
    if synced {
        for s in opts.scenarios.clone() {
            let r = match s {
                Scenario::Single => single_phase(&mut ctx, &mut mesh).await?,
                Scenario::Churn => churn_phase(&mut ctx, &mut mesh).await?,
            };
            let key = match s {
                Scenario::Single => "single",
                Scenario::Churn => "churn",
            };
            report[key] = r;
        }
        report["verify"] = verify_phase(&mut ctx).await;
    } else {
        ctx.failures
            .push("skipped the scenarios and the final check: the initial sync failed".into());
    }

    // Process figures of the whole run.
    let cp_end = ctx.cp();
    let tool_end = procstat::sample("self").ok();
    report["control_plane"] = match (cp_start, cp_end) {
        (Some(a), Some(b)) => json!({
            "pid": opts.control_pid,
            "cpu_s": (b.cpu.saturating_sub(a.cpu)).as_secs_f64(),
            "rss_mib_end": mib(b.rss_kib),
            "max_rss_mib": mib(b.hwm_kib),
        }),
        _ => Value::Null,
    };
    report["tool"] = match (tool_start, tool_end) {
        (Some(a), Some(b)) => json!({
            "cpu_s": (b.cpu.saturating_sub(a.cpu)).as_secs_f64(),
            "max_rss_mib": mib(b.hwm_kib),
            "distinct_names": ctx.catalog().distinct_names(),
        }),
        _ => Value::Null,
    };
    let reuse = ctx.catalog().version_reuse();
    if reuse > 0 {
        ctx.failures.push(format!(
            "{reuse} listeners/clusters arrived with a different body under a version already seen"
        ));
    }
    let (decode_errors, failed, disconnects) = ctx.proxies.iter().fold((0, 0, 0), |acc, p| {
        let s = &p.stats;
        (
            acc.0 + s.decode_errors.load(Ordering::Relaxed),
            acc.1 + u64::from(s.failed.load(Ordering::Relaxed)),
            acc.2 + s.disconnects.load(Ordering::Relaxed),
        )
    });
    if decode_errors > 0 {
        ctx.failures
            .push(format!("{decode_errors} resources did not decode"));
    }
    if failed > 0 {
        let example = ctx
            .proxies
            .iter()
            .find(|p| p.stats.failed.load(Ordering::Relaxed))
            .and_then(|p| p.last_error().map(|e| format!("{}: {e}", p.def.pod)))
            .unwrap_or_default();
        ctx.failures
            .push(format!("{failed} proxies gave up (e.g. {example})"));
    }
    // Why streams were lost, most frequent first.
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for p in &ctx.proxies {
        if p.stats.disconnects.load(Ordering::Relaxed) > 0 || p.stats.failed.load(Ordering::Relaxed)
        {
            if let Some(e) = p.last_error() {
                *reasons.entry(e).or_default() += 1;
            }
        }
    }
    let mut reasons: Vec<(String, usize)> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1));
    reasons.truncate(5);
    report["streams"] = json!({
        "last_errors": reasons.iter().map(|(e, n)| json!({"error": e, "proxies": n})).collect::<Vec<_>>(),
        "disconnects": disconnects,
        "decode_errors": decode_errors,
        "failed_proxies": failed,
    });

    let _ = stop_tx.send(true);
    // Proxies see `stop` and end; do not wait long for stragglers.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();

    let ok = ctx.failures.is_empty();
    report["failures"] = json!(ctx.failures);
    report["ok"] = json!(ok);
    Ok(Outcome { report, ok })
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

fn options_json(o: &RunOptions) -> Value {
    json!({
        "xds": o.xds,
        "scenarios": o.scenarios.iter().map(|s| format!("{s:?}").to_lowercase()).collect::<Vec<_>>(),
        "single_changes": o.single_changes,
        "churn_rate": o.churn_rate,
        "churn_duration_s": o.churn_duration.as_secs_f64(),
        "connect_rate": o.connect_rate,
        "settle_ms": ms(o.settle),
        "converge_timeout_s": o.converge_timeout.as_secs_f64(),
        "truth_group": format!("{:?}", o.truth_group).to_lowercase(),
    })
}

/// Connect every proxy (at the connect rate) and wait until all hold
/// their whole configuration and the control plane has gone quiet.
async fn sync_phase(ctx: &mut Ctx, tasks: &mut JoinSet<()>) -> Value {
    let n = ctx.proxies.len();
    let start = Instant::now();
    let cp0 = ctx.cp();
    let deadline = start + ctx.opts.sync_timeout;
    let rate = ctx.opts.connect_rate.max(1.0);
    ctx.note(format!("connecting {n} proxies at {rate}/s"));
    let mut connected_at = start;
    let mut next_report = start + Duration::from_secs(5);
    let mut spawned = 0usize;
    let mut last_total = u64::MAX;
    let mut quiet_since = Instant::now();
    let quiet = Duration::from_millis(500);
    let (done_at, outcome) = loop {
        // Spawn the proxies that are due.
        let now = Instant::now();
        while spawned < n && start + Duration::from_secs_f64(spawned as f64 / rate) <= now {
            tasks.spawn(client::run(ctx.env.clone(), ctx.proxies[spawned].clone()));
            spawned += 1;
            if spawned == n {
                connected_at = Instant::now();
            }
        }
        let complete = ctx
            .proxies
            .iter()
            .filter(|p| p.stats.complete.load(Ordering::Relaxed))
            .count();
        let failed = ctx
            .proxies
            .iter()
            .filter(|p| p.stats.failed.load(Ordering::Relaxed))
            .count();
        let total: u64 = ctx
            .proxies
            .iter()
            .map(|p| p.stats.responses.load(Ordering::Relaxed))
            .sum();
        if total != last_total {
            last_total = total;
            quiet_since = now;
        }
        if now >= next_report {
            let rss = ctx.cp().map(|s| mib(s.rss_kib)).unwrap_or(0.0);
            ctx.note(format!(
                "{:.0}s: {spawned} streams opened, {complete} complete, {failed} failed, {total} \
                 responses, control plane RSS {rss} MiB",
                start.elapsed().as_secs_f64()
            ));
            next_report = now + Duration::from_secs(5);
        }
        if spawned == n && complete == n && now.duration_since(quiet_since) >= quiet {
            // Done when the last response arrived.
            break (quiet_since, Ok(()));
        }
        if failed > 0 && complete + failed == n && spawned == n {
            break (
                now,
                Err(format!("{failed} proxies gave up during the initial sync")),
            );
        }
        if now >= deadline {
            break (
                now,
                Err(format!(
                    "initial sync incomplete after {:?}: {complete} of {n} proxies complete \
                     ({failed} gave up)",
                    ctx.opts.sync_timeout
                )),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cp1 = ctx.cp();
    let mut totals = Counters::default();
    for c in ctx.counters() {
        totals.add(&c);
    }
    let mut held = [0usize; 4];
    for p in &ctx.proxies {
        let st = p.state();
        for k in Kind::ALL {
            held[k.index()] += st.held(k).len();
        }
    }
    let per = |x: f64| if n == 0 { 0.0 } else { x / n as f64 };
    let mut resources = serde_json::Map::new();
    for (i, name) in client::kinds() {
        resources.insert(name.into(), json!(per(held[i] as f64)));
    }
    if let Err(e) = &outcome {
        ctx.failures.push(e.clone());
    }
    let elapsed = done_at.saturating_duration_since(start);
    ctx.note(format!(
        "initial sync: {n} proxies in {:.1}s, {:.1} MB received",
        elapsed.as_secs_f64(),
        totals.bytes as f64 / 1e6
    ));
    json!({
        "proxies": n,
        "ok": outcome.is_ok(),
        "all_streams_opened_s": connected_at.saturating_duration_since(start).as_secs_f64(),
        "all_complete_s": elapsed.as_secs_f64(),
        "responses": totals.responses,
        "bytes_total": totals.bytes,
        "bytes_per_proxy": per(totals.bytes as f64).round(),
        "resources_per_proxy": resources,
        "control_plane": cpu_json(cp0, cp1, elapsed),
    })
}

fn cpu_json(a: Option<ProcSample>, b: Option<ProcSample>, wall: Duration) -> Value {
    match (a, b) {
        (Some(a), Some(b)) => {
            let cpu = b.cpu.saturating_sub(a.cpu);
            json!({
                "cpu_s": cpu.as_secs_f64(),
                "cpu_pct": if wall.is_zero() { 0.0 } else { (cpu.as_secs_f64() / wall.as_secs_f64() * 1000.0).round() / 10.0 },
                "rss_mib": mib(b.rss_kib),
                "max_rss_mib": mib(b.hwm_kib),
            })
        }
        _ => Value::Null,
    }
}

/// Make one change: register what it must look like at every affected
/// proxy, then replace the file.
fn apply(
    ctx: &mut Ctx,
    mesh: &mut Mesh,
    id: usize,
    service: usize,
    add: bool,
) -> Result<(Arc<Expectation>, Change, SystemTime), String> {
    let change = if add {
        mesh.add_endpoint(service)?
    } else {
        match mesh.remove_endpoint(service)? {
            Some(c) => c,
            None => mesh.add_endpoint(service)?,
        }
    };
    let affected = ctx.affected(&change.cluster);
    let cluster = ctx.catalog().intern(&change.cluster)?;
    let wall = SystemTime::now();
    let e = Arc::new(Expectation::new(
        id,
        cluster,
        change.ip.into(),
        change.added,
        Instant::now(),
        affected,
    ));
    ctx.env.watches.add(e.clone());
    mesh.write_service(change.service)?;
    Ok((e, change, wall))
}

/// What a window of time cost: bytes and responses, split by whether
/// the receiving proxy was affected.
struct Window {
    total: Counters,
    to_affected: Counters,
    /// Proxies that received something without being affected.
    unaffected_pushed: usize,
    unaffected_responses: u64,
}

fn window(before: &[Counters], after: &[Counters], affected: &HashSet<u32>) -> Window {
    let mut w = Window {
        total: Counters::default(),
        to_affected: Counters::default(),
        unaffected_pushed: 0,
        unaffected_responses: 0,
    };
    for (i, (a, b)) in before.iter().zip(after).enumerate() {
        let d = b.since(a);
        w.total.add(&d);
        if affected.contains(&(i as u32)) {
            w.to_affected.add(&d);
        } else if d.responses > 0 {
            w.unaffected_pushed += 1;
            w.unaffected_responses += d.responses;
        }
    }
    w
}

fn by_kind_json(c: &Counters) -> Value {
    let mut m = serde_json::Map::new();
    for (i, name) in client::kinds() {
        m.insert(name.into(), json!(c.by_kind[i]));
    }
    Value::Object(m)
}

/// Wait until `e` converged at every affected proxy, or `timeout`.
async fn wait_converged(e: &Expectation, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !e.is_converged() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

fn sidecar_applies(mesh: &Mesh, service: usize) -> bool {
    let ns = mesh.services[service].namespace;
    match mesh.spec.sidecars {
        Sidecars::None => false,
        Sidecars::Half => ns % 2 == 0,
        Sidecars::All => true,
    }
}

/// One change at a time: each measured alone, then a settle period in
/// which nothing else happens, so every push in the window is its own.
async fn single_phase(ctx: &mut Ctx, mesh: &mut Mesh) -> Result<Value, String> {
    let k = ctx.opts.single_changes;
    let s = mesh.services.len();
    let mut pooled = Vec::new();
    let mut per_change_max = Vec::new();
    let mut changes = Vec::new();
    let mut totals = (0u64, 0u64, 0usize, 0u64, 0usize); // bytes, bytes to affected, affected, noop, unaffected pushed
    let cp0 = ctx.cp();
    let t_phase = Instant::now();
    for i in 0..k {
        // Alternate namespaces (with and without a Sidecar under
        // `--sidecars half`) and additions and removals.
        let service = (i * 37 + 1) % s;
        let before = ctx.counters();
        let cp_before = ctx.cp();
        let (e, change, wall) = apply(ctx, mesh, i, service, i % 2 == 0)?;
        let converged = wait_converged(&e, ctx.opts.converge_timeout).await;
        let converged_at = Instant::now();
        tokio::time::sleep(ctx.opts.settle).await;
        ctx.env.watches.remove(&e);
        let after = ctx.counters();
        let cp_after = ctx.cp();
        let w = window(&before, &after, &e.affected);
        let lat = e.latencies();
        let sum = Summary::of(&lat);
        pooled.extend(lat);
        per_change_max.push(sum.max);
        let stragglers = e.stragglers();
        if !converged {
            ctx.failures.push(format!(
                "single change {i} ({} {} {}): {} of {} affected proxies never got it (e.g. {})",
                if change.added { "add" } else { "remove" },
                change.ip,
                change.cluster,
                stragglers.len(),
                e.affected.len(),
                stragglers
                    .first()
                    .map(|p| ctx.proxies[*p as usize].def.pod.clone())
                    .unwrap_or_default()
            ));
        }
        let detect = ctx
            .control_log_times(wall)
            .first()
            .and_then(|t| t.duration_since(wall).ok());
        let affected = e.affected.len();
        totals.0 += w.total.bytes;
        totals.1 += w.to_affected.bytes;
        totals.2 += affected;
        totals.3 += w.total.noop_responses;
        totals.4 += w.unaffected_pushed;
        ctx.note(format!(
            "single change {i}: {} {} in {}: {affected} affected, converged p50 {:.0} ms max {:.0} \
             ms, {} bytes, {} unaffected proxies pushed",
            if change.added { "add" } else { "remove" },
            change.ip,
            mesh.services[service].host,
            ms(sum.p50),
            ms(sum.max),
            w.total.bytes,
            w.unaffected_pushed
        ));
        changes.push(json!({
            "kind": if change.added { "add" } else { "remove" },
            "service": mesh.services[service].host,
            "sidecar_scoped_namespace": sidecar_applies(mesh, service),
            "endpoint": change.ip.to_string(),
            "affected_proxies": affected,
            "converged_proxies": e.converged_count(),
            "convergence": sum.to_json(),
            "settled_after_ms": ms(converged_at.saturating_duration_since(e.t0)),
            "control_plane_state_changed_ms": detect.map(ms),
            "bytes_total": w.total.bytes,
            "bytes_to_affected": w.to_affected.bytes,
            "bytes_per_affected_proxy": if affected == 0 { 0.0 } else { (w.to_affected.bytes as f64 / affected as f64).round() },
            "responses": w.total.responses,
            "responses_by_type": by_kind_json(&w.total),
            "noop_responses": w.total.noop_responses,
            "redundant_resources": w.total.redundant_resources,
            "unaffected_proxies_pushed": w.unaffected_pushed,
            "unaffected_responses": w.unaffected_responses,
            "control_plane": cpu_json(cp_before, cp_after, converged_at.saturating_duration_since(e.t0) + ctx.opts.settle),
        }));
    }
    let kf = k.max(1) as f64;
    Ok(json!({
        "changes": changes,
        "convergence": Summary::of(&pooled).to_json(),
        "per_change_max": Summary::of(&per_change_max).to_json(),
        "bytes_per_change": (totals.0 as f64 / kf).round(),
        "bytes_per_affected_proxy": if totals.2 == 0 { 0.0 } else { (totals.1 as f64 / totals.2 as f64).round() },
        "affected_per_change": (totals.2 as f64 / kf).round(),
        "noop_responses": totals.3,
        "unaffected_proxies_pushed": totals.4,
        "control_plane": cpu_json(cp0, ctx.cp(), t_phase.elapsed()),
    }))
}

/// A small deterministic generator (SplitMix64) for churn's choices.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Endpoint changes at a fixed rate; every change is watched until it
/// converges everywhere it should.
async fn churn_phase(ctx: &mut Ctx, mesh: &mut Mesh) -> Result<Value, String> {
    let rate = ctx.opts.churn_rate.max(0.1);
    let n = (rate * ctx.opts.churn_duration.as_secs_f64()).round() as usize;
    let s = mesh.services.len() as u64;
    let mut rng = ctx.opts.seed;
    let before = ctx.counters();
    let cp0 = ctx.cp();
    let start = Instant::now();
    let mut expectations: Vec<Arc<Expectation>> = Vec::with_capacity(n);
    let mut late = Duration::ZERO;
    ctx.note(format!("churn: {n} endpoint changes at {rate}/s"));
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        late = late.max(Instant::now().saturating_duration_since(due));
        let service = (splitmix(&mut rng) % s) as usize;
        let (e, _, _) = apply(ctx, mesh, 1_000_000 + i, service, i % 2 == 0)?;
        expectations.push(e);
        if i % 50 == 49 {
            for e in &expectations {
                if e.is_converged() {
                    ctx.env.watches.remove(e);
                }
            }
        }
    }
    let churn_end = Instant::now();
    let deadline = churn_end + ctx.opts.converge_timeout;
    while Instant::now() < deadline && !expectations.iter().all(|e| e.is_converged()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let converged_at = Instant::now();
    tokio::time::sleep(ctx.opts.settle).await;
    for e in &expectations {
        ctx.env.watches.remove(e);
    }
    let after = ctx.counters();
    let cp1 = ctx.cp();
    let mut union = HashSet::new();
    let mut pooled = Vec::new();
    let mut per_change = Vec::new();
    let mut stragglers = 0usize;
    let mut changes_not_converged = 0usize;
    let mut affected_total = 0usize;
    for e in &expectations {
        union.extend(e.affected.iter().copied());
        let lat = e.latencies();
        per_change.push(lat.iter().copied().max().unwrap_or_default());
        pooled.extend(lat);
        let st = e.stragglers().len();
        stragglers += st;
        changes_not_converged += usize::from(st > 0);
        affected_total += e.affected.len();
    }
    if changes_not_converged > 0 {
        ctx.failures.push(format!(
            "churn: {changes_not_converged} of {n} changes did not reach every affected proxy \
             within {:?} after the churn ({stragglers} proxy-changes missing)",
            ctx.opts.converge_timeout
        ));
    }
    let w = window(&before, &after, &union);
    let pooled_sum = Summary::of(&pooled);
    let per_change_sum = Summary::of(&per_change);
    ctx.note(format!(
        "churn: {n} changes, per proxy p50 {:.0} ms p99 {:.0} ms max {:.0} ms; per change p99 {:.0} ms",
        ms(pooled_sum.p50),
        ms(pooled_sum.p99),
        ms(pooled_sum.max),
        ms(per_change_sum.p99)
    ));
    let nf = n.max(1) as f64;
    Ok(json!({
        "changes": n,
        "rate_per_s": rate,
        "duration_s": churn_end.saturating_duration_since(start).as_secs_f64(),
        "driver_max_lateness_ms": ms(late),
        "affected_per_change": (affected_total as f64 / nf).round(),
        "convergence": pooled_sum.to_json(),
        "per_change_max": per_change_sum.to_json(),
        "changes_not_converged": changes_not_converged,
        "proxy_changes_missing": stragglers,
        "all_converged_after_churn_ms": ms(converged_at.saturating_duration_since(churn_end)),
        "bytes_total": w.total.bytes,
        "bytes_per_change": (w.total.bytes as f64 / nf).round(),
        "bytes_per_affected_proxy_change": if affected_total == 0 { 0.0 } else { (w.to_affected.bytes as f64 / affected_total as f64).round() },
        "responses": w.total.responses,
        "responses_by_type": by_kind_json(&w.total),
        "noop_responses": w.total.noop_responses,
        "redundant_resources": w.total.redundant_resources,
        "unaffected_proxies_pushed": w.unaffected_pushed,
        "control_plane": cpu_json(cp0, cp1, converged_at.saturating_duration_since(start)),
    }))
}

fn group_key(p: &Proxy, g: TruthGroup) -> String {
    let mut meta = p.def.metadata.clone();
    match g {
        TruthGroup::Exact => format!(
            "{}|{}|{}",
            p.def.node_id,
            p.def.cluster,
            Value::Object(meta)
        ),
        TruthGroup::Workload => {
            meta.remove("INSTANCE_IPS");
            format!("{}|{}", p.def.cluster, Value::Object(meta))
        }
    }
}

/// Open one fresh stream per group and compare every member with it.
async fn verify_phase(ctx: &mut Ctx) -> Value {
    tokio::time::sleep(ctx.opts.settle).await;
    let start = Instant::now();
    let cp0 = ctx.cp();
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, p) in ctx.proxies.iter().enumerate() {
        groups
            .entry(group_key(p, ctx.opts.truth_group))
            .or_default()
            .push(i);
    }
    // Never set: a fresh stream ends when complete (or times out). The
    // sender lives until the function returns, or `stop` would fire.
    let (_never, idle_stop) = watch::channel(false);
    let truth_env = Arc::new(Env {
        catalog: ctx.env.catalog.clone(),
        watches: Arc::new(Watches::default()),
        url: ctx.env.url.clone(),
        connect_timeout: ctx.env.connect_timeout,
        max_message: ctx.env.max_message,
        stop: idle_stop,
    });
    ctx.note(format!(
        "final check: {} fresh streams ({} proxies)",
        groups.len(),
        ctx.proxies.len()
    ));
    let mut pending: Vec<Vec<usize>> = groups.into_values().collect();
    let group_count = pending.len();
    let mut set: JoinSet<(Vec<usize>, Result<Proxy, String>)> = JoinSet::new();
    let timeout = ctx.opts.converge_timeout.max(Duration::from_secs(30));
    let mut mismatched_proxies = 0usize;
    let mut counts = BTreeMap::<&'static str, usize>::new();
    let mut examples = Vec::new();
    let mut truth_errors = Vec::new();
    let mut compared = 0usize;
    loop {
        while set.len() < ctx.opts.truth_concurrency.max(1) {
            let Some(members) = pending.pop() else { break };
            let env = truth_env.clone();
            let rep = &ctx.proxies[members[0]];
            let truth = Proxy::new(u32::MAX, rep.def.clone(), ctx.opts.max_resources);
            set.spawn(async move {
                let r = client::fetch_complete(&env, &truth, timeout).await;
                (members, r.map(|()| truth))
            });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let (members, truth) = match joined {
            Ok(x) => x,
            Err(e) => {
                truth_errors.push(format!("a check task failed: {e}"));
                continue;
            }
        };
        let truth = match truth {
            Ok(t) => t,
            Err(e) => {
                truth_errors.push(format!("{}: {e}", ctx.proxies[members[0]].def.pod));
                continue;
            }
        };
        let truth_state = truth.state().clone();
        for m in members {
            let p = &ctx.proxies[m];
            let diff = compare(&p.state(), &truth_state);
            compared += 1;
            if diff.is_empty() {
                continue;
            }
            mismatched_proxies += 1;
            for d in diff {
                let (what, kind, name, detail) = match d {
                    Mismatch::Missing { kind, name } => ("missing", kind, name, String::new()),
                    Mismatch::Extra { kind, name } => ("extra", kind, name, String::new()),
                    Mismatch::Stale {
                        kind,
                        name,
                        held,
                        truth,
                    } => (
                        "stale",
                        kind,
                        name,
                        format!(
                            " (holds {}, served {})",
                            ctx.catalog().resolve(held),
                            ctx.catalog().resolve(truth)
                        ),
                    ),
                };
                *counts.entry(what).or_default() += 1;
                if examples.len() < 10 {
                    examples.push(format!(
                        "{}: {what} {} {}{detail}",
                        p.def.pod,
                        kind.short(),
                        ctx.catalog().resolve(name)
                    ));
                }
            }
        }
    }
    let ok = mismatched_proxies == 0 && truth_errors.is_empty() && compared == ctx.proxies.len();
    if !ok {
        ctx.failures.push(format!(
            "final check: {mismatched_proxies} of {} proxies differ from what the control plane \
             serves their scope ({counts:?}; e.g. {}){}",
            ctx.proxies.len(),
            examples.first().cloned().unwrap_or_default(),
            if truth_errors.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} fresh streams failed (e.g. {})",
                    truth_errors.len(),
                    truth_errors[0]
                )
            }
        ));
    }
    ctx.note(format!(
        "final check: {compared} compared, {mismatched_proxies} differ, {} fresh streams failed, \
         {:.1}s",
        truth_errors.len(),
        start.elapsed().as_secs_f64()
    ));
    json!({
        "ok": ok,
        "groups": group_count,
        "proxies_compared": compared,
        "proxies_differing": mismatched_proxies,
        "mismatches": counts,
        "examples": examples,
        "fresh_stream_errors": truth_errors.len(),
        "fresh_stream_error_examples": truth_errors.iter().take(5).collect::<Vec<_>>(),
        "duration_s": start.elapsed().as_secs_f64(),
        "control_plane": cpu_json(cp0, ctx.cp(), start.elapsed()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_split_affected_and_unaffected() {
        let c = |responses, bytes| Counters {
            responses,
            bytes,
            ..Counters::default()
        };
        let before = [c(1, 10), c(1, 10), c(1, 10)];
        let after = [c(2, 110), c(1, 10), c(3, 40)];
        let w = window(&before, &after, &[0].into());
        assert_eq!(w.total.bytes, 130);
        assert_eq!(w.to_affected.bytes, 100);
        assert_eq!(w.unaffected_pushed, 1);
        assert_eq!(w.unaffected_responses, 2);
    }

    #[test]
    fn splitmix_is_deterministic_and_spread() {
        let (mut a, mut b) = (7, 7);
        let xs: Vec<u64> = (0..100).map(|_| splitmix(&mut a) % 10).collect();
        let ys: Vec<u64> = (0..100).map(|_| splitmix(&mut b) % 10).collect();
        assert_eq!(xs, ys);
        let distinct: HashSet<u64> = xs.into_iter().collect();
        assert_eq!(distinct.len(), 10);
    }
}
