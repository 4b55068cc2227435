//! The command line's PATHs → the texts to load as one model.
//!
//! Directories are walked here rather than by `Loader::load_dir`, so that
//! several PATHs (and stdin) load as one model, and so that the texts stay
//! at hand to locate the mesh-level findings. The walk follows the model's
//! rules: `*.yaml`, `*.yml` and `*.json`, recursively, in path order,
//! skipping names that start with `.`.

use std::{
    collections::HashSet,
    fmt,
    io::Read,
    path::{Path, PathBuf},
};

use ringmesh_istio::{codes, Diagnostic, Severity};

/// The file label of standard input in diagnostics.
pub const STDIN_LABEL: &str = "<stdin>";

/// Directory walking stops this deep, in case of symlink loops.
const MAX_DEPTH: usize = 16;

/// What was read: `(label, text)` pairs in load order, and a diagnostic
/// for each file found that could not be read.
#[derive(Debug, Default)]
pub struct Inputs {
    pub sources: Vec<(String, String)>,
    pub unreadable: Vec<Diagnostic>,
    /// Directories given that held no file to analyze.
    pub empty_dirs: Vec<PathBuf>,
    /// Files already read, so that a file named twice (or named and inside
    /// a directory named too) is not loaded twice, which would make every
    /// resource in it a duplicate (RM0007).
    seen: HashSet<PathBuf>,
}

impl Inputs {
    /// Files found, read or not (stdin counts as one).
    pub fn files(&self) -> usize {
        self.sources.len() + self.unreadable.len()
    }

    /// The text loaded under `label`.
    pub fn text(&self, label: &str) -> Option<&str> {
        self.sources
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, t)| t.as_str())
    }
}

/// A PATH given on the command line that cannot be read at all: a usage
/// error, not a finding (a mistyped path must not pass as "no issues").
#[derive(Debug)]
pub struct PathError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {}: {}", self.path.display(), self.reason)
    }
}

/// Read every PATH (`-` is stdin, read once however often it is given).
pub fn read(paths: &[PathBuf], stdin: &mut dyn Read) -> Result<Inputs, PathError> {
    let mut inputs = Inputs::default();
    let mut stdin_read = false;
    for path in paths {
        if path.as_os_str() == "-" {
            if !stdin_read {
                stdin_read = true;
                let mut bytes = Vec::new();
                stdin.read_to_end(&mut bytes).map_err(|e| PathError {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                add_bytes(&mut inputs, STDIN_LABEL.to_owned(), Ok(bytes));
            }
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|e| PathError {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if meta.is_dir() {
            let before = inputs.files();
            walk(path, 0, &mut inputs);
            if inputs.files() == before {
                inputs.empty_dirs.push(path.clone());
            }
        } else {
            // A file named explicitly is read whatever its extension.
            add_file(&mut inputs, path);
        }
    }
    Ok(inputs)
}

fn walk(dir: &Path, depth: usize, inputs: &mut Inputs) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            inputs.unreadable.push(io_error(
                dir.display().to_string(),
                format!("cannot read the directory: {e}"),
            ));
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
                    walk(&path, depth + 1, inputs);
                } else {
                    inputs.unreadable.push(io_error(
                        path.display().to_string(),
                        format!("directory nested deeper than {MAX_DEPTH} levels; skipped"),
                    ));
                }
            }
            Ok(_) => {
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if ["yaml", "yml", "json"].contains(&ext) {
                    add_file(inputs, &path);
                }
            }
            Err(e) => inputs.unreadable.push(io_error(
                path.display().to_string(),
                format!("cannot read: {e}"),
            )),
        }
    }
}

fn add_file(inputs: &mut Inputs, path: &Path) {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    if !inputs.seen.insert(key) {
        return;
    }
    add_bytes(inputs, path.display().to_string(), std::fs::read(path));
}

fn add_bytes(inputs: &mut Inputs, label: String, bytes: std::io::Result<Vec<u8>>) {
    match bytes {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => inputs.sources.push((label, text)),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                inputs.unreadable.push(io_error(
                    label,
                    format!("not valid UTF-8 (first bad byte at offset {at})"),
                ));
            }
        },
        Err(e) => inputs
            .unreadable
            .push(io_error(label, format!("cannot read the file: {e}"))),
    }
}

fn io_error(file: String, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code: codes::IO,
        file,
        resource: None,
        field: None,
        line: None,
        column: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringmesh-cli-input-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn walks_directories_in_order_and_reads_stdin_once() {
        let dir = tempdir("walk");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("b.yaml"), "b").unwrap();
        std::fs::write(dir.join("a.yml"), "a").unwrap();
        std::fs::write(dir.join("sub/c.json"), "c").unwrap();
        std::fs::write(dir.join("notes.txt"), "skipped").unwrap();
        std::fs::write(dir.join(".hidden.yaml"), "skipped").unwrap();
        std::fs::write(dir.join("bad.yaml"), [0xff, 0xfe]).unwrap();
        let paths = [dir.clone(), "-".into(), "-".into(), dir.join("a.yml")];
        let inputs = read(&paths, &mut &b"from stdin"[..]).unwrap();
        let labels: Vec<String> = inputs
            .sources
            .iter()
            .map(|(l, t)| format!("{}={t}", l.replace(&dir.display().to_string(), "D")))
            .collect();
        assert_eq!(
            labels,
            [
                "D/a.yml=a",
                "D/b.yaml=b",
                "D/sub/c.json=c",
                "<stdin>=from stdin"
            ]
        );
        assert_eq!(inputs.unreadable.len(), 1);
        assert_eq!(
            inputs.unreadable[0].message,
            "not valid UTF-8 (first bad byte at offset 0)"
        );
        assert_eq!(inputs.files(), 5);
        assert!(inputs.empty_dirs.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_path_is_a_usage_error_and_an_empty_dir_is_noted() {
        let dir = tempdir("empty");
        let err = read(&[dir.join("nope.yaml")], &mut &b""[..]).unwrap_err();
        assert!(err.to_string().starts_with("cannot read "), "{err}");
        assert!(err.to_string().contains("nope.yaml: "), "{err}");
        let inputs = read(std::slice::from_ref(&dir), &mut &b""[..]).unwrap();
        assert_eq!(inputs.empty_dirs, std::slice::from_ref(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
