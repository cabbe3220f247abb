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

/// One call in progress.
#[derive(Debug)]
pub(super) struct CallGuard(ServerStats);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.counts.calls.fetch_sub(1, Ordering::AcqRel);
    }
}
