//! The quicrpc wire format, sans IO: encode and decode functions over bytes, no sockets.
//!
//! One call is one client-initiated bidirectional QUIC stream:
//!
//! ```text
//! request:  HEADERS (:path, :authority, :priority, metadata)  DATA*  FIN
//! response: HEADERS (metadata)  DATA*  TRAILERS (grpc-status, ...)  FIN
//!       or: HEADERS (grpc-status, ...)  FIN                      (trailers-only)
//! ```
//!
//! DATA frames carry gRPC's length-prefixed messages, cut anywhere. `docs/PROTOCOL.md` in the
//! repository is the full specification; this crate is its reference implementation, which
//! the `quicrpc` runtime drives over quinn. It is a crate of its own so that tests, fuzzers
//! and other implementations can speak the protocol directly, and so that its API can change
//! without a new major version of the runtime. Applications use `quicrpc` and never need it.

pub mod code;
pub mod fields;
pub mod frame;
pub mod message;
mod priority;
pub mod varint;

pub use priority::{ParsePriorityError, Priority};

/// The ALPN protocol name of this wire format, version 1.
pub const ALPN: &[u8] = b"quicrpc/1";

#[cfg(test)]
mod tests {
    //! The fuzz targets' checks (`fuzz/`), run on deterministic pseudo-random input so that
    //! every `cargo test` exercises the decoders with garbage.

    use bytes::BytesMut;

    use super::frame::{Frame, FrameDecoder};
    use super::message::MessageLimiter;
    use super::{fields, frame, varint};

    /// xorshift64*: small, fast, reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Bytes biased towards the small values that frame types, lengths and field name
        /// lengths use, so that some inputs parse a few levels deep.
        fn bytes(&mut self, max: usize) -> Vec<u8> {
            let len = (self.next() % max as u64) as usize;
            (0..len)
                .map(|_| match self.next() % 4 {
                    0 => (self.next() % 4) as u8,
                    1 => (self.next() % 64) as u8,
                    2 => b'a' + (self.next() % 26) as u8,
                    _ => self.next() as u8,
                })
                .collect()
        }
    }

    #[test]
    fn decoders_survive_garbage() {
        let mut rng = Rng(0x5eed);
        for _ in 0..20_000 {
            let input = rng.bytes(96);
            let step = (rng.next() % 8 + 1) as usize;
            let mut decoder = FrameDecoder::new(64);
            let mut limiter = MessageLimiter::new(32);
            let mut buf = BytesMut::new();
            for piece in input.chunks(step) {
                buf.extend_from_slice(piece);
                while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                    match frame {
                        Frame::Data(data) => {
                            let _ = limiter.observe(&data);
                        }
                        Frame::Headers(block) | Frame::Trailers(block) => {
                            assert!(block.len() <= 64);
                            let _ = fields::decode_fields(&block);
                        }
                        Frame::GoAway => {}
                    }
                }
            }
        }
    }

    #[test]
    fn field_blocks_that_decode_re_encode_the_same() {
        fn strip_head(frame: &[u8]) -> &[u8] {
            let (_, a) = varint::get(frame).unwrap();
            let (_, b) = varint::get(&frame[a..]).unwrap();
            &frame[a + b..]
        }
        let mut rng = Rng(0xf1e1d5);
        let mut decoded = 0;
        for _ in 0..50_000 {
            let mut input = Vec::new();
            // Start most inputs with a plausible :path so that some decode.
            if rng.next().is_multiple_of(2) {
                input.extend_from_slice(b"\x05:path\x02/a");
            }
            input.extend(rng.bytes(48));
            if let Ok(head) = fields::decode_request_head(&input) {
                decoded += 1;
                let frame = fields::encode_request_head(
                    &head.path,
                    head.authority.as_deref(),
                    head.priority,
                    &head.fields,
                );
                assert_eq!(
                    fields::decode_request_head(strip_head(&frame)).as_ref(),
                    Ok(&head)
                );
            }
            if let Ok(map) = fields::decode_fields(&input) {
                let frame = fields::encode_fields(frame::TRAILERS, &map);
                assert_eq!(fields::decode_fields(strip_head(&frame)).as_ref(), Ok(&map));
            }
        }
        assert!(
            decoded > 100,
            "only {decoded} inputs decoded: the generator is too random"
        );
    }
}
