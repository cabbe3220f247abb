//! Compiles the test service from `proto/testing/echo.proto`, with its descriptor set for the
//! reflection test, and gRPC's interop test service from `proto/grpc/testing/`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    quicrpc_build::configure()
        .file_descriptor_set_path(out_dir.join("echo_descriptor.bin"))
        .compile_protos(&["../proto/testing/echo.proto"], &["../proto"])?;
    quicrpc_build::configure()
        .compile_protos(&["../proto/grpc/testing/test.proto"], &["../proto"])?;
    Ok(())
}
