//! gRPC's length-prefixed messages as they pass through an HTTP body: which of them carried
//! the compressed flag, gzip set or undone for chosen ones, and how the body ended. tonic
//! hides the flag from handlers and callers and compresses all of a call's messages or none
//! (the override for one response applies to unary responses only); the interop cases need
//! to see the flag and to mix compressed and uncompressed messages in one stream. tonic's
//! server also reads a request stream that the client cancelled as a clean end: the
//! [`Observed`] end tells the two apart.

use std::io::{Read as _, Write as _};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame};
use tonic::{Code, Status};

/// What passed through a body: the compressed flag of each message, in order, and the
/// trailers. Shared with whoever inspects it: a handler (in its request's extensions) or a
/// caller (in its response's extensions).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    flags: Arc<Mutex<Vec<bool>>>,
    trailers: Arc<Mutex<Option<HeaderMap>>>,
    failure: Arc<Mutex<Option<Code>>>,
}

impl Observed {
    /// The flags seen so far, one per whole message.
    pub fn flags(&self) -> Vec<bool> {
        self.flags.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether message `index` (from 0) was compressed; `None` if it has not passed yet.
    pub fn compressed(&self, index: usize) -> Option<bool> {
        self.flags().get(index).copied()
    }

    /// The trailers, once they have passed.
    pub fn trailers(&self) -> Option<HeaderMap> {
        self.trailers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The code of the error the body ended with, if it failed rather than ended.
    pub fn failure(&self) -> Option<Code> {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, compressed: bool) {
        self.flags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(compressed);
    }

    fn set_failure(&self, code: Code) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(code);
    }

    fn set_trailers(&self, trailers: &HeaderMap) {
        *self.trailers.lock().unwrap_or_else(|p| p.into_inner()) = Some(trailers.clone());
    }
}

/// Which messages of a body go compressed, by index: `true` gzips a message sent
/// uncompressed, `false` gunzips one sent compressed; messages past the end are left as
/// they are. Put in a request's or response's extensions for the wrappers of `interop` to
/// apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compress(pub Vec<bool>);

/// A body whose messages and trailers are recorded in an [`Observed`], optionally gzipped one by one
/// (a [`Compress`] plan), and whose trailers may get one more field.
#[derive(Debug)]
pub struct Framed<B> {
    inner: B,
    buf: BytesMut,
    observed: Observed,
    plan: Option<Compress>,
    index: usize,
    extra_trailer: Option<(HeaderName, HeaderValue)>,
}

impl<B> Framed<B> {
    /// Wraps `inner`, recording into `observed` and compressing as `plan` says.
    pub fn new(inner: B, observed: Observed, plan: Option<Compress>) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            observed,
            plan,
            index: 0,
            extra_trailer: None,
        }
    }

    /// Adds `name: value` to the body's trailers, if it ends with trailers.
    pub fn with_trailer(mut self, trailer: Option<(HeaderName, HeaderValue)>) -> Self {
        self.extra_trailer = trailer;
        self
    }

    /// The next whole message in the buffer, as it will be passed on.
    fn next_message(&mut self) -> Option<Bytes> {
        if self.buf.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let total = 5 + len as usize;
        if self.buf.len() < total {
            return None;
        }
        let message = self.buf.split_to(total).freeze();
        let flag = message[0];
        let index = self.index;
        self.index += 1;
        let want = self
            .plan
            .as_ref()
            .and_then(|plan| plan.0.get(index).copied());
        let out = match (flag, want) {
            (0, Some(true)) => prefixed(1, &gzip_bytes(&message[5..])),
            // Not gzip after all: passed on as it is, for the decoder to refuse.
            (1, Some(false)) => gunzip_bytes(&message[5..]).map_or(message, |m| prefixed(0, &m)),
            _ => message,
        };
        self.observed.push(out[0] == 1);
        Some(out)
    }
}

/// A gRPC message: the flag, the length, `body`.
fn prefixed(flag: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(flag);
    out.put_u32(body.len() as u32);
    out.put_slice(body);
    out.freeze()
}

/// `bytes` gunzipped; `None` if they are not gzip.
fn gunzip_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// `bytes` gzipped.
pub fn gzip_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

impl<B> Body for Framed<B>
where
    B: Body<Data = Bytes, Error = Status> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        loop {
            if let Some(message) = self.next_message() {
                return Poll::Ready(Some(Ok(Frame::data(message))));
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    Err(mut frame) => {
                        let extra = self.extra_trailer.take();
                        if let Some(trailers) = frame.trailers_mut() {
                            if let Some((name, value)) = extra {
                                trailers.insert(name, value);
                            }
                            self.observed.set_trailers(trailers);
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                },
                Some(Err(status)) => {
                    self.observed.set_failure(status.code());
                    return Poll::Ready(Some(Err(status)));
                }
                None if self.buf.is_empty() => return Poll::Ready(None),
                // A message cut short: pass on what there is and let the decoder complain.
                None => {
                    let rest = self.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
            }
        }
    }

    // Without this a trailers-only response (an empty body that says so) would go out over
    // HTTP/2 as a head without END_STREAM and an empty DATA frame, which grpcio's clients
    // refuse ("Stream removed").
    fn is_end_stream(&self) -> bool {
        self.buf.is_empty() && self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(flag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn records_flags_across_chunk_boundaries_and_gzips_the_planned_messages() {
        let mut bytes = message(0, b"first");
        bytes.extend(message(1, b"already compressed"));
        bytes.extend(message(0, b"third"));
        bytes.extend(message(1, &gzip_bytes(b"fourth")));
        let flags = Observed::default();
        let mut framed = Framed::new(
            http_body_util_free::Chunks(bytes.chunks(3).map(Bytes::copy_from_slice).collect()),
            flags.clone(),
            Some(Compress(vec![false, true, true, false])),
        );
        let mut out = Vec::new();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut framed).poll_frame(&mut cx) {
            out.push(frame.into_data().expect("data"));
        }
        assert_eq!(flags.flags(), vec![false, true, true, false]);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0][..], message(0, b"first")[..]);
        assert_eq!(out[1][..], message(1, b"already compressed")[..]);
        assert_eq!(out[2][0], 1);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&out[2][5..]), &mut text)
            .expect("gunzip");
        assert_eq!(text, "third");
        assert_eq!(out[3][..], message(0, b"fourth")[..]);
        assert_eq!(flags.failure(), None);
    }

    /// A body of ready chunks, for the unit test.
    mod http_body_util_free {
        use super::*;

        pub(super) struct Chunks(pub(super) std::collections::VecDeque<Bytes>);

        impl Body for Chunks {
            type Data = Bytes;
            type Error = Status;

            fn poll_frame(
                mut self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
            }
        }
    }
}
