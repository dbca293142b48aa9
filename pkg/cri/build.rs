//! Generates the CRI runtime.v1 messages and gRPC clients from proto/runtime_v1.proto with
//! protoc (Debian's protobuf-compiler; scripts/deps.sh installs it, `$PROTOC` overrides).

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto/runtime_v1.proto");
    tonic_prost_build::configure()
        // Servers too: tests (and fakes of the kubelet's tests) serve a fake runtime;
        // methods a fake leaves out answer Unimplemented.
        .build_server(true)
        .generate_default_stubs(true)
        .build_transport(false)
        .compile_protos(&["proto/runtime_v1.proto"], &["proto"])
}
