//! Graceful shutdown: calls in flight finish, new calls get UNAVAILABLE, the server stops.

use std::time::Duration;

use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestServer, echo, indexes_to_end, slow_stream_started, within};
use tonic::Code;

/// Waits until the server refuses new connections, which it does only once it is draining.
async fn until_refusing(server: &TestServer) {
    within("server starts refusing", async {
        while server.channel_builder().connect().await.is_ok() {}
    })
    .await;
}

#[tokio::test]
async fn in_flight_calls_finish_and_new_calls_are_unavailable() {
    let mut server = TestServer::start().await;
    // Once the server is gone nothing answers on UDP: keep the reconnect attempt short.
    let channel = within(
        "connect",
        server
            .channel_builder()
            .connect_timeout(Duration::from_secs(1))
            .connect(),
    )
    .await
    .unwrap();
    let mut client = EchoClient::new(channel.clone());
    let mut stream = slow_stream_started(&mut client).await;

    let serving = server.begin_shutdown();
    until_refusing(&server).await;

    // A new call, on the connection that is draining, is refused.
    let mut other = EchoClient::new(channel.clone());
    let status = within("new call", other.unary(echo("late")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // The call in flight runs to its end.
    let mut indexes = vec![0];

    indexes.extend(indexes_to_end(&mut stream).await);
    assert_eq!(indexes, vec![0, 1, 2, 3, 4]);

    within("server stops", serving).await.unwrap().unwrap();
    let status = within("after stop", other.unary(echo("later")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn idle_connections_do_not_hold_up_shutdown() {
    let mut server = TestServer::start().await;
    let channel = within(
        "connect",
        server
            .channel_builder()
            .connect_timeout(Duration::from_secs(1))
            .connect(),
    )
    .await
    .unwrap();
    let mut client = EchoClient::new(channel);
    within("warm up", client.unary(echo("x"))).await.unwrap();
    within("server stops", server.begin_shutdown())
        .await
        .unwrap()
        .unwrap();
    let status = within("after stop", client.unary(echo("y")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

/// A call that never ends does not hold shutdown up for ever, on either transport: after the
/// drain timeout the server ends it and stops, and the call gets an error.
#[tokio::test]
async fn shutdown_ends_calls_left_after_the_drain_timeout() {
    for policy in [quicrpc::Fallback::QuicOnly, quicrpc::Fallback::TcpOnly] {
        let mut server = TestServer::start_with(quicrpc_tests::TestOptions::default(), |b| {
            b.drain_timeout(Duration::from_millis(300))
        })
        .await;
        let channel = server
            .any_transport_builder()
            .fallback(policy)
            .connect_timeout(Duration::from_secs(1))
            .connect();
        let mut client = EchoClient::new(within("connect", channel).await.expect("connect"));
        let hanging = tokio::spawn(async move { client.hang(echo("for ever")).await });
        assert_eq!(
            within("hang starts", server.next_event()).await,
            quicrpc_tests::Event::HangStarted
        );
        within("server stops", server.begin_shutdown())
            .await
            .unwrap()
            .unwrap();
        let result = within("the hanging call ends", hanging).await.unwrap();
        assert!(result.is_err(), "{policy:?}: {result:?}");
        assert_eq!(
            within("handler dropped", server.next_event()).await,
            quicrpc_tests::Event::HangDropped,
            "{policy:?}"
        );
    }
}
