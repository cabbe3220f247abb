//! One call over gRPC over HTTP/3 (gRFC G2), on a QUIC connection that negotiated ALPN `h3`:
//! the hyperium `h3` crate's client over quicrpc's own adapter to quinn
//! ([`crate::http3::quic`]), which opens each request stream at the call's priority.
//!
//! A call is one request stream: its head (the gRPC metadata, and RFC 9218's `priority`),
//! the request's DATA, then the response's head, DATA and trailers. A call dropped before its
//! end (cancelled, or its deadline passed) resets what it still sends and stops what it still
//! receives, both with H3_REQUEST_CANCELLED, as RFC 9114 asks.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h3::error::{Code, StreamError};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::Status;
use tracing::debug;

use super::Conn;
use super::call::{CallError, request_failure};
use crate::client::{Call, CallSettings, ResponseBody};
use crate::http3::{self, quic};
use crate::priority::quinn_priority;
use crate::status::{check_status_fields, deadline_status};
use crate::stream::AbortOnDrop;
use crate::wire::message::MessageLimiter;
use crate::{Error, Transport, ZeroRtt};

/// What opens a connection's requests; each call uses a clone.
pub(super) type SendRequest = h3::client::SendRequest<quic::Opener, Bytes>;
type SendSide = h3::client::RequestStream<quic::SendStream<Bytes>, Bytes>;
type RecvSide = h3::client::RequestStream<quic::RecvStream, Bytes>;

/// Sets HTTP/3 up on a connection that negotiated it: opens the client's control stream and
/// sends its SETTINGS. Returns what opens requests, and the connection's driver, which must
/// run for requests to work (it reads the server's control and QPACK streams, GOAWAY
/// included) and which ends when the connection closes.
pub(super) async fn start(
    conn: &quinn::Connection,
    max_header_list_size: usize,
) -> Result<(SendRequest, impl Future<Output = ()> + Send + 'static), Error> {
    let remote = conn.remote_address();
    let (mut driver, send_request) = h3::client::builder()
        .max_field_section_size(u64::try_from(max_header_list_size).unwrap_or(u64::MAX))
        .build::<_, _, Bytes>(quic::Connection::new(
            conn.clone(),
            quic::Streams::default(),
        ))
        .await
        .map_err(|e| Error::Http3 {
            addr: remote,
            reason: e.to_string(),
        })?;
    let drive = async move {
        let closed = poll_fn(|cx| driver.poll_close(cx)).await;
        debug!(%remote, "HTTP/3 connection over: {closed}");
    };
    Ok((send_request, drive))
}

/// Runs a call on `conn`, which speaks HTTP/3: sends the request's head and body, and reads
/// the response's head.
pub(super) async fn call(
    conn: &Conn,
    mut send_request: SendRequest,
    request: http::Request<tonic::body::Body>,
    call: &mut Call,
    settings: &CallSettings,
) -> Result<http::Response<ResponseBody>, CallError> {
    let (parts, body) = request.into_parts();
    let head = request_head(&parts, call, settings).map_err(CallError::Failed)?;
    let opening = send_request.send_request(head);
    let stream = match quic::OPENING_PRIORITY
        .scope(quinn_priority(call.priority), opening)
        .await
    {
        Ok(stream) => stream,
        // The server said GOAWAY, or the connection went, before the request's body was
        // sent: no handler can have run it, so it may go on another connection.
        Err(e @ (StreamError::RemoteClosing { .. } | StreamError::ConnectionError { .. })) => {
            conn.retire();
            let request = http::Request::from_parts(parts, body);
            return Err(CallError::NotStarted(Box::new(request), stream_status(&e)));
        }
        Err(e) => return Err(CallError::Failed(stream_status(&e))),
    };
    call.started(Transport::Http3, Some(stream.id().into_inner()));
    let (send, recv) = stream.split();
    let mut recv = Receiving {
        stream: recv,
        over: false,
    };

    // Send inline what is ready now (a whole unary request, usually); hand the rest to a task
    // so that requests stream while responses are read.
    let (error_tx, error_rx) = oneshot::channel();
    let sending = Sending {
        stream: send,
        over: false,
    };
    let mut sending = Box::pin(send_body(sending, body, error_tx));
    let send_task = match poll_fn(|cx| Poll::Ready(sending.as_mut().poll(cx))).await {
        Poll::Ready(()) => None,
        Poll::Pending => Some(AbortOnDrop(tokio::spawn(sending))),
    };
    let mut request_error = Some(error_rx);

    // Both are cancel-safe: whichever loses the race has lost nothing.
    let head = tokio::select! {
        head = recv.stream.recv_response() => head.map_err(|e| head_error(&e))?,
        Some(status) = request_failure(&mut request_error) => return Err(CallError::Failed(status)),
    };
    let (mut head, ()) = head.into_parts();
    let headers = &mut head.headers;
    check_status_fields(headers).map_err(CallError::Failed)?;
    let trailers_only = headers.contains_key(&crate::status::GRPC_STATUS);
    if !trailers_only && head.status != http::StatusCode::OK {
        return Err(CallError::Failed(http_status(head.status)));
    }
    deadline_status(headers, call.deadline);
    recv.over = trailers_only;
    let body = H3Body {
        recv,
        state: if trailers_only {
            State::Over
        } else {
            State::Data
        },
        limiter: MessageLimiter::new(settings.max_receive_message_size),
        deadline: call.deadline,
        request_error,
        _send_task: send_task,
        _connection: send_request,
    };
    let mut response = http::Response::new(ResponseBody::http3(body, call.deadline));
    *response.version_mut() = http::Version::HTTP_3;
    *response.headers_mut() = head.headers;
    let extensions = response.extensions_mut();
    extensions.insert(ZeroRtt::NotUsed);
    extensions.insert(call.priority);
    extensions.insert(Transport::Http3);
    Ok(response)
}

/// The request's head as gRFC G2 has it: `POST https://{authority}{path}`, the call's
/// metadata (tonic's `content-type`, `te` and `grpc-timeout` among it), and the call's
/// priority as RFC 9218's urgency.
fn request_head(
    parts: &http::request::Parts,
    call: &Call,
    settings: &CallSettings,
) -> Result<http::Request<()>, Status> {
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let uri = http::Uri::builder()
        .scheme("https")
        .authority(settings.authority.as_str())
        .path_and_query(path)
        .build()
        .map_err(|e| Status::internal(format!("request URI: {e}")))?;
    let mut head = http::Request::new(());
    *head.method_mut() = http::Method::POST;
    *head.uri_mut() = uri;
    *head.headers_mut() = parts.headers.clone();
    head.headers_mut()
        .entry(http3::PRIORITY)
        .or_insert_with(|| http3::priority_header(call.priority));
    Ok(head)
}

/// The request stream's sending side; reset with H3_REQUEST_CANCELLED when dropped before it
/// is finished.
struct Sending {
    stream: SendSide,
    over: bool,
}

impl Drop for Sending {
    fn drop(&mut self) {
        if !self.over {
            self.stream.stop_stream(Code::H3_REQUEST_CANCELLED);
        }
    }
}

/// The request stream's receiving side; stopped with H3_REQUEST_CANCELLED when dropped before
/// the response's end.
struct Receiving {
    stream: RecvSide,
    over: bool,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        if !self.over {
            self.stream.stop_sending(Code::H3_REQUEST_CANCELLED);
        }
    }
}

/// Sends the request's body and finishes the stream. An error of the body itself goes to
/// `error_tx`, so the call ends with it (and the stream is reset); errors of the stream show
/// on the response side.
async fn send_body(
    mut sending: Sending,
    mut body: tonic::body::Body,
    error_tx: oneshot::Sender<Status>,
) {
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                // A gRPC request has no trailers.
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if !data.has_remaining() {
                    continue;
                }
                if let Err(e) = sending.stream.send_data(data).await {
                    // The server stopped reading (it has answered, or is about to), or the
                    // stream or connection failed: the response side reports it.
                    debug!("HTTP/3 request stream ended: {e}");
                    sending.over = true;
                    return;
                }
            }
            Some(Err(status)) => {
                let _ = error_tx.send(status);
                return;
            }
            None => break,
        }
    }
    if let Err(e) = sending.stream.finish().await {
        debug!("HTTP/3 request stream ended: {e}");
    }
    sending.over = true;
}

/// Where a response body is.
enum State {
    Data,
    Trailers,
    Over,
}

/// A response body received over HTTP/3: its DATA under the receive limit, then its
/// trailers.
pub(in crate::client) struct H3Body {
    recv: Receiving,
    state: State,
    limiter: MessageLimiter,
    /// For a DEADLINE_EXCEEDED the server reports as its own (see `deadline_status`).
    deadline: Option<Instant>,
    /// The request body's failure, if it fails while the response is read.
    request_error: Option<oneshot::Receiver<Status>>,
    /// Sends the rest of the request; aborted (and the stream reset) with the body.
    _send_task: Option<AbortOnDrop>,
    /// `h3` closes the connection when the last of these goes: this one keeps it open for
    /// the rest of the call, after the channel has moved new calls elsewhere (GOAWAY).
    _connection: SendRequest,
}

impl H3Body {
    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.state = State::Over;
        Poll::Ready(Some(Err(status)))
    }
}

impl Body for H3Body {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if let Some(rx) = &mut this.request_error
            && let Poll::Ready(result) = Pin::new(rx).poll(cx)
        {
            this.request_error = None;
            if let Ok(status) = result {
                return this.fail(status);
            }
        }
        loop {
            match this.state {
                State::Data => match ready!(this.recv.stream.poll_recv_data(cx)) {
                    Ok(Some(mut data)) => {
                        let data = data.copy_to_bytes(data.remaining());
                        if let Err(e) = this.limiter.observe(&data) {
                            return this.fail(Status::resource_exhausted(format!("received {e}")));
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(None) => this.state = State::Trailers,
                    Err(e) => return this.fail(stream_status(&e)),
                },
                State::Trailers => match ready!(this.recv.stream.poll_recv_trailers(cx)) {
                    Ok(trailers) => {
                        this.state = State::Over;
                        this.recv.over = true;
                        let Some(mut trailers) = trailers else {
                            return Poll::Ready(None);
                        };
                        if let Err(status) = check_status_fields(&trailers) {
                            return this.fail(status);
                        }
                        deadline_status(&mut trailers, this.deadline);
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Err(e) => return this.fail(stream_status(&e)),
                },
                State::Over => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Over)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Why a call has no response head: `err`, and whether the server provably did not process
/// the request (it rejected it with `H3_REQUEST_REJECTED`, or closed the connection
/// gracefully, which it does once every request it accepted has been answered).
fn head_error(err: &StreamError) -> CallError {
    let status = stream_status(err);
    let unprocessed = match err {
        StreamError::RemoteTerminate { code, .. } => *code == Code::H3_REQUEST_REJECTED,
        StreamError::ConnectionError { 0: e, .. } => e.is_h3_no_error(),
        _ => false,
    };
    if unprocessed {
        CallError::Unprocessed(status)
    } else {
        CallError::Failed(status)
    }
}

/// The status of a call whose stream failed with `err`.
fn stream_status(err: &StreamError) -> Status {
    match err {
        StreamError::RemoteTerminate { code, .. } => http3::reset_status(*code),
        StreamError::ConnectionError { 0: e, .. } => {
            Status::unavailable(format!("connection lost: {e}"))
        }
        StreamError::RemoteClosing { .. } => {
            Status::unavailable("the server is going away (GOAWAY): the call was not sent")
        }
        StreamError::HeaderTooBig {
            actual_size,
            max_size,
            ..
        } => Status::resource_exhausted(format!(
            "headers of {actual_size} bytes exceed the limit of {max_size}"
        )),
        other => Status::internal(format!("HTTP/3: {other}")),
    }
}

/// The status of a response whose HTTP status is not 200 and which carries no gRPC status,
/// as gRPC maps HTTP statuses (from a proxy, say).
fn http_status(status: http::StatusCode) -> Status {
    use http::StatusCode as S;
    let message = format!("HTTP/3 response with status {status} and no gRPC status");
    let code = match status {
        S::BAD_REQUEST => tonic::Code::Internal,
        S::UNAUTHORIZED => tonic::Code::Unauthenticated,
        S::FORBIDDEN => tonic::Code::PermissionDenied,
        S::NOT_FOUND => tonic::Code::Unimplemented,
        S::REQUEST_HEADER_FIELDS_TOO_LARGE => tonic::Code::ResourceExhausted,
        S::TOO_MANY_REQUESTS | S::BAD_GATEWAY | S::SERVICE_UNAVAILABLE | S::GATEWAY_TIMEOUT => {
            tonic::Code::Unavailable
        }
        _ => tonic::Code::Unknown,
    };
    Status::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_as_grpc_says() {
        let cases = [
            (400, tonic::Code::Internal),
            (401, tonic::Code::Unauthenticated),
            (403, tonic::Code::PermissionDenied),
            (404, tonic::Code::Unimplemented),
            (429, tonic::Code::Unavailable),
            (431, tonic::Code::ResourceExhausted),
            (502, tonic::Code::Unavailable),
            (503, tonic::Code::Unavailable),
            (504, tonic::Code::Unavailable),
            (500, tonic::Code::Unknown),
            (425, tonic::Code::Unknown),
        ];
        for (status, code) in cases {
            let status = http::StatusCode::from_u16(status).unwrap();
            assert_eq!(http_status(status).code(), code, "{status}");
        }
    }
}
