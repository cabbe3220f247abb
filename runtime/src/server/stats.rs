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
