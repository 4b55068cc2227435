//! The generated code is what the `.proto` files say: service names on the
//! wire, field round trips, and the enums' wire values.

use prost::Message;
use ringmesh_proto::{
    ca::v1::{
        certificate_service_server::CertificateServiceServer, CreateCertificateRequest,
        CreateCertificateResponse,
    },
    mesh::v1::{
        mesh_status_server::MeshStatusServer, ListProxiesResponse, Nack, ProxyStatus,
        PublishedVersions, Rejection, SyncState, TypeStatus, XdsProtocol,
    },
    PROTO_FILES,
};
use tonic::server::NamedService;

#[test]
fn services_have_their_proto_names() {
    // What clients put in the `:path` of every call; renaming a package
    // or service breaks every deployed client.
    struct Never;
    #[tonic::async_trait]
    impl ringmesh_proto::mesh::v1::mesh_status_server::MeshStatus for Never {
        async fn list_proxies(
            &self,
            _: tonic::Request<ringmesh_proto::mesh::v1::ListProxiesRequest>,
        ) -> Result<tonic::Response<ListProxiesResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("test"))
        }
    }
    #[tonic::async_trait]
    impl ringmesh_proto::ca::v1::certificate_service_server::CertificateService for Never {
        async fn create_certificate(
            &self,
            _: tonic::Request<CreateCertificateRequest>,
        ) -> Result<tonic::Response<CreateCertificateResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("test"))
        }
    }
    assert_eq!(
        <MeshStatusServer<Never> as NamedService>::NAME,
        "ringmesh.mesh.v1.MeshStatus"
    );
    assert_eq!(
        <CertificateServiceServer<Never> as NamedService>::NAME,
        "ringmesh.ca.v1.CertificateService"
    );
}

#[test]
fn status_round_trips() {
    let resp = ListProxiesResponse {
        proxies: vec![ProxyStatus {
            stream_id: 7,
            node_id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local".into(),
            protocol: XdsProtocol::Delta as i32,
            connected_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            types: vec![TypeStatus {
                type_url: "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
                short_name: "LDS".into(),
                state: SyncState::Nacked as i32,
                rejected: [("http".to_string(), "v2".to_string())].into(),
                last_nack: Some(Nack {
                    version: "v2".into(),
                    error_message: "Listener \"http\": bad".into(),
                    rejected: [(
                        "http".to_string(),
                        Rejection {
                            version: "v2".into(),
                            reason: "Listener \"http\": bad".into(),
                        },
                    )]
                    .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        published: [(
            "default".to_string(),
            PublishedVersions {
                versions: [("t".to_string(), "v".to_string())].into(),
            },
        )]
        .into(),
        control_plane: None,
    };
    let back = ListProxiesResponse::decode(resp.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, resp);
    assert_eq!(back.proxies[0].types[0].state(), SyncState::Nacked);
    assert_eq!(back.proxies[0].protocol(), XdsProtocol::Delta);
}

#[test]
fn enum_wire_values_are_stable() {
    assert_eq!(SyncState::Synced as i32, 1);
    assert_eq!(SyncState::Stale as i32, 2);
    assert_eq!(SyncState::Nacked as i32, 3);
    assert_eq!(SyncState::NotSent as i32, 4);
    assert_eq!(
        SyncState::from_str_name("SYNC_STATE_NACKED"),
        Some(SyncState::Nacked)
    );
    assert_eq!(XdsProtocol::Sotw as i32, 2);
}

#[test]
fn ca_request_round_trips() {
    let req = CreateCertificateRequest {
        csr: "-----BEGIN CERTIFICATE REQUEST-----\n...".into(),
        validity_duration: 3600,
    };
    let back = CreateCertificateRequest::decode(req.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, req);
}

#[test]
fn proto_sources_are_shipped() {
    let names: Vec<&str> = PROTO_FILES.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["ringmesh/mesh/v1/status.proto", "ringmesh/ca/v1/ca.proto"]
    );
    for (name, text) in PROTO_FILES {
        assert!(text.contains("syntax = \"proto3\""), "{name}");
    }
}
