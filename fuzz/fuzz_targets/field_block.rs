//! Decodes arbitrary bytes as a request head and as response fields, and checks that what
//! decodes re-encodes to something that decodes the same. Run with
//! `cargo fuzz run field_block` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quicrpc_wire::{fields, frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(head) = fields::decode_request_head(data) {
        let frame = fields::encode_request_head(&head.path, head.authority.as_deref(), head.priority, &head.fields);
        let payload = strip_head(&frame);
        assert_eq!(fields::decode_request_head(payload).as_ref(), Ok(&head));
    }
    if let Ok(map) = fields::decode_fields(data) {
        let frame = fields::encode_fields(frame::TRAILERS, &map);
        assert_eq!(fields::decode_fields(strip_head(&frame)).as_ref(), Ok(&map));
    }
});

fn strip_head(frame: &[u8]) -> &[u8] {
    let (_, a) = quicrpc_wire::varint::get(frame).expect("type");
    let (_, b) = quicrpc_wire::varint::get(&frame[a..]).expect("length");
    &frame[a + b..]
}
