//! TLS transport sockets and SDS trust bundles, in the shapes Istio and
//! ringmesh-control emit.

use ringmesh_config::model::{
    ClusterTlsSpec, DownstreamTlsMode, IdentitySpec, ListenerTlsSpec, UpstreamTlsMode,
};

use super::*;
use crate::wire::pb::envoy::{
    config::{
        core::v3::{data_source::Specifier, ConfigSource, DataSource},
        listener::v3::{listener_filter, FilterChainMatch, ListenerFilter},
    },
    extensions::{
        filters::listener::tls_inspector::v3::TlsInspector,
        transport_sockets::{
            raw_buffer::v3::RawBuffer,
            tls::v3::{
                common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
                secret,
                subject_alt_name_matcher::SanType,
                tls_parameters::TlsProtocol,
                CertificateValidationContext, CommonTlsContext, DownstreamTlsContext,
                SdsSecretConfig, Secret, SubjectAltNameMatcher, TlsCertificate, TlsParameters,
                UpstreamTlsContext,
            },
        },
    },
    r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher},
};

const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.into(),
        sds_config: Some(ConfigSource::default()),
    }
}

fn uri_san(s: &str) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(s.into())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Istio's ISTIO_MUTUAL common context.
fn common(sans: &[&str]) -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds("default")],
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: sans.iter().map(|s| uri_san(s)).collect(),
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds("ROOTCA")),
                ..Default::default()
            },
        )),
        alpn_protocols: vec!["istio-peer-exchange".into(), "istio".into()],
        ..Default::default()
    }
}

fn socket<M: Name>(m: &M) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(m))),
    }
}

fn upstream(ctx: UpstreamTlsContext) -> Cluster {
    let mut c = cluster_of(
        "outbound|9080||reviews.default.svc.cluster.local",
        DiscoveryType::Eds,
    );
    c.transport_socket = Some(socket(&ctx));
    c
}

fn istio_upstream(sans: &[&str]) -> UpstreamTlsContext {
    UpstreamTlsContext {
        common_tls_context: Some(common(sans)),
        sni: "outbound_.9080_._.reviews.default.svc.cluster.local".into(),
        ..Default::default()
    }
}

fn downstream_ctx() -> DownstreamTlsContext {
    DownstreamTlsContext {
        common_tls_context: Some(common(&[])),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    }
}

fn inspector() -> ListenerFilter {
    ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

fn matching(proto: &str) -> Option<FilterChainMatch> {
    Some(FilterChainMatch {
        transport_protocol: proto.into(),
        ..Default::default()
    })
}

/// Istio's PERMISSIVE inbound listener: TLS inspector, a `tls` chain with
/// mTLS and a `raw_buffer` chain without, `tls_first` deciding the order.
fn permissive(tls_first: bool) -> Listener {
    let mut l = rds_listener("inbound", "in");
    let mut tls = l.filter_chains[0].clone();
    tls.filter_chain_match = matching("tls");
    tls.transport_socket = Some(socket(&downstream_ctx()));
    let mut raw = l.filter_chains[0].clone();
    raw.filter_chain_match = matching("raw_buffer");
    l.filter_chains = if tls_first {
        vec![tls, raw]
    } else {
        vec![raw, tls]
    };
    l.listener_filters = vec![inspector()];
    l
}

fn strict() -> Listener {
    let mut l = rds_listener("inbound", "in");
    l.filter_chains[0].transport_socket = Some(socket(&downstream_ctx()));
    l
}

fn root_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

fn root_secret(pem: &str, inline_string: bool) -> Secret {
    Secret {
        name: "ROOTCA".into(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(DataSource {
                    specifier: Some(if inline_string {
                        Specifier::InlineString(pem.into())
                    } else {
                        Specifier::InlineBytes(pem.as_bytes().to_vec())
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
    }
}

fn cluster_tls(c: &Cluster) -> Result<(Option<ClusterTlsSpec>, SecretRefs), String> {
    match conv(ResourceType::Cluster, &c.name, c) {
        Ok(Converted::Cluster(x)) => Ok((x.spec.tls, x.refs)),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.to_string()),
    }
}

fn listener_tls(l: &Listener) -> Result<(Option<ListenerTlsSpec>, SecretRefs), String> {
    match conv(ResourceType::Listener, &l.name, l) {
        Ok(Converted::Listener(x)) => Ok((x.spec.tls, x.refs)),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn istio_mutual_cluster() {
    let (tls, refs) = cluster_tls(&upstream(istio_upstream(&[REVIEWS]))).unwrap();
    assert_eq!(
        tls,
        Some(ClusterTlsSpec {
            mode: UpstreamTlsMode::IstioMutual,
            subject_alt_names: vec![REVIEWS.into()],
            sni: Some("outbound_.9080_._.reviews.default.svc.cluster.local".into()),
        })
    );
    assert_eq!(
        refs,
        SecretRefs {
            own_cert: true,
            root_ca: true
        }
    );
    // No SANs: any workload of the trust domain; no SNI.
    let mut ctx = istio_upstream(&[]);
    ctx.sni.clear();
    let (tls, _) = cluster_tls(&upstream(ctx)).unwrap();
    let tls = tls.unwrap();
    assert!(tls.subject_alt_names.is_empty() && tls.sni.is_none());
    // The SDS-only validation context form.
    let mut ctx = istio_upstream(&[]);
    ctx.common_tls_context
        .as_mut()
        .unwrap()
        .validation_context_type = Some(ValidationContextType::ValidationContextSdsSecretConfig(
        sds("ROOTCA"),
    ));
    assert!(cluster_tls(&upstream(ctx)).unwrap().0.is_some());
    // The deprecated untyped SAN matchers.
    let mut ctx = istio_upstream(&[]);
    if let Some(ValidationContextType::CombinedValidationContext(c)) = &mut ctx
        .common_tls_context
        .as_mut()
        .unwrap()
        .validation_context_type
    {
        #[allow(deprecated)]
        {
            c.default_validation_context
                .as_mut()
                .unwrap()
                .match_subject_alt_names = vec![StringMatcher {
                match_pattern: Some(MatchPattern::Exact(REVIEWS.into())),
                ..Default::default()
            }];
        }
    }
    assert_eq!(
        cluster_tls(&upstream(ctx))
            .unwrap()
            .0
            .unwrap()
            .subject_alt_names,
        [REVIEWS]
    );
    // A raw-buffer socket is plaintext.
    let mut c = cluster_of("c", DiscoveryType::Eds);
    c.transport_socket = Some(TransportSocket {
        name: "envoy.transport_sockets.raw_buffer".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(
            &RawBuffer::default(),
        ))),
    });
    assert_eq!(cluster_tls(&c).unwrap(), (None, SecretRefs::default()));
}

#[test]
fn cluster_tls_that_cannot_be_honoured_is_rejected() {
    let name = "outbound|9080||reviews.default.svc.cluster.local";
    let bad = |f: &dyn Fn(&mut UpstreamTlsContext), want: &str| {
        let mut ctx = istio_upstream(&[REVIEWS]);
        f(&mut ctx);
        let got = cluster_tls(&upstream(ctx)).unwrap_err();
        assert_eq!(got, format!("Cluster {name:?}: {want}"));
    };
    fn common(ctx: &mut UpstreamTlsContext) -> &mut CommonTlsContext {
        ctx.common_tls_context.as_mut().unwrap()
    }
    fn combined(ctx: &mut UpstreamTlsContext) -> &mut CombinedCertificateValidationContext {
        match &mut ctx
            .common_tls_context
            .as_mut()
            .unwrap()
            .validation_context_type
        {
            Some(ValidationContextType::CombinedValidationContext(c)) => c,
            _ => unreachable!(),
        }
    }
    bad(
        &|c| common(c).tls_certificate_sds_secret_configs = vec![sds("file-cert")],
        "transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].name: \"file-cert\": only \"default\" (this proxy's own certificate, from its identity) is supported",
    );
    bad(
        &|c| {
            common(c).tls_certificate_sds_secret_configs.clear();
            common(c).tls_certificates = vec![TlsCertificate::default()];
        },
        "transport_socket.typed_config.common_tls_context.tls_certificates: certificates inline or from files are not supported; the proxy presents its own (SDS secret \"default\")",
    );
    bad(
        &|c| combined(c).validation_context_sds_secret_config = Some(sds("other-roots")),
        "transport_socket.typed_config.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name: \"other-roots\": only \"ROOTCA\" (the mesh trust bundle) is supported",
    );
    bad(
        &|c| {
            combined(c)
                .default_validation_context
                .as_mut()
                .unwrap()
                .match_typed_subject_alt_names[0]
                .san_type = SanType::Dns as i32
        },
        "transport_socket.typed_config.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names[0].san_type: only URI SANs (SPIFFE IDs) are supported",
    );
    bad(
        &|c| {
            combined(c)
                .default_validation_context
                .as_mut()
                .unwrap()
                .match_typed_subject_alt_names[0]
                .matcher = Some(StringMatcher {
                match_pattern: Some(MatchPattern::Prefix("spiffe://".into())),
                ..Default::default()
            })
        },
        "transport_socket.typed_config.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names[0].matcher: only a non-empty exact match is supported",
    );
    bad(
        &|c| {
            combined(c).default_validation_context.as_mut().unwrap().crl = Some(DataSource::default())
        },
        "transport_socket.typed_config.common_tls_context.combined_validation_context.default_validation_context.crl: not supported (mesh peers are verified as SPIFFE X.509-SVIDs against the trust bundle)",
    );
    bad(
        &|c| {
            common(c).validation_context_type = Some(ValidationContextType::ValidationContext(
                CertificateValidationContext::default(),
            ))
        },
        "transport_socket.typed_config.common_tls_context.validation_context: inline validation contexts are not supported; the trust bundle comes from SDS \"ROOTCA\"",
    );
    bad(
        &|c| common(c).validation_context_type = None,
        "transport_socket.typed_config.common_tls_context.validation_context_type: missing: mesh mTLS verifies peers against SDS \"ROOTCA\"",
    );
    bad(
        &|c| c.allow_renegotiation = true,
        "transport_socket.typed_config.allow_renegotiation: renegotiation is never allowed",
    );
    bad(
        &|c| {
            common(c).tls_params = Some(TlsParameters {
                cipher_suites: vec!["ECDHE-RSA-AES128-SHA".into()],
                ..Default::default()
            })
        },
        "transport_socket.typed_config.common_tls_context.tls_params.cipher_suites: not supported (the proxy's suites are fixed: TLS 1.3 and TLS 1.2 ECDHE with AEAD ciphers)",
    );
    bad(
        &|c| {
            common(c).tls_params = Some(TlsParameters {
                tls_maximum_protocol_version: TlsProtocol::TlSv11 as i32,
                ..Default::default()
            })
        },
        "transport_socket.typed_config.common_tls_context.tls_params.tls_maximum_protocol_version: TLS 1.2 is the minimum this proxy speaks",
    );
    // A version range within 1.2-1.3 is fine.
    let mut ctx = istio_upstream(&[]);
    ctx.common_tls_context.as_mut().unwrap().tls_params = Some(TlsParameters {
        tls_minimum_protocol_version: TlsProtocol::TlSv12 as i32,
        tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
        ..Default::default()
    });
    assert!(cluster_tls(&upstream(ctx)).is_ok());
    // Auto mTLS by endpoint metadata is not supported.
    let mut c = upstream(istio_upstream(&[]));
    c.transport_socket_matches = vec![Default::default()];
    assert!(cluster_tls(&c)
        .unwrap_err()
        .contains("transport_socket_matches: per-endpoint transport sockets"));
}

#[test]
fn strict_and_permissive_listeners() {
    let (tls, refs) = listener_tls(&strict()).unwrap();
    assert_eq!(
        tls,
        Some(ListenerTlsSpec {
            mode: DownstreamTlsMode::Strict
        })
    );
    assert!(refs.own_cert && refs.root_ca);
    for tls_first in [true, false] {
        let (tls, refs) = listener_tls(&permissive(tls_first)).unwrap();
        assert_eq!(
            tls,
            Some(ListenerTlsSpec {
                mode: DownstreamTlsMode::Permissive
            }),
            "tls_first: {tls_first}"
        );
        assert!(refs.root_ca);
    }
    // A TLS inspector in front of one mTLS chain matching "tls": STRICT.
    let mut l = strict();
    l.listener_filters = vec![inspector()];
    l.filter_chains[0].filter_chain_match = matching("tls");
    assert_eq!(
        listener_tls(&l).unwrap().0.unwrap().mode,
        DownstreamTlsMode::Strict
    );
    // Plaintext stays plaintext.
    assert_eq!(
        listener_tls(&rds_listener("p", "r")).unwrap(),
        (None, SecretRefs::default())
    );
}

#[test]
fn listener_tls_that_cannot_be_honoured_is_rejected() {
    let err = |l: &Listener| listener_tls(l).unwrap_err();
    let mut l = strict();
    if let Some(TransportSocket {
        config_type: Some(transport_socket::ConfigType::TypedConfig(a)),
        ..
    }) = &mut l.filter_chains[0].transport_socket
    {
        let mut ctx = downstream_ctx();
        ctx.require_client_certificate = None;
        *a = any(&ctx);
    }
    assert_eq!(
        err(&l),
        "Listener \"inbound\": filter_chains[0].transport_socket.typed_config.require_client_certificate: must be true: only mutual TLS is supported (TLS without client certificates is not)"
    );
    // Restricting client SANs on the server side.
    let mut l = strict();
    let mut ctx = downstream_ctx();
    ctx.common_tls_context = Some(common(&[REVIEWS]));
    l.filter_chains[0].transport_socket = Some(socket(&ctx));
    assert!(err(&l).contains("restricting client identities in the TLS context is not supported"));
    // The PERMISSIVE pair without the inspector, with different filters,
    // or with the wrong protocols.
    let mut l = permissive(true);
    l.listener_filters.clear();
    assert_eq!(
        err(&l),
        "Listener \"inbound\": listener_filters: the PERMISSIVE pair of filter chains needs the TLS inspector listener filter"
    );
    let mut l = permissive(true);
    l.filter_chains[1].filters[0].name = "other".into();
    assert_eq!(
        err(&l),
        "Listener \"inbound\": filter_chains[1].filters: must equal the TLS chain's filters (PERMISSIVE serves TLS and plaintext alike)"
    );
    let mut l = permissive(true);
    l.filter_chains[1].filter_chain_match = matching("tls");
    assert!(err(&l)
        .contains("filter_chains: two filter chains are supported only as the PERMISSIVE pair"));
    let mut l = permissive(true);
    l.filter_chains[1].filter_chain_match = Some(FilterChainMatch {
        transport_protocol: "raw_buffer".into(),
        server_names: vec!["x".into()],
        ..Default::default()
    });
    assert!(err(&l)
        .contains("filter_chains[1].filter_chain_match: filter chain matching is not supported"));
    let mut l = permissive(true);
    l.filter_chains[0].transport_socket = None;
    assert!(err(&l).contains("filter_chains[0].transport_socket: two filter chains"));
    let mut l = permissive(true);
    l.listener_filters.push(ListenerFilter {
        name: "envoy.filters.listener.http_inspector".into(),
        ..Default::default()
    });
    assert!(err(&l).contains(
        "listener_filters[1]: listener filter \"envoy.filters.listener.http_inspector\" is not supported"
    ));
    let mut l = rds_listener("inbound", "r");
    l.filter_chains[0].filter_chain_match = matching("tls");
    assert!(err(&l).contains("a chain matching transport_protocol \"tls\" must terminate it"));
}

#[test]
fn root_ca_secret_is_a_trust_bundle() {
    let pem = root_pem();
    for inline_string in [false, true] {
        let Converted::Secret(b) = conv(
            ResourceType::Secret,
            "ROOTCA",
            &root_secret(&pem, inline_string),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((b.name.as_str(), b.pem.as_str()), ("ROOTCA", pem.as_str()));
    }
    let e = |name: &str, s: &Secret| err_text(ResourceType::Secret, name, s);
    assert_eq!(
        e("default", &root_secret(&pem, false)),
        "Secret \"default\": name: only the trust bundle \"ROOTCA\" is taken over ADS; this proxy's own certificate comes from its identity"
    );
    assert_eq!(
        e("ROOTCA", &root_secret("not a pem", false)),
        "Secret \"ROOTCA\": validation_context.trusted_ca: trust bundle PEM contains no CERTIFICATE block"
    );
    let cert = Secret {
        name: "ROOTCA".into(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate::default())),
    };
    assert_eq!(
        e("ROOTCA", &cert),
        "Secret \"ROOTCA\": validation_context: missing (the secret must be a validation context)"
    );
    let mut file = root_secret(&pem, false);
    if let Some(secret::Type::ValidationContext(v)) = &mut file.r#type {
        v.trusted_ca = Some(DataSource {
            specifier: Some(Specifier::Filename("/etc/roots.pem".into())),
            ..Default::default()
        });
    }
    assert!(e("ROOTCA", &file)
        .contains("validation_context.trusted_ca: only inline_bytes or inline_string"));
}

fn identity() -> IdentitySpec {
    IdentitySpec {
        trust_domain: "cluster.local".into(),
        namespace: None,
        service_account: None,
        ca_address: None,
        token_file: None,
        ttl: None,
        cert_chain: Some("cert.pem".into()),
        private_key: Some("key.pem".into()),
        trust_bundle: Some("roots.pem".into()),
    }
}

#[test]
fn tls_resources_need_an_identity() {
    let mut s = XdsState::new(false);
    let c = any(&upstream(istio_upstream(&[REVIEWS])));
    let e = s
        .apply(ResourceType::Cluster, "c", "1", &c.type_url, &c.value)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Cluster \"c\": transport_socket: needs this proxy's own certificate (SDS \"default\"), but its bootstrap has no identity section"
    );
    let l = any(&permissive(false));
    assert_eq!(
        s.apply(ResourceType::Listener, "l", "1", &l.type_url, &l.value)
            .unwrap_err()
            .field,
        "filter_chains[1].transport_socket"
    );
    // Plaintext resources are fine without one.
    let p = any(&cluster_of("p", DiscoveryType::Eds));
    s.apply(ResourceType::Cluster, "p", "1", &p.type_url, &p.value)
        .unwrap();
}

#[test]
fn the_trust_bundle_follows_its_users_and_reaches_the_config() {
    let mut s = XdsState::new(true);
    let put = |s: &mut XdsState, t: ResourceType, name: &str, body: Any| {
        s.apply(t, name, "v1", &body.type_url, &body.value).unwrap();
    };
    put(
        &mut s,
        ResourceType::Listener,
        "inbound",
        any(&permissive(true)),
    );
    put(
        &mut s,
        ResourceType::RouteConfiguration,
        "in",
        any(&route_config(
            "in",
            vec![route(PathSpecifier::Prefix("/".into()), "reviews", None)],
        )),
    );
    let cluster = upstream(istio_upstream(&[REVIEWS]));
    put(&mut s, ResourceType::Cluster, "reviews", any(&cluster));
    assert_eq!(
        s.wanted(ResourceType::Secret),
        BTreeSet::from(["ROOTCA".to_owned()])
    );
    let pem = root_pem();
    put(
        &mut s,
        ResourceType::Secret,
        "ROOTCA",
        any(&root_secret(&pem, false)),
    );

    let base = ProxyConfig {
        identity: Some(identity()),
        ..Default::default()
    };
    let cfg = s.to_proxy_config(&base);
    assert_eq!(cfg.trust_bundles.len(), 1);
    assert_eq!(
        cfg.listeners[0].tls.as_ref().unwrap().mode,
        DownstreamTlsMode::Permissive
    );
    assert_eq!(
        cfg.clusters[0].tls.as_ref().unwrap().mode,
        UpstreamTlsMode::IstioMutual
    );
    let snap = ringmesh_config::compile(&cfg, s.version()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snap.sds_roots.len(), 1);
    assert_eq!(
        snap.listeners[0].tls,
        ringmesh_config::DownstreamTls::Permissive
    );
    assert!(snap.clusters[0].tls.is_some());

    // Nothing uses the bundle any more: it is unsubscribed and dropped.
    s.remove(ResourceType::Listener, "inbound");
    s.remove(ResourceType::Cluster, "reviews");
    assert!(s.wanted(ResourceType::Secret).is_empty());
    s.retain_wanted();
    assert!(s.versions(ResourceType::Secret).is_empty());
    assert!(s.to_proxy_config(&base).trust_bundles.is_empty());
}

#[test]
fn the_client_subscribes_to_the_trust_bundle_by_name() {
    use crate::{
        client::{Engine, NodeIdentity},
        wire::{DeltaResponse, RawResource},
    };
    let base = ProxyConfig {
        identity: Some(identity()),
        ..Default::default()
    };
    let mut delivered: Vec<ProxyConfig> = Vec::new();
    let mut engine = Engine::new(base, |cfg: ProxyConfig, _| {
        delivered.push(cfg);
        Ok(())
    });
    let raw = |name: &str, body: Any| RawResource {
        name: name.into(),
        version: "1".into(),
        body: Some((body.type_url, body.value)),
    };
    let cluster = upstream(istio_upstream(&[REVIEWS]));
    let out = engine.on_response(DeltaResponse {
        type_url: ResourceType::Cluster.type_url(),
        nonce: "n1".into(),
        resources: vec![raw(&cluster.name, any(&cluster))],
        removed: vec![],
    });
    assert_eq!(out[0].error, None, "ACK");
    let sds = out
        .iter()
        .find(|r| r.type_url == ResourceType::Secret.type_url())
        .expect("an SDS subscription");
    assert_eq!(sds.subscribe, ["ROOTCA"]);

    let pem = root_pem();
    let out = engine.on_response(DeltaResponse {
        type_url: ResourceType::Secret.type_url(),
        nonce: "n2".into(),
        resources: vec![raw("ROOTCA", any(&root_secret(&pem, false)))],
        removed: vec![],
    });
    assert_eq!(out[0].error, None, "ACK");
    // A reconnect asks for it by name, with the version held.
    let again = engine.initial_requests(&NodeIdentity::default());
    let sds = again
        .iter()
        .find(|r| r.type_url == ResourceType::Secret.type_url())
        .unwrap();
    assert_eq!(sds.subscribe, ["ROOTCA"]);
    assert_eq!(
        sds.initial_versions.get("ROOTCA").map(String::as_str),
        Some("1")
    );
    // A bad bundle is NACKed and the held one stays.
    let out = engine.on_response(DeltaResponse {
        type_url: ResourceType::Secret.type_url(),
        nonce: "n3".into(),
        resources: vec![RawResource {
            version: "2".into(),
            ..raw("ROOTCA", any(&root_secret("garbage", false)))
        }],
        removed: vec![],
    });
    assert!(out[0]
        .error
        .as_deref()
        .unwrap()
        .contains("Secret \"ROOTCA\""));
    drop(engine);
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[1].trust_bundles[0].pem, pem);
}
