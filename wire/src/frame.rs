//! Frames: `type (varint) | length (varint) | payload`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::varint;

/// Frame type: part of the gRPC message stream (length-prefixed messages, cut anywhere).
pub const DATA: u64 = 0x0;
/// Frame type: the request or response head (a field block).
pub const HEADERS: u64 = 0x1;
/// Frame type: the trailers that end a response (a field block holding `grpc-status`).
pub const TRAILERS: u64 = 0x2;
/// Frame type: on the control stream, the server is draining and takes no new calls on this
/// connection. Its payload is empty.
pub const GOAWAY: u64 = 0x7;

/// The stream type that opens the server's unidirectional control stream.
pub const CONTROL_STREAM: u64 = 0x0;

/// The most bytes a frame head (type and length) takes.
pub const MAX_FRAME_HEAD: usize = 16;

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A field block that opens a request or response.
    Headers(Bytes),
    /// Part of a DATA frame's payload. A DATA frame may arrive as several of these; their
    /// boundaries mean nothing.
    Data(Bytes),
    /// A field block that ends a response.
    Trailers(Bytes),
    /// The peer is draining (control stream only).
    GoAway,
}

/// A frame that breaks the rules of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A field block (HEADERS, TRAILERS) or control frame is larger than the receiver allows.
    #[error("field block of {len} bytes exceeds the limit of {limit} bytes")]
    FieldBlockTooLarge {
        /// The length the frame declared.
        len: u64,
        /// The receiver's limit.
        limit: usize,
    },
}

/// Writes a frame head for a frame of type `ty` with `len` payload bytes.
pub fn put_head(buf: &mut impl BufMut, ty: u64, len: u64) {
    varint::put(buf, ty);
    varint::put(buf, len);
}

/// The length of the head of a frame of type `ty` with a payload of `len` bytes.
pub fn head_len(ty: u64, len: u64) -> usize {
    varint::len(ty) + varint::len(len)
}

/// The head of a DATA frame carrying `len` bytes.
pub fn data_head(len: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(head_len(DATA, len as u64));
    put_head(&mut buf, DATA, len as u64);
    buf.freeze()
}

/// A whole frame of type `ty` around `payload`.
pub fn encode(ty: u64, payload: &[u8]) -> Bytes {
    // Exactly the frame's size: a buffer filled to its capacity freezes into `Bytes` without
    // a second allocation for the shared count.
    let mut buf = BytesMut::with_capacity(head_len(ty, payload.len() as u64) + payload.len());
    put_head(&mut buf, ty, payload.len() as u64);
    buf.put_slice(payload);
    buf.freeze()
}

/// Splits a byte stream into frames. Sans-IO: feed it whatever the stream yields.
///
/// DATA payloads are handed out as they arrive, without waiting for the whole frame, so a
/// DATA frame's size costs no memory here. Field blocks are buffered whole, so their size is
/// checked against the limit from the frame head before any of it is buffered. Frames of
/// unknown type are skipped, also without buffering them.
#[derive(Debug)]
pub struct FrameDecoder {
    max_field_block: usize,
    state: State,
    /// The declared lengths of the frames of unknown type seen so far.
    skipped: u64,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Head,
    Data { remaining: u64 },
    Skip { remaining: u64 },
}

impl FrameDecoder {
    /// A decoder that refuses field blocks longer than `max_field_block` bytes.
    pub fn new(max_field_block: usize) -> Self {
        Self {
            max_field_block,
            state: State::Head,
            skipped: 0,
        }
    }

    /// The longest field block it takes, in bytes: the limit its user also puts on the
    /// decoded field list (see [`crate::fields::decode_fields_within`]).
    pub fn max_field_block(&self) -> usize {
        self.max_field_block
    }

    /// The bytes of frames of unknown type it has skipped (or is skipping), counted from
    /// their declared lengths: a receiver may bound what it skips before a head.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the decoder stands between frames: the only place a stream may end.
    pub fn at_frame_boundary(&self) -> bool {
        matches!(self.state, State::Head)
    }

    /// In the middle of a DATA frame's payload: takes up to `available` bytes of it, the
    /// caller's to hand on as they are (no copy through a buffer), and returns how many.
    /// `None` anywhere else (at a frame head, in a skipped frame): use [`decode`](Self::decode).
    pub fn take_data(&mut self, available: usize) -> Option<usize> {
        let State::Data { remaining } = self.state else {
            return None;
        };
        let n = take(remaining, available);
        self.state = if remaining == n as u64 {
            State::Head
        } else {
            State::Data {
                remaining: remaining - n as u64,
            }
        };
        Some(n)
    }

    /// Takes the next frame, or part of a DATA frame, off the front of `buf`. `Ok(None)` means
    /// more input is needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            match self.state {
                State::Head => {
                    let Some((ty, ty_len)) = varint::get(buf) else {
                        return Ok(None);
                    };
                    let Some((len, len_len)) = varint::get(&buf[ty_len..]) else {
                        return Ok(None);
                    };
                    let head = ty_len + len_len;
                    match ty {
                        DATA => {
                            buf.advance(head);
                            if len > 0 {
                                self.state = State::Data { remaining: len };
                            }
                        }
                        HEADERS | TRAILERS | GOAWAY => {
                            if len > self.max_field_block as u64 {
                                return Err(FrameError::FieldBlockTooLarge {
                                    len,
                                    limit: self.max_field_block,
                                });
                            }
                            // `len` fits in usize: it is at most `max_field_block`.
                            let len = len as usize;
                            if buf.len() < head + len {
                                buf.reserve(head + len - buf.len());
                                return Ok(None);
                            }
                            buf.advance(head);
                            let payload = buf.split_to(len).freeze();
                            return Ok(Some(match ty {
                                HEADERS => Frame::Headers(payload),
                                TRAILERS => Frame::Trailers(payload),
                                _ => Frame::GoAway,
                            }));
                        }
                        _ => {
                            buf.advance(head);
                            self.skipped = self.skipped.saturating_add(len);
                            if len > 0 {
                                self.state = State::Skip { remaining: len };
                            }
                        }
                    }
                }
                State::Data { remaining } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = take(remaining, buf.len());
                    self.state = if remaining == n as u64 {
                        State::Head
                    } else {
                        State::Data {
                            remaining: remaining - n as u64,
                        }
                    };
                    return Ok(Some(Frame::Data(buf.split_to(n).freeze())));
                }
                State::Skip { remaining } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = take(remaining, buf.len());
                    buf.advance(n);
                    self.state = if remaining == n as u64 {
                        State::Head
                    } else {
                        State::Skip {
                            remaining: remaining - n as u64,
                        }
                    };
                }
            }
        }
    }
}

/// `min(remaining, available)` as a usize.
fn take(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_frames_are_counted_by_their_declared_length() {
        let mut decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        varint::put(&mut buf, 0x21);
        varint::put(&mut buf, 1_000_000);
        buf.extend_from_slice(b"abc");
        assert!(decoder.decode(&mut buf).unwrap().is_none());
        assert_eq!(decoder.skipped(), 1_000_000, "counted at the frame's head");
    }

    #[test]
    fn take_data_hands_out_a_data_payload_only() {
        let mut decoder = FrameDecoder::new(1024);
        assert_eq!(decoder.take_data(10), None, "at a frame head");
        let mut buf = BytesMut::from(&data_head(5)[..]);
        assert!(decoder.decode(&mut buf).unwrap().is_none());
        assert_eq!(decoder.take_data(3), Some(3));
        assert!(!decoder.at_frame_boundary());
        assert_eq!(
            decoder.take_data(10),
            Some(2),
            "no further than the frame's end"
        );
        assert!(decoder.at_frame_boundary());
        assert_eq!(decoder.take_data(10), None);
    }

    fn decode_all(
        decoder: &mut FrameDecoder,
        input: &[u8],
        step: usize,
    ) -> Result<Vec<Frame>, FrameError> {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(frame) = decoder.decode(&mut buf)? {
                frames.push(frame);
            }
        }
        Ok(frames)
    }

    /// Joins adjacent DATA pieces, which may be split at any point.
    fn coalesce(frames: Vec<Frame>) -> Vec<Frame> {
        let mut out: Vec<Frame> = Vec::new();
        for frame in frames {
            if let (Some(Frame::Data(prev)), Frame::Data(next)) = (out.last_mut(), &frame) {
                let mut joined = BytesMut::from(&prev[..]);
                joined.extend_from_slice(next);
                *prev = joined.freeze();
                continue;
            }
            out.push(frame);
        }
        out
    }

    #[test]
    fn decodes_a_call_byte_by_byte_and_at_once() {
        let mut input = Vec::new();
        input.extend_from_slice(&encode(HEADERS, b"head"));
        input.extend_from_slice(&encode(DATA, &[7u8; 300]));
        input.extend_from_slice(&encode(0x21, b"an extension frame, skipped"));
        input.extend_from_slice(&encode(DATA, b""));
        input.extend_from_slice(&encode(DATA, b"tail"));
        input.extend_from_slice(&encode(TRAILERS, b"trailers"));
        let head = Frame::Headers(Bytes::from_static(b"head"));
        let trailers = Frame::Trailers(Bytes::from_static(b"trailers"));
        for step in [1, 2, 3, 7, 64, input.len()] {
            let mut decoder = FrameDecoder::new(1024);
            let frames = decode_all(&mut decoder, &input, step).unwrap();
            // DATA may arrive in pieces; joined, the two DATA frames read as one byte stream.
            let merged = coalesce(frames);
            assert_eq!(merged.len(), 3, "step {step}: {merged:?}");
            assert_eq!(merged[0], head);
            assert_eq!(merged[2], trailers);
            let Frame::Data(data) = &merged[1] else {
                panic!("step {step}: {merged:?}")
            };
            let mut want = vec![7u8; 300];
            want.extend_from_slice(b"tail");
            assert_eq!(&data[..], &want[..], "step {step}");
            assert!(decoder.at_frame_boundary());
        }
    }

    #[test]
    fn refuses_field_block_over_limit_from_its_head() {
        let mut decoder = FrameDecoder::new(10);
        let mut buf = BytesMut::new();
        // Only the head has arrived: the length alone is enough to refuse it.
        put_head(&mut buf, HEADERS, 11);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::FieldBlockTooLarge { len: 11, limit: 10 })
        );
    }

    #[test]
    fn huge_data_frame_is_streamed_not_buffered() {
        let mut decoder = FrameDecoder::new(10);
        let mut buf = BytesMut::new();
        put_head(&mut buf, DATA, varint::MAX);
        buf.extend_from_slice(b"abc");
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(Frame::Data(Bytes::from_static(b"abc")))
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert!(!decoder.at_frame_boundary());
    }

    #[test]
    fn partial_head_waits() {
        let mut decoder = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&[0x40u8][..]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert!(decoder.at_frame_boundary());
    }

    #[test]
    fn goaway_is_a_frame() {
        let mut decoder = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&encode(GOAWAY, b"")[..]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Frame::GoAway));
    }
}
