//! Test support (feature `test-util`): a minimal HTTP configuration as xDS
//! resources, and a server running on its own thread, for tests that
//! drive a real Envoy (or the data plane's xDS client) without writing
//! any async code or naming generated types.
//!
//! The fixtures form the usual chain: a [`http_listener`] whose
//! connection manager fetches its routes by RDS over ADS, a
//! [`route_to_cluster`], an [`eds_cluster`] whose endpoints come by EDS
//! over ADS, and its [`load_assignment`]. Versions are hashes of the
//! fixture's parameters — the source — not of the encoded message.

use std::{
    net::{SocketAddr, TcpListener},
    thread,
};

use tokio::sync::oneshot;

use crate::{
    content_version,
    wire::pb::{
        envoy::{
            config::{
                cluster::v3::{
                    cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig},
                    Cluster,
                },
                core::v3::{
                    address, config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
                    Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress,
                },
                endpoint::v3::{
                    lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
                    LocalityLbEndpoints,
                },
                listener::v3::{filter, Filter, FilterChain, Listener},
                route::v3::{
                    route, route_action::ClusterSpecifier, route_match::PathSpecifier, Route,
                    RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
                },
            },
            extensions::filters::{
                http::router::v3::Router,
                network::http_connection_manager::v3::{
                    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
                    HttpFilter, Rds,
                },
            },
        },
        google::protobuf::{Any, Duration},
    },
    Resource, XdsServer,
};

fn any<M: prost::Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn socket_address(addr: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(addr.port()))),
            ..Default::default()
        })),
    }
}

fn listener_with(name: &str, addr: SocketAddr, hcm: Any) -> Listener {
    Listener {
        name: name.to_owned(),
        address: Some(socket_address(addr)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(hcm)),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A listener on `addr` whose HTTP connection manager takes its routes
/// from RouteConfiguration `route_config` over ADS.
pub fn http_listener(name: &str, addr: SocketAddr, route_config: &str) -> Resource {
    let hcm = HttpConnectionManager {
        stat_prefix: name.to_owned(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_config.to_owned(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(
                any(&Router::default()),
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    let version = content_version(format!("http_listener|{name}|{addr}|{route_config}").as_bytes());
    Resource::from_message(name, version, &listener_with(name, addr, any(&hcm)))
}

/// The type URL [`broken_listener`] puts where the connection manager's
/// configuration belongs: no Envoy extension registers it.
pub const UNKNOWN_FILTER_TYPE: &str = "type.googleapis.com/ringmesh.test.NoSuchFilter";

/// A listener Envoy must reject: its network filter's `typed_config` is
/// of an unregistered type ([`UNKNOWN_FILTER_TYPE`]).
pub fn broken_listener(name: &str, addr: SocketAddr) -> Resource {
    let bogus = Any {
        type_url: UNKNOWN_FILTER_TYPE.into(),
        value: Vec::new(),
    };
    let version = content_version(format!("broken_listener|{name}|{addr}").as_bytes());
    Resource::from_message(name, version, &listener_with(name, addr, bogus))
}

/// A route configuration sending every request (`/` prefix, any host)
/// to `cluster`.
pub fn route_to_cluster(name: &str, cluster: &str) -> Resource {
    let rc = RouteConfiguration {
        name: name.to_owned(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_owned())),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let version = content_version(format!("route_to_cluster|{name}|{cluster}").as_bytes());
    Resource::from_message(name, version, &rc)
}

/// A cluster whose endpoints come by EDS over ADS.
pub fn eds_cluster(name: &str) -> Resource {
    let c = Cluster {
        name: name.to_owned(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let version = content_version(format!("eds_cluster|{name}").as_bytes());
    Resource::from_message(name, version, &c)
}

/// The endpoints of `cluster`.
pub fn load_assignment(cluster: &str, endpoints: &[SocketAddr]) -> Resource {
    let cla = ClusterLoadAssignment {
        cluster_name: cluster.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: endpoints
                .iter()
                .map(|a| LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket_address(*a)),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let list: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    let version =
        content_version(format!("load_assignment|{cluster}|{}", list.join(",")).as_bytes());
    Resource::from_message(cluster, version, &cla)
}

/// An [`XdsServer`] serving on `127.0.0.1:<free port>` from a thread of
/// its own with its own tokio runtime. Publish and read status through
/// the `XdsServer` (both are synchronous). Stops on drop: the listener
/// closes and every stream ends at once.
pub struct ServerThread {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ServerThread {
    /// # Panics
    /// If loopback cannot be bound or the runtime cannot start.
    pub fn start(server: XdsServer) -> ServerThread {
        Self::start_on(server, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serve on `addr`: to restart a control plane where its clients
    /// expect it, bind the address of the previous [`ServerThread`] after
    /// dropping it.
    ///
    /// # Panics
    /// If `addr` cannot be bound or the runtime cannot start.
    pub fn start_on(server: XdsServer, addr: SocketAddr) -> ServerThread {
        let std_listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        std_listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = std_listener.local_addr().expect("local_addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("xds-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building the xDS server's runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener)
                        .expect("registering the listener");
                    // Not graceful: dropping the serve future on stop
                    // ends the streams at once (they never end by
                    // themselves).
                    tokio::select! {
                        r = server.serve(listener, std::future::pending()) => {
                            if let Err(e) = r {
                                eprintln!("xDS server on {addr} failed: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawning the xDS server thread");
        ServerThread {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
