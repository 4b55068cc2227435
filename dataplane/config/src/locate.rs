//! Find the line and column of a field path (`clusters[1].endpoints[0].address`)
//! in YAML text, so that errors found while compiling — after parsing, when
//! the model no longer knows where anything came from — still point at a
//! line.
//!
//! serde_yaml_ng does not expose spans, but it stamps every error raised by a
//! visitor with the position of the YAML node being visited. So we walk the
//! document with a `DeserializeSeed` that follows the path and raises a
//! marker error on the node at its end: the error's location is the node's.
//! When the path leads somewhere absent (a required field that is missing),
//! the marker is raised on the deepest mapping or sequence that exists.
//! This re-parses the text once per error; errors are few and files small.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

const MARKER: &str = "\u{1}ringmesh-locate\u{1}";

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2][0].c` → `Key(a) Key(b) Index(2) Index(0) Key(c)`; `None` if the
/// path is not of that shape.
fn parse_path(path: &str) -> Option<Vec<Seg<'_>>> {
    let mut segs = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if key.is_empty() {
            return None;
        }
        segs.push(Seg::Key(key));
        while !rest.is_empty() {
            let close = rest.find(']')?;
            segs.push(Seg::Index(rest.get(1..close)?.parse().ok()?));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return None;
            }
        }
    }
    Some(segs)
}

/// 1-based line and column of `path` in `text`, or of its deepest existing
/// ancestor.
pub(crate) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let segs = parse_path(path)?;
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Walker { segs: &segs }).deserialize(de) {
        Ok(()) => None,
        Err(e) if e.to_string().contains(MARKER) => e.location().map(|l| (l.line(), l.column())),
        Err(_) => None,
    }
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

/// Where the second YAML document of `text` starts (its first node, or
/// the end of the text), for the error "more than one document", which the
/// parser does not locate.
pub(crate) fn second_document(text: &str) -> Option<(usize, usize)> {
    let second = serde_yaml_ng::Deserializer::from_str(text).nth(1)?;
    // The marker at its first node, or the syntax error that ends the
    // first document early (`!x ,y` is a tagged node, then junk).
    match (Walker { segs: &[] }).deserialize(second) {
        Err(e) => e
            .location()
            .map(|l| within_text(text, (l.line(), l.column()))),
        Ok(()) => None,
    }
}

struct Walker<'s, 'p> {
    segs: &'s [Seg<'p>],
}

impl<'de> DeserializeSeed<'de> for Walker<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_, '_> {
    type Value = ();

    /// Every visit this walker does not override (scalars, and the end of
    /// the path) fails with an "invalid type" error whose text includes
    /// this, positioned at the node.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MARKER)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(want), rest)) = self.segs.split_first() else {
            return Err(de::Error::custom(MARKER));
        };
        while let Some(key) = map.next_key::<serde_yaml_ng::Value>()? {
            if key.as_str() == Some(*want) {
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

    /// Found by the `proxy_config_yaml` fuzz target
    /// (`fuzz/regressions/proxy_config_yaml/eof-without-newline`): a syntax
    /// error at the end of a text without a final newline was reported on
    /// line 5 of a 4-line file.
    #[test]
    fn regression_syntax_error_at_the_end_is_inside_the_text() {
        let text = include_str!("../../../fuzz/regressions/proxy_config_yaml/eof-without-newline");
        assert!(text.ends_with("prototc"));
        let errors = crate::parse_yaml(text, None).unwrap_err();
        assert_eq!(errors.0[0].line, Some((4, 12)), "{errors}");
        // With the final newline, the end of the text is line 5.
        let errors = crate::parse_yaml(&format!("{text}\n"), None).unwrap_err();
        assert_eq!(errors.0[0].line, Some((5, 1)), "{errors}");
        assert_eq!(within_text("a\rb", (3, 1)), (2, 2));
        assert_eq!(within_text("a\r\nb\u{2028}c", (3, 2)), (3, 2));
        assert_eq!(within_text("", (2, 1)), (1, 1));
    }

    /// Found by the `proxy_config_yaml` fuzz target
    /// (`fuzz/regressions/proxy_config_yaml/two-documents` and
    /// `tagged-then-junk`): "more than one document" came with neither a
    /// line nor a field.
    #[test]
    fn regression_a_second_document_is_located() {
        let text = "admin: { address: 127.0.0.1:15000 }\n---\nlisteners: []\n";
        let errors = crate::parse_yaml(text, None).unwrap_err();
        assert!(
            errors.0[0].reason.contains("more than one document"),
            "{errors}"
        );
        assert_eq!(errors.0[0].line, Some((3, 1)), "{errors}");
        let errors = crate::parse_yaml("limits: {}\n...\n--- x", None).unwrap_err();
        assert_eq!(errors.0[0].line, Some((3, 5)), "{errors}");
        assert_eq!(second_document("a: 1\n"), None);
        // A second "document" that is junk after a tagged node.
        let text = include_str!("../../../fuzz/regressions/proxy_config_yaml/tagged-then-junk");
        assert_eq!(text, "!y ,ax: nt\n");
        let errors = crate::parse_yaml(text, None).unwrap_err();
        assert_eq!(errors.0[0].line, Some((1, 4)), "{errors}");
        let text = include_str!("../../../fuzz/regressions/proxy_config_yaml/two-documents");
        let errors = crate::parse_yaml(text, None).unwrap_err();
        assert!(errors.0[0].line.is_some(), "{errors}");
    }

    const DOC: &str = "\
admin: { address: 127.0.0.1:15000 }
listeners:
  - name: a
    address: 1.2.3.4:80
  - name: b
    protocol: tcp
clusters:
  - name: c
    endpoints:
      - address: x
        weight: 0
";

    #[test]
    fn finds_nodes_and_nearest_ancestors() {
        assert_eq!(locate(DOC, "admin.address"), Some((1, 19)));
        assert_eq!(locate(DOC, "listeners[0].address"), Some((4, 14)));
        assert_eq!(locate(DOC, "listeners[1]"), Some((5, 5)));
        assert_eq!(locate(DOC, "listeners[1].protocol"), Some((6, 15)));
        // Missing field: the mapping that should hold it.
        assert_eq!(locate(DOC, "listeners[1].route_config"), Some((5, 5)));
        // Missing element: the sequence.
        assert_eq!(locate(DOC, "listeners[7].name"), Some((3, 3)));
        assert_eq!(
            locate(DOC, "clusters[0].endpoints[0].weight"),
            Some((11, 17))
        );
        assert_eq!(locate(DOC, "clusters[0].endpoints"), Some((10, 7)));
        // A scalar where the path goes deeper: the scalar.
        assert_eq!(locate(DOC, "listeners[0].name.x"), Some((3, 11)));
        // Missing top-level key: the root mapping.
        assert_eq!(locate(DOC, "limits.idle_timeout"), Some((1, 1)));
    }

    #[test]
    fn bad_paths_and_text() {
        assert_eq!(locate(DOC, ""), None);
        assert_eq!(locate(DOC, "a[x]"), None);
        assert_eq!(locate(DOC, "a[1"), None);
        assert_eq!(locate(DOC, "a[1]b"), None);
        // A syntax error before the node: no location to give.
        assert_eq!(locate("a: 1\nb: [", "c"), None);
    }
}
