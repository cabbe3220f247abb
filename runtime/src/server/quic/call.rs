//! One call on a QUIC connection: its head read and checked, its service run, its response
//! written, and its cancellation by the client.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::FutureExt as _;
use http::{Request, Response, StatusCode};
use quinn::VarInt;
use tokio::time::Instant;
use tonic::body::Body as TonicBody;
use tonic::{Code, Status};
use tracing::{Instrument, debug};

use super::super::Shared;
use super::super::budget::ConnectionKey;
use super::super::stats::CallGuard;
use crate::method::{Registered, registered};
use crate::status::{Peer, malformed, normalize_status, status_code};
use crate::stream::{HeadError, RecvBody, RecvHalf, SendBodyError, SendHalf, read_head, send_body};
use crate::telemetry::{CallTelemetry, Side, server_method_label};
use crate::tls::PeerCertificates;
use crate::wire::code::ErrorCode;
use crate::wire::fields;
use crate::wire::frame::{self, FrameDecoder};
use crate::zero_rtt::replay_safe;
use crate::{MethodInfo, Transport, ZeroRtt, deadline, priority};

/// What a call's connection knows of it.
pub(super) struct Origin {
    /// The client's address when the call arrived.
    pub(super) remote: SocketAddr,
    /// The client's verified certificate chain (mutual TLS).
    pub(super) peer: Option<PeerCertificates>,
    /// Whether the connection's handshake completed successfully: `None` while it is under
    /// way; the sender goes away with the connection.
    pub(super) handshake: tokio::sync::watch::Receiver<Option<bool>>,
    /// The connection's quinn stable id.
    pub(super) connection: usize,
}

/// Serves one call until it is done or the client cancels it (STOP_SENDING, or the connection
/// is lost), which drops the handler. `_call` counts the call while it runs.
pub(super) async fn serve_call(
    mut send: SendHalf,
    recv: quinn::RecvStream,
    shared: Arc<Shared>,
    origin: Origin,
    _call: CallGuard,
) {
    let cancelled = send.stopped();
    let remote = origin.remote;
    tokio::select! {
        biased;
        () = handle_call(&mut send, recv, &shared, origin) => {}
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
///
/// In two stages, so that a call's future, boxed for each call, is about the size of its
/// larger stage rather than their sum: Rust keeps room in an async function's state for every
/// local that was ever borrowed, up to the end of its scope, and the head's stage borrows
/// most of its own.
async fn handle_call(
    send: &mut SendHalf,
    recv: quinn::RecvStream,
    shared: &Shared,
    origin: Origin,
) {
    let Some(call) = accept_call(send, recv, shared, origin).await else {
        return;
    };
    respond(send, shared, call).await;
}

/// A call whose head was read and accepted: its request for the service, its deadline and
/// its telemetry.
struct Accepted {
    request: Request<TonicBody>,
    deadline: Option<Instant>,
    telemetry: CallTelemetry,
}

/// Reads a call's head and checks it: the call to run, or `None` when it was answered (or
/// reset) here.
async fn accept_call(
    send: &mut SendHalf,
    recv: quinn::RecvStream,
    shared: &Shared,
    origin: Origin,
) -> Option<Accepted> {
    let Origin {
        remote,
        peer,
        handshake,
        connection,
    } = origin;
    let stream_id = VarInt::from(recv.id()).into_inner();
    // Accepted before the handshake completed: its data came as 0-RTT early data, which an
    // attacker may have replayed. quinn's own flag alone is not enough: it calls a stream
    // accepted after the connection closed during its handshake not 0-RTT. So a stream that
    // quinn calls 1-RTT is early unless the handshake completed successfully.
    let early = recv.is_0rtt() || !handshake_completed(handshake).await;
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
        return None;
    };
    let block = match head {
        Ok(block) => block,
        Err(HeadError::Read(e)) => {
            debug!(%remote, "request stream failed before its head: {e}");
            send.reset(ErrorCode::Cancelled);
            return None;
        }
        Err(e) => {
            reject(send, recv, e.into_status(Peer::Client)).await;
            return None;
        }
    };
    let (head, uri) = match decode_head(&block, shared.config.max_header_list_size) {
        Ok(head) => head,
        Err(status) => {
            reject(send, recv, status).await;
            return None;
        }
    };
    let path = uri.path();
    let method = registered(path);
    let info = method.map(Registered::info);
    if early && !runs_from_early_data(info, path) {
        // Not run, so the client may send it again once the handshake is complete.
        recv.stop(ErrorCode::TooEarly);
        send.reset(ErrorCode::TooEarly);
        return None;
    }
    let priority = priority::resolve(head.priority, info);
    send.set_priority(priority);
    let deadline = match deadline::from_headers(&head.fields) {
        Ok(deadline) => deadline,
        Err(status) => {
            reject(send, recv, status).await;
            return None;
        }
    };
    let telemetry = CallTelemetry::start(
        Side::Server,
        server_method_label(path, method),
        Transport::Quic,
        Some(priority),
        Some(stream_id),
    );
    let charge = shared
        .request_buffers
        .charge(ConnectionKey::Quic(connection));
    let body = RecvBody::server(
        recv,
        decoder,
        buf,
        shared.config.max_receive_message_size,
        charge,
    );
    let mut request = Request::new(TonicBody::new(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_2;
    *request.headers_mut() = head.fields;
    call_extensions(request.extensions_mut(), priority, peer, early, remote);
    Some(Accepted {
        request,
        deadline,
        telemetry,
    })
}

/// Runs the call's service and writes its response, or DEADLINE_EXCEEDED when the deadline
/// passes first (dropping the handler).
async fn respond(send: &mut SendHalf, shared: &Shared, call: Accepted) {
    let Accepted {
        request,
        deadline,
        mut telemetry,
    } = call;
    let span = telemetry.span().clone();
    // The service's future, then the response's writing, in one place: an async block would
    // keep the request it captured beside them.
    let answered = {
        // The service's `call` in the call's span too, as when tonic's `oneshot` made it.
        let respond = span
            .in_scope(|| shared.service.call(request))
            .then(|response| {
                let response = match response {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                write_response(&mut *send, response)
            })
            .instrument(span);
        match deadline {
            None => Ok(respond.await),
            Some(deadline) => tokio::time::timeout_at(deadline, respond).await,
        }
    };
    let code = match answered {
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
    };
    // A response that ended without a status leaves the call counted as CANCELLED.
    if let Some(code) = code {
        telemetry.finish(code);
    }
}

/// Decodes a request head whose field list may count `max_list_size` bytes (with each
/// field's overhead, as HTTP/2 counts it), and its path as a URI (the head's `path` is left
/// empty).
fn decode_head(
    block: &[u8],
    max_list_size: usize,
) -> Result<(fields::RequestHead, http::Uri), Status> {
    let mut head = fields::decode_request_head_within(block, max_list_size).map_err(malformed)?;
    // The URI takes the path's buffer rather than a copy of it; `uri.path()` is the path from
    // here on.
    let path = bytes::Bytes::from(std::mem::take(&mut head.path));
    let uri = http::Uri::from_maybe_shared(path)
        .map_err(|_| Status::internal("protocol error: invalid :path"))?;
    Ok((head, uri))
}

/// What handlers find in a QUIC call's request extensions, on either QUIC wire: its priority,
/// the client's verified certificates, whether it came as 0-RTT early data, and the client's
/// address (where tonic's `Request::remote_addr` looks).
pub(in crate::server) fn call_extensions(
    extensions: &mut http::Extensions,
    priority: crate::Priority,
    peer: Option<PeerCertificates>,
    early: bool,
    remote: SocketAddr,
) {
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
}

/// Whether the connection's handshake completed successfully, once that is known: at once
/// for a stream that arrived after it, within a driver pass for one that arrived with the
/// client's Finished, and `false` if the connection ended without completing it.
pub(in crate::server) async fn handshake_completed(
    mut verdict: tokio::sync::watch::Receiver<Option<bool>>,
) -> bool {
    match verdict.wait_for(Option::is_some).await {
        Ok(verdict) => *verdict == Some(true),
        Err(_) => false,
    }
}

/// Whether a call that arrived as 0-RTT early data, which an attacker may have replayed, may
/// run from there: only if its method is replay-safe.
pub(in crate::server) fn runs_from_early_data(info: Option<&MethodInfo>, path: &str) -> bool {
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
    // Room for a unary response's frames: head, DATA head, message, trailers.
    let mut frames = Vec::with_capacity(4);
    frames.push(head);
    match send_body(send, frames, body).await {
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
