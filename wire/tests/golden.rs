//! Golden vectors: the wire format's bytes, written out by hand from `docs/PROTOCOL.md` (the
//! section is named on each), checked in both directions. Encoding a value must give exactly
//! these bytes, and decoding these bytes, cut at every point, must give back the value.
//!
//! The unit tests next to the code only check the decoder against the encoder; a change that
//! moves both away from the specification passes them. These do not.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use quicrpc_wire::code::ErrorCode;
use quicrpc_wire::fields::{self, FieldError, RequestHead};
use quicrpc_wire::frame::{self, Frame, FrameDecoder, FrameError};
use quicrpc_wire::message::{self, MessageLimiter, MessageTooLarge};
use quicrpc_wire::{ALPN, Priority, varint};

/// A field block limit that none of the vectors comes near.
const NO_LIMIT: usize = 1 << 20;

// ----------------------------------------------------------------------------------------
// Vectors. Field blocks are `name length | name | value length | value`, lengths as varints.
// ----------------------------------------------------------------------------------------

/// "Integers": QUIC varints, the two high bits of the first byte giving the length. The
/// RFC 9000 (appendix A.1) examples and both sides of every length boundary.
const VARINTS: &[(u64, &[u8])] = &[
    (0, &[0x00]),
    (37, &[0x25]),
    (63, &[0x3f]),
    (64, &[0x40, 0x40]),
    (15_293, &[0x7b, 0xbd]),
    (16_383, &[0x7f, 0xff]),
    (16_384, &[0x80, 0x00, 0x40, 0x00]),
    (494_878_333, &[0x9d, 0x7f, 0x3e, 0x7d]),
    (1_073_741_823, &[0xbf, 0xff, 0xff, 0xff]),
    (
        1_073_741_824,
        &[0xc0, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00],
    ),
    (
        151_288_809_941_952_652,
        &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
    ),
    ((1 << 62) - 1, &[0xff; 8]),
];

/// "Frames", "DATA": type 0x0, length 3, three payload bytes.
const DATA_ABC: &[u8] = b"\x00\x03abc";

/// "DATA": "Empty DATA frames are allowed and mean nothing."
const DATA_EMPTY: &[u8] = b"\x00\x00";

/// "Frames": "A frame of any other type is skipped". Type 0x21 (one-byte varint) with 3
/// bytes, type 16383 (two-byte varint) with 2 bytes, then DATA "abc".
const UNKNOWN_THEN_DATA: &[u8] = b"\x21\x03xyz\x7f\xff\x02\xaa\xbb\x00\x03abc";

/// "Field blocks", "Pseudo-fields": a request head with every pseudo-field, in order, then
/// regular fields: gRPC's own, metadata with two values, and binary metadata in base64.
/// 158 bytes of fields: the length is the two-byte varint 0x40 0x9e.
const REQUEST_HEAD: &[u8] = b"\x01\x40\x9e\
    \x05:path\x1b/quicrpc.testing.Echo/Unary\
    \x0a:authority\x0elocalhost:4433\
    \x09:priority\x08critical\
    \x0ccontent-type\x10application/grpc\
    \x0cgrpc-timeout\x04100m\
    \x05x-tag\x01a\
    \x05x-tag\x01b\
    \x09trace-bin\x04AAEC";

/// "Pseudo-fields": `:path` alone; `:authority` and `:priority` are optional.
const REQUEST_HEAD_PATH_ONLY: &[u8] = b"\x01\x0d\x05:path\x06/p.S/M";

/// "Pseudo-fields": each `:priority` value, after `:path`.
const PRIORITY_HEADS: &[(Priority, &[u8])] = &[
    (
        Priority::Critical,
        b"\x01\x20\x05:path\x06/p.S/M\x09:priority\x08critical",
    ),
    (
        Priority::High,
        b"\x01\x1c\x05:path\x06/p.S/M\x09:priority\x04high",
    ),
    (
        Priority::Normal,
        b"\x01\x1e\x05:path\x06/p.S/M\x09:priority\x06normal",
    ),
    (
        Priority::Low,
        b"\x01\x1b\x05:path\x06/p.S/M\x09:priority\x03low",
    ),
    (
        Priority::Bulk,
        b"\x01\x1c\x05:path\x06/p.S/M\x09:priority\x04bulk",
    ),
];

/// "Regular fields": a response head, no pseudo-fields.
const RESPONSE_HEAD: &[u8] = b"\x01\x31\
    \x0ccontent-type\x10application/grpc\
    \x0dgrpc-encoding\x04gzip";

/// "A call": a response head with no fields at all.
const RESPONSE_HEAD_EMPTY: &[u8] = b"\x01\x00";

/// "Frames" (TRAILERS, type 0x2), "Regular fields": the status.
const TRAILERS: &[u8] = b"\x02\x20\
    \x0bgrpc-status\x015\
    \x0cgrpc-message\x04gone";

/// "A call": a trailers-only response is a HEADERS frame that holds `grpc-status`.
const TRAILERS_ONLY: &[u8] = b"\x01\x2d\
    \x0ccontent-type\x10application/grpc\
    \x0bgrpc-status\x0212";

/// "DATA": gRPC's prefix, a compressed flag and a 4-byte big-endian length, then the message.
const MESSAGE_ABC: &[u8] = b"\x00\x00\x00\x00\x03abc";

/// "DATA": the same prefix for a compressed message of 256 bytes (its body not shown).
const COMPRESSED_PREFIX_256: &[u8] = b"\x01\x00\x00\x01\x00";

/// "DATA": "a message may span frames and a frame may hold several messages". The messages
/// "abc" and "" (13 bytes) in three DATA frames of 2, 0 and 11 bytes.
const MESSAGES_ACROSS_FRAMES: &[u8] = b"\x00\x02\x00\x00\
    \x00\x00\
    \x00\x0b\x00\x00\x03abc\x00\x00\x00\x00\x00";

/// "A call": a unary request: HEADERS (`:path` only), DATA (one message "abc"), then FIN.
const REQUEST_STREAM: &[u8] = b"\x01\x0d\x05:path\x06/p.S/M\
    \x00\x08\x00\x00\x00\x00\x03abc";

/// "A call": its response: HEADERS, DATA (one message "abc"), TRAILERS (`grpc-status: 0`).
const RESPONSE_STREAM: &[u8] = b"\x01\x1e\x0ccontent-type\x10application/grpc\
    \x00\x08\x00\x00\x00\x00\x03abc\
    \x02\x0e\x0bgrpc-status\x010";

/// "Control stream and graceful shutdown": the stream type 0x0, then a GOAWAY frame (type
/// 0x7) with an empty payload.
const CONTROL_STREAM_GOAWAY: &[u8] = b"\x00\x07\x00";

/// "Error codes": the table, in order.
const ERROR_CODES: &[(ErrorCode, u32)] = &[
    (ErrorCode::NoError, 0x0),
    (ErrorCode::Cancelled, 0x1),
    (ErrorCode::RefusedStream, 0x2),
    (ErrorCode::ProtocolError, 0x3),
    (ErrorCode::DeadlineExceeded, 0x4),
    (ErrorCode::InternalError, 0x5),
    (ErrorCode::MessageTooLarge, 0x6),
    (ErrorCode::TooEarly, 0x7),
];

// ----------------------------------------------------------------------------------------
// Checks.
// ----------------------------------------------------------------------------------------

#[test]
fn varints() {
    for &(value, bytes) in VARINTS {
        let mut encoded = Vec::new();
        varint::put(&mut encoded, value);
        assert_eq!(encoded, bytes, "encoding {value}");
        assert_eq!(varint::len(value), bytes.len(), "length of {value}");
        assert_eq!(
            varint::get(bytes),
            Some((value, bytes.len())),
            "{bytes:02x?}"
        );
        for cut in 0..bytes.len() {
            assert_eq!(
                varint::get(&bytes[..cut]),
                None,
                "{bytes:02x?} cut at {cut}"
            );
        }
        let mut followed = bytes.to_vec();
        followed.push(0xff);
        assert_eq!(varint::get(&followed), Some((value, bytes.len())));
    }
}

#[test]
fn frame_types_and_alpn() {
    // "Frames" table; "Control stream"; "Connection".
    assert_eq!(
        (frame::DATA, frame::HEADERS, frame::TRAILERS, frame::GOAWAY),
        (0x0, 0x1, 0x2, 0x7)
    );
    assert_eq!(frame::CONTROL_STREAM, 0x0);
    assert_eq!(ALPN, b"quicrpc/1");
}

#[test]
fn data_frames() {
    assert_eq!(frame::encode(frame::DATA, b"abc"), DATA_ABC);
    check_frames(DATA_ABC, &[data(b"abc")]);

    assert_eq!(frame::encode(frame::DATA, b""), DATA_EMPTY);
    check_frames(DATA_EMPTY, &[]);

    // A DATA frame's head is written on its own, before its payload: lengths past one byte.
    assert_eq!(frame::data_head(3), &DATA_ABC[..2]);
    assert_eq!(frame::data_head(64), &b"\x00\x40\x40"[..]);
    assert_eq!(frame::data_head(16_384), &b"\x00\x80\x00\x40\x00"[..]);
}

#[test]
fn unknown_frames_are_skipped() {
    check_frames(UNKNOWN_THEN_DATA, &[data(b"abc")]);
}

#[test]
fn request_heads() {
    let mut fields = HeaderMap::new();
    fields.insert("content-type", value("application/grpc"));
    fields.insert("grpc-timeout", value("100m"));
    fields.append("x-tag", value("a"));
    fields.append("x-tag", value("b"));
    fields.insert("trace-bin", value("AAEC"));
    let head = RequestHead {
        path: "/quicrpc.testing.Echo/Unary".into(),
        authority: Some("localhost:4433".into()),
        priority: Some(Priority::Critical),
        fields,
    };
    check_request_head(REQUEST_HEAD, 3, &head);

    let path_only = RequestHead {
        path: "/p.S/M".into(),
        authority: None,
        priority: None,
        fields: HeaderMap::new(),
    };
    check_request_head(REQUEST_HEAD_PATH_ONLY, 2, &path_only);

    for &(priority, bytes) in PRIORITY_HEADS {
        let head = RequestHead {
            priority: Some(priority),
            ..path_only.clone()
        };
        check_request_head(bytes, 2, &head);
        // The same names are `Priority`'s own.
        assert_eq!(
            priority.as_str().as_bytes(),
            &bytes[bytes.len() - priority.as_str().len()..]
        );
    }
}

#[test]
fn response_heads_and_trailers() {
    let mut head = HeaderMap::new();
    head.insert("content-type", value("application/grpc"));
    head.insert("grpc-encoding", value("gzip"));
    check_field_block(RESPONSE_HEAD, frame::HEADERS, &head);

    check_field_block(RESPONSE_HEAD_EMPTY, frame::HEADERS, &HeaderMap::new());

    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", value("5"));
    trailers.insert("grpc-message", value("gone"));
    check_field_block(TRAILERS, frame::TRAILERS, &trailers);

    let mut trailers_only = HeaderMap::new();
    trailers_only.insert("content-type", value("application/grpc"));
    trailers_only.insert("grpc-status", value("12"));
    check_field_block(TRAILERS_ONLY, frame::HEADERS, &trailers_only);
}

#[test]
fn malformed_field_blocks() {
    // "Pseudo-fields" and "Field blocks": payloads (no frame head) a receiver must refuse.
    let request_heads: &[(&[u8], FieldError)] = &[
        (b"", FieldError::MissingPath),
        (b"\x01k\x01v", FieldError::MissingPath),
        (
            b"\x05:path\x06/p.S/M\x07:method\x04POST",
            FieldError::UnexpectedPseudo(":method".into()),
        ),
        (
            b"\x05:path\x06/p.S/M\x05:path\x06/p.S/N",
            FieldError::MisplacedPseudo(":path".into()),
        ),
        (
            b"\x01k\x01v\x05:path\x06/p.S/M",
            FieldError::MisplacedPseudo(":path".into()),
        ),
        (
            b"\x05:path\x06/p.S/M\x09:priority\x06urgent",
            FieldError::InvalidPriority("urgent".into()),
        ),
        // "Pseudo-fields": the values are the lowercase names, spelled exactly.
        (
            b"\x05:path\x06/p.S/M\x09:priority\x08CRITICAL",
            FieldError::InvalidPriority("CRITICAL".into()),
        ),
        (
            b"\x05:path\x06/p.S/M\x01K\x01v",
            FieldError::InvalidName("K".into()),
        ),
        (
            b"\x05:path\x06/p.S/M\x01k\x03a\rb",
            FieldError::InvalidValue("k".into()),
        ),
        (
            b"\x05:path\x06/p.S/M\x01k\x03a\nb",
            FieldError::InvalidValue("k".into()),
        ),
        (
            b"\x05:path\x06/p.S/M\x01k\x03a\x00b",
            FieldError::InvalidValue("k".into()),
        ),
        (b"\x05:path\x06/p.S/", FieldError::Truncated),
    ];
    for (block, want) in request_heads {
        assert_eq!(
            fields::decode_request_head(block).as_ref(),
            Err(want),
            "{block:02x?}"
        );
    }
    // "any pseudo-field in a response head or trailers makes the block malformed".
    assert_eq!(
        fields::decode_fields(b"\x07:status\x03200"),
        Err(FieldError::UnexpectedPseudo(":status".into()))
    );
    assert_eq!(
        fields::decode_fields(b"\x0bgrpc-status\x010\x05:path\x06/p.S/M"),
        Err(FieldError::UnexpectedPseudo(":path".into()))
    );
}

#[test]
fn field_block_limit_is_checked_from_the_frame_head() {
    // "Field blocks": the limit is checked against the frame's Length before the payload is
    // buffered. REQUEST_HEAD declares 158 bytes in its first three.
    let mut head_only = BytesMut::from(&REQUEST_HEAD[..3]);
    assert_eq!(
        FrameDecoder::new(157).decode(&mut head_only),
        Err(FrameError::FieldBlockTooLarge {
            len: 158,
            limit: 157
        })
    );
    let mut decoder = FrameDecoder::new(158);
    let mut buf = BytesMut::from(&REQUEST_HEAD[..3]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&REQUEST_HEAD[3..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Frame::Headers(Bytes::from_static(&REQUEST_HEAD[3..]))))
    );
}

#[test]
fn message_prefix() {
    assert_eq!(message::PREFIX_LEN, 5);
    // The length is big-endian: 0x00000100 is 256, refused by a limit of 255 from the prefix
    // alone, with none of the message seen.
    let mut limiter = MessageLimiter::new(255);
    assert_eq!(
        limiter.observe(COMPRESSED_PREFIX_256),
        Err(MessageTooLarge {
            len: 256,
            limit: 255
        })
    );
    let mut limiter = MessageLimiter::new(256);
    assert_eq!(limiter.observe(COMPRESSED_PREFIX_256), Ok(()));
    assert!(!limiter.at_message_boundary());

    for cuts in cuttings(MESSAGE_ABC.len()) {
        let mut fits = MessageLimiter::new(3);
        for piece in pieces(MESSAGE_ABC, &cuts) {
            fits.observe(piece)
                .expect("a 3-byte message fits a limit of 3");
        }
        assert!(fits.at_message_boundary(), "cut at {cuts:?}");

        let mut over = MessageLimiter::new(2);
        let refused = pieces(MESSAGE_ABC, &cuts)
            .into_iter()
            .map(|piece| over.observe(piece))
            .find_map(Result::err);
        assert_eq!(
            refused,
            Some(MessageTooLarge { len: 3, limit: 2 }),
            "cut at {cuts:?}"
        );
    }
}

#[test]
fn messages_and_data_frames_are_cut_independently() {
    let messages = b"\x00\x00\x00\x00\x03abc\x00\x00\x00\x00\x00";
    check_frames(MESSAGES_ACROSS_FRAMES, &[data(messages)]);
    for cuts in cuttings(MESSAGES_ACROSS_FRAMES.len()) {
        let mut limiter = MessageLimiter::new(3);
        for frame in decode(MESSAGES_ACROSS_FRAMES, &cuts).expect("valid frames") {
            let Frame::Data(bytes) = frame else {
                panic!("cut at {cuts:?}: {frame:?}")
            };
            limiter.observe(&bytes).expect("within the limit");
        }
        assert!(limiter.at_message_boundary(), "cut at {cuts:?}");
    }
}

#[test]
fn a_unary_call() {
    let head = fields::encode_request_head("/p.S/M", None, None, &HeaderMap::new());
    let request = [head, frame::encode(frame::DATA, MESSAGE_ABC)].concat();
    assert_eq!(request, REQUEST_STREAM);
    check_frames(
        REQUEST_STREAM,
        &[
            Frame::Headers(Bytes::from_static(&REQUEST_STREAM[2..15])),
            data(MESSAGE_ABC),
        ],
    );

    let mut head = HeaderMap::new();
    head.insert("content-type", value("application/grpc"));
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", value("0"));
    let response = [
        fields::encode_fields(frame::HEADERS, &head),
        frame::encode(frame::DATA, MESSAGE_ABC),
        fields::encode_fields(frame::TRAILERS, &trailers),
    ]
    .concat();
    assert_eq!(response, RESPONSE_STREAM);
    check_frames(
        RESPONSE_STREAM,
        &[
            Frame::Headers(Bytes::from_static(&RESPONSE_STREAM[2..32])),
            data(MESSAGE_ABC),
            Frame::Trailers(Bytes::from_static(&RESPONSE_STREAM[44..])),
        ],
    );
    assert_eq!(fields::decode_fields(&RESPONSE_STREAM[2..32]), Ok(head));
    assert_eq!(fields::decode_fields(&RESPONSE_STREAM[44..]), Ok(trailers));
}

#[test]
fn control_stream_with_goaway() {
    let mut encoded = Vec::new();
    varint::put(&mut encoded, frame::CONTROL_STREAM);
    encoded.extend_from_slice(&frame::encode(frame::GOAWAY, b""));
    assert_eq!(encoded, CONTROL_STREAM_GOAWAY);

    for cuts in cuttings(CONTROL_STREAM_GOAWAY.len()) {
        // The stream type comes first, as a varint; frames follow.
        let mut buf = BytesMut::new();
        let mut stream_type = None;
        let mut decoder = FrameDecoder::new(NO_LIMIT);
        let mut frames = Vec::new();
        for piece in pieces(CONTROL_STREAM_GOAWAY, &cuts) {
            buf.extend_from_slice(piece);
            if stream_type.is_none() {
                let Some((ty, used)) = varint::get(&buf) else {
                    continue;
                };
                stream_type = Some(ty);
                buf.advance(used);
            }
            while let Some(frame) = decoder.decode(&mut buf).expect("valid frame") {
                frames.push(frame);
            }
        }
        assert_eq!(stream_type, Some(frame::CONTROL_STREAM), "cut at {cuts:?}");
        assert_eq!(frames, [Frame::GoAway], "cut at {cuts:?}");
    }
}

#[test]
fn error_codes() {
    assert_eq!(
        ErrorCode::ALL.to_vec(),
        ERROR_CODES
            .iter()
            .map(|&(code, _)| code)
            .collect::<Vec<_>>()
    );
    for &(code, wire) in ERROR_CODES {
        assert_eq!(code.to_u32(), wire, "{code:?}");
        assert_eq!(ErrorCode::from_u64(wire.into()), Some(code), "{wire:#x}");
    }
    // "An unknown code is treated as INTERNAL": the decoder reports it as unknown.
    for unknown in [0x8, 0x100, varint::MAX] {
        assert_eq!(ErrorCode::from_u64(unknown), None, "{unknown:#x}");
    }
}

// ----------------------------------------------------------------------------------------
// Helpers.
// ----------------------------------------------------------------------------------------

/// Checks a request head's HEADERS frame, whose head (type and length) is `head_len` bytes,
/// both ways.
fn check_request_head(bytes: &'static [u8], head_len: usize, want: &RequestHead) {
    let encoded = fields::encode_request_head(
        &want.path,
        want.authority.as_deref(),
        want.priority,
        &want.fields,
    );
    assert_eq!(encoded, bytes, "encoding {want:?}");
    let payload = &bytes[head_len..];
    check_frames(bytes, &[Frame::Headers(Bytes::from_static(payload))]);
    assert_eq!(fields::decode_request_head(payload).as_ref(), Ok(want));
}

/// Checks a HEADERS or TRAILERS frame of regular fields, with a one-byte length, both ways.
fn check_field_block(bytes: &'static [u8], ty: u64, want: &HeaderMap) {
    assert_eq!(fields::encode_fields(ty, want), bytes, "encoding {want:?}");
    let payload = Bytes::from_static(&bytes[2..]);
    let frame = match ty {
        frame::HEADERS => Frame::Headers(payload.clone()),
        _ => Frame::Trailers(payload.clone()),
    };
    check_frames(bytes, &[frame]);
    assert_eq!(fields::decode_fields(&payload).as_ref(), Ok(want));
}

/// Decodes `input` cut in every way [`cuttings`] lists, and checks that each gives `want`
/// (DATA joined: its pieces' boundaries mean nothing), ending between frames.
fn check_frames(input: &[u8], want: &[Frame]) {
    for cuts in cuttings(input.len()) {
        let frames = decode(input, &cuts)
            .unwrap_or_else(|e| panic!("cut at {cuts:?}: {e}"))
            .into_iter()
            .fold(Vec::new(), join_data);
        assert_eq!(frames, want, "cut at {cuts:?}");
    }
}

/// The frames of `input` fed to a decoder in pieces, cut at `cuts`. Fails unless the input
/// ends between frames with nothing left over.
fn decode(input: &[u8], cuts: &[usize]) -> Result<Vec<Frame>, FrameError> {
    let mut decoder = FrameDecoder::new(NO_LIMIT);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in pieces(input, cuts) {
        buf.extend_from_slice(piece);
        while let Some(frame) = decoder.decode(&mut buf)? {
            frames.push(frame);
        }
    }
    assert!(
        decoder.at_frame_boundary(),
        "cut at {cuts:?}: ends mid-frame"
    );
    assert!(buf.is_empty(), "cut at {cuts:?}: {buf:02x?} left over");
    Ok(frames)
}

/// Every way to cut `len` bytes into at most three pieces, and one byte at a time.
fn cuttings(len: usize) -> Vec<Vec<usize>> {
    let mut all = vec![Vec::new(), (1..len).collect()];
    for a in 1..len {
        all.push(vec![a]);
        all.extend((a + 1..len).map(|b| vec![a, b]));
    }
    all
}

/// `input` cut at `cuts` (ascending).
fn pieces<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([&input.len()]) {
        pieces.push(&input[start..cut]);
        start = cut;
    }
    pieces
}

/// Appends `frame` to `frames`, joining it to a DATA piece just before it.
fn join_data(mut frames: Vec<Frame>, frame: Frame) -> Vec<Frame> {
    if let (Some(Frame::Data(prev)), Frame::Data(next)) = (frames.last_mut(), &frame) {
        *prev = [&prev[..], &next[..]].concat().into();
    } else {
        frames.push(frame);
    }
    frames
}

fn data(bytes: &'static [u8]) -> Frame {
    Frame::Data(Bytes::from_static(bytes))
}

fn value(text: &'static str) -> HeaderValue {
    HeaderValue::from_static(text)
}
