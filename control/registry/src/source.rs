//! The directory as read: which files, their contents and content hashes,
//! and the stamps (mtime, size, inode) that let a rescan skip files that
//! did not change. Also the FNV-1a hash and the YAML document splitter.

use std::{
    collections::HashMap,
    fmt, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use ringmesh_istio::{codes as istio_codes, Diagnostic, Severity};

/// Directory walking stops this deep, in case of symlink loops (the Istio
/// loader's bound).
const MAX_DEPTH: usize = 16;

/// A file modified this recently is read again on every scan even when its
/// stamp is unchanged: a file system's mtime can be too coarse to tell two
/// writes apart within the same tick (the "racy git" problem).
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// 64-bit FNV-1a, as a `fmt::Write` sink so that `Debug` output can be
/// hashed without building the string.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

impl fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

/// What identifies a version of a file on disk without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    inode: (u64, u64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let inode = (0, 0);
        Self {
            mtime: meta.modified().ok(),
            len: meta.len(),
            inode,
        }
    }

    /// Recent enough that an unchanged stamp proves nothing.
    fn is_racy(&self, now: SystemTime) -> bool {
        match self.mtime {
            None => true,
            // A time in the future (clock skew) is racy too.
            Some(t) => now.duration_since(t).map_or(true, |age| age < RACY_WINDOW),
        }
    }
}

/// One YAML file: its label in diagnostics (the path as text), and its
/// text or why it could not be read.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) label: String,
    pub(crate) content: Result<Arc<str>, String>,
    /// FNV-1a of the bytes (0 when unreadable).
    pub(crate) hash: u64,
    stamp: Option<Stamp>,
}

/// The directory as one scan saw it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scan {
    /// The directory scanned.
    pub(crate) dir: PathBuf,
    /// Sorted by path.
    pub(crate) files: Vec<SourceFile>,
    /// Entries that could not be examined (RM0009 diagnostics).
    pub(crate) walk_errors: Vec<Diagnostic>,
    /// The directory itself could not be read.
    pub(crate) dir_error: Option<String>,
}

impl Scan {
    /// In-memory sources `(label, text)`, as if read from files with those
    /// labels (for `ringmesh analyze`, which also reads stdin).
    pub(crate) fn from_sources<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Scan {
        let files = sources
            .into_iter()
            .map(|(label, text)| {
                let mut h = Fnv::new();
                h.bytes(text.as_bytes());
                SourceFile {
                    path: PathBuf::from(label),
                    label: label.to_owned(),
                    content: Ok(Arc::from(text)),
                    hash: h.finish(),
                    stamp: None,
                }
            })
            .collect();
        Scan {
            files,
            ..Scan::default()
        }
    }

    /// Read `dir`, reusing from `previous` the contents of files whose stamp
    /// did not change (and is not recent).
    pub(crate) fn read(dir: &Path, previous: Option<&Scan>) -> Scan {
        let mut scan = Scan {
            dir: dir.to_owned(),
            ..Scan::default()
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                scan.dir_error = Some("not a directory".to_owned());
                return scan;
            }
            Err(e) => {
                scan.dir_error = Some(e.to_string());
                return scan;
            }
        }
        let mut paths = Vec::new();
        if let Err(e) = collect(dir, 0, &mut paths, &mut scan.walk_errors) {
            scan.dir_error = Some(e.to_string());
            return scan;
        }
        let known: HashMap<&Path, &SourceFile> = previous
            .map(|p| p.files.iter().map(|f| (f.path.as_path(), f)).collect())
            .unwrap_or_default();
        let now = SystemTime::now();
        for (path, meta) in paths {
            let stamp = Stamp::of(&meta);
            if let Some(old) = known.get(path.as_path()) {
                if old.stamp.as_ref() == Some(&stamp) && !stamp.is_racy(now) {
                    scan.files.push((*old).clone());
                    continue;
                }
            }
            if let Some(file) = read_file(path, stamp) {
                scan.files.push(file);
            }
        }
        scan
    }

    /// Same files with the same contents, and the same errors.
    pub(crate) fn same_as(&self, other: &Scan) -> bool {
        self.dir_error == other.dir_error
            && self.walk_errors == other.walk_errors
            && self.files.len() == other.files.len()
            && self
                .files
                .iter()
                .zip(&other.files)
                .all(|(a, b)| a.path == b.path && a.hash == b.hash && a.content == b.content)
    }
}

fn io_diagnostic(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code: istio_codes::IO,
        file: path.display().to_string(),
        resource: None,
        field: None,
        line: None,
        column: None,
        message,
    }
}

/// `*.yaml`, `*.yml` and `*.json` files under `dir`, recursively, in path
/// order, skipping names that start with `.` (editors' swap and temporary
/// files, and the `..data` links of a mounted ConfigMap) and following
/// symlinks. An error reading `dir` itself is returned; errors below it
/// become diagnostics.
fn collect(
    dir: &Path,
    depth: usize,
    out: &mut Vec<(PathBuf, std::fs::Metadata)>,
    diags: &mut Vec<Diagnostic>,
) -> io::Result<()> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    paths.sort();
    for path in paths {
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                if depth >= MAX_DEPTH {
                    diags.push(io_diagnostic(
                        &path,
                        format!("directory nested deeper than {MAX_DEPTH} levels; skipped"),
                    ));
                } else if let Err(e) = collect(&path, depth + 1, out, diags) {
                    diags.push(io_diagnostic(
                        &path,
                        format!("cannot read the directory: {e}"),
                    ));
                }
            }
            Ok(m) => {
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if ["yaml", "yml", "json"].contains(&ext) {
                    out.push((path, m));
                }
            }
            // Removed between the listing and now (an editor's rename):
            // it is simply not there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => diags.push(io_diagnostic(&path, format!("cannot read: {e}"))),
        }
    }
    Ok(())
}

fn read_file(path: PathBuf, stamp: Stamp) -> Option<SourceFile> {
    let label = path.display().to_string();
    let (content, hash) = match std::fs::read(&path) {
        Ok(bytes) => {
            let mut h = Fnv::new();
            h.bytes(&bytes);
            match String::from_utf8(bytes) {
                Ok(text) => (Ok(Arc::from(text)), h.finish()),
                Err(e) => (
                    Err(format!(
                        "not valid UTF-8 (first bad byte at offset {})",
                        e.utf8_error().valid_up_to()
                    )),
                    h.finish(),
                ),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => (Err(format!("cannot read the file: {e}")), 0),
    };
    Some(SourceFile {
        path,
        label,
        content,
        hash,
        stamp: Some(stamp),
    })
}

/// Is `line` the document marker `marker` (`---` or `...`), alone or
/// followed by a space (`--- # comment`, `--- !tag`)?
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// Cut a YAML stream into documents at `---` (which starts one) and `...`
/// (which ends one) lines, each with the number of lines before it, so that
/// positions inside a document map back to the file and a syntax error
/// loses only its own document. Pieces holding nothing but comments and
/// blank lines are dropped.
pub(crate) fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let (mut start, mut start_line, mut pos) = (0, 0, 0);
    // Lines before `line`, counted as the parser counts them.
    let mut n = 0;
    for line in text.split_inclusive('\n') {
        let content = line
            .trim_end_matches(['\n', '\r'])
            .trim_start_matches('\u{feff}');
        let breaks = yaml_line_breaks(line);
        if is_marker(content, "---") {
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
    docs.retain(|(_, d)| !is_blank(d));
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

/// Only blank lines, comments, directives and a bare `---`.
fn is_blank(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim_start_matches('\u{feff}').trim();
        t.is_empty() || t.starts_with('#') || l.starts_with('%') || t == "---"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        let hash = |s: &str| {
            let mut h = Fnv::new();
            h.bytes(s.as_bytes());
            h.finish()
        };
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn splits_documents_keeping_line_numbers() {
        let text = "# header\na: 1\n---\nb: [\n...\n--- # c\nc: 3\n---\n# only a comment\n";
        assert_eq!(
            split_documents(text),
            vec![
                (0, "# header\na: 1\n"),
                (2, "---\nb: [\n"),
                (5, "--- # c\nc: 3\n"),
            ]
        );
        assert_eq!(split_documents("a: 1"), vec![(0, "a: 1")]);
        assert!(split_documents("---\n---\n").is_empty());
        // Indented `---` inside a block scalar is content.
        assert_eq!(split_documents("a: |\n  ---\n").len(), 1);
        // `----` is not a marker.
        assert_eq!(split_documents("a: 1\n----\n").len(), 1);
        // Lines are counted as the parser counts them: a lone CR ends one
        // (the loader's fix for `fuzz/regressions/istio_yaml/lone-cr-line-offsets`,
        // here for registry objects).
        assert_eq!(
            split_documents("a: 1\r\rb: 2\r\n---\nc: 3\n...\n\u{2028}d: 4"),
            vec![
                (0, "a: 1\r\rb: 2\r\n"),
                (3, "---\nc: 3\n"),
                (6, "\u{2028}d: 4")
            ]
        );
    }
}
