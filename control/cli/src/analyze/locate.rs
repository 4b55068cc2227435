//! Field paths of mesh-level findings (`spec.http[1]`) and their line and
//! column in the text the resource came from.
//!
//! The model knows where each resource starts ([`ringmesh_istio::Origin`])
//! but keeps its field locator private, so this is a small one of our own.
//! serde_yaml_ng has no spans, but it stamps an error raised while visiting
//! a node with that node's position: [`locate`] walks the document along
//! the path with a visitor and fails on purpose at the end of it.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

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

const MARKER: &str = "\u{1}ringmesh-cli-locate\u{1}";

/// Position of the node at `segs` in the single document `doc`.
fn walk(doc: &str, segs: &[Seg]) -> Option<(usize, usize)> {
    let de = serde_yaml_ng::Deserializer::from_str(doc);
    match (Walker { segs }).deserialize(de) {
        Ok(()) => None,
        Err(e) if e.to_string().contains(MARKER) => e.location().map(|l| (l.line(), l.column())),
        Err(_) => None,
    }
}

struct Walker<'s> {
    segs: &'s [Seg],
}

impl<'de> DeserializeSeed<'de> for Walker<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_> {
    type Value = ();

    /// Scalars (and the end of the path) fail through "invalid type",
    /// whose message includes this and whose position is the node's.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MARKER)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(want), rest)) = self.segs.split_first() else {
            return Err(de::Error::custom(MARKER));
        };
        while let Some(key) = map.next_key::<serde_yaml_ng::Value>()? {
            if key.as_str() == Some(want) {
                return map.next_value_seed(Walker { segs: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(de::Error::custom(MARKER))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(want), rest)) = self.segs.split_first() else {
            return Err(de::Error::custom(MARKER));
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(MARKER));
            }
        }
        match seq.next_element_seed(Walker { segs: rest })? {
            Some(()) => Ok(()),
            None => Err(de::Error::custom(MARKER)),
        }
    }
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
