//! One scan of the directory → one [`MeshState`]: Istio resources through
//! the model's loader, registry objects through [`crate::format`], the
//! last-good rule, and the content version.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Write as _,
    sync::Arc,
};

use ringmesh_istio::{
    codes as istio_codes, Diagnostic, Kind, Loader, Model, Resource, ResourceRef, Severity, Spec,
};
use serde_yaml_ng::Value;

use crate::{
    codes,
    format::{self, Defaults, Parsed, Place, RegistryKind, GROUP},
    path::FieldPath,
    source::{split_documents, Fnv, Scan},
    FileOptions, MeshState, Service, Workload,
};

/// A resource's identity across loads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Key {
    Istio(Kind, String, String),
    Registry(RegistryKind, String, String),
}

impl Key {
    fn of<T: Spec>(r: &Resource<T>) -> Key {
        Key::Istio(T::KIND, r.meta.namespace.clone(), r.meta.name.clone())
    }

    fn reference(&self) -> ResourceRef {
        let (kind, namespace, name) = match self {
            Key::Istio(k, ns, n) => (k.as_str(), ns, n),
            Key::Registry(k, ns, n) => (k.as_str(), ns, n),
        };
        ResourceRef {
            kind: kind.to_owned(),
            namespace: namespace.clone(),
            name: name.clone(),
        }
    }
}

/// A published state and what the next load needs to know about it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loaded {
    pub(crate) state: Arc<MeshState>,
    /// The file each Service and Workload came from. Istio resources carry
    /// their own origin. Missing for a state the caller handed in.
    registry_origins: HashMap<Key, String>,
    /// The diagnostics of the last load that could read the directory.
    loaded_diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// A state built elsewhere (`load_state`'s `previous`), whose registry
    /// objects' files are unknown.
    pub(crate) fn from_state(state: &MeshState) -> Loaded {
        Loaded {
            state: Arc::new(state.clone()),
            registry_origins: HashMap::new(),
            loaded_diagnostics: state.diagnostics.clone(),
        }
    }
}

/// Build the state for `scan`. `previous` is the state being served, for
/// the last-good rule and for when the directory cannot be read.
pub(crate) fn build(scan: &Scan, options: &FileOptions, previous: Option<&Loaded>) -> Loaded {
    if let Some(error) = &scan.dir_error {
        return unreadable_dir(&scan.dir.display().to_string(), error, previous);
    }
    let mut b = Builder {
        options,
        diagnostics: scan.walk_errors.clone(),
        broken: BTreeSet::new(),
        present: BTreeMap::new(),
        services: Vec::new(),
        workloads: Vec::new(),
        origins: HashMap::new(),
        first_at: HashMap::new(),
    };
    let mut sources = Vec::with_capacity(scan.files.len());
    for file in &scan.files {
        match &file.content {
            Ok(text) => sources.push((file.label.as_str(), &**text)),
            Err(message) => {
                b.broken.insert(file.label.clone());
                b.diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    code: istio_codes::IO,
                    file: file.label.clone(),
                    resource: None,
                    field: None,
                    line: None,
                    column: None,
                    message: message.clone(),
                });
            }
        }
    }

    let istio = Loader::new()
        .default_namespace(options.default_namespace.clone())
        .domain_suffix(options.domain_suffix.clone())
        .load_sources(sources.iter().copied());
    // The loader notes every object that is not Istio's; ours are not
    // noise. (Its message is `"<apiVersion> <kind> is not an Istio
    // resource; skipped"`; a test holds it to that.)
    let ours = format!("{GROUP}/");
    b.diagnostics.extend(
        istio
            .diagnostics
            .into_iter()
            .filter(|d| !(d.code == istio_codes::SKIPPED_KIND && d.message.starts_with(&ours))),
    );
    let mut model = istio.model;

    for (label, text) in sources {
        b.add_file(label, text);
    }

    let mut services = std::mem::take(&mut b.services);
    let mut workloads = std::mem::take(&mut b.workloads);
    if let Some(previous) = previous {
        b.keep_last_good(previous, &mut model, &mut services, &mut workloads);
    }

    services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    workloads.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    sort_model(&mut model);
    let mut diagnostics = b.diagnostics;
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));

    let mut state = MeshState {
        services,
        workloads,
        istio: model,
        diagnostics,
        version: String::new(),
    };
    state.version = version_of(&state);
    Loaded {
        loaded_diagnostics: state.diagnostics.clone(),
        state: Arc::new(state),
        registry_origins: b.origins,
    }
}

const DIR_UNREADABLE: &str = "the registry directory cannot be read";

/// The directory is gone or unreadable: keep serving what was loaded, and
/// say so.
fn unreadable_dir(dir: &str, error: &str, previous: Option<&Loaded>) -> Loaded {
    let mut loaded = previous.cloned().unwrap_or_default();
    let mut state = (*loaded.state).clone();
    let what = if previous.is_some() {
        "keeping the last loaded state"
    } else {
        "nothing is loaded"
    };
    state.diagnostics = loaded.loaded_diagnostics.clone();
    // A state handed in by `load_state`'s caller may carry an earlier
    // report of this kind.
    state
        .diagnostics
        .retain(|d| !(d.code == istio_codes::IO && d.message.starts_with(DIR_UNREADABLE)));
    state.diagnostics.insert(
        0,
        Diagnostic {
            severity: Severity::Error,
            code: istio_codes::IO,
            file: dir.to_owned(),
            resource: None,
            field: None,
            line: None,
            column: None,
            message: format!("{DIR_UNREADABLE} ({error}); {what}"),
        },
    );
    state.version = version_of(&state);
    loaded.state = Arc::new(state);
    loaded
}

/// `'s`: the scan's texts, which outlive the build.
struct Builder<'s> {
    options: &'s FileOptions,
    diagnostics: Vec<Diagnostic>,
    /// Files that could not be read, or hold a document that cannot be
    /// parsed or attributed to a resource.
    broken: BTreeSet<String>,
    /// Every resource some document names, valid or not, with where the
    /// first such document is. Positions are found only when a message
    /// needs one: locating an item re-parses its document, and a `List`
    /// may hold thousands.
    present: BTreeMap<Key, Place<'s>>,
    services: Vec<Service>,
    workloads: Vec<Workload>,
    origins: HashMap<Key, String>,
    /// Where each accepted registry object is, for duplicate reports.
    first_at: HashMap<Key, Place<'s>>,
}

impl<'s> Builder<'s> {
    fn add_file(&mut self, label: &'s str, text: &'s str) {
        for (line_offset, doc) in split_documents(text) {
            // Errors here are the Istio loader's to report (RM0001).
            let value: Value = match serde_yaml_ng::from_str(doc) {
                Ok(v) => v,
                Err(_) => {
                    self.broken.insert(label.to_owned());
                    continue;
                }
            };
            if value.is_null() {
                continue;
            }
            let root = Place {
                file: label,
                text: doc,
                line_offset,
                at: FieldPath::root(),
            };
            let list_items = value
                .get("kind")
                .and_then(Value::as_str)
                .filter(|k| k.ends_with("List"))
                .and(value.get("items"))
                .and_then(Value::as_sequence);
            match list_items {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let place = Place {
                            at: FieldPath::root().key("items").index(i),
                            ..root
                        };
                        self.add_object(&place, item);
                    }
                }
                None => self.add_object(&root, &value),
            }
        }
    }

    /// Note which resource a document is, and load it when it is ours.
    fn add_object(&mut self, place: &Place<'s>, value: &Value) {
        fn str_at<'v>(v: Option<&'v Value>, key: &str) -> Option<&'v str> {
            v.and_then(|v| v.get(key)).and_then(Value::as_str)
        }
        let (Some(kind), Some(api_version)) = (
            str_at(Some(value), "kind"),
            str_at(Some(value), "apiVersion"),
        ) else {
            // Not an object (the Istio loader reports RM0002): it could
            // be any resource.
            self.broken.insert(place.file.to_owned());
            return;
        };
        let metadata = value.get("metadata");
        let name = str_at(metadata, "name");
        let namespace = str_at(metadata, "namespace").unwrap_or(&self.options.default_namespace);
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let is_istio = group == "istio.io" || group.ends_with(".istio.io");
        if group != GROUP && !is_istio {
            return; // Somebody else's object (a Deployment).
        }
        let key = |name: &str| {
            let (ns, name) = (namespace.to_owned(), name.to_owned());
            if group == GROUP {
                RegistryKind::find(kind).map(|k| Key::Registry(k, ns, name))
            } else {
                let kind = Kind::ALL.into_iter().find(|k| k.as_str() == kind);
                kind.map(|k| Key::Istio(k, ns, name))
            }
        };
        match name.map(key) {
            Some(Some(key)) => {
                self.present.entry(key).or_insert_with(|| place.clone());
            }
            // An Istio kind not supported yet (the loader warns): skipped.
            Some(None) if is_istio => {}
            // No name, or a kind we do not know in our own group: which
            // resource this was cannot be told.
            _ => {
                self.broken.insert(place.file.to_owned());
            }
        }
        if group != GROUP {
            return;
        }
        let resource = ResourceRef {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.unwrap_or("<unnamed>").to_owned(),
        };
        let defaults = Defaults {
            namespace: &self.options.default_namespace,
            domain_suffix: &self.options.domain_suffix,
        };
        let Some(parsed) = format::parse_object(
            place,
            value,
            api_version,
            kind,
            resource,
            &defaults,
            &mut self.diagnostics,
        ) else {
            return;
        };
        let (key, reference) = match &parsed {
            Parsed::Service(s) => (
                Key::Registry(RegistryKind::Service, s.namespace.clone(), s.name.clone()),
                format::reference(RegistryKind::Service, &s.namespace, &s.name),
            ),
            Parsed::Workload(w) => (
                Key::Registry(RegistryKind::Workload, w.namespace.clone(), w.name.clone()),
                format::reference(RegistryKind::Workload, &w.namespace, &w.name),
            ),
        };
        if let Some(first) = self.first_at.get(&key) {
            let message = format!(
                "already defined at {}:{}; this definition is ignored",
                first.file,
                first.line()
            );
            self.diagnostics.push(place.diagnostic(
                Severity::Error,
                codes::DUPLICATE,
                Some(reference),
                &FieldPath::root().key("metadata").key("name"),
                message,
            ));
            return;
        }
        self.first_at.insert(key.clone(), place.clone());
        self.origins.insert(key, place.file.to_owned());
        match parsed {
            Parsed::Service(s) => self.services.push(s),
            Parsed::Workload(w) => self.workloads.push(w),
        }
    }

    /// The last-good rule: a resource the previous state served that this
    /// load does not have is kept when it is still in the files but was
    /// rejected, or when the file it came from cannot be read or parsed
    /// (it may still be in there). Deleting it from the files removes it.
    fn keep_last_good(
        &mut self,
        previous: &Loaded,
        model: &mut Model,
        services: &mut Vec<Service>,
        workloads: &mut Vec<Workload>,
    ) {
        let prev = &previous.state;
        let mut kept: Vec<(Key, Option<String>)> = Vec::new();
        let mut decide = |key: Key, origin: Option<&str>| -> bool {
            let keep = self.present.contains_key(&key)
                || match origin {
                    Some(file) => self.broken.contains(file),
                    // Unknown file: any unreadable file may hold it.
                    None => !self.broken.is_empty(),
                };
            if keep {
                kept.push((key, origin.map(str::to_owned)));
            }
            keep
        };
        keep_resources(
            &mut model.virtual_services,
            &prev.istio.virtual_services,
            &mut decide,
        );
        keep_resources(
            &mut model.destination_rules,
            &prev.istio.destination_rules,
            &mut decide,
        );
        keep_resources(
            &mut model.service_entries,
            &prev.istio.service_entries,
            &mut decide,
        );
        keep_resources(&mut model.sidecars, &prev.istio.sidecars, &mut decide);
        keep_resources(
            &mut model.peer_authentications,
            &prev.istio.peer_authentications,
            &mut decide,
        );
        keep_resources(
            &mut model.authorization_policies,
            &prev.istio.authorization_policies,
            &mut decide,
        );
        let now: BTreeSet<(String, String)> = services
            .iter()
            .map(|s| (s.namespace.clone(), s.name.clone()))
            .collect();
        for s in &prev.services {
            let key = Key::Registry(RegistryKind::Service, s.namespace.clone(), s.name.clone());
            if !now.contains(&(s.namespace.clone(), s.name.clone()))
                && decide(
                    key.clone(),
                    previous.registry_origins.get(&key).map(String::as_str),
                )
            {
                services.push(s.clone());
            }
        }
        let now: BTreeSet<(String, String)> = workloads
            .iter()
            .map(|w| (w.namespace.clone(), w.name.clone()))
            .collect();
        for w in &prev.workloads {
            let key = Key::Registry(RegistryKind::Workload, w.namespace.clone(), w.name.clone());
            if !now.contains(&(w.namespace.clone(), w.name.clone()))
                && decide(
                    key.clone(),
                    previous.registry_origins.get(&key).map(String::as_str),
                )
            {
                workloads.push(w.clone());
            }
        }

        for (key, origin) in kept {
            if let (Key::Registry(..), Some(file)) = (&key, &origin) {
                self.origins.insert(key.clone(), file.clone());
            }
            self.explain_kept(&key, origin);
        }
    }

    /// Tell the user a last good version is being served: on the errors that
    /// rejected the new one, or in a warning of its own.
    fn explain_kept(&mut self, key: &Key, origin: Option<String>) {
        const KEPT: &str = "; keeping the last good version";
        let reference = key.reference();
        let mut told = false;
        for d in &mut self.diagnostics {
            if d.is_error() && d.resource.as_ref() == Some(&reference) {
                d.message.push_str(KEPT);
                told = true;
            }
        }
        if told {
            return;
        }
        let (file, line, message) = match self.present.get(key) {
            Some(place) => (
                place.file.to_owned(),
                Some(place.line()),
                "rejected; keeping the last good version".to_owned(),
            ),
            None => {
                let broken = match origin {
                    Some(f) if self.broken.contains(&f) => f,
                    _ => self.broken.iter().next().cloned().unwrap_or_default(),
                };
                (
                    broken.clone(),
                    None,
                    format!(
                        "no longer found, but {broken} cannot be read or parsed and may define \
                         it; keeping the last good version until it is fixed"
                    ),
                )
            }
        };
        self.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            code: codes::LAST_GOOD,
            file,
            resource: Some(reference),
            field: None,
            line,
            column: None,
            message,
        });
    }
}

/// Add to `now` each resource of `previous` it lacks that `decide` keeps.
fn keep_resources<T: Spec + Clone>(
    now: &mut Vec<Resource<T>>,
    previous: &[Resource<T>],
    decide: &mut impl FnMut(Key, Option<&str>) -> bool,
) {
    let have: BTreeSet<Key> = now.iter().map(Key::of).collect();
    for r in previous {
        let key = Key::of(r);
        if !have.contains(&key) && decide(key, Some(&r.origin.file)) {
            now.push(r.clone());
        }
    }
}

fn sort_model(model: &mut Model) {
    fn by_name<T>(v: &mut [Resource<T>]) {
        v.sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    }
    by_name(&mut model.virtual_services);
    by_name(&mut model.destination_rules);
    by_name(&mut model.service_entries);
    by_name(&mut model.sidecars);
    by_name(&mut model.peer_authentications);
    by_name(&mut model.authorization_policies);
}

/// Hex of the FNV-1a hash of a canonical rendering of the state: the
/// `Debug` output of its sorted lists (no map in them iterates in a random
/// order) and of its diagnostics, so a fix that only changes a finding is
/// published too. Never file timestamps.
pub(crate) fn version_of(state: &MeshState) -> String {
    let mut h = Fnv::new();
    // Writing into the hasher cannot fail.
    let _ = write!(
        h,
        "ringmesh-registry/1\n{:?}\n{:?}\n{:?}\n{:?}",
        state.services, state.workloads, state.istio, state.diagnostics
    );
    format!("{:016x}", h.finish())
}
