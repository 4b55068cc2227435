//! Clusters and load assignments.

use super::*;
use crate::wire::{
    cluster::cluster::{ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy},
    tls,
};

fn kind(c: &Cluster) -> DiscoveryType {
    match c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(t).unwrap(),
        _ => panic!("no type"),
    }
}

fn reviews() -> ProxyNode {
    proxy("bookinfo", "10.0.0.30", Interception::Redirect)
}

#[test]
fn a_cluster_per_visible_port_and_subset() {
    let r = run(&corpus(), &reviews());
    let all = names::<Cluster>(&r);
    for expected in [
        "outbound|9080||reviews.bookinfo.svc.cluster.local",
        "outbound|9080|v1|reviews.bookinfo.svc.cluster.local",
        "outbound|9080|v2|reviews.bookinfo.svc.cluster.local",
        "outbound|9080|v3|reviews.bookinfo.svc.cluster.local",
        "outbound|9080||ratings.bookinfo.svc.cluster.local",
        "outbound|9080|v1|ratings.bookinfo.svc.cluster.local",
        "outbound|9080|shadow|productpage.bookinfo.svc.cluster.local",
        "outbound|3306|v2|mysqldb.bookinfo.svc.cluster.local",
        "outbound|8080||cart.shop.svc.cluster.local",
        "outbound|15010||istiod.istio-system.svc.cluster.local",
        "outbound|443||api.payments.example.com",
        "outbound|443||*.wikipedia.org",
        "outbound|8080||inventory.vm.example.com",
        "inbound|9080||",
        "PassthroughCluster",
        "BlackHoleCluster",
        "InboundPassthroughCluster",
    ] {
        assert!(
            all.contains(&expected.to_string()),
            "{expected} missing from {all:#?}"
        );
    }
    // shop/ledger is exported to its own namespace only.
    assert!(!all.iter().any(|n| n.contains("ledger")), "{all:?}");
    // Every EDS cluster has its load assignment, and nothing else does.
    let eds: Vec<String> = all
        .iter()
        .filter(|n| kind(&get::<Cluster>(&r, n)) == DiscoveryType::Eds)
        .cloned()
        .collect();
    assert_eq!(eds, names::<Cla>(&r));
}

#[test]
fn a_cluster_without_policy_has_only_what_the_proxy_understands() {
    let r = run(&corpus(), &reviews());
    let name = "outbound|9080|v1|ratings.bookinfo.svc.cluster.local";
    let expected = Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(wire::cluster::cluster::EdsClusterConfig {
            eds_config: Some(wire::ads()),
            service_name: name.into(),
        }),
        connect_timeout: Some(wire::Duration {
            seconds: 10,
            nanos: 0,
        }),
        lb_policy: LbPolicy::RoundRobin as i32,
        ..Default::default()
    };
    assert_eq!(get::<Cluster>(&r, name), expected);
}

#[test]
fn load_assignments_hold_ready_workloads_with_locality_and_weight() {
    // From istiod (no locality of its own): no locality-aware priorities.
    let node = proxy("istio-system", "10.9.0.1", Interception::Redirect);
    let r = run(&corpus(), &node);
    let cla = get::<Cla>(&r, "outbound|9080||reviews.bookinfo.svc.cluster.local");
    assert_eq!(
        cla.cluster_name,
        "outbound|9080||reviews.bookinfo.svc.cluster.local"
    );
    assert_eq!(
        endpoints(&cla),
        vec![
            ("10.0.0.30:9080".into(), "us-east/a/1".into(), 1, 0),
            ("10.0.0.31:9080".into(), "us-east/b/".into(), 2, 0),
            // 10.0.0.33 is not ready.
            ("10.0.0.32:9080".into(), "us-west/c/".into(), 1, 0),
        ]
    );
    // A subset filters by its labels.
    let v3 = get::<Cla>(&r, "outbound|9080|v3|reviews.bookinfo.svc.cluster.local");
    assert_eq!(
        endpoints(&v3),
        vec![("10.0.0.32:9080".into(), "us-west/c/".into(), 1, 0)]
    );
    // The workload's own port overrides the service's target port.
    let cart = get::<Cla>(&r, "outbound|8080||cart.shop.svc.cluster.local");
    let addrs: Vec<String> = endpoints(&cart).into_iter().map(|e| e.0).collect();
    // Grouped by locality, in locality order.
    assert_eq!(addrs, ["10.1.1.3:8081", "10.1.1.1:8082", "10.1.1.2:8081"]);
}

#[test]
fn destination_rule_policy_most_specific_setting_wins() {
    let r = run(&corpus(), &reviews());
    let v1 = get::<Cluster>(&r, "outbound|9080|v1|reviews.bookinfo.svc.cluster.local");
    assert_eq!(v1.lb_policy, LbPolicy::LeastRequest as i32);
    // portLevelSettings replaces the whole connectionPool for 9080 (as
    // Istio): the rule's connectTimeout and http settings are gone.
    assert_eq!(
        v1.connect_timeout,
        Some(wire::Duration {
            seconds: 10,
            nanos: 0
        })
    );
    let t = &v1.circuit_breakers.as_ref().unwrap().thresholds[0];
    assert_eq!(t.max_connections.as_ref().unwrap().value, 200);
    assert_eq!(
        t.max_pending_requests.as_ref().unwrap().value,
        u32::MAX,
        "unset is unlimited"
    );
    assert!(
        v1.typed_extension_protocol_options.is_empty(),
        "the port-level pool has no http settings"
    );
    let od = v1.outlier_detection.as_ref().unwrap();
    assert_eq!(od.consecutive_5xx.as_ref().unwrap().value, 7);
    assert_eq!(od.enforcing_consecutive_5xx.as_ref().unwrap().value, 100);
    assert_eq!(
        od.interval,
        Some(wire::Duration {
            seconds: 300,
            nanos: 0
        })
    );
    assert_eq!(
        od.base_ejection_time,
        Some(wire::Duration {
            seconds: 900,
            nanos: 0
        })
    );
    assert_eq!(od.max_ejection_percent.as_ref().unwrap().value, 50);
    // The v3 subset overrides the balancer only.
    let v3 = get::<Cluster>(&r, "outbound|9080|v3|reviews.bookinfo.svc.cluster.local");
    assert_eq!(v3.lb_policy, LbPolicy::RoundRobin as i32);
    assert!(v3.outlier_detection.is_some());
    assert!(v3.transport_socket.is_none(), "no TLS unless asked for");
}

#[test]
fn connection_pool_http_settings_become_protocol_options() {
    let state = corpus_plus(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-pool, namespace: istio-system}
spec:
  host: ratings.bookinfo.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp:
        tcpKeepalive: {time: 60s, interval: 10s, probes: 3}
      http: {maxRequestsPerConnection: 5, idleTimeout: 30s, http2MaxRequests: 1000, maxRetries: 2}
",
    );
    // From istio-system the root-namespace rule wins over bookinfo's.
    let node = proxy("istio-system", "10.9.0.1", Interception::Redirect);
    let r = run(&state, &node);
    let c = get::<Cluster>(&r, "outbound|9080||ratings.bookinfo.svc.cluster.local");
    let t = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
    assert_eq!(t.max_requests.as_ref().unwrap().value, 1000);
    assert_eq!(t.max_retries.as_ref().unwrap().value, 2);
    let ka = c
        .upstream_connection_options
        .as_ref()
        .unwrap()
        .tcp_keepalive
        .as_ref()
        .unwrap();
    assert_eq!(ka.keepalive_time.as_ref().unwrap().value, 60);
    assert_eq!(ka.keepalive_probes.as_ref().unwrap().value, 3);
    assert_eq!(c.typed_extension_protocol_options.len(), 1);
    let any = &c.typed_extension_protocol_options
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    let opts: wire::upstream_http::HttpProtocolOptions = inner(any);
    let common = opts.common_http_protocol_options.unwrap();
    assert_eq!(common.max_requests_per_connection.unwrap().value, 5);
    assert_eq!(
        common.idle_timeout,
        Some(wire::Duration {
            seconds: 30,
            nanos: 0
        })
    );
    assert!(
        opts.upstream_protocol_options.is_some(),
        "Envoy requires the protocol choice"
    );
}

#[test]
fn consistent_hash_sets_maglev_and_the_routes_hash_policy() {
    let r = run(&corpus(), &reviews());
    let c = get::<Cluster>(&r, "outbound|9080||productpage.bookinfo.svc.cluster.local");
    assert_eq!(c.lb_policy, LbPolicy::Maglev as i32);
    let Some(LbConfig::MaglevLbConfig(m)) = &c.lb_config else {
        panic!("{:?}", c.lb_config)
    };
    assert_eq!(m.table_size.as_ref().unwrap().value, 65537);
}

#[test]
fn istio_mutual_uses_sds_and_the_services_spiffe_identities() {
    let r = run(&corpus(), &reviews());
    let c = get::<Cluster>(&r, "outbound|9080||details.bookinfo.svc.cluster.local");
    let ts = c
        .transport_socket
        .as_ref()
        .expect("ISTIO_MUTUAL asks for TLS");
    assert_eq!(ts.name, "envoy.transport_sockets.tls");
    let Some(wire::core::transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        panic!()
    };
    let ctx: tls::UpstreamTlsContext = inner(any);
    assert_eq!(
        ctx.sni,
        "outbound_.9080_._.details.bookinfo.svc.cluster.local"
    );
    let common = ctx.common_tls_context.unwrap();
    assert_eq!(common.tls_certificate_sds_secret_configs.len(), 1);
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].sds_config,
        Some(wire::ads())
    );
    let Some(tls::common_tls_context::ValidationContextType::CombinedValidationContext(v)) =
        common.validation_context_type
    else {
        panic!()
    };
    assert_eq!(
        v.validation_context_sds_secret_config.unwrap().name,
        "ROOTCA"
    );
    let sans: Vec<String> = v
        .default_validation_context
        .unwrap()
        .match_typed_subject_alt_names
        .into_iter()
        .map(|m| {
            assert_eq!(
                m.san_type,
                tls::subject_alt_name_matcher::SanType::Uri as i32
            );
            match m.matcher.unwrap().match_pattern.unwrap() {
                wire::matcher::string_matcher::MatchPattern::Exact(s) => s,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(
        sans,
        ["spiffe://cluster.local/ns/bookinfo/sa/bookinfo-details"]
    );
}

#[test]
fn service_entry_resolutions() {
    let r = run(&corpus(), &reviews());
    // STATIC: EDS with the entry's endpoints, target port and overrides.
    let inv = get::<Cluster>(&r, "outbound|8080||inventory.vm.example.com");
    assert_eq!(kind(&inv), DiscoveryType::Eds);
    let cla = get::<Cla>(&r, "outbound|8080||inventory.vm.example.com");
    assert_eq!(
        endpoints(&cla),
        vec![
            ("10.1.0.5:9000".into(), "us-east/a/".into(), 1, 0),
            ("10.1.0.6:9001".into(), "us-east/b/".into(), 3, 0),
        ]
    );
    // DNS: STRICT_DNS resolving the host itself.
    let api = get::<Cluster>(&r, "outbound|443||api.payments.example.com");
    assert_eq!(kind(&api), DiscoveryType::StrictDns);
    let la = api.load_assignment.as_ref().unwrap();
    assert_eq!(
        endpoints(la),
        vec![("api.payments.example.com:443".into(), String::new(), 1, 0)]
    );
    assert!(
        !names::<Cla>(&r).contains(&api.name),
        "no EDS for DNS clusters"
    );
    // NONE: the original destination.
    let wiki = get::<Cluster>(&r, "outbound|443||*.wikipedia.org");
    assert_eq!(kind(&wiki), DiscoveryType::OriginalDst);
    assert_eq!(wiki.lb_policy, LbPolicy::ClusterProvided as i32);
    assert!(wiki.eds_cluster_config.is_none() && wiki.load_assignment.is_none());
}

#[test]
fn passthrough_black_hole_and_inbound_clusters() {
    let r = run(&corpus(), &reviews());
    let pass = get::<Cluster>(&r, "PassthroughCluster");
    assert_eq!(kind(&pass), DiscoveryType::OriginalDst);
    assert_eq!(pass.lb_policy, LbPolicy::ClusterProvided as i32);
    let hole = get::<Cluster>(&r, "BlackHoleCluster");
    assert_eq!(kind(&hole), DiscoveryType::Static);
    assert!(hole.load_assignment.is_none());
    let inbound_pass = get::<Cluster>(&r, "InboundPassthroughCluster");
    let bind = inbound_pass
        .upstream_bind_config
        .unwrap()
        .source_address
        .unwrap();
    assert_eq!(bind.address, "127.0.0.6");
    let inbound = get::<Cluster>(&r, "inbound|9080||");
    assert_eq!(kind(&inbound), DiscoveryType::Static);
    assert_eq!(
        endpoints(inbound.load_assignment.as_ref().unwrap()),
        vec![("127.0.0.1:9080".into(), String::new(), 1, 0)]
    );
    // Without interception there is nothing to pass inbound through.
    let r = run(
        &corpus(),
        &proxy("bookinfo", "10.0.0.30", Interception::None),
    );
    assert!(!names::<Cluster>(&r).contains(&"InboundPassthroughCluster".to_string()));
}

#[test]
fn locality_distribute_weights_localities_from_the_proxys_locality() {
    // frontend is in us-east/a/2: the cart rule sends 80% to us-east/a.
    let node = proxy("shop", "10.1.1.10", Interception::Redirect);
    let r = run(&corpus(), &node);
    let c = get::<Cluster>(&r, "outbound|8080||cart.shop.svc.cluster.local");
    assert!(matches!(
        c.common_lb_config.unwrap().locality_config_specifier,
        Some(wire::cluster::cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(_))
    ));
    let cla = get::<Cla>(&r, "outbound|8080||cart.shop.svc.cluster.local");
    let weights: Vec<(String, u32)> = cla
        .endpoints
        .iter()
        .map(|l| {
            let loc = l.locality.as_ref().unwrap();
            (
                format!("{}/{}", loc.region, loc.zone),
                l.load_balancing_weight.as_ref().unwrap().value,
            )
        })
        .collect();
    // eu-west gets no share, so it is left out.
    assert_eq!(
        weights,
        [("us-east/a".into(), 80), ("us-east/b".into(), 20)]
    );
    // A proxy without a locality gets plain endpoints.
    let r = run(
        &corpus(),
        &proxy("istio-system", "10.9.0.1", Interception::Redirect),
    );
    let cla = get::<Cla>(&r, "outbound|8080||cart.shop.svc.cluster.local");
    assert_eq!(cla.endpoints.len(), 3);
    assert!(cla
        .endpoints
        .iter()
        .all(|l| l.load_balancing_weight.is_none()));
}

#[test]
fn locality_failover_orders_priorities_by_proximity_with_outlier_detection() {
    // productpage is in us-east/a/1; reviews has outlier detection.
    let r = run(&corpus(), &productpage());
    let cla = get::<Cla>(&r, "outbound|9080||reviews.bookinfo.svc.cluster.local");
    let prio: Vec<(String, u32)> = endpoints(&cla).into_iter().map(|e| (e.0, e.3)).collect();
    assert_eq!(
        prio,
        [
            ("10.0.0.30:9080".into(), 0), // same zone and subzone
            ("10.0.0.31:9080".into(), 1), // same region
            ("10.0.0.32:9080".into(), 2), // elsewhere (dense: no gaps)
        ]
    );
    // ratings has no outlier detection: one priority.
    let cla = get::<Cla>(&r, "outbound|9080||ratings.bookinfo.svc.cluster.local");
    assert!(cla.endpoints.iter().all(|l| l.priority == 0));
}

#[test]
fn passthrough_load_balancer_makes_an_original_dst_cluster() {
    let state = corpus_plus(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-pass, namespace: bookinfo}
spec:
  host: ratings.bookinfo.svc.cluster.local
  workloadSelector: {matchLabels: {app: reviews}}
  trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
",
    );
    let r = run(&state, &reviews());
    let c = get::<Cluster>(&r, "outbound|9080||ratings.bookinfo.svc.cluster.local");
    assert_eq!(kind(&c), DiscoveryType::OriginalDst);
    assert!(!names::<Cla>(&r).contains(&c.name));
    // The rule selects reviews only.
    let r = run(&state, &productpage());
    let c = get::<Cluster>(&r, "outbound|9080||ratings.bookinfo.svc.cluster.local");
    assert_eq!(kind(&c), DiscoveryType::Eds);
}

#[test]
fn grpc_ports_speak_http2_upstream() {
    let r = run(&corpus(), &reviews());
    let c = get::<Cluster>(&r, "outbound|15010||istiod.istio-system.svc.cluster.local");
    let any = &c.typed_extension_protocol_options
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    let opts: wire::upstream_http::HttpProtocolOptions = inner(any);
    use wire::upstream_http::http_protocol_options::{
        explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
    };
    let Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) = opts.upstream_protocol_options
    else {
        panic!()
    };
    assert!(matches!(
        e.protocol_config,
        Some(ProtocolConfig::Http2ProtocolOptions(_))
    ));
    assert!(opts.common_http_protocol_options.is_none());
    // Plain HTTP ports carry no protocol options at all.
    let c = get::<Cluster>(&r, "outbound|9080||ratings.bookinfo.svc.cluster.local");
    assert!(c.typed_extension_protocol_options.is_empty());
}

#[test]
fn mutual_tls_files_and_gateway_only_outlier_detection() {
    let state = corpus_plus(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments, namespace: external}
spec:
  host: api.payments.example.com
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: /etc/certs/client.pem
      privateKey: /etc/certs/key.pem
      caCertificates: /etc/certs/ca.pem
      subjectAltNames: [api.payments.example.com]
    outlierDetection: {consecutiveGatewayErrors: 3}
",
    );
    let r = run(&state, &reviews());
    let c = get::<Cluster>(&r, "outbound|443||api.payments.example.com");
    let od = c.outlier_detection.as_ref().unwrap();
    assert_eq!(od.consecutive_gateway_failure.as_ref().unwrap().value, 3);
    assert_eq!(
        od.enforcing_consecutive_gateway_failure
            .as_ref()
            .unwrap()
            .value,
        100
    );
    assert_eq!(
        od.enforcing_consecutive_5xx.as_ref().unwrap().value,
        0,
        "gateway errors only"
    );
    let Some(wire::core::transport_socket::ConfigType::TypedConfig(any)) =
        &c.transport_socket.as_ref().unwrap().config_type
    else {
        panic!()
    };
    let ctx: tls::UpstreamTlsContext = inner(any);
    assert_eq!(ctx.sni, "api.payments.example.com");
    let common = ctx.common_tls_context.unwrap();
    let file = |d: &Option<wire::core::DataSource>| match d
        .as_ref()
        .unwrap()
        .specifier
        .as_ref()
        .unwrap()
    {
        wire::core::data_source::Specifier::Filename(f) => f.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        file(&common.tls_certificates[0].certificate_chain),
        "/etc/certs/client.pem"
    );
    assert_eq!(
        file(&common.tls_certificates[0].private_key),
        "/etc/certs/key.pem"
    );
    let Some(tls::common_tls_context::ValidationContextType::ValidationContext(v)) =
        common.validation_context_type
    else {
        panic!()
    };
    assert_eq!(file(&v.trusted_ca), "/etc/certs/ca.pem");
    assert_eq!(v.match_typed_subject_alt_names.len(), 1);
    assert_eq!(
        v.match_typed_subject_alt_names[0].san_type,
        tls::subject_alt_name_matcher::SanType::Dns as i32
    );
}
