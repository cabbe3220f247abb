//! Cancellation: dropping a call on the client reaches the handler; a server failing
//! mid-stream reaches the client; the connection carries on either way.

use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::{Event, TestServer, echo, within};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

#[tokio::test]
async fn dropping_a_unary_call_cancels_the_handler() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut hung = client.clone();
    let call = tokio::spawn(async move { hung.hang(echo("hang")).await });
    assert_eq!(server.next_event().await, Event::HangStarted);
    call.abort();
    assert_eq!(server.next_event().await, Event::HangDropped);
    within("next call", client.unary(echo("after")))
        .await
        .unwrap();
}

#[tokio::test]
async fn dropping_a_response_stream_reaches_the_producer() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = EchoRequest {
        response_count: 10_000,
        response_size: 1000,
        ..echo("s")
    };
    let mut stream = within("open", client.server_stream(request))
        .await
        .unwrap()
        .into_inner();
    within("first", stream.message()).await.unwrap().unwrap();
    drop(stream);
    assert_eq!(server.next_event().await, Event::StreamAbandoned);
    within("next call", client.unary(echo("after")))
        .await
        .unwrap();
}

#[tokio::test]
async fn dropping_a_bidi_call_reaches_the_server() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = within("open", client.bidi(ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    tx.send(echo("one")).await.unwrap();
    within("reply", replies.message()).await.unwrap().unwrap();
    drop(replies);
    // The server's request stream ends, its replies have nowhere to go.
    let _ = tx.send(echo("two")).await;
    assert_eq!(server.next_event().await, Event::StreamAbandoned);
    within("next call", client.unary(echo("after")))
        .await
        .unwrap();
}

#[tokio::test]
async fn server_failing_mid_bidi_gives_the_client_its_status() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = within("open", client.bidi(ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    tx.send(echo("fine")).await.unwrap();
    assert_eq!(
        within("reply", replies.message())
            .await
            .unwrap()
            .unwrap()
            .message,
        "fine"
    );
    tx.send(EchoRequest {
        fail_code: Code::DataLoss as i32,
        fail_message: "lost".into(),
        ..echo("")
    })
    .await
    .unwrap();
    let status = within("failure", replies.message()).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::DataLoss, "lost"));
}

#[tokio::test]
async fn client_stream_failure_status_reaches_the_client() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let requests = tokio_stream::iter([
        echo("a"),
        EchoRequest {
            fail_code: Code::InvalidArgument as i32,
            fail_message: "no".into(),
            ..echo("")
        },
    ]);
    let status = within("client stream", client.client_stream(requests))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "no")
    );
}
