//! Errors of setting up channels and servers. Errors of calls are `tonic::Status`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// A failure to build, bind or connect a [`Channel`](crate::Channel) or
/// [`Server`](crate::Server).
///
/// Calls never return this type: they end with a [`tonic::Status`], whose code means the same
/// on every transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address given to `Channel::builder` is not an `https://host[:port]` URI.
    #[error("invalid address {uri:?}: {reason}")]
    InvalidUri {
        /// The address as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Serving failed (the TCP side's accept loop).
    #[error("serving: {0}")]
    Serve(String),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Config(String),
    /// A certificate, key or TLS setting was refused.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server was built without `.tls(identity)`; QUIC cannot run without it.
    #[error("a server needs a TLS identity: call Server::builder().tls(identity)")]
    MissingIdentity,
    /// Name resolution failed or found no address.
    #[error("resolving {host:?}: {source}")]
    Resolve {
        /// The name looked up.
        host: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// A socket could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The QUIC handshake failed (refused, wrong certificate, wrong protocol).
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The server address tried.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: quinn::ConnectionError,
    },
    /// gRPC over TCP could not connect (with, under [`Fallback::Auto`](crate::Fallback::Auto),
    /// why QUIC failed too).
    #[error("connecting over TCP: {0}")]
    TcpConnect(String),
    /// No QUIC handshake finished in time: the server is down, or UDP does not get through.
    #[error("connecting to {addr}: no QUIC handshake within {timeout:?}")]
    ConnectTimeout {
        /// The server address tried.
        addr: SocketAddr,
        /// The limit that passed.
        timeout: Duration,
    },
}

impl Error {
    /// Whether the error is a connect timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::ConnectTimeout { .. })
    }
}
