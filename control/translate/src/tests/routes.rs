//! Route configurations.

use super::*;
use crate::wire::{
    matcher::string_matcher::MatchPattern,
    route::{
        self, header_matcher::HeaderMatchSpecifier, route::Action, route_action::ClusterSpecifier,
        route_match::PathSpecifier,
    },
};

fn vhost<'a>(rc: &'a RouteConfig, name: &str) -> &'a route::VirtualHost {
    rc.virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no vhost {name}; have {:?}",
                rc.virtual_hosts.iter().map(|v| &v.name).collect::<Vec<_>>()
            )
        })
}

fn action(r: &route::Route) -> &route::RouteAction {
    match &r.action {
        Some(Action::Route(a)) => a,
        other => panic!("not a route action: {other:?}"),
    }
}

fn cluster(r: &route::Route) -> &str {
    match &action(r).cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => c,
        other => panic!("not one cluster: {other:?}"),
    }
}

fn exact(m: &Option<HeaderMatchSpecifier>) -> String {
    match m {
        Some(HeaderMatchSpecifier::StringMatch(s)) => match s.match_pattern.as_ref().unwrap() {
            MatchPattern::Exact(e) => e.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

const REVIEWS: &str = "reviews.bookinfo.svc.cluster.local:9080";

#[test]
fn reviews_jason_goes_to_v2_everyone_else_to_the_canary() {
    let r = run(&corpus(), &productpage());
    let rc = get::<RouteConfig>(&r, "9080");
    let vh = vhost(&rc, REVIEWS);
    assert_eq!(
        vh.domains,
        [
            "reviews.bookinfo.svc.cluster.local",
            "reviews.bookinfo.svc.cluster.local:9080",
            "reviews",
            "reviews:9080",
            "reviews.bookinfo",
            "reviews.bookinfo:9080",
            "reviews.bookinfo.svc",
            "reviews.bookinfo.svc:9080",
        ]
    );
    let [jason, canary] = vh.routes.as_slice() else {
        panic!("{:?}", vh.routes)
    };
    assert_eq!(jason.name, "jason");
    let m = jason.r#match.as_ref().unwrap();
    assert_eq!(m.path_specifier, Some(PathSpecifier::Prefix("/".into())));
    assert_eq!(m.headers.len(), 1);
    assert_eq!(m.headers[0].name, "end-user");
    assert_eq!(exact(&m.headers[0].header_match_specifier), "jason");
    assert_eq!(
        cluster(jason),
        "outbound|9080|v2|reviews.bookinfo.svc.cluster.local"
    );
    assert_eq!(
        action(jason).timeout,
        Some(wire::Duration::default()),
        "0: disabled, as Istio"
    );
    assert!(action(jason).retry_policy.is_none(), "no implicit retries");

    let a = action(canary);
    let Some(ClusterSpecifier::WeightedClusters(w)) = &a.cluster_specifier else {
        panic!()
    };
    let split: Vec<(&str, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().unwrap().value))
        .collect();
    assert_eq!(
        split,
        [
            ("outbound|9080|v1|reviews.bookinfo.svc.cluster.local", 90),
            ("outbound|9080|v3|reviews.bookinfo.svc.cluster.local", 10),
        ]
    );
    assert_eq!(
        a.timeout,
        Some(wire::Duration {
            seconds: 10,
            nanos: 0
        })
    );
    let retry = a.retry_policy.as_ref().unwrap();
    assert_eq!(retry.num_retries.as_ref().unwrap().value, 3);
    assert_eq!(
        retry.per_try_timeout,
        Some(wire::Duration {
            seconds: 2,
            nanos: 0
        })
    );
    assert_eq!(
        retry.retry_on,
        "gateway-error,connect-failure,retriable-status-codes"
    );
    assert_eq!(retry.retriable_status_codes, [503]);
    assert_eq!(retry.retry_host_predicate.len(), 1);
    assert_eq!(retry.host_selection_retry_max_attempts, 5);
}

#[test]
fn a_host_without_virtual_service_gets_the_default_route() {
    let r = run(&corpus(), &productpage());
    let rc = get::<RouteConfig>(&r, "15010");
    let vh = vhost(&rc, "istiod.istio-system.svc.cluster.local:15010");
    // Another namespace: no bare short name.
    assert_eq!(
        vh.domains,
        [
            "istiod.istio-system.svc.cluster.local",
            "istiod.istio-system.svc.cluster.local:15010",
            "istiod.istio-system",
            "istiod.istio-system:15010",
            "istiod.istio-system.svc",
            "istiod.istio-system.svc:15010",
        ]
    );
    let expected = route::Route {
        name: "default".into(),
        r#match: Some(route::RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(Action::Route(route::RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(
                "outbound|15010||istiod.istio-system.svc.cluster.local".into(),
            )),
            timeout: Some(wire::Duration::default()),
            ..Default::default()
        })),
        ..Default::default()
    };
    assert_eq!(vh.routes, [expected]);
}

#[test]
fn faults_are_per_route_and_the_filter_is_added_only_where_used() {
    let r = run(&corpus(), &productpage());
    let rc = get::<RouteConfig>(&r, "9080");
    let vh = vhost(&rc, "ratings.bookinfo.svc.cluster.local:9080");
    let [jason, rest] = vh.routes.as_slice() else {
        panic!()
    };
    assert_eq!(jason.typed_per_filter_config.len(), 1);
    let f: wire::fault::HttpFault = inner(&jason.typed_per_filter_config[wire::FAULT_FILTER]);
    let delay = f.delay.unwrap();
    assert_eq!(
        delay.fault_delay_secifier,
        Some(
            wire::common_fault::fault_delay::FaultDelaySecifier::FixedDelay(wire::Duration {
                seconds: 7,
                nanos: 0
            })
        )
    );
    assert_eq!(delay.percentage.unwrap().numerator, 1_000_000);
    let abort = f.abort.unwrap();
    assert_eq!(
        abort.error_type,
        Some(wire::fault::fault_abort::ErrorType::HttpStatus(500))
    );
    let pct = abort.percentage.unwrap();
    assert_eq!(
        (pct.numerator, pct.denominator),
        (105_000, 2),
        "10.5% per million"
    );
    assert!(rest.typed_per_filter_config.is_empty());

    // The 9080 listener's connection manager runs the fault filter before
    // the router; the 8080 one (no faults) only the router.
    let filters = |name: &str| -> Vec<String> {
        let l = get::<Listener>(&r, name);
        hcm_of(&l.filter_chains[0])
            .http_filters
            .iter()
            .map(|f| f.name.clone())
            .collect()
    };
    assert_eq!(
        filters("0.0.0.0_9080"),
        ["envoy.filters.http.fault", "envoy.filters.http.router"]
    );
    assert_eq!(filters("0.0.0.0_8080"), ["envoy.filters.http.router"]);
}

#[test]
fn matches_rewrites_headers_redirects_and_source_labels() {
    let r = run(&corpus(), &productpage());
    let rc = get::<RouteConfig>(&r, "9080");
    let vh = vhost(&rc, "details.bookinfo.svc.cluster.local:9080");
    let route_names: Vec<&str> = vh.routes.iter().map(|r| r.name.as_str()).collect();
    // productpage is v1: the route for v2 clients is not there.
    assert_eq!(route_names, ["legacy", "legacy", "moved", ""]);

    let prefix = &vh.routes[0];
    let m = prefix.r#match.as_ref().unwrap();
    assert_eq!(
        m.path_specifier,
        Some(PathSpecifier::Prefix("/v1/details".into()))
    );
    let headers: Vec<(&str, bool)> = m
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.invert_match))
        .collect();
    assert_eq!(headers, [(":method", false), ("x-canary", true)]);
    assert_eq!(exact(&m.headers[0].header_match_specifier), "GET");
    assert_eq!(
        m.headers[1].header_match_specifier,
        Some(HeaderMatchSpecifier::PresentMatch(true))
    );
    assert_eq!(m.query_parameters.len(), 1);
    assert_eq!(m.query_parameters[0].name, "debug");
    let a = action(prefix);
    assert_eq!(a.prefix_rewrite, "/details");
    assert_eq!(
        a.host_rewrite_specifier,
        Some(
            route::route_action::HostRewriteSpecifier::HostRewriteLiteral(
                "details.internal".into()
            )
        )
    );
    let set: Vec<(&str, &str, i32)> = prefix
        .request_headers_to_add
        .iter()
        .map(|h| {
            let hv = h.header.as_ref().unwrap();
            (hv.key.as_str(), hv.value.as_str(), h.append_action)
        })
        .collect();
    assert_eq!(
        set,
        [(
            "x-legacy",
            "true",
            wire::core::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        )]
    );
    assert_eq!(prefix.request_headers_to_remove, ["x-debug"]);
    assert_eq!(
        prefix.response_headers_to_add[0]
            .header
            .as_ref()
            .unwrap()
            .key,
        "x-served-by"
    );

    let regex = vh.routes[1].r#match.as_ref().unwrap();
    let Some(PathSpecifier::SafeRegex(re)) = &regex.path_specifier else {
        panic!()
    };
    assert_eq!(re.regex, "^/details/[0-9]+$");
    assert_eq!(regex.case_sensitive, Some(wire::boolv(false)));

    let Some(Action::Redirect(rd)) = &vh.routes[2].action else {
        panic!()
    };
    assert_eq!(rd.host_redirect, "details.bookinfo");
    assert_eq!(
        rd.response_code,
        route::redirect_action::RedirectResponseCode::Found as i32
    );
    assert_eq!(
        rd.path_rewrite_specifier,
        Some(route::redirect_action::PathRewriteSpecifier::PathRedirect(
            "/new".into()
        ))
    );
    assert_eq!(
        cluster(&vh.routes[3]),
        "outbound|9080||details.bookinfo.svc.cluster.local"
    );

    // details-v2 is a v2 client: it gets the direct response.
    let r = run(
        &corpus(),
        &proxy("bookinfo", "10.0.0.21", Interception::Redirect),
    );
    let rc = get::<RouteConfig>(&r, "9080");
    let vh = vhost(&rc, "details.bookinfo.svc.cluster.local:9080");
    let Some(Action::DirectResponse(d)) = &vh.routes[3].action else {
        panic!("{:?}", vh.routes[3])
    };
    assert_eq!(d.status, 418);
    assert_eq!(
        d.body.as_ref().unwrap().specifier,
        Some(wire::core::data_source::Specifier::InlineString(
            "teapot".into()
        ))
    );
}

#[test]
fn mirror_and_hash_policy() {
    let r = run(
        &corpus(),
        &proxy("bookinfo", "10.0.0.30", Interception::Redirect),
    );
    let rc = get::<RouteConfig>(&r, "9080");
    let vh = vhost(&rc, "productpage.bookinfo.svc.cluster.local:9080");
    let a = action(&vh.routes[0]);
    assert_eq!(a.request_mirror_policies.len(), 1);
    let m = &a.request_mirror_policies[0];
    assert_eq!(
        m.cluster,
        "outbound|9080|shadow|productpage.bookinfo.svc.cluster.local"
    );
    let f = m.runtime_fraction.as_ref().unwrap().default_value.unwrap();
    assert_eq!(f.numerator, 250_000);
    let [hp] = a.hash_policy.as_slice() else {
        panic!()
    };
    assert_eq!(
        hp.policy_specifier,
        Some(route::route_action::hash_policy::PolicySpecifier::Header(
            route::route_action::hash_policy::Header {
                header_name: "x-user".into(),
                ..Default::default()
            }
        ))
    );
}

#[test]
fn outbound_traffic_policy_decides_the_catch_all_virtual_host() {
    // productpage's Sidecar says REGISTRY_ONLY.
    let r = run(&corpus(), &productpage());
    let rc = get::<RouteConfig>(&r, "9080");
    let last = rc.virtual_hosts.last().unwrap();
    assert_eq!(
        (last.name.as_str(), last.domains.as_slice()),
        ("block_all", &["*".to_string()][..])
    );
    let Some(Action::DirectResponse(d)) = &last.routes[0].action else {
        panic!()
    };
    assert_eq!(d.status, 502);
    // reviews has no Sidecar: ALLOW_ANY.
    let r = run(
        &corpus(),
        &proxy("bookinfo", "10.0.0.30", Interception::Redirect),
    );
    let rc = get::<RouteConfig>(&r, "9080");
    let last = rc.virtual_hosts.last().unwrap();
    assert_eq!(last.name, "allow_any");
    assert_eq!(cluster(&last.routes[0]), "PassthroughCluster");
}

#[test]
fn the_http_proxy_route_config_has_port_qualified_domains() {
    let node = proxy("bookinfo", "10.0.0.30", Interception::None);
    let r = run(&corpus(), &node);
    assert_eq!(names::<RouteConfig>(&r), ["http_proxy"]);
    let rc = get::<RouteConfig>(&r, "http_proxy");
    let vh = vhost(&rc, REVIEWS);
    assert_eq!(
        vh.domains,
        [
            "reviews.bookinfo.svc.cluster.local:9080",
            "reviews:9080",
            "reviews.bookinfo:9080",
            "reviews.bookinfo.svc:9080",
        ]
    );
    // Port 80 also answers to the bare names.
    let fe = vhost(&rc, "frontend.shop.svc.cluster.local:80");
    assert!(fe
        .domains
        .contains(&"frontend.shop.svc.cluster.local".to_string()));
    assert!(fe.domains.contains(&"frontend.shop:80".to_string()));
    // Every HTTP port is in it, and no catch-all.
    assert!(rc
        .virtual_hosts
        .iter()
        .any(|v| v.name == "cart.shop.svc.cluster.local:8080"));
    assert!(rc
        .virtual_hosts
        .iter()
        .all(|v| !v.domains.contains(&"*".to_string())));
    // Same routes as with interception.
    let vh_routes = vh.routes.clone();
    let r = run(
        &corpus(),
        &proxy("bookinfo", "10.0.0.30", Interception::Redirect),
    );
    assert_eq!(
        vhost(&get::<RouteConfig>(&r, "9080"), REVIEWS).routes,
        vh_routes
    );
}

#[test]
fn destination_ports_and_match_ports() {
    let state = corpus_plus(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - match:
    - port: 9999
    route:
    - destination: {host: ledger}
  - route:
    - destination: {host: ledger, port: {number: 8080}}
      headers:
        request:
          set: {x-via: cart}
",
    );
    let r = run(&state, &proxy("shop", "10.1.1.10", Interception::Redirect));
    let rc = get::<RouteConfig>(&r, "8080");
    let vh = vhost(&rc, "cart.shop.svc.cluster.local:8080");
    // The first route matches port 9999 only: not on 8080.
    let [only] = vh.routes.as_slice() else {
        panic!("{:?}", vh.routes)
    };
    assert_eq!(
        cluster(only),
        "outbound|8080||ledger.shop.svc.cluster.local"
    );
    assert_eq!(
        only.request_headers_to_add[0].header.as_ref().unwrap().key,
        "x-via"
    );
}

#[test]
fn weight_zero_destinations_are_dropped() {
    let state = corpus_plus(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews.bookinfo.svc.cluster.local}
      weight: 100
      headers: {response: {remove: [x-internal]}}
    - destination: {host: ratings.bookinfo.svc.cluster.local}
      weight: 0
",
    );
    // From shop, shop's VirtualService wins over bookinfo's.
    let r = run(&state, &proxy("shop", "10.1.1.10", Interception::Redirect));
    let rc = get::<RouteConfig>(&r, "9080");
    let [only] = vhost(&rc, REVIEWS).routes.as_slice() else {
        panic!()
    };
    assert_eq!(
        cluster(only),
        "outbound|9080||reviews.bookinfo.svc.cluster.local"
    );
    assert_eq!(only.response_headers_to_remove, ["x-internal"]);
}
