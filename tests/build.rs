//! Compiles the test service from `proto/testing/echo.proto`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    quicrpc_build::configure().compile_protos(&["../proto/testing/echo.proto"], &["../proto"])?;
    Ok(())
}
