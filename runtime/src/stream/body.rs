//! [`RecvBody`]: the rest of a call's incoming half, after its head, as an `http_body::Body`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame as BodyFrame, SizeHint};
use tokio::sync::oneshot;
use tonic::Status;

use super::{AbortOnDrop, RecvHalf};
use crate::server::budget::Charge;
use crate::status::{Peer, check_status_fields, malformed, read_status};
use crate::wire::code::ErrorCode;
use crate::wire::fields;
use crate::wire::frame::{self, Frame, FrameDecoder, FrameError};
use crate::wire::message::MessageLimiter;

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
    /// What the decoder has been given and not used: part of a frame head, or a field block.
    buf: BytesMut,
    /// The rest of the last chunk quinn handed over. DATA payload in it goes out as it is,
    /// without a copy through `buf`.
    chunk: Bytes,
    limiter: MessageLimiter,
    /// On the server: what the request's message under way holds of the server's budget.
    /// Boxed, so that the body (and the client body enum it is a variant of) stays small.
    charge: Option<Box<Charge>>,
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
        charge: Charge,
    ) -> Self {
        let mut body = Self::new(
            recv,
            decoder,
            buf,
            max_message,
            Role::Server,
            ClientCallParts::default(),
        );
        body.charge = Some(Box::new(charge));
        body
    }

    pub(crate) fn client(
        recv: RecvHalf,
        decoder: FrameDecoder,
        buf: BytesMut,
        max_message: usize,
        trailers_only: bool,
        parts: ClientCallParts,
    ) -> Self {
        let role = Role::Client { trailers_only };
        Self::new(recv, decoder, buf, max_message, role, parts)
    }

    /// `recv`'s body after its head; `decoder` and `buf` hold what reading the head left.
    fn new(
        recv: RecvHalf,
        decoder: FrameDecoder,
        buf: BytesMut,
        max_message: usize,
        role: Role,
        parts: ClientCallParts,
    ) -> Self {
        Self {
            recv,
            decoder,
            buf,
            chunk: Bytes::new(),
            limiter: MessageLimiter::new(max_message),
            charge: None,
            role,
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
}

impl RecvBody {
    /// A piece of a DATA frame's payload, checked against the receive limit.
    fn data(&mut self, data: Bytes) -> Poll<Option<Result<BodyFrame<Bytes>, Status>>> {
        if let Err(e) = self.limiter.observe(&data) {
            let status = Status::resource_exhausted(format!("received {e}"));
            return self.fail(status, ErrorCode::MessageTooLarge);
        }
        if let Some(charge) = &mut self.charge
            && let Err(exceeded) = charge.set(self.limiter.pending_message_bytes())
        {
            return self.fail(exceeded.status(), ErrorCode::MessageTooLarge);
        }
        Poll::Ready(Some(Ok(BodyFrame::data(data))))
    }

    /// The trailers frame, which ends the body.
    fn trailers(&mut self, block: &[u8]) -> Poll<Option<Result<BodyFrame<Bytes>, Status>>> {
        let trailers = fields::decode_fields_within(block, self.decoder.max_field_block())
            .map_err(malformed)
            .and_then(|t| check_status_fields(&t).map(|()| t));
        match trailers {
            Ok(trailers) => {
                self.done = true;
                self.recv.set_drop_code(ErrorCode::NoError);
                Poll::Ready(Some(Ok(BodyFrame::trailers(trailers))))
            }
            Err(status) => self.fail(status, ErrorCode::ProtocolError),
        }
    }

    /// The end of the stream (FIN): fine between frames, and for a response only once its
    /// status has come.
    fn finished(&mut self) -> Poll<Option<Result<BodyFrame<Bytes>, Status>>> {
        if !self.decoder.at_frame_boundary() || !self.buf.is_empty() {
            let status = Status::internal("protocol error: stream ended inside a frame");
            return self.fail(status, ErrorCode::ProtocolError);
        }
        self.done = true;
        match self.role {
            Role::Server
            | Role::Client {
                trailers_only: true,
            } => Poll::Ready(None),
            Role::Client {
                trailers_only: false,
            } => self.fail(
                Status::internal("protocol error: response ended without a status"),
                ErrorCode::ProtocolError,
            ),
        }
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
                Err(e) => {
                    let status = Status::internal(format!("protocol error: {e}"));
                    return this.fail(status, ErrorCode::ProtocolError);
                }
                Ok(Some(Frame::Data(data))) => return this.data(data),
                Ok(Some(Frame::Trailers(block))) => return this.trailers(&block),
                Ok(Some(Frame::Headers(_) | Frame::GoAway)) => {
                    let status =
                        Status::internal("protocol error: unexpected frame after the head");
                    return this.fail(status, ErrorCode::ProtocolError);
                }
                Ok(None) => {}
            }
            if this.chunk.is_empty() {
                match ready!(this.recv.poll_chunk(cx)) {
                    Ok(Some(chunk)) => this.chunk = chunk,
                    Ok(None) => return this.finished(),
                    Err(e) => {
                        let peer = match this.role {
                            Role::Server => Peer::Client,
                            Role::Client { .. } => Peer::Server,
                        };
                        return this.fail(read_status(e, peer), ErrorCode::Cancelled);
                    }
                }
            }
            if this.buf.is_empty()
                && let Some(n) = this.decoder.take_data(this.chunk.len())
            {
                // A DATA payload, straight from quinn's chunk.
                let data = this.chunk.split_to(n);
                return this.data(data);
            }
            // A frame head, a field block or a skipped frame: the decoder takes them from
            // `buf`. At a head, give it no more than a head's worth until it has one, so that
            // the DATA payload after the head is not copied.
            let at_head =
                this.decoder.at_frame_boundary() && this.buf.len() < frame::MAX_FRAME_HEAD;
            let n = match at_head {
                true => this.chunk.len().min(frame::MAX_FRAME_HEAD - this.buf.len()),
                false => this.chunk.len(),
            };
            this.buf.extend_from_slice(&this.chunk.split_to(n));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
