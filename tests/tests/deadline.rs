//! Deadlines: `grpc-timeout` reaches the server, and expiry ends the call on both sides.

use std::time::Duration;

use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::{Event, TestServer, echo, within};
use tonic::Code;

#[tokio::test]
async fn grpc_timeout_reaches_the_handler() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(echo("t"));
    request.set_timeout(Duration::from_secs(5));
    let reply = within("unary", client.unary(request))
        .await
        .unwrap()
        .into_inner();
    assert!(
        (1..=5000).contains(&reply.timeout_ms),
        "{}",
        reply.timeout_ms
    );
}

#[tokio::test]
async fn expiry_gives_deadline_exceeded_and_cancels_the_handler() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(echo("hang"));
    request.set_timeout(Duration::from_millis(200));
    let status = within("hanging call", client.hang(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(server.next_event().await, Event::HangStarted);
    assert_eq!(server.next_event().await, Event::HangDropped);
    // The connection is still good.
    within("next call", client.unary(echo("after")))
        .await
        .unwrap();
}

#[tokio::test]
async fn expiry_mid_stream_ends_the_stream() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(EchoRequest {
        response_count: 100,
        delay_ms: 50,
        ..echo("slow")
    });
    request.set_timeout(Duration::from_millis(300));
    let mut stream = within("open", client.server_stream(request))
        .await
        .unwrap()
        .into_inner();
    let mut received = 0;
    let status = loop {
        match within("next", stream.message()).await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("stream ended without the deadline passing"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(received < 100);
    // The producer on the server notices the call is gone.
    assert_eq!(server.next_event().await, Event::StreamAbandoned);
}

#[tokio::test]
async fn deadline_covers_waiting_for_a_stream_slot() {
    // One stream per connection: a second call waits for the first, and its deadline counts.
    let server = TestServer::start_with(Default::default(), |b| b.max_concurrent_streams(1)).await;
    let channel = server.channel().await;
    let mut first = quicrpc_tests::pb::echo_client::EchoClient::new(channel.clone());
    let mut second = quicrpc_tests::pb::echo_client::EchoClient::new(channel);
    let hanging = tokio::spawn(async move { first.hang(echo("hold the only stream")).await });
    assert_eq!(server.next_event().await, Event::HangStarted);
    let mut request = tonic::Request::new(echo("queued"));
    request.set_timeout(Duration::from_millis(200));
    let status = within("queued call", second.unary(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    hanging.abort();
}
