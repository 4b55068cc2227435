use std::net::{IpAddr, SocketAddr};

use ringmesh_route::Request;

use crate::{load_str, ListenerKind, Snapshot};

const A: &str = "spiffe://cluster.local/ns/default/sa/frontend";
const B: &str = "spiffe://cluster.local/ns/default/sa/intruder";

fn config(rbac: &str, protocol: &str) -> String {
    let target = if protocol == "http" {
        "route_config: main"
    } else {
        "cluster: backend"
    };
    format!(
        r#"
listeners:
  - name: in
    address: 127.0.0.1:8080
    protocol: {protocol}
    {target}
    rbac:
{rbac}
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ prefix: "/" }}
            cluster: backend
clusters:
  - name: backend
    endpoints: [{{ address: "127.0.0.1:9000" }}]
"#
    )
}

fn snapshot(rbac: &str) -> Snapshot {
    load_str(&config(rbac, "http"), None).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(rbac: &str, protocol: &str) -> String {
    match load_str(&config(rbac, protocol), None) {
        Ok(_) => panic!("accepted:\n{rbac}"),
        Err(e) => e.to_string(),
    }
}

const CHARGE_ONLY_A: &str = r#"
      - name: allow
        rules:
          action: ALLOW
          policies:
            charge:
              permissions:
                - and_rules:
                    rules:
                      - header: { name: ":method", exact: POST }
                      - url_path: { exact: /api/v1/charge }
              principals:
                - authenticated: { principal_name: { exact: "spiffe://cluster.local/ns/default/sa/frontend" } }
"#;

/// Deny or allow `method path` from `principal` (peer 10.1.2.3 → 127.0.0.1:8080).
fn decide(s: &Snapshot, method: &str, path: &str, principal: Option<&str>) -> Option<String> {
    let l = &s.listeners[0];
    assert!(matches!(l.kind, ListenerKind::Http { .. }));
    let req = Request::new(b"svc", b"/")
        .with_target(path.as_bytes())
        .with_method(method.as_bytes());
    let input = crate::authz::AuthzInput {
        request: Some(&req),
        peer: "10.1.2.3".parse::<IpAddr>().unwrap(),
        destination: "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
        principal,
        sni: None,
    };
    let v = l.rbac.evaluate(&input);
    v.denied.map(|(f, p)| format!("{f}/{}", p.unwrap_or("-")))
}

#[test]
fn allow_policy_admits_only_its_principal_method_and_path() {
    let s = snapshot(CHARGE_ONLY_A);
    assert_eq!(decide(&s, "POST", "/api/v1/charge", Some(A)), None);
    assert_eq!(
        decide(&s, "POST", "/api/v1/charge", Some(B)).as_deref(),
        Some("allow/-")
    );
    // Plaintext: no principal at all.
    assert!(decide(&s, "POST", "/api/v1/charge", None).is_some());
    assert!(decide(&s, "GET", "/api/v1/charge", Some(A)).is_some());
    // url_path ignores the query; case matters.
    assert_eq!(decide(&s, "POST", "/api/v1/charge?x=1", Some(A)), None);
    assert!(decide(&s, "POST", "/API/v1/charge", Some(A)).is_some());
    assert!(decide(&s, "POST", "/api/v1/charge;x", Some(A)).is_some());
}

#[test]
fn deny_beats_allow_and_log_never_blocks() {
    let rbac = r#"
      - name: audit
        rules:
          action: LOG
          policies:
            everything:
              permissions: [ { any: true } ]
              principals: [ { any: true } ]
      - name: deny
        rules:
          action: DENY
          policies:
            no-admin:
              permissions: [ { url_path: { prefix: /admin } } ]
              principals: [ { any: true } ]
      - name: allow
        rules:
          action: ALLOW
          policies:
            a-only:
              permissions: [ { any: true } ]
              principals:
                - or_ids:
                    ids:
                      - authenticated: { principal_name: { exact: "spiffe://cluster.local/ns/default/sa/frontend" } }
                      - source_ip: 192.168.0.0/16
        shadow_rules:
          action: DENY
          policies:
            would-deny-get:
              permissions: [ { header: { name: ":method", exact: GET } } ]
              principals: [ { any: true } ]
"#;
    let s = snapshot(rbac);
    assert_eq!(decide(&s, "POST", "/x", Some(A)), None);
    assert_eq!(
        decide(&s, "GET", "/admin/users", Some(A)).as_deref(),
        Some("deny/no-admin")
    );
    assert_eq!(decide(&s, "GET", "/x", Some(B)).as_deref(), Some("allow/-"));
    let req = Request::new(b"svc", b"/x").with_method(b"GET");
    let v = s.listeners[0].rbac.evaluate(&crate::authz::AuthzInput {
        request: Some(&req),
        peer: "10.0.0.1".parse().unwrap(),
        destination: "127.0.0.1:8080".parse().unwrap(),
        principal: Some(A),
        sni: None,
    });
    assert_eq!(v.denied, None);
    assert_eq!(v.logged, Some(("audit", "everything")));
    assert_eq!((v.shadow_denied, v.shadow_allowed), (1, 0));
}

#[test]
fn network_rules_read_addresses_ports_and_principals() {
    let rbac = r#"
      - rules:
          action: ALLOW
          policies:
            p:
              permissions:
                - and_rules:
                    rules:
                      - destination_port: 8080
                      - destination_ip: 127.0.0.0/8
                      - not_rule: { destination_ip: 127.0.0.2 }
              principals:
                - and_ids:
                    ids:
                      - authenticated: {}
                      - not_id: { remote_ip: "10.9.0.0/16" }
"#;
    let s = load_str(&config(rbac, "tcp"), None).unwrap_or_else(|e| panic!("{e}"));
    let chain = &s.listeners[0].rbac;
    let eval = |peer: &str, dst: &str, principal: Option<&str>| {
        chain
            .evaluate(&crate::authz::AuthzInput {
                request: None,
                peer: peer.parse().unwrap(),
                destination: dst.parse().unwrap(),
                principal,
                sni: None,
            })
            .denied
            .is_none()
    };
    assert!(eval("10.1.0.1", "127.0.0.1:8080", Some(B)));
    assert!(!eval("10.1.0.1", "127.0.0.1:8080", None));
    assert!(!eval("10.9.3.3", "127.0.0.1:8080", Some(B)));
    assert!(!eval("10.1.0.1", "127.0.0.1:8081", Some(B)));
    assert!(!eval("10.1.0.1", "127.0.0.2:8080", Some(B)));
    // An IPv4 peer seen through a dual-stack socket.
    assert!(!eval("::ffff:10.9.3.3", "127.0.0.1:8080", Some(B)));
}

#[test]
fn invalid_rules_are_rejected_with_their_field() {
    let e = errors(
        r#"
      - rules:
          action: ALLOW
          policies:
            p:
              permissions: [ { url_path: { prefix: /a, exact: /b } } ]
              principals: []
"#,
        "http",
    );
    assert!(
        e.contains("listeners[0].rbac[0].rules.policies.p.permissions[0].url_path: only one of"),
        "{e}"
    );
    assert!(
        e.contains("listeners[0].rbac[0].rules.policies.p.principals: at least one principal"),
        "{e}"
    );
    let e = errors(
        r#"
      - rules:
          action: DENY
          policies:
            p:
              permissions: [ { header: { name: ":method", exact: GET } } ]
              principals: [ { source_ip: "10.0.0.0/33" } ]
"#,
        "tcp",
    );
    assert!(
        e.contains("permissions[0].header: a header rule cannot be evaluated on a TCP listener"),
        "{e}"
    );
    assert!(
        e.contains("principals[0].source_ip: \"10.0.0.0/33\": prefix length must be 0..=32"),
        "{e}"
    );
    let e = errors(
        r#"
      - rules:
          action: ALLOW
          policies:
            p:
              permissions: [ { any: true } ]
              principals: [ { authenticated: { principal_name: { regex: "(" } } } ]
"#,
        "http",
    );
    assert!(
        e.contains("authenticated.principal_name.regex: invalid regex"),
        "{e}"
    );
    // Unknown rule kinds are refused by the parser (deny_unknown_fields).
    let e = errors(
        r#"
      - rules:
          action: ALLOW
          policies:
            p:
              permissions: [ { metadata: {} } ]
              principals: [ { any: true } ]
"#,
        "http",
    );
    assert!(e.contains("unknown field `metadata`"), "{e}");
}

#[test]
fn path_normalization_defaults_to_safe_and_is_configurable() {
    let s = snapshot("      []");
    assert_eq!(
        s.listeners[0].path_normalization,
        ringmesh_http1::PathNormalization::SAFE
    );
    assert!(s.listeners[0].rbac.is_empty());
    let text = config("      []", "http").replace(
        "    rbac:\n",
        "    path_normalization: { merge_slashes: false, escaped_slashes: unescape_and_forward }\n    rbac:\n",
    );
    let s = load_str(&text, None).unwrap_or_else(|e| panic!("{e}"));
    let p = s.listeners[0].path_normalization;
    assert!(p.normalize && !p.merge_slashes);
    assert_eq!(
        p.escaped_slashes,
        ringmesh_http1::EscapedSlashes::UnescapeAndForward
    );
}

#[test]
fn deep_nesting_is_bounded() {
    let mut p = crate::model::PermissionSpec {
        any: Some(true),
        ..Default::default()
    };
    for _ in 0..200 {
        p = crate::model::PermissionSpec {
            not_rule: Some(Box::new(p)),
            ..Default::default()
        };
    }
    let spec = crate::model::RbacFilterSpec {
        name: None,
        rules: Some(crate::model::RbacRulesSpec {
            action: crate::model::RbacAction::Allow,
            policies: [(
                "deep".to_owned(),
                crate::model::PolicySpec {
                    permissions: vec![p],
                    principals: vec![crate::model::PrincipalSpec {
                        any: Some(true),
                        ..Default::default()
                    }],
                },
            )]
            .into(),
        }),
        shadow_rules: None,
    };
    let e = crate::authz::compile_chain(&[spec], true).unwrap_err();
    assert!(e[0].1.contains("nest deeper than 64"), "{e:?}");
}

#[test]
fn documented_example_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CONFIG.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let from = doc
        .find("## Authorization")
        .expect("an Authorization section");
    let start = from + doc[from..].find("```yaml\n").unwrap() + "```yaml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let s = load_str(&doc[start..end], Some(&path)).unwrap_or_else(|e| panic!("{e}"));
    let l = &s.listeners[0];
    let req = Request::new(b"svc", b"/api/v1/charge").with_method(b"POST");
    let v = l.rbac.evaluate(&crate::authz::AuthzInput {
        request: Some(&req),
        peer: "10.0.0.1".parse().unwrap(),
        destination: "127.0.0.1:15006".parse().unwrap(),
        principal: Some(A),
        sni: None,
    });
    assert_eq!(v.denied, None);
    assert_eq!(v.logged, Some(("audit", "audit-api")));
}
