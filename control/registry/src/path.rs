//! Field paths inside a registry object (`spec.ports[1].port`): built by the
//! validators and from `serde_path_to_error` paths, shown in diagnostics,
//! and walked by [`ringmesh_istio::locate_in_document`] to find a line.

use std::fmt;

use ringmesh_istio::PathStep;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the root of an object (the mapping holding `apiVersion`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<Seg>);

impl FieldPath {
    pub(crate) fn root() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn key(&self, key: impl Into<String>) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.into()));
        Self(segs)
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        Self(segs)
    }

    /// `self` followed by `rest`.
    pub(crate) fn join(&self, rest: &FieldPath) -> Self {
        let mut segs = self.0.clone();
        segs.extend(rest.0.iter().cloned());
        Self(segs)
    }

    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        Self(
            path.iter()
                .filter_map(|s| match s {
                    Segment::Seq { index } => Some(Seg::Index(*index)),
                    Segment::Map { key } | Segment::Enum { variant: key } => {
                        Some(Seg::Key(key.clone()))
                    }
                    Segment::Unknown => None,
                })
                .collect(),
        )
    }

    /// The same path in the form the model's locator walks.
    pub(crate) fn steps(&self) -> Vec<PathStep<'_>> {
        self.0
            .iter()
            .map(|s| match s {
                Seg::Key(k) => PathStep::Key(k),
                Seg::Index(i) => PathStep::Index(*i),
            })
            .collect()
    }
}

/// Keys shown bare after a dot; others (label names such as
/// `app.kubernetes.io/name`) are quoted in brackets, as the Istio loader
/// shows them, so the path stays unambiguous.
fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'@')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) if is_plain(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(k) => write!(f, "[{k:?}]")?,
            }
        }
        Ok(())
    }
}
