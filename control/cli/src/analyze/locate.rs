//! Field paths of mesh-level findings (`spec.http[1]`) and their line and
//! column in the text the resource came from.
//!
//! The model knows where each resource starts ([`ringmesh_istio::Origin`]);
//! this finds the resource's document (and its item of a `kind: List`) and
//! lets the model's [`ringmesh_istio::locate_in_document`] walk the path.

use std::fmt;

use ringmesh_istio::{locate_in_document, PathStep};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A path from the root of a resource, built by the analyzers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Field(Vec<Seg>);

impl Field {
    pub fn root() -> Self {
        Self::default()
    }

    pub fn key(mut self, key: &'static str) -> Self {
        self.0.push(Seg::Key(key));
        self
    }

    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Seg::Index(index));
        self
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column of `field` in the resource whose object starts
/// on line `origin_line` of `text` (a top-level object, or an item of a
/// `kind: List`), or of the deepest part of the path that exists. `None`
/// when the text cannot be walked.
pub fn locate(text: &str, origin_line: usize, field: &Field) -> Option<(usize, usize)> {
    let (lines_before, doc) = document_at(text, origin_line)?;
    let origin_in_doc = origin_line.checked_sub(lines_before)?;
    let at = |segs: &[Seg]| walk(doc, segs).map(|(l, c)| (l + lines_before, c));
    // A plain object starts where the model says it does; otherwise the
    // resource is an item of a List, found by where it starts.
    if walk(doc, &[]).is_some_and(|(l, _)| l == origin_in_doc) {
        return at(&field.0);
    }
    let items = Seg::Key("items");
    for i in 0..MAX_LIST_ITEMS {
        let item = [items.clone(), Seg::Index(i)];
        match walk(doc, &item) {
            Some((l, _)) if l == origin_in_doc => {
                let mut segs = item.to_vec();
                segs.extend(field.0.iter().cloned());
                return at(&segs);
            }
            Some((l, _)) if l < origin_in_doc => continue,
            _ => break,
        }
    }
    None
}

/// Lists longer than this are not searched item by item (each probe
/// re-parses the list); their findings point at the resource's start.
const MAX_LIST_ITEMS: usize = 1024;

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// The YAML document of `text` holding 1-based line `line`, with the number
/// of lines before it. Documents are cut at `---` and `...` lines, as the
/// model's loader cuts them.
fn document_at(text: &str, line: usize) -> Option<(usize, &str)> {
    let (mut start, mut start_line) = (0, 0);
    let mut pos = 0;
    let mut lines = 0;
    for (n, l) in text.split_inclusive('\n').enumerate() {
        lines = n + 1;
        let content = l.trim_end_matches(['\n', '\r']);
        let boundary = is_marker(content, "---") || is_marker(content, "...");
        if boundary && n > start_line {
            if n >= line {
                return Some((start_line, &text[start..pos]));
            }
            (start, start_line) = (pos, n);
        }
        pos += l.len();
    }
    (line > start_line && line <= lines).then_some((start_line, &text[start..]))
}

/// Position of the node at `segs` in the single document `doc` (the
/// model's locator does the walking).
fn walk(doc: &str, segs: &[Seg]) -> Option<(usize, usize)> {
    let steps: Vec<PathStep<'_>> = segs
        .iter()
        .map(|s| match s {
            Seg::Key(k) => PathStep::Key(k),
            Seg::Index(i) => PathStep::Index(*i),
        })
        .collect();
    locate_in_document(doc, &steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
apiVersion: v1
kind: A
spec:
  hosts:
  - one
  - two
---
apiVersion: v1
kind: B
spec:
  subsets:
  - name: v1
  - name: v2
...
---
apiVersion: v1
kind: List
items:
- kind: C
  spec:
    mtls: {mode: STRICT}
- kind: D
  spec:
    mtls:
      mode: PERMISSIVE
";

    #[test]
    fn shows_paths() {
        let f = Field::root().key("spec").key("http").index(1).key("route");
        assert_eq!(f.to_string(), "spec.http[1].route");
        assert_eq!(Field::root().to_string(), "");
    }

    #[test]
    fn finds_fields_in_documents_and_list_items() {
        let spec = || Field::root().key("spec");
        assert_eq!(locate(TEXT, 2, &Field::root()), Some((2, 1)));
        assert_eq!(locate(TEXT, 2, &spec().key("hosts").index(1)), Some((7, 5)));
        assert_eq!(
            locate(TEXT, 9, &spec().key("subsets").index(1)),
            Some((14, 5))
        );
        let mode = spec().key("mtls").key("mode");
        assert_eq!(locate(TEXT, 20, &mode), Some((22, 18)));
        assert_eq!(locate(TEXT, 23, &mode), Some((26, 13)));
        // Missing parts: the deepest ancestor that exists.
        assert_eq!(locate(TEXT, 2, &spec().key("nothing")), Some((5, 3)));
        // A line that starts no object.
        assert_eq!(locate(TEXT, 21, &mode), None);
        assert_eq!(locate("", 1, &mode), None);
    }

    #[test]
    fn cuts_documents_like_the_loader() {
        assert_eq!(
            document_at(TEXT, 1),
            Some((0, &TEXT[..TEXT.find("---").unwrap()]))
        );
        assert_eq!(document_at(TEXT, 9).map(|d| d.0), Some(7));
        assert_eq!(document_at(TEXT, 17).map(|d| d.0), Some(15));
        assert_eq!(document_at("---\na: 1\n", 2), Some((0, "---\na: 1\n")));
    }
}
