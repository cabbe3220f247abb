//! [`Transport`]: the two ways a call travels.

use std::fmt;

/// The transport a call travels over: what [`Channel::transport`](crate::Channel::transport)
/// reports and [`ServerBuilder::transports`](crate::ServerBuilder::transports) chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// quicrpc's native wire: one QUIC stream per call.
    Quic,
    /// Plain gRPC over HTTP/2 over TCP, with TLS (tonic): the fallback.
    Tcp,
    /// gRPC over HTTP/3 (gRFC G2), which a quicrpc server speaks on its QUIC endpoint
    /// beside the native wire, for gRPC clients in other languages.
    Http3,
}

impl Transport {
    /// The transport's name as metrics label it: `quic`, `tcp` or `h3`.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::Tcp => "tcp",
            Self::Http3 => "h3",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Quic => "QUIC",
            Self::Tcp => "TCP",
            Self::Http3 => "HTTP/3",
        })
    }
}
