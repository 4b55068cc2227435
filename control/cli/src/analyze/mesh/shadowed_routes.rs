//! RM0103: HTTP routes that can never match.
//!
//! Routes are tried in order and the first match wins, so every route after
//! one that matches every request is dead configuration — usually a
//! catch-all written first by mistake. A route matches everything when it
//! has no `match`, or one of its (OR-ed) conditions restricts nothing
//! (`uri: {prefix: /}` and `uri: {regex: .*}` restrict nothing either).

use ringmesh_istio::{
    networking::virtual_service::{HttpMatchRequest, HttpRoute},
    StringMatch,
};

use super::{Field, Finding, Mesh};

/// Does this condition hold for every request?
fn matches_everything(m: &HttpMatchRequest) -> bool {
    let any_uri = match &m.uri {
        None => true,
        Some(StringMatch::Prefix(p)) => p == "/",
        Some(StringMatch::Regex(r)) => r == ".*",
        Some(_) => false,
    };
    any_uri
        && m.scheme.is_none()
        && m.method.is_none()
        && m.authority.is_none()
        && m.headers.is_empty()
        && m.port.is_none()
        && m.source_labels.is_empty()
        && m.gateways.is_empty()
        && m.query_params.is_empty()
        && m.without_headers.is_empty()
        && m.source_namespace.is_none()
}

fn is_catch_all(r: &HttpRoute) -> bool {
    r.matches.is_empty() || r.matches.iter().any(matches_everything)
}

pub(super) fn check(mesh: &Mesh<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for vs in &mesh.model.virtual_services {
        let http = &vs.spec.http;
        let Some(first) = http.iter().position(is_catch_all) else {
            continue;
        };
        let by = match &http[first].name {
            Some(name) => format!("spec.http[{first}] ({name:?})"),
            None => format!("spec.http[{first}]"),
        };
        for j in first + 1..http.len() {
            out.push(Finding::new(
                vs,
                Field::root().key("spec").key("http").index(j),
                format!(
                    "unreachable route: {by} before it matches every request; move the \
                     catch-all last or give it a match"
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{super::test_util::run, *};

    fn vs(routes: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: v}}\n\
             spec:\n  hosts: [reviews]\n  http:\n{routes}"
        )
    }

    const TO: &str = "    route: [{destination: {host: reviews}}]\n";

    #[test]
    fn routes_after_a_catch_all_are_reported() {
        let yaml = vs(&format!(
            "  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]\n{TO}\
             \x20 - name: everyone\n{TO}\
             \x20 - match: [{{uri: {{prefix: /v2}}}}]\n{TO}\
             \x20 - match: [{{uri: {{prefix: /v3}}}}]\n{TO}"
        ));
        let expected = |j: usize| {
            format!(
                "VirtualService default/v spec.http[{j}]: unreachable route: spec.http[1] \
                 (\"everyone\") before it matches every request; move the catch-all last or give \
                 it a match"
            )
        };
        assert_eq!(run(check, &yaml), [expected(2), expected(3)]);
    }

    #[test]
    fn conditions_that_restrict_nothing_make_a_catch_all() {
        let yaml = vs(&format!(
            "  - match: [{{uri: {{prefix: /api}}}}, {{uri: {{prefix: /}}, ignoreUriCase: true}}]\n{TO}\
             \x20 - match: [{{uri: {{prefix: /v2}}}}]\n{TO}"
        ));
        assert_eq!(run(check, &yaml).len(), 1);
        let regex = vs(&format!(
            "  - match: [{{uri: {{regex: '.*'}}}}]\n{TO}  - match: [{{port: 80}}]\n{TO}"
        ));
        assert_eq!(run(check, &regex).len(), 1);
    }

    #[test]
    fn ordered_routes_and_a_last_catch_all_are_fine() {
        let yaml = vs(&format!(
            "  - match: [{{uri: {{prefix: /}}, port: 9080}}]\n{TO}\
             \x20 - match: [{{sourceLabels: {{app: a}}}}]\n{TO}\
             \x20 - match: [{{gateways: [mesh]}}]\n{TO}\
             \x20 - route: [{{destination: {{host: reviews}}}}]\n"
        ));
        assert_eq!(run(check, &yaml), Vec::<String>::new());
    }
}
