//! Connection migration: a client that moves to a new local socket keeps its calls.

use tokio_stream::wrappers::ReceiverStream;

use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::{TestServer, echo, within};

#[tokio::test]
async fn streams_in_progress_survive_a_rebind_without_loss_or_duplication() {
    let server = TestServer::start().await;
    let channel = server.channel().await;
    let mut client = quicrpc_tests::pb::echo_client::EchoClient::new(channel.clone());
    let before = channel.local_addr().expect("QUIC socket");

    // A server stream and a bidi stream, both part-way through.
    let request = EchoRequest {
        response_count: 20,
        delay_ms: 20,
        response_size: 2000,
        ..echo("s")
    };
    let mut server_stream = within("open", client.server_stream(request))
        .await
        .unwrap()
        .into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut bidi = within("open bidi", client.bidi(ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(
            within("before", server_stream.message())
                .await
                .unwrap()
                .unwrap()
                .index,
        );
    }
    let mut bidi_seen = Vec::new();
    for i in 0..5 {
        tx.send(echo(&format!("b{i}"))).await.unwrap();
        bidi_seen.push(
            within("bidi before", bidi.message())
                .await
                .unwrap()
                .unwrap()
                .message,
        );
    }

    let after = channel.rebind().expect("rebind");
    assert_ne!(before.port(), after.port());

    while let Some(reply) = within("after", server_stream.message()).await.unwrap() {
        seen.push(reply.index);
    }
    assert_eq!(
        seen,
        (0..20).collect::<Vec<_>>(),
        "every reply exactly once, in order"
    );
    for i in 5..10 {
        tx.send(echo(&format!("b{i}"))).await.unwrap();
        bidi_seen.push(
            within("bidi after", bidi.message())
                .await
                .unwrap()
                .unwrap()
                .message,
        );
    }
    drop(tx);
    assert!(within("bidi end", bidi.message()).await.unwrap().is_none());
    assert_eq!(
        bidi_seen,
        (0..10).map(|i| format!("b{i}")).collect::<Vec<_>>()
    );

    // The server now sees the client at its new port.
    let reply = within("new call", client.unary(echo("moved")))
        .await
        .unwrap()
        .into_inner();
    let peer: std::net::SocketAddr = reply.peer.parse().expect("peer address");
    assert_eq!(
        peer.port(),
        after.port(),
        "server saw {peer}, client is on {after}"
    );
}
