//! Same input, same bytes.

use std::sync::Arc;

use super::*;

/// (type URL, name, version, bytes) of every resource.
type Bodies = Vec<(String, String, String, Vec<u8>)>;

fn all_bodies(r: &Resources) -> Bodies {
    let mut out = Vec::new();
    for t in r.types() {
        for (name, res) in r.of_type(t).unwrap() {
            out.push((
                t.to_string(),
                name.clone(),
                res.version.clone(),
                res.body.value.clone(),
            ));
        }
    }
    out
}

fn nodes() -> Vec<ProxyNode> {
    let plain = vec![
        productpage(),
        proxy("bookinfo", "10.0.0.30", Interception::Redirect),
        proxy("bookinfo", "10.0.0.40", Interception::None),
        proxy("shop", "10.1.1.10", Interception::Redirect),
        proxy("istio-system", "10.9.0.1", Interception::None),
    ];
    // The same proxies with identities: mTLS chains, auto mTLS, secrets.
    let with_identity = plain.clone().into_iter().enumerate().map(|(i, mut n)| {
        n.identity = if i % 2 == 0 {
            IdentitySource::Csr
        } else {
            IdentitySource::Files {
                cert_chain: format!("/certs/{i}/cert.pem"),
                key: format!("/certs/{i}/key.pem"),
            }
        };
        n
    });
    plain.iter().cloned().chain(with_identity).collect()
}

/// Translation with a trust bundle, so identities take effect.
fn run(state: &MeshState, node: &ProxyNode) -> Resources {
    translate(
        state,
        node,
        &Options {
            trust_bundle_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
                .into(),
            ..Options::default()
        },
    )
}

/// The corpus with PeerAuthentications at every level.
fn corpus() -> MeshState {
    super::corpus_plus(
        "---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls: {9080: {mode: DISABLE}, 9081: {mode: STRICT}}
",
    )
}

#[test]
fn translating_twice_gives_identical_bytes() {
    let state = corpus();
    for node in nodes() {
        let a = all_bodies(&run(&state, &node));
        // Several runs: a HashMap with two entries would show up here.
        for _ in 0..5 {
            assert_eq!(a, all_bodies(&run(&state, &node)), "{node:?}");
        }
        assert!(a.len() > 10);
    }
}

#[test]
fn input_order_does_not_matter() {
    let state = corpus();
    let mut shuffled = state.clone();
    shuffled.services.reverse();
    shuffled.workloads.reverse();
    shuffled.services.rotate_left(3);
    shuffled.workloads.rotate_left(5);
    let m = &mut shuffled.istio;
    m.virtual_services.reverse();
    m.destination_rules.reverse();
    m.service_entries.reverse();
    m.sidecars.reverse();
    m.peer_authentications.reverse();
    assert_ne!(state.services, shuffled.services);
    for node in nodes() {
        assert_eq!(
            all_bodies(&run(&state, &node)),
            all_bodies(&run(&shuffled, &node)),
            "{node:?}"
        );
    }
}

#[test]
fn versions_follow_content() {
    let state = corpus();
    let before = run(&state, &productpage());
    let mut changed = state.clone();
    changed
        .workloads
        .iter_mut()
        .find(|w| w.name == "reviews-v2")
        .unwrap()
        .weight = 5;
    let after = run(&changed, &productpage());
    let version = |r: &Resources, t: TypeUrl, n: &str| r.get(&t, n).unwrap().version.clone();
    let cla = "outbound|9080||reviews.bookinfo.svc.cluster.local";
    assert_ne!(
        version(&before, TypeUrl::endpoint(), cla),
        version(&after, TypeUrl::endpoint(), cla)
    );
    // Everything else is untouched.
    assert_eq!(
        version(&before, TypeUrl::cluster(), cla),
        version(&after, TypeUrl::cluster(), cla)
    );
    assert_eq!(
        version(&before, TypeUrl::route(), "9080"),
        version(&after, TypeUrl::route(), "9080")
    );
}

#[test]
fn every_type_is_declared_even_when_empty() {
    let r = run(&MeshState::default(), &ProxyNode::default());
    let types: Vec<TypeUrl> = r.types().cloned().collect();
    for t in [
        TypeUrl::listener(),
        TypeUrl::route(),
        TypeUrl::cluster(),
        TypeUrl::endpoint(),
        TypeUrl::secret(),
    ] {
        assert!(types.contains(&t), "{t} not declared");
    }
    assert!(r.of_type(&TypeUrl::endpoint()).unwrap().is_empty());
    // Redirect with nothing in the mesh: the capture listeners and the
    // fixed clusters only.
    assert_eq!(names::<Listener>(&r), ["virtualInbound", "virtualOutbound"]);
    assert_eq!(
        names::<Cluster>(&r),
        [
            "BlackHoleCluster",
            "InboundPassthroughCluster",
            "PassthroughCluster"
        ]
    );
}

/// Every registry workload's proxy, each mode, with and without an
/// identity and with metadata labels, plus a second pod of a workload.
fn every_proxy(state: &MeshState) -> Vec<ProxyNode> {
    let mut out = nodes();
    for w in &state.workloads {
        for mode in [Interception::Redirect, Interception::None] {
            let mut n = proxy(&w.namespace, &w.address.to_string(), mode);
            out.push(n.clone());
            n.identity = IdentitySource::Csr;
            n.labels = w.labels.clone();
            out.push(n);
        }
    }
    out
}

fn options_with_bundle() -> Options {
    Options {
        trust_bundle_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        ..Options::default()
    }
}

#[test]
fn the_translator_gives_what_translate_gives_and_shares_it() {
    let selectors = "---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: bookinfo}
spec:
  workloadSelector: {labels: {app: reviews}}
  egress: [{hosts: [./ratings.bookinfo.svc.cluster.local]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: by-source, namespace: bookinfo}
spec:
  hosts: [details]
  http:
  - match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: details}}]
";
    // A second pod of reviews-v1 (same workload, another address).
    let mut twin_state = corpus();
    let mut twin = twin_state
        .workloads
        .iter()
        .find(|w| w.name == "reviews-v1")
        .unwrap()
        .clone();
    twin.name = "reviews-v1-b".into();
    twin.address = "10.0.0.39".parse().unwrap();
    twin_state.workloads.push(twin);
    let mut with_selectors = super::corpus_plus(selectors);
    with_selectors
        .workloads
        .extend(twin_state.workloads.last().cloned());
    let opts = options_with_bundle();
    for state in [corpus(), twin_state, with_selectors] {
        let state = Arc::new(state);
        let mut t = Translator::new(state.clone(), opts.clone());
        let mut by_class: BTreeMap<String, Bodies> = BTreeMap::new();
        let mut nodes = every_proxy(&state);
        nodes.push(proxy("bookinfo", "10.0.0.39", Interception::Redirect));
        for node in &nodes {
            let shared = all_bodies(&t.translate(node));
            assert_eq!(shared, all_bodies(&run(&state, node)), "{node:?}");
            // Equal class keys: equal resources.
            let class = t.class_key(node);
            match by_class.get(&class) {
                Some(first) => assert_eq!(first, &shared, "{class}"),
                None => {
                    by_class.insert(class, shared);
                }
            }
        }
        // The pods of one workload share a class; other workloads not.
        let a = t.class_key(&proxy("bookinfo", "10.0.0.30", Interception::Redirect));
        let b = t.class_key(&proxy("bookinfo", "10.0.0.39", Interception::Redirect));
        let c = t.class_key(&proxy("bookinfo", "10.0.0.32", Interception::Redirect));
        assert_ne!(a, c);
        if state.workloads.iter().any(|w| w.name == "reviews-v1-b") {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn the_next_translator_reuses_unchanged_resources() {
    let opts = options_with_bundle();
    let before = Arc::new(corpus());
    let node = productpage();
    let mut t = Translator::new(before.clone(), opts.clone());
    let old = t.translate(&node);
    // One endpoint leaves: only its load assignments change.
    let mut changed = (*before).clone();
    changed.workloads.retain(|w| w.name != "details-v2");
    let mut t = t.next(Arc::new(changed.clone()));
    let new = t.translate(&node);
    assert_eq!(all_bodies(&new), all_bodies(&run(&changed, &node)));
    let mut same = 0;
    let mut differ = Vec::new();
    for ty in new.types() {
        for (name, r) in new.of_type(ty).unwrap() {
            match old.get(ty, name) {
                Some(o) if o.version == r.version => {
                    assert!(Arc::ptr_eq(o, r), "{name}: equal but not shared");
                    same += 1;
                }
                _ => differ.push(name.clone()),
            }
        }
    }
    assert!(same > 10, "{same}");
    assert!(
        differ.iter().all(|n| n.contains("details")),
        "only the details resources change: {differ:?}"
    );
}
