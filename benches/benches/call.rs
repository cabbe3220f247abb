//! Micro-benchmarks of one unary call's per-call work on each side, in memory: everything a
//! call costs in quicrpc's own code between the application's message and the QUIC stream's
//! bytes (protobuf, gRPC's message prefix, frames, field blocks, the receive limit), with no
//! sockets, TLS or scheduling.
//!
//! ```text
//! cargo bench -p quicrpc-benches --bench call
//! ```
#![allow(missing_docs)]

#[allow(unreachable_pub)] // generated code
mod helloworld {
    quicrpc::include_proto!("helloworld");
}

use std::hint::black_box;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use prost::Message;
use quicrpc::Priority;
use quicrpc_wire::frame::{self, Frame, FrameDecoder};
use quicrpc_wire::{fields, message::MessageLimiter};

use helloworld::{HelloReply, HelloRequest};

const PATH: &str = "/helloworld.Greeter/SayHello";
const LIMIT: usize = 4 * 1024 * 1024;

fn ascii(value: &'static str) -> http::HeaderValue {
    http::HeaderValue::from_static(value)
}

/// A DATA frame carrying `message` with gRPC's 5-byte prefix, appended to `out`.
fn put_message(out: &mut BytesMut, message: &impl Message) {
    let len = message.encoded_len();
    out.put_slice(&frame::data_head(5 + len));
    out.put_u8(0);
    out.put_u32(len as u32);
    message.encode(out).expect("the buffer grows");
}

/// Reads frames from `bytes` until `stop` accepts one; hands DATA payloads to `data`.
fn read_frames(
    bytes: &[u8],
    mut data: impl FnMut(Bytes),
    mut other: impl FnMut(Frame),
) -> Result<(), frame::FrameError> {
    let mut decoder = FrameDecoder::new(16 * 1024);
    let mut buf = BytesMut::from(bytes);
    while let Some(frame) = decoder.decode(&mut buf)? {
        match frame {
            Frame::Data(chunk) => data(chunk),
            other_frame => other(other_frame),
        }
    }
    Ok(())
}

/// The message in a run of DATA payloads, limit-checked, prefix stripped, decoded.
fn take_message<M: Message + Default>(payload: &[u8]) -> M {
    let mut limiter = MessageLimiter::new(LIMIT);
    limiter.observe(payload).expect("within the limit");
    M::decode(&payload[5..]).expect("a valid message")
}

/// The client sends: request head and message.
fn client_send(metadata: &HeaderMap, name: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(256);
    out.put_slice(&fields::encode_request_head(
        PATH,
        Some("localhost:50051"),
        Some(Priority::Normal),
        metadata,
    ));
    put_message(
        &mut out,
        &HelloRequest {
            name: name.to_owned(),
        },
    );
    out
}

/// The server receives the request and answers: head, message, trailers.
fn server_call(request: &[u8], headers: &HeaderMap, trailers: &HeaderMap) -> BytesMut {
    let mut payload = BytesMut::new();
    let mut head = None;
    read_frames(
        request,
        |chunk| payload.extend_from_slice(&chunk),
        |f| {
            if let Frame::Headers(block) = f {
                head = Some(fields::decode_request_head(&block).expect("valid head"));
            }
        },
    )
    .expect("valid frames");
    let head = head.expect("a request head");
    assert_eq!(head.path, PATH);
    let request: HelloRequest = take_message(&payload);
    let mut out = BytesMut::with_capacity(256);
    out.put_slice(&fields::encode_fields(frame::HEADERS, headers));
    put_message(
        &mut out,
        &HelloReply {
            message: request.name,
        },
    );
    out.put_slice(&fields::encode_fields(frame::TRAILERS, trailers));
    out
}

/// The client receives the response.
fn client_receive(response: &[u8]) -> (HelloReply, HeaderMap) {
    let mut payload = BytesMut::new();
    let mut trailers = HeaderMap::new();
    read_frames(
        response,
        |chunk| payload.extend_from_slice(&chunk),
        |f| match f {
            Frame::Headers(block) => {
                fields::decode_fields(&block).expect("valid head");
            }
            Frame::Trailers(block) => trailers = fields::decode_fields(&block).expect("valid"),
            _ => {}
        },
    )
    .expect("valid frames");
    (take_message(&payload), trailers)
}

fn benches(c: &mut Criterion) {
    let mut metadata = HeaderMap::new();
    metadata.insert("content-type", ascii("application/grpc"));
    metadata.insert("te", ascii("trailers"));
    metadata.insert("grpc-timeout", ascii("5000m"));
    let mut headers = HeaderMap::new();
    headers.insert("content-type", ascii("application/grpc"));
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", ascii("0"));

    let name = "x".repeat(16);
    let request = client_send(&metadata, &name);
    let response = server_call(&request, &headers, &trailers);
    let (reply, status) = client_receive(&response);
    assert_eq!(reply.message, name);
    assert_eq!(status.get("grpc-status"), Some(&ascii("0")));

    let mut group = c.benchmark_group("unary call, 16-byte message");
    group.bench_function("client path (send request, receive response)", |b| {
        b.iter(|| {
            let sent = client_send(black_box(&metadata), black_box(&name));
            (sent, client_receive(black_box(&response)))
        })
    });
    group.bench_function("server path (receive request, send response)", |b| {
        b.iter(|| server_call(black_box(&request), &headers, &trailers))
    });
    group.finish();
}

criterion_group!(call, benches);
criterion_main!(call);
