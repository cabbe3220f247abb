//! One call on a QUIC connection: [`Conn::call`], which owns the 0-RTT decision and the
//! replay of a call the server would not run from early data.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use quinn::{ReadError, VarInt};
use tokio::sync::oneshot;
use tonic::Status;
use tracing::debug;

use super::Conn;
use crate::client::{Call, CallSettings, ResponseBody};
use crate::status::{Peer, check_status_fields, connection_status, malformed};
use crate::stream::{
    AbortOnDrop, ClientCallParts, HeadError, Ready, RecvBody, RecvHalf, SendBodyError, SendHalf,
    read_head, send_body, take_ready,
};
use crate::wire::code::ErrorCode;
use crate::wire::fields;
use crate::wire::frame::FrameDecoder;
use crate::{NoZeroRtt, Priority, Transport, ZeroRtt};

/// Why a call on a connection ended without a response head.
pub(in crate::client) enum CallError {
    /// The call never reached the server (its connection went away before the call's
    /// stream opened, or there was no connection to be had): nothing was sent, so the call,
    /// handed back, may go on another connection, or to another server.
    NotStarted(Box<http::Request<tonic::body::Body>>, Status),
    /// The call ends with this status.
    Failed(Status),
    /// The server provably did not process the call: it refused its stream (after GOAWAY),
    /// or closed the connection gracefully, which it does only once every call it accepted
    /// has been answered, before the call's response began. The request is gone, but a copy
    /// of it may be sent to another server.
    Unprocessed(Status),
}

impl CallError {
    /// Whether it says the server could not be reached, or was lost or went away.
    pub(in crate::client) fn server_failed(&self) -> bool {
        match self {
            Self::NotStarted(..) | Self::Unprocessed(_) => true,
            Self::Failed(status) => status.code() == tonic::Code::Unavailable,
        }
    }

    /// The status the call ends with if it goes no further.
    pub(in crate::client) fn into_status(self) -> Status {
        match self {
            Self::NotStarted(_, status) | Self::Failed(status) | Self::Unprocessed(status) => {
                status
            }
        }
    }
}

/// Why one exchange on a stream ended before the response head.
enum Failure {
    /// The call ends with this status.
    Status(Status),
    /// See [`CallError::Unprocessed`].
    Unprocessed(Status),
    /// The call went out as 0-RTT early data and was not run from it: the server rejected
    /// the early data, or refused this call with TOO_EARLY, or the connection failed before
    /// its handshake completed. Only replay-safe calls go out as early data, so the call may
    /// be sent again.
    Early(String),
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Self::Status(status)
    }
}

impl Conn {
    /// Runs a call on this connection: opens its stream, sends the request and reads the
    /// response head.
    ///
    /// A call to a replay-safe method whose request is one message goes out as 0-RTT early
    /// data when the connection is resumed and its handshake is under way, from a buffered
    /// copy; if the server does not run it from there, the copy is sent again once the
    /// handshake is over ([`ZeroRtt::Retried`]). Every other call waits for the end of the
    /// handshake, which for most calls is long over.
    ///
    /// A plain function that returns its future, so that the future holds the request once:
    /// an async function would keep its argument's room beside the copy it works on.
    pub(in crate::client) fn call<'a>(
        &'a self,
        request: http::Request<tonic::body::Body>,
        call: &'a mut Call,
        settings: &'a CallSettings,
    ) -> impl Future<Output = Result<http::Response<ResponseBody>, CallError>> + 'a {
        let mut request = request;
        async move {
            let in_flight = self.in_flight();
            if let Some(send_request) = &self.h3 {
                // Boxed: HTTP/3's call future is several times the native wire's, and would
                // make every call's future as large.
                let mut response = crate::sync::boxed(|| {
                    super::http3::call(self, send_request.clone(), request, call, settings)
                })
                .await?;
                response.body_mut().hold(in_flight);
                return Ok(response);
            }
            // Boxed: only a call sent as 0-RTT early data keeps a copy.
            let mut replay: Option<Box<http::Request<Bytes>>> = None;
            loop {
                let early = self.in_early_data()
                    && call.zero_rtt == ZeroRtt::NotUsed
                    && call.declared.client_may_send()
                    && request.extensions().get::<NoZeroRtt>().is_none();
                if early {
                    let buffered = buffer_request(request).await.map_err(CallError::Failed)?;
                    request = buffered.clone().map(full_body);
                    replay = Some(Box::new(buffered));
                } else {
                    self.handshake_over().await;
                }
                let (send, recv) = match self.quic.open_bi().await {
                    Ok(stream) => stream,
                    Err(e) => {
                        let status = connection_status(&e);
                        return Err(CallError::NotStarted(Box::new(request), status));
                    }
                };
                call.started(Transport::Quic, Some(VarInt::from(send.id()).into_inner()));
                let sent_early = recv.is_0rtt();
                match exchange(self, send, recv, request, call.priority, settings).await {
                    Ok(response) => {
                        if sent_early {
                            call.zero_rtt = ZeroRtt::Accepted;
                        }
                        let mut response = response.map(|b| ResponseBody::quic(b, call.deadline));
                        response.body_mut().hold(in_flight);
                        let extensions = response.extensions_mut();
                        extensions.insert(call.zero_rtt);
                        extensions.insert(call.priority);
                        extensions.insert(Transport::Quic);
                        return Ok(response);
                    }
                    Err(Failure::Status(status)) => return Err(CallError::Failed(status)),
                    Err(Failure::Unprocessed(status)) => {
                        return Err(CallError::Unprocessed(status));
                    }
                    Err(Failure::Early(reason)) => {
                        let Some(copy) = replay.take() else {
                            return Err(CallError::Failed(Status::unavailable(reason)));
                        };
                        debug!(method = %call.method, "sending the call again after the handshake: {reason}");
                        call.zero_rtt = ZeroRtt::Retried;
                        request = (*copy).map(full_body);
                        self.handshake_over().await;
                    }
                }
            }
        }
    }
}

/// Reads a request's whole body into memory, so that it can be sent twice.
pub(in crate::client) async fn buffer_request(
    request: http::Request<tonic::body::Body>,
) -> Result<http::Request<Bytes>, Status> {
    let (parts, body) = request.into_parts();
    let body = http_body_util::BodyExt::collect(body).await?.to_bytes();
    Ok(http::Request::from_parts(parts, body))
}

pub(in crate::client) fn full_body(bytes: Bytes) -> tonic::body::Body {
    tonic::body::Body::new(http_body_util::Full::new(bytes))
}

/// Sends a request on an open stream and reads the response head.
///
/// The head is encoded before the future starts, so that the future keeps neither the
/// request nor the streams as they were handed in beside what it made of them: an async
/// function's arguments keep their room in every state of its future, and every call's
/// future is copied whole at least once.
fn exchange<'a>(
    conn: &'a Conn,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    request: http::Request<tonic::body::Body>,
    priority: Priority,
    settings: &'a CallSettings,
) -> impl Future<Output = Result<http::Response<RecvBody>, Failure>> + 'a {
    let early = recv.is_0rtt();
    let mut send = SendHalf::new(send, conn.gate.clone());
    send.set_priority(priority);
    let mut recv = RecvHalf::new(recv);
    if early {
        send.track(conn.early_handle());
        recv.track(conn.early_handle());
    }
    let (parts, mut body) = request.into_parts();
    let head = fields::encode_request_head(
        parts.uri.path(),
        Some(&settings.authority),
        Some(priority),
        &parts.headers,
    );
    drop(parts);
    let mut pending = Vec::with_capacity(3);
    pending.push(head);
    async move {
        // A request that is ready whole (a unary call's, usually) is written here, in one
        // write. The rest goes on in a task, so that requests stream while responses are read.
        let mut parts = match take_ready(Pin::new(&mut body), &mut pending).await {
            Ready::Ended => {
                write_whole(&mut send, &mut pending).await;
                ClientCallParts::default()
            }
            Ready::Failed(status) => {
                send.reset(ErrorCode::Cancelled);
                return Err(status.into());
            }
            Ready::More => {
                let (error_tx, error_rx) = oneshot::channel();
                let mut sending =
                    crate::sync::boxed(|| send_request(send, pending, body, error_tx));
                let send_task = match poll_fn(|cx| Poll::Ready(sending.as_mut().poll(cx))).await {
                    Poll::Ready(()) => None,
                    Poll::Pending => Some(AbortOnDrop(tokio::spawn(sending))),
                };
                ClientCallParts {
                    request_error: Some(error_rx),
                    send_task,
                }
            }
        };

        let mut decoder = FrameDecoder::new(settings.max_header_list_size);
        let mut buf = BytesMut::new();
        // Both are cancel-safe: whichever loses the race has lost nothing.
        let block = tokio::select! {
            head = read_head(&mut recv, &mut decoder, &mut buf) => {
                head.map_err(|e| head_failure(e, early))?
            }
            Some(status) = request_failure(&mut parts.request_error) => return Err(status.into()),
        };
        let headers = fields::decode_fields_within(&block, settings.max_header_list_size)
            .map_err(malformed)
            .and_then(|h| check_status_fields(&h).map(|()| h))
            .inspect_err(|_| recv.stop(ErrorCode::ProtocolError))?;
        let trailers_only = headers.contains_key(&crate::status::GRPC_STATUS);
        let body = RecvBody::client(
            recv,
            decoder,
            buf,
            settings.max_receive_message_size,
            trailers_only,
            parts,
        );
        let mut response = http::Response::new(body);
        *response.version_mut() = http::Version::HTTP_2;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// Resolves with the request's failure, if the request side reports one. Cancel-safe.
pub(super) async fn request_failure(rx: &mut Option<oneshot::Receiver<Status>>) -> Option<Status> {
    let result = match rx {
        Some(rx) => rx.await,
        None => return std::future::pending().await,
    };
    *rx = None;
    match result {
        Ok(status) => Some(status),
        // The request went out whole: keep waiting for the response.
        Err(_) => std::future::pending().await,
    }
}

/// Why a response head could not be read; `early` when the stream carried 0-RTT data.
fn head_failure(err: HeadError, early: bool) -> Failure {
    match err {
        HeadError::Read(ReadError::ZeroRttRejected) => {
            Failure::Early("the server rejected 0-RTT data".into())
        }
        HeadError::Read(ReadError::Reset(code))
            if code.into_inner() == u64::from(ErrorCode::TooEarly.to_u32()) =>
        {
            Failure::Early("the server would not run it from 0-RTT data".into())
        }
        HeadError::Read(ReadError::ConnectionLost(e)) if early => {
            Failure::Early(format!("connection lost during its 0-RTT handshake: {e}"))
        }
        HeadError::Read(ReadError::Reset(code))
            if code.into_inner() == u64::from(ErrorCode::RefusedStream.to_u32()) =>
        {
            Failure::Unprocessed(Status::unavailable(
                "the server refused the call unprocessed (it is going away)",
            ))
        }
        HeadError::Read(ReadError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(
            close,
        ))) if close.error_code.into_inner() == u64::from(ErrorCode::NoError.to_u32()) => {
            Failure::Unprocessed(Status::unavailable(
                "the server closed the connection (shutting down) before answering",
            ))
        }
        other => Failure::Status(other.into_status(Peer::Server)),
    }
}

/// Writes a whole request, `frames`, and finishes the stream. Errors of the stream show up on
/// the response side.
async fn write_whole(send: &mut SendHalf, frames: &mut [Bytes]) {
    match send.write(frames).await {
        Ok(()) => send.finish(),
        // The server stopped reading: it has answered or is about to.
        Err(quinn::WriteError::Stopped(_)) => send.abandon(),
        // Dropped unfinished, the stream is reset.
        Err(e) => debug!("request stream failed: {e}"),
    }
}

/// Sends a request: the frames taken from it so far (`pending`, its head first), then the
/// rest of its body. Errors of the body itself go to `error_tx`, so the call ends with them;
/// errors of the stream show up on the response side.
async fn send_request(
    mut send: SendHalf,
    pending: Vec<Bytes>,
    body: tonic::body::Body,
    error_tx: oneshot::Sender<Status>,
) {
    match send_body(&mut send, pending, body).await {
        Ok(_) => {}
        Err(SendBodyError::Write(quinn::WriteError::Stopped(_))) => {
            // The server stopped reading: it has answered or is about to.
            send.abandon();
        }
        Err(SendBodyError::Write(e)) => debug!("request stream failed: {e}"),
        Err(SendBodyError::Body(status)) => {
            send.reset(ErrorCode::Cancelled);
            let _ = error_tx.send(status);
        }
    }
}
