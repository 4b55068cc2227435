//! Tests over the corpus in `testdata/` (a Bookinfo-like application, and
//! one defect per file in `testdata/broken/`), and over the loader's
//! handling of the Kubernetes envelope and of each validation rule.

mod envelope;
mod rules;

use std::{path::Path, time::Duration as StdDuration};

use super::*;
use crate::{
    networking::{
        destination_rule::{SimpleLb, TlsMode},
        service_entry::{Location, Resolution},
        sidecar::OutboundMode,
        virtual_service::fault_percentage,
    },
    security::{authorization_policy::Action, peer_authentication::MtlsMode},
};

fn testdata(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// Diagnostics as an operator sees them, with file labels made relative to
/// the crate.
fn shown(result: &LoadResult) -> Vec<String> {
    let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
    result
        .diagnostics
        .iter()
        .map(|d| d.to_string().replace(&root, ""))
        .collect()
}

fn names<T>(resources: &[Resource<T>]) -> Vec<String> {
    resources
        .iter()
        .map(|r| format!("{}/{}", r.meta.namespace, r.meta.name))
        .collect()
}

fn load_broken(name: &str) -> LoadResult {
    let path = testdata(&format!("broken/{name}"));
    let text = std::fs::read_to_string(&path).unwrap();
    load_str(&text, &format!("testdata/broken/{name}"))
}

#[test]
fn bookinfo_loads_with_only_the_expected_notes() {
    let result = load_dir(testdata("bookinfo"));
    assert_eq!(
        shown(&result),
        [
            "testdata/bookinfo/bookinfo-gateway.yaml:3:1: warning[RM0012] Gateway default/bookinfo-gateway: \
             networking.istio.io/v1 Gateway is not supported yet; skipped",
            "testdata/bookinfo/bookinfo-gateway.yaml:123:7: warning[RM0010] VirtualService default/productpage: \
             spec.http[3].corsPolicy: corsPolicy is accepted but not applied: CORS is not implemented yet",
            "testdata/bookinfo/bookinfo-services.yaml:3:1: info[RM0013] Service default/reviews: \
             v1 Service is not an Istio resource; skipped",
            "testdata/bookinfo/bookinfo-services.yaml:17:1: info[RM0013] ServiceAccount default/bookinfo-reviews: \
             v1 ServiceAccount is not an Istio resource; skipped",
            "testdata/bookinfo/bookinfo-services.yaml:24:1: info[RM0013] Deployment default/reviews-v3: \
             apps/v1 Deployment is not an Istio resource; skipped",
        ]
    );
    assert!(!result.has_errors());
    let m = &result.model;
    assert_eq!(
        names(&m.virtual_services),
        [
            "default/bookinfo",
            "default/details",
            "default/productpage",
            "default/ratings",
            "default/reviews",
            "legacy/legacy-api"
        ]
    );
    assert_eq!(
        names(&m.destination_rules),
        [
            "default/details",
            "default/productpage",
            "default/ratings",
            "default/ratings-api",
            "default/reviews",
            "legacy/legacy-api"
        ]
    );
    assert_eq!(
        names(&m.service_entries),
        ["default/mysqldb", "default/ratings-api"]
    );
    assert_eq!(names(&m.sidecars), ["default/default", "default/ratings"]);
    assert_eq!(
        names(&m.peer_authentications),
        ["default/ratings", "istio-system/default", "legacy/default"]
    );
    assert_eq!(
        names(&m.authorization_policies),
        [
            "default/allow-nothing",
            "default/deny-admin",
            "default/productpage-viewer",
            "default/ratings-viewer",
            "default/reviews-viewer"
        ]
    );
    assert_eq!(m.len(), 24);
}

fn find<'a, T>(v: &'a [Resource<T>], ns_name: &str) -> &'a Resource<T> {
    v.iter()
        .find(|r| format!("{}/{}", r.meta.namespace, r.meta.name) == ns_name)
        .unwrap_or_else(|| panic!("{ns_name} not loaded"))
}

#[test]
fn bookinfo_routes_are_typed() {
    let m = load_dir(testdata("bookinfo")).model;

    // reviews: jason → v2; 90/10 canary v1/v3.
    let reviews = find(&m.virtual_services, "default/reviews");
    assert!(reviews
        .origin
        .file
        .ends_with("virtual-service-reviews-canary.yaml"));
    assert_eq!(reviews.origin.line, 2);
    assert_eq!(reviews.meta.api_version, "networking.istio.io/v1");
    let http = &reviews.spec.http;
    assert_eq!(
        http[0].matches[0].headers["end-user"],
        StringMatch::Exact("jason".into())
    );
    assert_eq!(http[0].route[0].destination.subset.as_deref(), Some("v2"));
    let canary: Vec<_> = http[1]
        .route
        .iter()
        .map(|d| (d.destination.subset.as_deref().unwrap(), d.weight.unwrap()))
        .collect();
    assert_eq!(canary, [("v1", 90), ("v3", 10)]);

    // ratings: 7s delay for jason, 500 for 10% of the rest.
    let ratings = find(&m.virtual_services, "default/ratings");
    let delay = ratings.spec.http[0]
        .fault
        .as_ref()
        .unwrap()
        .delay
        .as_ref()
        .unwrap();
    assert_eq!(delay.fixed_delay.unwrap().get(), StdDuration::from_secs(7));
    assert_eq!(fault_percentage(delay.percentage, delay.percent), 100.0);
    let abort = ratings.spec.http[1]
        .fault
        .as_ref()
        .unwrap()
        .abort
        .as_ref()
        .unwrap();
    assert_eq!(abort.http_status, Some(500));
    assert_eq!(fault_percentage(abort.percentage, abort.percent), 10.0);

    // details: timeout and retries (apiVersion v1beta1).
    let details = find(&m.virtual_services, "default/details");
    assert_eq!(details.meta.api_version, "networking.istio.io/v1beta1");
    let route = &details.spec.http[0];
    assert_eq!(route.timeout.unwrap().to_string(), "10s");
    let retries = route.retries.as_ref().unwrap();
    assert_eq!(retries.attempts, Some(3));
    assert_eq!(retries.per_try_timeout.unwrap().to_string(), "2s");
    assert_eq!(
        retries.retry_on.as_deref(),
        Some("gateway-error,connect-failure,refused-stream")
    );
    assert_eq!(retries.retry_remote_localities, Some(true));

    // productpage (v1alpha3): regex + redirect, direct response, rewrite,
    // mirror, header operations.
    let pp = find(&m.virtual_services, "default/productpage");
    assert_eq!(pp.meta.api_version, "networking.istio.io/v1alpha3");
    assert_eq!(pp.spec.export_to, [".", "istio-system"]);
    let old_api = &pp.spec.http[0];
    assert_eq!(
        old_api.matches[0].uri,
        Some(StringMatch::Regex("^/api/v0/products/[0-9]+$".into()))
    );
    assert!(old_api.matches[0].ignore_uri_case);
    assert_eq!(old_api.redirect.as_ref().unwrap().redirect_code, Some(308));
    assert_eq!(
        pp.spec.http[1].direct_response.as_ref().unwrap().status,
        200
    );
    let v1 = &pp.spec.http[2];
    assert_eq!(
        v1.matches[0].without_headers["x-canary"],
        StringMatch::Present
    );
    assert_eq!(
        v1.matches[0].query_params["debug"],
        StringMatch::Exact("true".into())
    );
    let rr = v1
        .rewrite
        .as_ref()
        .unwrap()
        .uri_regex_rewrite
        .as_ref()
        .unwrap();
    assert_eq!(
        (rr.pattern.as_str(), rr.rewrite.as_str()),
        ("^/api/v1/(.*)$", "/v1/\\1")
    );
    assert_eq!(v1.effective_mirror_percentage(), 5.5);
    let set = &v1.route[0]
        .headers
        .as_ref()
        .unwrap()
        .request
        .as_ref()
        .unwrap()
        .set;
    assert_eq!(set["x-via-mesh"], "true");
    let retries = pp.spec.http[3].retries.as_ref().unwrap();
    assert_eq!(retries.backoff.unwrap().to_string(), "25ms");
    assert_eq!(retries.retry_ignore_previous_hosts, Some(false));
    let ops = pp.spec.http[3].headers.as_ref().unwrap();
    assert_eq!(ops.request.as_ref().unwrap().add["x-b3-sampled"], "1");
    assert!(pp.spec.http[3].cors_policy.is_some());

    // The List from kubectl: positions are the file's.
    let legacy = find(&m.virtual_services, "legacy/legacy-api");
    assert_eq!(legacy.origin.line, 26);
    assert_eq!(legacy.meta.resource_version.as_deref(), Some("918274"));
    assert_eq!(legacy.meta.generation, Some(1));
    assert_eq!(
        legacy.spec.tcp[0].matches[0].destination_subnets,
        ["10.20.0.0/16"]
    );
    assert_eq!(
        legacy.spec.tls[0].matches[0].sni_hosts,
        ["legacy-api.legacy.svc.cluster.local"]
    );
    let legacy_dr = find(&m.destination_rules, "legacy/legacy-api");
    assert_eq!(legacy_dr.origin.line, 5);
    assert!(
        legacy_dr.meta.annotations["kubectl.kubernetes.io/last-applied-configuration"]
            .starts_with("{\"apiVersion\"")
    );
}

#[test]
fn bookinfo_policies_are_typed() {
    let m = load_dir(testdata("bookinfo")).model;

    let reviews = find(&m.destination_rules, "default/reviews");
    let tp = reviews.spec.traffic_policy.as_ref().unwrap();
    let lb = tp.load_balancer.as_ref().unwrap();
    assert_eq!(lb.simple, Some(SimpleLb::LeastRequest));
    let failover = &lb.locality_lb_setting.as_ref().unwrap().failover[0];
    assert_eq!(
        (failover.from.as_str(), failover.to.as_str()),
        ("us-east1", "us-west1")
    );
    let pool = tp.connection_pool.as_ref().unwrap();
    assert_eq!(
        pool.tcp
            .as_ref()
            .unwrap()
            .connect_timeout
            .unwrap()
            .to_string(),
        "30ms"
    );
    assert_eq!(pool.http.as_ref().unwrap().http2_max_requests, Some(1000));
    let od = tp.outlier_detection.as_ref().unwrap();
    assert_eq!(od.consecutive_5xx_errors, Some(7));
    assert_eq!(
        od.base_ejection_time.unwrap().get(),
        StdDuration::from_secs(900)
    );
    assert_eq!(tp.tls.as_ref().unwrap().mode, TlsMode::IstioMutual);
    assert_eq!(
        reviews
            .spec
            .subsets
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["v1", "v2", "v3"]
    );

    let ratings = find(&m.destination_rules, "default/ratings");
    let ch = ratings
        .spec
        .traffic_policy
        .as_ref()
        .unwrap()
        .load_balancer
        .as_ref()
        .unwrap();
    let ch = ch.consistent_hash.as_ref().unwrap();
    assert_eq!(ch.keys(), ["httpCookie"]);
    assert_eq!(ch.ring_hash.as_ref().unwrap().minimum_ring_size, Some(1024));
    let port_level = &ratings
        .spec
        .traffic_policy
        .as_ref()
        .unwrap()
        .port_level_settings[0];
    assert_eq!(port_level.port.unwrap().number, 9080);

    let details = find(&m.destination_rules, "default/details");
    let locality = details
        .spec
        .traffic_policy
        .as_ref()
        .unwrap()
        .load_balancer
        .as_ref()
        .unwrap();
    assert_eq!(locality.warmup_duration_secs.unwrap().to_string(), "1m");
    let distribute = &locality.locality_lb_setting.as_ref().unwrap().distribute[0];
    assert_eq!(distribute.to["us-west/zone1/*"], 80);

    let mysql = find(&m.service_entries, "default/mysqldb");
    assert_eq!(mysql.spec.resolution(), Resolution::Static);
    assert_eq!(mysql.spec.location(), Location::MeshInternal);
    assert_eq!(mysql.spec.endpoints[1].ports["mysql"], 3307);
    let api = find(&m.service_entries, "default/ratings-api");
    assert_eq!(api.spec.resolution(), Resolution::Dns);
    assert_eq!(api.spec.ports[0].target_port, Some(443));

    let sidecar = find(&m.sidecars, "default/default");
    assert_eq!(
        sidecar
            .spec
            .outbound_traffic_policy
            .as_ref()
            .unwrap()
            .mode(),
        OutboundMode::RegistryOnly
    );
    assert_eq!(sidecar.spec.egress[0].hosts, ["./*", "istio-system/*"]);

    let mesh = find(&m.peer_authentications, "istio-system/default");
    assert_eq!(mesh.spec.mtls.as_ref().unwrap().mode, MtlsMode::Strict);
    let legacy = find(&m.peer_authentications, "legacy/default");
    assert_eq!(
        legacy.spec.mtls.as_ref().unwrap().mode,
        MtlsMode::Permissive
    );
    let ratings_pa = find(&m.peer_authentications, "default/ratings");
    assert_eq!(
        ratings_pa.spec.port_level_mtls[&PortKey(9090)].mode,
        MtlsMode::Disable
    );

    let nothing = find(&m.authorization_policies, "default/allow-nothing");
    assert_eq!(nothing.spec.action, Action::Allow);
    assert!(nothing.spec.rules.is_empty());
    let deny = find(&m.authorization_policies, "default/deny-admin");
    assert_eq!(deny.spec.action, Action::Deny);
    let source = deny.spec.rules[0].from[0].source.as_ref().unwrap();
    assert_eq!(source.not_ip_blocks, ["10.0.0.0/8", "fd00::/8"]);
    let ratings_ap = find(&m.authorization_policies, "default/ratings-viewer");
    assert_eq!(
        ratings_ap.spec.rules[0].when[0].key,
        "request.headers[end-user]"
    );
}

#[test]
fn loading_is_deterministic() {
    let a = load_dir(testdata("bookinfo"));
    let b = load_dir(testdata("bookinfo"));
    assert_eq!(a.model, b.model);
    assert_eq!(a.diagnostics, b.diagnostics);
    // Loading the files in the opposite order gives the same model.
    let mut files: Vec<_> = std::fs::read_dir(testdata("bookinfo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.reverse();
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let c = Loader::new().load_sources(texts.iter().map(|(l, t)| (l.as_str(), t.as_str())));
    assert_eq!(a.model, c.model);
}

// One defect per file; the valid resources of each file still load.

#[test]
fn broken_malformed_yaml() {
    let r = load_broken("malformed-yaml.yaml");
    assert_eq!(
        shown(&r),
        [
            "testdata/broken/malformed-yaml.yaml:25:6: error[RM0001] invalid YAML, document \
          skipped: did not find expected key, while parsing a block mapping at line 21 column 5"
        ]
    );
    assert_eq!(names(&r.model.destination_rules), ["default/reviews"]);
    assert_eq!(names(&r.model.virtual_services), ["default/reviews"]);
}

#[test]
fn broken_unknown_field() {
    let r = load_broken("unknown-field.yaml");
    assert_eq!(
        shown(&r),
        ["testdata/broken/unknown-field.yaml:13:7: error[RM0004] VirtualService default/reviews: \
          spec.http[0].route[0].weigth: unknown field `weigth`, expected one of `destination`, \
          `weight`, `headers`"]
    );
    assert!(r.model.virtual_services.is_empty());
    assert_eq!(names(&r.model.destination_rules), ["default/reviews"]);
}

#[test]
fn broken_invalid_regex() {
    let r = load_broken("invalid-regex.yaml");
    assert_eq!(
        shown(&r),
        [
            "testdata/broken/invalid-regex.yaml:11:16: error[RM0003] VirtualService \
          default/productpage: spec.http[0].match[0].uri.regex: invalid regex \
          \"^/api/(v1|v2/products\": unclosed group"
        ]
    );
    assert_eq!(names(&r.model.virtual_services), ["default/details"]);
}

#[test]
fn broken_weights() {
    let r = load_broken("weights-not-100.yaml");
    assert_eq!(
        shown(&r),
        [
            "testdata/broken/weights-not-100.yaml:17:15: error[RM0003] VirtualService \
          default/reviews: spec.http[0].route[1].weight: weights sum to 90, not 100"
        ]
    );
    assert!(r.model.virtual_services.is_empty());
    assert_eq!(names(&r.model.destination_rules), ["default/reviews"]);
}

#[test]
fn broken_missing_subset() {
    let r = load_broken("missing-subset.yaml");
    assert_eq!(
        shown(&r),
        [
            "testdata/broken/missing-subset.yaml:30:17: error[RM0006] VirtualService \
          default/reviews: spec.http[0].route[1].destination.subset: subset \"v4\" is not \
          defined by any DestinationRule for host reviews.default.svc.cluster.local \
          (DestinationRule default/reviews defines v1, v2)"
        ]
    );
    assert_eq!(names(&r.model.virtual_services), ["default/reviews-stable"]);
    assert_eq!(names(&r.model.destination_rules), ["default/reviews"]);

    // The same check through the public API, on a model built without it.
    let mut model = r.model.clone();
    let mut bad = model.virtual_services[0].clone();
    bad.meta.name = "copy".into();
    bad.spec.http[0].route[0].destination.subset = Some("v9".into());
    model.virtual_services.push(bad);
    let found: Vec<String> = model
        .validate_references()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "testdata/broken/missing-subset.yaml:33: error[RM0006] VirtualService default/copy: \
          spec.http[0].route[0].destination.subset: subset \"v9\" is not defined by any \
          DestinationRule for host reviews.default.svc.cluster.local (DestinationRule \
          default/reviews defines v1, v2)"
        ]
    );
}

#[test]
fn broken_custom_action() {
    let r = load_broken("custom-action.yaml");
    assert_eq!(
        shown(&r),
        [
            "testdata/broken/custom-action.yaml:10:11: error[RM0005] AuthorizationPolicy \
          foo/ext-authz: spec.action: CUSTOM authorization (ext_authz) is not supported yet"
        ]
    );
    assert_eq!(names(&r.model.authorization_policies), ["foo/httpbin-get"]);
}

#[test]
fn broken_cidr() {
    let r = load_broken("bad-cidr.yaml");
    assert_eq!(
        shown(&r),
        [
            "testdata/broken/bad-cidr.yaml:14:31: error[RM0003] AuthorizationPolicy \
          foo/ingress-allowlist: spec.rules[0].from[0].source.ipBlocks[1]: invalid CIDR \
          \"5.6.7.0/33\": the prefix length must be 0-32"
        ]
    );
    assert_eq!(
        names(&r.model.authorization_policies),
        ["foo/ingress-denylist"]
    );
}

#[test]
fn broken_duration() {
    let r = load_broken("bad-duration.yaml");
    assert_eq!(
        shown(&r),
        [
            "testdata/broken/bad-duration.yaml:11:25: error[RM0004] DestinationRule \
          default/reviews: spec.trafficPolicy.outlierDetection.baseEjectionTime: invalid \
          duration \"3min\": unknown unit \"min\" (e.g. 100ms, 1.5s, 10m, 1h)"
        ]
    );
    assert_eq!(names(&r.model.destination_rules), ["default/ratings"]);
}

#[test]
fn every_broken_file_is_tested() {
    let mut files: Vec<String> = std::fs::read_dir(testdata("broken"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "bad-cidr.yaml",
            "bad-duration.yaml",
            "custom-action.yaml",
            "invalid-regex.yaml",
            "malformed-yaml.yaml",
            "missing-subset.yaml",
            "unknown-field.yaml",
            "weights-not-100.yaml"
        ]
    );
    // Each has exactly one error of its own.
    for f in &files {
        assert_eq!(load_broken(f).errors().count(), 1, "{f}");
    }
}

/// Specs serialize with Istio's field names (for config dumps) and read
/// back to the same value.
#[test]
fn specs_round_trip_through_json() {
    fn round_trip<T>(resources: &[Resource<T>])
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        for r in resources {
            let json = serde_json::to_string(&r.spec).unwrap();
            let back: T = serde_json::from_str(&json).unwrap();
            assert_eq!(back, r.spec, "{json}");
        }
    }
    let m = load_dir(testdata("bookinfo")).model;
    round_trip(&m.virtual_services);
    round_trip(&m.destination_rules);
    round_trip(&m.service_entries);
    round_trip(&m.sidecars);
    round_trip(&m.peer_authentications);
    round_trip(&m.authorization_policies);

    let reviews = serde_json::to_value(&find(&m.virtual_services, "default/reviews").spec).unwrap();
    assert_eq!(
        reviews["http"][0]["match"][0]["headers"]["end-user"],
        serde_json::json!({"exact": "jason"})
    );
    assert_eq!(reviews["http"][1]["route"][0]["weight"], 90);
    let details = serde_json::to_value(&find(&m.virtual_services, "default/details").spec).unwrap();
    assert_eq!(details["http"][0]["retries"]["perTryTimeout"], "2s");
    let pa = serde_json::to_value(&find(&m.peer_authentications, "default/ratings").spec).unwrap();
    assert_eq!(pa["portLevelMtls"]["9090"]["mode"], "DISABLE");
}
