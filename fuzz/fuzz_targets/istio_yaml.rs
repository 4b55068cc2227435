//! `ringmesh_istio::load_str` on arbitrary UTF-8: the Istio YAML the control
//! plane reads from people's repositories (VirtualService, DestinationRule,
//! ServiceEntry, Sidecar, PeerAuthentication, AuthorizationPolicy, `kind:
//! List`, multi-document files).
//!
//! Checks: never panics; every diagnostic names the file it was given, has
//! a code and a message, and its line and column (when it has them) lie
//! inside the input; loading is deterministic (the same text gives the same
//! diagnostics and the same model twice).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmesh_fuzz::check_position;

const LABEL: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let result = ringmesh_istio::load_str(text, LABEL);
    for d in &result.diagnostics {
        assert_eq!(d.file, LABEL, "{d}");
        assert!(!d.code.is_empty() && !d.message.is_empty(), "{d:?}");
        if let Some(line) = d.line {
            let column = d.column.unwrap_or(1);
            if let Err(why) = check_position(text, line, column) {
                panic!("{why}: {d}");
            }
        } else {
            assert!(d.column.is_none(), "a column without a line: {d:?}");
        }
    }

    let again = ringmesh_istio::load_str(text, LABEL);
    assert_eq!(
        result.diagnostics, again.diagnostics,
        "loading is not deterministic"
    );
    assert_eq!(
        format!("{:?}", result.model),
        format!("{:?}", again.model),
        "loading is not deterministic"
    );
});
