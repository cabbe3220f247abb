//! The async layer over one call's QUIC stream, shared by client and server: writing frames
//! from an `http_body::Body`, and reading frames into one.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame as BodyFrame, SizeHint};
use quinn::{ConnectionError, ReadError, VarInt, WriteError};
use tokio::sync::oneshot;
use tonic::{Code, Status};

use crate::wire::code::{ErrorCode, grpc_code_for_reset};
use crate::wire::fields::{self, FieldError};
use crate::wire::frame::{self, Frame, FrameDecoder, FrameError};
use crate::wire::message::MessageLimiter;

/// Flush coalesced frames once this many bytes are waiting.
const FLUSH_BYTES: usize = 64 * 1024;

fn varint(code: ErrorCode) -> VarInt {
    VarInt::from_u32(code.to_u32())
}

/// The sending half of a call's stream. Dropping it before [`finish`](Self::finish) resets the
/// stream with CANCELLED, so dropping a call's future is enough to cancel it on the wire.
#[derive(Debug)]
pub(crate) struct SendHalf {
    stream: quinn::SendStream,
    closed: bool,
    wrote_any: bool,
    mid_write: bool,
}

impl SendHalf {
    pub(crate) fn new(stream: quinn::SendStream) -> Self {
        Self {
            stream,
            closed: false,
            wrote_any: false,
            mid_write: false,
        }
    }

    pub(crate) fn set_priority(&self, priority: crate::Priority) {
        // Fails only if the stream is already closed, in which case nothing is left to order.
        let _ = self.stream.set_priority(priority.quic_priority());
    }

    /// Writes whole frames. Never waits for the peer's acknowledgement.
    pub(crate) async fn write(&mut self, chunks: &mut [Bytes]) -> Result<(), WriteError> {
        self.mid_write = true;
        self.stream.write_all_chunks(chunks).await?;
        self.mid_write = false;
        self.wrote_any = true;
        Ok(())
    }

    /// Ends the stream cleanly (FIN), after whatever was written.
    pub(crate) fn finish(&mut self) {
        self.closed = true;
        let _ = self.stream.finish();
    }

    /// Abandons the stream.
    pub(crate) fn reset(&mut self, code: ErrorCode) {
        self.closed = true;
        let _ = self.stream.reset(varint(code));
    }

    /// Marks the stream as dealt with by the peer (it stopped it); nothing more to send.
    pub(crate) fn abandon(&mut self) {
        self.closed = true;
    }

    /// Sends `status` as the last frame and finishes: trailers-only if nothing was sent yet,
    /// TRAILERS otherwise. If a frame was cut short, only a reset is possible.
    pub(crate) async fn send_status(&mut self, status: &Status, fallback: ErrorCode) {
        if self.mid_write {
            self.reset(fallback);
            return;
        }
        let ty = if self.wrote_any {
            frame::TRAILERS
        } else {
            frame::HEADERS
        };
        let mut frame = [fields::encode_fields(
            ty,
            &status_fields(status, !self.wrote_any),
        )];
        if self.write(&mut frame).await.is_ok() {
            self.finish();
        }
    }

    /// Resolves when the peer stops the stream (cancellation) or the connection is lost.
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let stopped = self.stream.stopped();
        async move {
            let _ = stopped.await;
        }
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        if !self.closed {
            self.reset(ErrorCode::Cancelled);
        }
    }
}

/// The fields that carry `status`: `grpc-status`, `grpc-message`, details and its metadata,
/// plus `content-type` when they open a response (trailers-only).
pub(crate) fn status_fields(status: &Status, opens_response: bool) -> HeaderMap {
    let mut fields = status.metadata().clone().into_headers();
    if opens_response {
        fields.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
    }
    if status.add_header(&mut fields).is_err() {
        // Only the details can fail to encode; the code alone still gets through.
        fields.insert("grpc-status", http::HeaderValue::from(status.code() as i32));
    }
    fields
}

/// The receiving half of a call's stream. Dropping it before the end stops the peer's
/// sending side with the code set by [`set_drop_code`](Self::set_drop_code) (CANCELLED unless
/// changed).
#[derive(Debug)]
pub(crate) struct RecvHalf {
    stream: quinn::RecvStream,
    done: bool,
    drop_code: ErrorCode,
}

impl RecvHalf {
    pub(crate) fn new(stream: quinn::RecvStream) -> Self {
        Self {
            stream,
            done: false,
            drop_code: ErrorCode::Cancelled,
        }
    }

    pub(crate) fn set_drop_code(&mut self, code: ErrorCode) {
        self.drop_code = code;
    }

    /// Tells the peer to stop sending.
    pub(crate) fn stop(&mut self, code: ErrorCode) {
        if !self.done {
            self.done = true;
            let _ = self.stream.stop(varint(code));
        }
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, ReadError>> {
        // `read_chunk` is cancel-safe, so a fresh future per poll loses nothing.
        let read = pin!(self.stream.read_chunk(usize::MAX, true));
        let chunk = ready!(read.poll(cx))?;
        if chunk.is_none() {
            self.done = true;
        }
        Poll::Ready(Ok(chunk.map(|c| c.bytes)))
    }

    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
        poll_fn(|cx| self.poll_chunk(cx)).await
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        let code = self.drop_code;
        self.stop(code);
    }
}

/// Why a stream's head could not be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The first frame broke the format.
    Frame(FrameError),
    /// The first frame was not HEADERS.
    NotHeaders,
    /// The stream ended before a head.
    Finished,
    /// The stream was reset or the connection lost.
    Read(ReadError),
}

/// Reads frames until the HEADERS frame that opens every request and response.
pub(crate) async fn read_head(
    recv: &mut RecvHalf,
    decoder: &mut FrameDecoder,
    buf: &mut BytesMut,
) -> Result<Bytes, HeadError> {
    loop {
        match decoder.decode(buf).map_err(HeadError::Frame)? {
            Some(Frame::Headers(block)) => return Ok(block),
            Some(_) => return Err(HeadError::NotHeaders),
            None => match recv.chunk().await.map_err(HeadError::Read)? {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => return Err(HeadError::Finished),
            },
        }
    }
}

/// Why [`send_body`] stopped early.
#[derive(Debug)]
pub(crate) enum SendBodyError {
    /// The stream could not be written: the peer stopped it or the connection is gone.
    Write(WriteError),
    /// The body itself failed.
    Body(Status),
}

/// Writes `head` (already-encoded frames) and then `body` as DATA and TRAILERS frames, and
/// finishes the stream. Frames that are ready together go out in one write. Returns the
/// status code the trailers carried, if any.
pub(crate) async fn send_body<B>(
    send: &mut SendHalf,
    head: Vec<Bytes>,
    body: B,
) -> Result<Option<tonic::Code>, SendBodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = pin!(body);
    let mut pending = head;
    let mut pending_bytes: usize = pending.iter().map(Bytes::len).sum();
    let mut code = None;
    loop {
        let next = if pending.is_empty() {
            Some(poll_fn(|cx| body.as_mut().poll_frame(cx)).await)
        } else {
            // Take another frame only if it is ready now; otherwise send what is waiting.
            match poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
                Poll::Ready(frame) => Some(frame),
                Poll::Pending => None,
            }
        };
        match next {
            None => {
                send.write(&mut pending)
                    .await
                    .map_err(SendBodyError::Write)?;
                pending.clear();
                pending_bytes = 0;
            }
            Some(None) => {
                send.write(&mut pending)
                    .await
                    .map_err(SendBodyError::Write)?;
                send.finish();
                return Ok(code);
            }
            Some(Some(Err(e))) => {
                if !pending.is_empty() {
                    send.write(&mut pending)
                        .await
                        .map_err(SendBodyError::Write)?;
                }
                return Err(SendBodyError::Body(Status::from_error(e.into())));
            }
            Some(Some(Ok(frame))) => {
                match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => {
                        pending_bytes += data.len();
                        pending.push(frame::data_head(data.len()));
                        pending.push(data);
                    }
                    Err(frame) => {
                        if let Ok(mut trailers) = frame.into_trailers() {
                            normalize_status(&mut trailers);
                            code = crate::telemetry::status_code(&trailers);
                            let trailers = fields::encode_fields(frame::TRAILERS, &trailers);
                            pending_bytes += trailers.len();
                            pending.push(trailers);
                        }
                    }
                }
                if pending_bytes >= FLUSH_BYTES {
                    send.write(&mut pending)
                        .await
                        .map_err(SendBodyError::Write)?;
                    pending.clear();
                    pending_bytes = 0;
                }
            }
        }
    }
}

/// Aborts a spawned task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which end of the call a [`RecvBody`] reads.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// The server reading a request: the stream may end without trailers.
    Server,
    /// The client reading a response. `trailers_only`: the head held the status, so the body
    /// must be empty.
    Client { trailers_only: bool },
}

/// The body of a call's incoming half on QUIC: a response on the client, a request on the
/// server.
///
/// It yields the gRPC message bytes as DATA frames and the trailers, and enforces the receive
/// size limit from each message's 5-byte prefix before buffering the message. Errors are
/// [`Status`]es with the gRPC code that the failure means. Dropping it before the end cancels
/// the call.
pub(crate) struct RecvBody {
    recv: RecvHalf,
    decoder: FrameDecoder,
    buf: BytesMut,
    limiter: MessageLimiter,
    role: Role,
    done: bool,
    request_error: Option<oneshot::Receiver<Status>>,
    // Declared last: dropped after `recv`, so the request side is reset after the response
    // side is stopped.
    send_task: Option<AbortOnDrop>,
}

impl std::fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBody")
            .field("role", &self.role)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// What the client hands a response body so it can surface request failures and stop the
/// request side with the response.
#[derive(Debug, Default)]
pub(crate) struct ClientCallParts {
    pub(crate) request_error: Option<oneshot::Receiver<Status>>,
    pub(crate) send_task: Option<AbortOnDrop>,
}

impl RecvBody {
    pub(crate) fn server(
        recv: RecvHalf,
        decoder: FrameDecoder,
        buf: BytesMut,
        max_message: usize,
    ) -> Self {
        Self {
            recv,
            decoder,
            buf,
            limiter: MessageLimiter::new(max_message),
            role: Role::Server,
            done: false,
            request_error: None,
            send_task: None,
        }
    }

    pub(crate) fn client(
        recv: RecvHalf,
        decoder: FrameDecoder,
        buf: BytesMut,
        max_message: usize,
        trailers_only: bool,
        parts: ClientCallParts,
    ) -> Self {
        Self {
            recv,
            decoder,
            buf,
            limiter: MessageLimiter::new(max_message),
            role: Role::Client { trailers_only },
            done: false,
            request_error: parts.request_error,
            send_task: parts.send_task,
        }
    }

    /// Ends the call with `status`, telling the peer why with `code`.
    fn fail(
        &mut self,
        status: Status,
        code: ErrorCode,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Status>>> {
        self.done = true;
        self.recv.stop(code);
        self.send_task = None;
        Poll::Ready(Some(Err(status)))
    }

    fn read_error(&self, err: ReadError) -> (Status, ErrorCode) {
        let peer = match self.role {
            Role::Server => "client",
            Role::Client { .. } => "server",
        };
        let status = match err {
            ReadError::Reset(code) => {
                let code = code.into_inner();
                let grpc = grpc_code_for_reset(code);
                Status::new(
                    grpc,
                    format!("stream reset by {peer} (error code {code:#x})"),
                )
            }
            ReadError::ConnectionLost(e) => connection_status(&e),
            ReadError::ZeroRttRejected => Status::unavailable("0-RTT data rejected by server"),
            ReadError::ClosedStream | ReadError::IllegalOrderedRead => {
                Status::internal("stream closed unexpectedly")
            }
        };
        (status, ErrorCode::Cancelled)
    }
}

/// The status a call ends with when its connection goes away.
pub(crate) fn connection_status(err: &ConnectionError) -> Status {
    match err {
        ConnectionError::TimedOut => Status::unavailable("connection timed out"),
        ConnectionError::LocallyClosed => Status::unavailable("connection closed locally"),
        ConnectionError::ApplicationClosed(close)
            if close.error_code == varint(ErrorCode::NoError) =>
        {
            Status::unavailable("connection closed by peer (shutting down)")
        }
        other => Status::unavailable(format!("connection lost: {other}")),
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(rx) = &mut this.request_error
            && let Poll::Ready(result) = Pin::new(rx).poll(cx)
        {
            this.request_error = None;
            if let Ok(status) = result {
                return this.fail(status, ErrorCode::Cancelled);
            }
        }
        loop {
            match this.decoder.decode(&mut this.buf) {
                Err(FrameError::FieldBlockTooLarge { len, limit }) => {
                    let status = Status::resource_exhausted(format!(
                        "trailers of {len} bytes exceed the limit of {limit} bytes"
                    ));
                    return this.fail(status, ErrorCode::MessageTooLarge);
                }
                Ok(Some(Frame::Data(data))) => {
                    if let Err(e) = this.limiter.observe(&data) {
                        let status = Status::resource_exhausted(format!("received {e}"));
                        return this.fail(status, ErrorCode::MessageTooLarge);
                    }
                    return Poll::Ready(Some(Ok(BodyFrame::data(data))));
                }
                Ok(Some(Frame::Trailers(block))) => {
                    let trailers = fields::decode_fields(&block)
                        .map_err(malformed)
                        .and_then(|t| check_status_fields(&t).map(|()| t));
                    return match trailers {
                        Ok(trailers) => {
                            this.done = true;
                            this.recv.set_drop_code(ErrorCode::NoError);
                            Poll::Ready(Some(Ok(BodyFrame::trailers(trailers))))
                        }
                        Err(status) => this.fail(status, ErrorCode::ProtocolError),
                    };
                }
                Ok(Some(Frame::Headers(_) | Frame::GoAway)) => {
                    let status =
                        Status::internal("protocol error: unexpected frame after the head");
                    return this.fail(status, ErrorCode::ProtocolError);
                }
                Ok(None) => {}
            }
            match ready!(this.recv.poll_chunk(cx)) {
                Ok(Some(chunk)) => this.buf.extend_from_slice(&chunk),
                Ok(None) => {
                    if !this.decoder.at_frame_boundary() || !this.buf.is_empty() {
                        let status =
                            Status::internal("protocol error: stream ended inside a frame");
                        return this.fail(status, ErrorCode::ProtocolError);
                    }
                    this.done = true;
                    return match this.role {
                        Role::Server
                        | Role::Client {
                            trailers_only: true,
                        } => Poll::Ready(None),
                        Role::Client {
                            trailers_only: false,
                        } => this.fail(
                            Status::internal("protocol error: response ended without a status"),
                            ErrorCode::ProtocolError,
                        ),
                    };
                }
                Err(e) => {
                    let (status, code) = this.read_error(e);
                    return this.fail(status, code);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Gives an oversized message the status gRPC specifies. tonic's codec reports a message over
/// its decoding limit as OUT_OF_RANGE; gRPC (and quicrpc's own limit) say RESOURCE_EXHAUSTED,
/// and a status must mean the same whichever limit caught the message.
pub(crate) fn normalize_status(fields: &mut HeaderMap) {
    const TONIC_TOO_LARGE: &[u8] = b"Error, decoded message length too large";
    let out_of_range = fields
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"11");
    let too_large = || {
        fields.get("grpc-message").is_some_and(|m| {
            // tonic percent-encodes the message: compare the part before the first escape.
            let m = m.as_bytes();
            m.starts_with(b"Error,%20decoded%20message%20length%20too%20large")
                || m.starts_with(TONIC_TOO_LARGE)
        })
    };
    if out_of_range && too_large() {
        fields.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
}

/// tonic's server ends a call whose `grpc-timeout` expires with CANCELLED ("Timeout
/// expired"), from a layer outside anything quicrpc can wrap; gRPC, and quicrpc's QUIC side,
/// say DEADLINE_EXCEEDED. The client rewrites a CANCELLED status that reaches it at or after
/// the call's deadline, so that a status means the same on both transports.
pub(crate) fn deadline_status(fields: &mut HeaderMap, deadline: Option<tokio::time::Instant>) {
    let cancelled = fields
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"1");
    if cancelled && deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
        fields.insert("grpc-status", http::HeaderValue::from_static("4"));
        fields.insert(
            "grpc-message",
            http::HeaderValue::from_static("deadline%20exceeded"),
        );
    }
}

/// Checks what tonic would otherwise trust in a peer's status fields: tonic panics on a
/// `grpc-status-details-bin` that is not base64.
pub(crate) fn check_status_fields(fields: &HeaderMap) -> Result<(), Status> {
    use base64::Engine as _;
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    match fields.get("grpc-status-details-bin") {
        Some(details) if LENIENT.decode(details.as_bytes()).is_err() => Err(Status::internal(
            "protocol error: grpc-status-details-bin is not base64",
        )),
        _ => Ok(()),
    }
}

/// The status for a field block that does not decode.
pub(crate) fn malformed(err: FieldError) -> Status {
    Status::new(
        Code::Internal,
        format!("protocol error: malformed field block: {err}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_fields(code: &'static str) -> HeaderMap {
        let mut fields = HeaderMap::new();
        fields.insert("grpc-status", http::HeaderValue::from_static(code));
        fields.insert(
            "grpc-message",
            http::HeaderValue::from_static("Timeout%20expired"),
        );
        fields
    }

    #[test]
    fn cancelled_at_the_deadline_reads_as_deadline_exceeded() {
        let past = Some(tokio::time::Instant::now());
        let future = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(60));

        let mut fields = status_fields("1");
        deadline_status(&mut fields, past);
        assert_eq!(fields["grpc-status"], "4");
        assert_eq!(fields["grpc-message"], "deadline%20exceeded");

        // Before the deadline, or without one, CANCELLED means cancelled.
        for deadline in [future, None] {
            let mut fields = status_fields("1");
            deadline_status(&mut fields, deadline);
            assert_eq!(fields["grpc-status"], "1");
        }
        // Other codes are left alone.
        let mut fields = status_fields("13");
        deadline_status(&mut fields, past);
        assert_eq!(fields["grpc-status"], "13");
    }
}
