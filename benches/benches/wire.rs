//! Micro-benchmarks of quicrpc's wire format, in memory: what each call pays for framing.
//!
//! ```text
//! cargo bench -p quicrpc-benches --bench wire
//! ```
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::HeaderMap;
use quicrpc::Priority;
use quicrpc_wire::frame::{self, FrameDecoder};
use quicrpc_wire::{fields, message::MessageLimiter};

fn request_metadata() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/grpc".parse().expect("ASCII"));
    headers.insert("grpc-timeout", "5000m".parse().expect("ASCII"));
    headers.insert("te", "trailers".parse().expect("ASCII"));
    headers.insert(
        "x-request-id",
        "7f3c2a9e-1b4d-4c6e-8a0f-2d5e6b7c8d9e"
            .parse()
            .expect("ASCII"),
    );
    headers
}

fn benches(c: &mut Criterion) {
    let metadata = request_metadata();
    c.bench_function("encode request head", |b| {
        b.iter(|| {
            fields::encode_request_head(
                black_box("/agents.v1.AgentControl/Spawn"),
                Some("localhost:50051"),
                Some(Priority::High),
                black_box(&metadata),
            )
        })
    });

    let head = fields::encode_request_head(
        "/agents.v1.AgentControl/Spawn",
        Some("localhost:50051"),
        Some(Priority::High),
        &metadata,
    );
    let mut decoder = FrameDecoder::new(16 * 1024);
    let mut buf = BytesMut::from(&head[..]);
    let Ok(Some(frame::Frame::Headers(block))) = decoder.decode(&mut buf) else {
        panic!("a HEADERS frame");
    };
    c.bench_function("decode request head", |b| {
        b.iter(|| fields::decode_request_head(black_box(&block)).expect("valid"))
    });

    let mut group = c.benchmark_group("frames");
    for size in [64usize, 1024, 64 * 1024] {
        let payload = vec![0xab; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("encode DATA {size} B"), |b| {
            b.iter(|| frame::encode(frame::DATA, black_box(&payload)))
        });
        let encoded = frame::encode(frame::DATA, &payload);
        group.bench_function(format!("decode DATA {size} B"), |b| {
            b.iter(|| {
                let mut decoder = FrameDecoder::new(16 * 1024);
                let mut buf = BytesMut::from(black_box(&encoded[..]));
                decoder.decode(&mut buf).expect("valid").expect("a frame")
            })
        });
        let mut grpc = vec![0u8; 5 + size];
        grpc[1..5].copy_from_slice(&(size as u32).to_be_bytes());
        group.bench_function(format!("limit-check message {size} B"), |b| {
            b.iter(|| {
                let mut limiter = MessageLimiter::new(4 * 1024 * 1024);
                limiter.observe(black_box(&grpc)).expect("within the limit")
            })
        });
    }
    group.finish();
}

criterion_group!(wire, benches);
criterion_main!(wire);
