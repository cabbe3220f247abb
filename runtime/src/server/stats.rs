//! Live connection counts, and the connection limit they enforce.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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
    tcp_handshakes: AtomicUsize,
    retries: AtomicUsize,
    opened: AtomicUsize,
    buffered: AtomicUsize,
    /// Open connections per peer address, both transports together; addresses with none
    /// have no entry.
    per_address: Mutex<HashMap<IpAddr, usize>>,
    calls: AtomicUsize,
}

impl ServerStats {
    /// Open QUIC connections, handshakes under way included.
    pub fn quic_connections(&self) -> usize {
        self.counts.quic.load(Ordering::Acquire)
    }

    /// Open TCP connections (gRPC over HTTP/2) whose TLS handshake has completed. Those
    /// still handshaking are [`tcp_handshakes`](Self::tcp_handshakes), and do not count
    /// against the connection limit.
    pub fn tcp_connections(&self) -> usize {
        self.counts.tcp.load(Ordering::Acquire)
    }

    /// TCP connections accepted whose TLS handshake is under way.
    pub fn tcp_handshakes(&self) -> usize {
        self.counts.tcp_handshakes.load(Ordering::Acquire)
    }

    /// Counts a TCP handshake under way until the guard drops, unless `max` are already
    /// under way.
    pub(super) fn tcp_handshake(&self, max: usize) -> Option<TcpHandshakeGuard> {
        let before = self.counts.tcp_handshakes.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            self.counts.tcp_handshakes.fetch_sub(1, Ordering::AcqRel);
            refused(Transport::Tcp, "max_handshakes");
            return None;
        }
        Some(TcpHandshakeGuard(self.clone()))
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
            // An HTTP/3 connection is a QUIC connection on the same endpoint.
            Transport::Quic | Transport::Http3 => &self.counts.quic,
            Transport::Tcp => &self.counts.tcp,
        }
    }

    /// Counts a new connection from `peer`, unless the server already has `max` on both
    /// transports together, or `per_address` from that address; the counts drop when the
    /// guard does.
    pub(super) fn open(
        &self,
        transport: Transport,
        max: usize,
        peer: IpAddr,
        per_address: Option<usize>,
    ) -> Option<ConnectionGuard> {
        // Reserve first, then check: concurrent opens cannot overshoot together.
        let counter = self.counter(transport);
        let on_this_transport = counter.fetch_add(1, Ordering::AcqRel) + 1;
        if self.connections() > max {
            counter.fetch_sub(1, Ordering::AcqRel);
            refused(transport, "max_connections");
            return None;
        }
        if on_this_transport > transport_share(max) {
            counter.fetch_sub(1, Ordering::AcqRel);
            refused(transport, "transport_share");
            return None;
        }
        {
            let mut addresses = self.addresses();
            let count = addresses.entry(peer).or_insert(0);
            if per_address.is_some_and(|limit| *count >= limit) {
                if *count == 0 {
                    addresses.remove(&peer);
                }
                drop(addresses);
                counter.fetch_sub(1, Ordering::AcqRel);
                refused(transport, "max_connections_per_address");
                return None;
            }
            *count += 1;
        }
        self.counts.opened.fetch_add(1, Ordering::AcqRel);
        Some(ConnectionGuard {
            stats: self.clone(),
            transport,
            peer,
        })
    }

    /// Connections admitted since the server started, on both transports (those refused
    /// by a limit not included).
    pub fn connections_opened(&self) -> usize {
        self.counts.opened.load(Ordering::Acquire)
    }

    /// Bytes that incomplete request messages hold, counted at their declared sizes, on both
    /// transports (see [`ServerBuilder::request_buffer_per_connection`](crate::ServerBuilder::request_buffer_per_connection)).
    pub fn buffered_request_bytes(&self) -> usize {
        self.counts.buffered.load(Ordering::Acquire)
    }

    pub(super) fn set_buffered_request_bytes(&self, bytes: usize) {
        self.counts.buffered.store(bytes, Ordering::Release);
    }

    /// Open connections from `peer`, on both transports.
    pub fn connections_from(&self, peer: IpAddr) -> usize {
        self.addresses().get(&peer).copied().unwrap_or(0)
    }

    fn addresses(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map is consistent between statements: a panic elsewhere cannot leave it torn.
        self.counts
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The most connections one transport may hold of `max`: a tenth is kept for the other, so
/// that a flood on one (cheap TCP connections, say) cannot lock clients out of both.
fn transport_share(max: usize) -> usize {
    max - max / 10
}

/// Counts a connection refused for `reason`.
fn refused(transport: Transport, reason: &'static str) {
    metrics::counter!(
        "quicrpc_connections_refused_total",
        "transport" => match transport {
            Transport::Quic | Transport::Http3 => "quic",
            Transport::Tcp => "tcp",
        },
        "reason" => reason
    )
    .increment(1);
}

/// One counted connection.
#[derive(Debug)]
pub(super) struct ConnectionGuard {
    stats: ServerStats,
    transport: Transport,
    peer: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        {
            let mut addresses = self.stats.addresses();
            if let Some(count) = addresses.get_mut(&self.peer) {
                *count -= 1;
                if *count == 0 {
                    addresses.remove(&self.peer);
                }
            }
        }
        self.stats
            .counter(self.transport)
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// One TCP handshake under way.
#[derive(Debug)]
pub(super) struct TcpHandshakeGuard(ServerStats);

impl Drop for TcpHandshakeGuard {
    fn drop(&mut self) {
        self.0.counts.tcp_handshakes.fetch_sub(1, Ordering::AcqRel);
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
