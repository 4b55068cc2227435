//! Field paths inside a resource (`spec.http[0].route[1].weight`): built by
//! the validators, converted from `serde_path_to_error` paths, followed by
//! [`crate::locate`] to find a line, and shown in diagnostics.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the root of a resource (the object holding `apiVersion`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct FieldPath(pub(crate) Vec<Seg>);

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
                    Segment::Map { key } => Some(Seg::Key(key.clone())),
                    Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                    Segment::Unknown => None,
                })
                .collect(),
        )
    }
}

/// Is `key` shown bare after a dot? Map keys such as label names
/// (`app.kubernetes.io/name`) are quoted in brackets so the path stays
/// unambiguous: `matchLabels["app.kubernetes.io/name"]`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let p = FieldPath::root()
            .key("spec")
            .key("http")
            .index(0)
            .key("route")
            .index(1)
            .key("weight");
        assert_eq!(p.to_string(), "spec.http[0].route[1].weight");
        let p = FieldPath::root()
            .key("spec")
            .key("selector")
            .key("matchLabels")
            .key("app.kubernetes.io/name");
        assert_eq!(
            p.to_string(),
            r#"spec.selector.matchLabels["app.kubernetes.io/name"]"#
        );
        assert_eq!(FieldPath::root().key("a").key("8080").to_string(), "a.8080");
        assert_eq!(FieldPath::root().to_string(), "");
    }
}
