//! What a proxy sees: Sidecar egress hosts, exportTo, rule precedence.

use super::*;

#[test]
fn sidecar_egress_hosts_limit_clusters_and_virtual_hosts() {
    let r = run(&corpus(), &productpage());
    let clusters = names::<Cluster>(&r);
    let hosts: std::collections::BTreeSet<&str> = clusters
        .iter()
        .filter_map(|c| c.strip_prefix("outbound|"))
        .map(|c| c.rsplit('|').next().unwrap())
        .collect();
    assert_eq!(
        hosts.into_iter().collect::<Vec<_>>(),
        [
            // "./*": bookinfo's services and ServiceEntries.
            "api.payments.example.com", // "*/api.payments.example.com"
            "details.bookinfo.svc.cluster.local",
            "inventory.vm.example.com",
            "istiod.istio-system.svc.cluster.local", // "istio-system/*"
            "mysqldb.bookinfo.svc.cluster.local",
            "productpage.bookinfo.svc.cluster.local",
            "ratings.bookinfo.svc.cluster.local",
            "reviews.bookinfo.svc.cluster.local",
        ]
    );
    // No shop services, no wikipedia: not in the egress hosts.
    let rc = get::<RouteConfig>(&r, "8080");
    let vhosts: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(vhosts, ["inventory.vm.example.com:8080", "block_all"]);
    assert!(!names::<RouteConfig>(&r).contains(&"80".to_string()));
}

#[test]
fn egress_listener_ports_and_namespaces() {
    let state = corpus_plus(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: [bookinfo/reviews]
  - hosts: [\"~/*\", \"./cart.shop.svc.cluster.local\"]
",
    );
    let r = run(&state, &proxy("shop", "10.1.1.10", Interception::Redirect));
    let outbound: Vec<String> = names::<Cluster>(&r)
        .into_iter()
        .filter(|c| c.starts_with("outbound|") && !c.contains("|v"))
        .collect();
    assert_eq!(
        outbound,
        [
            "outbound|8080||cart.shop.svc.cluster.local",
            "outbound|9080||reviews.bookinfo.svc.cluster.local",
        ]
    );
}

#[test]
fn export_to_hides_services_and_rules() {
    // shop/ledger is exported to its own namespace only.
    let from_shop = run(
        &corpus(),
        &proxy("shop", "10.1.1.10", Interception::Redirect),
    );
    assert!(names::<Cluster>(&from_shop)
        .contains(&"outbound|8080||ledger.shop.svc.cluster.local".to_string()));
    let from_bookinfo = run(
        &corpus(),
        &proxy("bookinfo", "10.0.0.30", Interception::Redirect),
    );
    assert!(!names::<Cluster>(&from_bookinfo)
        .iter()
        .any(|c| c.contains("ledger")));

    // A VirtualService exported to its namespace only routes there.
    let state = corpus_plus(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart-local, namespace: shop}
spec:
  hosts: [cart]
  exportTo: [.]
  http:
  - route:
    - destination: {host: cart}
    timeout: 1s
",
    );
    let timeout = |node: &ProxyNode| {
        let r = run(&state, node);
        let rc = get::<RouteConfig>(&r, "8080");
        let vh = rc
            .virtual_hosts
            .iter()
            .find(|v| v.name == "cart.shop.svc.cluster.local:8080")
            .unwrap()
            .clone();
        match vh.routes[0].action.as_ref().unwrap() {
            wire::route::route::Action::Route(a) => a.timeout,
            _ => panic!(),
        }
    };
    assert_eq!(
        timeout(&proxy("shop", "10.1.1.10", Interception::Redirect)),
        Some(wire::Duration {
            seconds: 1,
            nanos: 0
        })
    );
    assert_eq!(
        timeout(&proxy("bookinfo", "10.0.0.30", Interception::Redirect)),
        Some(wire::Duration::default())
    );
}

#[test]
fn a_sidecar_without_selector_and_the_root_namespace_default() {
    let state = corpus_plus(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
",
    );
    // shop has no Sidecar of its own: the mesh-wide one applies.
    let r = run(&state, &proxy("shop", "10.1.1.10", Interception::Redirect));
    let vo = get::<Listener>(&r, "virtualOutbound");
    assert_eq!(tcp_of(&vo.filter_chains[0]).stat_prefix, "BlackHoleCluster");
}
