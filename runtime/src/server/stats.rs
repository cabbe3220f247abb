//! Live connection counts, and the connection limit they enforce.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Transport;

/// Live counts of a server's open connections. Cheap to clone; every clone sees the same
/// counts. Get one from [`Server::stats`](crate::Server::stats) before serving.
#[derive(Clone, Debug, Default)]
pub struct ServerStats {
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    quic: AtomicUsize,
    tcp: AtomicUsize,
    quic_handshakes: AtomicUsize,
    retries: AtomicUsize,
    calls: AtomicUsize,
}

impl ServerStats {
    /// Open QUIC connections, handshakes under way included.
    pub fn quic_connections(&self) -> usize {
        self.counts.quic.load(Ordering::Acquire)
    }

    /// Open TCP connections (gRPC over HTTP/2), TLS handshakes under way included.
    pub fn tcp_connections(&self) -> usize {
        self.counts.tcp.load(Ordering::Acquire)
    }

    /// QUIC handshakes under way: connections accepted whose handshake has not completed.
    pub fn quic_handshakes(&self) -> usize {
        self.counts.quic_handshakes.load(Ordering::Acquire)
    }

    /// QUIC Retry packets sent so far: connection attempts asked to prove their address
    /// ([`AddressValidation`](crate::AddressValidation)).
    pub fn retries_sent(&self) -> usize {
        self.counts.retries.load(Ordering::Acquire)
    }

    pub(super) fn retry_sent(&self) {
        self.counts.retries.fetch_add(1, Ordering::AcqRel);
        metrics::counter!("quicrpc_quic_retries_total").increment(1);
    }

    /// Counts a QUIC handshake under way until the guard drops.
    pub(super) fn handshake(&self) -> HandshakeGuard {
        self.counts.quic_handshakes.fetch_add(1, Ordering::AcqRel);
        HandshakeGuard(self.clone())
    }

    /// Calls in progress on both transports, from their arrival until their response has
    /// been sent or abandoned.
    pub fn calls(&self) -> usize {
        self.counts.calls.load(Ordering::Acquire)
    }

    /// Counts a call in progress until the guard drops.
    pub(super) fn call(&self) -> CallGuard {
        self.counts.calls.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }

    /// Open connections on both transports.
    pub fn connections(&self) -> usize {
        self.quic_connections() + self.tcp_connections()
    }

    fn counter(&self, transport: Transport) -> &AtomicUsize {
        match transport {
            Transport::Quic => &self.counts.quic,
            Transport::Tcp => &self.counts.tcp,
        }
    }

    /// Counts a new connection, unless the server already has `max` on both transports
    /// together; the count drops when the guard does.
    pub(super) fn open(&self, transport: Transport, max: usize) -> Option<ConnectionGuard> {
        // Reserve first, then check: concurrent opens cannot overshoot together.
        let counter = self.counter(transport);
        counter.fetch_add(1, Ordering::AcqRel);
        if self.connections() > max {
            counter.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(
                "quicrpc_connections_refused_total",
                "transport" => match transport {
                    Transport::Quic => "quic",
                    Transport::Tcp => "tcp",
                },
                "reason" => "max_connections"
            )
            .increment(1);
            return None;
        }
        Some(ConnectionGuard {
            stats: self.clone(),
            transport,
        })
    }
}

/// One counted connection.
#[derive(Debug)]
pub(super) struct ConnectionGuard {
    stats: ServerStats,
    transport: Transport,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.stats
            .counter(self.transport)
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// One QUIC handshake under way.
#[derive(Debug)]
pub(super) struct HandshakeGuard(ServerStats);

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        self.0.counts.quic_handshakes.fetch_sub(1, Ordering::AcqRel);
    }
}

/// When the server asks a QUIC client to prove its address with a Retry packet before it
/// spends a handshake's work (and up to three times the client's bytes in answers) on it.
///
/// A Retry costs the client one round trip. Without it, a spoofed flood of Initial packets
/// makes the server do handshake work and send answers to addresses that never asked, which
/// is what amplification attacks use; QUIC caps those answers at three times what the address
/// sent, and Retry removes them. Clients that resume with an address validation token from
/// the server are not asked again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressValidation {
    /// Never send Retry.
    Never,
    /// Validate every new connection (a round trip more for each).
    Always,
    /// Validate new connections while at least `handshakes` QUIC handshakes are under way:
    /// no cost in normal operation, validation under a flood.
    UnderLoad {
        /// Handshakes under way from which Retry switches on.
        handshakes: usize,
    },
}

impl Default for AddressValidation {
    /// [`AddressValidation::UnderLoad`] from 64 handshakes under way.
    fn default() -> Self {
        Self::UnderLoad { handshakes: 64 }
    }
}

impl AddressValidation {
    /// Whether a connection attempt from an unvalidated address gets a Retry now.
    pub(super) fn retry_now(self, handshakes: usize) -> bool {
        match self {
            Self::Never => false,
            Self::Always => true,
            Self::UnderLoad { handshakes: from } => handshakes >= from,
        }
    }
}

/// One call in progress.
#[derive(Debug)]
pub(super) struct CallGuard(ServerStats);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.counts.calls.fetch_sub(1, Ordering::AcqRel);
    }
}
