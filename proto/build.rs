//! Compile the `.proto` files under `ringmesh/` into Rust: `protox` (a
//! protobuf compiler in Rust, so no `protoc` binary is needed) parses them
//! into a `FileDescriptorSet`, and `tonic-prost-build` generates the
//! messages, clients and servers into `OUT_DIR`.

const PROTOS: &[&str] = &["ringmesh/mesh/v1/status.proto", "ringmesh/ca/v1/ca.proto"];

fn main() {
    println!("cargo:rerun-if-changed=ringmesh");
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    // `google/protobuf/*.proto` come built into protox.
    let fds = match protox::compile(PROTOS, ["."]) {
        Ok(fds) => fds,
        Err(e) => panic!("compiling the .proto files of ringmesh-proto: {e:?}"),
    };
    if let Err(e) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
    {
        panic!("generating Rust from the .proto files of ringmesh-proto: {e}");
    }
}
