//! A bound on the memory that incomplete request messages hold, per connection and server-wide.
//!
//! tonic buffers a request message until all of it has come, and reserves room for the
//! length its prefix declares as soon as the prefix has come. Flow control does not bound
//! that: the transport hands bytes on as they arrive and gives the peer its credit back. So
//! each call's message in progress is charged at its declared size (prefix included) from
//! its prefix until its last byte, and a call whose charge does not fit fails with
//! RESOURCE_EXHAUSTED. A message that arrives whole in one piece is never charged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame};
use tonic::Status;

use super::ServerStats;
use crate::wire::message::MessageLimiter;

/// Which connection a call's charge counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ConnectionKey {
    /// A QUIC connection, by quinn's stable id.
    Quic(usize),
    /// A TCP connection, by its peer's address (unique among open connections).
    Tcp(SocketAddr),
}

/// The server's request buffers: what each connection and all of them together hold.
#[derive(Debug)]
pub(crate) struct RequestBuffers {
    /// Where the total is shown ([`ServerStats::buffered_request_bytes`]).
    stats: ServerStats,
    per_connection: usize,
    total_limit: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    /// Connections holding anything; those at zero have no entry.
    connections: HashMap<ConnectionKey, usize>,
}

/// A call's message in progress did not fit in the budget.
#[derive(Debug)]
pub(crate) struct BudgetExceeded {
    /// Which budget: "connection" or "server".
    scope: &'static str,
    limit: usize,
}

impl BudgetExceeded {
    /// The status the call ends with.
    pub(crate) fn status(&self) -> Status {
        Status::resource_exhausted(format!(
            "the server's buffer for incomplete request messages is full ({} budget of {} \
             bytes): send smaller messages or fewer at once",
            self.scope, self.limit
        ))
    }
}

impl RequestBuffers {
    /// Buffers of at most `per_connection` bytes per connection and `total` in all.
    pub(crate) fn new(per_connection: usize, total: usize, stats: ServerStats) -> Arc<Self> {
        Arc::new(Self {
            stats,
            per_connection,
            total_limit: total,
            held: Mutex::default(),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Every update leaves the counts consistent: a panic elsewhere cannot tear them.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A call's charge on connection `key`, at zero.
    pub(crate) fn charge(self: &Arc<Self>, key: ConnectionKey) -> Charge {
        Charge {
            buffers: self.clone(),
            key,
            charged: 0,
        }
    }
}

/// What one call's message in progress holds of the budget; released when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    buffers: Arc<RequestBuffers>,
    key: ConnectionKey,
    charged: usize,
}

impl Charge {
    /// Sets the charge to `bytes`; fails, leaving it as it was, if that does not fit.
    pub(crate) fn set(&mut self, bytes: usize) -> Result<(), BudgetExceeded> {
        if bytes == self.charged {
            return Ok(());
        }
        let buffers = &self.buffers;
        let mut held = buffers.held();
        let connection = held.connections.get(&self.key).copied().unwrap_or(0);
        // What the others hold, without this call's charge.
        let connection_others = connection - self.charged;
        let total_others = held.total - self.charged;
        if bytes > self.charged {
            if connection_others.saturating_add(bytes) > buffers.per_connection {
                return Err(BudgetExceeded {
                    scope: "connection",
                    limit: buffers.per_connection,
                });
            }
            if total_others.saturating_add(bytes) > buffers.total_limit {
                return Err(BudgetExceeded {
                    scope: "server",
                    limit: buffers.total_limit,
                });
            }
        }
        held.total = total_others + bytes;
        buffers.stats.set_buffered_request_bytes(held.total);
        match connection_others + bytes {
            0 => {
                held.connections.remove(&self.key);
            }
            n => {
                held.connections.insert(self.key, n);
            }
        }
        self.charged = bytes;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        // Releasing always fits.
        let _ = self.set(0);
    }
}

/// A request body that is not the native wire's (TCP, HTTP/3) held to what the native wire's
/// body does itself: each message against the server's receive limit from its prefix, and the
/// message in progress charged against the budget.
pub(crate) struct BudgetedBody<B> {
    body: B,
    limiter: MessageLimiter,
    charge: Charge,
    failed: bool,
}

impl<B> BudgetedBody<B> {
    pub(crate) fn new(body: B, max_message: usize, charge: Charge) -> Self {
        Self {
            body,
            limiter: MessageLimiter::new(max_message),
            charge,
            failed: false,
        }
    }
}

impl<B> Body for BudgetedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        let frame = match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            let checked = match this.limiter.observe(data) {
                Ok(()) => this
                    .charge
                    .set(this.limiter.pending_message_bytes())
                    .map_err(|exceeded| exceeded.status()),
                // As the native wire answers it.
                Err(e) => Err(Status::resource_exhausted(format!("received {e}"))),
            };
            if let Err(status) = checked {
                this.failed = true;
                let _ = this.charge.set(0);
                return Poll::Ready(Some(Err(Box::new(status))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
