//! The QUIC side of the server: connections, each serving one call per bidirectional stream
//! ([`call`]).

mod call;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info};

use self::call::{Origin, serve_call};
pub(super) use self::call::{call_extensions, handshake_completed, runs_from_early_data};
use super::credit::StreamCredit;
use super::stats::HandshakeGuard;
use super::turns::Turns;
use super::{CLOSE_LINGER, Shared};
use crate::stream::{RecvHalf, SendHalf, WriteGate, close_quietly, quic_code};
use crate::telemetry::{Side, sample_connection};
use crate::tls::PeerCertificates;
use crate::wire::code::ErrorCode;
use crate::wire::frame;
use crate::{Error, Priority, Transport, wire};

/// Accepts QUIC connections until `shutdown`, then drains them. Fails if the endpoint stops
/// accepting before that.
pub(super) async fn serve_quic(
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let connections = TaskTracker::new();
    let mut result = Ok(());
    info!(%local_addr, "serving QUIC");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) if !incoming.remote_address_validated()
                    && incoming.may_retry()
                    && shared.address_validation.retry_now(shared.stats.quic_handshakes()) =>
                {
                    match incoming.retry() {
                        Ok(()) => shared.stats.retry_sent(),
                        Err(e) => debug!("cannot send Retry: {e}"),
                    }
                }
                Some(incoming) => match shared.stats.open(
                    Transport::Quic,
                    shared.max_connections,
                    incoming.remote_address().ip().to_canonical(),
                    shared.max_connections_per_address,
                ) {
                    Some(guard) => {
                        let serving = serve_connection(incoming, shared.clone(), shutdown.clone());
                        connections.spawn(async move {
                            serving.await;
                            drop(guard);
                        });
                    }
                    None => {
                        debug!(remote = %incoming.remote_address(), "refused: too many connections");
                        incoming.refuse();
                    }
                },
                None => {
                    error!(%local_addr, "QUIC: the endpoint stopped accepting connections");
                    result = Err(Error::QuicStopped);
                    break;
                }
            },
        }
    }
    info!(%local_addr, connections = connections.len(), "QUIC: draining connections");
    connections.close();
    let refuse_new = async {
        while let Some(incoming) = endpoint.accept().await {
            incoming.refuse();
        }
    };
    tokio::select! {
        () = connections.wait() => {}
        () = refuse_new => {}
        () = tokio::time::sleep(shared.drain_timeout) => {
            info!(%local_addr, connections = connections.len(), "QUIC: drain timeout, closing what is left");
        }
    }
    // Closes every connection left, which ends their calls.
    endpoint.close(quic_code(ErrorCode::NoError), b"server shut down");
    let _ = tokio::time::timeout(CLOSE_LINGER, endpoint.wait_idle()).await;
    result
}

/// A connection's handshake while it may still be under way: calls are accepted during it
/// (0-RTT), and it must still complete in time.
struct Handshake {
    /// Counts the handshake as under way in the server's stats until dropped.
    guard: Option<HandshakeGuard>,
    /// Resolves when a handshake that is still under way completes.
    pending: Option<quinn::ZeroRttAccepted>,
    deadline: Instant,
}

impl Handshake {
    /// Resolves when the handshake completes (or fails); never without one under way.
    /// Cancel-safe.
    async fn done(&mut self) {
        match &mut self.pending {
            Some(pending) => {
                pending.await;
            }
            None => std::future::pending().await,
        }
    }

    fn completed(&mut self) {
        self.pending = None;
        self.guard = None;
    }
}

/// Accepts a connection attempt: the connection at once when the client may send 0-RTT
/// calls, once its handshake completes otherwise.
async fn handshake(
    incoming: quinn::Incoming,
    shared: &Shared,
) -> Option<(quinn::Connection, Handshake)> {
    let remote = incoming.remote_address();
    let guard = shared.stats.handshake();
    let mut connecting = match accept(incoming, shared) {
        Ok(connecting) => connecting,
        Err(e) => {
            debug!(%remote, "refused: {e}");
            return None;
        }
    };
    let deadline = Instant::now() + shared.handshake_timeout;
    // The whole ClientHello first, and with it the ALPN that says which wire this connection
    // speaks: a large ClientHello (post-quantum key shares) spans several Initial packets,
    // and until the last has come the protocol is unknown.
    match tokio::time::timeout_at(deadline, connecting.handshake_data()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            debug!(%remote, "handshake failed: {e}");
            return None;
        }
        Err(_) => {
            debug!(%remote, "handshake timed out");
            return None;
        }
    }
    // Calls are accepted while the handshake is still under way, so that a resumed client's
    // 0-RTT calls are answered at once; `handle_call` decides which of them may run. On a
    // server this conversion always succeeds. With mutual TLS the client is authenticated
    // only when the handshake completes: nothing is served before that.
    let early = if shared.client_roots.is_empty() {
        connecting.into_0rtt()
    } else {
        Err(connecting)
    };
    match early {
        Ok((conn, pending)) => Some((
            conn,
            Handshake {
                guard: Some(guard),
                pending: Some(pending),
                deadline,
            },
        )),
        Err(connecting) => match tokio::time::timeout_at(deadline, connecting).await {
            Ok(Ok(conn)) => Some((
                conn,
                Handshake {
                    guard: None,
                    pending: None,
                    deadline,
                },
            )),
            Ok(Err(e)) => {
                debug!(%remote, "handshake failed: {e}");
                None
            }
            Err(_) => {
                debug!(%remote, "handshake timed out");
                None
            }
        },
    }
}

/// Serves one connection's calls until it closes, or until `shutdown`, when it stops taking
/// calls (GOAWAY) and closes once those under way are done.
async fn serve_connection(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let remote = incoming.remote_address();
    let Some((conn, handshake)) = handshake(incoming, &shared).await else {
        return;
    };
    let peer = peer_certificates(&conn);
    if negotiated_alpn(&conn).as_deref() == Some(crate::http3::ALPN) {
        let verdict = watch_handshake(&conn, handshake);
        // Boxed: HTTP/3's connection future is about 8 KiB, and every connection's task,
        // idle or not, would otherwise keep room for it.
        return crate::sync::boxed(|| {
            super::h3::serve_connection(conn, shared, shutdown, peer, verdict)
        })
        .await;
    }
    serve_native(conn, handshake, peer, shared, shutdown, remote).await;
}

/// Serves a connection that speaks quicrpc's native wire, from its first call on.
async fn serve_native(
    conn: quinn::Connection,
    mut handshake: Handshake,
    peer: Option<PeerCertificates>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    remote: SocketAddr,
) {
    debug!(%remote, "connection accepted");
    tokio::spawn(sample_connection(conn.clone(), Side::Server));
    tokio::spawn(crate::window::size_send_window(
        conn.clone(),
        shared.config.send_window,
    ));
    let gate = WriteGate::new(&conn, Side::Server);
    // Whether the handshake completed successfully: unknown (None) while it is under way.
    let (verdict, handshake_verdict) = tokio::sync::watch::channel(match handshake.pending {
        Some(_) => None,
        None => Some(true),
    });
    let calls = TaskTracker::new();
    let mut credit = StreamCredit::new(shared.config.max_concurrent_streams);
    let mut turns = Turns::default();
    let handshake_deadline = handshake.deadline;
    let drain = drain_signal(&shutdown, shared.max_connection_age, remote);
    tokio::pin!(drain);
    // Once draining: when the calls left are ended anyway.
    let mut drained_by = None;
    loop {
        let draining = drained_by.is_some();
        tokio::select! {
            // The drain first: a call that arrives after the signal is refused, not served.
            biased;
            () = &mut drain, if !draining => {
                drained_by = Some(Instant::now() + shared.drain_timeout);
                calls.close();
                tokio::spawn(send_goaway(conn.clone()));
            }
            () = calls.wait(), if draining => {
                close_quietly(&conn, "server shut down");
                break;
            }
            () = sleep_until_some(drained_by), if draining => {
                debug!(%remote, calls = calls.len(), "drain timeout: closing the connection");
                close_quietly(&conn, "server shut down");
                break;
            }
            // A handshake still under way (0-RTT path) must finish in time.
            () = handshake.done(), if handshake.pending.is_some() => {
                // Resolved by a close too (quinn records the close first): a connection
                // that closed during its handshake never completed it, so the streams it
                // left are not served (their data may be replayed early data).
                if let Some(reason) = conn.close_reason() {
                    debug!(%remote, "connection closed during its handshake: {reason}");
                    verdict.send_replace(Some(false));
                    break;
                }
                verdict.send_replace(Some(true));
                handshake.completed();
            }
            () = tokio::time::sleep_until(handshake_deadline), if handshake.pending.is_some() => {
                debug!(%remote, "handshake timed out");
                verdict.send_replace(Some(false));
                close_quietly(&conn, "handshake timed out");
                break;
            }
            // quicrpc/1 clients open no unidirectional streams (the transport parameters
            // allow a few, for HTTP/3 clients on the same endpoint): stopped at once.
            stream = conn.accept_uni() => match stream {
                Ok(recv) => RecvHalf::new(recv).stop(ErrorCode::ProtocolError),
                Err(e) => {
                    debug!(%remote, "connection closed: {e}");
                    break;
                }
            },
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) if draining => {
                    // Not processed: the client may safely retry it elsewhere.
                    let mut send = SendHalf::new(send, gate.clone());
                    send.reset(ErrorCode::RefusedStream);
                    RecvHalf::new(recv).stop(ErrorCode::RefusedStream);
                }
                Ok((send, recv)) => {
                    // The address now, not at accept: the client may have migrated.
                    let remote = conn.remote_address();
                    let send = SendHalf::new(send, gate.clone());
                    let origin = Origin {
                        remote,
                        peer: peer.clone(),
                        handshake: handshake_verdict.clone(),
                        connection: conn.stable_id(),
                    };
                    // Counted from here, so the count covers the task before it first runs.
                    let call = shared.stats.call();
                    // Boxed: a call's future is about 2 KiB, and spawning moves a task's
                    // future several times over; a box is moved as a pointer.
                    calls.spawn(crate::sync::boxed(|| {
                        serve_call(send, recv, shared.clone(), origin, call)
                    }));
                    if let Some(limit) = credit.grow(calls.len()) {
                        conn.set_max_concurrent_bi_streams(limit.into());
                    }
                    turns.started().await;
                }
                Err(e) => {
                    debug!(%remote, "connection closed: {e}");
                    break;
                }
            },
            // Last (the select is biased): nothing else was ready, so a burst of calls is over.
            () = std::future::ready(()), if turns.in_burst() => turns.burst_over(),
        }
    }
}

/// Resolves when a connection from `remote` should start draining: at the server's
/// shutdown, or once it is `max_age` old.
pub(super) async fn drain_signal(
    shutdown: &CancellationToken,
    max_age: Option<std::time::Duration>,
    remote: SocketAddr,
) {
    let aged = max_age.map(|age| Instant::now() + age);
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = sleep_until_some(aged) => debug!(%remote, "connection reached its maximum age"),
    }
}

/// Sleeps until `at`, or for ever without one.
pub(super) async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Accepts a connection attempt, with a config of its own where it needs one: a client over
/// loopback (larger datagrams), or a qlog trace.
fn accept(
    incoming: quinn::Incoming,
    shared: &Shared,
) -> Result<quinn::Connecting, Box<dyn std::error::Error>> {
    let loopback = crate::config::is_loopback(incoming.remote_address());
    #[cfg(feature = "qlog")]
    if let (Some(dir), Some(config)) = (&shared.config.qlog_dir, &shared.quic_config) {
        let streams = StreamCredit::new(shared.config.max_concurrent_streams).limit();
        let mut transport = shared.config.server_transport(streams)?;
        if loopback {
            transport = shared.config.over_loopback(transport);
        }
        let transport = crate::qlog::traced(transport, dir, Side::Server)?;
        let mut config = config.clone();
        config.transport_config(Arc::new(transport));
        return Ok(incoming.accept_with(Arc::new(config))?);
    }
    if let (true, Some(config)) = (loopback, &shared.loopback_quic_config) {
        return Ok(incoming.accept_with(config.clone())?);
    }
    Ok(incoming.accept()?)
}

/// Whether `handshake` completes successfully, in time: `None` while it is under way. A
/// connection whose handshake fails or times out is closed.
fn watch_handshake(
    conn: &quinn::Connection,
    mut handshake: Handshake,
) -> tokio::sync::watch::Receiver<Option<bool>> {
    let Some(pending) = handshake.pending.take() else {
        return tokio::sync::watch::channel(Some(true)).1;
    };
    let (verdict, receiver) = tokio::sync::watch::channel(None);
    let conn = conn.clone();
    tokio::spawn(async move {
        let done = tokio::time::timeout_at(handshake.deadline, pending).await;
        // quinn records a close before it resolves `pending` with it.
        let completed = done.is_ok() && conn.close_reason().is_none();
        verdict.send_replace(Some(completed));
        if !completed {
            close_quietly(&conn, "handshake timed out");
        }
        drop(handshake);
    });
    receiver
}

/// The application protocol the handshake settled on.
fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// The client's verified certificate chain, when it presented one (mutual TLS).
fn peer_certificates(conn: &quinn::Connection) -> Option<PeerCertificates> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
        .ok()?;
    PeerCertificates::new(Arc::new(*chain))
}

/// Tells the client that this connection takes no new calls.
async fn send_goaway(conn: quinn::Connection) {
    let Ok(stream) = conn.open_uni().await else {
        return;
    };
    // Not through the connection's gate: the client should hear GOAWAY whatever else waits.
    let mut send = SendHalf::new(stream, WriteGate::detached(Side::Server));
    send.set_priority(Priority::Critical);
    let mut prefix = BytesMut::new();
    wire::varint::put(&mut prefix, frame::CONTROL_STREAM);
    let mut frames = [prefix.freeze(), frame::encode(frame::GOAWAY, b"")];
    if send.write(&mut frames).await.is_ok() {
        send.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use super::{Origin, Shared};
    use crate::stream::{SendHalf, WriteGate};
    use crate::telemetry::Side;
    use crate::test_support::{client_endpoint, within};
    use crate::tls::SelfSigned;

    /// A bound server's shared state, an endpoint of the test's own with its loopback config
    /// (so that the server's accept loop takes nothing), and a client endpoint that trusts it.
    async fn endpoints() -> (Arc<Shared>, quinn::Endpoint, quinn::Endpoint) {
        let cert = SelfSigned::new(["localhost"]).expect("certificate");
        let server = crate::Server::builder()
            .identity(cert.identity())
            .transports([crate::Transport::Quic])
            .bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let shared = server.shared.clone();
        let config = shared.loopback_quic_config.clone().expect("a QUIC config");
        let endpoint =
            quinn::Endpoint::server((*config).clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
        (shared, endpoint, client_endpoint(&cert, crate::wire::ALPN))
    }

    /// An idle connection's task holds the native wire's state, not room for HTTP/3's too
    /// (it held 9.4 KiB, most of an idle connection's growth from 46 to 66 KiB; scenario 7
    /// in docs/benchmarks.md).
    #[tokio::test]
    async fn a_connection_task_keeps_no_room_for_the_other_wire() {
        let (shared, endpoint, client) = endpoints().await;
        let _connecting = client
            .connect(endpoint.local_addr().unwrap(), "localhost")
            .unwrap();
        let incoming = within("a connection attempt", endpoint.accept())
            .await
            .expect("an open endpoint");
        let serving = super::serve_connection(incoming, shared, CancellationToken::new());
        let size = std::mem::size_of_val(&serving);
        assert!(size <= 4096, "a connection's future is {size} bytes");
    }

    /// A call's future, boxed for each call, is about the size of its larger stage (reading
    /// the head, or running the service and writing the response), not of both (4.8 KiB in
    /// release builds before, 2.1 after; scenario 7's open streams).
    #[tokio::test]
    async fn a_call_future_keeps_room_for_one_stage_at_a_time() {
        let (shared, endpoint, client) = endpoints().await;
        let connecting = client
            .connect(endpoint.local_addr().unwrap(), "localhost")
            .unwrap();
        let accepting = async { endpoint.accept().await.expect("incoming").await };
        let (conn, server_conn) =
            within("connect", async { tokio::join!(connecting, accepting) }).await;
        let (conn, server_conn) = (conn.expect("client"), server_conn.expect("server"));
        let (mut send, _recv) = conn.open_bi().await.expect("a stream");
        send.write_all(b"x").await.expect("written");
        let (send, recv) = within("the stream", server_conn.accept_bi())
            .await
            .expect("accepted");
        let (_verdict, handshake) = tokio::sync::watch::channel(Some(true));
        let origin = Origin {
            remote: server_conn.remote_address(),
            peer: None,
            handshake,
            connection: server_conn.stable_id(),
        };
        let send = SendHalf::new(send, WriteGate::new(&server_conn, Side::Server));
        let call = shared.stats.call();
        let serving = super::serve_call(send, recv, shared.clone(), origin, call);
        let size = std::mem::size_of_val(&serving);
        assert!(size <= 2560, "a call's future is {size} bytes");
    }
}
