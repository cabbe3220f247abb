//! Compiles the benchmarked service.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    quicrpc_build::configure()
        .compile_protos(&["../proto/helloworld/helloworld.proto"], &["../proto"])?;
    Ok(())
}
