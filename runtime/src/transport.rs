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
}

impl Transport {
    /// The transport's name as metrics label it: `quic` or `tcp`.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Quic => "QUIC",
            Self::Tcp => "TCP",
        })
    }
}
