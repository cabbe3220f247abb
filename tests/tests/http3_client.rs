//! quicrpc's own client over gRPC over HTTP/3 (`QuicWire::Http3`), against a quicrpc server:
//! the four call kinds, statuses and metadata, priorities, deadlines and cancellation, the
//! receive limit, GOAWAY, the fallback to TCP, and `QuicWire::Auto` choosing the native wire.
//! (Against an HTTP/3 server that is not quicrpc's: `http3_aioquic.rs`.)

use std::time::Duration;

use futures_util::StreamExt as _;
use quicrpc::{Channel, Priority, QuicWire, Transport};
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::pb::{EchoReply, EchoRequest};
use quicrpc_tests::{Event, TestOptions, TestServer, echo, transport_of, within};

/// A channel to `server` over gRPC over HTTP/3 only.
async fn h3_channel(server: &TestServer) -> Channel {
    let connect = server
        .channel_builder()
        .quic_wire(QuicWire::Http3)
        .connect();
    within("HTTP/3 connect", connect).await.expect("connect")
}

async fn h3_client(server: &TestServer) -> EchoClient<Channel> {
    EchoClient::new(h3_channel(server).await)
}

#[tokio::test]
async fn a_unary_call_goes_over_http3() {
    let server = TestServer::start().await;
    let channel = h3_channel(&server).await;
    assert_eq!(channel.transport(), Transport::Http3);
    let mut client = EchoClient::new(channel.clone());
    let request = EchoRequest {
        response_size: 3,
        ..echo("hello")
    };
    let response = within("unary", client.unary(request)).await.expect("unary");
    assert_eq!(
        response.extensions().get::<Transport>(),
        Some(&Transport::Http3)
    );
    let reply = response.into_inner();
    assert_eq!(
        (reply.message.as_str(), reply.payload),
        ("hello", vec![0xab; 3])
    );
    assert_eq!(channel.transport(), Transport::Http3);
    assert_eq!(server.stats.quic_connections(), 1);
}

#[tokio::test]
async fn streams_go_over_http3_both_ways() {
    let server = TestServer::start().await;
    let mut client = h3_client(&server).await;

    let request = EchoRequest {
        response_count: 5,
        response_size: 10,
        ..echo("s")
    };
    let mut stream = within("server stream", client.server_stream(request))
        .await
        .expect("open")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(reply) = within("next reply", stream.message()).await.expect("reply") {
        assert_eq!(reply.payload.len(), 10);
        seen.push(reply.index);
    }
    assert_eq!(seen, [0, 1, 2, 3, 4]);

    let requests = tokio_stream::iter(["a", "b", "c", "d"].map(echo));
    let reply = within("client stream", client.client_stream(requests))
        .await
        .expect("client stream")
        .into_inner();
    assert_eq!((reply.message.as_str(), reply.index), ("abcd", 4));

    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = within(
        "bidi",
        client.bidi(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect("open")
    .into_inner();
    // Each reply arrives before the next request is sent: the streams interleave.
    for i in 0..5u32 {
        tx.send(echo(&format!("m{i}"))).await.expect("send");
        let reply = within("bidi reply", replies.message())
            .await
            .expect("reply")
            .expect("a reply");
        assert_eq!((reply.message, reply.index), (format!("m{i}"), i));
    }
    drop(tx);
    assert!(
        within("bidi end", replies.message())
            .await
            .expect("end")
            .is_none()
    );
}

#[tokio::test]
async fn statuses_and_metadata_cross_http3() {
    let server = TestServer::start().await;
    let mut client = h3_client(&server).await;

    let failing = EchoRequest {
        fail_code: tonic::Code::NotFound as i32,
        fail_message: "no such agent: ä".into(),
        fail_details: vec![1, 2, 3],
        ..echo("x")
    };
    let status = within("failing unary", client.unary(failing.clone()))
        .await
        .expect_err("fails");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "no such agent: ä");
    assert_eq!(status.details(), [1, 2, 3]);
    assert_eq!(status.metadata().get("x-failure").unwrap(), "yes");

    // A failure after two messages of a stream comes in its trailers.
    let request = EchoRequest {
        response_count: 5,
        fail_after: 2,
        ..failing
    };
    let mut stream = within("failing stream", client.server_stream(request))
        .await
        .expect("open")
        .into_inner();
    let mut messages = 0;
    let status = loop {
        match within("next", stream.message()).await {
            Ok(Some(_)) => messages += 1,
            Ok(None) => panic!("the stream ended without its failure"),
            Err(status) => break status,
        }
    };
    assert_eq!((messages, status.code()), (2, tonic::Code::NotFound));

    let mut request = tonic::Request::new(echo("m"));
    request
        .metadata_mut()
        .insert("x-echo-tenant", "t1".parse().unwrap());
    request.metadata_mut().insert_bin(
        "x-echo-bin",
        tonic::metadata::MetadataValue::from_bytes(&[0, 255]),
    );
    let response = within("metadata", client.unary(request))
        .await
        .expect("unary");
    assert_eq!(response.metadata().get("x-echo-tenant").unwrap(), "t1");
    assert_eq!(
        response
            .metadata()
            .get_bin("x-echo-bin")
            .unwrap()
            .to_bytes()
            .unwrap(),
        &[0, 255][..]
    );

    let unknown = within(
        "unknown method",
        tonic::client::Grpc::new(client_channel(&server).await).unary(
            tonic::Request::new(echo("x")),
            http::uri::PathAndQuery::from_static("/quicrpc.testing.Echo/Nope"),
            tonic_prost::ProstCodec::<EchoRequest, EchoReply>::default(),
        ),
    )
    .await
    .expect_err("no such method");
    assert_eq!(unknown.code(), tonic::Code::Unimplemented);
}

/// A ready channel for raw `tonic::client::Grpc` calls.
async fn client_channel(server: &TestServer) -> Channel {
    h3_channel(server).await
}

/// The priority of each call reaches the server: the method's `(quicrpc.priority)`, or the
/// one the call chose, carried by RFC 9218's `priority` header.
#[tokio::test]
async fn priorities_reach_the_server_over_http3() {
    let server = TestServer::start().await;
    let mut client = h3_client(&server).await;
    let plain = within("unary", client.unary(echo("a")))
        .await
        .expect("unary");
    assert_eq!(plain.into_inner().priority, "normal");
    let urgent = within("urgent", client.urgent(echo("b")))
        .await
        .expect("urgent");
    assert_eq!(urgent.into_inner().priority, "critical");
    let mut chosen = tonic::Request::new(echo("c"));
    chosen.extensions_mut().insert(Priority::Bulk);
    let chosen = within("bulk unary", client.unary(chosen))
        .await
        .expect("unary");
    assert_eq!(
        chosen.extensions().get::<Priority>(),
        Some(&Priority::Bulk),
        "the client's record of the call"
    );
    assert_eq!(chosen.into_inner().priority, "bulk");
}

/// A deadline that passes ends the call with DEADLINE_EXCEEDED, and the server's handler is
/// dropped: the client reset and stopped the request stream.
#[tokio::test]
async fn a_deadline_ends_the_call_on_both_sides() {
    let server = TestServer::start().await;
    let mut client = h3_client(&server).await;
    let mut request = tonic::Request::new(echo("wait"));
    request.set_timeout(Duration::from_millis(300));
    let status = within("hang", client.hang(request))
        .await
        .expect_err("deadline");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert_eq!(server.next_event().await, Event::HangStarted);
    assert_eq!(server.next_event().await, Event::HangDropped);
    // The connection carries on.
    within("after", client.unary(echo("next")))
        .await
        .expect("unary");
}

/// A call dropped by the application is cancelled on the server.
#[tokio::test]
async fn a_dropped_call_is_cancelled_on_the_server() {
    let server = TestServer::start().await;
    let client = h3_client(&server).await;
    let mut hanging = client.clone();
    let call = tokio::spawn(async move { hanging.hang(echo("wait")).await });
    assert_eq!(server.next_event().await, Event::HangStarted);
    call.abort();
    assert_eq!(server.next_event().await, Event::HangDropped);

    // So is a response stream read in part.
    let mut client = client;
    let request = EchoRequest {
        response_count: 1000,
        response_size: 1000,
        ..echo("s")
    };
    let mut stream = within("stream", client.server_stream(request))
        .await
        .expect("open")
        .into_inner();
    within("first", stream.message()).await.expect("reply");
    drop(stream);
    assert_eq!(server.next_event().await, Event::StreamAbandoned);
    within("after", client.unary(echo("next")))
        .await
        .expect("unary");
}

/// A response message over the client's receive limit ends that call with
/// RESOURCE_EXHAUSTED; the connection carries on.
#[tokio::test]
async fn the_receive_limit_holds_over_http3() {
    let server = TestServer::start().await;
    let connect = server
        .channel_builder()
        .quic_wire(QuicWire::Http3)
        .max_receive_message_size(1024)
        .connect();
    let mut client = EchoClient::new(within("connect", connect).await.expect("connect"));
    let request = EchoRequest {
        response_size: 4096,
        ..echo("big")
    };
    let status = within("big reply", client.unary(request))
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let small = EchoRequest {
        response_size: 100,
        ..echo("small")
    };
    within("small reply", client.unary(small))
        .await
        .expect("unary");
    assert_eq!(server.stats.quic_connections(), 1);
}

/// A server that says GOAWAY (here at its maximum connection age) ends the connection once
/// its calls are done, and the client's calls move to a new connection, over HTTP/3 still.
/// As on the native wire (`server_limits.rs`), a call sent before the client has read the
/// GOAWAY can meet the close: UNAVAILABLE, the status to retry on. Any other failure is one.
#[tokio::test]
async fn calls_move_to_a_new_connection_after_goaway() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.max_connection_age(Duration::from_millis(200))
    })
    .await;
    let mut client = h3_client(&server).await;
    let served = within("calls across three connections", async {
        let mut served = 0;
        while server.stats.connections_opened() < 3 {
            match client.unary(echo("again")).await {
                Ok(_) => served += 1,
                // Let the connection's tasks run: this one may fail without waiting.
                Err(s) if s.code() == tonic::Code::Unavailable => tokio::task::yield_now().await,
                Err(s) => panic!("{s:?}"),
            }
        }
        served
    })
    .await;
    assert!(served > 0);
    assert_eq!(
        transport_of(&mut client).await,
        Transport::Http3,
        "still over HTTP/3"
    );
}

/// After a GOAWAY, a call under way on the old connection finishes there, while new calls
/// go on a new connection at once: the old one is retired when a call first finds it going
/// away, not when it closes.
#[tokio::test]
async fn a_stream_finishes_after_goaway_while_new_calls_move_on() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.max_connection_age(Duration::from_millis(200))
    })
    .await;
    let mut client = h3_client(&server).await;
    let size = 100;
    let count = 5;
    let request = EchoRequest {
        response_count: count,
        response_size: size,
        delay_ms: 200,
        ..echo("slow")
    };
    let mut stream = within("slow stream", client.server_stream(request))
        .await
        .expect("open")
        .into_inner();
    within("a second connection", async {
        while server.stats.connections_opened() < 2 {
            match client.unary(echo("again")).await {
                Ok(_) => {}
                // Let the connection's tasks run: this one may fail without waiting.
                Err(s) if s.code() == tonic::Code::Unavailable => tokio::task::yield_now().await,
                Err(s) => panic!("{s:?}"),
            }
        }
    })
    .await;
    assert!(
        server.produced_bytes() < u64::from(size * count),
        "the new connection opened only once the old one's stream had ended"
    );
    for _ in 0..10 {
        within("a call on the new connection", client.unary(echo("new")))
            .await
            .expect("served");
    }
    let mut replies = 0;
    while within("next reply", stream.message())
        .await
        .expect("reply")
        .is_some()
    {
        replies += 1;
    }
    assert_eq!(replies, count, "the stream finished on the old connection");
}

/// With no QUIC at the server, an HTTP/3 channel falls back to TCP as a native one does.
#[tokio::test]
async fn an_http3_channel_falls_back_to_tcp() {
    let server =
        TestServer::start_with(TestOptions::default(), |b| b.transports([Transport::Tcp])).await;
    let connect = server
        .any_transport_builder()
        .quic_wire(QuicWire::Http3)
        .connect();
    let channel = within("connect", connect).await.expect("connect");
    let mut client = EchoClient::new(channel.clone());
    assert_eq!(transport_of(&mut client).await, Transport::Tcp);
    assert_eq!(channel.transport(), Transport::Tcp);
}

/// `QuicWire::Auto` offers both wires; a quicrpc server prefers its own.
#[tokio::test]
async fn auto_takes_the_native_wire_from_a_quicrpc_server() {
    let server = TestServer::start().await;
    let connect = server.channel_builder().quic_wire(QuicWire::Auto).connect();
    let channel = within("connect", connect).await.expect("connect");
    let mut client = EchoClient::new(channel.clone());
    assert_eq!(transport_of(&mut client).await, Transport::Quic);
    assert_eq!(channel.transport(), Transport::Quic);
}

/// Many calls at once share one HTTP/3 connection.
#[tokio::test]
async fn many_calls_at_once_share_the_connection() {
    let server = TestServer::start().await;
    let client = h3_client(&server).await;
    let calls = futures_util::stream::iter(0..200)
        .map(|i| {
            let mut client = client.clone();
            async move { client.unary(echo(&format!("c{i}"))).await }
        })
        .buffer_unordered(200)
        .collect::<Vec<_>>();
    let results = within("200 calls", calls).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(server.stats.connections_opened(), 1);
}
