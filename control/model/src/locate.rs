//! Positions in YAML text, which serde_yaml_ng does not expose as spans.
//!
//! The idea is the one `ringmesh-config` uses: serde_yaml_ng stamps every
//! error raised by a visitor with the position of the node being visited.
//! [`locate`] walks a document along a field path with a `DeserializeSeed`
//! and raises a marker error on the node at the end of it, so the error's
//! location is the node's; when the path leads somewhere absent (a required
//! field that is missing) the marker is raised on the deepest mapping or
//! sequence that exists. [`deserialize_at`] walks the same way to one item
//! of a `kind: List` and deserializes a typed resource there, so its errors
//! carry real positions and one bad item does not hide the others.

use std::{fmt, marker::PhantomData};

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use crate::path::{FieldPath, Seg};

const MARKER: &str = "\u{1}ringmesh-locate\u{1}";

/// Does a YAML mapping key name this path segment? Keys may be integers
/// (`portLevelMtls: {8080: ...}`) as well as strings.
fn key_matches(key: &serde_yaml_ng::Value, want: &str) -> bool {
    match key {
        serde_yaml_ng::Value::String(s) => s == want,
        serde_yaml_ng::Value::Number(n) => n.to_string() == want,
        serde_yaml_ng::Value::Bool(b) => b.to_string() == want,
        _ => false,
    }
}

/// One step of a path for [`locate_in_document`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStep<'a> {
    Key(&'a str),
    Index(usize),
}

/// 1-based line and column of `path` in the single YAML document `text`,
/// or of its deepest existing ancestor.
pub(crate) fn locate(text: &str, path: &FieldPath) -> Option<(usize, usize)> {
    let steps: Vec<PathStep<'_>> = path
        .0
        .iter()
        .map(|s| match s {
            Seg::Key(k) => PathStep::Key(k),
            Seg::Index(i) => PathStep::Index(*i),
        })
        .collect();
    locate_in_document(text, &steps)
}

/// 1-based line and column of the node at `path` in the single YAML
/// document `doc`, or of its deepest existing ancestor (`&[]`: the
/// document's root). For callers outside the model (the CLI's mesh-level
/// findings) that build their own paths.
pub fn locate_in_document(doc: &str, path: &[PathStep<'_>]) -> Option<(usize, usize)> {
    let de = serde_yaml_ng::Deserializer::from_str(doc);
    match (Walker { segs: path }).deserialize(de) {
        Ok(()) => None,
        Err(e) if e.to_string().contains(MARKER) => e.location().map(|l| (l.line(), l.column())),
        Err(_) => None,
    }
}

struct Walker<'s, 'p> {
    segs: &'s [PathStep<'p>],
}

impl<'de> DeserializeSeed<'de> for Walker<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_, '_> {
    type Value = ();

    /// Every visit not overridden here (scalars, and the end of the path)
    /// fails with an "invalid type" error whose text includes this,
    /// positioned at the node.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MARKER)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((PathStep::Key(want), rest)) = self.segs.split_first() else {
            return Err(de::Error::custom(MARKER));
        };
        while let Some(key) = map.next_key::<serde_yaml_ng::Value>()? {
            if key_matches(&key, want) {
                return map.next_value_seed(Walker { segs: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(de::Error::custom(MARKER))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((PathStep::Index(want), rest)) = self.segs.split_first() else {
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

/// Why a typed deserialization failed: the serde reason, the path of the
/// failing field relative to the deserialized node, and the position when
/// the parser knows it (1-based line and column in `text`).
#[derive(Debug)]
pub(crate) struct DeError {
    pub(crate) path: FieldPath,
    pub(crate) message: String,
    pub(crate) location: Option<(usize, usize)>,
}

/// Deserialize a `T` from the node at `at` in the YAML document `text`
/// (the whole document when `at` is empty), tracking the field path of any
/// error. The rest of the document is skipped, not checked.
pub(crate) fn deserialize_at<T: DeserializeOwned>(
    text: &str,
    at: &FieldPath,
) -> Result<T, DeError> {
    let mut failed_at = None;
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let result = Focus::<T> {
        segs: &at.0,
        failed_at: &mut failed_at,
        ty: PhantomData,
    }
    .deserialize(de);
    result.map_err(|e| {
        let location = e.location().map(|l| (l.line(), l.column()));
        let path = failed_at
            .as_ref()
            .map(FieldPath::from_serde)
            .unwrap_or_default();
        DeError {
            message: clean_message(&e.to_string(), location),
            path,
            location: location.map(|at| within_text(text, at)),
        }
    })
}

/// A parser position clamped to the text: libyaml reports an error at the
/// end of a text that does not end with a line break at column 1 of the
/// line after the last one (it breaks the line before ending the stream),
/// which is not in the file; such a position becomes the end of the last
/// line. Lines are counted as libyaml counts them (CRLF, CR, LF, NEL, LS
/// and PS end one); positions inside the text are returned unchanged.
pub(crate) fn within_text(text: &str, (line, column): (usize, usize)) -> (usize, usize) {
    let (mut lines, mut last_len) = (1, 0);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines += 1;
                last_len = 0;
            }
            _ => last_len += 1,
        }
    }
    if line > lines {
        (lines, last_len + 1)
    } else {
        (line, column)
    }
}

/// serde_yaml_ng's message without what diagnostics show separately: its
/// own path prefix (`spec.http[0]: `) and the ` at line L column C` suffix.
pub(crate) fn clean_message(message: &str, location: Option<(usize, usize)>) -> String {
    let mut msg = message.to_owned();
    if let Some((l, c)) = location {
        let suffix = format!(" at line {l} column {c}");
        if let Some(at) = msg.find(&suffix) {
            msg.replace_range(at..at + suffix.len(), "");
        }
    }
    // serde_yaml_ng prefixes errors below the root with the path it tracks
    // itself (`spec.hosts[0]: invalid type ...`); ours is more precise.
    if let Some((head, rest)) = msg.split_once(": ") {
        if !head.is_empty() && !head.contains(' ') && !head.contains('`') {
            return rest.to_owned();
        }
    }
    msg
}

struct Focus<'s, T> {
    segs: &'s [Seg],
    failed_at: &'s mut Option<serde_path_to_error::Path>,
    ty: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Focus<'_, T> {
    type Value = T;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        if self.segs.is_empty() {
            serde_path_to_error::deserialize(d).map_err(|e| {
                *self.failed_at = Some(e.path().clone());
                e.into_inner()
            })
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Focus<'_, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or sequence containing the resource")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let Some((Seg::Key(want), rest)) = self.segs.split_first() else {
            return Err(de::Error::custom("expected a sequence"));
        };
        let mut found = None;
        let mut next = Some(Focus {
            segs: rest,
            failed_at: self.failed_at,
            ty: PhantomData,
        });
        while let Some(key) = map.next_key::<serde_yaml_ng::Value>()? {
            match next.take() {
                Some(seed) if key_matches(&key, want) => found = Some(map.next_value_seed(seed)?),
                other => {
                    next = other;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        found.ok_or_else(|| de::Error::custom(format!("missing field `{want}`")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        let Some((Seg::Index(want), rest)) = self.segs.split_first() else {
            return Err(de::Error::custom("expected a mapping"));
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(format!("no element [{want}]")));
            }
        }
        let seed = Focus {
            segs: rest,
            failed_at: self.failed_at,
            ty: PhantomData,
        };
        let found = seq
            .next_element_seed(seed)?
            .ok_or_else(|| de::Error::custom(format!("no element [{want}]")))?;
        // serde_yaml_ng insists that a visitor consumes every element.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The defect the `proxy_config_yaml` fuzz target found in
    /// `ringmesh-config`, present here too
    /// (`fuzz/regressions/istio_yaml/eof-without-newline`): a syntax error
    /// at the end of a last document without a final newline was reported
    /// on the line after the last one of the file.
    #[test]
    fn regression_syntax_error_at_the_end_is_inside_the_file() {
        let text = include_str!("../../../fuzz/regressions/istio_yaml/eof-without-newline");
        assert!(text.ends_with("metadata: [a"));
        let result = crate::load_str(text, "f.yaml");
        let d = (result.diagnostics.iter())
            .find(|d| d.code == crate::codes::YAML_SYNTAX)
            .expect("a syntax error");
        assert_eq!((d.line, d.column), (Some(5), Some(13)), "{d}");
        assert_eq!(within_text("a\rb", (3, 1)), (2, 2));
        assert_eq!(within_text("a\r\nb\u{2028}c", (3, 2)), (3, 2));
        assert_eq!(within_text("", (2, 1)), (1, 1));
    }

    const DOC: &str = "\
kind: List
items:
  - kind: A
    spec:
      ports:
        8080: {mode: STRICT}
  - kind: B
    spec:
      hosts: [a, b]
      weight: x
";

    fn p(segs: &[&str]) -> FieldPath {
        let mut path = FieldPath::root();
        for s in segs {
            // `#8080` is a numeric map key, `8080` an index.
            path = match s.parse::<usize>() {
                Ok(i) => path.index(i),
                _ => path.key(s.trim_start_matches('#')),
            };
        }
        path
    }

    #[test]
    fn finds_nodes_and_nearest_ancestors() {
        assert_eq!(locate(DOC, &p(&["kind"])), Some((1, 7)));
        assert_eq!(
            locate(DOC, &p(&["items", "1", "spec", "hosts", "1"])),
            Some((9, 18))
        );
        assert_eq!(
            locate(DOC, &p(&["items", "0", "spec", "ports", "#8080", "mode"])),
            Some((6, 22))
        );
        // Missing field: the mapping that should hold it.
        assert_eq!(
            locate(DOC, &p(&["items", "1", "spec", "nope"])),
            Some((9, 7))
        );
        // Missing element: the sequence.
        assert_eq!(locate(DOC, &p(&["items", "5"])), Some((3, 3)));
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        #[allow(dead_code)]
        kind: String,
        spec: Spec,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Spec {
        #[serde(default)]
        ports: BTreeMap<u32, BTreeMap<String, String>>,
        #[serde(default)]
        hosts: Vec<String>,
        #[serde(default)]
        weight: u32,
    }

    #[test]
    fn deserializes_one_item_of_a_list() {
        let item: Item = deserialize_at(DOC, &p(&["items", "0"])).unwrap();
        assert_eq!(item.spec.ports[&8080]["mode"], "STRICT");
        let err = deserialize_at::<Item>(DOC, &p(&["items", "1"])).unwrap_err();
        assert_eq!(err.path.to_string(), "spec.weight");
        assert_eq!(err.location, Some((10, 15)));
        assert_eq!(err.message, "invalid type: string \"x\", expected u32");
        // The whole document.
        let err = deserialize_at::<Item>(DOC, &FieldPath::root()).unwrap_err();
        assert_eq!(
            err.message,
            "unknown field `items`, expected `kind` or `spec`"
        );
    }
}
