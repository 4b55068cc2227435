//! Tests over a Bookinfo-like corpus written to temporary directories: the
//! format and its validation, the last-good rule, versions, and the
//! watcher.

mod corpus;
mod last_good;
mod rules;
mod watch;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use super::*;

/// A directory under the system's temporary directory, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "ringmesh-registry-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    pub(crate) fn remove(&self, rel: &str) {
        std::fs::remove_file(self.0.join(rel)).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Diagnostics as an operator reads them, with the directory left out of
/// file names.
pub(crate) fn shown(state: &MeshState, dir: &Path) -> Vec<String> {
    let root = format!("{}/", dir.display());
    state
        .diagnostics
        .iter()
        .map(|d| d.to_string().replace(&root, ""))
        .collect()
}

pub(crate) fn load(dir: &TempDir) -> MeshState {
    load_state(dir.path(), &FileOptions::default(), None)
}

/// Load one file's text alone.
pub(crate) fn load_one(text: &str) -> (MeshState, Vec<String>) {
    let dir = TempDir::new("one");
    dir.write("mesh.yaml", text);
    let state = load(&dir);
    let shown = shown(&state, dir.path());
    (state, shown)
}

pub(crate) fn service_names(state: &MeshState) -> Vec<String> {
    state
        .services
        .iter()
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect()
}

pub(crate) fn workload_names(state: &MeshState) -> Vec<String> {
    state
        .workloads
        .iter()
        .map(|w| format!("{}/{}", w.namespace, w.name))
        .collect()
}

#[test]
fn the_crate_docs_list_every_code() {
    let docs = include_str!("lib.rs");
    for (code, severity, _) in codes::ALL {
        let row = format!("//! | {code} | {severity} |");
        assert!(docs.contains(&row), "lib.rs docs lack {row}");
    }
    for (i, (code, _, _)) in codes::ALL.iter().enumerate() {
        assert_eq!(*code, format!("RM{:04}", 201 + i));
    }
}
