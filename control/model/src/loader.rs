//! Files → documents → objects → validated resources.
//!
//! A file is split into YAML documents by their `---` lines *before*
//! parsing, so that a syntax error loses one document, not the rest of the
//! file. Each document is parsed once untyped (to learn its kind, and the
//! items of a `kind: List`), then each supported object is deserialized
//! typed from the text, so that schema errors carry a line and a field
//! path. Validation findings are located afterwards by walking the text
//! along their field path ([`crate::locate`]).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde_yaml_ng::Value;

use crate::{
    diagnostic::{codes, Diagnostic, ResourceRef, Severity},
    locate::{clean_message, deserialize_at, locate, within_text},
    meta::{Kind, Meta, Object, Origin, Resource},
    model::{Model, DEFAULT_DOMAIN_SUFFIX},
    path::FieldPath,
    validate::{is_dns_label, is_dns_subdomain, Ctx, Issue},
    AuthorizationPolicy, DestinationRule, Load, PeerAuthentication, ServiceEntry, Sidecar,
    VirtualService,
};

/// The model and everything found while building it.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub model: Model,
    /// Sorted by file, then line.
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadResult {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }
}

/// Load every `*.yaml`, `*.yml` and `*.json` file under `path` (recursively,
/// in path order; names starting with `.` are skipped, which also skips the
/// `..data` links of a mounted ConfigMap).
pub fn load_dir(path: impl AsRef<Path>) -> LoadResult {
    Loader::new().load_dir(path)
}

pub fn load_file(path: impl AsRef<Path>) -> LoadResult {
    Loader::new().load_file(path)
}

/// Load YAML (or JSON) text; `file_label` names it in diagnostics.
pub fn load_str(text: &str, file_label: &str) -> LoadResult {
    Loader::new().load_str(text, file_label)
}

/// Loading options. The free functions use the defaults: namespace
/// `default`, cluster domain `cluster.local`.
#[derive(Debug, Clone)]
pub struct Loader {
    default_namespace: String,
    domain_suffix: String,
}

impl Default for Loader {
    fn default() -> Self {
        Self {
            default_namespace: "default".into(),
            domain_suffix: DEFAULT_DOMAIN_SUFFIX.into(),
        }
    }
}

impl Loader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The namespace of objects whose metadata names none (as `kubectl
    /// apply -n NS` would put them).
    pub fn default_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.default_namespace = namespace.into();
        self
    }

    /// The cluster domain used to expand short host names
    /// (`reviews` → `reviews.NS.svc.cluster.local`).
    pub fn domain_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.domain_suffix = suffix.into();
        self
    }

    /// Load a directory tree (see [`load_dir`]); a path to a single file
    /// loads that file.
    pub fn load_dir(&self, path: impl AsRef<Path>) -> LoadResult {
        let path = path.as_ref();
        if path.is_file() {
            return self.load_file(path);
        }
        let mut session = Session::new(self);
        let mut files = Vec::new();
        collect_files(path, 0, &mut files, &mut session.diagnostics);
        for file in files {
            session.add_file(&file);
        }
        session.finish()
    }

    pub fn load_file(&self, path: impl AsRef<Path>) -> LoadResult {
        let mut session = Session::new(self);
        session.add_file(path.as_ref());
        session.finish()
    }

    pub fn load_str(&self, text: &str, file_label: &str) -> LoadResult {
        self.load_sources([(file_label, text)])
    }

    /// Load several texts as one model (duplicates and references are
    /// checked across all of them): `(label, text)` pairs.
    pub fn load_sources<'a>(
        &self,
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> LoadResult {
        let mut session = Session::new(self);
        for (label, text) in sources {
            session.add_text(label, text);
        }
        session.finish()
    }
}

/// Directory walking stops this deep, in case of symlink loops.
const MAX_DEPTH: usize = 16;

fn collect_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>) {
    let io_error = |path: &Path, message: String| Diagnostic {
        severity: Severity::Error,
        code: codes::IO,
        file: path.display().to_string(),
        resource: None,
        field: None,
        line: None,
        column: None,
        message,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diags.push(io_error(dir, format!("cannot read the directory: {e}")));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    paths.sort();
    for path in paths {
        // `metadata` follows symlinks, as a mounted ConfigMap needs.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                if depth < MAX_DEPTH {
                    collect_files(&path, depth + 1, out, diags);
                } else {
                    diags.push(io_error(
                        &path,
                        format!("directory nested deeper than {MAX_DEPTH} levels; skipped"),
                    ));
                }
            }
            Ok(_) => {
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if ["yaml", "yml", "json"].contains(&ext) {
                    out.push(path);
                }
            }
            Err(e) => diags.push(io_error(&path, format!("cannot read: {e}"))),
        }
    }
}

/// One YAML document (or one item of a `kind: List`) as text: where it is,
/// and how to find the object in it.
#[derive(Debug, Clone)]
struct Doc {
    file: Arc<str>,
    text: Arc<str>,
    /// Lines before `text` in the file.
    line_offset: usize,
    /// The object inside `text`: root, or `items[i]` of a list.
    at: FieldPath,
    /// False when `text` was re-serialized from a parsed value and its
    /// positions are not the file's; diagnostics then point at `fallback`.
    exact: bool,
    fallback: Option<(usize, usize)>,
}

impl Doc {
    /// File line and column of a field of the object.
    fn position(&self, field: &FieldPath) -> Option<(usize, usize)> {
        if !self.exact {
            return self.fallback;
        }
        locate(&self.text, &self.at.join(field)).map(|(l, c)| (l + self.line_offset, c))
    }

    fn diagnostic(
        &self,
        severity: Severity,
        code: &'static str,
        resource: Option<ResourceRef>,
        field: &FieldPath,
        message: impl Into<String>,
    ) -> Diagnostic {
        let pos = self.position(field);
        Diagnostic {
            severity,
            code,
            file: self.file.to_string(),
            resource,
            field: (!field.is_root()).then(|| field.to_string()),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            message: message.into(),
        }
    }
}

struct Session<'l> {
    loader: &'l Loader,
    model: Model,
    diagnostics: Vec<Diagnostic>,
    /// Where each loaded resource came from, to locate later findings
    /// (references) and report duplicates.
    docs: HashMap<(Kind, String, String), Doc>,
}

impl<'l> Session<'l> {
    fn new(loader: &'l Loader) -> Self {
        Self {
            loader,
            model: Model::default(),
            diagnostics: Vec::new(),
            docs: HashMap::new(),
        }
    }

    fn add_file(&mut self, path: &Path) {
        let label = path.display().to_string();
        let fail = |message: String| Diagnostic {
            severity: Severity::Error,
            code: codes::IO,
            file: label.clone(),
            resource: None,
            field: None,
            line: None,
            column: None,
            message,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                self.diagnostics
                    .push(fail(format!("cannot read the file: {e}")));
                return;
            }
        };
        match std::str::from_utf8(&bytes) {
            Ok(text) => self.add_text(&label, text),
            Err(e) => self.diagnostics.push(fail(format!(
                "not valid UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            ))),
        }
    }

    fn add_text(&mut self, label: &str, text: &str) {
        let file: Arc<str> = Arc::from(label);
        for (line_offset, chunk) in split_documents(text) {
            self.add_document(&file, chunk, line_offset);
        }
    }

    fn add_document(&mut self, file: &Arc<str>, text: &str, line_offset: usize) {
        let doc = Doc {
            file: file.clone(),
            text: Arc::from(text),
            line_offset,
            at: FieldPath::root(),
            exact: true,
            fallback: None,
        };
        let value: Value = match serde_yaml_ng::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let location = e.location().map(|l| (l.line(), l.column()));
                let at = location.map(|at| within_text(text, at));
                self.diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    code: codes::YAML_SYNTAX,
                    file: file.to_string(),
                    resource: None,
                    field: None,
                    line: at.map(|l| l.0 + line_offset),
                    column: at.map(|l| l.1),
                    message: format!(
                        "invalid YAML, document skipped: {}",
                        shift_lines(&clean_message(&e.to_string(), location), line_offset)
                    ),
                });
                return;
            }
        };
        if value.is_null() {
            return; // Empty, or only comments.
        }
        let list_items = value
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| k.ends_with("List"))
            .and(value.get("items"));
        match list_items {
            Some(Value::Sequence(items)) => {
                let texts = split_list_items(text, items.len());
                // Computed once: locating each item would re-parse the list.
                let list_position = (items.len() > MAX_ITEMS_IN_PLACE)
                    .then(|| doc.position(&FieldPath::root()))
                    .flatten();
                for (i, item) in items.iter().enumerate() {
                    let item_doc = match texts.as_ref().map(|t| &t[i]) {
                        // Checked: the item's own text parses to the same
                        // value, so it can stand in for the whole list
                        // (which would be re-parsed once per item).
                        Some((lines_before, t))
                            if serde_yaml_ng::from_str::<Value>(t).ok().as_ref() == Some(item) =>
                        {
                            Doc {
                                text: Arc::from(t.as_str()),
                                line_offset: line_offset + lines_before,
                                ..doc.clone()
                            }
                        }
                        _ if items.len() <= MAX_ITEMS_IN_PLACE => Doc {
                            at: FieldPath::root().key("items").index(i),
                            ..doc.clone()
                        },
                        _ => Doc {
                            text: Arc::from(serde_yaml_ng::to_string(item).unwrap_or_default()),
                            exact: false,
                            fallback: list_position,
                            ..doc.clone()
                        },
                    };
                    self.add_object(item_doc, item);
                }
            }
            Some(_) => self.diagnostics.push(doc.diagnostic(
                Severity::Error,
                codes::NOT_AN_OBJECT,
                None,
                &FieldPath::root().key("items"),
                "items of a List must be a sequence",
            )),
            None => self.add_object(doc, &value),
        }
    }

    fn add_object(&mut self, doc: Doc, value: &Value) {
        let Some(map) = value.as_mapping() else {
            self.diagnostics.push(doc.diagnostic(
                Severity::Error,
                codes::NOT_AN_OBJECT,
                None,
                &FieldPath::root(),
                format!(
                    "expected a Kubernetes object (a mapping with apiVersion, kind and metadata), \
                     found {}",
                    describe(value)
                ),
            ));
            return;
        };
        let str_at = |key: &str| map.get(key).and_then(Value::as_str);
        let metadata = map.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>");
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or(&self.loader.default_namespace);
        let (Some(kind), Some(api_version)) = (str_at("kind"), str_at("apiVersion")) else {
            let missing = if str_at("kind").is_none() {
                "kind"
            } else {
                "apiVersion"
            };
            self.diagnostics.push(doc.diagnostic(
                Severity::Error,
                codes::NOT_AN_OBJECT,
                None,
                &FieldPath::root().key(missing),
                format!("{missing} is required (a string), as in every Kubernetes object"),
            ));
            return;
        };
        let resource = ResourceRef {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let is_istio = group == "istio.io" || group.ends_with(".istio.io");
        let known_name = Kind::ALL.into_iter().find(|k| k.as_str() == kind);
        let found = match (Kind::find(group, kind), known_name) {
            (Some(k), _) if k.versions().contains(&version) => k,
            (Some(k), _) | (None, Some(k)) if is_istio => {
                let versions = k.versions().join(", ");
                self.diagnostics.push(doc.diagnostic(
                    Severity::Error,
                    codes::UNKNOWN_API_VERSION,
                    Some(resource),
                    &FieldPath::root().key("apiVersion"),
                    format!(
                        "unknown apiVersion {api_version:?} for {kind} (expected {}/ with one \
                         of {versions})",
                        k.group()
                    ),
                ));
                return;
            }
            _ if is_istio => {
                self.diagnostics.push(doc.diagnostic(
                    Severity::Warning,
                    codes::UNSUPPORTED_KIND,
                    Some(resource),
                    &FieldPath::root(),
                    format!("{api_version} {kind} is not supported yet; skipped"),
                ));
                return;
            }
            _ => {
                self.diagnostics.push(doc.diagnostic(
                    Severity::Info,
                    codes::SKIPPED_KIND,
                    Some(resource),
                    &FieldPath::root(),
                    format!("{api_version} {kind} is not an Istio resource; skipped"),
                ));
                return;
            }
        };
        match found {
            Kind::VirtualService => self.add_typed::<VirtualService>(doc, resource),
            Kind::DestinationRule => self.add_typed::<DestinationRule>(doc, resource),
            Kind::ServiceEntry => self.add_typed::<ServiceEntry>(doc, resource),
            Kind::Sidecar => self.add_typed::<Sidecar>(doc, resource),
            Kind::PeerAuthentication => self.add_typed::<PeerAuthentication>(doc, resource),
            Kind::AuthorizationPolicy => self.add_typed::<AuthorizationPolicy>(doc, resource),
        }
    }

    fn add_typed<T: Load>(&mut self, doc: Doc, resource: ResourceRef) {
        let obj: Object<T> = match deserialize_at(&doc.text, &doc.at) {
            Ok(obj) => obj,
            Err(e) => {
                let mut d = doc.diagnostic(
                    Severity::Error,
                    codes::SCHEMA,
                    Some(resource),
                    &e.path,
                    e.message,
                );
                // The parser's own position is the exact token (an unknown
                // key, a bad value); prefer it to the walked one.
                if let (Some((l, c)), true) = (e.location, doc.exact) {
                    d.line = Some(l + doc.line_offset);
                    d.column = Some(c);
                }
                self.diagnostics.push(d);
                return;
            }
        };
        let meta = Meta {
            api_version: obj.api_version,
            name: obj.metadata.name,
            namespace: obj
                .metadata
                .namespace
                .unwrap_or_else(|| self.loader.default_namespace.clone()),
            labels: obj.metadata.labels.unwrap_or_default(),
            annotations: obj.metadata.annotations.unwrap_or_default(),
            resource_version: obj.metadata.resource_version,
            generation: obj.metadata.generation,
            uid: obj.metadata.uid,
        };
        let resource = ResourceRef {
            kind: T::KIND.as_str().to_owned(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
        };
        let spec = obj.spec.unwrap_or_default();

        let mut cx = Ctx::default();
        let md = FieldPath::root().key("metadata");
        if !is_dns_subdomain(&meta.name) {
            cx.invalid(
                &md.key("name"),
                format!(
                    "invalid name {:?} (lower case letters, digits, - and ., at most 253)",
                    meta.name
                ),
            );
        }
        if !is_dns_label(&meta.namespace) {
            cx.invalid(
                &md.key("namespace"),
                format!(
                    "invalid namespace {:?} (lower case letters, digits and -, at most 63)",
                    meta.namespace
                ),
            );
        }
        spec.validate(&mut cx, &FieldPath::root().key("spec"));
        let rejected = cx.issues.iter().any(|i| i.severity == Severity::Error);
        for Issue {
            severity,
            code,
            path,
            message,
        } in cx.issues
        {
            self.diagnostics.push(doc.diagnostic(
                severity,
                code,
                Some(resource.clone()),
                &path,
                message,
            ));
        }
        if rejected {
            return;
        }

        let origin = Origin {
            file: doc.file.to_string(),
            line: doc
                .position(&FieldPath::root())
                .map_or(doc.line_offset + 1, |p| p.0),
        };
        let key = (T::KIND, meta.namespace.clone(), meta.name.clone());
        if let Some(first) = self.docs.get(&key) {
            let first_line = first.position(&FieldPath::root()).map_or(0, |p| p.0);
            let message = format!(
                "already defined at {}:{first_line}; this definition is ignored",
                first.file
            );
            self.diagnostics.push(doc.diagnostic(
                Severity::Error,
                codes::DUPLICATE,
                Some(resource),
                &md.key("name"),
                message,
            ));
            return;
        }
        self.docs.insert(key, doc);
        T::resources(&mut self.model).push(Resource { meta, spec, origin });
    }

    fn finish(mut self) -> LoadResult {
        // References are checked once everything is loaded; one pass is
        // enough because only VirtualServices refer to others, and nothing
        // refers to a VirtualService's subsets.
        let issues: Vec<(ResourceRef, Issue)> = self
            .model
            .reference_issues(&self.loader.domain_suffix)
            .into_iter()
            .map(|(r, _, issue)| (r, issue))
            .collect();
        let mut dropped = Vec::new();
        for (r, issue) in issues {
            let key = (Kind::VirtualService, r.namespace.clone(), r.name.clone());
            let d = match self.docs.get(&key) {
                Some(doc) => doc.diagnostic(
                    issue.severity,
                    issue.code,
                    Some(r.clone()),
                    &issue.path,
                    issue.message,
                ),
                None => continue,
            };
            if d.is_error() {
                dropped.push((r.namespace, r.name));
            }
            self.diagnostics.push(d);
        }
        self.model
            .virtual_services
            .retain(|vs| !dropped.contains(&(vs.meta.namespace.clone(), vs.meta.name.clone())));
        self.model.sort();
        self.diagnostics
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        LoadResult {
            model: self.model,
            diagnostics: self.diagnostics,
        }
    }
}

/// Lists longer than this whose items cannot be cut out of the text (flow
/// style, JSON) are loaded from re-serialized items, and their diagnostics
/// point at the list: locating inside the list re-parses all of it, once
/// per item and finding.
const MAX_ITEMS_IN_PLACE: usize = 64;

/// The parser names other positions in its message (`while parsing a
/// block mapping at line 11 column 5`), counted inside the document: make
/// them the file's.
fn shift_lines(message: &str, offset: usize) -> String {
    const AT: &str = " at line ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(AT) {
        let (head, tail) = rest.split_at(i + AT.len());
        out.push_str(head);
        let digits = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        match tail[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&tail[..digits]),
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// Only blank lines, comments and directives: not a document by itself.
fn is_preamble(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim_start_matches('\u{feff}').trim();
        t.is_empty() || t.starts_with('#') || l.starts_with('%')
    })
}

/// A document with nothing in it (`---` and comments at most).
fn is_empty_document(text: &str) -> bool {
    text.lines().all(|l| {
        is_preamble(l) || is_marker(l.trim_start_matches('\u{feff}'), "---") && l.len() == 3
    })
}

/// Cut a YAML stream into documents at `---` (which starts one) and `...`
/// (which ends one) lines, before parsing, so one malformed document does
/// not hide the others. Each piece keeps its `---` line, and comes with
/// the number of lines before it, so positions inside it map back to the
/// file exactly. Leading comments and directives stay with the document
/// that follows them.
pub(crate) fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let (mut start, mut start_line) = (0, 0);
    // Lines before `line`, counted as the parser counts them.
    let (mut pos, mut n) = (0, 0);
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let breaks = yaml_line_breaks(line);
        if is_marker(content, "---") && !is_preamble(&text[start..pos]) {
            docs.push((start_line, &text[start..pos]));
            (start, start_line) = (pos, n);
        } else if is_marker(content, "...") {
            docs.push((start_line, &text[start..pos]));
            (start, start_line) = (pos + line.len(), n + breaks);
        }
        pos += line.len();
        n += breaks;
    }
    docs.push((start_line, &text[start..]));
    docs.retain(|(_, d)| !is_empty_document(d));
    docs
}

/// Line breaks in `s` as YAML (libyaml, whose positions diagnostics
/// report) counts them: CRLF, a lone CR, LF, NEL, LS and PS each end a
/// line. Offsets added to the parser's positions must count the same way.
fn yaml_line_breaks(s: &str) -> usize {
    let bytes = s.as_bytes();
    s.char_indices()
        .filter(|&(i, c)| match c {
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => true,
            '\r' => bytes.get(i + 1) != Some(&b'\n'),
            _ => false,
        })
        .count()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_neutral(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// Cut the items of a block-style `items:` sequence (what `kubectl get -o
/// yaml` prints) out of a List document, each with the number of lines
/// before it and its `-` blanked out, so positions inside it map back to
/// the file. `None` when the layout is not that simple; the caller checks
/// each piece against the parsed item anyway.
fn split_list_items(text: &str, count: usize) -> Option<Vec<(usize, String)>> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let items_line = lines
        .iter()
        .position(|l| l.trim_end().strip_prefix("items:").is_some_and(is_neutral))?;
    let first = (items_line + 1..lines.len()).find(|&i| !is_neutral(lines[i]))?;
    let seq_indent = indent(lines[first]);
    let is_entry = |l: &str| {
        indent(l) == seq_indent && {
            let t = l.trim_start_matches(' ').trim_end_matches(['\n', '\r']);
            t == "-" || t.starts_with("- ")
        }
    };
    // Lines before each line, counted as the parser counts them.
    let lines_before: Vec<usize> = lines
        .iter()
        .scan(0, |n, l| {
            let before = *n;
            *n += yaml_line_breaks(l);
            Some(before)
        })
        .collect();
    let mut items: Vec<(usize, String)> = Vec::with_capacity(count);
    let mut current: Option<(usize, String)> = None;
    for (i, line) in lines.iter().enumerate().skip(first) {
        if is_entry(line) {
            items.extend(current.take());
            current = Some((lines_before[i], line.replacen('-', " ", 1)));
        } else if is_neutral(line) || indent(line) > seq_indent {
            current.as_mut()?.1.push_str(line);
        } else {
            break;
        }
    }
    items.extend(current);
    (items.len() == count).then_some(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_keeping_line_numbers() {
        let text = "# header\n---\na: 1\n---\nb: [\n...\n---   # c\nc: 3\n";
        let docs = split_documents(text);
        assert_eq!(
            docs,
            vec![
                (0, "# header\n---\na: 1\n"),
                (3, "---\nb: [\n"),
                (6, "---   # c\nc: 3\n"),
            ]
        );
        assert_eq!(split_documents("a: 1"), vec![(0, "a: 1")]);
        assert_eq!(split_documents("---\n---\n"), Vec::<(usize, &str)>::new());
        // `---` inside a block scalar is indented, so not a marker.
        assert_eq!(split_documents("a: |\n  ---\n").len(), 1);
        // Lines are counted as the parser counts them: a lone CR ends one.
        assert_eq!(
            split_documents("a: 1\r\rb: 2\r\n---\nc: 3\n...\n\u{2028}d: 4"),
            vec![
                (0, "a: 1\r\rb: 2\r\n"),
                (3, "---\nc: 3\n"),
                (6, "\u{2028}d: 4")
            ]
        );
    }

    /// Found by the `istio_yaml` fuzz target
    /// (`fuzz/regressions/istio_yaml/lone-cr-line-offsets`): documents were
    /// placed by counting LF-terminated lines while the parser also ends a
    /// line at a lone CR, so a position after a lone CR pointed at another
    /// line, or past the end of the file.
    #[test]
    fn regression_positions_after_a_lone_cr() {
        let text =
            "kind: Sidecar\r\rmetadata: {name: a}\n---\nkind: VirtualService\nmetadata: [a, b}\n";
        let result = crate::load_str(text, "f.yaml");
        let d = (result.diagnostics.iter())
            .find(|d| d.code == codes::YAML_SYNTAX)
            .expect("a syntax error");
        // Line 6 (CR, CR, LF and LF end lines 1 to 5) holds the `}`.
        assert_eq!((d.line, d.column), (Some(6), Some(16)), "{d}");
        assert!(d.message.contains("at line 6 column"), "{d}");

        // The fuzzer's reproducers: every position names a place in the
        // file (lines ended as YAML ends them; a column may be one past
        // the end of its line).
        for text in [
            include_str!("../../../fuzz/regressions/istio_yaml/lone-cr-line-offsets"),
            include_str!("../../../fuzz/regressions/istio_yaml/lone-cr-previous-document"),
        ] {
            let mut lines = vec![0usize];
            let mut chars = text.chars().peekable();
            while let Some(c) = chars.next() {
                if matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}') {
                    if c == '\r' && chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    lines.push(0);
                } else {
                    *lines.last_mut().unwrap() += 1;
                }
            }
            for d in crate::load_str(text, "f.yaml").diagnostics {
                if let (Some(l), Some(c)) = (d.line, d.column) {
                    assert!(l <= lines.len() && c <= lines[l - 1] + 1, "{d}");
                }
            }
        }
    }

    #[test]
    fn shifts_lines_in_parser_messages() {
        assert_eq!(
            shift_lines("x at line 11 column 5, y at line 2 column 1", 10),
            "x at line 21 column 5, y at line 12 column 1"
        );
        assert_eq!(shift_lines("no position", 3), "no position");
    }

    #[test]
    fn splits_list_items() {
        let text = "apiVersion: v1\nitems:\n- kind: A\n  x: 1\n# c\n- kind: B\nkind: List\n";
        let items = split_list_items(text, 2).unwrap();
        assert_eq!(items[0], (2, "  kind: A\n  x: 1\n# c\n".to_owned()));
        assert_eq!(items[1], (5, "  kind: B\n".to_owned()));
        assert_eq!(split_list_items(text, 3), None);
        assert_eq!(split_list_items("items: []\n", 0), None);
    }
}
