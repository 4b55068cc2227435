//! Same input, same bytes.

use super::*;

fn all_bodies(r: &Resources) -> Vec<(String, String, String, Vec<u8>)> {
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
