//! The sending half of a call's stream, and writing an `http_body::Body` as frames.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http_body::Body;
use quinn::WriteError;
use tokio::time::{Instant, Sleep, sleep_until};
use tonic::Status;

use super::gate::{WaitGuard, WriteGate};
use super::{HandleToken, quic_code};
use crate::Priority;
use crate::status::{normalize_status, status_code, status_fields};
use crate::telemetry::{self, Wait};
use crate::wire::code::ErrorCode;
use crate::wire::{fields, frame};

/// Flush coalesced frames once this many bytes are waiting.
const FLUSH_BYTES: usize = 64 * 1024;

/// The sending half of a call's stream. Dropping it before [`finish`](Self::finish) resets the
/// stream with CANCELLED, so dropping a call's future is enough to cancel it on the wire.
#[derive(Debug)]
pub(crate) struct SendHalf {
    stream: quinn::SendStream,
    /// The connection's gate: writes wait for more urgent ones that wait for room.
    gate: Arc<WriteGate>,
    priority: Priority,
    closed: bool,
    wrote_any: bool,
    mid_write: bool,
    /// Counts this handle among its connection's early ones; after `stream`, so that it is
    /// dropped after it.
    token: Option<HandleToken>,
}

impl SendHalf {
    /// The sending half of `stream`, at [`Priority::Normal`] until
    /// [`set_priority`](Self::set_priority), writing through its connection's `gate`.
    pub(crate) fn new(stream: quinn::SendStream, gate: Arc<WriteGate>) -> Self {
        Self {
            stream,
            gate,
            priority: Priority::Normal,
            closed: false,
            wrote_any: false,
            mid_write: false,
            token: None,
        }
    }

    /// Counts this handle as live in `token`'s count until it is dropped.
    pub(crate) fn track(&mut self, token: HandleToken) {
        self.token = Some(token);
    }

    pub(crate) fn set_priority(&mut self, priority: Priority) {
        self.priority = priority;
        // Fails only if the stream is already closed, in which case nothing is left to order.
        let _ = self
            .stream
            .set_priority(crate::priority::quinn_priority(priority));
    }

    /// Writes whole frames. Never waits for the peer's acknowledgement; waits for room in
    /// quinn's send buffer and flow-control credit, and, through the connection's
    /// [`WriteGate`], for more urgent writes that wait for the same.
    pub(crate) async fn write(&mut self, chunks: &mut [Bytes]) -> Result<(), WriteError> {
        self.mid_write = true;
        let (gate, priority) = (&self.gate, self.priority);
        let mut write = pin!(self.stream.write_all_chunks(chunks));
        // Held back by the gate: the timer for when the holder stops holding, and since when.
        let mut held: Option<(Pin<Box<Sleep>>, Instant)> = None;
        // Waiting for room in quinn: since when, and the hold on less urgent writes.
        let mut blocked: Option<(Instant, Option<WaitGuard>)> = None;
        let result = poll_fn(|cx| {
            while let Some(until) = gate.held_until(priority, cx.waker()) {
                let (sleep, _) =
                    held.get_or_insert_with(|| (Box::pin(sleep_until(until)), Instant::now()));
                sleep.as_mut().reset(until);
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // The holder stopped holding others back: look again.
            }
            let poll = write.as_mut().poll(cx);
            if poll.is_pending() && blocked.is_none() {
                blocked = Some((Instant::now(), gate.wait(priority)));
            }
            poll
        })
        .await;
        if let Some((_, since)) = held {
            telemetry::write_waited(gate.side(), priority, Wait::Held, since.elapsed());
        }
        if let Some((since, guard)) = blocked {
            drop(guard);
            telemetry::write_waited(gate.side(), priority, Wait::Blocked, since.elapsed());
        }
        result?;
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
        let _ = self.stream.reset(quic_code(code));
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

/// Why [`send_body`] stopped early.
#[derive(Debug)]
pub(crate) enum SendBodyError {
    /// The stream could not be written: the peer stopped it or the connection is gone.
    Write(WriteError),
    /// The body itself failed.
    Body(Status),
}

/// What [`take_ready`] found.
pub(crate) enum Ready {
    /// The body ended: every frame is in `pending`.
    Ended,
    /// The body has more to come, or enough is waiting to be written first.
    More,
    /// The body failed.
    Failed(Status),
}

/// Adds to `pending` the frames `body` has ready now, up to [`FLUSH_BYTES`] waiting in all.
pub(crate) async fn take_ready<B>(mut body: Pin<&mut B>, pending: &mut Vec<Bytes>) -> Ready
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut pending_bytes: usize = pending.iter().map(Bytes::len).sum();
    let mut code = None;
    while pending_bytes < FLUSH_BYTES {
        match poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
            Poll::Ready(None) => return Ready::Ended,
            Poll::Ready(Some(Ok(frame))) => pending_bytes += push_frame(pending, frame, &mut code),
            Poll::Ready(Some(Err(e))) => return Ready::Failed(Status::from_error(e.into())),
            Poll::Pending => return Ready::More,
        }
    }
    Ready::More
}

/// Adds `frame`, encoded, to `pending`; returns the bytes added. Trailers set `code` to the
/// status they carry.
fn push_frame(
    pending: &mut Vec<Bytes>,
    frame: http_body::Frame<Bytes>,
    code: &mut Option<tonic::Code>,
) -> usize {
    match frame.into_data() {
        Ok(data) if data.is_empty() => 0,
        Ok(data) => {
            let len = data.len();
            pending.push(frame::data_head(len));
            pending.push(data);
            len
        }
        Err(frame) => match frame.into_trailers() {
            Ok(mut trailers) => {
                normalize_status(&mut trailers);
                *code = status_code(&trailers);
                let trailers = fields::encode_fields(frame::TRAILERS, &trailers);
                let len = trailers.len();
                pending.push(trailers);
                len
            }
            Err(_) => 0,
        },
    }
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
                pending_bytes += push_frame(&mut pending, frame, &mut code);
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
