//! The TCP side's accepted connections: TLS done by quicrpc (TLS 1.3 only, the ring
//! provider, every client CA), handshakes run side by side under a timeout, and a
//! connection counted against the server's limits only once its handshake has completed.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::Counted;
use crate::Transport;
use crate::server::stats::{ServerStats, TcpHandshakeGuard};

/// TLS handshakes the TCP side runs at once. A connection accepted past it is closed at once;
/// each handshake ends within the handshake timeout, so a flood of silent connections holds
/// at most this many for that long.
pub(super) const MAX_TCP_HANDSHAKES: usize = 1024;

/// How long accepting pauses after the listener fails (out of file descriptors, say), so
/// that a lasting failure does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// After this long without a byte from the peer, the kernel starts probing whether it is
/// still there (SO_KEEPALIVE), so that a peer that vanished without a FIN or RST is found
/// even while a call keeps its connection from being idle.
const TCP_KEEPALIVE_TIME: Duration = Duration::from_secs(60);

/// What every accepted connection needs to become a [`Counted`] one.
pub(super) struct Admission {
    pub(super) stats: ServerStats,
    pub(super) max_connections: usize,
    pub(super) per_address: Option<usize>,
    pub(super) handshake_timeout: Duration,
    /// Wraps each accepted connection in its timers (not yet counted).
    pub(super) counted: Box<dyn Fn(TcpStream) -> Counted + Send + Sync>,
}

/// The stream of TLS connections that tonic serves: accepts, starts a handshake task per
/// connection, and yields each that completes and is admitted. Dropping it stops the
/// listener and aborts the handshakes under way.
pub(super) struct TlsIncoming {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    admission: Arc<Admission>,
    handshakes: JoinSet<Option<TlsStream<Counted>>>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TlsIncoming {
    /// The TLS side of `listener`, with `config` (which must offer ALPN `h2`).
    pub(super) fn new(
        listener: TcpListener,
        config: rustls::ServerConfig,
        admission: Admission,
    ) -> Self {
        Self {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            admission: Arc::new(admission),
            handshakes: JoinSet::new(),
            pause: None,
        }
    }

    fn start_handshake(&mut self, stream: TcpStream) {
        let peer = stream.peer_addr().ok();
        let Some(guard) = self.admission.stats.tcp_handshake(MAX_TCP_HANDSHAKES) else {
            debug!(?peer, "closed: too many TLS handshakes under way");
            return;
        };
        if let Err(e) = set_keepalive(&stream) {
            debug!(?peer, "cannot set SO_KEEPALIVE: {e}");
        }
        let acceptor = self.acceptor.clone();
        let admission = self.admission.clone();
        self.handshakes
            .spawn(handshake(acceptor, admission, stream, guard));
    }
}

impl Stream for TlsIncoming {
    type Item = std::io::Result<TlsStream<Counted>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(pause) = &mut this.pause {
                if pause.as_mut().poll(cx).is_pending() {
                    break;
                }
                this.pause = None;
            }
            match this.listener.poll_accept(cx) {
                Poll::Ready(Ok((stream, _))) => this.start_handshake(stream),
                Poll::Ready(Err(e)) => {
                    debug!("TCP accept failed, pausing: {e}");
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_PAUSE)));
                }
                Poll::Pending => break,
            }
        }
        loop {
            match ready!(this.handshakes.poll_join_next(cx)) {
                Some(Ok(Some(connection))) => return Poll::Ready(Some(Ok(connection))),
                // Failed, timed out or refused: already logged.
                Some(Ok(None)) => {}
                Some(Err(e)) => debug!("TLS handshake task ended: {e}"),
                // No handshake under way: the listener has registered the waker.
                None => return Poll::Pending,
            }
        }
    }
}

/// One connection's TLS handshake under the timeout, then its admission against the
/// connection limits.
async fn handshake(
    acceptor: TlsAcceptor,
    admission: Arc<Admission>,
    stream: TcpStream,
    guard: TcpHandshakeGuard,
) -> Option<TlsStream<Counted>> {
    let peer = stream.peer_addr().ok();
    let ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.ip().to_canonical());
    let stream = (admission.counted)(stream);
    let tls = tokio::time::timeout(admission.handshake_timeout, acceptor.accept(stream)).await;
    drop(guard);
    let mut tls = match tls {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(?peer, "TLS handshake failed: {e}");
            return None;
        }
        Err(_) => {
            debug!(?peer, "TLS handshake timed out");
            return None;
        }
    };
    let Some(guard) = admission.stats.open(
        Transport::Tcp,
        admission.max_connections,
        ip,
        admission.per_address,
    ) else {
        debug!(?peer, "closed: too many connections");
        return None;
    };
    tls.get_mut().0.admitted(guard);
    Some(tls)
}

fn set_keepalive(stream: &TcpStream) -> std::io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE_TIME);
    socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)
}
