//! The receiving half of a call's stream, and reading its head.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use quinn::ReadError;

use tonic::Status;

use super::{HandleToken, quic_code};
use crate::status::{Peer, read_status};
use crate::wire::code::ErrorCode;
use crate::wire::frame::{Frame, FrameDecoder, FrameError};

/// The receiving half of a call's stream. Dropping it before the end stops the peer's
/// sending side with the code set by [`set_drop_code`](Self::set_drop_code) (CANCELLED unless
/// changed).
#[derive(Debug)]
pub(crate) struct RecvHalf {
    stream: quinn::RecvStream,
    done: bool,
    drop_code: ErrorCode,
    /// Counts this handle among its connection's early ones; after `stream`, so that it is
    /// dropped after it.
    token: Option<HandleToken>,
}

impl RecvHalf {
    pub(crate) fn new(stream: quinn::RecvStream) -> Self {
        Self {
            stream,
            done: false,
            drop_code: ErrorCode::Cancelled,
            token: None,
        }
    }

    /// Counts this handle as live in `token`'s count until it is dropped.
    pub(crate) fn track(&mut self, token: HandleToken) {
        self.token = Some(token);
    }

    pub(crate) fn set_drop_code(&mut self, code: ErrorCode) {
        self.drop_code = code;
    }

    /// Tells the peer to stop sending.
    pub(crate) fn stop(&mut self, code: ErrorCode) {
        if !self.done {
            self.done = true;
            let _ = self.stream.stop(quic_code(code));
        }
    }

    pub(super) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, ReadError>> {
        // `read_chunk` is cancel-safe, so a fresh future per poll loses nothing.
        let read = pin!(self.stream.read_chunk(usize::MAX, true));
        let chunk = ready!(read.poll(cx))?;
        if chunk.is_none() {
            self.done = true;
        }
        Poll::Ready(Ok(chunk.map(|c| c.bytes)))
    }

    /// The next chunk of the stream, `None` at its end.
    ///
    /// Cancel-safe: a chunk is taken from quinn only when this resolves.
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
    /// Frames of unknown type before the head passed the field-block limit, in bytes.
    SkippedTooMuch(u64),
    /// The stream was reset or the connection lost.
    Read(ReadError),
}

impl HeadError {
    /// The status for a head that `peer` did not send as it should have: the head of a
    /// request when `peer` is the client, of a response when it is the server.
    pub(crate) fn into_status(self, peer: Peer) -> Status {
        let what = match peer {
            Peer::Client => "request",
            Peer::Server => "response",
        };
        match self {
            Self::Frame(FrameError::FieldBlockTooLarge { len, limit }) => {
                Status::resource_exhausted(format!(
                    "{what} head of {len} bytes exceeds the limit of {limit} bytes"
                ))
            }
            Self::Frame(e) => Status::internal(format!("protocol error: {what} head: {e}")),
            Self::NotHeaders => {
                Status::internal(format!("protocol error: {what} did not start with HEADERS"))
            }
            Self::Finished => {
                Status::internal(format!("protocol error: {what} ended before its head"))
            }
            Self::SkippedTooMuch(n) => Status::resource_exhausted(format!(
                "{n} bytes of unknown frames before the {what} head exceed the head limit"
            )),
            Self::Read(e) => read_status(e, peer),
        }
    }
}

/// Reads frames until the HEADERS frame that opens every request and response.
///
/// Cancel-safe as long as the caller keeps `decoder` and `buf`: what has been read stays in
/// `buf`, so a new call carries on where the cancelled one stopped.
pub(crate) async fn read_head(
    recv: &mut RecvHalf,
    decoder: &mut FrameDecoder,
    buf: &mut BytesMut,
) -> Result<Bytes, HeadError> {
    loop {
        let frame = decoder.decode(buf).map_err(HeadError::Frame)?;
        // Unknown frames may come first (extensions), but no more of them than a head may
        // hold: else a peer could keep a stream busy before it ever says what it is.
        if decoder.skipped() > decoder.max_field_block() as u64 {
            return Err(HeadError::SkippedTooMuch(decoder.skipped()));
        }
        match frame {
            Some(Frame::Headers(block)) => return Ok(block),
            Some(_) => return Err(HeadError::NotHeaders),
            None => match recv.chunk().await.map_err(HeadError::Read)? {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => return Err(HeadError::Finished),
            },
        }
    }
}
