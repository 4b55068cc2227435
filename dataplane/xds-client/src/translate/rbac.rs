//! Envoy's RBAC filters → the model's `rbac:` chain, and the connection
//! manager's path normalization fields.
//!
//! Supported: `envoy.filters.http.rbac` in a connection manager's
//! `http_filters` (before the router) and `envoy.filters.network.rbac`
//! before the terminal network filter; `rules` and `shadow_rules` with
//! any action; permissions `any`, `and_rules`, `or_rules`, `not_rule`,
//! `header`, `url_path`, `destination_ip`, `destination_port`,
//! `requested_server_name`; principals `any`, `and_ids`, `or_ids`,
//! `not_id`, `authenticated`, `source_ip`, `direct_remote_ip`,
//! `remote_ip`, `header`, `url_path`. Everything else (metadata, filter
//! state, CEL conditions, matcher trees, port ranges, custom extensions,
//! audit loggers, continuous enforcement, per-route overrides) is
//! rejected with the field's path: a policy that is only partly
//! understood must never be enforced as if it were whole.

use ringmesh_config::model::{
    AuthenticatedSpec, EscapedSlashesSpec, PathNormalizationSpec, PermissionSetSpec,
    PermissionSpec, PolicySpec, PrincipalSetSpec, PrincipalSpec, RbacAction, RbacFilterSpec,
    RbacRulesSpec, StringMatchSpec,
};

use super::{header_matcher, reject, string_matcher, Reject};
use crate::wire::pb;

type Rbac = pb::envoy::config::rbac::v3::Rbac;

/// Both RBAC filters may give a matcher tree instead of rules (and of
/// shadow rules): not supported.
fn no_matcher_trees(at: &str, matcher: bool, shadow_matcher: bool) -> Result<(), Reject> {
    if matcher {
        return reject(
            format!("{at}.matcher"),
            "matcher-tree RBAC is not supported (give rules)",
        );
    }
    if shadow_matcher {
        return reject(
            format!("{at}.shadow_matcher"),
            "matcher-tree RBAC is not supported (give shadow_rules)",
        );
    }
    Ok(())
}

/// An `envoy.filters.http.rbac` filter's typed config.
pub(super) fn http_filter(
    at: &str,
    name: &str,
    f: &pb::envoy::extensions::filters::http::rbac::v3::Rbac,
) -> Result<RbacFilterSpec, Reject> {
    no_matcher_trees(at, f.matcher.is_some(), f.shadow_matcher.is_some())?;
    filter(at, name, f.rules.as_ref(), f.shadow_rules.as_ref(), true)
}

/// An `envoy.filters.network.rbac` filter's typed config. `http`: the
/// filter sits before a connection manager (header rules still cannot be
/// read at the connection level, so they are rejected either way).
pub(super) fn network_filter(
    at: &str,
    name: &str,
    f: &pb::envoy::extensions::filters::network::rbac::v3::Rbac,
) -> Result<RbacFilterSpec, Reject> {
    use pb::envoy::extensions::filters::network::rbac::v3::rbac::EnforcementType;
    no_matcher_trees(at, f.matcher.is_some(), f.shadow_matcher.is_some())?;
    if f.enforcement_type != EnforcementType::OneTimeOnFirstByte as i32 {
        return reject(
            format!("{at}.enforcement_type"),
            "only ONE_TIME_ON_FIRST_BYTE is supported (the connection is checked once)",
        );
    }
    if f.delay_deny.is_some() {
        return reject(format!("{at}.delay_deny"), "not supported");
    }
    let name = if f.stat_prefix.is_empty() {
        name
    } else {
        &f.stat_prefix
    };
    filter(at, name, f.rules.as_ref(), f.shadow_rules.as_ref(), false)
}

fn filter(
    at: &str,
    name: &str,
    rules: Option<&Rbac>,
    shadow: Option<&Rbac>,
    http: bool,
) -> Result<RbacFilterSpec, Reject> {
    Ok(RbacFilterSpec {
        name: (!name.is_empty()).then(|| name.to_owned()),
        rules: rules
            .map(|r| rule_set(&format!("{at}.rules"), r, http))
            .transpose()?,
        shadow_rules: shadow
            .map(|r| rule_set(&format!("{at}.shadow_rules"), r, http))
            .transpose()?,
    })
}

fn rule_set(at: &str, r: &Rbac, http: bool) -> Result<RbacRulesSpec, Reject> {
    use pb::envoy::config::rbac::v3::rbac::Action;
    let action = match Action::try_from(r.action) {
        Ok(Action::Allow) => RbacAction::Allow,
        Ok(Action::Deny) => RbacAction::Deny,
        Ok(Action::Log) => RbacAction::Log,
        Err(_) => {
            return reject(
                format!("{at}.action"),
                format!("unknown action {}", r.action),
            )
        }
    };
    if r.audit_logging_options.is_some() {
        return reject(
            format!("{at}.audit_logging_options"),
            "RBAC audit loggers are not supported (use action LOG)",
        );
    }
    // Sorted by name: the protobuf map has no order, evaluation must.
    let mut names: Vec<&String> = r.policies.keys().collect();
    names.sort();
    let mut policies = std::collections::BTreeMap::new();
    for name in names {
        let p = &r.policies[name];
        let pat = format!("{at}.policies[{name:?}]");
        if p.condition.is_some() || p.checked_condition.is_some() {
            return reject(
                format!("{pat}.condition"),
                "CEL conditions are not supported",
            );
        }
        if p.cel_config.is_some() {
            return reject(format!("{pat}.cel_config"), "CEL is not supported");
        }
        let permissions = p
            .permissions
            .iter()
            .enumerate()
            .map(|(i, x)| permission(&format!("{pat}.permissions[{i}]"), x, http, 0))
            .collect::<Result<_, _>>()?;
        let principals = p
            .principals
            .iter()
            .enumerate()
            .map(|(i, x)| principal(&format!("{pat}.principals[{i}]"), x, http, 0))
            .collect::<Result<_, _>>()?;
        policies.insert(
            name.clone(),
            PolicySpec {
                permissions,
                principals,
            },
        );
    }
    Ok(RbacRulesSpec { action, policies })
}

/// Deeper nesting is rejected here already (the compiler's own bound
/// is 64; recursion here must stay bounded too).
const MAX_DEPTH: usize = 64;

fn cidr(at: &str, c: &pb::envoy::config::core::v3::CidrRange) -> Result<String, Reject> {
    let len = c.prefix_len.as_ref().map_or(
        // Envoy: an absent prefix_len is 0 (the whole address family).
        0,
        |l| l.value,
    );
    let parsed = ringmesh_config::authz::Cidr::from_parts(&c.address_prefix, len)
        .map_err(|r| (at.to_owned(), r))?;
    Ok(parsed.to_string())
}

fn string(
    at: &str,
    sm: &pb::envoy::r#type::matcher::v3::StringMatcher,
) -> Result<StringMatchSpec, Reject> {
    let (key, value, ignore_case) = string_matcher(at, sm)?;
    let mut s = StringMatchSpec {
        ignore_case,
        ..Default::default()
    };
    let v = Some(value);
    match key {
        "exact" => s.exact = v,
        "prefix" => s.prefix = v,
        "suffix" => s.suffix = v,
        "contains" => s.contains = v,
        _ => s.regex = v,
    }
    Ok(s)
}

fn path(
    at: &str,
    p: &pb::envoy::r#type::matcher::v3::PathMatcher,
) -> Result<StringMatchSpec, Reject> {
    use pb::envoy::r#type::matcher::v3::path_matcher::Rule;
    match &p.rule {
        Some(Rule::Path(sm)) => string(&format!("{at}.path"), sm),
        None => reject(format!("{at}.path"), "missing"),
    }
}

fn no_l7(at: &str, http: bool, what: &str) -> Result<(), Reject> {
    if http {
        Ok(())
    } else {
        reject(
            at,
            format!("{what} cannot be evaluated by a network (L4) RBAC filter"),
        )
    }
}

#[allow(deprecated)] // `metadata` is deprecated but still sent
fn permission(
    at: &str,
    p: &pb::envoy::config::rbac::v3::Permission,
    http: bool,
    depth: usize,
) -> Result<PermissionSpec, Reject> {
    use pb::envoy::config::rbac::v3::permission::Rule;
    if depth > MAX_DEPTH {
        return reject(at, format!("rules nest deeper than {MAX_DEPTH} levels"));
    }
    let mut out = PermissionSpec::default();
    let set = |key: &str, rules: &[pb::envoy::config::rbac::v3::Permission]| {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| permission(&format!("{at}.{key}.rules[{i}]"), r, http, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(|rules| PermissionSetSpec { rules })
    };
    match &p.rule {
        Some(Rule::Any(b)) => out.any = Some(*b),
        Some(Rule::AndRules(s)) => out.and_rules = Some(set("and_rules", &s.rules)?),
        Some(Rule::OrRules(s)) => out.or_rules = Some(set("or_rules", &s.rules)?),
        Some(Rule::NotRule(inner)) => {
            out.not_rule = Some(Box::new(permission(
                &format!("{at}.not_rule"),
                inner,
                http,
                depth + 1,
            )?))
        }
        Some(Rule::Header(h)) => {
            no_l7(&format!("{at}.header"), http, "a header rule")?;
            out.header = Some(header_matcher(&format!("{at}.header"), h)?)
        }
        Some(Rule::UrlPath(p)) => {
            no_l7(&format!("{at}.url_path"), http, "a url_path rule")?;
            out.url_path = Some(path(&format!("{at}.url_path"), p)?)
        }
        Some(Rule::DestinationIp(c)) => {
            out.destination_ip = Some(cidr(&format!("{at}.destination_ip"), c)?)
        }
        Some(Rule::DestinationPort(port)) => {
            let port = u16::try_from(*port).map_err(|_| {
                (
                    format!("{at}.destination_port"),
                    format!("{port} is not a port"),
                )
            })?;
            out.destination_port = Some(port)
        }
        Some(Rule::RequestedServerName(sm)) => {
            out.requested_server_name = Some(string(&format!("{at}.requested_server_name"), sm)?)
        }
        Some(Rule::DestinationPortRange(_)) => {
            return reject(
                format!("{at}.destination_port_range"),
                "port ranges are not supported (use or_rules of destination_port)",
            )
        }
        Some(Rule::Metadata(_)) => {
            return reject(format!("{at}.metadata"), "metadata rules are not supported")
        }
        Some(Rule::SourcedMetadata(_)) => {
            return reject(
                format!("{at}.sourced_metadata"),
                "metadata rules are not supported",
            )
        }
        Some(Rule::Matcher(_)) => {
            return reject(
                format!("{at}.matcher"),
                "extension matchers are not supported",
            )
        }
        Some(Rule::UriTemplate(_)) => {
            return reject(
                format!("{at}.uri_template"),
                "URI template matchers are not supported",
            )
        }
        None => return reject(at, "missing rule"),
    }
    Ok(out)
}

#[allow(deprecated)] // `metadata` and `source_ip` are deprecated but still sent
fn principal(
    at: &str,
    p: &pb::envoy::config::rbac::v3::Principal,
    http: bool,
    depth: usize,
) -> Result<PrincipalSpec, Reject> {
    use pb::envoy::config::rbac::v3::principal::Identifier;
    if depth > MAX_DEPTH {
        return reject(at, format!("rules nest deeper than {MAX_DEPTH} levels"));
    }
    let mut out = PrincipalSpec::default();
    let set = |key: &str, ids: &[pb::envoy::config::rbac::v3::Principal]| {
        ids.iter()
            .enumerate()
            .map(|(i, r)| principal(&format!("{at}.{key}.ids[{i}]"), r, http, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(|ids| PrincipalSetSpec { ids })
    };
    match &p.identifier {
        Some(Identifier::Any(b)) => out.any = Some(*b),
        Some(Identifier::AndIds(s)) => out.and_ids = Some(set("and_ids", &s.ids)?),
        Some(Identifier::OrIds(s)) => out.or_ids = Some(set("or_ids", &s.ids)?),
        Some(Identifier::NotId(inner)) => {
            out.not_id = Some(Box::new(principal(
                &format!("{at}.not_id"),
                inner,
                http,
                depth + 1,
            )?))
        }
        Some(Identifier::Authenticated(a)) => {
            out.authenticated = Some(AuthenticatedSpec {
                principal_name: a
                    .principal_name
                    .as_ref()
                    .map(|sm| string(&format!("{at}.authenticated.principal_name"), sm))
                    .transpose()?,
            })
        }
        Some(Identifier::SourceIp(c)) => out.source_ip = Some(cidr(&format!("{at}.source_ip"), c)?),
        Some(Identifier::DirectRemoteIp(c)) => {
            out.direct_remote_ip = Some(cidr(&format!("{at}.direct_remote_ip"), c)?)
        }
        Some(Identifier::RemoteIp(c)) => out.remote_ip = Some(cidr(&format!("{at}.remote_ip"), c)?),
        Some(Identifier::Header(h)) => {
            no_l7(&format!("{at}.header"), http, "a header rule")?;
            out.header = Some(header_matcher(&format!("{at}.header"), h)?)
        }
        Some(Identifier::UrlPath(p)) => {
            no_l7(&format!("{at}.url_path"), http, "a url_path rule")?;
            out.url_path = Some(path(&format!("{at}.url_path"), p)?)
        }
        Some(Identifier::Metadata(_)) => {
            return reject(
                format!("{at}.metadata"),
                "metadata principals are not supported",
            )
        }
        Some(Identifier::SourcedMetadata(_)) => {
            return reject(
                format!("{at}.sourced_metadata"),
                "metadata principals are not supported",
            )
        }
        Some(Identifier::FilterState(_)) => {
            return reject(
                format!("{at}.filter_state"),
                "filter state principals are not supported",
            )
        }
        Some(Identifier::Custom(_)) => {
            return reject(
                format!("{at}.custom"),
                "custom principal extensions are not supported",
            )
        }
        None => return reject(at, "missing identifier"),
    }
    Ok(out)
}

/// The connection manager's path normalization fields. `normalize_path`
/// unset means this proxy's safe default (on; Envoy's own default is
/// off), `merge_slashes` is a plain bool (unset = false, as in Envoy),
/// `path_with_escaped_slashes_action` unset means reject (Envoy: keep).
pub(super) fn path_normalization(
    at: &str,
    hcm: &pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager,
) -> Result<PathNormalizationSpec, Reject> {
    use pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::PathWithEscapedSlashesAction as A;
    if hcm.path_normalization_options.is_some() {
        return reject(
            format!("{at}.path_normalization_options"),
            "not supported (use normalize_path, merge_slashes, path_with_escaped_slashes_action)",
        );
    }
    let escaped_slashes = match A::try_from(hcm.path_with_escaped_slashes_action) {
        Ok(A::ImplementationSpecificDefault) => None,
        Ok(A::KeepUnchanged) => Some(EscapedSlashesSpec::Keep),
        Ok(A::RejectRequest) => Some(EscapedSlashesSpec::Reject),
        Ok(A::UnescapeAndRedirect) => Some(EscapedSlashesSpec::UnescapeAndRedirect),
        Ok(A::UnescapeAndForward) => Some(EscapedSlashesSpec::UnescapeAndForward),
        Err(_) => {
            return reject(
                format!("{at}.path_with_escaped_slashes_action"),
                format!("unknown action {}", hcm.path_with_escaped_slashes_action),
            )
        }
    };
    Ok(PathNormalizationSpec {
        normalize: hcm.normalize_path.as_ref().map(|b| b.value),
        merge_slashes: Some(hcm.merge_slashes),
        escaped_slashes,
    })
}
