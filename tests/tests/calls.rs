//! The four call kinds over QUIC, and many calls at once on one connection.

use futures_util::StreamExt;
use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::{TestOptions, TestServer, echo, within};

#[tokio::test]
async fn unary() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let reply = within(
        "unary",
        client.unary(EchoRequest {
            response_size: 3,
            ..echo("hello")
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(reply.message, "hello");
    assert_eq!(reply.payload, vec![0xab; 3]);
}

#[tokio::test]
async fn server_streaming() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = EchoRequest {
        response_count: 5,
        response_size: 10,
        ..echo("s")
    };
    let mut stream = within("open", client.server_stream(request))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(reply) = within("next reply", stream.message()).await.unwrap() {
        assert_eq!(reply.payload.len(), 10);
        seen.push(reply.index);
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn client_streaming() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let requests = tokio_stream::iter(["a", "b", "c", "d"].map(echo));
    let reply = within("client stream", client.client_stream(requests))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, "abcd");
    assert_eq!(reply.index, 4);
}

#[tokio::test]
async fn bidi_streaming_interleaves() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = within(
        "open",
        client.bidi(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .unwrap()
    .into_inner();
    // Each reply arrives before the next request is sent: the streams really interleave.
    for i in 0..10u32 {
        tx.send(echo(&format!("m{i}"))).await.unwrap();
        let reply = within("bidi reply", replies.message())
            .await
            .unwrap()
            .expect("a reply");
        assert_eq!(
            (reply.message.as_str(), reply.index),
            (format!("m{i}").as_str(), i)
        );
    }
    drop(tx);
    assert!(within("end", replies.message()).await.unwrap().is_none());
}

#[tokio::test]
async fn large_messages_both_ways() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = EchoRequest {
        payload: vec![7; 3 << 20],
        response_size: 3 << 20,
        ..echo("big")
    };
    let reply = within("large unary", client.unary(request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.payload.len(), 3 << 20);
}

#[tokio::test]
async fn a_thousand_calls_in_flight_on_one_connection() {
    const CALLS: usize = 1000;
    // Every handler waits at a barrier for all the others: the test passes only if all
    // 1,000 calls are in flight at the same time.
    let server = TestServer::start_with(
        TestOptions {
            barrier: Some(CALLS),
            ..Default::default()
        },
        |b| b,
    )
    .await;
    let channel = server.channel().await;
    let calls = (0..CALLS).map(|i| {
        let mut client = quicrpc_tests::pb::echo_client::EchoClient::new(channel.clone());
        async move {
            client
                .unary(EchoRequest {
                    barrier: true,
                    ..echo(&i.to_string())
                })
                .await
        }
    });
    let replies = within(
        "1,000 concurrent calls",
        futures_util::future::join_all(calls),
    )
    .await;
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap().into_inner().message, i.to_string());
    }
}

#[tokio::test]
async fn concurrency_limit_is_configurable() {
    // With a limit of 10 streams, 20 calls that each wait for all 20 cannot all be in flight.
    let server = TestServer::start_with(
        TestOptions {
            barrier: Some(20),
            ..Default::default()
        },
        |b| b.max_concurrent_streams(10),
    )
    .await;
    let channel = server.channel().await;
    let calls = (0..20).map(|_| {
        let mut client = quicrpc_tests::pb::echo_client::EchoClient::new(channel.clone());
        async move {
            let mut request = tonic::Request::new(EchoRequest {
                barrier: true,
                ..echo("x")
            });
            request.set_timeout(std::time::Duration::from_millis(500));
            client.unary(request).await
        }
    });
    let results = within("limited calls", futures_util::future::join_all(calls)).await;
    assert!(results.iter().all(|r| {
        r.as_ref()
            .is_err_and(|s| s.code() == tonic::Code::DeadlineExceeded)
    }));
    // And the connection still serves calls once they are gone.
    let mut client = quicrpc_tests::pb::echo_client::EchoClient::new(channel);
    within("after", client.unary(echo("ok"))).await.unwrap();
}

#[tokio::test]
async fn stream_of_many_messages_arrives_complete_and_in_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = EchoRequest {
        response_count: 2000,
        response_size: 100,
        ..echo("n")
    };
    let stream = within("open", client.server_stream(request))
        .await
        .unwrap()
        .into_inner();
    let indexes: Vec<u32> = within("all replies", stream.map(|r| r.unwrap().index).collect()).await;
    assert_eq!(indexes, (0..2000).collect::<Vec<_>>());
}
