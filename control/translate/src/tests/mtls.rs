//! mTLS: PeerAuthentication precedence, inbound filter chains in both
//! layouts, auto mTLS on clusters, and the SDS secrets.

use super::*;
use crate::{client_tls, server_mode, AutoReason, ClientMode, ClientTls, ServerMode, ServerMtls};

const BUNDLE: &str = "-----BEGIN CERTIFICATE-----\nMIIB-root-1\n-----END CERTIFICATE-----\n\
                      -----BEGIN CERTIFICATE-----\nMIIB-root-2\n-----END CERTIFICATE-----\n";

fn opts() -> Options {
    Options {
        trust_bundle_pem: BUNDLE.into(),
        ..Options::default()
    }
}

fn pa(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

fn dr(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

/// A proxy of a registry workload that makes its own key (ringmesh-proxy).
fn with_identity(mut node: ProxyNode) -> ProxyNode {
    node.identity = IdentitySource::Csr;
    node
}

/// ratings' sidecar without interception: inbound 9080 on 10.0.0.40.
fn ratings_none() -> ProxyNode {
    with_identity(proxy("bookinfo", "10.0.0.40", Interception::None))
}

fn mode(state: &MeshState, ns: &str, l: &[(&str, &str)], port: u16) -> (ServerMode, String) {
    let m = server_mode(&state.istio.peer_authentications, ns, &labels(l), port);
    (m.mode, m.policy.map(|p| p.to_string()).unwrap_or_default())
}

#[test]
fn no_policy_means_permissive() {
    let state = corpus();
    assert_eq!(
        server_mode(
            &state.istio.peer_authentications,
            "bookinfo",
            &labels(&[("app", "reviews")]),
            9080
        ),
        ServerMtls {
            mode: ServerMode::Permissive,
            policy: None
        }
    );
}

#[test]
fn the_most_specific_policy_that_sets_a_mode_wins() {
    let state = corpus_plus(
        &(pa("default", "istio-system", "{mtls: {mode: STRICT}}")
            + &pa("default", "legacy", "{mtls: {mode: PERMISSIVE}}")
            + &pa(
                "reviews",
                "legacy",
                "{selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}",
            )
            + &pa(
                "ratings",
                "legacy",
                "{selector: {matchLabels: {app: ratings}}, portLevelMtls: {9080: {mode: STRICT}, 9090: {mode: UNSET}}}",
            )
            + &pa("unset", "shop", "{mtls: {mode: UNSET}}")
            + &pa(
                "other-namespace",
                "shop",
                "{selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}",
            )),
    );
    let reviews = [("app", "reviews"), ("version", "v1")];
    // Mesh-wide STRICT where nothing else applies; an UNSET namespace
    // policy inherits it.
    assert_eq!(
        mode(&state, "bookinfo", &reviews, 9080),
        (ServerMode::Strict, "istio-system/default (mesh)".into())
    );
    assert_eq!(
        mode(&state, "shop", &[("app", "cart")], 8081),
        (ServerMode::Strict, "istio-system/default (mesh)".into())
    );
    // The namespace overrides the mesh; a workload policy the namespace.
    assert_eq!(
        mode(&state, "legacy", &[("app", "web")], 80),
        (ServerMode::Permissive, "legacy/default (namespace)".into())
    );
    assert_eq!(
        mode(&state, "legacy", &reviews, 9080),
        (ServerMode::Disable, "legacy/reviews (workload)".into())
    );
    // Port level over everything; an UNSET port (and any other port)
    // inherits the workload's, here the namespace's.
    let ratings = [("app", "ratings")];
    assert_eq!(
        mode(&state, "legacy", &ratings, 9080),
        (ServerMode::Strict, "legacy/ratings (port)".into())
    );
    for port in [9090, 15000] {
        assert_eq!(
            mode(&state, "legacy", &ratings, port),
            (ServerMode::Permissive, "legacy/default (namespace)".into())
        );
    }
    // A selector in another namespace never applies.
    assert_eq!(
        mode(&state, "bookinfo", &reviews, 9080).0,
        ServerMode::Strict
    );
}

#[test]
fn competing_policies_on_one_level_take_the_first_by_name() {
    let state = corpus_plus(
        &(pa("b-strict", "bookinfo", "{mtls: {mode: STRICT}}")
            + &pa("a-disable", "bookinfo", "{mtls: {mode: DISABLE}}")
            + &pa(
                "z",
                "bookinfo",
                "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}",
            )
            + &pa(
                "y",
                "bookinfo",
                "{selector: {matchLabels: {version: v1}}, mtls: {mode: PERMISSIVE}}",
            )),
    );
    assert_eq!(
        mode(&state, "bookinfo", &[("app", "details")], 9080),
        (ServerMode::Disable, "bookinfo/a-disable (namespace)".into())
    );
    assert_eq!(
        mode(
            &state,
            "bookinfo",
            &[("app", "reviews"), ("version", "v1")],
            9080
        ),
        (ServerMode::Permissive, "bookinfo/y (workload)".into())
    );
}

#[test]
fn root_namespace_selector_policies_are_workload_level_there_only() {
    let state = corpus_plus(
        &(pa("default", "istio-system", "{mtls: {mode: PERMISSIVE}}")
            + &pa(
                "istiod",
                "istio-system",
                "{selector: {matchLabels: {app: istiod}}, mtls: {mode: STRICT}}",
            )),
    );
    assert_eq!(
        mode(&state, "istio-system", &[("app", "istiod")], 15010),
        (ServerMode::Strict, "istio-system/istiod (workload)".into())
    );
    assert_eq!(
        mode(&state, "bookinfo", &[("app", "istiod")], 15010),
        (ServerMode::Permissive, "istio-system/default (mesh)".into())
    );
}

type Downstream = wire::tls::DownstreamTlsContext;
type Upstream = wire::tls::UpstreamTlsContext;

fn socket_ctx<M: prost::Name + Default>(ts: Option<&wire::core::TransportSocket>) -> Option<M> {
    let ts = ts?;
    assert_eq!(ts.name, "envoy.transport_sockets.tls");
    let Some(wire::core::transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        panic!("{ts:?}")
    };
    Some(inner(any))
}

/// The inbound mTLS context, exactly as the issue and Envoy spell it.
fn assert_inbound_mtls(chain: &wire::listener::FilterChain) {
    use wire::tls::common_tls_context::ValidationContextType;
    let ctx: Downstream = socket_ctx(chain.transport_socket.as_ref()).expect("mTLS");
    let ads = Some(wire::ads());
    assert_eq!(
        ctx,
        Downstream {
            require_client_certificate: Some(wire::boolv(true)),
            common_tls_context: Some(wire::tls::CommonTlsContext {
                tls_certificate_sds_secret_configs: vec![wire::tls::SdsSecretConfig {
                    name: "default".into(),
                    sds_config: ads.clone(),
                }],
                validation_context_type: Some(
                    ValidationContextType::ValidationContextSdsSecretConfig(
                        wire::tls::SdsSecretConfig {
                            name: "ROOTCA".into(),
                            sds_config: ads,
                        }
                    )
                ),
                alpn_protocols: vec!["h2".into(), "http/1.1".into()],
                ..Default::default()
            }),
            ..Default::default()
        }
    );
}

/// A chain's `(transport_protocol, destination_port)` match.
type ChainMatch = (String, Option<u32>);

fn transport(chain: &wire::listener::FilterChain) -> ChainMatch {
    let m = chain.filter_chain_match.clone().unwrap_or_default();
    (m.transport_protocol, m.destination_port.map(|p| p.value))
}

fn filter_names(l: &Listener) -> Vec<&str> {
    l.listener_filters.iter().map(|f| f.name.as_str()).collect()
}

#[test]
fn none_layout_permissive_detects_tls_and_plaintext() {
    let r = translate(&corpus(), &ratings_none(), &opts());
    let l = get::<Listener>(&r, "inbound_10.0.0.40_9080");
    assert_eq!(filter_names(&l), ["envoy.filters.listener.tls_inspector"]);
    let [tls, plain] = l.filter_chains.as_slice() else {
        panic!("{:?}", l.filter_chains)
    };
    assert_eq!(tls.name, "inbound_10.0.0.40_9080-tls");
    assert_eq!(transport(tls), ("tls".into(), None));
    assert_inbound_mtls(tls);
    assert_eq!(plain.name, "inbound_10.0.0.40_9080-plaintext");
    assert_eq!(transport(plain), ("raw_buffer".into(), None));
    assert!(plain.transport_socket.is_none());
    // Otherwise identical: the same connection manager.
    assert_eq!(hcm_of(tls), hcm_of(plain));
}

#[test]
fn none_layout_strict_and_disable() {
    let strict = corpus_plus(&pa("default", "bookinfo", "{mtls: {mode: STRICT}}"));
    let r = translate(&strict, &ratings_none(), &opts());
    let l = get::<Listener>(&r, "inbound_10.0.0.40_9080");
    assert!(l.listener_filters.is_empty());
    let [chain] = l.filter_chains.as_slice() else {
        panic!()
    };
    assert_eq!(chain.name, "inbound_10.0.0.40_9080");
    assert!(
        chain.filter_chain_match.is_none(),
        "plaintext is refused, not matched elsewhere"
    );
    assert_inbound_mtls(chain);

    let disable = corpus_plus(&pa("default", "bookinfo", "{mtls: {mode: DISABLE}}"));
    let r = translate(&disable, &ratings_none(), &opts());
    let l = get::<Listener>(&r, "inbound_10.0.0.40_9080");
    assert!(l.listener_filters.is_empty());
    let [chain] = l.filter_chains.as_slice() else {
        panic!()
    };
    assert!(chain.transport_socket.is_none() && chain.filter_chain_match.is_none());
}

#[test]
fn without_an_identity_permissive_is_plaintext_but_strict_stays_strict() {
    let no_identity = proxy("bookinfo", "10.0.0.40", Interception::None);
    let no_bundle = Options::default();
    for (node, o) in [
        (no_identity.clone(), opts()),
        (ratings_none(), no_bundle.clone()),
    ] {
        let r = translate(&corpus(), &node, &o);
        let l = get::<Listener>(&r, "inbound_10.0.0.40_9080");
        assert!(l.listener_filters.is_empty(), "{node:?}");
        assert_eq!(l.filter_chains.len(), 1);
        assert!(l.filter_chains[0].transport_socket.is_none());
    }
    let strict = corpus_plus(&pa("default", "istio-system", "{mtls: {mode: STRICT}}"));
    let r = translate(&strict, &no_identity, &no_bundle);
    let l = get::<Listener>(&r, "inbound_10.0.0.40_9080");
    assert_inbound_mtls(&l.filter_chains[0]);
}

#[test]
fn redirect_layout_chains_per_port_and_mode() {
    // reviews-v1 takes 9080 (HTTP) and 9443 (TCP); 9443 is STRICT by a
    // port-level setting, 9080 PERMISSIVE by default.
    let state = corpus_plus(
        &("apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: bookinfo}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
  - port: {number: 9443, protocol: TCP, name: tcp}
"
        .to_owned()
            + &pa(
                "reviews",
                "bookinfo",
                "{selector: {matchLabels: {app: reviews}}, portLevelMtls: {9443: {mode: STRICT}}}",
            )),
    );
    let node = with_identity(proxy("bookinfo", "10.0.0.30", Interception::Redirect));
    let r = translate(&state, &node, &opts());
    let vi = get::<Listener>(&r, "virtualInbound");
    assert_eq!(
        filter_names(&vi),
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector"
        ]
    );
    let chains: Vec<(&str, ChainMatch, bool)> = vi
        .filter_chains
        .iter()
        .map(|c| (c.name.as_str(), transport(c), c.transport_socket.is_some()))
        .collect();
    assert_eq!(
        chains,
        [
            ("inbound|9080||-tls", ("tls".into(), Some(9080)), true),
            (
                "inbound|9080||-plaintext",
                ("raw_buffer".into(), Some(9080)),
                false
            ),
            ("inbound|9443||", (String::new(), Some(9443)), true),
            ("virtualInbound-catchall-tcp", (String::new(), None), false),
        ]
    );
    for c in vi
        .filter_chains
        .iter()
        .filter(|c| c.transport_socket.is_some())
    {
        assert_inbound_mtls(c);
    }
    assert_eq!(tcp_of(&vi.filter_chains[2]).stat_prefix, "inbound|9443||");

    // All STRICT: no inspector needed.
    let strict = corpus_plus(&pa("default", "istio-system", "{mtls: {mode: STRICT}}"));
    let r = translate(&strict, &node, &opts());
    let vi = get::<Listener>(&r, "virtualInbound");
    assert_eq!(filter_names(&vi), ["envoy.filters.listener.original_dst"]);
}

fn cluster_tls(r: &Resources, name: &str) -> Option<Upstream> {
    socket_ctx(get::<Cluster>(r, name).transport_socket.as_ref())
}

fn sans(ctx: &Upstream) -> Vec<String> {
    use wire::tls::common_tls_context::ValidationContextType;
    let Some(ValidationContextType::CombinedValidationContext(v)) = ctx
        .common_tls_context
        .as_ref()
        .unwrap()
        .validation_context_type
        .clone()
    else {
        panic!("{ctx:?}")
    };
    assert_eq!(
        v.validation_context_sds_secret_config.unwrap().name,
        "ROOTCA"
    );
    v.default_validation_context
        .unwrap()
        .match_typed_subject_alt_names
        .into_iter()
        .map(|m| {
            assert_eq!(
                m.san_type,
                wire::tls::subject_alt_name_matcher::SanType::Uri as i32
            );
            match m.matcher.unwrap().match_pattern.unwrap() {
                wire::matcher::string_matcher::MatchPattern::Exact(s) => s,
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

const RATINGS: &str = "outbound|9080||ratings.bookinfo.svc.cluster.local";

#[test]
fn auto_mtls_to_destinations_whose_endpoints_all_have_sidecars() {
    let node = with_identity(productpage());
    let r = translate(&corpus(), &node, &opts());
    let ctx = cluster_tls(&r, RATINGS).expect("auto mTLS");
    assert_eq!(
        ctx.sni,
        "outbound_.9080_._.ratings.bookinfo.svc.cluster.local"
    );
    let common = ctx.common_tls_context.as_ref().unwrap();
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].sds_config,
        Some(wire::ads())
    );
    assert_eq!(
        sans(&ctx),
        ["spiffe://cluster.local/ns/bookinfo/sa/bookinfo-ratings"]
    );
    // Subset clusters too, with the subset in the SNI.
    let ctx =
        cluster_tls(&r, "outbound|9080|v1|reviews.bookinfo.svc.cluster.local").expect("auto mTLS");
    assert_eq!(
        ctx.sni,
        "outbound_.9080_.v1_.reviews.bookinfo.svc.cluster.local"
    );
    // Not for DNS or passthrough destinations, nor the fixed clusters.
    for name in [
        "outbound|443||api.payments.example.com",
        "PassthroughCluster",
        "BlackHoleCluster",
    ] {
        if names::<Cluster>(&r).contains(&name.to_string()) {
            assert!(cluster_tls(&r, name).is_none(), "{name}");
        }
    }
    // Without an identity (or a trust bundle) the same proxy sends
    // plaintext.
    assert!(cluster_tls(&translate(&corpus(), &productpage(), &opts()), RATINGS).is_none());
    assert!(cluster_tls(&translate(&corpus(), &node, &Options::default()), RATINGS).is_none());
}

#[test]
fn auto_mtls_is_off_for_sidecarless_or_disabled_endpoints_and_per_subset() {
    let mut state = corpus();
    // mysqldb v2 runs without a sidecar.
    state
        .workloads
        .iter_mut()
        .find(|w| w.name == "mysqldb-v2")
        .unwrap()
        .has_sidecar = false;
    let node = with_identity(productpage());
    let r = translate(&state, &node, &opts());
    let mysql = |subset: &str| format!("outbound|3306|{subset}|mysqldb.bookinfo.svc.cluster.local");
    assert!(
        cluster_tls(&r, &mysql("v1")).is_some(),
        "v1 has sidecars only"
    );
    assert!(cluster_tls(&r, &mysql("v2")).is_none(), "v2 has none");
    assert!(cluster_tls(&r, &mysql("")).is_none(), "mixed: plaintext");

    // A destination whose PeerAuthentication is DISABLE gets plaintext.
    let disabled = corpus_plus(&pa(
        "ratings",
        "bookinfo",
        "{selector: {matchLabels: {app: ratings}}, mtls: {mode: DISABLE}}",
    ));
    assert!(cluster_tls(&translate(&disabled, &node, &opts()), RATINGS).is_none());
    // ... even when only the endpoint's port is.
    let port_disabled = corpus_plus(&pa(
        "ratings",
        "bookinfo",
        "{selector: {matchLabels: {app: ratings}}, portLevelMtls: {9080: {mode: DISABLE}}}",
    ));
    assert!(cluster_tls(&translate(&port_disabled, &node, &opts()), RATINGS).is_none());

    // A destination with no ready endpoint.
    let mut none_ready = corpus();
    for w in none_ready
        .workloads
        .iter_mut()
        .filter(|w| w.name == "ratings-v1")
    {
        w.ready = false;
    }
    assert!(cluster_tls(&translate(&none_ready, &node, &opts()), RATINGS).is_none());
}

/// The corpus with bookinfo/ratings' DestinationRule replaced by `spec`.
fn ratings_rule(spec: &str) -> MeshState {
    let mut state = corpus_plus(&dr("ratings", "bookinfo", spec));
    let rules = &mut state.istio.destination_rules;
    let first = rules
        .iter()
        .position(|d| d.meta.namespace == "bookinfo" && d.meta.name == "ratings")
        .unwrap();
    rules.remove(first);
    state
}

#[test]
fn an_explicit_destination_rule_wins_over_auto_mtls() {
    let node = with_identity(productpage());
    let state = ratings_rule("{host: ratings, trafficPolicy: {tls: {mode: DISABLE}}}");
    assert!(cluster_tls(&translate(&state, &node, &opts()), RATINGS).is_none());
    // A DR without `tls` leaves auto mTLS on (the corpus's has subsets only).
    assert!(cluster_tls(&translate(&corpus(), &node, &opts()), RATINGS).is_some());
    let state = ratings_rule(
        "{host: ratings, trafficPolicy: {connectionPool: {tcp: {maxConnections: 10}}}}",
    );
    assert!(cluster_tls(&translate(&state, &node, &opts()), RATINGS).is_some());
    // An explicit ISTIO_MUTUAL holds whatever the endpoints and identity.
    let mut state = ratings_rule("{host: ratings, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}");
    for w in &mut state.workloads {
        w.has_sidecar = false;
    }
    assert!(cluster_tls(
        &translate(&state, &productpage(), &Options::default()),
        RATINGS
    )
    .is_some());
}

#[test]
fn service_entry_endpoints_take_auto_mtls_by_istio_label() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm, namespace: bookinfo}
spec:
  hosts: [vm.internal]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - address: 10.7.0.1
    labels: {security.istio.io/tlsMode: istio}
    serviceAccount: vm-sa
  - address: 10.7.0.2
    labels: {security.istio.io/tlsMode: istio}
";
    let node = with_identity(proxy("bookinfo", "10.0.0.30", Interception::Redirect));
    let r = translate(&corpus_plus(yaml), &node, &opts());
    let ctx = cluster_tls(&r, "outbound|8080||vm.internal").expect("both labelled");
    assert_eq!(sans(&ctx), ["spiffe://cluster.local/ns/bookinfo/sa/vm-sa"]);
    let unlabelled = yaml.replacen(
        "labels: {security.istio.io/tlsMode: istio}",
        "labels: {}",
        1,
    );
    let r = translate(&corpus_plus(&unlabelled), &node, &opts());
    assert!(cluster_tls(&r, "outbound|8080||vm.internal").is_none());
}

#[test]
fn client_tls_answers_as_the_clusters_do() {
    let state = corpus_plus(&dr(
        "ratings-off",
        "shop",
        "{host: ratings.bookinfo.svc.cluster.local, trafficPolicy: {tls: {mode: DISABLE}}}",
    ));
    let o = Options::default();
    let at = |ns: &str, host: &str, port| client_tls(&state, &o, ns, host, port);
    assert_eq!(
        at("bookinfo", "ratings.bookinfo.svc.cluster.local", 9080),
        Some(ClientTls {
            mode: ClientMode::IstioMutual,
            auto: Some(AutoReason::AllSidecars),
            destination_rule: Some("bookinfo/ratings".into()),
        })
    );
    // The shop namespace's own rule applies to its clients.
    assert_eq!(
        at("shop", "ratings.bookinfo.svc.cluster.local", 9080),
        Some(ClientTls {
            mode: ClientMode::Disable,
            auto: None,
            destination_rule: Some("shop/ratings-off".into()),
        })
    );
    assert_eq!(
        at("bookinfo", "details.bookinfo.svc.cluster.local", 9080),
        Some(ClientTls {
            mode: ClientMode::IstioMutual,
            auto: None,
            destination_rule: Some("bookinfo/details".into()),
        })
    );
    assert_eq!(
        at("bookinfo", "ratings.bookinfo.svc.cluster.local", 1),
        None
    );
    assert_eq!(at("bookinfo", "nothing.example", 80), None);
}

type Secret = wire::tls::Secret;

#[test]
fn sds_serves_the_trust_bundle_and_envoys_certificate_files() {
    use wire::{core::data_source::Specifier, tls::secret::Type};
    let secret_type = TypeUrl::of::<Secret>();
    // ROOTCA for every proxy: the whole bundle (both roots), inline.
    let r = translate(&corpus(), &productpage(), &opts());
    assert_eq!(names::<Secret>(&r), ["ROOTCA"]);
    let root = get::<Secret>(&r, "ROOTCA");
    let Some(Type::ValidationContext(v)) = root.r#type else {
        panic!("{root:?}")
    };
    assert_eq!(
        v.trusted_ca.unwrap().specifier,
        Some(Specifier::InlineString(BUNDLE.into()))
    );
    // Our proxy makes its own key: no `default`.
    let r = translate(&corpus(), &with_identity(productpage()), &opts());
    assert_eq!(names::<Secret>(&r), ["ROOTCA"]);
    // Envoy's files.
    let mut envoy = productpage();
    envoy.identity = IdentitySource::Files {
        cert_chain: "/etc/envoy/cert-chain.pem".into(),
        key: "/etc/envoy/key.pem".into(),
    };
    let r = translate(&corpus(), &envoy, &opts());
    assert_eq!(names::<Secret>(&r), ["ROOTCA", "default"]);
    let Some(Type::TlsCertificate(cert)) = get::<Secret>(&r, "default").r#type else {
        panic!()
    };
    assert_eq!(
        cert.certificate_chain.unwrap().specifier,
        Some(Specifier::Filename("/etc/envoy/cert-chain.pem".into()))
    );
    assert_eq!(
        cert.private_key.unwrap().specifier,
        Some(Specifier::Filename("/etc/envoy/key.pem".into()))
    );
    // No CA: nothing to serve, but the type is declared (an answer).
    let r = translate(&corpus(), &productpage(), &Options::default());
    assert!(names::<Secret>(&r).is_empty());
    assert!(r.of_type(&secret_type).is_some());
}
