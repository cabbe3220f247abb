//! The quicrpc wire format, sans IO: encode and decode functions over bytes, no sockets.
//!
//! One call is one client-initiated bidirectional QUIC stream:
//!
//! ```text
//! request:  HEADERS (:path, :authority, :priority, metadata)  DATA*  FIN
//! response: HEADERS (metadata)  DATA*  TRAILERS (grpc-status, ...)  FIN
//!       or: HEADERS (grpc-status, ...)  FIN                      (trailers-only)
//! ```
//!
//! DATA frames carry gRPC's length-prefixed messages, cut anywhere. `docs/PROTOCOL.md` in the
//! repository is the full specification; this module is its reference implementation, public
//! so that tests and fuzzers can speak the protocol directly.

pub mod code;
pub mod fields;
pub mod frame;
pub mod message;
pub mod varint;

/// The ALPN protocol name of this wire format, version 1.
pub const ALPN: &[u8] = b"quicrpc/1";
