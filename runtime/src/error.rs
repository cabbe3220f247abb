//! Errors of setting up channels and servers. Errors of calls are `tonic::Status`.

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// A cause of any type, as [`Error`]'s variants keep it.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

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
    /// Serving gRPC over TCP failed (tonic's server).
    #[error("serving over TCP: {}", chain(source))]
    Serve {
        /// Why it failed.
        #[source]
        source: tonic::transport::Error,
    },
    /// The QUIC endpoint stopped accepting connections while the server was serving (its
    /// UDP socket failed). The server shuts down rather than go on serving TCP alone.
    #[error("serving over QUIC: the endpoint stopped accepting connections")]
    QuicStopped,
    /// A setting is out of range, or a file it names cannot be created.
    #[error("invalid setting: {message}{}", cause(source))]
    Config {
        /// What is wrong.
        message: String,
        /// The underlying failure, if there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// A certificate, key or TLS setting was refused.
    #[error("TLS: {message}{}", cause(source))]
    Tls {
        /// What was refused.
        message: String,
        /// The underlying failure (rustls's, say), if there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The server was built without `.identity(identity)`; TLS cannot run without it.
    #[error("a server needs a TLS identity: call Server::builder().identity(identity)")]
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
    /// The QUIC handshake completed with ALPN `h3`, but HTTP/3 could not be set up on the
    /// connection (its control stream, say).
    #[error("connecting to {addr}: setting up HTTP/3: {reason}")]
    Http3 {
        /// The server address.
        addr: SocketAddr,
        /// What went wrong, as the `h3` crate says it.
        reason: String,
    },
    /// gRPC over TCP could not connect: TCP, TLS or HTTP/2 failed.
    #[error("connecting over TCP: {}", chain(source))]
    TcpConnect {
        /// Why it failed (tonic's error; the detail is in its chain of causes).
        #[source]
        source: tonic::transport::Error,
    },
    /// Neither transport connected ([`Fallback::Auto`](crate::Fallback::Auto)).
    #[error("QUIC: {quic}; TCP: {tcp}")]
    BothFailed {
        /// Why QUIC failed.
        #[source]
        quic: Box<Error>,
        /// Why TCP failed.
        tcp: Box<Error>,
    },
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
    /// Whether connecting timed out: a QUIC handshake or a TCP connect that did not finish
    /// in time, on either transport when both failed.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::ConnectTimeout { .. } => true,
            Self::TcpConnect { source } => caused_by_timeout(source),
            Self::BothFailed { quic, tcp } => quic.is_timeout() || tcp.is_timeout(),
            _ => false,
        }
    }

    /// A [`Tls`](Self::Tls) error that has no underlying cause.
    pub(crate) fn tls(message: impl Into<String>) -> Self {
        Self::Tls {
            message: message.into(),
            source: None,
        }
    }

    /// A [`Tls`](Self::Tls) error caused by `source`.
    pub(crate) fn tls_caused(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Tls {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A [`Config`](Self::Config) error that has no underlying cause.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::Config {
            message: message.into(),
            source: None,
        }
    }
}

/// Whether a timeout is among `err`'s causes: tonic reports its connect timeout, like the
/// operating system's, as an `io::Error` of kind `TimedOut`.
fn caused_by_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<tokio::time::error::Elapsed>()
            || err
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// `err`'s message followed by its causes', which is where tonic keeps the detail.
pub(crate) fn chain(err: &dyn StdError) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // Some errors repeat their cause in their own message.
        let cause_message = cause.to_string();
        if !message.ends_with(&cause_message) {
            message.push_str(": ");
            message.push_str(&cause_message);
        }
        source = cause.source();
    }
    message
}

/// `": "` and the chain of `source`, or nothing.
fn cause(source: &Option<BoxError>) -> String {
    match source {
        Some(source) => format!(": {}", chain(source.as_ref())),
        None => String::new(),
    }
}
