//! # quicrpc
//!
//! gRPC-style RPC over QUIC. Services are described in `.proto` files and compiled by
//! `quicrpc-build` into the same typed clients and server traits tonic generates; quicrpc
//! carries each call on its own QUIC bidirectional stream, so a lost packet delays only the
//! call it belongs to, and each call's bytes are scheduled by a per-method priority.
//!
//! Use it where tonic fits, but calls of mixed urgency share a connection over an imperfect
//! network: many concurrent calls, streams, and bulk transfers next to urgent control calls.
//!
//! ## Example
//!
//! ```no_run
//! # mod pb { pub mod greeter_client { #[derive(Clone)] pub struct GreeterClient<T>(T);
//! #   impl<T> GreeterClient<T> { pub fn new(t: T) -> Self { Self(t) } } } }
//! # use pb::greeter_client::GreeterClient;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cert = quicrpc::tls::SelfSigned::new(["localhost"])?;
//! let server = quicrpc::Server::builder()
//!     .identity(cert.identity())
//!     // .add_service(GreeterServer::new(MyGreeter))
//!     .bind("127.0.0.1:0")
//!     .await?;
//! let addr = server.local_addr();
//! tokio::spawn(server.serve());
//!
//! let channel = quicrpc::Channel::builder(format!("https://localhost:{}", addr.port()))
//!     .ca_certificate(cert.ca_certificate())
//!     .connect()
//!     .await?;
//! let client = GreeterClient::new(channel); // the tonic-generated client, unchanged
//! # Ok(()) }
//! ```
//!
//! ## What a call looks like on the wire
//!
//! One client-initiated bidirectional stream: a HEADERS frame (path, metadata, priority),
//! DATA frames with gRPC's length-prefixed messages, and in the response a TRAILERS frame
//! with the status. See `docs/PROTOCOL.md`; the crate `quicrpc-wire` implements it, sans IO.
//!
//! ## Statuses
//!
//! A call's outcome is always a [`tonic::Status`]. Transport failures map to the codes gRPC
//! uses on HTTP/2: a lost connection is UNAVAILABLE, a passed deadline DEADLINE_EXCEEDED, an
//! oversized message RESOURCE_EXHAUSTED, a peer breaking the wire format INTERNAL.
//!
//! ## Feature flags
//!
//! - `dev-certs` (default): [`tls::SelfSigned`], development certificates made at run time.
//! - `qlog`: `qlog_dir` on [`ChannelBuilder`] and [`ServerBuilder`], a qlog trace per QUIC
//!   connection.

mod client;
mod config;
mod congestion;
mod deadline;
mod error;
mod http3;
mod method;
mod priority;
#[cfg(feature = "qlog")]
mod qlog;
mod server;
mod status;
mod stream;
mod sync;
mod telemetry;
#[cfg(test)]
mod test_support;
mod transport;
mod window;
mod zero_rtt;

#[doc(hidden)]
pub mod codegen;
pub mod tls;

use quicrpc_wire as wire;

pub use client::{
    Balance, Change, Channel, ChannelBuilder, Dns, Fallback, QuicWire, Resolve, ResponseBody,
    ResponseFuture,
};
pub use config::CongestionControl;
pub use error::Error;
pub use method::{CallKind, Idempotency, MethodInfo, method_info};
pub use quicrpc_wire::{ParsePriorityError, Priority};
pub use server::{
    AddressValidation, HttpRequest, LayeredService, QuicLbConfig, Server, ServerBuilder,
    ServerStats,
};
pub use transport::Transport;
pub use zero_rtt::{NoZeroRtt, ZeroRtt};

/// Includes the code `quicrpc-build` generated for a protobuf package: messages, tonic
/// client and server stubs, and quicrpc's method tables.
///
/// ```ignore
/// pub mod helloworld {
///     quicrpc::include_proto!("helloworld");
/// }
/// ```
#[macro_export]
macro_rules! include_proto {
    ($package:tt) => {
        include!(concat!(env!("OUT_DIR"), concat!("/", $package, ".rs")));
    };
}
