//! `ringmesh_config::load_str` on arbitrary UTF-8: the proxy's own YAML
//! configuration file (listeners, route configurations, clusters, limits,
//! identity, xds), parsed, validated and compiled into a `Snapshot`.
//!
//! Checks: never panics; a rejection carries at least one error, each
//! labelled with the file, with a reason, located by a field path or a
//! line (all but the "configuration is empty" error), and a line and column
//! that lie inside the input; an accepted configuration's snapshot carries
//! the text's hash as its version and serializes (`/config_dump`), and its
//! source model written back as YAML loads again to the same model and
//! compiles (what `/config_dump` shows is a valid configuration).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ringmesh_fuzz::check_position;

const LABEL: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new(LABEL);
    match ringmesh_config::load_str(text, Some(file)) {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a rejection without a reason");
            for e in &errors.0 {
                assert_eq!(e.file.as_deref(), Some(file), "{e}");
                assert!(!e.reason.is_empty(), "{e:?}");
                assert!(
                    e.line.is_some()
                        || e.field.is_some()
                        || e.reason.starts_with("the configuration is empty"),
                    "an error that does not say where: {e:?}"
                );
                if let Some((line, column)) = e.line {
                    if let Err(why) = check_position(text, line, column) {
                        panic!("{why}: {e}");
                    }
                }
            }
        }
        Ok(snapshot) => {
            assert_eq!(snapshot.version, ringmesh_config::fnv1a64(text.as_bytes()));
            serde_json::to_string(&snapshot).expect("the snapshot serializes");
            let dumped = serde_yaml_ng::to_string(&*snapshot.source).expect("the model serializes");
            let reparsed = ringmesh_config::parse_yaml(&dumped, None).unwrap_or_else(|e| {
                panic!("the dumped model does not parse: {e}\n--- dumped:\n{dumped}")
            });
            assert_eq!(
                reparsed, *snapshot.source,
                "the dumped model reads back differently\n--- dumped:\n{dumped}"
            );
            if let Err(e) = ringmesh_config::compile(&reparsed, 0) {
                panic!("the dumped model does not compile: {e}\n--- dumped:\n{dumped}");
            }
        }
    }
});
