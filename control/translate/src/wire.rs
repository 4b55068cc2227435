//! The facade over the generated Envoy v3 types (`envoy-types`): the only
//! module that names that crate. The rest of the crate builds messages
//! through the module aliases re-exported here and the few helpers below
//! (`Any` packing through [`ringmesh_xds::pack`], type URLs from
//! `prost::Name`, addresses, durations, wrapper values), so generating our
//! own types later changes this file and nothing else.

use std::net::IpAddr;

pub(crate) use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3 as cluster, core::v3 as core, endpoint::v3 as endpoint,
            listener::v3 as listener, route::v3 as route,
        },
        extensions::{
            filters::{
                common::fault::v3 as common_fault,
                http::{fault::v3 as fault, router::v3 as router},
                listener::{original_dst::v3 as original_dst, tls_inspector::v3 as tls_inspector},
                network::{http_connection_manager::v3 as hcm, tcp_proxy::v3 as tcp_proxy},
            },
            retry::host::previous_hosts::v3 as previous_hosts,
            transport_sockets::tls::v3 as tls,
            upstreams::http::v3 as upstream_http,
        },
        r#type::{matcher::v3 as matcher, v3 as types},
    },
    google::protobuf::{Any, BoolValue, Duration, UInt32Value, UInt64Value},
};
use ringmesh_xds::{content_version, Resource, TypeUrl};

/// Pack a message into the generated `Any` (for `typed_config` fields),
/// with the type URL from its `prost::Name`.
pub(crate) fn any<M: prost::Name>(message: &M) -> Any {
    let packed = ringmesh_xds::pack(message);
    Any {
        type_url: packed.type_url,
        value: packed.value,
    }
}

/// The type URL of a message type (never spelled by hand).
pub(crate) fn type_url<M: prost::Name>() -> TypeUrl {
    TypeUrl::of::<M>()
}

/// A named resource whose version is the hash of its encoding.
///
/// Sound only because nothing this crate builds has a map field with two
/// or more entries (prost maps are `HashMap`s, whose encoding order
/// varies): `typed_per_filter_config` and `typed_extension_protocol_options`
/// get at most one entry each, and metadata `Struct`s are never used.
/// The determinism tests encode every resource twice and across shuffled
/// inputs to hold this.
pub(crate) fn resource<M: prost::Name>(name: &str, message: &M) -> Resource {
    let body = ringmesh_xds::pack(message);
    Resource::new(name, content_version(&body.value), body)
}

pub(crate) fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

pub(crate) fn u32v(value: u32) -> UInt32Value {
    UInt32Value { value }
}

pub(crate) fn boolv(value: bool) -> BoolValue {
    BoolValue { value }
}

pub(crate) fn socket_address(ip: &str, port: u32) -> core::SocketAddress {
    core::SocketAddress {
        address: ip.to_owned(),
        port_specifier: Some(core::socket_address::PortSpecifier::PortValue(port)),
        ..Default::default()
    }
}

pub(crate) fn address(ip: &str, port: u32) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(socket_address(
            ip, port,
        ))),
    }
}

pub(crate) fn ip_address(ip: IpAddr, port: u16) -> core::Address {
    address(&ip.to_string(), u32::from(port))
}

/// `ads: {}` with the v3 resource API: fetch over the same ADS stream.
pub(crate) fn ads() -> core::ConfigSource {
    core::ConfigSource {
        resource_api_version: core::ApiVersion::V3 as i32,
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// A percentage (0-100, fractions allowed) as a per-million fraction,
/// as Istio writes fault and mirror percentages.
pub(crate) fn fraction(percent: f64) -> types::FractionalPercent {
    let per_million = (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32;
    types::FractionalPercent {
        numerator: per_million,
        denominator: types::fractional_percent::DenominatorType::Million as i32,
    }
}

/// A string matcher (exact/prefix/regex) for header and query matches.
pub(crate) fn string_matcher(
    m: &ringmesh_istio::StringMatch,
    ignore_case: bool,
) -> Option<matcher::StringMatcher> {
    use matcher::string_matcher::MatchPattern;
    use ringmesh_istio::StringMatch;
    let pattern = match m {
        StringMatch::Exact(s) => MatchPattern::Exact(s.clone()),
        StringMatch::Prefix(s) => MatchPattern::Prefix(s.clone()),
        StringMatch::Regex(s) => MatchPattern::SafeRegex(regex(s)),
        StringMatch::Present => return None,
    };
    Some(matcher::StringMatcher {
        ignore_case,
        match_pattern: Some(pattern),
    })
}

/// An RE2 regex matcher with the default engine.
pub(crate) fn regex(pattern: &str) -> matcher::RegexMatcher {
    matcher::RegexMatcher {
        regex: pattern.to_owned(),
        ..Default::default()
    }
}

pub(crate) fn header_option(
    key: &str,
    value: &str,
    action: core::header_value_option::HeaderAppendAction,
) -> core::HeaderValueOption {
    core::HeaderValueOption {
        header: Some(core::HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

/// The router: the last HTTP filter of every connection manager.
pub(crate) fn router_filter() -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
            &router::Router::default(),
        ))),
        ..Default::default()
    }
}

/// The fault filter's name, the key of its per-route configuration.
pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// The fault filter with an empty base configuration: the faults come
/// from the routes' `typed_per_filter_config`.
pub(crate) fn fault_filter() -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: FAULT_FILTER.into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
            &fault::HttpFault::default(),
        ))),
        ..Default::default()
    }
}

pub(crate) fn network_filter<M: prost::Name>(name: &str, config: &M) -> listener::Filter {
    listener::Filter {
        name: name.to_owned(),
        config_type: Some(listener::filter::ConfigType::TypedConfig(any(config))),
    }
}
