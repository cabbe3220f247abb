//! The native half of quicrpc's Node.js client (`bindings/node/`): a napi-rs addon over
//! [`quicrpc::Channel`].
//!
//! JavaScript sees two classes, [`NativeClient`] and [`NativeCall`], and the plain objects
//! they take and give; `index.js` builds the public API on them (`Client.connect`, the four
//! call kinds, errors shaped like `@grpc/grpc-js`'s). Every call is one Tokio task on the
//! process's one runtime (napi-rs's, shared by every client), fed and read through bounded
//! channels, so JavaScript never waits on Rust and a call that JavaScript stops reading
//! stops reading from the network. Messages cross as JSON text (proto3's mapping; built and
//! read against descriptors from `.proto` files or the server's reflection, by
//! `quicrpc-schema`) or as their protobuf encoding, untouched.

mod call;
mod client;
mod metadata;
mod method;
mod options;

pub use call::{CallEvent, CallStatus, NativeCall};
pub use client::NativeClient;
pub use metadata::MetadataEntry;
pub use options::{CallOptions, ConnectOptions};
