//! Feeds arbitrary bytes, cut at arbitrary points, through the frame decoder and the gRPC
//! message limiter. Run with `cargo fuzz run frame_decoder` from `fuzz/`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use quicrpc_wire::frame::{Frame, FrameDecoder};
use quicrpc_wire::message::MessageLimiter;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the size of the pieces the input arrives in.
    let Some((&step, input)) = data.split_first() else { return };
    let step = usize::from(step).max(1);
    let mut decoder = FrameDecoder::new(256);
    let mut limiter = MessageLimiter::new(1024);
    let mut buf = BytesMut::new();
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Frame::Data(data))) => {
                    if limiter.observe(&data).is_err() {
                        return;
                    }
                }
                Ok(Some(Frame::Headers(block) | Frame::Trailers(block))) => {
                    assert!(block.len() <= 256);
                    let _ = quicrpc_wire::fields::decode_fields(&block);
                }
                Ok(Some(Frame::GoAway)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
});
