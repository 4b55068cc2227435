//! `ringmesh analyze PATH...`: validate Istio YAML like `istioctl analyze`.
//!
//! The steps, each in its own module: [`input`] reads the PATHs (files,
//! directories, `-` for stdin); the model crate loads them all as one
//! model with its per-resource diagnostics; [`mesh`] adds the findings
//! across resources; [`report`] sorts, suppresses and counts; [`render`]
//! prints. Exit status: 0 when nothing at or above `--failure-threshold`
//! was found, 1 when something was, 2 on a usage error (a bad flag, a PATH
//! that cannot be read) or when stdout cannot be written.

pub mod input;
pub mod locate;
pub mod mesh;
pub mod render;
pub mod report;

use std::{
    io::{IsTerminal, Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use clap::ValueEnum;
use ringmesh_istio::{Severity, DEFAULT_DOMAIN_SUFFIX};
use ringmesh_registry::FileOptions;

use self::{
    input::Inputs,
    mesh::{Mesh, DEFAULT_ROOT_NAMESPACE},
    report::{Report, Suppression},
};
use crate::style::Style;

/// Exit status: findings at or above the failure threshold.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status: a usage error, an unreadable PATH, or stdout failing.
pub const EXIT_USAGE: u8 = 2;

pub(crate) const LONG_ABOUT: &str = "\
Validate Istio YAML like `istioctl analyze`.

Every PATH (a file; a directory, searched recursively for *.yaml, *.yml and
*.json; or - for standard input) is loaded into one model, so references
between files resolve. Each resource is checked on its own (schema, values,
references: RM0001-RM0013), then the mesh as a whole (unknown or conflicting
hosts, unreachable routes, policies: RM0101 and up). `--explain` lists every
code. The checks that report something missing (RM0101, RM0106) wait until
the input has no errors.

Findings are printed as a table grouped by file on a terminal, and as one
`FILE:LINE:COL: severity[CODE] ...` line each otherwise. Colour only on a
terminal, and never with NO_COLOR set.

Exit status: 0 when nothing at or above --failure-threshold was found, 1 when
something was, 2 on a usage error or a PATH that cannot be read.";

pub(crate) const EXAMPLES: &str = "\
Examples:
  # A directory and a file, as one mesh
  ringmesh analyze deploy/istio/ extra/reviews-canary.yaml

  # From a pipe, for resources without metadata.namespace in `prod`
  helm template charts/shop | ringmesh analyze -n prod -

  # For CI: JSON, and fail on warnings as well as errors
  ringmesh analyze -o json --failure-threshold warning config/

  # Hide one finding about one resource (and all RM0106 in `legacy`)
  ringmesh analyze --suppress 'RM0106=DestinationRule default/reviews' \\
                   --suppress 'RM0106=DestinationRule legacy/*' config/

  # What does a code mean?
  ringmesh analyze --explain RM0103";

/// How findings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Grouped by file, in aligned columns (the default on a terminal)
    Table,
    /// `FILE:LINE:COL: severity[CODE] Kind ns/name: field: message` (the default otherwise)
    Line,
    /// `{"diagnostics": [...], "summary": {...}}`
    Json,
    /// The same as YAML
    Yaml,
}

/// The least severe finding that fails the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Threshold {
    Error,
    Warning,
    Info,
}

impl From<Threshold> for Severity {
    fn from(t: Threshold) -> Self {
        match t {
            Threshold::Error => Severity::Error,
            Threshold::Warning => Severity::Warning,
            Threshold::Info => Severity::Info,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories to analyze; - reads standard input
    #[arg(value_name = "PATH", required_unless_present = "explain")]
    pub paths: Vec<PathBuf>,

    /// Output format [default: table on a terminal, line otherwise]
    #[arg(short, long, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,

    /// Exit with status 1 when a finding is at least this severe
    #[arg(long, value_enum, default_value_t = Threshold::Error, value_name = "SEVERITY")]
    pub failure_threshold: Threshold,

    /// Hide findings with CODE about RESOURCE ('Kind namespace/name', * matches anything); repeatable
    #[arg(long, value_name = "CODE=RESOURCE")]
    pub suppress: Vec<Suppression>,

    /// Namespace of resources that name none in their metadata
    #[arg(short, long, default_value = "default", value_name = "NAMESPACE")]
    pub namespace: String,

    /// Namespace holding mesh-wide policies
    #[arg(long, default_value = DEFAULT_ROOT_NAMESPACE, value_name = "NAMESPACE")]
    pub root_namespace: String,

    /// Cluster domain that short host names expand with (reviews → reviews.NS.svc.DOMAIN)
    #[arg(long, default_value = DEFAULT_DOMAIN_SUFFIX, value_name = "DOMAIN")]
    pub domain_suffix: String,

    /// List every diagnostic code with its meaning (or explain one) and exit
    #[arg(long, value_name = "CODE", num_args = 0..=1, default_missing_value = "")]
    pub explain: Option<String>,
}

/// Load, analyze and report `inputs`: the whole run short of printing.
pub fn analyze(args: &Args, inputs: &Inputs) -> Report {
    // Registry objects (Service, Workload) and Istio resources, checked
    // exactly as ringmesh-control checks them.
    let loaded = ringmesh_registry::load_sources(
        inputs
            .sources
            .iter()
            .map(|(label, text)| (label.as_str(), text.as_str())),
        &FileOptions {
            domain_suffix: args.domain_suffix.clone(),
            default_namespace: args.namespace.clone(),
            ..FileOptions::default()
        },
    );
    let mut diagnostics = inputs.unreadable.clone();
    diagnostics.extend(loaded.diagnostics.iter().cloned());
    let has_errors = diagnostics.iter().any(|d| d.is_error());
    let mesh = Mesh::new(
        &loaded.istio,
        &diagnostics,
        &args.root_namespace,
        &args.domain_suffix,
    );
    let found = mesh::analyze(&mesh, has_errors, |label| inputs.text(label));
    diagnostics.extend(found);
    Report::new(diagnostics, &loaded.istio, inputs.files(), &args.suppress)
}

/// The `analyze` command, start to finish.
pub fn main(args: &Args) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let style = Style::for_stdout();
    if let Some(code) = &args.explain {
        let code = Some(code.as_str()).filter(|c| !c.is_empty());
        return match render::explain(code) {
            Ok(text) => finish(stdout.write_all(text.as_bytes()), 0),
            Err(e) => {
                let _ = writeln!(stderr, "error: {e}");
                ExitCode::from(EXIT_USAGE)
            }
        };
    }
    let inputs = match input::read(&args.paths, &mut std::io::stdin().lock() as &mut dyn Read) {
        Ok(inputs) => inputs,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for dir in &inputs.empty_dirs {
        let _ = writeln!(
            stderr,
            "warning: no *.yaml, *.yml or *.json file under {}",
            dir.display()
        );
    }
    let report = analyze(args, &inputs);
    let format = args.output.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Line
    });
    let text = match format {
        Format::Table => render::table(&report, style),
        Format::Line => render::lines(&report, style),
        Format::Json => render::json(&report),
        Format::Yaml => render::yaml(&report),
    };
    let status = if report.fails(args.failure_threshold.into()) {
        EXIT_FINDINGS
    } else {
        0
    };
    finish(stdout.write_all(text.as_bytes()), status)
}

/// The exit status once the output is written: a closed pipe (`| head`)
/// is the reader's choice and keeps the status; another write error is 2.
fn finish(written: std::io::Result<()>, status: u8) -> ExitCode {
    match written.and_then(|()| std::io::stdout().flush()) {
        Ok(()) => ExitCode::from(status),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(status),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot write the report: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
