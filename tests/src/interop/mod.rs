//! gRPC's interop suite (`grpc.testing`, from `proto/grpc/testing/`): the TestService
//! server, the client cases with the sizes and checks of the public interop descriptions,
//! and the body wrappers both need to see and set each message's compressed flag.

mod client;
mod framing;
mod server;

pub use client::{Case, Recording, ResponseHead, run_case};
pub use framing::{Compress, Framed, Observed, gzip_bytes};
pub use server::{
    CallEvent, ECHO_INITIAL, ECHO_TRAILING, Ending, Interop, InteropLayer, InteropServer,
    InteropService,
};

/// Generated code for `proto/grpc/testing/*.proto`.
#[allow(missing_docs, unreachable_pub)]
pub mod pb {
    quicrpc::include_proto!("grpc.testing");
}
