//! `h3`'s view of a QUIC connection (its `quic` traits), over quinn, for both sides.
//!
//! Written here rather than taken from h3-quinn so that each request stream keeps what the
//! native wire has: whether its data came as 0-RTT early data, a `stopped` future that says
//! when the client cancels, and a handle to set its send priority once the request's head
//! has said what it is. [`Streams`] hands those to the request's task by stream id.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
use quinn::VarInt;

/// A priority not set yet.
const UNSET: i32 = i32::MIN;

tokio::task_local! {
    /// The send priority (quinn's) of a request stream the client opens: set around
    /// `SendRequest::send_request`, which opens the stream in the caller's task, so that the
    /// request's head already goes out at it.
    pub(crate) static OPENING_PRIORITY: i32;
}

type Pending<T> = Pin<Box<dyn Future<Output = Result<T, quinn::ConnectionError>> + Send + Sync>>;

/// A future that resolves when the client stops the response stream (or the connection
/// ends).
pub(crate) type Stopped = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// What a request stream's task needs of the stream that `h3` owns.
pub(crate) struct StreamHandles {
    /// Whether the request stream was opened in 0-RTT early data.
    pub(crate) is_0rtt: bool,
    /// Resolves when the client stops the response (a cancelled call).
    pub(crate) stopped: Stopped,
    /// The send priority to apply to the response stream before its next write.
    pub(crate) priority: Arc<AtomicI32>,
}

/// Each accepted request stream's [`StreamHandles`], by stream id, until its task takes them
/// or the stream goes away.
#[derive(Clone, Default)]
pub(crate) struct Streams(Arc<Mutex<HashMap<u64, StreamHandles>>>);

impl Streams {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, StreamHandles>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the handles of stream `id`.
    pub(crate) fn take(&self, id: u64) -> Option<StreamHandles> {
        self.map().remove(&id)
    }
}

/// A QUIC connection as `h3` sees it.
pub(crate) struct Connection {
    conn: quinn::Connection,
    streams: Streams,
    accepting_bi: Option<Pending<(quinn::SendStream, quinn::RecvStream)>>,
    accepting_uni: Option<Pending<quinn::RecvStream>>,
    opener: Opener,
}

impl Connection {
    pub(crate) fn new(conn: quinn::Connection, streams: Streams) -> Self {
        Self {
            opener: Opener::new(conn.clone(), streams.clone()),
            conn,
            streams,
            accepting_bi: None,
            accepting_uni: None,
        }
    }
}

impl<B: Buf> quic::Connection<B> for Connection {
    type RecvStream = RecvStream;
    type OpenStreams = Opener;

    fn poll_accept_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<RecvStream, ConnectionErrorIncoming>> {
        let conn = &self.conn;
        let accepting = self.accepting_uni.get_or_insert_with(|| {
            let conn = conn.clone();
            Box::pin(async move { conn.accept_uni().await })
        });
        let accepted = ready!(accepting.as_mut().poll(cx));
        self.accepting_uni = None;
        Poll::Ready(accepted.map(RecvStream::new).map_err(connection_error))
    }

    fn poll_accept_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, ConnectionErrorIncoming>> {
        let conn = &self.conn;
        let accepting = self.accepting_bi.get_or_insert_with(|| {
            let conn = conn.clone();
            Box::pin(async move { conn.accept_bi().await })
        });
        let accepted = ready!(accepting.as_mut().poll(cx));
        self.accepting_bi = None;
        let (send, recv) = accepted.map_err(connection_error)?;
        let priority = Arc::new(AtomicI32::new(UNSET));
        let stopped = send.stopped();
        self.streams.map().insert(
            VarInt::from(send.id()).into_inner(),
            StreamHandles {
                is_0rtt: recv.is_0rtt(),
                stopped: Box::pin(async move {
                    let _ = stopped.await;
                }),
                priority: priority.clone(),
            },
        );
        Poll::Ready(Ok(BidiStream {
            send: SendStream::new(send, priority, self.streams.clone()),
            recv: RecvStream::new(recv),
        }))
    }

    fn opener(&self) -> Opener {
        Opener::new(self.conn.clone(), self.streams.clone())
    }
}

impl<B: Buf> quic::OpenStreams<B> for Connection {
    type BidiStream = BidiStream<B>;
    type SendStream = SendStream<B>;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, StreamErrorIncoming>> {
        self.opener.poll_open_bidi(cx)
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SendStream<B>, StreamErrorIncoming>> {
        self.opener.poll_open_send(cx)
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        <Opener as quic::OpenStreams<B>>::close(&mut self.opener, code, reason);
    }
}

/// Opens streams: a server's control and QPACK streams, a client's too, and a client's
/// request streams.
pub(crate) struct Opener {
    conn: quinn::Connection,
    streams: Streams,
    opening_bi: Option<Pending<(quinn::SendStream, quinn::RecvStream)>>,
    opening_uni: Option<Pending<quinn::SendStream>>,
}

impl Opener {
    fn new(conn: quinn::Connection, streams: Streams) -> Self {
        Self {
            conn,
            streams,
            opening_bi: None,
            opening_uni: None,
        }
    }
}

/// A clone opens streams of its own (`h3` gives each request handle one).
impl Clone for Opener {
    fn clone(&self) -> Self {
        Self::new(self.conn.clone(), self.streams.clone())
    }
}

impl<B: Buf> quic::OpenStreams<B> for Opener {
    type BidiStream = BidiStream<B>;
    type SendStream = SendStream<B>;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, StreamErrorIncoming>> {
        let conn = &self.conn;
        let opening = self.opening_bi.get_or_insert_with(|| {
            let conn = conn.clone();
            Box::pin(async move { conn.open_bi().await })
        });
        let opened = ready!(opening.as_mut().poll(cx));
        self.opening_bi = None;
        let (send, recv) = opened.map_err(|e| StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: connection_error(e),
        })?;
        let opening = OPENING_PRIORITY.try_with(|p| *p).unwrap_or(UNSET);
        let priority = Arc::new(AtomicI32::new(opening));
        Poll::Ready(Ok(BidiStream {
            send: SendStream::new(send, priority, self.streams.clone()),
            recv: RecvStream::new(recv),
        }))
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SendStream<B>, StreamErrorIncoming>> {
        let conn = &self.conn;
        let opening = self.opening_uni.get_or_insert_with(|| {
            let conn = conn.clone();
            Box::pin(async move { conn.open_uni().await })
        });
        let opened = ready!(opening.as_mut().poll(cx));
        self.opening_uni = None;
        let send = opened.map_err(|e| StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: connection_error(e),
        })?;
        let priority = Arc::new(AtomicI32::new(UNSET));
        Poll::Ready(Ok(SendStream::new(send, priority, self.streams.clone())))
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        self.conn.close(
            VarInt::from_u64(code.value()).unwrap_or(VarInt::MAX),
            reason,
        );
    }
}

/// A request and response stream.
pub(crate) struct BidiStream<B: Buf> {
    send: SendStream<B>,
    recv: RecvStream,
}

impl<B: Buf> quic::BidiStream<B> for BidiStream<B> {
    type SendStream = SendStream<B>;
    type RecvStream = RecvStream;

    fn split(self) -> (SendStream<B>, RecvStream) {
        (self.send, self.recv)
    }
}

impl<B: Buf> quic::SendStream<B> for BidiStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_ready(cx)
    }

    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        self.send.send_data(data)
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_finish(cx)
    }

    fn reset(&mut self, reset_code: u64) {
        self.send.reset(reset_code);
    }

    fn send_id(&self) -> StreamId {
        self.send.send_id()
    }
}

impl<B: Buf> quic::RecvStream for BidiStream<B> {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        self.recv.poll_data(cx)
    }

    fn stop_sending(&mut self, error_code: u64) {
        self.recv.stop_sending(error_code);
    }

    fn recv_id(&self) -> StreamId {
        self.recv.recv_id()
    }
}

/// The sending half of a stream; applies the priority the request's task sets before each
/// write.
pub(crate) struct SendStream<B: Buf> {
    stream: quinn::SendStream,
    /// Finished or reset: dropping it says nothing more.
    closed: bool,
    writing: Option<WriteBuf<B>>,
    priority: Arc<AtomicI32>,
    applied: i32,
    streams: Streams,
}

impl<B: Buf> SendStream<B> {
    fn new(stream: quinn::SendStream, priority: Arc<AtomicI32>, streams: Streams) -> Self {
        Self {
            stream,
            closed: false,
            writing: None,
            priority,
            applied: UNSET,
            streams,
        }
    }

    fn apply_priority(&mut self) {
        let wanted = self.priority.load(Ordering::Acquire);
        if wanted != self.applied {
            self.applied = wanted;
            let _ = self.stream.set_priority(wanted);
        }
    }
}

impl<B: Buf> Drop for SendStream<B> {
    fn drop(&mut self) {
        // quinn would finish a stream dropped unfinished, which a peer reads as a complete
        // message (or, with nothing sent, a response without a head, a connection error
        // for an HTTP/3 client): a stream given up half-way is reset instead.
        if !self.closed {
            let _ = self.stream.reset(
                VarInt::from_u64(h3::error::Code::H3_REQUEST_CANCELLED.value())
                    .unwrap_or(VarInt::MAX),
            );
        }
        // Handles the request's task never took (h3 refused the request) go with the stream.
        self.streams
            .take(VarInt::from(self.stream.id()).into_inner());
    }
}

impl<B: Buf> quic::SendStream<B> for SendStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.apply_priority();
        while let Some(buf) = &mut self.writing {
            if !buf.has_remaining() {
                self.writing = None;
                break;
            }
            let written = ready!(Pin::new(&mut self.stream).poll_write(cx, buf.chunk()))
                .map_err(write_error)?;
            buf.advance(written);
        }
        Poll::Ready(Ok(()))
    }

    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        if self.writing.is_some() {
            return Err(StreamErrorIncoming::Unknown(
                "h3 sent data before the last write had gone out".into(),
            ));
        }
        self.writing = Some(data.into());
        Ok(())
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        ready!(self.poll_ready(cx))?;
        // Finishing twice (or after a reset) changes nothing.
        let _ = self.stream.finish();
        self.closed = true;
        Poll::Ready(Ok(()))
    }

    fn reset(&mut self, reset_code: u64) {
        let _ = self
            .stream
            .reset(VarInt::from_u64(reset_code).unwrap_or(VarInt::MAX));
        self.closed = true;
    }

    fn send_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

/// The receiving half of a stream.
pub(crate) struct RecvStream {
    stream: quinn::RecvStream,
}

impl RecvStream {
    fn new(stream: quinn::RecvStream) -> Self {
        Self { stream }
    }
}

impl quic::RecvStream for RecvStream {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        // quinn's chunk as it is, without a copy. `read_chunk` is cancel-safe: a future made
        // for this poll loses nothing when dropped after it, and the waker it registered
        // stays registered.
        let read = std::pin::pin!(self.stream.read_chunk(usize::MAX, true));
        let chunk = ready!(read.poll(cx)).map_err(read_error)?;
        // `None`: the peer has finished the stream, and all of it has been read.
        Poll::Ready(Ok(chunk.map(|chunk| chunk.bytes)))
    }

    fn stop_sending(&mut self, error_code: u64) {
        let _ = self
            .stream
            .stop(VarInt::from_u64(error_code).unwrap_or(VarInt::MAX));
    }

    fn recv_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

fn stream_id(id: quinn::StreamId) -> StreamId {
    // quinn's stream ids are QUIC varints, which is all h3 checks for.
    StreamId::try_from(VarInt::from(id).into_inner()).expect("a QUIC stream id is a varint")
}

fn connection_error(e: quinn::ConnectionError) -> ConnectionErrorIncoming {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => {
            ConnectionErrorIncoming::ApplicationClose {
                error_code: close.error_code.into_inner(),
            }
        }
        quinn::ConnectionError::TimedOut => ConnectionErrorIncoming::Timeout,
        other => ConnectionErrorIncoming::Undefined(Arc::new(other)),
    }
}

fn read_error(e: quinn::ReadError) -> StreamErrorIncoming {
    match e {
        quinn::ReadError::Reset(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::ReadError::ConnectionLost(e) => StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: connection_error(e),
        },
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}

fn write_error(e: quinn::WriteError) -> StreamErrorIncoming {
    match e {
        quinn::WriteError::Stopped(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::WriteError::ConnectionLost(e) => StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: connection_error(e),
        },
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}
