use super::*;

#[test]
fn hosts() {
    for ok in [
        "reviews",
        "reviews.default.svc.cluster.local",
        "*.example.com",
        "*",
        "10.0.0.1",
        "API.Example.com",
    ] {
        assert_eq!(host_error(ok, true), None, "{ok}");
    }
    assert!(host_error("*.example.com", false).is_some());
    for bad in ["", "a..b", "-a.com", "a_b.com", "a.com.", "a/b"] {
        assert!(host_error(bad, true).is_some(), "{bad}");
    }
}

#[test]
fn cidrs() {
    for ok in [
        "10.0.0.1",
        "10.0.0.0/8",
        "::1",
        "2001:db8::/32",
        "0.0.0.0/0",
    ] {
        assert_eq!(ip_or_cidr_error(ok), None, "{ok}");
    }
    assert_eq!(
        ip_or_cidr_error("10.0.0.0/33").unwrap(),
        "invalid CIDR \"10.0.0.0/33\": the prefix length must be 0-32"
    );
    assert_eq!(
        ip_or_cidr_error("10.0.0/8").unwrap(),
        "invalid IP address or CIDR \"10.0.0/8\" (expected e.g. 10.0.0.1 or 10.0.0.0/8)"
    );
    assert!(ip_or_cidr_error("10.0.0.0/+8").is_some());
    assert!(ip_or_cidr_error("::/129").is_some());
}

#[test]
fn regex_messages_are_one_line() {
    let mut cx = Ctx::default();
    regex(&mut cx, &FieldPath::root().key("r"), "^/api/(v1");
    assert_eq!(cx.issues.len(), 1);
    assert_eq!(
        cx.issues[0].message,
        "invalid regex \"^/api/(v1\": unclosed group"
    );
    regex(&mut cx, &FieldPath::root().key("r"), "^/api/v[0-9]+$");
    assert_eq!(cx.issues.len(), 1);
}

#[test]
fn weights_rules() {
    let p = FieldPath::root().key("route");
    let run = |w: &[Option<i64>]| {
        let mut cx = Ctx::default();
        weights(&mut cx, &p, w);
        cx.issues
            .into_iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect::<Vec<_>>()
    };
    assert!(run(&[None]).is_empty());
    assert!(run(&[Some(30)]).is_empty());
    assert!(run(&[Some(90), Some(10)]).is_empty());
    assert_eq!(
        run(&[Some(80), Some(10)]),
        ["route[1].weight: weights sum to 90, not 100"]
    );
    assert_eq!(
        run(&[None, None]),
        ["route[1].weight: weights sum to 0, not 100"]
    );
    assert_eq!(
        run(&[Some(110), Some(-10)]),
        ["route[1].weight: weight must not be negative (got -10)"]
    );
}

#[test]
fn labels_and_names() {
    assert!(is_dns_label("istio-system"));
    assert!(!is_dns_label("Istio"));
    assert!(!is_dns_label("a-"));
    assert!(is_dns_subdomain("reviews.v1"));
    let mut cx = Ctx::default();
    let mut map = BTreeMap::new();
    map.insert("app.kubernetes.io/name".to_owned(), "reviews".to_owned());
    map.insert("version".to_owned(), "v1".to_owned());
    labels(&mut cx, &FieldPath::root(), &map);
    assert!(cx.issues.is_empty());
    map.insert("bad key!".to_owned(), "x".to_owned());
    map.insert("ok".to_owned(), "bad value!".to_owned());
    labels(&mut cx, &FieldPath::root(), &map);
    let messages: Vec<_> = cx.issues.iter().map(|i| i.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "invalid label key \"bad key!\"",
            "invalid label value \"bad value!\""
        ]
    );
}
