//! One case per validation rule: a spec, and the findings it gives as
//! `severity[code] field: message`.

use super::*;

/// Strip the common indentation of a raw string.
fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Findings for a `kind` object named `ns/t` with this spec.
fn check(kind: &str, spec: &str) -> Vec<String> {
    let group = Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind)
        .map(Kind::group)
        .unwrap();
    let spec: String = dedent(spec).lines().map(|l| format!("  {l}\n")).collect();
    let text = format!(
        "apiVersion: {group}/v1\nkind: {kind}\nmetadata:\n  name: t\n  namespace: ns\nspec:\n{spec}"
    );
    let r = load_str(&text, "t.yaml");
    let loaded = r.model.len();
    let mut out: Vec<String> = r
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}[{}] {}: {}",
                d.severity,
                d.code,
                d.field.as_deref().unwrap_or(""),
                d.message
            )
        })
        .collect();
    // Errors and only errors drop the resource.
    assert_eq!(loaded == 0, r.has_errors(), "{text}\n{out:?}");
    out.sort();
    out
}

/// Run every case, reporting all mismatches at once.
fn run(kind: &str, cases: &[(&str, &[&str])]) {
    let mut failures = Vec::new();
    for (spec, expected) in cases {
        let found = check(kind, spec);
        if found != *expected {
            failures.push(format!(
                "{kind}:{spec}\nexpected: {expected:#?}\nfound: {found:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn virtual_service() {
    run(
        "VirtualService",
        &[
        (
            r#"
            hosts: [r]
            "#,
            &[
                "error[RM0003] spec: at least one http, tcp or tls route is required",
            ],
        ),
        (
            r#"
            hosts: ['*']
            http:
            - route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0003] spec.hosts[0]: the wildcard host * is not allowed for a VirtualService bound to the mesh gateway (name the hosts, or bind it to a gateway)",
            ],
        ),
        (
            r#"
            gateways: [gw]
            http:
            - route:
              - destination: {host: r}
            tcp:
            - route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0003] spec.gateways: a delegate VirtualService (one without hosts) must not set gateways",
                "error[RM0003] spec.tcp: a delegate VirtualService (one without hosts) supports http routes only",
            ],
        ),
        (
            r#"
            hosts: [r, 'bad_host', '*.ok.com']
            gateways: [mesh, 'ns/gw', 'Bad/x']
            exportTo: ['*', ns]
            http:
            - route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0003] spec.exportTo: * (all namespaces) cannot be combined with other values",
                "error[RM0003] spec.gateways[2]: invalid gateway \"Bad/x\" (expected mesh or [namespace/]name)",
                "error[RM0003] spec.hosts[1]: invalid host \"bad_host\" (expected a DNS name such as reviews, reviews.default.svc.cluster.local or *.example.com)",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - match: [{uri: {}}]
              route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0003] spec.http[0].match[0].uri: set one of exact, prefix or regex",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - match: [{uri: {exact: /a, prefix: /b}}]
              route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0004] spec.http[0].match[0].uri: set only one of exact, prefix or regex",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - match:
              - headers: {'bad header': {exact: x}, x-ok: {regex: '[z'}}
                queryParams: {q: {regex: '(a'}}
                withoutHeaders: {x-gone: {}}
                port: 70000
                sourceLabels: {app: x}
                sourceNamespace: Bad
              route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0003] spec.http[0].match[0].headers.x-ok.regex: invalid regex \"[z\": unclosed character class",
                "error[RM0003] spec.http[0].match[0].headers[\"bad header\"]: invalid header name \"bad header\" (letters, digits, - and _ only)",
                "error[RM0003] spec.http[0].match[0].port: port 70000 is out of range 1-65535",
                "error[RM0003] spec.http[0].match[0].queryParams.q.regex: invalid regex \"(a\": unclosed group",
                "error[RM0003] spec.http[0].match[0].sourceNamespace: invalid namespace \"Bad\"",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - name: none
            - route:
              - destination: {host: r}
              redirect: {uri: /x}
              rewrite: {uri: /y}
            "#,
            &[
                "error[RM0003] spec.http[0]: set one of route, redirect, directResponse or delegate",
                "error[RM0003] spec.http[1].rewrite: rewrite cannot be combined with redirect",
                "error[RM0003] spec.http[1]: set only one of route, redirect, directResponse or delegate (found route, redirect)",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - route:
              - destination: {host: '', subset: V1, port: {number: 0}}
              - destination: {host: '*'}
                weight: -5
            "#,
            &[
                "error[RM0003] spec.http[0].route[0].destination.host: host is required",
                "error[RM0003] spec.http[0].route[0].destination.port.number: port 0 is out of range 1-65535",
                "error[RM0003] spec.http[0].route[0].destination.subset: invalid subset name \"V1\" (lower case letters, digits and -)",
                "error[RM0003] spec.http[0].route[1].destination.host: a destination host cannot be *",
                "error[RM0003] spec.http[0].route[1].weight: weight must not be negative (got -5)",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - redirect: {redirectCode: 200, port: 8080, derivePort: FROM_REQUEST_PORT}
            - directResponse: {status: 600, body: {string: a, bytes: YQ==}}
            - delegate: {name: ''}
            "#,
            &[
                "error[RM0003] spec.http[0].redirect.redirectCode: redirectCode must be a 3xx status (got 200)",
                "error[RM0003] spec.http[0].redirect: set only one of port or derivePort",
                "error[RM0003] spec.http[1].directResponse.body: set only one of string or bytes",
                "error[RM0003] spec.http[1].directResponse.status: status must be in the range 200-599 (got 600)",
                "error[RM0003] spec.http[2].delegate.name: name of the delegate VirtualService is required",
                "error[RM0003] spec.http[2].delegate: delegate is only supported in a VirtualService bound to a gateway",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - rewrite: {uri: /a, uriRegexRewrite: {match: '(', rewrite: x}}
              route:
              - destination: {host: r}
            - rewrite: {}
              route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0003] spec.http[0].rewrite.uriRegexRewrite.match: invalid regex \"(\": unclosed group",
                "error[RM0003] spec.http[0].rewrite: set only one of uri or uriRegexRewrite",
                "error[RM0003] spec.http[1].rewrite: set uri, authority or uriRegexRewrite",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - timeout: 0.5ms
              retries: {attempts: -1, perTryTimeout: 0s, retryOn: '5xx,503,bogus'}
              route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0003] spec.http[0].retries.attempts: attempts must not be negative (got -1)",
                "error[RM0003] spec.http[0].retries.perTryTimeout: perTryTimeout must be at least 1ms (got 0s)",
                "error[RM0003] spec.http[0].retries.retryOn: unknown retry condition \"bogus\" (expected Envoy conditions such as 5xx, gateway-error, connect-failure, refused-stream, retriable-4xx, unavailable, or an HTTP status code)",
                "error[RM0003] spec.http[0].timeout: timeout must be 0s (none) or at least 1ms (got 0.0005s)",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - fault: {}
              route:
              - destination: {host: r}
            - fault:
                delay: {percent: 50, percentage: {value: 150}}
                abort: {httpStatus: 600, grpcStatus: NOPE}
              route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0003] spec.http[0].fault: set delay, abort or both",
                "error[RM0003] spec.http[1].fault.abort.grpcStatus: unknown gRPC status \"NOPE\" (expected e.g. UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED)",
                "error[RM0003] spec.http[1].fault.abort.httpStatus: httpStatus must be in the range 200-599 (got 600)",
                "error[RM0003] spec.http[1].fault.abort: set only one of httpStatus, grpcStatus or http2Error (found httpStatus, grpcStatus)",
                "error[RM0003] spec.http[1].fault.delay.fixedDelay: fixedDelay is required",
                "error[RM0003] spec.http[1].fault.delay.percentage.value: percentage must be between 0 and 100 (got 150)",
                "error[RM0003] spec.http[1].fault.delay: set only one of percentage or percent",
                "warning[RM0011] spec.http[1].fault.delay.percent: percent is deprecated; use percentage: {value: N}",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - fault:
                delay: {exponentialDelay: 1s}
                abort: {http2Error: x}
              route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0005] spec.http[0].fault.abort.http2Error: http2Error is not supported (Istio does not implement it either)",
                "error[RM0005] spec.http[0].fault.delay.exponentialDelay: exponentialDelay is not supported (Istio does not implement it either)",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - fault:
                delay: {fixedDelay: 5s, percent: 20}
                abort: {grpcStatus: UNAVAILABLE, percentage: {value: 1.5}}
              route:
              - destination: {host: r}
              mirror: {host: m}
              mirrorPercent: 30
              corsPolicy: {allowOrigins: [{exact: x}]}
            "#,
            &[
                "warning[RM0010] spec.http[0].corsPolicy: corsPolicy is accepted but not applied: CORS is not implemented yet",
                "warning[RM0011] spec.http[0].fault.delay.percent: percent is deprecated; use percentage: {value: N}",
                "warning[RM0011] spec.http[0].mirrorPercent: mirrorPercent is deprecated; use mirrorPercentage: {value: N}",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - route:
              - destination: {host: r}
              mirror: {host: m}
              mirrors: [{destination: {host: n}, percentage: {value: 101}}]
              mirrorPercentage: {value: -1}
              headers:
                request: {set: {'x y': a}, remove: ['']}
            "#,
            &[
                "error[RM0003] spec.http[0].headers.request.remove[0]: header name must not be empty",
                "error[RM0003] spec.http[0].headers.request.set[\"x y\"]: invalid header name \"x y\" (letters, digits, - and _ only)",
                "error[RM0003] spec.http[0].mirrorPercentage.value: percentage must be between 0 and 100 (got -1)",
                "error[RM0003] spec.http[0].mirrors[0].percentage.value: percentage must be between 0 and 100 (got 101)",
                "error[RM0003] spec.http[0]: set only one of mirror or mirrors",
            ],
        ),
        (
            r#"
            hosts: [r]
            tcp:
            - match: [{destinationSubnets: [10.0.0.0/40], port: 0, sourceSubnet: x}]
            - route:
              - destination: {host: r}
                weight: 60
              - destination: {host: s}
                weight: 60
            "#,
            &[
                "error[RM0003] spec.tcp[0].match[0].destinationSubnets[0]: invalid CIDR \"10.0.0.0/40\": the prefix length must be 0-32",
                "error[RM0003] spec.tcp[0].match[0].port: port 0 is out of range 1-65535",
                "error[RM0003] spec.tcp[0].match[0].sourceSubnet: invalid IP address or CIDR \"x\" (expected e.g. 10.0.0.1 or 10.0.0.0/8)",
                "error[RM0003] spec.tcp[0].route: at least one route destination is required",
                "error[RM0003] spec.tcp[1].route[1].weight: weights sum to 120, not 100",
            ],
        ),
        (
            r#"
            hosts: [r]
            tls:
            - route:
              - destination: {host: r}
            - match: [{sniHosts: []}, {sniHosts: ['bad_sni']}]
              route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0003] spec.tls[0].match: a tls route needs at least one match with sniHosts",
                "error[RM0003] spec.tls[1].match[0].sniHosts: sniHosts is required",
                "error[RM0003] spec.tls[1].match[1].sniHosts[0]: invalid host \"bad_sni\" (expected a DNS name such as reviews, reviews.default.svc.cluster.local or *.example.com)",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - route:
              - destination: {host: r}
                weigth: 1
            "#,
            &[
                "error[RM0004] spec.http[0].route[0].weigth: unknown field `weigth`, expected one of `destination`, `weight`, `headers`",
            ],
        ),
        (
            r#"
            hosts: [r]
            http:
            - timeout: 10
              route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0004] spec.http[0].timeout: invalid duration 10: missing unit (e.g. 100ms, 1.5s, 10m, 1h)",
            ],
        ),
        (
            r#"
            hosts: [api.example.com, '*.example.com', '*.com']
            gateways: [edge]
            tls:
            - match: [{sniHosts: [api.example.com, other.org]}]
              route:
              - destination: {host: api}
            "#,
            &[
                "error[RM0003] spec.hosts[1]: duplicate host: \"*.example.com\" overlaps \"api.example.com\" (hosts[0])",
                "error[RM0003] spec.hosts[2]: duplicate host: \"*.com\" overlaps \"*.example.com\" (hosts[1])",
                "error[RM0003] spec.hosts[2]: duplicate host: \"*.com\" overlaps \"api.example.com\" (hosts[0])",
                "error[RM0003] spec.tls[0].match[0].sniHosts[1]: SNI host \"other.org\" is not within any of the VirtualService's hosts (api.example.com, *.example.com, *.com)",
            ],
        ),
        (
            r#"
            http:
            - delegate: {name: deeper}
            - redirect: {}
              fault: {abort: {httpStatus: 503}}
            - retries: {perTryTimeout: 2s, retryOn: 5xx}
              timeout: 1.5005s
              route:
              - destination: {host: r}
            "#,
            &[
                "error[RM0003] spec.http[0].delegate: a delegate VirtualService cannot delegate again (one level only)",
                "error[RM0003] spec.http[1].fault: fault cannot be combined with redirect",
                "error[RM0003] spec.http[1].redirect: set at least one of uri, authority, scheme, port or derivePort",
                "error[RM0003] spec.http[2].timeout: timeout must be a whole number of milliseconds (got 1.5005s)",
                "warning[RM0010] spec.http[2].retries.attempts: attempts is 0 (or unset), which disables retries; the other retry settings have no effect",
            ],
        ),
        ],
    );
}

#[test]
fn destination_rule() {
    run(
        "DestinationRule",
        &[
        (
            r#"
            subsets:
            - {name: v1}
            - {name: v1, labels: {version: v1}}
            - {name: V2, labels: {version: v2}}
            - {labels: {version: v3}}
            "#,
            &[
                "error[RM0003] spec.host: host is required",
                "error[RM0003] spec.subsets[0].labels: labels are required: a subset is the endpoints carrying these labels",
                "error[RM0003] spec.subsets[1].name: duplicate subset name \"v1\" (also subsets[0])",
                "error[RM0003] spec.subsets[2].name: invalid subset name \"V2\" (lower case letters, digits and -)",
                "error[RM0003] spec.subsets[3].name: name is required",
            ],
        ),
        (
            r#"
            host: r
            workloadSelector: {matchLabels: {}}
            exportTo: ['bad ns']
            trafficPolicy:
              loadBalancer:
                simple: LEAST_CONN
                consistentHash: {useSourceIp: true}
              tunnel: {protocol: CONNECT}
              portLevelSettings:
              - loadBalancer: {simple: RANDOM}
              - port: {number: 80}
              - port: {number: 80}
            "#,
            &[
                "error[RM0003] spec.exportTo[0]: invalid exportTo value \"bad ns\" (expected ., *, ~ or a namespace name)",
                "error[RM0003] spec.trafficPolicy.loadBalancer: set only one of simple or consistentHash",
                "error[RM0003] spec.trafficPolicy.portLevelSettings[0].port: port is required",
                "error[RM0003] spec.trafficPolicy.portLevelSettings[2].port.number: duplicate port 80 (also portLevelSettings[1])",
                "error[RM0003] spec.workloadSelector.matchLabels: at least one label is required",
                "warning[RM0010] spec.trafficPolicy.tunnel: tunnel is accepted but not applied yet",
                "warning[RM0011] spec.trafficPolicy.loadBalancer.simple: LEAST_CONN is deprecated; use LEAST_REQUEST",
            ],
        ),
        (
            r#"
            host: r
            trafficPolicy:
              loadBalancer:
                consistentHash: {httpHeaderName: x, httpQueryParameterName: q, ringHash: {}, maglev: {tableSize: 1000}, minimumRingSize: 10}
            "#,
            &[
                "error[RM0003] spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize must be a prime number, e.g. 65537 (got 1000)",
                "error[RM0003] spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize: minimumRingSize cannot be combined with ringHash or maglev",
                "error[RM0003] spec.trafficPolicy.loadBalancer.consistentHash: set only one hash key (found httpHeaderName, httpQueryParameterName)",
                "error[RM0003] spec.trafficPolicy.loadBalancer.consistentHash: set only one of ringHash or maglev",
            ],
        ),
        (
            r#"
            host: r
            trafficPolicy:
              loadBalancer:
                consistentHash: {useSourceIp: false, httpCookie: {name: ''}}
            "#,
            &[
                "error[RM0003] spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: name is required",
            ],
        ),
        (
            r#"
            host: r
            trafficPolicy:
              loadBalancer:
                consistentHash: {httpHeaderName: x, minimumRingSize: 10, maglev: {tableSize: 10000019}}
            "#,
            &[
                "error[RM0003] spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize must be at most 5000011 (got 10000019)",
                "error[RM0003] spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize: minimumRingSize cannot be combined with ringHash or maglev",
            ],
        ),
        (
            r#"
            host: r
            trafficPolicy:
              loadBalancer:
                localityLbSetting:
                  distribute: [{from: '', to: {'us/a/*': 50, 'eu/b': 40}}]
                  failover: [{from: us, to: us}, {}]
                  failoverPriority: ['']
            "#,
            &[
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from: from is required",
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: weights sum to 90, not 100",
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[0]: a label must not be empty",
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: failover from and to must be different regions",
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting.failover[1].from: from is required",
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting.failover[1].to: to is required",
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting: set only one of distribute or failover",
            ],
        ),
        (
            r#"
            host: r
            trafficPolicy:
              connectionPool:
                tcp: {maxConnections: -1, connectTimeout: 0s, tcpKeepalive: {time: 0s}}
                http: {http2MaxRequests: -2, idleTimeout: 0.1ms, h2UpgradePolicy: DO_NOT_UPGRADE}
              outlierDetection: {maxEjectionPercent: 101, minHealthPercent: -1, interval: 0s, consecutiveErrors: 5}
            "#,
            &[
                "error[RM0003] spec.trafficPolicy.connectionPool.http.http2MaxRequests: http2MaxRequests must not be negative (got -2)",
                "error[RM0003] spec.trafficPolicy.connectionPool.http.idleTimeout: idleTimeout must be 0s (none) or at least 1ms (got 0.0001s)",
                "error[RM0003] spec.trafficPolicy.connectionPool.tcp.connectTimeout: connectTimeout must be at least 1ms (got 0s)",
                "error[RM0003] spec.trafficPolicy.connectionPool.tcp.maxConnections: maxConnections must not be negative (got -1)",
                "error[RM0003] spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time: time must be at least 1ms (got 0s)",
                "error[RM0003] spec.trafficPolicy.outlierDetection.interval: interval must be at least 1ms (got 0s)",
                "error[RM0003] spec.trafficPolicy.outlierDetection.maxEjectionPercent: maxEjectionPercent must be between 0 and 100 (got 101)",
                "error[RM0003] spec.trafficPolicy.outlierDetection.minHealthPercent: minHealthPercent must be between 0 and 100 (got -1)",
                "warning[RM0011] spec.trafficPolicy.outlierDetection.consecutiveErrors: consecutiveErrors is deprecated; use consecutive5xxErrors",
            ],
        ),
        (
            r#"
            host: r
            trafficPolicy:
              tls: {mode: MUTUAL}
              portLevelSettings:
              - port: {number: 443}
                tls: {mode: ISTIO_MUTUAL, credentialName: c, sni: s, subjectAltNames: ['']}
            "#,
            &[
                "error[RM0003] spec.trafficPolicy.portLevelSettings[0].tls.subjectAltNames[0]: a subject alt name must not be empty",
                "error[RM0003] spec.trafficPolicy.portLevelSettings[0].tls: mode ISTIO_MUTUAL uses the mesh's own certificates; remove credentialName",
                "error[RM0003] spec.trafficPolicy.tls: mode MUTUAL requires clientCertificate and privateKey, or credentialName",
            ],
        ),
        (
            r#"
            host: r
            trafficPolicy:
              tls: {mode: MUTUAL, credentialName: client-credential}
              loadBalancer: {simple: LEAST_RECENT}
            "#,
            &[
                "error[RM0004] spec.trafficPolicy.loadBalancer.simple: unknown variant `LEAST_RECENT`, expected one of `UNSPECIFIED`, `LEAST_CONN`, `RANDOM`, `PASSTHROUGH`, `ROUND_ROBIN`, `LEAST_REQUEST`",
            ],
        ),
        (
            r#"
            host: r
            trafficPolicy:
              loadBalancer:
                localityLbSetting:
                  distribute: [{from: 'us/*', to: {'us/*/a': 100, 'eu': 0, 'ap//x': 0}}]
                  failover: [{from: us, to: '*'}]
            "#,
            &[
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to.eu: a locality weight must be 1-100 (got 0)",
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to[\"ap//x\"]: a locality weight must be 1-100 (got 0)",
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to[\"ap//x\"]: invalid locality \"ap//x\" (expected region/zone/subzone)",
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to[\"us/*/a\"]: invalid locality \"us/*/a\" (expected region/zone/subzone)",
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0].to: a failover region cannot be a wildcard",
                "error[RM0003] spec.trafficPolicy.loadBalancer.localityLbSetting: set only one of distribute or failover",
            ],
        ),
        ],
    );
}

#[test]
fn service_entry() {
    run(
        "ServiceEntry",
        &[
        (
            r#"
            {}
            "#,
            &[
                "error[RM0003] spec.hosts: at least one host is required",
            ],
        ),
        (
            r#"
            hosts: ['*', a.example.com]
            addresses: [10.0.0.0/8, nope]
            ports:
            - {number: 80, name: http, protocol: HTTP}
            - {number: 80, name: http, protocol: SMTP}
            - {number: 0, targetPort: 70000}
            - {number: 8443, name: Bad_Name, protocol: https}
            resolution: DNS
            "#,
            &[
                "error[RM0003] spec.addresses[0]: CIDR addresses are allowed only with resolution NONE or STATIC",
                "error[RM0003] spec.addresses[1]: invalid IP address or CIDR \"nope\" (expected e.g. 10.0.0.1 or 10.0.0.0/8)",
                "error[RM0003] spec.hosts[0]: the host * is not allowed in a ServiceEntry",
                "error[RM0003] spec.ports[1].name: duplicate port name \"http\" (also ports[0])",
                "error[RM0003] spec.ports[1].number: duplicate port 80 (also ports[0])",
                "error[RM0003] spec.ports[1].protocol: several hosts need HTTP or TLS ports to be told apart (or resolution NONE)",
                "error[RM0003] spec.ports[1].protocol: unknown protocol \"SMTP\" (expected one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, HTTP_PROXY, MONGO, MYSQL, REDIS, TCP, TLS, UDP)",
                "error[RM0003] spec.ports[2].name: name is required",
                "error[RM0003] spec.ports[2].number: port 0 is out of range 1-65535",
                "error[RM0003] spec.ports[2].targetPort: port 70000 is out of range 1-65535",
                "error[RM0003] spec.ports[3].name: invalid port name \"Bad_Name\" (lower case letters, digits and -)",
            ],
        ),
        (
            r#"
            hosts: ['*.example.com']
            ports: [{number: 80, name: http, protocol: HTTP}]
            resolution: DNS
            "#,
            &[
                "error[RM0003] spec.hosts[0]: resolution DNS without endpoints resolves the hosts themselves, so \"*.example.com\" cannot be a wildcard",
            ],
        ),
        (
            r#"
            hosts: [db.internal]
            ports: [{number: 5432, name: pg, protocol: TCP}]
            resolution: STATIC
            "#,
            &[
                "error[RM0003] spec.endpoints: resolution STATIC requires endpoints with IP addresses (or a workloadSelector)",
            ],
        ),
        (
            r#"
            hosts: [db.internal]
            ports: [{number: 5432, name: pg, protocol: TCP}]
            resolution: STATIC
            endpoints:
            - address: db.example.com
            - address: 10.0.0.1
              ports: {postgres: 5433, pg: 0}
              locality: us//a
            - {}
            workloadSelector: {labels: {app: db}}
            "#,
            &[
                "error[RM0003] spec.endpoints[0].address: resolution STATIC requires an IP address, got \"db.example.com\" (use resolution DNS for hostnames)",
                "error[RM0003] spec.endpoints[1].locality: invalid locality \"us//a\" (expected region/zone/subzone)",
                "error[RM0003] spec.endpoints[1].ports.pg: port 0 is out of range 1-65535",
                "error[RM0003] spec.endpoints[1].ports.postgres: \"postgres\" is not the name of one of the ServiceEntry's ports (pg)",
                "error[RM0003] spec.endpoints[2].address: address is required",
                "error[RM0003] spec: set only one of endpoints or workloadSelector",
            ],
        ),
        (
            r#"
            hosts: [a.example.com]
            ports: [{number: 80, name: http, protocol: HTTP}]
            endpoints: [{address: 1.1.1.1}]
            "#,
            &[
                "error[RM0003] spec.endpoints: endpoints are not allowed with resolution NONE (traffic goes to the address the caller dialed)",
            ],
        ),
        (
            r#"
            hosts: [a.example.com]
            ports: [{number: 80, name: http, protocol: HTTP}]
            resolution: DNS_ROUND_ROBIN
            endpoints: [{address: a1.example.com}, {address: unix:///var/run/a.sock}]
            subjectAltNames: ['']
            "#,
            &[
                "error[RM0003] spec.endpoints: resolution DNS_ROUND_ROBIN allows at most one endpoint",
                "error[RM0003] spec.subjectAltNames[0]: a subject alt name must not be empty",
            ],
        ),
        (
            r#"
            hosts: [a.example.com]
            ports: [{number: 80, name: http, protocol: HTTP}]
            resolution: DNS
            location: MESH_NOWHERE
            "#,
            &[
                "error[RM0004] spec.location: unknown variant `MESH_NOWHERE`, expected `MESH_EXTERNAL` or `MESH_INTERNAL`",
            ],
        ),
        (
            r#"
            hosts: [db.internal, db2.internal]
            ports:
            - {number: 5432, name: pg}
            resolution: STATIC
            endpoints:
            - address: unix:///var/run/pg.sock
              ports: {pg: 5432}
            - address: unix://relative.sock
            "#,
            &[
                "error[RM0003] spec.endpoints[0].ports: a unix:// endpoint has no ports",
                "error[RM0003] spec.endpoints[1].address: a unix:// address needs an absolute path",
                "error[RM0003] spec.ports[0].protocol: several hosts need HTTP or TLS ports to be told apart (or resolution NONE)",
            ],
        ),
        (
            r#"
            hosts: [a.example.com, b.example.com]
            addresses: [240.0.0.1]
            ports:
            - {number: 443, name: tls, protocol: TLS}
            - {number: 80, name: http, protocol: HTTP}
            - {number: 9000, name: raw}
            resolution: NONE
            "#,
            &[],
        ),
        ],
    );
}

#[test]
fn sidecar() {
    run(
        "Sidecar",
        &[
        (
            r#"
            workloadSelector: {labels: {}}
            ingress:
            - {}
            - port: {number: 80, protocol: FTP, name: http}
              defaultEndpoint: 10.0.0.1:80
              bind: nowhere
              tls: {mode: SIMPLE}
            - port: {number: 80}
              defaultEndpoint: 127.0.0.1:0
            "#,
            &[
                "error[RM0003] spec.ingress[0].port: port is required",
                "error[RM0003] spec.ingress[1].bind: invalid bind \"nowhere\" (expected an IP address or unix:///path)",
                "error[RM0003] spec.ingress[1].defaultEndpoint: invalid defaultEndpoint \"10.0.0.1:80\" (expected 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT or unix:///path)",
                "error[RM0003] spec.ingress[1].port.protocol: unknown protocol \"FTP\" (expected one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, HTTP_PROXY, MONGO, MYSQL, REDIS, TCP, TLS, UDP)",
                "error[RM0003] spec.ingress[2].defaultEndpoint: invalid defaultEndpoint \"127.0.0.1:0\" (expected 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT or unix:///path)",
                "error[RM0003] spec.ingress[2].port.number: duplicate port 80 (also ingress[1])",
                "error[RM0003] spec.workloadSelector.labels: at least one label is required",
                "warning[RM0010] spec.ingress[1].tls: tls is accepted but not applied yet",
            ],
        ),
        (
            r#"
            egress:
            - hosts: [bad, 'Bad/x', 'ns/bad_host', '~/*', '*/*.example.com', './x.svc.cluster.local']
            - {}
            - port: {number: 80}
              hosts: ['./*']
            - port: {number: 80}
              hosts: ['./*']
            - hosts: ['./*']
            "#,
            &[
                "error[RM0003] spec.egress[0].hosts[0]: invalid egress host \"bad\" (expected namespace/dnsName, e.g. istio-system/*, ./reviews.default.svc.cluster.local or */*.example.com)",
                "error[RM0003] spec.egress[0].hosts[1]: invalid egress host \"Bad/x\": bad namespace \"Bad\" (expected namespace/dnsName, e.g. istio-system/*, ./reviews.default.svc.cluster.local or */*.example.com)",
                "error[RM0003] spec.egress[0].hosts[2]: invalid egress host \"ns/bad_host\": invalid host \"bad_host\" (expected a DNS name such as reviews, reviews.default.svc.cluster.local or *.example.com)",
                "error[RM0003] spec.egress[0]: the egress listener without a port must be the last one",
                "error[RM0003] spec.egress[1].hosts: at least one host (namespace/dnsName) is required",
                "error[RM0003] spec.egress[1]: only one egress listener may omit the port (also egress[0])",
                "error[RM0003] spec.egress[3].port.number: duplicate port 80 (also egress[2])",
                "error[RM0003] spec.egress[4]: only one egress listener may omit the port (also egress[0])",
            ],
        ),
        (
            r#"
            outboundTrafficPolicy:
              mode: REGISTRY_ONLY
              egressProxy: {host: proxy, port: {number: 0}}
            inboundConnectionPool: {http: {maxRetries: -1}}
            "#,
            &[
                "error[RM0003] spec.inboundConnectionPool.http.maxRetries: maxRetries must not be negative (got -1)",
                "error[RM0003] spec.outboundTrafficPolicy.egressProxy.port.number: port 0 is out of range 1-65535",
                "error[RM0003] spec.outboundTrafficPolicy.egressProxy: egressProxy requires mode ALLOW_ANY",
            ],
        ),
        (
            r#"
            outboundTrafficPolicy: {mode: ALLOW_ALL}
            "#,
            &[
                "error[RM0004] spec.outboundTrafficPolicy.mode: unknown variant `ALLOW_ALL`, expected `REGISTRY_ONLY` or `ALLOW_ANY`",
            ],
        ),
        ],
    );
}

#[test]
fn peer_authentication() {
    run(
        "PeerAuthentication",
        &[
        (
            r#"
            portLevelMtls: {8080: {mode: DISABLE}}
            "#,
            &[
                "error[RM0003] spec.portLevelMtls: portLevelMtls requires a workload selector (as in Istio): ports are a property of a workload, not of a namespace",
            ],
        ),
        (
            r#"
            selector: {matchLabels: {}}
            portLevelMtls: {8080: {mode: DISABLE}}
            "#,
            &[
                "error[RM0003] spec.portLevelMtls: portLevelMtls requires a workload selector (as in Istio): ports are a property of a workload, not of a namespace",
            ],
        ),
        (
            r#"
            selector: {matchLabels: {app: a}}
            portLevelMtls: {0: {mode: DISABLE}, 70000: {}, x: {}}
            "#,
            &[
                "error[RM0004] spec.portLevelMtls.x: \"x\" is not a port number",
            ],
        ),
        (
            r#"
            selector: {matchLabels: {app: a}}
            mtls: {mode: STRICT}
            portLevelMtls: {0: {mode: DISABLE}}
            "#,
            &[
                "error[RM0003] spec.portLevelMtls.0: port 0 is out of range 1-65535",
            ],
        ),
        ],
    );
}

#[test]
fn authorization_policy() {
    run(
        "AuthorizationPolicy",
        &[
        (
            r#"
            action: DENY
            provider: {name: x}
            targetRef: {kind: Gateway, name: gw}
            rules:
            - from: [{}, {source: {}}]
              to: [{}, {operation: {}}]
              when: [{key: ''}, {key: source.ips, values: [a]}, {key: source.ip}]
            "#,
            &[
                "error[RM0003] spec.provider: provider is only allowed with action CUSTOM",
                "error[RM0003] spec.rules[0].from[0].source: source is required",
                "error[RM0003] spec.rules[0].from[1].source: source must set at least one field",
                "error[RM0003] spec.rules[0].to[0].operation: operation is required",
                "error[RM0003] spec.rules[0].to[1].operation: operation must set at least one field",
                "error[RM0003] spec.rules[0].when[0].key: key is required",
                "error[RM0003] spec.rules[0].when[1].key: unknown condition key \"source.ips\" (supported: request.headers[NAME], source.ip, remote.ip, source.namespace, source.principal, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[NAME], destination.ip, destination.port, connection.sni)",
                "error[RM0003] spec.rules[0].when[2]: set values or notValues",
                "error[RM0005] spec.targetRef: targetRef (attaching a policy to a gateway or waypoint) is not supported yet; use selector",
            ],
        ),
        (
            r#"
            rules:
            - from:
              - source:
                  principals: ['']
                  notIpBlocks: ['1.2.3.4/33']
                  remoteIpBlocks: [x]
                  serviceAccounts: [default, ns/sa]
              to:
              - operation:
                  ports: ['80', '65536', http]
                  paths: ['/a*b', '/ok/*', '/x/{*}/y', '/z/{x}']
                  methods: ['']
              when:
              - {key: destination.port, values: ['80', x]}
              - {key: remote.ip, notValues: ['1.1.1.1/40']}
              - {key: 'request.auth.claims[groups]', values: [admin]}
              - {key: 'request.headers[]', values: [x]}
            "#,
            &[
                "error[RM0003] spec.rules[0].from[0].source.notIpBlocks[0]: invalid CIDR \"1.2.3.4/33\": the prefix length must be 0-32",
                "error[RM0003] spec.rules[0].from[0].source.principals[0]: a value must not be empty",
                "error[RM0003] spec.rules[0].from[0].source.remoteIpBlocks[0]: invalid IP address or CIDR \"x\" (expected e.g. 10.0.0.1 or 10.0.0.0/8)",
                "error[RM0003] spec.rules[0].from[0].source.serviceAccounts[0]: invalid service account \"default\" (expected namespace/name)",
                "error[RM0003] spec.rules[0].to[0].operation.methods[0]: a value must not be empty",
                "error[RM0003] spec.rules[0].to[0].operation.paths[0]: invalid path \"/a*b\": * is allowed only as a prefix or a suffix (or use the {*} and {**} templates)",
                "error[RM0003] spec.rules[0].to[0].operation.paths[3]: invalid path template \"/z/{x}\" ({*} and {**} must each be a whole segment)",
                "error[RM0003] spec.rules[0].to[0].operation.ports[1]: invalid port \"65536\" (expected a number 0-65535)",
                "error[RM0003] spec.rules[0].to[0].operation.ports[2]: invalid port \"http\" (expected a number 0-65535)",
                "error[RM0003] spec.rules[0].when[0].values[1]: invalid port \"x\" (expected a number 0-65535)",
                "error[RM0003] spec.rules[0].when[1].notValues[0]: invalid CIDR \"1.1.1.1/40\": the prefix length must be 0-32",
                "error[RM0003] spec.rules[0].when[3].key: unknown condition key \"request.headers[]\" (supported: request.headers[NAME], source.ip, remote.ip, source.namespace, source.principal, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[NAME], destination.ip, destination.port, connection.sni)",
                "warning[RM0010] spec.rules[0].when[2].key: request.auth.claims[groups] is not evaluated by Ringmesh yet (no JWT authentication, no experimental attributes): an ALLOW or AUDIT rule using it never matches, a DENY rule is applied without it (it denies more)",
            ],
        ),
        (
            r#"
            action: DENY
            rules:
            - from: [{source: {notRequestPrincipals: ['*']}}]
              to: [{operation: {paths: ['/a/{**}/{*}']}}]
            "#,
            &[
                "error[RM0003] spec.rules[0].to[0].operation.paths[0]: invalid path template \"/a/{**}/{*}\" ({**} must be the last operator)",
                "warning[RM0010] spec.rules[0].from[0].source.notRequestPrincipals: notRequestPrincipals needs JWT authentication (RequestAuthentication), which Ringmesh does not do yet: an ALLOW or AUDIT rule using it never matches, a DENY rule is applied without it (it denies more)",
            ],
        ),
        (
            r#"
            action: AUDIT
            rules: [{}]
            "#,
            &[
            ],
        ),
        (
            r#"
            action: ALLOWED
            "#,
            &[
                "error[RM0004] spec.action: unknown variant `ALLOWED`, expected one of `ALLOW`, `DENY`, `AUDIT`, `CUSTOM`",
            ],
        ),
        (
            r#"
            action: DENY
            selector: {matchLabels: {app: a}}
            "#,
            &["warning[RM0010] spec.rules: a DENY policy without rules matches nothing, so it denies nothing"],
        ),
        ],
    );
}
