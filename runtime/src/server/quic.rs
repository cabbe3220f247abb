//! The QUIC side of the server: one call per bidirectional stream.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use http::{Request, Response, StatusCode};
use quinn::VarInt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::body::Body as TonicBody;
use tonic::{Code, Status};
use tower::ServiceExt;
use tracing::{Instrument, debug, info};

use super::credit::StreamCredit;
use super::stats::HandshakeGuard;
use super::{CLOSE_LINGER, Shared};
use crate::status::{Peer, normalize_status, status_code};
use crate::stream::{
    HeadError, RecvBody, RecvHalf, SendBodyError, SendHalf, WriteGate, close_quietly, quic_code,
    read_head, send_body,
};
use crate::telemetry::{CallTelemetry, Side, sample_connection, server_method_label};
use crate::tls::PeerCertificates;
use crate::wire::code::ErrorCode;
use crate::wire::fields;
use crate::wire::frame::{self, FrameDecoder};
use crate::zero_rtt::replay_safe;
use crate::{MethodInfo, Priority, Transport, ZeroRtt, deadline, method_info, priority, wire};

/// Accepts QUIC connections until `shutdown`, then drains them.
pub(super) async fn serve_quic(
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
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
                Some(incoming) => match shared.stats.open(Transport::Quic, shared.max_connections) {
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
                None => break,
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
    let connecting = match accept(incoming, shared) {
        Ok(connecting) => connecting,
        Err(e) => {
            debug!(%remote, "refused: {e}");
            return None;
        }
    };
    let deadline = Instant::now() + shared.handshake_timeout;
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
    let Some((conn, mut handshake)) = handshake(incoming, &shared).await else {
        return;
    };
    let peer = peer_certificates(&conn);
    debug!(%remote, "connection accepted");
    tokio::spawn(sample_connection(conn.clone(), Side::Server));
    tokio::spawn(crate::window::size_send_window(
        conn.clone(),
        shared.config.send_window,
    ));
    let gate = WriteGate::new(&conn, Side::Server);
    let calls = TaskTracker::new();
    let mut credit = StreamCredit::new(shared.config.max_concurrent_streams);
    let mut draining = false;
    let handshake_deadline = handshake.deadline;
    let aged = shared.max_connection_age.map(|age| Instant::now() + age);
    // Once draining: when the calls left are ended anyway.
    let mut drained_by = None;
    loop {
        tokio::select! {
            // Shutdown first: a call that arrives after the signal is refused, not served.
            biased;
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                drained_by = Some(Instant::now() + shared.drain_timeout);
                calls.close();
                tokio::spawn(send_goaway(conn.clone()));
            }
            () = sleep_until_some(aged), if !draining => {
                debug!(%remote, "connection reached its maximum age");
                draining = true;
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
            () = handshake.done(), if handshake.pending.is_some() => handshake.completed(),
            () = tokio::time::sleep_until(handshake_deadline), if handshake.pending.is_some() => {
                debug!(%remote, "handshake timed out");
                close_quietly(&conn, "handshake timed out");
                break;
            }
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
                    calls.spawn(serve_call(send, recv, shared.clone(), remote, peer.clone()));
                    if let Some(limit) = credit.grow(calls.len()) {
                        conn.set_max_concurrent_bi_streams(limit.into());
                    }
                }
                Err(e) => {
                    debug!(%remote, "connection closed: {e}");
                    break;
                }
            },
        }
    }
}

/// Sleeps until `at`, or for ever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Accepts a connection attempt, with a config of its own where it needs one (qlog).
#[cfg_attr(not(feature = "qlog"), allow(unused_variables))]
fn accept(
    incoming: quinn::Incoming,
    shared: &Shared,
) -> Result<quinn::Connecting, Box<dyn std::error::Error>> {
    #[cfg(feature = "qlog")]
    if let (Some(dir), Some(config)) = (&shared.config.qlog_dir, &shared.quic_config) {
        let streams = StreamCredit::new(shared.config.max_concurrent_streams).limit();
        let transport = shared.config.server_transport(streams)?;
        let transport = crate::qlog::traced(transport, dir, Side::Server)?;
        let mut config = config.clone();
        config.transport_config(Arc::new(transport));
        return Ok(incoming.accept_with(Arc::new(config))?);
    }
    Ok(incoming.accept()?)
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

/// Serves one call until it is done or the client cancels it (STOP_SENDING, or the connection
/// is lost), which drops the handler.
async fn serve_call(
    mut send: SendHalf,
    recv: quinn::RecvStream,
    shared: Arc<Shared>,
    remote: SocketAddr,
    peer: Option<PeerCertificates>,
) {
    let _call = shared.stats.call();
    let cancelled = send.stopped();
    tokio::select! {
        biased;
        () = handle_call(&mut send, recv, &shared, remote, peer) => {}
        () = cancelled => {
            // The client stopped the call or vanished: dropping the call drops the handler.
            // The drop of `send` resets the stream.
            debug!(%remote, "call cancelled by the client");
        }
    }
}

/// Reads a call's head, checks it, runs its service and writes the response.
///
/// Not cancel-safe, on purpose: `serve_call` cancels it to drop a call whose client went
/// away; `send` then resets the stream.
async fn handle_call(
    send: &mut SendHalf,
    recv: quinn::RecvStream,
    shared: &Shared,
    remote: SocketAddr,
    peer: Option<PeerCertificates>,
) {
    let stream_id = VarInt::from(recv.id()).into_inner();
    // Accepted before the handshake completed: its data came as 0-RTT early data, which an
    // attacker may have replayed.
    let early = recv.is_0rtt();
    let mut recv = RecvHalf::new(recv);
    let mut decoder = FrameDecoder::new(shared.config.max_header_list_size);
    let mut buf = BytesMut::new();
    // A stream that never finishes its head would hold a call slot for ever: it gets the
    // handshake timeout, the time a client has to say what it wants.
    let head = tokio::time::timeout(
        shared.handshake_timeout,
        read_head(&mut recv, &mut decoder, &mut buf),
    );
    let Ok(head) = head.await else {
        debug!(%remote, "request head not complete within {:?}", shared.handshake_timeout);
        recv.stop(ErrorCode::DeadlineExceeded);
        send.reset(ErrorCode::DeadlineExceeded);
        return;
    };
    let block = match head {
        Ok(block) => block,
        Err(HeadError::Read(e)) => {
            debug!(%remote, "request stream failed before its head: {e}");
            send.reset(ErrorCode::Cancelled);
            return;
        }
        Err(e) => return reject(send, recv, e.into_status(Peer::Client)).await,
    };
    let (head, uri) = match decode_head(&block, shared.config.max_header_list_size) {
        Ok(head) => head,
        Err(status) => return reject(send, recv, status).await,
    };
    let info = method_info(&head.path);
    if early && !runs_from_early_data(info, &head.path) {
        // Not run, so the client may send it again once the handshake is complete.
        recv.stop(ErrorCode::TooEarly);
        send.reset(ErrorCode::TooEarly);
        return;
    }
    let priority = priority::resolve(head.priority, info);
    send.set_priority(priority);
    let deadline = match deadline::from_headers(&head.fields) {
        Ok(deadline) => deadline,
        Err(status) => return reject(send, recv, status).await,
    };
    let telemetry = CallTelemetry::start(
        Side::Server,
        server_method_label(&head.path, info),
        Transport::Quic,
        Some(priority),
        Some(stream_id),
    );
    let body = RecvBody::server(recv, decoder, buf, shared.config.max_receive_message_size);
    let mut request = Request::new(TonicBody::new(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_2;
    *request.headers_mut() = head.fields;
    let extensions = request.extensions_mut();
    extensions.insert(priority);
    if let Some(peer) = peer {
        extensions.insert(peer);
    }
    extensions.insert(if early {
        ZeroRtt::Accepted
    } else {
        ZeroRtt::NotUsed
    });
    extensions.insert(tonic::transport::server::TcpConnectInfo {
        local_addr: None,
        remote_addr: Some(remote),
    });
    respond(send, shared, request, deadline, telemetry).await;
}

/// Runs the call's service and writes its response, or DEADLINE_EXCEEDED when the deadline
/// passes first (dropping the handler).
async fn respond(
    send: &mut SendHalf,
    shared: &Shared,
    request: Request<TonicBody>,
    deadline: Option<Instant>,
    mut telemetry: CallTelemetry,
) {
    let respond = async {
        let response = match shared.service.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        write_response(send, response).await
    }
    .instrument(telemetry.span().clone());
    let code = match deadline {
        None => respond.await,
        Some(deadline) => match tokio::time::timeout_at(deadline, respond).await {
            Ok(code) => code,
            Err(_) => {
                // The handler has been dropped; tell the client why.
                send.send_status(
                    &Status::deadline_exceeded("deadline exceeded"),
                    ErrorCode::DeadlineExceeded,
                )
                .await;
                Some(Code::DeadlineExceeded)
            }
        },
    };
    // A response that ended without a status leaves the call counted as CANCELLED.
    if let Some(code) = code {
        telemetry.finish(code);
    }
}

/// A request head, and its path as a URI.
/// Decodes a request head whose field list may count `max_list_size` bytes (with each
/// field's overhead, as HTTP/2 counts it).
fn decode_head(
    block: &[u8],
    max_list_size: usize,
) -> Result<(fields::RequestHead, http::Uri), Status> {
    let head = fields::decode_request_head_within(block, max_list_size).map_err(|e| match e {
        fields::FieldError::ListTooLarge { .. } => Status::resource_exhausted(e.to_string()),
        e => Status::internal(format!("protocol error: malformed request head: {e}")),
    })?;
    let uri = http::Uri::try_from(head.path.as_str())
        .map_err(|_| Status::internal("protocol error: invalid :path"))?;
    Ok((head, uri))
}

/// Whether a call that arrived as 0-RTT early data, which an attacker may have replayed, may
/// run from there: only if its method is replay-safe.
fn runs_from_early_data(info: Option<&MethodInfo>, path: &str) -> bool {
    let safe = replay_safe(info);
    let outcome = if safe { "run" } else { "refused" };
    metrics::counter!("quicrpc_server_early_calls_total", "outcome" => outcome).increment(1);
    if !safe {
        debug!(
            path,
            "refusing a call that is not replay-safe from 0-RTT data"
        );
    }
    safe
}

/// Answers a call that cannot be dispatched with `status` (trailers-only).
async fn reject(send: &mut SendHalf, mut recv: RecvHalf, status: Status) {
    debug!(code = ?status.code(), message = status.message(), "rejecting call");
    metrics::counter!("quicrpc_calls_rejected_total", "transport" => "quic").increment(1);
    recv.stop(ErrorCode::NoError);
    send.send_status(&status, ErrorCode::ProtocolError).await;
}

/// Writes the service's response; returns the status code it carried.
async fn write_response(send: &mut SendHalf, response: Response<TonicBody>) -> Option<Code> {
    let (mut parts, body) = response.into_parts();
    normalize_status(&mut parts.headers);
    if parts.status != StatusCode::OK {
        let status = status_for_http(parts.status);
        send.send_status(&status, ErrorCode::InternalError).await;
        return Some(status.code());
    }
    let head = fields::encode_fields(frame::HEADERS, &parts.headers);
    if let Some(code) = status_code(&parts.headers)
        && http_body::Body::is_end_stream(&body)
    {
        if send.write(&mut [head]).await.is_ok() {
            send.finish();
        }
        return Some(code);
    }
    match send_body(send, vec![head], body).await {
        Ok(code) => code,
        Err(SendBodyError::Write(e)) => {
            debug!("response stream failed: {e}");
            None
        }
        Err(SendBodyError::Body(status)) => {
            send.send_status(&status, ErrorCode::InternalError).await;
            Some(status.code())
        }
    }
}

/// The gRPC status for a non-200 HTTP response from a service (gRPC's HTTP-to-status table).
fn status_for_http(status: StatusCode) -> Status {
    let message = format!("service answered HTTP {status}");
    match status {
        StatusCode::BAD_REQUEST => Status::internal(message),
        StatusCode::UNAUTHORIZED => Status::unauthenticated(message),
        StatusCode::FORBIDDEN => Status::permission_denied(message),
        StatusCode::NOT_FOUND => Status::unimplemented(message),
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Status::unavailable(message),
        _ => Status::unknown(message),
    }
}
