//! The transports compared: each client kind, the server it talks to, and the QUIC congestion
//! controllers. A new comparator is a variant here, its server in `serve` and its client in
//! `dial`.

use clap::ValueEnum;

/// QUIC congestion controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Cc {
    Cubic,
    NewReno,
    Bbr,
}

impl Cc {
    pub(crate) fn quicrpc(self) -> quicrpc::CongestionControl {
        match self {
            Self::Cubic => quicrpc::CongestionControl::Cubic,
            Self::NewReno => quicrpc::CongestionControl::NewReno,
            Self::Bbr => quicrpc::CongestionControl::Bbr,
        }
    }
}

/// The servers `serve` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServerKind {
    /// quicrpc::Server: QUIC on UDP and gRPC on TCP, same port.
    Quicrpc,
    /// tonic's own server, TCP+TLS.
    Tonic,
}

/// The clients the load generators run, each against its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ClientKind {
    /// quicrpc over QUIC.
    Quic,
    /// quicrpc's TCP fallback (tonic's channel under quicrpc's).
    QuicrpcTcp,
    /// Plain tonic channel, TCP+TLS.
    Tonic,
    /// Plain tonic, one TCP+TLS connection per call in flight (the head-of-line control).
    TonicPool,
}

impl ClientKind {
    /// The transports every scenario compares, in the order they run and are reported.
    pub(crate) const ALL: [ClientKind; 3] =
        [ClientKind::Quic, ClientKind::QuicrpcTcp, ClientKind::Tonic];
    /// Scenario 5's transports: the three, and tonic with a connection per call in flight.
    pub(crate) const HOL: [ClientKind; 4] = [
        ClientKind::Quic,
        ClientKind::QuicrpcTcp,
        ClientKind::Tonic,
        ClientKind::TonicPool,
    ];

    pub(crate) fn server(self) -> ServerKind {
        match self {
            Self::Quic | Self::QuicrpcTcp => ServerKind::Quicrpc,
            Self::Tonic | Self::TonicPool => ServerKind::Tonic,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Quic => "quicrpc QUIC",
            Self::QuicrpcTcp => "quicrpc TCP fallback",
            Self::Tonic => "tonic TCP+TLS",
            Self::TonicPool => "tonic, a connection per call",
        }
    }
}
