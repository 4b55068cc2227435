//! Helpers shared by the fuzz targets in `fuzz_targets/`.

/// The length in characters of each line of `text`, lines ending at every
/// YAML line break (CRLF, CR, LF, NEL, LS, PS: how libyaml, under
/// serde_yaml_ng, counts lines), or (`yaml_breaks` false) at LF only.
pub fn line_lengths(text: &str, yaml_breaks: bool) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut len = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let is_break = match c {
            '\n' => true,
            '\r' if yaml_breaks => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                true
            }
            '\u{85}' | '\u{2028}' | '\u{2029}' => yaml_breaks,
            _ => false,
        };
        if is_break {
            lines.push(len);
            len = 0;
        } else {
            len += 1;
        }
    }
    lines.push(len);
    lines
}

/// `Ok` when a 1-based `line` and `column` name a place in `text` — a
/// character of it, or the end of a line (where a parser reports an
/// unexpected end) — with lines counted as YAML counts them (a lone CR
/// ends a line, as it does for the parser whose positions are reported);
/// else why not.
pub fn check_position(text: &str, line: usize, column: usize) -> Result<(), String> {
    let lines = line_lengths(text, true);
    let within =
        line >= 1 && column >= 1 && lines.get(line - 1).is_some_and(|&len| column <= len + 1);
    if within {
        return Ok(());
    }
    Err(format!(
        "line {line} column {column} is outside the input ({} line(s){})",
        lines.len(),
        match line.checked_sub(1).and_then(|l| lines.get(l)) {
            Some(len) => format!(", that one {len} character(s) long"),
            None => String::new(),
        }
    ))
}

/// The xDS targets' common steps.
pub mod xds {
    use ringmesh_config::{
        model::{ListenerProtocol, ListenerSpec, ProxyConfig},
        Snapshot,
    };
    use ringmesh_xds_client::{
        translate::convert, Converted, ResourceError, ResourceType, XdsState,
    };

    /// `convert` of `bytes` as a resource of type `t` named `name`. A
    /// rejection must name the resource and give a reason; the same bytes
    /// under another type URL are always rejected.
    pub fn convert_checked(t: ResourceType, name: &str, bytes: &[u8]) -> Option<Converted> {
        let wrong = convert(t, name, "type.googleapis.com/google.protobuf.Empty", bytes);
        assert!(
            wrong.is_err(),
            "accepted under the wrong type URL: {wrong:?}"
        );
        match convert(t, name, &t.type_url(), bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                check_rejection(&e, t, name);
                None
            }
        }
    }

    pub fn check_rejection(e: &ResourceError, t: ResourceType, name: &str) {
        assert_eq!(e.resource_type, t, "{e}");
        assert_eq!(e.name, name, "{e}");
        assert!(!e.reason.is_empty(), "a rejection without a reason: {e:?}");
        assert!(!e.to_string().is_empty());
    }

    /// An HTTP listener on a fixed address using route configuration
    /// `route`, for bases that make a route configuration reachable.
    pub fn http_listener(route: &str) -> ListenerSpec {
        ListenerSpec {
            name: "fuzz-http".into(),
            address: "127.0.0.1:15080".into(),
            protocol: ListenerProtocol::Http,
            route_config: Some(route.into()),
            cluster: None,
            original_dst: false,
            tls: None,
            rbac: Vec::new(),
            path_normalization: None,
        }
    }

    /// A TCP listener on a fixed address forwarding to `cluster`.
    pub fn tcp_listener(cluster: &str) -> ListenerSpec {
        ListenerSpec {
            name: "fuzz-tcp".into(),
            address: "127.0.0.1:15090".into(),
            protocol: ListenerProtocol::Tcp,
            route_config: None,
            cluster: Some(cluster.into()),
            original_dst: false,
            tls: None,
            rbac: Vec::new(),
            path_normalization: None,
        }
    }

    /// What the proxy does with its held resources: assemble them with the
    /// bootstrap's `base` and compile. A rejection carries reasons; an
    /// accepted snapshot serializes (`/config_dump`).
    pub fn compile_held(xds: &XdsState, base: &ProxyConfig) -> Option<Snapshot> {
        let cfg = xds.to_proxy_config(base);
        match ringmesh_config::compile(&cfg, xds.version()) {
            Ok(snapshot) => {
                assert_eq!(snapshot.version, xds.version());
                serde_json::to_string(&snapshot).expect("the snapshot serializes");
                Some(snapshot)
            }
            Err(errors) => {
                assert!(!errors.0.is_empty(), "a rejection without a reason");
                for e in &errors.0 {
                    assert!(!e.reason.is_empty(), "{e:?}");
                }
                None
            }
        }
    }
}
