//! QUIC analogues of gRPC's HTTP/2 negative interop tests (`goaway`, `rst_after_header`,
//! `rst_during_data`, `rst_after_data`, `max_streams`, `slowloris`), against the
//! grpc.testing service. Each is the focused version; neighbouring checks live in
//! `shutdown.rs` (graceful shutdown with the Echo service), `bad_peers.rs` (malformed
//! frames, resets by the client at every point) and `abuse.rs` (many silent stream hogs).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use quicrpc::Transport;
use quicrpc_tests::interop::pb::test_service_client::TestServiceClient;
use quicrpc_tests::interop::pb::{
    Empty, Payload, ResponseParameters, SimpleRequest, SimpleResponse, StreamingInputCallRequest,
    StreamingOutputCallRequest,
};
use quicrpc_tests::interop::{CallEvent, Case, InteropServer, run_case};
use quicrpc_tests::raw::{
    Answer, RawClient, RawServer, data_message, read_response, request_head, response_head,
    status_trailers,
};
use quicrpc_tests::{TestOptions, until, within};
use quicrpc_wire::frame::{self, Frame, FrameDecoder};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const EMPTY_CALL: &str = "/grpc.testing.TestService/EmptyCall";
const STREAMING_INPUT_CALL: &str = "/grpc.testing.TestService/StreamingInputCall";

/// A FullDuplexCall request asking for one response of `size` bytes.
fn ping(size: i32) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: vec![ResponseParameters {
            size,
            ..ResponseParameters::default()
        }],
        ..StreamingOutputCallRequest::default()
    }
}

/// A bidirectional call the test drives: its request sender and response stream, after one
/// exchange (so the call is surely under way on the server).
async fn duplex_under_way(
    client: &mut TestServiceClient<quicrpc::Channel>,
) -> (
    mpsc::Sender<StreamingOutputCallRequest>,
    tonic::Streaming<quicrpc_tests::interop::pb::StreamingOutputCallResponse>,
) {
    let (tx, rx) = mpsc::channel(1);
    let mut replies = within("open", client.full_duplex_call(ReceiverStream::new(rx)))
        .await
        .expect("call opens")
        .into_inner();
    exchange(&tx, &mut replies, 9).await;
    (tx, replies)
}

/// Sends a ping for `size` bytes and reads its pong.
async fn exchange(
    tx: &mpsc::Sender<StreamingOutputCallRequest>,
    replies: &mut tonic::Streaming<quicrpc_tests::interop::pb::StreamingOutputCallResponse>,
    size: i32,
) {
    tx.send(ping(size)).await.expect("request stream open");
    let reply = within("reply", replies.message())
        .await
        .expect("a reply")
        .expect("not the end");
    assert_eq!(reply.payload.map(|p| p.body.len()), Some(size as usize));
}

/// Waits until the server has reported `n` starts of `method`'s handler (other events are
/// passed over).
async fn until_started(server: &InteropServer, method: &str, n: usize) {
    let mut started = 0;
    while started < n {
        if let CallEvent::Started(m) = server.next_event().await
            && m == method
        {
            started += 1;
        }
    }
}

/// Reads `conn`'s control stream until a GOAWAY frame.
async fn until_goaway(conn: &quinn::Connection) {
    let mut recv = conn
        .accept_uni()
        .await
        .expect("the server's control stream");
    let mut buf = BytesMut::new();
    let mut typed = false;
    let mut decoder = FrameDecoder::new(1 << 16);
    loop {
        if !typed && let Some((stream_type, n)) = quicrpc_wire::varint::get(&buf) {
            assert_eq!(stream_type, 0x0, "a control stream");
            let _ = buf.split_to(n);
            typed = true;
        }
        if typed && let Some(frame) = decoder.decode(&mut buf).expect("valid frames") {
            if matches!(frame, Frame::GoAway) {
                return;
            }
            continue;
        }
        let chunk = recv
            .read_chunk(usize::MAX, true)
            .await
            .expect("control stream readable")
            .expect("control stream open until GOAWAY");
        buf.extend_from_slice(&chunk.bytes);
    }
}

#[tokio::test]
async fn goaway() {
    let mut server = InteropServer::start().await;
    let (addr, cert) = (server.server.addr, server.server.cert.clone());
    // Once the server is gone nothing answers on UDP: keep reconnect attempts short.
    let channel = within(
        "connect",
        server
            .channel_builder(Transport::Quic)
            .connect_timeout(Duration::from_secs(1))
            .connect(),
    )
    .await
    .expect("connect");
    let mut client = TestServiceClient::new(channel.clone());
    let (tx, mut replies) = duplex_under_way(&mut client).await;
    // A raw connection with a call under way too, to see the wire: a client stream whose
    // handler waits for the end of its requests.
    let raw = RawClient::connect(addr, &cert.ca_certificate()).await;
    let (mut held, held_response) = raw
        .send(&request_head(STREAMING_INPUT_CALL, &[]), false)
        .await;
    until_started(&server, "StreamingInputCall", 1).await;

    let serving = server.server.begin_shutdown();
    within("GOAWAY", until_goaway(&raw.conn)).await;
    // A call that arrives on the connection after GOAWAY is refused, not run.
    let (_send, recv) = raw.call(EMPTY_CALL, &Empty {}).await;
    let refused = within("refused call", read_response(recv)).await;
    assert_eq!(refused.reset, Some(0x2), "REFUSED_STREAM: {refused:?}");
    // The channel opens no call on its draining connection, and the server takes no new
    // connection: a new call is UNAVAILABLE, cleanly.
    let status = within("new call", client.clone().empty_call(Empty {}))
        .await
        .expect_err("refused while draining");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // Calls under way finish, on both connections.
    exchange(&tx, &mut replies, 2653).await;
    drop(tx);
    assert!(
        within("end", replies.message())
            .await
            .expect("OK at the end")
            .is_none()
    );
    held.write_all(&data_message(&StreamingInputCallRequest {
        payload: Some(Payload {
            r#type: 0,
            body: vec![0; 8],
        }),
        ..StreamingInputCallRequest::default()
    }))
    .await
    .expect("the held call is still open");
    held.finish().expect("finish");
    let response = within("held call", read_response(held_response)).await;
    assert_eq!(response.code(), Some(Code::Ok), "{response:?}");
    within("server stops", serving)
        .await
        .expect("serve task")
        .expect("clean stop");

    // A new server at the same address: the same channel reconnects to it.
    let _next = InteropServer::start_with_options(
        TestOptions {
            addr: Some(addr),
            cert: Some(cert),
            ..TestOptions::default()
        },
        |b| b,
    )
    .await;
    // The channel failed to connect while the old server was draining, so it backs off
    // (failing calls fast with UNAVAILABLE) before it tries again; then it reconnects.
    within("call to the new server", async {
        loop {
            match client.empty_call(Empty {}).await {
                Ok(_) => return,
                Err(status) if status.message().contains("waiting to reconnect") => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(status) => panic!("the new server did not serve the call: {status:?}"),
            }
        }
    })
    .await;
    assert_eq!(channel.transport(), Transport::Quic);
}

/// A unary SimpleResponse with 100 bytes of payload, as a whole gRPC message (prefix
/// included).
fn grpc_message() -> Bytes {
    let body = SimpleResponse {
        payload: Some(Payload {
            r#type: 0,
            body: vec![0; 100],
        }),
        ..SimpleResponse::default()
    }
    .encode_to_vec();
    let mut message = BytesMut::new();
    message.put_u8(0);
    message.put_u32(body.len() as u32);
    message.put_slice(&body);
    message.freeze()
}

/// The raw server's answers: `/raw.Case/{when}/{code}` resets the response stream with
/// `code` at that point; `/raw.Case/ok` answers properly.
fn reset_answer(path: &str) -> Answer {
    let mut parts = path.trim_start_matches("/raw.Case/").split('/');
    let when = parts.next().unwrap_or_default();
    let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let head = response_head(&[]);
    let message = grpc_message();
    match when {
        "ok" => Answer::Finish(vec![
            head,
            frame::encode(frame::DATA, &message),
            status_trailers(Code::Ok),
        ]),
        "after_header" => Answer::Reset(vec![head], code),
        // A whole DATA frame holding half a message.
        "during_data" => Answer::Reset(
            vec![
                head,
                frame::encode(frame::DATA, &message[..message.len() / 2]),
            ],
            code,
        ),
        // The whole message, and no trailers.
        "after_data" => Answer::Reset(vec![head, frame::encode(frame::DATA, &message)], code),
        other => panic!("unknown case {other}"),
    }
}

/// A UnaryCall to `/raw.Case/{case}` on the raw server.
async fn raw_call(channel: &quicrpc::Channel, case: &str) -> Result<SimpleResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<SimpleRequest, SimpleResponse>::default();
    let path = http::uri::PathAndQuery::try_from(format!("/raw.Case/{case}")).expect("path");
    grpc.unary(tonic::Request::new(SimpleRequest::default()), path, codec)
        .await
        .map(tonic::Response::into_inner)
}

/// Resets the response at `when` with each error code of docs/PROTOCOL.md: the client sees
/// the status the table maps it to, and the next call on the same connection works.
async fn reset_response(when: &str) {
    let server = RawServer::start(reset_answer).await;
    let channel = within("connect", server.channel()).await;
    for (code, want) in [
        (0x0, Code::Internal),
        (0x1, Code::Cancelled),
        (0x2, Code::Unavailable),
        (0x3, Code::Internal),
        (0x4, Code::DeadlineExceeded),
        (0x5, Code::Internal),
        (0x6, Code::ResourceExhausted),
        (0x99, Code::Internal),
    ] {
        let case = format!("{when}/{code}");
        let status = within(&case, raw_call(&channel, &case))
            .await
            .expect_err("a reset response");
        assert_eq!(status.code(), want, "{case}: {status:?}");
        let ok = within("next call", raw_call(&channel, "ok"))
            .await
            .unwrap_or_else(|e| panic!("the call after {case}: {e:?}"));
        assert_eq!(ok.payload.map(|p| p.body.len()), Some(100));
    }
    // All of it on one connection: none ended.
    assert!(
        server.closed.lock().await.try_recv().is_err(),
        "a reset stream closed the connection"
    );
}

#[tokio::test]
async fn rst_after_header() {
    reset_response("after_header").await;
}

#[tokio::test]
async fn rst_during_data() {
    reset_response("during_data").await;
}

#[tokio::test]
async fn rst_after_data() {
    reset_response("after_data").await;
}

#[tokio::test]
async fn max_streams() {
    const LIMIT: u32 = 4;
    let server = InteropServer::start_with(|b| b.max_concurrent_streams(LIMIT)).await;
    let channel = server.channel(Transport::Quic).await;
    let mut client = TestServiceClient::new(channel.clone());
    // Every stream the server allows, held by calls under way.
    let mut held = Vec::new();
    for _ in 0..LIMIT {
        held.push(duplex_under_way(&mut client).await);
    }
    // One more call cannot start: it waits for stream credit, and its deadline keeps
    // running while it waits.
    let mut late = tonic::Request::new(Empty {});
    late.set_timeout(Duration::from_millis(200));
    let status = within("call over the limit", client.empty_call(late))
        .await
        .expect_err("no stream for it before its deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // Calls over the limit wait, then all run once streams free up: none is lost.
    let waiting: Vec<_> = (0..3 * LIMIT)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.empty_call(Empty {}).await })
        })
        .collect();
    for (tx, mut replies) in held {
        drop(tx);
        assert!(
            within("end", replies.message())
                .await
                .expect("OK")
                .is_none()
        );
    }
    for call in waiting {
        within("waiting call", call)
            .await
            .expect("task")
            .expect("served once streams were free");
    }
    assert_eq!(
        server.server.stats.connections(),
        1,
        "all on one connection"
    );
}

#[tokio::test]
async fn slowloris() {
    const LIMIT: u32 = 16;
    let server = InteropServer::start_with(|b| b.max_concurrent_streams(LIMIT)).await;
    let raw = RawClient::connect(server.server.addr, &server.server.cert.ca_certificate()).await;
    // Every stream the server allows this connection, stalled three ways: the first byte of
    // a HEADERS frame; a whole head and nothing more (its handler waits for requests); a
    // head and half a message.
    let head = request_head(STREAMING_INPUT_CALL, &[]);
    let message = data_message(&StreamingInputCallRequest {
        payload: Some(Payload {
            r#type: 0,
            body: vec![0; 1000],
        }),
        ..StreamingInputCallRequest::default()
    });
    let mut stalled = Vec::new();
    for i in 0..LIMIT {
        let bytes = match i % 3 {
            0 => vec![frame::HEADERS as u8],
            1 => head.to_vec(),
            _ => [&head[..], &message[..message.len() / 2]].concat(),
        };
        stalled.push(raw.send(&bytes, false).await);
    }
    // The handlers of the streams whose head is whole are running, waiting for requests.
    until_started(&server, "StreamingInputCall", 10).await;
    // Everyone else is served, over QUIC and over TCP.
    for transport in [Transport::Quic, Transport::Tcp] {
        for case in [Case::LargeUnary, Case::PingPong, Case::ClientStreaming] {
            run_case(case, &server, transport).await;
        }
    }
    // When the slowloris goes away, what it held is freed.
    drop(stalled);
    drop(raw);
    until("stalled calls freed", || server.server.stats.calls(), 0).await;
    until(
        "connection freed",
        || server.server.stats.quic_connections(),
        0,
    )
    .await;
}
