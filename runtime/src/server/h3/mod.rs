//! gRPC over HTTP/3 (gRFC G2) on the server's QUIC endpoint: connections that negotiated
//! ALPN `h3` get the same services, layers, limits and TLS rules as the native wire, through
//! the hyperium `h3` crates. Any gRPC-over-HTTP/3 client can call them.
//!
//! Each request stream keeps, through quicrpc's own adapter (`crate::http3::quic`), what the native wire's
//! streams have: its send priority (RFC 9218's `priority` header, or the method's), whether
//! it came as 0-RTT early data (only replay-safe methods run from it; others get 425 Too
//! Early), and the client's cancel (STOP_SENDING) ending its handler.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;
use tonic::body::Body as TonicBody;
use tracing::{Instrument as _, debug};

use super::Shared;
use super::budget::{BudgetedBody, ConnectionKey};
use super::credit::StreamCredit;
use super::quic::{
    call_extensions, drain_signal, handshake_completed, runs_from_early_data, sleep_until_some,
};
use super::stats::CallGuard;
use super::turns::Turns;
use crate::http3::{self, quic};
use crate::method::{Registered, registered};
use crate::status::{normalize_status, status_code, status_fields};
use crate::telemetry::{CallTelemetry, Side, server_method_label};
use crate::tls::PeerCertificates;
use crate::{Transport, deadline, priority};

type H3Send = h3::server::RequestStream<quic::SendStream<Bytes>, Bytes>;
type H3Recv = h3::server::RequestStream<quic::RecvStream, Bytes>;

/// What a call's connection knows of it.
#[derive(Clone)]
struct Origin {
    remote: SocketAddr,
    peer: Option<PeerCertificates>,
    connection: usize,
    /// Each request stream's handles, by stream id.
    streams: quic::Streams,
    /// Whether the handshake completed successfully: `None` while it is under way.
    handshake: tokio::sync::watch::Receiver<Option<bool>>,
}

/// Serves one HTTP/3 connection's requests until it closes, or until `shutdown` or the
/// connection's maximum age, when it says GOAWAY and closes once the requests under way are
/// done (or the drain timeout has passed).
pub(super) async fn serve_connection(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    peer: Option<PeerCertificates>,
    handshake: tokio::sync::watch::Receiver<Option<bool>>,
) {
    let remote = conn.remote_address();
    let max_field_section = u64::try_from(shared.config.max_header_list_size).unwrap_or(u64::MAX);
    let streams = quic::Streams::default();
    let built = h3::server::builder()
        .max_field_section_size(max_field_section)
        .build::<_, Bytes>(quic::Connection::new(conn.clone(), streams.clone()))
        .await;
    let mut h3 = match built {
        Ok(h3) => h3,
        Err(e) => {
            debug!(%remote, "HTTP/3 connection failed to start: {e}");
            return;
        }
    };
    debug!(%remote, "HTTP/3 connection accepted");
    let calls = TaskTracker::new();
    let origin = Origin {
        remote,
        peer,
        connection: conn.stable_id(),
        streams,
        handshake,
    };
    let mut credit = StreamCredit::new(shared.config.max_concurrent_streams);
    let mut turns = Turns::default();
    let drain = drain_signal(&shutdown, shared.max_connection_age, remote);
    tokio::pin!(drain);
    let mut drained_by = None;
    loop {
        tokio::select! {
            biased;
            () = &mut drain, if drained_by.is_none() => {
                drained_by = Some(Instant::now() + shared.drain_timeout);
                calls.close();
                // GOAWAY: no new requests; those under way go on.
                if let Err(e) = h3.shutdown(0).await {
                    debug!(%remote, "HTTP/3 GOAWAY failed: {e}");
                    break;
                }
            }
            () = calls.wait(), if drained_by.is_some() => break,
            () = sleep_until_some(drained_by) => {
                debug!(%remote, calls = calls.len(), "drain timeout: closing the HTTP/3 connection");
                break;
            }
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let call = shared.stats.call();
                    calls.spawn(serve_call(resolver, shared.clone(), origin.clone(), call));
                    // As on the native wire: more request credit as the connection gets busy.
                    if let Some(limit) = credit.grow(calls.len()) {
                        conn.set_max_concurrent_bi_streams(limit.into());
                    }
                    turns.started().await;
                }
                Ok(None) => break,
                Err(e) => {
                    debug!(%remote, "HTTP/3 connection closed: {e}");
                    break;
                }
            },
            // Last (the select is biased): nothing else was ready, so a burst of calls is over.
            () = std::future::ready(()), if turns.in_burst() => turns.burst_over(),
        }
    }
    conn.close(h3_code(h3::error::Code::H3_NO_ERROR), b"");
}

fn h3_code(code: h3::error::Code) -> quinn::VarInt {
    quinn::VarInt::from_u64(code.value()).unwrap_or(quinn::VarInt::MAX)
}

/// One request: its head, then its service, its response and its trailers.
async fn serve_call(
    resolver: h3::server::RequestResolver<quic::Connection, Bytes>,
    shared: Arc<Shared>,
    origin: Origin,
    _call: CallGuard,
) {
    let remote = origin.remote;
    let head = tokio::time::timeout(shared.handshake_timeout, resolver.resolve_request()).await;
    let (request, stream) = match head {
        Ok(Ok(resolved)) => resolved,
        Ok(Err(e)) => {
            debug!(%remote, "HTTP/3 request without a valid head: {e}");
            return;
        }
        Err(_) => {
            debug!(%remote, "HTTP/3 request head not complete within {:?}", shared.handshake_timeout);
            return;
        }
    };
    let stream_id = stream.id().into_inner();
    let Some(handles) = origin.streams.take(stream_id) else {
        debug!(%remote, "HTTP/3 request stream without its handles");
        return;
    };
    let (send, recv): (H3Send, H3Recv) = stream.split();
    let mut send = Sender {
        stream: send,
        head_sent: false,
    };
    let (parts, ()) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let method = registered(&path);
    let info = method.map(Registered::info);
    // As on the native wire: a stream quinn calls 1-RTT is early unless the handshake
    // completed successfully (a connection closed during its handshake says otherwise).
    let early = handles.is_0rtt || !handshake_completed(origin.handshake.clone()).await;
    if early && !runs_from_early_data(info, &path) {
        // RFC 8470: not run; the client may send it again once the handshake is complete.
        too_early(&mut send.stream).await;
        return;
    }
    let priority = http3::priority_from_header(&parts.headers)
        .unwrap_or_else(|| priority::resolve(None, info));
    handles.priority.store(
        priority::quinn_priority(priority),
        std::sync::atomic::Ordering::Release,
    );
    let mut telemetry = CallTelemetry::start(
        Side::Server,
        server_method_label(&path, method),
        Transport::Http3,
        Some(priority),
        Some(stream_id),
    );
    let deadline = match deadline::from_headers(&parts.headers) {
        Ok(deadline) => deadline,
        Err(status) => {
            send.finish_with(&status).await;
            telemetry.finish(status.code());
            return;
        }
    };
    let charge = shared
        .request_buffers
        .charge(ConnectionKey::Quic(origin.connection));
    let (reset_tx, reset) = tokio::sync::oneshot::channel();
    let body = BudgetedBody::new(
        RequestBody::new(recv, reset_tx),
        shared.config.max_receive_message_size,
        charge,
    );
    let mut request = Request::from_parts(parts, TonicBody::new(body));
    *request.version_mut() = http::Version::HTTP_2;
    call_extensions(
        request.extensions_mut(),
        priority,
        origin.peer,
        early,
        remote,
    );
    // The client's cancel drops the handler, as on the native wire: STOP_SENDING on the
    // response (the stream is reset when `send` goes), or a reset of the request, which is
    // answered CANCELLED in case the client still reads.
    tokio::select! {
        biased;
        () = respond(&mut send, &shared, request, deadline, telemetry) => {}
        () = handles.stopped => debug!(%remote, "HTTP/3 call cancelled by the client"),
        Ok(()) = reset => {
            debug!(%remote, "HTTP/3 request reset by the client");
            send.finish_with(&Status::cancelled("the client reset the request")).await;
        }
    }
}

/// A response stream, and whether its head has gone out: a status that ends the call then
/// goes in trailers, else in a trailers-only head.
struct Sender {
    stream: H3Send,
    head_sent: bool,
}

impl Sender {
    /// Ends the call with `status`, in a trailers-only head if no head has gone out yet, in
    /// trailers otherwise (a second head would carry `:status` where HTTP/3 forbids it).
    async fn finish_with(&mut self, status: &Status) {
        let sent = if self.head_sent {
            self.stream
                .send_trailers(status_fields(status, false))
                .await
        } else {
            let mut head = Response::new(());
            *head.headers_mut() = status_fields(status, true);
            self.stream.send_response(head).await
        };
        if sent.is_ok() {
            let _ = self.stream.finish().await;
        }
    }
}

/// Answers 425 Too Early (RFC 8470) without running the call.
async fn too_early(send: &mut H3Send) {
    let mut head = Response::new(());
    *head.status_mut() = http::StatusCode::TOO_EARLY;
    if send.send_response(head).await.is_ok() {
        let _ = send.finish().await;
    }
}

/// The request's DATA as a body, then its trailers if it has any.
///
/// Dropped before the request's end (the call answered first, or failed), it asks the client
/// to stop sending with H3_NO_ERROR, as RFC 9114 (4.1) has a server do: clients treat any
/// other code as an error. quicrpc's adapter ([`quic`]) can stop a stream at any time, a
/// read under way or not.
struct RequestBody {
    recv: H3Recv,
    /// All DATA has come; the trailers are next.
    data_done: bool,
    /// The request has ended (or failed): nothing to stop.
    ended: bool,
    /// Told when the client resets the request: the call is cancelled.
    reset: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RequestBody {
    fn new(recv: H3Recv, reset: tokio::sync::oneshot::Sender<()>) -> Self {
        Self {
            recv,
            data_done: false,
            ended: false,
            reset: Some(reset),
        }
    }

    fn fail(&mut self, e: &h3::error::StreamError) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.ended = true;
        if matches!(e, h3::error::StreamError::RemoteTerminate { .. })
            && let Some(reset) = self.reset.take()
            && reset.send(()).is_ok()
        {
            // The client reset the request: the call is cancelled, and `serve_call` drops
            // the handler now. No error goes to the handler, which could read it as the
            // request's end (tonic's decoder takes a CANCELLED body error for one) and answer
            // a partial upload as a whole one.
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(stream_status(e))))
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match ready!(this.recv.poll_recv_data(cx)) {
                Ok(Some(mut data)) => {
                    let data = data.copy_to_bytes(data.remaining());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) => this.data_done = true,
                Err(e) => return this.fail(&e),
            }
        }
        match ready!(this.recv.poll_recv_trailers(cx)) {
            Ok(trailers) => {
                this.ended = true;
                Poll::Ready(trailers.map(|trailers| Ok(Frame::trailers(trailers))))
            }
            Err(e) => this.fail(&e),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if !self.ended {
            self.recv.stop_sending(h3::error::Code::H3_NO_ERROR);
        }
    }
}

/// The status a failed request stream gives the handler.
fn stream_status(e: &h3::error::StreamError) -> Status {
    Status::cancelled(format!("HTTP/3 request stream failed: {e}"))
}

/// Runs the service and sends its response, or DEADLINE_EXCEEDED when the deadline passes
/// first (dropping the handler).
async fn respond(
    send: &mut Sender,
    shared: &Shared,
    request: Request<TonicBody>,
    deadline: Option<Instant>,
    mut telemetry: CallTelemetry,
) {
    let span = telemetry.span().clone();
    let respond = async {
        let response = match shared.service.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        send_response(send, response).await
    }
    .instrument(span);
    let outcome = match deadline {
        None => respond.await,
        Some(deadline) => match tokio::time::timeout_at(deadline, respond).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Status::deadline_exceeded("deadline exceeded")),
        },
    };
    match outcome {
        Ok(code) => telemetry.finish(code),
        Err(status) => {
            send.finish_with(&status).await;
            telemetry.finish(status.code());
        }
    }
}

/// Sends `response`: its head, its DATA, its trailers. The status code it ended with, or
/// the status to end the call with if it failed before its trailers.
async fn send_response(
    sender: &mut Sender,
    response: Response<TonicBody>,
) -> Result<tonic::Code, Status> {
    let (mut parts, mut body) = response.into_parts();
    normalize_status(&mut parts.headers);
    let trailers_only = status_code(&parts.headers);
    let send = &mut sender.stream;
    sender.head_sent = true;
    send.send_response(Response::from_parts(parts, ()))
        .await
        .map_err(|e| Status::cancelled(format!("sending the response head: {e}")))?;
    if let Some(code) = trailers_only {
        let _ = send.finish().await;
        return Ok(code);
    }
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(data) => send
                .send_data(data)
                .await
                .map_err(|e| Status::cancelled(format!("sending the response: {e}")))?,
            Err(frame) => {
                if let Ok(mut trailers) = frame.into_trailers() {
                    normalize_status(&mut trailers);
                    let code = status_code(&trailers).unwrap_or(tonic::Code::Unknown);
                    send.send_trailers(trailers)
                        .await
                        .map_err(|e| Status::cancelled(format!("sending trailers: {e}")))?;
                    let _ = send.finish().await;
                    return Ok(code);
                }
            }
        }
    }
    Err(Status::internal("the response ended without a status"))
}
