//! [`ResponseBody`]: a response body from either transport, under the call's deadline.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tonic::Status;

use super::quic::{H3Body, InFlight};
use crate::stream::RecvBody;
use crate::telemetry::CallTelemetry;
use crate::wire::message::MessageLimiter;

/// The body of a response received by a [`Channel`](crate::Channel), over QUIC, HTTP/3 or
/// TCP.
///
/// It yields the response's gRPC message bytes and then its trailers. When the call has a
/// deadline, the body ends with DEADLINE_EXCEEDED once it passes, on either transport.
/// Dropping the body before its end cancels the call.
pub struct ResponseBody {
    inner: Inner,
    deadline: Option<Pin<Box<Sleep>>>,
    telemetry: Option<CallTelemetry>,
    /// Counts the call as under way on its QUIC connection while the body lives.
    in_flight: Option<InFlight>,
}

enum Inner {
    Quic(RecvBody),
    Http3(H3Body),
    /// tonic's body, and the same receive limit the QUIC side applies (tonic's own codec
    /// would report an oversized message as OUT_OF_RANGE).
    Tcp(tonic::body::Body, MessageLimiter),
    Done,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let transport = match &self.inner {
            Inner::Quic(_) => "QUIC",
            Inner::Http3(_) => "HTTP/3",
            Inner::Tcp(..) => "TCP",
            Inner::Done => "done",
        };
        f.debug_struct("ResponseBody")
            .field("transport", &transport)
            .finish_non_exhaustive()
    }
}

/// An empty, finished body (what a client interceptor that refuses a call answers with).
impl Default for ResponseBody {
    fn default() -> Self {
        Self {
            inner: Inner::Done,
            deadline: None,
            telemetry: None,
            in_flight: None,
        }
    }
}

impl ResponseBody {
    pub(super) fn quic(body: RecvBody, deadline: Option<Instant>) -> Self {
        Self {
            inner: Inner::Quic(body),
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            telemetry: None,
            in_flight: None,
        }
    }

    pub(super) fn http3(body: H3Body, deadline: Option<Instant>) -> Self {
        Self {
            inner: Inner::Http3(body),
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            telemetry: None,
            in_flight: None,
        }
    }

    pub(super) fn tcp(
        body: tonic::body::Body,
        max_message: usize,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
            inner: Inner::Tcp(body, MessageLimiter::new(max_message)),
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            telemetry: None,
            in_flight: None,
        }
    }

    /// Hands the body the count of calls under way on its connection, to hold while it
    /// lives.
    pub(super) fn hold(&mut self, in_flight: InFlight) {
        self.in_flight = Some(in_flight);
    }

    /// Hands the body the call's telemetry, to finish when the status arrives.
    pub(super) fn attach(&mut self, telemetry: CallTelemetry) {
        self.telemetry = Some(telemetry);
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(deadline) = &mut self.deadline
            && !matches!(self.inner, Inner::Done)
            && deadline.as_mut().poll(cx).is_ready()
        {
            // Dropping the transport's body cancels the call on the wire.
            self.inner = Inner::Done;
            return Poll::Ready(Some(Err(Status::deadline_exceeded("deadline exceeded"))));
        }
        match &mut self.inner {
            Inner::Quic(body) => Pin::new(body).poll_frame(cx),
            Inner::Http3(body) => Pin::new(body).poll_frame(cx),
            Inner::Tcp(body, limiter) => {
                let mut frame = ready!(Pin::new(body).poll_frame(cx));
                if let Some(Ok(frame)) = &mut frame
                    && let Some(trailers) = frame.trailers_mut()
                {
                    // As over QUIC: status fields tonic cannot take (it panics on details
                    // that are not base64) end the call with a status of their own.
                    if let Err(status) = crate::status::check_status_fields(trailers) {
                        self.inner = Inner::Done;
                        return Poll::Ready(Some(Err(status)));
                    }
                    let deadline = self.deadline.as_ref().map(|d| d.deadline());
                    crate::status::deadline_status(trailers, deadline);
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref))
                    && let Some(data) = data
                    && let Err(e) = limiter.observe(data)
                {
                    self.inner = Inner::Done;
                    return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                        "received {e}"
                    )))));
                }
                Poll::Ready(frame)
            }
            Inner::Done => Poll::Ready(None),
        }
    }

    /// Records what a frame or error says about the call's outcome.
    fn observe(&mut self, frame: &Option<Result<Frame<Bytes>, Status>>) {
        let Some(telemetry) = &mut self.telemetry else {
            return;
        };
        match frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    telemetry.finish_from(trailers);
                }
            }
            Some(Err(status)) => telemetry.finish(status.code()),
            None => {}
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = ready!(this.poll_inner(cx));
        this.observe(&frame);
        if !matches!(&frame, Some(Ok(f)) if f.is_data()) {
            // The response is over (trailers, an error or the end): nothing more to wait for.
            this.in_flight = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Quic(body) => body.is_end_stream(),
            Inner::Http3(body) => body.is_end_stream(),
            Inner::Tcp(body, _) => body.is_end_stream(),
            Inner::Done => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Quic(body) => body.size_hint(),
            Inner::Http3(body) => body.size_hint(),
            Inner::Tcp(body, _) => body.size_hint(),
            Inner::Done => SizeHint::with_exact(0),
        }
    }
}
