//! The file-mode registry: a directory of YAML loaded whole, then polled.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};
use tracing::{error, info, warn};

use crate::{
    source::Scan,
    state::{build, Loaded},
    MeshState, Registry,
};

/// How the file registry reads its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    /// How often the directory is checked for changes (default 250 ms). A
    /// change is published within about twice this.
    pub poll_interval: Duration,
    /// The cluster domain: services are `name.namespace.svc.<suffix>`
    /// (default `cluster.local`).
    pub domain_suffix: String,
    /// The namespace of objects that name none (default `default`).
    pub default_namespace: String,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            domain_suffix: ringmesh_istio::DEFAULT_DOMAIN_SUFFIX.to_owned(),
            default_namespace: "default".to_owned(),
        }
    }
}

/// Polling faster than this only burns CPU.
const MIN_POLL: Duration = Duration::from_millis(10);
/// After a change is seen, the directory is read again until two reads
/// agree (at most this many more times), so that a file caught half
/// written, or a delete-then-create save, is not published.
const MAX_SETTLE_READS: usize = 4;
const MAX_SETTLE_WAIT: Duration = Duration::from_millis(100);

/// Load the directory once, with no watching: for tests and `ringmesh
/// analyze`. With `previous` (a state this function returned before), the
/// last-good rule applies as in [`FileRegistry`]; but `previous` does not
/// record which file each Service and Workload came from, so one of them
/// that vanished is kept while *any* file cannot be parsed (the registry
/// itself knows the file, and keeps only those of the broken file).
pub fn load_state(dir: &Path, options: &FileOptions, previous: Option<&MeshState>) -> MeshState {
    let scan = Scan::read(dir, None);
    let previous = previous.map(Loaded::from_state);
    let loaded = build(&scan, options, previous.as_ref());
    Arc::unwrap_or_clone(loaded.state)
}

/// Load in-memory sources `(label, text)` once — registry objects and Istio
/// resources alike, with the same checks and diagnostics as a directory.
/// For `ringmesh analyze`.
pub fn load_sources<'a>(
    sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    options: &FileOptions,
) -> MeshState {
    load_sources_after(sources, options, None)
}

/// [`load_sources`] with the last-good rule against `previous` (a state
/// this function returned before): a resource the new sources still hold
/// but that no longer validates keeps its previous version. The source of
/// the Kubernetes registry, whose objects arrive one by one from watches.
pub fn load_sources_after<'a>(
    sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    options: &FileOptions,
    previous: Option<&MeshState>,
) -> MeshState {
    let scan = Scan::from_sources(sources);
    let previous = previous.map(Loaded::from_state);
    Arc::unwrap_or_clone(build(&scan, options, previous.as_ref()).state)
}

/// The registry of the embedded (file) mode: Services, Workloads and Istio
/// resources from a directory of YAML, published as a new [`MeshState`]
/// whenever the content changes. Dropping it stops the polling.
#[derive(Debug)]
pub struct FileRegistry {
    dir: PathBuf,
    states: watch::Receiver<Arc<MeshState>>,
    task: JoinHandle<()>,
}

impl FileRegistry {
    /// Loads the whole directory (recursively, `*.yaml`/`*.yml`/`*.json`,
    /// in path order) before returning, so the first state is complete;
    /// then polls for changes on a tokio task (needs a running tokio
    /// runtime). Fails when the directory does not exist or cannot be read;
    /// errors in the files do not fail it (they are diagnostics).
    pub async fn start(dir: impl Into<PathBuf>, options: FileOptions) -> io::Result<FileRegistry> {
        let dir = dir.into();
        check_dir(&dir)?;
        let (scan, loaded) = {
            let (dir, options) = (dir.clone(), options.clone());
            let shown = dir.display().to_string();
            tokio::task::spawn_blocking(move || {
                let scan = Scan::read(&dir, None);
                let loaded = build(&scan, &options, None);
                (scan, loaded)
            })
            .await
            .map_err(|e| io::Error::other(format!("loading {shown}: {e}")))?
        };
        if let Some(e) = &scan.dir_error {
            return Err(io::Error::other(format!(
                "cannot read the registry directory {}: {e}",
                dir.display()
            )));
        }
        log_state(&loaded.state, None);
        let (tx, states) = watch::channel(loaded.state.clone());
        let task = tokio::spawn(poll(
            dir.clone(),
            options,
            Arc::new(scan),
            Arc::new(loaded),
            tx,
        ));
        Ok(FileRegistry { dir, states, task })
    }

    /// The state being served now.
    pub fn current(&self) -> Arc<MeshState> {
        self.states.borrow().clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Registry for FileRegistry {
    fn watch(&self) -> watch::Receiver<Arc<MeshState>> {
        self.states.clone()
    }
}

impl Drop for FileRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An error that says what to do.
fn check_dir(dir: &Path) -> io::Result<()> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => std::fs::read_dir(dir).map(drop).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read the registry directory {shown}: {e} (check its permissions)"),
            )
        }),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{shown} is not a directory: the registry reads a directory of YAML files; give \
                 the directory that holds it"
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!(
                "the registry directory {shown} does not exist: create it (mkdir -p {shown}) and \
                 put the mesh's Service, Workload and Istio YAML files in it, or give the \
                 directory that holds them"
            ),
        )),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot read the registry directory {shown}: {e}"),
        )),
    }
}

async fn read(dir: &Path, previous: &Arc<Scan>) -> Option<Arc<Scan>> {
    let (dir, previous) = (dir.to_owned(), Arc::clone(previous));
    match tokio::task::spawn_blocking(move || Scan::read(&dir, Some(&previous))).await {
        Ok(scan) => Some(Arc::new(scan)),
        Err(e) => {
            error!("reading the registry directory failed: {e}");
            None
        }
    }
}

async fn poll(
    dir: PathBuf,
    options: FileOptions,
    mut scan: Arc<Scan>,
    mut loaded: Arc<Loaded>,
    tx: watch::Sender<Arc<MeshState>>,
) {
    let interval = options.poll_interval.max(MIN_POLL);
    let settle = (interval / 2).min(MAX_SETTLE_WAIT);
    loop {
        tokio::time::sleep(interval).await;
        let Some(mut next) = read(&dir, &scan).await else {
            continue;
        };
        if next.same_as(&scan) {
            scan = next; // Newer stamps: fewer files to read next time.
            continue;
        }
        for _ in 0..MAX_SETTLE_READS {
            tokio::time::sleep(settle).await;
            let Some(again) = read(&dir, &next).await else {
                break;
            };
            let settled = again.same_as(&next);
            next = again;
            if settled {
                break;
            }
        }
        scan = next;
        let built = {
            let (scan, options, previous) = (scan.clone(), options.clone(), loaded.clone());
            tokio::task::spawn_blocking(move || build(&scan, &options, Some(&previous))).await
        };
        let built = match built {
            Ok(b) => Arc::new(b),
            Err(e) => {
                error!("building the mesh state failed: {e}; keeping the last state");
                continue;
            }
        };
        if built.state.version != loaded.state.version {
            log_state(&built.state, Some(&loaded.state));
            tx.send_replace(built.state.clone());
        }
        loaded = built;
    }
}

/// One line per published state, and each finding that is new.
fn log_state(state: &MeshState, previous: Option<&MeshState>) {
    let errors = state.diagnostics.iter().filter(|d| d.is_error()).count();
    info!(
        version = %state.version,
        services = state.services.len(),
        workloads = state.workloads.len(),
        istio_resources = state.istio.len(),
        errors,
        "registry state published"
    );
    for d in &state.diagnostics {
        if previous.is_some_and(|p| p.diagnostics.contains(d)) {
            continue;
        }
        match d.severity {
            ringmesh_istio::Severity::Error | ringmesh_istio::Severity::Warning => warn!("{d}"),
            ringmesh_istio::Severity::Info => info!("{d}"),
        }
    }
}
