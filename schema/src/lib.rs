//! # quicrpc-schema
//!
//! Message types known only at run time, for programs that call gRPC services without
//! generated code: the `quicrpc` command-line tool and the Node.js binding
//! (`bindings/node/`). A [`Schema`] holds descriptors from `.proto` files compiled at run
//! time (protox, no `protoc`) or asked of the server's reflection service
//! (grpc.reflection.v1), only for what is needed. [`DynamicCodec`] and [`RawCodec`] let
//! tonic's `Grpc` client send and receive such messages over a [`quicrpc::Channel`], and
//! [`message_from_json`] builds one from proto3's JSON mapping, naming the field that does
//! not fit.
//!
//! ```no_run
//! # async fn run() -> Result<(), quicrpc_schema::Error> {
//! use quicrpc_schema::{OptionNames, Schema};
//!
//! let names = OptionNames { protos: "--proto", import_paths: "--import-path", timeout: "--timeout" };
//! let mut schema = Schema::from_protos(&["testing/echo.proto".into()], &["proto".into()], names)?;
//! let method = schema.method("quicrpc.testing.Echo/Unary").await?;
//! let request = quicrpc_schema::message_from_json(
//!     &mut serde_json::Deserializer::from_str(r#"{"message": "hi"}"#),
//!     &method.input(),
//! );
//! # Ok(()) }
//! ```
//!
//! Text that comes from the server (a name, a file, a status message) is passed through
//! [`escape`] wherever these errors quote it, so it is safe to print on a terminal.

mod codec;
mod error;
mod escape;
mod idempotency;
mod json;
mod priority;
mod protos;
mod reflection;
mod schema;
mod suggest;

pub use codec::{DynamicCodec, DynamicDecoder, DynamicEncoder, RawCodec, RawDecoder, RawEncoder};
pub use error::Error;
pub use escape::{escape, escape_keeping_lines};
pub use idempotency::{call_kind, declared_idempotency};
pub use json::{JsonError, message_from_json};
pub use priority::declared_priority;
pub use schema::{OptionNames, Schema, Symbol, method_path, split_method};
pub use suggest::suggestions;
